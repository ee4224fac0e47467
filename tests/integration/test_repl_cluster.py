"""Replication between real agents on 127.0.0.1 (issue 4): a primary, a
backup and two traffic nodes, each a `certsync agent` process with its own
store, CURVE key pair and configuration, all written by `certsync cluster init`.
Every wait is bounded; every process is stopped by its PID."""

import os
import shutil
import signal
import time

import pytest

import helpers

SITE = "support.example.test"
NODES = (("primary", "primary"), ("backup", "backup"), ("tn1", "traffic"), ("tn2", "traffic"))


@pytest.fixture
def cluster(certsync_bin):
    nodes = helpers.init_cluster(certsync_bin, NODES, site=SITE)
    for n in nodes:
        n.start()
    wait_for("every follower to stream from the primary", lambda: all(
        n.status()["replication"]["sync"] == "streaming" for n in nodes[1:]), timeout=30)
    yield nodes
    problems = []
    for n in nodes:
        if n.running:
            rc = n.stop(signal.SIGTERM, timeout=30)
            if rc != 0:
                problems.append("%s exited with %s:\n%s" % (n.name, rc, n.stderr()[-3000:]))
    shutil.rmtree(os.path.dirname(os.path.dirname(nodes[0].workdir)), ignore_errors=True)
    assert not problems, "\n".join(problems)


def wait_for(what, cond, timeout=20.0, step=0.05):
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / step) + 1):
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            break
        time.sleep(step)
    raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))


def position(agent):
    s = agent.status()
    return (s["epoch"], s["seq"], s["digest"])


def in_sync(nodes):
    ps = [position(n) for n in nodes if n.running]
    return len(set(ps)) == 1


def self_signed(agent, name, *extra):
    return agent.cli("cert", "self-signed", "--name", name, "--country", "US",
                     "--common-name", SITE, "--san", "*.example.test", *extra, check=0)


def test_changes_reach_every_node(cluster):
    primary, backup, tn1, tn2 = cluster
    res = self_signed(primary, "site")
    # --wait backup is the default: the backup acknowledged before the answer
    assert res.data["replication"] == {"wait": "backup", "unconfirmed": []}
    assert position(backup)[1] >= primary.status()["seq"]
    wait_for("every node at the primary's position", lambda: in_sync(cluster), timeout=10)
    for n in cluster:
        ids = n.certs()
        assert res.data["certificate"]["id"] in ids, n.name
    st = primary.status()
    assert st["role"] == "primary"
    peers = {p["name"]: p for p in st["replication"]["peers"]}
    assert all(p["reachable"] for p in peers.values()), peers
    assert all(p["lag"] == 0 for p in peers.values()), peers
    # a change sent to a follower is refused with the primary's name
    r = backup.cli("cert", "self-signed", "--name", "x", "--country", "US", "--common-name",
                   SITE, check=1)
    assert "refused" in r.message and "primary" in r.message
    # traffic nodes got the cluster key from the primary's settings
    assert tn2.status()["cluster_key"] is True


def test_wait_names_unconfirmed(cluster):
    primary, backup, tn1, tn2 = cluster
    backup.stop()
    wait_for("the primary to see the backup down", lambda: not {
        p["name"]: p for p in primary.status()["replication"]["peers"]}["backup"]["reachable"])
    res = self_signed(primary, "while-down")
    assert res.data["replication"]["unconfirmed"] == ["backup"]
    assert "not confirmed by: backup" in res.stderr
    res = self_signed(primary, "none", "--wait", "none")
    assert "replication" not in res.data
    backup.start()
    wait_for("the backup to catch up", lambda: in_sync(cluster), timeout=20)


def test_catch_up_by_log_and_snapshot(cluster):
    primary, backup, tn1, tn2 = cluster
    self_signed(primary, "first")
    wait_for("sync", lambda: in_sync(cluster))
    tn1.stop()
    for i in range(20):
        self_signed(primary, "log-%d" % i, "--wait", "none")
    tn1.start()
    wait_for("tn1 to catch up from the log", lambda: in_sync(cluster), timeout=30)
    assert "snapshot" not in tn1.stderr()
    # with a short log, a node further behind gets a snapshot
    primary.stop()
    primary.log_retain = 5
    primary.write_config()
    primary.start()
    tn2.stop()
    for i in range(20):
        self_signed(primary, "snap-%d" % i, "--wait", "none")
    tn2.start()
    wait_for("tn2 to catch up by snapshot", lambda: in_sync(cluster), timeout=30)
    assert "loaded primary's snapshot" in tn2.stderr()


def test_failover_and_fencing(cluster):
    primary, backup, tn1, tn2 = cluster
    self_signed(primary, "before")
    wait_for("sync", lambda: in_sync(cluster))
    r = backup.cli("promote", check=1)
    assert "refused" in r.message and "primary primary was heard" in r.message
    assert tn1.cli("promote", "--force", check=1).rc == 1
    primary.kill()
    wait_for("the backup to see the primary dead", lambda: backup.cli("promote").rc == 0,
             timeout=15, step=0.5)
    st = backup.status()
    assert st["role"] == "primary" and st["replication"]["epoch"] == 2
    self_signed(backup, "after", "--wait", "none")
    wait_for("traffic nodes to follow the new primary", lambda: in_sync([backup, tn1, tn2]),
             timeout=20)
    assert tn1.status()["replication"]["leader"] == "backup"

    # the old primary comes back, still configured as primary, and has
    # written one change while cut off: others are stopped while it writes
    for n in (backup, tn1, tn2):
        os.kill(n.pid, signal.SIGSTOP)
    try:
        primary.start()
        lost = self_signed(primary, "lost", "--wait", "none").data["certificate"]["id"]
    finally:
        for n in (backup, tn1, tn2):
            os.kill(n.pid, signal.SIGCONT)
    wait_for("the old primary to step down", lambda: primary.status()["role"] == "backup",
             timeout=20)
    wait_for("all in sync at epoch 2", lambda: in_sync(cluster), timeout=30)
    for n in cluster:
        assert lost not in n.certs(), n.name
    div = wait_for("the diverged change on the new primary",
                   lambda: backup.cli("diverged", "list", check=0).data["diverged"], timeout=10)
    assert div[0]["origin"] == "primary" and "lost" in div[0]["summary"], div
    backup.cli("diverged", "apply", div[0]["id"][:12], check=0)
    wait_for("the re-applied change everywhere", lambda: in_sync(cluster), timeout=20)
    for n in cluster:
        assert lost in n.certs(), n.name


def test_wrong_passphrase_refuses_the_cluster(cluster):
    primary, backup, tn1, tn2 = cluster
    tn2.stop()
    tn2.data_dir = tn2.data_dir + "-fresh"
    tn2.set_passphrase("not the cluster passphrase")
    tn2.write_config()
    tn2.start()
    self_signed(primary, "secret-site", "--wait", "none")
    st = wait_for("tn2 to refuse the cluster", lambda: (
        lambda s: s if s["replication"]["refusal"] else None)(tn2.status()), timeout=30)
    assert "cluster passphrase does not match the primary's" in st["replication"]["refusal"]
    assert st["seq"] == 0 and st["cluster_key"] is False
    peers = {p["name"]: p for p in wait_for("the primary to hear tn2's refusal", lambda: (
        lambda s: s["replication"]["peers"] if {p["name"]: p for p in s["replication"]["peers"]}
        ["tn2"]["refusal"] else None)(primary.status()), timeout=10)}
    assert "passphrase" in peers["tn2"]["refusal"]
    # everyone else goes on
    wait_for("the others in sync", lambda: in_sync([primary, backup, tn1]), timeout=20)
    assert tn2.status()["seq"] == 0
