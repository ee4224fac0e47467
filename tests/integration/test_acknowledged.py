"""What an answer to a change means (issue 17): exit 0 only when the change
is on the primary's disk and confirmed by the nodes --wait names; 3 when it
is committed but not confirmed by them (the message names them); 1 only
when nothing changed.  On the four-node cluster of test_repl_cluster; every
wait is bounded, every process is stopped by its PID."""

import os
import signal

import helpers
from test_repl_cluster import cluster, in_sync, position, self_signed, wait_for  # noqa: F401


def freeze(nodes):
    for n in nodes:
        os.kill(n.pid, signal.SIGSTOP)


def thaw(nodes):
    for n in nodes:
        os.kill(n.pid, signal.SIGCONT)


def change(agent, name, *extra):
    """A self-signed certificate; the result whatever it exits with."""
    return agent.cli("cert", "self-signed", "--name", name, "--country", "US",
                     "--common-name", "support.example.test", "--san", "*.example.test", *extra)


def promote_when_alone(node):
    wait_for("%s to see the primary dead and promote" % node.name,
             lambda: node.cli("promote").rc == 0, timeout=20, step=0.5)


def test_re_promoted_node_waits_for_the_backup(cluster):
    """The sequence of the issue: a node promoted a second time, after its
    own entries moved to diverged, must wait for the backup on its first
    change and name it when it does not confirm."""
    primary, backup, tn1, tn2 = cluster
    i = 0
    while position(primary)[1] < 5:
        i += 1
        self_signed(primary, "base-%d" % i)
    wait_for("every node at (1,5)", lambda: in_sync(cluster), timeout=20)
    assert position(primary)[:2] == (1, 5)

    primary.kill()
    promote_when_alone(backup)
    assert backup.status()["replication"]["epoch"] == 2

    # the old primary comes back while the others are frozen, and writes
    freeze([backup, tn1, tn2])
    try:
        primary.start()
        for k in range(3):
            change(primary, "zombie-%d" % k, "--wait", "none")
        assert position(primary)[:2] == (1, 8)
    finally:
        thaw([backup, tn1, tn2])
    wait_for("the old primary to step down", lambda: primary.status()["role"] == "backup",
             timeout=20)
    for k in range(2):
        self_signed(backup, "epoch2-%d" % k)
    wait_for("every node at (2,7)", lambda: in_sync(cluster) and position(backup)[:2] == (2, 7),
             timeout=30)
    div = primary.cli("diverged", "list", check=0).data["diverged"]
    assert len(div) == 3, div

    backup.kill()
    promote_when_alone(primary)
    assert primary.status()["replication"]["epoch"] == 3
    assert "epoch 3 from seq 8" in primary.stderr()

    res = change(primary, "after-re-promotion", "--wait", "backup")
    assert res.data is not None and "replication" in res.data, res.describe()
    assert res.data["replication"] == {"wait": "backup", "unconfirmed": ["backup"]}, \
        res.describe()
    assert "not confirmed by: backup" in res.stderr
    # the answer came after the commit: it is on disk at (3,8)
    assert position(primary)[:2] == (3, 8)
    assert res.data["certificate"]["id"] in primary.certs()
    # and the next change says the same
    res = change(primary, "second", "--wait", "backup")
    assert res.data["replication"]["unconfirmed"] == ["backup"], \
        res.describe()
    wait_for("traffic nodes at (3,9)", lambda: all(
        position(n)[:2] == (3, 9) for n in (tn1, tn2)), timeout=20)
