"""benchlib.py — what the benchmark scripts share: logging, running a tool,
stopping a server by its PID, percentiles, and a peer server from Debian's
packages installed on first need.  Standard library only."""

import os
import shutil
import signal
import subprocess
import sys


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(args, **kw):
    return subprocess.run([str(a) for a in args], check=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=kw.pop("timeout", 900), **kw)


def stop(proc, timeout=30):
    """SIGTERM to the process we started, SIGKILL after timeout."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] if xs else float("nan")


def debian_binary(name, path, packages):
    """The peer's binary (name on PATH, else path), installed with apt-get
    from Debian's packages when missing and this runs as root."""
    b = shutil.which(name) or path
    if not os.access(b, os.X_OK):
        if os.geteuid() != 0:
            sys.exit("%s is missing: apt-get install %s (as root)" % (name, " ".join(packages)))
        log("installing %s ..." % " ".join(packages))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + list(packages),
            env=env)
        b = path
    return b
