/* test_tls_rekey.c — the TLS reloader's check that the key it unseals with
 * is the one the store is sealed under: during a `cluster rekey` the store
 * is re-sealed under a new key just before the node hands that key over,
 * and a table built in between must not be swapped in. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "../../bench/storekit.h"
#include "../../tls/tls_int.h"

static void check(cs_store *st, const cs_key *key, int want, enum cs_errcode code)
{
	cs_err err = {0};
	cs_txn *txn;

	assert_int_equal(cs_txn_begin(st, false, &txn, &err), 0);
	assert_int_equal(tls_store_key_check(txn, key, &err), want);
	assert_int_equal(err.code, code);
	cs_txn_abort(txn);
}

static cs_store *open_store(char *dir, const char *pass, cs_key **key)
{
	cs_store *st;
	cs_err err;

	assert_non_null(mkdtemp(dir));
	if (pass == NULL ? cs_store_open(&st, dir, &err) < 0
	                 : storekit_open(dir, pass, &st, key, &err) < 0)
		fail_msg("opening a store in %s: %s", dir, err.msg);
	return st;
}

static void remove_dir(const char *dir)
{
	char cmd[64];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_store_key(void **state)
{
	char a[] = "/tmp/test_tls_rekey.XXXXXX", b[] = "/tmp/test_tls_rekey.XXXXXX",
	     none[] = "/tmp/test_tls_rekey.XXXXXX";
	cs_key *ka, *kb;
	/* the same passphrase under another salt gives another key */
	cs_store *sa = open_store(a, "the passphrase", &ka),
	         *sb = open_store(b, "the passphrase", &kb), *sn = open_store(none, NULL, NULL);

	(void)state;
	check(sa, ka, 0, CS_OK);
	check(sa, kb, -1, CS_ECRYPTO);
	check(sb, kb, 0, CS_OK);
	check(sb, ka, -1, CS_ECRYPTO);
	/* a store without cluster settings has no key to compare with */
	check(sn, ka, 0, CS_OK);
	cs_store_close(sa);
	cs_store_close(sb);
	cs_store_close(sn);
	cs_key_free(ka);
	cs_key_free(kb);
	remove_dir(a);
	remove_dir(b);
	remove_dir(none);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_store_key),
	};

	if (cs_seal_init(NULL) < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
