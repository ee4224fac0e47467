"""The ACME client (acme/) against a real ACME server: Debian's pebble, with
pebble-challtestsrv as its DNS and challenge responder, all on 127.0.0.1.

The test program acme_driver (built with the tests) runs one step of the
client per process: the order's JSON state is written after each step and
read back by the next, so every issuance here also resumes an order in a new
process.  Pebble's HTTPS certificate comes from a CA the test makes with
openssl; the client trusts it only through its ca_file.  Pebble is always run
with -dnsserver pointed at challtestsrv's DNS, so it never asks a resolver
off this machine.  Stub HTTPS servers (Python http.server) play a broken CA
for the bad-input cases.
"""

import json
import os
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

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"


def driver_bin():
    build = os.environ.get("CERTSYNC_BUILD")
    if not build:
        pytest.fail("CERTSYNC_BUILD is not set (ctest sets it)", pytrace=False)
    return os.path.join(build, "tests", "acme_driver")


def driver(*args, check=True):
    """Runs acme_driver; returns (exit status, the JSON it printed, stderr)."""
    p = helpers.run([driver_bin()] + list(args), check=False, timeout=180)
    out = p.stdout.decode().strip()
    doc = json.loads(out.splitlines()[-1]) if out else None
    if check and p.returncode != 0:
        raise AssertionError("acme_driver %s failed (%d): %s %s" % (
            " ".join(map(str, args)), p.returncode, out, p.stderr.decode()))
    return p.returncode, doc, p.stderr.decode()


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
    stopped by PID."""

    def __init__(self, d, tls, env=None, eab_keys=None):
        self.d = str(d)
        self.tls = tls
        self.port = helpers.free_port()
        self.mgmt = helpers.free_port()
        self.http01 = helpers.free_port()
        self.tlsalpn = helpers.free_port()
        self.dns = helpers.free_port()
        self.chall_mgmt = helpers.free_port()
        self.procs = []
        cfg = {"pebble": {
            "listenAddress": "127.0.0.1:%d" % self.port,
            "managementListenAddress": "127.0.0.1:%d" % self.mgmt,
            "certificate": tls.cert, "privateKey": tls.key,
            "httpPort": self.http01, "tlsPort": self.tlsalpn,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": bool(eab_keys),
        }}
        if eab_keys:
            cfg["pebble"]["externalAccountMACKeys"] = eab_keys
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
        self._spawn("challtestsrv", [
            CHALLTESTSRV, "-management", "127.0.0.1:%d" % self.chall_mgmt,
            "-dns01", "127.0.0.1:%d" % self.dns, "-http01", "127.0.0.1:%d" % self.http01,
            "-https01", "", "-tlsalpn01", "127.0.0.1:%d" % self.tlsalpn,
            "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
        helpers.wait_for("challtestsrv's management port", lambda: self._accepts(self.chall_mgmt))
        self._spawn("pebble", [PEBBLE, "-config", self.config,
                               "-dnsserver", "127.0.0.1:%d" % self.dns], env=self.env)
        helpers.wait_for("pebble's directory", self._dir_answers, timeout=30)
        return self

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

    def root_pem(self):
        """Pebble's current root, from its management port (HTTPS with the
        same test certificate)."""
        ctx = ssl.create_default_context(cafile=self.tls.ca)
        with urllib.request.urlopen("https://127.0.0.1:%d/roots/0" % self.mgmt, context=ctx,
                                    timeout=10) as r:
            return r.read().decode()

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait(timeout=10)
        self.procs = []


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return TLSFiles(str(tmp_path_factory.mktemp("tls")), "pebble")


@pytest.fixture(scope="module")
def pebble(tmp_path_factory, tls):
    p = Pebble(tmp_path_factory.mktemp("pebble"), tls).start()
    yield p
    p.stop()


def ec_key(path):
    helpers.openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-out", path)
    return path


@pytest.fixture
def account_key(tmp_path):
    return ec_key(str(tmp_path / "account.pem"))


def base(pb, key, ca=None):
    return ["--dir", pb.dir_url, "--ca-file", ca or pb.tls.ca, "--key", key]


def test_directory_and_account_idempotent(pebble, account_key):
    _, d, _ = driver("directory", *base(pebble, account_key))
    assert d["newOrder"].startswith("https://127.0.0.1:%d/" % pebble.port)
    _, first, _ = driver("account", "--agree-tos", "--contact", "mailto:ops@example.test",
                         *base(pebble, account_key))
    assert first["status"] == "valid" and first["created"] is True
    _, again, _ = driver("account", "--agree-tos", "--contact", "mailto:ops@example.test",
                         *base(pebble, account_key))
    assert again["url"] == first["url"] and again["created"] is False
    _, found, _ = driver("account", "--find", *base(pebble, account_key))
    assert found["url"] == first["url"]


def test_account_unknown_key_not_found(pebble, tmp_path):
    rc, doc, _ = driver("account", "--find", *base(pebble, ec_key(str(tmp_path / "k.pem"))),
                        check=False)
    assert rc == 1
    assert doc["error"]["code"] == "not-found"
    assert doc["error"]["problem_type"].endswith(":accountDoesNotExist")


def test_account_refused_before_sending(pebble, account_key):
    rc, doc, _ = driver("account", "--contact", "ops@example.test", "--agree-tos",
                        *base(pebble, account_key), check=False)
    assert rc == 1 and "mailto:" in doc["error"]["message"]
    rc, doc, _ = driver("account", *base(pebble, account_key), check=False)
    assert rc == 1 and "agree_tos" in doc["error"]["message"]
    # neither created the account
    rc, doc, _ = driver("account", "--find", *base(pebble, account_key), check=False)
    assert rc == 1 and doc["error"]["code"] == "not-found"


def issue(pb, key, tmp, names, challenge, publish):
    """order -> publish -> respond -> finish, each step a new process resuming
    from the state file; returns the PEM chain's path."""
    state = os.path.join(tmp, "order.json")
    driver("account", "--agree-tos", *base(pb, key))
    args = ["order", "--state", state] + [x for n in names for x in ("--domain", n)]
    _, order, _ = driver(*args, *base(pb, key))
    assert order["next"] == "respond", order
    chals = [c for c in order["challenges"] if c["type"] == challenge]
    assert sorted(c["identifier"] for c in chals) == sorted(n.lstrip("*.") for n in names)
    for c in chals:
        publish(c)
    _, resp, _ = driver("respond", "--state", state, "--challenge", challenge,
                        *base(pb, key))
    assert resp["next"] == "finalize", resp
    cert_key = ec_key(os.path.join(tmp, "cert-key.pem"))
    out = os.path.join(tmp, "chain.pem")
    _, fin, _ = driver("finish", "--state", state, "--cert-key", cert_key, "--country", "GB",
                       "--out", out, *base(pb, key))
    assert fin["next"] == "download" and fin["status"] == "valid"
    return out, cert_key, state


def check_chain(pb, tmp, chain, cert_key, names):
    """The leaf verifies against pebble's root through the downloaded
    intermediate, covers every name, and carries cert_key's public key."""
    root = os.path.join(tmp, "root.pem")
    helpers.write(root, pb.root_pem())
    blocks = helpers.pem_blocks(helpers.read(chain), "CERTIFICATE")
    assert len(blocks) >= 2
    leaf = os.path.join(tmp, "leaf.pem")
    inter = os.path.join(tmp, "inter.pem")
    text = helpers.read(chain).decode()
    parts = ["-----BEGIN CERTIFICATE-----" + b for b in
             text.split("-----BEGIN CERTIFICATE-----")[1:]]
    helpers.write(leaf, parts[0])
    helpers.write(inter, "".join(parts[1:]))
    v = helpers.run(["openssl", "verify", "-CAfile", root, "-untrusted", inter, leaf])
    assert b": OK" in v.stdout
    for n in names:
        helpers.run(["openssl", "x509", "-in", leaf, "-noout", "-checkhost", n])
        assert b"does match" in helpers.run(["openssl", "x509", "-in", leaf, "-noout",
                                            "-checkhost", n]).stdout
    pub_leaf = helpers.run(["openssl", "x509", "-in", leaf, "-noout", "-pubkey"]).stdout
    pub_key = helpers.run(["openssl", "pkey", "-in", cert_key, "-pubout"]).stdout
    assert pub_leaf == pub_key


def test_issue_http01(pebble, account_key, tmp_path):
    names = ["www.example.test", "example.test"]
    chain, cert_key, state = issue(
        pebble, account_key, str(tmp_path), names, "http-01",
        lambda c: pebble.challtest("add-http01", {"token": c["token"],
                                                  "content": c["key_authorization"]}))
    check_chain(pebble, str(tmp_path), chain, cert_key, names)
    saved = json.loads(helpers.read(state))
    assert saved["status"] == "valid" and saved["finalized"] is True
    assert all(ch["responded"] for a in saved["authorizations"] for ch in a["challenges"]
               if ch["type"] == "http-01")


def test_issue_dns01_wildcard(pebble, account_key, tmp_path):
    names = ["*.wild.example.test", "wild.example.test"]

    def publish(c):
        pebble.challtest("set-txt", {"host": "_acme-challenge.%s." % c["identifier"],
                                     "value": c["dns01"]})
    chain, cert_key, _ = issue(pebble, account_key, str(tmp_path), names, "dns-01", publish)
    check_chain(pebble, str(tmp_path), chain, cert_key, ["a.wild.example.test",
                                                         "wild.example.test"])
