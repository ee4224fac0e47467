"""Bad input, each with real data: a clear error naming the file and the
problem, exit 1, and nothing changed in the store (status position, digest,
counts, default, every record) — or, for the cases the README keeps (a key that
matches nothing, an expired certificate), stored and said so.  (A PKCS#12
holding no private key imports its certificates: test_operator_intent.)"""

import json
import os
import socket
import time

import pytest

from helpers import openssl, write


@pytest.fixture(scope="module")
def agent(module_agent_factory, pki):
    a = module_agent_factory()
    # something in the store, so "nothing changed" means something
    a.cli("import", pki.rsa_multi.file("p12"), "--password-file", pki.password_file, check=0)
    a.cli("cert", "default", pki.rsa_multi.id, check=0)
    return a


def refused(agent, files, word=None, password_file=None, code="bad-input", name_file=True):
    before = agent.snapshot()
    args = ["import"] + list(files)
    if password_file:
        args += ["--password-file", password_file]
    r = agent.cli(*args)
    assert r.rc == 1, r.describe()
    assert isinstance(r.data, dict) and isinstance(r.data.get("error"), dict), r.describe()
    if code is not None:
        assert r.data["error"].get("code") == code, r.describe()
    msg = r.message.lower()
    if word:
        assert word.lower() in msg, "%r not in the message\n%s" % (word, r.describe())
    if name_file:
        assert any(os.path.basename(f).lower() in msg for f in files), \
            "the file is not named\n" + r.describe()
    assert r.stderr.strip(), "nothing on stderr\n" + r.describe()
    assert agent.running, "the agent died:\n" + agent.stderr()[-3000:]
    assert agent.snapshot() == before, "the store changed after a refused import"
    return r


def test_empty_file(agent, pki):
    refused(agent, [pki.empty], "empty")


def test_missing_file(agent, pki, tmp_path):
    """A file that cannot be read is bad input, like one that is empty."""
    refused(agent, [str(tmp_path / "nowhere.pem")], "cannot read")


def test_missing_password_file(agent, pki, tmp_path):
    refused(agent, [pki.rsa_multi.file("p12")], "cannot read",
            password_file=str(tmp_path / "nowhere.txt"), name_file=False)


def test_ten_megabytes_of_random_bytes(agent, pki):
    refused(agent, [pki.random_10mb])


def test_truncated_der(agent, pki):
    refused(agent, [pki.truncated_der])


def test_pem_with_corrupted_body(agent, pki):
    refused(agent, [pki.corrupt_pem])


def test_pem_with_invalid_base64(agent, pki):
    refused(agent, [pki.corrupt_pem_chars])


def test_pem_label_that_is_not_utf8_still_gets_an_answer(agent, tmp_path):
    """The error quotes the PEM label, here bytes that are not UTF-8 (found by
    fuzz_control): the answer must still reach the client, not a closed
    connection."""
    f = write(tmp_path / "latin1-label.pem", b"-----BEGIN CERTIFICAT\xc9-----\nMIIB\n")
    r = refused(agent, [f], "no END line")
    assert "CERTIFICAT?" in r.message, r.describe()


@pytest.mark.parametrize("which", ["csr_pem", "csr_der"])
def test_csr_given_to_import(agent, pki, which):
    refused(agent, [getattr(pki, which)], "certificate signing request")


def test_pkcs12_wrong_password(agent, pki):
    refused(agent, [pki.ec_wild.file("p12")], "wrong password", password_file=pki.wrong_password_file)


def test_pkcs12_without_password(agent, pki):
    refused(agent, [pki.ec_wild.file("p12")], "password")


def test_encrypted_pkcs8_wrong_password(agent, pki):
    refused(agent, [pki.ec_wild.file("cert.pem"), pki.ec_wild.file("key.p8enc")], "password",
            password_file=pki.wrong_password_file)


@pytest.mark.parametrize("which, word", [("dsa_key", "dsa"), ("dsa_key_trad", "dsa"),
                                         ("ed25519_key", "ed25519"), ("ed25519_der", "ed25519"),
                                         ("ed25519_p12", "ed25519"), ("rsa1024_key", "rsa")])
def test_unsupported_keys_refused_and_named(agent, pki, which, word):
    pw = pki.password_file if which.endswith("p12") else None
    refused(agent, [getattr(pki, which)], word, password_file=pw)


def test_certificate_with_no_san(agent, pki):
    refused(agent, [pki.nosan.cert, pki.nosan.file("key.pem")], "subjectaltname")


def test_one_bad_file_stores_nothing_of_the_command(agent, pki):
    """A good leaf + key followed by a bad file: none of it is stored."""
    refused(agent, [pki.partial.file("chain.pem"), pki.partial.file("key.pem"), pki.empty],
            name_file=False)
    refused(agent, [pki.elsewhere.file("p12"), pki.csr_pem], "certificate signing request",
            password_file=pki.password_file)
    assert pki.partial.id not in agent.certs() and pki.elsewhere.id not in agent.certs()


def test_certificate_not_matching_pending_request(agent, pki, tmp_path):
    agent.cli("csr", "create", "--name", "mm", "--country", "GB", "--common-name", "mismatch.example.test",
              check=0)
    # the CA answers with a certificate for that host but another key
    d = str(tmp_path)
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", d + "/other.key", "-subj", "/CN=mismatch.example.test", "-out", d + "/other.csr")
    write(d + "/e.ext", "[e]\nsubjectAltName = DNS:mismatch.example.test\nbasicConstraints = CA:FALSE\n")
    openssl("x509", "-req", "-in", d + "/other.csr", "-CA", pki.inter, "-CAkey", pki.inter_key,
            "-days", "60", "-extfile", d + "/e.ext", "-extensions", "e", "-out", d + "/mismatch.pem")
    r = refused(agent, [d + "/mismatch.pem"], "does not match", code=None)
    assert r.data["error"]["code"] in ("bad-input", "refused"), r.describe()
    assert "mismatch.example.test" in r.message or "mm" in r.message, r.describe()


# ---- kept, and said so --------------------------------------------------------

def test_key_matching_nothing_is_kept_pending(agent, pki, tmp_path):
    key = str(tmp_path / "lonely.key")
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    before = agent.status()
    r = agent.cli("import", key, check=0)
    assert r.data["changed"] is True
    assert [(i["action"], i["kind"]) for i in r.data["items"]] == [("pending-key", "key")]
    assert "pending" in (r.data["items"][0]["message"] + r.stderr).lower()
    after = agent.status()
    assert after["counts"]["pending_keys"] == before["counts"]["pending_keys"] + 1
    assert after["counts"]["certificates"] == before["counts"]["certificates"]
    # the same key again: already there
    r = agent.cli("import", key, check=0)
    assert r.data["changed"] is False and r.data["items"][0]["action"] == "exists"
    assert agent.status()["counts"] == after["counts"]


def test_expired_certificate_imported_and_marked(agent, pki):
    r = agent.cli("import", pki.expired.file("cert.pem"), pki.expired.file("key.pem"), check=0)
    assert [i["action"] for i in r.data["items"] if i["id"] == pki.expired.id] == ["added"]
    c = agent.cli("cert", "show", pki.expired.id, check=0).data
    assert "expired" in c["warnings"], c["warnings"]
    assert c["not_after"] == "2021-01-01T00:00:00Z"
    listed = agent.certs()[pki.expired.id]
    assert "expired" in listed["warnings"]


# ---- bad options --------------------------------------------------------------

@pytest.mark.parametrize("cmd", ["csr create", "cert self-signed"])
@pytest.mark.parametrize("opts, word", [
    (["--country", "XX", "--common-name", "x.example.test"], "iso 3166"),
    (["--country", "GB", "--common-name", "x.example.test", "--san", "*.*.example.com"], "wildcard"),
])
def test_bad_subject_options(agent, cmd, opts, word):
    before = agent.snapshot()
    r = agent.cli(*cmd.split(), "--name", "bad", *opts)
    assert r.rc == 1 and r.data["error"]["code"] == "bad-input", r.describe()
    assert word in r.message.lower(), r.describe()
    assert agent.snapshot() == before


# ---- control requests that are not valid messages ---------------------------------

def recv_line(s, timeout=15):
    """One line from the socket (bounded in time and size), or b'' at EOF."""
    s.settimeout(timeout)
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf and len(buf) < 1 << 20 and time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            break
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n", 1)[0]


def control(agent, payload, timeout=15):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(agent.control_socket)
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return recv_line(s, timeout)
    finally:
        s.close()


def error_reply(line):
    assert line, "no reply line from the agent"
    msg = json.loads(line.decode())
    assert isinstance(msg, dict) and "error" in msg, msg
    e = msg["error"]
    return (e.get("message", "") if isinstance(e, dict) else str(e)).lower()


def test_control_request_garbage(agent):
    before = agent.snapshot()
    for garbage in (b"\x00\xff\xfegarbage{{{\n", b"not json at all\n", b"{\"command\": \n"):
        assert "control request" in error_reply(control(agent, garbage))
    assert agent.running
    assert agent.snapshot() == before


def test_control_request_valid_json_but_wrong(agent):
    before = agent.snapshot()
    for bad in (b'{"command": "frobnicate", "args": []}\n', b'{"cmd": "frobnicate", "args": {}}\n',
                b'{"command": 42}\n', b"{}\n"):
        error_reply(control(agent, bad))
    assert agent.snapshot() == before


def test_control_prune_days_out_of_range(agent):
    """The agent bounds what the command line bounds: a raw request asking to
    prune certificates older than 10^15 days is refused, nothing deleted."""
    before = agent.snapshot()
    for days in (10 ** 15, 36501, -1):
        req = json.dumps({"cmd": "cert.prune",
                          "args": {"expired": True, "older_than": days, "yes": True}})
        assert "0 to 36500" in error_reply(control(agent, req.encode() + b"\n"))
    assert agent.running
    assert agent.snapshot() == before


def test_control_request_oversized(agent):
    """64 MB in one line: refused or cut off, never a crash."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(agent.control_socket)
    line = b""
    try:
        try:
            chunk = b"A" * (1 << 20)
            for _ in range(64):
                s.sendall(chunk)
            s.sendall(b"\n")
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass
        line = recv_line(s, 15)
    finally:
        s.close()
    if line:
        error_reply(line)
    assert agent.running, agent.stderr()[-3000:]
    assert agent.status()["digest_ok"] is True


def test_slow_client_does_not_block_others(agent):
    """A client that sends half a request and waits does not stop others."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(agent.control_socket)
    try:
        s.sendall(b'{"command": "sta')
        r = agent.cli("status", check=0, timeout=30)
        assert r.data["node"] == "primary"
    finally:
        s.close()
    assert agent.running
