#!/usr/bin/python3
"""compare_acme.py — ACME issuance by a certsync cluster against Debian's
lego and certbot, on one pebble, in one run (issue 13's benchmark).

    bench/compare_acme.py [--build DIR] [--rounds N] [--many N] [--json FILE]

One pebble (PEBBLE_VA_NOSLEEP=1, resolving through pebble-challtestsrv's
DNS) on 127.0.0.1; a three-node certsync cluster on 127.0.0.11-13 (the
tests' AcmeCluster: primary, backup, tn1, each node's http_listen on the port
where pebble validates http-01); lego on 127.0.0.14 and certbot (standalone)
on 127.0.0.15 on that same port.  Before each tool's turn the names are
pointed (challtestsrv A records) at whoever answers: for certsync the site
hostname at the backup and each node hostname at its node.

- issue: rounds (5) of one certificate for the same four names (site
  hostname and the three node hostnames), after one untimed round each that
  registers the account.  lego and certbot: the process's run, issuance
  alone.  certsync: from `certsync acme add` to every node's TLS endpoint
  serving the new certificate for every name, verified against pebble's root
  (Python's ssl, polled every 20 ms).  Medians.
- CPU per issuance: lego's utime + stime (wait4), certsync's primary
  (/proc/PID/stat) over the same rounds.
- many: N (200) certificates of one name each (mNNN.example.test); lego one
  run after another; certsync all added at once, timed until every one is
  obtained and every node serves it.

The lead's goals: issue-and-serve-everywhere <= 1.0x lego's issuance and <=
0.5x certbot's; primary CPU per issuance <= lego's; many at >= 2x lego's
rate.  Runs niced; the certsync cluster runs the build's certsync (--build).
"""

import argparse
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from benchlib import log  # noqa: E402
import helpers  # noqa: E402
from acme_env import AcmeCluster, TLSFiles, run_cluster  # noqa: E402

LEGO_ADDR = "127.0.0.14"
CERTBOT_ADDR = "127.0.0.15"


def timed_process(args, env):
    """Runs args; returns (wall seconds, CPU seconds of the process and its
    children).  Fails loudly."""
    t0 = time.monotonic()
    p = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=env)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit("%s failed (%d):\n%s" % (args[0], p.returncode, out.decode(errors="replace")))
    return wall, ru.ru_utime + ru.ru_stime


class Lego:
    def __init__(self, d, pebble, tls, port):
        self.path = os.path.join(d, "lego")
        self.base = ["lego", "--server", pebble.dir_url, "--accept-tos",
                     "--email", "ops@example.test", "--key-type", "ec256", "--http",
                     "--http.port", "%s:%d" % (LEGO_ADDR, port), "--path", self.path]
        self.env = dict(os.environ, LEGO_CA_CERTIFICATES=tls.ca)

    def issue(self, names):
        return timed_process(self.base + [a for n in names for a in ("--domains", n)] + ["run"],
                             self.env)


class Certbot:
    def __init__(self, d, pebble, tls, port):
        self.d = os.path.join(d, "certbot")
        self.base = ["certbot", "certonly", "--non-interactive", "--agree-tos",
                     "--email", "ops@example.test", "--server", pebble.dir_url,
                     "--standalone", "--preferred-challenges", "http",
                     "--http-01-address", CERTBOT_ADDR, "--http-01-port", str(port),
                     "--key-type", "ecdsa", "--elliptic-curve", "secp256r1",
                     "--config-dir", os.path.join(self.d, "config"),
                     "--work-dir", os.path.join(self.d, "work"),
                     "--logs-dir", os.path.join(self.d, "logs"),
                     "--cert-name", "bench", "--force-renewal"]
        self.env = dict(os.environ, REQUESTS_CA_BUNDLE=tls.ca)

    def issue(self, names):
        return timed_process(self.base + [a for n in names for a in ("-d", n)], self.env)


def cpu_seconds(pid, task=None):
    """utime + stime of a process (or of one of its threads) so far."""
    path = "/proc/%d/stat" % pid if task is None else "/proc/%d/task/%s/stat" % (pid, task)
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_thread(pid):
    """utime + stime so far of each of the agent's threads, summed by name
    (cs-tls: the TLS endpoint; cs-acme: the runner; cs-repl, cs-worker...;
    certsync: the loop)."""
    out = {}
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, task)) as f:
                comm = f.read().strip()
            out[comm] = out.get(comm, 0) + cpu_seconds(pid, task)
        except OSError:
            pass  # a thread that ended meanwhile
    return out


class Served:
    """What every node's TLS endpoint serves, seen as a client would: a
    handshake verified against pebble's root and the name (Python's ssl:
    about a millisecond each, fit for polling)."""

    def __init__(self, cluster):
        self.nodes = cluster.nodes
        self.ctx = ssl.create_default_context(cafile=cluster.root)

    def id(self, node, name):
        try:
            with socket.create_connection((node.address, node.tls_port), timeout=5) as s:
                with self.ctx.wrap_socket(s, server_hostname=name) as t:
                    return helpers.cert_id(t.getpeercert(binary_form=True))
        except (OSError, ssl.SSLError):
            return None

    def everywhere(self, names, old, timeout):
        """Waits (polling every 20 ms) until every node serves one
        certificate, not in old, for every name; returns its id."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ids = {self.id(n, name) for n in self.nodes for name in names}
            if len(ids) == 1 and not ids & (old | {None}):
                return ids.pop()
            time.sleep(0.02)
        sys.exit("certsync: %s not served everywhere within %d s" % (names, timeout))


def point(pebble, names, address):
    for n in names:
        pebble.add_a(n, address)


def point_at_cluster(c, names):
    """Node hostnames at their node, every other name at the backup."""
    own = {n.hostname: n.address for n in c.nodes}
    for n in names:
        c.pebble.add_a(n, own.get(n, c.node("backup").address))


def certsync_issue(c, served, name, names, old):
    """acme add NAME, timed until every node serves the result; returns
    (wall, primary CPU, certificate id)."""
    primary = c.node("primary")
    cpu0, t0 = cpu_by_thread(primary.pid), time.monotonic()
    # --default: the default, served for every name it covers, moves to it
    primary.cli("acme", "add", name, *[a for n in names for a in ("--domain", n)],
                "--challenge", "http-01", "--default", check=0)
    cid = served.everywhere(names, old, timeout=300)
    cpu1 = cpu_by_thread(primary.pid)
    spent = {k: v - cpu0.get(k, 0) for k, v in cpu1.items()}
    return time.monotonic() - t0, spent, cid


def obtained(node, count):
    """True once `acme list` shows count managed certificates, each with a
    certificate."""
    certs = node.cli("acme", "list", check=0).data["certificates"]
    return len(certs) >= count and all(m["certificate"] for m in certs)


def bench(args, d):
    tls = TLSFiles(d, "pebble")
    c = AcmeCluster(args.binary, d, tls)
    c.configure()
    c.start_pebble()
    names = c.hostnames()
    port = c.http_port
    lego, certbot = Lego(d, c.pebble, tls, port), Certbot(d, c.pebble, tls, port)
    res = {"rounds": args.rounds, "names": names}

    log("lego: %d rounds of %s" % (args.rounds, names))
    point(c.pebble, names, LEGO_ADDR)
    lego.issue(names)  # registers the account
    runs = [lego.issue(names) for _ in range(args.rounds)]
    res["lego"] = {"wall": [r[0] for r in runs], "cpu": [r[1] for r in runs]}

    log("certbot: %d rounds" % args.rounds)
    point(c.pebble, names, CERTBOT_ADDR)
    certbot.issue(names)
    runs = [certbot.issue(names) for _ in range(args.rounds)]
    res["certbot"] = {"wall": [r[0] for r in runs], "cpu": [r[1] for r in runs]}

    log("certsync: %d rounds on a three-node cluster" % args.rounds)
    point_at_cluster(c, names)
    for nodes in run_cluster(c.nodes):
        served = Served(c)
        seen = set()
        _, _, cid = certsync_issue(c, served, "warm", names, seen)  # registers the account
        seen.add(cid)
        walls, cpus, threads = [], [], []
        for i in range(args.rounds):
            wall, spent, cid = certsync_issue(c, served, "r%d" % i, names, seen)
            seen.add(cid)
            walls.append(wall)
            cpus.append(sum(spent.values()))
            threads.append(spent)
        res["certsync"] = {"wall": walls, "cpu": cpus, "threads": threads}

        many = ["m%03d.example.test" % i for i in range(args.many)]
        log("certsync: %d managed certificates at once" % args.many)
        point_at_cluster(c, many)
        primary = nodes[0]
        t0 = time.monotonic()
        for i, n in enumerate(many):
            primary.cli("acme", "add", "m%03d" % i, "--domain", n, "--challenge", "http-01",
                        check=0)
        helpers.wait_for("%d managed certificates" % args.many,
                         lambda: obtained(primary, args.many + args.rounds + 1),
                         timeout=3600, step=0.5)
        for n in many:
            served.everywhere([n], set(), timeout=300)
        res["certsync_many"] = {"count": args.many, "wall": time.monotonic() - t0}

    log("lego: %d certificates one after another" % args.lego_many)
    singles = ["l%03d.example.test" % i for i in range(args.lego_many)]
    point(c.pebble, singles, LEGO_ADDR)
    t0 = time.monotonic()
    for n in singles:
        lego.issue([n])
    res["lego_many"] = {"count": args.lego_many, "wall": time.monotonic() - t0}
    c.pebble.stop()
    return res


def report(res):
    med = {k: statistics.median(res[k]["wall"]) for k in ("lego", "certbot", "certsync")}
    cpu = {k: statistics.median(res[k]["cpu"]) for k in ("lego", "certbot", "certsync")}
    rate = {k: res[k]["count"] / res[k]["wall"] for k in ("certsync_many", "lego_many")}
    threads = res["certsync"]["threads"]
    by_thread = {k: statistics.median(t.get(k, 0) for t in threads)
                 for k in set().union(*threads)}
    without_tls = statistics.median(sum(t.values()) - t.get("cs-tls", 0) for t in threads)
    lines = [
        "issuance of %d names, median of %d rounds (s): lego %.2f, certbot %.2f, certsync "
        "issue-and-serve-everywhere %.2f" % (len(res["names"]), res["rounds"], med["lego"],
                                             med["certbot"], med["certsync"]),
        "  certsync / lego      %.2fx (goal <= 1.0)" % (med["certsync"] / med["lego"]),
        "  certsync / certbot   %.2fx (goal <= 0.5)" % (med["certsync"] / med["certbot"]),
        "CPU per issuance (s): lego %.3f, certbot %.3f, certsync primary %.3f" % (
            cpu["lego"], cpu["certbot"], cpu["certsync"]),
        "  certsync primary / lego %.2fx (goal <= 1.0)" % (cpu["certsync"] / cpu["lego"]),
        "  the primary's CPU by thread, median (s): " + ", ".join(
            "%s %.3f" % (k, v) for k, v in sorted(by_thread.items(), key=lambda kv: -kv[1])),
        "  without its TLS endpoint (cs-tls: answering this benchmark's own polls, a "
        "verified handshake per node and name every 20 ms) %.3f: %.2fx lego" % (
            without_tls, without_tls / cpu["lego"]),
        "many: certsync %d certificates in %.1f s (%.2f/s); lego %d one after another in "
        "%.1f s (%.2f/s)" % (res["certsync_many"]["count"], res["certsync_many"]["wall"],
                             rate["certsync_many"], res["lego_many"]["count"],
                             res["lego_many"]["wall"], rate["lego_many"]),
        "  certsync rate / lego rate %.2fx (goal >= 2)" % (rate["certsync_many"] /
                                                          rate["lego_many"]),
    ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--many", type=int, default=200)
    ap.add_argument("--lego-many", type=int, default=20,
                    help="lego's runs for its rate (each takes seconds)")
    ap.add_argument("--json")
    args = ap.parse_args()
    args.binary = os.path.join(args.build, "certsync")
    for tool in ("lego", "certbot", "pebble", "pebble-challtestsrv"):
        if not shutil.which(tool):
            sys.exit("%s is missing: scripts/install-deps installs it" % tool)
    os.nice(10)
    d = tempfile.mkdtemp(prefix="certsync-acme-bench-")
    try:
        res = bench(args, d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print(report(res))
    if args.json:
        helpers.write(args.json, json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
