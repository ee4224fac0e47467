"""The status page on admin_listen, loaded in headless Chromium: the DOM
lists every node and every certificate, a certificate expiring in 10 days
shows the warning colour in its expiry bar and on the SVG timeline, the
page's script reaches /status.json, and a screenshot is kept under the
build folder for a person to look at."""

import json
import os
import re
import shutil
import subprocess

import pytest

from admin_cluster import admin_cluster
from helpers import wait_for

SITE = "support.example.test"


def chromium(*args):
    tool = shutil.which("chromium")
    assert tool, "chromium is missing: scripts/install-deps installs Debian's chromium"
    p = subprocess.run([tool, "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--virtual-time-budget=4000"] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    return p.stdout.decode()


@pytest.fixture
def cluster(certsync_bin):
    with admin_cluster(certsync_bin, SITE) as c:
        yield c


def test_page_in_headless_chromium(cluster, pki):
    (primary, backup), port = cluster
    hosts = [SITE, "primary.example.test", "backup.example.test"]
    soon = pki.make_leaf("i14-page-soon", "ec:p256", hosts, days=10)
    later = pki.make_leaf("i14-page-later", "rsa:2048", hosts, days=90)
    primary.import_(soon.file("bundle.pem"), name="ten-days <b>")
    primary.import_(later.file("bundle.pem"), name="ninety-days")
    primary.cli("cert", "default", soon.id[:12], check=0)
    wait_for("the backup to be heard", lambda: all(
        p["reachable"] for p in primary.status()["replication"]["peers"]), timeout=20)
    url = "http://127.0.0.1:%d/" % port
    st = json.loads(subprocess.run(["curl", "-s", "--max-time", "10", url + "status.json"],
                                   stdout=subprocess.PIPE, timeout=20).stdout)
    assert st["node"] == "primary" and {c["name"] for c in st["certificates"]} >= {
        "ten-days <b>", "ninety-days"}
    dom = chromium("--dump-dom", url)
    rows = re.findall(r'<tr class="node">(.*?)</tr>', dom)
    assert [re.search(r"<td>(\w+)</td>", r).group(1) for r in rows] == ["primary", "backup"]
    assert "not heard" not in "".join(rows)
    # the name is text, never markup
    assert "ten-days &lt;b&gt;" in dom and "ten-days <b>" not in dom
    cert_rows = dict(re.findall(r'<tr class="certificate (\w+)" data-id="(\w+)"', dom)[::-1])
    by_id = {v: k for k, v in cert_rows.items()}
    assert by_id[soon.id[:16]] == "warning" and by_id[later.id[:16]] == "ok", cert_rows
    assert re.search(r'<div class="expiry warning" style="width:\d+%">', dom)
    bars = re.findall(r'<rect class="bar (\w+)"', dom)
    assert sorted(bars) == ["ok", "warning"], bars
    assert 'id="today"' in dom
    # the script polled /status.json
    assert re.search(r'<span id="updated">checked \d{4}-', dom), dom[-1500:]
    # no external asset: nothing fetched from elsewhere
    assert not re.search(r'(src|href)="(https?:)?//', dom)
    shots = os.path.join(os.environ.get("CERTSYNC_BUILD", "."), "test-artifacts")
    os.makedirs(shots, exist_ok=True)
    shot = os.path.join(shots, "status-page.png")
    if os.path.exists(shot):
        os.unlink(shot)
    chromium("--screenshot=" + shot, "--window-size=1000,900", url)
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(shot) > 10000
