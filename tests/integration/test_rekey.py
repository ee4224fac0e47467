"""`certsync cluster rekey` (issue 16, item 4): the cluster passphrase changes
in one replicated change.  Real agents on 127.0.0.1: a three-node cluster
re-sealed and restarted with only the new passphrase, serving the same
certificates to openssl s_client and exporting keys that still open; a
follower without the new passphrase refusing and catching up once given it;
the refusals of bad input; and a primary killed (SIGKILL) during rekeys,
whose store opens under one of the two passphrases every time."""

import os
import random
import re
import shutil
import signal
import subprocess
import time

import pytest

import helpers
from helpers import wait_for, write

SITE = "support.example.test"
NODES = (("primary", "primary"), ("backup", "backup"), ("tn1", "traffic"))
NEW = "a new cluster passphrase, after the administrator left"


# ---- helpers --------------------------------------------------------------------

def start_all(nodes):
    for n in nodes:
        n.start(wait=False)
    for n in nodes:
        n.wait_ready()
    head = nodes[0].status()["seq"]
    wait_for("every follower to apply the cluster settings", lambda: all(
        n.status()["cluster_key"] and n.status()["seq"] >= head for n in nodes[1:]), timeout=60)


def stop_all(nodes):
    problems = []
    for n in nodes:
        if n.running:
            rc = n.stop(signal.SIGTERM, timeout=30)
            if rc != 0:
                problems.append("%s exited with %s:\n%s" % (n.name, rc, n.stderr()[-3000:]))
    assert not problems, "\n".join(problems)


@pytest.fixture
def cluster(certsync_bin):
    nodes = helpers.init_cluster(certsync_bin, NODES, site=SITE)
    start_all(nodes)
    yield nodes
    try:
        stop_all(nodes)
    finally:
        shutil.rmtree(os.path.dirname(os.path.dirname(nodes[0].workdir)), ignore_errors=True)


def in_step(nodes):
    """Waits until every node holds the primary's position and digest."""
    def same():
        ref = nodes[0].status()
        return all((s["seq"], s["digest"]) == (ref["seq"], ref["digest"])
                   for s in (n.status() for n in nodes[1:]))
    wait_for("every node to hold the primary's store", same, timeout=60)


def took_new_key(nodes):
    """Waits until each node uses the new key: a follower applies the change,
    then its agent takes the key, a moment later."""
    wait_for("every node to take the new key", lambda: all(
        "now using the key of the new cluster passphrase" in n.stderr() for n in nodes),
        timeout=60)


def pubkey(key_pem_path):
    return helpers.openssl("pkey", "-in", key_pem_path, "-pubout").stdout


def export_key(node, cert_id, tmp, tag):
    """Exports cert_id with its key as PKCS#12 from node and returns the
    public key of the private key inside: the sealed key opened."""
    pw = write(os.path.join(tmp, "export-pass"), "export pass phrase\n", mode=0o600)
    out = os.path.join(tmp, "%s-%s.p12" % (node.name, tag))
    node.cli("export", cert_id, "--format", "p12", "--passphrase-file", pw, "-o", out, check=0)
    key = os.path.join(tmp, "%s-%s.key" % (node.name, tag))
    helpers.openssl("pkcs12", "-in", out, "-nocerts", "-nodes", "-passin", "file:" + pw,
                    "-out", key)
    os.chmod(key, 0o600)
    return pubkey(key)


def served(nodes):
    return {(n.name, sni): n.served_id(sni) for n in nodes for sni in (n.hostname, SITE)}


def fill_cluster(primary, pki, tmp):
    """A key-bearing default (the wildcard), a request with its key, a
    pending key: a key in every sealed table."""
    primary.import_(pki.ec_wild.file("p12"), password=True)
    primary.cli("cert", "default", pki.ec_wild.id, check=0)
    primary.cli("csr", "create", "--name", "next-www", "--common-name", "www.example.test",
                "--country", "GB", check=0)
    key = os.path.join(tmp, "lonely.key")
    helpers.openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-out", key)
    primary.import_(key)
    st = primary.status()["counts"]
    assert (st["requests"], st["pending_keys"]) == (1, 1), st


def add_node_key(node, key, value):
    node.generated = node.generated.replace("\n[cluster]", "\n%s = %s\n\n[cluster]" % (key, value),
                                            1)
    node.write_config()


def drop_node_key(node, key):
    node.generated = re.sub(r"(?m)^%s = .*\n" % key, "", node.generated)
    node.write_config()


# ---- a running cluster -------------------------------------------------------------

def test_rekey_running_cluster_then_only_the_new_passphrase(cluster, pki, tmp_path):
    primary, backup, tn1 = cluster
    old = primary.passphrase
    fill_cluster(primary, pki, str(tmp_path))
    in_step(cluster)
    wait_for("every node to serve the wildcard", lambda: set(served(cluster).values()) ==
             {pki.ec_wild.id}, timeout=60, step=0.5)
    want_pub = pubkey(pki.ec_wild.file("key.pem"))
    new_file = write(str(tmp_path / "new-passphrase"), NEW + "\n", mode=0o600)

    # The followers get the new passphrase before the change: the running
    # agents hold the old key, and read the file again when the change comes.
    for n in (backup, tn1):
        n.set_passphrase(NEW)
    before_seq = primary.status()["seq"]
    res = primary.cli("cluster", "rekey", "--new-passphrase-file", new_file, "--wait", "all",
                      check=0)
    assert res.data["resealed"] == 3, res.data          # certificate, request, pending key
    st = primary.status()
    assert st["seq"] == before_seq + 1, "the rekey must be one change: %s -> %s" % (
        before_seq, st["seq"])
    in_step(cluster)
    took_new_key(cluster)
    for n in cluster:
        s = n.status()
        assert s["digest_ok"], (n.name, s)
        assert not (s.get("replication") or {}).get("refusal"), (n.name, s["replication"])
    # nothing serves differently, and the keys open on every node with the key it now holds
    wait_for("every node to serve the wildcard after the rekey",
             lambda: set(served(cluster).values()) == {pki.ec_wild.id}, timeout=60, step=0.5)
    for n in cluster:
        assert export_key(n, pki.ec_wild.id, str(tmp_path), "after") == want_pub, n.name
    # the key is in no node's files in the clear (the store, its log entry)
    secrets = helpers.key_secret_patterns(pki.ec_wild.file("key.pem"))
    for n in cluster:
        for path, data in n.data_files().items():
            for what, pat in secrets.items():
                assert pat not in data, "%s in the clear in %s" % (what, path)
    # no TLS table was built from the re-sealed store with the old key (it
    # would have dropped the certificate until the next build)
    for n in cluster:
        log = n.all_stderr().decode(errors="replace")
        assert "is not served" not in log, (n.name, log[-3000:])

    # Restart every node with only the new passphrase.
    primary.set_passphrase(NEW)
    stop_all(cluster)
    start_all(cluster)
    for n in cluster:
        assert "does not match" not in n.stderr(), n.stderr()
        assert n.status()["digest_ok"], n.name
    wait_for("every node to serve the wildcard after the restart",
             lambda: set(served(cluster).values()) == {pki.ec_wild.id}, timeout=60, step=0.5)
    for n in cluster:
        assert export_key(n, pki.ec_wild.id, str(tmp_path), "restarted") == want_pub, n.name
    # the request's key opens too: a second rekey opens every key of the store
    back = write(str(tmp_path / "back"), old + "\n", mode=0o600)
    res = primary.cli("cluster", "rekey", "--new-passphrase-file", back, "--wait", "none",
                      check=0)
    assert res.data["resealed"] == 3
    # the passphrases never appear in the logs
    for n in cluster:
        log = n.all_stderr().decode(errors="replace")
        assert NEW not in log and old not in log, n.name


def test_follower_without_the_new_passphrase_refuses_then_catches_up(cluster, pki, tmp_path):
    primary, backup, tn1 = cluster
    fill_cluster(primary, pki, str(tmp_path))
    in_step(cluster)
    want_pub = pubkey(pki.ec_wild.file("key.pem"))
    new_file = write(str(tmp_path / "new-passphrase"), NEW + "\n", mode=0o600)

    # a non-primary refuses, naming the primary, and changes nothing
    b_before = backup.snapshot()
    res = backup.cli("cluster", "rekey", "--new-passphrase-file", new_file)
    assert res.rc == 1, res.describe()
    assert "refused" in res.message.lower() and "primary" in res.message, res.message
    assert backup.snapshot() == b_before

    backup.set_passphrase(NEW)                  # the backup has it, tn1 has not
    t_before = tn1.snapshot()
    primary.cli("cluster", "rekey", "--new-passphrase-file", new_file, check=0)

    def refusal():
        return (tn1.status().get("replication") or {}).get("refusal") or ""
    wait_for("tn1 to refuse the new passphrase", lambda: "passphrase" in refusal(), timeout=60)
    assert "rekey" in refusal() and "next_passphrase_file" in refusal(), refusal()
    health = tn1.status()["health"]
    assert not health["ok"] and any("passphrase" in p for p in health["problems"]), health
    assert "cannot follow" in tn1.stderr(), tn1.stderr()[-2000:]
    # it applied nothing: the same store, whole, its keys still open under the old key
    assert tn1.snapshot() == t_before
    assert tn1.status()["digest_ok"]
    assert export_key(tn1, pki.ec_wild.id, str(tmp_path), "refused") == want_pub
    # the backup followed
    wait_for("the backup to apply the rekey", lambda: backup.status()["digest"] ==
             primary.status()["digest"], timeout=60)

    # Given the new passphrase (next_passphrase_file) and restarted, it catches up.
    assert tn1.stop() == 0
    add_node_key(tn1, "next_passphrase_file", new_file)
    tn1.start()
    in_step(cluster)
    took_new_key([tn1])
    assert not refusal()
    assert export_key(tn1, pki.ec_wild.id, str(tmp_path), "caught-up") == want_pub
    wait_for("tn1 to serve the wildcard", lambda: tn1.served_id(tn1.hostname) == pki.ec_wild.id,
             timeout=60)
    # and from now on the new passphrase alone opens its store; the old one does not
    assert tn1.stop() == 0
    drop_node_key(tn1, "next_passphrase_file")
    old = tn1.passphrase
    tn1.start(wait=False)
    assert tn1.wait_exit(60) == 2, tn1.stderr()
    assert "cluster passphrase does not match" in tn1.stderr(), tn1.stderr()
    assert old not in tn1.stderr()
    tn1.set_passphrase(NEW)
    tn1.start()
    assert export_key(tn1, pki.ec_wild.id, str(tmp_path), "new-only") == want_pub

    # A node set up before the change joins afresh with its old passphrase
    # and the new one in next_passphrase_file.
    assert tn1.stop() == 0
    tn1.data_dir += "-fresh"
    tn1.set_passphrase(old)
    add_node_key(tn1, "next_passphrase_file", new_file)
    tn1.start()
    in_step(cluster)
    wait_for("tn1 to hold the cluster key", lambda: tn1.status()["cluster_key"], timeout=60)
    assert "new passphrase is the one in next_passphrase_file" in tn1.stderr(), tn1.stderr()
    assert export_key(tn1, pki.ec_wild.id, str(tmp_path), "joined") == want_pub


# ---- bad input ----------------------------------------------------------------------

def test_rekey_bad_input_changes_nothing(agent_factory, pki, tmp_path):
    a = agent_factory(peers=())
    a.import_(pki.ec_wild.file("p12"), password=True)
    before = a.snapshot()
    same = write(str(tmp_path / "same"), a.passphrase + "\n", mode=0o600)
    empty = write(str(tmp_path / "empty"), "\n", mode=0o600)
    shared = write(str(tmp_path / "shared"), NEW + "\n", mode=0o644)
    cases = [
        (same, "current", "the same passphrase"),
        (str(tmp_path / "missing"), "cannot read", "a file that does not exist"),
        (str(tmp_path), "not a regular file", "a folder"),
        (shared, "chmod 600", "a file others may read"),
        (empty, "empty", "an empty passphrase"),
    ]
    for path, words, what in cases:
        res = a.cli("cluster", "rekey", "--new-passphrase-file", path)
        assert res.rc == 1, "%s: %s" % (what, res.describe())
        assert words in res.message, "%s: %s" % (what, res.message)
        assert a.passphrase not in res.message and NEW not in res.message
        assert a.snapshot() == before, what
    res = a.cli("cluster", "rekey")
    assert res.rc == 2 and "--new-passphrase-file" in res.message, res.describe()
    # the key still opens with the passphrase the store was made with
    assert a.stop() == 0
    a.start()
    assert a.snapshot() == before


# ---- a crash in the middle ------------------------------------------------------------

ROUNDS = 8


def test_sigkill_during_rekey_leaves_keys_under_one_passphrase(configured_agent, pki, tmp_path):
    """Kills the primary at spread-out moments of rekeys on a store with a
    few hundred keys; after each, the agent given both passphrases starts,
    its keys open (an export, and at the end a full rekey, which opens every
    key), and no key is in the clear in its files."""
    tmp = str(tmp_path)
    files = {}

    def pass_file(i):
        if i not in files:
            files[i] = write(os.path.join(tmp, "pass%d" % i), "passphrase number %d\n" % i,
                             mode=0o600)
        return files[i]

    a = configured_agent(start=False, passphrase="passphrase number 0")
    a.start()
    a.import_(pki.ec_wild.file("p12"), password=True)
    keys = os.path.join(tmp, "keys")
    os.makedirs(keys)
    for i in range(200):
        helpers.openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-out", os.path.join(keys, "k%03d.pem" % i))
    key_files = sorted(os.path.join(keys, f) for f in os.listdir(keys))
    for i in range(0, len(key_files), 50):
        a.import_(*key_files[i:i + 50])
    assert a.status()["counts"]["pending_keys"] == 200
    want_pub = pubkey(pki.ec_wild.file("key.pem"))
    secrets = helpers.key_secret_patterns(pki.ec_wild.file("key.pem"))
    secrets.update(("pending " + k, v) for k, v in
                   helpers.key_secret_patterns(key_files[0]).items())

    # how long a whole rekey takes here, to spread the kills over it
    a.stop()
    cur = 0
    a.node_extra = "next_passphrase_file = %s\n" % pass_file(1)
    a.write_config()
    a.start()
    t0 = time.monotonic()
    a.cli("cluster", "rekey", "--new-passphrase-file", pass_file(1), check=0)
    span = time.monotonic() - t0
    cur = 1

    rng = random.Random(16)
    outcomes = []
    for r in range(ROUNDS):
        nxt = cur + 1
        a.stop()
        a.set_passphrase("passphrase number %d" % cur)
        a.node_extra = "next_passphrase_file = %s\n" % pass_file(nxt)
        a.write_config()
        a.start()
        cmd = subprocess.Popen([a.binary, "-c", a.config, "cluster", "rekey",
                                "--new-passphrase-file", pass_file(nxt)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r % 2 == 0:
            # anywhere in the command: most land while the key is derived
            delay = rng.uniform(0.0, span * 1.2)
            time.sleep(delay)
        else:
            # within a few milliseconds of the re-sealing's start: during
            # the write transaction or just after its commit
            wait_for("the rekey to start re-sealing",
                     lambda: "re-sealing every key" in a.stderr(), timeout=60, step=0.001)
            delay = rng.uniform(0.0, 0.02)
            time.sleep(delay)
        assert a.kill() == -signal.SIGKILL
        cmd.wait(timeout=30)
        committed = "keys sealed under a new passphrase" in a.stderr()

        # no key in the clear in any file of the store
        for path, data in a.data_files().items():
            for what, pat in secrets.items():
                assert pat not in data, "%s in the clear in %s after a kill" % (what, path)

        # with both passphrases it starts, and says which one opened the store
        a.start()
        opened_next = "opens with next_passphrase_file" in a.stderr()
        # (a kill between the commit and its log line may leave a store
        # under the new key and no line saying so: only one way is sure)
        assert opened_next or not committed, "the rekey committed, yet the old key opens"
        assert a.status()["digest_ok"]
        assert export_key(a, pki.ec_wild.id, tmp, "round%d" % r) == want_pub
        assert a.status()["counts"]["pending_keys"] == 200
        outcomes.append(("anywhere" if r % 2 == 0 else "re-sealing", round(delay, 3),
                         "new" if opened_next else "old"))
        cur = nxt if opened_next else cur

    # Every key of the store opens: a last rekey to completion opens each
    # one (it refuses when one does not), then the newest passphrase alone.
    last = cur + 1
    res = a.cli("cluster", "rekey", "--new-passphrase-file", pass_file(last), check=0)
    assert res.data["resealed"] == 201, res.data
    a.stop()
    a.node_extra = ""
    a.set_passphrase("passphrase number %d" % last)
    a.start()
    assert export_key(a, pki.ec_wild.id, tmp, "final") == want_pub
    print("kills (when, delay s, key the store opened with): %s; a rekey took %.2f s"
          % (outcomes, span))


# ---- a change written before the rekey -------------------------------------------------

def test_diverged_change_from_before_a_rekey_is_refused(certsync_bin, pki, tmp_path):
    """An old primary, cut off while the promoted backup changed the
    passphrase, writes a change (its key sealed under the old passphrase).
    Back, it follows the new primary with its next_passphrase_file; its
    change lands in the diverged table, and re-applying it is refused: the
    key it holds would not open under the new key."""
    nodes = helpers.init_cluster(certsync_bin, (("primary", "primary"), ("backup", "backup")),
                                 site=SITE)
    primary, backup = nodes
    start_all(nodes)
    try:
        primary.import_(pki.ec_wild.file("p12"), password=True)
        primary.cli("cert", "default", pki.ec_wild.id, check=0)
        in_step(nodes)
        primary.kill()
        wait_for("the backup to take over", lambda: backup.cli("promote").rc == 0, timeout=30,
                 step=0.5)
        new_file = write(str(tmp_path / "new-passphrase"), NEW + "\n", mode=0o600)
        backup.cli("cluster", "rekey", "--new-passphrase-file", new_file, "--wait", "none",
                   check=0)

        add_node_key(primary, "next_passphrase_file", new_file)
        os.kill(backup.pid, signal.SIGSTOP)
        try:
            primary.start()
            wait_for("the old primary to accept a change alone", lambda: primary.cli(
                "cert", "self-signed", "--name", "lost", "--country", "GB", "--common-name",
                "lost.example.test", "--wait", "none").rc == 0, timeout=30, step=0.5)
        finally:
            os.kill(backup.pid, signal.SIGCONT)
        wait_for("the old primary to step down", lambda: primary.status()["role"] == "backup",
                 timeout=30)
        in_step([backup, primary])
        took_new_key([primary])
        assert export_key(primary, pki.ec_wild.id, str(tmp_path), "rejoined") == \
            pubkey(pki.ec_wild.file("key.pem"))
        div = wait_for("the lost change in the new primary's diverged table",
                       lambda: backup.cli("diverged", "list", check=0).data["diverged"],
                       timeout=30)
        before = backup.snapshot()
        res = backup.cli("diverged", "apply", div[0]["id"][:12])
        assert res.rc == 1, res.describe()
        assert "diverged apply refused" in res.message and "rekey" in res.message, res.message
        assert backup.snapshot() == before
    finally:
        try:
            stop_all(nodes)
        finally:
            shutil.rmtree(os.path.dirname(os.path.dirname(nodes[0].workdir)),
                          ignore_errors=True)
