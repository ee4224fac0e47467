"""The servers the ACME tests run on this machine, shared by the test files:
pebble with pebble-challtestsrv (its DNS and challenge responder), BIND9's
named holding a zone that takes RFC 2136 updates, the HTTPS certificate
pebble answers with (made with openssl), PebbleFront (pebble behind a front
that can go down, with the renewalInfo resource Debian's pebble lacks), and
AcmeCluster: three agents, each on its own loopback address, getting their
certificates from that pebble.  Everything listens on 127.x addresses; pebble is always given -dnsserver on this
machine, so it never asks a resolver elsewhere.  Every process is stopped by
its PID.
"""

import base64
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import helpers
from test_repl_cluster import run_cluster

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"
NAMED = "/usr/sbin/named"
ZONE = """$TTL 60
@ IN SOA ns.example.test. hostmaster.example.test. 1 60 60 600 60
@ IN NS ns.example.test.
ns IN A 127.0.0.1
"""




def stop_proc(p, timeout=10):
    """SIGTERM to a process this test started (by PID), SIGKILL after
    timeout; returns its exit status."""
    if p.poll() is None:
        os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
    return p.returncode


class TLSFiles:
    """A CA made with openssl and a server certificate for 127.0.0.1 /
    localhost, for pebble's (or a stub's) HTTPS listener."""

    def __init__(self, d, name):
        self.ca = os.path.join(d, name + "-ca.pem")
        self.cert = os.path.join(d, name + "-server.pem")
        self.key = os.path.join(d, name + "-server.key")
        ca_key = os.path.join(d, name + "-ca.key")
        csr = os.path.join(d, name + "-server.csr")
        ext = os.path.join(d, name + "-server.ext")
        helpers.openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", ca_key, "-out", self.ca, "-days", "2",
                        "-subj", "/CN=%s test HTTPS CA" % name,
                        "-addext", "basicConstraints=critical,CA:TRUE",
                        "-addext", "keyUsage=critical,keyCertSign")
        helpers.openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", self.key, "-out", csr, "-subj", "/CN=localhost")
        helpers.write(ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                           "extendedKeyUsage=serverAuth\n")
        helpers.openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", ca_key,
                        "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", self.cert)


class Pebble:
    """pebble + pebble-challtestsrv on 127.0.0.1, each on its own free port;
    stopped by PID.  httpport/tlsport: where pebble validates http-01 and
    tls-alpn-01 (challtestsrv's own responders otherwise); validity: the
    certificates' lifetime in seconds (pebble's certificateValidityPeriod);
    default_ipv4: what challtestsrv's DNS answers for a name without an A
    record of its own (add_a)."""

    def __init__(self, d, tls, env=None, eab_keys=None, dnsserver=None, httpport=None,
                 tlsport=None, validity=None, default_ipv4="127.0.0.1"):
        self.d = str(d)
        self.dnsserver = dnsserver  # "127.0.0.1:PORT" instead of challtestsrv's DNS
        self.tls = tls
        self.port = helpers.free_port()
        self.mgmt = helpers.free_port()
        self.http01 = helpers.free_port()
        self.tlsalpn = helpers.free_port()
        self.dns = helpers.free_port()
        self.chall_mgmt = helpers.free_port()
        self.default_ipv4 = default_ipv4
        self.procs = []
        cfg = {"pebble": {
            "listenAddress": "127.0.0.1:%d" % self.port,
            "managementListenAddress": "127.0.0.1:%d" % self.mgmt,
            "certificate": tls.cert, "privateKey": tls.key,
            "httpPort": httpport or self.http01, "tlsPort": tlsport or self.tlsalpn,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": bool(eab_keys),
        }}
        if eab_keys:
            cfg["pebble"]["externalAccountMACKeys"] = eab_keys
        if validity:
            cfg["pebble"]["certificateValidityPeriod"] = int(validity)
        self.config = os.path.join(self.d, "pebble.json")
        helpers.write(self.config, json.dumps(cfg))
        self.env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0",
                        PEBBLE_AUTHZREUSE="0")
        self.env.update(env or {})
        self.dir_url = "https://127.0.0.1:%d/dir" % self.port

    def _spawn(self, name, args, env=None):
        log = open(os.path.join(self.d, name + ".log"), "wb")
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                             cwd=self.d)
        log.close()
        self.procs.append(p)
        return p

    def start(self):
        for b in (PEBBLE, CHALLTESTSRV):
            if not os.access(b, os.X_OK):
                pytest.fail("%s is missing: scripts/install-deps installs Debian's pebble" % b,
                            pytrace=False)
        self._spawn("challtestsrv", [
            CHALLTESTSRV, "-management", "127.0.0.1:%d" % self.chall_mgmt,
            "-dns01", "127.0.0.1:%d" % self.dns, "-http01", "127.0.0.1:%d" % self.http01,
            "-https01", "", "-tlsalpn01", "127.0.0.1:%d" % self.tlsalpn,
            "-defaultIPv4", self.default_ipv4, "-defaultIPv6", ""])
        helpers.wait_for("challtestsrv's management port", lambda: self._accepts(self.chall_mgmt))
        self.start_ca()
        for p in self.procs:
            # challtestsrv's DNS port is UDP, which free_port does not try
            assert p.poll() is None, "%s exited: see %s" % (p.args[0], self.d)
        return self

    def start_ca(self):
        self._spawn("pebble", [PEBBLE, "-config", self.config, "-dnsserver",
                               self.dnsserver or "127.0.0.1:%d" % self.dns], env=self.env)
        helpers.wait_for("pebble's directory", self._dir_answers, timeout=30)

    def _accepts(self, port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    def _dir_answers(self):
        try:
            ctx = ssl.create_default_context(cafile=self.tls.ca)
            with urllib.request.urlopen(self.dir_url, context=ctx, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def challtest(self, path, body):
        req = urllib.request.Request("http://127.0.0.1:%d/%s" % (self.chall_mgmt, path),
                                     data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200, (path, r.status)

    def add_a(self, host, address):
        """challtestsrv's DNS answers address for host (replacing what it
        answered before)."""
        self.challtest("clear-a", {"host": host})
        self.challtest("add-a", {"host": host, "addresses": [address]})

    def publish(self, challenge):
        """Has challtestsrv answer challenge (as acme_driver's order printed it)."""
        if challenge["type"] == "http-01":
            self.challtest("add-http01", {"token": challenge["token"],
                                          "content": challenge["key_authorization"]})
        elif challenge["type"] == "tls-alpn-01":
            self.challtest("add-tlsalpn01", {"host": challenge["identifier"],
                                             "content": challenge["key_authorization"]})
        else:
            self.challtest("set-txt", {"host": "_acme-challenge.%s." % challenge["identifier"],
                                       "value": challenge["dns01"]})

    def root_pem(self):
        """Pebble's current root, from its management port (HTTPS with the
        same test certificate)."""
        ctx = ssl.create_default_context(cafile=self.tls.ca)
        with urllib.request.urlopen("https://127.0.0.1:%d/roots/0" % self.mgmt, context=ctx,
                                    timeout=10) as r:
            return r.read().decode()

    def stop(self):
        for p in reversed(self.procs):
            stop_proc(p)
        self.procs = []


class Named:
    """named -g (foreground, logging to stderr) on a free port of 127.0.0.1,
    as the user running the test, everything in its own folder; stopped by
    PID."""

    def __init__(self, d):
        self.d = str(d)
        self.port = helpers.free_port()
        self.key = os.path.join(self.d, "certsync-test.key")
        self.other = os.path.join(self.d, "other.key")
        self.proc = None

    def start(self):
        for b in (NAMED, "/usr/sbin/tsig-keygen", "/usr/bin/named-journalprint"):
            if not os.access(b, os.X_OK):
                pytest.fail("%s is missing: scripts/install-deps installs Debian's bind9" % b,
                            pytrace=False)
        for path, name in ((self.key, "certsync-test"), (self.other, "other")):
            out = helpers.run(["tsig-keygen", "-a", "hmac-sha256", name]).stdout
            helpers.write(path, out, mode=0o600)
        helpers.write(os.path.join(self.d, "example.test.zone"), ZONE)
        d = self.d
        conf = """options {
  directory "%(d)s"; pid-file "%(d)s/named.pid"; session-keyfile "%(d)s/session.key";
  managed-keys-directory "%(d)s";
  listen-on port %(port)d { 127.0.0.1; }; listen-on-v6 { none; };
  recursion no; dnssec-validation no; allow-query { any; }; notify no;
};
controls { };
include "%(key)s";
include "%(other)s";
zone "example.test" {
  type primary; file "%(d)s/example.test.zone";
  update-policy { grant certsync-test subdomain example.test. TXT; };
};
""" % {"d": d, "port": self.port, "key": self.key, "other": self.other}
        self.conf = os.path.join(d, "named.conf")
        helpers.write(self.conf, conf)
        log = open(os.path.join(d, "named.log"), "wb")
        # as root named keeps running as root unless -u is given: fine for a
        # test whose files are all in its own temporary folder
        self.proc = subprocess.Popen([NAMED, "-g", "-c", self.conf, "-p", str(self.port)],
                                     stdout=log, stderr=subprocess.STDOUT, cwd=d)
        log.close()
        helpers.wait_for("named's zone example.test", self._loaded, timeout=30)
        return self

    def _loaded(self):
        assert self.proc.poll() is None, "named exited: see %s/named.log" % self.d
        return b"all zones loaded" in helpers.read(os.path.join(self.d, "named.log"))

    @property
    def server(self):
        return "127.0.0.1:%d" % self.port

    def journal(self):
        """named's applied changes to the zone, as named-journalprint prints
        them, white space made single ("add NAME TTL IN TXT ..." / "del ...")."""
        jnl = os.path.join(self.d, "example.test.zone.jnl")
        if not os.path.exists(jnl):
            return ""
        out = helpers.run(["named-journalprint", jnl]).stdout.decode()
        return "\n".join(" ".join(line.split()) for line in out.splitlines())

    def log(self):
        return helpers.read(os.path.join(self.d, "named.log")).decode()

    def stop(self):
        if self.proc is not None:
            stop_proc(self.proc, timeout=15)


# ---- a cluster that obtains its certificates from pebble ---------------------

SITE = "support.example.test"
ACME_NODES = (("primary", "primary"), ("backup", "backup"), ("tn1", "traffic"))
ACME_ADDRESSES = ("127.0.0.11", "127.0.0.12", "127.0.0.13")
NOWHERE = "127.0.0.99"  # what challtestsrv answers for a name not published: nothing listens


class AcmeNode(helpers.ClusterNode):
    """A node of cluster init's configuration (with its http_listen) and an
    [acme] section (acme_conf)."""

    acme_conf = ""

    def config_text(self):
        return super().config_text() + self.acme_conf


class AcmeCluster:
    """Pebble (with challtestsrv's DNS, or dnsserver) and three nodes,
    primary, backup and tn1, on 127.0.0.11, .12 and .13: each node's
    http_listen and TLS endpoint on the ports where pebble validates http-01
    and tls-alpn-01, so that whichever node a name's A record points at
    answers the CA.  Node hostnames resolve to their own node; the site
    hostname to site_node."""

    def __init__(self, binary, d, tls, site_node="backup", validity=None, env=None,
                 dnsserver=None, front=False, window_for=None, acme_extra=""):
        self.d = str(d)
        self.http_port = helpers.free_port_on(ACME_ADDRESSES)
        self.tls_port = helpers.free_port_on(ACME_ADDRESSES)
        pdir = os.path.join(self.d, "pebble")
        os.makedirs(pdir, exist_ok=True)
        self.pebble = Pebble(pdir, tls, env=env, dnsserver=dnsserver, httpport=self.http_port,
                             tlsport=self.tls_port, validity=validity, default_ipv4=NOWHERE)
        self.tls = tls
        self.nodes = helpers.init_cluster(binary, ACME_NODES, site=SITE,
                                          addresses=ACME_ADDRESSES, tls_port=self.tls_port,
                                          http_port=self.http_port, cls=AcmeNode)
        # the nodes reach pebble through a PebbleFront (front or window_for)
        self.front = (PebbleFront(self.pebble, tls, window_for=window_for)
                      if front or window_for else None)
        self.acme_extra = acme_extra
        self.site_node = site_node

    def configure(self):
        conf = ("\n[acme]\ndirectory = %s\ncontact = mailto:ops@example.test\nagree_tos = yes\n"
                "ca_file = %s\n%s" % ((self.front or self.pebble).dir_url, self.tls.ca,
                                      self.acme_extra))
        for n in self.nodes:
            n.acme_conf = conf
            n.write_config()

    def start_pebble(self):
        self.pebble.start()
        self.root = os.path.join(self.d, "pebble-root.pem")
        helpers.write(self.root, self.pebble.root_pem())
        if not self.pebble.dnsserver:
            for n in self.nodes:
                self.pebble.add_a(n.hostname, n.address)
            self.point_site_at(self.site_node)

    def point_site_at(self, name):
        self.pebble.add_a(SITE, self.node(name).address)

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    def hostnames(self):
        return [SITE] + [n.hostname for n in self.nodes]

    def run(self):
        """Starts pebble and the cluster; yields self; stops both (every
        node must exit 0: run_cluster's check)."""
        self.configure()
        self.start_pebble()
        try:
            for _ in run_cluster(self.nodes):
                yield self
        finally:
            self.pebble.stop()
            if self.front:
                self.front.stop()


def verified_id(address, port, name, root):
    """The id of the certificate `openssl s_client` receives from
    address:port for SNI name when it verifies against root (pebble's) and
    matches name as a host name; None when the handshake or the check
    fails."""
    try:
        p = subprocess.run(["openssl", "s_client", "-connect", "%s:%d" % (address, port),
                            "-servername", name, "-CAfile", root, "-verify_return_error",
                            "-verify_hostname", name], input=b"", stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
    except subprocess.TimeoutExpired:
        return None
    out = p.stdout.decode(errors="replace")
    if p.returncode != 0 or "Verify return code: 0 (ok)" not in out:
        return None
    return helpers.der_id(out)


ISSUE_DEADLINE = 180  # s: an order, its validations and replication, ASan build included


def domains(names):
    return [a for n in names for a in ("--domain", n)]


def served_everywhere(cluster, names, root=None, deadline=ISSUE_DEADLINE, not_id=None):
    """Waits until every node's TLS endpoint serves, for each of names, one
    and the same certificate that verifies against pebble's root and matches
    the name (and is not not_id); returns its id."""
    root = root or cluster.root
    seen = {}

    def check():
        seen.clear()
        for n in cluster.nodes:
            if not n.running:
                continue
            for name in names:
                seen[(n.name, name)] = verified_id(n.address, n.tls_port, name, root)
        ids = set(seen.values())
        return len(ids) == 1 and None not in ids and not_id not in ids

    try:
        helpers.wait_for("every node to serve a certificate from pebble for %s" % names, check,
                         timeout=deadline, step=0.5)
    except AssertionError as e:
        at = next(n for n in cluster.nodes if n.running)
        raise AssertionError("%s\nserved: %s\n%s's acme list: %s\nits log's end:\n%s" % (
            e, seen, at.name, at.cli("acme", "list").describe(), at.stderr()[-3000:]))
    return next(iter(seen.values()))


def add(node, name, names, challenge, *extra, check=0):
    return node.cli("acme", "add", name, *domains(names), "--challenge", challenge, *extra,
                    check=check)


def obtain_default(cluster, challenge, names=None):
    """`acme add site --default` on the primary for names (the cluster's
    hostnames); waits until every node serves the result and holds it as
    the default; returns its id."""
    names = names or cluster.hostnames()
    add(cluster.node("primary"), "site", names, challenge, "--default")
    cid = served_everywhere(cluster, names)
    for n in cluster.nodes:
        assert n.status()["default"]["id"] == cid, n.name
    return cid


def show(node, name):
    return node.cli("acme", "show", name, check=0).data


# ---- ARI: Debian's pebble predates RFC 9773 ------------------------------------

def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def b64url_json(s):
    return json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))


class PebbleFront:
    """An HTTPS server on 127.0.0.1 (the test certificate, like pebble's)
    in front of pebble: every request goes to pebble unchanged, Host
    included, so every URL pebble gives names this front and the client's
    JWS "url" still matches.  It adds what Debian's pebble lacks: with
    window_for (a function of a CertID returning (start, end) unix seconds),
    /dir is pebble's directory plus renewalInfo (RFC 9773) and GET
    /ari/CERTID answers that window with Retry-After self.retry_after.  It
    keeps the newOrder payloads (self.orders) and the CertIDs asked
    (self.asked).  down() and up() take the CA off the network and back,
    pebble keeping its accounts and orders as a real CA would."""

    def __init__(self, pebble, tls, window_for=None):
        self.pebble, self.tls = pebble, tls
        self.window_for = window_for
        self.retry_after = 2
        self.orders, self.asked = [], []
        self.port = helpers.free_port()
        self.netloc = "127.0.0.1:%d" % self.port
        self.dir_url = "https://%s/dir" % self.netloc
        self.up()

    def up(self):
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                if self.path.startswith("/ari/") and front.window_for:
                    status, headers, data = front.renewal_info(self.path[len("/ari/"):])
                else:
                    status, headers, data = front.forward(self, body)
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_HEAD = _answer

            def setup(self):
                super().setup()
                front.conns.add(self.connection)

            def finish(self):
                front.conns.discard(self.connection)
                super().finish()

            def log_message(self, *a):
                pass

        self.conns = set()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.tls.cert, self.tls.key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def renewal_info(self, certid):
        self.asked.append(certid)
        start, end = self.window_for(certid)
        doc = {"suggestedWindow": {"start": rfc3339(start), "end": rfc3339(end)}}
        return 200, [("Content-Type", "application/json"),
                     ("Retry-After", str(self.retry_after))], json.dumps(doc).encode()

    def forward(self, req, body):
        ctx = ssl.create_default_context(cafile=self.tls.ca)
        conn = http.client.HTTPSConnection("127.0.0.1", self.pebble.port, context=ctx,
                                           timeout=30)
        try:
            headers = {k: v for k, v in req.headers.items()
                       if k.lower() not in ("connection", "content-length")}
            headers["Host"] = self.netloc
            conn.request(req.command, req.path, body=body or None, headers=headers)
            r = conn.getresponse()
            data = r.read()
            out = [(k, v) for k, v in r.getheaders()
                   if k.lower() not in ("connection", "content-length", "transfer-encoding")]
        finally:
            conn.close()
        if req.path == "/dir" and r.status == 200 and self.window_for:
            d = json.loads(data)
            d["renewalInfo"] = "https://%s/ari/" % self.netloc
            data = json.dumps(d).encode()
        elif req.command == "POST" and req.path == "/order-plz" and body:
            self.orders.append(b64url_json(json.loads(body)["payload"]))
        return r.status, out, data

    def down(self):
        """Stops answering: the connections open are cut, new ones refused."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        for conn in list(self.conns):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    stop = down


def ari_certid(der):
    """RFC 9773's CertID of a certificate (DER): base64url(AKI
    keyIdentifier) "." base64url(serial's DER content octets)."""
    text = helpers.openssl_text("x509", "-inform", "DER", "-noout", "-ext",
                                "authorityKeyIdentifier", "-serial", input=der)
    aki = bytes.fromhex(re.search(r"Authority Key Identifier:\s*(?:keyid:)?([0-9A-Fa-f:]+)", text).group(1).replace(":", ""))
    serial = int(re.search(r"serial=([0-9A-Fa-f]+)", text).group(1), 16)
    octets = serial.to_bytes(serial.bit_length() // 8 + 1, "big")
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    return b64(aki) + "." + b64(octets)
