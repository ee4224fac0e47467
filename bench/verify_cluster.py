#!/usr/bin/env python3
"""verify_cluster.py — what `verify --cluster` costs the agent, for two
builds of certsync measured in the same run (bench/README.md).

An agent of each build holds the same N certificates (ECDSA P-256, each for
its own name nNNNN.bench.test, so that the default covers none of the
nodes and every node's table is built) and knows P peers.  Rounds alternate
between the two agents; each round times the control request
`verify.cluster` (what the agent does: read the store, build the tables,
predict what each node serves), without the command's TLS probes.  Both
agents are measured with and without a TLS endpoint (with one, the served
table is there to start from).  Prints the median per build and the ratio
before/after.

  bench/verify_cluster.py --before OLD/certsync --after build/certsync
      [--certs 1000] [--peers 3] [--rounds 5] [--work DIR]

Needs: openssl.  Standard library only."""

import argparse
import base64
import concurrent.futures
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import log, run, stop  # noqa: E402

DOMAIN = "bench.test"
PASSPHRASE = "bench passphrase, not a secret"


def make_cert(d, i):
    name = "n%04d.%s" % (i, DOMAIN)
    key, pem = os.path.join(d, "%04d.key" % i), os.path.join(d, "%04d.pem" % i)
    if not os.path.exists(pem):
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", key, "-out", pem, "-days", "30", "-subj", "/CN=" + name,
             "-addext", "subjectAltName=DNS:" + name])
    return pem, key


def make_bundle(work, n):
    """One PEM file with every certificate and its key: one import."""
    bundle = os.path.join(work, "bundle-%d.pem" % n)
    if os.path.exists(bundle):
        return bundle
    d = os.path.join(work, "certs")
    os.makedirs(d, exist_ok=True)
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as ex:
        files = list(ex.map(lambda i: make_cert(d, i), range(n)))
    with open(bundle + ".tmp", "wb") as out:
        for pem, key in files:
            for f in (pem, key):
                with open(f, "rb") as src:
                    out.write(src.read())
    os.chmod(bundle + ".tmp", 0o600)
    os.rename(bundle + ".tmp", bundle)
    return bundle


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(sock_path, cmd, args=None, timeout=600):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall((json.dumps({"cmd": cmd, "args": args or {}}) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            buf += chunk
    answer = json.loads(buf)
    if not answer.get("ok"):
        raise RuntimeError("%s: %s" % (cmd, answer.get("error")))
    return answer["result"]


class Agent:
    def __init__(self, binary, work, label, peers, tls):
        self.binary, self.label = binary, label
        self.dir = os.path.join(work, label)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.sock = os.path.join(tempfile.mkdtemp(prefix="cs-bench-"), "control.sock")
        pw = os.path.join(self.dir, "passphrase")
        with open(pw, "w") as f:
            f.write(PASSPHRASE + "\n")
        os.chmod(pw, 0o600)
        conf = ("[node]\nname = primary\nrole = primary\nhostname = primary.example.test\n"
                "data_dir = %s\ncontrol_socket = %s\npassphrase_file = %s\nlog_level = warn\n"
                % (os.path.join(self.dir, "data"), self.sock, pw))
        if tls:
            conf += "tls_listen = 127.0.0.1:%d\ntls_workers = 1\n" % free_port()
        conf += "\n[cluster]\nsite_hostname = support.example.test\n"
        for i in range(peers):
            conf += "\n[peer p%d]\nrole = %s\nhostname = p%d.example.test\n" % (
                i, "backup" if i == 0 else "traffic", i)
        self.conf = os.path.join(self.dir, "certsync.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.err = open(os.path.join(self.dir, "agent.log"), "wb")
        self.proc = subprocess.Popen([binary, "agent", "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=self.err, stderr=self.err)
        deadline = time.monotonic() + 120
        while True:
            try:
                request(self.sock, "status")
                break
            except (OSError, ValueError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("%s: the agent did not start; see %s"
                                       % (label, self.err.name))
                time.sleep(0.05)

    def load(self, bundle):
        with open(bundle, "rb") as f:
            data = f.read()
        request(self.sock, "import", {"files": [{"name": os.path.basename(bundle),
                                                 "data": base64.b64encode(data).decode()}],
                                      "wait": "none"})

    def verify_ms(self):
        t0 = time.monotonic()
        result = request(self.sock, "verify.cluster")
        return (time.monotonic() - t0) * 1e3, result

    def stop(self):
        stop(self.proc)
        self.err.close()
        shutil.rmtree(os.path.dirname(self.sock), ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="the certsync binary to compare against")
    ap.add_argument("--after", required=True, help="the certsync binary measured")
    ap.add_argument("--certs", type=int, default=1000)
    ap.add_argument("--peers", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--work", help="keeps the certificates here for next time")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="cs-verify-bench-")
    os.makedirs(work, exist_ok=True)
    log("making %d certificates in %s" % (a.certs, work))
    bundle = make_bundle(work, a.certs)
    print("verify.cluster on the agent, %d certificates, %d peers, median of %d interleaved "
          "rounds" % (a.certs, a.peers, a.rounds))
    print("%-18s %12s %12s %8s" % ("TLS endpoint", "before ms", "after ms", "ratio"))
    for tls in (True, False):
        agents = [Agent(b, work, "%s-%s" % (label, "tls" if tls else "notls"), a.peers, tls)
                  for label, b in (("before", a.before), ("after", a.after))]
        try:
            for ag in agents:
                ag.load(bundle)
            times = {ag.label: [] for ag in agents}
            results = {}
            for _ in range(a.rounds):
                for ag in agents:
                    ms, results[ag.label] = ag.verify_ms()
                    times[ag.label].append(ms)
            before, after = (statistics.median(times[ag.label]) for ag in agents)
            # the same answer from both: the figures compare like with like
            nodes = [[n["expected"] for n in results[ag.label]["nodes"]] for ag in agents]
            if nodes[0] != nodes[1]:
                raise RuntimeError("the two builds predict different certificates")
            print("%-18s %12.1f %12.1f %8.1f" % ("yes" if tls else "no", before, after,
                                                  before / after))
            sys.stdout.flush()
        finally:
            for ag in agents:
                ag.stop()
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
