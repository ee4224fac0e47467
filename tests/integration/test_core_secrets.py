"""Keys in memory and in core dumps: the agent turns core dumps off
(PR_SET_DUMPABLE 0, RLIMIT_CORE 0) unless `core_dumps = 1` says otherwise,
and no freed copy of a key's DER is left in its memory: after imports in
every key format and the TLS endpoint's builds, the agent's writable memory
(read through /proc/PID/mem, as root may) holds no PKCS#8 or traditional DER
of any key it unsealed.  The scan is how the freed copies were found."""

import os
import re
import resource
import signal

import pytest

from helpers import PASSWORD, openssl, write


def der_patterns(key_path):
    """The PKCS#8 and traditional DER of a key: live keys are held as
    numbers, so any of these in memory is a copy someone freed unwiped."""
    pats = {}
    pats["PKCS#8 DER"] = openssl("pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in",
                                 key_path, "-passin", "pass:" + PASSWORD).stdout
    trad = openssl("pkey", "-in", key_path, "-outform", "DER", "-traditional",
                   "-passin", "pass:" + PASSWORD, check=False).stdout
    if trad:
        pats["traditional DER"] = trad
    return pats


def memory_of(pid):
    """Every readable, writable private mapping of pid (heap, anonymous,
    thread stacks, data), concatenated."""
    out = []
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+)", line)
            start, end, perms = int(m.group(1), 16), int(m.group(2), 16), m.group(3)
            if not perms.startswith("rw") or end - start > (1 << 31):
                continue
            try:
                mem.seek(start)
                out.append(mem.read(end - start))
            except (OSError, ValueError, OverflowError):
                continue
    return b"".join(out)


@pytest.mark.skipif(os.geteuid() != 0, reason="reading another process's memory needs root")
def test_no_freed_key_der_in_memory(agent_factory, pki):
    a = agent_factory(log_level="debug")
    keys = {}
    a.cli("import", pki.rsa_multi.file("p12"), "--password-file", pki.password_file, check=0)
    keys["rsa_multi (PKCS#12)"] = pki.rsa_multi.key
    a.cli("import", pki.ec_wild.file("chain.pem"), pki.ec_wild.file("key.trad.pem"), check=0)
    keys["ec_wild (EC PRIVATE KEY PEM)"] = pki.ec_wild.key
    a.cli("import", pki.short20.file("chain.pem"), pki.short20.file("key.p8"), check=0)
    keys["short20 (PKCS#8 DER)"] = pki.short20.key
    a.cli("import", pki.short28.file("chain.pem"), pki.short28.file("key.p8enc"),
          "--password-file", pki.password_file, check=0)
    keys["short28 (encrypted PKCS#8)"] = pki.short28.key
    a.cli("export", pki.rsa_multi.id, "--format", "pem", check=0)
    blob = memory_of(a.pid)
    assert len(blob) > 1 << 20, "read %d bytes only" % len(blob)
    found = []
    for name, path in keys.items():
        for pname, pat in der_patterns(path).items():
            n = blob.count(pat)
            if n:
                found.append("%s: %s x%d" % (name, pname, n))
    assert not found, "key DER left in the agent's memory:\n" + "\n".join(found)


def core_limit(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max core file size"):
                return line.split()[4:6]
    raise AssertionError("no core limit in /proc/%d/limits" % pid)


@pytest.fixture
def cores_allowed(tmp_path):
    """Agents started here may dump core (soft limit raised to the hard
    one) into tmp_path (the kernel's pattern is relative to the cwd)."""
    old_limit = resource.getrlimit(resource.RLIMIT_CORE)
    old_cwd = os.getcwd()
    resource.setrlimit(resource.RLIMIT_CORE, (old_limit[1], old_limit[1]))
    os.chdir(str(tmp_path))
    try:
        yield str(tmp_path)
    finally:
        os.chdir(old_cwd)
        resource.setrlimit(resource.RLIMIT_CORE, old_limit)


def test_no_core_dump_by_default(agent_factory, pki, cores_allowed):
    if resource.getrlimit(resource.RLIMIT_CORE)[1] == 0:
        pytest.skip("the hard core limit is 0 here")
    a = agent_factory()
    a.cli("import", pki.rsa_multi.file("p12"), "--password-file", pki.password_file, check=0)
    assert core_limit(a.pid) == ["0", "0"], open("/proc/%d/limits" % a.pid).read()
    rc = a.stop(signal.SIGABRT)
    assert rc == -signal.SIGABRT, rc
    cores = [f for f in os.listdir(cores_allowed) if f.startswith("core")]
    assert not cores, "the agent dumped core: %s" % cores


def test_core_dumps_debug_option(agent_factory, cores_allowed):
    if resource.getrlimit(resource.RLIMIT_CORE)[1] == 0:
        pytest.skip("the hard core limit is 0 here")
    a = agent_factory(start=False)
    write(a.config, a.config_text().replace("log_level = info", "log_level = info\ncore_dumps = 1"))
    # a sanitizer build turns core dumps off by itself unless told not to
    old = os.environ.get("ASAN_OPTIONS")
    os.environ["ASAN_OPTIONS"] = (old + ":" if old else "") + "disable_coredump=0"
    try:
        a.start()
    finally:
        if old is None:
            del os.environ["ASAN_OPTIONS"]
        else:
            os.environ["ASAN_OPTIONS"] = old
    assert core_limit(a.pid) != ["0", "0"]
    assert "core_dumps = 1" in a.stderr()
    a.stop()
