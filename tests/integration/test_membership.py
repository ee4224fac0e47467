"""The cluster's membership in the replicated store (issue 16, item 1): a
running three-node cluster gains a traffic node with `cluster add-node`
and no restart, serves it the certificates, then loses it with `cluster
remove-node`, after which every node refuses its key.  Bad input changes
nothing.  Real agents on 127.0.0.1; every wait is bounded; every process
is stopped by its PID."""

import os
import signal
import stat
import time

import pytest
import zmq

import helpers
from helpers import wait_for
from test_repl_cluster import run_cluster
from test_repl_robust import curve_dealer, envelope, key_pair

SITE = "support.example.test"
NODES = (("primary", "primary"), ("backup", "backup"), ("tn1", "traffic"))


@pytest.fixture
def cluster(certsync_bin):
    yield from run_cluster(helpers.init_cluster(certsync_bin, NODES, site=SITE))


@pytest.fixture(scope="module")
def quiet_cluster(certsync_bin):
    """For refusals, which change nothing: one cluster for all of them."""
    yield from run_cluster(helpers.init_cluster(certsync_bin, NODES, site=SITE))


def spec(name, role="traffic", host=None, repl_port=None, tls_port=None):
    return "%s=%s,%s,tcp://127.0.0.1:%d,127.0.0.1:%d" % (
        name, role, host or name + ".example.test", repl_port or helpers.free_port(),
        tls_port or helpers.free_port())


def members(node):
    res = node.cli("cluster", "nodes", check=0)
    return {m["name"]: m for m in res.data["nodes"]}


def self_signed(agent, name, *sans):
    return agent.cli("cert", "self-signed", "--name", name, "--country", "US", "--common-name",
                     SITE, *[a for s in sans for a in ("--san", s)], check=0)


def answers(key_node, server, seconds):
    """Whether a ZeroMQ client holding key_node's CURVE key gets any message
    from server's replication socket within seconds: it sends a newcomer's
    beat every 0.2 s, which a member's socket answers."""
    ctx = zmq.Context()
    sock = curve_dealer(ctx, server, *key_pair(key_node))
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                sock.send(envelope(beat=b""), zmq.NOBLOCK)
            except zmq.Again:
                pass  # not connected (yet, or refused)
            if sock.poll(200):
                return True
        return False
    finally:
        sock.close(linger=0)
        ctx.term()


class Joined(helpers.ClusterNode):
    """A node started from the folder `cluster add-node` wrote."""

    def __init__(self, binary, folder, name, role, repl_port, tls_port):
        super().__init__(binary, folder, name, role, name + ".example.test", SITE, repl_port,
                         tls_port)


def test_traffic_node_joins_and_leaves_a_running_cluster(cluster, certsync_bin):
    primary, backup, tn1 = cluster
    dflt = self_signed(primary, "site", SITE, "*.example.test").data["certificate"]["id"]
    assert set(members(primary)) == {"primary", "backup", "tn1"}
    assert members(primary)["backup"]["state"] == "up"
    before = {n.name: n.pid for n in cluster}

    rp, tp = helpers.free_port(), helpers.free_port()
    folder = os.path.join(helpers.short_tmpdir(), "tn2")
    res = primary.cli("cluster", "add-node", spec("tn2", "traffic", None, rp, tp), "-o", folder,
                      check=0)
    assert res.data["added"]["name"] == "tn2" and res.data["uncovered"] == []
    assert "does not cover" not in res.stderr
    assert sorted(os.listdir(folder)) == ["certsync.conf", "node.secret", "passphrase"]
    for secret in ("node.secret", "passphrase"):
        assert stat.S_IMODE(os.stat(os.path.join(folder, secret)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert res.data["added"]["public_key"] == key_pair_text(folder)
    assert open(os.path.join(folder, "passphrase")).read() == \
        open(os.path.join(primary.workdir, "passphrase")).read()
    conf = open(os.path.join(folder, "certsync.conf")).read()
    for peer in (primary, backup, tn1):
        assert "[peer %s]" % peer.name in conf
        assert "curve_public_key = %s" % key_pair(peer)[0].decode() in conf

    # every running node follows the membership at once: no restart
    for n in cluster:
        wait_for("%s to list tn2" % n.name, lambda: "tn2" in members(n), timeout=15)
    assert {n.name: n.pid for n in cluster} == before
    assert "tn2.example.test" in primary.cli("verify", check=0).data["hosts"]

    # a client holding tn2's key is answered once tn2 is a member, by the
    # primary and by the backup, which admitted the key on its own.  Asked
    # before tn2 runs: a node answers the connection a key last spoke from,
    # and tn2's own beats would compete with this client's.
    tn2 = Joined(certsync_bin, folder, "tn2", "traffic", rp, tp)
    assert answers(tn2, primary, 10)
    assert answers(tn2, backup, 10)

    tn2.start()
    try:
        wait_for("tn2 to stream", lambda: tn2.status()["replication"]["sync"] == "streaming",
                 timeout=30)
        wait_for("tn2 to hold the primary's store",
                 lambda: tn2.status()["digest"] == primary.status()["digest"], timeout=30)
        # its TLS endpoint serves the cluster's default, to a real client
        wait_for("tn2 to serve the default",
                 lambda: helpers.s_client_id(tp, "tn2.example.test") == dflt, timeout=15)
        assert helpers.s_client_id(tp, SITE) == dflt
        assert members(primary)["tn2"]["state"] == "up"
        text = primary.cli("cluster", "nodes", json=False, check=0).data.decode()
        assert any(line.split()[:3] == ["tn2", "traffic", "up"] for line in text.splitlines()), text

        res = primary.cli("cluster", "remove-node", "tn2", check=0)
        assert res.data["removed"] == "tn2"
        for n in cluster:
            wait_for("%s to drop tn2" % n.name, lambda: "tn2" not in members(n), timeout=15)
        assert "tn2.example.test" not in primary.cli("verify", check=0).data["hosts"]
        # tn2's key is refused: its ZeroMQ client gets nothing, and the
        # primary counts the refusals
        refused = primary.status()["replication"]["dropped"]["unknown_key"]
        assert not answers(tn2, primary, 3)
        assert not answers(tn2, backup, 2)
        assert primary.status()["replication"]["dropped"]["unknown_key"] > refused
        # the running tn2 lost its session and gets no more changes
        wait_for("tn2 to stop streaming",
                 lambda: tn2.status()["replication"]["sync"] != "streaming", timeout=15)
        self_signed(primary, "after", "after.example.test")
        head = primary.status()["seq"]
        wait_for("tn1 to get the change", lambda: tn1.status()["seq"] >= head, timeout=15)
        assert tn2.status()["seq"] < head
        assert "tn2 is no longer a member" in primary.stderr()
        # the connection tn2 held to the primary was cut, not left open
        assert "connection of tn2 from 127.0.0.1 cut" in primary.stderr()
    finally:
        assert tn2.stop() == 0, tn2.stderr()[-3000:]


def key_pair_text(folder):
    for line in open(os.path.join(folder, "node.secret")):
        if line.startswith("public"):
            return line.split("=", 1)[1].strip()
    raise AssertionError("no public key in " + folder)


def test_default_not_covering_the_new_hostname_warns(cluster):
    primary = cluster[0]
    self_signed(primary, "narrow", SITE, "primary.example.test", "backup.example.test",
                "tn1.example.test")
    folder = os.path.join(helpers.short_tmpdir(), "edge")
    res = primary.cli("cluster", "add-node", spec("edge", host="edge.other.test"), "-o", folder,
                      check=0)
    assert res.data["uncovered"] == ["edge.other.test"]
    assert "does not cover edge.other.test" in res.stderr
    # verify checks the new hostname too, and fails on it
    v = primary.cli("verify", check=1).data
    assert "edge.other.test" in v["hosts"]


def test_sighup_after_add_node_names_no_peer_change(cluster):
    """The configuration file did not change: SIGHUP after an add-node must
    not take the membership's new node for an added [peer] section."""
    primary, backup = cluster[0], cluster[1]
    folder = os.path.join(helpers.short_tmpdir(), "hup")
    primary.cli("cluster", "add-node", spec("hup"), "-o", folder, check=0)
    wait_for("the backup to follow the new membership", lambda: "hup" in members(backup),
             timeout=30)
    for node in (primary, backup):
        os.kill(node.pid, signal.SIGHUP)
        wait_for("%s to read its configuration again" % node.name,
                 lambda: "read again: nothing changed" in node.stderr(), timeout=30)
        assert "[peer" not in node.stderr(), node.stderr()[-3000:]


def test_membership_wins_over_peer_sections(cluster):
    """A node restarted with a [peer] section the membership lacks follows
    the membership and says so."""
    primary, backup, tn1 = cluster
    tn1.stop()
    tn1.generated += ("\n[peer ghost]\nrole = traffic\nhostname = ghost.example.test\n"
                      "repl_endpoint = tcp://127.0.0.1:%d\ncurve_public_key = %s\n"
                      % (helpers.free_port(), key_pair(tn1)[0].decode()))
    tn1.write_config()
    tn1.start()
    assert "ghost" not in members(tn1)
    peers = [p["name"] for p in tn1.status()["replication"]["peers"]]
    assert "ghost" not in peers and "primary" in peers
    assert "ghost is not a member of the cluster" in tn1.stderr()
    assert "membership wins" in tn1.stderr()


# ---- bad input: refused, and nothing changes ------------------------------------

def unchanged(quiet_cluster, do):
    primary = quiet_cluster[0]
    before = primary.snapshot(), members(primary)
    res = do()
    assert (primary.snapshot(), members(primary)) == before
    return res


def refused_add(quiet_cluster, node_spec, code, text, on=None):
    parent = helpers.short_tmpdir()
    folder = os.path.join(parent, "new")
    node = on or quiet_cluster[0]
    res = unchanged(quiet_cluster,
                    lambda: node.cli("cluster", "add-node", node_spec, "-o", folder))
    assert res.rc == code, res.describe()
    assert text in helpers.error_text(res), res.describe()
    assert os.listdir(parent) == [], "add-node left %s" % os.listdir(parent)
    return res


def test_add_node_name_taken(quiet_cluster):
    refused_add(quiet_cluster, spec("tn1", host="fresh.example.test"), 1,
                "tn1 already has the name tn1")


def test_add_node_hostname_taken(quiet_cluster):
    refused_add(quiet_cluster, spec("fresh", host="BACKUP.example.test"), 1,
                "backup already has the hostname")


def test_add_node_repl_endpoint_taken(quiet_cluster):
    backup = quiet_cluster[1]
    refused_add(quiet_cluster, spec("fresh", repl_port=backup.repl_port), 1,
                "backup already has the replication endpoint tcp://127.0.0.1:%d"
                % backup.repl_port)


def test_add_node_tls_endpoint_taken(quiet_cluster):
    tn1 = quiet_cluster[2]
    refused_add(quiet_cluster, spec("fresh", tls_port=tn1.tls_port), 1,
                "tn1 already has the tls endpoint 127.0.0.1:%d" % tn1.tls_port)


def test_add_node_invalid_hostname(quiet_cluster):
    refused_add(quiet_cluster, spec("fresh", host="bad_host!.example.test"), 2,
                "is not a dns name")


@pytest.mark.parametrize("role", ["primary", "witness"])
def test_add_node_role_not_backup_or_traffic(quiet_cluster, role):
    res = refused_add(quiet_cluster, spec("fresh", role=role), 2,
                      "the role is backup or traffic; a cluster has one primary")
    assert res.data["error"]["code"] == "usage"


def test_add_node_dir_not_empty(quiet_cluster):
    folder = helpers.short_tmpdir()
    helpers.write(os.path.join(folder, "keep"), "mine\n")
    res = unchanged(quiet_cluster, lambda: quiet_cluster[0].cli(
        "cluster", "add-node", spec("fresh"), "-o", folder))
    assert res.rc == 1 and "is not empty" in helpers.error_text(res), res.describe()
    assert os.listdir(folder) == ["keep"]


def test_add_node_on_a_non_primary(quiet_cluster):
    backup = quiet_cluster[1]
    res = refused_add(quiet_cluster, spec("fresh"), 1, "refused", on=backup)
    assert "primary" in helpers.error_text(res)


@pytest.mark.parametrize("name,text", [
    ("nosuch", "nosuch is not a member"),
    ("primary", "primary is the primary"),
    ("backup", "backup is the cluster's last backup"),
])
def test_remove_node_refused(quiet_cluster, name, text):
    res = unchanged(quiet_cluster,
                    lambda: quiet_cluster[0].cli("cluster", "remove-node", name))
    assert res.rc == 1 and text in helpers.error_text(res), res.describe()


def test_remove_node_on_a_non_primary(quiet_cluster):
    backup = quiet_cluster[1]
    res = unchanged(quiet_cluster, lambda: backup.cli("cluster", "remove-node", "tn1"))
    assert res.rc == 1 and "refused" in helpers.error_text(res), res.describe()
    assert "primary" in helpers.error_text(res)


def test_primary_seeds_a_store_without_membership(certsync_bin):
    """A store made before the membership existed (here: by the primary run
    alone, without replication) gets one from the primary once it accepts
    changes in the cluster; its followers take it."""
    nodes = helpers.init_cluster(certsync_bin, NODES, site=SITE)
    primary = nodes[0]
    full = primary.generated
    primary.generated = "\n".join(line for line in full.split("\n")
                                  if not line.startswith(("repl_listen", "curve_secret_file")))
    primary.write_config()
    primary.start()
    self_signed(primary, "site", SITE, "*.example.test")
    res = primary.cli("cluster", "nodes", check=1)
    assert "no replication configured" in helpers.error_text(res)
    primary.stop()
    primary.generated = full
    primary.write_config()
    for cluster in run_cluster(nodes):
        wait_for("the membership recorded", lambda: primary.cli(
            "cluster", "nodes", check=0).data["source"] == "store", timeout=20)
        assert "membership seeded from the configuration" in primary.stderr()
        for n in cluster[1:]:
            wait_for("%s to follow it" % n.name, lambda: n.cli(
                "cluster", "nodes", check=0).data["source"] == "store", timeout=20)
        assert set(members(cluster[2])) == {"primary", "backup", "tn1"}
