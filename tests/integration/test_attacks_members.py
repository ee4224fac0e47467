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
from test_repl_robust import cluster_id_of, curve_dealer, envelope, key_pair, leading_beat

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
