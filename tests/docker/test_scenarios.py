"""The docker-compose scenarios (issues 5 and 13), in order, on one cluster
of four containers (docker/compose.yml) and the test CA: bootstrap,
coverage, failover, partition, restart, and ACME (a certificate from the
test CA renewed across a failover).  Each asserts with real clients from
the host (`openssl s_client -servername` to the ports published on
127.0.0.1) and `certsync verify --cluster` inside the containers.  Later
scenarios start from the state the earlier ones left, as an operator's
cluster would."""

import calendar
import os
import time

import pytest

import helpers
from acme_env import verified_id
from conftest import ACME_VALIDITY, NODES, SITE
from helpers import wait_for

TRAFFIC = ("tn1", "tn2")


def hostname(node):
    return node + ".example.test"


@pytest.fixture(scope="module")
def state():
    return {"primary": "primary"}


def verify_cluster(env, node, want):
    rc, data, err = env.certsync(node, "verify", "--cluster", want=None)
    assert rc == want, "verify --cluster on %s: exit %d\n%s\n%s" % (node, rc, data, err)
    return data


def served_id(env, node, sni):
    """What `openssl s_client -servername sni` receives from node's published port."""
    return helpers.s_client_id(env.ports[node], sni)


def serves(env, node, want, snis=None):
    return all(served_id(env, node, sni) == want for sni in snis or (hostname(node), SITE))


def import_file(env, node, *paths, password=None, want=0):
    args = [env.copy_in(node, p) for p in paths]
    if password:
        args += ["--password-file", env.copy_in(node, password)]
    return env.certsync(node, "import", *args, want=want)[1]


def position(env, node):
    s = env.status(node)
    return s["epoch"], s["seq"], s["digest"]


def converged(env, nodes=NODES):
    return len({position(env, n) for n in nodes}) == 1


def test_1_bootstrap(env, pki, state):
    """A chain with a wildcard SAN plus the site hostname, imported as
    PKCS#12 on the primary, is served by all four nodes; verify passes."""
    # No certificate yet: the healthcheck (`status --check`) does not pass.
    assert all(env.health(n) != "healthy" for n in NODES), {n: env.health(n) for n in NODES}
    leaf = pki.make_leaf("docker-site", "ec:p256", [SITE, "*.example.test"])
    pw = helpers.write(os.path.join(pki.dir, "docker-p12-password"), helpers.PASSWORD + "\n")
    import_file(env, "primary", leaf.file("p12"), password=pw)
    env.certsync("primary", "cert", "default", leaf.id)
    for n in NODES:
        wait_for("%s to serve the wildcard certificate" % n, lambda: serves(env, n, leaf.id),
                 timeout=20)
    # the chain came along: a client that trusts only the root verifies it
    out = helpers.s_client(env.ports["tn2"], hostname("tn2"), "-CAfile", pki.root,
                           "-verify_hostname", hostname("tn2"), "-verify_return_error")
    assert "Verify return code: 0 (ok)" in out, out[-1500:]
    # heartbeats relay every node's position: give them a few beats
    wait_for("verify --cluster to pass on the primary", lambda: env.certsync(
        "primary", "verify", "--cluster", want=None)[0] == 0, timeout=30, step=1)
    data = verify_cluster(env, "tn2", 0)
    assert data["ok"] is True and len(data["checks"]) == 5 * len(NODES)
    for n in NODES:
        wait_for("%s's healthcheck to pass" % n, lambda: env.health(n) == "healthy",
                 timeout=30, step=1)
    state["site"] = leaf


def test_2_coverage(env, pki, state):
    """A default that omits tn2's hostname: verify fails naming tn2, and tn2
    keeps serving the previous certificate, which covers it."""
    good = state["site"]
    narrow = pki.make_leaf("docker-narrow", "ec:p256",
                           [SITE] + [hostname(n) for n in ("primary", "backup", "tn1")])
    import_file(env, "primary", narrow.file("bundle.pem"))
    res = env.certsync("primary", "cert", "default", narrow.id)[1]
    assert res["uncovered"] == ["tn2.example.test"], res
    wait_for("every node to apply it", lambda: converged(env), timeout=20)
    data = wait_for("verify to fail on tn2's coverage", lambda: (
        lambda d: d if not d["ok"] and any(c["node"] == "tn2" and c["status"] != "ok"
                                           for c in d["checks"]) else None)(
        verify_cluster(env, "backup", 1)), timeout=20, step=1)
    bad = [c for c in data["checks"] if c["status"] != "ok"]
    assert [(c["node"], c["check"]) for c in bad] == [("tn2", "coverage")], bad
    assert "does not cover tn2.example.test" in bad[0]["detail"], bad
    # tn2 serves the covering certificate; tn1, covered, serves the new default
    assert served_id(env, "tn2", hostname("tn2")) == good.id
    assert served_id(env, "tn2", None) == good.id
    wait_for("tn1 to serve the new default", lambda: served_id(env, "tn1", None) == narrow.id,
             timeout=10)
    st = env.status("tn2")
    assert "tn2.example.test" in str(st["tls"]), st["tls"]
    # back to the certificate that covers everyone; the narrow one goes (it
    # names tn1 exactly, so tn1 would go on choosing it over the wildcard)
    env.certsync("primary", "cert", "default", good.id)
    env.certsync("primary", "cert", "delete", narrow.id)
    wait_for("verify to pass again", lambda: env.certsync(
        "tn2", "verify", "--cluster", want=None)[0] == 0, timeout=20, step=1)


def test_3_failover(env, pki, state):
    """The primary is killed; the backup is promoted; a renewal imported on
    it reaches both traffic nodes; the old primary comes back as a backup,
    catches up and serves the renewal."""
    site = state["site"]
    rc, _, err = env.certsync("backup", "promote", want=1)
    assert "primary primary was heard" in err, err
    env.compose("kill", "primary")
    wait_for("the backup to accept promotion", lambda: env.certsync(
        "backup", "promote", want=None)[0] == 0, timeout=30, step=1)
    st = env.status("backup")
    assert st["role"] == "primary" and st["replication"]["epoch"] == 2, st["replication"]
    state["primary"] = "backup"
    # the renewal: same key, later expiry
    renewal = pki.make_leaf("docker-renewal", "ec:p256", [SITE, "*.example.test"], days=400,
                            key=site.key)
    # committed, but the old primary (the promoted backup's backup) is dead:
    # not confirmed, exit 3
    res = import_file(env, "backup", renewal.file("chain.pem"), want=3)
    assert renewal.id in str(res), res
    assert res["replication"]["unconfirmed"] == ["primary"], res
    for n in TRAFFIC:
        wait_for("%s to serve the renewal" % n, lambda: serves(env, n, renewal.id), timeout=20)
        assert env.status(n)["replication"]["leader"] == "backup"
    env.compose("start", "primary")
    # (until its agent answers, status exits 1 with an error)
    wait_for("the old primary to step down", lambda: (
        lambda r: r[0] == 0 and r[1]["role"] == "backup")(
        env.certsync("primary", "status", want=None)), timeout=60, step=1)
    wait_for("the old primary to catch up", lambda: converged(env), timeout=60, step=1)
    wait_for("the old primary to serve the renewal", lambda: serves(env, "primary", renewal.id),
             timeout=20)
    verify_cluster(env, "primary", 0)
    state["renewal"] = renewal


def test_4_partition(env, state):
    """A traffic node cut off the cluster network while 50 changes are made
    converges when it is reconnected, without a restart."""
    primary, network = state["primary"], "%s_cluster" % env.project
    tn1 = env.container("tn1")
    started = env.docker("inspect", "-f", "{{.State.StartedAt}}", tn1).strip()
    env.docker("network", "disconnect", network, tn1)
    try:
        wait_for("the primary to see tn1 down", lambda: not {
            p["name"]: p for p in env.status(primary)["replication"]["peers"]}["tn1"][
            "reachable"], timeout=30, step=1)
        before = env.status("tn1")["seq"]
        ids = (state["renewal"].id, state["site"].id)
        for i in range(50):
            env.certsync(primary, "cert", "default", ids[i % 2], "--wait", "backup")
        assert env.status("tn1")["seq"] == before, "tn1 got changes while cut off"
    finally:
        env.docker("network", "connect", "--alias", hostname("tn1"), network, tn1)
    wait_for("tn1 to converge", lambda: converged(env), timeout=60, step=1)
    assert env.docker("inspect", "-f", "{{.State.StartedAt}}", tn1).strip() == started
    verify_cluster(env, "tn1", 0)


def test_5_restart(env, state):
    """Every node restarted: the stores survive in their volumes, the
    cluster re-forms around the same primary, verify passes."""
    primary = state["primary"]
    before = {n: position(env, n) for n in NODES}
    certs = env.certsync(primary, "cert", "list")[1]["certificates"]
    env.compose("restart", timeout=300)
    for n in NODES:
        wait_for("%s to answer" % n, lambda: env.certsync(n, "status", want=None)[0] == 0,
                 timeout=60, step=1)
    assert {n: position(env, n) for n in NODES} == before
    assert env.certsync(primary, "cert", "list")[1]["certificates"] == certs
    wait_for("the cluster to re-form", lambda: env.status(primary)["replication"]["leading"]
             and all(p["reachable"] for p in env.status(primary)["replication"]["peers"]),
             timeout=60, step=1)
    data = wait_for("verify --cluster to pass after the restart", lambda: (
        lambda r: r[1] if r[0] == 0 else None)(
        env.certsync(primary, "verify", "--cluster", want=None)), timeout=60, step=1)
    assert data["ok"] is True
    # the operator's last choice in test_4 (the first certificate, though
    # its renewal expires later) is what every node serves
    assert env.status(primary)["default"]["id"] == state["site"].id
    for n in NODES:
        assert serves(env, n, state["site"].id), n


def pebble_served(env, root, node, name):
    """The id of what node's published TLS port serves for name, when it
    verifies against pebble's root and matches name; else None."""
    return verified_id("127.0.0.1", env.ports[node], name, root)


def test_6_acme_renewed_across_a_failover(env, tmp_path):
    """The cluster obtains its default certificate from the test CA
    (pebble, http-01) with every name resolving to a traffic node, not the
    primary: all four nodes serve it.  The primary is killed, the backup
    promoted, and the renewal (a third of a 90 s lifetime left) completes
    from the backup: every remaining node serves the new certificate."""
    primary = next(n for n in NODES if env.status(n)["role"] == "primary")
    backup = next(n for n in NODES if n not in TRAFFIC and n != primary)
    names = [SITE] + [hostname(n) for n in NODES]
    # pebble resolves every name through challtestsrv: to tn1, on the cluster network
    tn1 = env.address("tn1")
    for name in names:
        env.add_a(name, tn1)
    root = str(tmp_path / "pebble-root.pem")
    helpers.write(root, env.pebble_root())
    env.certsync(primary, "acme", "add", "docker", *[a for n in names for a in ("--domain", n)],
                 "--challenge", "http-01", "--default")

    def everywhere(nodes, not_id=None):
        ids = {pebble_served(env, root, n, name) for n in nodes for name in names}
        return ids.pop() if len(ids) == 1 and None not in ids and not_id not in ids else None

    try:
        first = wait_for("all four nodes to serve the certificate from pebble",
                         lambda: everywhere(NODES), timeout=60, step=1)
    except AssertionError as e:
        raise AssertionError("%s\n%s" % (e, env.certsync(primary, "acme", "show", "docker",
                                                         want=None)))
    shown = env.certsync(primary, "acme", "show", "docker")[1]
    assert shown["state"] == "scheduled" and shown["certificate"]["id"] == first, shown
    assert env.status(primary)["default"]["id"] == first

    env.compose("kill", primary)
    killed = time.time()
    wait_for("the backup to accept promotion", lambda: env.certsync(
        backup, "promote", want=None)[0] == 0, timeout=30, step=1)
    remaining = [n for n in NODES if n != primary]
    try:
        second = wait_for("the renewal from the promoted backup to be served everywhere",
                          lambda: everywhere(remaining, not_id=first), timeout=120, step=1)
    except AssertionError as e:
        raise AssertionError("%s\n%s" % (e, env.certsync(backup, "acme", "show", "docker",
                                                         want=None)))
    # the backup ordered it, after the kill
    shown = env.certsync(backup, "acme", "show", "docker")[1]
    assert shown["certificate"]["id"] == second and shown["state"] == "scheduled", shown
    not_after = calendar.timegm(time.strptime(shown["certificate"]["not_after"],
                                              "%Y-%m-%dT%H:%M:%SZ"))
    assert not_after - ACME_VALIDITY >= int(killed) - 2, (killed, shown)
    for n in remaining:
        assert env.status(n)["default"]["id"] == second, n
