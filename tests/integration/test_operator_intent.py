"""What the operator chose is what clients get (issue 10): the default
against the key type preference, renewals, validity dates, days left,
standard output of file-producing commands, self-signed imports, tidying
commands, keyless PKCS#12, promote on a traffic node, a restarted
primary's start-up, `status --check` and small wording.

Real agents made by `certsync cluster init` on 127.0.0.1, real clients
(`openssl s_client`, curl) for what is served.  Every wait is bounded;
every process is stopped by its PID."""

import json
import os
import re
import signal
import subprocess
import time

import pytest

import helpers
from helpers import wait_for
from test_repl_cluster import run_cluster

SITE = "support.example.test"
PRIMARY = "primary.example.test"


@pytest.fixture
def pair(certsync_bin):
    """A primary and a backup, both serving TLS."""
    yield from run_cluster(helpers.init_cluster(
        certsync_bin, (("primary", "primary"), ("backup", "backup")), site=SITE))


def openssl_leaf(folder, name, kind, sans, days=90, ca=False, extra=(), start=None, end=None):
    """A self-signed leaf made with `openssl req -x509` and its key: (cert, key, bundle)."""
    key = os.path.join(folder, name + ".key")
    if kind == "rsa":
        helpers.openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                        "-out", key)
    else:
        helpers.openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-out", key)
    cert = os.path.join(folder, name + ".pem")
    args = ["req", "-x509", "-new", "-key", key, "-out", cert, "-subj",
            "/CN=" + (sans[0] if sans else name)]
    if start or end:
        args += ["-not_before", start, "-not_after", end]
    else:
        args += ["-days", str(days)]
    if sans:
        args += ["-addext", "subjectAltName=" + ",".join("DNS:" + s for s in sans)]
    if not ca:
        args += ["-addext", "basicConstraints=critical,CA:FALSE"]
    helpers.openssl(*(args + list(extra)))
    bundle = helpers.write(os.path.join(folder, name + ".bundle.pem"),
                           helpers.read(key) + helpers.read(cert))
    return cert, key, bundle


def self_signed(node, name, *sans, extra=()):
    args = ["cert", "self-signed", "--name", name, "--country", "US", "--common-name", sans[0]]
    for s in sans:
        args += ["--san", s]
    return node.cli(*(args + list(extra)), check=0).data["certificate"]["id"]


def leaf_id(cert):
    return helpers.cert_id(helpers.pem_cert_ders(helpers.read(cert))[0])


def served(node, sni, *extra):
    """The id of the certificate `openssl s_client` receives (None: none)."""
    return helpers.der_id(helpers.s_client(node.tls_port, sni, *extra))


def curl_served(node, sni):
    """(id the curl client was served, per GET /) — with SNI through
    --resolve, without it by the IP address (curl sends no SNI for one)."""
    url = "https://%s:%d/" % (sni or "127.0.0.1", node.tls_port)
    args = ["curl", "-sk", "--max-time", "20"]
    if sni:
        args += ["--resolve", "%s:%d:127.0.0.1" % (sni, node.tls_port)]
    p = subprocess.run(args + [url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return json.loads(p.stdout)["certificate"]


# ---------------------------------------------------------------------------
# 1. the operator's default wins over the ECDSA/RSA preference
# ---------------------------------------------------------------------------

def test_rsa_default_beats_ecdsa_self_signed(pair, tmp_path):
    primary, backup = pair
    # The appliance's own self-signed certificate (ECDSA), the first default.
    own_id = self_signed(primary, "appliance", PRIMARY, SITE, "backup.example.test")
    # The CA-issued RSA certificate for the same names, made the default.
    cert, _, bundle = openssl_leaf(str(tmp_path), "ca-issued", "rsa",
                                   [SITE, PRIMARY, "backup.example.test"], days=200)
    rsa_id = leaf_id(cert)
    primary.import_(bundle)
    primary.cli("cert", "default", rsa_id[:12], check=0)
    for node in (primary, backup):
        for sni in (SITE, node.hostname, None, "unknown.example.test"):
            # openssl offers ECDSA: it still gets the operator's RSA default.
            wait_for("%s to serve the RSA default for SNI %s" % (node.name, sni),
                     lambda: served(node, sni) == rsa_id, timeout=10)
            assert served(node, sni, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256") \
                == rsa_id
            assert served(node, sni, "-sigalgs", "RSA-PSS+SHA256:RSA+SHA256") == rsa_id
            assert curl_served(node, sni) == rsa_id
        # A client that cannot take RSA gets the covering ECDSA certificate.
        assert served(node, SITE, "-sigalgs", "ECDSA+SHA256") == own_id
        assert served(node, None, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256") \
            == own_id
    res = primary.cli("verify", "--cluster", check=0)
    tls = [c for c in res.data["checks"] if c["check"] == "tls"]
    assert len(tls) == 4 and all(c["status"] == "ok" for c in tls), res.describe()


# ---------------------------------------------------------------------------
# 2. a renewal of the default becomes the default
# ---------------------------------------------------------------------------

def test_renewal_of_default_takes_over(pair, pki):
    primary, backup = pair
    names = [SITE, PRIMARY, "backup.example.test"]
    old = pki.make_leaf("i10-old", "ec:p256", names, days=100)
    new = pki.make_leaf("i10-new", "ec:p256", names, days=300)
    keyless = pki.make_leaf("i10-keyless", "ec:p256", names, days=400)
    primary.import_(old.file("bundle.pem"))
    assert primary.status()["default"]["id"] == old.id
    # A renewal without its key cannot be served: the default stays.
    primary.import_(keyless.file("chain.pem"))
    assert primary.status()["default"]["id"] == old.id
    res = primary.import_(new.file("bundle.pem"))
    said = [i for i in res.data["items"] if i["action"] == "default"]
    assert [i["id"] for i in said] == [new.id], res.describe()
    assert "now the default" in said[0]["message"]
    text = primary.cli("import", new.file("bundle.pem"), json=False, check=0).stdout.decode()
    assert "already" in text
    assert primary.status()["default"]["id"] == new.id
    for node in (primary, backup):
        for sni in (None, SITE):
            wait_for("%s to serve the renewal for SNI %s" % (node.name, sni),
                     lambda: served(node, sni) == new.id, timeout=10)
    # The operator can still choose the old one.
    primary.cli("cert", "default", old.id[:12], check=0)
    assert primary.status()["default"]["id"] == old.id
    wait_for("the old default to be served again", lambda: served(primary, None) == old.id,
             timeout=10)


# ---------------------------------------------------------------------------
# 3. expired and not-yet-valid certificates
# ---------------------------------------------------------------------------

def test_expired_and_future_certificates(agent_factory, pki):
    agent = agent_factory()
    names = ["support.example.test", "primary.example.test"]
    expired = pki.make_leaf("i10-expired", "ec:p256", names, startdate="20200101000000Z",
                            enddate="20210101000000Z")
    future = pki.make_leaf("i10-future", "ec:p256", names, startdate="20400101000000Z",
                           enddate="20410101000000Z")
    # Neither becomes the default by being the first with a key.
    agent.import_(expired.file("bundle.pem"))
    agent.import_(future.file("bundle.pem"))
    assert agent.status()["default"] is None
    res = agent.cli("cert", "default", expired.id[:12], check=1)
    assert "expired on 2021-01-01" in res.message and res.data["error"]["code"] == "refused"
    res = agent.cli("cert", "default", future.id[:12], check=1)
    assert "not valid until 2040-01-01" in res.message
    assert agent.status()["default"] is None
    warnings = agent.certs()[future.id]["warnings"]
    assert "not valid until 2040-01-01" in warnings, warnings
    text = agent.cli("cert", "list", json=False, check=0).stdout.decode()
    assert "not valid until 2040-01-01" in text
    # A valid one becomes the default; the later-expiring future one never
    # takes over from it, nor is it served.
    valid = pki.make_leaf("i10-valid", "ec:p256", names, days=60)
    agent.import_(valid.file("bundle.pem"))
    assert agent.status()["default"]["id"] == valid.id


# ---------------------------------------------------------------------------
# 4. days left agree everywhere
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("days,text", [(10, "expires in 10 days"), (1, "expires in 1 day")])
def test_days_left_agree(agent_factory, days, text):
    agent = agent_factory()
    cid = self_signed(agent, "short", "support.example.test", "primary.example.test",
                      "backup.example.test", extra=("--days", str(days)))
    assert text in agent.certs()[cid]["warnings"]
    listing = agent.cli("cert", "list", json=False, check=0).stdout.decode()
    assert text in listing
    res = agent.cli("verify", check=1)
    validity = [c for c in res.data["checks"] if c["name"] == "validity"][0]
    assert validity["detail"].startswith(text), validity
    assert text in agent.cli("verify", json=False, check=1).stdout.decode()


# ---------------------------------------------------------------------------
# 5. commands whose standard output is a file print only that file
# ---------------------------------------------------------------------------

def test_csr_create_stdout_is_the_pem(agent_factory, tmp_path):
    agent = agent_factory()
    res = agent.cli("csr", "create", "--name", "web", "--country", "US", "--common-name",
                    "www.example.test", "--san", "www.example.test", "--san", "example.test",
                    json=False, check=0)
    out = res.stdout.decode()
    assert re.fullmatch(r"-----BEGIN CERTIFICATE REQUEST-----\n[A-Za-z0-9+/=\n]+"
                        r"-----END CERTIFICATE REQUEST-----\n", out), res.describe()
    assert "created request" in res.stderr, res.describe()
    req = helpers.write(str(tmp_path / "req.pem"), res.stdout)
    # The file is what a CA takes: openssl reads and verifies it.
    helpers.openssl("req", "-in", req, "-noout", "-verify")
    shown = agent.cli("csr", "show", "web", json=False, check=0)
    assert shown.stdout == res.stdout and shown.stderr == ""
    cid = self_signed(agent, "site", "support.example.test", "primary.example.test")
    exported = agent.cli("export", cid[:12], json=False, check=0)
    assert exported.stderr == "" and helpers.der_id(exported.stdout) == cid
    assert exported.stdout.decode().startswith("-----BEGIN CERTIFICATE-----")


# ---------------------------------------------------------------------------
# 9. promote on a traffic node; 12. small wording
# ---------------------------------------------------------------------------

@pytest.fixture
def with_traffic(certsync_bin):
    yield from run_cluster(helpers.init_cluster(
        certsync_bin, (("primary", "primary"), ("backup", "backup"), ("tn1", "traffic")),
        site=SITE))


def test_promote_on_traffic_node_says_so_at_once(with_traffic):
    primary, _, tn1 = with_traffic
    for args in (("promote",), ("promote", "--force")):
        res = tn1.cli(*args, check=1)
        msg = res.message.lower()
        assert "traffic nodes cannot be promoted" in msg, res.describe()
        assert "heard" not in msg and "stop it first" not in msg, res.describe()
    assert primary.status()["role"] == "primary"


def test_plurals_and_the_traffic_log_line(certsync_bin):
    primary, tn1 = helpers.init_cluster(certsync_bin, (("primary", "primary"),
                                                       ("tn1", "traffic")), site=SITE)
    tn1.start()
    try:
        wait_for("the traffic node's log line", lambda: "holds no certificates" in tn1.stderr(),
                 timeout=10)
        assert "this traffic node holds no certificates until the primary's arrive" \
            in tn1.stderr()
        primary.start()
        self_signed(primary, "one", SITE, PRIMARY, "tn1.example.test")
        text = primary.cli("status", json=False, check=0).stdout.decode()
        assert re.search(r"counts +1 certificate, 0 CA certificates, 0 requests, "
                         r"0 pending keys\n", text), text
        assert not re.search(r"\b1 [a-z ]*(certificates|requests|keys|workers|connections|"
                             r"reloads)\b", text), text
    finally:
        for n in (primary, tn1):
            if n.running:
                assert n.stop() == 0


# ---------------------------------------------------------------------------
# 6. a self-signed server certificate marked CA:TRUE
# ---------------------------------------------------------------------------

def test_self_signed_ca_true_with_names_is_an_identity(agent_factory, tmp_path):
    agent = agent_factory()
    names = ["support.example.test", "primary.example.test", "backup.example.test"]
    d = str(tmp_path)
    together, _, bundle = openssl_leaf(d, "together", "ec", names, ca=True)
    assert "CA:TRUE" in helpers.openssl_text("x509", "-in", together, "-noout", "-text")
    key_first, key1, _ = openssl_leaf(d, "key-first", "ec", names, ca=True)
    cert_first, key2, _ = openssl_leaf(d, "cert-first", "rsa", names, ca=True)
    # What `openssl req -x509` makes for a CA: no names, it stays a root.
    root, key3, _ = openssl_leaf(d, "a-root", "ec", [], ca=True)

    agent.import_(bundle)
    c = agent.certs()[leaf_id(together)]
    assert (c["kind"], c["has_key"], c["default"]) == ("identity", True, True), c
    assert "key missing" not in c["warnings"]

    agent.import_(key1)                      # pending until its certificate comes
    assert agent.status()["counts"]["pending_keys"] == 1
    agent.import_(key_first)
    c = agent.certs()[leaf_id(key_first)]
    assert (c["kind"], c["has_key"]) == ("identity", True), c

    agent.import_(cert_first)                # alone: nothing says it is a server's yet
    assert agent.certs()[leaf_id(cert_first)]["kind"] == "root"
    res = agent.import_(key2)
    # (same names: when it expires a second later it renews the default too)
    assert [i["action"] for i in res.data["items"]][:1] == ["key-attached"], res.describe()
    c = agent.certs()[leaf_id(cert_first)]
    assert (c["kind"], c["has_key"]) == ("identity", True), c
    assert agent.status()["counts"]["pending_keys"] == 0
    agent.cli("cert", "default", leaf_id(cert_first)[:12], check=0)

    agent.import_(root)
    agent.import_(key3)
    assert agent.certs()[leaf_id(root)]["kind"] == "root"
    assert agent.status()["counts"]["pending_keys"] == 1


def test_self_signed_identity_is_never_a_root_too(agent_factory, tmp_path):
    """Filed as a root while its key was unknown, then imported with its key,
    then again without it: one record, the identity, and no CA left."""
    agent = agent_factory()
    names = ["support.example.test", "primary.example.test", "backup.example.test"]
    cert, _, bundle = openssl_leaf(str(tmp_path), "late-key", "ec", names, ca=True)
    cid = leaf_id(cert)

    def listed():
        return [c for c in agent.cli("cert", "list", check=0).data["certificates"]
                if c["id"] == cid]

    agent.import_(cert)
    assert [c["kind"] for c in listed()] == ["root"]
    agent.import_(bundle)
    assert [(c["kind"], c["has_key"]) for c in listed()] == [("identity", True)]
    assert agent.status()["counts"]["cas"] == 0
    agent.import_(cert)
    assert [c["kind"] for c in listed()] == ["identity"]
    assert agent.status()["counts"]["cas"] == 0


# ---------------------------------------------------------------------------
# 8. a PKCS#12 without a key imports its certificates
# ---------------------------------------------------------------------------

def test_pkcs12_without_key_imports_its_certificates(agent_factory, pki):
    agent = agent_factory()
    leaf = pki.make_leaf("i10-p12nokey", "ec:p256", ["nokey.example.test"], days=60)
    res = agent.import_(leaf.file("p12-nokey"), password=pki.password_file, check=0)
    got = {i["id"]: i for i in res.data["items"]}
    assert got[leaf.id]["action"] == "added" and "without a key" in got[leaf.id]["message"]
    for cid in leaf.chain_ids:
        assert got[cid]["action"] == "added" and got[cid]["kind"] in ("intermediate", "root")
    c = agent.certs()[leaf.id]
    assert c["kind"] == "identity" and c["has_key"] is False
    assert "key missing" in c["warnings"] and "chain incomplete" not in c["warnings"]
    # Its key, imported afterwards, joins it.
    res = agent.import_(leaf.file("key.pem"))
    assert [i["action"] for i in res.data["items"]] == ["key-attached"], res.describe()
    assert agent.certs()[leaf.id]["has_key"] is True


# ---------------------------------------------------------------------------
# 10. a restarted primary waits to hear its peers before it takes changes
# ---------------------------------------------------------------------------

def test_restarted_primary_starts_before_it_accepts_changes(pair):
    primary, backup = pair
    self_signed(primary, "first", SITE, PRIMARY, "backup.example.test")
    wait_for("the backup to catch up", lambda: backup.status()["seq"] == primary.status()["seq"])
    primary.kill()
    backup.cli("promote", "--force", check=0)
    self_signed(backup, "on-new-primary", SITE, "backup.example.test",
                extra=("--wait", "none"))
    # The promoted backup is paused: the old primary cannot hear it for now.
    os.kill(backup.pid, signal.SIGSTOP)
    try:
        primary.start(wait=False)
        wait_for("the old primary's control socket",
                 lambda: helpers.socket_accepts(primary.control_socket), timeout=30)
        st = primary.status()
        assert st["replication"]["sync"] == "starting", st["replication"]
        assert "starting" in primary.cli("status", json=False, check=0).stdout.decode()
        res = primary.cli("cert", "self-signed", "--name", "diverges", "--country", "US",
                          "--common-name", SITE, "--san", SITE, "--wait", "none")
        assert res.rc == 1, res.describe()
        assert "starting" in res.message and "retry" in res.message, res.describe()
    finally:
        os.kill(backup.pid, signal.SIGCONT)
    # It hears the higher epoch and steps down; nothing diverged anywhere.
    wait_for("the old primary to step down", lambda: primary.status()["role"] == "backup",
             timeout=20)
    for node in (primary, backup):
        assert node.cli("diverged", "list", check=0).data["diverged"] == []
    assert "diverges" not in [c["name"] for c in backup.certs().values()]


# ---------------------------------------------------------------------------
# 11. status --check and /healthz
# ---------------------------------------------------------------------------

def healthz(node):
    p = subprocess.run(["curl", "-sk", "--max-time", "20", "-o", "/dev/null", "-w",
                        "%{http_code}", "--resolve", "%s:%d:127.0.0.1" % (SITE, node.tls_port),
                        "https://%s:%d/healthz" % (SITE, node.tls_port)],
                       stdout=subprocess.PIPE, timeout=30)
    return p.stdout.decode()


def check(node):
    return node.cli("status", "--check", json=False)


def test_status_check_and_healthz(pair, pki):
    primary, backup = pair
    res = check(primary)
    assert res.rc == 1 and "no default certificate" in res.stderr, res.describe()
    assert "UNHEALTHY" in res.stdout.decode()
    assert primary.cli("status", json=False).rc == 0     # without --check: as before
    # A default that expires in a few seconds, and another covering one.
    end = time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() + 12))
    soon = pki.make_leaf("i10-soon", "ec:p256", [SITE, PRIMARY, "backup.example.test"],
                         startdate="20200101000000Z", enddate=end)
    primary.import_(soon.file("bundle.pem"))
    assert primary.status()["default"]["id"] == soon.id
    for node in (primary, backup):
        wait_for("%s to be healthy" % node.name, lambda: check(node).rc == 0, timeout=10)
        assert check(node).stdout.decode().count("health     ok") == 1
        assert healthz(node) == "200"
    later = pki.make_leaf("i10-later", "rsa:2048", [SITE, PRIMARY, "backup.example.test",
                                                    "other.example.test"], days=90)
    primary.cli("import", later.file("bundle.pem"), "--wait", "all", check=0)
    assert primary.status()["default"]["id"] == soon.id
    # Once the default has expired: 503 and exit 1, though another is served.
    for node in (primary, backup):
        wait_for("%s to say its default expired" % node.name, lambda: check(node).rc == 1,
                 timeout=30)
        res = check(node)
        assert "default certificate" in res.stderr and "expired on" in res.stderr, \
            res.describe()
        assert served(node, SITE) == later.id
        assert healthz(node) == "503"
    primary.cli("cert", "default", later.id[:12], check=0)
    for node in (primary, backup):
        wait_for("%s healthy again" % node.name, lambda: check(node).rc == 0, timeout=10)
        assert healthz(node) == "200"


def test_status_check_when_the_passphrase_is_refused(certsync_bin):
    primary, backup = helpers.init_cluster(certsync_bin, (("primary", "primary"),
                                                          ("backup", "backup")), site=SITE)
    backup.set_passphrase("not the cluster's passphrase")
    primary.start(wait=False)
    backup.start(wait=False)
    try:
        primary.wait_ready()
        backup.wait_ready()
        # the backup refuses the cluster and never confirms: the change waits for no one
        self_signed(primary, "site", SITE, PRIMARY, "backup.example.test", extra=["--wait", "none"])
        # served once the reloader swaps the table in, just after the answer
        wait_for("the primary to serve the new default", lambda: check(primary).rc == 0,
                 timeout=10)
        wait_for("the backup to refuse the cluster", lambda: backup.status()["replication"]
                 ["refusal"] is not None, timeout=20)
        res = check(backup)
        assert res.rc == 1 and "cluster passphrase does not match" in res.stderr, res.describe()
    finally:
        for n in (primary, backup):
            if n.running:
                n.stop()


# ---------------------------------------------------------------------------
# 7. tidying: key list / key delete, csr delete, cert prune
# ---------------------------------------------------------------------------

def test_key_list_and_delete(agent_factory, pki, tmp_path):
    agent = agent_factory()
    key = os.path.join(str(tmp_path), "lonely.key")
    pki.new_key(key, "ec:p384")
    agent.import_(key, name="lonely")
    keys = agent.cli("key", "list", check=0).data["keys"]
    assert [(k["name"], k["key_type"]) for k in keys] == [("lonely", "ec:p384")], keys
    kid = keys[0]["id"]
    text = agent.cli("key", "list", json=False, check=0).stdout.decode()
    assert kid[:8] in text and "lonely" in text
    res = agent.cli("key", "delete", "0123456789abcdef", check=1)
    assert "no pending key matches" in res.message, res.describe()
    assert agent.cli("key", "delete", check=2).rc == 2
    res = agent.cli("key", "delete", kid[:10], json=False, check=0)
    assert "deleted pending key %s" % kid[:8] in res.stdout.decode()
    assert agent.cli("key", "list", check=0).data["keys"] == []
    assert agent.status()["counts"]["pending_keys"] == 0
    for words in (("key", "--help"), ("key", "list", "--help"), ("key", "delete", "--help"),
                  ("csr", "delete", "--help"), ("cert", "prune", "--help")):
        res = agent.cli(*words, json=False, check=0)
        assert b"usage" in res.stdout.lower() or b"certsync" in res.stdout, res.describe()


def test_csr_delete_deletes_its_key(agent_factory):
    agent = agent_factory()
    agent.cli("csr", "create", "--name", "web", "--country", "US", "--common-name",
              "www.example.test", "--san", "www.example.test", check=0)
    res = agent.cli("csr", "delete", "web", json=False, check=0)
    assert "deleted request" in res.stdout.decode()
    assert "sealed private key" in res.stdout.decode()
    assert agent.cli("csr", "list", check=0).data["requests"] == []
    assert agent.status()["counts"]["requests"] == 0
    res = agent.cli("csr", "delete", "web", check=1)
    assert "no request matches" in res.message, res.describe()


def test_cert_prune_expired(agent_factory, pki):
    agent = agent_factory()
    names = ["support.example.test", "primary.example.test"]
    valid = pki.make_leaf("i10-prune-valid", "ec:p256", names, days=60)
    old = pki.make_leaf("i10-prune-old", "ec:p256", ["old.example.test"],
                        startdate="20190101000000Z", enddate="20200101000000Z")
    agent.import_(valid.file("bundle.pem"))
    agent.import_(old.file("bundle.pem"))
    before = agent.snapshot()
    res = agent.cli("cert", "prune", "--expired", check=0)
    assert res.data["deleted"] is False
    assert [c["id"] for c in res.data["certificates"]] == [old.id]
    text = agent.cli("cert", "prune", "--expired", json=False, check=0).stdout.decode()
    assert "would delete %s" % old.id[:8] in text and "--yes" in text
    assert agent.snapshot() == before                  # a dry run changes nothing
    res = agent.cli("cert", "prune", "--expired", "--older-than", "36500", check=0)
    assert res.data["certificates"] == []
    for bad in (("cert", "prune"), ("cert", "prune", "--expired", "--older-than", "soon"),
                ("cert", "prune", "--expired", "--older-than", "-1"),
                ("cert", "prune", "--expired", "--older-than")):
        res = agent.cli(*bad, check=2)
        assert res.data["error"]["code"] == "usage", res.describe()
    assert agent.snapshot() == before
    res = agent.cli("cert", "prune", "--expired", "--older-than", "30", "--yes", check=0)
    assert res.data["deleted"] is True and [c["id"] for c in res.data["certificates"]] == \
        [old.id]
    certs = agent.certs()
    assert old.id not in certs and valid.id in certs and certs[valid.id]["default"]
