"""The agent as a systemd service (dist/certsync.service).

Readiness (Type=notify): a datagram socket the test binds stands in for the
service manager's NOTIFY_SOCKET.

systemd takes READY=1 as "the start is complete": `systemctl start` returns
then, and whatever is ordered after certsync.service starts.  So READY=1
must come only once `certsync status` answers, and from the agent's own PID
(NotifyAccess=main, the default, ignores any other sender).

Capabilities: the unit's bounding set is empty, so a tls_listen port below
1024 fails there; the agent is started here with CAP_NET_BIND_SERVICE
dropped from its bounding set, as the unit leaves it, and must name the
drop-in that grants it."""

import ctypes
import os
import signal
import socket
import struct
import time

import pytest

import helpers


def notify_socket():
    path = os.path.join(helpers.short_tmpdir(), "notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    return s, path


def receive(s, deadline):
    """(message, sender's pid), or None at the deadline."""
    s.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        data, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    except socket.timeout:
        return None
    pid = None
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", payload[:12])[0]
    return data.decode(), pid


def fields(message):
    return dict(line.split("=", 1) for line in message.splitlines() if "=" in line)


def test_ready_only_once_the_control_socket_answers_and_stopping_on_sigterm(agent_factory,
                                                                            monkeypatch):
    s, path = notify_socket()
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    agent = agent_factory(start=False)
    agent.start(wait=False)
    deadline = time.monotonic() + 60
    got = receive(s, deadline)
    assert got is not None, "no READY=1 within 60 s:\n" + agent.stderr()[-4000:]
    message, pid = got
    # At the moment READY=1 arrives, the control socket answers.
    answers = os.path.exists(agent.control_socket) and helpers.socket_accepts(agent.control_socket)
    status = agent.cli("status")
    assert fields(message).get("READY") == "1", message
    assert answers, "READY=1 arrived before the control socket accepted"
    assert status.rc == 0 and status.data["node"] == "primary", status.describe()
    assert pid == agent.pid
    assert "primary (primary, primary.example.test)" in fields(message).get("STATUS", "")

    os.kill(agent.pid, signal.SIGTERM)
    got = receive(s, time.monotonic() + 30)
    assert got is not None, "no STOPPING=1 after SIGTERM:\n" + agent.stderr()[-4000:]
    assert fields(got[0]).get("STOPPING") == "1" and got[1] == agent.pid, got
    assert agent.wait_exit(30) == 0  # not stop(): a second SIGTERM would race the first
    assert receive(s, time.monotonic() + 0.2) is None  # nothing after STOPPING=1
    s.close()


def test_unreachable_notify_socket_is_logged_and_the_agent_runs(agent_factory, monkeypatch):
    missing = os.path.join(helpers.short_tmpdir(), "nobody-listens")
    monkeypatch.setenv("NOTIFY_SOCKET", missing)
    agent = agent_factory()
    assert agent.cli("status").rc == 0
    helpers.wait_for("the warning", lambda: "cannot tell the service manager 'READY=1'"
                     in agent.stderr())
    assert "check NOTIFY_SOCKET" in agent.stderr()


PR_CAPBSET_DROP = 24
CAP_NET_BIND_SERVICE = 10


def drop_net_bind_service():
    """preexec_fn: the child and what it executes lose CAP_NET_BIND_SERVICE."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_NET_BIND_SERVICE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_port_below_1024_without_the_capability_names_the_drop_in(agent_factory):
    if int(open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read()) <= 999:
        pytest.skip("this machine lets anyone bind port 999")
    agent = agent_factory(start=False)
    text = agent.config_text().replace("[cluster]", "tls_listen = 127.0.0.1:999\n\n[cluster]", 1)
    helpers.write(agent.config, text)
    agent.preexec = drop_net_bind_service
    agent.start(wait=False)
    assert agent.wait_exit(60) == 1
    err = agent.stderr()
    assert "tls_listen 127.0.0.1:999: Permission denied; a port below 1024 needs " \
        "CAP_NET_BIND_SERVICE" in err, err
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE in a drop-in (systemctl edit certsync)" in err
    assert not os.path.exists(agent.control_socket) or not helpers.socket_accepts(
        agent.control_socket)
