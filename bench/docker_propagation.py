#!/usr/bin/env python3
"""docker_propagation.py — how fast a change crosses the eight-node docker
cluster (docker/compose.yml + compose.large.yml: primary, backup, tn1-tn6),
against the same eight agents as plain processes on 127.0.0.1, in one run.

    bench/docker_propagation.py [--build DIR] [--imports N] [--behind N] [--json FILE]

For each cluster:
- propagation: N imports (100) of a new certificate on the primary, each
  one request on its control socket (--wait none); the time from sending it
  until every traffic node's TLS endpoint serves the new certificate for its
  name (a TLS handshake from the host with that SNI, each node polled in a
  thread of its own), p50/p99, after one untimed import that warms the
  traffic nodes' tables; and the time of the import request alone;
- convergence: tn6 is cut off (docker: `docker network disconnect` from the
  cluster network; processes: SIGSTOP), the primary makes M changes (1,000),
  tn6 is let back (reconnect with its alias; SIGCONT), and the time until
  every node is at the same position with the same store digest;
- the floor: one full TLS handshake from the host to a traffic node (p50),
  which bounds how finely "serves it" is seen.
A process stopped with SIGSTOP keeps its TCP connections; a container cut
off the network loses them and reconnects with ZeroMQ's backoff: the two
convergence figures differ by that reconnection.
The ratios docker/processes say what the containers and their network cost.

Needs the README's setup (scripts/install-deps installs docker.io and
docker-compose), a build, root (dockerd).  Binds 127.0.0.1 only; the cluster
network is internal; every process is stopped by PID, every container,
network, volume and image removed.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "docker"))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import cluster  # noqa: E402
from benchlib import pct  # noqa: E402
import helpers  # noqa: E402

TRAFFIC = ("tn1", "tn2", "tn3", "tn4", "tn5", "tn6")
NODES = (("primary", "primary"), ("backup", "backup")) + tuple((t, "traffic") for t in TRAFFIC)
LATE = "tn6"  # the node cut off for the convergence run


def make_certs(folder, n):
    """n self-signed ECDSA certificates (bNNN.bench.test) and two that
    cover every node (flipped as the default for the convergence run), each
    as one PEM file with its key; returns ([(path, id, name)], [path, path])."""
    out, defaults = [], []
    for i in range(n + 2):
        name = "b%03d.bench.test" % i if i < n else "default%d.example.test" % i
        sans = "DNS:%s" % name if i < n else "DNS:support.example.test,DNS:*.example.test"
        key, crt = (os.path.join(folder, "%d.%s" % (i, e)) for e in ("key", "crt"))
        helpers.openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", key, "-out", crt, "-days", "30", "-subj",
                        "/CN=" + name, "-addext", "subjectAltName=" + sans,
                        "-addext", "basicConstraints=critical,CA:FALSE")  # a leaf, not a root
        pem = os.path.join(folder, "%d.pem" % i)
        helpers.write(pem, helpers.read(key) + helpers.read(crt))
        der = helpers.openssl("x509", "-in", crt, "-outform", "DER").stdout
        (out if i < n else defaults).append((pem, helpers.cert_id(der), name))
    return out, defaults


class Target:
    """What the measurements need of a cluster: requests to a node's control
    socket, the TLS port of a node, cutting tn6 off and letting it back."""

    def __init__(self, label, sockets, ports, cut, heal):
        self.label, self.sockets, self.ports = label, sockets, ports
        self.cut, self.heal = cut, heal

    def request(self, node, cmd, args):
        r = cluster.control_request(self.sockets[node], cmd, args)
        if not r.get("ok"):
            raise RuntimeError("%s on %s: %s" % (cmd, node, r))
        return r

    def position(self, node):
        s = self.request(node, "status", {})["result"]
        return s["epoch"], s["seq"], s["digest"]


def until(cond, timeout, step=0.002):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return time.monotonic()
        time.sleep(step)
    raise RuntimeError("timed out after %.0f s" % timeout)


def propagation(t, certs):
    total, commit = [], []
    for pem, cid, name in certs:
        served = {}
        t0 = time.monotonic()
        t.request("primary", "import", cluster.import_args(pem))
        commit.append(time.monotonic() - t0)

        def poll(node):
            served[node] = until(lambda: cluster.served_id(t.ports[node], name) == cid, 20,
                                 step=0)

        threads = [threading.Thread(target=poll, args=(n,)) for n in TRAFFIC]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if len(served) != len(TRAFFIC):
            raise RuntimeError("%s: %s never served by %s" % (t.label, name,
                                                               set(TRAFFIC) - set(served)))
        total.append(max(served.values()) - t0)
    return total, commit


def convergence(t, defaults, behind):
    ids = [d[1] for d in defaults]
    for pem, _, _ in defaults:
        t.request("primary", "import", cluster.import_args(pem))
    t.request("primary", "cert.default", {"id": ids[0], "wait": "all"})
    t.cut()
    until(lambda: not {p["name"]: p for p in t.request("primary", "status", {})["result"]
                       ["replication"]["peers"]}[LATE]["reachable"], 30, step=0.2)
    for i in range(behind):
        t.request("primary", "cert.default", {"id": ids[(i + 1) % 2], "wait": "none"})
    head = t.position("primary")
    t0 = time.monotonic()
    t.heal()
    end = until(lambda: t.position(LATE) == head, 120, step=0.005)
    return end - t0


def floor(t, name, n=50):
    xs = []
    for _ in range(n):
        t0 = time.monotonic()
        cluster.served_id(t.ports["tn1"], name)
        xs.append(time.monotonic() - t0)
    return statistics.median(xs)


def measure(t, certs, defaults, behind):
    # the first import also brings the traffic nodes their first table:
    # it is not timed
    propagation(t, certs[:1])
    total, commit = propagation(t, certs[1:])
    fl = floor(t, certs[0][2])
    conv = convergence(t, defaults, behind)
    return {"floor_ms": fl * 1e3, "p50_ms": pct(total, 50) * 1e3, "p99_ms": pct(total, 99) * 1e3,
            "commit_p50_ms": pct(commit, 50) * 1e3, "converge_s": conv}


def run_docker(binary, certs, defaults, behind):
    c = cluster.Cluster(binary, large=True, prefix="certsync-bench")
    try:
        c.start()
        net = "%s_cluster" % c.project
        late = c.container(LATE)
        t = Target("docker", {n: c.control_socket(n) for n in c.nodes}, c.ports,
                   lambda: c.docker("network", "disconnect", net, late),
                   lambda: c.docker("network", "connect", "--alias", LATE + ".example.test",
                                    net, late))
        until(lambda: all(p["reachable"] for p in t.request("primary", "status", {})["result"]
                          ["replication"]["peers"]), 60, step=0.2)
        return measure(t, certs, defaults, behind)
    finally:
        left = c.stop()
        if left:
            print("containers left behind: %s" % left, file=sys.stderr)


def run_processes(binary, certs, defaults, behind):
    nodes = helpers.init_cluster(binary, NODES)
    try:
        for n in nodes:
            n.log_level = "warn"
            n.write_config()
            n.start()
        by = {n.name: n for n in nodes}
        t = Target("processes", {n.name: n.control_socket for n in nodes},
                   {n.name: n.tls_port for n in nodes},
                   lambda: os.kill(by[LATE].pid, signal.SIGSTOP),
                   lambda: os.kill(by[LATE].pid, signal.SIGCONT))
        until(lambda: all(p["reachable"] for p in t.request("primary", "status", {})["result"]
                          ["replication"]["peers"]), 60, step=0.2)
        return measure(t, certs, defaults, behind)
    finally:
        for n in nodes:
            if n.running:
                os.kill(n.pid, signal.SIGCONT)
                n.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--imports", type=int, default=100)
    ap.add_argument("--behind", type=int, default=1000)
    ap.add_argument("--json")
    a = ap.parse_args()
    binary = os.path.join(a.build, "certsync")
    work = tempfile.mkdtemp(prefix="cs-prop-")
    certs, defaults = make_certs(work, a.imports + 1)
    res = {"processes": run_processes(binary, certs, defaults, a.behind),
           "docker": run_docker(binary, certs, defaults, a.behind)}
    print("%d imports on the primary until all 6 traffic nodes serve each; then tn6 %d "
          "changes behind" % (a.imports, a.behind))
    print("%-10s %10s %10s %10s %12s %12s" % ("cluster", "serve p50", "serve p99", "import p50",
                                            "handshake", "converge"))
    for k in ("processes", "docker"):
        r = res[k]
        print("%-10s %8.1fms %8.1fms %8.1fms %10.1fms %11.2fs" % (
            k, r["p50_ms"], r["p99_ms"], r["commit_p50_ms"], r["floor_ms"], r["converge_s"]))
    d, p = res["docker"], res["processes"]
    print("docker/processes: serve p50 %.2f, p99 %.2f, converge %.2f" % (
        d["p50_ms"] / p["p50_ms"], d["p99_ms"] / p["p99_ms"], d["converge_s"] / p["converge_s"]))
    print("serve p50 / handshake: processes %.1f, docker %.1f" % (
        p["p50_ms"] / p["floor_ms"], d["p50_ms"] / d["floor_ms"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
