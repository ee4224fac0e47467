/* test_store_split.c — one change written as several log entries
 * (cs_txn_log_split): each entry holds the ops since the one before, the
 * applied position moves over all of them, they reach the disk together
 * in a batch, and an abort after a split leaves nothing of any. */
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

#include "../../store/store.h"
#include "proto/store.pb-c.h"
#include "testlib.h"

static void put(cs_txn *txn, const char *k, const char *v)
{
	cs_err err;

	if (cs_txn_put(txn, CS_TBL_CERTS, k, strlen(k), v, strlen(v), &err) != 0)
		fail_msg("put %s: %s", k, err.msg);
}

static size_t entry_ops(cs_store *st, uint64_t seq)
{
	cs_txn *txn = test_begin(st, false);
	Certsync__LogEntry *e;
	const void *val;
	size_t vlen, n;
	cs_err err;

	assert_int_equal(cs_txn_log_get(txn, seq, &val, &vlen, &err), 0);
	e = certsync__log_entry__unpack(NULL, vlen, val);
	assert_non_null(e);
	n = e->n_ops;
	certsync__log_entry__free_unpacked(e, NULL);
	cs_txn_abort(txn);
	return n;
}

static uint64_t applied_seq(cs_store *st)
{
	cs_txn *txn = test_begin(st, false);
	uint64_t seq = cs_txn_applied(txn).seq;

	cs_txn_abort(txn);
	return seq;
}

static void test_split_commits_every_entry(void **state)
{
	struct test_store *f = *state;
	cs_txn *txn = test_begin(f->st, true);
	cs_pos pos, last;
	cs_err err;

	put(txn, "a", "1");
	put(txn, "b", "22");
	assert_int_equal(cs_txn_log_bytes(txn), 5);
	assert_int_equal(cs_txn_log_split(txn, "big", &err), 0);
	assert_int_equal(cs_txn_log_bytes(txn), 0);
	assert_int_equal(cs_txn_log_split(txn, "big", &err), 0); /* no ops: no entry */
	put(txn, "c", "3");
	assert_int_equal(cs_txn_commit(txn, "big", &pos, &err), 0);
	assert_int_equal(pos.seq, 2);
	assert_int_equal(applied_seq(f->st), 2);
	assert_int_equal(entry_ops(f->st, 1), 2);
	assert_int_equal(entry_ops(f->st, 2), 1);

	/* in a batch, the batch reports every entry of the change */
	assert_int_equal(cs_store_batch_begin(f->st, &err), 0);
	txn = test_begin(f->st, true);
	put(txn, "d", "4");
	assert_int_equal(cs_txn_log_split(txn, "big", &err), 0);
	put(txn, "e", "5");
	assert_int_equal(cs_txn_commit(txn, "big", &pos, &err), 0);
	assert_int_equal(cs_store_batch_end(f->st, &last, &err), 0);
	assert_int_equal(last.seq, 4);
	assert_int_equal(applied_seq(f->st), 4);
}

static void test_abort_after_split_writes_nothing(void **state)
{
	struct test_store *f = *state;
	cs_txn *txn = test_begin(f->st, true);
	const void *val;
	size_t vlen;
	cs_err err;

	put(txn, "a", "1");
	assert_int_equal(cs_txn_log_split(txn, "big", &err), 0);
	put(txn, "b", "2");
	cs_txn_abort(txn);
	txn = test_begin(f->st, false);
	assert_int_equal(cs_txn_applied(txn).seq, 0);
	assert_int_equal(cs_txn_get(txn, CS_TBL_CERTS, "a", 1, &val, &vlen, &err), 1);
	assert_int_equal(cs_txn_log_get(txn, 1, &val, &vlen, &err), 1);
	cs_txn_abort(txn);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_split_commits_every_entry, test_store_setup,
	                                    test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_abort_after_split_writes_nothing, test_store_setup,
	                                    test_store_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
