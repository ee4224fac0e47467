"""contrib/prometheus/certsync.rules.yml: valid for Prometheus (`promtool
check rules`) and doing what its unit tests say (`promtool test rules`):
expiry relative to 25 days and the lifetime, expired defaults, silent or
lagging peers, a node serving another certificate, dropped messages, the error state and failing delivery;
an ACME renewal overdue and ACME requests failing."""

import os
import shutil
import subprocess

RULES = os.path.join(os.path.dirname(__file__), "..", "..", "contrib", "prometheus")


def promtool(*args):
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: scripts/install-deps installs Debian's prometheus"
    p = subprocess.run([tool] + list(args), cwd=RULES, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    return p.returncode, p.stdout.decode()


def test_rules_check():
    rc, out = promtool("check", "rules", "certsync.rules.yml")
    assert rc == 0 and "SUCCESS: 10 rules found" in out, out


def test_rules_unit_tests():
    rc, out = promtool("test", "rules", "certsync.rules.test.yml")
    assert rc == 0 and "SUCCESS" in out, out
