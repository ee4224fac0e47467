"""`certsync import DIR` and imports of many files (issue 15, item 7), and the
limits an import enforces ("Bad input and limits").

A folder's regular files are imported in byte order of their names, not its
subfolders nor its hidden files; the whole command is one change: a bad file
anywhere names itself and stores nothing.  A command whose files do not fit
one control request goes in parts (some files here are padded to 3 MiB, so
the folder holds more than the 48 MiB one request may carry, and the bad file
sits in a later part than the first).  A certificate with more names than the
limit is refused, naming the file and the limit.

The leaves (EC P-256, one name each, issued by one bench CA) come from the
build's `repl-floors gen`, which makes hundreds in a second."""

import os
import shutil
import subprocess

import pytest

import helpers
from helpers import openssl, read, write

BUILD = os.environ.get("CERTSYNC_BUILD", "")
GEN = os.path.join(BUILD, "bench", "repl-floors")
COUNT = 300
PADDED = range(0, COUNT, 15)      # 20 files of 3 MiB: 60 MiB in all
PAD = 3 << 20
BAD = "l000150.5-broken.pem"      # sorts between l000150.pem and l000151.pem
SAN_LIMIT = 1000                  # PKI_MAX_SANS, as the README documents it


@pytest.fixture(scope="module")
def leaves(tmp_path_factory):
    """{name: path} of COUNT leaf + key PEM files, and the folder of them."""
    if not os.access(GEN, os.X_OK):
        pytest.fail("%s is not built (CERTSYNC_BUILD=%r)" % (GEN, BUILD), pytrace=False)
    work = str(tmp_path_factory.mktemp("bulk"))
    out = os.path.join(work, "gen")
    subprocess.run([GEN, "gen", "--out", out, "--count", str(COUNT), "--sans", "1"],
                   check=True, stdout=subprocess.PIPE, timeout=300)
    os.unlink(os.path.join(out, "ca.pem"))  # the CA's key stays out of the folder
    names = sorted(f for f in os.listdir(out) if f.endswith(".pem"))
    assert len(names) == COUNT
    # PEM text before the first BEGIN line is skipped by every reader
    pad = ("# padding: this file is large so that the folder outgrows one request\n" *
           (PAD // 72)).encode()
    for i in PADDED:
        p = os.path.join(out, names[i])
        write(p, pad + read(p))
    return out, names


def folder_copy(leaves, dest):
    src, names = leaves
    shutil.copytree(src, dest)
    return str(dest)


def test_a_bad_file_in_the_middle_of_a_folder_stores_nothing(configured_agent, leaves,
                                                             tmp_path):
    a = configured_agent()
    d = folder_copy(leaves, tmp_path / "certs")
    write(os.path.join(d, BAD), b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
                               b"-----END CERTIFICATE-----\n")
    before = a.snapshot()
    res = a.cli("import", d, timeout=600)
    assert res.rc == 1, res.describe()
    assert BAD in res.message, res.describe()
    after = a.snapshot()
    assert after == before
    assert after["counts"]["certificates"] == 0


def test_a_folder_is_imported_whole_and_served(configured_agent, leaves, tmp_path):
    port = helpers.free_port()
    a = configured_agent(hostname="l000001.bench.test",
                         node_extra="tls_listen = 127.0.0.1:%d\n" % port)
    d = folder_copy(leaves, tmp_path / "certs")
    # neither hidden files nor subfolders are read: both would be refused
    write(os.path.join(d, ".notes"), b"not a certificate\n")
    os.mkdir(os.path.join(d, "old"))
    write(os.path.join(d, "old", "junk.pem"), b"not a certificate either\n")
    res = a.cli("import", d, "--wait", "none", timeout=600)
    assert res.rc == 0, res.describe()
    items = res.data["items"]
    added = [i for i in items if i["action"] == "added"]
    assert len(added) == COUNT
    # in byte order of the names
    files = [i["file"] for i in added]
    assert files == sorted(files) and files[0].endswith("l000001.pem")
    certs = a.cli("cert", "list", check=0, timeout=300).data["certificates"]
    assert len(certs) == COUNT and all(c["has_key"] for c in certs)
    by_name = {c["sans"][0]: c["id"] for c in certs}
    for n in (1, 77, 150, 151, 299, COUNT):
        host = "l%06d.bench.test" % n
        helpers.wait_for("%s served" % host,
                         lambda: helpers.s_client_id(port, host) == by_name[host], timeout=30)
    # a second time: everything is there already, nothing changes
    st = a.status()
    res = a.cli("import", d, timeout=600)
    assert res.rc == 0 and res.data["changed"] is False, res.describe()
    assert a.status()["seq"] == st["seq"]


def san_cert(d, n):
    key, crt = os.path.join(d, "many%d.key" % n), os.path.join(d, "many%d.pem" % n)
    sans = ",".join("DNS:n%04d.many.example.test" % i for i in range(n))
    cnf = write(os.path.join(d, "many%d.cnf" % n),
                "[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nCN=many.example.test\n"
                "[ext]\nsubjectAltName=%s\nbasicConstraints=critical,CA:FALSE\n" % sans)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", crt, "-days", "30", "-config", cnf, "-extensions", "ext")
    write(crt, read(key) + read(crt))
    return crt


def test_a_certificate_over_the_san_limit_is_refused(configured_agent, tmp_path):
    a = configured_agent()
    over = san_cert(str(tmp_path), SAN_LIMIT + 1)
    before = a.snapshot()
    res = a.cli("import", over)
    assert res.rc == 1, res.describe()
    msg = res.message
    assert over in msg and "1001 names" in msg and "limit of 1000" in msg, msg
    assert a.snapshot() == before
    at = san_cert(str(tmp_path), SAN_LIMIT)
    res = a.cli("import", at)
    assert res.rc == 0, res.describe()
    assert len(a.cli("cert", "list", check=0).data["certificates"][0]["sans"]) == SAN_LIMIT


def test_files_beyond_one_request_are_imported_in_one_command(configured_agent, leaves):
    """The files named one by one: 60 MiB, more than one control request
    holds (48 MiB); the command still stores every one, as one change."""
    a = configured_agent()
    src, names = leaves
    res = a.cli("import", *[os.path.join(src, n) for n in names], "--wait", "none", timeout=600)
    assert res.rc == 0, res.describe()
    assert sum(i["action"] == "added" for i in res.data["items"]) == COUNT
    st = a.status()
    assert st["counts"]["certificates"] == COUNT and st["digest_ok"]


LARGE = 1500  # more than IMPORT_LOOP_CERTS: written from the agent's worker


@pytest.fixture(scope="module")
def large_folder(tmp_path_factory):
    out = os.path.join(str(tmp_path_factory.mktemp("large")), "gen")
    subprocess.run([GEN, "gen", "--out", out, "--count", str(LARGE), "--sans", "1"],
                   check=True, stdout=subprocess.PIPE, timeout=300)
    os.unlink(os.path.join(out, "ca.pem"))
    return out


def test_a_large_folder_is_written_off_the_loop(configured_agent, large_folder):
    port = helpers.free_port()
    a = configured_agent(hostname="l000001.bench.test",
                         node_extra="tls_listen = 127.0.0.1:%d\n" % port)
    # a rule refused while the worker writes: nothing stored, and the store
    # takes changes again afterwards
    before = a.snapshot()
    res = a.cli("import", large_folder, "--name", "one", timeout=600)
    assert res.rc == 1 and "--name" in res.message and "l000002.pem" in res.message, \
        res.describe()
    assert a.snapshot() == before
    a.cli("cert", "self-signed", "--name", "first", "--country", "GB", "--common-name",
          "l000001.bench.test", check=0)
    # the answer goes to a file: a pipe read only at the end would hold the
    # command once the answer outgrows it
    out = open(os.path.join(os.path.dirname(large_folder), "answer.json"), "wb")
    imp = subprocess.Popen([a.binary, "--json", "-c", a.config, "import", large_folder],
                           stdout=out, stderr=subprocess.PIPE)
    answered = 0
    try:
        while imp.poll() is None:
            if a.cli("status", check=None).rc == 0 and imp.poll() is None:
                answered += 1
        _, err = imp.communicate(timeout=600)
    finally:
        if imp.poll() is None:
            imp.kill()
        out.close()
    assert imp.returncode == 0, err.decode()
    assert answered >= 1
    st = a.status()
    assert st["counts"]["certificates"] == LARGE + 1 and st["digest_ok"]
    certs = a.cli("cert", "list", "--name", "l000777.bench.test", check=0).data["certificates"]
    helpers.wait_for("l000777 served", lambda: helpers.s_client_id(
        port, "l000777.bench.test") == certs[0]["id"], timeout=30)
