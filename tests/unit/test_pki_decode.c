/* test_pki_decode.c — pki_decode on the files operators bring, made by
 * real peers (the openssl command and GnuTLS certtool) in a scratch
 * directory: every import format, each way a file can be refused, and
 * exports read back by the openssl command. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "../../pki/pki.h"
#include "testlib.h"

#define PASSWORD "s3cret"

/* Made once by the openssl command and certtool: an EC root and
 * intermediate, an RSA leaf, its key in every form, PKCS#12 and PKCS#7
 * bundles, a request, and keys certsync refuses. */
static const char make_files[] =
    "set -e\n"
    "printf " PASSWORD " > pw\n"
    "printf 'basicConstraints=critical,CA:TRUE\\nkeyUsage=critical,keyCertSign,cRLSign\\n"
    "subjectKeyIdentifier=hash\\nauthorityKeyIdentifier=keyid\\n' > ca.ext\n"
    "printf 'basicConstraints=CA:FALSE\\n"
    "subjectAltName=DNS:leaf.example.test,DNS:*.corp.example.test\\n' > leaf.ext\n"
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout root.key"
    " -out root.pem -days 3650 -subj '/CN=Test Root CA'"
    " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign\n"
    "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout inter.key"
    " -out inter.csr -subj '/CN=Test Intermediate CA'\n"
    "openssl x509 -req -in inter.csr -CA root.pem -CAkey root.key -set_serial 2 -days 3650"
    " -extfile ca.ext -out inter.pem\n"
    "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out leaf.key\n"
    "openssl req -new -key leaf.key -subj /CN=leaf.example.test -out leaf.csr\n"
    "openssl x509 -req -in leaf.csr -CA inter.pem -CAkey inter.key -set_serial 3 -days 365"
    " -extfile leaf.ext -out leaf.pem\n"
    "openssl x509 -in leaf.pem -outform DER -out leaf.der\n"
    "cat leaf.pem inter.pem root.pem > chain.pem\n"
    "sed 's/$/\\r/' chain.pem > crlf.pem\n"
    "openssl x509 -in leaf.pem -text -out text.pem\n"
    "cat leaf.key leaf.pem inter.pem > combined.pem\n"
    "openssl req -in leaf.csr -outform DER -out leaf.csr.der\n"
    "openssl pkcs8 -topk8 -nocrypt -in leaf.key -outform DER -out leaf.p8.der\n"
    "openssl pkcs8 -topk8 -v2 aes-256-cbc -in leaf.key -passout file:pw -out leaf.p8enc.pem\n"
    "openssl pkcs8 -topk8 -v2 aes-256-cbc -in leaf.key -passout file:pw -outform DER"
    " -out leaf.p8enc.der\n"
    "openssl rsa -in leaf.key -traditional -out leaf.rsa.pem\n"
    "openssl rsa -in leaf.key -traditional -outform DER -out leaf.rsa.der\n"
    "openssl rsa -in leaf.key -traditional -aes256 -passout file:pw -out leaf.rsaenc.pem\n"
    "openssl ecparam -name prime256v1 -genkey -out ec.pem\n"
    "openssl ec -in ec.pem -outform DER -out ec.der\n"
    "openssl pkcs12 -export -in leaf.pem -inkey leaf.key -certfile inter.pem -name leaf"
    " -passout file:pw -out leaf.p12\n"
    "openssl pkcs12 -export -legacy -in leaf.pem -inkey leaf.key -certfile inter.pem"
    " -passout file:pw -out legacy.p12\n"
    "openssl pkcs12 -export -nokeys -in chain.pem -passout file:pw -out certs.p12\n"
    "openssl pkcs12 -export -in leaf.pem -inkey leaf.key -passout pass: -out nopass.p12\n"
    "openssl pkcs12 -in leaf.p12 -passin file:pw -nodes -out bags.pem\n"
    "certtool --to-p12 --load-certificate leaf.pem --load-privkey leaf.key --p12-name leaf"
    " --password " PASSWORD " --outder --outfile gnutls.p12\n"
    "openssl crl2pkcs7 -nocrl -certfile chain.pem -out chain.p7b\n"
    "openssl crl2pkcs7 -nocrl -certfile chain.pem -outform DER -out chain.p7b.der\n"
    "openssl dsaparam -noout -genkey -out dsa.pem 1024\n"
    "openssl genpkey -algorithm ed25519 -out ed25519.pem\n"
    "openssl ecparam -name secp256k1 -genkey -noout -out k1.pem\n"
    "openssl genrsa -out rsa1024.pem 1024\n"
    "openssl pkey -in leaf.key -pubout -out pub.pem\n";

static char dir[64];

/* Runs a shell command in the scratch directory; its exit status. */
__attribute__((format(printf, 1, 2))) static int sh(const char *fmt, ...)
{
	char cmd[2048], full[2200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "cd '%s' && { %s ; } >>log 2>&1", dir, cmd);
	return system(full);
}

static uint8_t *slurp(const char *name, size_t *len)
{
	char path[256];
	uint8_t *data;
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	rewind(f);
	data = malloc((size_t)n + 1);
	assert_non_null(data);
	assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return data;
}

static void spill(const char *name, const void *data, size_t len)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
	(void)state;
	test_dir_make(dir, sizeof(dir), "cs-pki");
	spill("make.sh", make_files, strlen(make_files));
	if (sh("sh make.sh") != 0)
		fail_msg("making the test files failed; see %s/log", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_dir_remove(dir);
	return 0;
}

static int decode(const char *name, const char *pass, pki_bundle *b, cs_err *err)
{
	size_t len;
	uint8_t *data = slurp(name, &len);
	int rc = pki_decode(data, len, pass, name, b, err);

	free(data);
	assert_int_equal(ERR_peek_error(), 0);
	return rc;
}

static const char *cn_of(X509 *x)
{
	static char cn[128];

	X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
	return cn;
}

/* Decodes name; its certificates have the common names in cns (a
 * comma-separated list, "" for none). */
static void expect_ok(const char *name, const char *pass, const char *format, const char *cns,
                      size_t nkeys)
{
	char got[512] = "";
	pki_bundle b;
	cs_err err;

	if (decode(name, pass, &b, &err) != 0)
		fail_msg("%s: %s", name, err.msg);
	assert_string_equal(b.format, format);
	for (int i = 0; i < sk_X509_num(b.certs); i++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", i > 0 ? "," : "",
		         cn_of(sk_X509_value(b.certs, i)));
	assert_string_equal(got, cns);
	assert_int_equal(b.nkeys, nkeys);
	pki_bundle_free(&b);
	assert_null(b.certs);
	assert_null(b.keys);
}

static void expect_refused_data(const char *what, const uint8_t *data, size_t len, const char *pass,
                                const char *msg)
{
	pki_bundle b;
	cs_err err;

	assert_int_equal(pki_decode(data, len, pass, what, &b, &err), -1);
	assert_int_equal(err.code, CS_EINPUT);
	if (strncmp(err.msg, msg, strlen(msg)) != 0)
		fail_msg("%s: got \"%s\", want \"%s\"", what, err.msg, msg);
	assert_null(b.certs);
	assert_null(b.keys);
	assert_int_equal(b.nkeys, 0);
	assert_int_equal(ERR_peek_error(), 0);
}

/* Decoding name fails with a message that starts with msg. */
static void expect_refused(const char *name, const char *pass, const char *msg)
{
	size_t len;
	uint8_t *data = slurp(name, &len);

	expect_refused_data(name, data, len, pass, msg);
	free(data);
}

#define CHAIN_CNS "leaf.example.test,Test Intermediate CA,Test Root CA"
#define ACCEPTED  "(accepted: DER or PEM X.509, PKCS#8, PKCS#12, OpenSSL keys)"

static void test_certificates(void **state)
{
	(void)state;
	expect_ok("leaf.der", NULL, "DER X.509", "leaf.example.test", 0);
	expect_ok("leaf.pem", NULL, "PEM", "leaf.example.test", 0);
	expect_ok("chain.pem", NULL, "PEM", CHAIN_CNS, 0);
	expect_ok("crlf.pem", NULL, "PEM", CHAIN_CNS, 0);
	/* Text around the blocks, as `openssl x509 -text` writes it. */
	expect_ok("text.pem", NULL, "PEM", "leaf.example.test", 0);
	expect_ok("chain.p7b", NULL, "PEM", CHAIN_CNS, 0);
	expect_ok("chain.p7b.der", NULL, "PKCS#7 DER", CHAIN_CNS, 0);
	/* A password is not needed and does no harm. */
	expect_ok("chain.pem", PASSWORD, "PEM", CHAIN_CNS, 0);
}

/* What the store would seal for key: PKCS#8 DER that decodes to it. */
static void expect_pkcs8(EVP_PKEY *key, X509 *leaf)
{
	uint8_t *der;
	size_t len;
	EVP_PKEY *back;
	cs_err err;

	assert_int_equal(pki_key_to_der(key, &der, &len, &err), 0);
	assert_true(len > 2 && der[0] == 0x30);
	back = pki_key_from_der(der, len, &err);
	assert_non_null(back);
	assert_true(pki_key_matches(leaf, back));
	EVP_PKEY_free(back);
	OPENSSL_secure_clear_free(der, len);
}

static void test_keys(void **state)
{
	const struct {
		const char *name, *format;
	} forms[] = {
	    {"leaf.key", "PEM"},     {"leaf.p8.der", "PKCS#8 DER"},
	    {"leaf.rsa.pem", "PEM"}, {"leaf.rsa.der", "OpenSSL key DER"},
	    {"combined.pem", "PEM"},
	};
	pki_bundle leaf, b;
	cs_err err;

	(void)state;
	assert_int_equal(decode("leaf.pem", NULL, &leaf, &err), 0);
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		if (decode(forms[i].name, NULL, &b, &err) != 0)
			fail_msg("%s: %s", forms[i].name, err.msg);
		assert_string_equal(b.format, forms[i].format);
		assert_int_equal(b.nkeys, 1);
		assert_true(pki_key_matches(sk_X509_value(leaf.certs, 0), b.keys[0]));
		expect_pkcs8(b.keys[0], sk_X509_value(leaf.certs, 0));
		pki_bundle_free(&b);
	}
	pki_bundle_free(&leaf);
	/* Plain PKCS#8 is sealed as it came, not encoded again: one with an
	 * (empty) attributes set, which OpenSSL's encoder would drop, comes
	 * back byte for byte. */
	{
		size_t n, dlen;
		uint8_t *p8 = slurp("leaf.p8.der", &n), *attr = malloc(n + 2), *der;

		assert_true(p8[0] == 0x30 && p8[1] == 0x82 &&
		            n == 4 + ((size_t)p8[2] << 8 | p8[3]));
		memcpy(attr, p8, n);
		attr[2] = (uint8_t)((n - 2) >> 8);
		attr[3] = (uint8_t)(n - 2);
		attr[n] = 0xa0; /* attributes [0] IMPLICIT SET OF, empty */
		attr[n + 1] = 0x00;
		spill("leaf.p8attr.der", attr, n + 2);
		if (decode("leaf.p8attr.der", NULL, &b, &err) != 0)
			fail_msg("leaf.p8attr.der: %s", err.msg);
		assert_int_equal(pki_key_to_der(b.keys[0], &der, &dlen, &err), 0);
		assert_int_equal(dlen, n + 2);
		assert_memory_equal(der, attr, n + 2);
		OPENSSL_secure_clear_free(der, dlen);
		free(p8);
		free(attr);
		pki_bundle_free(&b);
	}
	expect_ok("combined.pem", NULL, "PEM", "leaf.example.test,Test Intermediate CA", 1);
	/* The EC PARAMETERS block before the key is skipped. */
	expect_ok("ec.pem", NULL, "PEM", "", 1);
	expect_ok("ec.der", NULL, "OpenSSL key DER", "", 1);
}

static void test_encrypted_keys(void **state)
{
	const char *files[] = {"leaf.p8enc.pem", "leaf.p8enc.der", "leaf.rsaenc.pem"};
	char msg[256];

	(void)state;
	expect_ok("leaf.p8enc.pem", PASSWORD, "PEM", "", 1);
	expect_ok("leaf.p8enc.der", PASSWORD, "encrypted PKCS#8 DER", "", 1);
	expect_ok("leaf.rsaenc.pem", PASSWORD, "PEM", "", 1);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(msg, sizeof(msg),
		         "%s is an encrypted key: give its password with --password-file",
		         files[i]);
		expect_refused(files[i], NULL, msg);
		snprintf(msg, sizeof(msg),
		         "%s: wrong password for the encrypted key; give the right one with "
		         "--password-file",
		         files[i]);
		expect_refused(files[i], "wrong", msg);
	}
}

static void test_pkcs12(void **state)
{
	pki_bundle b;
	cs_err err;

	(void)state;
	expect_ok("leaf.p12", PASSWORD, "PKCS#12", "leaf.example.test,Test Intermediate CA", 1);
	assert_int_equal(decode("leaf.p12", PASSWORD, &b, &err), 0);
	assert_true(pki_key_matches(sk_X509_value(b.certs, 0), b.keys[0]));
	pki_bundle_free(&b);
	expect_refused("leaf.p12", NULL,
	               "leaf.p12: the PKCS#12 file is protected by a password; give it with "
	               "--password-file");
	expect_refused("leaf.p12", "wrong",
	               "leaf.p12: wrong password for the PKCS#12 file; give the right one with "
	               "--password-file");
	/* RC2-40 and 3DES, as Windows and OpenSSL 1.x wrote them. */
	expect_ok("legacy.p12", PASSWORD, "PKCS#12", "leaf.example.test,Test Intermediate CA", 1);
	expect_ok("gnutls.p12", PASSWORD, "PKCS#12", "leaf.example.test", 1);
	/* No key is fine here; the agent decides what it needs. */
	expect_ok("certs.p12", PASSWORD, "PKCS#12", CHAIN_CNS, 0);
	expect_ok("nopass.p12", NULL, "PKCS#12", "leaf.example.test", 1);
	expect_ok("nopass.p12", "", "PKCS#12", "leaf.example.test", 1);
	/* What `openssl pkcs12 -nodes` prints, bag attributes and all. */
	expect_ok("bags.pem", NULL, "PEM", "leaf.example.test,Test Intermediate CA", 1);
}

static void test_requests(void **state)
{
	(void)state;
	expect_refused("leaf.csr", NULL,
	               "leaf.csr is a certificate signing request: send it to your CA and import "
	               "the certificate it issues");
	expect_refused("leaf.csr.der", NULL,
	               "leaf.csr.der is a certificate signing request: send it to your CA and "
	               "import the certificate it issues");
}

static void test_refused_keys(void **state)
{
	(void)state;
	expect_refused("dsa.pem", NULL,
	               "dsa.pem holds a DSA key; certsync accepts RSA (2048 to 8192 bits) and "
	               "ECDSA P-256/P-384 keys");
	expect_refused("ed25519.pem", NULL,
	               "ed25519.pem holds an Ed25519 key; certsync accepts RSA (2048 to 8192 bits) "
	               "and ECDSA P-256/P-384 keys");
	expect_refused(
	    "k1.pem", NULL,
	    "k1.pem holds an EC key on curve secp256k1; certsync accepts RSA (2048 to 8192 bits) "
	    "and ECDSA P-256/P-384 keys");
	expect_refused(
	    "rsa1024.pem", NULL,
	    "rsa1024.pem holds a 1024-bit RSA key; certsync accepts RSA (2048 to 8192 bits) "
	    "and ECDSA P-256/P-384 keys");
}

/* The start of line `line` of the n-th PEM block (line 0: BEGIN). */
static char *block_line(uint8_t *pem, int n, int line)
{
	char *p = (char *)pem;

	for (int i = 0; i < n; i++) {
		p = strstr(i > 0 ? p + 1 : p, "-----BEGIN");
		assert_non_null(p);
	}
	for (int i = 0; i < line; i++) {
		p = strchr(p, '\n');
		assert_non_null(p);
		p++;
	}
	return p;
}

static void test_bad_input(void **state)
{
	const size_t big = 10 * 1024 * 1024;
	uint8_t *data = malloc(big), *pem;
	char *line, *next;
	uint8_t *san;
	size_t len;

	(void)state;
	assert_non_null(data);
	expect_refused_data("empty.pem", data, 0, NULL, "empty.pem is empty");
	assert_int_equal(RAND_bytes(data, (int)big), 1);
	data[0] = 0x5a; /* not a DER SEQUENCE, which could look cut short */
	expect_refused_data("random.bin", data, big, NULL,
	                    "random.bin is not a certificate, key or PKCS#12 file " ACCEPTED);
	expect_refused_data("random.bin", data, big, PASSWORD,
	                    "random.bin is not a certificate, key or PKCS#12 file " ACCEPTED);
	free(data);

	data = slurp("leaf.der", &len);
	expect_refused_data("cut.der", data, len / 2, NULL,
	                    "cut.der: truncated or corrupt DER certificate");
	expect_refused_data("cut.der", data, 1, NULL,
	                    "cut.der is not a certificate, key or PKCS#12 file " ACCEPTED);
	/* Something after the certificate: not a certificate after all. */
	data[len] = 0;
	expect_refused_data("long.der", data, len + 1, NULL,
	                    "long.der is not a certificate, key or PKCS#12 file " ACCEPTED);
	free(data);
	/* The SAN extension's first name made a NULL: the certificate still
	 * parses, its extensions do not. */
	data = slurp("leaf.der", &len);
	san = memmem(data, len, "\x82\x11leaf.example.test", 19);
	assert_non_null(san);
	*san = 0x05;
	expect_refused_data("bad-san.der", data, len, NULL,
	                    "bad-san.der: truncated or corrupt DER certificate");
	free(data);
	data = slurp("leaf.p12", &len);
	expect_refused_data("cut.p12", data, len - 10, PASSWORD,
	                    "cut.p12: truncated or corrupt DER file");
	free(data);

	/* A character base64 does not have, then a line gone from the middle:
	 * both name the block. */
	pem = slurp("chain.pem", &len);
	pem[len] = '\0';
	block_line(pem, 2, 3)[10] = '!';
	spill("bad64.pem", pem, len);
	expect_refused("bad64.pem", NULL, "bad64.pem: PEM block 2 (CERTIFICATE) is corrupt: ");
	free(pem);
	pem = slurp("chain.pem", &len);
	pem[len] = '\0';
	line = block_line(pem, 3, 2);
	next = strchr(line, '\n') + 1;
	memmove(line, next, len + 1 - (size_t)(next - (char *)pem));
	len -= (size_t)(next - line);
	spill("short.pem", pem, len);
	expect_refused("short.pem", NULL, "short.pem: PEM block 3 (CERTIFICATE) is corrupt");
	/* Cut inside the last block: no END line. */
	expect_refused_data("cut.pem", pem, len - 40, NULL,
	                    "cut.pem: PEM block 3 (CERTIFICATE) has no END line: the file is cut "
	                    "short");
	free(pem);
	expect_refused_data("begin.pem", (const uint8_t *)"-----BEGIN CERT\nIFICATE-----\n", 29,
	                    NULL, "begin.pem: PEM block 1 has a malformed BEGIN line");
	expect_refused("pub.pem", NULL, "pub.pem holds no certificate or private key " ACCEPTED);
}

/* Exports read back by the openssl command, and compared with what it
 * writes itself. */
static void test_export_roundtrip(void **state)
{
	const struct {
		pki_format fmt;
		const char *same_as;
	} same[] = {
	    {PKI_FMT_PEM, "chain.pem"},
	    {PKI_FMT_DER, "leaf.der"},
	    {PKI_FMT_P7B, "chain.p7b.der"},
	};
	pki_bundle chain, key;
	STACK_OF(X509) * issuers;
	uint8_t *out, *want;
	size_t len, wantlen;
	cs_err err;
	X509 *leaf;

	(void)state;
	assert_int_equal(decode("chain.pem", NULL, &chain, &err), 0);
	assert_int_equal(decode("leaf.key", NULL, &key, &err), 0);
	leaf = sk_X509_value(chain.certs, 0);
	issuers = sk_X509_dup(chain.certs);
	sk_X509_shift(issuers);
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
		assert_int_equal(pki_export(same[i].fmt, leaf, issuers, key.keys[0], NULL, NULL,
		                            &out, &len, &err),
		                 0);
		want = slurp(same[i].same_as, &wantlen);
		assert_int_equal(len, wantlen);
		assert_memory_equal(out, want, len);
		free(want);
		free(out);
	}

	assert_int_equal(
	    pki_export(PKI_FMT_P12, leaf, issuers, key.keys[0], "web", PASSWORD, &out, &len, &err),
	    0);
	spill("out.p12", out, len);
	free(out);
	assert_int_equal(sh("openssl pkcs12 -in out.p12 -passin file:pw -nokeys -out out.pem"), 0);
	expect_ok("out.pem", NULL, "PEM", CHAIN_CNS, 0);
	assert_int_equal(sh("grep -q 'friendlyName: web' out.pem"), 0);
	assert_int_equal(sh("openssl pkcs12 -in out.p12 -passin file:pw -nocerts -nodes"
	                    " -out out.key && openssl pkey -in out.key -noout"),
	                 0);
	assert_int_equal(sh("openssl pkcs12 -info -in out.p12 -passin file:pw -noout > info 2>&1"
	                    " && grep -q 'MAC: sha256' info"
	                    " && grep -q 'PBES2, PBKDF2, AES-256-CBC' info"),
	                 0);
	assert_int_not_equal(sh("openssl pkcs12 -in out.p12 -passin pass:wrong -noout"), 0);
	expect_ok("out.p12", PASSWORD, "PKCS#12", CHAIN_CNS, 1);
	sk_X509_free(issuers);
	pki_bundle_free(&key);
	pki_bundle_free(&chain);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_certificates),   cmocka_unit_test(test_keys),
	    cmocka_unit_test(test_encrypted_keys), cmocka_unit_test(test_pkcs12),
	    cmocka_unit_test(test_requests),       cmocka_unit_test(test_refused_keys),
	    cmocka_unit_test(test_bad_input),      cmocka_unit_test(test_export_roundtrip),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
