"""The tls-alpn-01 challenge certificate (pki/tlsalpn.c) and the
pre-validation probe (acme/tlsalpn01_check.c), through acme_driver's
tlsalpn01-cert and tlsalpn01-check steps, against `openssl s_server`
serving the certificate with ALPN acme-tls/1; and pebble validating against
that server (names resolved to 127.0.0.1 by pebble-challtestsrv's DNS), so a
real ACME validator accepts the certificate.  The TLS endpoint's own
acme-tls/1 answer is wired in a later change.
"""

import os
import socket
import subprocess

import helpers
from acme_env import Pebble, TLSFiles, stop_proc
from test_acme_client import driver, issue_and_check

KEYAUTH = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"


class SServer:
    """openssl s_server on 127.0.0.1, stopped by PID."""

    def __init__(self, d, cert, key, alpn="acme-tls/1", port=None):
        self.port = port or helpers.free_port()
        self.log = os.path.join(str(d), "s_server-%d.log" % self.port)
        args = ["openssl", "s_server", "-accept", "127.0.0.1:%d" % self.port, "-cert", cert,
                "-key", key, "-quiet", "-naccept", "1000"]
        if alpn:
            args += ["-alpn", alpn]
        with open(self.log, "wb") as f:
            self.proc = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        helpers.wait_for("s_server", self._accepts)

    def _accepts(self):
        assert self.proc.poll() is None, helpers.read(self.log)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.port

    def stop(self):
        stop_proc(self.proc)


def challenge_cert(tmp_path, name, keyauth=KEYAUTH, tag="c"):
    cert, key = str(tmp_path / (tag + ".pem")), str(tmp_path / (tag + ".key"))
    _, doc, _ = driver("tlsalpn01-cert", "--name", name, "--value", keyauth, "--cert-key", key,
                       "--out", cert)
    assert doc == {"ok": True}
    return cert, key


def probe(endpoints, name="alpn.example.test", keyauth=KEYAUTH, wait_ms=None):
    args = ["tlsalpn01-check", "--name", name, "--value", keyauth]
    for e in endpoints:
        args += ["--endpoint", e]
    if wait_ms is not None:
        args += ["--timeout-ms", str(wait_ms)]
    return driver(*args, check=False)


def test_certificate_as_openssl_reads_it(tmp_path):
    cert, _ = challenge_cert(tmp_path, "alpn.example.test")
    text = helpers.run(["openssl", "x509", "-in", cert, "-noout", "-text"]).stdout.decode()
    assert "1.3.6.1.5.5.7.1.31: critical" in text
    assert "DNS:alpn.example.test" in text and text.count("DNS:") == 1
    rc, doc, _ = driver("tlsalpn01-cert", "--name", "*.example.test", "--value", KEYAUTH,
                        "--cert-key", str(tmp_path / "w.key"), "--out",
                        str(tmp_path / "w.pem"), check=False)
    assert rc == 1 and "is not a DNS name" in doc["error"]["message"]
    assert not os.path.exists(str(tmp_path / "w.pem"))


def test_probe_ready_and_not(tmp_path):
    cert, key = challenge_cert(tmp_path, "alpn.example.test")
    good = SServer(tmp_path, cert, key)
    plain_cert, plain_key = str(tmp_path / "plain.pem"), str(tmp_path / "plain.key")
    helpers.openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", plain_key, "-out", plain_cert, "-days", "1",
                    "-subj", "/CN=alpn.example.test",
                    "-addext", "subjectAltName=DNS:alpn.example.test")
    no_alpn = SServer(tmp_path, cert, key, alpn=None)
    plain = SServer(tmp_path, plain_cert, plain_key)
    try:
        rc, doc, _ = probe([good.endpoint])
        assert (rc, doc) == (0, {"ready": True})
        # another key authorization
        rc, doc, _ = probe([good.endpoint], keyauth="x.y", wait_ms=1000)
        assert rc == 1 and "carries another key authorization digest" in doc["error"]["message"]
        # another name
        rc, doc, _ = probe([good.endpoint], name="www.example.test", wait_ms=1000)
        assert rc == 1 and "not exactly the DNS name www.example.test" in doc["error"]["message"]
        # a server that does not speak acme-tls/1
        rc, doc, _ = probe([good.endpoint, no_alpn.endpoint], wait_ms=1000)
        assert rc == 1
        assert "%s does not answer yet" % no_alpn.endpoint in doc["error"]["message"]
        assert "1 of 2 endpoints ready" in doc["error"]["message"]
        # acme-tls/1 with an ordinary certificate
        rc, doc, _ = probe([plain.endpoint], wait_ms=1000)
        assert rc == 1 and "does not carry one acmeIdentifier" in doc["error"]["message"]
        # nothing listening
        silent = "127.0.0.1:%d" % helpers.free_port()
        rc, doc, _ = probe([silent], wait_ms=1000)
        assert rc == 1 and "%s does not answer yet (cannot connect" % silent in \
            doc["error"]["message"]
        assert doc["error"]["class"] == "transient"
    finally:
        for s in (good, no_alpn, plain):
            s.stop()


class PebbleOnSServer(Pebble):
    """Pebble's tls-alpn-01 validation goes to an s_server that this class
    starts when the challenge is published, with the certificate made for
    it; the probe checks it before the CA is told."""

    def __init__(self, d, tls, tmp):
        self.alpn_port = helpers.free_port()
        super().__init__(d, tls, tlsport=self.alpn_port)
        self.tmp = tmp
        self.servers = []

    def publish(self, challenge):
        assert challenge["type"] == "tls-alpn-01"
        cert, key = challenge_cert(self.tmp, challenge["identifier"],
                                   keyauth=challenge["key_authorization"], tag="pebble")
        self.servers.append(SServer(self.tmp, cert, key, port=self.alpn_port))
        rc, doc, _ = probe([self.servers[-1].endpoint], name=challenge["identifier"],
                           keyauth=challenge["key_authorization"])
        assert rc == 0, doc

    def stop(self):
        for s in self.servers:
            s.stop()
        super().stop()


def test_pebble_validates_the_certificate(tmp_path_factory, tmp_path):
    tls = TLSFiles(str(tmp_path_factory.mktemp("tls-alpn")), "pebble")
    pb = PebbleOnSServer(tmp_path_factory.mktemp("pebble-alpn"), tls, tmp_path)
    names = ["alpn.example.test"]
    issue_and_check(pb, str(tmp_path), names, "tls-alpn-01", names)
