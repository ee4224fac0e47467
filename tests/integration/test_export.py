"""Export in every format, read back by openssl: pem (leaf + chain), der (the
leaf), p7b (certificates-only PKCS#7), p12 (leaf + chain + key, AES-256,
PBKDF2, SHA-256 MAC, under the export passphrase).  Only p12 carries a key;
a p12 export moves a certificate with its key to another cluster."""

import os

import pytest

from helpers import PASSWORD, cert_id, openssl, pem_blocks, pem_cert_ders, read, run, write

EXPORT_PASS = "export passphrase 42"


@pytest.fixture(scope="module")
def agent(module_agent_factory, pki):
    a = module_agent_factory()
    a.cli("import", pki.rsa_multi.file("p12"), "--password-file", pki.password_file, check=0)
    a.cli("import", pki.ec_wild.file("chain.pem"), pki.ec_wild.file("key.trad.pem"), check=0)
    a.cli("import", pki.g_rsa_multi.file("p12"), "--password-file", pki.password_file, check=0)
    a.cli("import", pki.elsewhere.file("cert.der"), check=0)          # no key
    return a


@pytest.fixture(scope="module")
def export_pass_file(agent):
    return write(os.path.join(agent.workdir, "export-pass"), EXPORT_PASS + "\n", mode=0o600)


LEAVES = ["rsa_multi", "ec_wild", "gnutls_rsa_multi"]


def export(agent, leaf_id, fmt, out, *extra):
    r = agent.cli("export", leaf_id, "--format", fmt, "-o", out, *extra, check=0)
    assert os.path.basename(r.data["file"]) == os.path.basename(out)
    assert r.data["format"] == fmt
    data = read(out)
    assert r.data["bytes"] == len(data)
    return data


def assert_no_key(data, leaf):
    assert b"PRIVATE KEY" not in data
    p8 = openssl("pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in", leaf.key).stdout
    assert p8 not in data
    assert p8[len(p8) // 2:len(p8) // 2 + 24] not in data


@pytest.mark.parametrize("name", LEAVES)
def test_export_pem(agent, pki, name, tmp_path):
    leaf = pki.leaves[name]
    out = str(tmp_path / "out.pem")
    data = export(agent, leaf.id, "pem", out)
    labels = [b[0] for b in pem_blocks(data)]
    assert labels == ["CERTIFICATE"] * 3, labels
    assert [cert_id(d) for d in pem_cert_ders(data)] == [leaf.id] + leaf.chain_ids
    fp = openssl("x509", "-in", out, "-noout", "-fingerprint", "-sha256").stdout.decode()
    assert fp.split("=", 1)[1].strip().replace(":", "").lower() == leaf.id
    v = run(["openssl", "verify", "-CAfile", leaf.issuer_chain[-1], "-untrusted", out, out])
    assert v.stdout.decode().strip().endswith("OK")
    assert_no_key(data, leaf)
    # without -o: the same bytes on standard output
    r = agent.cli("export", leaf.id, json=False, check=0)
    assert r.stdout == data


@pytest.mark.parametrize("name", LEAVES)
def test_export_der(agent, pki, name, tmp_path):
    leaf = pki.leaves[name]
    out = str(tmp_path / "out.der")
    data = export(agent, leaf.id, "der", out)
    assert data == leaf.der
    fp = openssl("x509", "-inform", "DER", "-in", out, "-noout", "-fingerprint", "-sha256").stdout.decode()
    assert fp.split("=", 1)[1].strip().replace(":", "").lower() == leaf.id
    assert_no_key(data, leaf)


@pytest.mark.parametrize("name", LEAVES)
def test_export_p7b(agent, pki, name, tmp_path):
    leaf = pki.leaves[name]
    out = str(tmp_path / "out.p7b")
    data = export(agent, leaf.id, "p7b", out)
    inform = "PEM" if data.startswith(b"-----BEGIN") else "DER"
    text = openssl("pkcs7", "-inform", inform, "-in", out, "-print_certs").stdout.decode()
    ids = sorted(cert_id(d) for d in pem_cert_ders(text))
    assert ids == sorted([leaf.id] + leaf.chain_ids)
    assert_no_key(data, leaf)


@pytest.mark.parametrize("name", LEAVES)
def test_export_p12(agent, pki, name, tmp_path, export_pass_file):
    leaf = pki.leaves[name]
    out = str(tmp_path / "out.p12")
    export(agent, leaf.id, "p12", out, "--passphrase-file", export_pass_file)
    text = openssl("pkcs12", "-in", out, "-passin", "file:" + export_pass_file, "-nodes").stdout.decode()
    assert sorted(cert_id(d) for d in pem_cert_ders(text)) == sorted([leaf.id] + leaf.chain_ids)
    keys = [b for b in pem_blocks(text) if b[0].endswith("PRIVATE KEY")]
    assert len(keys) == 1
    # the key in the p12 is the leaf's key
    kpath = write(str(tmp_path / "k.pem"), text[text.index("-----BEGIN PRIVATE KEY"):])
    pub_key = openssl("pkey", "-in", kpath, "-pubout").stdout
    pub_leaf = openssl("x509", "-in", leaf.cert, "-noout", "-pubkey").stdout
    assert pub_key == pub_leaf
    info = openssl("pkcs12", "-in", out, "-passin", "file:" + export_pass_file, "-info", "-noout")
    info = (info.stdout + info.stderr).decode()
    assert "AES-256-CBC" in info and "PBKDF2" in info, info
    assert "MAC: sha256" in info, info
    bad = run(["openssl", "pkcs12", "-in", out, "-passin", "pass:" + PASSWORD, "-nodes"], check=False)
    assert bad.returncode != 0


def test_p12_refused_without_passphrase_or_key(agent, pki, tmp_path, export_pass_file):
    before = agent.snapshot()
    out = str(tmp_path / "nope.p12")
    r = agent.cli("export", pki.rsa_multi.id, "--format", "p12", "-o", out)
    assert r.rc == 2, r.describe()  # p12 needs --passphrase-file: a usage error
    assert "passphrase" in r.message.lower()
    assert not os.path.exists(out) or os.path.getsize(out) == 0
    r = agent.cli("export", pki.elsewhere.id, "--format", "p12", "--passphrase-file", export_pass_file,
                  "-o", out)
    assert r.rc == 1, r.describe()
    assert "key" in r.message.lower()
    assert not os.path.exists(out) or os.path.getsize(out) == 0
    r = agent.cli("export", pki.rsa_multi.id, "--format", "pfx", "-o", out)
    assert r.rc == 2, r.describe()
    assert agent.snapshot() == before


def test_exports_change_nothing(agent, pki, tmp_path, export_pass_file):
    before = agent.snapshot()
    for fmt in ("pem", "der", "p7b"):
        agent.cli("export", pki.ec_wild.id, "--format", fmt, "-o", str(tmp_path / fmt), check=0)
    agent.cli("export", pki.ec_wild.id, "--format", "p12", "--passphrase-file", export_pass_file,
              "-o", str(tmp_path / "p12"), check=0)
    assert agent.snapshot() == before


def test_p12_moves_certificate_and_key_to_another_cluster(agent, pki, tmp_path, export_pass_file,
                                                          agent_factory):
    out = str(tmp_path / "move.p12")
    export(agent, pki.ec_wild.id, "p12", out, "--passphrase-file", export_pass_file)
    other = agent_factory(passphrase="a different cluster passphrase")
    r = other.cli("import", out, "--password-file", export_pass_file, check=0)
    assert [i["action"] for i in r.data["items"] if i["id"] == pki.ec_wild.id] == ["added"]
    c = other.cli("cert", "show", pki.ec_wild.id, check=0).data
    assert c["has_key"] is True and c["chain_complete"] is True and c["warnings"] == []
    assert c["sans"] == pki.ec_wild.sans
    # and back out again, readable by openssl with the key
    out2 = str(tmp_path / "again.p12")
    export(other, pki.ec_wild.id, "p12", out2, "--passphrase-file", export_pass_file)
    text = openssl("pkcs12", "-in", out2, "-passin", "file:" + export_pass_file, "-nodes").stdout.decode()
    assert "PRIVATE KEY" in text
