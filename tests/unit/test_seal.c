/* test_seal.c — unit tests of the cluster key and of sealing private keys:
 * round trips, every way a seal must refuse to open, key checks, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../../seal/seal.h"

/* Argon2id is slow on purpose; derive each key once, with INTERACTIVE
 * limits, and share them. */
static const uint64_t OPS = crypto_pwhash_OPSLIMIT_INTERACTIVE;
static const uint64_t MEM = crypto_pwhash_MEMLIMIT_INTERACTIVE;

static const char PASS[] = "correct horse battery staple";
static const char OTHER[] = "correct horse battery stapler";

struct keys {
	uint8_t salt[CS_SALT_LEN];
	uint8_t salt2[CS_SALT_LEN];
	cs_key *a;  /* PASS, salt */
	cs_key *a2; /* PASS, salt, derived again */
	cs_key *b;  /* OTHER, salt */
	cs_key *c;  /* PASS, salt2 */
};

static cs_key *derive(const char *pass, const uint8_t *salt)
{
	cs_key *key = NULL;
	cs_err err;

	if (cs_key_derive(&key, pass, strlen(pass), salt, OPS, MEM, &err) != 0)
		fail_msg("derive: %s", err.msg);
	return key;
}

static int group_setup(void **state)
{
	struct keys *k = calloc(1, sizeof(*k));
	cs_err err;

	if (k == NULL || cs_seal_init(&err) != 0)
		return -1;
	cs_kdf_new_salt(k->salt);
	cs_kdf_new_salt(k->salt2);
	k->a = derive(PASS, k->salt);
	k->a2 = derive(PASS, k->salt);
	k->b = derive(OTHER, k->salt);
	k->c = derive(PASS, k->salt2);
	*state = k;
	return 0;
}

static int group_teardown(void **state)
{
	struct keys *k = *state;

	cs_key_free(k->a);
	cs_key_free(k->a2);
	cs_key_free(k->b);
	cs_key_free(k->c);
	cs_key_free(NULL);
	free(k);
	return 0;
}

static const char PLAIN[] = "-----BEGIN PRIVATE KEY-----\nnot really\n-----END PRIVATE KEY-----\n";
static const uint8_t AD[32] = {0x3f, 0xa9, 0xc2, 0xd1}; /* a record id */

static void seal(const cs_key *key, uint8_t **s, size_t *slen)
{
	cs_err err;

	if (cs_seal(key, PLAIN, sizeof(PLAIN), AD, sizeof(AD), s, slen, &err) != 0)
		fail_msg("seal: %s", err.msg);
	assert_int_equal(*slen, sizeof(PLAIN) + CS_SEAL_OVERHEAD);
}

static void expect_no_open(const cs_key *key, const uint8_t *s, size_t slen, const void *ad,
                           size_t adlen)
{
	uint8_t *p = (uint8_t *)1;
	size_t plen = 1;
	cs_err err;

	assert_int_equal(cs_unseal(key, s, slen, ad, adlen, &p, &plen, &err), -1);
	assert_int_equal(err.code, CS_ECRYPTO);
	assert_null(p);
	assert_int_equal(plen, 0);
}

static void test_round_trip(void **state)
{
	struct keys *k = *state;
	uint8_t *s1, *s2, *p;
	size_t s1len, s2len, plen;
	cs_err err;

	seal(k->a, &s1, &s1len);
	seal(k->a, &s2, &s2len);
	/* a fresh nonce each time: the same key never seals to the same bytes */
	assert_memory_not_equal(s1, s2, CS_SEAL_OVERHEAD - 16);
	assert_memory_not_equal(s1, s2, s1len);
	assert_int_equal(cs_unseal(k->a, s1, s1len, AD, sizeof(AD), &p, &plen, &err), 0);
	assert_int_equal(plen, sizeof(PLAIN));
	assert_memory_equal(p, PLAIN, plen);
	cs_secret_free(p);
	/* the same key derived again opens it too */
	assert_int_equal(cs_unseal(k->a2, s2, s2len, AD, sizeof(AD), &p, &plen, &err), 0);
	assert_memory_equal(p, PLAIN, plen);
	cs_secret_free(p);
	free(s1);
	free(s2);

	/* empty plaintext and no associated data */
	assert_int_equal(cs_seal(k->a, "", 0, NULL, 0, &s1, &s1len, &err), 0);
	assert_int_equal(s1len, CS_SEAL_OVERHEAD);
	assert_int_equal(cs_unseal(k->a, s1, s1len, NULL, 0, &p, &plen, &err), 0);
	assert_int_equal(plen, 0);
	assert_non_null(p);
	cs_secret_free(p);
	free(s1);
	cs_secret_free(NULL);
}

static void test_wrong_ad(void **state)
{
	struct keys *k = *state;
	uint8_t other[sizeof(AD)];
	uint8_t *s;
	size_t slen;

	seal(k->a, &s, &slen);
	memcpy(other, AD, sizeof(AD));
	other[31] ^= 1;
	/* a sealed key moved to another record does not open */
	expect_no_open(k->a, s, slen, other, sizeof(other));
	expect_no_open(k->a, s, slen, AD, sizeof(AD) - 1);
	expect_no_open(k->a, s, slen, NULL, 0);
	free(s);
}

static void test_wrong_key(void **state)
{
	struct keys *k = *state;
	uint8_t *s, *p = NULL;
	size_t slen, plen;
	cs_err err;

	seal(k->a, &s, &slen);
	expect_no_open(k->b, s, slen, AD, sizeof(AD));
	expect_no_open(k->c, s, slen, AD, sizeof(AD));
	assert_int_equal(cs_unseal(k->b, s, slen, AD, sizeof(AD), &p, &plen, &err), -1);
	assert_non_null(strstr(err.msg, "passphrase does not match"));
	free(s);
}

static void test_tampered(void **state)
{
	struct keys *k = *state;
	uint8_t *s;
	size_t slen;

	seal(k->a, &s, &slen);
	/* every byte matters: nonce, ciphertext and tag */
	for (size_t i = 0; i < slen; i++) {
		s[i] ^= 0x80;
		expect_no_open(k->a, s, slen, AD, sizeof(AD));
		s[i] ^= 0x80;
	}
	/* truncated and extended */
	expect_no_open(k->a, s, slen - 1, AD, sizeof(AD));
	expect_no_open(k->a, s, CS_SEAL_OVERHEAD - 1, AD, sizeof(AD));
	expect_no_open(k->a, s, 0, AD, sizeof(AD));
	s = realloc(s, slen + 1);
	assert_non_null(s);
	s[slen] = 0;
	expect_no_open(k->a, s, slen + 1, AD, sizeof(AD));
	free(s);
}

static void test_key_check(void **state)
{
	struct keys *k = *state;
	uint8_t ca[CS_KEYCHECK_LEN], ca2[CS_KEYCHECK_LEN], cb[CS_KEYCHECK_LEN], cc[CS_KEYCHECK_LEN];

	cs_key_check(k->a, ca);
	cs_key_check(k->a2, ca2);
	cs_key_check(k->b, cb);
	cs_key_check(k->c, cc);
	assert_memory_equal(ca, ca2, CS_KEYCHECK_LEN);
	assert_memory_not_equal(ca, cb, CS_KEYCHECK_LEN);
	assert_memory_not_equal(ca, cc, CS_KEYCHECK_LEN);
}

static void test_subkey(void **state)
{
	struct keys *k = *state;
	uint8_t s1[32], s2[32], s3[32], s4[32], s5[32], check[CS_KEYCHECK_LEN];

	cs_key_subkey(k->a, 1, "tickets_", s1);
	cs_key_subkey(k->a2, 1, "tickets_", s2);
	cs_key_subkey(k->a, 2, "tickets_", s3);
	cs_key_subkey(k->a, 1, "digest__", s4);
	cs_key_subkey(k->b, 1, "tickets_", s5);
	cs_key_check(k->a, check);
	assert_memory_equal(s1, s2, 32);
	assert_memory_not_equal(s1, s3, 32);
	assert_memory_not_equal(s1, s4, 32);
	assert_memory_not_equal(s1, s5, 32);
	assert_memory_not_equal(s1, check, 32);
}

static void test_limits(void **state)
{
	uint8_t salt[CS_SALT_LEN] = {0};
	uint64_t ops, mem;
	cs_key *key = (cs_key *)1;
	cs_err err;

	(void)state;
	cs_kdf_default_limits(&ops, &mem);
	assert_int_equal(ops, crypto_pwhash_OPSLIMIT_MODERATE);
	assert_int_equal(mem, crypto_pwhash_MEMLIMIT_MODERATE);

	/* a settings record must not be able to weaken the key */
	assert_int_equal(cs_key_derive(&key, PASS, strlen(PASS), salt, OPS - 1, MEM, &err), -1);
	assert_int_equal(err.code, CS_EINPUT);
	assert_null(key);
	assert_int_equal(cs_key_derive(&key, PASS, strlen(PASS), salt, OPS, MEM - 1, &err), -1);
	assert_int_equal(err.code, CS_EINPUT);
	assert_int_equal(cs_key_derive(&key, PASS, strlen(PASS), salt, 0, 0, &err), -1);
	assert_int_equal(err.code, CS_EINPUT);
	/* nor make every node spin */
	assert_int_equal(cs_key_derive(&key, PASS, strlen(PASS), salt, UINT64_MAX, MEM, &err), -1);
	assert_int_equal(err.code, CS_EINPUT);
	assert_int_equal(cs_key_derive(&key, PASS, strlen(PASS), salt, OPS, UINT64_MAX, &err), -1);
	assert_int_equal(err.code, CS_EINPUT);
	assert_null(key);
}

static void test_salt(void **state)
{
	struct keys *k = *state;
	uint8_t zero[CS_SALT_LEN] = {0};

	assert_memory_not_equal(k->salt, zero, CS_SALT_LEN);
	assert_memory_not_equal(k->salt, k->salt2, CS_SALT_LEN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip), cmocka_unit_test(test_wrong_ad),
	    cmocka_unit_test(test_wrong_key),  cmocka_unit_test(test_tampered),
	    cmocka_unit_test(test_key_check),  cmocka_unit_test(test_subkey),
	    cmocka_unit_test(test_limits),     cmocka_unit_test(test_salt),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
