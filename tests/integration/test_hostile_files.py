"""Hostile files given to `import`: key-derivation bombs (a PKCS#12 MAC, its
encrypted bags, an encrypted PKCS#8 asking for millions of PBKDF2 iterations
or a huge scrypt cost), RSA keys too big to serve, PKCS#12 without a MAC and
CA certificates whose signature does not verify.  Each is made with openssl
in the test; each refusal must name the file and the fix, come back within a
generous bound, and leave the store unchanged.  While a long import runs,
`status` keeps answering and SIGTERM stops the agent."""

import os
import random
import subprocess
import time

import pytest

import helpers
from helpers import openssl, read, write

BOUND = 1000000          # PKI_MAX_KDF_ITER, as the README documents it
SCRYPT_BOUND = 1 << 23   # PKI_MAX_SCRYPT_COST
REFUSE_WITHIN = 5.0      # seconds: a refusal does no key derivation at all
PASS = "hostile-pass"


@pytest.fixture(scope="module")
def agent(module_agent_factory, pki):
    a = module_agent_factory()
    a.cli("import", pki.rsa_multi.file("p12"), "--password-file", pki.password_file, check=0)
    return a


@pytest.fixture(scope="module")
def mat(tmp_path_factory):
    """An EC key and a self-signed leaf for it, and a password file."""
    d = str(tmp_path_factory.mktemp("hostile"))
    m = {"dir": d}
    m["key"], m["crt"] = make_leaf(d, "h")
    m["pw"] = write(os.path.join(d, "pw"), PASS + "\n", mode=0o600)
    return m


def make_leaf(d, name):
    """An EC key and a self-signed identity certificate for NAME.example.test."""
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", crt, "-days", "30", "-subj", "/CN=%s.example.test" % name,
            "-addext", "subjectAltName=DNS:%s.example.test" % name,
            "-addext", "basicConstraints=critical,CA:FALSE")
    return key, crt


def p12(mat, name, *extra, key=None, crt=None):
    out = os.path.join(mat["dir"], name)
    openssl("pkcs12", "-export", "-in", crt or mat["crt"], "-inkey", key or mat["key"],
            "-passout", "pass:" + PASS, "-out", out, *extra)
    return out


# An iteration count of 65536 is the DER INTEGER 02 03 01 00 00; 0x7fffff
# (8,388,607) has the same length, so patching it keeps every enclosing
# length right and the file still parses.
ITER_65536 = bytes.fromhex("0203010000")
ITER_HUGE = bytes.fromhex("02037fffff")


def patched(path, out, which):
    """Copy of path with the iteration counts at the given occurrences
    (indexes into every 02 03 01 00 00 of the file) set to 8,388,607."""
    data = bytearray(read(path))
    at, start = [], 0
    while (i := data.find(ITER_65536, start)) >= 0:
        at.append(i)
        start = i + 1
    assert at, "no iteration count of 65536 in %s" % path
    for k in which:
        data[at[k]:at[k] + 5] = ITER_HUGE
    return write(out, bytes(data))


def refused(agent, f, words, password_file=None):
    before = agent.snapshot()
    args = ["import", f] + (["--password-file", password_file] if password_file else [])
    t0 = time.monotonic()
    r = agent.cli(*args)
    took = time.monotonic() - t0
    assert r.rc == 1, r.describe()
    msg = r.message.lower()
    for w in [os.path.basename(f)] + list(words):
        assert w.lower() in msg, "%r not in the message\n%s" % (w, r.describe())
    assert agent.running, agent.stderr()[-3000:]
    assert agent.snapshot() == before, "the store changed after a refused import"
    return r, took


# ---- item 3: key-derivation bombs ----------------------------------------

def test_p12_mac_iterations_refused_before_any_work(agent, mat):
    f = p12(mat, "mac65536.p12", "-iter", "65536")
    bomb = patched(f, os.path.join(mat["dir"], "mac-bomb.p12"), [-1])  # MacData comes last
    for pw in (mat["pw"], None):
        r, took = refused(agent, bomb, ["8388607", "iterations", "mac", str(BOUND)], pw)
        assert took < REFUSE_WITHIN, "refusal took %.1f s\n%s" % (took, r.describe())


def test_p12_bag_iterations_refused(agent, mat):
    f = p12(mat, "bags65536.p12", "-iter", "65536")
    bomb = patched(f, os.path.join(mat["dir"], "bag-bomb.p12"), [0])
    r, took = refused(agent, bomb, ["8388607", "iterations", str(BOUND)], mat["pw"])
    assert took < REFUSE_WITHIN, r.describe()


def test_pkcs8_pbkdf2_iterations_refused(agent, mat):
    out = os.path.join(mat["dir"], "k65536.p8")
    openssl("pkcs8", "-topk8", "-in", mat["key"], "-v2", "aes-256-cbc", "-iter", "65536",
            "-passout", "pass:" + PASS, "-outform", "DER", "-out", out)
    bomb = patched(out, os.path.join(mat["dir"], "pbkdf2-bomb.p8"), [0])
    r, took = refused(agent, bomb, ["8388607", "iterations", str(BOUND)], mat["pw"])
    assert took < REFUSE_WITHIN, r.describe()
    # the same as PEM ("ENCRYPTED PRIVATE KEY")
    pem = os.path.join(mat["dir"], "pbkdf2-bomb.pem")
    helpers.write(pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n" +
                  __import__("base64").encodebytes(read(bomb)) +
                  b"-----END ENCRYPTED PRIVATE KEY-----\n")
    refused(agent, pem, ["8388607", "iterations"], mat["pw"])


def test_pkcs8_scrypt_cost_refused(agent, mat):
    out = os.path.join(mat["dir"], "scrypt.p8")
    openssl("pkcs8", "-topk8", "-in", mat["key"], "-scrypt", "-scrypt_N", "16384",
            "-scrypt_r", "8", "-scrypt_p", "1", "-passout", "pass:" + PASS, "-outform", "DER",
            "-out", out)
    data = bytearray(read(out))
    i = data.find(bytes.fromhex("02024000020108020101"))  # N 16384, r 8, p 1
    assert i >= 0
    data[i + 9] = 0x7f   # p = 127: cost 16384 * 8 * 127
    bomb = write(os.path.join(mat["dir"], "scrypt-bomb.p8"), bytes(data))
    r, took = refused(agent, bomb, ["scrypt", str(16384 * 8 * 127), str(SCRYPT_BOUND)], mat["pw"])
    assert took < REFUSE_WITHIN, r.describe()


def test_at_the_bound_imports(agent, mat, tmp_path):
    """A file at the bound is no bomb: it imports."""
    key, crt = make_leaf(str(tmp_path), "bound")
    f = p12(mat, "bound.p12", "-iter", str(BOUND), key=key, crt=crt)
    r = agent.cli("import", f, "--password-file", mat["pw"], check=0)
    assert [i["action"] for i in r.data["items"]] == ["added"], r.describe()


def leaves_at_bound(mat, n):
    """n PKCS#12 files at the bound, each with its own leaf and key."""
    files = []
    for i in range(n):
        key, crt = make_leaf(mat["dir"], "slow%d" % i)
        files.append(p12(mat, "slow%d.p12" % i, "-iter", str(BOUND), key=key, crt=crt))
    return files




def sanitized(binary):
    """An AddressSanitizer build: OpenSSL's allocations (the PKCS#12 KDF
    allocates on every iteration) cost several times more there."""
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


STATUS_WITHIN = 2.0   # seconds, a status while an import decodes
SIGTERM_WITHIN = 12.0  # seconds: one file at the bound, on a loaded machine (16 took 20+)
SANITIZER_FACTOR = 5   # the SIGTERM bound on a sanitizer build


@pytest.fixture(scope="module")
def slow_files(mat):
    return leaves_at_bound(mat, 16)


def test_status_answers_during_a_long_import(module_agent_factory, mat, slow_files):
    a = module_agent_factory()
    files = slow_files[:4]  # seconds of decoding (minutes on a sanitizer build)
    imp = subprocess.Popen([a.binary, "--json", "-c", a.config, "import"] + files +
                           ["--password-file", mat["pw"]], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        time.sleep(0.3)  # the import is under way (not the assertion: it is below)
        answered_during, slowest = 0, 0.0
        deadline = time.monotonic() + 600
        while imp.poll() is None and time.monotonic() < deadline:
            t0 = time.monotonic()
            a.cli("status", check=0)
            took = time.monotonic() - t0
            slowest = max(slowest, took)
            if imp.poll() is None:
                answered_during += 1
            time.sleep(0.2)  # leave the import the CPU (not the assertion)
        out, err = imp.communicate(timeout=600)
    finally:
        if imp.poll() is None:
            imp.kill()
    assert imp.returncode == 0, err.decode()
    assert answered_during >= 1, "no status answered while the import ran (slowest %.1f s)" % slowest
    assert slowest < STATUS_WITHIN, "a status took %.1f s during the import" % slowest
    assert a.status()["counts"]["certificates"] == len(files)


def test_sigterm_during_a_long_import(module_agent_factory, mat, slow_files):
    a = module_agent_factory()
    files = slow_files
    imp = subprocess.Popen([a.binary, "--json", "-c", a.config, "import"] + files +
                           ["--password-file", mat["pw"]], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)
        t0 = time.monotonic()
        rc = a.stop(timeout=60)
        took = time.monotonic() - t0
        imp.communicate(timeout=60)
    finally:
        if imp.poll() is None:
            imp.kill()
    assert rc == 0, "agent exit %r\n%s" % (rc, a.stderr()[-3000:])
    bound = SIGTERM_WITHIN * (SANITIZER_FACTOR if sanitized(a.binary) else 1)
    assert took < bound, "SIGTERM took %.1f s to stop the agent" % took


# ---- item 8: RSA keys too big to serve -----------------------------------

def genconf(path, text):
    cnf = write(path + ".cnf", text)
    openssl("asn1parse", "-genconf", cnf, "-out", path, "-noout")
    return path


def odd(bits):
    return random.getrandbits(bits) | (1 << (bits - 1)) | 1


def test_rsa_above_8192_refused(agent, mat):
    d = mat["dir"]
    # a 9000-bit RSA public key in a certificate an EC key signs (making a
    # real 9000-bit key takes minutes; the size is what is refused)
    spki = genconf(os.path.join(d, "rsa9000.spki"),
                   "asn1=SEQUENCE:spki\n[spki]\nalg=SEQUENCE:alg\nkey=BITWRAP,SEQUENCE:rsa\n"
                   "[alg]\noid=OID:rsaEncryption\nnull=NULL\n"
                   "[rsa]\nn=INTEGER:0x%x\ne=INTEGER:65537\n" % odd(9000))
    csr = os.path.join(d, "big.csr")
    openssl("req", "-new", "-key", mat["key"], "-subj", "/CN=big.example.test", "-out", csr)
    crt = os.path.join(d, "rsa9000.crt")
    openssl("x509", "-req", "-in", csr, "-CA", mat["crt"], "-CAkey", mat["key"],
            "-force_pubkey", spki, "-days", "30", "-out", crt)
    refused(agent, crt, ["9000-bit rsa", "8192"])
    key = genconf(os.path.join(d, "rsa9000.der"),
                  "asn1=SEQUENCE:k\n[k]\nv=INTEGER:0\nn=INTEGER:0x%x\ne=INTEGER:65537\n"
                  "d=INTEGER:0x%x\np=INTEGER:0x%x\nq=INTEGER:0x%x\ndp=INTEGER:0x%x\n"
                  "dq=INTEGER:0x%x\nqi=INTEGER:0x%x\n" % (odd(9000), odd(8990), odd(4500),
                                                          odd(4500), odd(4490), odd(4490),
                                                          odd(4490)))
    refused(agent, key, ["9000-bit rsa", "8192"])


def test_rsa_generation_above_8192_refused(agent):
    before = agent.snapshot()
    for cmd in (["cert", "self-signed"], ["csr", "create"]):
        r = agent.cli(*cmd, "--name", "huge", "--key", "rsa:16384", "--country", "GB",
                      "--common-name", "huge.example.test")
        assert r.rc == 1, r.describe()
        assert "8192" in r.message and "rsa" in r.message.lower(), r.describe()
    assert agent.snapshot() == before


# ---- item 12: PKCS#12 without a MAC ---------------------------------------

def test_p12_without_mac_imports_with_password(agent, mat, tmp_path):
    key, crt = make_leaf(str(tmp_path), "nomac")
    f = p12(mat, "nomac.p12", "-nomac", key=key, crt=crt)
    info = subprocess.run(["openssl", "pkcs12", "-in", f, "-info", "-noout", "-passin",
                           "pass:" + PASS], stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    assert b"MAC:" not in info.stderr + info.stdout  # really without a MAC
    # a wrong password is still refused, and changes nothing
    bad = write(str(tmp_path / "badpw"), "not-it\n", mode=0o600)
    refused(agent, f, ["password"], bad)
    r = agent.cli("import", f, "--password-file", mat["pw"], check=0)
    items = r.data["items"]
    assert [(i["action"], i["kind"]) for i in items] == [("added", "identity")], r.describe()
    assert "with its key" in items[0]["message"], r.describe()
    listed = [c for c in agent.cli("cert", "list", check=0).data["certificates"]
              if c["id"] == items[0]["id"]]
    assert listed and listed[0]["has_key"], listed


def test_p12_without_mac_not_data_refused(agent, mat, tmp_path):
    # The fuzzer's find: a file without a MAC whose outer content is not of
    # type data cannot have the in-memory MAC made for it; that is the file's
    # fault (exit 1, named), not an I/O failure.
    key, crt = make_leaf(str(tmp_path), "notdata")
    f = p12(mat, "notdata.p12", "-nomac", key=key, crt=crt)
    data = bytearray(read(f))
    pkcs7_data = bytes.fromhex("06092a864886f70d010701")
    i = data.find(pkcs7_data)
    assert i >= 0
    data[i + len(pkcs7_data) - 1] = 0x7f  # an unknown PKCS#7 content type
    bad = write(str(tmp_path / "notdata-signed.p12"), bytes(data))
    refused(agent, bad, ["malformed"], mat["pw"])


# ---- item 5: listing and importing many certificates ----------------------

CA_CNF = """[ca]
default_ca = d
[d]
dir = .
database = ./index.txt
serial = ./serial
new_certs_dir = ./out
certificate = {crt}
private_key = {key}
default_md = sha256
default_days = 30
policy = p
unique_subject = no
x509_extensions = ext
copy_extensions = none
[p]
commonName = supplied
[ext]
basicConstraints = CA:FALSE
subjectAltName = DNS:many.example.test
"""


def many_leaves(d, n):
    """One PEM with n distinct leaves (serials differ) for one key, made by
    one `openssl ca` run; the issuer is a CA the store does not know."""
    os.makedirs(os.path.join(d, "out"))
    key, ca = make_ca(d, "Many Test CA")
    write(os.path.join(d, "index.txt"), "")
    write(os.path.join(d, "serial"), "1000\n")
    cnf = write(os.path.join(d, "ca.cnf"), CA_CNF.format(crt=ca, key=key))
    csr = os.path.join(d, "many.csr")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", os.path.join(d, "many.key"), "-subj", "/CN=many.example.test", "-out", csr)
    openssl("ca", "-batch", "-config", "ca.cnf", "-notext", "-out", os.path.join(d, "last.pem"),
            "-infiles", *([csr] * n), cwd=d)
    out = os.path.join(d, "out")
    pem = b"".join(read(os.path.join(out, f)) for f in sorted(os.listdir(out)))
    assert pem.count(b"BEGIN CERTIFICATE") == n
    return write(os.path.join(d, "many.pem"), pem)


LIST_WITHIN = 10.0   # seconds for `cert list` of 1,000 certificates (37 s before)


def test_many_certificates_list_and_import(module_agent_factory, tmp_path):
    a = module_agent_factory()
    pem = many_leaves(str(tmp_path), 1000)
    # the answer goes to a file: a pipe read only at the end would hold the
    # command (and so this loop) once the answer outgrows the pipe
    out = open(str(tmp_path / "import.json"), "wb")
    imp = subprocess.Popen([a.binary, "--json", "-c", a.config, "import", pem],
                           stdout=out, stderr=subprocess.PIPE)
    slowest = 0.0
    try:
        deadline = time.monotonic() + 300
        while imp.poll() is None and time.monotonic() < deadline:
            t0 = time.monotonic()
            a.cli("status", check=0)
            slowest = max(slowest, time.monotonic() - t0)
        _, err = imp.communicate(timeout=300)
    finally:
        if imp.poll() is None:
            imp.kill()
        out.close()
    assert imp.returncode == 0, err.decode()
    assert slowest < STATUS_WITHIN, "a status took %.1f s during the import" % slowest
    t0 = time.monotonic()
    certs = a.cli("cert", "list", check=0, timeout=300).data["certificates"]
    took = time.monotonic() - t0
    assert len(certs) == 1000
    assert all("chain incomplete" in c["warnings"] for c in certs)
    assert took < LIST_WITHIN, "cert list of 1,000 took %.1f s" % took


# ---- item 11: CA certificates whose signature does not verify -------------

def make_ca(d, cn, issuer=None):
    """A CA: self-signed, or signed by issuer (key, crt)."""
    slug = cn.lower().replace(" ", "-")
    key, crt = os.path.join(d, slug + ".key"), os.path.join(d, slug + ".crt")
    ext = os.path.join(d, slug + ".ext")
    write(ext, "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
               "subjectKeyIdentifier=hash\n")
    if issuer is None:
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", crt, "-days", "365", "-subj", "/CN=" + cn,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return key, crt
    csr = crt + ".csr"
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=" + cn)
    openssl("x509", "-req", "-in", csr, "-CA", issuer[1], "-CAkey", issuer[0], "-days", "365",
            "-extfile", ext, "-set_serial", str(random.getrandbits(64)), "-out", crt)
    return key, crt


def signed_leaf(d, name, issuer):
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    ext = write(os.path.join(d, name + ".ext"),
                "basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:%s.example.test\n" % name)
    csr = crt + ".csr"
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=%s.example.test" % name)
    openssl("x509", "-req", "-in", csr, "-CA", issuer[1], "-CAkey", issuer[0], "-days", "60",
            "-extfile", ext, "-set_serial", str(random.getrandbits(64)), "-out", crt)
    return key, crt


def flipped(crt, out):
    """The certificate as DER with one bit of its signature flipped."""
    der = bytearray(helpers.pem_cert_ders(read(crt))[0])
    der[-3] ^= 0x01
    return write(out, bytes(der))


def list_entry(agent, cid):
    return [c for c in agent.cli("cert", "list", check=0).data["certificates"] if c["id"] == cid]


def test_ca_signatures(module_agent_factory, tmp_path):
    a = module_agent_factory()
    d = str(tmp_path)
    root = make_ca(d, "Sig Test Root")
    inter = make_ca(d, "Sig Test Intermediate", issuer=root)
    other = make_ca(d, "Sig Test Other Intermediate", issuer=root)
    # a root whose own signature fails is refused
    refused(a, flipped(root[1], os.path.join(d, "root-bad.der")),
            ["signature does not verify", "sig test root", "again"])
    # an intermediate whose issuer is not known yet is kept, flagged
    bad_inter = flipped(inter[1], os.path.join(d, "inter-bad.der"))
    r = a.cli("import", bad_inter, check=0)
    bad_id = r.data["items"][0]["id"]
    assert r.data["items"][0]["kind"] == "intermediate", r.describe()
    assert "signature unverified" in list_entry(a, bad_id)[0]["warnings"]
    # with the root known, a good intermediate verifies and is not flagged ...
    a.cli("import", root[1], check=0)
    r = a.cli("import", other[1], check=0)
    assert list_entry(a, r.data["items"][0]["id"])[0]["warnings"] == [], r.describe()
    # ... a bad one is refused
    refused(a, flipped(other[1], os.path.join(d, "other-bad.der")),
            ["signature does not verify", "sig test root", "again"])
    # the stored bad intermediate stays flagged, and `verify` fails its chain
    assert "signature unverified" in list_entry(a, bad_id)[0]["warnings"]
    key, crt = signed_leaf(d, "badchain", inter)
    r = a.cli("import", crt, key, check=0)
    leaf_id = [i["id"] for i in r.data["items"] if i["kind"] == "identity"][0]
    r = a.cli("verify", "--cert", leaf_id)
    assert r.rc == 1, r.describe()
    chain = [c for c in r.data["checks"] if c["name"] == "chain"][0]
    assert chain["status"] == "fail" and "signature" in chain["detail"].lower(), r.describe()
