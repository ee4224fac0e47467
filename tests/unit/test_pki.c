/* test_pki.c — unit tests of the pki module on material made in process:
 * key types, subject and SAN rules, self-signed certificates and requests,
 * certificate details, coverage, chains, export and the verify checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>

#include "../../pki/pki.h"

#define DAY 86400L

/* A root CA, an intermediate and leaves under it, made once. */
static struct {
	EVP_PKEY *ec, *rsa, *root_key, *ca_key;
	X509 *root, *inter, *leaf_rsa, *leaf_ec;
	STACK_OF(X509) * pool; /* inter and root */
} fx;

/* What issue() makes; from and to are seconds from now. */
typedef struct cert_spec {
	const char *subject; /* "/CN=.../O=..." */
	const char *san;     /* "DNS:a,IP:b" or NULL */
	bool ca;
	long from, to;
	const char *ski; /* subjectKeyIdentifier; NULL: the key's hash */
} cert_spec;

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	assert_non_null(ext);
	assert_true(X509_add_ext(x, ext, -1));
	X509_EXTENSION_free(ext);
}

static X509_NAME *parse_name(const char *text)
{
	X509_NAME *name = X509_NAME_new();
	char buf[256], *field, *save = NULL;

	assert_non_null(name);
	snprintf(buf, sizeof(buf), "%s", text);
	for (field = strtok_r(buf, "/", &save); field != NULL; field = strtok_r(NULL, "/", &save)) {
		char *eq = strchr(field, '=');

		assert_non_null(eq);
		*eq = '\0';
		assert_true(X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
		                                       (unsigned char *)eq + 1, -1, -1, 0));
	}
	return name;
}

/* A certificate made with OpenSSL alone, so that the module is checked
 * against material it did not produce.  issuer NULL: self-signed. */
static X509 *issue(const cert_spec *s, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key)
{
	X509 *x = X509_new();
	X509_NAME *name = parse_name(s->subject);
	static long serial = 1;

	assert_non_null(x);
	assert_true(X509_set_version(x, X509_VERSION_3));
	assert_true(ASN1_INTEGER_set(X509_get_serialNumber(x), serial++));
	assert_true(X509_set_subject_name(x, name));
	assert_true(X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name));
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), s->from));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), s->to));
	assert_true(X509_set_pubkey(x, key));
	add_ext(x, issuer ? issuer : x, NID_basic_constraints,
	        s->ca ? "critical,CA:TRUE" : "CA:FALSE");
	add_ext(x, issuer ? issuer : x, NID_subject_key_identifier, s->ski ? s->ski : "hash");
	add_ext(x, issuer ? issuer : x, NID_authority_key_identifier, "keyid");
	if (s->ca)
		add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
	if (s->san != NULL)
		add_ext(x, x, NID_subject_alt_name, s->san);
	assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
	X509_NAME_free(name);
	return x;
}

static X509 *leaf_for(const char *san, long from, long to, EVP_PKEY *key)
{
	const cert_spec s = {"/C=US/O=Example/CN=support.example.test", san, false, from, to, NULL};

	return issue(&s, key, fx.inter, fx.ca_key);
}

static int setup(void **state)
{
	const cert_spec root = {"/CN=Example Root CA", NULL, true, -DAY, 3650 * DAY, NULL};
	const cert_spec inter = {"/CN=Example Intermediate CA", NULL, true, -DAY, 3650 * DAY, NULL};
	cs_err err;

	(void)state;
	fx.ec = pki_key_generate(PKI_KEY_EC_P256, &err);
	fx.rsa = pki_key_generate(PKI_KEY_RSA_2048, &err);
	fx.root_key = pki_key_generate(PKI_KEY_EC_P384, &err);
	fx.ca_key = pki_key_generate(PKI_KEY_EC_P384, &err);
	assert_non_null(fx.ec);
	assert_non_null(fx.root_key);
	assert_non_null(fx.rsa);
	assert_non_null(fx.ca_key);
	fx.root = issue(&root, fx.root_key, NULL, NULL);
	fx.inter = issue(&inter, fx.ca_key, fx.root, fx.root_key);
	fx.leaf_rsa =
	    leaf_for("DNS:support.example.test,DNS:*.corp.example.test", -DAY, 365 * DAY, fx.rsa);
	fx.leaf_ec =
	    leaf_for("DNS:www.example.test,IP:192.0.2.7,DNS:api.example.test,IP:2001:db8::1", -DAY,
	             90 * DAY, fx.ec);
	fx.pool = sk_X509_new_null();
	assert_non_null(fx.pool);
	assert_true(sk_X509_push(fx.pool, fx.inter));
	assert_true(sk_X509_push(fx.pool, fx.root));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	sk_X509_free(fx.pool);
	X509_free(fx.leaf_ec);
	X509_free(fx.leaf_rsa);
	X509_free(fx.inter);
	X509_free(fx.root);
	EVP_PKEY_free(fx.ca_key);
	EVP_PKEY_free(fx.root_key);
	EVP_PKEY_free(fx.rsa);
	EVP_PKEY_free(fx.ec);
	return 0;
}

static void expect_fail(int rc, const cs_err *err, enum cs_errcode code, const char *msg)
{
	assert_int_equal(rc, -1);
	assert_int_equal(err->code, code);
	assert_string_equal(err->msg, msg);
	assert_int_equal(ERR_peek_error(), 0);
}

static const char *key_type(EVP_PKEY *key)
{
	static char type[16];

	pki_key_type(key, type, sizeof(type));
	return type;
}

/* ---- keys ----------------------------------------------------------------- */

static void test_keyspec_parse(void **state)
{
	const struct {
		const char *text;
		pki_keyspec spec;
	} ok[] = {
	    {"ec:p256", PKI_KEY_EC_P256},   {"ec:p384", PKI_KEY_EC_P384},
	    {"rsa:2048", PKI_KEY_RSA_2048}, {"rsa:3072", PKI_KEY_RSA_3072},
	    {"RSA:4096", PKI_KEY_RSA_4096},
	};
	pki_keyspec spec;
	cs_err err;

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(pki_keyspec_parse(ok[i].text, &spec, &err), 0);
		assert_int_equal(spec, ok[i].spec);
	}
	expect_fail(pki_keyspec_parse("rsa:1024", &spec, &err), &err, CS_EREFUSED,
	            "RSA keys below 2048 bits are refused; use rsa:2048, rsa:3072 or rsa:4096");
	expect_fail(pki_keyspec_parse("ed25519", &spec, &err), &err, CS_EUSAGE,
	            "unknown key type \"ed25519\"; use ec:p256, ec:p384, rsa:2048, rsa:3072 or "
	            "rsa:4096");
	expect_fail(pki_keyspec_parse("rsa:8192", &spec, &err), &err, CS_EUSAGE,
	            "unknown key type \"rsa:8192\"; use ec:p256, ec:p384, rsa:2048, rsa:3072 or "
	            "rsa:4096");
	assert_int_equal(pki_keyspec_parse(NULL, &spec, &err), -1);
}

static void test_key_generate(void **state)
{
	EVP_PKEY *key;
	cs_err err;

	(void)state;
	assert_string_equal(key_type(fx.ec), "ec:p256");
	assert_string_equal(key_type(fx.ca_key), "ec:p384");
	assert_string_equal(key_type(fx.rsa), "rsa:2048");
	key = pki_key_generate(PKI_KEY_RSA_3072, &err);
	assert_non_null(key);
	assert_string_equal(key_type(key), "rsa:3072");
	assert_int_equal(pki_key_supported(key, &err), 0);
	EVP_PKEY_free(key);
	assert_null(pki_key_generate((pki_keyspec)99, &err));
	assert_int_equal(err.code, CS_EUSAGE);
}

static void test_key_refused(void **state)
{
	const struct {
		EVP_PKEY *key;
		const char *type, *msg;
	} cases[] = {
	    {EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024), "rsa:1024",
	     "the key is a 1024-bit RSA key; certsync accepts RSA (2048 to 8192 bits) and "
	     "ECDSA P-256/P-384 keys"},
	    {EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), "ed25519",
	     "the key is an Ed25519 key; certsync accepts RSA (2048 to 8192 bits) and ECDSA "
	     "P-256/P-384 keys"},
	    {EVP_PKEY_Q_keygen(NULL, NULL, "ED448"), "ed448",
	     "the key is an Ed448 key; certsync accepts RSA (2048 to 8192 bits) and ECDSA "
	     "P-256/P-384 keys"},
	    {EVP_PKEY_Q_keygen(NULL, NULL, "X25519"), "x25519",
	     "the key is an X25519 key; certsync accepts RSA (2048 to 8192 bits) and ECDSA "
	     "P-256/P-384 keys"},
	    {EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1"), "ec:secp256k1",
	     "the key is an EC key on curve secp256k1; certsync accepts RSA (2048 to 8192 bits) "
	     "and ECDSA P-256/P-384 keys"},
	    {EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521"), "ec:secp521r1",
	     "the key is an EC key on curve secp521r1; certsync accepts RSA (2048 to 8192 bits) "
	     "and ECDSA P-256/P-384 keys"},
	};
	const pki_subject subj = {.country = "US", .common_name = "www.example.test"};
	cs_err err;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_non_null(cases[i].key);
		assert_string_equal(key_type(cases[i].key), cases[i].type);
		expect_fail(pki_key_supported(cases[i].key, &err), &err, CS_EINPUT, cases[i].msg);
		/* Nothing is signed with a refused key. */
		assert_null(pki_self_signed(cases[i].key, &subj, &err));
		assert_string_equal(err.msg, cases[i].msg);
		EVP_PKEY_free(cases[i].key);
	}
	assert_int_equal(pki_key_supported(fx.ec, &err), 0);
	assert_int_equal(pki_key_supported(fx.ca_key, &err), 0);
	assert_int_equal(pki_key_supported(fx.rsa, &err), 0);
}

static void test_key_der(void **state)
{
	EVP_PKEY *keys[] = {fx.ec, fx.rsa}, *back, *small;
	uint8_t a[PKI_ID_LEN], b[PKI_ID_LEN], *der;
	const unsigned char *p;
	PKCS8_PRIV_KEY_INFO *p8;
	size_t len;
	cs_err err;

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(pki_key_to_der(keys[i], &der, &len, &err), 0);
		/* Really PKCS#8, not the legacy per-type form. */
		p = der;
		p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);
		assert_non_null(p8);
		assert_ptr_equal(p, der + len);
		PKCS8_PRIV_KEY_INFO_free(p8);
		back = pki_key_from_der(der, len, &err);
		assert_non_null(back);
		assert_int_equal(EVP_PKEY_eq(back, keys[i]), 1);
		assert_int_equal(pki_key_spki_hash(back, a, &err), 0);
		assert_int_equal(pki_key_spki_hash(keys[i], b, &err), 0);
		assert_memory_equal(a, b, PKI_ID_LEN);
		EVP_PKEY_free(back);
		/* A byte more or less is not a key. */
		assert_null(pki_key_from_der(der, len - 1, &err));
		assert_int_equal(err.code, CS_EINPUT);
		OPENSSL_secure_clear_free(der, len);
	}
	assert_int_equal(pki_key_spki_hash(fx.ec, b, &err), 0);
	assert_memory_not_equal(a, b, PKI_ID_LEN);
	assert_null(pki_key_from_der((const uint8_t *)"garbage", 7, &err));
	assert_string_equal(err.msg, "not a PKCS#8 DER private key");
	small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	assert_int_equal(pki_key_to_der(small, &der, &len, &err), 0);
	assert_null(pki_key_from_der(der, len, &err));
	assert_int_equal(err.code, CS_EINPUT);
	OPENSSL_secure_clear_free(der, len);
	EVP_PKEY_free(small);
	assert_int_equal(ERR_peek_error(), 0);
}

/* ---- subject rules -------------------------------------------------------- */

static void test_country(void **state)
{
	char cc[3] = {0};
	int n = 0;

	(void)state;
	for (cc[0] = 'A'; cc[0] <= 'Z'; cc[0]++)
		for (cc[1] = 'A'; cc[1] <= 'Z'; cc[1]++)
			n += pki_country_valid(cc);
	assert_int_equal(n, 249);
	assert_true(pki_country_valid("GB"));
	assert_true(pki_country_valid("US"));
	assert_true(pki_country_valid("AX"));
	assert_true(pki_country_valid("SS"));
	assert_false(pki_country_valid("XX"));
	assert_false(pki_country_valid("UK"));
	assert_false(pki_country_valid("EU"));
	assert_false(pki_country_valid("gb"));
	assert_false(pki_country_valid("GBR"));
	assert_false(pki_country_valid(""));
	assert_false(pki_country_valid(NULL));
}

static int check(const char *cn, const char *const *sans, size_t n, pki_sans *out, char *note,
                 cs_err *err)
{
	const pki_subject subj = {.country = "DE", .common_name = cn, .sans = sans, .nsans = n};

	return pki_subject_check(&subj, out, note, 256, err);
}

static void expect_san_refused(const char *san, const char *msg)
{
	const char *sans[] = {"ok.example.test", san};
	pki_sans out;
	char note[256];
	cs_err err;

	expect_fail(check("My Server", sans, 2, &out, note, &err), &err, CS_EINPUT, msg);
	assert_null(out.names);
	assert_int_equal(out.n, 0);
}

static void test_subject_refusals(void **state)
{
	const char *san[] = {"www.example.test"};
	char long_label[80], long_name[300], long_cn[100];
	pki_subject subj = {.country = "XX", .common_name = "x", .sans = san, .nsans = 1};
	pki_sans out;
	char note[256];
	cs_err err;

	(void)state;
	expect_fail(pki_subject_check(&subj, &out, note, sizeof(note), &err), &err, CS_EINPUT,
	            "country code XX is not an ISO 3166 alpha-2 code (for example US, GB, DE)");
	subj.country = "gb";
	expect_fail(pki_subject_check(&subj, &out, note, sizeof(note), &err), &err, CS_EINPUT,
	            "country code gb must be upper case: GB");
	subj.country = NULL;
	expect_fail(pki_subject_check(&subj, &out, note, sizeof(note), &err), &err, CS_EINPUT,
	            "a country code is required (ISO 3166 alpha-2, for example US, GB, DE)");
	subj.country = "GB";
	subj.common_name = "";
	expect_fail(pki_subject_check(&subj, &out, note, sizeof(note), &err), &err, CS_EINPUT,
	            "a common name is required");
	memset(long_cn, 'a', 65);
	long_cn[65] = '\0';
	subj.common_name = long_cn;
	expect_fail(pki_subject_check(&subj, &out, note, sizeof(note), &err), &err, CS_EINPUT,
	            "the common name is longer than 64 characters");
	/* Bounds count characters, not bytes: 40 two-byte characters pass. */
	for (int i = 0; i < 40; i++)
		memcpy(long_cn + 2 * i, "\xc3\xa9", 2);
	long_cn[80] = '\0';
	subj.common_name = "x";
	subj.org = long_cn;
	assert_int_equal(pki_subject_check(&subj, &out, note, sizeof(note), &err), 0);
	pki_sans_free(&out);
	subj.org = NULL;
	subj.days = 3651;
	expect_fail(pki_subject_check(&subj, &out, note, sizeof(note), &err), &err, CS_EINPUT,
	            "a validity of 3651 days is out of range; use 1 to 3650");
	subj.days = -1;
	assert_int_equal(pki_subject_check(&subj, &out, note, sizeof(note), &err), -1);
	subj.days = 3650;
	subj.nsans = 0;
	expect_fail(pki_subject_check(&subj, &out, note, sizeof(note), &err), &err, CS_EINPUT,
	            "at least one --san is required (the common name becomes one only when it is "
	            "a fully qualified DNS name)");

	expect_san_refused("*.*.example.com", "SAN *.*.example.com: a wildcard is allowed only as "
	                                      "the whole left-most label, as in *.example.com");
	expect_san_refused("a*.example.com",
	                   "SAN a*.example.com: a wildcard is allowed only as the "
	                   "whole left-most label, as in *.example.com");
	expect_san_refused("www.*.example.com",
	                   "SAN www.*.example.com: a wildcard is allowed only "
	                   "as the whole left-most label, as in *.example.com");
	expect_san_refused("*.com", "SAN *.com: a wildcard needs at least two labels after it, as "
	                            "in *.example.com");
	expect_san_refused("*", "SAN *: a wildcard needs at least two labels after it, as in "
	                        "*.example.com");
	expect_san_refused("", "SAN : the name is empty");
	expect_san_refused("a..example.com",
	                   "SAN a..example.com: each dot-separated label needs 1 to 63 characters");
	expect_san_refused("-a.example.com",
	                   "SAN -a.example.com: a label cannot start or end with '-'");
	expect_san_refused("a-.example.com",
	                   "SAN a-.example.com: a label cannot start or end with '-'");
	expect_san_refused("a_b.example.com",
	                   "SAN a_b.example.com: a DNS name holds only letters, "
	                   "digits, '-' and '.' (international names in their xn-- form)");
	expect_san_refused("host name.example.com",
	                   "SAN host name.example.com: a DNS name holds "
	                   "only letters, digits, '-' and '.' (international names in their xn-- "
	                   "form)");
	expect_san_refused("caf\xc3\xa9.example",
	                   "SAN caf\xc3\xa9.example: a DNS name holds only "
	                   "letters, digits, '-' and '.' (international names "
	                   "in their xn-- form)");
	expect_san_refused("1.2.3", "SAN 1.2.3: it is not an IP address, and a DNS name cannot end "
	                            "in an all-digit label");
	expect_san_refused("192.0.2.300",
	                   "SAN 192.0.2.300: it is not an IP address, and a DNS name "
	                   "cannot end in an all-digit label");
	memset(long_label, 'a', 64);
	strcpy(long_label + 64, ".example.com");
	expect_san_refused(long_label,
	                   "SAN aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	                   "aaaaaaa.example.com: each dot-separated label needs 1 to 63 "
	                   "characters");
	for (int i = 0; i < 64; i++)
		memcpy(long_name + 4 * i, "abc.", 4);
	strcpy(long_name + 252, "com");
	expect_san_refused(
	    long_name, "SAN abc.abc.abc.abc.abc.abc.abc.abc.abc.abc.abc.abc.abc.abc.abc.abc....: a "
	               "DNS name has at most 253 characters");
	/* 253 characters is the most a name may have. */
	long_name[253] = '\0';
	long_name[252] = 'c';
	{
		const char *sans[] = {long_name};

		assert_int_equal(check("x", sans, 1, &out, note, &err), 0);
		assert_string_equal(out.names[0], long_name);
		pki_sans_free(&out);
	}
}

static void expect_sans(const char *cn, const char *const *in, size_t nin, const char *const *want,
                        size_t nwant, const char *want_note)
{
	pki_sans out;
	char note[256];
	cs_err err;

	if (check(cn, in, nin, &out, note, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(out.n, nwant);
	for (size_t i = 0; i < nwant; i++)
		assert_string_equal(out.names[i], want[i]);
	assert_string_equal(note, want_note);
	pki_sans_free(&out);
	assert_null(out.names);
}

static void test_subject_sans(void **state)
{
	const char *in1[] = {"API.Example.Test", "api.example.test.", "10.0.0.1", "2001:DB8:0::1",
	                     "*.Corp.Example.Test"};
	const char *want1[] = {"www.example.test", "api.example.test", "10.0.0.1", "2001:db8::1",
	                       "*.corp.example.test"};
	const char *in2[] = {"api.example.test", "WWW.example.test"};
	const char *want2[] = {"api.example.test", "www.example.test"};
	const char *in3[] = {"api.example.test"};
	const char *want3[] = {"api.example.test"};
	const char *want4[] = {"*.example.test"};
	const char *in5[] = {"localhost", "::1"};
	const char *want5[] = {"localhost", "::1"};

	(void)state;
	expect_sans("WWW.example.test.", in1, 5, want1, 5,
	            "common name www.example.test was added as the first SAN");
	/* Already listed, whatever the case: not added twice. */
	expect_sans("www.example.test", in2, 2, want2, 2, "");
	expect_sans("My Server", in3, 1, want3, 1, "");
	expect_sans("10.0.0.2", in3, 1, want3, 1, "");
	expect_sans("localhost", in3, 1, want3, 1, "");
	expect_sans("*.example.test", NULL, 0, want4, 1,
	            "common name *.example.test was added as the first SAN");
	expect_sans("server", in5, 2, want5, 2, "");
}

/* ---- new certificates and requests ---------------------------------------- */

/* The extension nid is there, critical or not, and prints as want. */
static bool has_ext(X509 *x, int nid, bool critical, const char *want)
{
	int i = X509_get_ext_by_NID(x, nid, -1);
	BIO *bio = BIO_new(BIO_s_mem());
	char buf[256] = {0};
	bool found;

	assert_true(i >= 0);
	assert_true(X509V3_EXT_print(bio, X509_get_ext(x, i), 0, 0));
	BIO_read(bio, buf, sizeof(buf) - 1);
	BIO_free(bio);
	found =
	    strcmp(buf, want) == 0 && X509_EXTENSION_get_critical(X509_get_ext(x, i)) == critical;
	if (!found)
		print_message("%s: %s\n", OBJ_nid2sn(nid), buf);
	return found;
}

static void test_self_signed(void **state)
{
	const char *sans[] = {"api.example.test", "192.0.2.1"};
	pki_subject subj = {.country = "GB",
	                    .state = "England",
	                    .locality = "London",
	                    .org = "Example Ltd",
	                    .unit = "Ops",
	                    .common_name = "www.example.test",
	                    .sans = sans,
	                    .nsans = 2};
	EVP_PKEY *keys[] = {fx.ec, fx.rsa};
	const char *usage[] = {"Digital Signature", "Digital Signature, Key Encipherment"};
	const int days[] = {0, 30};
	pki_cert_info info;
	time_t now = time(NULL);
	BIGNUM *serial;
	cs_err err;
	X509 *x;

	(void)state;
	for (int i = 0; i < 2; i++) {
		subj.days = days[i];
		x = pki_self_signed(keys[i], &subj, &err);
		if (x == NULL)
			fail_msg("%s", err.msg);
		assert_int_equal(X509_get_version(x), X509_VERSION_3);
		assert_int_equal(X509_verify(x, keys[i]), 1);
		serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
		assert_int_equal(BN_num_bits(serial), 128);
		BN_free(serial);
		assert_true(has_ext(x, NID_basic_constraints, true, "CA:FALSE"));
		assert_true(has_ext(x, NID_key_usage, true, usage[i]));
		assert_true(
		    has_ext(x, NID_ext_key_usage, false,
		            "TLS Web Server Authentication, TLS Web Client Authentication"));
		assert_non_null(X509_get0_subject_key_id(x));
		assert_int_equal(pki_cert_inspect(x, &info, &err), 0);
		assert_string_equal(info.subject, "CN=www.example.test,OU=Ops,O=Example Ltd,"
		                                  "L=London,ST=England,C=GB");
		assert_string_equal(info.issuer, info.subject);
		assert_string_equal(info.subject_cn, "www.example.test");
		assert_int_equal(info.sans.n, 3);
		assert_string_equal(info.sans.names[0], "www.example.test");
		assert_string_equal(info.sans.names[1], "api.example.test");
		assert_string_equal(info.sans.names[2], "192.0.2.1");
		assert_true(info.self_signed);
		assert_int_equal(info.kind, PKI_KIND_IDENTITY);
		assert_string_equal(info.key_type, key_type(keys[i]));
		assert_true(info.not_before <= now - 59 && info.not_before >= now - 65);
		assert_int_equal(info.not_after - info.not_before,
		                 (days[i] != 0 ? days[i] : 365) * DAY);
		pki_cert_info_free(&info);
		X509_free(x);
	}
	subj.country = "XX";
	assert_null(pki_self_signed(fx.ec, &subj, &err));
	assert_int_equal(err.code, CS_EINPUT);
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_csr(void **state)
{
	const char *sans[] = {"*.example.test", "2001:db8::5"};
	const pki_subject subj = {.country = "FR",
	                          .org = "Exemple",
	                          .common_name = "portal.example.test",
	                          .sans = sans,
	                          .nsans = 2};
	uint8_t spki[PKI_ID_LEN], *der;
	pki_cert_info info;
	X509_REQ *req, *back;
	char *pem;
	size_t len;
	cs_err err;

	(void)state;
	req = pki_csr(fx.rsa, &subj, &err);
	if (req == NULL)
		fail_msg("%s", err.msg);
	assert_int_equal(X509_REQ_verify(req, fx.rsa), 1);
	assert_int_equal(pki_csr_inspect(req, &info, &err), 0);
	assert_string_equal(info.subject, "CN=portal.example.test,O=Exemple,C=FR");
	assert_string_equal(info.subject_cn, "portal.example.test");
	assert_int_equal(info.sans.n, 3);
	assert_string_equal(info.sans.names[0], "portal.example.test");
	assert_string_equal(info.sans.names[1], "*.example.test");
	assert_string_equal(info.sans.names[2], "2001:db8::5");
	assert_string_equal(info.key_type, "rsa:2048");
	assert_int_equal(pki_key_spki_hash(fx.rsa, spki, &err), 0);
	assert_memory_equal(info.spki_sha256, spki, PKI_ID_LEN);
	pki_cert_info_free(&info);

	assert_int_equal(pki_csr_der(req, &der, &len, &err), 0);
	back = pki_csr_from_der(der, len, &err);
	assert_non_null(back);
	assert_int_equal(X509_REQ_verify(back, fx.rsa), 1);
	X509_REQ_free(back);
	assert_null(pki_csr_from_der(der, len - 1, &err));
	assert_memory_equal(err.msg, "not a DER certificate signing request: ", 39);
	free(der);

	pem = pki_csr_pem(req, &err);
	assert_non_null(pem);
	assert_memory_equal(pem, "-----BEGIN CERTIFICATE REQUEST-----\n", 36);
	assert_non_null(strstr(pem, "-----END CERTIFICATE REQUEST-----\n"));
	free(pem);
	X509_REQ_free(req);
	assert_int_equal(ERR_peek_error(), 0);
}

/* ---- what a certificate says ---------------------------------------------- */

static void test_cert_der(void **state)
{
	uint8_t *der, *longer;
	size_t len;
	X509 *back;
	cs_err err;

	(void)state;
	assert_int_equal(pki_cert_der(fx.leaf_ec, &der, &len, &err), 0);
	back = pki_cert_from_der(der, len, &err);
	assert_non_null(back);
	assert_int_equal(X509_cmp(back, fx.leaf_ec), 0);
	X509_free(back);
	longer = malloc(len + 1);
	memcpy(longer, der, len);
	longer[len] = 0;
	assert_null(pki_cert_from_der(longer, len + 1, &err));
	assert_string_equal(err.msg, "not a DER certificate");
	free(longer);
	free(der);
}

static void test_cert_inspect(void **state)
{
	uint8_t id[PKI_ID_LEN], *der;
	pki_cert_info info;
	size_t len;
	cs_err err;

	(void)state;
	assert_int_equal(pki_cert_inspect(fx.root, &info, &err), 0);
	assert_int_equal(info.kind, PKI_KIND_ROOT);
	assert_true(info.self_signed);
	assert_string_equal(info.subject, "CN=Example Root CA");
	assert_string_equal(info.key_type, "ec:p384");
	assert_int_equal(info.sans.n, 0);
	pki_cert_info_free(&info);

	assert_int_equal(pki_cert_inspect(fx.inter, &info, &err), 0);
	assert_int_equal(info.kind, PKI_KIND_INTERMEDIATE);
	assert_false(info.self_signed);
	assert_string_equal(info.issuer, "CN=Example Root CA");
	pki_cert_info_free(&info);

	assert_int_equal(pki_cert_inspect(fx.leaf_ec, &info, &err), 0);
	assert_int_equal(info.kind, PKI_KIND_IDENTITY);
	assert_false(info.self_signed);
	assert_string_equal(info.subject, "CN=support.example.test,O=Example,C=US");
	assert_string_equal(info.subject_cn, "support.example.test");
	assert_string_equal(info.issuer, "CN=Example Intermediate CA");
	assert_int_equal(info.sans.n, 4);
	assert_string_equal(info.sans.names[0], "www.example.test");
	assert_string_equal(info.sans.names[1], "192.0.2.7");
	assert_string_equal(info.sans.names[2], "api.example.test");
	assert_string_equal(info.sans.names[3], "2001:db8::1");
	assert_string_equal(info.key_type, "ec:p256");
	assert_int_equal(info.not_after - info.not_before, 91 * DAY);
	assert_int_equal(pki_cert_der(fx.leaf_ec, &der, &len, &err), 0);
	assert_non_null(SHA256(der, len, id));
	assert_memory_equal(info.id, id, PKI_ID_LEN);
	free(der);
	assert_int_equal(pki_key_spki_hash(fx.ec, id, &err), 0);
	assert_memory_equal(info.spki_sha256, id, PKI_ID_LEN);
	pki_cert_info_free(&info);
	assert_int_equal(info.sans.n, 0);
}

static void test_key_matches(void **state)
{
	(void)state;
	assert_true(pki_key_matches(fx.leaf_ec, fx.ec));
	assert_true(pki_key_matches(fx.leaf_rsa, fx.rsa));
	assert_false(pki_key_matches(fx.leaf_ec, fx.rsa));
	assert_false(pki_key_matches(fx.leaf_rsa, fx.ec));
	assert_false(pki_key_matches(fx.leaf_rsa, NULL));
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_covers(void **state)
{
	const cert_spec partial = {"/CN=partial", "DNS:f*.example.test", false, -DAY, DAY, NULL};
	const cert_spec cn_only = {"/CN=cn.example.test", NULL, false, -DAY, DAY, NULL};
	X509 *x;

	(void)state;
	assert_true(pki_covers(fx.leaf_rsa, "support.example.test"));
	assert_true(pki_covers(fx.leaf_rsa, "SUPPORT.Example.TEST"));
	assert_true(pki_covers(fx.leaf_rsa, "support.example.test."));
	assert_true(pki_covers(fx.leaf_rsa, "tn1.corp.example.test"));
	assert_true(pki_covers(fx.leaf_rsa, "TN1.CORP.example.test."));
	/* A wildcard stands for exactly one label. */
	assert_false(pki_covers(fx.leaf_rsa, "a.b.corp.example.test"));
	assert_false(pki_covers(fx.leaf_rsa, "corp.example.test"));
	assert_false(pki_covers(fx.leaf_rsa, "example.test"));
	assert_false(pki_covers(fx.leaf_rsa, "www.example.test"));
	assert_false(pki_covers(fx.leaf_rsa, ""));
	assert_false(pki_covers(fx.leaf_rsa, "."));
	assert_false(pki_covers(fx.leaf_rsa, NULL));
	assert_true(pki_covers(fx.leaf_ec, "192.0.2.7"));
	assert_true(pki_covers(fx.leaf_ec, "2001:DB8:0:0::1"));
	assert_false(pki_covers(fx.leaf_ec, "192.0.2.8"));
	assert_false(pki_covers(fx.leaf_ec, "2001:db8::2"));
	/* An IP SAN is not a DNS name and the reverse. */
	assert_false(pki_covers(fx.leaf_rsa, "192.0.2.7"));
	x = issue(&partial, fx.ec, fx.inter, fx.ca_key);
	assert_false(pki_covers(x, "foo.example.test"));
	X509_free(x);
	/* Clients ignore the CN when matching; so does coverage. */
	x = issue(&cn_only, fx.ec, fx.inter, fx.ca_key);
	assert_false(pki_covers(x, "cn.example.test"));
	X509_free(x);
	assert_int_equal(ERR_peek_error(), 0);
}

/* ---- chains ---------------------------------------------------------------- */

static STACK_OF(X509) * pool_of(X509 *a, X509 *b, X509 *c)
{
	STACK_OF(X509) *pool = sk_X509_new_null();
	X509 *certs[] = {a, b, c};

	for (int i = 0; i < 3; i++)
		if (certs[i] != NULL)
			assert_true(sk_X509_push(pool, certs[i]));
	return pool;
}

static void expect_chain(X509 *leaf, STACK_OF(X509) * pool, bool complete, X509 *first,
                         X509 *second)
{
	STACK_OF(X509) * chain;
	bool done;
	cs_err err;

	assert_int_equal(pki_chain_build(leaf, pool, false, &chain, &done, &err), 0);
	assert_int_equal(done, complete);
	assert_int_equal(sk_X509_num(chain), (first != NULL) + (second != NULL));
	if (first != NULL)
		assert_int_equal(X509_cmp(sk_X509_value(chain, 0), first), 0);
	if (second != NULL)
		assert_int_equal(X509_cmp(sk_X509_value(chain, 1), second), 0);
	sk_X509_pop_free(chain, X509_free);
	sk_X509_free(pool);
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_chain(void **state)
{
	const cert_spec old = {"/CN=Example Intermediate CA", NULL, true, -400 * DAY, -DAY, NULL};
	const cert_spec other = {"/CN=Other Root CA", NULL, true, -DAY, DAY, NULL};
	const cert_spec twin = {"/CN=Example Intermediate CA", NULL, true, -DAY, DAY, NULL};
	const char *sans[] = {"self.example.test"};
	const pki_subject subj = {.country = "US", .common_name = "self", .sans = sans, .nsans = 1};
	EVP_PKEY *other_key = pki_key_generate(PKI_KEY_EC_P256, NULL);
	X509 *expired, *stranger, *impostor, *self;
	cs_err err;

	(void)state;
	stranger = issue(&other, other_key, NULL, NULL);
	expect_chain(fx.leaf_rsa, pool_of(fx.inter, fx.root, NULL), true, fx.inter, fx.root);
	expect_chain(fx.leaf_rsa, pool_of(stranger, fx.root, fx.inter), true, fx.inter, fx.root);
	expect_chain(fx.leaf_rsa, pool_of(fx.inter, stranger, NULL), false, fx.inter, NULL);
	expect_chain(fx.leaf_rsa, pool_of(fx.root, NULL, NULL), false, NULL, NULL);
	expect_chain(fx.leaf_rsa, pool_of(NULL, NULL, NULL), false, NULL, NULL);
	expect_chain(fx.leaf_rsa, NULL, false, NULL, NULL);
	expect_chain(fx.inter, pool_of(fx.root, NULL, NULL), true, fx.root, NULL);
	expect_chain(fx.root, NULL, true, NULL, NULL);
	/* Expiry is not the chain's business. */
	expired = issue(&old, fx.ca_key, fx.root, fx.root_key);
	expect_chain(fx.leaf_rsa, pool_of(expired, fx.root, NULL), true, expired, fx.root);
	/* The intermediate's name on another key is no issuer. */
	impostor = issue(&twin, other_key, fx.root, fx.root_key);
	expect_chain(fx.leaf_rsa, pool_of(impostor, fx.root, NULL), false, NULL, NULL);
	self = pki_self_signed(fx.ec, &subj, &err);
	assert_non_null(self);
	expect_chain(self, pool_of(fx.inter, fx.root, NULL), true, NULL, NULL);
	X509_free(self);
	X509_free(impostor);
	X509_free(expired);
	X509_free(stranger);
	EVP_PKEY_free(other_key);
}

static void test_chain_system(void **state)
{
	STACK_OF(X509) * chain;
	bool complete;
	cs_err err;

	(void)state;
	/* The system store does not know our private root. */
	assert_int_equal(pki_chain_build(fx.leaf_rsa, fx.pool, true, &chain, &complete, &err), 0);
	assert_true(complete);
	assert_int_equal(sk_X509_num(chain), 2);
	sk_X509_pop_free(chain, X509_free);
	sk_X509_delete(fx.pool, 1);
	assert_int_equal(pki_chain_build(fx.leaf_rsa, fx.pool, true, &chain, &complete, &err), 0);
	assert_false(complete);
	assert_int_equal(sk_X509_num(chain), 1);
	sk_X509_pop_free(chain, X509_free);
	assert_true(sk_X509_push(fx.pool, fx.root));
}

/* ---- export ---------------------------------------------------------------- */

static void test_export(void **state)
{
	STACK_OF(X509) *ca = NULL;
	STACK_OF(PKCS7) * safes;
	const unsigned char *p;
	uint8_t *out;
	const X509_ALGOR *alg;
	const ASN1_OBJECT *oid;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	PKCS12 *p12;
	PKCS7 *p7;
	size_t len;
	BIO *bio;
	cs_err err;

	(void)state;
	assert_int_equal(
	    pki_export(PKI_FMT_PEM, fx.leaf_ec, fx.pool, NULL, NULL, NULL, &out, &len, &err), 0);
	assert_int_equal(strlen((char *)out), len);
	bio = BIO_new_mem_buf(out, (int)len);
	for (int i = 0; i < 3; i++) {
		cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		assert_non_null(cert);
		assert_int_equal(
		    X509_cmp(cert, i == 0 ? fx.leaf_ec : sk_X509_value(fx.pool, i - 1)), 0);
		X509_free(cert);
	}
	assert_null(PEM_read_bio_X509(bio, NULL, NULL, NULL));
	ERR_clear_error();
	BIO_free(bio);
	assert_null(strstr((char *)out, "PRIVATE KEY"));
	free(out);

	assert_int_equal(
	    pki_export(PKI_FMT_DER, fx.leaf_ec, fx.pool, fx.ec, NULL, NULL, &out, &len, &err), 0);
	p = out;
	cert = d2i_X509(NULL, &p, (long)len);
	assert_non_null(cert);
	assert_ptr_equal(p, out + len);
	assert_int_equal(X509_cmp(cert, fx.leaf_ec), 0);
	X509_free(cert);
	free(out);

	assert_int_equal(
	    pki_export(PKI_FMT_P7B, fx.leaf_ec, fx.pool, NULL, NULL, NULL, &out, &len, &err), 0);
	p = out;
	p7 = d2i_PKCS7(NULL, &p, (long)len);
	assert_non_null(p7);
	assert_true(PKCS7_type_is_signed(p7));
	assert_int_equal(sk_X509_num(p7->d.sign->cert), 3);
	assert_int_equal(X509_cmp(sk_X509_value(p7->d.sign->cert, 0), fx.leaf_ec), 0);
	assert_int_equal(X509_cmp(sk_X509_value(p7->d.sign->cert, 2), fx.root), 0);
	assert_int_equal(sk_PKCS7_SIGNER_INFO_num(p7->d.sign->signer_info), 0);
	PKCS7_free(p7);
	free(out);

	assert_int_equal(pki_export(PKI_FMT_P12, fx.leaf_ec, fx.pool, fx.ec, "web", "export pass",
	                            &out, &len, &err),
	                 0);
	p = out;
	p12 = d2i_PKCS12(NULL, &p, (long)len);
	assert_non_null(p12);
	assert_true(PKCS12_verify_mac(p12, "export pass", -1));
	assert_false(PKCS12_verify_mac(p12, "wrong", -1));
	PKCS12_get0_mac(NULL, &alg, NULL, NULL, p12);
	X509_ALGOR_get0(&oid, NULL, NULL, alg);
	assert_int_equal(OBJ_obj2nid(oid), NID_sha256);
	/* Both bags under PBES2 (AES-256-CBC), none in the clear. */
	safes = PKCS12_unpack_authsafes(p12);
	assert_non_null(safes);
	for (int i = 0; i < sk_PKCS7_num(safes); i++) {
		PKCS7 *safe = sk_PKCS7_value(safes, i);
		STACK_OF(PKCS12_SAFEBAG) * bags;

		if (PKCS7_type_is_encrypted(safe)) {
			X509_ALGOR_get0(&oid, NULL, NULL, safe->d.encrypted->enc_data->algorithm);
			assert_int_equal(OBJ_obj2nid(oid), NID_pbes2);
			continue;
		}
		bags = PKCS12_unpack_p7data(safe);
		assert_non_null(bags);
		for (int j = 0; j < sk_PKCS12_SAFEBAG_num(bags); j++)
			assert_int_equal(PKCS12_SAFEBAG_get_nid(sk_PKCS12_SAFEBAG_value(bags, j)),
			                 NID_pkcs8ShroudedKeyBag);
		sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
	}
	sk_PKCS7_pop_free(safes, PKCS7_free);
	assert_true(PKCS12_parse(p12, "export pass", &key, &cert, &ca));
	assert_int_equal(EVP_PKEY_eq(key, fx.ec), 1);
	assert_int_equal(X509_cmp(cert, fx.leaf_ec), 0);
	assert_int_equal(sk_X509_num(ca), 2);
	EVP_PKEY_free(key);
	X509_free(cert);
	sk_X509_pop_free(ca, X509_free);
	PKCS12_free(p12);
	free(out);

	/* A self-signed certificate has no chain. */
	assert_int_equal(
	    pki_export(PKI_FMT_P12, fx.leaf_rsa, NULL, fx.rsa, NULL, "x", &out, &len, &err), 0);
	free(out);
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_export_refusals(void **state)
{
	pki_format fmt;
	uint8_t *out;
	size_t len;
	cs_err err;

	(void)state;
	expect_fail(
	    pki_export(PKI_FMT_P12, fx.leaf_ec, fx.pool, NULL, NULL, "pass", &out, &len, &err),
	    &err, CS_EREFUSED,
	    "no private key held for this certificate: PKCS#12 export needs one");
	assert_null(out);
	expect_fail(
	    pki_export(PKI_FMT_P12, fx.leaf_ec, fx.pool, fx.ec, NULL, NULL, &out, &len, &err), &err,
	    CS_EUSAGE, "PKCS#12 export needs an export passphrase to protect the key");
	expect_fail(pki_export(PKI_FMT_P12, fx.leaf_ec, fx.pool, fx.ec, NULL, "", &out, &len, &err),
	            &err, CS_EUSAGE,
	            "PKCS#12 export needs an export passphrase to protect the key");
	expect_fail(
	    pki_export(PKI_FMT_P12, fx.leaf_ec, fx.pool, fx.rsa, NULL, "pass", &out, &len, &err),
	    &err, CS_EINPUT, "the private key does not match the certificate");

	assert_int_equal(pki_format_parse("pem", &fmt, &err), 0);
	assert_int_equal(fmt, PKI_FMT_PEM);
	assert_int_equal(pki_format_parse("DER", &fmt, &err), 0);
	assert_int_equal(fmt, PKI_FMT_DER);
	assert_int_equal(pki_format_parse("p7b", &fmt, &err), 0);
	assert_int_equal(fmt, PKI_FMT_P7B);
	assert_int_equal(pki_format_parse("p12", &fmt, &err), 0);
	assert_int_equal(fmt, PKI_FMT_P12);
	assert_int_equal(pki_format_parse("pfx", &fmt, &err), 0);
	assert_int_equal(fmt, PKI_FMT_P12);
	expect_fail(pki_format_parse("jks", &fmt, &err), &err, CS_EUSAGE,
	            "unknown format \"jks\"; use pem, der, p7b or p12");
	assert_int_equal(pki_format_parse(NULL, &fmt, &err), -1);
}

/* ---- verify ---------------------------------------------------------------- */

static void day_of(X509 *x, char out[16])
{
	struct tm tm;

	assert_true(ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm));
	strftime(out, 16, "%Y-%m-%d", &tm);
}

static void expect_result(const pki_check *c, const char *name, pki_check_status status,
                          const char *detail)
{
	assert_string_equal(c->name, name);
	assert_string_equal(c->detail, detail);
	assert_int_equal(c->status, status);
}

static void test_verify_ok(void **state)
{
	const char *hosts[] = {"support.example.test", "tn1.corp.example.test"};
	pki_check checks[PKI_NCHECKS];
	time_t now = time(NULL);
	char day[16], want[128];
	X509 *leaf =
	    leaf_for("DNS:support.example.test,DNS:*.corp.example.test", -DAY, 365 * DAY, fx.rsa);

	(void)state;
	day_of(leaf, day);
	assert_int_equal(pki_verify(leaf, fx.pool, fx.rsa, hosts, 2, now, checks), PKI_CHECK_OK);
	expect_result(&checks[0], "coverage", PKI_CHECK_OK,
	              "covers support.example.test, tn1.corp.example.test");
	expect_result(&checks[1], "chain", PKI_CHECK_OK,
	              "complete: 2 issuers, up to CN=Example Root CA");
	expect_result(&checks[2], "key", PKI_CHECK_OK, "the rsa:2048 private key matches");
	snprintf(want, sizeof(want), "valid until %s (365 days left)", day);
	expect_result(&checks[3], "validity", PKI_CHECK_OK, want);
	X509_free(leaf);
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_verify_fails(void **state)
{
	const char *hosts[] = {"tn2.example.test", "support.example.test", "backup.example.test",
	                       "tn1.corp.example.test"};
	STACK_OF(X509) *roots = pool_of(fx.root, NULL, NULL);
	pki_check checks[PKI_NCHECKS];

	(void)state;
	assert_int_equal(pki_verify(fx.leaf_rsa, roots, NULL, hosts, 4, time(NULL), checks),
	                 PKI_CHECK_FAIL);
	expect_result(&checks[0], "coverage", PKI_CHECK_FAIL,
	              "does not cover tn2.example.test, backup.example.test (SANs: "
	              "support.example.test, *.corp.example.test)");
	expect_result(&checks[1], "chain", PKI_CHECK_FAIL,
	              "chain incomplete: no issuer found for CN=Example Intermediate CA; import "
	              "the intermediate and root certificates");
	expect_result(&checks[2], "key", PKI_CHECK_FAIL,
	              "no private key held for this certificate");
	assert_int_equal(checks[3].status, PKI_CHECK_OK);

	assert_int_equal(pki_verify(fx.leaf_rsa, fx.pool, fx.ec, NULL, 0, time(NULL), checks),
	                 PKI_CHECK_FAIL);
	expect_result(&checks[0], "coverage", PKI_CHECK_OK, "no host names to check");
	expect_result(&checks[2], "key", PKI_CHECK_FAIL,
	              "the private key held does not match this certificate");
	sk_X509_free(roots);
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_verify_bad_signature(void **state)
{
	const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(fx.inter);
	char *hex = OPENSSL_buf2hexstr(ASN1_STRING_get0_data(ski), ASN1_STRING_length(ski));
	/* The intermediate's name and key id on another key: found as the
	 * issuer, but the leaf's signature does not verify under it. */
	const cert_spec twin = {"/CN=Example Intermediate CA", NULL, true, -DAY, DAY, hex};
	pki_check checks[PKI_NCHECKS];
	STACK_OF(X509) * pool;
	X509 *forged;

	(void)state;
	forged = issue(&twin, fx.ec, fx.root, fx.root_key);
	pool = pool_of(forged, fx.root, NULL);
	assert_int_equal(pki_verify(fx.leaf_rsa, pool, fx.rsa, NULL, 0, time(NULL), checks),
	                 PKI_CHECK_FAIL);
	expect_result(&checks[1], "chain", PKI_CHECK_FAIL,
	              "chain invalid at CN=support.example.test,O=Example,C=US: certificate "
	              "signature failure");
	sk_X509_free(pool);
	X509_free(forged);
	OPENSSL_free(hex);
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_verify_validity(void **state)
{
	/* The detail is pre, the notAfter (or notBefore) day, then post. */
	const struct {
		long from, to;
		pki_check_status status;
		const char *pre, *post;
	} cases[] = {
	    {-DAY, 20 * DAY, PKI_CHECK_FAIL, "expires in 20 days (", "): renew now"},
	    {-DAY, 25 * DAY, PKI_CHECK_FAIL, "expires in 25 days (", "): renew now"},
	    {-DAY, 3600, PKI_CHECK_FAIL, "expires in 1 day (", "): renew now"},
	    {-DAY, 26 * DAY, PKI_CHECK_WARN, "expires in 26 days (", ")"},
	    {-DAY, 28 * DAY, PKI_CHECK_WARN, "expires in 28 days (", ")"},
	    {-DAY, 30 * DAY, PKI_CHECK_WARN, "expires in 30 days (", ")"},
	    {-DAY, 31 * DAY, PKI_CHECK_OK, "valid until ", " (31 days left)"},
	    {-400 * DAY, -35 * DAY, PKI_CHECK_FAIL, "expired on ", ""},
	    {2 * DAY, 90 * DAY, PKI_CHECK_FAIL, "not valid before ", ""},
	};
	const char *hosts[] = {"support.example.test"};
	pki_check checks[PKI_NCHECKS];
	char day[16], want[128];
	struct tm tm;
	time_t now;
	X509 *leaf;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		leaf = leaf_for("DNS:support.example.test", cases[i].from, cases[i].to, fx.rsa);
		now = time(NULL);
		if (cases[i].from > 0) {
			assert_true(ASN1_TIME_to_tm(X509_get0_notBefore(leaf), &tm));
			strftime(day, sizeof(day), "%Y-%m-%d", &tm);
		} else {
			day_of(leaf, day);
		}
		snprintf(want, sizeof(want), "%s%s%s", cases[i].pre, day, cases[i].post);
		assert_int_equal(pki_verify(leaf, fx.pool, fx.rsa, hosts, 1, now, checks),
		                 cases[i].status);
		expect_result(&checks[3], "validity", cases[i].status, want);
		X509_free(leaf);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_keyspec_parse),
	    cmocka_unit_test(test_key_generate),
	    cmocka_unit_test(test_key_refused),
	    cmocka_unit_test(test_key_der),
	    cmocka_unit_test(test_country),
	    cmocka_unit_test(test_subject_refusals),
	    cmocka_unit_test(test_subject_sans),
	    cmocka_unit_test(test_self_signed),
	    cmocka_unit_test(test_csr),
	    cmocka_unit_test(test_cert_der),
	    cmocka_unit_test(test_cert_inspect),
	    cmocka_unit_test(test_key_matches),
	    cmocka_unit_test(test_covers),
	    cmocka_unit_test(test_chain),
	    cmocka_unit_test(test_chain_system),
	    cmocka_unit_test(test_export),
	    cmocka_unit_test(test_export_refusals),
	    cmocka_unit_test(test_verify_ok),
	    cmocka_unit_test(test_verify_fails),
	    cmocka_unit_test(test_verify_bad_signature),
	    cmocka_unit_test(test_verify_validity),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
