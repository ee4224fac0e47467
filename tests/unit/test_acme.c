/* test_acme.c — unit tests of the acme module's offline parts: base64url,
 * the JWK and its RFC 7638 thumbprint, ES256 JWS (verified with OpenSSL),
 * External Account Binding, key authorizations, problem classes, RFC 3339
 * times, and the order state (what comes next, JSON round trip and
 * refusals).  Known values come from RFC 7517's example key and were
 * computed independently (Python hashlib). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/param_build.h>
#include <sodium.h>

#include "../../acme/acme_int.h"

/* RFC 7517 Appendix A.1 / A.2: the example P-256 key */
#define RFC7517_X  "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4"
#define RFC7517_Y  "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"
#define RFC7517_D  "870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE"
#define THUMBPRINT "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s"
#define TOKEN      "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
#define DNS01      "1fCS1lh6WLuBWbvkmdEhdymEvTR8MuI63XqlRVleM9Q"
#define ALPN_HEX   "d5f092d6587a58bb8159bbe499d121772984bd347c32e23add7aa545595e33d4"

static EVP_PKEY *key;

static size_t unb64(const char *s, uint8_t *out, size_t outlen)
{
	size_t len = 0;

	assert_int_equal(sodium_base642bin(out, outlen, s, strlen(s), NULL, &len, NULL,
	                                   sodium_base64_VARIANT_URLSAFE_NO_PADDING),
	                 0);
	return len;
}

static EVP_PKEY *rfc7517_key(void)
{
	uint8_t pub[65] = {4}, d[32];
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	BIGNUM *priv;
	OSSL_PARAM *params;
	EVP_PKEY *k = NULL;

	assert_int_equal(unb64(RFC7517_X, pub + 1, 32), 32);
	assert_int_equal(unb64(RFC7517_Y, pub + 33, 32), 32);
	assert_int_equal(unb64(RFC7517_D, d, 32), 32);
	priv = BN_bin2bn(d, 32, NULL);
	OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
	OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub));
	OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, priv);
	params = OSSL_PARAM_BLD_to_param(bld);
	assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
	assert_int_equal(EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_KEYPAIR, params), 1);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(priv);
	EVP_PKEY_CTX_free(ctx);
	return k;
}

static int setup(void **state)
{
	(void)state;
	key = rfc7517_key();
	return key == NULL;
}

static int teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(key);
	return 0;
}

static void test_b64url(void **state)
{
	static const uint8_t bytes[] = {0xfb, 0xff, 0x3e};
	char *s;

	(void)state;
	s = acme_b64url(bytes, 2);
	assert_string_equal(s, "-_8"); /* URL alphabet, no padding */
	free(s);
	s = acme_b64url(bytes, 3);
	assert_string_equal(s, "-_8-");
	free(s);
	s = acme_b64url(bytes, 0);
	assert_string_equal(s, "");
	free(s);
}

static void test_jwk_and_thumbprint(void **state)
{
	acme_err e;
	json_t *jwk = acme_jwk(key, &e);
	char thumb[64];

	(void)state;
	assert_non_null(jwk);
	assert_string_equal(json_string_value(json_object_get(jwk, "x")), RFC7517_X);
	assert_string_equal(json_string_value(json_object_get(jwk, "y")), RFC7517_Y);
	assert_string_equal(json_string_value(json_object_get(jwk, "kty")), "EC");
	assert_string_equal(json_string_value(json_object_get(jwk, "crv")), "P-256");
	assert_int_equal(json_object_size(jwk), 4); /* never "d" */
	json_decref(jwk);
	assert_int_equal(acme_jwk_thumbprint(key, thumb, sizeof(thumb), &e), 0);
	assert_string_equal(thumb, THUMBPRINT);
}

static void test_jwk_refuses_other_keys(void **state)
{
	EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	acme_err e;

	(void)state;
	assert_null(acme_jwk(p384, &e));
	assert_non_null(strstr(e.err.msg, "ec:p256"));
	assert_null(acme_jws(p384, NULL, "n", "https://ca.test/x", "", &e));
	EVP_PKEY_free(p384);
}

static json_t *decode_part(const char *b64)
{
	uint8_t buf[4096];
	size_t len = unb64(b64, buf, sizeof(buf) - 1);

	buf[len] = '\0';
	return json_loads((const char *)buf, 0, NULL);
}

/* Verifies an ES256 JWS signature with OpenSSL after turning r||s into DER. */
static bool es256_valid(const char *signing_input, const char *sig64)
{
	uint8_t raw[64], *der = NULL;
	ECDSA_SIG *es = ECDSA_SIG_new();
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int derlen;
	bool ok;

	assert_int_equal(unb64(sig64, raw, sizeof(raw)), 64);
	ECDSA_SIG_set0(es, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL));
	derlen = i2d_ECDSA_SIG(es, &der);
	ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
	     EVP_DigestVerify(md, der, (size_t)derlen, (const uint8_t *)signing_input,
	                      strlen(signing_input)) == 1;
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(md);
	return ok;
}

static void test_jws(void **state)
{
	acme_err e;
	char *text, input[4096];
	json_t *jws, *hdr, *payload;
	const char *p64, *pl64, *s64;

	(void)state;
	text = acme_jws(key, "https://ca.test/acct/7", "nonce-1", "https://ca.test/new-order",
	                "{\"a\":1}", &e);
	assert_non_null(text);
	jws = json_loads(text, 0, NULL);
	assert_int_equal(json_unpack(jws, "{s:s, s:s, s:s !}", "protected", &p64, "payload", &pl64,
	                             "signature", &s64),
	                 0);
	hdr = decode_part(p64);
	assert_string_equal(json_string_value(json_object_get(hdr, "alg")), "ES256");
	assert_string_equal(json_string_value(json_object_get(hdr, "nonce")), "nonce-1");
	assert_string_equal(json_string_value(json_object_get(hdr, "url")),
	                    "https://ca.test/new-order");
	assert_string_equal(json_string_value(json_object_get(hdr, "kid")),
	                    "https://ca.test/acct/7");
	assert_null(json_object_get(hdr, "jwk"));
	payload = decode_part(pl64);
	assert_int_equal(json_integer_value(json_object_get(payload, "a")), 1);
	snprintf(input, sizeof(input), "%s.%s", p64, pl64);
	assert_true(es256_valid(input, s64));
	input[0] ^= 1; /* a changed header no longer verifies */
	assert_false(es256_valid(input, s64));
	json_decref(hdr);
	json_decref(payload);
	json_decref(jws);
	free(text);

	/* newAccount: the jwk instead of a kid; POST-as-GET: an empty payload */
	text = acme_jws(key, NULL, "nonce-2", "https://ca.test/new-acct", "", &e);
	jws = json_loads(text, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(jws, "payload")), "");
	hdr = decode_part(json_string_value(json_object_get(jws, "protected")));
	assert_null(json_object_get(hdr, "kid"));
	assert_string_equal(json_string_value(json_object_get(json_object_get(hdr, "jwk"), "x")),
	                    RFC7517_X);
	json_decref(hdr);
	json_decref(jws);
	free(text);
}

static void test_eab(void **state)
{
	static const char *const bad[] = {
	    "", "abc+def", "abc/def", "abcd==", "ab cd", "a", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajV!"};
	const char *hmac64 = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
	uint8_t hkey[64], mac[32];
	size_t hlen = unb64(hmac64, hkey, sizeof(hkey)), maclen = 0;
	acme_err e;
	json_t *jwk = acme_jwk(key, &e), *eab, *hdr, *payload;
	char input[4096], *mac64;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_null(acme_eab("kid-1", bad[i], jwk, "https://ca.test/new-acct", &e));
		assert_int_equal(e.err.code, CS_EINPUT);
		if (bad[i][0] != '\0')
			assert_non_null(strstr(e.err.msg, "not base64url"));
		if (strlen(bad[i]) > 6)
			assert_null(strstr(e.err.msg, bad[i])); /* the secret is never quoted */
	}
	assert_null(acme_eab(NULL, hmac64, jwk, "https://ca.test/new-acct", &e));

	eab = acme_eab("kid-1", hmac64, jwk, "https://ca.test/new-acct", &e);
	assert_non_null(eab);
	hdr = decode_part(json_string_value(json_object_get(eab, "protected")));
	assert_string_equal(json_string_value(json_object_get(hdr, "alg")), "HS256");
	assert_string_equal(json_string_value(json_object_get(hdr, "kid")), "kid-1");
	assert_string_equal(json_string_value(json_object_get(hdr, "url")),
	                    "https://ca.test/new-acct");
	assert_null(json_object_get(hdr, "nonce")); /* RFC 8555 §7.3.4 */
	payload = decode_part(json_string_value(json_object_get(eab, "payload")));
	assert_true(json_equal(payload, jwk));
	snprintf(input, sizeof(input), "%s.%s",
	         json_string_value(json_object_get(eab, "protected")),
	         json_string_value(json_object_get(eab, "payload")));
	assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, hkey, hlen,
	                          (const uint8_t *)input, strlen(input), mac, sizeof(mac),
	                          &maclen));
	mac64 = acme_b64url(mac, maclen);
	assert_string_equal(json_string_value(json_object_get(eab, "signature")), mac64);
	free(mac64);
	json_decref(hdr);
	json_decref(payload);
	json_decref(eab);
	json_decref(jwk);
}

static void test_key_authorizations(void **state)
{
	acme_err e;
	char *ka = acme_key_authorization(key, TOKEN, &e);
	char dns[44], hex[65];
	uint8_t digest[32];

	(void)state;
	assert_string_equal(ka, TOKEN "." THUMBPRINT); /* the http-01 file's content */
	assert_int_equal(acme_dns01_value(ka, dns, &e), 0);
	assert_string_equal(dns, DNS01);
	assert_int_equal(acme_tlsalpn01_digest(ka, digest, &e), 0);
	sodium_bin2hex(hex, sizeof(hex), digest, sizeof(digest));
	assert_string_equal(hex, ALPN_HEX);
	free(ka);
}

static void test_problem_classes(void **state)
{
	static const struct {
		const char *type;
		int status;
		acme_errclass cls;
	} cases[] = {
	    {"urn:ietf:params:acme:error:badNonce", 400, ACME_ERR_TRANSIENT},
	    {"urn:ietf:params:acme:error:serverInternal", 500, ACME_ERR_TRANSIENT},
	    {"urn:ietf:params:acme:error:malformed", 503, ACME_ERR_TRANSIENT},
	    {"urn:ietf:params:acme:error:unauthorized", 403, ACME_ERR_OPERATOR},
	    {"urn:ietf:params:acme:error:rejectedIdentifier", 400, ACME_ERR_OPERATOR},
	    {"urn:ietf:params:acme:error:caa", 403, ACME_ERR_OPERATOR},
	    {"urn:ietf:params:acme:error:rateLimited", 429, ACME_ERR_OPERATOR},
	    {"urn:ietf:params:acme:error:accountDoesNotExist", 400, ACME_ERR_OPERATOR},
	    {"urn:ietf:params:acme:error:malformed", 400, ACME_ERR_FATAL},
	    {"urn:ietf:params:acme:error:badCSR", 400, ACME_ERR_FATAL},
	    {"about:blank", 404, ACME_ERR_FATAL},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(acme_problem_class(cases[i].type, cases[i].status), cases[i].cls);
}

static void test_parse_time(void **state)
{
	time_t t;

	(void)state;
	assert_int_equal(acme_parse_time("2027-01-02T03:04:05Z", &t), 0);
	assert_int_equal(t, 1798859045);
	assert_int_equal(acme_parse_time("2027-01-02T03:04:05.999999999Z", &t), 0);
	assert_int_equal(t, 1798859045);
	assert_int_equal(acme_parse_time("2027-01-02T04:04:05+01:00", &t), 0);
	assert_int_equal(t, 1798859045);
	assert_int_equal(acme_parse_time("2027-01-02T01:34:05-01:30", &t), 0);
	assert_int_equal(t, 1798859045);
	assert_int_equal(acme_parse_time("2027-01-02T03:04:05", &t), -1); /* no zone */
	assert_int_equal(acme_parse_time("2027-01-02 03:04:05Z", &t), -1);
	assert_int_equal(acme_parse_time("2027-01-02T03:04:05Zjunk", &t), -1);
	assert_int_equal(acme_parse_time("", &t), -1);
}

/* An order in the middle of its life: two authorizations, one valid. */
static void sample_order(acme_order *o)
{
	static const char *const names[] = {"example.test", "*.example.test"};

	memset(o, 0, sizeof(*o));
	strcpy(o->url, "https://ca.test/order/1");
	strcpy(o->status, "pending");
	o->expires = 1798859045;
	o->identifiers = calloc(2, sizeof(char *));
	for (size_t i = 0; i < 2; i++)
		o->identifiers[o->nidentifiers++] = strdup(names[i]);
	strcpy(o->replaces, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
	strcpy(o->finalize, "https://ca.test/order/1/finalize");
	o->authzs = calloc(2, sizeof(acme_authz));
	o->nauthzs = 2;
	for (size_t i = 0; i < 2; i++) {
		acme_authz *a = &o->authzs[i];

		snprintf(a->url, sizeof(a->url), "https://ca.test/authz/%zu", i);
		strcpy(a->identifier, "example.test");
		a->wildcard = i == 1;
		strcpy(a->status, i == 0 ? "valid" : "pending");
		a->challenges = calloc(2, sizeof(acme_challenge));
		a->nchallenges = 2;
		for (size_t k = 0; k < 2; k++) {
			acme_challenge *c = &a->challenges[k];

			c->type = k == 0 ? ACME_CHAL_HTTP01 : ACME_CHAL_DNS01;
			snprintf(c->url, sizeof(c->url), "https://ca.test/chal/%zu/%zu", i, k);
			snprintf(c->token, sizeof(c->token), "token-%zu-%zu", i, k);
			strcpy(c->status, i == 0 ? "valid" : "pending");
		}
	}
}

static void test_order_next(void **state)
{
	acme_order o;
	const time_t now = 1798858800;

	(void)state;
	memset(&o, 0, sizeof(o));
	assert_int_equal(acme_order_next(&o, now), ACME_NEXT_CREATE);
	sample_order(&o);
	assert_int_equal(acme_order_next(&o, now), ACME_NEXT_RESPOND);
	o.authzs[1].challenges[1].responded = true;
	assert_int_equal(acme_order_next(&o, now), ACME_NEXT_WAIT_AUTHZ);
	assert_int_equal(acme_order_next(&o, o.expires), ACME_NEXT_FAILED); /* expired */
	strcpy(o.authzs[1].status, "invalid");
	assert_int_equal(acme_order_next(&o, now), ACME_NEXT_FAILED);
	strcpy(o.status, "ready");
	assert_int_equal(acme_order_next(&o, now), ACME_NEXT_FINALIZE);
	o.finalized = true;
	assert_int_equal(acme_order_next(&o, now), ACME_NEXT_WAIT_CERT);
	strcpy(o.status, "processing");
	assert_int_equal(acme_order_next(&o, now), ACME_NEXT_WAIT_CERT);
	strcpy(o.status, "valid");
	assert_int_equal(acme_order_next(&o, now), ACME_NEXT_DOWNLOAD);
	strcpy(o.status, "invalid");
	assert_int_equal(acme_order_next(&o, now), ACME_NEXT_FAILED);
	assert_string_equal(acme_next_name(ACME_NEXT_WAIT_AUTHZ), "wait-authz");
	acme_order_free(&o);
}

static void test_order_json_round_trip(void **state)
{
	acme_order o, back;
	acme_err e;
	char *a, *b;

	(void)state;
	sample_order(&o);
	o.authzs[1].challenges[0].responded = true;
	strcpy(o.authzs[1].challenges[0].error_type, "urn:ietf:params:acme:error:dns");
	strcpy(o.authzs[1].challenges[0].error, "no TXT record \"found\"");
	memset(o.csr_spki, 0xab, sizeof(o.csr_spki));
	o.finalized = true;
	a = acme_order_to_json(&o);
	assert_non_null(a);
	assert_int_equal(acme_order_from_json(a, &back, &e), 0);
	b = acme_order_to_json(&back);
	assert_string_equal(a, b);
	assert_true(back.authzs[1].challenges[0].responded);
	assert_true(back.authzs[1].wildcard);
	assert_int_equal(back.authzs[1].challenges[1].type, ACME_CHAL_DNS01);
	assert_string_equal(back.identifiers[1], "*.example.test");
	assert_memory_equal(back.csr_spki, o.csr_spki, sizeof(o.csr_spki));
	assert_int_equal(acme_order_next(&back, 1798858800), acme_order_next(&o, 1798858800));
	free(a);
	free(b);
	acme_order_free(&o);
	acme_order_free(&back);
}

/* Replaces the first occurrence of from in s by to, in a new string. */
static char *edit(const char *s, const char *from, const char *to)
{
	const char *at = strstr(s, from);
	char *out;

	assert_non_null(at);
	out = malloc(strlen(s) + strlen(to) + 1);
	sprintf(out, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
	return out;
}

static void test_order_json_refused(void **state)
{
	static const char *const edits[][2] = {
	    {"\"version\":1", "\"version\":2"},
	    {"\"version\":1", "\"version\":1,\"extra\":true"},
	    {"\"type\":\"http-01\"", "\"type\":\"http-02\""},
	    {"\"responded\":false", "\"responded\":\"no\""},
	    {"\"csr_spki\":\"abab", "\"csr_spki\":\"zzab"},
	    {"\"status\":\"pending\"", "\"status\":\"pending-for-a-very-long-time-indeed\""},
	    {"\"identifiers\":[", "\"identifiers\":[7,"},
	    {"\"url\":\"https://ca.test/authz/0\",", ""},
	};
	acme_order o, back;
	acme_err e;
	char *good;

	(void)state;
	sample_order(&o);
	memset(o.csr_spki, 0xab, sizeof(o.csr_spki));
	good = acme_order_to_json(&o);
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		char *bad = edit(good, edits[i][0], edits[i][1]);

		assert_int_equal(acme_order_from_json(bad, &back, &e), -1);
		assert_int_equal(e.err.code, CS_EINPUT);
		assert_non_null(strstr(e.err.msg, "ACME order state"));
		assert_int_equal(back.nauthzs, 0); /* left empty */
		free(bad);
	}
	assert_int_equal(acme_order_from_json("{\"version\":", &back, &e), -1);
	assert_int_equal(acme_order_from_json("[]", &back, &e), -1);
	free(good);
	acme_order_free(&o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_b64url),
	    cmocka_unit_test(test_jwk_and_thumbprint),
	    cmocka_unit_test(test_jwk_refuses_other_keys),
	    cmocka_unit_test(test_jws),
	    cmocka_unit_test(test_eab),
	    cmocka_unit_test(test_key_authorizations),
	    cmocka_unit_test(test_problem_classes),
	    cmocka_unit_test(test_parse_time),
	    cmocka_unit_test(test_order_next),
	    cmocka_unit_test(test_order_json_round_trip),
	    cmocka_unit_test(test_order_json_refused),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
