"""The test PKI itself (no agent needed): what the other tests import is what
they claim — chains openssl verifies, the SANs and dates we rely on, keys in
the formats we name.  A failure here is a test-environment problem, not an
agent bug."""

import re

import pytest

from helpers import PASSWORD, cert_id, openssl_text, pem_cert_ders, read, run


def x509_text(path, *args):
    return openssl_text("x509", "-in", path, "-noout", *args)


@pytest.mark.parametrize("leaf", ["ec_wild", "rsa_multi", "short20", "short28", "nosan", "partial",
                                  "elsewhere"])
def test_openssl_chain_verifies(pki, leaf):
    out = run(["openssl", "verify", "-CAfile", pki.root, "-untrusted", pki.inter,
               pki.leaves[leaf].cert]).stdout.decode()
    assert out.strip().endswith("OK")


@pytest.mark.parametrize("leaf", ["gnutls_ec_wild", "gnutls_rsa_multi"])
def test_certtool_chain_verifies(pki, leaf):
    out = run(["openssl", "verify", "-CAfile", pki.g_root, "-untrusted", pki.g_inter,
               pki.leaves[leaf].cert]).stdout.decode()
    assert out.strip().endswith("OK")
    out = run(["certtool", "--verify", "--load-ca-certificate", pki.g_root,
               "--infile", pki.leaves[leaf].file("chain.pem")], check=False)
    assert b"Verified" in out.stdout + out.stderr


def test_sans_and_key_types(pki):
    for leaf in pki.leaves.values():
        text = x509_text(leaf.cert, "-text")
        for s in leaf.sans:
            assert "DNS:" + s in text, (leaf, s)
        if leaf.key_type == "ec:p256":
            assert "prime256v1" in text or "P-256" in text
        elif leaf.key_type == "ec:p384":
            assert "secp384r1" in text or "P-384" in text
        else:
            assert "(%s bit)" % leaf.key_type[4:] in text
    assert "Subject Alternative Name" not in x509_text(pki.nosan.cert, "-text")


def test_dates(pki):
    assert "2021" in x509_text(pki.expired.cert, "-enddate")
    assert run(["openssl", "x509", "-in", pki.expired.cert, "-noout", "-checkend", "0"],
               check=False).returncode != 0
    for leaf, lo, hi in ((pki.short20, 19, 20), (pki.short28, 27, 28)):
        assert run(["openssl", "x509", "-in", leaf.cert, "-noout", "-checkend",
                    str((lo - 1) * 86400)], check=False).returncode == 0
        assert run(["openssl", "x509", "-in", leaf.cert, "-noout", "-checkend",
                    str((hi + 1) * 86400)], check=False).returncode != 0


def test_key_formats(pki):
    leaf = pki.rsa_multi
    assert b"BEGIN RSA PRIVATE KEY" in read(leaf.file("key.trad.pem"))
    assert b"BEGIN EC PRIVATE KEY" in read(pki.ec_wild.file("key.trad.pem"))
    assert b"BEGIN PRIVATE KEY" in read(leaf.file("key.pem"))
    assert read(leaf.file("key.p8"))[:1] == b"\x30"
    openssl_text("pkcs8", "-inform", "DER", "-in", leaf.file("key.p8enc"), "-passin", "pass:" + PASSWORD)
    openssl_text("pkcs8", "-inform", "DER", "-in", pki.g_ec_wild.file("key.p8enc"),
                 "-passin", "pass:" + PASSWORD)
    for l in (leaf, pki.g_rsa_multi):
        out = openssl_text("pkcs12", "-in", l.file("p12"), "-passin", "pass:" + PASSWORD, "-nodes")
        assert out.count("BEGIN CERTIFICATE") == 3 and "PRIVATE KEY" in out
        assert cert_id(pem_cert_ders(out)[0]) == l.id or l.id in [cert_id(d) for d in pem_cert_ders(out)]
    out = openssl_text("pkcs12", "-in", leaf.file("p12-nokey"), "-passin", "pass:" + PASSWORD, "-nodes")
    assert "PRIVATE KEY" not in out and out.count("BEGIN CERTIFICATE") == 3
    assert "BEGIN DSA PRIVATE KEY" in read(pki.dsa_key_trad).decode()
    assert "ED25519" in openssl_text("pkey", "-in", pki.ed25519_key, "-noout", "-text_pub")
    assert re.search(r"CERTIFICATE REQUEST", read(pki.csr_pem).decode())


def test_broken_inputs_are_broken(pki):
    assert read(pki.empty) == b""
    assert len(read(pki.random_10mb)) == 10 * 1024 * 1024
    for p, inform in ((pki.truncated_der, "DER"), (pki.corrupt_pem, "PEM"), (pki.corrupt_pem_chars, "PEM")):
        assert run(["openssl", "x509", "-inform", inform, "-in", p, "-noout"], check=False).returncode != 0


@pytest.mark.parametrize("leaf", ["rsa_multi", "ec_wild", "gnutls_rsa_multi"])
def test_secret_detector_finds_clear_keys_only(pki, leaf):
    """The patterns test_secrets searches for are found in every clear
    encoding of the key and in none of the public files."""
    from helpers import key_secret_patterns
    l = pki.leaves[leaf]
    pats = key_secret_patterns(l.key)
    for fmt in ("key.pem", "key.p8", "key.trad.pem", "key.trad.der", "bundle.pem"):
        blob = read(l.file(fmt))
        assert any(p in blob for p in pats.values()), fmt
    for fmt in ("cert.pem", "cert.der", "chain.pem", "p12", "key.p8enc", "key.enc.pem"):
        blob = read(l.file(fmt))
        assert not [n for n, p in pats.items() if p in blob], fmt
