"""`certsync verify`: exit 0 only when the certificate covers the site
hostname and every node hostname of the configuration (this node and every
peer), its chain is complete, its key is held, and it is valid for more than
30 days (warn at 30 or less, still exit 0; fail at 25 or less)."""

import re

import pytest

from helpers import openssl, write

HOSTS = {"support.example.test", "primary.example.test", "backup.example.test", "tn1.example.test"}


@pytest.fixture(scope="module")
def agent(module_agent_factory, pki):
    a = module_agent_factory(peers=[("backup", "backup", "backup.example.test"),
                                    ("tn1", "traffic", "tn1.example.test")])
    a.cli("import", pki.ca_bundle, check=0)
    for leaf in (pki.ec_wild, pki.rsa_multi, pki.partial, pki.elsewhere, pki.short20, pki.short28,
                 pki.expired):
        a.cli("import", leaf.file("cert.pem"), leaf.file("key.pem"), check=0)
    a.cli("import", pki.g_ca_bundle, pki.g_ec_wild.file("cert.der"), check=0)      # no key
    a.cli("cert", "default", pki.ec_wild.id, check=0)
    return a


def verify(agent, *args, rc):
    r = agent.cli("verify", *args)
    assert r.rc == rc, r.describe()
    d = r.data
    assert isinstance(d, dict) and "checks" in d, "verify gives its result object\n" + r.describe()
    assert d["ok"] is (rc == 0)
    assert set(d["hosts"]) == HOSTS, d["hosts"]
    checks = {c["name"]: c for c in d["checks"]}
    assert set(checks) == {"coverage", "chain", "key", "validity"}
    return r, checks


def statuses(checks):
    return {n: c["status"] for n, c in checks.items()}


def test_default_certificate_ok(agent, pki):
    r, checks = verify(agent, rc=0)
    assert r.data["certificate"]["id"] == pki.ec_wild.id
    assert statuses(checks) == {"coverage": "ok", "chain": "ok", "key": "ok", "validity": "ok"}


def test_peer_hostname_not_covered(agent, pki):
    """rsa_multi lists support, primary and backup: the traffic peer tn1 is uncovered."""
    r, checks = verify(agent, "--cert", pki.rsa_multi.id, rc=1)
    assert statuses(checks) == {"coverage": "fail", "chain": "ok", "key": "ok", "validity": "ok"}
    detail = checks["coverage"]["detail"]
    assert "tn1.example.test" in detail
    for h in HOSTS - {"tn1.example.test"}:
        assert "%s is not covered" % h not in detail
    assert "tn1.example.test" in (r.stderr + r.stdout.decode())


def test_each_uncovered_host_named(agent, pki):
    r, checks = verify(agent, "--cert", pki.partial.id, rc=1)
    assert checks["coverage"]["status"] == "fail"
    for h in ("backup.example.test", "tn1.example.test"):
        assert h in checks["coverage"]["detail"], checks["coverage"]
    # the certificate's SANs are listed to help the operator
    assert "primary.example.test" in checks["coverage"]["detail"]
    r, checks = verify(agent, "--cert", pki.elsewhere.id, rc=1)
    for h in HOSTS:
        assert h in checks["coverage"]["detail"], checks["coverage"]
    assert "www.elsewhere.test" in checks["coverage"]["detail"]


def test_human_output_names_uncovered_hosts(agent, pki):
    r = agent.cli("verify", "--cert", pki.partial.id[:12], json=False)
    assert r.rc == 1
    text = r.stdout.decode() + r.stderr
    assert "backup.example.test" in text and "tn1.example.test" in text


def test_default_that_does_not_cover(agent, pki):
    r = agent.cli("cert", "default", pki.partial.id, check=0)
    assert set(r.data["uncovered"]) == {"backup.example.test", "tn1.example.test"}
    try:
        r, checks = verify(agent, rc=1)
        assert r.data["certificate"]["id"] == pki.partial.id
        assert "backup.example.test" in checks["coverage"]["detail"]
    finally:
        agent.cli("cert", "default", pki.ec_wild.id, check=0)


def test_expires_in_28_days_warns(agent, pki):
    r, checks = verify(agent, "--cert", pki.short28.id, rc=0)
    assert statuses(checks) == {"coverage": "ok", "chain": "ok", "key": "ok", "validity": "warn"}
    assert re.search(r"\b(27|28)\b", checks["validity"]["detail"]), checks["validity"]
    w = agent.certs()[pki.short28.id]["warnings"]
    assert any(re.fullmatch(r"expires in (27|28) days", x) for x in w), w


def test_expires_in_20_days_fails(agent, pki):
    r, checks = verify(agent, "--cert", pki.short20.id, rc=1)
    assert statuses(checks) == {"coverage": "ok", "chain": "ok", "key": "ok", "validity": "fail"}
    assert re.search(r"\b(19|20)\b", checks["validity"]["detail"]), checks["validity"]


def test_expired_fails(agent, pki):
    r, checks = verify(agent, "--cert", pki.expired.id, rc=1)
    assert checks["validity"]["status"] == "fail"
    assert "expired" in checks["validity"]["detail"].lower()
    assert checks["coverage"]["status"] == "fail"          # tn1 is not in its SANs


def test_key_missing_fails(agent, pki):
    r, checks = verify(agent, "--cert", pki.g_ec_wild.id, rc=1)
    assert statuses(checks) == {"coverage": "ok", "chain": "ok", "key": "fail", "validity": "ok"}


def test_chain_incomplete_fails(agent, tmp_path):
    d = str(tmp_path)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", d + "/ca.key", "-subj", "/CN=Unknown Root CA", "-days", "100",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
            "-out", d + "/ca.pem")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", d + "/l.key", "-subj", "/CN=support.example.test", "-out", d + "/l.csr")
    write(d + "/e.ext", "[e]\nsubjectAltName = DNS:support.example.test,DNS:*.example.test\n"
          "basicConstraints = CA:FALSE\n")
    openssl("x509", "-req", "-in", d + "/l.csr", "-CA", d + "/ca.pem", "-CAkey", d + "/ca.key",
            "-days", "90", "-extfile", d + "/e.ext", "-extensions", "e", "-out", d + "/l.pem")
    r = agent.cli("import", d + "/l.pem", d + "/l.key", check=0)
    lid = [i["id"] for i in r.data["items"] if i["kind"] == "identity"][0]
    r, checks = verify(agent, "--cert", lid, rc=1)
    assert statuses(checks) == {"coverage": "ok", "chain": "fail", "key": "ok", "validity": "ok"}


def test_multi_san_ok_on_a_cluster_it_covers(agent_factory, pki):
    """The default configuration (primary + peer backup): rsa_multi covers it."""
    a = agent_factory()
    r = a.cli("verify")                      # no default certificate yet
    assert r.rc == 1, r.describe()
    assert "default" in r.message.lower() or "default" in r.stdout.decode().lower(), r.describe()
    a.cli("import", pki.rsa_multi.file("p12"), "--password-file", pki.password_file, check=0)
    a.cli("cert", "default", pki.rsa_multi.id, check=0)
    r = a.cli("verify", check=0)
    assert r.data["ok"] is True
    assert set(r.data["hosts"]) == {"support.example.test", "primary.example.test", "backup.example.test"}
    assert all(c["status"] == "ok" for c in r.data["checks"]), r.data["checks"]
