#!/usr/bin/env python3
"""compare_etcd.py — certsync's replication against its floors and against a
3-member etcd cluster, in one run, on 127.0.0.1.

    bench/compare_etcd.py [--build DIR] [--records N] [--samples S]
                          [--work DIR] [--json FILE]

Prints:
- the floors measured here (repl-floors): durable LMDB commits/s of one 5 KB
  record per write transaction (store/env.c's settings), at the start, at
  the end and right before each write run (whose /LMDB divides by it: the
  shared disk's rate drifts during a run), and a ZeroMQ CURVE DEALER/ROUTER round trip of a 5 KB
  message between two processes (p50/p99);
- propagation from the primary's durable commit to each follower's durable
  commit (from the agents' debug lines "store: committed E.S at T", T on the
  machine's monotonic clock) and to each follower's TLS endpoint serving the
  new certificate (a TLS handshake with its name as SNI, repeated until the
  served certificate is the new one); S changes one at a time, 60 ms apart;
- replicated changes per second for N (10,000) certificate imports through the
  control socket: --wait backup one at a time, --wait backup with 16 writers,
  --wait none one at a time (until every follower committed the last one),
  each on a fresh cluster of primary, backup and one traffic node;
- the time a new, empty traffic node takes to hold the N records, by log and
  (primary restarted with log_retain 100) by snapshot;
- the same N writes (same bytes as values, 1 and 16 writers, each waiting for
  etcd's quorum commit, sent to the leader through etcd's HTTP/JSON gateway on
  kept-alive connections) and the same catch-up (a 4th member added) against a
  3-member etcd cluster from Debian's etcd-server, and the ratios;
- each of issue 4's goals with the figure this run measured, met or missed.

Needs: a build (certsync, repl-floors) and etcd (etcd-server and etcd-client
are installed with apt-get when missing and this runs as root).  Binds
127.0.0.1 only; every process is stopped by its PID; every wait is bounded.
"""

import argparse
import base64
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from benchlib import debian_binary, log, pct, run, stop  # noqa: E402
DOMAIN = "bench.test"
SITE = "site." + DOMAIN
COMMIT_RE = re.compile(rb"store: committed (\d+)\.(\d+) at (\d+)\.(\d+)")
DEADLINE = 3600  # seconds: no phase of a run may take longer
# between two propagation samples: every node has rebuilt its TLS table for
# the previous change, so each sample is one change on a settled cluster
SPACING = 0.06
# --no-tls: agents without a TLS endpoint, to see replication without the
# endpoint's table rebuilds (a diagnostic; the figures keep TLS)
NO_TLS = False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, cond, timeout=60, step=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(step)


# ---- certsync ------------------------------------------------------------------

def control(sock_path, cmd, args, timeout=120):
    """One control-socket request (one JSON line each way, as the certsync
    command sends it); returns the result or raises with the agent's error."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        s.sendall(json.dumps({"cmd": cmd, "args": args}).encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    finally:
        s.close()
    a = json.loads(answer)
    if not a.get("ok"):
        raise RuntimeError("%s: %s" % (cmd, a.get("error")))
    return a["result"]


class Node:
    def __init__(self, build, folder, name, role, repl_port, tls_port):
        self.build, self.folder, self.name, self.role = build, folder, name, role
        self.repl_port, self.tls_port = repl_port, tls_port
        self.conf = os.path.join(folder, "certsync.conf")
        self.sock = os.path.join(folder, "control.sock")
        self.generated = open(self.conf).read()
        self.data_dir = os.path.join(folder, "data")
        self.log_retain = None
        self.proc = None
        self.logs = []
        self.write_config()

    def write_config(self):
        extra = "log_level = debug\n"
        if self.log_retain:
            extra += "log_retain = %d\n" % self.log_retain
        t = re.sub(r"(?m)^data_dir = .*$", lambda _: "data_dir = " + self.data_dir, self.generated)
        if NO_TLS:
            t = re.sub(r"(?m)^tls_listen = .*\n", "", t)
        with open(self.conf, "w") as f:
            f.write(t.replace("\n[cluster]", extra + "\n[cluster]", 1))

    def start(self):
        self.log_path = os.path.join(self.folder, "agent-%d.log" % (len(self.logs) + 1))
        self.logs.append(self.log_path)
        self.logf = open(self.log_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([os.path.join(self.build, "certsync"), "agent", "-c",
                                      self.conf], stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=self.logf)
        wait_for("%s's control socket" % self.name, self.accepts, timeout=60)
        return self

    def accepts(self):
        if self.proc.poll() is not None:
            raise RuntimeError("%s exited with %s:\n%s" % (self.name, self.proc.returncode,
                                                           open(self.log_path).read()[-3000:]))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.sock)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def stop(self):
        if self.proc is not None:
            stop(self.proc)
            self.logf.close()
            self.proc = None

    def status(self):
        return control(self.sock, "status", {})

    def commits(self):
        """[(seq, monotonic seconds)] of this start's durable commits."""
        self.logf.flush()
        out = []
        with open(self.log_path, "rb") as f:
            for m in COMMIT_RE.finditer(f.read()):
                out.append((int(m.group(2)), int(m.group(3)) + int(m.group(4)) / 1e6))
        return out


def commit_time(commits, seq):
    """When a node first durably held seq (a follower commits in batches)."""
    for s, t in commits:
        if s >= seq:
            return t
    return None


class Cluster:
    def __init__(self, build, work, tag):
        folder = os.path.join(work, "cluster-" + tag)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(work, exist_ok=True)
        spec = [("primary", "primary"), ("backup", "backup"), ("tn1", "traffic"),
                ("tn2", "traffic")]
        ports = [(free_port(), free_port()) for _ in spec]
        args = [os.path.join(build, "certsync"), "cluster", "init", folder, "--site", SITE]
        for (name, role), (rp, tp) in zip(spec, ports):
            args += ["--node", "%s=%s,%s.%s,tcp://127.0.0.1:%d,127.0.0.1:%d" % (
                name, role, name, DOMAIN, rp, tp)]
        run(args)
        self.nodes = {name: Node(build, os.path.join(folder, name), name, role, rp, tp)
                      for (name, role), (rp, tp) in zip(spec, ports)}
        self.primary = self.nodes["primary"]
        # the log reaches back past N records, so the log catch-up is one
        self.primary.log_retain = 100000
        self.primary.write_config()
        self.members = [self.nodes[n] for n in ("primary", "backup", "tn1")]

    def start(self):
        for n in self.members:
            n.start()
        wait_for("the followers to stream", lambda: all(
            n.status()["replication"]["sync"] == "streaming" for n in self.members[1:]),
            timeout=60, step=0.1)
        return self

    def stop(self):
        for n in self.nodes.values():
            n.stop()


def import_args(pem, wait):
    return {"files": [{"name": "bundle.pem", "data": base64.b64encode(pem).decode()}],
            "wait": wait}


def writes(target, payloads, writers):
    """Sends every payload with `writers` threads, each one request at a
    time; returns the seconds from the first send to the last answer."""
    lock = threading.Lock()
    it = iter(range(len(payloads)))
    errors = []

    def worker():
        while not errors:
            with lock:
                i = next(it, None)
            if i is None:
                return
            try:
                target(payloads[i])
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(writers)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    if errors:
        raise errors[0]
    return time.monotonic() - t0


def served_der(port, sni):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            with ctx.wrap_socket(s, server_hostname=sni) as t:
                return t.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None


def pem_der(pem):
    body = pem.split(b"-----BEGIN CERTIFICATE-----")[1].split(b"-----END")[0]
    return base64.b64decode(b"".join(body.split()))


def certsync_propagation(c, certs, samples):
    """Changes one at a time, SPACING apart (--wait none: the answer does not
    wait for anyone); then, per follower, commit time minus the primary's.
    Then `samples // 4` more, each followed by TLS handshakes on both
    followers until they serve it."""
    p, followers = c.primary, c.members[1:]
    seq0 = p.status()["seq"]
    for pem, _ in certs[:samples]:
        control(p.sock, "import", import_args(pem, "none"))
        time.sleep(SPACING)
    wait_for("the followers to apply", lambda: all(
        n.status()["seq"] >= seq0 + samples for n in followers), timeout=60)
    pc = p.commits()
    res = {}
    for n in followers:
        fc = n.commits()
        res[n.name] = [commit_time(fc, s) - commit_time(pc, s)
                       for s in range(seq0 + 1, seq0 + samples + 1)]
    seq0 += samples
    tls = {n.name: [] for n in followers}
    ntls = 0 if NO_TLS else max(10, samples // 4)
    served_at = []
    for pem, host in certs[samples:samples + ntls]:
        want = pem_der(pem)
        control(p.sock, "import", import_args(pem, "none"))
        got = {}
        deadline = time.monotonic() + 10
        while len(got) < len(followers) and time.monotonic() < deadline:
            for n in followers:
                if n.name not in got and served_der(n.tls_port, host) == want:
                    got[n.name] = time.monotonic()
        served_at.append(got)
        time.sleep(SPACING)
    pc = p.commits()
    for i, got in enumerate(served_at):
        t0 = commit_time(pc, seq0 + 1 + i)
        for name, t in got.items():
            tls[name].append(t - t0)
    return res, tls


def certsync_throughput(build, work, tag, certs, wait, writers):
    c = Cluster(build, work, tag).start()
    try:
        p = c.primary
        seq0 = p.status()["seq"]
        payloads = [import_args(pem, wait) for pem, _ in certs]
        secs = writes(lambda a: control(p.sock, "import", a), payloads, writers)
        last = seq0 + len(certs)
        wait_for("the followers to apply", lambda: all(
            n.status()["seq"] >= last for n in c.members[1:]), timeout=DEADLINE, step=0.2)
        pc = p.commits()
        t_first = commit_time(pc, seq0 + 1)
        t_all = max(commit_time(n.commits(), last) for n in c.members[1:])
        # the rate over the first and the last tenth of the changes: does a
        # change cost more as the store grows?
        k = max(1, len(certs) // 10)
        ts = [commit_time(pc, s) for s in (seq0 + 1, seq0 + k, last - k + 1, last)]
        out = {"seconds": secs, "per_s": len(certs) / secs,
               "first_tenth_per_s": (k - 1) / (ts[1] - ts[0] + 1e-9),
               "last_tenth_per_s": (k - 1) / (ts[3] - ts[2] + 1e-9),
               # from the primary's first commit to every follower's last
               "replicated_per_s": len(certs) / (t_all - t_first + 1e-9)}
        return c, out
    except Exception:
        c.stop()
        raise


def certsync_catchup(c, extra_pem):
    """tn2 starts empty: time from its start to its durable commit of the
    primary's last seq, by log; then again by snapshot."""
    p, tn2 = c.primary, c.nodes["tn2"]
    out = {}
    target = p.status()["seq"]
    tn2.start()
    wait_for("tn2 to catch up by log", lambda: tn2.status()["seq"] >= target, timeout=DEADLINE,
             step=0.2)
    out["log_s"] = commit_time(tn2.commits(), target) - tn2.started
    out["log_had_snapshot"] = b"snapshot" in open(tn2.log_path, "rb").read()
    tn2.stop()
    for n in c.members:  # the primary trims its log to 100 entries
        n.stop()
    p.log_retain = 100
    p.write_config()
    for n in c.members:
        n.start()
    wait_for("the followers to stream", lambda: all(
        n.status()["replication"]["sync"] == "streaming" for n in c.members[1:]),
        timeout=60, step=0.1)
    # one change trims the log (the trim runs with a commit)
    control(p.sock, "import", import_args(extra_pem, "backup"))
    shutil.rmtree(tn2.data_dir, ignore_errors=True)
    target = p.status()["seq"]
    tn2.start()
    wait_for("tn2 to catch up by snapshot", lambda: tn2.status()["seq"] >= target,
             timeout=DEADLINE, step=0.2)
    out["snapshot_s"] = commit_time(tn2.commits(), target) - tn2.started
    out["snapshot_used"] = b"snapshot" in open(tn2.log_path, "rb").read()
    out["records"] = tn2.status()["counts"]["certificates"]
    return out


# ---- etcd ----------------------------------------------------------------------

def etcd_binary():
    return debian_binary("etcd", "/usr/bin/etcd", ("etcd-server", "etcd-client"))


class Etcd:
    def __init__(self, work, tag, size=3):
        self.folder = os.path.join(work, "etcd-" + tag)
        shutil.rmtree(self.folder, ignore_errors=True)
        os.makedirs(self.folder)
        self.members = []
        self.procs = {}
        for i in range(1, size + 1):
            self.members.append(("e%d" % i, free_port(), free_port()))

    def initial(self, members):
        return ",".join("%s=http://127.0.0.1:%d" % (n, pp) for n, _, pp in members)

    def spawn(self, member, members, state):
        name, cp, pp = member
        logf = open(os.path.join(self.folder, name + ".log"), "wb")
        args = [etcd_binary(), "--name", name, "--data-dir", os.path.join(self.folder, name),
                "--listen-client-urls", "http://127.0.0.1:%d" % cp,
                "--advertise-client-urls", "http://127.0.0.1:%d" % cp,
                "--listen-peer-urls", "http://127.0.0.1:%d" % pp,
                "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % pp,
                "--initial-cluster", self.initial(members), "--initial-cluster-state", state,
                "--initial-cluster-token", "bench-" + os.path.basename(self.folder),
                "--logger", "zap", "--log-level", "warn"]
        self.procs[name] = (subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf,
                                             stderr=logf), logf)

    def start(self):
        for m in self.members:
            self.spawn(m, self.members, "new")
        wait_for("etcd to elect a leader", self.leader, timeout=60, step=0.1)
        return self

    def post(self, port, path, body, conn=None):
        c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        if conn is None:
            c.close()
        if r.status != 200:
            raise RuntimeError("etcd %s: %d %s" % (path, r.status, data[:300]))
        return json.loads(data)

    def leader(self):
        for name, cp, _ in self.members:
            try:
                st = self.post(cp, "/v3/maintenance/status", {})
            except (OSError, RuntimeError, ValueError):
                continue
            if st.get("leader") and st["leader"] == st["header"]["member_id"]:
                return cp
        return None

    def count(self, port, prefix=b"bench/"):
        body = {"key": base64.b64encode(prefix).decode(),
                "range_end": base64.b64encode(prefix[:-1] + bytes([prefix[-1] + 1])).decode(),
                "count_only": True, "serializable": True}
        return int(self.post(port, "/v3/kv/range", body).get("count", 0))

    def stop(self):
        for proc, logf in self.procs.values():
            stop(proc)
            logf.close()
        self.procs = {}


def etcd_throughput(work, tag, certs, writers):
    e = Etcd(work, tag).start()
    try:
        port = e.leader()
        local = threading.local()

        def put(body):
            if not hasattr(local, "conn"):
                local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            e.post(port, "/v3/kv/put", body, conn=local.conn)

        payloads = [{"key": base64.b64encode(("bench/" + host).encode()).decode(),
                     "value": base64.b64encode(pem).decode()} for pem, host in certs]
        secs = writes(put, payloads, writers)
        return e, {"seconds": secs, "per_s": len(certs) / secs}
    except Exception:
        e.stop()
        raise


def etcd_catchup(e, n_records):
    port = e.leader()
    new = ("e4", free_port(), free_port())

    def add():  # etcd refuses while a member joined less than 5 s ago
        try:
            return e.post(port, "/v3/cluster/member/add",
                          {"peerURLs": ["http://127.0.0.1:%d" % new[2]]})
        except RuntimeError as x:
            if "unhealthy cluster" not in str(x):
                raise
            return None

    wait_for("etcd to accept a 4th member", add, timeout=60, step=0.5)
    t0 = time.monotonic()
    e.spawn(new, e.members + [new], "existing")
    e.members.append(new)

    def caught_up():
        try:
            return e.count(new[1]) >= n_records
        except (OSError, RuntimeError, ValueError):
            return False

    wait_for("etcd's 4th member to catch up", caught_up, timeout=DEADLINE, step=0.02)
    return {"seconds": time.monotonic() - t0}


# ---- the run -------------------------------------------------------------------

def floors(build, work, tag):
    d = os.path.join(work, "lmdb-" + tag)
    shutil.rmtree(d, ignore_errors=True)
    fl = os.path.join(build, "bench", "repl-floors")
    lm = json.loads(run([fl, "lmdb", "--dir", d, "--count", "3000", "--size", "5120"]).stdout)
    shutil.rmtree(d, ignore_errors=True)
    return lm


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--records", type=int, default=10000)
    ap.add_argument("--samples", type=int, default=200, help="propagation samples")
    ap.add_argument("--other-records", type=int, default=None,
                    help="records of the 16-writer and --wait none runs (default: --records)")
    ap.add_argument("--work", default=None, help="keeps the certificates between runs")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--no-tls", action="store_true",
                    help="diagnostic: agents without their TLS endpoint")
    a = ap.parse_args()
    global NO_TLS
    NO_TLS = a.no_tls
    build = os.path.abspath(a.build)
    work = os.path.abspath(a.work or tempfile.mkdtemp(prefix="certsync-repl-"))
    os.makedirs(work, exist_ok=True)
    etcd_binary()
    fl = os.path.join(build, "bench", "repl-floors")
    nprop = a.samples + max(10, a.samples // 4)
    log("certificates in %s ..." % work)
    run([fl, "gen", "--out", os.path.join(work, "certs"), "--count", str(a.records + nprop)])

    def cert(i):
        return (open(os.path.join(work, "certs", "l%06d.pem" % i), "rb").read(),
                "l%06d.%s" % (i, DOMAIN))

    certs = [cert(i) for i in range(1, a.records + 1)]
    prop_certs = [cert(i) for i in range(a.records + 1, a.records + nprop + 1)]
    other = certs[:a.other_records or a.records]
    r = {"records": a.records, "other_records": len(other), "payload_bytes": sum(len(p) for p, _ in certs) / len(certs)}
    log("floors ...")
    r["lmdb_start"] = floors(build, work, "start")
    r["curve"] = json.loads(run([fl, "curve", "--count", "5000", "--size", "5120"]).stdout)
    log("certsync: propagation, then --wait backup, one writer ...")
    c = Cluster(build, work, "a").start()
    try:
        r["cs_prop"], r["cs_tls"] = certsync_propagation(c, prop_certs, a.samples)
    finally:
        c.stop()
    r["lmdb_cs_backup_1"] = floors(build, work, "b1")
    c, r["cs_backup_1"] = certsync_throughput(build, work, "b1", certs, "backup", 1)
    try:
        log("certsync: catch-up by log and by snapshot ...")
        r["cs_catchup"] = certsync_catchup(c, prop_certs[-1][0])
    finally:
        c.stop()
    save(r, a.json)
    r["cs_sizes"] = json.loads(run([fl, "sizes", "--dir", c.primary.data_dir]).stdout)
    log("certsync: --wait backup, 16 writers ...")
    r["lmdb_cs_backup_16"] = floors(build, work, "b16")
    c, r["cs_backup_16"] = certsync_throughput(build, work, "b16", other, "backup", 16)
    c.stop()
    save(r, a.json)
    log("certsync: --wait none, one writer ...")
    r["lmdb_cs_none_1"] = floors(build, work, "n1")
    c, r["cs_none_1"] = certsync_throughput(build, work, "n1", other, "none", 1)
    c.stop()
    save(r, a.json)
    log("etcd: one writer, then a 4th member ...")
    r["lmdb_etcd_1"] = floors(build, work, "e1")
    e, r["etcd_1"] = etcd_throughput(work, "1", certs, 1)
    try:
        r["etcd_catchup"] = etcd_catchup(e, a.records)
    finally:
        e.stop()
    save(r, a.json)
    log("etcd: 16 writers ...")
    r["lmdb_etcd_16"] = floors(build, work, "e16")
    e, r["etcd_16"] = etcd_throughput(work, "16", other, 16)
    e.stop()
    r["lmdb_end"] = floors(build, work, "end")
    save(r, a.json)
    report(r)


def save(r, path):
    """The figures so far, so a run cut short still leaves them."""
    if path:
        with open(path, "w") as f:
            json.dump(r, f, indent=1)


def report(r):
    lm = (r["lmdb_start"]["per_s"] + r["lmdb_end"]["per_s"]) / 2
    cv = r["curve"]
    print("floors: LMDB durable commits of one 5 KB record: %.0f/s at the start, %.0f/s at "
          "the end (mean %.0f/s)" % (r["lmdb_start"]["per_s"], r["lmdb_end"]["per_s"], lm))
    print("floors: ZeroMQ CURVE round trip of 5 KB: p50 %.0f us, p99 %.0f us" % (
        cv["p50_us"], cv["p99_us"]))
    sz = r["cs_sizes"]
    print("records: %d certificate imports of %.0f bytes (PEM key + certificate); stored "
          "certificate record %.0f bytes, log entry %.0f bytes" % (
              r["records"], r["payload_bytes"], sz["certs"]["mean_bytes"],
              sz["log"]["mean_bytes"]))
    print("propagation, primary's durable commit to:")
    for name, xs in r["cs_prop"].items():
        print("  %-7s durable commit  p50 %6.2f ms  p99 %6.2f ms  (%d changes; p50 = %.1fx the "
              "CURVE round trip)" % (name, pct(xs, 50) * 1e3, pct(xs, 99) * 1e3, len(xs),
                                     pct(xs, 50) * 1e6 / cv["p50_us"]))
    for name, xs in r["cs_tls"].items():
        print("  %-7s TLS serving it  p50 %6.2f ms  p99 %6.2f ms  (%d changes, handshake "
              "included)" % (name, pct(xs, 50) * 1e3, pct(xs, 99) * 1e3, len(xs)))
    # The disk is shared and its rate drifts during a run: each write run
    # is divided by the LMDB floor measured just before it.
    print("%-36s %10s %10s %10s %10s %8s" % ("writes", "changes/s", "LMDB/s", "/LMDB", "/etcd",
                                             "records"))
    n, m = r["records"], r["other_records"]
    rows = [("certsync --wait backup, 1 writer", "cs_backup_1", "per_s", "etcd_1", n),
            ("certsync --wait backup, 16 writers", "cs_backup_16", "per_s", "etcd_16", m),
            ("certsync --wait none, 1 writer*", "cs_none_1", "replicated_per_s", None, m),
            ("etcd, 1 writer", "etcd_1", "per_s", None, n),
            ("etcd, 16 writers", "etcd_16", "per_s", None, m)]
    for name, key, field, peer, k in rows:
        v, floor = r[key][field], r["lmdb_" + key]["per_s"]
        print("%-36s %10.0f %10.0f %10.2f %10s %8d" % (
            name, v, floor, v / floor, "%.2f" % (v / r[peer]["per_s"]) if peer else "", k))
    print("  * until every follower committed the last change; answers came at %.0f/s" % (
        r["cs_none_1"]["per_s"]))
    for k in ("cs_backup_1", "cs_backup_16", "cs_none_1"):
        print("  %s: %.0f changes/s over the first tenth, %.0f/s over the last tenth" % (
            k, r[k]["first_tenth_per_s"], r[k]["last_tenth_per_s"]))
    cu, ec = r["cs_catchup"], r["etcd_catchup"]["seconds"]
    print("catch-up of a new node (%d records), start to holding all:" % cu["records"])
    print("  certsync by log       %7.2f s   /etcd %.2f" % (cu["log_s"], cu["log_s"] / ec))
    print("  certsync by snapshot  %7.2f s   /etcd %.2f%s" % (
        cu["snapshot_s"], cu["snapshot_s"] / ec, "" if cu["snapshot_used"] else
        "  (NO snapshot was used)"))
    print("  etcd, 4th member      %7.2f s" % ec)
    goals(r)


def goals(r):
    """Issue 4's goals, each against what this run measured."""
    cv = r["curve"]["p50_us"] / 1e6
    rows = []
    for key, peer, what in (("cs_backup_1", "etcd_1", "1 writer"),
                            ("cs_backup_16", "etcd_16", "16 writers")):
        v = r[key]["per_s"]
        rows.append(("--wait backup, %s: >= 0.4 of LMDB" % what,
                     v / r["lmdb_" + key]["per_s"], 0.4, True))
        rows.append(("--wait backup, %s: >= 2x etcd" % what, v / r[peer]["per_s"], 2.0, True))
    for name, xs in r["cs_prop"].items():
        rows.append(("propagation to %s: p50 <= 6x the CURVE round trip" % name,
                     pct(xs, 50) / cv, 6.0, False))
        rows.append(("propagation to %s: p99 < 3 ms" % name, pct(xs, 99) * 1e3, 3.0, False))
    ec = r["etcd_catchup"]["seconds"]
    for k, what in (("log_s", "log"), ("snapshot_s", "snapshot")):
        rows.append(("catch-up by %s: <= 0.35 of etcd's time" % what,
                     r["cs_catchup"][k] / ec, 0.35, False))
    print("goals (issue 4):")
    for what, v, goal, at_least in rows:
        ok = v >= goal if at_least else v <= goal
        print("  %-58s %8.2f  %s" % (what, v, "met" if ok else "missed"))


if __name__ == "__main__":
    main()
