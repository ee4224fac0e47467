/* test_records.c — unit tests of the records module: the cluster settings
 * (made once, opened with the right passphrase, refused with another, a
 * damaged record named) and the CA pool's one failure policy (a CA record
 * that does not decode is left out, the ids hash still counts it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "../../records/records.h"

#define PASS "correct horse battery staple"

struct fix {
	char dir[64];
	cs_store *st;
};

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	cs_err err;

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "%s/cs-records-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	assert_non_null(mkdtemp(f->dir));
	if (cs_seal_init(&err) != 0 || cs_store_open(&f->st, f->dir, &err) != 0)
		fail_msg("open: %s", err.msg);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	cs_store_close(f->st);
	nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static cs_txn *begin(cs_store *st, bool write)
{
	cs_txn *txn;
	cs_err err;

	if (cs_txn_begin(st, write, &txn, &err) != 0)
		fail_msg("begin: %s", err.msg);
	return txn;
}

static void commit(cs_txn *txn)
{
	cs_err err;

	if (cs_txn_commit(txn, "test", NULL, &err) != 0)
		fail_msg("commit: %s", err.msg);
}

static void test_cluster_settings(void **state)
{
	struct fix *f = *state;
	Certsync__KdfParams *kdf;
	uint8_t made[CS_KEYCHECK_LEN], opened[CS_KEYCHECK_LEN];
	cs_key *key, *again;
	cs_txn *txn;
	cs_err err;

	txn = begin(f->st, false);
	assert_int_equal(rec_kdf_get(txn, &kdf, &err), 1); /* a new store has none */
	assert_null(kdf);
	cs_txn_abort(txn);

	txn = begin(f->st, true);
	assert_int_equal(rec_cluster_create(txn, PASS, strlen(PASS),
	                                    crypto_pwhash_OPSLIMIT_INTERACTIVE,
	                                    crypto_pwhash_MEMLIMIT_INTERACTIVE, &key, &err),
	                 0);
	commit(txn);
	cs_key_check(key, made);
	cs_key_free(key);

	txn = begin(f->st, false);
	assert_int_equal(rec_kdf_get(txn, &kdf, &err), 0);
	cs_txn_abort(txn);
	assert_int_equal(kdf->salt.len, CS_SALT_LEN);
	assert_int_equal(kdf->cluster_id.len, 16);
	assert_int_equal(kdf->opslimit, crypto_pwhash_OPSLIMIT_INTERACTIVE);

	/* the passphrase it was made with opens it: the same key */
	assert_int_equal(rec_cluster_key(kdf, PASS, strlen(PASS), &again, &err), 0);
	cs_key_check(again, opened);
	assert_memory_equal(made, opened, CS_KEYCHECK_LEN);
	cs_key_free(again);

	/* another passphrase: refused, no key */
	assert_int_equal(rec_cluster_key(kdf, "wrong", 5, &again, &err), 1);
	assert_null(again);
	assert_int_equal(err.code, CS_ECRYPTO);
	assert_non_null(strstr(err.msg, "passphrase does not match"));

	/* a damaged record: named, not taken for a wrong passphrase */
	kdf->salt.len = 3;
	assert_int_equal(rec_cluster_key(kdf, PASS, strlen(PASS), &again, &err), -1);
	assert_null(again);
	assert_non_null(strstr(err.msg, "cluster settings are damaged"));
	certsync__kdf_params__free_unpacked(kdf, NULL);

	/* settings that do not decode */
	txn = begin(f->st, true);
	assert_int_equal(cs_txn_put(txn, CS_TBL_SETTINGS, REC_SETTINGS_KDF,
	                            strlen(REC_SETTINGS_KDF), "\xff\xff\xff", 3, &err),
	                 0);
	commit(txn);
	txn = begin(f->st, false);
	assert_int_equal(rec_kdf_get(txn, &kdf, &err), -1);
	assert_null(kdf);
	assert_non_null(strstr(err.msg, "cluster settings do not decode"));
	cs_txn_abort(txn);
}

/* Puts a CA record holding a freshly made certificate under id. */
static void put_ca(cs_store *st, uint8_t id_byte)
{
	static const char *const sans[] = {"ca.example.test"};
	pki_subject subj = {
	    .country = "GB", .common_name = "ca.example.test", .sans = sans, .nsans = 1};
	Certsync__CertRecord rec = CERTSYNC__CERT_RECORD__INIT;
	uint8_t id[PKI_ID_LEN], *der;
	size_t dlen;
	EVP_PKEY *key;
	X509 *cert = NULL;
	cs_txn *txn;
	cs_err err;

	memset(id, id_byte, sizeof(id));
	if ((key = pki_key_generate(PKI_KEY_EC_P256, &err)) == NULL ||
	    (cert = pki_self_signed(key, &subj, &err)) == NULL ||
	    pki_cert_der(cert, &der, &dlen, &err) != 0)
		fail_msg("certificate: %s", err.msg);
	rec.der = (ProtobufCBinaryData){dlen, der};
	rec.kind = CERTSYNC__CERT_KIND__CERT_KIND_ROOT;
	txn = begin(st, true);
	assert_int_equal(rec_put(txn, CS_TBL_CAS, id, sizeof(id), &rec.base, &err), 0);
	commit(txn);
	free(der);
	X509_free(cert);
	EVP_PKEY_free(key);
}

static void test_ca_pool(void **state)
{
	struct fix *f = *state;
	uint8_t before[32], after[32], bad_id[PKI_ID_LEN];
	STACK_OF(X509) * pool;
	cs_txn *txn;
	cs_err err;

	put_ca(f->st, 0x01);
	put_ca(f->st, 0x02);
	txn = begin(f->st, false);
	pool = rec_ca_pool(txn, before, &err);
	cs_txn_abort(txn);
	assert_non_null(pool);
	assert_int_equal(sk_X509_num(pool), 2);
	sk_X509_pop_free(pool, X509_free);

	/* a CA record that does not decode: left out, the others still there,
	 * and the ids hash tells the table changed */
	memset(bad_id, 0x03, sizeof(bad_id));
	txn = begin(f->st, true);
	assert_int_equal(cs_txn_put(txn, CS_TBL_CAS, bad_id, sizeof(bad_id), "\xff\x01", 2, &err),
	                 0);
	commit(txn);
	txn = begin(f->st, false);
	pool = rec_ca_pool(txn, after, &err);
	cs_txn_abort(txn);
	assert_non_null(pool);
	assert_int_equal(sk_X509_num(pool), 2);
	assert_memory_not_equal(before, after, sizeof(before));
	sk_X509_pop_free(pool, X509_free);

	/* without a hash wanted, the same pool */
	txn = begin(f->st, false);
	pool = rec_ca_pool(txn, NULL, &err);
	cs_txn_abort(txn);
	assert_non_null(pool);
	assert_int_equal(sk_X509_num(pool), 2);
	sk_X509_pop_free(pool, X509_free);
}

/* A certificate record under an id that starts with the given bytes (the
 * rest 0x11), with a friendly name. */
static void put_named(cs_store *st, const uint8_t *head, size_t n, const char *name)
{
	Certsync__CertRecord rec = CERTSYNC__CERT_RECORD__INIT;
	uint8_t id[PKI_ID_LEN];
	cs_txn *txn = begin(st, true);
	cs_err err;

	memset(id, 0x11, sizeof(id));
	memcpy(id, head, n);
	rec.name = (char *)name;
	if (rec_put(txn, CS_TBL_CERTS, id, sizeof(id), &rec.base, &err) != 0)
		fail_msg("put: %s", err.msg);
	commit(txn);
}

static const char *found(cs_store *st, const char *ref, cs_err *err)
{
	static char name[64];
	cs_txn *txn = begin(st, false);
	rec_cert c;
	int rc = rec_cert_find(txn, ref, &c, err);

	cs_txn_abort(txn);
	if (rc != 0)
		return NULL;
	snprintf(name, sizeof(name), "%s", c.rec->name);
	rec_cert_clear(&c);
	return name;
}

/* An id prefix is found by a seek to its bytes: odd lengths, either case,
 * the full id, an ambiguous prefix and one between two ids all answer as
 * the walk over every record did. */
static void test_find_by_id_prefix(void **state)
{
	struct fix *f = *state;
	cs_err err;

	put_named(f->st, (const uint8_t *)"\x00\x00\x00\x01", 4, "first");
	put_named(f->st, (const uint8_t *)"\xab\xcd\x01\x00", 4, "one");
	put_named(f->st, (const uint8_t *)"\xab\xcd\x01\x20", 4, "two");
	put_named(f->st, (const uint8_t *)"\xab\xcd\x02\x00", 4, "three");
	put_named(f->st, (const uint8_t *)"\xff\xff\xff\xff", 4, "last");
	assert_string_equal(found(f->st, "abcd0100", &err), "one");
	assert_string_equal(found(f->st, "ABCD0120", &err), "two");
	assert_string_equal(found(f->st, "abcd01001", &err), "one");
	assert_string_equal(found(f->st, "abcd0200", &err), "three");
	assert_string_equal(found(f->st, "00000001", &err), "first");
	assert_string_equal(found(f->st, "ffffffff11111111", &err), "last");
	assert_string_equal(
	    found(f->st, "abcd012011111111111111111111111111111111111111111111111111111111", &err),
	    "two");
	/* fewer than 8 digits is no id prefix (and no name here); a prefix
	 * no id starts with is not found, whatever sorts next to it */
	assert_null(found(f->st, "abcd01", &err));
	assert_int_equal(err.code, CS_ENOTFOUND);
	assert_null(found(f->st, "abcd0101", &err));
	assert_int_equal(err.code, CS_ENOTFOUND);
	assert_null(found(f->st, "abcd01xx", &err));
	assert_int_equal(err.code, CS_ENOTFOUND);
	/* 8 digits shared by two ids: ambiguous, both named */
	put_named(f->st, (const uint8_t *)"\xab\xcd\x01\x00\x22", 5, "one-bis");
	assert_null(found(f->st, "abcd0100", &err));
	assert_int_equal(err.code, CS_EINPUT);
	assert_non_null(strstr(err.msg, "matches 2"));
	assert_string_equal(found(f->st, "abcd010011", &err), "one");
	assert_string_equal(found(f->st, "abcd010022", &err), "one-bis");
	/* between two ids, and past the last */
	assert_null(found(f->st, "abcd0150", &err));
	assert_int_equal(err.code, CS_ENOTFOUND);
	assert_null(found(f->st, "fffffffff0", &err));
	assert_int_equal(err.code, CS_ENOTFOUND);
	/* a name that looks like no id is found by name */
	assert_string_equal(found(f->st, "three", &err), "three");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_cluster_settings, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ca_pool, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_find_by_id_prefix, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
