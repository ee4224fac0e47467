"""The primary's check of what every node serves (verify --cluster's TLS
check, every [alerts] serving_check seconds, off the event loop): a backup
whose TLS address is answered by something else (`openssl s_server` with
another certificate on the same address) raises an error alert naming the
node, what it serves and what its store says, through a real command; the
status page shows per node the certificate it serves; once the backup
serves its store again, the recovery notice arrives."""

import json
import re
import subprocess

import pytest

from admin_cluster import admin_cluster
from helpers import wait_for
from test_acme_tlsalpn01 import SServer
from test_alerts import received, recorder

SITE = "support.example.test"
HOSTS = [SITE, "primary.example.test", "backup.example.test"]


@pytest.fixture
def cluster(certsync_bin, tmp_path):
    script, out = recorder(tmp_path)
    with admin_cluster(certsync_bin, SITE, "command = %s\ngrace = 0\ninterval = 1\n"
                               "serving_check = 5\n" % script) as (nodes, port):
        yield nodes, port, out


def status_json(port):
    p = subprocess.run(["curl", "-s", "--max-time", "10",
                        "http://127.0.0.1:%d/status.json" % port],
                       stdout=subprocess.PIPE, timeout=20)
    return json.loads(p.stdout)


def served(port, node, host):
    """What the primary's last check saw node serve for host: (status, id)."""
    for r in (status_json(port).get("serving") or {}).get("results", []):
        if r["node"] == node and r["host"] == host:
            return r["status"], r.get("served")
    return None, None


def serving_alerts(out, kind):
    return [a for a in received(out)
            if a["key"] == "serving:backup:backup.example.test" and a["kind"] == kind]


def test_a_node_serving_another_certificate(cluster, pki, tmp_path):
    (primary, backup), port, out = cluster
    mine = pki.make_leaf("i14-serving", "ec:p256", HOSTS, days=90)
    other = pki.make_leaf("i14-impostor", "ec:p256", HOSTS, days=90)
    primary.import_(mine.file("bundle.pem"), name="site")
    primary.cli("cert", "default", mine.id[:12], check=0)
    wait_for("the primary's check to see the backup serve the default", lambda: served(
        port, "backup", "backup.example.test") == ("ok", mine.id), timeout=60)
    assert served(port, "primary", "primary.example.test") == ("ok", mine.id)
    assert serving_alerts(out, "start") == []

    # the backup's agent no longer serves TLS; something else answers there
    backup.stop()
    tls_listen = "tls_listen = 127.0.0.1:%d\n" % backup.tls_port
    assert tls_listen in backup.generated
    generated = backup.generated
    backup.generated = generated.replace(tls_listen, "")
    backup.write_config()
    impostor = SServer(tmp_path, other.cert, other.key, alpn=None, port=backup.tls_port)
    try:
        backup.start()
        wait_for("the error alert", lambda: serving_alerts(out, "start"), timeout=90)
        alert = serving_alerts(out, "start")[0]
        assert alert["severity"] == "error" and alert["node"] == "primary", alert
        text = alert["text"]
        assert re.search(r"node backup serves %s for backup\.example\.test at "
                         r"127\.0\.0\.1:%d, but its store says %s \(site\)"
                         % (other.id[:8], backup.tls_port, mine.id[:8]), text), text
        assert served(port, "backup", "backup.example.test") == ("other", other.id)
        # the page shows what the node serves
        page = subprocess.run(["curl", "-s", "--max-time", "10", "http://127.0.0.1:%d/" % port],
                              stdout=subprocess.PIPE, timeout=20).stdout.decode()
        row = re.search(r'<tr class="node">\s*<td>backup</td>.*?</tr>', page, re.S)
        assert row and other.id[:8] in row.group(0) and "expected" in row.group(0), page
        assert primary.cli("status", "--check").rc == 1
        metrics = subprocess.run(["curl", "-s", "--max-time", "10",
                                  "http://127.0.0.1:%d/metrics" % port],
                                 stdout=subprocess.PIPE, timeout=20).stdout.decode()
        assert ('certsync_node_serving_expected{node="backup",host="backup.example.test"} 0'
                in metrics), metrics[-3000:]
        assert ('certsync_node_serving_expected{node="primary",host="primary.example.test"} 1'
                in metrics), metrics[-3000:]
    finally:
        impostor.stop()

    # the backup serves its store again: recovery
    backup.stop()
    backup.generated = generated
    backup.write_config()
    backup.start()
    wait_for("the recovery notice", lambda: serving_alerts(out, "recovery"), timeout=90)
    assert served(port, "backup", "backup.example.test") == ("ok", mine.id)
    assert len(serving_alerts(out, "start")) == 1
