"""The admin listener (admin_listen): /metrics in the Prometheus text format
with cert-manager's certificate metrics under the certsync_ prefix, checked
by `promtool check metrics`; the bearer token rule (401), bounded headers,
unknown paths (404), the connection cap, and the configuration refusing a non-loopback address
without a token or a token file every user can read."""

import concurrent.futures
import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

import helpers
from helpers import write

SITE = "support.example.test"
HOSTS = [SITE, "primary.example.test", "backup.example.test"]


@pytest.fixture
def admin_agent(configured_agent):
    """An agent whose [node] section has admin_listen (and a token file)."""
    return lambda admin, start=True: configured_agent(node_extra=admin, start=start)


def get(port, path="/metrics", headers=()):
    args = ["curl", "-s", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"]
    for h in headers:
        args += ["-H", h]
    p = subprocess.run(args + ["http://127.0.0.1:%d%s" % (port, path)], stdout=subprocess.PIPE,
                       timeout=20)
    body, _, code = p.stdout.decode().rpartition("\n")
    return code, body


def samples(text, name):
    """{labels text: value} of every sample of metric name."""
    return {m.group(1) or "": float(m.group(2))
            for m in re.finditer(r"^%s(\{[^}]*\})? (\S+)$" % re.escape(name), text, re.M)}


def promtool_check(text):
    """`promtool check metrics` passes on text."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/install-deps installs Debian's prometheus"
    p = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert p.returncode == 0, p.stdout.decode()


def test_metrics_follow_cert_manager_and_pass_promtool(admin_agent, pki, tmp_path):
    port = helpers.free_port()
    a = admin_agent("admin_listen = 127.0.0.1:%d\n" % port)
    first = pki.make_leaf("i14-m1", "ec:p256", HOSTS, days=10)
    second = pki.make_leaf("i14-m2", "rsa:2048", HOSTS, days=90)
    a.import_(first.file("bundle.pem"), name='web "main"')
    a.import_(second.file("bundle.pem"), name="api")
    a.cli("cert", "default", first.id[:12], check=0)
    code, text = get(port)
    assert code == "200", text
    exp = samples(text, "certsync_certificate_expiration_timestamp_seconds")
    label1 = '{id="%s",name="web \\"main\\"",default="true"}' % first.id
    label2 = '{id="%s",name="api"}' % second.id
    assert set(exp) == {label1, label2}, exp
    na = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", first.cert],
                        stdout=subprocess.PIPE, check=True).stdout.decode()
    when = time.mktime(time.strptime(na.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z"))
    assert abs(exp[label1] - (when - time.timezone)) < 2, (exp, na)
    nb = samples(text, "certsync_certificate_not_before_timestamp_seconds")
    assert nb[label1] < exp[label1] and nb[label2] < exp[label2]
    ready = samples(text, "certsync_certificate_ready_status")
    assert ready[label1[:-1] + ',condition="True"}'] == 1
    assert ready[label1[:-1] + ',condition="False"}'] == 0
    assert samples(text, "certsync_replication_applied_seq")[""] >= 2
    active = samples(text, "certsync_alerts_active")
    assert set(active) == {'{severity="warning"}', '{severity="error"}'}
    assert "PRIVATE" not in text and a.passphrase not in text
    promtool_check(text)


def ready(text, cid):
    """certsync_certificate_ready_status{condition="True"} of certificate cid."""
    values = [v for labels, v in samples(text, "certsync_certificate_ready_status").items()
              if 'id="%s"' % cid in labels and 'condition="True"' in labels]
    assert len(values) == 1, text[-3000:]
    return values[0]


def test_metrics_follow_changes_and_time(admin_agent, pki):
    """The certificate metrics (rendered once per change of the store) show
    an import and a deletion at the next scrape, and a certificate becoming
    valid with time alone."""
    port = helpers.free_port()
    a = admin_agent("admin_listen = 127.0.0.1:%d\n" % port)
    first = pki.make_leaf("i14-c1", "ec:p256", HOSTS, days=30)
    a.import_(first.file("bundle.pem"), name="first")
    assert ready(get(port)[1], first.id) == 1
    start = time.time() + 8
    later = pki.make_leaf("i14-c2", "ec:p256", HOSTS,
                          startdate=time.strftime("%Y%m%d%H%M%SZ", time.gmtime(start)),
                          enddate=time.strftime("%Y%m%d%H%M%SZ",
                                                time.gmtime(start + 30 * 86400)))
    a.import_(later.file("bundle.pem"), name="later")
    # scrapes at once after a change wait for one render and all see it
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        for code, text in ex.map(lambda _: get(port), range(4)):
            assert code == "200" and ready(text, later.id) == 0
    helpers.wait_for("the later certificate to be valid", lambda: time.time() > start + 1,
                     timeout=30)
    assert ready(get(port)[1], later.id) == 1
    a.cli("cert", "default", later.id[:12], check=0)
    a.cli("cert", "delete", first.id[:12], check=0)
    text = get(port)[1]
    assert first.id not in text and later.id in text


def test_admin_token_header_limit_and_unknown_path(admin_agent, tmp_path):
    port = helpers.free_port()
    token = str(tmp_path / "admin-token")
    write(token, "adm1n-%d\n" % os.getpid(), mode=0o600)
    a = admin_agent("admin_listen = 127.0.0.1:%d\nadmin_token_file = %s\n" % (port, token))
    good = "Authorization: Bearer adm1n-%d" % os.getpid()
    assert get(port)[0] == "401"
    assert get(port, headers=["Authorization: Bearer wrong"])[0] == "401"
    assert get(port, headers=["Authorization: Bearer adm1n-%d0" % os.getpid()])[0] == "401"
    code, text = get(port, headers=[good])
    assert code == "200" and "certsync_alerts_active" in text
    assert get(port, "/nothing", headers=[good])[0] == "404"
    assert get(port, "/../metrics/x", headers=[good])[0] == "404"
    # a header over the bound is refused, and the listener still answers
    code, _ = get(port, headers=[good, "X-Big: " + "a" * 20000])
    assert code in ("400", "413", "431", "000"), code
    assert get(port, headers=[good])[0] == "200"
    p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                        "-H", good, "http://127.0.0.1:%d/metrics" % port],
                       stdout=subprocess.PIPE, timeout=20)
    assert p.stdout.decode() in ("405", "501"), p.stdout
    assert "adm1n" not in a.stderr()


def test_admin_config_refusals(admin_agent, tmp_path):
    open_token = str(tmp_path / "open-token")
    write(open_token, "s3cret\n", mode=0o644)
    cases = [
        ("admin_listen = 0.0.0.0:9443\n", "is not a loopback address: add admin_token_file"),
        ("admin_listen = 127.0.0.1:9443\nadmin_token_file = %s\n" % open_token,
         "readable by every user; chmod 600"),
        ("admin_listen = localhost\n", "write ADDR:PORT"),
        ("admin_token_file = %s\n" % open_token, "admin_token_file needs admin_listen"),
    ]
    for admin, text in cases:
        a = admin_agent(admin, start=False)
        a.start(wait=False)
        rc = a.wait_exit(15)
        err = a.stderr()
        assert rc == 2 and text in err and a.config in err, (admin, rc, err)
        assert "s3cret" not in err


def test_a_real_prometheus_scrapes_it(admin_agent, pki, tmp_path):
    tool = shutil.which("prometheus")
    assert tool, "prometheus is missing: scripts/install-deps installs Debian's prometheus"
    port, prom_port = helpers.free_port(), helpers.free_port()
    token = str(tmp_path / "admin-token")
    write(token, "scr4pe-%d\n" % os.getpid(), mode=0o600)
    write(str(tmp_path / "prom-token"), "scr4pe-%d\n" % os.getpid(), mode=0o600)
    a = admin_agent("admin_listen = 127.0.0.1:%d\nadmin_token_file = %s\n" % (port, token))
    leaf = pki.make_leaf("i14-prom", "ec:p256", HOSTS, days=30)
    a.import_(leaf.file("bundle.pem"), name="scraped")
    conf = str(tmp_path / "prometheus.yml")
    write(conf, "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
          "scrape_configs:\n  - job_name: certsync\n"
          "    authorization:\n      credentials_file: %s\n"
          "    static_configs:\n      - targets: ['127.0.0.1:%d']\n"
          % (tmp_path / "prom-token", port))
    log = open(str(tmp_path / "prometheus.log"), "wb")
    prom = subprocess.Popen([tool, "--config.file=" + conf,
                             "--storage.tsdb.path=" + str(tmp_path / "tsdb"),
                             "--web.listen-address=127.0.0.1:%d" % prom_port],
                            stdout=log, stderr=log)
    try:
        def query():
            p = subprocess.run(
                ["curl", "-s", "--max-time", "5", "http://127.0.0.1:%d/api/v1/query" % prom_port,
                 "--data-urlencode", 'query=certsync_certificate_expiration_timestamp_seconds'
                 '{name="scraped"}'], stdout=subprocess.PIPE, timeout=20)
            try:
                return json.loads(p.stdout)["data"]["result"]
            except (ValueError, KeyError):
                return []
        helpers.wait_for("Prometheus to have scraped the certificate", lambda: query(),
                         timeout=60, step=0.5)
        r = query()[0]
        assert r["metric"]["id"] == leaf.id and r["metric"]["default"] == "true"
        assert r["metric"]["job"] == "certsync"
        exp = float(r["value"][1])
        assert 29 * 86400 < exp - time.time() <= 30 * 86400
    finally:
        prom.terminate()
        try:
            prom.wait(timeout=30)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
        log.close()


def test_admin_connection_cap(admin_agent):
    """Connections that end are counted out; 16 idle ones fill the admin
    listener: a 17th client is not served while they stay (it waits in the
    backlog, holding none of the agent's descriptors) and is answered once
    they go; the agent logs the cap."""
    port = helpers.free_port()
    a = admin_agent("admin_listen = 127.0.0.1:%d\n" % port)
    for _ in range(20):  # connections that end are counted out
        assert get(port, "/nothing")[0] == "404"
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(16)]
    try:
        late = socket.create_connection(("127.0.0.1", port), timeout=5)
        late.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        late.settimeout(2)
        with pytest.raises(socket.timeout):
            late.recv(100)  # not accepted while the cap is reached
    finally:
        for s in held:
            s.close()
    late.settimeout(15)
    answer = late.recv(100)
    late.close()
    assert answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n")[0], answer
    assert get(port)[0] == "200"
    assert "at most 16 connections" in a.stderr()
