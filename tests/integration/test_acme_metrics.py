"""What a node tells about its ACME work (issue 14 with issue 13): after a
real issuance from Debian's pebble, /metrics counts the requests made to
the CA by type and outcome with a duration histogram (checked by `promtool
check metrics`), `certsync_certificate_renewal_timestamp_seconds` of the
managed certificate is when `acme show` says it is due for renewal,
`status --json` and /status.json list each managed certificate with its
state and renewal time, and the status page, loaded in headless Chromium,
shows the ACME state and the next renewal on the certificate's row and
marks the renewal on the timeline.  A node that never ran ACME shows the
request families with every series at zero."""

import calendar
import json
import os
import re
import time

import pytest

import helpers
from test_acme_agent import AcmeAgent, PebbleOnPorts, stop_clean, wait_issued, SITE, HOST
from test_acme_client import TLSFiles
from test_metrics import get, promtool_check, samples
from test_status_page import chromium

TYPES = ["directory", "newNonce", "newAccount", "newOrder", "authorization", "challenge",
         "finalize", "order", "certificate", "renewalInfo"]
OUTCOMES = ["ok", "transient", "operator", "fatal"]


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return TLSFiles(str(tmp_path_factory.mktemp("tls")), "pebble")


@pytest.fixture
def pebble(tmp_path, tls):
    """Pebble issuing 90-day certificates, as Let's Encrypt does: the
    renewal falls within the page's 120-day timeline."""
    os.makedirs(str(tmp_path / "pebble"), exist_ok=True)
    pb = PebbleOnPorts(tmp_path / "pebble", tls, validity=90 * 86400)
    pb.start()
    yield pb
    pb.stop()


@pytest.fixture
def issued(certsync_bin, tmp_path, pebble, tls):
    """A node with admin_listen that obtained "site" from pebble (http-01):
    (agent, admin port, what `acme show site` says)."""
    port = helpers.free_port()
    a = AcmeAgent(certsync_bin, tmp_path / "node", pebble, tls,
                  node_extra="admin_listen = 127.0.0.1:%d\n" % port).start()
    try:
        a.cli("acme", "add", "site", "--domain", SITE, "--domain", HOST, "--challenge",
              "http-01", "--default", check=0)
        yield a, port, wait_issued(a, "site")
    finally:
        stop_clean(a)


def unix(rfc3339):
    return calendar.timegm(time.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ"))


def series(typ, outcome):
    return '{type="%s",outcome="%s"}' % (typ, outcome)


def test_request_counts_and_renewal_time_after_an_issuance(issued):
    a, port, m = issued
    code, text = get(port)
    assert code == "200", text
    count = samples(text, "certsync_acme_requests_total")
    assert set(count) == {series(t, o) for t in TYPES for o in OUTCOMES}, count
    for t in ("directory", "newNonce", "newAccount", "newOrder", "authorization",
              "challenge", "finalize", "certificate"):
        assert count[series(t, "ok")] > 0, (t, count)
    # every request is counted once in its histogram, under the bucket of
    # its duration
    hist = samples(text, "certsync_acme_request_duration_seconds_count")
    buckets = samples(text, "certsync_acme_request_duration_seconds_bucket")
    total = samples(text, "certsync_acme_request_duration_seconds_sum")
    for t in TYPES:
        for o in OUTCOMES:
            s = series(t, o)
            assert hist[s] == count[s], (s, hist[s], count[s])
            assert buckets[s[:-1] + ',le="+Inf"}'] == count[s]
            assert (total[s] > 0) == (count[s] > 0), (s, total[s])
    s = series("newOrder", "ok")
    les = [buckets[k] for k in buckets if k.startswith(s[:-1] + ",le=")]
    assert les == sorted(les) and len(les) >= 5, les
    # when the certificate is due for renewal: what `acme show` says
    assert m["renewal_time"] is not None, m
    due = unix(m["renewal_time"])
    assert m["next_attempt"] == m["renewal_time"]
    assert unix(m["renewal_window"]["start"]) <= due <= unix(m["renewal_window"]["end"])
    renewal = samples(text, "certsync_certificate_renewal_timestamp_seconds")
    assert renewal == {'{id="%s",name="site",default="true"}' % m["certificate"]["id"]: due}
    shown = a.cli("acme", "show", "site", json=False, check=0).stdout.decode()
    assert "renewal due:  %s\n" % m["renewal_time"] in shown, shown
    assert "PRIVATE" not in text and a.passphrase not in text and "/acme/" not in text
    promtool_check(text)


def test_status_and_page_show_state_and_next_renewal(issued, tmp_path):
    a, port, m = issued
    for st in (a.status(), json.loads(get(port, "/status.json")[1])):
        managed = st["acme"]["managed"]
        assert [(x["name"], x["state"], x["renewal_time"], x["certificate"]["id"])
                for x in managed] == [("site", "scheduled", m["renewal_time"],
                                       m["certificate"]["id"])], managed
    url = "http://127.0.0.1:%d/" % port
    dom = chromium("--dump-dom", url)
    row = re.search(r'<tr class="certificate[^"]*" data-id="%s".*?</tr>'
                    % m["certificate"]["id"][:16], dom, re.S)
    assert row, dom[-3000:]
    assert 'class="acme scheduled">ACME scheduled<' in row.group(0), row.group(0)
    assert re.search(r'next renewal <span class="renewal">%s</span>' % m["renewal_time"],
                     row.group(0)), row.group(0)
    marks = re.findall(r'<path class="renewal"[^>]*><title>renewal ([^<]*)</title>', dom)
    assert marks == [m["renewal_time"]], dom[-3000:]
    shots = os.path.join(os.environ.get("CERTSYNC_BUILD", str(tmp_path)), "test-artifacts")
    os.makedirs(shots, exist_ok=True)
    shot = os.path.join(shots, "status-page-acme.png")
    chromium("--screenshot=" + shot, "--window-size=1200,900", url)
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_node_without_acme_shows_zero_series(configured_agent):
    port = helpers.free_port()
    configured_agent(node_extra="admin_listen = 127.0.0.1:%d\n" % port)
    code, text = get(port)
    assert code == "200", text
    count = samples(text, "certsync_acme_requests_total")
    assert count == {series(t, o): 0 for t in TYPES for o in OUTCOMES}, count
    assert set(samples(text, "certsync_acme_request_duration_seconds_count").values()) == {0}
    assert "# TYPE certsync_acme_request_duration_seconds histogram" in text
    assert "# TYPE certsync_certificate_renewal_timestamp_seconds gauge" in text
    assert samples(text, "certsync_certificate_renewal_timestamp_seconds") == {}
    promtool_check(text)
