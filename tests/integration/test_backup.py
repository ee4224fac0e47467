"""Backup and restore (issue 16, item 3) with real agents on 127.0.0.1: a
backup taken while changes stream in, restored onto a new node that joins
and catches up; an old backup restored onto a node of a running cluster,
which follows and rolls nothing back; a whole cluster restored from one
file; and every bad input of the item.  Every wait is bounded; every process
is stopped by its PID."""

import glob
import json
import os
import shutil
import threading

import pytest

import helpers
from helpers import wait_for
from test_repl_cluster import SITE, in_sync, position, run_cluster, self_signed

NODES = (("primary", "primary"), ("backup", "backup"), ("tn1", "traffic"))


@pytest.fixture
def cluster(certsync_bin):
    yield from run_cluster(helpers.init_cluster(certsync_bin, NODES, site=SITE))


def header(path):
    with open(path, "rb") as f:
        return json.loads(f.readline())


def backup(node, path, check=0):
    return node.cli("backup", "-o", str(path), check=check)


def restore(node, path, data_dir=None, check=0):
    return node.cli("restore", str(path), "--data-dir", data_dir or node.data_dir, check=check)


def cert_ids(node):
    return sorted(node.certs())


def test_backup_while_changes_stream_restored_onto_a_new_node(certsync_bin, tmp_path):
    nodes = helpers.init_cluster(certsync_bin, NODES + (("tn2", "traffic"),), site=SITE)
    tn2 = nodes[3]
    for primary, backup_node, tn1 in run_cluster(nodes[:3]):
        self_signed(primary, "first")
        before = primary.status()["seq"]
        errors = []

        def stream():
            for i in range(12):
                res = self_signed(primary, "stream%d" % i)
                if res.rc != 0:
                    errors.append(res.describe())

        t = threading.Thread(target=stream)
        t.start()
        wait_for("a change of the stream", lambda: primary.status()["seq"] > before + 1,
                 timeout=30)
        f = tmp_path / "site.backup"
        res = backup(primary, f)
        t.join(timeout=120)
        assert not t.is_alive() and not errors, errors
        after = primary.status()

        # the answer, the header and the file agree; the file is the owner's alone
        h = header(f)
        assert os.stat(f).st_mode & 0o777 == 0o600
        assert h["format"] == "certsync-backup" and h["node"] == "primary"
        assert (h["epoch"], h["seq"], h["digest"]) == (res.data["epoch"], res.data["seq"],
                                                       res.data["digest"])
        assert before < h["seq"] <= after["seq"]
        assert h["bytes"] == os.path.getsize(f) - len(open(f, "rb").readline())
        assert "passphrase" in res.data["note"] and "sealed" in res.data["note"]
        assert not glob.glob(str(f) + ".tmp*"), "the temporary copy was left behind"
        human = primary.cli("backup", "-o", str(tmp_path / "again.backup"), json=False, check=0)
        assert b"useless without the cluster passphrase" in human.stdout
        # no private key in the clear: the sealed records only
        assert b"PRIVATE KEY" not in open(f, "rb").read()

        # restore onto a node that never ran: the copy's own position
        r = restore(tn2, f)
        assert (r.data["epoch"], r.data["seq"], r.data["digest"]) == (h["epoch"], h["seq"],
                                                                      h["digest"])
        tn2.start()
        wait_for("the restored node to catch up with the primary",
                 lambda: position(tn2) == position(primary), timeout=60)
        assert tn2.cli("status", "--recompute", check=0).data["digest_ok"]
        assert cert_ids(tn2) == cert_ids(primary)
        assert position(primary)[:2] == (after["epoch"], after["seq"])
        default = primary.status()["default"]["id"]
        wait_for("the restored node to serve the default",
                 lambda: tn2.served_id("tn2.example.test") == default, timeout=30)
        tn2.stop()


def test_old_backup_onto_nodes_of_a_running_cluster_rolls_nothing_back(cluster, tmp_path):
    primary, backup_node, tn1 = cluster
    self_signed(primary, "kept")  # the default
    doomed = self_signed(primary, "doomed").data["certificate"]["id"]
    old = tmp_path / "old.backup"
    backup(primary, old)
    # after the backup: one deleted, two added
    primary.cli("cert", "delete", doomed, check=0)
    self_signed(primary, "later1")
    self_signed(primary, "later2")
    wait_for("the cluster in sync", lambda: in_sync(cluster), timeout=30)
    head = position(primary)
    ids = cert_ids(primary)

    # the backup node: stopped, store lost, restored from the old file
    assert backup_node.stop() == 0
    shutil.rmtree(backup_node.data_dir)
    r = restore(backup_node, old)
    assert r.data["seq"] < head[1]
    backup_node.start()
    wait_for("the restored backup to catch up", lambda: position(backup_node) == head,
             timeout=60)
    assert cert_ids(backup_node) == ids and doomed not in ids
    assert position(primary) == head

    # the primary itself, restored from the old file while the others hold
    # newer changes: it leads nothing, so it cannot take the cluster back
    assert primary.stop() == 0
    shutil.rmtree(primary.data_dir)
    restore(primary, old)
    primary.start()
    st = primary.status()
    assert st["replication"]["leading"] is False, st["replication"]
    refused = self_signed_raw(primary, "while-restored")
    assert refused.rc == 1 and "refused" in helpers.error_text(refused)
    assert position(backup_node) == head and position(tn1) == head
    # the operator promotes the node that holds the newest changes
    backup_node.cli("promote", "--force", check=0)
    wait_for("the restored primary to follow the new primary",
             lambda: position(primary)[1:] == position(backup_node)[1:], timeout=60)
    assert position(backup_node)[1] == head[1]  # the new epoch starts where the cluster was
    assert cert_ids(primary) == ids
    self_signed(backup_node, "after-promotion")
    wait_for("the change to reach every node", lambda: in_sync(cluster), timeout=30)


def self_signed_raw(agent, name):
    return agent.cli("cert", "self-signed", "--name", name, "--country", "US",
                     "--common-name", SITE, "--san", "*.example.test", "--wait", "none")


def test_whole_cluster_restored_from_one_backup(cluster, tmp_path):
    """README, "Restoring a whole cluster": every node lost, one backup file."""
    primary, backup_node, tn1 = cluster
    site = self_signed(primary, "site").data["certificate"]["id"]
    self_signed(primary, "other")
    f = tmp_path / "cluster.backup"
    h = backup(primary, f).data
    default = primary.status()["default"]["id"]
    assert default == site
    for n in cluster:
        assert n.stop() == 0
        shutil.rmtree(n.data_dir)

    # 1. restore onto the node that is to lead, start it, promote it
    restore(primary, f)
    primary.start()
    assert primary.status()["replication"]["leading"] is False
    p = primary.cli("promote", check=0).data
    assert p["leading"] is True and p["epoch"] == h["epoch"] + 1
    # 2. the other nodes start with empty data_dirs and catch up
    backup_node.start()
    tn1.start()
    wait_for("every node at the primary's position", lambda: in_sync(cluster), timeout=60)
    assert position(primary)[1] == h["seq"] and position(primary)[2] == h["digest"]
    for n in cluster:
        assert n.status()["default"]["id"] == default
        wait_for("%s to serve the default" % n.name,
                 lambda: n.served_id(n.hostname) == default, timeout=30)
    # 3. the cluster takes changes again
    self_signed(primary, "after-restore")
    wait_for("the change to reach every node", lambda: in_sync(cluster), timeout=30)


def test_bad_inputs_change_nothing(certsync_bin, tmp_path):
    nodes = helpers.init_cluster(certsync_bin, (("primary", "primary"),), site=SITE)
    other = helpers.init_cluster(certsync_bin, (("primary", "primary"),), site=SITE)[0]
    for (primary,) in run_cluster(nodes):
        self_signed(primary, "site")
        good = tmp_path / "good.backup"
        backup(primary, good)
        data = open(good, "rb").read()
        target = str(tmp_path / "restored")

        def refused(path, want_rc, *words, data_dir=target):
            res = restore(primary, path, data_dir=data_dir, check=want_rc)
            msg = helpers.error_text(res)
            for w in words:
                assert w in msg, res.describe()
            assert not glob.glob(data_dir.rstrip("/") + ".restore-*"), "a temporary folder stayed"
            return res

        # the running node's own data_dir: in use
        before = primary.data_files()
        refused(good, 1, "in use", "stop the agent", data_dir=primary.data_dir)
        assert primary.cli("status", "--recompute", check=0).data["digest_ok"]
        # a folder that is not empty: named, with the fix, and left alone
        os.makedirs(target)
        helpers.write(os.path.join(target, "keep.txt"), "mine")
        refused(good, 1, "not empty", "keep.txt", "mv ")
        assert os.listdir(target) == ["keep.txt"]
        shutil.rmtree(target)
        # truncated, one byte altered, trailing garbage, no header at all
        for name, content in (("truncated", data[:len(data) // 2]),
                              ("altered", data[:-100] + bytes([data[-100] ^ 1]) + data[-99:]),
                              ("longer", data + b"x")):
            p = tmp_path / (name + ".backup")
            p.write_bytes(content)
            refused(p, 1, "truncated or damaged", "nothing was restored")
            assert not os.path.exists(target)
        hdr = json.loads(data.split(b"\n", 1)[0])
        hdr["seq"] += 1  # a header that lies about the copy
        p = tmp_path / "lying.backup"
        p.write_bytes(json.dumps(hdr).encode() + b"\n" + data.split(b"\n", 1)[1])
        refused(p, 1, "does not match its header")
        p = tmp_path / "junk.backup"
        p.write_bytes(b"hello\n")
        refused(p, 1, "not a certsync backup")
        refused(tmp_path / "missing.backup", 1, "cannot read")
        assert not os.path.exists(target)
        # another cluster's backup onto this node
        other.start()
        try:
            foreign = tmp_path / "foreign.backup"
            backup(other, foreign)
        finally:
            assert other.stop() == 0
        refused(foreign, 1, "another cluster", "cluster passphrase does not match")
        assert not os.path.exists(target)
        # usage: exit 2
        res = primary.cli("restore", str(good), check=2)
        assert "--data-dir" in helpers.error_text(res)
        res = primary.cli("backup", check=2)
        assert "-o file" in helpers.error_text(res)
        res = primary.cli("backup", "-o", "-", check=2)
        # a folder the agent cannot write: refused, nothing left
        res = primary.cli("backup", "-o", str(tmp_path / "no" / "such" / "f"), check=1)
        assert "cannot create" in helpers.error_text(res)
        assert primary.data_files().keys() == before.keys()
        # and the good one still restores
        restore(primary, good, data_dir=target)
        assert sorted(os.listdir(target)) == ["data.mdb"]
