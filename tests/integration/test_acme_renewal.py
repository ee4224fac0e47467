"""Managed certificates over time, in the three-node cluster of
test_acme_cluster (pebble, every node on its own loopback address): renewal
of short-lived certificates without a failed handshake, a failover in the
middle of an order, the CA down and back, a CA that rejects half the nonces,
and renewal windows from ARI (RFC 9773) -- Debian's pebble predates ARI, so
PebbleFront, a small HTTPS front in the test, adds the renewalInfo resource.
"""

import calendar
import os
import re
import socket
import ssl
import threading
import time

import pytest

import helpers
from acme_env import (SITE, AcmeCluster, TLSFiles, add, ari_certid, obtain_default, rfc3339,
                      served_everywhere, show, verified_id)

VALIDITY = 90  # s: renewal is due when a third remains, 60-63 s after issuance


def epoch(rfc3339_text):
    return calendar.timegm(time.strptime(rfc3339_text, "%Y-%m-%dT%H:%M:%SZ"))


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return TLSFiles(str(tmp_path_factory.mktemp("tls")), "pebble")


def cluster_fixture(certsync_bin, tmp_path, tls, **kw):
    yield from AcmeCluster(certsync_bin, tmp_path, tls, **kw).run()


class HandshakeWatch:
    """Handshakes with every node's TLS endpoint for every name, over and
    over on a thread, each verified against pebble's root and the name (the
    way a browser would): keeps every one that fails and every certificate
    seen."""

    def __init__(self, cluster, names):
        self.targets = [(n.name, n.address, n.tls_port, name) for n in cluster.nodes
                        for name in names]
        self.ctx = ssl.create_default_context(cafile=cluster.root)
        self.failures, self.seen, self.count = [], set(), 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.is_set():
            for node, addr, port, name in self.targets:
                try:
                    with socket.create_connection((addr, port), timeout=5) as s:
                        with self.ctx.wrap_socket(s, server_hostname=name) as t:
                            self.seen.add(helpers.cert_id(t.getpeercert(binary_form=True)))
                except (OSError, ssl.SSLError) as e:
                    self.failures.append((time.strftime("%H:%M:%S"), node, name, str(e)))
                self.count += 1
            self.done.wait(0.2)

    def stop(self):
        self.done.set()
        self.thread.join(timeout=30)
        return self.failures


@pytest.fixture
def short_cluster(certsync_bin, tmp_path, tls):
    yield from cluster_fixture(certsync_bin, tmp_path, tls, validity=VALIDITY)


def test_renews_by_itself_served_everywhere_without_a_failed_handshake(short_cluster):
    c = short_cluster
    primary = c.node("primary")
    names = c.hostnames()
    first = obtain_default(c, "http-01")
    watch = HandshakeWatch(c, names)
    try:
        # nothing asked for it: the schedule (a third of 90 s left) renews
        second = served_everywhere(c, names, not_id=first, deadline=VALIDITY + 120)
    finally:
        failures = watch.stop()
    assert not failures, "%d of %d handshakes failed: %s" % (len(failures), watch.count,
                                                            failures[:10])
    assert watch.seen == {first, second}, watch.seen
    for n in c.nodes:
        assert n.status()["default"]["id"] == second, n.name
    st = show(primary, "site")
    assert st["state"] == "scheduled", st
    # the certificate it replaced goes once every node serves the new one
    helpers.wait_for("the replaced certificate to be deleted", lambda: all(
        first not in n.certs() for n in c.nodes), timeout=60, step=0.5)


@pytest.fixture
def slow_ca_cluster(certsync_bin, tmp_path, tls):
    # pebble's validation waits 1-8 s before it looks: time to kill the
    # primary while the order is pending
    yield from cluster_fixture(certsync_bin, tmp_path, tls, env={
        "PEBBLE_VA_NOSLEEP": "0", "PEBBLE_VA_SLEEPTIME": "8"})


def test_failover_while_an_order_is_pending(slow_ca_cluster):
    c = slow_ca_cluster
    primary, backup, tn1 = (c.node(n) for n in ("primary", "backup", "tn1"))
    # the primary's own hostname would resolve to a dead node after the kill
    names = [SITE, backup.hostname, tn1.hostname]
    add(primary, "site", names, "http-01", "--default")
    helpers.wait_for("the backup to hold the order in flight", lambda: (
        show(backup, "site").get("order") or {}).get("url"), timeout=60, step=0.02)
    st = show(backup, "site")
    assert not st["certificate"], "issued before the kill: nothing pending"
    order = st["order"]["url"].rsplit("/", 1)[1]
    killed = int(time.time())
    primary.kill()
    helpers.wait_for("the backup to be promoted", lambda: backup.cli("promote").rc == 0,
                     timeout=60, step=0.5)
    cid = served_everywhere(c, names)
    for n in (backup, tn1):
        assert n.status()["default"]["id"] == cid, n.name
    assert show(backup, "site")["state"] == "scheduled"
    # the order the primary started is the one the backup finalized, after the kill
    log = helpers.read(os.path.join(c.pebble.d, "pebble.log")).decode()
    finalized = [epoch(m.group(1).replace("/", "-").replace(" ", "T") + "Z") for m in
                 re.finditer(r"Pebble (\S+ \S+) Order %s is fully authorized" % order, log)]
    assert finalized and min(finalized) >= killed, (order, killed, finalized)
    assert "Issued certificate serial" in log and " for order %s" % order in log


def wait_failed_attempt(node, name):
    """Waits for a failed attempt that left a backed-off schedule; returns
    the managed certificate as `acme show` gives it."""
    def failed():
        st = show(node, name)
        return st if st["last_error"] and st["state"] == "scheduled" else None
    try:
        return helpers.wait_for("an attempt to fail with the CA down", failed, timeout=120)
    except AssertionError as e:
        raise AssertionError("%s: %s" % (e, show(node, name)))


def ca_down_then_up(c, down, up):
    """A certificate served everywhere; the CA down (down()): `acme renew`
    fails, the schedule backs off, `acme list` says why, every node still
    serves the old certificate; the CA back (up()): the next attempt, the
    schedule's own, succeeds.  Returns (old, new) ids."""
    primary = c.node("primary")
    names = c.hostnames()
    first = obtain_default(c, "http-01")
    old_root = os.path.join(c.d, "first-root.pem")
    helpers.write(old_root, helpers.read(c.root))
    due = show(primary, "site")["renewal_time"]

    down()
    primary.cli("acme", "renew", "site", check=0)
    st = wait_failed_attempt(primary, "site")
    assert epoch(st["next_attempt"]) > time.time() + 20, st   # backed off, a minute at first
    # when the certificate is due for renewal stays what it was
    assert due is not None and st["renewal_time"] == due, (due, st)
    listed = {m["name"]: m for m in primary.cli("acme", "list", check=0).data["certificates"]}
    ca = (c.front or c.pebble).dir_url.split("/")[2]   # the CA that does not answer
    assert ca in listed["site"]["last_error"]["message"], listed["site"]
    text = primary.cli("acme", "list", json=False, check=0).stdout.decode()
    assert "site" in text and ca in text, text
    for n in c.nodes:
        assert n.running, n.name
        for name in names:
            assert verified_id(n.address, n.tls_port, name, old_root) == first, (n.name, name)

    up()
    second = served_everywhere(c, names, not_id=first, deadline=300)
    st = show(primary, "site")
    assert st["state"] == "scheduled" and st["last_error"] is None, st
    assert primary.status()["default"]["id"] == second
    return first, second


@pytest.fixture
def fronted_cluster(certsync_bin, tmp_path, tls):
    yield from cluster_fixture(certsync_bin, tmp_path, tls, front=True)


def test_ca_unreachable_backs_off_and_recovers(fronted_cluster):
    """The CA's address refuses connections, then answers again with its
    state (accounts, orders) intact: what an outage of a real CA is."""
    c = fronted_cluster
    ca_down_then_up(c, c.front.down, c.front.up)


@pytest.fixture
def nonce_cluster(certsync_bin, tmp_path, tls):
    yield from cluster_fixture(certsync_bin, tmp_path, tls,
                               env={"PEBBLE_WFE_NONCEREJECT": "50"})


def test_issues_when_the_ca_rejects_half_the_nonces(nonce_cluster):
    c = nonce_cluster
    obtain_default(c, "http-01")
    log = helpers.read(os.path.join(c.pebble.d, "pebble.log")).decode()
    assert "Configured to reject 50% of good nonces" in log


class Windows:
    """renewalInfo's windows: open now for the first certificate asked
    about, an hour from now for any later one."""

    def __init__(self):
        now = int(time.time())
        self.open, self.later = (now - 60, now + 5), (now + 3600, now + 7200)
        self.certids = []

    def __call__(self, certid):
        if certid not in self.certids:
            self.certids.append(certid)
        return self.open if self.certids.index(certid) == 0 else self.later


@pytest.fixture
def ari_cluster(certsync_bin, tmp_path, tls):
    # a day's lifetime: by the lifetime, nothing would be due during the test
    yield from cluster_fixture(certsync_bin, tmp_path, tls, validity=86400,
                               window_for=Windows())


def test_ari_window_drives_the_renewal(ari_cluster):
    c = ari_cluster
    front, windows = c.front, c.front.window_for
    primary = c.node("primary")
    names = c.hostnames()
    add(primary, "site", names, "http-01", "--default")
    # the first certificate's window is open: renewed at once, replacing it
    first = served_everywhere(c, names)
    second = served_everywhere(c, names, not_id=first)
    der = helpers.pem_cert_ders(helpers.s_client(primary.tls_port, SITE,
                                                 host=primary.address))[0]
    assert helpers.cert_id(der) == second
    assert len(front.orders) == 2, front.orders
    assert "replaces" not in front.orders[0]
    assert front.orders[1].get("replaces") == windows.certids[0], front.orders[1]
    # the second's window is an hour away: scheduled inside it, from ARI
    helpers.wait_for("the primary to ask renewalInfo about the new certificate",
                     lambda: ari_certid(der) in front.asked, timeout=60)
    st = helpers.wait_for("the window from ARI", lambda: (
        lambda s: s if (s["renewal_window"] or {}).get("source") == "ari" and
        s["certificate"]["id"] == second else None)(show(primary, "site")), timeout=30)
    w = st["renewal_window"]
    assert (w["start"], w["end"]) == tuple(rfc3339(t) for t in windows.later), st
    assert windows.later[0] <= epoch(st["next_attempt"]) <= windows.later[1], st
    assert st["renewal_time"] == st["next_attempt"], st
    assert windows.certids[1:] == [ari_certid(der)], windows.certids
    assert primary.status()["default"]["id"] == second


class MovingWindows:
    """renewalInfo whose window moves: every certificate's window is two
    hours away when first asked, and three hours away from the second ask
    on; each ask is kept with its time."""

    def __init__(self):
        now = int(time.time())
        self.first, self.moved = (now + 7200, now + 10800), (now + 10800, now + 14400)
        self.asks = []

    def __call__(self, certid):
        seen = any(c == certid for c, _ in self.asks)
        self.asks.append((certid, time.time()))
        return self.moved if seen else self.first


@pytest.fixture
def moving_ari_cluster(certsync_bin, tmp_path, tls):
    yield from cluster_fixture(certsync_bin, tmp_path, tls, validity=86400,
                               window_for=MovingWindows())


def test_ari_window_asked_again_after_retry_after(moving_ari_cluster):
    """The CA moves its window between two asks: once the Retry-After it
    gave has passed the primary asks again, and the schedule `acme show`
    gives follows the new window."""
    c = moving_ari_cluster
    front, windows = c.front, c.front.window_for
    front.retry_after = 61   # just above the one-minute floor of the poll interval
    primary = c.node("primary")
    add(primary, "site", c.hostnames(), "http-01", "--default")
    cid = served_everywhere(c, c.hostnames())

    def window_is(w):
        st = show(primary, "site")
        win = st["renewal_window"] or {}
        ok = (st["certificate"] or {}).get("id") == cid and win.get("source") == "ari" and \
            (win["start"], win["end"]) == tuple(rfc3339(t) for t in w)
        return st if ok else None

    st = helpers.wait_for("the first window from ARI", lambda: window_is(windows.first),
                          timeout=30)
    assert windows.first[0] <= epoch(st["next_attempt"]) <= windows.first[1], st
    st = helpers.wait_for("the moved window after the Retry-After",
                          lambda: window_is(windows.moved), timeout=front.retry_after + 90)
    assert windows.moved[0] <= epoch(st["next_attempt"]) <= windows.moved[1], st
    # asked again once the Retry-After had passed, not before
    times = [t for certid, t in windows.asks if certid == windows.asks[0][0]]
    assert len(times) >= 2 and times[1] - times[0] >= front.retry_after - 1, windows.asks
    assert show(primary, "site")["certificate"]["id"] == cid
