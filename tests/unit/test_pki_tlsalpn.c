/* test_pki_tlsalpn.c — the tls-alpn-01 challenge certificate (RFC 8737):
 * after a DER round trip it carries the name as its only SAN and the
 * acmeIdentifier extension, critical, whose value is exactly the DER OCTET
 * STRING 04 20 <digest> (read with OpenSSL's generic extension API, not the
 * module's checker); it is self-signed by the key; and the checker refuses
 * another digest, another name, a second SAN, a non-critical or missing
 * extension.  Bad names are refused before anything is built. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "../../pki/pki.h"

static const uint8_t DIGEST[32] = {
    0x1f, 0x2e, 0x3d, 0x4c, 0x5b, 0x6a, 0x79, 0x88, 0x97, 0xa6, 0xb5, 0xc4, 0xd3, 0xe2, 0xf1, 0x00,
    0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0,
};

static EVP_PKEY *key(void)
{
	cs_err err;
	EVP_PKEY *k = pki_key_generate(PKI_KEY_EC_P256, &err);

	assert_non_null(k);
	return k;
}

/* The certificate through DER and back, as a peer receives it. */
static X509 *roundtrip(X509 *x)
{
	unsigned char *der = NULL;
	const unsigned char *p;
	int len = i2d_X509(x, &der);
	X509 *y;

	assert_true(len > 0);
	p = der;
	y = d2i_X509(NULL, &p, len);
	assert_non_null(y);
	assert_ptr_equal(p, der + len);
	OPENSSL_free(der);
	return y;
}

static void test_certificate_carries_the_digest(void **state)
{
	(void)state;
	EVP_PKEY *k = key();
	cs_err err;
	X509 *made = pki_tlsalpn01_cert(k, "alpn.example.test", DIGEST, &err);
	X509 *x;
	ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
	X509_EXTENSION *ext;
	const ASN1_OCTET_STRING *value;
	GENERAL_NAMES *gens;
	const GENERAL_NAME *g;
	uint8_t want[34] = {0x04, 0x20};

	assert_non_null(made);
	x = roundtrip(made);
	/* the extension, by OID, once, critical, its value 04 20 <digest> */
	int at = X509_get_ext_by_OBJ(x, oid, -1);
	assert_true(at >= 0);
	assert_int_equal(X509_get_ext_by_OBJ(x, oid, at), -1);
	ext = X509_get_ext(x, at);
	assert_int_equal(X509_EXTENSION_get_critical(ext), 1);
	value = X509_EXTENSION_get_data(ext);
	memcpy(want + 2, DIGEST, 32);
	assert_int_equal(ASN1_STRING_length(value), 34);
	assert_memory_equal(ASN1_STRING_get0_data(value), want, 34);
	/* the name, the only SAN */
	gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	assert_non_null(gens);
	assert_int_equal(sk_GENERAL_NAME_num(gens), 1);
	g = sk_GENERAL_NAME_value(gens, 0);
	assert_int_equal(g->type, GEN_DNS);
	assert_string_equal((const char *)ASN1_STRING_get0_data(g->d.dNSName), "alpn.example.test");
	GENERAL_NAMES_free(gens);
	/* self-signed by the key, version 3, valid now */
	assert_int_equal(X509_verify(x, k), 1);
	assert_int_equal(X509_get_version(x), X509_VERSION_3);
	assert_true(X509_cmp_current_time(X509_get0_notBefore(x)) < 0);
	assert_true(X509_cmp_current_time(X509_get0_notAfter(x)) > 0);
	assert_true(pki_key_matches(x, k));
	/* and the checker agrees; case does not matter in a DNS name */
	assert_int_equal(pki_tlsalpn01_check(x, "alpn.example.test", DIGEST, &err), 0);
	assert_int_equal(pki_tlsalpn01_check(x, "ALPN.example.test", DIGEST, &err), 0);
	ASN1_OBJECT_free(oid);
	X509_free(made);
	X509_free(x);
	EVP_PKEY_free(k);
}

static void test_checker_refuses_what_differs(void **state)
{
	(void)state;
	EVP_PKEY *k = key();
	cs_err err;
	uint8_t other[32];
	X509 *x = pki_tlsalpn01_cert(k, "alpn.example.test", DIGEST, &err);

	assert_non_null(x);
	memcpy(other, DIGEST, 32);
	other[31] ^= 1;
	assert_int_equal(pki_tlsalpn01_check(x, "alpn.example.test", other, &err), -1);
	assert_non_null(strstr(err.msg, "another key authorization digest"));
	assert_int_equal(pki_tlsalpn01_check(x, "www.example.test", DIGEST, &err), -1);
	assert_non_null(strstr(err.msg, "not exactly the DNS name www.example.test"));
	assert_int_equal(pki_tlsalpn01_check(x, "example.test", DIGEST, &err), -1);
	X509_free(x);
	EVP_PKEY_free(k);
}

/* A certificate like the challenge one but with the extension marked
 * non-critical, or two SANs, built by hand with OpenSSL. */
static X509 *variant(EVP_PKEY *k, bool critical, const char *sans)
{
	X509 *x = X509_new();
	X509V3_CTX ctx;
	X509_EXTENSION *san, *id;
	ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
	ASN1_OCTET_STRING *v = ASN1_OCTET_STRING_new();
	uint8_t der[34] = {0x04, 0x20};

	memcpy(der + 2, DIGEST, 32);
	assert_true(ASN1_OCTET_STRING_set(v, der, 34));
	assert_true(X509_set_version(x, X509_VERSION_3));
	assert_true(ASN1_INTEGER_set(X509_get_serialNumber(x), 7));
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -60));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
	assert_true(X509_set_pubkey(x, k));
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	san = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, sans);
	id = X509_EXTENSION_create_by_OBJ(NULL, oid, critical, v);
	assert_non_null(san);
	assert_non_null(id);
	assert_true(X509_add_ext(x, san, -1));
	assert_true(X509_add_ext(x, id, -1));
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	X509_EXTENSION_free(san);
	X509_EXTENSION_free(id);
	ASN1_OCTET_STRING_free(v);
	ASN1_OBJECT_free(oid);
	return x;
}

static void test_checker_refuses_wrong_shapes(void **state)
{
	(void)state;
	EVP_PKEY *k = key();
	cs_err err;
	X509 *x = variant(k, true, "DNS:alpn.example.test");
	pki_subject subj = {.country = "GB", .common_name = "alpn.example.test"};
	X509 *plain;

	/* the hand-built twin passes, so the refusals below are for what changed */
	assert_int_equal(pki_tlsalpn01_check(x, "alpn.example.test", DIGEST, &err), 0);
	X509_free(x);
	x = variant(k, false, "DNS:alpn.example.test");
	assert_int_equal(pki_tlsalpn01_check(x, "alpn.example.test", DIGEST, &err), -1);
	assert_non_null(strstr(err.msg, "acmeIdentifier is not critical"));
	X509_free(x);
	x = variant(k, true, "DNS:alpn.example.test,DNS:www.example.test");
	assert_int_equal(pki_tlsalpn01_check(x, "alpn.example.test", DIGEST, &err), -1);
	assert_non_null(strstr(err.msg, "subjectAltName"));
	X509_free(x);
	plain = pki_self_signed(k, &subj, &err);
	assert_non_null(plain);
	assert_int_equal(pki_tlsalpn01_check(plain, "alpn.example.test", DIGEST, &err), -1);
	assert_non_null(strstr(err.msg, "does not carry one acmeIdentifier"));
	X509_free(plain);
	assert_int_equal(ERR_peek_error(), 0);
	EVP_PKEY_free(k);
}

static void test_bad_names_refused(void **state)
{
	(void)state;
	EVP_PKEY *k = key();
	cs_err err;
	const char *bad[] = {"*.example.test", "bad name.test", "", "a..b", "-x.example.test"};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_null(pki_tlsalpn01_cert(k, bad[i], DIGEST, &err));
		assert_int_equal(err.code, CS_EINPUT);
		assert_non_null(strstr(err.msg, "is not a DNS name"));
	}
	EVP_PKEY_free(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_certificate_carries_the_digest),
	    cmocka_unit_test(test_checker_refuses_what_differs),
	    cmocka_unit_test(test_checker_refuses_wrong_shapes),
	    cmocka_unit_test(test_bad_names_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
