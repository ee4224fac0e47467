"""Alerts: the [alerts] section refuses bad targets (exit 2, file, line and
fix); a certificate that nears expiry or expires raises an alert that
arrives once through a real command, a real HTTP(S) server and a real SMTP
server (aiosmtpd), again only when it changes, and a recovery at the end;
targets that fail are retried and never stall the agent; `certsync alerts`,
`status` and `status --check` show the error state."""

import http.server
import json
import os
import socket
import ssl
import threading
import time

import pytest

import helpers
from helpers import wait_for, write

SITE = "support.example.test"
PRIMARY = "primary.example.test"
BACKUP = "backup.example.test"
HOSTS = [SITE, PRIMARY, BACKUP]


@pytest.fixture
def alert_agent(configured_agent):
    """An agent whose configuration ends with an [alerts] section."""
    return lambda alerts, start=True: configured_agent(sections="\n[alerts]\n" + alerts,
                                                       start=start)


def recorder(tmp_path, name="record", exit_code=0, sleep=0):
    """A program that stores each alert it reads on stdin as a numbered file."""
    out = tmp_path / (name + ".d")
    out.mkdir()
    script = tmp_path / name
    write(str(script), "#!/usr/bin/python3\nimport os, sys, time\n"
          "data = sys.stdin.read()\n"
          "time.sleep(%r)\n"
          "n = len(os.listdir(%r))\n"
          "tmp = os.path.join(%r, '.tmp')\n"
          "open(tmp, 'w').write(data)\n"
          "os.rename(tmp, os.path.join(%r, '%%04d.json' %% n))\n"
          "sys.exit(%d)\n" % (sleep, str(out), str(out), str(out), exit_code), mode=0o755)
    return str(script), str(out)


def received(directory):
    return [json.load(open(os.path.join(directory, f))) for f in sorted(os.listdir(directory))
            if f.endswith(".json")]


def leaf(pki, name, **kw):
    return pki.make_leaf(name, "ec:p256", HOSTS, **kw)


def utc(offset):
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() + offset))


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------

def bad_alerts(tmp_path):
    script, _ = recorder(tmp_path)
    plain = tmp_path / "plain.txt"
    write(str(plain), "#!/bin/sh\n", mode=0o644)
    open_token = tmp_path / "token"
    write(str(open_token), "s3cret\n", mode=0o644)
    return [
        ("colour = red\n", 1, "unknown key 'colour' in [alerts]"),
        ("command = %s\ncommand = %s\n" % (script, script), 2, "command is given twice"),
        ("command = record.sh\n", 1, "is not an absolute path"),
        ("command = %s\n" % plain, 1, "is not executable"),
        ("command = /bin/sh -c 'echo hi'\n", 1, "give an existing file"),
        ("webhook = ftp://127.0.0.1/x\n", 1, "use https://"),
        ("webhook = http://alerts.example.com/x\n", 1, "http:// only to a loopback"),
        ("webhook = http://127.evil.example.com/x\n", 1, "http:// only to a loopback"),
        ("webhook = not a url\n", 1, "is not a URL"),
        ("webhook = https://alerts.example.com/x\nwebhook_token_file = %s\n" % open_token, 2,
         "readable by every user; chmod 600"),
        ("smtp_url = smtp://127.0.0.1:2525\nsmtp_from = certsync@example.test\n", None,
         "smtp_url needs a recipient: add smtp_to"),
        ("smtp_url = http://127.0.0.1:2525\n", 1, "use smtp://"),
        ("smtp_url = smtp://127.0.0.1:2525\nsmtp_to = a@example.test, b@example.test\n", 2,
         "give one address"),
        ("grace = soon\n", 1, "give a whole number of seconds"),
        ("serving_check = 1\n", 1, "serving_check = 1: give a whole number of seconds from 5"),
    ]


def test_bad_alerts_section_stops_the_agent(alert_agent, tmp_path):
    for alerts, line, text in bad_alerts(tmp_path):
        a = alert_agent(alerts, start=False)
        a.start(wait=False)
        rc = a.wait_exit(15)
        err = a.stderr()
        assert rc == 2, (alerts, rc, err)
        assert text in err, (alerts, err)
        where = a.config + (":%d:" % (len(a.config_text().splitlines()) - len(
            alerts.splitlines()) + line) if line else ":")
        assert where in err, (alerts, where, err)
        assert "s3cret" not in err
        assert not os.path.exists(a.data_dir) or not any(
            fs for _, _, fs in os.walk(a.data_dir)), alerts


# ---------------------------------------------------------------------------
# a real command
# ---------------------------------------------------------------------------

def kinds(alerts):
    return [(a["kind"], a["severity"]) for a in alerts]


def check(agent):
    return agent.cli("status", "--check", json=False)


def test_command_receives_start_change_and_recovery_once(alert_agent, pki, tmp_path):
    script, out = recorder(tmp_path)
    a = alert_agent("command = %s\ngrace = 2\ninterval = 1\n" % script)
    assert a.cli("alerts").data["active"] == []
    # A default that expires in 25 s: a warning, then an error once expired.
    soon = leaf(pki, "i14-soon", startdate="20200101000000Z", enddate=utc(25))
    a.import_(soon.file("bundle.pem"))
    assert a.status()["default"]["id"] == soon.id
    wait_for("the warning to arrive", lambda: len(received(out)) >= 1, timeout=20)
    first = received(out)[0]
    assert (first["kind"], first["severity"]) == ("start", "warning"), first
    assert first["key"] == "certificate:" + soon.id and first["node"] == "primary"
    assert "the default certificate %s (%s) expires in 1 day" % (soon.id[:8], SITE) in first["text"]
    # status shows it at the top; alerts lists it; no error yet: --check passes
    st = a.cli("status", json=False).stdout.decode().splitlines()
    assert st[0].startswith("ALERT warning") and soon.id[:8] in st[0], st
    assert [x["severity"] for x in a.cli("alerts").data["active"]] == ["warning"]
    assert check(a).rc == 0
    # It expires: one change to error (after the grace period), then --check fails.
    wait_for("the change to error", lambda: len(received(out)) >= 2, timeout=60)
    assert kinds(received(out)) == [("start", "warning"), ("change", "error")]
    res = check(a)
    assert res.rc == 1 and "alert: the default certificate" in res.stderr, res.describe()
    # A valid default: the condition ends, one recovery follows the grace period.
    later = leaf(pki, "i14-later", days=90)
    a.import_(later.file("bundle.pem"))
    a.cli("cert", "default", later.id[:12], check=0)
    wait_for("the recovery", lambda: len(received(out)) >= 3, timeout=20)
    rec = received(out)[2]
    assert (rec["kind"], rec["severity"], rec["previous"]) == ("recovery", "ok", "error")
    wait_for("--check to pass", lambda: check(a).rc == 0, timeout=10)
    assert a.cli("alerts").data["active"] == []
    time.sleep(3)  # several evaluations later: nothing more was sent
    assert len(received(out)) == 3
    t = a.cli("alerts").data["targets"]
    assert t == [{"target": "command", "sent": 3, "failed": 0, "given_up": 0, "queued": 0,
                  "last_error": None}]
    log = a.stderr()
    assert "alert start warning certificate:" + soon.id in log
    assert "alert recovery error certificate:" + soon.id in log


def test_alerts_test_and_a_failing_slow_command(alert_agent, tmp_path):
    script, out = recorder(tmp_path, exit_code=3, sleep=5)
    a = alert_agent("command = %s\ntimeout = 1000\n" % script)
    res = a.cli("alerts", "test", json=False)
    assert res.rc == 0 and "queued to 1 target" in res.stdout.decode()
    t0 = time.monotonic()
    # The command hangs past its timeout and is killed; the agent answers meanwhile.
    for _ in range(5):
        assert a.cli("status").rc == 0
    assert time.monotonic() - t0 < 5
    wait_for("a failed attempt", lambda: a.cli("alerts").data["targets"][0]["failed"] >= 1,
             timeout=15)
    tgt = a.cli("alerts").data["targets"][0]
    assert "did not finish within 1000 ms and was killed" in tgt["last_error"], tgt
    assert received(out) == []  # killed before it wrote anything
    assert "alert test warning test:" in a.stderr()


# ---------------------------------------------------------------------------
# a real HTTP(S) server
# ---------------------------------------------------------------------------

class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        srv = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with srv.lock:
            srv.requests.append((self.headers.get("Authorization"), json.loads(body)))
            code = srv.codes.pop(0) if srv.codes else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def serve_hook(codes=(), tls=None):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    srv.lock, srv.requests, srv.codes = threading.Lock(), [], list(codes)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_webhook_over_tls_with_token_retries_a_500(alert_agent, pki, tmp_path):
    server = pki.make_leaf("i14-hook", "ec:p256", ["127.0.0.1"], cn="hook.example.test")
    chain = str(tmp_path / "hook-chain.pem")
    write(chain, helpers.read(server.cert) + helpers.read(pki.inter))
    srv = serve_hook(codes=[500, 500], tls=(chain, server.key))
    token = str(tmp_path / "token")
    write(token, "t0ken-%d\n" % os.getpid(), mode=0o600)
    try:
        a = alert_agent("webhook = https://127.0.0.1:%d/alerts\nwebhook_ca_file = %s\n"
                        "webhook_token_file = %s\n" % (srv.server_address[1], pki.root, token))
        a.cli("alerts", "test", check=0)
        wait_for("the webhook to take the alert", lambda: len(srv.requests) >= 3, timeout=20)
        auths = [r[0] for r in srv.requests]
        assert auths == ["Bearer t0ken-%d" % os.getpid()] * 3
        assert srv.requests[2][1]["kind"] == "test"
        wait_for("the count", lambda: a.cli("alerts").data["targets"][0]["sent"] == 1)
        tgt = a.cli("alerts").data["targets"][0]
        assert (tgt["failed"], tgt["given_up"]) == (2, 0)
        assert "HTTP 500" in tgt["last_error"]
        assert "t0ken" not in a.stderr()
    finally:
        srv.shutdown()


def test_webhook_that_hangs_or_refuses_leaves_the_agent_responsive(alert_agent, tmp_path):
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)  # accepts (in the backlog) and never answers
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connection refused
    try:
        for port, why in ((hang.getsockname()[1], "timed out"), (refused_port, "")):
            a = alert_agent("webhook = http://127.0.0.1:%d/\ntimeout = 1500\n" % port)
            a.cli("alerts", "test", check=0)
            t0 = time.monotonic()
            for _ in range(10):
                assert a.cli("status").rc == 0
            assert time.monotonic() - t0 < 5
            wait_for("two failed attempts",
                     lambda: a.cli("alerts").data["targets"][0]["failed"] >= 2, timeout=20)
            tgt = a.cli("alerts").data["targets"][0]
            assert tgt["sent"] == 0 and tgt["queued"] == 1, tgt
            assert why in tgt["last_error"], tgt
            a.stop()
    finally:
        hang.close()


# ---------------------------------------------------------------------------
# a real SMTP server
# ---------------------------------------------------------------------------

def test_smtp_starttls_with_login_retried_after_a_refusal(alert_agent, pki, tmp_path):
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    server = pki.make_leaf("i14-smtp", "ec:p256", ["127.0.0.1"], cn="mail.example.test")
    chain = str(tmp_path / "smtp-chain.pem")
    write(chain, helpers.read(server.cert) + helpers.read(pki.inter))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(chain, server.key)
    mails, refusals = [], ["451 4.3.0 try again later"]

    class Handler:
        async def handle_DATA(self, srv, session, envelope):
            if refusals:  # the first attempt is refused: retried with backoff
                return refusals.pop()
            mails.append((envelope.mail_from, list(envelope.rcpt_tos),
                          envelope.content.decode(), session.authenticated))
            return "250 OK"

    def auth(srv, session, envelope, mechanism, data):
        return AuthResult(success=(data.login, data.password) == (b"certsync", b"pa55word"))

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctl = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=ctx,
                     require_starttls=True, authenticator=auth, auth_require_tls=True)
    ctl.start()
    pw = str(tmp_path / "smtp-password")
    write(pw, "pa55word\n", mode=0o600)
    try:
        a = alert_agent("smtp_url = smtp://127.0.0.1:%d\nsmtp_from = certsync@example.test\n"
                        "smtp_to = ops@example.test\nsmtp_to = oncall@example.test\n"
                        "smtp_ca_file = %s\nsmtp_user = certsync\nsmtp_password_file = %s\n"
                        % (port, pki.root, pw))
        a.cli("alerts", "test", check=0)
        wait_for("the mail", lambda: len(mails) == 1, timeout=20)
        frm, to, content, authed = mails[0]
        assert frm == "certsync@example.test" and authed
        assert to == ["ops@example.test", "oncall@example.test"]
        assert "Subject: [certsync primary] warning (test): a test alert" in content
        assert '"kind":"test"' in content
        tgt = a.cli("alerts").data["targets"][0]
        assert (tgt["sent"], tgt["failed"], tgt["queued"]) == (1, 1, 0), tgt
        assert tgt["last_error"], tgt  # libcurl's words for the refusal
        assert "pa55word" not in a.stderr()
    finally:
        ctl.stop()


# ---------------------------------------------------------------------------
# cluster-wide conditions: the primary's alone
# ---------------------------------------------------------------------------

def test_cluster_conditions_come_from_the_primary(certsync_bin, tmp_path):
    nodes = helpers.init_cluster(certsync_bin, (("primary", "primary"), ("backup", "backup")),
                                 site=SITE)
    outs = {}
    for n in nodes:
        script, outs[n.name] = recorder(tmp_path, "record-" + n.name)
        n.generated += "\n[alerts]\ncommand = %s\ngrace = 1\ninterval = 1\n" % script
        n.write_config()
        n.start(wait=False)
    primary, backup = nodes
    try:
        for n in nodes:
            n.wait_ready()
        # A default that leaves the backup's hostname uncovered.
        primary.cli("cert", "self-signed", "--name", "site", "--country", "US",
                    "--common-name", SITE, "--san", SITE, "--san", PRIMARY, check=0)
        wait_for("the coverage alert", lambda: any(
            a["key"] == "coverage:" + BACKUP for a in received(outs["primary"])), timeout=20)
        cov = [a for a in received(outs["primary"]) if a["key"] == "coverage:" + BACKUP]
        assert kinds(cov) == [("start", "error")]
        assert "does not cover backup.example.test" in cov[0]["text"]
        # The backup is stopped: the primary says so, once.
        backup.stop()
        wait_for("the peer alert", lambda: any(
            a["key"] == "peer:backup" for a in received(outs["primary"])), timeout=20)
        # It comes back: one recovery.
        backup.start()
        wait_for("the peer's recovery", lambda: [
            a["kind"] for a in received(outs["primary"]) if a["key"] == "peer:backup"] == [
            "start", "recovery"], timeout=30)
        peer = [a for a in received(outs["primary"]) if a["key"] == "peer:backup"]
        assert peer[0]["severity"] == "warning" and "not heard from" in peer[0]["text"]
        # The backup raised none of the cluster's conditions itself.
        assert not any(a["key"].startswith(("coverage:", "peer:", "diverged"))
                       for a in received(outs["backup"])), received(outs["backup"])
        assert check(primary).rc == 1  # an error alert (coverage) is active
    finally:
        for n in nodes:
            if n.running:
                n.stop()
