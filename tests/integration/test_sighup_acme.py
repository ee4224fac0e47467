"""SIGHUP and [acme] (issue 16, item 2) against Debian's pebble: a changed,
valid [acme] section is applied without a restart (same PID) and the agent
then obtains a certificate that its TLS endpoint serves to openssl s_client;
a directory changed to another CA gets the cluster's account registered
there before the renewal; a bad section changes nothing and says why, naming
the key.  Every wait is bounded; processes are stopped by PID."""

import os

import helpers
from test_acme_agent import (HOST, SITE, AcmeAgent, issue_and_serve, managed,  # noqa: F401
                             pebble, s_client, slow_pebble, stop_clean, tls, wait_issued)
from acme_env import Pebble
from test_sighup import hup


class ReloadAgent(AcmeAgent):
    """AcmeAgent whose configuration text gets edits (old, new) applied, so
    a test can break or change [acme] and send SIGHUP; without_acme: no
    [acme] section at all."""
    edits = ()
    without_acme = False

    def config_text(self):
        t = super().config_text()
        if self.without_acme:
            t = t[:t.index("\n[acme]\n")] + "\n"
        for old, new in self.edits:
            assert old in t, old
            t = t.replace(old, new)
        return t


def by_socket(agent, *args):
    """A command that finds the agent by its socket: it cannot read a
    broken configuration file either."""
    return helpers.run_certsync(agent.binary, ["-S", agent.control_socket] + list(args), check=0)


def served_id(agent):
    """The id of the certificate managed certificate site holds (None:
    none); a renewal that stopped for good fails the test at once."""
    m = managed(agent, "site")
    assert m["state"] != "failed", m
    return (m["certificate"] or {}).get("id")


def served_from(agent, ca, tmp_path):
    """Waits until openssl s_client, trusting only ca's root, verifies what
    the endpoint serves for SITE; returns the root's file."""
    root = str(tmp_path / "pebble2-root.pem")
    helpers.write(root, ca.root_pem())

    def served():
        rc, verify, sans = s_client(agent.tls_port, SITE, root)
        return rc == 0 and verify == ["Verify return code: 0 (ok)"] and SITE in sans
    helpers.wait_for("the new CA's certificate served", served, timeout=20, step=0.2)
    return root


def reconfigure(agent, *edits):
    agent.edits = edits
    agent.write_config()


def test_directory_fixed_by_sighup_obtains_without_a_restart(certsync_bin, tmp_path, pebble,
                                                              tls):
    dead = "https://127.0.0.1:%d/dir" % helpers.free_port()
    a = ReloadAgent(certsync_bin, tmp_path / "node", pebble, tls)
    reconfigure(a, (pebble.dir_url, dead))
    a.start()
    try:
        pid = a.pid
        res = a.cli("acme", "add", "site", "--domain", SITE, "--domain", HOST, "--default",
                    check=None)
        assert res.rc == 1, res.describe()
        assert "acme add refused: [acme] directory %s: " % dead in res.message, res.message
        assert a.cli("acme", "list", check=0).data["certificates"] == []
        reconfigure(a)  # the file names pebble's directory now
        hup(a, "SIGHUP: [acme] applied")
        assert "[acme] directory: %s -> %s (applied)" % (dead, pebble.dir_url) in a.stderr()
        # obtained from pebble and served, verified by openssl against its root
        issue_and_serve(a, pebble, tmp_path, "http-01")
        assert a.pid == pid and a.running
    finally:
        stop_clean(a)


def test_renewal_goes_to_the_new_ca_after_sighup(certsync_bin, tmp_path, pebble, tls):
    """The CA stops answering and a renewal fails with its error; the file
    is pointed at another CA (a second pebble, its own root and accounts)
    and SIGHUP sent: `acme renew` registers the cluster's account key there
    (the old CA's account URL is not used) and the endpoint serves the new
    CA's certificate."""
    a = ReloadAgent(certsync_bin, tmp_path / "node", pebble, tls).start()
    os.makedirs(str(tmp_path / "pebble2"))
    other = Pebble(tmp_path / "pebble2", tls, httpport=pebble.httpport, tlsport=pebble.tlsport)
    try:
        pid = a.pid
        first = issue_and_serve(a, pebble, tmp_path, "http-01")
        old_url = a.cli("acme", "account", check=0).data["account"]["url"]
        assert old_url.startswith("https://127.0.0.1:%d/" % pebble.port), old_url
        pebble.stop()
        a.cli("acme", "renew", "site", check=0)
        helpers.wait_for("the renewal failed", lambda: managed(a, "site")["failures"] >= 1,
                         timeout=90, step=0.5)
        m = managed(a, "site")
        assert "127.0.0.1 port %d" % pebble.port in m["last_error"]["message"], m
        other.start()
        reconfigure(a, (pebble.dir_url, other.dir_url))
        hup(a, "SIGHUP: [acme] applied")
        assert "[acme] directory: %s -> %s (applied)" % (pebble.dir_url, other.dir_url) in \
            a.stderr()
        a.cli("acme", "renew", "site", check=0)

        helpers.wait_for("renewed by the new CA",
                         lambda: served_id(a) not in (None, first["certificate"]["id"]),
                         timeout=120, step=0.5)
        acct = a.cli("acme", "account", check=0).data
        assert acct["directory"] == other.dir_url
        assert acct["account"]["status"] == "valid"
        assert acct["account"]["url"].startswith("https://127.0.0.1:%d/" % other.port), acct
        # a real client: the new CA's certificate, which the old CA's root
        # does not verify
        served_from(a, other, tmp_path)
        rc, verify, _ = s_client(a.tls_port, SITE, str(tmp_path / "pebble-root.pem"))
        assert rc != 0 and verify != ["Verify return code: 0 (ok)"]
        assert a.pid == pid and a.running
    finally:
        other.stop()
        stop_clean(a)


def test_a_bad_acme_section_keeps_the_old_one(certsync_bin, tmp_path, pebble, tls):
    other = "https://127.0.0.1:%d/dir" % helpers.free_port()
    a = ReloadAgent(certsync_bin, tmp_path / "node", pebble, tls).start()
    try:
        pid = a.pid
        reconfigure(a, (pebble.dir_url, other),
                    ("contact = mailto:ops@example.test", "contact = ops@example.test"))
        hup(a, "SIGHUP: the configuration no longer loads, so the agent keeps running on "
               "the one it loaded before")
        line = [l for l in a.stderr().splitlines() if "no longer loads" in l][-1]
        assert "[acme] contact = ops@example.test: give one mailto: address" in line, line
        assert "[acme] directory:" not in a.stderr()
        # the old section still runs: pebble answers `acme add` and issues
        assert by_socket(a, "status").data["acme"]["directory"] == pebble.dir_url
        by_socket(a, "acme", "add", "site", "--domain", SITE)
        helpers.wait_for("site issued by the old section's CA",
                         lambda: by_socket(a, "acme", "show", "site").data["certificate"],
                         timeout=120, step=0.5)
        # the section fixed: now it is applied
        reconfigure(a, (pebble.dir_url, other))
        hup(a, "SIGHUP: [acme] applied")
        assert "[acme] directory: %s -> %s (applied)" % (pebble.dir_url, other) in a.stderr()
        assert a.status()["acme"]["directory"] == other
        assert a.pid == pid and a.running
    finally:
        stop_clean(a)


def test_acme_section_added_by_sighup_starts_the_runner(certsync_bin, tmp_path, pebble, tls):
    a = ReloadAgent(certsync_bin, tmp_path / "node", pebble, tls)
    a.without_acme = True
    a.write_config()
    a.start()
    try:
        pid = a.pid
        res = a.cli("acme", "add", "site", "--domain", SITE, check=None)
        assert res.rc != 0 and "has no [acme] directory" in res.message, res.describe()
        assert a.status()["acme"]["runner"]["running"] is False
        a.without_acme = False
        a.write_config()
        hup(a, "SIGHUP: [acme] applied")
        assert "[acme] directory: (unset) -> %s (applied)" % pebble.dir_url in a.stderr()
        assert a.status()["acme"]["runner"]["running"] is True
        issue_and_serve(a, pebble, tmp_path, "http-01")
        assert a.pid == pid and a.running
    finally:
        stop_clean(a)


def test_order_of_the_old_ca_is_made_again_with_the_new_one(certsync_bin, tmp_path,
                                                            slow_pebble, tls):
    """The CA goes away while it validates: the order stays stored (a
    transient failure).  After SIGHUP points [acme] at another CA, that
    order (the old CA's URLs) is not resumed there: a new order is made with
    the new CA, which issues the certificate the endpoint then serves."""
    old = slow_pebble
    a = ReloadAgent(certsync_bin, tmp_path / "node", old, tls).start()
    os.makedirs(str(tmp_path / "pebble2"))
    new = Pebble(tmp_path / "pebble2", tls, httpport=old.httpport, tlsport=old.tlsport)
    try:
        a.cli("acme", "add", "site", "--domain", SITE, "--default", check=0)
        helpers.wait_for("the CA validating", lambda: "acme site: the CA validates" in
                         a.stderr(), timeout=60, step=0.1)
        old.stop()
        helpers.wait_for("the order failed", lambda: managed(a, "site")["failures"] >= 1,
                         timeout=120, step=0.5)
        assert managed(a, "site")["order"] is not None  # kept, to be resumed
        new.start()
        reconfigure(a, (old.dir_url, new.dir_url))
        hup(a, "SIGHUP: [acme] applied")
        a.cli("acme", "renew", "site", check=0)
        m = wait_issued(a, "site")
        assert m["order"] is None
        assert "acme site: the order in progress (https://127.0.0.1:%d/" % old.port in \
            a.stderr()
        served_from(a, new, tmp_path)
    finally:
        new.stop()
        stop_clean(a)
