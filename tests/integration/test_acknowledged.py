"""What an answer to a change means (issue 17): exit 0 only when the change
is on the primary's disk and confirmed by the nodes --wait names; 3 when it
is committed but not confirmed by them (the message names them); 1 only
when nothing changed.  On the four-node cluster of test_repl_cluster; every
wait is bounded, every process is stopped by its PID."""

import os
import signal

import helpers
from test_repl_cluster import cluster, in_sync, position, self_signed, wait_for  # noqa: F401

UNCONFIRMED_EXIT = 3
NO_ANSWER_EXIT = 4


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
    assert res.rc == UNCONFIRMED_EXIT, res.describe()
    assert "not confirmed by: backup" in res.stderr
    # the answer came after the commit: it is on disk at (3,8)
    assert position(primary)[:2] == (3, 8)
    assert res.data["certificate"]["id"] in primary.certs()
    # and the next change says the same
    res = change(primary, "second", "--wait", "backup")
    assert res.rc == UNCONFIRMED_EXIT and res.data["replication"]["unconfirmed"] == ["backup"], \
        res.describe()
    wait_for("traffic nodes at (3,9)", lambda: all(
        position(n)[:2] == (3, 9) for n in (tn1, tn2)), timeout=20)


def test_unconfirmed_change_exits_3_and_is_committed(cluster):
    primary, backup, tn1, tn2 = cluster
    backup.stop()
    wait_for("the primary to see the backup down", lambda: not {
        p["name"]: p for p in primary.status()["replication"]["peers"]}["backup"]["reachable"])
    before = position(primary)[1]
    res = change(primary, "while-down", "--wait", "backup")
    assert res.rc == UNCONFIRMED_EXIT, res.describe()
    assert res.data["replication"] == {"wait": "backup", "unconfirmed": ["backup"]}
    assert "committed, but not confirmed by: backup" in res.stderr
    assert position(primary)[1] == before + 1
    cid = res.data["certificate"]["id"]
    assert cid in primary.certs()
    # the same without --json: the person reads it on stderr, the script the status
    res = primary.cli("cert", "self-signed", "--name", "text", "--country", "US",
                      "--common-name", "support.example.test", json=False)
    assert res.rc == UNCONFIRMED_EXIT and b"text" in res.stdout, res.describe()
    assert "not confirmed by: backup" in res.stderr
    # --wait none asks for nobody: confirmed as asked
    assert change(primary, "none", "--wait", "none").rc == 0
    # --wait all names every node that did not confirm; tn1 frozen too
    freeze([tn1])
    try:
        res = change(primary, "all", "--wait", "all")
    finally:
        thaw([tn1])
    assert res.rc == UNCONFIRMED_EXIT, res.describe()
    assert sorted(res.data["replication"]["unconfirmed"]) == ["backup", "tn1"], res.describe()
    backup.start()
    wait_for("the backup to catch up", lambda: in_sync(cluster), timeout=20)
    for n in cluster:
        assert cid in n.certs(), n.name
    # confirmed: 0
    res = change(primary, "confirmed", "--wait", "all")
    assert res.rc == 0 and res.data["replication"]["unconfirmed"] == [], res.describe()


def test_refused_change_exits_1_and_changes_nothing(cluster):
    primary, backup, tn1, tn2 = cluster
    self_signed(primary, "taken")
    wait_for("sync", lambda: in_sync(cluster))
    snap = [n.snapshot() for n in cluster]
    assert change(primary, "taken").rc == 1  # the name is in use
    res = change(backup, "elsewhere")         # not the primary
    assert res.rc == 1 and "refused" in res.message and "primary" in res.message
    assert [n.snapshot() for n in cluster] == snap


def test_no_answer_is_not_nothing_changed(cluster):
    """A change whose agent dies while it waits for the backup is on the
    primary's disk: the command must not say "nothing changed" (1)."""
    primary, backup, tn1, tn2 = cluster
    self_signed(primary, "first")
    wait_for("sync", lambda: in_sync(cluster))
    before = position(primary)[1]
    freeze([backup])  # the primary waits for it (5 s) after the commit
    try:
        args = [primary.binary, "--json", "-c", primary.config, "cert", "self-signed",
                "--name", "in-flight", "--country", "US", "--common-name",
                "support.example.test", "--wait", "backup"]
        client = helpers.subprocess.Popen(args, stdout=helpers.subprocess.PIPE,
                                          stderr=helpers.subprocess.PIPE)
        try:
            wait_for("the change on the primary's disk",
                     lambda: position(primary)[1] == before + 1, timeout=10, step=0.02)
            primary.kill()
            out, errout = client.communicate(timeout=30)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait(timeout=10)
    finally:
        thaw([backup])
    assert client.returncode == NO_ANSWER_EXIT, (client.returncode, out, errout)
    assert b"may or may not have been committed" in errout, errout
    primary.start()
    wait_for("in sync again", lambda: in_sync(cluster), timeout=30)
    for n in cluster:
        assert "in-flight" in {c["name"] for c in n.certs().values()}, n.name
