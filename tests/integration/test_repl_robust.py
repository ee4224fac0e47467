"""Replication under attack and accident (issue 4, tests 5 to 7), on the
cluster of test_repl_cluster: intruders on the replication port, a node
whose key no peer lists, a capture of the wire searched for the private
key, and a follower killed while it applies a burst.  Every wait is
bounded; every process is stopped by its PID."""

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
import zmq

import helpers
from test_repl_cluster import SITE, cluster, in_sync, make_p12, position, wait_for  # noqa: F401

MAX_MSG = 64 << 20  # replication/repl_int.h


def dropped(node):
    return node.status()["replication"]["dropped"]


def key_pair(node):
    keys = {}
    for line in open(os.path.join(node.workdir, "node.secret")):
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            keys[k.strip()] = v.strip().encode()
    return keys["public"], keys["secret"]


def curve_dealer(ctx, server, public, secret):
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 2000)
    s.curve_serverkey = key_pair(server)[0]
    s.curve_publickey, s.curve_secretkey = public, secret
    s.connect("tcp://127.0.0.1:%d" % server.repl_port)
    return s


def varint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def field(num, payload):
    """A length-delimited protobuf field."""
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def envelope(cluster_id=b"", epoch=0, beat=None, entries=None):
    """certsync.Envelope (proto/replication.proto), encoded by hand."""
    e = field(1, cluster_id) if cluster_id else b""
    e += varint(2 << 3) + varint(epoch) if epoch else b""
    if beat is not None:
        e += field(3, beat)
    if entries is not None:
        e += field(5, entries)
    return e


def leading_beat(epoch=0, seq=0):
    """Beat{leading: true, applied: {epoch, seq}}."""
    return varint(2 << 3) + varint(1) + field(3, varint(1 << 3) + varint(epoch) +
                                              varint(2 << 3) + varint(seq))


def entries(first):
    """Entries{first, entries: [bytes that are no log entry]}."""
    return varint(2 << 3) + varint(first) + field(3, b"not a log entry")


def cluster_id_of(body):
    """The cluster id an envelope starts with (field 1), or None."""
    if len(body) < 2 or body[0] != 0x0A or body[1] > 0x7F:
        return None
    return body[2:2 + body[1]]


LEADING_BEAT = leading_beat()
BOGUS_ENTRIES = entries(1)


def serving(node, want):
    return all(node.served_id(sni) == want for sni in (node.hostname, SITE))


def default_id(node):
    return node.status()["default"]["id"]


def test_intruders_change_nothing(cluster, tmp_path):
    primary, backup, tn1, tn2 = cluster
    p12, pw, site_id = make_p12(str(tmp_path), [SITE, "*.example.test"])
    primary.cli("import", p12, "--password-file", pw, check=0)
    primary.cli("cert", "default", site_id, check=0)
    wait_for("sync", lambda: in_sync(cluster))
    tn2.stop()  # its key pair serves the intruder that passes ZAP
    live = [primary, backup, tn1]
    before = {n.name: position(n) for n in live}
    d0 = dropped(primary)

    ctx = zmq.Context()
    try:
        # 1. bytes that are not ZMTP at all, and a CURVE key nobody lists
        with socket.create_connection(("127.0.0.1", primary.repl_port), timeout=5) as s:
            s.sendall(os.urandom(4096))
        stranger = curve_dealer(ctx, primary, *zmq.curve_keypair())
        stranger.send(b"hello")
        wait_for("the unknown key counted", lambda: dropped(primary)["unknown_key"] >
                 d0["unknown_key"], timeout=10)
        # 2. a process holding a listed key (tn2's) that sends junk
        pub, sec = key_pair(tn2)
        intruder = curve_dealer(ctx, primary, pub, sec)
        intruder.send(os.urandom(512))                              # undecodable
        intruder.send_multipart([b"two", b"frames"])                # undecodable
        intruder.send(b"\0" * (MAX_MSG + 1))                        # oversized
        intruder.send(envelope(cluster_id=os.urandom(16), epoch=1, beat=LEADING_BEAT))  # wrong cluster
        # no cluster id: only a new node's beat may leave it out
        intruder.send(envelope(epoch=1, entries=BOGUS_ENTRIES))
        intruder.send(envelope(epoch=1, beat=leading_beat(1, 5)))
        want = {"undecodable": 2, "oversized": 1, "wrong_cluster": 3}
        wait_for("every junk message counted", lambda: all(
            dropped(primary)[k] >= d0[k] + v for k, v in want.items()), timeout=30, step=0.2)
        stranger.close()
        intruder.close()
    finally:
        ctx.destroy(linger=0)  # closes what a failed wait left open, or term() hangs

    # logged with the sender's name (a peer that keeps sending junk is
    # logged once per 10 s, so only the first of its drops is in the log)
    log = primary.stderr()
    assert "dropped a message from tn2: 512 bytes that are no envelope" in log, log[-3000:]
    assert "dropped a message from an unknown peer" in log, log[-3000:]
    for n in live:
        assert position(n) == before[n.name], n.name
        assert n.running and serving(n, site_id), n.name
    # and replication goes on
    res = primary.cli("cert", "self-signed", "--name", "after", "--country", "US",
                      "--common-name", SITE, "--wait", "all", check=3)  # tn2 unconfirmed
    assert res.data["replication"]["unconfirmed"] == ["tn2"], res.data
    wait_for("the change everywhere", lambda: in_sync(live), timeout=10)


def test_a_stale_primary_is_fenced(cluster, tmp_path):
    """After a promotion to epoch 2, a process holding the old primary's key
    and the cluster's real id claims to lead epoch 1, on the followers'
    links to the old primary's port and on their own sockets."""
    primary, backup, tn1, tn2 = cluster
    p12, pw, site_id = make_p12(str(tmp_path), [SITE, "*.example.test"])
    primary.cli("import", p12, "--password-file", pw, check=0)
    wait_for("sync", lambda: in_sync(cluster))
    primary.stop()
    wait_for("the backup to see the primary dead", lambda: backup.cli("promote").rc == 0,
             timeout=15, step=0.5)
    live = [backup, tn1, tn2]
    wait_for("traffic nodes to follow the new primary", lambda: all(
        n.status()["replication"]["leader"] == "backup" for n in (tn1, tn2)), timeout=20)
    before = {n.name: position(n) for n in live}
    d0 = {n.name: dropped(n) for n in live}
    seq = before["backup"][1]

    ctx = zmq.Context()
    try:
        # the old primary's port, with its key: every follower reconnects
        # to it and says the cluster's id in its beats
        pub, sec = key_pair(primary)
        fake = ctx.socket(zmq.ROUTER)
        fake.setsockopt(zmq.LINGER, 0)
        fake.curve_server = True
        fake.curve_publickey, fake.curve_secretkey = pub, sec
        fake.bind("tcp://127.0.0.1:%d" % primary.repl_port)
        links, cid = {}, None
        deadline = time.monotonic() + 20
        while len(links) < len(live) and time.monotonic() < deadline:
            if fake.poll(500):
                rid, body = fake.recv_multipart()[:2]
                links[rid] = True
                cid = cluster_id_of(body) or cid
        assert len(links) == len(live) and cid and len(cid) == 16, (len(links), cid)
        stale = [envelope(cluster_id=cid, epoch=1, beat=leading_beat(1, seq + 5)),
                 envelope(cluster_id=cid, epoch=1, entries=entries(seq + 1))]
        for rid in links:
            for msg in stale:
                fake.send_multipart([rid, msg])
        # and to every node's own socket
        direct = [curve_dealer(ctx, n, pub, sec) for n in live]
        for sock in direct:
            for msg in stale:
                sock.send(msg)
        wait_for("every stale message counted", lambda: all(
            dropped(n)["stale_epoch"] >= d0[n.name]["stale_epoch"] + 2 * len(stale)
            for n in live), timeout=20, step=0.2)
        for sock in direct:
            sock.close()
        fake.close()
    finally:
        ctx.destroy(linger=0)  # closes what a failed wait left open, or term() hangs
    for n in live:
        assert position(n) == before[n.name], n.name
        assert dropped(n)["bad_entry"] == d0[n.name]["bad_entry"], n.name
        st = n.status()["replication"]
        assert st["epoch"] == 2 and st["leader"] == "backup", st
        peers = {p["name"]: p for p in st["peers"]}
        assert peers["primary"]["reachable"] is False, peers["primary"]
        assert n.running and serving(n, site_id), n.name
    # and replication goes on at epoch 2
    res = backup.cli("cert", "self-signed", "--name", "after", "--country", "US",
                     "--common-name", SITE, "--wait", "all", check=3)
    assert res.data["replication"]["unconfirmed"] == ["primary"], res.data  # dead
    wait_for("the change everywhere", lambda: in_sync(live), timeout=10)
    assert position(backup)[0] == 2


def test_a_node_whose_key_no_peer_lists(cluster):
    primary, backup, tn1, tn2 = cluster
    primary.cli("cert", "self-signed", "--name", "s", "--country", "US", "--common-name", SITE,
                "--san", "*.example.test", check=0)
    wait_for("sync", lambda: in_sync(cluster))
    tn2.stop()
    os.unlink(os.path.join(tn2.workdir, "node.secret"))
    helpers.run([tn2.binary, "keygen", "-o", os.path.join(tn2.workdir, "node.secret")])
    tn2.data_dir += "-fresh"
    tn2.write_config()
    d0 = {n.name: dropped(n)["unknown_key"] for n in (primary, backup)}
    tn2.start()
    # tn2 connects to both the primary and the backup: once each has refused
    # its key at the handshake it has no link left to receive anything over
    wait_for("the primary and the backup to refuse tn2's new key", lambda: all(
        dropped(n)["unknown_key"] > d0[n.name] for n in (primary, backup)), timeout=15)
    primary.cli("cert", "self-signed", "--name", "s2", "--country", "US", "--common-name", SITE,
                "--wait", "none", check=0)
    wait_for("the others in sync", lambda: in_sync([primary, backup, tn1]), timeout=10)
    # what the others heard from tn2 under its old key expires after three
    # beats;
    # the new one's never count (a node that accepted it would hear it)
    wait_for("the primary and the backup to see tn2 down", lambda: all(
        q["reachable"] is False for n in (primary, backup)
        for q in n.status()["replication"]["peers"] if q["name"] == "tn2"), timeout=10)
    st = tn2.status()
    assert st["seq"] == 0 and st["replication"]["sync"] != "streaming", st["replication"]
    assert tn2.cli("cert", "list", check=0).data["certificates"] == []


def der_windows(der, width=32):
    return [der[i:i + width] for i in range(0, len(der) - width + 1, 8)]


def test_no_private_key_bytes_on_the_wire(cluster, tmp_path):
    primary = cluster[0]
    pcap = str(tmp_path / "repl.pcap")
    ports = " or ".join("tcp port %d" % n.repl_port for n in cluster)
    tshark = subprocess.Popen(["tshark", "-i", "lo", "-f", ports, "-w", pcap, "-q"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    started = threading.Event()
    err_lines = []

    def read_stderr():
        for line in tshark.stderr:
            err_lines.append(line.decode(errors="replace"))
            if b"Capturing on" in line:
                started.set()

    threading.Thread(target=read_stderr, daemon=True).start()
    # the positive control: bytes shaped like a key, sent in the clear to a
    # replication port (which drops them: they are no ZMTP), must be found
    # by the same search, or the capture cannot see what it is searched for
    marker = os.urandom(70)
    try:
        assert started.wait(30), "tshark did not start capturing:\n" + "".join(err_lines)
        # tshark says it captures a moment before it does: the import waits
        # until the capture holds a probe
        wait_for("the capture to hold a probe", lambda: probe(cluster[1], marker, pcap),
                 timeout=20, step=0.5)
        p12, pw, site_id = make_p12(str(tmp_path), [SITE, "*.example.test"])
        primary.cli("import", p12, "--password-file", pw, check=0)
        primary.cli("cert", "default", site_id, "--wait", "all", check=0)
        wait_for("sync", lambda: in_sync(cluster))
        for n in cluster:
            wait_for("%s serving it" % n.name, lambda: serving(n, site_id), timeout=5)
        time.sleep(1.5)  # a beat more, so the capture holds steady-state traffic too
    finally:
        tshark.send_signal(signal.SIGINT)
        try:
            tshark.wait(timeout=20)
        except subprocess.TimeoutExpired:
            tshark.kill()
            tshark.wait(timeout=10)
    wire = open(pcap, "rb").read()
    key = str(tmp_path / "site.key")
    secrets = {
        "PKCS#8 DER": helpers.openssl("pkey", "-in", key, "-outform", "DER").stdout,
        "SEC1 DER": helpers.openssl("ec", "-in", key, "-outform", "DER").stdout,
    }
    # the scalar itself: the OCTET STRING after the version in SEC1
    sec1 = secrets["SEC1 DER"]
    secrets["private scalar"] = sec1[7:7 + 32]
    # the capture holds the replication traffic: the import travelled
    assert len(wire) > 4000, "capture too small (%d bytes): nothing captured?" % len(wire)
    assert marker in wire and all(w in wire for w in der_windows(marker)), \
        "the capture misses bytes sent in the clear to a replication port"
    for what, der in secrets.items():
        assert der not in wire, what + " found on the wire"
        for w in der_windows(der, 16 if what == "private scalar" else 32):
            assert w not in wire, "a window of the %s found on the wire" % what
    # what travelled is the record as the primary stored it, its sealed key
    # (with the primary's random nonce) byte for byte: nothing unsealed it
    # and sealed it again on the way
    dumps = {}
    for n in cluster:
        n.stop()
        dumps[n.name] = stored_records(n)
    certs = dumps["primary"]["certs"]
    assert len(certs) == 1 and len(certs[0][1]) > 200, certs
    for name, d in dumps.items():
        assert d == dumps["primary"], name + "'s stored records differ from the primary's"
        assert not any(secrets["PKCS#8 DER"] in v or secrets["private scalar"] in v
                       for t in d.values() for _, v in t), name


def probe(node, marker, pcap):
    """Sends marker in the clear to node's replication port; whether the
    capture file holds it (dumpcap writes each packet out as it goes)."""
    with socket.create_connection(("127.0.0.1", node.repl_port), timeout=5) as s:
        s.sendall(marker)
    time.sleep(0.1)
    return os.path.exists(pcap) and marker in open(pcap, "rb").read()


def stored_records(node):
    """{table: [(key, value)]} of the certificate and key tables of a stopped
    node's store, read with LMDB's own mdb_dump."""
    out = {}
    for table in ("certs", "keys"):
        text = subprocess.run(["mdb_dump", "-s", table, node.data_dir], check=True, timeout=30,
                              stdout=subprocess.PIPE).stdout.decode()
        lines = text.split("HEADER=END\n", 1)[1].split("DATA=END")[0].split()
        out[table] = [(bytes.fromhex(k), bytes.fromhex(v))
                      for k, v in zip(lines[0::2], lines[1::2])]
    return out


def test_follower_killed_during_a_burst(cluster, tmp_path):
    primary, backup, tn1, tn2 = cluster
    ids = []
    for name in ("a", "b"):
        ids.append(primary.cli("cert", "self-signed", "--name", name, "--country", "US",
                               "--common-name", SITE, "--san", "*.example.test",
                               check=0).data["certificate"]["id"])
    wait_for("sync", lambda: in_sync(cluster))

    def change(i):
        """One change (the default flips) through the control socket."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(primary.control_socket)
        req = {"cmd": "cert.default", "args": {"id": ids[i % 2], "wait": "none"}}
        s.sendall(json.dumps(req).encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = s.recv(65536)
            assert chunk, "the agent closed without answering"
            answer += chunk
        s.close()
        assert json.loads(answer)["ok"], answer

    start = primary.status()["seq"]
    killed_at = None
    for i in range(1000):
        change(i)
        if killed_at is None and i >= 200 and tn1.status()["seq"] > start + 100:
            tn1.kill()  # SIGKILL while entries stream in
            killed_at = i
    assert killed_at is not None and killed_at < 900, "tn1 was never killed mid-burst"
    assert primary.status()["seq"] == start + 1000
    tn1.start()
    wait_for("tn1 to catch up after SIGKILL", lambda: in_sync(cluster), timeout=60)
    st = tn1.status()
    assert st["digest_ok"] is True and st["digest"] == st["digest_recomputed"], st
    assert position(tn1) == position(primary)
