/* test_store.c — unit tests of the LMDB store: tables, the log and the
 * applied position, the digest, reopening and the data_dir lock. */
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../store/store.h"
#include "proto/store.pb-c.h"

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

static void make_dir(char *dir, size_t len)
{
	snprintf(dir, len, "%s/cs-store-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	assert_non_null(mkdtemp(dir));
}

static void rm_dir(const char *dir)
{
	nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	cs_err err;

	assert_non_null(f);
	make_dir(f->dir, sizeof(f->dir));
	if (cs_store_open(&f->st, f->dir, &err) != 0)
		fail_msg("open: %s", err.msg);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	cs_store_close(f->st);
	rm_dir(f->dir);
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

static void put(cs_txn *txn, cs_table t, const char *k, const char *v)
{
	cs_err err;

	if (cs_txn_put(txn, t, k, strlen(k), v, strlen(v), &err) != 0)
		fail_msg("put %s: %s", k, err.msg);
}

static void del(cs_txn *txn, cs_table t, const char *k)
{
	cs_err err;

	if (cs_txn_del(txn, t, k, strlen(k), &err) != 0)
		fail_msg("del %s: %s", k, err.msg);
}

static cs_pos commit(cs_txn *txn, const char *summary)
{
	cs_pos pos;
	cs_err err;

	if (cs_txn_commit(txn, summary, &pos, &err) != 0)
		fail_msg("commit: %s", err.msg);
	return pos;
}

/* Asserts t[k] == v, or absent when v is NULL. */
static void expect(cs_txn *txn, cs_table t, const char *k, const char *v)
{
	const void *val;
	size_t vlen;
	cs_err err;
	int rc = cs_txn_get(txn, t, k, strlen(k), &val, &vlen, &err);

	if (v == NULL) {
		assert_int_equal(rc, 1);
		return;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(vlen, strlen(v));
	assert_memory_equal(val, v, vlen);
}

static void digest_of(cs_store *st, uint8_t d[CS_DIGEST_LEN], bool check)
{
	cs_txn *txn = begin(st, false);
	uint8_t r[CS_DIGEST_LEN];
	cs_err err;

	cs_txn_digest(txn, d);
	if (check) {
		if (cs_txn_digest_recompute(txn, r, &err) != 0)
			fail_msg("recompute: %s", err.msg);
		assert_memory_equal(d, r, CS_DIGEST_LEN);
	}
	cs_txn_abort(txn);
}

static cs_pos applied_of(cs_store *st)
{
	cs_txn *txn = begin(st, false);
	cs_pos pos = cs_txn_applied(txn);

	cs_txn_abort(txn);
	return pos;
}

struct walk {
	int n;
	int stop_at;
	char keys[8][16];
	char vals[8][16];
};

static int visit(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct walk *w = ctx;

	assert_true(w->n < 8 && klen < 16 && vlen < 16);
	memcpy(w->keys[w->n], key, klen);
	w->keys[w->n][klen] = '\0';
	memcpy(w->vals[w->n], val, vlen);
	w->vals[w->n][vlen] = '\0';
	w->n++;
	return w->n == w->stop_at ? 42 : 0;
}

static void test_table_names(void **state)
{
	(void)state;
	assert_string_equal(cs_table_name(CS_TBL_CERTS), "certs");
	assert_string_equal(cs_table_name(CS_TBL_CAS), "cas");
	assert_string_equal(cs_table_name(CS_TBL_REQUESTS), "requests");
	assert_string_equal(cs_table_name(CS_TBL_KEYS), "keys");
	assert_string_equal(cs_table_name(CS_TBL_SETTINGS), "settings");
	assert_string_equal(cs_table_name(CS_TBL_ACME), "acme");
	assert_string_equal(cs_table_name(CS_TBL_NREPL), "?");
}

static void test_new_store(void **state)
{
	struct fix *f = *state;
	uint8_t d[CS_DIGEST_LEN];
	uint8_t zero[CS_DIGEST_LEN] = {0};
	cs_pos pos = applied_of(f->st);

	assert_int_equal(pos.epoch, 0);
	assert_int_equal(pos.seq, 0);
	digest_of(f->st, d, true);
	assert_memory_equal(d, zero, CS_DIGEST_LEN);
}

static void test_put_get_del(void **state)
{
	struct fix *f = *state;
	cs_txn *txn = begin(f->st, true);
	struct walk w = {0};
	cs_err err;

	put(txn, CS_TBL_CERTS, "b", "2");
	put(txn, CS_TBL_CERTS, "a", "1");
	put(txn, CS_TBL_CERTS, "c", "3");
	put(txn, CS_TBL_CAS, "a", "ca");
	/* the write transaction sees its own changes */
	expect(txn, CS_TBL_CERTS, "a", "1");
	put(txn, CS_TBL_CERTS, "a", "one");
	expect(txn, CS_TBL_CERTS, "a", "one");
	assert_int_equal(cs_txn_count(txn, CS_TBL_CERTS), 3);
	commit(txn, "fill");

	txn = begin(f->st, false);
	expect(txn, CS_TBL_CERTS, "a", "one");
	expect(txn, CS_TBL_CERTS, "b", "2");
	expect(txn, CS_TBL_CAS, "a", "ca");
	expect(txn, CS_TBL_CAS, "b", NULL);
	expect(txn, CS_TBL_KEYS, "a", NULL);
	assert_int_equal(cs_txn_count(txn, CS_TBL_CERTS), 3);
	assert_int_equal(cs_txn_count(txn, CS_TBL_CAS), 1);
	assert_int_equal(cs_txn_count(txn, CS_TBL_REQUESTS), 0);
	assert_int_equal(cs_txn_foreach(txn, CS_TBL_CERTS, visit, &w, &err), 0);
	assert_int_equal(w.n, 3);
	assert_string_equal(w.keys[0], "a"); /* key order */
	assert_string_equal(w.vals[0], "one");
	assert_string_equal(w.keys[1], "b");
	assert_string_equal(w.keys[2], "c");
	assert_string_equal(w.vals[2], "3");
	/* a non-zero return stops the walk and comes back */
	memset(&w, 0, sizeof(w));
	w.stop_at = 2;
	assert_int_equal(cs_txn_foreach(txn, CS_TBL_CERTS, visit, &w, &err), 42);
	assert_int_equal(w.n, 2);
	/* a read transaction refuses changes */
	assert_int_equal(cs_txn_put(txn, CS_TBL_CERTS, "x", 1, "y", 1, &err), -1);
	assert_int_equal(err.code, CS_EINPUT);
	assert_int_equal(cs_txn_del(txn, CS_TBL_CERTS, "a", 1, &err), -1);
	commit(txn, NULL);

	txn = begin(f->st, true);
	del(txn, CS_TBL_CERTS, "b");
	del(txn, CS_TBL_CERTS, "nope");
	expect(txn, CS_TBL_CERTS, "b", NULL);
	commit(txn, "del");
	txn = begin(f->st, false);
	expect(txn, CS_TBL_CERTS, "b", NULL);
	expect(txn, CS_TBL_CERTS, "a", "one");
	assert_int_equal(cs_txn_count(txn, CS_TBL_CERTS), 2);
	cs_txn_abort(txn);
}

static void test_bad_input(void **state)
{
	struct fix *f = *state;
	cs_txn *txn = begin(f->st, true);
	char big[600];
	uint8_t d[CS_DIGEST_LEN];
	const void *val;
	size_t vlen;
	cs_err err;

	memset(big, 'k', sizeof(big));
	assert_int_equal(cs_txn_put(txn, CS_TBL_CERTS, "", 0, "v", 1, &err), -1);
	assert_int_equal(err.code, CS_EINPUT);
	assert_int_equal(cs_txn_put(txn, CS_TBL_CERTS, big, sizeof(big), "v", 1, &err), -1);
	assert_int_equal(err.code, CS_EINPUT);
	assert_int_equal(cs_txn_put(txn, CS_TBL_NREPL, "k", 1, "v", 1, &err), -1);
	assert_int_equal(err.code, CS_EINPUT);
	assert_int_equal(cs_txn_get(txn, CS_TBL_NREPL, "k", 1, &val, &vlen, &err), -1);
	/* keys that cannot be stored are simply absent */
	assert_int_equal(cs_txn_get(txn, CS_TBL_CERTS, big, sizeof(big), &val, &vlen, &err), 1);
	assert_int_equal(cs_txn_del(txn, CS_TBL_CERTS, "", 0, &err), 0);
	/* refused input changes nothing and leaves the transaction usable */
	put(txn, CS_TBL_CERTS, "k", "v");
	/* an empty value is a value */
	assert_int_equal(cs_txn_put(txn, CS_TBL_KEYS, "e", 1, NULL, 0, &err), 0);
	assert_int_equal(commit(txn, "after refusals").seq, 1);
	txn = begin(f->st, false);
	expect(txn, CS_TBL_CERTS, "k", "v");
	expect(txn, CS_TBL_KEYS, "e", "");
	cs_txn_abort(txn);
	digest_of(f->st, d, true);
}

static Certsync__LogEntry *log_entry(cs_store *st, uint64_t seq)
{
	cs_txn *txn = begin(st, false);
	Certsync__LogEntry *e;
	const void *val;
	size_t vlen;
	cs_err err;

	assert_int_equal(cs_txn_log_get(txn, seq, &val, &vlen, &err), 0);
	e = certsync__log_entry__unpack(NULL, vlen, val);
	assert_non_null(e);
	cs_txn_abort(txn);
	return e;
}

static void expect_op(const Certsync__Op *op, Certsync__Op__Kind kind, cs_table t, const char *k,
                      const char *v)
{
	assert_int_equal(op->kind, kind);
	assert_int_equal(op->table, t);
	assert_int_equal(op->key.len, strlen(k));
	assert_memory_equal(op->key.data, k, strlen(k));
	assert_int_equal(op->value.len, strlen(v));
	if (op->value.len > 0)
		assert_memory_equal(op->value.data, v, strlen(v));
}

static void test_commit_log(void **state)
{
	struct fix *f = *state;
	Certsync__LogEntry *e;
	cs_txn *txn;
	cs_pos pos;
	const void *val;
	size_t vlen;
	cs_err err;
	time_t before = time(NULL);

	txn = begin(f->st, true);
	put(txn, CS_TBL_CERTS, "a", "va");
	put(txn, CS_TBL_CAS, "b", "vb");
	del(txn, CS_TBL_CERTS, "a");
	del(txn, CS_TBL_CERTS, "absent"); /* a no-op leaves no op */
	put(txn, CS_TBL_SETTINGS, "default", "");
	pos = commit(txn, "import 3fa9c2d1 (www)");
	assert_int_equal(pos.epoch, 1);
	assert_int_equal(pos.seq, 1);

	e = log_entry(f->st, 1);
	assert_int_equal(e->epoch, 1);
	assert_int_equal(e->seq, 1);
	assert_string_equal(e->summary, "import 3fa9c2d1 (www)");
	assert_true(e->time >= before && e->time <= time(NULL));
	assert_int_equal(e->n_ops, 4);
	expect_op(e->ops[0], CERTSYNC__OP__KIND__PUT, CS_TBL_CERTS, "a", "va");
	expect_op(e->ops[1], CERTSYNC__OP__KIND__PUT, CS_TBL_CAS, "b", "vb");
	expect_op(e->ops[2], CERTSYNC__OP__KIND__DEL, CS_TBL_CERTS, "a", "");
	expect_op(e->ops[3], CERTSYNC__OP__KIND__PUT, CS_TBL_SETTINGS, "default", "");
	certsync__log_entry__free_unpacked(e, NULL);

	txn = begin(f->st, true);
	put(txn, CS_TBL_REQUESTS, "r", "csr");
	pos = commit(txn, NULL);
	assert_int_equal(pos.seq, 2);
	e = log_entry(f->st, 2);
	assert_int_equal(e->seq, 2);
	assert_string_equal(e->summary, "");
	assert_int_equal(e->n_ops, 1);
	expect_op(e->ops[0], CERTSYNC__OP__KIND__PUT, CS_TBL_REQUESTS, "r", "csr");
	certsync__log_entry__free_unpacked(e, NULL);

	txn = begin(f->st, false);
	pos = cs_txn_applied(txn);
	assert_int_equal(pos.epoch, 1);
	assert_int_equal(pos.seq, 2);
	assert_int_equal(cs_txn_log_get(txn, 3, &val, &vlen, &err), 1);
	assert_int_equal(cs_txn_log_get(txn, 0, &val, &vlen, &err), 1);
	/* committing a read transaction just ends it */
	assert_int_equal(cs_txn_commit(txn, "ignored", &pos, &err), 0);
	assert_int_equal(pos.seq, 2);
}

/* Group commit: the changes of a batch reach the disk, and every other
 * transaction, together, when it ends; one that failed is not in it. */
static cs_pos applied_now(cs_store *st)
{
	cs_txn *txn = begin(st, false);
	cs_pos pos = cs_txn_applied(txn);

	cs_txn_abort(txn);
	return pos;
}

static void test_batch(void **state)
{
	struct fix *f = *state;
	Certsync__LogEntry *e;
	cs_txn *txn;
	cs_pos pos;
	cs_err err;

	assert_false(cs_store_batching(f->st));
	assert_int_equal(cs_store_batch_begin(f->st, &err), 0);
	assert_true(cs_store_batching(f->st));
	assert_int_equal(cs_store_batch_begin(f->st, &err), -1); /* one at a time */
	txn = begin(f->st, true);
	put(txn, CS_TBL_CERTS, "a", "va");
	assert_int_equal(commit(txn, "first").seq, 1);
	txn = begin(f->st, true);
	put(txn, CS_TBL_CERTS, "x", "vx");
	cs_txn_abort(txn); /* a change that failed */
	txn = begin(f->st, true);
	put(txn, CS_TBL_CERTS, "b", "vb");
	assert_int_equal(commit(txn, "second").seq, 2);
	/* Nothing is visible before the batch ends, not even to this thread. */
	assert_int_equal(applied_now(f->st).seq, 0);
	assert_int_equal(cs_store_batch_end(f->st, &pos, &err), 0);
	assert_false(cs_store_batching(f->st));
	assert_int_equal(pos.seq, 2);
	assert_int_equal(applied_now(f->st).seq, 2);
	e = log_entry(f->st, 2);
	assert_string_equal(e->summary, "second");
	expect_op(e->ops[0], CERTSYNC__OP__KIND__PUT, CS_TBL_CERTS, "b", "vb");
	certsync__log_entry__free_unpacked(e, NULL);
	txn = begin(f->st, false);
	assert_int_equal(cs_txn_count(txn, CS_TBL_CERTS), 2);
	cs_txn_abort(txn);

	/* An empty batch writes nothing; ending none is a no-op. */
	assert_int_equal(cs_store_batch_begin(f->st, &err), 0);
	assert_int_equal(cs_store_batch_end(f->st, &pos, &err), 0);
	assert_int_equal(pos.seq, 0);
	assert_int_equal(cs_store_batch_end(f->st, &pos, &err), 0);
	assert_int_equal(applied_now(f->st).seq, 2);

	/* Closing the store with a batch open drops the batch. */
	assert_int_equal(cs_store_batch_begin(f->st, &err), 0);
	txn = begin(f->st, true);
	put(txn, CS_TBL_CERTS, "c", "vc");
	commit(txn, "lost");
	cs_store_close(f->st);
	assert_false(cs_store_batching(f->st));
	if (cs_store_open(&f->st, f->dir, &err) != 0)
		fail_msg("open: %s", err.msg);
	assert_int_equal(applied_now(f->st).seq, 2);
}

static void test_empty_write(void **state)
{
	struct fix *f = *state;
	uint8_t d0[CS_DIGEST_LEN], d1[CS_DIGEST_LEN];
	const void *val;
	size_t vlen;
	cs_txn *txn;
	cs_pos pos;
	cs_err err;

	txn = begin(f->st, true);
	put(txn, CS_TBL_CERTS, "a", "1");
	commit(txn, "one");
	digest_of(f->st, d0, true);

	txn = begin(f->st, true);
	pos = commit(txn, "nothing");
	assert_int_equal(pos.epoch, 1);
	assert_int_equal(pos.seq, 1);
	txn = begin(f->st, true);
	del(txn, CS_TBL_CERTS, "absent");
	pos = commit(txn, "nothing either");
	assert_int_equal(pos.seq, 1);

	assert_int_equal(applied_of(f->st).seq, 1);
	digest_of(f->st, d1, true);
	assert_memory_equal(d0, d1, CS_DIGEST_LEN);
	txn = begin(f->st, false);
	assert_int_equal(cs_txn_log_get(txn, 2, &val, &vlen, &err), 1);
	cs_txn_abort(txn);
}

static void test_abort(void **state)
{
	struct fix *f = *state;
	uint8_t d0[CS_DIGEST_LEN], d1[CS_DIGEST_LEN], dt[CS_DIGEST_LEN];
	const void *val;
	size_t vlen;
	cs_txn *txn;
	cs_err err;

	txn = begin(f->st, true);
	put(txn, CS_TBL_CERTS, "a", "1");
	commit(txn, "one");
	digest_of(f->st, d0, true);

	txn = begin(f->st, true);
	put(txn, CS_TBL_CERTS, "b", "2");
	put(txn, CS_TBL_CERTS, "a", "changed");
	del(txn, CS_TBL_CERTS, "a");
	cs_txn_digest(txn, dt);
	assert_memory_not_equal(dt, d0, CS_DIGEST_LEN); /* it moved inside */
	cs_txn_abort(txn);

	txn = begin(f->st, false);
	expect(txn, CS_TBL_CERTS, "a", "1");
	expect(txn, CS_TBL_CERTS, "b", NULL);
	assert_int_equal(cs_txn_applied(txn).seq, 1);
	assert_int_equal(cs_txn_log_get(txn, 2, &val, &vlen, &err), 1);
	cs_txn_abort(txn);
	digest_of(f->st, d1, true);
	assert_memory_equal(d0, d1, CS_DIGEST_LEN);
	cs_txn_abort(NULL);
}

/* A small deterministic generator, so a failure replays. */
static uint32_t rnd(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(*s >> 33);
}

static void test_digest_random(void **state)
{
	struct fix *f = *state;
	uint64_t seed = 12345;
	uint8_t d[CS_DIGEST_LEN], dt[CS_DIGEST_LEN], r[CS_DIGEST_LEN];
	uint8_t zero[CS_DIGEST_LEN] = {0};
	char key[16], val[300];
	cs_txn *txn;
	cs_err err;

	for (int round = 0; round < 40; round++) {
		txn = begin(f->st, true);
		for (int i = 0; i < 50; i++) {
			cs_table t = (cs_table)(rnd(&seed) % CS_TBL_NREPL);
			int klen = snprintf(key, sizeof(key), "k%u", rnd(&seed) % 64);
			size_t vlen = rnd(&seed) % sizeof(val);

			for (size_t j = 0; j < vlen; j++)
				val[j] = (char)rnd(&seed);
			if (rnd(&seed) % 3 == 0) {
				assert_int_equal(cs_txn_del(txn, t, key, (size_t)klen, &err), 0);
			} else {
				if (cs_txn_put(txn, t, key, (size_t)klen, val, vlen, &err) != 0)
					fail_msg("put: %s", err.msg);
			}
		}
		/* the running digest matches inside the transaction too */
		cs_txn_digest(txn, dt);
		assert_int_equal(cs_txn_digest_recompute(txn, r, &err), 0);
		assert_memory_equal(dt, r, CS_DIGEST_LEN);
		commit(txn, "random");
		digest_of(f->st, d, true);
		assert_memory_equal(d, dt, CS_DIGEST_LEN);
	}
	assert_memory_not_equal(d, zero, CS_DIGEST_LEN);

	/* emptying the store brings the digest back to that of no pairs */
	txn = begin(f->st, true);
	for (int t = 0; t < CS_TBL_NREPL; t++)
		for (int k = 0; k < 64; k++) {
			int klen = snprintf(key, sizeof(key), "k%d", k);

			assert_int_equal(cs_txn_del(txn, (cs_table)t, key, (size_t)klen, &err), 0);
		}
	commit(txn, "empty");
	digest_of(f->st, d, true);
	assert_memory_equal(d, zero, CS_DIGEST_LEN);
}

static void test_digest_order(void **state)
{
	struct fix *f = *state;
	struct fix g = {0};
	uint8_t d1[CS_DIGEST_LEN], d2[CS_DIGEST_LEN];
	cs_txn *txn;
	cs_err err;

	make_dir(g.dir, sizeof(g.dir));
	if (cs_store_open(&g.st, g.dir, &err) != 0)
		fail_msg("open: %s", err.msg);

	txn = begin(f->st, true);
	put(txn, CS_TBL_CERTS, "a", "1");
	put(txn, CS_TBL_CERTS, "b", "2");
	commit(txn, "x");
	txn = begin(f->st, true);
	put(txn, CS_TBL_CAS, "c", "3");
	put(txn, CS_TBL_KEYS, "d", "4");
	commit(txn, "y");

	/* the same final content reached another way, in another order */
	txn = begin(g.st, true);
	put(txn, CS_TBL_KEYS, "d", "old");
	put(txn, CS_TBL_CAS, "c", "3");
	put(txn, CS_TBL_CERTS, "z", "gone soon");
	commit(txn, "p");
	txn = begin(g.st, true);
	put(txn, CS_TBL_CERTS, "b", "2");
	del(txn, CS_TBL_CERTS, "z");
	put(txn, CS_TBL_KEYS, "d", "4");
	put(txn, CS_TBL_CERTS, "a", "1");
	commit(txn, "q");

	digest_of(f->st, d1, true);
	digest_of(g.st, d2, true);
	assert_memory_equal(d1, d2, CS_DIGEST_LEN);

	/* the same pair in another table is another pair */
	txn = begin(g.st, true);
	del(txn, CS_TBL_KEYS, "d");
	put(txn, CS_TBL_REQUESTS, "d", "4");
	commit(txn, "move");
	digest_of(g.st, d2, true);
	assert_memory_not_equal(d1, d2, CS_DIGEST_LEN);

	/* key and value boundaries are framed: ("ab","c") is not ("a","bc") */
	txn = begin(g.st, true);
	del(txn, CS_TBL_REQUESTS, "d");
	put(txn, CS_TBL_KEYS, "d", "4");
	del(txn, CS_TBL_CERTS, "a");
	put(txn, CS_TBL_CERTS, "a1", "");
	commit(txn, "reframe");
	digest_of(g.st, d2, true);
	assert_memory_not_equal(d1, d2, CS_DIGEST_LEN);

	cs_store_close(g.st);
	rm_dir(g.dir);
}

static void test_reopen(void **state)
{
	struct fix *f = *state;
	uint8_t d0[CS_DIGEST_LEN], d1[CS_DIGEST_LEN];
	Certsync__LogEntry *e;
	cs_txn *txn;
	cs_pos pos;
	cs_err err;

	txn = begin(f->st, true);
	put(txn, CS_TBL_CERTS, "a", "1");
	put(txn, CS_TBL_SETTINGS, "kdf", "params");
	commit(txn, "one");
	txn = begin(f->st, true);
	put(txn, CS_TBL_CAS, "r", "root");
	commit(txn, "two");
	digest_of(f->st, d0, true);

	cs_store_close(f->st);
	f->st = NULL;
	if (cs_store_open(&f->st, f->dir, &err) != 0)
		fail_msg("reopen: %s", err.msg);

	txn = begin(f->st, false);
	expect(txn, CS_TBL_CERTS, "a", "1");
	expect(txn, CS_TBL_SETTINGS, "kdf", "params");
	expect(txn, CS_TBL_CAS, "r", "root");
	pos = cs_txn_applied(txn);
	assert_int_equal(pos.epoch, 1);
	assert_int_equal(pos.seq, 2);
	cs_txn_abort(txn);
	digest_of(f->st, d1, true);
	assert_memory_equal(d0, d1, CS_DIGEST_LEN);
	e = log_entry(f->st, 2);
	assert_string_equal(e->summary, "two");
	certsync__log_entry__free_unpacked(e, NULL);

	/* and goes on from there */
	txn = begin(f->st, true);
	del(txn, CS_TBL_CERTS, "a");
	pos = commit(txn, "three");
	assert_int_equal(pos.seq, 3);
}

/* A value got in a write transaction stays put through later writes that
 * split and reuse pages. */
static void test_get_stable_in_write(void **state)
{
	struct fix *f = *state;
	char key[16], val[200];
	const void *got;
	size_t glen;
	cs_txn *txn;
	cs_err err;

	txn = begin(f->st, true);
	put(txn, CS_TBL_CERTS, "keep", "the original value");
	assert_int_equal(cs_txn_get(txn, CS_TBL_CERTS, "keep", 4, &got, &glen, &err), 0);
	memset(val, 'x', sizeof(val));
	for (int i = 0; i < 2000; i++) {
		int klen = snprintf(key, sizeof(key), "k%05d", i);

		assert_int_equal(
		    cs_txn_put(txn, CS_TBL_CERTS, key, (size_t)klen, val, sizeof(val), &err), 0);
	}
	put(txn, CS_TBL_CERTS, "keep", "a new value, longer than the first one");
	assert_int_equal(glen, strlen("the original value"));
	assert_memory_equal(got, "the original value", glen);
	commit(txn, "many");
}

static void expect_refused(const char *dir, long pid)
{
	cs_store *st2 = NULL;
	char want[32];
	cs_err err;

	assert_int_equal(cs_store_open(&st2, dir, &err), -1);
	assert_null(st2);
	assert_int_equal(err.code, CS_EREFUSED);
	assert_non_null(strstr(err.msg, "in use"));
	assert_non_null(strstr(err.msg, dir));
	snprintf(want, sizeof(want), "(pid %ld)", pid);
	assert_non_null(strstr(err.msg, want));
}

static void test_lock_same_process(void **state)
{
	struct fix *f = *state;
	cs_txn *txn;

	/* flock belongs to the open file description: a new open conflicts
	 * even in the process holding the lock */
	expect_refused(f->dir, (long)getpid());
	/* and the refusal did not disturb the holder */
	txn = begin(f->st, true);
	put(txn, CS_TBL_CERTS, "a", "1");
	assert_int_equal(commit(txn, "still mine").seq, 1);
}

/* This executable, so a second agent can be a fresh process: a forked child
 * would inherit the holder's heap and LMDB state. */
static const char *self;

/* Runs `self --open DIR PID` and returns its exit status: 0 when the open was
 * refused naming PID, or when PID is 0 and the open worked. */
static int run_child(const char *dir, long pid)
{
	char arg[32];
	int status;
	pid_t child;

	snprintf(arg, sizeof(arg), "%ld", pid);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		execl(self, self, "--open", dir, arg, (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static int child_open(const char *dir, long want)
{
	cs_store *st = NULL;
	char pid[32];
	cs_err err;

	if (cs_store_open(&st, dir, &err) == 0) {
		cs_store_close(st);
		return want == 0 ? 0 : 1;
	}
	snprintf(pid, sizeof(pid), "(pid %ld)", want);
	if (want == 0 || err.code != CS_EREFUSED || strstr(err.msg, "in use") == NULL ||
	    strstr(err.msg, pid) == NULL) {
		fprintf(stderr, "child: %s\n", err.msg);
		return 1;
	}
	return 0;
}

static void test_lock_other_process(void **state)
{
	struct fix *f = *state;
	cs_err err;

	assert_int_equal(run_child(f->dir, (long)getpid()), 0);
	/* closing releases the lock */
	cs_store_close(f->st);
	f->st = NULL;
	assert_int_equal(run_child(f->dir, 0), 0);
	if (cs_store_open(&f->st, f->dir, &err) != 0)
		fail_msg("reopen: %s", err.msg);
}

static void test_open_errors(void **state)
{
	char dir[64];
	char path[128];
	cs_store *st = NULL;
	struct stat sb;
	cs_err err;
	FILE *fp;

	(void)state;
	make_dir(dir, sizeof(dir));
	/* a data_dir is created 0700 when missing, but not its parents */
	snprintf(path, sizeof(path), "%s/no/such", dir);
	assert_int_equal(cs_store_open(&st, path, &err), -1);
	assert_int_equal(err.code, CS_EIO);
	assert_non_null(strstr(err.msg, path));
	snprintf(path, sizeof(path), "%s/new", dir);
	if (cs_store_open(&st, path, &err) != 0)
		fail_msg("open: %s", err.msg);
	cs_store_close(st);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
	/* a file where the directory should be */
	snprintf(path, sizeof(path), "%s/file", dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fclose(fp);
	assert_int_equal(cs_store_open(&st, path, &err), -1);
	assert_null(st);
	rm_dir(dir);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table_names),
	    cmocka_unit_test_setup_teardown(test_new_store, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_put_get_del, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_commit_log, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_empty_write, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_digest_random, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_digest_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_get_stable_in_write, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lock_same_process, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lock_other_process, setup, teardown),
	    cmocka_unit_test(test_open_errors),
	};

	self = strchr(argv[0], '/') != NULL ? argv[0] : "/proc/self/exe";
	if (argc == 4 && strcmp(argv[1], "--open") == 0)
		return child_open(argv[2], strtol(argv[3], NULL, 10));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
