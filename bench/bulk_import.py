#!/usr/bin/env python3
"""bulk_import.py — `certsync import DIR` of 100,000 PEM files (issue 15, item
7: at least 0.4 times LMDB's durable single-commit rate, per file), against
LMDB's own durable commit rate measured on this machine in the same run.

The files (EC P-256 leaf + its key, two names each, distinct names, issued by
one RSA bench CA) come from `repl-floors gen`; the floor is `repl-floors
lmdb`: one record of the files' mean size per durable write transaction,
with the environment settings the store uses, measured right before and
right after the import (the shared disk drifts).  One single-node agent
(bench/list_scale.py's) imports the whole folder in one command
(`--wait none`: no follower to wait for); meanwhile `status` is sent in a
loop, and the slowest answer is reported (the loop must keep answering).
The agent's peak resident memory (VmHWM) is read before it stops.

    bench/bulk_import.py --build build --work /tmp/bi --count 100000
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import log, run  # noqa: E402
from list_scale import Agent  # noqa: E402


def make_files(build, work, count):
    """The folder of count leaf files; the CA (with its key) kept beside it."""
    folder = os.path.join(work, "files")
    ca = os.path.join(work, "ca-with-key.pem")
    have = len(glob.glob(os.path.join(folder, "l*.pem")))
    if have < count:
        os.makedirs(folder, exist_ok=True)
        if os.path.exists(ca):  # the same CA for every leaf of the folder
            shutil.move(ca, os.path.join(folder, "ca.pem"))
        log("making %d certificates" % (count - have))
        run([os.path.join(build, "bench", "repl-floors"), "gen", "--out", folder, "--count",
             str(count - have), "--first", str(have + 1), "--sans", "2"], timeout=7200)
    if os.path.exists(os.path.join(folder, "ca.pem")):
        shutil.move(os.path.join(folder, "ca.pem"), ca)
    files = sorted(glob.glob(os.path.join(folder, "l*.pem")))
    if len(files) != count:
        sys.exit("%s holds %d files, not %d: give a fresh --work" % (folder, len(files), count))
    return folder, files


def lmdb_floor(build, work, size, n=2000):
    d = os.path.join(work, "lmdb-%d" % time.monotonic_ns())
    r = run([os.path.join(build, "bench", "repl-floors"), "lmdb", "--dir", d, "--count", str(n),
             "--size", str(size)], timeout=600)
    shutil.rmtree(d, ignore_errors=True)
    return json.loads(r.stdout)["per_s"]


def vm_hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--work", default="/tmp/certsync-bulk-import")
    ap.add_argument("--count", type=int, default=100000)
    a = ap.parse_args()
    build, work = os.path.abspath(a.build), os.path.abspath(a.work)
    os.makedirs(work, exist_ok=True)
    folder, files = make_files(build, work, a.count)
    size = sum(os.path.getsize(f) for f in files[:1000]) // min(1000, len(files))

    agent_dir = os.path.join(work, "agent")
    shutil.rmtree(agent_dir, ignore_errors=True)
    floor_before = lmdb_floor(build, work, size)
    agent = Agent(build, agent_dir, "bulk")
    slowest, answered = [0.0], [0]
    done = threading.Event()

    def poll_status():
        while not done.is_set():
            t0 = time.monotonic()
            subprocess.run(agent.cmd("status"), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            slowest[0] = max(slowest[0], time.monotonic() - t0)
            answered[0] += 1
            time.sleep(0.2)

    try:
        poller = threading.Thread(target=poll_status)
        poller.start()
        t0 = time.monotonic()
        r = subprocess.run(agent.cmd("import", folder, "--wait", "none"), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=7200)
        took = time.monotonic() - t0
        done.set()
        poller.join()
        if r.returncode != 0:
            sys.exit("import: exit %d: %s" % (r.returncode, r.stderr.decode()[-2000:]))
        items = json.loads(r.stdout)["items"]
        stored = agent.count()
        hwm = vm_hwm_kb(agent.proc.pid)
    finally:
        done.set()
        agent.stop()
    floor_after = lmdb_floor(build, work, size)
    floor = (floor_before + floor_after) / 2
    rate = len(files) / took
    print("files: %d PEM files of %d bytes on average (EC P-256 key + leaf)" % (len(files), size))
    print("LMDB durable single commits of %d bytes: %.0f/s before, %.0f/s after (mean %.0f/s)"
          % (size, floor_before, floor_after, floor))
    print("certsync import DIR: %.1f s, %.0f files/s; %d items, %d certificates stored"
          % (took, rate, len(items), stored))
    print("  per file / LMDB single commit: %.2f (goal >= 0.4)" % (rate / floor))
    print("  status during the import: %d answered, slowest %.2f s" % (answered[0], slowest[0]))
    print("  agent peak resident memory (VmHWM): %.0f MB" % (hwm / 1024))


if __name__ == "__main__":
    main()
