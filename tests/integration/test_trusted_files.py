"""Files the agent trusts, each planted by someone who should not be able to
steer it: a symlink at DATA_DIR/lock, a data_dir others may write, a
control_socket path naming a regular file, passphrase files others may read
(or a symlink to one, or a FIFO that would hang start-up), a NUL byte in the
passphrase or in a configuration value.  Each is refused at start with exit
2 and a message that names the file and the fix, and nothing is written,
overwritten or deleted.  Configuration lines up to 4,096 characters (long
paths) work; a longer line is refused by its number."""

import os
import stat

from helpers import write
from test_config import has_line, nothing_written, run_agent_expect_exit


def refused(a, words, timeout=15):
    rc, err = run_agent_expect_exit(a, timeout)
    assert rc == 2, "exit %s, expected 2; stderr:\n%s" % (rc, err)
    for w in words:
        assert w.lower() in err.lower(), "%r not in the message:\n%s" % (w, err)
    return err


def test_lock_symlink_is_not_followed(agent_factory, tmp_path):
    a = agent_factory(start=False)
    victim = write(str(tmp_path / "victim"), "precious\n")
    os.makedirs(a.data_dir, mode=0o700)
    os.symlink(victim, os.path.join(a.data_dir, "lock"))
    refused(a, [os.path.join(a.data_dir, "lock"), "symbolic link", "remove"])
    assert open(victim).read() == "precious\n", "the symlink's target was overwritten"


def test_data_dir_writable_by_others(agent_factory):
    a = agent_factory(start=False)
    os.makedirs(a.data_dir)
    os.chmod(a.data_dir, 0o777)
    refused(a, [a.data_dir, "group or others", "chmod go-w"])
    assert nothing_written(a)


def test_control_socket_path_of_a_regular_file_is_kept(agent_factory):
    a = agent_factory(start=False)
    write(a.control_socket, "not a socket\n")
    refused(a, [a.control_socket, "not a socket"])
    assert open(a.control_socket).read() == "not a socket\n", "the file was deleted"


def test_passphrase_file_readable_by_others(agent_factory, tmp_path):
    a = agent_factory(start=False)
    os.chmod(a.passphrase_file, 0o644)
    refused(a, [a.passphrase_file, "group or others", "chmod 600"])
    assert nothing_written(a)
    # a symlink to such a file is judged by the file
    os.chmod(a.passphrase_file, 0o640)
    link = str(tmp_path / "pass-link")
    os.symlink(a.passphrase_file, link)
    write(a.config, a.config_text().replace(a.passphrase_file, link))
    refused(a, [link, "chmod 600"])
    # the file made private, the same link works
    os.chmod(a.passphrase_file, 0o600)
    a.start()
    a.stop()


def test_passphrase_fifo_refused_at_once(agent_factory, tmp_path):
    a = agent_factory(start=False)
    fifo = str(tmp_path / "pass-fifo")
    os.mkfifo(fifo, 0o600)
    write(a.config, a.config_text().replace(a.passphrase_file, fifo))
    refused(a, [fifo, "not a regular file"], timeout=10)
    assert nothing_written(a)


def test_nul_in_passphrase_refused(agent_factory):
    a = agent_factory(start=False)
    write(a.passphrase_file, b"correct horse\x00 battery staple\n", mode=0o600)
    refused(a, [a.passphrase_file, "nul"])
    assert nothing_written(a)


def test_nul_in_config_value_refused(agent_factory):
    a = agent_factory(start=False)
    text = a.config_text().replace("log_level = info", "log_level = info\x00debug")
    write(a.config, text)
    line = text[:text.index("\x00")].count("\n") + 1
    err = refused(a, [a.config, "nul"])
    assert has_line(err, a.config, line), "line %d not named:\n%s" % (line, err)
    assert nothing_written(a)


def test_long_config_lines(agent_factory, tmp_path):
    """A data_dir whose path is about 1,100 characters works (200 was the
    limit: 'cannot parse this line'); a line over 4,096 is refused clearly."""
    deep = str(tmp_path)
    while len(deep) < 1100:
        deep = os.path.join(deep, "d" * 200)
    os.makedirs(deep, mode=0o700)
    a = agent_factory(start=False, data_dir=os.path.join(deep, "data"))
    assert len([ln for ln in a.config_text().splitlines() if len(ln) > 1100]) == 1
    a.start()
    assert a.status()["node"] == "primary"
    a.stop()
    b = agent_factory(start=False)
    text = b.config_text().replace("log_level = info", "log_level = info" + " " * 4100 + "; x")
    write(b.config, text)
    err = refused(b, [b.config, "longer than 4096"])
    line = text[:text.index("log_level")].count("\n") + 1
    assert has_line(err, b.config, line), "line %d not named:\n%s" % (line, err)
    assert nothing_written(b)
