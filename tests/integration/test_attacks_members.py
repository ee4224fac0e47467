"""A cluster member turned hostile (issue 11, items 4 and 6): a process
holding a traffic node's CURVE key, on the cluster of test_repl_cluster,
claims to lead, sends epochs near 2^64 and floods the primary with
diverged entries.  Every attack is bounded in time; the tests assert that
failover still works and the primary's store stays bounded.  Every wait is
bounded; every process is stopped by its PID."""

import threading
import time

import zmq

from test_repl_cluster import SITE, cluster, wait_for  # noqa: F401
from test_repl_robust import (cluster_id_of, curve_dealer, envelope, field, key_pair, leading_beat,
                              varint)

TOP = 2**64 - 1


class Impostor:
    """tn1's key on links to the given nodes: learns the cluster id from
    their beats, then sends every message of make(cid) every 0.2 s until
    stop() (or limit seconds)."""

    def __init__(self, key_of, nodes, make, limit=90.0):
        self.ctx = zmq.Context()
        pub, sec = key_pair(key_of)
        self.socks = [curve_dealer(self.ctx, n, pub, sec) for n in nodes]
        self.make = make
        self.cid = None
        self.stopping = threading.Event()
        self.deadline = time.monotonic() + limit
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        newcomer = envelope(beat=b"")  # a node that has not joined: no cluster id needed
        while not self.stopping.is_set() and time.monotonic() < self.deadline:
            for s in self.socks:
                while s.poll(0):
                    self.cid = cluster_id_of(s.recv()) or self.cid
                if self.cid is None:
                    s.send(newcomer)
                else:
                    for msg in self.make(self.cid):
                        s.send(msg)
            self.stopping.wait(0.2)

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=30)
        for s in self.socks:
            s.close(linger=0)
        self.ctx.term()


def dropped(node):
    return node.status()["replication"]["dropped"]


def hostile_beats(cid):
    """tn1 claims to lead the current epoch, and epoch 2^64 - 1."""
    return [envelope(cluster_id=cid, epoch=1, beat=leading_beat(1, 1)),
            envelope(cluster_id=cid, epoch=TOP, beat=leading_beat(TOP, 1))]


def test_traffic_node_cannot_block_promotion(cluster):
    """With tn1's key claiming to lead, the backup still promotes once the
    primary is gone, to epoch 2."""
    primary, backup, tn1, tn2 = cluster
    tn1.stop()
    bad = Impostor(tn1, [backup], hostile_beats)
    try:
        wait_for("the impostor's beats dropped", lambda: dropped(backup)["bad_epoch"] >= 2,
                 timeout=20)
        primary.stop()
        wait_for("the backup to promote", lambda: backup.cli("promote").rc == 0, timeout=20,
                 step=0.5)
    finally:
        bad.stop()
    st = backup.status()["replication"]
    assert st["leading"] and st["epoch"] == 2, st
    log = backup.stderr()
    assert "traffic node tn1 claims to lead" in log, log[-3000:]


def test_epoch_top_does_not_wrap(cluster):
    """tn1's key sends beats of epoch 2^64 - 1 to the backup: they are
    dropped and logged, and `promote --force` takes epoch 2, not 0."""
    primary, backup, tn1, tn2 = cluster
    tn1.stop()
    bad = Impostor(tn1, [backup, primary],
                   lambda cid: [envelope(cluster_id=cid, epoch=TOP, beat=b"")] + hostile_beats(cid))
    try:
        wait_for("the impostor's beats dropped", lambda: dropped(backup)["bad_epoch"] >= 3,
                 timeout=20)
        r = backup.cli("promote", "--force")
        assert r.rc == 0, r.describe()
        st = backup.status()["replication"]
        assert st["leading"] and st["epoch"] == 2, st
        # the old primary steps down to epoch 2, not to the impostor's
        wait_for("the old primary to step down",
                 lambda: not primary.status()["replication"]["leading"], timeout=20)
        assert primary.status()["replication"]["epoch"] == 2
    finally:
        bad.stop()
    assert "more than 1000000 above" in backup.stderr(), backup.stderr()[-3000:]
    for n in (primary, backup, tn2):
        assert n.running, n.name


# ---- item 4: diverged entries and the store's map ------------------------------

def log_entry(epoch, seq):
    """certsync.LogEntry{epoch, seq, time, summary} with no ops."""
    return (varint(1 << 3) + varint(epoch) + varint(2 << 3) + varint(seq) + varint(3 << 3) +
            varint(1700000000) + field(4, b"forged %d" % seq))


def diverged_msg(cid, epoch, entries):
    """Envelope{cluster_id, epoch, diverged: Diverged{entries}}."""
    body = b"".join(field(1, e) for e in entries)
    return field(1, cid) + varint(2 << 3) + varint(epoch) + field(8, body)


def forged(epoch, first, count, per_msg=100):
    return lambda cid: [diverged_msg(cid, 2, [log_entry(epoch, s) for s in range(i, i + per_msg)])
                        for i in range(first, first + count, per_msg)]


def diverged_ids(node):
    return [d["id"] for d in node.cli("diverged", "list", check=0).data["diverged"]]


def test_diverged_entries_bounded(cluster):
    """Only a primary-capable node that led the entries' epoch may add
    diverged entries, at most 1,000; the operator deletes and prunes them."""
    primary, backup, tn1, tn2 = cluster
    backup.cli("promote", "--force", check=0)
    wait_for("the old primary to follow", lambda: primary.status()["replication"]["leader"] ==
             "backup", timeout=20)
    tn1.stop()
    primary.stop()
    d0 = dropped(backup)["bad_entry"]
    # a traffic node's key, and the old primary's key for an epoch it never led
    for key_of, epoch in ((tn1, 1), (primary, 2)):
        bad = Impostor(key_of, [backup], forged(epoch, 1, 200))
        try:
            wait_for("the forged entries refused", lambda: dropped(backup)["bad_entry"] > d0,
                     timeout=20)
        finally:
            bad.stop()
        d0 = dropped(backup)["bad_entry"]
    assert diverged_ids(backup) == []
    # the old primary's key for epoch 1, which it led: 1,200 entries, 1,000 kept
    flood = Impostor(primary, [backup], forged(1, 1, 1200))
    try:
        wait_for("1,000 entries kept", lambda: len(diverged_ids(backup)) >= 1000, timeout=60)
        wait_for("the rest refused", lambda: dropped(backup)["bad_entry"] > d0, timeout=20)
    finally:
        flood.stop()
    ids = diverged_ids(backup)
    assert len(ids) == 1000, len(ids)
    st = backup.status()["store"]
    assert st["diverged"]["entries"] == 1000 and st["warning"] is None, st
    log = backup.stderr()
    assert "diverged entries from primary refused: the diverged table holds 1000 entries" in log, log[-3000:]
    assert sum("diverged" in ln for ln in log.splitlines()) <= 30, log[-3000:]

    r = backup.cli("diverged", "delete", ids[0][:12], check=0)
    assert r.data["deleted"] == ids[0]
    assert backup.cli("diverged", "delete", ids[0][:12], check=1).data["error"]["code"] == \
        "not-found"
    assert backup.cli("diverged", "delete", "zz", check=1).rc == 1
    assert backup.cli("diverged", "delete", check=2).rc == 2
    assert backup.cli("diverged", "prune", check=0).data["removed"] == 0  # none re-applied
    assert backup.cli("diverged", "prune", "--all", check=0).data["removed"] == 999
    assert diverged_ids(backup) == []
    human = backup.cli("diverged", "prune", "--all", json=False, check=0)
    assert b"removed 0 diverged entries" in human.stdout, human.describe()


def test_store_map_size(agent_factory):
    """store_map_size sets the LMDB map; a bad value stops the agent with
    exit 2; status warns from 80% of the map."""
    for bad in ("0", "lots", "2097152"):
        a = agent_factory(start=False)
        text = a.config_text().replace("[cluster]", "store_map_size = %s\n\n[cluster]" % bad, 1)
        with open(a.config, "w") as f:
            f.write(text)
        a.start(wait=False)
        rc = a.wait_exit(timeout=30)
        assert rc == 2, (bad, rc, a.stderr())
        assert "store_map_size" in a.stderr() and "MiB" in a.stderr(), a.stderr()
    a = agent_factory(start=False)
    with open(a.config, "w") as f:
        f.write(a.config_text().replace("[cluster]", "store_map_size = 1\n\n[cluster]", 1))
    a.start()
    st = a.status()["store"]
    assert st["map_bytes"] == 1 << 20 and st["warning"] is None, st
    a.cli("import", "/etc/ssl/certs/ca-certificates.crt", check=0)
    for i in range(300):
        if "store: the store uses" in a.stderr():
            break
        a.cli("cert", "self-signed", "--name", "fill%d" % i, "--country", "US", "--common-name",
              "fill%d.example.test" % i, check=0)
    # the change that crossed 80% was followed by a line in the log, before
    # anyone asked for status
    assert "store: the store uses" in a.stderr()
    st = a.status()["store"]
    assert st["used_percent"] >= 80 and "store_map_size" in st["warning"], st
    human = a.cli("status", json=False, check=0)
    assert b"WARNING" in human.stdout and b"store_map_size" in human.stdout, human.describe()
