"""The http-01 responder (acme/http01.c) and its pre-validation check
(acme/http01_check.c), run through acme_driver: serve-http01 answers from a
folder of TOKEN files (the lookup the agent will back with its store) and
prints every lookup it is asked, so a test sees which requests reached it.
Requests are made with Python's http.client and raw sockets (paths curl
would normalise); pebble validates against the responder with names that
pebble-challtestsrv's DNS resolves to 127.0.0.1.
"""

import http.client
import json
import os
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import helpers
from acme_env import Pebble, TLSFiles, stop_proc
from test_acme_client import driver, driver_bin, issue_and_check

TOKEN = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
KEYAUTH = TOKEN + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"


class Responder:
    """acme_driver serve-http01 on 127.0.0.1, stopped by PID."""

    def __init__(self, d, listen="127.0.0.1:0"):
        self.tokens = os.path.join(str(d), "tokens")
        os.makedirs(self.tokens, exist_ok=True)
        self.out = os.path.join(str(d), "responder.out")
        with open(self.out, "wb") as f:
            self.proc = subprocess.Popen([driver_bin(), "serve-http01", "--listen", listen,
                                          "--tokens", self.tokens], stdout=f,
                                         stderr=subprocess.STDOUT)
        helpers.wait_for("the responder's port", lambda: self._lines() or
                         self.proc.poll() is not None)
        first = self._lines()[0]
        assert "port" in first, first
        self.port = first["port"]

    def _lines(self):
        return [json.loads(x) for x in helpers.read(self.out).decode().splitlines()
                if x.startswith("{")]

    def lookups(self):
        return [x["lookup"] for x in self._lines() if "lookup" in x]

    def add(self, token, keyauth):
        helpers.write(os.path.join(self.tokens, token), keyauth)

    def request(self, path, method="GET", host="www.example.test", headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            c.putheader("Host", host)
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, dict(r.getheaders()), body

    def stop(self):
        return stop_proc(self.proc)


@pytest.fixture
def responder(tmp_path):
    r = Responder(tmp_path)
    r.add(TOKEN, KEYAUTH)
    yield r
    # a clean exit on SIGTERM, so the sanitizer build's leak check has run
    assert r.stop() == 0, helpers.read(r.out).decode()


def test_serves_the_token(responder):
    status, headers, body = responder.request("/.well-known/acme-challenge/" + TOKEN)
    assert (status, body) == (200, KEYAUTH.encode())
    assert headers["Content-Type"] == "text/plain"
    status, _, body = responder.request("/.well-known/acme-challenge/" + TOKEN, method="HEAD")
    assert status == 200 and body == b""
    assert responder.lookups() == [TOKEN, TOKEN]


def test_unknown_token_is_404_after_a_lookup(responder):
    status, _, _ = responder.request("/.well-known/acme-challenge/" + "x" * 43)
    assert status == 404
    assert responder.lookups() == ["x" * 43]


@pytest.mark.parametrize("path,status", [
    ("/.well-known/acme-challenge/../../etc/passwd", 404),
    ("/.well-known/acme-challenge/..%2f..%2fetc%2fpasswd", 404),
    ("/.well-known/acme-challenge/%2e%2e", 404),
    ("/.well-known/acme-challenge/a.b", 404),
    ("/.well-known/acme-challenge/", 404),
    ("/.well-known/acme-challenge/" + TOKEN + "/x", 404),
    ("/.well-known/acme-challenge/" + "A" * 128, 400),
    ("/.well-known/acme-challenge/" + "A" * 5000, 400),
])
def test_bad_tokens_never_reach_the_lookup(responder, path, status):
    got, _, _ = responder.request(path)
    assert got == status
    assert responder.lookups() == []
    # the longest token that is allowed is looked up
    got, _, _ = responder.request("/.well-known/acme-challenge/" + "A" * 127)
    assert got == 404 and responder.lookups() == ["A" * 127]


def test_other_paths_go_to_https_on_the_same_host(responder):
    status, headers, _ = responder.request("/login?next=/admin", host="www.example.test:80")
    assert status == 301
    assert headers["Location"] == "https://www.example.test/login?next=/admin"
    status, headers, _ = responder.request("/", host="support.example.test")
    assert (status, headers["Location"]) == (301, "https://support.example.test/")
    status, headers, _ = responder.request("/.well-known/other", host="[::1]:8080")
    assert (status, headers["Location"]) == (301, "https://[::1]/.well-known/other")
    # no usable Host: nowhere to send it
    status, _, _ = responder.request("/x", host=None)
    assert status == 400
    status, _, _ = responder.request("/x", host="evil.test/@other")
    assert status == 400
    assert responder.lookups() == []


def raw_exchange(port, data, timeout=10):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def test_huge_header_and_other_methods_are_refused(responder):
    big = b"GET /.well-known/acme-challenge/" + TOKEN.encode() + \
        b" HTTP/1.1\r\nHost: a.example.test\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n"
    try:
        out = raw_exchange(responder.port, big)
        assert out.startswith(b"HTTP/1.1 4") or out == b""
    except ConnectionResetError:
        pass  # the server closed on it mid-send: refused too
    for method in ("POST", "PUT", "DELETE"):
        status, _, _ = responder.request("/.well-known/acme-challenge/" + TOKEN, method=method)
        assert status in (405, 413, 501)  # evhttp: 501 for a method not allowed
    assert responder.lookups() == []
    # and it still serves
    status, _, body = responder.request("/.well-known/acme-challenge/" + TOKEN)
    assert (status, body) == (200, KEYAUTH.encode())


def test_idle_connection_is_closed(responder):
    with socket.create_connection(("127.0.0.1", responder.port), timeout=60) as s:
        s.sendall(b"GET / HTTP/1.1\r\n")  # and never the end of the headers
        # the responder's bound is 5 s; a timeout here (60 s) fails the test
        data = s.recv(100)
    assert data == b"" or data.startswith(b"HTTP/1.1 4"), data


def test_port_in_use_is_named(responder, tmp_path):
    p = helpers.run([driver_bin(), "serve-http01", "--listen", "127.0.0.1:%d" % responder.port,
                     "--tokens", responder.tokens], check=False, timeout=30)
    assert p.returncode == 1
    assert b"http_listen 127.0.0.1:%d: cannot listen there" % responder.port in p.stdout


# ---- the pre-validation check ---------------------------------------------


def check(endpoints, token=TOKEN, value=KEYAUTH, wait_ms=None, name="www.example.test"):
    args = ["http01-check", "--name", name, "--token", token, "--value", value]
    for e in endpoints:
        args += ["--endpoint", e]
    if wait_ms is not None:
        args += ["--timeout-ms", str(wait_ms)]
    return driver(*args, check=False)


def test_check_ready_everywhere(tmp_path, responder):
    other = Responder(tmp_path / "second", listen="127.0.0.2:0")
    try:
        other.add(TOKEN, KEYAUTH)
        rc, doc, _ = check(["127.0.0.1:%d" % responder.port, "127.0.0.2:%d" % other.port])
        assert (rc, doc) == (0, {"ready": True})
    finally:
        assert other.stop() == 0


def test_check_names_the_endpoint_that_does_not_answer(responder):
    silent = "127.0.0.3:%d" % helpers.free_port(host="127.0.0.3")
    rc, doc, _ = check(["127.0.0.1:%d" % responder.port, silent], wait_ms=1500)
    assert rc == 1
    msg = doc["error"]["message"]
    assert "http-01 for www.example.test: %s does not answer yet" % silent in msg
    assert "1 of 2 endpoints ready" in msg and doc["error"]["class"] == "transient"


def test_check_refuses_a_wrong_answer(responder):
    rc, doc, _ = check(["127.0.0.1:%d" % responder.port], value=TOKEN + ".other", wait_ms=1000)
    assert rc == 1 and "HTTP 200 with another key authorization" in doc["error"]["message"]
    rc, doc, _ = check(["127.0.0.1:%d" % responder.port], token="Z" * 43, wait_ms=1000)
    assert rc == 1 and "(HTTP 404)" in doc["error"]["message"]


def test_check_waits_for_a_token_that_arrives(responder):
    late = "L" * 43
    timer = threading.Timer(1.0, responder.add, (late, late + ".thumb"))
    timer.start()
    try:
        rc, doc, _ = check(["127.0.0.1:%d" % responder.port], token=late, value=late + ".thumb",
                           wait_ms=30000)
    finally:
        timer.cancel()
    assert (rc, doc) == (0, {"ready": True})
    # it polled: the token was asked for before it existed, then found
    assert responder.lookups().count(late) >= 2


def test_check_sends_the_name_as_host():
    hosts = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hosts.append((self.headers["Host"], self.path))
            body = KEYAUTH.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        rc, doc, _ = check(["127.0.0.1:%d" % srv.server_address[1]], name="site.example.test")
    finally:
        srv.shutdown()
        srv.server_close()
    assert (rc, doc) == (0, {"ready": True})
    assert hosts == [("site.example.test", "/.well-known/acme-challenge/" + TOKEN)]


# ---- end to end: pebble validates against the responder ----------------------


class PebbleOnResponder(Pebble):
    """Pebble's http-01 validation goes to the responder's port; names resolve
    to 127.0.0.1 through challtestsrv's DNS.  Publishing a challenge is
    writing its token file, then the pre-validation check."""

    def __init__(self, d, tls, responder):
        super().__init__(d, tls, httpport=responder.port)
        self.responder = responder

    def publish(self, challenge):
        assert challenge["type"] == "http-01"
        self.responder.add(challenge["token"], challenge["key_authorization"])
        rc, doc, _ = check(["127.0.0.1:%d" % self.responder.port], token=challenge["token"],
                           value=challenge["key_authorization"], name=challenge["identifier"])
        assert rc == 0, doc


def test_pebble_validates_against_the_responder(tmp_path_factory, tmp_path, responder):
    tls = TLSFiles(str(tmp_path_factory.mktemp("tls-http")), "pebble")
    pb = PebbleOnResponder(tmp_path_factory.mktemp("pebble-http"), tls, responder)
    names = ["www.example.test", "site.example.test"]
    state = issue_and_check(pb, str(tmp_path), names, "http-01", names)
    tokens = [ch["token"] for a in json.loads(helpers.read(state))["authorizations"]
              for ch in a["challenges"] if ch["type"] == "http-01"]
    # pebble asked the responder for each token (the check asked once too)
    assert all(responder.lookups().count(t) >= 2 for t in tokens)
