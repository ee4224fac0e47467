"""The cluster passphrase: an agent restarted with another passphrase says
"cluster passphrase does not match", exits non-zero and writes nothing; with
the right one it finds the store exactly as it was, keys still usable."""

import hashlib
import os

from helpers import write


def store_files(agent):
    """sha256 of every store file (lock files aside: opening may touch them)."""
    return {os.path.relpath(p, agent.data_dir): hashlib.sha256(b).hexdigest()
            for p, b in agent.data_files().items() if "lock" not in os.path.basename(p)}


def test_wrong_passphrase_writes_nothing(agent_factory, pki, tmp_path):
    a = agent_factory(passphrase="the right cluster passphrase")
    a.cli("import", pki.ec_wild.file("p12"), "--password-file", pki.password_file, check=0)
    a.cli("cert", "self-signed", "--name", "ss", "--country", "GB", "--common-name",
          "primary.example.test", check=0)
    before = a.snapshot()
    assert a.stop() == 0, a.stderr()
    files = store_files(a)
    assert files, "no store files under data_dir"

    a.set_passphrase("a wrong passphrase")
    a.start(wait=False)
    rc = a.wait_exit(60)
    if rc is None:
        a.stop()
        raise AssertionError("the agent kept running with a wrong passphrase:\n" + a.stderr())
    err = a.stderr()
    assert rc == 2, "exit %s\n%s" % (rc, err)  # passphrase_file holds another: configuration
    assert "cluster passphrase does not match" in err.lower(), err
    assert "a wrong passphrase" not in err and "the right cluster passphrase" not in err
    assert store_files(a) == files, "the store files changed after a start with a wrong passphrase"

    a.set_passphrase("the right cluster passphrase")
    a.start()
    after = a.snapshot()
    assert after == before
    assert after["digest_ok"] is True
    # the sealed keys still open: a p12 export carries the key
    pw = write(str(tmp_path / "exp"), "x-export-pass\n", mode=0o600)
    out = str(tmp_path / "out.p12")
    a.cli("export", pki.ec_wild.id, "--format", "p12", "--passphrase-file", pw, "-o", out, check=0)
    assert os.path.getsize(out) > 0


def test_passphrase_is_the_first_line(agent_factory):
    a = agent_factory(passphrase="first line passphrase")
    a.cli("cert", "self-signed", "--name", "ss", "--country", "GB", "--common-name",
          "primary.example.test", check=0)
    before = a.snapshot()
    assert a.stop() == 0
    write(a.passphrase_file, "first line passphrase\nsecond line is ignored\n", mode=0o600)
    a.start()
    assert a.snapshot() == before
