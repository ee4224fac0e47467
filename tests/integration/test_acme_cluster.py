"""A three-node cluster obtains its own certificates from a real ACME server
(issue 13): Debian's pebble, resolving through pebble-challtestsrv's DNS (or
BIND9's named for dns-01), with every node on its own loopback address
(primary 127.0.0.11, backup .12, tn1 .13).  The site hostname resolves to a
node other than the primary, so only replication brings that node what the
CA asks of it.  What a user checks is checked: `openssl s_client` against
every node's TLS endpoint with each name, verified against pebble's root.
"""

import pytest

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
