/* test_tls_reuse.c — a table built for other hostnames is reused by the
 * next build (verify --cluster builds one table per node from the node's
 * own): its certificates and keys are not unsealed and parsed again, and
 * the coverage of each is found again for the new hostnames. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <openssl/pem.h>

#include "../../bench/storekit.h"
#include "../../tls/tls_int.h"

/* A self-signed certificate for san with a key of its own, imported. */
static void add(cs_store *st, const cs_key *key, const char *dir, const char *san, bool dflt)
{
	const char *sans[] = {san};
	pki_subject subj = {.country = "GB", .common_name = "reuse", .sans = sans, .nsans = 1};
	EVP_PKEY *k = pki_key_generate(PKI_KEY_EC_P256, NULL);
	X509 *x = k != NULL ? pki_self_signed(k, &subj, NULL) : NULL;
	char path[512];
	uint8_t id[32];
	cs_err err;
	FILE *f;

	assert_non_null(x);
	snprintf(path, sizeof(path), "%s/%s.pem", dir, san + (san[0] == '*' ? 2 : 0));
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, x), 1);
	assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
	if (storekit_import(st, key, path, NULL, dflt, id, &err) != 0)
		fail_msg("storekit_import: %s", err.msg);
	X509_free(x);
	EVP_PKEY_free(k);
}

static tls_table *load(cs_store *st, const cs_key *key, const char *host, const tls_table *prev)
{
	cs_txn *txn;
	tls_table *t;
	cs_err err;

	assert_int_equal(cs_txn_begin(st, false, &txn, &err), 0);
	if (tls_table_load(&t, txn, key, host, "support.example.test", prev, time(NULL), &err) != 0)
		fail_msg("tls_table_load: %s", err.msg);
	cs_txn_abort(txn);
	return t;
}

static const char *served(const tls_table *t, const char *sni)
{
	const char *id = tls_table_served(t, sni, time(NULL));

	return id != NULL ? id : "none";
}

static void test_reuse_for_other_hostnames(void **state)
{
	char dir[] = "/tmp/test_tls_reuse.XXXXXX", cmd[64];
	tls_table *a, *b, *c;
	cs_store *st;
	cs_key *key;
	cs_err err;

	(void)state;
	assert_non_null(mkdtemp(dir));
	if (storekit_open(dir, "pass", &st, &key, &err) < 0)
		fail_msg("storekit_open: %s", err.msg);
	add(st, key, dir, "a.example.test", true);
	add(st, key, dir, "*.example.test", false);
	add(st, key, dir, "support.example.test", false);

	/* node a: its default covers it but not the site; the wildcard does */
	a = load(st, key, "a.example.test", NULL);
	assert_int_equal(a->nentries, 3);
	assert_true(a->covered);
	/* node b, from a's table: the same parsed entries, not new ones */
	b = load(st, key, "b.example.test", a);
	assert_int_equal(b->nentries, 3);
	for (size_t i = 0; i < a->nentries; i++)
		assert_ptr_equal(b->entries[i], a->entries[i]);
	assert_true(b->covered);
	assert_string_equal(served(b, NULL), served(a, "x.example.test"));
	/* a node no certificate covers: coverage is found again, not taken
	 * over from a's table, where the wildcard covered */
	c = load(st, key, "c.other.test", b);
	assert_ptr_equal(c->entries[0], a->entries[0]);
	assert_false(c->covered);
	assert_int_equal(c->dflt.n, 0);
	assert_string_equal(served(c, NULL), "none");

	tls_table_free(a);
	tls_table_free(b);
	tls_table_free(c);
	cs_key_free(key);
	cs_store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reuse_for_other_hostnames),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
