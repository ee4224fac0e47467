"""The agent's ACME (issue 13), one node against Debian's pebble with
pebble-challtestsrv as its DNS (every name resolves to 127.0.0.1): `acme add`
obtains a certificate through http-01 (the agent's http_listen answers
pebble's validator) or tls-alpn-01 (the agent's own TLS endpoint answers
acme-tls/1), stores it and serves it, and `openssl s_client` verifies what
the endpoint serves against pebble's root.  Then the bad inputs of the
configuration and of `acme add`, each refused with its message and nothing
stored.  The three-node, failover and docker cases live in their own files.
"""

import contextlib
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest

import helpers
from test_acme_client import Pebble, Stub, TLSFiles

SITE = "support.example.test"
HOST = "primary.example.test"


class AcmeAgent(helpers.Agent):
    """A single node with a TLS endpoint, an http-01 listener and [acme]."""

    def __init__(self, binary, workdir, pebble, tls, acme_extra="", node_extra=""):
        self.tls_port = pebble.tlsport
        self.http_port = pebble.httpport
        self.pebble, self.tlsfiles = pebble, tls
        self.acme_extra, self.node_extra = acme_extra, node_extra
        super().__init__(binary, workdir, hostname=HOST, site=SITE, peers=())

    def config_text(self):
        t = super().config_text()
        node = "tls_listen = 127.0.0.1:%d\nhttp_listen = 127.0.0.1:%d\n%s" % (
            self.tls_port, self.http_port, self.node_extra)
        t = t.replace("\n\n[cluster]", "\n" + node + "\n[cluster]", 1)
        return t + ("\n[acme]\ndirectory = %s\ncontact = mailto:ops@example.test\n"
                    "agree_tos = yes\nca_file = %s\ncheck_timeout = 10\n%s" % (
                        self.pebble.dir_url, self.tlsfiles.ca, self.acme_extra))


class PebbleOnPorts(Pebble):
    """Pebble whose validator connects to the agent's ports."""

    def __init__(self, d, tls, **kw):
        self.httpport, self.tlsport = helpers.free_port(), helpers.free_port()
        super().__init__(d, tls, httpport=self.httpport, tlsport=self.tlsport, **kw)


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return TLSFiles(str(tmp_path_factory.mktemp("tls")), "pebble")


def running_pebble(tmp_path, tls, env=None):
    os.makedirs(str(tmp_path / "pebble"), exist_ok=True)
    pb = PebbleOnPorts(tmp_path / "pebble", tls, env=env)
    pb.start()
    yield pb
    pb.stop()


@pytest.fixture
def pebble(tmp_path, tls):
    yield from running_pebble(tmp_path, tls)


@pytest.fixture
def agent(certsync_bin, tmp_path, pebble, tls):
    a = AcmeAgent(certsync_bin, tmp_path / "node", pebble, tls).start()
    yield a
    stop_clean(a)


def stop_clean(a):
    """SIGTERM by PID; the agent must exit 0 (the sanitizer build exits
    otherwise on a leak or an error)."""
    if a.running:
        rc = a.stop()
        assert rc == 0, "%s exited %s:\n%s" % (a.name, rc, a.stderr()[-3000:])


def managed(agent, name):
    res = agent.cli("acme", "show", name, check=0)
    return res.data


def wait_issued(agent, name, timeout=120):
    """Waits until the managed certificate holds a certificate; returns it."""
    last = {}

    def done():
        last["m"] = managed(agent, name)
        assert last["m"]["state"] != "failed", last["m"]
        return last["m"]["certificate"] is not None

    try:
        helpers.wait_for("%s issued" % name, done, timeout=timeout, step=0.5)
    except AssertionError:
        raise AssertionError("not issued: %s\n%s" % (last.get("m"), agent.stderr()[-3000:]))
    return last["m"]


def s_client(port, name, root):
    """openssl s_client with SNI name, verifying against root: (verify
    result line, the served leaf's SANs)."""
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-servername", name, "-CAfile", root, "-verify_return_error",
                        "-verify_hostname", name, "-showcerts"],
                       input=b"", capture_output=True, timeout=30)
    out = p.stdout.decode(errors="replace")
    verify = [l.strip() for l in out.splitlines() if "Verify return code" in l]
    ders = helpers.pem_cert_ders(p.stdout)
    text = helpers.openssl_text("x509", "-inform", "DER", "-noout", "-ext", "subjectAltName",
                                input=ders[0]) if ders else ""
    return p.returncode, verify, text


def issue_and_serve(agent, pebble, tmp_path, challenge):
    root = str(tmp_path / "pebble-root.pem")
    helpers.write(root, pebble.root_pem())
    res = agent.cli("acme", "add", "site", "--domain", SITE, "--domain", HOST,
                    "--challenge", challenge, "--default", check=0)
    assert res.data["name"] == "site" and res.data["uncovered"] == []
    m = wait_issued(agent, "site")
    assert m["state"] == "scheduled" and m["failures"] == 0 and m["last_error"] is None
    assert m["renewal_window"]["source"] == "lifetime", m
    assert m["next_attempt"] is not None
    st = agent.status()
    assert st["default"]["id"] == m["certificate"]["id"]
    assert st["acme"]["certificates"]["scheduled"] == 1
    assert st["acme"]["account"]["status"] == "valid"
    # the endpoint serves it to a real client, verified against pebble's root
    for name in (SITE, HOST):
        def served():
            rc, verify, sans = s_client(agent.tls_port, name, root)
            return rc == 0 and verify == ["Verify return code: 0 (ok)"] and name in sans
        helpers.wait_for("%s served and verified" % name, served, timeout=20, step=0.2)
    assert managed(agent, "site")["order"] is None  # done: the order's record is gone
    return m


def test_http01_issue_and_serve(agent, pebble, tmp_path):
    issue_and_serve(agent, pebble, tmp_path, "http-01")
    # http_listen: an unknown token is 404, any other path 301 to https
    base = "http://127.0.0.1:%d" % agent.http_port
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(base + "/.well-known/acme-challenge/unknownToken1", timeout=5)
    assert e.value.code == 404
    req = urllib.request.Request(base + "/x", headers={"Host": SITE})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **kw):
            return None
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.build_opener(NoRedirect).open(req, timeout=5)
    assert e.value.code == 301 and e.value.headers["Location"] == "https://%s/x" % SITE
    # acme list: the human form and the JSON agree
    lst = agent.cli("acme", "list", check=0).data["certificates"]
    assert [c["name"] for c in lst] == ["site"] and lst[0]["state"] == "scheduled"
    text = agent.cli("acme", "list", json=False, check=0).stdout.decode()
    assert "site" in text and "scheduled" in text and "renewal window" in text
    acct = agent.cli("acme", "account", check=0).data["account"]
    assert acct["status"] == "valid" and acct["contact"] == ["mailto:ops@example.test"]


def alpn_handshake(port, name, alpn):
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-servername", name, "-alpn", alpn], input=b"", capture_output=True,
                       timeout=30)
    ders = helpers.pem_cert_ders(p.stdout)
    return p.returncode, helpers.cert_id(ders[0]) if ders else None


def test_tlsalpn01_issue_and_serve(agent, pebble, tmp_path):
    m = issue_and_serve(agent, pebble, tmp_path, "tls-alpn-01")
    # once validated no challenge certificate is left: a client offering
    # acme-tls/1 alone is refused; one that offers it among others is a
    # normal client and gets the certificate the node serves
    rc, served = alpn_handshake(agent.tls_port, SITE, "acme-tls/1")
    assert rc != 0 and served is None
    rc, served = alpn_handshake(agent.tls_port, SITE, "h2,acme-tls/1")
    assert rc == 0 and served == m["certificate"]["id"]


def test_renew_now_replaces_default(agent, pebble, tmp_path):
    first = issue_and_serve(agent, pebble, tmp_path, "http-01")
    agent.cli("acme", "renew", "site", check=0)

    def renewed():
        m = managed(agent, "site")
        return m["certificate"] and m["certificate"]["id"] != first["certificate"]["id"]
    helpers.wait_for("renewed", renewed, timeout=120, step=0.5)
    m = managed(agent, "site")
    assert agent.status()["default"]["id"] == m["certificate"]["id"]
    # the replaced certificate goes once the node serves the new one
    old_id = first["certificate"]["id"]

    def retired():
        ids = [c["id"] for c in agent.cli("cert", "list", check=0).data["certificates"]]
        return old_id not in ids and m["certificate"]["id"] in ids
    helpers.wait_for("the replaced certificate deleted", retired, timeout=150, step=1)
    root = str(tmp_path / "pebble-root.pem")
    rc, verify, sans = s_client(agent.tls_port, SITE, root)
    assert rc == 0 and verify == ["Verify return code: 0 (ok)"]


def test_validation_failure_stops_and_says_why(certsync_bin, tmp_path, pebble, tls):
    """Pebble's validator cannot reach the node (http_listen is elsewhere
    than pebble's httpPort): the CA's error needs the operator, so the
    certificate is `failed`, with no next attempt, and `acme list` gives the
    CA's words; `acme renew` schedules it again."""
    # the monitor evaluates every second and alerts at once
    a = AcmeAgent(certsync_bin, tmp_path / "node", pebble, tls,
                  acme_extra="\n[alerts]\ngrace = 0\ninterval = 1\n")
    a.http_port = helpers.free_port()
    a.write_config()
    a.start()
    try:
        # accepted with the coverage warning `cert default` gives
        assert a.cli("acme", "add", "site", "--domain", SITE, check=0).data["uncovered"] == [HOST]
        text = a.cli("acme", "show", "site", json=False, check=0).stdout.decode()
        assert "site" in text

        def failed():
            return managed(a, "site")["state"] == "failed"
        helpers.wait_for("the order failed", failed, timeout=90, step=0.5)
        m = managed(a, "site")
        assert m["next_attempt"] is None and m["failures"] == 1 and m["certificate"] is None
        assert m["last_error"]["type"] == "urn:ietf:params:acme:error:connection", m
        assert "connection refused" in m["last_error"]["message"], m
        assert a.status()["acme"]["certificates"]["failed"] == 1

        # the primary raises it as an error condition (issue 14), with the CA's words
        def alerted():
            return [x for x in a.cli("alerts", check=0).data["active"]
                    if x["key"] == "acme:site"]
        helpers.wait_for("the stopped renewal alerted", alerted, timeout=30, step=0.5)
        alert = alerted()[0]
        assert alert["severity"] == "error", alert
        assert "the ACME renewal of site stopped" in alert["text"], alert
        assert "connection refused" in alert["text"], alert
        assert a.cli("status", "--check", check=None).rc == 1
        text = a.cli("acme", "list", json=False, check=0).stdout.decode()
        assert "failed" in text and "connection refused" in text
        assert a.cli("acme", "renew", "site", check=0).data["state"] == "scheduled"
    finally:
        stop_clean(a)


def test_prevalidation_names_the_node_not_ready(certsync_bin, tmp_path, pebble, tls):
    """A peer whose http_endpoint does not answer the token: the CA is not
    told to validate; after check_timeout the error names that node, and
    the attempt is retried later (transient)."""
    dead = helpers.free_port()
    a = AcmeAgent(certsync_bin, tmp_path / "node", pebble, tls)
    a.acme_extra = "check_timeout = 2\n"
    a.peers = [("tn1", "traffic", "tn1.example.test")]
    text = a.config_text().replace("check_timeout = 10\n", "")
    text = text.replace("hostname = tn1.example.test\n",
                        "hostname = tn1.example.test\nhttp_endpoint = 127.0.0.1:%d\n" % dead)
    helpers.write(a.config, text)
    a.start()
    try:
        a.cli("acme", "add", "site", "--domain", SITE, check=0)

        def failed_once():
            return managed(a, "site")["failures"] >= 1
        helpers.wait_for("the check failed", failed_once, timeout=60, step=0.5)
        m = managed(a, "site")
        assert m["last_error"]["message"].startswith("node tn1 is not ready: "), m
        assert "127.0.0.1:%d" % dead in m["last_error"]["message"]
        assert m["state"] == "scheduled" and m["next_reason"] == "retry 1 after a transient error"
    finally:
        stop_clean(a)


def test_ca_down_backs_off_and_keeps_serving(agent, pebble, tmp_path):
    """The CA stops answering: the renewal fails as transient, is retried
    after a backoff (state scheduled, a next attempt, the reason), and the
    certificate obtained before stays served."""
    first = issue_and_serve(agent, pebble, tmp_path, "http-01")
    pebble.stop()
    agent.cli("acme", "renew", "site", check=0)

    def backed_off():
        m = managed(agent, "site")
        return m["failures"] >= 1
    helpers.wait_for("a failure recorded", backed_off, timeout=90, step=0.5)
    m = managed(agent, "site")
    assert m["state"] == "scheduled" and m["next_attempt"] is not None, m
    assert "retry 1 after a transient error" == m["next_reason"], m
    assert m["certificate"]["id"] == first["certificate"]["id"]
    assert agent.running
    rc, verify, sans = s_client(agent.tls_port, SITE, str(tmp_path / "pebble-root.pem"))
    assert rc == 0 and verify == ["Verify return code: 0 (ok)"]


def test_ca_that_lost_the_account_gets_the_key_again(agent, pebble, tmp_path):
    """Pebble keeps its accounts in memory: started again, it no longer knows
    the cluster's.  The next renewal registers the same key again and goes
    on with a new order, rather than stopping until the operator acts."""
    first = issue_and_serve(agent, pebble, tmp_path, "http-01")
    before = agent.cli("acme", "account", check=0).data["account"]["url"]
    pebble.stop()
    pebble.start()
    agent.cli("acme", "renew", "site", check=0)

    def renewed():
        m = managed(agent, "site")
        assert m["state"] != "failed", m
        return m["certificate"] and m["certificate"]["id"] != first["certificate"]["id"]
    helpers.wait_for("renewed under the account registered again", renewed, timeout=120,
                     step=0.5)
    after = agent.cli("acme", "account", check=0).data["account"]["url"]
    assert after and after != before
    assert "no longer knows the cluster's account" in agent.stderr()


# ---- bad input ---------------------------------------------------------------------

@pytest.mark.parametrize("acme,message", [
    ("directory = http://ca.example.test/dir\ncontact = mailto:a@example.test\nagree_tos = yes\n",
     "give the https:// URL"),
    ("directory = https://ca.example.test/dir\ncontact = mailto:a@example.test\nagree_tos = no\n",
     "agree_tos must be yes"),
    ("directory = https://ca.example.test/dir\ncontact = a@example.test\nagree_tos = yes\n",
     "give one mailto: address"),
    ("directory = https://ca.example.test/dir\nagree_tos = maybe\n", "write yes"),
    ("directory = https://ca.example.test/dir\nagree_tos = yes\nkey = dsa:1024\n", "[acme] key"),
    ("directory = https://ca.example.test/dir\nagree_tos = yes\neab_kid = kid-1\n"
     "eab_hmac_file = HMAC\n", "does not hold a base64url HMAC key"),
    ("directory = https://ca.example.test/dir\nagree_tos = yes\ndns_server = 127.0.0.1:53\n"
     "dns_tsig_key_file = TSIG\n", "dns_tsig_key_file"),
    ("directory = https://ca.example.test/dir\nagree_tos = yes\ndns_server = nowhere\n",
     "write HOST:PORT"),
    ("directory = https://ca.example.test/dir\nagree_tos = yes\nbogus = 1\n",
     "unknown key 'bogus' in [acme]"),
    ("contact = mailto:a@example.test\n", "[acme] needs directory"),
])
def test_config_refused(certsync_bin, tmp_path, acme, message):
    hmac = str(tmp_path / "hmac")
    helpers.write(hmac, "not base64url!\n", mode=0o600)
    tsig = str(tmp_path / "tsig.key")
    helpers.write(tsig, "key \"k\" { algorithm hmac-sha256; secret ; };\n", mode=0o600)
    a = helpers.Agent(certsync_bin, tmp_path / "node", peers=())
    helpers.write(a.config, a.config_text() + "\n[acme]\n" +
                  acme.replace("HMAC", hmac).replace("TSIG", tsig))
    a.start(wait=False)
    rc = a.wait_exit(timeout=30)
    assert rc == 2, a.stderr()
    assert message in a.stderr(), a.stderr()
    assert not os.path.exists(os.path.join(a.data_dir, "data.mdb"))


def test_http_listen_refused(certsync_bin, tmp_path):
    a = helpers.Agent(certsync_bin, tmp_path / "node", peers=())
    helpers.write(a.config, a.config_text().replace(
        "\n\n[cluster]", "\nhttp_listen = port80\n\n[cluster]", 1))
    a.start(wait=False)
    assert a.wait_exit(timeout=30) == 2
    assert "http_listen = port80: write ADDR:PORT" in a.stderr()


@pytest.mark.parametrize("args,message,code", [
    (["--domain", "*.example.test"], "is a wildcard, which CAs validate only with dns-01", 2),
    (["--domain", "bad..name.example.test"], "is not a valid DNS name", 2),
    (["--domain", "x.example.test", "--challenge", "dns-01"],
     "--challenge dns-01 needs dns_server", 2),
    (["--domain", "x.example.test", "--challenge", "http-02"], "use http-01", 2),
    (["--domain", "x.example.test", "--key", "rsa:1024"], "--key rsa:1024", 1),
    (["--domain", "127.0.0.1", "--challenge", "tls-alpn-01"], "is an IP address", 2),
    (["--domain", "x.example.test", "--profile", "nosuchprofile"], "is not offered", 2),
])
def test_add_refused(agent, args, message, code):
    before = agent.snapshot()
    res = agent.cli("acme", "add", "bad", *args, check=code)
    assert message in res.message, res.describe()
    assert agent.cli("acme", "list", check=0).data["certificates"] == []
    assert agent.snapshot() == before


def test_add_refused_bad_directory(certsync_bin, tmp_path, pebble, tls):
    """A directory that does not answer, and one whose HTTPS the ca_file
    does not trust: refused at `acme add`, nothing stored."""
    other = TLSFiles(str(tmp_path), "other")
    for directory, ca, message in (
            ("https://127.0.0.1:%d/dir" % helpers.free_port(), tls.ca, "[acme] directory"),
            (pebble.dir_url, other.ca, "[acme] directory")):
        a = AcmeAgent(certsync_bin, tmp_path / ("n%d" % helpers.free_port()), pebble, tls)
        a.pebble = type("P", (), {"dir_url": directory})()
        a.tlsfiles = type("T", (), {"ca": ca})()
        a.write_config()
        a.start()
        try:
            res = a.cli("acme", "add", "x", "--domain", SITE, check=1)
            assert message in res.message, res.describe()
            assert a.cli("acme", "list", check=0).data["certificates"] == []
        finally:
            stop_clean(a)


def test_commands_on_missing_name(agent):
    for cmd in ("show", "renew", "remove"):
        res = agent.cli("acme", cmd, "nosuch", check=1)
        assert "no managed certificate is named nosuch" in res.message


def test_http01_bad_requests(agent):
    base = "http://127.0.0.1:%d/.well-known/acme-challenge/" % agent.http_port
    for path, code in (("a" * 200, 400), ("..%2f..%2fetc%2fpasswd", 404),
                       ("tok.en", 404)):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + path, timeout=5)
        assert e.value.code == code, path


# ---- two nodes: the CA asks the backup ----------------------------------------------

class AcmeClusterNode(helpers.ClusterNode):
    def __init__(self, *a, acme="", **kw):
        self.acme = acme
        super().__init__(*a, **kw)

    def config_text(self):
        return super().config_text() + self.acme


def two_nodes(certsync_bin, pebble, tls):
    """A primary on 127.0.0.11 and a backup on 127.0.0.12 from `cluster
    init` with HTTP_LISTEN, both with [acme]; the site hostname resolves to
    the backup in challtestsrv's DNS.  Started, streaming."""
    folder = os.path.join(helpers.short_tmpdir(), "cluster")
    ips = {"primary": "127.0.0.11", "backup": "127.0.0.12"}
    specs = []
    for name, role in (("primary", "primary"), ("backup", "backup")):
        specs += ["--node", "%s=%s,%s.example.test,tcp://%s:%d,%s:%d,%s:%d" % (
            name, role, name, ips[name], helpers.free_port(), ips[name], pebble.tlsport,
            ips[name], pebble.httpport)]
    helpers.run([certsync_bin, "cluster", "init", folder, "--site", SITE] + specs)
    acme = ("\n[acme]\ndirectory = %s\nagree_tos = yes\nca_file = %s\ncheck_timeout = 20\n"
            % (pebble.dir_url, tls.ca))
    nodes = [AcmeClusterNode(certsync_bin, os.path.join(folder, n), n, r, n + ".example.test",
                             SITE, 0, pebble.tlsport, acme=acme)
             for n, r in (("primary", "primary"), ("backup", "backup"))]
    for n in nodes:
        n.ip = ips[n.name]
    for host, ip in ((SITE, ips["backup"]), ("primary.example.test", ips["primary"]),
                     ("backup.example.test", ips["backup"])):
        pebble.challtest("add-a", {"host": host + ".", "addresses": [ip]})
    for n in nodes:
        n.write_config()
        n.start(wait=False)
    for n in nodes:
        n.wait_ready()
    helpers.wait_for("the backup streams", lambda: nodes[1].status()["replication"]["sync"]
                     == "streaming" and nodes[1].status()["cluster_key"], timeout=30)
    return nodes


@contextlib.contextmanager
def running_pair(certsync_bin, tmp_path, pebble, tls):
    """two_nodes, and pebble's root in a file; each node must exit 0."""
    root = str(tmp_path / "root.pem")
    helpers.write(root, pebble.root_pem())
    nodes = two_nodes(certsync_bin, pebble, tls)
    try:
        yield root, nodes
    finally:
        for n in nodes:
            stop_clean(n)


def serves_verified(node, port, name, root):
    def served():
        p = subprocess.run(["openssl", "s_client", "-connect", "%s:%d" % (node.ip, port),
                            "-servername", name, "-CAfile", root, "-verify_return_error",
                            "-verify_hostname", name], input=b"", capture_output=True,
                           timeout=30)
        return p.returncode == 0 and b"Verify return code: 0 (ok)" in p.stdout
    helpers.wait_for("%s serves %s" % (node.name, name), served, timeout=20, step=0.2)


def test_two_nodes_the_backup_answers(certsync_bin, tmp_path, pebble, tls):
    """The site hostname resolves to the backup, so pebble validates http-01
    against the backup, which answers from its replicated store; both
    nodes' TLS endpoints then serve the certificate, verified against
    pebble's root."""
    with running_pair(certsync_bin, tmp_path, pebble, tls) as (root, nodes):
        primary, backup = nodes
        primary.cli("acme", "add", "site", "--domain", SITE, "--domain", "primary.example.test",
                    "--domain", "backup.example.test", "--default", check=0)
        m = wait_issued(primary, "site")
        # the backup holds the same record and the certificate
        helpers.wait_for("the backup has it", lambda: (managed(backup, "site") or {}).get(
            "certificate") == m["certificate"], timeout=20, step=0.2)
        for node in nodes:
            for name in (SITE, node.hostname):
                serves_verified(node, pebble.tlsport, name, root)
        # changes are the primary's: the backup refuses and names it
        res = backup.cli("acme", "renew", "site", check=1)
        assert "not the primary" in res.message
        assert backup.status()["acme"]["certificates"]["scheduled"] == 1
        # the acme table is in the replicated digest: equal at the same position

        def same_store():
            a, b = primary.status(), backup.status()
            return a["seq"] == b["seq"] and a["digest"] == b["digest"] and b["digest_ok"]
        helpers.wait_for("the same store on both nodes", same_store, timeout=20, step=0.2)


@pytest.fixture
def slow_pebble(tmp_path, tls):
    """Pebble whose validator waits (0 to 15 s) before it validates."""
    yield from running_pebble(tmp_path, tls, env={"PEBBLE_VA_NOSLEEP": "0"})


def test_failover_resumes_the_order(certsync_bin, tmp_path, slow_pebble, tls):
    """The primary is killed once the CA was told to validate; the backup,
    promoted, goes on with the order from its replicated record (same
    account, same order), obtains the certificate and serves it."""
    pebble = slow_pebble
    with running_pair(certsync_bin, tmp_path, pebble, tls) as (root, nodes):
        primary, backup = nodes
        primary.cli("acme", "add", "site", "--domain", SITE, "--domain", "backup.example.test",
                    check=0)
        helpers.wait_for("the CA validating", lambda: "acme site: the CA validates" in
                         primary.stderr(), timeout=60, step=0.1)
        order = managed(backup, "site")["order"]
        assert order is not None and order["next"] == "wait-authz", order
        primary.kill()
        backup.cli("promote", "--force", check=0)
        m = wait_issued(backup, "site", timeout=120)
        assert m["state"] == "scheduled" and m["order"] is None
        # it went on with the same order: the backup made none of its own
        assert "acme site: order created" not in backup.stderr(), backup.stderr()[-3000:]
        assert "acme site: finalized" in backup.stderr()
        assert backup.cli("acme", "account", check=0).data["account"]["url"]
        serves_verified(backup, pebble.tlsport, SITE, root)


def test_restart_resumes_the_order(certsync_bin, tmp_path, slow_pebble, tls):
    """SIGTERM while the CA validates: the agent stops (exit 0) without
    waiting for the CA, the order stays in the store, and the agent started
    again goes on with the same order -- unless pebble's validator came
    while the single node was down, which makes that order invalid: then a
    new one is made, and the certificate is obtained all the same.  (The
    two-node failover test resumes without that race: the backup answers.)"""
    a = AcmeAgent(certsync_bin, tmp_path / "node", slow_pebble, tls).start()
    try:
        a.cli("acme", "add", "site", "--domain", SITE, check=0)
        helpers.wait_for("the CA validating", lambda: "acme site: the CA validates" in
                         a.stderr(), timeout=60, step=0.1)
        stop_clean(a)
        a.start()
        m = wait_issued(a, "site")
        assert m["order"] is None and m["state"] == "scheduled"
        log = a.stderr()
        assert "acme site: finalized" in log
        if " is invalid: " not in log:
            # this run's log: it made no order of its own
            assert "acme site: order created" not in log, log[-3000:]
    finally:
        stop_clean(a)


def test_dns01_wildcard_through_a_hook(certsync_bin, tmp_path, pebble, tls):
    """dns-01 through dns_hook (a program that sets the TXT record in
    pebble-challtestsrv's DNS, which pebble asks): a wildcard and the site
    hostname, served for any one-label name under the wildcard; the hook is
    called to add and to remove each record."""
    calls = str(tmp_path / "hook-calls")
    signals = str(tmp_path / "hook-signals")
    hook = str(tmp_path / "hook")
    # A shell first, reading its own status with builtins (it blocks every
    # signal while it waits for a child): python ignores SIGPIPE itself, so
    # it cannot tell whether it got the agent's signal settings.
    helpers.write(hook, "#!/bin/sh\nwhile read -r k v; do case $k in SigBlk:|SigIgn:) "
                  "echo \"$k $v\" >> %s;; esac; done < /proc/$$/status\n"
                  "exec %s.py \"$@\"\n" % (signals, hook), mode=0o755)
    helpers.write(hook + ".py", """#!/usr/bin/python3
import json, sys, urllib.request
op, name, value = sys.argv[1:4]
with open(%r, "a") as f:
    f.write("%%s %%s\\n" %% (op, name))
path, body = ("set-txt", {"host": name + ".", "value": value}) if op == "add" else \\
             ("clear-txt", {"host": name + "."})
req = urllib.request.Request("http://127.0.0.1:%d/" + path, data=json.dumps(body).encode(),
                             method="POST")
urllib.request.urlopen(req, timeout=10).read()
""" % (calls, pebble.chall_mgmt), mode=0o755)
    a = AcmeAgent(certsync_bin, tmp_path / "node", pebble, tls,
                  acme_extra="dns_hook = %s\n" % hook).start()
    try:
        root = str(tmp_path / "root.pem")
        helpers.write(root, pebble.root_pem())
        res = a.cli("acme", "add", "wild", "--domain", "*.example.test", "--domain", SITE,
                    "--challenge", "dns-01", "--default", check=0)
        assert res.data["uncovered"] == []  # primary.example.test is under the wildcard
        m = wait_issued(a, "wild")
        assert m["challenge"] == "dns-01" and m["domains"] == ["*.example.test", SITE]
        for name in (SITE, "anything.example.test", HOST):
            rc, verify, sans = s_client(a.tls_port, name, root)
            assert rc == 0 and verify == ["Verify return code: 0 (ok)"], (name, verify)
        lines = helpers.read(calls).decode().split("\n")
        for name in ("_acme-challenge.example.test", "_acme-challenge." + SITE):
            assert "add " + name in lines and "remove " + name in lines, lines
        # the hook runs with default signals: none blocked, SIGPIPE not ignored
        for line in helpers.read(signals).decode().splitlines():
            field, mask = line.split()
            if field == "SigBlk:":
                assert int(mask, 16) == 0, line
            else:
                assert int(mask, 16) & (1 << (signal.SIGPIPE - 1)) == 0, line
    finally:
        stop_clean(a)


class PrefixRoutes(dict):
    """Stub routes where a key ending in '/' answers every path under it."""

    def get(self, path, default=None):
        for k in self:
            if k.endswith("/") and path.startswith(k):
                return self[k]
        return super().get(path, default)


def test_ari_window_from_renewal_info(certsync_bin, tmp_path, pebble, tls):
    """Debian's pebble predates ARI (RFC 9773): the agent's directory is a
    stub that lists pebble's endpoints and a renewalInfo of its own.  After
    issuance the renewal window is the one renewalInfo suggests, and the
    next attempt falls inside it."""
    ctx = ssl.create_default_context(cafile=tls.ca)
    with urllib.request.urlopen(pebble.dir_url, context=ctx, timeout=10) as r:
        directory = json.loads(r.read())
    stub = Stub(tls)
    stub.routes = PrefixRoutes(stub.routes)
    directory["renewalInfo"] = stub.url + "/ari/"
    stub.routes["/dir"] = (200, {"Content-Type": "application/json"},
                           json.dumps(directory).encode())
    now = int(time.time())
    start, end = now + 3600, now + 7200
    stub.routes["/ari/"] = (200, {"Content-Type": "application/json", "Retry-After": "21600"},
                            json.dumps({"suggestedWindow": {
                                "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
                                "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end))}
                            }).encode())
    pebble.dir_url = stub.url + "/dir"
    a = AcmeAgent(certsync_bin, tmp_path / "node", pebble, tls).start()
    try:
        a.cli("acme", "add", "site", "--domain", SITE, check=0)
        m = wait_issued(a, "site")
        w = m["renewal_window"]
        assert w["source"] == "ari", m
        assert w["start"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start))
        assert w["end"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end))
        assert w["start"] <= m["next_attempt"] <= w["end"], m
        assert any(p.startswith("/ari/") for _, p, _ in stub.requests)
    finally:
        stop_clean(a)
        stub.stop()


def test_rekey_seals_the_acme_keys_again(agent, pebble, tmp_path):
    """`cluster rekey` seals the ACME account and order keys again with the
    rest: after it, and a restart with the new passphrase, the agent opens
    its account from the store and renews."""
    first = issue_and_serve(agent, pebble, tmp_path, "http-01")
    new = str(tmp_path / "new-passphrase")
    helpers.write(new, "a brand new cluster passphrase\n", mode=0o600)
    agent.cli("cluster", "rekey", "--new-passphrase-file", new, check=0)
    stop_clean(agent)
    agent.set_passphrase("a brand new cluster passphrase")
    agent.start()
    agent.cli("acme", "renew", "site", check=0)

    def renewed():
        m = managed(agent, "site")
        assert m["state"] != "failed", m
        return m["certificate"]["id"] != first["certificate"]["id"]
    helpers.wait_for("renewed after the rekey", renewed, timeout=120, step=0.5)
    assert "does not open" not in agent.stderr()
