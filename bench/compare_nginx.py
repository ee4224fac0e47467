#!/usr/bin/env python3
"""compare_nginx.py — certsync's TLS endpoint against Debian's nginx, in one run.

    bench/compare_nginx.py [--build DIR] [--seconds S] [--rounds R] [--certs N]
                           [--work DIR] [--json FILE]

Both servers get the same N (1,000) ECDSA P-256 certificates, one name each,
plus a wildcard (*.wild.bench.test) and a default; both run one worker, TLS
1.2 and 1.3, nginx without session cache or tickets.  Both servers are pinned
to CPU 0 and tls-loadgen to CPU 1 (taskset); they are loaded in turn, R rounds
(median reported), so a busy machine weighs on both alike.  For each server
and workload (one
name; names spread over all N plus wildcard, unknown and no SNI) it prints
handshakes per server-CPU-second (utime+stime from /proc/PID/stat over the
run; TcpPassiveOpens must rise by at least the handshake count, proving every
handshake was a new connection), that figure over `openssl speed ecdsap256`
sign/s measured in the same run, the ratio certsync/nginx, RSS with N
certificates, and the time from start to the first served handshake.  Then
failed handshakes while certsync replaces a certificate every 100 ms.

Needs: a build (cmake --build; tls-serve-store, tls-loadgen), openssl,
taskset, and nginx (nginx-light is installed with apt-get when missing and
this runs as root).  Binds 127.0.0.1 only; every process is stopped by PID.
"""

import argparse
import concurrent.futures
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from benchlib import debian_binary, log, run, stop  # noqa: E402
CLK_TCK = os.sysconf("SC_CLK_TCK")
DOMAIN = "bench.test"
SITE = "default." + DOMAIN
NODE = "node." + DOMAIN
REPLACEMENTS = 10


# ---- certificates -----------------------------------------------------------

def make_cert(d, name, sans):
    key, pem = os.path.join(d, name + ".key"), os.path.join(d, name + ".pem")
    if not os.path.exists(pem):
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", key, "-out", pem, "-days", "30", "-subj", "/CN=" + sans[0],
             "-addext", "subjectAltName=" + ",".join("DNS:" + s for s in sans),
             "-addext", "basicConstraints=critical,CA:FALSE"])
    return pem, key


def make_certs(d, n):
    os.makedirs(d, exist_ok=True)
    jobs = [("default", [SITE, NODE]), ("wild", ["*.wild." + DOMAIN])]
    jobs += [("n%04d" % i, ["n%04d.%s" % (i, DOMAIN)]) for i in range(1, n + 1)]
    jobs += [("r%02d" % i, ["n0001." + DOMAIN]) for i in range(REPLACEMENTS)]
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as ex:
        files = list(ex.map(lambda j: make_cert(d, *j), jobs))
    return dict(zip([j[0] for j in jobs], files))


# ---- processes ----------------------------------------------------------------

def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def passive_opens():
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("PassiveOpens")])


def wait_serving(port, sni, t0, timeout=120):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                with ctx.wrap_socket(s, server_hostname=sni):
                    return time.monotonic() - t0
        except (OSError, ssl.SSLError):
            time.sleep(0.01)
    raise RuntimeError("nothing served on port %d" % port)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the servers ------------------------------------------------------------------

class Certsync:
    name = "certsync"

    def __init__(self, build, work, files, n, replace_every=0):
        self.port = free_port()
        data = os.path.join(work, "certsync-data")
        passfile = os.path.join(work, "pass")
        with open(passfile, "w") as f:
            f.write("bench passphrase\n")
        args = [os.path.join(build, "bench", "tls-serve-store"), "--data-dir", data,
                "--passphrase-file", passfile, "--listen", "127.0.0.1:%d" % self.port,
                "--workers", "1", "--node-hostname", NODE, "--site-hostname", SITE,
                "--nofile", "65536"]
        if not os.path.exists(data):
            # Fill the store once (one commit per certificate, as imports
            # would be), then start again so the start is measured alone.
            imports = ["--default-first", "--import", ",".join(files["default"]),
                       "--import", ",".join(files["wild"])]
            for i in range(1, n + 1):
                imports += ["--import", ",".join(files["n%04d" % i])]
            p = subprocess.Popen(["taskset", "-c", "0"] + args + imports,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL)
            p.stdout.readline()
            stop(p)
        if replace_every:
            for i in range(REPLACEMENTS):
                args += ["--replace", ",".join(files["r%02d" % i])]
            args += ["--replace-every", str(replace_every)]
        self.stderr = open(os.path.join(work, "certsync.log"), "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(["taskset", "-c", "0"] + args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self.stderr)
        self.start_s = wait_serving(self.port, "n%04d.%s" % (n, DOMAIN), t0)
        self.ready = json.loads(self.proc.stdout.readline())
        self.pid = self.proc.pid

    def stop(self):
        stop(self.proc)
        self.stderr.close()


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  client_body_temp_path {work}/nginx-tmp;
  proxy_temp_path {work}/nginx-tmp;
  fastcgi_temp_path {work}/nginx-tmp;
  uwsgi_temp_path {work}/nginx-tmp;
  scgi_temp_path {work}/nginx-tmp;
  server_names_hash_max_size 8192;
  server_names_hash_bucket_size 128;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
  ssl_ecdh_curve X25519:prime256v1:secp384r1;
  ssl_session_cache off;
  ssl_session_tickets off;
  server {{
    listen 127.0.0.1:{port} ssl default_server;
    ssl_certificate {default[0]};
    ssl_certificate_key {default[1]};
    location / {{ return 200 "default\\n"; }}
  }}
  server {{
    listen 127.0.0.1:{port} ssl;
    server_name *.wild.{domain};
    ssl_certificate {wild[0]};
    ssl_certificate_key {wild[1]};
    location / {{ return 200 "wild\\n"; }}
  }}
{blocks}
}}
"""

NGINX_BLOCK = """  server {{
    listen 127.0.0.1:{port} ssl;
    server_name {name};
    ssl_certificate {pem};
    ssl_certificate_key {key};
    location / {{ return 200 "{name}\\n"; }}
  }}
"""


class Nginx:
    name = "nginx"

    def __init__(self, work, files, n):
        self.port = free_port()
        os.makedirs(os.path.join(work, "nginx-tmp"), exist_ok=True)
        blocks = "".join(NGINX_BLOCK.format(port=self.port, name="n%04d.%s" % (i, DOMAIN),
                                            pem=files["n%04d" % i][0], key=files["n%04d" % i][1])
                         for i in range(1, n + 1))
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(work=work, port=self.port, domain=DOMAIN,
                                      default=files["default"], wild=files["wild"],
                                      blocks=blocks))
        t0 = time.monotonic()
        self.proc = subprocess.Popen(["taskset", "-c", "0", nginx_binary(), "-c", conf,
                                      "-e", os.path.join(work, "nginx-error.log")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.start_s = wait_serving(self.port, "n%04d.%s" % (n, DOMAIN), t0)
        self.pid = self.proc.pid

    def stop(self):
        stop(self.proc)


def nginx_binary():
    return debian_binary("nginx", "/usr/sbin/nginx", ("nginx-light",))


# ---- load ---------------------------------------------------------------------------

def names_file(work, n):
    path = os.path.join(work, "names-spread.txt")
    with open(path, "w") as f:
        for i in range(1, n + 1):
            f.write("n%04d.%s\n" % (i, DOMAIN))
            if i % 10 == 0:
                f.write("x%d.wild.%s\n" % (i, DOMAIN))
            if i % 25 == 0:
                f.write("unknown%d.example %s\n" % (i, SITE))
            if i % 50 == 0:
                f.write("- %s\n" % SITE)
    return path


def load(build, port, seconds, names, conc=32):
    args = ["taskset", "-c", "1", os.path.join(build, "bench", "tls-loadgen"), "--connect",
            "127.0.0.1:%d" % port, "--duration", str(seconds), "--concurrency", str(conc),
            "--json"] + names
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=seconds + 120)
    return json.loads(p.stdout), p.stderr.decode(errors="replace")


def measure(build, srv, seconds, names):
    opens0, cpu0 = passive_opens(), cpu_seconds(srv.pid)
    res, err = load(build, srv.port, seconds, names)
    cpu = cpu_seconds(srv.pid) - cpu0
    res["server_cpu_s"] = cpu
    res["passive_opens"] = passive_opens() - opens0
    res["per_cpu_s"] = res["handshakes"] / cpu if cpu > 0 else 0
    res["stderr"] = err.strip().splitlines()[:3]
    return res


def sign_rate():
    p = run(["taskset", "-c", "0", "openssl", "speed", "-seconds", "3", "ecdsap256"])
    for line in p.stdout.decode().splitlines():
        parts = line.split()
        if parts[:2] == ["256", "bits"] and "ecdsa" in line:
            return float(parts[-2])  # sign/s, verify/s
    raise RuntimeError("cannot read openssl speed output")


def median_run(runs):
    """The run with the median handshakes per server-CPU-second, with the
    range of all rounds beside it."""
    runs = sorted(runs, key=lambda x: x["per_cpu_s"])
    med = dict(runs[len(runs) // 2])
    med["range"] = [runs[0]["per_cpu_s"], runs[-1]["per_cpu_s"]]
    return med


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--seconds", type=float, default=5, help="per round and workload")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--certs", type=int, default=1000)
    ap.add_argument("--work", default=None, help="keeps certificates between runs")
    ap.add_argument("--json", default=None, help="also write the figures here")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    work = os.path.abspath(a.work or tempfile.mkdtemp(prefix="certsync-bench-"))
    os.makedirs(work, exist_ok=True)
    nginx_binary()
    log("certificates in %s ..." % work)
    files = make_certs(os.path.join(work, "certs"), a.certs)
    workloads = {
        "one name": ["--sni", "n0001." + DOMAIN],
        "spread": ["--names-file", names_file(work, a.certs)],
    }
    sps = sign_rate()
    results = {"sign_per_s": sps, "certs": a.certs, "seconds": a.seconds,
               "rounds": a.rounds, "servers": {}}
    servers = []
    try:
        for make in (lambda: Certsync(build, work, files, a.certs),
                     lambda: Nginx(work, files, a.certs)):
            srv = make()
            servers.append(srv)
            results["servers"][srv.name] = {
                "start_to_serving_s": srv.start_s, "rss_mb": rss_mb(srv.pid),
                "table_ms": getattr(srv, "ready", {}).get("table_ms", 0),
                "rounds": {wl: [] for wl in workloads}}
        # Both up, pinned to the same core, loaded in turn: whatever else
        # the machine does falls on both alike.
        for rnd in range(a.rounds):
            for srv in servers:
                for wl, names in workloads.items():
                    log("round %d: %s, %s ..." % (rnd + 1, srv.name, wl))
                    results["servers"][srv.name]["rounds"][wl].append(
                        measure(build, srv, a.seconds, names))
        for srv in servers:
            r = results["servers"][srv.name]
            r["rss_after_mb"] = rss_mb(srv.pid)
            r["runs"] = {wl: median_run(runs) for wl, runs in r["rounds"].items()}
    finally:
        for srv in servers:
            srv.stop()
    log("certsync, replacing a certificate every 100 ms ...")
    srv = Certsync(build, work, files, a.certs, replace_every=100)
    try:
        results["replacement"] = measure(build, srv, 2 * a.seconds, [
            "--sni", "n0001." + DOMAIN, "--sni", "x1.wild." + DOMAIN, "--sni", "-=" + SITE])
    finally:
        srv.stop()
    report(results)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


def report(r):
    c, n = r["servers"]["certsync"], r["servers"]["nginx"]
    print("openssl speed ecdsap256 (CPU 0): %.0f sign/s" % r["sign_per_s"])
    print("median of %d interleaved rounds of %.0f s each; hs/cpu-s range in brackets" % (
        r["rounds"], r["seconds"]))
    print("%-9s %-9s %7s %7s %7s %9s %15s %8s %7s %5s %5s" % (
        "server", "workload", "hs/s", "p99 ms", "cpu s", "hs/cpu-s", "[range]", "/sign/s",
        "opens", "fail", "mism"))
    for name, s in (("certsync", c), ("nginx", n)):
        for wl, x in s["runs"].items():
            print("%-9s %-9s %7.0f %7.2f %7.2f %9.0f %15s %8.3f %7d %5d %5d" % (
                name, wl, x["per_second"], x["p99_ms"], x["server_cpu_s"], x["per_cpu_s"],
                "[%.0f-%.0f]" % tuple(x["range"]), x["per_cpu_s"] / r["sign_per_s"],
                x["passive_opens"], sum(y["failures"] for y in s["rounds"][wl]),
                sum(y["mismatches"] for y in s["rounds"][wl])))
    for wl in c["runs"]:
        print("certsync/nginx, %s: %.2f" % (wl, c["runs"][wl]["per_cpu_s"] /
                                             max(n["runs"][wl]["per_cpu_s"], 1e-9)))
    print("certsync: table of %d certificates built in %.0f ms at start" % (
        r["certs"], c["table_ms"]))
    for name, s in (("certsync", c), ("nginx", n)):
        print("%s: RSS %.1f MB with %d certificates (%.1f MB after the runs); "
              "start to serving %.2f s" % (name, s["rss_mb"], r["certs"], s["rss_after_mb"],
                                            s["start_to_serving_s"]))
    x = r["replacement"]
    print("certsync, a certificate replaced every 100 ms: %d handshakes, %d failed, "
          "%d mismatched" % (x["handshakes"], x["failures"], x["mismatches"]))


if __name__ == "__main__":
    main()
