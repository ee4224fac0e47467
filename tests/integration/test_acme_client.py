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

import base64
import calendar
import hashlib
import json
import os
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import helpers
from acme_env import Pebble, TLSFiles


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


def issue(pb, key, tmp, names, challenge):
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
        pb.publish(c)
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
        assert b"does match" in helpers.run(["openssl", "x509", "-in", leaf, "-noout",
                                            "-checkhost", n]).stdout
    pub_leaf = helpers.run(["openssl", "x509", "-in", leaf, "-noout", "-pubkey"]).stdout
    pub_key = helpers.run(["openssl", "pkey", "-in", cert_key, "-pubout"]).stdout
    assert pub_leaf == pub_key


def issue_and_check(pb, tmp, names, challenge, covered):
    """Starts pb, issues names with a new account, checks the chain covers
    covered, stops pb; returns the order's state file."""
    pb.start()
    try:
        key = ec_key(os.path.join(tmp, "account.pem"))
        chain, cert_key, state = issue(pb, key, tmp, names, challenge)
        check_chain(pb, tmp, chain, cert_key, covered)
    finally:
        pb.stop()
    return state


def test_issue_http01(pebble, account_key, tmp_path):
    names = ["www.example.test", "example.test"]
    chain, cert_key, state = issue(pebble, account_key, str(tmp_path), names, "http-01")
    check_chain(pebble, str(tmp_path), chain, cert_key, names)
    saved = json.loads(helpers.read(state))
    assert saved["status"] == "valid" and saved["finalized"] is True
    assert all(ch["responded"] for a in saved["authorizations"] for ch in a["challenges"]
               if ch["type"] == "http-01")


def test_issue_dns01_wildcard(pebble, account_key, tmp_path):
    names = ["*.wild.example.test", "wild.example.test"]
    chain, cert_key, _ = issue(pebble, account_key, str(tmp_path), names, "dns-01")
    check_chain(pebble, str(tmp_path), chain, cert_key, ["a.wild.example.test",
                                                         "wild.example.test"])


def test_issue_tlsalpn01(pebble, account_key, tmp_path):
    names = ["alpn.example.test"]
    chain, cert_key, _ = issue(pebble, account_key, str(tmp_path), names, "tls-alpn-01")
    check_chain(pebble, str(tmp_path), chain, cert_key, names)


def test_issue_when_pebble_rejects_half_the_nonces(tmp_path_factory, tls, tmp_path):
    pb = Pebble(tmp_path_factory.mktemp("pebble-nonce"), tls,
                env={"PEBBLE_WFE_NONCEREJECT": "50"}).start()
    try:
        key = ec_key(str(tmp_path / "account.pem"))
        names = ["nonce.example.test"]
        chain, cert_key, _ = issue(pb, key, str(tmp_path), names, "http-01")
        check_chain(pb, str(tmp_path), chain, cert_key, names)
    finally:
        pb.stop()
    log = helpers.read(os.path.join(pb.d, "pebble.log")).decode()
    assert "Configured to reject 50% of good nonces" in log


def test_validation_failure_is_reported_and_resumable(pebble, account_key, tmp_path):
    """Nothing published: the CA's validation fails; the error is the CA's,
    classed for the operator, and the stored state says the order failed."""
    state = str(tmp_path / "order.json")
    driver("account", "--agree-tos", *base(pebble, account_key))
    driver("order", "--state", state, "--domain", "unpublished.example.test",
           *base(pebble, account_key))
    rc, doc, _ = driver("respond", "--state", state, "--challenge", "http-01",
                        *base(pebble, account_key), check=False)
    assert rc == 1
    err = doc["error"]
    assert err["class"] == "operator", err
    assert "unpublished.example.test" in err["message"]
    assert err["problem_type"].startswith("urn:ietf:params:acme:error:")
    saved = json.loads(helpers.read(state))
    assert saved["authorizations"][0]["status"] == "invalid"
    rc, doc, _ = driver("finish", "--state", state, "--cert-key", account_key, "--country",
                        "GB", "--out", str(tmp_path / "x.pem"), *base(pebble, account_key),
                        check=False)
    assert rc == 1 and "invalid" in doc["error"]["message"]
    assert not os.path.exists(str(tmp_path / "x.pem"))


def test_directory_that_does_not_answer(tls, account_key):
    url = "https://127.0.0.1:%d/dir" % helpers.free_port()
    rc, doc, _ = driver("directory", "--dir", url, "--ca-file", tls.ca, "--key", account_key,
                        check=False)
    assert rc == 1
    assert "ACME directory" in doc["error"]["message"] and url in doc["error"]["message"]
    assert doc["error"]["class"] == "transient"


def test_directory_not_https(account_key):
    rc, doc, _ = driver("directory", "--dir", "http://127.0.0.1:1/dir", "--key", account_key,
                        check=False)
    assert rc == 1 and "https://" in doc["error"]["message"]
    assert doc["error"]["code"] == "usage"


def test_https_certificate_not_trusted(pebble, tmp_path_factory, account_key):
    other = TLSFiles(str(tmp_path_factory.mktemp("other-ca")), "other")
    for ca in ([other.ca], []):   # a ca_file of another CA; the system's store
        args = ["directory", "--dir", pebble.dir_url, "--key", account_key]
        if ca:
            args += ["--ca-file"] + ca
        rc, doc, _ = driver(*args, check=False)
        assert rc == 1
        msg = doc["error"]["message"]
        assert "not trusted" in msg and "ca_file" in msg, msg
        assert doc["error"]["class"] == "operator"


# ---- a stub CA for what pebble never does -------------------------------------

class Stub:
    """An HTTPS server on 127.0.0.1 (certificate from the test CA) answering
    each path from self.routes: path -> (status, headers, body bytes), or a
    function of the request's body returning that."""

    def __init__(self, tls):
        self.routes = {}
        self.requests = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                stub.requests.append((self.command, self.path, body))
                route = stub.routes.get(
                    self.path, (404, {"Content-Type": "text/plain"}, b"no such path"))
                status, headers, data = route(body) if callable(route) else route
                self.send_response(status)
                headers = dict(headers)
                chunked = headers.pop("X-No-Length", None)
                for k, v in headers.items():
                    self.send_header(k, v)
                if chunked:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_HEAD = _answer

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls.cert, tls.key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = "https://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.routes["/dir"] = (200, {"Content-Type": "application/json"}, json.dumps({
            "newNonce": self.url + "/nonce", "newAccount": self.url + "/acct",
            "newOrder": self.url + "/order", "renewalInfo": self.url + "/ari/",
        }).encode())
        self.routes["/nonce"] = (200, {"Replay-Nonce": "first", "Cache-Control": "no-store"},
                                 b"")

    def known_account(self):
        """newAccount answers with an existing, valid account."""
        self.routes["/acct"] = (200, {"Content-Type": "application/json", "Replay-Nonce": "a",
                                      "Location": self.url + "/acct/1"}, b'{"status": "valid"}')

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub(tls):
    s = Stub(tls)
    yield s
    s.stop()


def stub_args(s, tls, key):
    return ["--dir", s.url + "/dir", "--ca-file", tls.ca, "--key", key]


def test_stub_not_a_directory(stub, tls, account_key):
    for body in (b"<html>hello</html>", json.dumps({"hello": "world"}).encode(), b"[1, 2]"):
        stub.routes["/dir"] = (200, {"Content-Type": "application/json"}, body)
        rc, doc, _ = driver("directory", *stub_args(stub, tls, account_key), check=False)
        assert rc == 1
        assert "is not an ACME directory" in doc["error"]["message"], doc


def test_stub_malformed_json_answer(stub, tls, account_key):
    stub.routes["/acct"] = (201, {"Content-Type": "application/json",
                                  "Location": stub.url + "/acct/1", "Replay-Nonce": "x"},
                            b'{"status": "valid", ')
    rc, doc, _ = driver("account", "--agree-tos", *stub_args(stub, tls, account_key),
                        check=False)
    assert rc == 1
    assert "not a JSON object" in doc["error"]["message"]
    assert doc["error"]["class"] == "fatal"


@pytest.mark.parametrize("with_length", [True, False])
def test_stub_body_over_1mib(stub, tls, account_key, with_length):
    headers = {"Content-Type": "application/json"}
    if not with_length:
        headers["X-No-Length"] = "1"
    stub.routes["/dir"] = (200, headers, b" " * (1024 * 1024 + 1) + b"{}")
    rc, doc, _ = driver("directory", *stub_args(stub, tls, account_key), check=False)
    assert rc == 1
    assert "larger than 1048576 bytes" in doc["error"]["message"], doc


def test_stub_jws_error(stub, tls, account_key):
    stub.routes["/acct"] = (400, {"Content-Type": "application/problem+json",
                                  "Replay-Nonce": "again"}, json.dumps({
        "type": "urn:ietf:params:acme:error:malformed",
        "detail": "JWS verification error", "status": 400}).encode())
    rc, doc, _ = driver("account", "--agree-tos", *stub_args(stub, tls, account_key),
                        check=False)
    assert rc == 1
    err = doc["error"]
    assert "malformed" in err["message"] and "JWS verification error" in err["message"]
    assert err["class"] == "fatal" and err["problem_type"].endswith(":malformed")
    # the request was a real flattened JWS with the key (newAccount)
    method, path, body = [r for r in stub.requests if r[1] == "/acct"][0]
    jws = json.loads(body)
    assert set(jws) == {"protected", "payload", "signature"}


def test_stub_bad_nonce_retries_are_bounded(stub, tls, account_key):
    stub.routes["/acct"] = (400, {"Content-Type": "application/problem+json",
                                  "Replay-Nonce": "fresh"}, json.dumps({
        "type": "urn:ietf:params:acme:error:badNonce", "detail": "JWS has an invalid anti-replay nonce"}).encode())
    rc, doc, _ = driver("account", "--agree-tos", *stub_args(stub, tls, account_key),
                        check=False)
    assert rc == 1
    assert doc["error"]["class"] == "transient" and "badNonce" in doc["error"]["message"]
    posts = [r for r in stub.requests if r[1] == "/acct"]
    assert len(posts) == 16   # the first try and 15 retries
    # each retry used the nonce the error carried
    nonces = [json.loads(base64.urlsafe_b64decode(json.loads(b)["protected"] + "=="))["nonce"]
              for _, _, b in posts]
    assert nonces[0] == "first" and set(nonces[1:]) == {"fresh"}


def test_stub_rate_limited(stub, tls, account_key):
    stub.routes["/acct"] = (429, {"Content-Type": "application/problem+json",
                                  "Replay-Nonce": "x", "Retry-After": "3600"}, json.dumps({
        "type": "urn:ietf:params:acme:error:rateLimited",
        "detail": "too many new accounts from this address",
        "instance": "https://ca.example.test/docs/rate-limits"}).encode())
    rc, doc, _ = driver("account", "--agree-tos", *stub_args(stub, tls, account_key),
                        check=False)
    assert rc == 1
    err = doc["error"]
    assert err["class"] == "operator" and err["retry_after"] == 3600
    assert "https://ca.example.test/docs/rate-limits" in err["message"]
    assert "too many new accounts" in err["message"]


# ---- External Account Binding (pebble requiring it) -----------------------------

EAB_KID = "kid-1"
EAB_HMAC = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"


@pytest.fixture(scope="module")
def pebble_eab(tmp_path_factory, tls):
    p = Pebble(tmp_path_factory.mktemp("pebble-eab"), tls,
               eab_keys={EAB_KID: EAB_HMAC}).start()
    yield p
    p.stop()


def test_eab(pebble_eab, account_key, tmp_path):
    pb = pebble_eab
    _, d, _ = driver("directory", *base(pb, account_key))
    assert d["eab_required"] is True
    rc, doc, _ = driver("account", "--agree-tos", *base(pb, account_key), check=False)
    assert rc == 1 and "External Account Binding" in doc["error"]["message"]

    bad = str(tmp_path / "bad.hmac")
    helpers.write(bad, "zWNDZM6eQGHW+pSRTPal/5eIUYFTu7EajVIog==\n")
    rc, doc, err = driver("account", "--agree-tos", "--eab-kid", EAB_KID, "--eab-hmac-file",
                          bad, *base(pb, account_key), check=False)
    assert rc == 1 and "not base64url" in doc["error"]["message"]
    assert "zWNDZM6eQGHW" not in doc["error"]["message"] + err
    rc, doc, _ = driver("account", "--find", *base(pb, account_key), check=False)
    assert rc == 1 and doc["error"]["code"] == "not-found"   # nothing was sent

    wrong = str(tmp_path / "wrong.hmac")
    helpers.write(wrong, "b10lLJs8l1GPIzsLP0s6pMt8O0XVGnfTaCeROxQM0BIt2XrJMDHJZBM5NuQmQJQH\n")
    rc, doc, _ = driver("account", "--agree-tos", "--eab-kid", EAB_KID, "--eab-hmac-file",
                        wrong, *base(pb, account_key), check=False)
    assert rc == 1 and doc["error"]["problem_type"].startswith("urn:ietf:params:acme:error:")

    good = str(tmp_path / "good.hmac")
    helpers.write(good, EAB_HMAC + "\n")
    _, acct, _ = driver("account", "--agree-tos", "--eab-kid", EAB_KID, "--eab-hmac-file",
                        good, *base(pb, account_key))
    assert acct["status"] == "valid" and acct["created"] is True


# ---- ARI (RFC 9773): Debian's pebble predates it; a stub renewalInfo -------------

RFC9773_AKI = "69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4"
RFC9773_CERTID = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


@pytest.fixture(scope="module")
def rfc9773_cert(tmp_path_factory):
    """A certificate with the AKI and serial of RFC 9773's example, and its
    issuer, made without an AKI."""
    d = str(tmp_path_factory.mktemp("ari"))
    ca_key, ca, key, csr, ext, cert = (os.path.join(d, n) for n in (
        "ca.key", "ca.pem", "leaf.key", "leaf.csr", "leaf.ext", "leaf.pem"))
    helpers.openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=ARI CA",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "subjectKeyIdentifier=" + RFC9773_AKI,
                    "-addext", "authorityKeyIdentifier=none")
    helpers.openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", csr, "-subj", "/CN=ari.example.test")
    helpers.write(ext, "authorityKeyIdentifier=keyid:always\n"
                       "subjectAltName=DNS:ari.example.test\n")
    helpers.openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-set_serial",
                    "0x0087654321", "-days", "2", "-extfile", ext, "-out", cert)
    return cert, ca


def test_ari_certid_is_rfc9773s_example(rfc9773_cert):
    _, doc, _ = driver("certid", "--cert", rfc9773_cert[0])
    assert doc["certid"] == RFC9773_CERTID


def test_ari_certid_needs_an_aki(rfc9773_cert):
    rc, doc, _ = driver("certid", "--cert", rfc9773_cert[1], check=False)  # the CA has none
    assert rc == 1 and "Authority Key Identifier" in doc["error"]["message"]


def utc(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


def test_ari_renewal_info(stub, tls, account_key, rfc9773_cert):
    path = "/ari/" + RFC9773_CERTID
    stub.routes[path] = (200, {"Content-Type": "application/json", "Retry-After": "21600"},
                         json.dumps({"suggestedWindow": {
                             "start": "2027-01-02T04:00:00Z",
                             "end": "2027-01-03T04:00:00.25+01:00"},
                             "explanationURL": "https://ca.example.test/why"}).encode())
    _, doc, _ = driver("ari", "--cert", rfc9773_cert[0], *stub_args(stub, tls, account_key))
    assert doc["start"] == utc("2027-01-02T04:00:00Z")
    assert doc["end"] == utc("2027-01-03T03:00:00Z")
    assert doc["retry_after"] == 21600 and doc["explanation"] == "https://ca.example.test/why"
    assert ("GET", path) in [(m, p) for m, p, _ in stub.requests]

    stub.routes[path] = (200, {"Content-Type": "application/json"}, json.dumps(
        {"suggestedWindow": {"start": "2027-01-03T04:00:00Z",
                             "end": "2027-01-02T04:00:00Z"}}).encode())
    rc, doc, _ = driver("ari", "--cert", rfc9773_cert[0], *stub_args(stub, tls, account_key),
                        check=False)
    assert rc == 1 and "suggestedWindow" in doc["error"]["message"]



# ---- polling and the certificate, with a stub CA --------------------------------

def spki_sha256_hex(key):
    der = helpers.run(["openssl", "pkey", "-in", key, "-pubout", "-outform", "DER"]).stdout
    return hashlib.sha256(der).hexdigest()


def processing_state(stub, path, csr_key):
    """An order finalized with csr_key's CSR, at the CA and still processing."""
    state = {"version": 1, "url": stub.url + "/order/1", "status": "processing", "expires": 0,
             "identifiers": ["localhost"], "profile": "", "replaces": "",
             "finalize": stub.url + "/order/1/finalize", "certificate": "",
             "csr_spki": spki_sha256_hex(csr_key), "finalized": True, "error": "",
             "authorizations": []}
    helpers.write(path, json.dumps(state))
    return path


def stub_order(stub, answers):
    """/acct finds the account; /order/1 answers from answers in turn, the
    last one forever; the time of each poll goes into stub.polls."""
    stub.known_account()
    stub.polls = []

    def order(_body):
        stub.polls.append(time.monotonic())
        status, retry_after = answers[min(len(stub.polls), len(answers)) - 1]
        body = {"status": status, "finalize": stub.url + "/order/1/finalize",
                "authorizations": []}
        if status == "valid":
            body["certificate"] = stub.url + "/cert/1"
        headers = {"Content-Type": "application/json", "Replay-Nonce": "o%d" % len(stub.polls)}
        if retry_after:
            headers["Retry-After"] = str(retry_after)
        return 200, headers, json.dumps(body).encode()
    stub.routes["/order/1"] = order


def test_stub_polling_honours_retry_after(stub, tls, account_key, tmp_path):
    state = processing_state(stub, str(tmp_path / "order.json"), tls.key)
    stub_order(stub, [("processing", None), ("processing", 3), ("processing", 3), ("valid", None)])
    chain = helpers.read(tls.cert) + helpers.read(tls.ca)
    stub.routes["/cert/1"] = (200, {"Content-Type": "application/pem-certificate-chain",
                                    "Replay-Nonce": "c"}, chain)
    out = str(tmp_path / "chain.pem")
    _, doc, _ = driver("finish", "--state", state, "--cert-key", tls.key, "--country", "GB",
                       "--out", out, "--wait", "60", *stub_args(stub, tls, account_key))
    assert doc["status"] == "valid"
    assert helpers.read(out) == chain
    # each poll after a Retry-After of 3 s came at least 3 s later
    assert len(stub.polls) == 4
    assert stub.polls[2] - stub.polls[1] >= 3 and stub.polls[3] - stub.polls[2] >= 3
    accept = [r for r in stub.requests if r[1] == "/cert/1"]
    assert len(accept) == 1


def test_stub_wait_is_bounded(stub, tls, account_key, tmp_path):
    state = processing_state(stub, str(tmp_path / "order.json"), tls.key)
    stub_order(stub, [("processing", 100000)])
    started = time.monotonic()
    rc, doc, _ = driver("finish", "--state", state, "--cert-key", tls.key, "--country", "GB",
                        "--out", str(tmp_path / "chain.pem"), "--wait", "5",
                        *stub_args(stub, tls, account_key), check=False)
    assert rc == 1 and "deadline" in doc["error"]["message"]
    assert doc["error"]["class"] == "transient"
    assert time.monotonic() - started < 60   # it did not sleep what the CA asked
    assert json.loads(helpers.read(state))["status"] == "processing"   # resumable


def test_stub_certificate_refused(stub, tls, account_key, tmp_path, tmp_path_factory):
    other = TLSFiles(str(tmp_path_factory.mktemp("other-chain")), "other")
    cases = [
        # a certificate for another key than the CSR's: "renewed", but wrong
        (helpers.read(other.cert) + helpers.read(other.ca), "does not match the CSR"),
        # the chain out of order
        (helpers.read(tls.ca) + helpers.read(tls.cert), "not issued by the next one"),
        (b"<html>not a certificate</html>", "not a PEM certificate chain"),
        (helpers.read(tls.key), "not a PEM certificate chain"),
    ]
    for body, words in cases:
        state = processing_state(stub, str(tmp_path / "order.json"), tls.key)
        stub_order(stub, [("valid", None)])
        stub.routes["/cert/1"] = (200, {"Content-Type": "application/pem-certificate-chain",
                                        "Replay-Nonce": "c"}, body)
        out = str(tmp_path / "chain.pem")
        rc, doc, _ = driver("finish", "--state", state, "--cert-key", tls.key, "--country",
                            "GB", "--out", out, *stub_args(stub, tls, account_key), check=False)
        assert rc == 1 and words in doc["error"]["message"], (words, doc)
        assert not os.path.exists(out)


def jws_payload(body):
    return json.loads(base64.urlsafe_b64decode(json.loads(body)["payload"] + "==") or b"null")


def test_stub_new_order_profile_and_replaces(stub, tls, account_key, tmp_path):
    """Debian's pebble knows neither profiles nor ARI's replaces: a stub CA
    whose directory lists a profile receives both in newOrder."""
    u = stub.url
    directory = {"newNonce": u + "/nonce", "newAccount": u + "/acct", "newOrder": u + "/order",
                 "meta": {"profiles": {"shortlived": "6-day certificates"}}}
    stub.routes["/dir"] = (200, {"Content-Type": "application/json"},
                           json.dumps(directory).encode())
    stub.known_account()
    stub.routes["/order"] = (201, {"Content-Type": "application/json", "Replay-Nonce": "b",
                                   "Location": u + "/order/9"}, json.dumps({
        "status": "pending", "finalize": u + "/order/9/finalize",
        "authorizations": [u + "/authz/1"]}).encode())
    stub.routes["/authz/1"] = (200, {"Content-Type": "application/json", "Replay-Nonce": "c"},
                               json.dumps({
        "status": "pending", "identifier": {"type": "dns", "value": "p.example.test"},
        "challenges": [{"type": "http-01", "url": u + "/chal/1", "status": "pending",
                        "token": "tok1"},
                       {"type": "future-01", "url": u + "/chal/2", "status": "pending"}]
    }).encode())
    state = str(tmp_path / "order.json")
    _, doc, _ = driver("order", "--state", state, "--domain", "p.example.test", "--domain",
                       "192.0.2.7", "--profile", "shortlived", "--replaces", RFC9773_CERTID,
                       *stub_args(stub, tls, account_key))
    assert doc["next"] == "respond" and doc["replaces"] == RFC9773_CERTID
    # only the challenge types the client answers are kept
    assert [c["type"] for c in doc["challenges"]] == ["http-01"]
    _, _, body = [r for r in stub.requests if r[1] == "/order"][0]
    assert jws_payload(body) == {
        "identifiers": [{"type": "dns", "value": "p.example.test"},
                        {"type": "ip", "value": "192.0.2.7"}],
        "profile": "shortlived", "replaces": RFC9773_CERTID}
    saved = json.loads(helpers.read(state))
    assert saved["profile"] == "shortlived" and saved["replaces"] == RFC9773_CERTID

    rc, doc, _ = driver("order", "--state", state, "--domain", "p.example.test",
                        "--profile", "classic", *stub_args(stub, tls, account_key),
                        check=False)
    assert rc == 1 and "does not offer the profile" in doc["error"]["message"]
    assert len([r for r in stub.requests if r[1] == "/order"]) == 1   # nothing sent



def test_stub_new_order_rejected(stub, tls, account_key, tmp_path):
    stub.known_account()
    stub.routes["/order"] = (400, {"Content-Type": "application/problem+json",
                                   "Replay-Nonce": "b"}, json.dumps({
        "type": "urn:ietf:params:acme:error:rejectedIdentifier",
        "detail": "Error creating new order :: Cannot issue for \"localhost\"",
        "subproblems": [{"type": "urn:ietf:params:acme:error:rejectedIdentifier",
                         "detail": "not a public suffix",
                         "identifier": {"type": "dns", "value": "localhost"}}]}).encode())
    state = str(tmp_path / "order.json")
    rc, doc, _ = driver("order", "--state", state, "--domain", "localhost", "--domain",
                        "ok.example.test", *stub_args(stub, tls, account_key), check=False)
    assert rc == 1
    err = doc["error"]
    assert err["class"] == "operator" and err["problem_type"].endswith(":rejectedIdentifier")
    assert "localhost: not a public suffix" in err["message"]   # the subproblem, named
    assert not os.path.exists(state)



def test_stub_already_replaced_orders_again_without_replaces(stub, tls, account_key, tmp_path):
    u = stub.url
    stub.known_account()

    def new_order(body):
        if "replaces" in jws_payload(body):
            return 409, {"Content-Type": "application/problem+json", "Replay-Nonce": "r"}, \
                json.dumps({"type": "urn:ietf:params:acme:error:alreadyReplaced",
                            "detail": "already replaced by another order"}).encode()
        return 201, {"Content-Type": "application/json", "Replay-Nonce": "o",
                     "Location": u + "/order/3"}, json.dumps({
                         "status": "ready", "finalize": u + "/order/3/finalize",
                         "authorizations": []}).encode()
    stub.routes["/order"] = new_order
    state = str(tmp_path / "order.json")
    _, doc, _ = driver("order", "--state", state, "--domain", "r.example.test", "--replaces",
                       RFC9773_CERTID, *stub_args(stub, tls, account_key))
    assert doc["next"] == "finalize" and doc["replaces"] == ""
    sent = [jws_payload(b) for _, p, b in stub.requests if p == "/order"]
    assert [("replaces" in x) for x in sent] == [True, False]   # once with, once without
    assert json.loads(helpers.read(state))["replaces"] == ""


def test_ca_file_unreadable_or_not_pem(pebble, account_key, tmp_path):
    missing = str(tmp_path / "missing.pem")
    rc, doc, _ = driver("directory", "--dir", pebble.dir_url, "--ca-file", missing, "--key",
                        account_key, check=False)
    assert rc == 1 and doc["error"]["code"] == "usage"
    assert missing in doc["error"]["message"] and "cannot be read" in doc["error"]["message"]
    junk = str(tmp_path / "junk.pem")
    helpers.write(junk, "this is not a certificate\n")
    rc, doc, _ = driver("directory", "--dir", pebble.dir_url, "--ca-file", junk, "--key",
                        account_key, check=False)
    assert rc == 1 and junk in doc["error"]["message"], doc
    assert "no PEM certificate" in doc["error"]["message"]


def test_server_that_never_answers(tls, account_key):
    """A listener that accepts nothing: the request gives up at its timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = "https://127.0.0.1:%d/dir" % silent.getsockname()[1]
        started = time.monotonic()
        rc, doc, _ = driver("directory", "--dir", url, "--ca-file", tls.ca, "--key",
                            account_key, "--timeout-ms", "2000", check=False)
        elapsed = time.monotonic() - started
    assert rc == 1 and "timed out" in doc["error"]["message"].lower(), doc
    assert doc["error"]["class"] == "transient"
    assert elapsed < 60   # bounded: the 2 s timeout, with room for a slow machine


@pytest.mark.parametrize("token", ["../../etc/passwd", "a" * 200, "tok en", ""])
def test_stub_bad_challenge_token_refused(stub, tls, account_key, tmp_path, token):
    """A token ends up as a path every node serves: outside base64url, or too
    long for the state, it is refused and no state is written."""
    u = stub.url
    stub.known_account()
    stub.routes["/order"] = (201, {"Content-Type": "application/json", "Replay-Nonce": "b",
                                   "Location": u + "/order/5"}, json.dumps({
        "status": "pending", "finalize": u + "/order/5/finalize",
        "authorizations": [u + "/authz/5"]}).encode())
    stub.routes["/authz/5"] = (200, {"Content-Type": "application/json", "Replay-Nonce": "c"},
                               json.dumps({
        "status": "pending", "identifier": {"type": "dns", "value": "t.example.test"},
        "challenges": [{"type": "http-01", "url": u + "/chal/5", "status": "pending",
                        "token": token}]}).encode())
    state = str(tmp_path / "order.json")
    rc, doc, _ = driver("order", "--state", state, "--domain", "t.example.test",
                        *stub_args(stub, tls, account_key), check=False)
    assert rc == 1 and "token" in doc["error"]["message"], doc
    assert doc["error"]["code"] == "bad-input"
    assert not os.path.exists(state)
