"""Import of every format, made by openssl and GnuTLS certtool: DER and PEM
X.509 (one or many certificates), PKCS#8 DER plain and encrypted, PKCS#12,
OpenSSL legacy keys DER and PEM.  Each leaf is listed with the right kind,
SANs, key type, key held and warnings; CA certificates complete chains
whenever they arrive."""

import os

import pytest

from helpers import cert_id, openssl, pem_cert_ders, read, write


@pytest.fixture(scope="module")
def agent(module_agent_factory):
    return module_agent_factory()


@pytest.fixture(scope="module")
def leaves(pki):
    """One fresh leaf per format case, so every case adds a new record."""
    H = ["support.example.test", "primary.example.test", "backup.example.test"]
    W = ["*.example.test", "support.example.test"]
    out = {}
    for name, kt, sans in (
            ("f_der_p8", "rsa:2048", H), ("f_pem_p8pem", "ec:p256", W),
            ("f_chain_p8enc", "rsa:2048", H), ("f_bundle", "ec:p256", W),
            ("f_p12_rsa", "rsa:2048", H), ("f_p12_ec", "ec:p256", W),
            ("f_trad_rsa_pem", "rsa:2048", H), ("f_trad_rsa_der", "rsa:2048", H),
            ("f_trad_ec_pem", "ec:p256", W), ("f_trad_ec_der", "ec:p256", W),
            ("f_encpem", "ec:p256", W), ("f_p384", "ec:p384", ["p384.example.test"]),
            ("f_keyfirst", "ec:p256", ["keyfirst.example.test"]),
            ("f_certfirst", "rsa:2048", ["certfirst.example.test"]),
            ("f_named", "ec:p256", ["named.example.test"]),
            ("f_two_a", "ec:p256", ["two-a.example.test"]), ("f_two_b", "rsa:2048", ["two-b.example.test"])):
        out[name] = pki.make_leaf(name, kt, sans)
    out["g_p12_rsa"] = pki.g_rsa_multi
    out["g_ec"] = pki.g_ec_wild
    return out


def leaf_record(agent, leaf):
    return agent.cli("cert", "show", leaf.id, check=0).data


def test_ca_certificates(agent, pki):
    r = agent.cli("import", pki.root_der, check=0)
    assert [(i["action"], i["kind"], i["id"]) for i in r.data["items"]] == [("added", "root", pki.root_id)]
    r = agent.cli("import", pki.inter, check=0)
    assert [(i["action"], i["kind"], i["id"]) for i in r.data["items"]] == \
        [("added", "intermediate", pki.inter_id)]
    certs = agent.certs()
    assert certs[pki.root_id]["kind"] == "root" and certs[pki.inter_id]["kind"] == "intermediate"
    assert certs[pki.root_id]["subject_cn"] == "certsync Test Root CA"
    assert certs[pki.inter_id]["issuer"] == certs[pki.root_id]["subject"]
    st = agent.status()
    assert st["counts"]["cas"] == 2 and st["counts"]["certificates"] == 0


# (case, files(leaf) -> [formats], needs password)
CASES = [
    ("f_der_p8", ["cert.der", "key.p8"], False),
    ("f_pem_p8pem", ["cert.pem", "key.pem"], False),
    ("f_chain_p8enc", ["chain.pem", "key.p8enc"], True),
    ("f_bundle", ["bundle.pem"], False),
    ("f_p12_rsa", ["p12"], True),
    ("f_p12_ec", ["p12"], True),
    ("f_trad_rsa_pem", ["key.trad.pem", "cert.pem"], False),
    ("f_trad_rsa_der", ["cert.der", "key.trad.der"], False),
    ("f_trad_ec_pem", ["cert.pem", "key.trad.pem"], False),
    ("f_trad_ec_der", ["key.trad.der", "cert.der"], False),
    ("f_encpem", ["cert.pem", "key.enc.pem"], True),
    ("f_p384", ["chain.pem", "key.p8"], False),
    ("g_p12_rsa", ["p12"], True),                  # certtool PKCS#12 (AES-256, chain inside)
    ("g_ec", ["cert.pem", "key", "ca"], False),    # certtool files with their text preamble
]


@pytest.mark.parametrize("case, formats, password", CASES, ids=[c[0] for c in CASES])
def test_import_format(agent, pki, leaves, case, formats, password, tmp_path):
    leaf = leaves[case]
    files = []
    for f in formats:
        if f == "key":
            files.append(leaf.key)
        elif f == "ca":
            files.append(pki.g_ca_bundle)
        else:
            files.append(leaf.file(f))
    before = agent.status()
    args = ["import"] + files + (["--password-file", pki.password_file] if password else [])
    r = agent.cli(*args, check=0)
    assert r.data["changed"] is True
    # (a leaf that renews the default also gets a "default" item)
    mine = [i for i in r.data["items"] if i["id"] == leaf.id and i["action"] != "default"]
    assert len(mine) == 1, r.data["items"]
    assert mine[0]["action"] == "added" and mine[0]["kind"] == "identity", mine
    for i in r.data["items"]:
        assert os.path.basename(i["file"]) in [os.path.basename(f) for f in files], i
    c = leaf_record(agent, leaf)
    assert c["kind"] == "identity"
    assert c["has_key"] is True, c
    assert c["key_type"] == leaf.key_type
    assert c["sans"] == leaf.sans
    assert c["chain_complete"] is True, c
    assert [x["id"] for x in c["chain"] if x["id"] != leaf.id] == leaf.chain_ids
    assert c["warnings"] == [], c["warnings"]
    assert c["source"] == "import"
    assert cert_id(pem_cert_ders(c["pem"])[0]) == leaf.id
    after = agent.status()
    assert after["counts"]["certificates"] == before["counts"]["certificates"] + 1
    assert after["counts"]["pending_keys"] == before["counts"]["pending_keys"]
    assert after["seq"] > before["seq"]
    assert after["digest_ok"] is True
    export_and_read_back(agent, pki, leaf, tmp_path)


def export_and_read_back(agent, pki, leaf, tmp_path):
    """Every export format of the imported leaf, read back by openssl."""
    d = str(tmp_path)
    want = sorted([leaf.id] + leaf.chain_ids)
    agent.cli("export", leaf.id, "--format", "pem", "-o", d + "/x.pem", check=0)
    text = read(d + "/x.pem").decode()
    assert "PRIVATE KEY" not in text
    assert [cert_id(x) for x in pem_cert_ders(text)][0] == leaf.id
    assert sorted(cert_id(x) for x in pem_cert_ders(text)) == want
    fp = openssl("x509", "-in", d + "/x.pem", "-noout", "-fingerprint", "-sha256").stdout.decode()
    assert fp.split("=", 1)[1].strip().replace(":", "").lower() == leaf.id
    agent.cli("export", leaf.id, "--format", "der", "-o", d + "/x.der", check=0)
    assert read(d + "/x.der") == leaf.der
    openssl("x509", "-inform", "DER", "-in", d + "/x.der", "-noout")
    agent.cli("export", leaf.id, "--format", "p7b", "-o", d + "/x.p7b", check=0)
    inform = "PEM" if read(d + "/x.p7b").startswith(b"-----BEGIN") else "DER"
    text = openssl("pkcs7", "-inform", inform, "-in", d + "/x.p7b", "-print_certs").stdout.decode()
    assert sorted(cert_id(x) for x in pem_cert_ders(text)) == want
    pw = write(d + "/exp-pass", "export-pass-%s\n" % leaf.name, mode=0o600)
    agent.cli("export", leaf.id, "--format", "p12", "--passphrase-file", pw, "-o", d + "/x.p12", check=0)
    text = openssl("pkcs12", "-in", d + "/x.p12", "-passin", "file:" + pw, "-nodes").stdout.decode()
    assert sorted(cert_id(x) for x in pem_cert_ders(text)) == want
    kpath = write(d + "/x.key", text[text.index("-----BEGIN PRIVATE KEY"):])
    assert openssl("pkey", "-in", kpath, "-pubout").stdout == \
        openssl("x509", "-in", leaf.cert, "-noout", "-pubkey").stdout


def test_wildcard_and_multi_san_listing(agent, leaves):
    certs = agent.certs()
    w = certs[leaves["f_p12_ec"].id]
    assert w["sans"] == ["*.example.test", "support.example.test"]
    assert w["subject_cn"] == "*.example.test"
    m = certs[leaves["f_p12_rsa"].id]
    assert m["sans"] == ["support.example.test", "primary.example.test", "backup.example.test"]
    assert m["key_type"] == "rsa:2048"
    g = certs[leaves["g_p12_rsa"].id]
    assert "GnuTLS Test Intermediate CA" in g["issuer"]
    human = agent.cli("cert", "list", json=False, check=0).stdout.decode()
    for c in (w, m, g):
        assert c["id"][:8] in human


def test_key_first_then_certificate(agent, leaves):
    leaf = leaves["f_keyfirst"]
    before = agent.status()["counts"]
    r = agent.cli("import", leaf.file("key.pem"), check=0)
    assert [(i["action"], i["kind"]) for i in r.data["items"]] == [("pending-key", "key")]
    assert "pending" in (r.data["items"][0]["message"] + r.stderr).lower()
    mid = agent.status()["counts"]
    assert mid["pending_keys"] == before["pending_keys"] + 1
    assert mid["certificates"] == before["certificates"]
    r = agent.cli("import", leaf.file("cert.der"), check=0)
    assert [(i["action"], i["id"]) for i in r.data["items"]] == [("added", leaf.id)]
    assert leaf_record(agent, leaf)["has_key"] is True
    after = agent.status()["counts"]
    assert after["pending_keys"] == before["pending_keys"]
    assert after["certificates"] == before["certificates"] + 1


def test_certificate_first_then_key(agent, leaves):
    leaf = leaves["f_certfirst"]
    r = agent.cli("import", leaf.file("cert.pem"), check=0)
    assert [(i["action"], i["id"]) for i in r.data["items"]] == [("added", leaf.id)]
    c = leaf_record(agent, leaf)
    assert c["has_key"] is False and "key missing" in c["warnings"]
    before = agent.status()
    r = agent.cli("import", leaf.file("key.p8enc"), "--password-file", leaf.pki.password_file, check=0)
    assert [(i["action"], i["id"]) for i in r.data["items"]] == [("key-attached", leaf.id)]
    c = leaf_record(agent, leaf)
    assert c["has_key"] is True and c["warnings"] == []
    after = agent.status()
    assert after["counts"] == before["counts"]
    assert after["seq"] > before["seq"] and after["digest"] != before["digest"]


def test_name_option(agent, leaves):
    leaf = leaves["f_named"]
    agent.cli("import", leaf.file("p12"), "--password-file", leaf.pki.password_file,
              "--name", "site-wildcard", check=0)
    c = agent.cli("cert", "show", "site-wildcard", check=0).data
    assert c["id"] == leaf.id and c["name"] == "site-wildcard"


def test_chain_completed_when_ca_arrives_later(agent, pki, tmp_path):
    """A leaf from a CA the store does not know is listed `chain incomplete`
    until the CA certificate is imported."""
    d = str(tmp_path)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", d + "/late.key", "-subj", "/CN=Late Root CA", "-days", "100",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
            "-out", d + "/late.pem")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", d + "/ll.key", "-subj", "/CN=late.example.test", "-out", d + "/ll.csr")
    write(d + "/ll.ext", "[e]\nsubjectAltName = DNS:late.example.test\nbasicConstraints = CA:FALSE\n")
    openssl("x509", "-req", "-in", d + "/ll.csr", "-CA", d + "/late.pem", "-CAkey", d + "/late.key",
            "-days", "50", "-extfile", d + "/ll.ext", "-extensions", "e", "-out", d + "/ll.pem")
    leaf_id = cert_id(pem_cert_ders(read(d + "/ll.pem"))[0])
    root_id = cert_id(pem_cert_ders(read(d + "/late.pem"))[0])
    agent.cli("import", d + "/ll.pem", d + "/ll.key", check=0)
    c = agent.cli("cert", "show", leaf_id, check=0).data
    assert c["chain_complete"] is False and "chain incomplete" in c["warnings"], c
    assert c["has_key"] is True
    r = agent.cli("import", d + "/late.pem", check=0)
    assert [(i["action"], i["kind"]) for i in r.data["items"]] == [("added", "root")]
    c = agent.cli("cert", "show", leaf_id, check=0).data
    assert c["chain_complete"] is True and "chain incomplete" not in c["warnings"], c
    assert [x["id"] for x in c["chain"] if x["id"] != leaf_id] == [root_id]


def test_duplicate_import_says_already_and_changes_nothing(agent, leaves, pki):
    leaf = leaves["f_p12_rsa"]
    before = agent.snapshot()
    for files in ([leaf.file("p12"), "--password-file", pki.password_file], [leaf.file("cert.der")],
                  [pki.root_der], [pki.ca_bundle], [leaf.file("key.pem")],
                  [leaf.file("cert.pem"), leaf.file("key.trad.der")]):
        r = agent.cli("import", *files, check=0)
        assert r.data["changed"] is False, r.describe()
        assert r.data["items"] and all(i["action"] == "exists" for i in r.data["items"]), r.data
        assert all("already" in i["message"].lower() for i in r.data["items"]), r.data
    assert agent.snapshot() == before


def test_cert_list_order(agent):
    kinds = [c["kind"] for c in agent.cli("cert", "list", check=0).data["certificates"]]
    n_id = kinds.count("identity")
    assert kinds[:n_id] == ["identity"] * n_id, "identities first, then CA certificates: %s" % kinds
    assert set(kinds[n_id:]) <= {"intermediate", "root"}
    st = agent.status()
    assert st["counts"]["certificates"] == n_id and st["counts"]["cas"] == len(kinds) - n_id
    assert st["digest_ok"] is True and st["digest"] == st["digest_recomputed"]


def test_many_certificates_and_keys_in_one_pem(agent, pki, leaves, tmp_path):
    """One PEM file: two leaves, their keys (PKCS#8 and traditional) and the CAs."""
    a, b = leaves["f_two_a"], leaves["f_two_b"]
    pem = write(str(tmp_path / "two.pem"), read(a.cert) + read(b.file("key.trad.pem")) + read(pki.inter)
                + read(a.file("key.pem")) + read(b.cert) + read(pki.root))
    r = agent.cli("import", pem, check=0)
    added = {i["id"] for i in r.data["items"] if i["action"] == "added" and i["kind"] == "identity"}
    assert added == {a.id, b.id}, r.data
    for leaf in (a, b):
        c = agent.cli("cert", "show", leaf.id, check=0).data
        assert c["has_key"] is True and c["warnings"] == [] and c["key_type"] == leaf.key_type


def test_renewal_with_the_same_key_is_a_new_record_holding_it(agent, pki, leaves):
    """The CA renews an imported certificate (same key, later expiry): the
    new certificate alone is imported and finds its key in the held one."""
    old = leaves["f_p12_ec"]
    new = pki.make_leaf("f_p12_ec_renewed", old.key_type, old.sans, days=500, key=old.key)
    before = agent.status()["counts"]
    r = agent.cli("import", new.file("cert.pem"), check=0)
    assert [(i["action"], i["id"]) for i in r.data["items"]] == [("added", new.id)]
    c = agent.cli("cert", "show", new.id, check=0).data
    assert c["has_key"] is True and c["warnings"] == [], c
    assert c["not_after"] > agent.cli("cert", "show", old.id, check=0).data["not_after"]
    assert agent.cli("cert", "show", old.id, check=0).data["has_key"] is True
    assert agent.status()["counts"]["certificates"] == before["certificates"] + 1


def test_certtool_encrypted_pkcs8_der(agent_factory, pki):
    """GnuTLS certtool's encrypted PKCS#8 DER (--to-p8 --outder, AES-256), with
    its leaf and the certtool CA bundle, on an agent of its own so that the
    key comes from this file and no other."""
    a = agent_factory()
    leaf = pki.g_rsa_multi
    key = leaf.file("key.p8enc")
    assert leaf.tool == "certtool" and not read(key).startswith(b"-----")
    r = a.cli("import", leaf.cert, key, pki.g_ca_bundle, "--password-file", pki.password_file,
              check=0)
    mine = [i for i in r.data["items"] if i["id"] == leaf.id]
    assert [(i["action"], i["kind"]) for i in mine] == [("added", "identity")], r.data["items"]
    c = a.cli("cert", "show", leaf.id, check=0).data
    assert c["has_key"] is True and c["key_type"] == leaf.key_type, c
    assert c["chain_complete"] is True and c["warnings"] == [], c
    assert a.status()["counts"]["pending_keys"] == 0
    # the wrong password names the file and stores nothing
    b = agent_factory(name="other")
    before = b.snapshot()
    r = b.cli("import", leaf.cert, key, "--password-file", pki.wrong_password_file)
    assert r.rc == 1 and os.path.basename(key) in r.message, r.describe()
    assert b.snapshot() == before


def test_name_option_refuses_a_name_in_use(agent, pki, leaves):
    """--name must select one certificate: a name another certificate holds
    is refused, naming it, and nothing of the command is stored."""
    holder = agent.cli("cert", "show", "site-wildcard", check=0).data
    leaf = pki.make_leaf("f_dupname", "ec:p256", ["dupname.example.test"])
    before = agent.snapshot()
    r = agent.cli("import", leaf.file("p12"), "--password-file", pki.password_file,
                  "--name", "site-wildcard")
    assert r.rc == 1 and r.data["error"]["code"] == "refused", r.describe()
    assert holder["id"][:8] in r.message and "--name" in r.message, r.describe()
    assert agent.snapshot() == before
    agent.cli("import", leaf.file("p12"), "--password-file", pki.password_file,
              "--name", "dupname", check=0)
    assert agent.cli("cert", "show", "dupname", check=0).data["id"] == leaf.id
