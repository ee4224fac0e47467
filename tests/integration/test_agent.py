"""The agent process: foreground, logs to stderr, owns its data_dir, listens on
a 0600 UNIX socket, stops cleanly on SIGTERM and SIGINT, survives a restart;
the command finds it with -c, -S or $CERTSYNC_CONFIG."""

import os
import re
import signal
import stat

from helpers import run_certsync

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def test_socket_and_data_dir_permissions_and_status(agent_factory):
    a = agent_factory()
    mode = stat.S_IMODE(os.stat(a.control_socket).st_mode)
    assert stat.S_ISSOCK(os.stat(a.control_socket).st_mode)
    assert mode == 0o600, "control socket mode %o, expected 600" % mode
    dmode = stat.S_IMODE(os.stat(a.data_dir).st_mode)
    assert dmode == 0o700, "data_dir mode %o, expected 700" % dmode
    st = a.status()
    assert st["node"] == "primary"
    assert st["role"] == "primary"
    assert st["hostname"] == "primary.example.test"
    assert st["site_hostname"] == "support.example.test"
    assert isinstance(st["version"], str) and st["version"]
    assert isinstance(st["uptime_seconds"], (int, float)) and st["uptime_seconds"] >= 0
    assert isinstance(st["epoch"], int) and isinstance(st["seq"], int)
    assert HEX64.match(st["digest"]), st["digest"]
    assert st["digest_ok"] is True and st["digest"] == st["digest_recomputed"]
    assert st["default"] is None
    assert st["counts"] == {"certificates": 0, "cas": 0, "requests": 0, "pending_keys": 0}
    assert a.stderr().strip(), "the agent logs nothing to stderr at log_level info"


def test_sigterm_and_sigint_stop_cleanly_and_restart_keeps_the_store(agent_factory):
    a = agent_factory()
    a.cli("cert", "self-signed", "--name", "one", "--country", "GB",
          "--common-name", "support.example.test", "--san", "*.example.test", check=0)
    before = a.snapshot()
    assert a.stop(signal.SIGTERM) == 0, a.stderr()
    a.start()
    assert a.snapshot() == before
    assert a.stop(signal.SIGINT) == 0, a.stderr()
    a.start()
    assert a.snapshot() == before


def test_restart_after_sigkill(agent_factory):
    """A stale socket file and LMDB lock left by a crash do not stop a restart."""
    a = agent_factory()
    a.cli("cert", "self-signed", "--name", "k", "--country", "GB",
          "--common-name", "support.example.test", "--san", "*.example.test", check=0)
    before = a.snapshot()
    a.kill()
    a.start()
    after = a.snapshot()
    assert after == before
    assert after["digest_ok"] is True


def test_second_agent_on_same_data_dir_is_refused(agent_factory):
    a = agent_factory()
    a.cli("cert", "self-signed", "--name", "x", "--country", "GB",
          "--common-name", "support.example.test", check=0)
    before = a.snapshot()
    # same data_dir, its own control socket: only the data_dir is shared
    b = agent_factory(start=False, name="intruder", data_dir=a.data_dir)
    b.start(wait=False)
    rc = b.wait_exit(30)
    if rc is None:
        b.stop()
        raise AssertionError("a second agent on the same data_dir kept running:\n" + b.stderr())
    assert rc == 1, "exit %s\n%s" % (rc, b.stderr())  # refused: the data_dir is held
    err = b.stderr().lower()
    assert "in use" in err, b.stderr()
    assert a.data_dir in b.stderr(), "the data_dir is not named:\n" + b.stderr()
    assert a.running
    assert a.snapshot() == before


def test_command_finds_agent_by_socket_and_env(agent_factory, certsync_bin):
    a = agent_factory()
    r = run_certsync(certsync_bin, ["-S", a.control_socket, "status"], check=0)
    assert r.data["node"] == "primary"
    env = dict(os.environ, CERTSYNC_CONFIG=a.config)
    r = run_certsync(certsync_bin, ["status"], check=0, env=env)
    assert r.data["node"] == "primary"
    # --json after the command
    r = run_certsync(certsync_bin, ["-c", a.config, "status", "--json"], json=False, check=0)
    import json
    assert json.loads(r.stdout.decode())["node"] == "primary"
    # human output without --json is not empty and names the node
    r = a.cli("status", json=False, check=0)
    assert b"primary" in r.stdout


def test_command_without_agent(certsync_bin, tmp_path):
    sock = str(tmp_path / "nobody.sock")
    r = run_certsync(certsync_bin, ["-S", sock, "status"])
    assert r.rc == 1, r.describe()  # the request could not be made; the usage was right
    assert sock in r.stderr, r.describe()
    assert isinstance(r.data, dict) and "error" in r.data, r.describe()


def test_sigterm_with_busy_and_idle_clients(agent_factory):
    """SIGTERM while a client holds half a request and another keeps making
    certificates: exit 0, and every acknowledged change survives."""
    import socket
    import subprocess
    import threading

    a = agent_factory()
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle.settimeout(10)
    idle.connect(a.control_socket)
    idle.sendall(b'{"cmd": "sta')
    acked, failures, stop = [], [], threading.Event()
    # set just before SIGTERM: a command cut short by the shutdown after it
    # is the case under test, not a failure (the agent process stays alive
    # while it shuts down, so its liveness cannot tell)
    terminating = threading.Event()

    def busy():
        # an exception here would end only this thread: failures carries
        # what went wrong to the test's own assertions
        try:
            for i in range(200):
                if stop.is_set():
                    return
                p = subprocess.run([a.binary, "-c", a.config, "--json", "cert", "self-signed",
                                    "--name", "busy%d" % i, "--country", "GB", "--common-name",
                                    "support.example.test"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
                if p.returncode == 0:
                    import json
                    acked.append(json.loads(p.stdout)["certificate"]["id"])
                elif not terminating.is_set():
                    failures.append("busy%d: exit %d: %s" % (i, p.returncode, p.stderr.decode()))
                    return
        except Exception as e:  # noqa: BLE001 - any failure must reach the test
            failures.append("busy client: %r" % e)

    t = threading.Thread(target=busy)
    t.start()
    for _ in range(600):                      # bounded: at most ~60 s
        if len(acked) >= 5 or not t.is_alive():
            break
        t.join(0.1)
    if failures or len(acked) < 5:
        stop.set()  # the test fails below: the thread ends with it
    assert not failures, failures
    assert len(acked) >= 5, "the busy client got %d changes acknowledged before SIGTERM" % len(acked)
    terminating.set()
    rc = a.stop(signal.SIGTERM, timeout=30)
    stop.set()
    t.join(120)
    idle.close()
    assert not t.is_alive()
    assert not failures, failures
    assert rc == 0, "SIGTERM with clients connected: exit %r\n%s" % (rc, a.stderr()[-2000:])
    a.start()
    st = a.status()
    assert st["digest_ok"] is True
    ids = set(a.certs())
    assert set(acked) <= ids, "acknowledged certificates lost after SIGTERM"
