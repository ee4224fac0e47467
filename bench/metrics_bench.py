#!/usr/bin/env python3
"""metrics_bench.py — /metrics at 10,000 certificates, in one run (issue 14).

    bench/metrics_bench.py [--build DIR] [--certs N] [--rounds R] [--seconds S]
                           [--scrapes K] [--work DIR] [--json FILE]

One agent (`certsync agent`, pinned to CPU 0, one TLS worker) with a store of
N (10,000) certificates plus a default with its key, and admin_listen:

1. /metrics latency: K scrapes in a row, each a new connection, of the
   agent's /metrics and of the same bytes served as a static file by
   Debian's nginx (also on CPU 0): the floor of moving that body over HTTP
   on this machine.  Interleaved rounds; medians and the ratio.
2. The handshake rate: tls-loadgen (CPU 1) against the agent's TLS endpoint
   for S seconds, without and with a scraper fetching /metrics every second,
   alternating, R rounds of each; the ratio with/without of handshakes per
   second and of handshakes per agent-CPU-second (utime + stime of the
   agent over the round, so the scraper's cost to the agent counts and the
   other jobs of a shared machine weigh less), medians of the rounds.

The N certificates are leaves of one key made by one `openssl ca` run,
stored without their key (the store holds them; the TLS table serves only
certificates with a key, here the default): /metrics reports every one.
Needs a build (certsync, tls-loadgen), openssl, taskset, curl, and nginx
(nginx-light, installed with apt-get when missing and this runs as root).
Binds 127.0.0.1 only; every process is stopped by PID.
"""

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchlib import log, pct, run, stop  # noqa: E402
from compare_nginx import cpu_seconds, free_port, load, nginx_binary, wait_serving  # noqa: E402

SITE = "default.bench.test"
NODE = "node.bench.test"

CA_CNF = """[ca]
default_ca = d
[d]
dir = .
database = ./index.txt
serial = ./serial
new_certs_dir = ./out
certificate = ca.pem
private_key = ca.key
default_md = sha256
default_days = 90
policy = p
unique_subject = no
x509_extensions = ext
copy_extensions = none
[p]
commonName = supplied
[ext]
basicConstraints = CA:FALSE
subjectAltName = DNS:many.bench.test
"""

NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {work}/nginx-tmp;
  proxy_temp_path {work}/nginx-tmp;
  fastcgi_temp_path {work}/nginx-tmp;
  uwsgi_temp_path {work}/nginx-tmp;
  scgi_temp_path {work}/nginx-tmp;
  server {{
    listen 127.0.0.1:{port};
    location = /metrics {{ default_type text/plain; alias {body}; }}
  }}
}}
"""


def make_material(work, n):
    """The default (cert and key in one PEM) and one PEM of n keyless leaves."""
    dflt, many = os.path.join(work, "default.pem"), os.path.join(work, "many.pem")
    if not os.path.exists(dflt):
        key = os.path.join(work, "default.key")
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", key, "-out", dflt + ".crt", "-days", "90", "-subj",
             "/CN=" + SITE, "-addext", "subjectAltName=DNS:%s,DNS:%s" % (SITE, NODE),
             "-addext", "basicConstraints=critical,CA:FALSE"])
        with open(dflt, "wb") as f:
            f.write(open(dflt + ".crt", "rb").read() + open(key, "rb").read())
    if not os.path.exists(many):
        d = os.path.join(work, "ca")
        os.makedirs(os.path.join(d, "out"))
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", os.path.join(d, "ca.key"), "-out", os.path.join(d, "ca.pem"),
             "-days", "90", "-subj", "/CN=Bench CA", "-addext",
             "basicConstraints=critical,CA:TRUE"])
        for name, text in (("index.txt", ""), ("serial", "1000\n"), ("ca.cnf", CA_CNF)):
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        csr = os.path.join(d, "many.csr")
        run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", os.path.join(d, "many.key"), "-subj", "/CN=many.bench.test",
             "-out", csr])
        log("signing %d leaves ..." % n)
        run(["openssl", "ca", "-batch", "-config", "ca.cnf", "-notext", "-out", "last.pem",
             "-infiles"] + [csr] * n, cwd=d, timeout=3600)
        out = os.path.join(d, "out")
        with open(many, "wb") as f:
            for name in sorted(os.listdir(out)):
                f.write(open(os.path.join(out, name), "rb").read())
    return dflt, many


class Agent:
    def __init__(self, build, work, n):
        self.bin = os.path.join(build, "certsync")
        self.tls_port, self.admin_port = free_port(), free_port()
        data, self.conf = os.path.join(work, "data"), os.path.join(work, "certsync.conf")
        passfile = os.path.join(work, "pass")
        with open(passfile, "w") as f:
            f.write("bench passphrase\n")
        os.chmod(passfile, 0o600)
        with open(self.conf, "w") as f:
            f.write("[node]\nname = bench\nrole = primary\nhostname = %s\ndata_dir = %s\n"
                    "control_socket = %s\npassphrase_file = %s\nlog_level = warn\n"
                    "tls_listen = 127.0.0.1:%d\ntls_workers = 1\nadmin_listen = 127.0.0.1:%d\n"
                    "\n[cluster]\nsite_hostname = %s\n"
                    % (NODE, data, os.path.join(work, "control.sock"), passfile,
                       self.tls_port, self.admin_port, SITE))
        self.log = open(os.path.join(work, "agent.log"), "ab")
        self.proc = subprocess.Popen(["taskset", "-c", "0", self.bin, "agent", "-c", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        self.pid = self.proc.pid
        try:
            self.fill(work, n)
        except BaseException:
            self.stop()
            raise

    def fill(self, work, n):
        """Waits for the agent and imports the certificates it lacks."""
        deadline = time.monotonic() + 60
        while self.cli("status").returncode != 0:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the agent did not start; see %s" % self.log.name)
            time.sleep(0.1)
        _, body = get(self.admin_port)
        have = body.count(b"certsync_certificate_expiration_timestamp_seconds{")
        if 0 < have < n + 1:
            raise RuntimeError("the store in %s holds %d certificates, not %d: remove it"
                               % (work, have, n + 1))
        if have == 0:
            dflt, many = make_material(work, n)
            r = self.cli("import", dflt, "--name", "default", check=True)
            cid = [i for i in json.loads(r.stdout)["items"] if i.get("kind") == "identity"][0]["id"]
            self.cli("cert", "default", cid, check=True)
            log("importing %d certificates ..." % n)
            self.cli("import", many, check=True, timeout=3600)
        wait_serving(self.tls_port, SITE, time.monotonic())

    def cli(self, *args, check=False, timeout=600):
        p = subprocess.run([self.bin, "--json", "-c", self.conf] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError("certsync %s: %s" % (" ".join(args), p.stderr.decode()))
        return p

    def stop(self):
        stop(self.proc)
        self.log.close()


def get(port, path="/metrics"):
    """One scrape on a new connection: (seconds, body)."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    if r.status != 200:
        raise RuntimeError("GET %s on port %d: %d" % (path, port, r.status))
    return time.monotonic() - t0, body


class Scraper(threading.Thread):
    """GET /metrics every second until stopped; keeps the latencies."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.times, self.done = port, [], threading.Event()

    def run(self):
        while not self.done.is_set():
            t0 = time.monotonic()
            self.times.append(get(self.port)[0])
            self.done.wait(max(0.0, 1.0 - (time.monotonic() - t0)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--certs", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--scrapes", type=int, default=20)
    ap.add_argument("--work")
    ap.add_argument("--json")
    ap.add_argument("--no-handshakes", action="store_true", help="measure the latency only")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="metrics-bench-")
    os.makedirs(work, exist_ok=True)
    agent = Agent(a.build, work, a.certs)
    nginx = None
    try:
        _, body = get(agent.admin_port)
        series = body.count(b"certsync_certificate_expiration_timestamp_seconds{")
        log("/metrics: %d bytes, %d certificates" % (len(body), series))
        path = os.path.join(work, "metrics.txt")
        with open(path, "wb") as f:
            f.write(body)
        os.makedirs(os.path.join(work, "nginx-tmp"), exist_ok=True)
        nport = free_port()
        with open(os.path.join(work, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF.format(work=work, port=nport, body=path))
        nginx = subprocess.Popen(["taskset", "-c", "0", nginx_binary(), "-c",
                                  os.path.join(work, "nginx.conf")],
                                 stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                get(nport)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        lat = {"certsync": [], "nginx": []}
        for _ in range(a.rounds):
            for name, port in (("certsync", agent.admin_port), ("nginx", nport)):
                lat[name] += [get(port)[0] for _ in range(a.scrapes)]
        hs = {"without": [], "with": []}
        per_cpu = {"without": [], "with": []}
        scraped = []
        for _ in range(0 if a.no_handshakes else a.rounds):
            for mode in ("without", "with"):
                s = Scraper(agent.admin_port) if mode == "with" else None
                if s:
                    s.start()
                cpu0 = cpu_seconds(agent.pid)
                res, _ = load(a.build, agent.tls_port, a.seconds, ["--sni", SITE])
                cpu = cpu_seconds(agent.pid) - cpu0
                if s:
                    s.done.set()
                    s.join()
                    scraped += s.times
                hs[mode].append(res["per_second"])
                per_cpu[mode].append(res["handshakes"] / cpu if cpu > 0 else 0)
        r = {
            "certificates": series, "bytes": len(body),
            "metrics_ms": {k: {"median": 1000 * pct(v, 50), "p90": 1000 * pct(v, 90)}
                           for k, v in lat.items()},
            "scrape_during_load_ms": {"median": 1000 * pct(scraped, 50),
                                      "p90": 1000 * pct(scraped, 90)},
            "handshakes_per_s": hs,
            "ratio_with_without": [w / wo for w, wo in zip(hs["with"], hs["without"])],
            "handshakes_per_cpu_s": per_cpu,
            "cpu_ratio_with_without": [w / wo for w, wo in zip(per_cpu["with"],
                                                               per_cpu["without"])],
        }
        r["ratio_median"] = pct(r["ratio_with_without"], 50) if hs["with"] else None
        r["cpu_ratio_median"] = pct(r["cpu_ratio_with_without"], 50) if hs["with"] else None
        r["ratio_totals"] = sum(hs["with"]) / sum(hs["without"]) if hs["with"] else None
        report(r)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(r, f, indent=2)
    finally:
        if nginx is not None:
            stop(nginx)
        agent.stop()


def report(r):
    m = r["metrics_ms"]
    print("/metrics with %d certificates (%d bytes), a new connection per scrape"
          % (r["certificates"], r["bytes"]))
    print("  certsync median %.1f ms (p90 %.1f), nginx serving the same bytes %.1f ms "
          "(p90 %.1f): certsync/nginx %.2f"
          % (m["certsync"]["median"], m["certsync"]["p90"], m["nginx"]["median"],
             m["nginx"]["p90"], m["certsync"]["median"] / m["nginx"]["median"]))
    print("  scrapes during the handshake load: median %.1f ms (p90 %.1f)"
          % (r["scrape_during_load_ms"]["median"], r["scrape_during_load_ms"]["p90"]))
    if r["ratio_median"] is None:
        return
    print("TLS handshakes without and with a scraper every second, per round:")
    print("  %9s %9s %7s   %12s %12s %7s" % ("hs/s", "hs/s", "ratio", "hs/cpu-s", "hs/cpu-s",
                                             "ratio"))
    for row in zip(r["handshakes_per_s"]["without"], r["handshakes_per_s"]["with"],
                   r["ratio_with_without"], r["handshakes_per_cpu_s"]["without"],
                   r["handshakes_per_cpu_s"]["with"], r["cpu_ratio_with_without"]):
        print("  %9.1f %9.1f %7.3f   %12.1f %12.1f %7.3f" % row)
    print("  with/without, median of rounds: %.3f in handshakes/s (all rounds summed: %.3f), "
          "%.3f in handshakes per agent-CPU-second"
          % (r["ratio_median"], r["ratio_totals"], r["cpu_ratio_median"]))


if __name__ == "__main__":
    main()
