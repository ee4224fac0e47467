"""Helpers of the certsync integration tests: test PKI made with the real
`openssl` and GnuTLS `certtool` command-line tools, and real agents driven
with the `certsync` command.

Standard library only (pytest-3 runs /usr/bin/python3).  Every wait is bounded
in count and time; every process is stopped by its PID.

Run `python3 helpers.py [DIR]` to build the test PKI on its own and print it.
"""

import atexit
import base64
import hashlib
import json as jsonlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

# ---------------------------------------------------------------------------
# small utilities
# ---------------------------------------------------------------------------

CLUSTER_HOSTS = ("support.example.test", "primary.example.test", "backup.example.test")
PASSWORD = "import-secret"          # password of the PKCS#12 / encrypted keys we import
CMD_TIMEOUT = 120                    # seconds, any single command


def run(args, cwd=None, input=None, timeout=CMD_TIMEOUT, check=True):
    """Runs a tool; returns CompletedProcess (bytes).  Fails loudly."""
    p = subprocess.run([str(a) for a in args], cwd=cwd, input=input, timeout=timeout,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and p.returncode != 0:
        raise RuntimeError("command failed (%d): %s\nstdout: %s\nstderr: %s" % (
            p.returncode, " ".join(str(a) for a in args),
            p.stdout.decode(errors="replace")[-2000:], p.stderr.decode(errors="replace")[-2000:]))
    return p


def wait_for(what, cond, timeout=20.0, step=0.05):
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / step) + 1):
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            break
        time.sleep(step)
    raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))


def pem_blocks(data, label=None):
    """[(label, der_bytes)] of every PEM block in data (str or bytes); prose
    around the blocks (certtool writes some) is ignored."""
    if isinstance(data, bytes):
        data = data.decode("ascii", errors="replace")
    out = []
    for m in re.finditer(r"-----BEGIN ([A-Z0-9 #]+)-----\s*(.*?)-----END \1-----", data, re.S):
        if label is None or m.group(1) == label:
            body = "".join(line for line in m.group(2).splitlines() if ":" not in line)
            out.append((m.group(1), base64.b64decode(body)))
    return out


def pem_cert_ders(data):
    return [der for _, der in pem_blocks(data, "CERTIFICATE")]


def cert_id(der):
    """A certificate's id: SHA-256 of its DER, lower-case hex."""
    return hashlib.sha256(der).hexdigest()


def write(path, data, mode=None):
    if isinstance(data, str):
        data = data.encode()
    with open(path, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)
    return str(path)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def openssl(*args, **kw):
    return run(("openssl",) + args, **kw)


def certtool(*args, **kw):
    return run(("certtool",) + args, **kw)


def openssl_text(*args, **kw):
    return openssl(*args, **kw).stdout.decode(errors="replace")


def key_private_numbers(key_path):
    """Raw secret numbers of a private key as bytes (EC: the scalar `priv`;
    RSA: prime1, prime2 and privateExponent), read from `openssl pkey -text`.
    Whatever encoding an implementation used, if one of these appears in a
    file the key is there in the clear."""
    text = openssl_text("pkey", "-in", key_path, "-noout", "-text", "-passin", "pass:" + PASSWORD)
    found = {}
    cur = None
    for line in text.splitlines():
        m = re.match(r"^(\w+):\s*$", line)
        if m:
            cur = m.group(1)
            found[cur] = ""
            continue
        if cur and re.match(r"^\s+[0-9a-f:]+\s*$", line):
            found[cur] += line.strip()
            continue
        cur = None
    out = {}
    for name in ("priv", "prime1", "prime2", "privateExponent"):
        if name in found and found[name]:
            b = bytes.fromhex(found[name].replace(":", ""))
            b = b.lstrip(b"\x00")
            out[name] = b
    if not out:
        raise RuntimeError("no private numbers found in key %s" % key_path)
    return out


def key_secret_patterns(key_path):
    """Byte strings that must never appear in the clear anywhere: the raw
    secret numbers, the PKCS#8 and traditional DER encodings, their base64
    (as 64-column PEM lines), and the hex of the numbers."""
    pats = {}
    for name, b in key_private_numbers(key_path).items():
        pats["raw " + name] = b
        pats["hex " + name] = b.hex().encode()
        pats["HEX " + name] = b.hex().upper().encode()
    p8 = openssl("pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in", key_path,
                 "-passin", "pass:" + PASSWORD).stdout
    pats["PKCS#8 DER"] = p8
    trad = openssl("pkey", "-in", key_path, "-outform", "DER", "-traditional",
                   "-passin", "pass:" + PASSWORD, check=False).stdout
    if trad:
        pats["traditional DER"] = trad
    numbers = list(key_private_numbers(key_path).values())
    for enc_name, der in (("PKCS#8", p8), ("traditional", trad)):
        if not der:
            continue
        # byte ranges of the secret numbers inside this encoding: a PEM line
        # counts only if it covers secret bytes (lines holding only the
        # public modulus or point may rightly appear in a certificate)
        secret = [(der.find(b), der.find(b) + len(b)) for b in numbers if der.find(b) >= 0]
        b64 = base64.b64encode(der)
        for i in range(0, len(b64) - 64 + 1, 64):     # full PEM body lines
            lo, hi = i // 4 * 3, i // 4 * 3 + 48
            if any(lo < e and s < hi for s, e in secret):
                pats["%s PEM line %d" % (enc_name, i // 64)] = b64[i:i + 64]
    return pats


# ---------------------------------------------------------------------------
# test PKI
# ---------------------------------------------------------------------------

OPENSSL_CA_CONF = """\
[ca]
default_ca = testca
[testca]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
serial = {dir}/serial
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
email_in_dn = no
[anything]
commonName = supplied
organizationName = optional
countryName = optional
"""


class Leaf:
    """An end-entity certificate and its key, with every file format made on
    demand (openssl, or certtool for the GnuTLS-made chain)."""

    def __init__(self, pki, name, key, cert_pem, issuer_chain, key_type, sans, tool="openssl"):
        self.pki = pki
        self.name = name
        self.key = key                          # key file as made by the tool
        self.cert = cert_pem                    # PEM of the leaf alone
        self.issuer_chain = issuer_chain        # list of PEM files, nearest first
        self.key_type = key_type                # "ec:p256", "rsa:2048"
        self.sans = list(sans)
        self.tool = tool
        self.der = pem_cert_ders(read(cert_pem))[0]
        self.id = cert_id(self.der)
        self._files = {}

    @property
    def chain_ids(self):
        return [cert_id(pem_cert_ders(read(p))[0]) for p in self.issuer_chain]

    def path(self, suffix):
        return os.path.join(self.pki.dir, "%s.%s" % (self.name, suffix))

    def file(self, fmt):
        """Path of this leaf in format fmt (made once):
        cert.pem cert.der chain.pem (leaf + issuers) bundle.pem (key + leaf + issuers)
        key.pem (PKCS#8 PEM) key.p8 (PKCS#8 DER) key.p8enc (encrypted PKCS#8 DER)
        key.enc.pem (encrypted PKCS#8 PEM) key.trad.pem key.trad.der (OpenSSL legacy)
        p12 (leaf + key + issuers, PASSWORD) p12-nokey (certificates only)"""
        if fmt in self._files:
            return self._files[fmt]
        p = self.path(fmt)
        pw = "pass:" + PASSWORD
        chain_pem = b"".join(read(c) for c in self.issuer_chain)
        if fmt == "cert.pem":
            p = self.cert
        elif fmt == "cert.der":
            write(p, self.der)
        elif fmt == "chain.pem":
            write(p, read(self.cert) + chain_pem)
        elif fmt == "bundle.pem":
            write(p, read(self.file("key.pem")) + read(self.cert) + chain_pem)
        elif fmt == "key.pem":
            openssl("pkcs8", "-topk8", "-nocrypt", "-in", self.key, "-out", p)
        elif fmt == "key.p8":
            openssl("pkcs8", "-topk8", "-nocrypt", "-in", self.key, "-outform", "DER", "-out", p)
        elif fmt == "key.p8enc":
            if self.tool == "certtool":
                certtool("--to-p8", "--load-privkey", self.key, "--password", PASSWORD,
                         "--pkcs-cipher", "aes-256", "--outder", "--outfile", p)
            else:
                openssl("pkcs8", "-topk8", "-in", self.key, "-outform", "DER", "-v2", "aes-256-cbc",
                        "-passout", pw, "-out", p)
        elif fmt == "key.enc.pem":
            openssl("pkcs8", "-topk8", "-in", self.key, "-v2", "aes-256-cbc", "-passout", pw, "-out", p)
        elif fmt == "key.trad.pem":
            openssl("pkey", "-in", self.key, "-traditional", "-out", p)
        elif fmt == "key.trad.der":
            openssl("pkey", "-in", self.key, "-traditional", "-outform", "DER", "-out", p)
        elif fmt == "p12":
            allc = self.path("p12chain.pem")
            write(allc, read(self.cert) + chain_pem)
            if self.tool == "certtool":
                certtool("--to-p12", "--load-certificate", allc, "--load-privkey", self.key,
                         "--p12-name", self.name, "--password", PASSWORD, "--pkcs-cipher", "aes-256",
                         "--outder", "--outfile", p)
            else:
                openssl("pkcs12", "-export", "-in", allc, "-inkey", self.key, "-name", self.name,
                        "-passout", pw, "-out", p)
        elif fmt == "p12-nokey":
            allc = self.path("p12chain.pem")
            write(allc, read(self.cert) + chain_pem)
            openssl("pkcs12", "-export", "-nokeys", "-in", allc, "-passout", pw, "-out", p)
        else:
            raise KeyError(fmt)
        self._files[fmt] = p
        return p

    def __repr__(self):
        return "<Leaf %s %s %s>" % (self.name, self.key_type, self.id[:12])


class PKI:
    """Root → intermediate → leaves made with openssl, a second chain made
    with GnuTLS certtool, and odd inputs (CSR, DSA and Ed25519 keys, ...)."""

    def __init__(self, directory):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.password_file = write(os.path.join(self.dir, "password.txt"), PASSWORD + "\n")
        self.wrong_password_file = write(os.path.join(self.dir, "wrong-password.txt"), "not-it\n")
        self.leaves = {}
        self._n = 0
        self._build_openssl_cas()
        self._build_openssl_leaves()
        self._build_certtool_chain()
        self._build_odd_inputs()

    def p(self, name):
        return os.path.join(self.dir, name)

    # -- keys --------------------------------------------------------------
    def new_key(self, path, key_type):
        if key_type == "ec:p256":
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
        elif key_type == "ec:p384":
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", path)
        elif key_type.startswith("rsa:"):
            openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:" + key_type[4:],
                    "-out", path)
        else:
            raise ValueError(key_type)
        return path

    # -- openssl CAs -------------------------------------------------------
    def _build_openssl_cas(self):
        d = self.dir
        write(self.p("ca_ext.cnf"), """\
[root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[inter]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
""")
        self.root_key = self.new_key(self.p("root.key"), "rsa:2048")
        self.root = self.p("root.pem")
        write(self.p("root_req.cnf"), "[req]\ndistinguished_name = dn\nprompt = no\n"
              "x509_extensions = root\n[dn]\nC = GB\nO = certsync tests\n"
              "CN = certsync Test Root CA\n" + read(self.p("ca_ext.cnf")).decode())
        openssl("req", "-x509", "-new", "-key", self.root_key, "-sha256", "-days", "3650",
                "-config", self.p("root_req.cnf"), "-out", self.root)
        self.root_der = self.p("root.der")
        openssl("x509", "-in", self.root, "-outform", "DER", "-out", self.root_der)

        self.inter_key = self.new_key(self.p("inter.key"), "ec:p384")
        openssl("req", "-new", "-key", self.inter_key, "-subj",
                "/C=GB/O=certsync tests/CN=certsync Test Intermediate CA", "-out", self.p("inter.csr"))
        self.inter = self.p("inter.pem")
        openssl("x509", "-req", "-in", self.p("inter.csr"), "-CA", self.root, "-CAkey", self.root_key,
                "-set_serial", "4096", "-days", "1825", "-sha256", "-extfile", self.p("ca_ext.cnf"),
                "-extensions", "inter", "-out", self.inter)
        self.inter_der = self.p("inter.der")
        openssl("x509", "-in", self.inter, "-outform", "DER", "-out", self.inter_der)
        self.ca_bundle = write(self.p("ca-bundle.pem"), read(self.inter) + read(self.root))
        self.root_id = cert_id(read(self.root_der))
        self.inter_id = cert_id(read(self.inter_der))

        # a minimal `openssl ca` set-up, for certificates with chosen dates
        cadir = self.p("ca")
        os.makedirs(os.path.join(cadir, "newcerts"), exist_ok=True)
        write(os.path.join(cadir, "index.txt"), "")
        write(os.path.join(cadir, "serial"), "1000\n")
        self.ca_conf = write(os.path.join(cadir, "ca.cnf"), OPENSSL_CA_CONF.format(dir=cadir))

    def _leaf_ext(self, path, sans, server=True):
        lines = ["[leaf]", "basicConstraints = critical,CA:FALSE",
                 "keyUsage = critical,digitalSignature,keyEncipherment",
                 "extendedKeyUsage = serverAuth,clientAuth",
                 "subjectKeyIdentifier = hash", "authorityKeyIdentifier = keyid"]
        if sans:
            alt = ",".join(("IP:" if re.match(r"^[0-9.]+$|:", s) else "DNS:") + s for s in sans)
            lines.append("subjectAltName = " + alt)
        write(path, "\n".join(lines) + "\n")
        return path

    def make_leaf(self, name, key_type, sans, cn=None, days=365, startdate=None, enddate=None,
                  key=None):
        """A leaf issued by the openssl intermediate.  days → `openssl x509
        -req -days`; startdate/enddate → `openssl ca` (YYYYMMDDHHMMSSZ)."""
        cn = cn or (sans[0] if sans else name + ".example.test")
        key = key or self.new_key(self.p(name + ".key"), key_type)
        csr = self.p(name + ".csr")
        openssl("req", "-new", "-key", key, "-subj", "/O=certsync tests/CN=" + cn, "-out", csr)
        ext = self._leaf_ext(self.p(name + ".ext"), sans)
        cert = self.p(name + ".pem")
        if startdate or enddate:
            openssl("ca", "-batch", "-config", self.ca_conf, "-cert", self.inter, "-keyfile",
                    self.inter_key, "-in", csr, "-notext", "-startdate", startdate, "-enddate",
                    enddate, "-extfile", ext, "-extensions", "leaf", "-out", cert)
        else:
            self._n += 1
            openssl("x509", "-req", "-in", csr, "-CA", self.inter, "-CAkey", self.inter_key,
                    "-set_serial", str(0x5000 + self._n), "-days", str(days), "-sha256",
                    "-extfile", ext, "-extensions", "leaf", "-out", cert)
        leaf = Leaf(self, name, key, cert, [self.inter, self.root], key_type, sans)
        self.leaves[name] = leaf
        return leaf

    def _build_openssl_leaves(self):
        H = CLUSTER_HOSTS
        self.ec_wild = self.make_leaf("ec_wild", "ec:p256", ["*.example.test", "support.example.test"],
                                      cn="support.example.test")
        self.rsa_multi = self.make_leaf("rsa_multi", "rsa:2048", list(H))
        self.short20 = self.make_leaf("short20", "ec:p256", ["*.example.test", "support.example.test"],
                                      days=20)
        self.short28 = self.make_leaf("short28", "ec:p256", ["*.example.test", "support.example.test"],
                                      days=28)
        self.expired = self.make_leaf("expired", "ec:p256", list(H), startdate="20200101000000Z",
                                      enddate="20210101000000Z")
        self.nosan = self.make_leaf("nosan", "ec:p256", [], cn="nosan.example.test")
        self.partial = self.make_leaf("partial", "ec:p256", ["support.example.test",
                                                             "primary.example.test"])
        self.elsewhere = self.make_leaf("elsewhere", "rsa:2048", ["www.elsewhere.test"])

    # -- GnuTLS certtool chain --------------------------------------------
    def _build_certtool_chain(self):
        g = lambda n: self.p("gnutls_" + n)
        certtool("--generate-privkey", "--key-type=rsa", "--bits=2048", "--outfile", g("root.key"))
        write(g("root.tmpl"), 'cn = "GnuTLS Test Root CA"\norganization = "certsync tests"\n'
              'serial = 1\nexpiration_days = 3650\nca\ncert_signing_key\ncrl_signing_key\n')
        certtool("--generate-self-signed", "--load-privkey", g("root.key"), "--template",
                 g("root.tmpl"), "--outfile", g("root.pem"))
        certtool("--generate-privkey", "--key-type=ecdsa", "--curve=secp256r1", "--outfile",
                 g("inter.key"))
        write(g("inter.tmpl"), 'cn = "GnuTLS Test Intermediate CA"\norganization = "certsync tests"\n'
              'serial = 2\nexpiration_days = 1825\nca\npath_len = 0\ncert_signing_key\n'
              'crl_signing_key\n')
        certtool("--generate-certificate", "--load-privkey", g("inter.key"), "--load-ca-certificate",
                 g("root.pem"), "--load-ca-privkey", g("root.key"), "--template", g("inter.tmpl"),
                 "--outfile", g("inter.pem"))
        self.g_root, self.g_inter = g("root.pem"), g("inter.pem")
        self.g_root_id = cert_id(pem_cert_ders(read(self.g_root))[0])
        self.g_inter_id = cert_id(pem_cert_ders(read(self.g_inter))[0])
        self.g_root_der = g("root.der")
        write(self.g_root_der, pem_cert_ders(read(self.g_root))[0])
        self.g_ca_bundle = write(g("ca-bundle.pem"), read(self.g_inter) + read(self.g_root))

        def gleaf(name, key_args, key_type, sans, serial):
            certtool("--generate-privkey", *key_args, "--outfile", g(name + ".key"))
            tmpl = 'cn = "%s"\norganization = "certsync tests"\nserial = %d\nexpiration_days = 365\n' \
                   'tls_www_server\nsigning_key\n' % (sans[-1] if sans[0].startswith("*") else sans[0],
                                                      serial)
            if key_type.startswith("rsa"):
                tmpl += "encryption_key\n"
            tmpl += "".join('dns_name = "%s"\n' % s for s in sans)
            write(g(name + ".tmpl"), tmpl)
            certtool("--generate-certificate", "--load-privkey", g(name + ".key"),
                     "--load-ca-certificate", g("inter.pem"), "--load-ca-privkey", g("inter.key"),
                     "--template", g(name + ".tmpl"), "--outfile", g(name + ".pem"))
            leaf = Leaf(self, "gnutls_" + name, g(name + ".key"), g(name + ".pem"),
                        [g("inter.pem"), g("root.pem")], key_type, sans, tool="certtool")
            self.leaves[leaf.name] = leaf
            return leaf

        self.g_ec_wild = gleaf("ec_wild", ["--key-type=ecdsa", "--curve=secp256r1"], "ec:p256",
                               ["*.example.test", "support.example.test"], 10)
        self.g_rsa_multi = gleaf("rsa_multi", ["--key-type=rsa", "--bits=2048"], "rsa:2048",
                                 list(CLUSTER_HOSTS), 11)

    # -- odd inputs --------------------------------------------------------
    def _build_odd_inputs(self):
        # a PKCS#10 request, PEM and DER
        k = self.new_key(self.p("req.key"), "ec:p256")
        self.csr_pem = self.p("request.csr")
        openssl("req", "-new", "-key", k, "-subj", "/CN=request.example.test",
                "-addext", "subjectAltName=DNS:request.example.test", "-out", self.csr_pem)
        self.csr_der = self.p("request.csr.der")
        openssl("req", "-in", self.csr_pem, "-outform", "DER", "-out", self.csr_der)
        # unsupported keys
        self.dsa_key = self.p("dsa.pem")
        openssl("genpkey", "-genparam", "-algorithm", "DSA", "-pkeyopt", "dsa_paramgen_bits:2048",
                "-out", self.p("dsa.params"))
        openssl("genpkey", "-paramfile", self.p("dsa.params"), "-out", self.dsa_key)
        self.dsa_key_trad = self.p("dsa.trad.pem")
        openssl("pkey", "-in", self.dsa_key, "-traditional", "-out", self.dsa_key_trad)
        self.ed25519_key = self.p("ed25519.pem")
        openssl("genpkey", "-algorithm", "ED25519", "-out", self.ed25519_key)
        self.ed25519_der = self.p("ed25519.p8")
        openssl("pkey", "-in", self.ed25519_key, "-outform", "DER", "-out", self.ed25519_der)
        ed_cert = self.p("ed25519.crt")
        openssl("req", "-x509", "-new", "-key", self.ed25519_key, "-days", "30",
                "-subj", "/CN=ed.example.test", "-addext", "subjectAltName=DNS:ed.example.test",
                "-out", ed_cert)
        self.ed25519_p12 = self.p("ed25519.p12")
        openssl("pkcs12", "-export", "-in", ed_cert, "-inkey", self.ed25519_key,
                "-passout", "pass:" + PASSWORD, "-out", self.ed25519_p12)
        self.rsa1024_key = self.p("rsa1024.pem")
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024",
                "-out", self.rsa1024_key)
        # broken encodings of a good certificate
        der = self.rsa_multi.der
        self.truncated_der = write(self.p("truncated.der"), der[: len(der) * 2 // 3])
        pem = read(self.rsa_multi.cert).decode()
        lines = pem.splitlines()
        body = lines[1:-1]
        mid = len(body) // 2
        # valid base64 characters, wrong bytes: decodes, then fails as DER
        body[mid] = "A" * len(body[mid])
        body[mid + 1] = "/" * len(body[mid + 1])
        self.corrupt_pem = write(self.p("corrupt-body.pem"), "\n".join([lines[0]] + body + [lines[-1]]) + "\n")
        body2 = lines[1:-1]
        body2[2] = body2[2][:10] + "!!##%%" + body2[2][16:]
        self.corrupt_pem_chars = write(self.p("corrupt-chars.pem"),
                                       "\n".join([lines[0]] + body2 + [lines[-1]]) + "\n")
        self.empty = write(self.p("empty.crt"), b"")
        self.random_10mb = self.p("random-10mb.p12")
        with open(self.random_10mb, "wb") as f:
            f.write(os.urandom(10 * 1024 * 1024))


# ---------------------------------------------------------------------------
# agents and the certsync command
# ---------------------------------------------------------------------------

class CliResult(tuple):
    """(rc, data, stderr); data is the parsed JSON (json=True) or stdout
    bytes (json=False).  .stdout holds the raw stdout."""

    def __new__(cls, rc, data, stderr, stdout, args):
        self = tuple.__new__(cls, (rc, data, stderr))
        self.rc, self.data, self.stderr, self.stdout, self.args = rc, data, stderr, stdout, args
        return self

    @property
    def message(self):
        """The error message: JSON error.message when present, plus stderr."""
        m = ""
        if isinstance(self.data, dict) and isinstance(self.data.get("error"), dict):
            m = str(self.data["error"].get("message", ""))
        return (m + "\n" + self.stderr).strip()

    def describe(self):
        out = self.stdout.decode(errors="replace") if isinstance(self.stdout, bytes) else str(self.stdout)
        return "certsync %s\n  exit %s\n  stdout: %s\n  stderr: %s" % (
            " ".join(self.args), self.rc, out[:3000], self.stderr[:3000])


def run_certsync(binary, args, json=True, check=None, timeout=CMD_TIMEOUT, env=None, input=None):
    """Runs `certsync ARGS` (with --json first when json).  check: None (no
    check), True/0 (must exit 0) or an int (must exit with it)."""
    full = [binary] + (["--json"] if json else []) + [str(a) for a in args]
    try:
        p = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                           env=env, input=input)
    except subprocess.TimeoutExpired:
        raise AssertionError("certsync %s did not finish within %d s" % (" ".join(map(str, args)),
                                                                         timeout))
    stderr = p.stderr.decode(errors="replace")
    data = p.stdout
    if json:
        try:
            data = jsonlib.loads(p.stdout.decode()) if p.stdout.strip() else None
        except ValueError:
            data = None
    res = CliResult(p.returncode, data, stderr, p.stdout, [str(a) for a in args])
    if check is not None:
        want = 0 if check is True else check
        assert p.returncode == want, "expected exit %d\n%s" % (want, res.describe())
        if json:
            assert data is not None, "stdout is not one JSON object\n" + res.describe()
    return res


def short_tmpdir():
    """A short directory for UNIX sockets (108-byte path limit); removed
    when the test process exits, whatever the tests left in it."""
    d = tempfile.mkdtemp(prefix="cs-", dir="/tmp")
    atexit.register(shutil.rmtree, d, True)
    return d


def socket_accepts(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Agent:
    """One `certsync agent -c FILE` process with its own configuration."""

    # what runs the agent's command (the campaign: `ip netns exec NS`); it
    # must exec the agent, so that the process's PID is the agent's
    launcher = []

    def __init__(self, binary, workdir, name="primary", role="primary",
                 hostname="primary.example.test", site="support.example.test",
                 peers=(("backup", "backup", "backup.example.test"),),
                 passphrase="correct horse battery staple", log_level="info",
                 data_dir=None, sock_dir=None):
        self.binary = binary
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.name, self.role, self.hostname, self.site = name, role, hostname, site
        self.peers = list(peers)
        self.log_level = log_level
        self.data_dir = data_dir or os.path.join(self.workdir, "data")
        self.sock_dir = sock_dir or short_tmpdir()
        self.control_socket = os.path.join(self.sock_dir, "control.sock")
        self.passphrase_file = os.path.join(self.workdir, "passphrase")
        self.set_passphrase(passphrase)
        self.config = os.path.join(self.workdir, "certsync.conf")
        self.write_config()
        self.proc = None
        self.stderr_path = None
        self.starts = 0
        self.exit_codes = []

    def set_passphrase(self, passphrase):
        self.passphrase = passphrase
        write(self.passphrase_file, passphrase + "\n", mode=0o600)

    def config_text(self):
        t = ("# written by the certsync integration tests\n"
             "[node]\nname = {n}\nrole = {r}\nhostname = {h}\ndata_dir = {d}\n"
             "control_socket = {s}\npassphrase_file = {p}\nlog_level = {l}\n\n"
             "[cluster]\nsite_hostname = {site}\n").format(
                 n=self.name, r=self.role, h=self.hostname, d=self.data_dir, s=self.control_socket,
                 p=self.passphrase_file, l=self.log_level, site=self.site)
        for pname, prole, phost in self.peers:
            t += "\n[peer %s]\nrole = %s\nhostname = %s\n" % (pname, prole, phost)
        return t

    def write_config(self):
        write(self.config, self.config_text())

    @property
    def hosts(self):
        return [self.site, self.hostname] + [h for _, _, h in self.peers]

    # -- process -------------------------------------------------------------
    def start(self, wait=True, timeout=30):
        assert self.proc is None or self.proc.poll() is not None, "agent already running"
        self.starts += 1
        self.stderr_path = os.path.join(self.workdir, "agent-%d.stderr" % self.starts)
        self._stderr_f = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.launcher + [self.binary, "agent", "-c", self.config],
                                     stdin=subprocess.DEVNULL, stdout=self._stderr_f,
                                     stderr=self._stderr_f,
                                     preexec_fn=getattr(self, "preexec", None))
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.05) + 1):
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError("agent exited with %d before its control socket accepted:\n%s"
                                     % (rc, self.stderr()[-4000:]))
            if os.path.exists(self.control_socket) and socket_accepts(self.control_socket):
                return self.wait_started(deadline)
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise AssertionError("agent's control socket %s did not accept within %d s:\n%s"
                             % (self.control_socket, timeout, self.stderr()[-4000:]))

    def starting(self):
        """True while a primary that just started waits to hear its peers
        (status says `starting`): it refuses changes meanwhile."""
        res = self.cli("status")
        rs = res.data.get("replication") if res.rc == 0 and isinstance(res.data, dict) else None
        return isinstance(rs, dict) and rs.get("sync") == "starting"

    def wait_started(self, deadline):
        """Waits (until deadline, monotonic) for the node to leave `starting`."""
        while self.starting():
            if time.monotonic() > deadline:
                raise AssertionError("agent %s still starting at the deadline:\n%s"
                                     % (self.name, self.stderr()[-4000:]))
            time.sleep(0.05)

    def wait_exit(self, timeout=30):
        """Exit status, or None if still running after timeout."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._stderr_f.close()
        return rc

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Sends sig to the agent's PID and waits; SIGKILL after timeout.
        Returns the exit status (negative: killed by that signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            rc = self.wait_exit(timeout)
            if rc is None:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
                self._stderr_f.close()
                rc = "did not stop within %d s of %s (SIGKILL sent)" % (timeout, sig.name)
        else:
            rc = self.proc.returncode
            self._stderr_f.close()
        self.exit_codes.append(rc)
        return rc

    def kill(self):
        """SIGKILL by PID: a crash."""
        return self.stop(signal.SIGKILL, timeout=30)

    def stderr(self):
        if not self.stderr_path or not os.path.exists(self.stderr_path):
            return ""
        return read(self.stderr_path).decode(errors="replace")

    def all_stderr(self):
        out = b""
        for i in range(1, self.starts + 1):
            p = os.path.join(self.workdir, "agent-%d.stderr" % i)
            if os.path.exists(p):
                out += read(p)
        return out

    # -- the command ---------------------------------------------------------
    def cli(self, *args, json=True, check=None, timeout=CMD_TIMEOUT, input=None):
        res = run_certsync(self.binary, ["-c", self.config] + list(args), json=json, check=None,
                           timeout=timeout, input=input)
        if check is not None:
            want = 0 if check is True else check
            if res.rc != want:
                alive = "agent running" if self.running else "agent EXITED with %s" % (
                    self.proc.returncode if self.proc else None)
                raise AssertionError("expected exit %d\n%s\n  (%s; agent stderr tail:\n%s)" % (
                    want, res.describe(), alive, self.stderr()[-2000:]))
            if json:
                assert res.data is not None, "stdout is not one JSON object\n" + res.describe()
        return res

    def status(self):
        return self.cli("status", "--recompute", check=0).data

    def snapshot(self):
        """What must not change after a refused command: position, digest,
        counts, default and the ids of every certificate and request."""
        st = self.status()
        certs = self.cli("cert", "list", check=0).data["certificates"]
        reqs = self.cli("csr", "list", check=0).data["requests"]
        return {
            "epoch": st["epoch"], "seq": st["seq"], "digest": st["digest"],
            "digest_ok": st["digest_ok"], "counts": st["counts"], "default": st["default"],
            "certs": sorted((c["id"], c["has_key"], tuple(c["warnings"])) for c in certs),
            "requests": sorted((r["id"], tuple(r.get("fulfilled_by") or ())) for r in reqs),
        }

    def certs(self):
        return {c["id"]: c for c in self.cli("cert", "list", check=0).data["certificates"]}

    def import_(self, *files, password=False, name=None, check=0):
        args = ["import"] + [str(f) for f in files]
        if password:
            args += ["--password-file", password if isinstance(password, str) else self.pw_file()]
        if name:
            args += ["--name", name]
        return self.cli(*args, check=check)

    def pw_file(self):
        p = os.path.join(self.workdir, "import-password")
        if not os.path.exists(p):
            write(p, PASSWORD + "\n", mode=0o600)
        return p

    def data_files(self):
        """Every regular file under data_dir: {path: bytes}."""
        out = {}
        for root, _, files in os.walk(self.data_dir):
            for f in files:
                p = os.path.join(root, f)
                if os.path.isfile(p):
                    out[p] = read(p)
        return out


def error_text(res):
    return res.message.lower()


if __name__ == "__main__":
    d = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="certsync-pki-")
    t0 = time.monotonic()
    pki = PKI(d)
    for leaf in pki.leaves.values():
        for fmt in ("cert.der", "chain.pem", "bundle.pem", "key.pem", "key.p8", "key.p8enc",
                    "key.enc.pem", "key.trad.pem", "key.trad.der", "p12", "p12-nokey"):
            leaf.file(fmt)
        print(leaf, leaf.sans)
    print("built in %.1f s under %s" % (time.monotonic() - t0, d))


# ---- TLS clients --------------------------------------------------------------

def der_id(pem_text):
    ders = pem_cert_ders(pem_text)
    return cert_id(ders[0]) if ders else None


def s_client(port, sni, *extra, host="127.0.0.1"):
    args = ["openssl", "s_client", "-connect", "%s:%d" % (host, port)]
    args += ["-servername", sni] if sni is not None else ["-noservername"]
    p = subprocess.run(args + list(extra), input=b"", stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    return p.stdout.decode(errors="replace")


def s_client_id(port, sni, host="127.0.0.1"):
    """The id of the certificate `openssl s_client -servername sni` receives."""
    return der_id(s_client(port, sni, host=host))


# ---- clusters made by `certsync cluster init` ----------------------------------

def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_handed_out = set()


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    """A port free now, below the kernel's ephemeral range: a port the
    kernel gave out (bind to 0) can be taken as the source port of some
    client's connection while its server restarts, and the server then
    cannot bind it again."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(10000, low)
        if port in _handed_out:
            continue
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((host, port))
        except OSError:
            continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port below %d on %s" % (low, host))


class ClusterNode(Agent):
    """A node whose configuration, key pair and passphrase `certsync cluster
    init` wrote; tests may add [node] keys (log_retain) or move data_dir."""

    def __init__(self, binary, folder, name, role, hostname, site, repl_port, tls_port,
                 address="127.0.0.1"):
        self.generated = open(os.path.join(folder, "certsync.conf")).read()
        self.repl_port, self.tls_port, self.address = repl_port, tls_port, address
        self.log_retain = None
        with open(os.path.join(folder, "passphrase")) as f:
            passphrase = f.read().strip()
        super().__init__(binary, folder, name=name, role=role, hostname=hostname, site=site,
                         peers=(), passphrase=passphrase, data_dir=os.path.join(folder, "data"),
                         sock_dir=folder)

    def config_text(self):
        t = re.sub(r"(?m)^data_dir = .*$", lambda _: "data_dir = " + self.data_dir, self.generated)
        extra = "log_level = %s\n" % self.log_level
        if self.log_retain:
            extra += "log_retain = %d\n" % self.log_retain
        return t.replace("\n[cluster]", extra + "\n[cluster]", 1)

    def served_id(self, sni):
        return s_client_id(self.tls_port, sni, host=self.address)


def free_port_on(hosts):
    """A port free now on every address of hosts (127.x addresses)."""
    for _ in range(50):
        port = free_port(host=hosts[0])
        try:
            for h in hosts[1:]:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind((h, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on all of %s" % ", ".join(hosts))


def init_cluster(binary, nodes, site="support.example.test", folder=None, addresses=None,
                 tls_port=None, http_port=None, cls=ClusterNode):
    """Writes a cluster with `certsync cluster init`: nodes is [(name,
    role)], hostnames NAME.example.test.  Every node on 127.0.0.1 with free
    ports of its own, or, with addresses (one 127.x address per node), each
    node on its own address with the same ports (tls_port, or a free one):
    what a CA that validates on a fixed port needs; http_port: each node's
    http_listen on that port of its address.  Returns the (not started)
    nodes, of class cls, in the order given."""
    folder = folder or os.path.join(short_tmpdir(), "cluster")
    if addresses:
        shared = (free_port_on(addresses), tls_port or free_port_on(addresses))
        ports = [shared] * len(nodes)
    else:
        addresses = ["127.0.0.1"] * len(nodes)
        ports = [(free_port(), free_port()) for _ in nodes]
    args = [binary, "cluster", "init", folder, "--site", site]
    for (name, role), (rp, tp), a in zip(nodes, ports, addresses):
        args += ["--node", "%s=%s,%s.example.test,tcp://%s:%d,%s:%d"
                 % (name, role, name, a, rp, a, tp) + (",%s:%d" % (a, http_port) if http_port
                                                       else "")]
    run(args)
    return [cls(binary, os.path.join(folder, name), name, role, name + ".example.test",
                site, rp, tp, address=a)
            for (name, role), (rp, tp), a in zip(nodes, ports, addresses)]


class ConfiguredAgent(Agent):
    """An agent with extra lines at the end of [node] (node_extra) and extra
    sections at the end of its configuration (sections)."""

    def __init__(self, *a, node_extra="", sections="", **kw):
        self.node_extra, self.sections = node_extra, sections
        super().__init__(*a, **kw)

    def config_text(self):
        t = super().config_text()
        t = re.sub(r"(log_level = \w+\n)", lambda m: m.group(1) + self.node_extra, t, count=1)
        return t + self.sections
