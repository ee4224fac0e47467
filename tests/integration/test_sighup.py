"""SIGHUP (issue 16, item 2) on a real agent: the log level, the alert
targets and the per-address TLS cap change without a restart, and the effect
is checked (lines that appear or stop, the program an alert reaches, a
connection closed at accept); a key that needs a restart is named and keeps
its running value; a configuration that no longer loads changes nothing and
the agent says why.  Every wait is bounded; the agent is signalled by PID."""

import os
import signal
import socket
import time

import helpers
from helpers import wait_for
from test_alerts import received, recorder

SITE = "support.example.test"


def hup(agent, expect):
    """Sends SIGHUP and waits for the log to say expect (it is new)."""
    seen = agent.stderr().count(expect)
    os.kill(agent.pid, signal.SIGHUP)
    wait_for("the agent to log %r" % expect, lambda: agent.stderr().count(expect) > seen,
             timeout=20)
    assert agent.running


def self_signed(agent, name):
    return agent.cli("cert", "self-signed", "--name", name, "--country", "US", "--common-name",
                     SITE, "--san", "*.example.test", check=0)


def reconfigure(agent, **changes):
    for k, v in changes.items():
        setattr(agent, k, v)
    agent.write_config()


def test_log_level_changes_without_a_restart(configured_agent):
    a = configured_agent()
    pid = a.pid
    self_signed(a, "one")
    assert "store: committed" not in a.stderr()  # a debug line: not at info
    reconfigure(a, log_level="debug")
    hup(a, "[node] log_level: info -> debug (applied)")
    self_signed(a, "two")
    wait_for("a debug line", lambda: "store: committed" in a.stderr(), timeout=10)
    # to warn: the info line of each change stops
    reconfigure(a, log_level="warn")
    hup(a, "[node] log_level: debug -> warn (applied)")
    before = len(a.stderr())
    self_signed(a, "three")
    assert "(three)" not in a.stderr()[before:] and "store: committed" not in a.stderr()[before:]
    assert a.pid == pid and a.running


def test_alert_target_changes_without_a_restart(configured_agent, tmp_path):
    first, out_first = recorder(tmp_path, "first")
    second, out_second = recorder(tmp_path, "second")
    a = configured_agent(sections="\n[alerts]\ncommand = %s\n" % first)
    a.cli("alerts", "test", check=0)
    wait_for("the test alert at the first program", lambda: len(received(out_first)) == 1,
             timeout=20)
    a.sections = "\n[alerts]\ncommand = %s\n" % second
    a.write_config()
    hup(a, "alerts go to the targets of [alerts] as it is now")
    assert "[alerts] command: %s -> %s (applied)" % (first, second) in a.stderr()
    a.cli("alerts", "test", check=0)
    wait_for("the test alert at the second program", lambda: len(received(out_second)) == 1,
             timeout=20)
    assert received(out_second)[0]["kind"] == "test"
    time.sleep(0.5)
    assert len(received(out_first)) == 1, "the old target still received alerts"
    # the counts of the kept kind carry over: 2 sent in all
    targets = a.cli("alerts", check=0).data["targets"]
    assert [(t["target"], t["sent"]) for t in targets] == [("command", 2)]
    # a webhook added by SIGHUP becomes a target too; removing [alerts] leaves none
    a.sections = ""
    a.write_config()
    hup(a, "alerts go to the targets of [alerts] as it is now")
    assert a.cli("alerts", "test", check=0).data["targets"] == 0


def tls_closed_at_accept(port):
    """True when a new connection is closed before any byte is sent."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.settimeout(1.0)
        return s.recv(1) == b""
    except socket.timeout:
        return False
    finally:
        s.close()


def test_tls_per_address_cap_changes_without_a_restart(configured_agent):
    port = helpers.free_port()
    a = configured_agent(node_extra="tls_listen = 127.0.0.1:%d\n" % port)
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    try:
        assert not tls_closed_at_accept(port)  # the default cap (256) is far
        a.node_extra = "tls_listen = 127.0.0.1:%d\ntls_max_connections_per_ip = 2\n" % port
        a.write_config()
        hup(a, "[node] tls_max_connections_per_ip: default -> 2 (applied)")
        assert a.status()["tls"]["connections"]["max_per_source"] == 2
        # two held: the third from this address is closed at accept
        wait_for("a third connection refused", lambda: tls_closed_at_accept(port), timeout=10)
        assert a.status()["tls"]["connections"]["refused_per_source"] >= 1
    finally:
        for s in held:
            s.close()


def closed_within(port, seconds):
    """Opens a connection, sends the start of a ClientHello record and
    returns the seconds until the endpoint closes it (None: still open)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(b"\x16\x03\x01\x02\x00")  # a 512-byte handshake record, never sent
        start = time.monotonic()
        s.settimeout(seconds)
        try:
            while s.recv(1024):
                pass
        except socket.timeout:
            return None
        except ConnectionResetError:
            pass
        return time.monotonic() - start
    finally:
        s.close()


def test_tls_handshake_timeout_changes_without_a_restart(configured_agent):
    port = helpers.free_port()
    a = configured_agent(node_extra="tls_listen = 127.0.0.1:%d\ntls_handshake_timeout = 60000\n"
                         % port)
    a.node_extra = "tls_listen = 127.0.0.1:%d\ntls_handshake_timeout = 1000\n" % port
    a.write_config()
    hup(a, "[node] tls_handshake_timeout: 60000 -> 1000 (applied)")
    # a generous bound: the old timeout was a minute
    took = closed_within(port, 20)
    assert took is not None, "an unfinished handshake was not closed within 20 s"
    assert a.status()["tls"]["connections"]["timed_out"] >= 1


def test_keys_that_need_a_restart_are_named_and_keep_their_value(configured_agent):
    port, other = helpers.free_port(), helpers.free_port()
    a = configured_agent(node_extra="tls_listen = 127.0.0.1:%d\n" % port)
    a.node_extra = "tls_listen = 127.0.0.1:%d\ntls_max_connections = 500\n" % other
    a.site = "other.example.test"
    a.write_config()
    hup(a, "[node] tls_listen changed: it takes effect only when the agent restarts")
    log = a.stderr()
    assert "[node] tls_max_connections changed: it takes effect only when" in log
    assert "[cluster] site_hostname changed: it takes effect only when" in log
    # still the values it started with
    st = a.status()
    assert st["site_hostname"] == SITE
    assert st["tls"]["listeners"] == ["127.0.0.1:%d" % port]
    socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_acme_keys_are_applied_and_http_listen_named(configured_agent):
    """A changed [acme] section is applied without a restart, each changed key
    logged from what to what; http_listen binds at start and is named as
    needing a restart (the CA's side is test_sighup_acme.py)."""
    acme = ("\n[acme]\ndirectory = https://ca.example.test/dir\n"
            "contact = mailto:ops@example.test\nagree_tos = yes\n")
    a = configured_agent(sections=acme)
    pid = a.pid
    a.sections = acme.replace("ca.example.test/dir", "ca2.example.test/dir") + \
        "check_timeout = 5\n"
    a.node_extra = "http_listen = 127.0.0.1:%d\n" % helpers.free_port()
    a.write_config()
    hup(a, "SIGHUP: [acme] applied")
    log = a.stderr()
    assert ("[acme] directory: https://ca.example.test/dir -> https://ca2.example.test/dir "
            "(applied)") in log
    assert "[acme] check_timeout: default -> 5 (applied)" in log
    assert "[acme] contact" not in log  # unchanged keys are not named
    assert "[node] http_listen changed: it takes effect only when" in log
    assert a.cli("acme", "account", check=0).data["directory"] == \
        "https://ca2.example.test/dir"
    assert a.status()["acme"]["directory"] == "https://ca2.example.test/dir"
    # the section removed: acme commands are refused as without [acme]
    a.sections = ""
    a.write_config()
    hup(a, "[acme] directory: https://ca2.example.test/dir -> (unset) (applied)")
    res = a.cli("acme", "renew", "site", check=None)
    assert res.rc == 1 and "has no [acme] directory" in res.message, res.describe()
    assert a.pid == pid and a.running


def test_a_configuration_that_no_longer_loads_changes_nothing(configured_agent):
    a = configured_agent()
    good = a.config_text()
    before = a.status()
    for bad, says in (
            (good + "this is not a line of an INI file\n", ":%d: cannot parse this line"
             % (len(good.splitlines()) + 1)),
            (good.replace("log_level = info", "log_level = loud"), "log_level = loud"),
            (good + "\n[nonsense]\nkey = 1\n", "nonsense"),
            ("", "name"),  # an empty file: the required keys are missing
    ):
        helpers.write(a.config, bad)
        hup(a, "SIGHUP: the configuration no longer loads, so the agent keeps running on "
               "the one it loaded before")
        line = [l for l in a.stderr().splitlines() if "no longer loads" in l][-1]
        assert a.config in line and says in line, (says, line)
        # still running, on the old configuration (the command finds the
        # socket by -S: it cannot read the broken file either)
        res = helpers.run_certsync(a.binary, ["-S", a.control_socket, "status"])
        assert res.rc == 0, res.describe()
        st = res.data
        assert (st["node"], st["hostname"], st["seq"]) == (before["node"], before["hostname"],
                                                           before["seq"])
    helpers.write(a.config, good.replace("log_level = info", "log_level = debug"))
    hup(a, "[node] log_level: info -> debug (applied)")
    helpers.write(a.config, good.replace("log_level = info", "log_level = debug"))
    hup(a, "read again: nothing changed")


def sighup_blocked(pid):
    """Whether the process holds SIGHUP blocked (SigBlk in /proc), as the
    agent does until it can read its file again."""
    for line in open("/proc/%d/status" % pid):
        if line.startswith("SigBlk:"):
            return int(line.split()[1], 16) & (1 << (signal.SIGHUP - 1)) != 0
    return False


def test_sighup_during_start_up_waits_for_the_agent(configured_agent):
    """A SIGHUP while the agent still derives the cluster key (a service
    manager's reload right after a start) neither ends it nor is lost: it
    reloads the file once the agent runs."""
    agent = configured_agent(start=False)
    agent.start(wait=False)
    # Sent within the key derivation, which takes far longer than 0.1 s;
    # the wait only keeps the signal off the moments before main().
    deadline = time.monotonic() + 0.1
    while time.monotonic() < deadline and not sighup_blocked(agent.pid):
        time.sleep(0.002)
    os.kill(agent.pid, signal.SIGHUP)
    agent.wait_ready()
    wait_for("the held SIGHUP to reload the file",
             lambda: "read again: nothing changed" in agent.stderr(), timeout=20)
    assert agent.running
    assert agent.cli("status", check=0).rc == 0
