#!/usr/bin/env python3
"""list_scale.py — what `status` and a page of `cert list` cost on a store of
100,000 certificates, against the same commands on a store of 100 in the
same run (issue 15, item 5: status <= 50 ms, `cert list --limit 100` <= 100
ms, whatever the store's size).  The floor is `certsync --version`: starting
the command-line program, which every command pays.

Two single-node agents run side by side (one per store); every command is
run in turn on both, round after round, so what else the machine does weighs
on both alike, and the median of each is reported with the ratio
large/small.  Certificates come from `repl-floors gen` (EC P-256 leaves with
three DNS names, one RSA CA) and are imported through the agent, 64 files
per `import`.

    bench/list_scale.py --build build --work /tmp/ls --count 100000
"""

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import log, run, stop  # noqa: E402

BATCH = 64  # the most one import takes
CONF = """[node]
name = {name}
role = primary
hostname = l000000.bench.test
data_dir = {dir}/data
control_socket = {dir}/control.sock
passphrase_file = {dir}/passphrase
store_map_size = 8192
[cluster]
site_hostname = l000001.bench.test
"""


class Agent:
    def __init__(self, build, folder, name):
        self.bin = os.path.join(build, "certsync")
        self.dir = folder
        os.makedirs(folder, exist_ok=True)
        self.conf = os.path.join(folder, "certsync.conf")
        with open(self.conf, "w") as f:
            f.write(CONF.format(name=name, dir=folder))
        pp = os.path.join(folder, "passphrase")
        with open(pp, "w") as f:
            f.write("list scale benchmark passphrase\n")
        os.chmod(pp, 0o600)
        os.chmod(self.conf, 0o600)
        self.proc = subprocess.Popen([self.bin, "agent", "-c", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(folder, "agent.log"), "ab"))
        deadline = time.monotonic() + 120
        while subprocess.run(self.cmd("status"), capture_output=True).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the agent in %s did not start" % folder)
            time.sleep(0.2)

    def cmd(self, *args):
        return [self.bin, "-c", self.conf, "--json"] + list(args)

    def count(self):
        r = run(self.cmd("status"))
        return json.loads(r.stdout)["counts"]["certificates"]

    def fill(self, files, ca):
        have = self.count()
        if have >= len(files):
            return
        run(self.cmd("import", ca, "--wait", "none"), timeout=600)
        t0 = time.monotonic()
        for i in range(have, len(files), BATCH):
            run(self.cmd("import", *files[i:i + BATCH], "--wait", "none"), timeout=900)
            if (i // BATCH) % 100 == 0:
                log("  %s: %d imported (%.0f/s)" % (self.dir, i + BATCH,
                                                    (i + BATCH - have) / (time.monotonic() - t0)))

    def stop(self):
        stop(self.proc)


def timed(argv):
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    took = (time.perf_counter() - t0) * 1000
    if r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (argv, r.returncode, r.stderr.decode()[-500:]))
    return took, r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--work", default="/tmp/certsync-list-scale")
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=15)
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    certs = os.path.join(a.work, "certs")
    have = len(glob.glob(os.path.join(certs, "l*.pem")))
    if have < a.count:
        log("making %d certificates" % (a.count - have))
        run([os.path.join(build, "bench", "repl-floors"), "gen", "--out", certs, "--count",
             str(a.count - have), "--first", str(have), "--sans", "2"], timeout=7200)
    files = sorted(glob.glob(os.path.join(certs, "l*.pem")))[:a.count]
    ca = os.path.join(a.work, "ca.pem")
    # the CA alone (its key stays out of the store)
    with open(os.path.join(certs, "ca.pem")) as f:
        pem = f.read()
    with open(ca, "w") as f:
        f.write(pem[:pem.index("-----END CERTIFICATE-----") + 26])

    large = Agent(build, os.path.join(a.work, "large"), "large")
    small = Agent(build, os.path.join(a.work, "small"), "small")
    try:
        log("filling the stores")
        small.fill(files[:a.small], ca)
        large.fill(files, ca)
        n_large, n_small = large.count(), small.count()
        ids = {}
        for name, ag in (("large", large), ("small", small)):
            page = json.loads(timed(ag.cmd("cert", "list", "--limit", "100"))[1])
            ids[name] = page["certificates"][len(page["certificates"]) // 2]["id"]
        workloads = [
            ("certsync --version", lambda ag, n: [ag.bin, "--version"]),
            ("status", lambda ag, n: ag.cmd("status")),
            ("status --recompute", lambda ag, n: ag.cmd("status", "--recompute")),
            ("cert list --limit 100", lambda ag, n: ag.cmd("cert", "list", "--limit", "100")),
            ("cert list --limit 100 --after ID",
             lambda ag, n: ag.cmd("cert", "list", "--limit", "100", "--after", ids[n])),
            ("cert list --expiring 1", lambda ag, n: ag.cmd("cert", "list", "--expiring", "1")),
        ]
        times = {(w, n): [] for w, _ in workloads for n in ("large", "small")}
        for _ in range(a.rounds):
            for w, argv in workloads:
                for n, ag in (("large", large), ("small", small)):
                    times[(w, n)].append(timed(argv(ag, n))[0])
        print("certificates: large store %d, small store %d; median of %d interleaved rounds, "
              "milliseconds" % (n_large, n_small, a.rounds))
        print("%-34s %10s %10s %12s %14s" % ("command", "large", "small", "large/small",
                                            "large/--version"))
        floor = statistics.median(times[("certsync --version", "large")])
        for w, _ in workloads:
            ml, ms = statistics.median(times[(w, "large")]), statistics.median(times[(w, "small")])
            print("%-34s %10.1f %10.1f %12.2f %14.2f" % (w, ml, ms, ml / ms, ml / floor))
    finally:
        large.stop()
        small.stop()


if __name__ == "__main__":
    main()
