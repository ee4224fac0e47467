"""Network attacks on one node (issue 11, items 1, 2 and 10): descriptor
exhaustion through the TLS and replication ports, one source address
holding every TLS slot, and a flood of idle or oversized control
connections.  Each attack runs for a bounded time on loopback addresses
(127.0.0.5 stands for "another source") and the test asserts what an
operator would see: `status` answers quickly, the log stays small, and real
clients are served.  Every wait is bounded; processes are stopped by PID."""

import os
import re
import resource
import shutil
import signal
import socket
import ssl
import threading
import time

import pytest

import helpers
from helpers import wait_for

SITE = "support.example.test"
ATTACKER = "127.0.0.5"


class Node(helpers.ClusterNode):
    """A cluster node with extra [node] lines and, optionally, a lower
    descriptor limit (soft and hard, as `ulimit -n` sets them)."""

    extra = ""
    nofile = None

    def config_text(self):
        return super().config_text().replace("\n[cluster]", self.extra + "\n[cluster]", 1)

    def preexec(self):
        if self.nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))


def make_node(binary, extra="", nofile=None):
    """The primary of a primary + backup cluster; the backup never starts."""
    nodes = helpers.init_cluster(binary, (("primary", "primary"), ("backup", "backup")), site=SITE)
    n = nodes[0]
    n.__class__ = Node
    n.extra, n.nofile = extra, nofile
    n.write_config()
    return n


@pytest.fixture
def node_factory(certsync_bin):
    made = []

    def make(extra="", nofile=None, start=True):
        n = make_node(certsync_bin, extra, nofile)
        made.append(n)
        if start:
            n.start()
        return n
    yield make
    problems = []
    for n in made:
        if n.running:
            rc = n.stop(signal.SIGTERM, timeout=30)
            if rc != 0:
                problems.append("%s exited with %s:\n%s" % (n.name, rc, n.stderr()[-3000:]))
        shutil.rmtree(os.path.dirname(os.path.dirname(n.workdir)), ignore_errors=True)
    assert not problems, "\n".join(problems)


def self_signed(node):
    r = node.cli("cert", "self-signed", "--name", "site", "--country", "US", "--common-name", SITE,
                 "--wait", "none",
                 "--san", "primary.example.test", "--san", "backup.example.test", check=0)
    return r.data["certificate"]["id"]


def log_lines(node):
    return node.stderr().count("\n")


def timed_status(node):
    t0 = time.monotonic()
    node.cli("status", check=0)
    return time.monotonic() - t0


def tls_ok(port, timeout=5.0, source="127.0.0.1"):
    """One full TLS handshake and `GET /` from source; True when answered."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                      source_address=(source, 0)) as raw:
            with ctx.wrap_socket(raw, server_hostname=SITE) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return s.recv(4096).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


class Flood:
    """Holds n TCP connections from ATTACKER to port, each sending payload
    (b"" for an idle one) once, and opens a new one whenever the node closes
    one, until stop().  Bounded: it stops by itself after limit seconds."""

    def __init__(self, port, n, payload=b"", limit=60.0):
        self.port, self.n, self.payload = port, n, payload
        self.socks = []
        self.opened = 0
        self.stopping = threading.Event()
        self.deadline = time.monotonic() + limit
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _open(self):
        s = socket.socket()
        s.setblocking(False)
        s.bind((ATTACKER, 0))
        try:
            s.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            return None
        self.opened += 1
        if self.payload:
            try:
                s.setblocking(True)
                s.settimeout(0.5)
                s.sendall(self.payload)
                s.setblocking(False)
            except OSError:
                pass
        return s

    def _alive(self, s):
        try:
            return s.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False

    def _run(self):
        while not self.stopping.is_set() and time.monotonic() < self.deadline:
            keep = []
            for s in self.socks:
                if self._alive(s):
                    keep.append(s)
                else:
                    s.close()
            self.socks = keep
            while len(self.socks) < self.n and not self.stopping.is_set():
                s = self._open()
                if s is None:
                    break
                self.socks.append(s)
            self.stopping.wait(0.2)

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=30)
        for s in self.socks:
            s.close()
        self.socks = []


def run_exhaustion(node, port, seconds=8.0):
    """400 idle connections to port on a node limited to 256 descriptors:
    returns (log lines added, slowest status in seconds)."""
    lines0 = log_lines(node)
    flood = Flood(port, 400)
    slowest = 0.0
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            slowest = max(slowest, timed_status(node))
            time.sleep(0.25)
    finally:
        flood.stop()
    return log_lines(node) - lines0, slowest, seconds


# ---- item 1: descriptor exhaustion -------------------------------------------


@pytest.mark.parametrize("target", ["tls", "repl"])
def test_descriptor_exhaustion(node_factory, target):
    """ulimit -n 256 and 400 idle connections for 8 s: a few log lines a
    second at most, status answers within a second (the goal is 100 ms; the
    bound is generous for a busy test machine), and TLS clients are served
    once the descriptors are free again."""
    node = node_factory(nofile=256)
    self_signed(node)
    wait_for("the TLS endpoint to serve", lambda: tls_ok(node.tls_port), timeout=20)
    port = node.tls_port if target == "tls" else node.repl_port
    added, slowest, seconds = run_exhaustion(node, port)
    print("%s: %d log lines in %.0f s, slowest status %.3f s" % (target, added, seconds, slowest))
    assert node.running, node.stderr()[-3000:]
    assert added <= 5 * seconds + 20, "%d log lines in %.0f s:\n%s" % (
        added, seconds, node.stderr()[-3000:])
    assert slowest <= 1.0, "status took %.2f s under the attack" % slowest
    wait_for("a TLS client to be served again", lambda: tls_ok(node.tls_port), timeout=30)


def test_descriptor_limits_that_do_not_fit(node_factory):
    """A configured tls_max_connections the descriptor limit cannot hold
    stops the agent at start with exit 2, naming the key and the fix."""
    node = node_factory(extra="tls_max_connections = 5000\n", nofile=512, start=False)
    node.start(wait=False)
    rc = node.wait_exit(timeout=30)
    err = node.stderr()
    assert rc == 2, "exit %r:\n%s" % (rc, err)
    assert "tls_max_connections" in err and "RLIMIT_NOFILE" in err, err
    assert "ulimit -n" in err or "LimitNOFILE" in err, err


# ---- item 2: one source holding the TLS endpoint ------------------------------

# The first bytes of a ClientHello: a handshake record announcing 512 bytes,
# then its start.  OpenSSL waits for the rest.
PARTIAL_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32)


def tls_status(node):
    return node.status()["tls"]["connections"]


@pytest.mark.parametrize("kind", ["idle", "partial"])
def test_one_source_cannot_lock_out_tls(node_factory, kind):
    """tls_max_connections = 50, tls_max_connections_per_ip = 10: while
    127.0.0.5 holds 500 connections (idle, or a partial ClientHello), a
    client from 127.0.0.1 succeeds at least 99 times in 100."""
    node = node_factory(extra="tls_max_connections = 50\ntls_max_connections_per_ip = 10\n")
    self_signed(node)
    wait_for("the TLS endpoint to serve", lambda: tls_ok(node.tls_port), timeout=20)
    flood = Flood(node.tls_port, 500, payload=PARTIAL_HELLO if kind == "partial" else b"")
    try:
        wait_for("the attacker to hit its cap",
                 lambda: tls_status(node)["refused_per_source"] >= 100, timeout=20)
        ok = sum(tls_ok(node.tls_port) for _ in range(100))
    finally:
        flood.stop()
    print("%s: %d of 100 served while 127.0.0.5 held %d connections" % (kind, ok, flood.n))
    assert ok >= 99, (ok, tls_status(node))
    assert tls_status(node)["max_per_source"] == 10


def test_oldest_handshake_makes_room(node_factory):
    """50 partial ClientHellos fill tls_max_connections = 50 (no cap per
    address here): each new client closes the oldest unfinished handshake
    instead of being refused."""
    node = node_factory(extra="tls_max_connections = 50\ntls_max_connections_per_ip = 50\n"
                        "tls_handshake_timeout = 60000\n")
    self_signed(node)
    wait_for("the TLS endpoint to serve", lambda: tls_ok(node.tls_port), timeout=20)
    held = []
    try:
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", node.tls_port), timeout=5,
                                         source_address=(ATTACKER, 0))
            s.sendall(PARTIAL_HELLO)
            held.append(s)
        wait_for("50 connections open", lambda: tls_status(node)["open"] >= 50, timeout=10)
        ok = sum(tls_ok(node.tls_port) for _ in range(20))
        st = tls_status(node)
    finally:
        for s in held:
            s.close()
    assert ok == 20, st
    assert st["evicted"] >= 1, st


def test_silent_connection_closed_early(node_factory):
    """A connection that sends nothing is closed after about 2 s, long
    before the 20 s handshake timeout."""
    node = node_factory(extra="tls_handshake_timeout = 20000\n")
    wait_for("the TLS endpoint to listen", lambda: (node.status().get("tls") or {}).get("listeners"), timeout=20)
    with socket.create_connection(("127.0.0.1", node.tls_port), timeout=15) as s:
        t0 = time.monotonic()
        try:
            got = s.recv(1)
        except ConnectionResetError:
            got = b""
        took = time.monotonic() - t0
    assert got == b"" and took <= 8, took
    assert tls_status(node)["timed_out"] >= 1


# ---- item 10: the control socket ---------------------------------------------

CONTROL_MAX_CONNS = 32  # agent/control.h
CONTROL_IDLE_S = 10


def unix_conn(node):
    """A connected control client that sends nothing.  A blocking connect
    waits for room in the listener's backlog (a UNIX socket cannot connect
    without blocking)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(node.control_socket)
    return s


def closed_by_agent(s):
    s.setblocking(False)
    try:
        return s.recv(4096, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def rss_kib(pid):
    """Resident memory now (VmHWM would be the key derivation's peak at start)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def test_control_idle_connections(node_factory):
    """300 idle control connections: the agent keeps at most 32 (the oldest
    idle ones make room), status answers at once, and the rest are closed
    after the idle timeout."""
    node = node_factory()
    conns = [unix_conn(node) for _ in range(300)]
    try:
        assert timed_status(node) <= 1.0
        wait_for("the agent to close all but %d" % CONTROL_MAX_CONNS,
                 lambda: sum(not closed_by_agent(s) for s in conns) <= CONTROL_MAX_CONNS,
                 timeout=10)
        t0 = time.monotonic()
        wait_for("the idle connections to be closed",
                 lambda: all(closed_by_agent(s) for s in conns), timeout=CONTROL_IDLE_S + 15)
        assert time.monotonic() - t0 >= CONTROL_IDLE_S - 5
    finally:
        for s in conns:
            s.close()
    assert node.running
    assert timed_status(node) <= 1.0


def test_control_requests_bounded_in_memory(node_factory):
    """16 clients each sending 47 MiB without a newline: refused with a
    clear answer, the agent's resident memory grows by far less than what
    was sent (it was 717 MB), and it answers afterwards."""
    node = node_factory()
    before = rss_kib(node.pid)
    peak = [before]
    sampling = threading.Event()

    def sample():
        while not sampling.wait(0.05):
            peak[0] = max(peak[0], rss_kib(node.pid))
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    blob = b"{\"cmd\": \"status\", \"args\": {\"x\": \"" + b"A" * (47 << 20)
    answers = []

    def send():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        try:
            s.connect(node.control_socket)
            try:
                s.sendall(blob)
            except OSError:
                pass  # the agent answered and closed while we sent
            answers.append(s.recv(4096))
        except OSError as e:
            answers.append(repr(e).encode())
        finally:
            s.close()
    threads = [threading.Thread(target=send) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    sampling.set()
    sampler.join(timeout=10)
    grown = (peak[0] - before) >> 10
    print("16 x 47 MiB sent: peak memory grew by %d MiB" % grown)
    assert node.running, node.stderr()[-3000:]
    refused = [a for a in answers if b"control request" in a]
    assert len(refused) >= 14, answers
    assert grown <= 200, "the agent's peak memory grew by %d MiB" % grown
    assert timed_status(node) <= 1.0
    lines = [ln for ln in node.stderr().splitlines() if "control request" in ln]
    assert 1 <= len(lines) <= 10, lines


def test_descriptor_budget_counts_the_admin_listener(node_factory):
    """With admin_listen, the descriptors the agent keeps aside grow by the
    admin listener and its connection cap (16)."""
    kept = []
    for extra in ("", "admin_listen = 127.0.0.1:%d\n" % helpers.free_port()):
        node = node_factory(extra="tls_max_connections = 5000\n" + extra, nofile=512,
                            start=False)
        node.start(wait=False)
        assert node.wait_exit(timeout=30) == 2
        m = re.search(r"of which the agent keeps (\d+)", node.stderr())
        assert m, node.stderr()
        kept.append(int(m.group(1)))
    assert kept[1] - kept[0] == 1 + 16, kept
