"""dns-01 publishing (acme/dns01.c, tsigkey.c, dnshook.c) against a real
BIND9 named on 127.0.0.1, and an issuance by Debian's pebble validating
through that named.

The test starts named in a temporary folder with the zone example.test, which
grants the TSIG key certsync-test TXT updates below it and knows a second key,
other, that it grants nothing.  What named holds is read back with
named-journalprint (the zone's journal: every add and delete named applied),
so the record is checked by BIND's own tools, not only by the code under test.
acme_driver's dns-* and hook-* steps call the module.
"""

import os
import threading
import time

import pytest

import helpers
from acme_env import Named, Pebble, TLSFiles
from test_acme_client import driver, issue_and_check


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    n = Named(tmp_path_factory.mktemp("named")).start()
    yield n
    n.stop()


def dns(step, named, name, value, key=None, check=True, extra=()):
    args = [step, "--server", named.server, "--name", name, "--value", value, *extra]
    if key is not None:
        args += ["--tsig-key", key]
    return driver(*args, check=check)


def test_add_check_remove(named):
    value = "dGVzdC12YWx1ZS1vbmUtdHdvLXRocmVlLWZvdXItZml2ZQ"
    _, found, _ = dns("dns-check", named, "www.example.test", value)
    assert found == {"found": False}
    _, ok, _ = dns("dns-add", named, "www.example.test", value, key=named.key)
    assert ok == {"ok": True}
    assert ('add _acme-challenge.www.example.test. 60 IN TXT "%s"' % value
            in named.journal())
    _, found, _ = dns("dns-check", named, "www.example.test", value)
    assert found == {"found": True}
    # another value at the same name is not taken for this one
    _, found, _ = dns("dns-check", named, "www.example.test", value[:-1] + "X")
    assert found == {"found": False}
    dns("dns-remove", named, "www.example.test", value, key=named.key)
    assert ('del _acme-challenge.www.example.test. 60 IN TXT "%s"' % value
            in named.journal())
    _, found, _ = dns("dns-check", named, "www.example.test", value)
    assert found == {"found": False}


def test_wildcard_goes_to_the_base_name_and_two_values_coexist(named):
    # *.w.example.test and w.example.test share _acme-challenge.w.example.test
    a, b = "A" * 43, "B" * 43
    dns("dns-add", named, "*.w.example.test", a, key=named.key)
    dns("dns-add", named, "w.example.test", b, key=named.key)
    assert dns("dns-check", named, "w.example.test", a)[1] == {"found": True}
    assert dns("dns-check", named, "*.w.example.test", b)[1] == {"found": True}
    # removing one leaves the other
    dns("dns-remove", named, "w.example.test", a, key=named.key)
    assert dns("dns-check", named, "w.example.test", a)[1] == {"found": False}
    assert dns("dns-check", named, "w.example.test", b)[1] == {"found": True}
    dns("dns-remove", named, "w.example.test", b, key=named.key)


def test_wait_for_a_record_that_arrives_and_one_that_does_not(named):
    late = "G" * 43
    timer = threading.Timer(1.0, dns, ("dns-add", named, "late.example.test", late, named.key))
    timer.start()
    try:
        rc, doc, _ = dns("dns-wait", named, "late.example.test", late, check=False,
                         extra=("--timeout-ms", "30000"))
    finally:
        timer.cancel()
        timer.join()
    assert (rc, doc) == (0, {"found": True})
    dns("dns-remove", named, "late.example.test", late, key=named.key)
    rc, doc, _ = dns("dns-wait", named, "never.example.test", late, check=False,
                     extra=("--timeout-ms", "1000"))
    assert rc == 1 and doc["error"]["class"] == "transient"
    assert doc["error"]["message"] == (
        "dns-01 for _acme-challenge.never.example.test: %s does not answer yet (no TXT "
        "record with the value) after 1000 ms; 0 of 1 endpoints ready" % named.server)


def test_update_refused_named(named, tmp_path):
    before = named.journal()
    # a key the server knows but whose policy grants nothing
    rc, doc, _ = dns("dns-add", named, "r.example.test", "C" * 43, key=named.other,
                     check=False)
    assert rc == 1 and doc["error"]["class"] == "operator"
    assert "REFUSED" in doc["error"]["message"] and "update policy" in doc["error"]["message"]
    assert "key other" in doc["error"]["message"]
    # the right name, a wrong secret: NOTAUTH (BADSIG)
    wrong = str(tmp_path / "wrong.key")
    helpers.write(wrong, 'key "certsync-test" { algorithm hmac-sha256; '
                         'secret "%s"; };\n' % ("A" * 43 + "="))
    rc, doc, _ = dns("dns-add", named, "r.example.test", "C" * 43, key=wrong, check=False)
    assert rc == 1 and "NOTAUTH BADSIG" in doc["error"]["message"]
    assert "dns_tsig_key_file" in doc["error"]["message"]
    # a key the server does not know: NOTAUTH (BADKEY)
    unknown = str(tmp_path / "unknown.key")
    helpers.write(unknown, helpers.read(named.key).replace(b"certsync-test", b"nobody"))
    rc, doc, _ = dns("dns-add", named, "r.example.test", "C" * 43, key=unknown, check=False)
    assert rc == 1 and "NOTAUTH BADKEY" in doc["error"]["message"]
    # a zone the server does not hold
    rc, doc, _ = dns("dns-add", named, "www.other.test", "C" * 43, key=named.key, check=False)
    assert rc == 1 and "not authoritative for _acme-challenge.www.other.test" in \
        doc["error"]["message"]
    assert named.journal() == before
    # no secret in any message
    for k in (named.key, named.other):
        secret = helpers.read(k).decode().split('secret "')[1].split('"')[0]
        assert secret not in doc["error"]["message"]


def test_server_that_does_not_answer_is_transient(named):
    port = helpers.free_port()  # nothing listens there
    rc, doc, _ = driver("dns-add", "--server", "127.0.0.1:%d" % port, "--name", "x.example.test",
                        "--value", "v", "--tsig-key", named.key, "--timeout-ms", "500",
                        check=False)
    assert rc == 1 and doc["error"]["class"] == "transient"
    assert "127.0.0.1:%d did not answer" % port in doc["error"]["message"]
    rc, doc, _ = driver("dns-check", "--server", "localhost", "--name", "x.example.test",
                        "--value", "v", check=False)
    assert rc == 1 and "is not HOST:PORT" in doc["error"]["message"]


BAD_KEYS = [
    # (file content, what the message says)
    ('key "k" { algorithm hmac-sha256; secret "%s"; }\n' % ("A" * 43 + "="),
     'line 2: expected ";"'),
    ('key "k" {\n  algorithm hmac-sha256;\n  secret "%s"\n};\n' % ("A" * 43 + "="),
     'line 4: expected ";"'),
    ('key "k" { algorithm hmac-md5; secret "%s"; };\n' % ("A" * 43 + "="),
     "algorithm hmac-md5 is not supported"),
    ('key "k" { algorithm hmac-sha256; secret "not base64!"; };\n',
     "the secret is not base64"),
    ('key "k" { algorithm hmac-sha256; secret "c2hvcnQ="; };\n',
     "fewer than 16"),
    ('key "k" { algorithm hmac-sha256; };\n', "needs both algorithm and secret"),
    ('# just a comment\n', "line 2: expected \"key\""),
    ('key "k" { algorithm hmac-sha256; secret "%s"; flags 1; };\n' % ("A" * 43 + "="),
     "only the clauses algorithm and secret"),
    ('key "k" { algorithm hmac-sha256; secret "%s; };\n' % ("A" * 43 + "="),
     "line 1: a clause has no usable value"),
    ('/* unclosed\nkey "k" {};\n', 'line 1: expected "key"'),
]


@pytest.mark.parametrize("content,says", BAD_KEYS)
def test_tsig_key_file_that_does_not_parse(named, tmp_path, content, says):
    path = str(tmp_path / "bad.key")
    helpers.write(path, content)
    rc, doc, _ = dns("dns-add", named, "k.example.test", "D" * 43, key=path, check=False)
    assert rc == 1, doc
    msg = doc["error"]["message"]
    assert msg.startswith("TSIG key file %s" % path) and says in msg, msg
    assert doc["error"]["code"] == "usage"
    assert "A" * 43 not in msg  # the secret is never quoted
    assert "k.example.test" not in named.journal()


def test_tsig_key_file_missing(named, tmp_path):
    path = str(tmp_path / "absent.key")
    rc, doc, _ = dns("dns-add", named, "k.example.test", "D" * 43, key=path, check=False)
    assert rc == 1 and "cannot read the TSIG key file %s" % path in doc["error"]["message"]


def test_tsig_key_file_with_comments_parses(named, tmp_path):
    secret = helpers.read(named.key).decode().split('secret "')[1].split('"')[0]
    path = str(tmp_path / "commented.key")
    helpers.write(path, '# made by hand\n// for certsync\n/* the test key */\n'
                        'key certsync-test {\n\talgorithm HMAC-SHA256; # upper case\n'
                        '\tsecret "%s";\n};\n' % secret)
    dns("dns-add", named, "c.example.test", "E" * 43, key=path)
    assert dns("dns-check", named, "c.example.test", "E" * 43)[1] == {"found": True}
    dns("dns-remove", named, "c.example.test", "E" * 43, key=path)


# ---- the hook --------------------------------------------------------------


def hook_script(tmp_path, body, name="hook.sh"):
    path = str(tmp_path / name)
    helpers.write(path, "#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return path


def hook(step, path, name="h.example.test", value="F" * 43, timeout_ms=None, check=False):
    args = [step, "--hook", path, "--name", name, "--value", value]
    if timeout_ms is not None:
        args += ["--timeout-ms", str(timeout_ms)]
    return driver(*args, check=check)


def test_hook_gets_its_arguments_without_a_shell(tmp_path):
    out = str(tmp_path / "args")
    path = hook_script(tmp_path, 'for a in "$@"; do printf "%%s\\n" "$a"; done >> %s\n' % out)
    assert hook("hook-add", path, check=True)[1] == {"ok": True}
    # a name with shell syntax arrives as one argument, uninterpreted
    hook("hook-remove", path, name="$(touch pwned).example.test", value="v;w", check=True)
    assert helpers.read(out).decode().splitlines() == [
        "add", "_acme-challenge.h.example.test", "F" * 43,
        "remove", "_acme-challenge.$(touch pwned).example.test", "v;w"]
    assert not os.path.exists(str(tmp_path / "pwned"))
    assert not os.path.exists("pwned")


def test_hook_not_an_absolute_executable(tmp_path):
    rc, doc, _ = hook("hook-add", "hook.sh")
    assert rc == 1 and "is not an absolute path" in doc["error"]["message"]
    plain = str(tmp_path / "plain")
    helpers.write(plain, "#!/bin/sh\nexit 0\n")
    rc, doc, _ = hook("hook-add", plain)
    assert rc == 1 and "%s is not an executable file" % plain in doc["error"]["message"]
    rc, doc, _ = hook("hook-add", str(tmp_path))
    assert rc == 1 and "is not an executable file" in doc["error"]["message"]
    rc, doc, _ = hook("hook-add", str(tmp_path / "absent"))
    assert rc == 1 and "No such file" in doc["error"]["message"]
    assert doc["error"]["code"] == "usage" and doc["error"]["class"] == "operator"


def test_hook_that_fails_says_what_it_printed(tmp_path):
    path = hook_script(tmp_path, 'echo "zone h.example.test: API token expired" >&2\nexit 3\n')
    rc, doc, _ = hook("hook-add", path)
    assert rc == 1 and doc["error"]["class"] == "operator"
    msg = doc["error"]["message"]
    assert "failed with exit status 3" in msg and "API token expired" in msg
    assert "add _acme-challenge.h.example.test" in msg


def test_hook_that_hangs_is_killed_with_its_children(tmp_path):
    pidfile = str(tmp_path / "child.pid")
    # the hook's own child (sleep) holds the output pipe open too
    path = hook_script(tmp_path, 'sleep 300 &\necho $! > %s\necho waiting\nwait\n' % pidfile)
    t0 = time.monotonic()
    rc, doc, _ = hook("hook-add", path, timeout_ms=1000)
    took = time.monotonic() - t0
    assert rc == 1 and "did not finish within 1000 ms and was killed" in doc["error"]["message"]
    assert "it printed: waiting" in doc["error"]["message"]
    assert doc["error"]["class"] == "transient"
    assert took < 60  # generous: the bound is 1 s, the sleep 300 s
    child = int(helpers.read(pidfile))
    helpers.wait_for("the hook's child to be gone",
                     lambda: not os.path.exists("/proc/%d" % child) or
                     helpers.read("/proc/%d/stat" % child).split()[2] == b"Z", timeout=10)


# ---- end to end: pebble validates through named ---------------------------


class PebbleOnNamed(Pebble):
    """Pebble resolving through named: dns-01 answers are published with the
    module's RFC 2136 update, checked on named before the CA is told, and
    removed after."""

    def __init__(self, d, tls, named):
        super().__init__(d, tls, dnsserver=named.server)
        self.named = named
        self.published = []

    def publish(self, challenge):
        assert challenge["type"] == "dns-01"
        name = challenge["identifier"]
        dns("dns-add", self.named, name, challenge["dns01"], key=self.named.key)
        self.published.append((name, challenge["dns01"]))
        # the pre-validation check: the module's bounded wait
        _, found, _ = dns("dns-wait", self.named, name, challenge["dns01"],
                          extra=("--timeout-ms", "30000"))
        assert found == {"found": True}

    def unpublish(self):
        for name, value in self.published:
            dns("dns-remove", self.named, name, value, key=self.named.key)


def test_pebble_issues_wildcard_via_rfc2136(named, tmp_path_factory, tmp_path):
    tls = TLSFiles(str(tmp_path_factory.mktemp("tls-dns")), "pebble")
    pb = PebbleOnNamed(tmp_path_factory.mktemp("pebble-dns"), tls, named)
    issue_and_check(pb, str(tmp_path), ["*.example.test", "example.test"], "dns-01",
                    ["a.example.test", "example.test"])
    pb.unpublish()
    journal = named.journal()
    for name, value in pb.published:
        assert 'add _acme-challenge.%s. 60 IN TXT "%s"' % (name, value) in journal
        assert 'del _acme-challenge.%s. 60 IN TXT "%s"' % (name, value) in journal
        assert dns("dns-check", named, name, value)[1] == {"found": False}
    assert len(pb.published) == 2
