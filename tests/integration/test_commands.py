"""Operator commands on one primary: status, cert self-signed/list/show/
default/delete, csr create/list/show, the CA round trip through a CSR with a
renewal, and a backup node that refuses every change naming the primary."""

import datetime
import os
import re

import pytest

from helpers import cert_id, openssl, openssl_text, pem_blocks, pem_cert_ders, read, write

HEX64 = re.compile(r"^[0-9a-f]{64}$")
CERT_FIELDS = {"id", "name", "kind", "subject", "subject_cn", "sans", "issuer", "not_before",
               "not_after", "key_type", "has_key", "default", "source", "warnings"}
REQ_FIELDS = {"id", "name", "subject", "subject_cn", "sans", "key_type", "created", "fulfilled_by"}


def parse_time(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def now():
    return datetime.datetime.now(datetime.timezone.utc)


@pytest.fixture(scope="module")
def agent(module_agent_factory):
    return module_agent_factory()


def self_signed(agent, name, *extra, check=0):
    return agent.cli("cert", "self-signed", "--name", name, "--country", "GB", *extra, check=check)


def test_first_self_signed_becomes_default(agent):
    assert agent.status()["default"] is None
    r = self_signed(agent, "site", "--common-name", "support.example.test", "--san", "*.example.test",
                    "--org", "Example Ltd", "--unit", "Ops", "--state", "Kent", "--locality", "Dover")
    c = r.data["certificate"]
    assert CERT_FIELDS <= set(c), set(c) ^ CERT_FIELDS
    assert HEX64.match(c["id"])
    assert r.data["default"] is True and c["default"] is True
    assert c["kind"] == "identity" and c["has_key"] is True and c["key_type"] == "ec:p256"
    assert c["name"] == "site" and c["subject_cn"] == "support.example.test"
    assert c["sans"][0] == "support.example.test" and "*.example.test" in c["sans"]
    assert any("support.example.test" in n for n in r.data["notes"]), r.data["notes"]
    assert c["source"] == "self-signed"
    left = parse_time(c["not_after"]) - now()
    assert datetime.timedelta(days=364) < left <= datetime.timedelta(days=366)
    st = agent.status()
    assert st["default"]["id"] == c["id"] and st["default"]["name"] == "site"
    assert st["counts"]["certificates"] == 1
    assert st["digest_ok"] is True


def test_cert_show_pem_is_the_certificate(agent):
    site = [c for c in agent.certs().values() if c["name"] == "site"][0]
    for sel in (site["id"], site["id"][:8], "site"):
        r = agent.cli("cert", "show", sel, check=0)
        assert r.data["id"] == site["id"]
    d = r.data
    assert "PRIVATE KEY" not in d["pem"]
    ders = pem_cert_ders(d["pem"])
    assert cert_id(ders[0]) == site["id"]
    pem_path = write(os.path.join(agent.workdir, "site.pem"), d["pem"])
    text = openssl_text("x509", "-in", pem_path, "-noout", "-text")
    assert "DNS:support.example.test" in text and "DNS:*.example.test" in text
    assert "C = GB" in text and "O = Example Ltd" in text and "OU = Ops" in text
    assert "CA:FALSE" in text
    assert d["chain"] == [] or all(x["kind"] != "identity" for x in d["chain"])


def test_self_signed_options(agent):
    r = self_signed(agent, "rsa-ip", "--key", "rsa:3072", "--common-name", "Appliance", "--san",
                    "primary.example.test", "--san", "192.0.2.10", "--san", "2001:db8::1",
                    "--days", "10")
    c = r.data["certificate"]
    assert r.data["default"] is False and c["default"] is False
    assert c["key_type"] == "rsa:3072"
    assert c["sans"][0] == "primary.example.test"      # "Appliance" is not a FQDN: not a SAN
    assert "Appliance" not in c["sans"]
    assert "192.0.2.10" in c["sans"]
    assert any(s.lower() in ("2001:db8::1", "2001:db8:0:0:0:0:0:1") for s in c["sans"]), c["sans"]
    left = parse_time(c["not_after"]) - now()
    assert datetime.timedelta(days=9) < left <= datetime.timedelta(days=10, hours=1)
    assert any(re.fullmatch(r"expires in (9|10) days", w) for w in c["warnings"]), c["warnings"]
    pem = agent.cli("cert", "show", c["id"], check=0).data["pem"]
    text = openssl_text("x509", "-noout", "-ext", "subjectAltName",
                        "-in", write(os.path.join(agent.workdir, "ip.pem"), pem))
    assert "IP Address:192.0.2.10" in text and "2001:DB8:0:0:0:0:0:1" in text.upper(), text
    r = self_signed(agent, "p384", "--key", "ec:p384", "--common-name", "backup.example.test")
    assert r.data["certificate"]["key_type"] == "ec:p384"


# Exit 1 and "refused" or "bad-input": a value of the flag's kind that a rule
# of the appliance refuses.  Exit 2 and "usage": a value that is no value of
# the flag at all.
@pytest.mark.parametrize("args, word, rc, code", [
    (["--key", "rsa:1024", "--common-name", "x.example.test"], "2048", 1, "refused"),
    (["--key", "dsa:2048", "--common-name", "x.example.test"], "ec:p256", 2, "usage"),
    (["--key", "foo", "--common-name", "x.example.test"], "ec:p256", 2, "usage"),
    (["--days", "0", "--common-name", "x.example.test"], "1 to 3650", 2, "usage"),
    (["--country", "XX", "--common-name", "x.example.test"], "iso 3166", 1, "bad-input"),
    (["--country", "gbr", "--common-name", "x.example.test"], "iso 3166", 1, "bad-input"),
    (["--common-name", "Not A Host"], "san", 1, "bad-input"),
    (["--common-name", "x.example.test", "--san", "*.*.example.test"], "wildcard", 1, "bad-input"),
    (["--common-name", "x.example.test", "--san", "foo*.example.test"], "wildcard", 1, "bad-input"),
    (["--common-name", "x.example.test", "--san", "bad_host!.example.test"], "bad_host!.example.test",
     1, "bad-input"),
])
def test_self_signed_bad_options_change_nothing(agent, args, word, rc, code):
    before = agent.snapshot()
    r = agent.cli("cert", "self-signed", "--name", "bad", "--country", "GB", *args)
    assert r.rc == rc, r.describe()
    assert word.lower() in r.message.lower(), r.describe()
    assert r.data and r.data["error"]["code"] == code, r.describe()
    assert agent.snapshot() == before


def test_a_name_in_use_is_refused(agent):
    """A friendly name selects one certificate: a second one of the same name
    is refused, naming the holder and the fix, and nothing changes."""
    site = [c for c in agent.certs().values() if c["name"] == "site"][0]
    before = agent.snapshot()
    for cmd in (["cert", "self-signed"], ["csr", "create"]):
        r = agent.cli(*cmd, "--name", "site", "--country", "GB", "--common-name", "dup.example.test")
        assert r.rc == 1, r.describe()
        assert r.data["error"]["code"] == "refused", r.describe()
        assert site["id"][:8] in r.message and "--name" in r.message, r.describe()
        assert agent.snapshot() == before
    assert agent.cli("cert", "show", "site", check=0).data["id"] == site["id"]
    # a request's name is taken among requests too
    agent.cli("csr", "create", "--name", "dup-req", "--country", "GB", "--common-name",
              "dup.example.test", check=0)
    before = agent.snapshot()
    r = agent.cli("csr", "create", "--name", "dup-req", "--country", "GB", "--common-name",
                  "dup2.example.test")
    assert r.rc == 1 and "request" in r.message, r.describe()
    assert agent.snapshot() == before
    assert agent.cli("csr", "show", "dup-req", check=0).data["name"] == "dup-req"


def test_cert_list_order_and_fields(agent):
    certs = agent.cli("cert", "list", check=0).data["certificates"]
    assert len(certs) == agent.status()["counts"]["certificates"] + agent.status()["counts"]["cas"]
    for c in certs:
        assert CERT_FIELDS <= set(c)
        assert HEX64.match(c["id"])
    defaults = [c for c in certs if c["default"]]
    assert len(defaults) == 1 and defaults[0]["name"] == "site"
    human = agent.cli("cert", "list", json=False, check=0).stdout.decode()
    assert "site" in human and "*" in human


def test_cert_default_and_delete_rules(agent):
    certs = {c["name"]: c for c in agent.certs().values()}
    site, other = certs["site"], certs["p384"]
    # the default cannot be deleted
    before = agent.snapshot()
    r = agent.cli("cert", "delete", site["id"])
    assert r.rc == 1, r.describe()
    assert "default" in r.message.lower()
    assert agent.snapshot() == before
    # choose another default: it covers backup only, so the others are named
    r = agent.cli("cert", "default", other["id"], check=0)
    assert r.data["default"] == other["id"]
    assert set(r.data["uncovered"]) == {"support.example.test", "primary.example.test"}
    assert agent.status()["default"]["id"] == other["id"]
    r = agent.cli("cert", "default", "site", check=0)
    assert r.data["uncovered"] == []
    # delete a non-default one
    r = agent.cli("cert", "delete", other["id"][:10], check=0)
    assert r.data["deleted"] == other["id"]
    r = agent.cli("cert", "show", other["id"])
    assert r.rc == 1 and r.data["error"]["code"] == "not-found", r.describe()
    assert agent.status()["digest_ok"] is True


def test_unknown_ids(agent):
    before = agent.snapshot()
    for cmd in (["cert", "show"], ["cert", "delete"], ["cert", "default"], ["csr", "show"],
                ["export"], ["verify", "--cert"]):
        r = agent.cli(*cmd, "00000000deadbeef")
        assert r.rc == 1, r.describe()
        assert r.data["error"]["code"] == "not-found", r.describe()
        assert "00000000deadbeef" in r.message, r.describe()
    assert agent.snapshot() == before


def test_csr_create_list_show(agent):
    r = agent.cli("csr", "create", "--name", "web", "--country", "GB", "--org", "Example Ltd",
                  "--common-name", "support.example.test", "--san", "primary.example.test",
                  "--san", "backup.example.test", "--key", "rsa:2048", check=0)
    req = r.data["request"]
    assert REQ_FIELDS <= set(req)
    assert HEX64.match(req["id"]) and req["fulfilled_by"] == []
    assert req["sans"] == ["support.example.test", "primary.example.test", "backup.example.test"]
    assert req["key_type"] == "rsa:2048"
    blocks = pem_blocks(r.data["pem"])
    assert [b[0] for b in blocks] == ["CERTIFICATE REQUEST"], "csr create printed more than the request"
    assert cert_id(blocks[0][1]) == req["id"]
    shown = agent.cli("csr", "show", "web", check=0).data
    assert shown["id"] == req["id"] and shown["pem"].strip() == r.data["pem"].strip()
    path = write(os.path.join(agent.workdir, "web.csr"), shown["pem"])
    text = openssl_text("req", "-in", path, "-noout", "-text", "-verify")
    assert "DNS:support.example.test" in text and "DNS:backup.example.test" in text
    reqs = agent.cli("csr", "list", check=0).data["requests"]
    assert req["id"] in [x["id"] for x in reqs]
    assert agent.status()["counts"]["requests"] >= 1
    # human output
    assert b"BEGIN CERTIFICATE REQUEST" in agent.cli("csr", "show", req["id"][:8], json=False, check=0).stdout


def ca_sign(pki, agent, csr_pem, days, out_name):
    csr = write(os.path.join(agent.workdir, out_name + ".csr"), csr_pem)
    ext = write(os.path.join(agent.workdir, out_name + ".ext"),
                "[leaf]\nbasicConstraints = critical,CA:FALSE\n"
                "keyUsage = critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage = serverAuth\n")
    out = os.path.join(agent.workdir, out_name + ".pem")
    openssl("x509", "-req", "-in", csr, "-CA", pki.inter, "-CAkey", pki.inter_key, "-days", str(days),
            "-sha256", "-copy_extensions", "copy", "-extfile", ext, "-extensions", "leaf",
            "-set_serial", str(0x7000 + days), "-out", out)
    return out


def test_csr_fulfilled_by_ca_and_renewal(agent, pki):
    req = agent.cli("csr", "show", "web", check=0).data
    issued = ca_sign(pki, agent, req["pem"], 90, "web-90")
    issued_id = cert_id(pem_cert_ders(read(issued))[0])
    r = agent.cli("import", issued, pki.ca_bundle, check=0)
    assert r.data["changed"] is True
    leaf_items = [i for i in r.data["items"] if i["id"] == issued_id]
    assert leaf_items and leaf_items[0]["action"] == "added" and leaf_items[0]["kind"] == "identity"
    c = agent.cli("cert", "show", issued_id, check=0).data
    assert c["has_key"] is True and c["key_type"] == "rsa:2048"
    assert c["chain_complete"] is True
    assert [x["id"] for x in c["chain"] if x["id"] != issued_id] == [pki.inter_id, pki.root_id]
    assert "key missing" not in c["warnings"] and "chain incomplete" not in c["warnings"]
    reqs = {x["id"]: x for x in agent.cli("csr", "list", check=0).data["requests"]}
    assert reqs[req["id"]]["fulfilled_by"] == [issued_id]

    # renewal: the CA signs the same request again, later expiry
    renewed = ca_sign(pki, agent, req["pem"], 200, "web-200")
    renewed_id = cert_id(pem_cert_ders(read(renewed))[0])
    n_before = agent.status()["counts"]["certificates"]
    r = agent.cli("import", renewed, check=0)
    assert [i["action"] for i in r.data["items"] if i["id"] == renewed_id] == ["added"]
    assert agent.status()["counts"]["certificates"] == n_before + 1
    c2 = agent.cli("cert", "show", renewed_id, check=0).data
    assert c2["has_key"] is True and c2["chain_complete"] is True
    assert parse_time(c2["not_after"]) > parse_time(c["not_after"])
    assert agent.cli("cert", "show", issued_id, check=0).data["has_key"] is True   # the old one stays
    reqs = {x["id"]: x for x in agent.cli("csr", "list", check=0).data["requests"]}
    assert sorted(reqs[req["id"]]["fulfilled_by"]) == sorted([issued_id, renewed_id])
    # importing it again says so and changes nothing
    before = agent.snapshot()
    r = agent.cli("import", renewed, check=0)
    assert r.data["changed"] is False
    assert [i["action"] for i in r.data["items"]] == ["exists"]
    assert "already" in (r.data["items"][0]["message"] + r.stderr).lower()
    assert agent.snapshot() == before


def test_cert_default_refuses_ca_and_keyless(agent, pki):
    agent.cli("import", pki.elsewhere.cert, pki.ca_bundle, check=0)   # a leaf without its key
    before = agent.snapshot()
    for sel in (pki.inter_id, pki.elsewhere.id):
        r = agent.cli("cert", "default", sel)
        assert r.rc == 1, r.describe()
        assert r.data["error"]["code"] in ("refused", "bad-input"), r.describe()
    assert agent.snapshot() == before


# ---- a backup node refuses changes and names the primary --------------------

@pytest.fixture(scope="module")
def backup(module_agent_factory):
    return module_agent_factory(name="backup", role="backup", hostname="backup.example.test",
                                peers=[("atlas-primary", "primary", "atlas-primary.example.test"),
                                       ("tn1", "traffic", "tn1.example.test")])


def test_backup_status(backup):
    st = backup.status()
    assert st["role"] == "backup" and st["node"] == "backup"
    assert backup.cli("cert", "list", check=0).data["certificates"] == []


@pytest.mark.parametrize("cmd", [
    ["cert", "self-signed", "--name", "x", "--country", "GB", "--common-name", "backup.example.test"],
    ["csr", "create", "--name", "x", "--country", "GB", "--common-name", "backup.example.test"],
    ["import", "{leaf}"],
    ["cert", "delete", "{id}"],
    ["cert", "default", "{id}"],
])
def test_backup_refuses_changes_naming_the_primary(backup, pki, cmd):
    before = backup.snapshot()
    args = [a.format(leaf=pki.rsa_multi.file("p12"), id=pki.rsa_multi.id) for a in cmd]
    if cmd[0] == "import":
        args += ["--password-file", pki.password_file]
    r = backup.cli(*args)
    assert r.rc == 1, r.describe()
    assert r.data["error"]["code"] == "refused", r.describe()
    msg = r.message.lower()
    assert "refused" in msg and "atlas-primary" in msg, r.describe()
    assert backup.snapshot() == before
