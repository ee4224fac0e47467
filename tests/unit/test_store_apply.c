/* test_store_apply.c — unit tests of the store's side of replication:
 * applying received entries, epochs and the leader fence, the epoch
 * history, log retention, snapshot loading and the diverged table. */
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

#include "../../common/hex.h"
#include "../../store/store.h"
#include "proto/store.pb-c.h"
#include "testlib.h"

struct fix {
	char dir[2][64];
	cs_store *st[2]; /* a primary and a follower */
};

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	cs_err err;

	assert_non_null(f);
	for (int i = 0; i < 2; i++) {
		test_dir_make(f->dir[i], sizeof(f->dir[i]), "cs-apply");
		if (cs_store_open(&f->st[i], f->dir[i], &err) != 0)
			fail_msg("open: %s", err.msg);
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	for (int i = 0; i < 2; i++) {
		cs_store_close(f->st[i]);
		test_dir_remove(f->dir[i]);
	}
	free(f);
	return 0;
}

static cs_pos change(cs_store *st, const char *k, const char *v)
{
	cs_txn *txn = test_begin(st, true);
	cs_pos pos;
	cs_err err;

	if (v != NULL)
		assert_int_equal(cs_txn_put(txn, CS_TBL_CERTS, k, strlen(k), v, strlen(v), &err),
		                 0);
	else
		assert_int_equal(cs_txn_del(txn, CS_TBL_CERTS, k, strlen(k), &err), 0);
	if (cs_txn_commit(txn, k, &pos, &err) != 0)
		fail_msg("commit: %s", err.msg);
	return pos;
}

/* A copy of log entry seq of st. */
static uint8_t *entry(cs_store *st, uint64_t seq, size_t *len)
{
	cs_txn *txn = test_begin(st, false);
	const void *val;
	uint8_t *copy;
	cs_err err;

	assert_int_equal(cs_txn_log_get(txn, seq, &val, len, &err), 0);
	copy = malloc(*len);
	assert_non_null(copy);
	memcpy(copy, val, *len);
	cs_txn_abort(txn);
	return copy;
}

/* Applies entries from..to of src to dst in one transaction. */
static int apply(cs_store *src, cs_store *dst, uint64_t from, uint64_t to, cs_err *err)
{
	cs_txn *txn = test_begin(dst, true);
	int rc = 0;

	for (uint64_t s = from; s <= to && rc == 0; s++) {
		size_t len;
		uint8_t *e = entry(src, s, &len);

		rc = cs_txn_apply(txn, e, len, err);
		free(e);
	}
	if (rc != 0) {
		cs_txn_abort(txn);
		return -1;
	}
	return cs_txn_commit(txn, NULL, NULL, err);
}

static void same(cs_store *a, cs_store *b)
{
	uint8_t da[CS_DIGEST_LEN], db[CS_DIGEST_LEN], again[CS_DIGEST_LEN];
	cs_txn *ta = test_begin(a, false), *tb = test_begin(b, false);
	cs_err err;

	assert_int_equal(cs_txn_applied(ta).seq, cs_txn_applied(tb).seq);
	assert_int_equal(cs_txn_applied(ta).epoch, cs_txn_applied(tb).epoch);
	cs_txn_digest(ta, da);
	cs_txn_digest(tb, db);
	assert_memory_equal(da, db, CS_DIGEST_LEN);
	assert_int_equal(cs_txn_digest_recompute(tb, again, &err), 0);
	assert_memory_equal(db, again, CS_DIGEST_LEN);
	cs_txn_abort(ta);
	cs_txn_abort(tb);
}

static void test_apply(void **state)
{
	struct fix *f = *state;
	cs_txn *txn;
	cs_err err;
	size_t len;
	uint8_t *e;

	change(f->st[0], "a", "1");
	change(f->st[0], "b", "2");
	change(f->st[0], "a", NULL);
	assert_int_equal(apply(f->st[0], f->st[1], 1, 3, &err), 0);
	same(f->st[0], f->st[1]);
	/* the follower's log holds the primary's bytes */
	{
		size_t l2;
		uint8_t *e2 = entry(f->st[1], 2, &l2);

		e = entry(f->st[0], 2, &len);
		assert_int_equal(len, l2);
		assert_memory_equal(e, e2, len);
		free(e);
		free(e2);
	}
	/* out of order, twice, or garbage: refused, nothing changes */
	change(f->st[0], "c", "3");
	change(f->st[0], "d", "4");
	assert_int_equal(apply(f->st[0], f->st[1], 5, 5, &err), -1);
	assert_int_equal(err.code, CS_EINPUT);
	assert_int_equal(apply(f->st[0], f->st[1], 3, 3, &err), -1);
	txn = test_begin(f->st[1], true);
	assert_int_equal(cs_txn_apply(txn, "\xff\xff\xff", 3, &err), -1);
	assert_int_equal(err.code, CS_EINPUT);
	/* ... and the transaction stays usable */
	e = entry(f->st[0], 4, &len);
	assert_int_equal(cs_txn_apply(txn, e, len, &err), 0);
	free(e);
	assert_int_equal(cs_txn_commit(txn, NULL, NULL, &err), 0);
	assert_int_equal(apply(f->st[0], f->st[1], 5, 5, &err), 0);
	same(f->st[0], f->st[1]);
}

static void test_epochs_and_fence(void **state)
{
	struct fix *f = *state;
	cs_epoch_start *h;
	uint64_t led;
	size_t n;
	cs_txn *txn;
	cs_err err;

	change(f->st[0], "a", "1");
	txn = test_begin(f->st[0], true);
	assert_int_equal(cs_txn_led(txn, &led), 1); /* never joined a cluster */
	assert_int_equal(cs_txn_set_epoch(txn, 1, true, &err), 0);
	assert_int_equal(cs_txn_commit(txn, NULL, NULL, &err), 0);
	change(f->st[0], "b", "2");
	/* promoted: epoch 2 begins at the next entry */
	txn = test_begin(f->st[0], true);
	assert_int_equal(cs_txn_set_epoch(txn, 1, false, &err), 0); /* same epoch: no change */
	assert_int_equal(cs_txn_set_epoch(txn, 2, true, &err), 0);
	assert_int_equal(cs_txn_set_epoch(txn, 1, true, &err), -1); /* never back */
	assert_int_equal(cs_txn_commit(txn, NULL, NULL, &err), 0);
	assert_int_equal(change(f->st[0], "c", "3").epoch, 2);
	txn = test_begin(f->st[0], false);
	assert_int_equal(cs_txn_epochs(txn, &h, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(h[0].epoch, 1);
	assert_int_equal(h[0].seq, 1);
	assert_int_equal(h[1].epoch, 2);
	assert_int_equal(h[1].seq, 3);
	free(h);
	cs_txn_abort(txn);
	/* another node leads epoch 3: this one's changes are refused */
	txn = test_begin(f->st[0], true);
	assert_int_equal(cs_txn_set_epoch(txn, 3, false, &err), 0);
	assert_int_equal(cs_txn_commit(txn, NULL, NULL, &err), 0);
	txn = test_begin(f->st[0], true);
	assert_int_equal(cs_txn_put(txn, CS_TBL_CERTS, "x", 1, "y", 1, &err), 0);
	assert_int_equal(cs_txn_commit(txn, "fenced", NULL, &err), -1);
	assert_int_equal(err.code, CS_EREFUSED);
	txn = test_begin(f->st[0], false);
	assert_int_equal(cs_txn_applied(txn).seq, 3);
	assert_int_equal(cs_txn_epoch(txn), 3);
	cs_txn_abort(txn);
	/* an entry from an epoch above the follower's is refused */
	assert_int_equal(apply(f->st[0], f->st[1], 1, 3, &err), -1);
	txn = test_begin(f->st[1], true);
	assert_int_equal(cs_txn_set_epoch(txn, 3, false, &err), 0);
	assert_int_equal(cs_txn_commit(txn, NULL, NULL, &err), 0);
	assert_int_equal(apply(f->st[0], f->st[1], 1, 3, &err), 0);
	txn = test_begin(f->st[1], false);
	assert_int_equal(cs_txn_epochs(txn, &h, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(h[1].seq, 3);
	free(h);
	cs_txn_abort(txn);
}

static void test_retain(void **state)
{
	struct fix *f = *state;
	char k[16];
	uint64_t first;
	cs_txn *txn;
	cs_err err;

	cs_store_set_log_retain(f->st[0], 5);
	for (int i = 0; i < 12; i++) {
		snprintf(k, sizeof(k), "k%d", i);
		change(f->st[0], k, "v");
	}
	txn = test_begin(f->st[0], false);
	assert_int_equal(cs_txn_log_first(txn, &first, &err), 0);
	assert_int_equal(first, 8);
	cs_txn_abort(txn);
	txn = test_begin(f->st[1], false);
	assert_int_equal(cs_txn_log_first(txn, &first, &err), 0);
	assert_int_equal(first, 0);
	cs_txn_abort(txn);
}

struct copy {
	cs_txn *dst;
	cs_table t;
};

static int load_pair(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct copy *c = ctx;
	cs_err err;

	return cs_txn_load(c->dst, c->t, key, klen, val, vlen, &err);
}

static int count(void *ctx, const cs_diverged *d)
{
	(void)d;
	(*(int *)ctx)++;
	return 0;
}

static int first_id(void *ctx, const cs_diverged *d)
{
	cs_hex(d->id, CS_DIGEST_LEN, ctx);
	return 1;
}

static void test_snapshot_and_diverged(void **state)
{
	struct fix *f = *state;
	cs_txn *src, *dst;
	cs_epoch_start *h;
	struct copy c;
	char id[2 * CS_DIGEST_LEN + 1];
	uint8_t full[CS_DIGEST_LEN];
	uint8_t digest[CS_DIGEST_LEN];
	size_t n, moved;
	int nd = 0;
	cs_err err;

	/* both wrote seq 1..2 alike, then the follower wrote 3..4 alone */
	change(f->st[0], "a", "1");
	change(f->st[0], "b", "2");
	assert_int_equal(apply(f->st[0], f->st[1], 1, 2, &err), 0);
	change(f->st[1], "lost1", "x");
	change(f->st[1], "lost2", "y");
	change(f->st[0], "c", "3");
	/* the follower loads the primary's snapshot; its tail moves aside */
	src = test_begin(f->st[0], false);
	dst = test_begin(f->st[1], true);
	assert_int_equal(cs_txn_reset(dst, 2, "old", &moved, &err), 0);
	assert_int_equal(moved, 2);
	c.dst = dst;
	for (int t = 0; t < CS_TBL_NREPL; t++) {
		c.t = (cs_table)t;
		assert_int_equal(cs_txn_foreach(src, c.t, load_pair, &c, &err), 0);
	}
	assert_int_equal(cs_txn_epochs(src, &h, &n, &err), 0);
	assert_int_equal(cs_txn_set_position(dst, cs_txn_applied(src), h, n, &err), 0);
	free(h);
	cs_txn_digest(src, digest);
	cs_txn_abort(src);
	cs_txn_digest(dst, full);
	assert_memory_equal(digest, full, CS_DIGEST_LEN);
	assert_int_equal(cs_txn_commit(dst, NULL, NULL, &err), 0);
	same(f->st[0], f->st[1]);
	/* and streams on */
	change(f->st[0], "d", "4");
	assert_int_equal(apply(f->st[0], f->st[1], 4, 4, &err), 0);
	same(f->st[0], f->st[1]);

	/* the diverged entries, reported to the primary, are kept once */
	dst = test_begin(f->st[1], false);
	assert_int_equal(cs_txn_diverged_foreach(dst, count, &nd, &err), 0);
	assert_int_equal(nd, 2);
	cs_txn_abort(dst);
	{
		size_t len;
		uint8_t *e = entry(f->st[1], 4, &len); /* any valid entry */

		src = test_begin(f->st[0], true);
		assert_int_equal(cs_txn_diverged_add(src, "old", e, len, &err), 0);
		assert_int_equal(cs_txn_diverged_add(src, "old", e, len, &err), 1);
		assert_int_equal(cs_txn_diverged_add(src, "old", "junk", 4, &err), -1);
		assert_int_equal(err.code, CS_EINPUT);
		assert_int_equal(cs_txn_commit(src, NULL, NULL, &err), 0);
		free(e);
	}
	/* re-applied as a new change, once */
	src = test_begin(f->st[0], false);
	assert_int_equal(cs_txn_diverged_foreach(src, first_id, id, &err), 1);
	cs_txn_abort(src);
	src = test_begin(f->st[0], true);
	assert_int_equal(cs_txn_diverged_apply(src, "0000", digest, &err), -1);
	assert_int_equal(err.code, CS_EINPUT);
	assert_int_equal(cs_txn_diverged_apply(src, "zzzzzzzz", digest, &err), -1);
	id[10] = '\0';
	assert_int_equal(cs_txn_diverged_apply(src, id, digest, &err), 0);
	assert_int_equal(cs_txn_commit(src, "diverged apply", NULL, &err), 0);
	src = test_begin(f->st[0], true);
	assert_int_equal(cs_txn_diverged_apply(src, id, digest, &err), -1);
	assert_int_equal(err.code, CS_EEXIST);
	cs_txn_abort(src);
	assert_int_equal(apply(f->st[0], f->st[1], 5, 5, &err), 0);
	same(f->st[0], f->st[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_apply, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_epochs_and_fence, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_retain, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_snapshot_and_diverged, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
