"""Configuration errors: `certsync agent -c FILE` with a broken file stops at
once with exit 2, names the file, the line and what to write instead, and
creates nothing in data_dir."""

import os
import re
import subprocess

import pytest

from helpers import run_certsync, write

# Lines of helpers.Agent.config_text():
#  1 # comment   2 [node]   3 name   4 role   5 hostname   6 data_dir
#  7 control_socket   8 passphrase_file   9 log_level   10 (blank)
#  11 [cluster]   12 site_hostname   13 (blank)   14 [peer backup]   15 role   16 hostname


def lines_of(agent):
    return agent.config_text().splitlines()


def run_agent_expect_exit(agent, timeout=15):
    """Starts the agent and waits (bounded) for it to exit; returns (rc, stderr)."""
    agent.start(wait=False)
    rc = agent.wait_exit(timeout)
    if rc is None:
        agent.stop()
        pytest.fail("agent kept running with a broken configuration:\n" + agent.config_text())
    return rc, agent.stderr()


def nothing_written(agent):
    if not os.path.exists(agent.data_dir):
        return True
    files = [os.path.join(r, f) for r, _, fs in os.walk(agent.data_dir) for f in fs]
    return not files


def has_line(stderr, config_path, line):
    """The line number appears as a number of its own (the path removed)."""
    text = stderr.replace(config_path, "<config>")
    return re.search(r"(?<![\d.])%d(?!\d)" % line, text) is not None


CASES = {
    # id: (edit(lines) -> lines, must-appear words (case-insensitive), line or None)
    "unknown-key": (lambda L: L[:5] + ["colour = blue"] + L[5:], ["colour"], 6),
    "unknown-section": (lambda L: L + ["", "[nodes]", "name = other"], ["nodes"], (18, 19)),
    "missing-hostname": (lambda L: L[:4] + L[5:], ["hostname"], None),
    "missing-site-hostname": (lambda L: L[:11] + L[12:], ["site_hostname"], None),
    "missing-peer-hostname": (lambda L: L[:15], ["hostname"], None),
    "bad-role": (lambda L: L[:3] + ["role = master"] + L[4:], ["master", "primary", "backup", "traffic"], 4),
    "bad-peer-role": (lambda L: L[:14] + ["role = boss"] + L[15:], ["boss", "primary", "backup", "traffic"], 15),
    "bad-log-level": (lambda L: L[:8] + ["log_level = loud"] + L[9:], ["loud", "debug", "info"], 9),
    "not-ini": (lambda L: L[:5] + ["this line has no equals sign"] + L[5:], [], 6),
    # a key given twice must not silently override the first (here: primary → backup)
    "duplicate-node-key": (lambda L: L[:4] + ["role = backup"] + L[4:], ["role"], 5),
    # the same peer under a header spelled with two spaces (found by fuzz_config:
    # the second value won and the first leaked)
    "duplicate-peer-key-other-header": (
        lambda L: L + ["", "[peer  backup]", "hostname = other.example.test"],
        ["peer backup", "hostname", "twice"], 19),
    "relative-data-dir": (lambda L: L[:5] + ["data_dir = data"] + L[6:], ["data_dir", "absolute"], None),
    "bad-hostname": (lambda L: L[:4] + ["hostname = not a host!"] + L[5:], ["hostname", "letters"], None),
    "wildcard-hostname": (lambda L: L[:4] + ["hostname = *.example.test"] + L[5:], ["hostname", "wildcard"], None),
    "bad-site-hostname": (lambda L: L[:11] + ["site_hostname = support..example.test"] + L[12:],
                          ["site_hostname", "label"], None),
    "bad-peer-hostname": (lambda L: L[:15] + ["hostname = -backup.example.test"], ["peer backup", "'-'"], None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_exit_2_names_file_line_and_fix(agent_factory, case):
    edit, words, line = CASES[case]
    a = agent_factory(start=False)
    write(a.config, "\n".join(edit(lines_of(a))) + "\n")
    rc, err = run_agent_expect_exit(a)
    assert rc == 2, "exit %s, expected 2; stderr:\n%s" % (rc, err)
    assert a.config in err or os.path.basename(a.config) in err, "file not named:\n" + err
    for w in words:
        assert w.lower() in err.lower(), "%r not in message:\n%s" % (w, err)
    if line is not None:
        lines = line if isinstance(line, tuple) else (line,)
        assert any(has_line(err, a.config, n) for n in lines), "line %s not named:\n%s" % (line, err)
    assert nothing_written(a), "a broken configuration created files in data_dir"


def test_missing_passphrase_file(agent_factory):
    a = agent_factory(start=False)
    missing = os.path.join(a.workdir, "no-such-passphrase")
    write(a.config, a.config_text().replace(a.passphrase_file, missing))
    rc, err = run_agent_expect_exit(a)
    assert rc == 2, err
    assert missing in err, "the passphrase file is not named:\n" + err
    # like every configuration error: the configuration file and the line of
    # passphrase_file (8) are named too
    assert a.config in err or os.path.basename(a.config) in err, "config file not named:\n" + err
    assert has_line(err.replace(missing, "<passphrase>"), a.config, 8), "line 8 not named:\n" + err
    assert nothing_written(a)


def test_passphrase_file_is_a_directory(agent_factory):
    a = agent_factory(start=False)
    d = os.path.join(a.workdir, "secrets-dir")
    os.makedirs(d)
    write(a.config, a.config_text().replace(a.passphrase_file, d))
    rc, err = run_agent_expect_exit(a)
    assert rc == 2, err
    assert d in err, err
    assert nothing_written(a)


def test_missing_config_file(certsync_bin, tmp_path):
    missing = str(tmp_path / "nowhere.conf")
    p = subprocess.run([certsync_bin, "agent", "-c", missing], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    assert p.returncode == 2
    assert missing in p.stderr.decode()


def test_command_with_missing_config_file(certsync_bin, tmp_path):
    missing = str(tmp_path / "nowhere.conf")
    r = run_certsync(certsync_bin, ["-c", missing, "status"], json=False)
    assert r.rc == 2, r.describe()
    assert missing in r.stderr


def test_command_usage_errors(certsync_bin, tmp_path):
    for args in (["frobnicate"], ["cert", "frobnicate"], ["cert", "show"], ["status", "--no-such-option"]):
        r = run_certsync(certsync_bin, ["-S", str(tmp_path / "x.sock")] + args, json=False)
        assert r.rc == 2, r.describe()
        assert r.stderr.strip(), r.describe()


@pytest.mark.parametrize("cmd", [["status"], ["cert", "list"], ["cert", "show"], ["cert", "delete"],
                                 ["cert", "default"], ["cert", "self-signed"], ["csr", "create"],
                                 ["csr", "list"], ["csr", "show"], ["import"], ["export"], ["verify"],
                                 ["verify", "--cluster"], ["keygen"], ["promote"], ["diverged", "list"],
                                 ["diverged", "apply"], ["diverged", "delete"], ["diverged", "prune"],
                                 ["cluster", "init"], ["agent"]])
def test_every_command_has_help(certsync_bin, cmd):
    r = run_certsync(certsync_bin, cmd + ["--help"], json=False)
    assert r.rc == 0, r.describe()
    assert (r.stdout + r.stderr.encode()).strip(), r.describe()


GROUPS = {"cert": ["cert list", "cert show", "cert delete", "cert default", "cert self-signed"],
          "csr": ["csr create", "csr list", "csr show"],
          "cluster": ["cluster init"],
          "diverged": ["diverged list", "diverged apply", "diverged delete", "diverged prune"]}


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_group_word_lists_its_commands(certsync_bin, tmp_path, group):
    sock = ["-S", str(tmp_path / "x.sock")]
    r = run_certsync(certsync_bin, sock + [group, "--help"], json=False)
    assert r.rc == 0, r.describe()
    out = r.stdout.decode()
    assert all(c in out for c in GROUPS[group]), r.describe()
    assert "unknown command" not in out + r.stderr
    for args in ([group], [group, "frobnicate"]):
        r = run_certsync(certsync_bin, sock + args, json=False)
        assert r.rc == 2, r.describe()
        assert all(c in r.stderr for c in GROUPS[group]), r.describe()
        assert not r.stdout.strip(), r.describe()
    assert "frobnicate" in r.stderr


@pytest.mark.parametrize("args, flag, value", [
    (["verify", "--cert"], "--cert", "ID"),
    (["verify", "--cert", "--cluster"], "--cert", "ID"),
    (["cert", "self-signed", "--country", "GB", "--common-name", "x.example.test", "--name"],
     "--name", "NAME"),
    (["cert", "self-signed", "--name", "--country", "GB", "--common-name", "x.example.test"],
     "--name", "NAME"),
    (["csr", "create", "--name", "x", "--common-name", "x.example.test", "--country"], "--country", "CC"),
    (["cert", "self-signed", "--name", "x", "--country", "GB", "--common-name", "x.example.test", "--key"],
     "--key", "ec:p256"),
    (["import", "a.pem", "--password-file"], "--password-file", "F"),
    (["import", "a.pem", "--name"], "--name", "NAME"),
    (["export", "0123456789ab", "--format"], "--format", "pem|der|p7b|p12"),
    (["export", "0123456789ab", "-o"], "-o", "FILE"),
    (["cert", "delete", "0123456789ab", "--wait"], "--wait", "backup|all|none"),
    (["cluster", "init", "d", "--site"], "--site", "HOST"),
])
def test_a_flag_without_its_value_is_named(certsync_bin, tmp_path, args, flag, value):
    r = run_certsync(certsync_bin, ["-S", str(tmp_path / "x.sock")] + args)
    assert r.rc == 2, r.describe()
    assert "%s needs a value (%s" % (flag, value) in r.message, r.describe()
    assert "unknown flag" not in r.message, r.describe()
    assert r.data["error"]["code"] == "usage", r.describe()


def test_an_unknown_flag_is_named(certsync_bin, tmp_path):
    r = run_certsync(certsync_bin, ["-S", str(tmp_path / "x.sock"), "verify", "--colour"])
    assert r.rc == 2 and "unknown flag --colour" in r.message, r.describe()


CHANGES = [["cert", "delete"], ["cert", "default"], ["cert", "self-signed"], ["csr", "create"],
           ["import"], ["diverged", "apply"]]


@pytest.mark.parametrize("cmd", CHANGES, ids=" ".join)
def test_every_change_shows_wait_in_its_usage(certsync_bin, cmd):
    r = run_certsync(certsync_bin, cmd + ["--help"], json=False)
    assert r.rc == 0 and b"--wait backup|all|none" in r.stdout, r.describe()


@pytest.mark.parametrize("cmd", [["status"], ["cert", "list"], ["verify"]], ids=" ".join)
def test_wait_on_a_command_that_changes_nothing_is_a_usage_error(certsync_bin, tmp_path, cmd):
    r = run_certsync(certsync_bin, ["-S", str(tmp_path / "x.sock")] + cmd + ["--wait", "all"])
    assert r.rc == 2 and "--wait applies to changes only" in r.message, r.describe()


def test_valid_config_with_comments_starts(agent_factory):
    """The README's own example style (inline `;` comments) is accepted."""
    a = agent_factory(start=False)
    text = a.config_text().replace("role = primary", "role = primary                  ; primary | backup | traffic")
    text = text.replace("[peer backup]", "[peer backup]                   ; one section per other node")
    write(a.config, text)
    a.start()
    st = a.status()
    assert st["role"] == "primary" and st["node"] == "primary"
