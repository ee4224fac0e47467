"""A three-node cluster obtains its own certificates from a real ACME server
(issue 13): Debian's pebble, resolving through pebble-challtestsrv's DNS (or
BIND9's named for dns-01), with every node on its own loopback address
(primary 127.0.0.11, backup .12, tn1 .13).  The site hostname resolves to a
node other than the primary, so only replication brings that node what the
CA asks of it.  What a user checks is checked: `openssl s_client` against
every node's TLS endpoint with each name, verified against pebble's root.
"""

import re
import time

import pytest

import helpers
from acme_env import (SITE, AcmeCluster, Named, TLSFiles, add, obtain_default, served_everywhere,
                      show)

@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return TLSFiles(str(tmp_path_factory.mktemp("tls")), "pebble")


@pytest.fixture
def http_cluster(certsync_bin, tmp_path, tls):
    yield from AcmeCluster(certsync_bin, tmp_path, tls, site_node="backup").run()


def test_http01_site_on_the_backup(http_cluster):
    c = http_cluster
    primary = c.node("primary")
    names = c.hostnames()
    cid = obtain_default(c, "http-01")
    # the CA reached the backup for the site hostname: only it listens there
    assert c.node("backup").address != primary.address
    for n in c.nodes:
        assert cid in n.certs()
    st = show(primary, "site")
    assert st["state"] == "scheduled", st
    assert sorted(st["domains"]) == sorted(names)
    assert st["certificate"]["id"] == cid and st["last_error"] is None, st


@pytest.fixture
def alpn_cluster(certsync_bin, tmp_path, tls):
    yield from AcmeCluster(certsync_bin, tmp_path, tls, site_node="tn1").run()


def test_tlsalpn01_site_on_a_traffic_node(alpn_cluster):
    c = alpn_cluster
    cid = obtain_default(c, "tls-alpn-01")
    st = show(c.node("primary"), "site")
    assert st["state"] == "scheduled" and st["certificate"]["id"] == cid, st


@pytest.fixture
def named(tmp_path):
    d = tmp_path / "named"
    d.mkdir()
    n = Named(d).start()
    yield n
    n.stop()


@pytest.fixture
def dns_cluster(certsync_bin, tmp_path, tls, named):
    extra = "dns_server = %s\ndns_tsig_key_file = %s\n" % (named.server, named.key)
    yield from AcmeCluster(certsync_bin, tmp_path, tls, dnsserver=named.server,
                           acme_extra=extra).run()


def test_dns01_wildcard_and_site_verify_cluster(dns_cluster, named):
    c = dns_cluster
    primary = c.node("primary")
    add(primary, "wild", ["*.example.test", SITE], "dns-01", "--default")
    cid = served_everywhere(c, c.hostnames())
    r = primary.cli("verify", "--cluster", check=0).data
    assert r["ok"] is True, r
    assert primary.status()["default"]["id"] == cid
    # every TXT record the order needed was added through RFC 2136 and removed
    journal = named.journal()
    adds = [l for l in journal.splitlines() if l.startswith("add _acme-challenge.")]
    dels = [l for l in journal.splitlines() if l.startswith("del _acme-challenge.")]
    assert adds and sorted(a[4:] for a in adds) == sorted(d[4:] for d in dels), journal


# ---- which nodes the pre-validation check waits for ------------------------------

def silent_tn1(c):
    """The primary's [peer tn1] says tn1's http_listen is reached at a port
    of tn1's address where nothing listens: tn1 is heard (replication) but
    never answers the http-01 check.  Returns that endpoint."""
    primary, tn1 = c.node("primary"), c.node("tn1")
    dead = "%s:%d" % (tn1.address, helpers.free_port_on([tn1.address]))
    head, sep, section = primary.generated.partition("\n[peer tn1]\n")
    section, n = re.subn(r"(?m)^http_endpoint = \S+$", lambda _: "http_endpoint = " + dead,
                         section, count=1)
    assert sep and n == 1, primary.generated
    primary.generated = head + sep + section
    return dead


@pytest.fixture
def silent_cluster(request, certsync_bin, tmp_path, tls):
    c = AcmeCluster(certsync_bin, tmp_path, tls,
                    acme_extra="check_timeout = %d\n" % request.param)
    c.dead = silent_tn1(c)
    yield from c.run()


@pytest.mark.parametrize("silent_cluster", [2], indirect=True)
def test_prevalidation_names_the_node_not_ready(silent_cluster):
    """tn1 is up but does not answer the token: the CA is not told to
    validate; after check_timeout the error names tn1 and its endpoint, and
    the attempt is retried later (transient)."""
    c = silent_cluster
    primary = c.node("primary")
    add(primary, "site", [SITE], "http-01")
    m = helpers.wait_for("the check to fail", lambda: (
        lambda m: m if m["failures"] >= 1 else None)(show(primary, "site")), timeout=60)
    assert m["last_error"]["message"].startswith("node tn1 is not ready: "), m
    assert c.dead in m["last_error"]["message"], m
    assert m["state"] == "scheduled" and m["next_reason"] == "retry 1 after a transient error"


@pytest.mark.parametrize("silent_cluster", [120], indirect=True)
def test_stopping_the_primary_ends_a_prevalidation_at_once(silent_cluster):
    """A pre-validation that cannot succeed (tn1 never answers, a 120 s
    check_timeout): the primary stopped in the middle of it exits cleanly
    within seconds, not when the check gives up."""
    c = silent_cluster
    primary = c.node("primary")
    add(primary, "site", [SITE], "http-01")
    helpers.wait_for("the challenges to be published", lambda: "http-01 challenges published"
                     in primary.stderr(), timeout=60)
    time.sleep(1)  # into the check's wait
    started = time.monotonic()
    rc = primary.stop(timeout=20)
    took = time.monotonic() - started
    assert rc == 0, "%s\n%s" % (rc, primary.stderr()[-3000:])
    assert took < 20, took
    # it stopped the check; it did not wait for it to time out
    assert "does not answer yet" not in primary.stderr(), primary.stderr()[-3000:]


@pytest.fixture
def http_cluster_tn1_down(certsync_bin, tmp_path, tls):
    yield from AcmeCluster(certsync_bin, tmp_path, tls, site_node="backup").run()


def test_a_node_not_heard_is_left_out_of_the_check(http_cluster_tn1_down):
    """tn1 is down (its agent stopped): the replication does not hear it,
    the CA cannot reach it either, so the check goes on without it and the
    certificate is obtained and served by the nodes that are up."""
    c = http_cluster_tn1_down
    primary, tn1 = c.node("primary"), c.node("tn1")
    assert tn1.stop() == 0
    helpers.wait_for("the primary to stop hearing tn1", lambda: not {
        p["name"]: p for p in primary.status()["replication"]["peers"]}["tn1"]["reachable"],
        timeout=30)
    names = [SITE, primary.hostname, c.node("backup").hostname]
    add(primary, "site", names, "http-01", "--default")
    cid = served_everywhere(c, names)
    assert show(primary, "site")["certificate"]["id"] == cid
    assert "node tn1 is not heard: the http-01 check leaves it out" in primary.stderr()


@pytest.mark.parametrize("silent_cluster", [120], indirect=True)
def test_a_primary_that_steps_down_ends_its_prevalidation(silent_cluster):
    """The same check that cannot succeed; the backup is promoted by force,
    the primary steps down and its ACME work (status's acme runner) ends
    within seconds, not when the check gives up; every node exits cleanly
    at the end (the fixture's check)."""
    c = silent_cluster
    primary, backup = c.node("primary"), c.node("backup")
    add(primary, "site", [SITE], "http-01")
    helpers.wait_for("the primary to be in the check", lambda: "http-01 challenges published"
                     in primary.stderr() and primary.status()["acme"]["runner"].get(
                         "working_on") == "site", timeout=60)
    backup.cli("promote", "--force", check=0)
    helpers.wait_for("the primary to step down", lambda: primary.status()["role"] != "primary",
                     timeout=30)
    helpers.wait_for("the old primary's ACME work to end", lambda: primary.status()["acme"][
        "runner"].get("working_on") is None, timeout=15)
    assert "does not answer yet" not in primary.stderr(), primary.stderr()[-3000:]
