#!/usr/bin/env python3
"""A seeded, reproducible fault campaign against a cluster of real certsync
agents: primary, backup and two traffic nodes, each in a network namespace
of its own, linked by a bridge that lives in one more namespace (nothing of
it touches the host's own network).  A schedule, made from its seed alone,
is a sequence of faults: SIGKILL and restart of any role, SIGSTOP/SIGCONT
pauses, failover by kill, by pause and by partition, `promote --force`
while the primary lives, an old primary restarted while the others are
frozen, and partitions (a node's link down, or the nodes split in two
groups on two bridges).  Meanwhile a client keeps making changes with
`--wait backup` and records every answer.

After healing every fault it checks what an answer promises (README,
"exit status of a change"):
  - exit 0 (committed and confirmed): on every node, never diverged;
  - exit 3 (committed, not confirmed): on every node or diverged, never gone;
  - exit 1 (nothing changed): on no node and not diverged;
  - exit 4 or no answer in time: either way;
and that every node reaches the same position with the same digest (and
the digest recomputes), exactly one node leads, `verify --cluster` exits 0
on every node (run in its namespace), and no agent crashed, exited badly on
SIGTERM or logged a sanitizer report.

  campaign.py --seed 7                  # one schedule; prints its faults and totals
  campaign.py --seed 1 --schedules 100  # seeds 1..100, totals at the end

Needs root (ip netns) and CERTSYNC=<build>/certsync.  A failing schedule
prints its seed and faults; the same --seed (and --duration) replays it."""

import argparse
import collections
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import helpers  # noqa: E402

SITE = "support.example.test"
NODES = (("primary", "primary"), ("backup", "backup"), ("tn1", "traffic"), ("tn2", "traffic"))
# A private subnet that exists only inside the namespaces made here.
SUBNET = "10.77.0"
REPL_PORT, TLS_PORT = 7700, 8443
# Above the agent's 5 s wait for acknowledgements plus a pause's length.
CLIENT_TIMEOUT = 15
PROMOTE_TIMEOUT = 30
SETTLE_TIMEOUT = 30
CONVERGE_TIMEOUT = 90
VERIFY_TIMEOUT = 30
SANITIZER = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:|"
                       r"SUMMARY: UndefinedBehaviorSanitizer")

# Each kind, and the seconds it takes besides its hold (detection, restarts):
# what the generator counts to keep a schedule near its duration.
KINDS = {
    "kill": 1.5, "pause": 0.2, "failover-kill": 5.0, "failover-pause": 5.0,
    "force-promote": 0.5, "zombie": 6.0, "partition": 0.2, "partition-failover": 5.0,
    "split": 0.2,
}
PARTITION_KINDS = ("partition", "partition-failover", "split")
ROLES = ("leader", "standby", "tn1", "tn2")


def make_schedule(seed, duration, partitions=True):
    """The faults of a schedule: a function of its arguments alone.  Targets
    are roles (the leader, the standby: the other primary-capable node),
    resolved as the schedule runs; the driver's own promotions decide them,
    so a replay resolves them the same way."""
    rng = random.Random(seed)
    kinds = sorted(k for k in KINDS if partitions or k not in PARTITION_KINDS)
    faults, spent = [], 0.0
    while spent < duration:
        f = {"kind": rng.choice(kinds), "gap": round(rng.uniform(0.3, 1.5), 2),
             "hold": round(rng.uniform(0.5, 4.0), 2)}
        if f["kind"] in ("kill", "pause", "partition"):
            f["target"] = rng.choice(ROLES)
        if f["kind"] == "split":
            f["with"] = rng.choice(("tn1", "tn2"))  # on the leader's side
        faults.append(f)
        spent += f["gap"] + f["hold"] + KINDS[f["kind"]]
    return faults


def ip(*args):
    p = subprocess.run(["ip"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    if p.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args), p.stderr.decode().strip()))


_nets = 0


class Network:
    """A namespace per node (its eth0 at SUBNET.N) and a switch namespace
    with two bridges: br0 joins everyone; a split moves some ports to br1;
    a cut sets a port down."""

    def __init__(self, names):
        global _nets
        _nets += 1
        tag = "cs%d-%d" % (os.getpid(), _nets)
        self.switch = tag + "-sw"
        self.names = list(names)
        self.ns = {n: "%s-%s" % (tag, n) for n in self.names}
        self.made = []

    def addr(self, name):
        return "%s.%d" % (SUBNET, self.names.index(name) + 1)

    def build(self):
        sw = self.switch
        ip("netns", "add", sw)
        self.made.append(sw)
        for br in ("br0", "br1"):
            ip("-n", sw, "link", "add", br, "type", "bridge")
            ip("-n", sw, "link", "set", br, "up")
        for n in self.names:
            ns = self.ns[n]
            ip("netns", "add", ns)
            self.made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", sw, "link", "add", "p-" + n, "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            ip("-n", sw, "link", "set", "p-" + n, "master", "br0", "up")
            ip("-n", ns, "addr", "add", self.addr(n) + "/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")

    def cut(self, name):
        ip("-n", self.switch, "link", "set", "p-" + name, "down")

    def split(self, names):
        for n in names:
            ip("-n", self.switch, "link", "set", "p-" + n, "master", "br1")

    def heal(self):
        for n in self.names:
            ip("-n", self.switch, "link", "set", "p-" + n, "master", "br0", "up")

    def destroy(self):
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30)
        self.made = []


class NsNode(helpers.ClusterNode):
    """A cluster node whose agent runs in its namespace."""

    def __init__(self, binary, folder, name, role, ns):
        super().__init__(binary, folder, name, role, name + ".example.test", SITE, REPL_PORT,
                         TLS_PORT)
        self.ns = ns
        self.launcher = ["ip", "netns", "exec", ns]
        self.paused = False

    def in_ns(self, *args, timeout=60):
        """`certsync --json -c CONF ARGS` run inside the node's namespace."""
        return helpers.run_certsync("ip", ["netns", "exec", self.ns, self.binary, "--json",
                                           "-c", self.config] + list(args), json=False,
                                    timeout=timeout)


def send_change(node, name, wait="backup"):
    """One change, as a script would send it: the answer, classified."""
    args = [node.binary, "--json", "-c", node.config, "cert", "self-signed", "--name", name,
            "--country", "US", "--common-name", SITE, "--san", "*.example.test",
            "--wait", wait]
    t0 = time.monotonic()
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=CLIENT_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        return {"name": name, "node": node.name, "rc": None, "outcome": "unknown",
                "why": "no answer in %d s" % CLIENT_TIMEOUT}
    try:
        data = json.loads(out) if out.strip() else None
    except ValueError:
        data = None
    rec = {"name": name, "node": node.name, "rc": p.returncode,
           "secs": round(time.monotonic() - t0, 3), "stderr": err.decode(errors="replace")[:300]}
    repl = data.get("replication") if isinstance(data, dict) else None
    if p.returncode == 0:
        rec["outcome"] = "confirmed"
        if not isinstance(repl, dict) or repl.get("unconfirmed") != []:
            rec["outcome"] = "anomaly"
            rec["why"] = "exit 0 without the backup's confirmation: %s" % repl
    elif p.returncode == 3:
        rec["outcome"] = "unconfirmed"
        if not isinstance(repl, dict) or not repl.get("unconfirmed"):
            rec["outcome"], rec["why"] = "anomaly", "exit 3 naming no node: %s" % repl
    elif p.returncode == 1:
        rec["outcome"] = "refused"
        m = re.search(r"run it on the primary, (\S+)", rec["stderr"])
        rec["primary"] = m.group(1) if m else None
    elif p.returncode == 4:
        rec["outcome"] = "unknown"
    else:
        rec["outcome"], rec["why"] = "anomaly", "exit %s" % p.returncode
    if data and isinstance(data.get("certificate"), dict):
        rec["id"] = data["certificate"]["id"]
    return rec


class Campaign:
    def __init__(self, binary, seed, duration=25.0, partitions=True, log=print, keep=False):
        self.binary, self.seed, self.duration = binary, seed, duration
        self.faults = make_schedule(seed, duration, partitions)
        self.log, self.keep = log, keep
        self.ledger, self.ledger_lock = [], threading.Lock()
        self.problems, self.timeline = [], []
        self.counter = 0
        self.t0 = time.monotonic()

    # -- helpers --------------------------------------------------------------
    def note(self, what):
        line = "%7.2f  %s" % (time.monotonic() - self.t0, what)
        self.timeline.append(line)
        self.log("  " + line)

    def problem(self, what):
        self.problems.append(what)
        self.note("PROBLEM: " + what)

    def node(self, role):
        if role == "leader":
            return self.nodes[self.leader]
        if role == "standby":
            return self.nodes["backup" if self.leader == "primary" else "primary"]
        return self.nodes[role]

    def record(self, rec):
        with self.ledger_lock:
            self.ledger.append(rec)
        if rec["outcome"] == "anomaly":
            self.problem("change %s on %s: %s" % (rec["name"], rec["node"], rec.get("why")))

    def next_name(self):
        with self.ledger_lock:
            self.counter += 1
            return "c%d-%d" % (self.seed, self.counter)

    # -- the client -----------------------------------------------------------
    def client(self):
        target = None
        while not self.client_stop.is_set():
            node = self.nodes[target or self.leader]
            rec = send_change(node, self.next_name())
            self.record(rec)
            target = rec.get("primary") if rec["outcome"] == "refused" else (
                node.name if rec["outcome"] in ("confirmed", "unconfirmed") else None)
            if target not in self.nodes:
                target = None
            self.client_stop.wait(0.01 if rec["outcome"] == "confirmed" else 0.2)

    # -- faults ---------------------------------------------------------------
    def freeze(self, nodes):
        for n in nodes:
            if n.running and not n.paused:
                os.kill(n.pid, signal.SIGSTOP)
                n.paused = True

    def thaw(self, nodes):
        for n in nodes:
            if n.paused:
                os.kill(n.pid, signal.SIGCONT)
                n.paused = False

    def kill(self, n):
        self.thaw([n])
        n.kill()

    def restart(self, n):
        if not n.running:
            n.start(wait=True, timeout=60)

    def promote(self, n):
        """Promotes n once it no longer hears the leader; the driver's
        leader follows."""
        deadline = time.monotonic() + PROMOTE_TIMEOUT
        while time.monotonic() < deadline:
            r = n.cli("promote", timeout=30)
            if r.rc == 0:
                self.leader = n.name
                self.note("%s promoted (epoch %s)" % (
                    n.name, (r.data or {}).get("epoch")))
                return True
            time.sleep(0.3)
        self.problem("%s was not promoted within %d s: %s" % (n.name, PROMOTE_TIMEOUT,
                                                              r.message))
        return False

    def settle(self, old):
        """Waits until the old leader heard the new one and stepped down: a
        restarted or resumed old primary claims to lead until then, and the
        next fault's roles would be wrong."""
        if old.name == self.leader:
            return  # the promotion failed (a problem already)
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while time.monotonic() < deadline:
            r = old.cli("status", timeout=30)
            if r.rc == 0 and r.data["role"] != "primary":
                return
            time.sleep(0.2)
        self.problem("%s still claims to lead %d s after %s was promoted" % (
            old.name, SETTLE_TIMEOUT, self.leader))

    def apply(self, f):
        kind, hold = f["kind"], f["hold"]
        self.note("fault %s %s" % (kind, json.dumps(f, sort_keys=True)))
        self.fault_counts[kind] += 1
        if kind == "kill":
            n = self.node(f["target"])
            self.kill(n)
            time.sleep(hold)
            self.restart(n)
        elif kind == "pause":
            n = self.node(f["target"])
            self.freeze([n])
            time.sleep(hold)
            self.thaw([n])
        elif kind == "failover-kill":
            old, new = self.node("leader"), self.node("standby")
            self.kill(old)
            self.promote(new)
            time.sleep(hold)
            self.restart(old)
            self.settle(old)
        elif kind == "failover-pause":
            old, new = self.node("leader"), self.node("standby")
            self.freeze([old])
            self.promote(new)
            time.sleep(hold)
            self.thaw([old])
            self.settle(old)
        elif kind == "force-promote":
            old, new = self.node("leader"), self.node("standby")
            r = new.cli("promote", "--force", timeout=30)
            if r.rc == 0:
                self.leader = new.name
                self.note("%s promoted with --force" % new.name)
            else:
                self.problem("promote --force on %s: exit %s %s" % (new.name, r.rc, r.message))
            time.sleep(hold)
            self.settle(old)
        elif kind == "zombie":
            old, new = self.node("leader"), self.node("standby")
            self.kill(old)
            if self.promote(new):
                others = [n for n in self.nodes.values() if n is not old]
                self.freeze(others)
                try:
                    self.restart(old)
                    for _ in range(3):
                        self.record(send_change(old, self.next_name()))
                    time.sleep(hold)
                finally:
                    self.thaw(others)
            else:
                self.restart(old)
            self.settle(old)
        elif kind == "partition":
            n = self.node(f["target"])
            self.net.cut(n.name)
            time.sleep(hold)
            self.net.heal()
        elif kind == "partition-failover":
            old, new = self.node("leader"), self.node("standby")
            self.net.cut(old.name)
            self.promote(new)
            time.sleep(hold)
            self.net.heal()
            self.settle(old)
        elif kind == "split":
            side = {self.leader, f["with"]}
            self.net.split([n for n in self.nodes if n not in side])
            time.sleep(hold)
            self.net.heal()
        else:
            raise ValueError(kind)

    def check_alive(self):
        for n in self.nodes.values():
            if n.proc is not None and n.proc.poll() is not None and n.proc.returncode != -9:
                rc = n.stop()
                self.crashes += 1
                self.problem("%s exited by itself with %s:\n%s" % (n.name, rc,
                                                                   n.stderr()[-2000:]))

    # -- the run --------------------------------------------------------------
    def setup(self):
        self.dir = tempfile.mkdtemp(prefix="cs-camp-", dir="/tmp")
        self.net = Network([n for n, _ in NODES])
        self.net.build()
        folder = os.path.join(self.dir, "cluster")
        args = [self.binary, "cluster", "init", folder, "--site", SITE]
        for name, role in NODES:
            a = self.net.addr(name)
            args += ["--node", "%s=%s,%s.example.test,tcp://%s:%d,%s:%d"
                     % (name, role, name, a, REPL_PORT, a, TLS_PORT)]
        helpers.run(args)
        self.nodes = {name: NsNode(self.binary, os.path.join(folder, name), name, role,
                                   self.net.ns[name]) for name, role in NODES}
        self.leader = "primary"
        for n in self.nodes.values():
            n.start(wait=True, timeout=60)
        helpers.wait_for("every follower to stream", lambda: all(
            n.status()["replication"]["sync"] == "streaming"
            for n in list(self.nodes.values())[1:]), timeout=60)
        first = send_change(self.nodes["primary"], "c%d-0" % self.seed, wait="all")
        assert first["outcome"] == "confirmed", first

    def heal(self):
        self.note("heal")
        self.thaw(self.nodes.values())
        self.net.heal()
        for n in self.nodes.values():
            self.restart(n)

    def states(self):
        out = {}
        for n in self.nodes.values():
            r = n.cli("status", "--recompute", timeout=30)
            out[n.name] = r.data if r.rc == 0 else None
        return out

    def converge(self):
        t0 = time.monotonic()
        last = None
        while time.monotonic() - t0 < CONVERGE_TIMEOUT:
            st = self.states()
            last = {k: v and (v["epoch"], v["seq"], v["digest"][:16], v["role"],
                              v["digest_ok"]) for k, v in st.items()}
            if all(st.values()):
                pos = {(v["epoch"], v["seq"], v["digest"]) for v in st.values()}
                leaders = [k for k, v in st.items() if v["role"] == "primary"]
                if len(pos) == 1 and len(leaders) == 1 and all(
                        v["digest_ok"] for v in st.values()):
                    self.note("converged in %.2f s at %s, leader %s" % (
                        time.monotonic() - t0, sorted(pos)[0][:2], leaders[0]))
                    return time.monotonic() - t0
            time.sleep(0.25)
        self.mismatches += 1
        self.problem("no convergence within %d s: %s" % (CONVERGE_TIMEOUT, last))
        return None

    def check_ledger(self):
        present = {}
        diverged = set()
        for n in self.nodes.values():
            r = n.cli("cert", "list", timeout=60)
            present[n.name] = {c["name"] for c in r.data["certificates"]} if r.rc == 0 else set()
            r = n.cli("diverged", "list", timeout=60)
            for d in (r.data or {}).get("diverged", []):
                m = re.search(r"\((c[0-9]+-[0-9]+)\)", d.get("summary") or "")
                if m:
                    diverged.add(m.group(1))
        everywhere = set.intersection(*present.values())
        anywhere = set.union(*present.values())
        for rec in self.ledger:
            name, out = rec["name"], rec["outcome"]
            if out == "confirmed":
                if name not in everywhere:
                    self.lost += 1
                    self.problem("confirmed change %s (on %s) missing on %s" % (
                        name, rec["node"], sorted(k for k, v in present.items() if name not in v)))
                if name in diverged:
                    self.lost += 1
                    self.problem("confirmed change %s (on %s) diverged" % (name, rec["node"]))
            elif out == "unconfirmed":
                if name in diverged:
                    self.diverged += 1
                elif name not in everywhere:
                    self.lost += 1
                    self.problem("unconfirmed change %s (on %s) neither everywhere nor "
                                 "diverged: on %s" % (name, rec["node"], sorted(
                                     k for k, v in present.items() if name in v)))
            elif out == "refused":
                if name in anywhere or name in diverged:
                    self.problem("change %s exited 1 (%s) but happened" % (
                        name, rec["stderr"].strip()))

    def verify_everywhere(self):
        for n in self.nodes.values():
            deadline = time.monotonic() + VERIFY_TIMEOUT
            while True:
                r = n.in_ns("verify", "--cluster", timeout=60)
                if r.rc == 0:
                    break
                if time.monotonic() > deadline:
                    try:
                        fails = [c for c in json.loads(r.stdout)["checks"]
                                 if c["status"] != "ok"]
                    except (ValueError, KeyError, TypeError):
                        fails = r.stdout[-1000:]
                    self.problem("verify --cluster on %s exits %s: %s %s" % (
                        n.name, r.rc, fails, r.stderr[-500:]))
                    break
                time.sleep(1)

    def teardown(self):
        for n in getattr(self, "nodes", {}).values():
            self.thaw([n])
            if n.running:
                rc = n.stop(signal.SIGTERM, timeout=60)
                if rc != 0:
                    self.crashes += 1
                    self.problem("%s exited with %s on SIGTERM:\n%s" % (n.name, rc,
                                                                        n.stderr()[-2000:]))
            log = n.all_stderr().decode(errors="replace")
            for m in SANITIZER.finditer(log):
                self.crashes += 1
                self.problem("%s logged a sanitizer report: %s" % (
                    n.name, log[m.start():m.start() + 1500]))
                break
        if hasattr(self, "net"):
            self.net.destroy()
        if hasattr(self, "dir") and (not self.problems or not self.keep):
            shutil.rmtree(self.dir, ignore_errors=True)

    def run(self):
        self.fault_counts = collections.Counter()
        self.lost = self.diverged = self.mismatches = self.crashes = 0
        self.log("schedule seed %d (%.0f s): %s" % (self.seed, self.duration,
                                                   json.dumps(self.faults)))
        converge_s = None
        try:
            self.setup()
            self.client_stop = threading.Event()
            client = threading.Thread(target=self.client, daemon=True)
            client.start()
            for f in self.faults:
                time.sleep(f["gap"])
                self.apply(f)
                self.check_alive()
            self.heal()
            time.sleep(1.0)  # changes while the cluster settles, too
            self.client_stop.set()
            client.join(timeout=CLIENT_TIMEOUT + 30)
            self.check_alive()
            converge_s = self.converge()
            self.check_ledger()
            self.verify_everywhere()
        except Exception as e:  # the schedule fails with what happened, then cleans up
            self.problem("the campaign itself failed: %r" % e)
        finally:
            self.client_stop_set()
            self.teardown()
        outcomes = collections.Counter(r["outcome"] for r in self.ledger)
        result = {
            "seed": self.seed, "duration": self.duration, "faults": self.faults,
            "fault_counts": dict(self.fault_counts), "changes": len(self.ledger),
            "acknowledged": outcomes["confirmed"] + outcomes["unconfirmed"],
            "confirmed": outcomes["confirmed"], "unconfirmed": outcomes["unconfirmed"],
            "refused": outcomes["refused"], "unknown": outcomes["unknown"],
            "anomalies": outcomes["anomaly"], "diverged": self.diverged, "lost": self.lost,
            "mismatches": self.mismatches, "crashes": self.crashes,
            "converge_s": converge_s and round(converge_s, 2), "problems": self.problems,
        }
        if self.problems:
            self.log("SCHEDULE FAILED: seed %d; replay: %s" % (self.seed, self.replay()))
            self.log("faults: %s" % json.dumps(self.faults))
            self.log("timeline:\n  " + "\n  ".join(self.timeline))
        return result

    def client_stop_set(self):
        if hasattr(self, "client_stop"):
            self.client_stop.set()

    def replay(self):
        return "CERTSYNC=%s python3 tests/campaign/campaign.py --seed %d --duration %g" % (
            self.binary, self.seed, self.duration)


TOTAL_KEYS = ("changes", "acknowledged", "confirmed", "unconfirmed", "refused", "unknown",
              "anomalies", "diverged", "lost", "mismatches", "crashes")


def totals(results):
    t = {k: sum(r[k] for r in results) for k in TOTAL_KEYS}
    t["schedules"] = len(results)
    t["failed"] = [r["seed"] for r in results if r["problems"]]
    t["faults"] = sum((collections.Counter(r["fault_counts"]) for r in results),
                      collections.Counter())
    t["faults_total"] = sum(t["faults"].values())
    conv = [r["converge_s"] for r in results if r["converge_s"] is not None]
    t["converge_s"] = [min(conv), max(conv)] if conv else None
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, required=True, help="the (first) schedule's seed")
    ap.add_argument("--schedules", type=int, default=1, help="seeds SEED, SEED+1, ...")
    ap.add_argument("--duration", type=float, default=25.0, help="seconds of faults each")
    ap.add_argument("--no-partitions", action="store_true")
    ap.add_argument("--results", help="append each schedule's result (JSON lines) here")
    ap.add_argument("--keep", action="store_true", help="keep a failed schedule's folder")
    a = ap.parse_args()
    binary = os.environ.get("CERTSYNC")
    if not binary:
        sys.exit("campaign.py: set CERTSYNC to the certsync binary")
    # SIGTERM or SIGINT ends the run through the schedule's clean-up: its
    # agents stopped by PID, its namespaces deleted.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit("campaign.py: stopped by a signal"))
    results = []
    for seed in range(a.seed, a.seed + a.schedules):
        r = Campaign(os.path.abspath(binary), seed, a.duration, not a.no_partitions,
                     keep=a.keep).run()
        results.append(r)
        print("seed %d: %s" % (seed, json.dumps({k: r[k] for k in TOTAL_KEYS + (
            "fault_counts", "converge_s")}, sort_keys=True)), flush=True)
        if a.results:
            with open(a.results, "a") as f:
                f.write(json.dumps(r, sort_keys=True) + "\n")
    t = totals(results)
    print("TOTALS " + json.dumps(t, sort_keys=True), flush=True)
    sys.exit(1 if t["failed"] else 0)


if __name__ == "__main__":
    main()
