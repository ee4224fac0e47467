"""Nothing slow on the agent's event loop (issue 12): one pass of the loop is
the group-commit unit and the acknowledgement dispatcher, so key generation,
promote's wait and verify --cluster's table builds run on the worker while
`status` and other changes keep being answered.

Each slow request is sent by hand over the control socket so that the test
knows the agent has read it (the socket's send queue is empty) before it
measures `status`; that the slow request is still unanswered at that moment
is asserted, so a pass means the two ran at the same time.  The latency
bounds are generous (1 s against commands that take milliseconds)."""
import ctypes
import ctypes.util
import datetime
import fcntl
import json
import select
import signal
import socket
import struct
import termios
import time

import pytest

import helpers
from helpers import wait_for
from test_repl_cluster import run_cluster

PROMPT_S = 1.0
RSA = {"key": "rsa:4096", "country": "GB", "common_name": "support.example.test"}


class Raw:
    """One control request written by hand: unread() tells whether the agent
    has read it yet, answered() whether its answer has arrived."""

    def __init__(self, path, cmd, args):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(30)
        self.s.connect(path)
        self.s.sendall((json.dumps({"cmd": cmd, "args": args}) + "\n").encode())

    def unread(self):
        # on a UNIX socket: the bytes sent that the peer has not read yet
        return struct.unpack("i", fcntl.ioctl(self.s.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]

    def wait_read(self, timeout=120):
        wait_for("the agent to read the request", lambda: self.unread() == 0, timeout=timeout)

    def answered(self):
        return bool(select.select([self.s], [], [], 0)[0])

    def answer(self, timeout=120):
        self.s.settimeout(timeout)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = self.s.recv(65536)
            if not chunk:
                break
            buf += chunk
        self.s.close()
        return json.loads(buf) if buf else None


def timed(agent, *args, check=0):
    t0 = time.monotonic()
    res = agent.cli(*args, check=check, timeout=30)
    return time.monotonic() - t0, res


def self_signed(agent, name):
    agent.cli("cert", "self-signed", "--name", name, "--country", "GB", "--common-name",
              "support.example.test", "--san", "*.example.test", check=0)
    return next(c["id"] for c in agent.certs().values() if c["name"] == name)


def test_status_and_a_change_answer_while_rsa4096_keys_are_made(agent_factory):
    a = agent_factory()
    self_signed(a, "one")
    two = self_signed(a, "two")
    slow = [Raw(a.control_socket, "cert.self-signed", dict(RSA, name="rsa%d" % i))
            for i in range(3)]
    for r in slow:
        r.wait_read()
    t_status, st = timed(a, "status")
    t_change, _ = timed(a, "cert", "default", two)
    running = [r for r in slow if not r.answered()]
    assert running, ("the three RSA-4096 self-signed were answered before status and the "
                     "change: they did not run beside them")
    assert t_status < PROMPT_S and t_change < PROMPT_S, (t_status, t_change)
    assert st.data["default"]["name"] == "one"
    answers = [r.answer() for r in slow]
    assert all(ans and ans["ok"] for ans in answers), answers
    certs = {c["name"]: c for c in a.certs().values()}
    assert all(certs["rsa%d" % i]["key_type"] == "rsa:4096" for i in range(3)), certs
    assert a.status()["default"]["name"] == "two"
    # the keys are sealed in the store, and they open: each verifies
    for i in range(3):
        a.cli("verify", certs["rsa%d" % i]["id"], check=None)


def test_sigterm_while_keys_are_made_exits_cleanly_and_stores_nothing(agent_factory):
    a = agent_factory()
    self_signed(a, "one")
    before = a.snapshot()
    slow = [Raw(a.control_socket, "cert.self-signed", dict(RSA, name="rsa%d" % i))
            for i in range(3)]
    for r in slow:
        r.wait_read()
    assert not all(r.answered() for r in slow)
    t0 = time.monotonic()
    assert a.stop(signal.SIGTERM) == 0, a.stderr()[-3000:]
    stopped_in = time.monotonic() - t0
    answers = [r.answer(timeout=10) for r in slow]
    for ans in answers:
        assert ans is not None and ans["ok"] is False, answers
        assert "stopped before it was done" in ans["error"]["message"], answers
        assert "run it again" in ans["error"]["message"], answers
    # the key being made was given up, not finished: no wait for it
    assert stopped_in < 5, stopped_in
    a.start()
    assert a.snapshot() == before


class StoreWriter:
    """Holds the LMDB write lock of a node's store from this process, as a
    slow disk or a stuck writer would: the node's own writers wait for it."""

    def __init__(self, data_dir):
        self.lib = ctypes.CDLL(ctypes.util.find_library("lmdb") or "liblmdb.so.0")
        self.env, self.txn = ctypes.c_void_p(), ctypes.c_void_p()
        self._ok(self.lib.mdb_env_create(ctypes.byref(self.env)))
        self._ok(self.lib.mdb_env_set_maxdbs(self.env, 64))
        self._ok(self.lib.mdb_env_open(self.env, data_dir.encode(), 0, 0o600))
        self._ok(self.lib.mdb_txn_begin(self.env, None, 0, ctypes.byref(self.txn)))

    @staticmethod
    def _ok(rc):
        assert rc == 0, "lmdb: error %d" % rc

    def release(self):
        if self.txn:
            self.lib.mdb_txn_abort(self.txn)
            self.lib.mdb_env_close(self.env)
            self.txn = None


@pytest.fixture
def pair(certsync_bin):
    yield from run_cluster(helpers.init_cluster(certsync_bin, (("primary", "primary"),
                                                               ("backup", "backup"))))


def test_status_and_a_change_answer_while_promote_waits(pair):
    primary, backup = pair
    writer = StoreWriter(backup.data_dir)
    try:
        # the promotion's new epoch must reach the disk first: it waits
        promote = Raw(backup.control_socket, "promote", {"force": True})
        promote.wait_read()
        t_status, st = timed(backup, "status")
        t_change, refused = timed(backup, "cert", "self-signed", "--name", "x", "--country",
                                  "GB", "--common-name", "support.example.test", check=1)
        assert not promote.answered(), "promote was answered while the store was held"
        assert t_status < PROMPT_S and t_change < PROMPT_S, (t_status, t_change)
        assert st.data["role"] == "backup"
        assert "not the primary" in refused.message, refused.describe()
    finally:
        writer.release()
    ans = promote.answer(timeout=30)
    assert ans is not None and ans["ok"], ans
    assert ans["result"]["role"] == "primary", ans
    assert backup.status()["role"] == "primary"


def many_certificates(path, n):
    """n ECDSA certificates with their keys in one PEM file, each for its own
    name nNNNN.load.test only (none covers a node's hostname)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    out = []
    for i in range(n):
        key = ec.generate_private_key(ec.SECP256R1())
        name = "n%04d.load.test" % i
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=90))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
                .sign(key, hashes.SHA256()))
        out.append(cert.public_bytes(serialization.Encoding.PEM))
        out.append(key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    helpers.write(path, b"".join(out), mode=0o600)


def test_status_and_a_change_answer_while_verify_cluster_builds_tables(agent_factory, tmp_path):
    peers = (("backup", "backup", "backup.example.test"), ("tn1", "traffic", "tn1.example.test"),
             ("tn2", "traffic", "tn2.example.test"))
    a = agent_factory(peers=peers)
    bundle = str(tmp_path / "many.pem")
    many_certificates(bundle, 1000)
    a.import_(bundle)
    # covers every node: the one each node's coverage gate picks
    spare = self_signed(a, "spare")
    assert a.status()["counts"]["certificates"] == 1001
    csr = a.cli("csr", "create", "--name", "req", "--country", "GB", "--common-name",
                "support.example.test", check=0).data["request"]["id"]
    verify = Raw(a.control_socket, "verify.cluster", {})
    verify.wait_read()
    t_status, _ = timed(a, "status")
    t_change, _ = timed(a, "csr", "delete", csr)
    assert not verify.answered(), "verify --cluster was answered before status and the change"
    assert t_status < PROMPT_S and t_change < PROMPT_S, (t_status, t_change)
    ans = verify.answer()
    assert ans is not None and ans["ok"], ans
    nodes = ans["result"]["nodes"]
    assert [n["name"] for n in nodes] == ["primary", "backup", "tn1", "tn2"]
    # the default covers none of the nodes: each node's table serves the one
    # certificate that covers them all
    for n in nodes:
        assert n["expected"] == {n["hostname"]: spare, "support.example.test": spare}, n
    assert a.cli("csr", "list", check=0).data["requests"] == []
