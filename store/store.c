/* store.c — the certificate store's transactions on LMDB: reading and
 * writing the replicated tables, the log entry each change appends, the
 * applied position and the store digest, group commit (see store.h).  The
 * environment under data_dir and its lock are env.c. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/log.h"
#include "store_int.h"

static const char *const tbl_names[CS_TBL_NREPL] = {
    [CS_TBL_CERTS] = "certs", [CS_TBL_CAS] = "cas",           [CS_TBL_REQUESTS] = "requests",
    [CS_TBL_KEYS] = "keys",   [CS_TBL_SETTINGS] = "settings", [CS_TBL_ACME] = "acme",
};

/* Stands in for a NULL pointer of length 0, so no NULL reaches memcpy. */
static const uint8_t empty[1];

void st_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

uint64_t st_get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

int st_mdb_fail(cs_err *err, int rc, const char *what, const char *name)
{
	return cs_fail(err, CS_EIO, "%s%s: %s", what, name, mdb_strerror(rc));
}

const char *cs_table_name(cs_table t)
{
	if ((unsigned)t >= CS_TBL_NREPL)
		return "?";
	return tbl_names[t];
}

static int check_table(cs_table t, cs_err *err)
{
	if ((unsigned)t >= CS_TBL_NREPL)
		return cs_fail(err, CS_EINPUT, "no replicated table %d", (int)t);
	return 0;
}

/* ---- transactions ---- */

/* The calling thread's batch (cs_store_batch_begin).  Only the thread that
 * opened it nests its transactions in it, so it lives in thread-local
 * storage: no other thread ever reads it. */
static _Thread_local struct {
	cs_store *st;
	MDB_txn *txn;
	bool changed;
	cs_pos first, last; /* the entries committed into it; seq 0: none */
} batch;

void cs_store_close(cs_store *st)
{
	if (st == NULL)
		return;
	if (batch.st == st) {
		mdb_txn_abort(batch.txn);
		batch.st = NULL;
	}
	if (st->env != NULL)
		mdb_env_close(st->env);
	if (st->lockfd >= 0)
		close(st->lockfd); /* releases the flock */
	free(st);
}

/* 0 and the value copied into out when present with exactly len bytes,
 * 1 when absent, -1 on error or a value of the wrong size. */
static int meta_get(cs_txn *txn, const char *name, uint8_t *out, size_t len, cs_err *err)
{
	MDB_val k = {strlen(name), (void *)name};
	MDB_val v;
	int rc;

	rc = mdb_get(txn->txn, txn->st->meta, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 1;
	if (rc != 0)
		return st_mdb_fail(err, rc, "read meta ", name);
	if (v.mv_size != len)
		return cs_fail(err, CS_EIO,
		               "meta %s holds %zu bytes instead of %zu: the store is corrupt", name,
		               v.mv_size, len);
	memcpy(out, v.mv_data, len);
	return 0;
}

static int load_meta(cs_txn *txn, cs_err *err)
{
	uint8_t b[16];
	int rc;

	rc = meta_get(txn, "applied", b, 16, err);
	if (rc < 0)
		return -1;
	if (rc == 0) {
		txn->applied.epoch = st_get_be64(b);
		txn->applied.seq = st_get_be64(b + 8);
	}
	rc = meta_get(txn, "epoch", b, 8, err);
	if (rc < 0)
		return -1;
	if (rc == 1)
		return cs_fail(err, CS_EIO, "meta epoch is missing: the store is corrupt");
	txn->epoch = st_get_be64(b);
	rc = meta_get(txn, "led", b, 8, err);
	if (rc < 0)
		return -1;
	txn->has_led = rc == 0;
	txn->led = rc == 0 ? st_get_be64(b) : 0;
	rc = meta_get(txn, "digest", txn->digest, CS_DIGEST_LEN, err);
	if (rc < 0)
		return -1;
	return 0;
}

int cs_txn_begin(cs_store *st, bool write, cs_txn **out, cs_err *err)
{
	cs_txn *txn;
	int rc;

	*out = NULL;
	txn = calloc(1, sizeof(*txn));
	if (txn == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	txn->st = st;
	txn->write = write;
	txn->nested = write && batch.st == st;
	rc = mdb_txn_begin(st->env, txn->nested ? batch.txn : NULL, write ? 0 : MDB_RDONLY,
	                   &txn->txn);
	if (rc != 0) {
		free(txn);
		return st_mdb_fail(
		    err, rc, write ? "begin write transaction" : "begin read transaction", "");
	}
	if (load_meta(txn, err) != 0) {
		cs_txn_abort(txn);
		return -1;
	}
	*out = txn;
	return 0;
}

static void txn_free(cs_txn *txn)
{
	struct blob *b;

	for (size_t i = 0; i < txn->nops; i++)
		free(txn->ops[i]);
	free(txn->ops);
	while ((b = txn->blobs) != NULL) {
		txn->blobs = b->next;
		free(b);
	}
	free(txn);
}

/* A durable commit's moment on the machine-wide monotonic clock, for each
 * entry it holds: lets a benchmark measure propagation between nodes
 * exactly, from their logs, without polling them. */
static void log_durable(cs_pos first, cs_pos last)
{
	struct timespec ts;

	if (first.seq == 0)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	for (uint64_t s = first.seq; s <= last.seq; s++)
		cs_debug("store: committed %" PRIu64 ".%" PRIu64 " at %lld.%06ld", last.epoch, s,
		         (long long)ts.tv_sec, ts.tv_nsec / 1000);
}

int cs_store_batch_begin(cs_store *st, cs_err *err)
{
	MDB_txn *txn;
	int rc;

	if (batch.st != NULL)
		return cs_fail(err, CS_EIO, "a batch of changes is open already");
	rc = mdb_txn_begin(st->env, NULL, 0, &txn);
	if (rc != 0)
		return st_mdb_fail(err, rc, "begin write transaction", "");
	batch.st = st;
	batch.txn = txn;
	batch.changed = false;
	batch.first = batch.last = (cs_pos){0, 0};
	return 0;
}

bool cs_store_batching(const cs_store *st)
{
	return st != NULL && batch.st == st;
}

int cs_store_batch_end(cs_store *st, cs_pos *last, cs_err *err)
{
	MDB_txn *txn = batch.txn;
	cs_pos first = batch.first, end = batch.last;
	int rc = 0;

	if (last != NULL)
		*last = (cs_pos){0, 0};
	if (!cs_store_batching(st))
		return 0;
	batch.st = NULL;
	batch.txn = NULL;
	if (!batch.changed) {
		mdb_txn_abort(txn);
		return 0;
	}
	rc = mdb_txn_commit(txn);
	if (rc != 0)
		return st_mdb_fail(err, rc, "write to disk", "");
	log_durable(first, end);
	if (last != NULL)
		*last = end;
	return 0;
}

void cs_txn_abort(cs_txn *txn)
{
	if (txn == NULL)
		return;
	if (txn->txn != NULL)
		mdb_txn_abort(txn->txn);
	txn_free(txn);
}

/* Gives the caller a pointer that lasts until the transaction ends. */
static int hand_out(cs_txn *txn, const MDB_val *v, const void **val, size_t *vlen, cs_err *err)
{
	struct blob *b;

	if (!txn->write) {
		*val = v->mv_data; /* a read snapshot's pages do not change */
		*vlen = v->mv_size;
		return 0;
	}
	b = malloc(sizeof(*b) + v->mv_size);
	if (b == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	if (v->mv_size > 0)
		memcpy(b->data, v->mv_data, v->mv_size);
	b->next = txn->blobs;
	txn->blobs = b;
	*val = b->data;
	*vlen = v->mv_size;
	return 0;
}

/* LMDB refuses empty keys and keys over its limit, so none can be stored. */
static bool key_fits(const cs_txn *txn, size_t klen)
{
	return klen > 0 && klen <= txn->st->maxkey;
}

int cs_txn_get(cs_txn *txn, cs_table t, const void *key, size_t klen, const void **val,
               size_t *vlen, cs_err *err)
{
	MDB_val k = {klen, (void *)key};
	MDB_val v;
	int rc;

	if (check_table(t, err) != 0)
		return -1;
	if (!key_fits(txn, klen))
		return 1;
	rc = mdb_get(txn->txn, txn->st->tbl[t], &k, &v);
	if (rc == MDB_NOTFOUND)
		return 1;
	if (rc != 0)
		return st_mdb_fail(err, rc, "read table ", tbl_names[t]);
	return hand_out(txn, &v, val, vlen, err);
}

/* Keyed BLAKE2b-256 of one pair; lengths are framed so no two different
 * pairs hash the same input. */
int st_check_writable(cs_txn *txn, const char *what, cs_err *err)
{
	if (!txn->write)
		return cs_fail(err, CS_EINPUT, "%s: the transaction is read-only", what);
	if (txn->failed)
		return cs_fail(err, CS_EIO,
		               "%s: an earlier change in this transaction failed; abort it", what);
	return 0;
}

/* Builds an op owning copies of its bytes, with room in txn->ops for it, so
 * that after the LMDB write succeeds recording it cannot fail. */
static Certsync__Op *new_op(cs_txn *txn, Certsync__Op__Kind kind, cs_table t, const void *key,
                            size_t klen, const void *val, size_t vlen, cs_err *err)
{
	static const Certsync__Op init = CERTSYNC__OP__INIT;
	Certsync__Op *op;
	uint8_t *p;

	if (txn->nops == txn->capops) {
		size_t cap = txn->capops ? txn->capops * 2 : 8;
		Certsync__Op **ops = realloc(txn->ops, cap * sizeof(*ops));

		if (ops == NULL) {
			cs_fail(err, CS_EIO, "out of memory");
			return NULL;
		}
		txn->ops = ops;
		txn->capops = cap;
	}
	if (vlen > SIZE_MAX - sizeof(*op) - klen) {
		cs_fail(err, CS_EIO, "out of memory");
		return NULL;
	}
	op = malloc(sizeof(*op) + klen + vlen);
	if (op == NULL) {
		cs_fail(err, CS_EIO, "out of memory");
		return NULL;
	}
	*op = init;
	op->kind = kind;
	op->table = (uint32_t)t;
	p = (uint8_t *)(op + 1);
	memcpy(p, key, klen);
	op->key.data = p;
	op->key.len = klen;
	if (vlen > 0) {
		memcpy(p + klen, val, vlen);
		op->value.data = p + klen;
		op->value.len = vlen;
	}
	return op;
}

int st_put(cs_txn *txn, cs_table t, const void *key, size_t klen, const void *val, size_t vlen,
           bool log, cs_err *err)
{
	MDB_val k = {klen, (void *)key};
	MDB_val v;
	uint8_t hold[CS_DIGEST_LEN];
	uint8_t hnew[CS_DIGEST_LEN];
	bool had = false;
	Certsync__Op *op = NULL;
	int rc;

	if (check_table(t, err) != 0)
		return -1;
	if (!key_fits(txn, klen))
		return cs_fail(err, CS_EINPUT,
		               "put in table %s: a key of %zu bytes (keys hold 1 to %zu)",
		               tbl_names[t], klen, txn->st->maxkey);
	/* The digest frames lengths in 32 bits. */
	if (vlen > UINT32_MAX)
		return cs_fail(err, CS_EINPUT, "put in table %s: a value of %zu bytes is too large",
		               tbl_names[t], vlen);
	if (val == NULL)
		val = empty;
	rc = mdb_get(txn->txn, txn->st->tbl[t], &k, &v);
	if (rc == 0) {
		had = true;
		st_pair_hash(txn->st, t, key, klen, v.mv_data, v.mv_size, hold);
	} else if (rc != MDB_NOTFOUND) {
		return st_mdb_fail(err, rc, "read table ", tbl_names[t]);
	}
	if (log &&
	    (op = new_op(txn, CERTSYNC__OP__KIND__PUT, t, key, klen, val, vlen, err)) == NULL)
		return -1;
	v.mv_size = vlen;
	v.mv_data = (void *)val;
	rc = mdb_put(txn->txn, txn->st->tbl[t], &k, &v, 0);
	if (rc != 0) {
		free(op);
		txn->failed = true;
		return st_mdb_fail(err, rc, "write table ", tbl_names[t]);
	}
	st_pair_hash(txn->st, t, key, klen, val, vlen, hnew);
	if (had)
		st_xor_into(txn->digest, hold);
	st_xor_into(txn->digest, hnew);
	if (op != NULL) {
		txn->ops[txn->nops++] = op;
		txn->opbytes += klen + vlen;
	}
	txn->dirty = true;
	return 0;
}

int st_del(cs_txn *txn, cs_table t, const void *key, size_t klen, bool log, cs_err *err)
{
	MDB_val k = {klen, (void *)key};
	MDB_val v;
	uint8_t hold[CS_DIGEST_LEN];
	Certsync__Op *op = NULL;
	int rc;

	if (check_table(t, err) != 0)
		return -1;
	if (!key_fits(txn, klen))
		return 0;
	rc = mdb_get(txn->txn, txn->st->tbl[t], &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return st_mdb_fail(err, rc, "read table ", tbl_names[t]);
	st_pair_hash(txn->st, t, key, klen, v.mv_data, v.mv_size, hold);
	if (log && (op = new_op(txn, CERTSYNC__OP__KIND__DEL, t, key, klen, NULL, 0, err)) == NULL)
		return -1;
	rc = mdb_del(txn->txn, txn->st->tbl[t], &k, NULL);
	if (rc != 0) {
		free(op);
		txn->failed = true;
		return st_mdb_fail(err, rc, "delete from table ", tbl_names[t]);
	}
	st_xor_into(txn->digest, hold);
	if (op != NULL)
		txn->ops[txn->nops++] = op;
	txn->dirty = true;
	return 0;
}

int cs_txn_put(cs_txn *txn, cs_table t, const void *key, size_t klen, const void *val, size_t vlen,
               cs_err *err)
{
	if (check_table(t, err) != 0 || st_check_writable(txn, "put", err) != 0)
		return -1;
	return st_put(txn, t, key, klen, val, vlen, true, err);
}

int cs_txn_del(cs_txn *txn, cs_table t, const void *key, size_t klen, cs_err *err)
{
	if (check_table(t, err) != 0 || st_check_writable(txn, "delete", err) != 0)
		return -1;
	return st_del(txn, t, key, klen, true, err);
}

int cs_txn_foreach(cs_txn *txn, cs_table t, cs_visit_fn fn, void *ctx, cs_err *err)
{
	return cs_txn_foreach_after(txn, t, NULL, 0, fn, ctx, err);
}

int cs_txn_foreach_after(cs_txn *txn, cs_table t, const void *key, size_t klen, cs_visit_fn fn,
                         void *ctx, cs_err *err)
{
	MDB_cursor *cur;
	MDB_val k = {klen, (void *)key};
	MDB_val v;
	int ret = 0;
	int rc;

	if (check_table(t, err) != 0)
		return -1;
	rc = mdb_cursor_open(txn->txn, txn->st->tbl[t], &cur);
	if (rc != 0)
		return st_mdb_fail(err, rc, "walk table ", tbl_names[t]);
	/* SET_RANGE lands on key itself when it is there: step past it. */
	rc = mdb_cursor_get(cur, &k, &v, key == NULL ? MDB_FIRST : MDB_SET_RANGE);
	if (rc == 0 && key != NULL && k.mv_size == klen && memcmp(k.mv_data, key, klen) == 0)
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		ret = fn(ctx, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
		if (ret != 0)
			break;
	}
	mdb_cursor_close(cur);
	if (ret != 0)
		return ret;
	if (rc != MDB_NOTFOUND)
		return st_mdb_fail(err, rc, "walk table ", tbl_names[t]);
	return 0;
}

size_t cs_txn_count(cs_txn *txn, cs_table t)
{
	MDB_stat s;

	if ((unsigned)t >= CS_TBL_NREPL || mdb_stat(txn->txn, txn->st->tbl[t], &s) != 0)
		return 0;
	return s.ms_entries;
}

int st_meta_put(cs_txn *txn, const char *name, const void *val, size_t len, cs_err *err)
{
	MDB_val k = {strlen(name), (void *)name};
	MDB_val v = {len, (void *)val};
	int rc = mdb_put(txn->txn, txn->st->meta, &k, &v, 0);

	if (rc != 0) {
		txn->failed = true;
		return st_mdb_fail(err, rc, "write meta ", name);
	}
	txn->dirty = true;
	return 0;
}

/* Drops the log entries the retention no longer asks for, oldest first. */
static int prune_log(cs_txn *txn, uint64_t head, cs_err *err)
{
	uint64_t retain = txn->st->retain;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	if (retain == 0 || head <= retain)
		return 0;
	rc = mdb_cursor_open(txn->txn, txn->st->log, &cur);
	if (rc != 0)
		return st_mdb_fail(err, rc, "prune the log", "");
	while ((rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0 &&
	       st_get_be64(k.mv_data) <= head - retain) {
		rc = mdb_cursor_del(cur, 0);
		if (rc != 0)
			break;
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		txn->failed = true;
		return st_mdb_fail(err, rc, "prune the log", "");
	}
	return 0;
}

int st_edge(cs_txn *txn, MDB_dbi dbi, MDB_cursor_op op, MDB_val *k, MDB_val *v, const char *what,
            cs_err *err)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn->txn, dbi, &cur);

	if (rc != 0)
		return st_mdb_fail(err, rc, what, "");
	rc = mdb_cursor_get(cur, k, v, op);
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return st_mdb_fail(err, rc, what, "");
	return rc == MDB_NOTFOUND;
}

int st_appended(cs_txn *txn, cs_pos pos, cs_err *err)
{
	MDB_val k, v;
	uint8_t kb[8], vb[8];
	int rc;

	rc = st_edge(txn, txn->st->epochs, MDB_LAST, &k, &v, "read the epoch history", err);
	if (rc < 0)
		return -1;
	/* The history holds where each epoch that wrote entries begins: the
	 * first entry of a newer epoch opens its record. */
	if (rc == 1 || st_get_be64(k.mv_data) < pos.epoch) {
		st_put_be64(kb, pos.epoch);
		st_put_be64(vb, pos.seq);
		k = (MDB_val){sizeof(kb), kb};
		v = (MDB_val){sizeof(vb), vb};
		rc = mdb_put(txn->txn, txn->st->epochs, &k, &v, 0);
		if (rc != 0) {
			txn->failed = true;
			return st_mdb_fail(err, rc, "write the epoch history", "");
		}
	}
	txn->applied = pos;
	txn->dirty = true;
	return prune_log(txn, pos.seq, err);
}

/* Appends the entry of this transaction's ops at (epoch, applied seq + 1). */
int st_append_local(cs_txn *txn, const char *summary, cs_err *err)
{
	Certsync__LogEntry entry = CERTSYNC__LOG_ENTRY__INIT;
	cs_pos next = {txn->epoch, txn->applied.seq + 1};
	uint8_t kb[8];
	MDB_val k = {sizeof(kb), kb};
	MDB_val v;
	int rc;

	/* Only the node that leads the current epoch stamps entries with it: a
	 * primary that stepped down would otherwise write entries that pass for
	 * the new primary's.  A store never joined to a cluster has no leader
	 * record and writes freely. */
	if (txn->has_led && txn->led != txn->epoch)
		return cs_fail(err, CS_EREFUSED,
		               "this node is not the primary of epoch %" PRIu64
		               " (another node leads it); nothing was written",
		               txn->epoch);
	entry.epoch = next.epoch;
	entry.seq = next.seq;
	entry.time = (int64_t)time(NULL);
	entry.summary = (char *)(summary != NULL ? summary : "");
	entry.n_ops = txn->nops;
	entry.ops = txn->ops;
	st_put_be64(kb, next.seq);
	v.mv_size = certsync__log_entry__get_packed_size(&entry);
	v.mv_data = NULL;
	/* A seq is never reused: an entry already there means the log and the
	 * applied position disagree, and overwriting it would hide that. */
	rc = mdb_put(txn->txn, txn->st->log, &k, &v, MDB_NOOVERWRITE | MDB_RESERVE);
	if (rc == MDB_KEYEXIST)
		return cs_fail(err, CS_EIO,
		               "the log already holds seq %" PRIu64
		               " past the applied position: the store is corrupt",
		               next.seq);
	if (rc != 0)
		return st_mdb_fail(err, rc, "append to the log", "");
	certsync__log_entry__pack(&entry, v.mv_data);
	return st_appended(txn, next, err);
}

int cs_txn_commit(cs_txn *txn, const char *summary, cs_pos *pos, cs_err *err)
{
	uint8_t ab[16];
	cs_pos next;
	int rc;

	if (txn->failed) {
		cs_txn_abort(txn);
		return cs_fail(err, CS_EIO,
		               "commit: an earlier change in this transaction failed; nothing was "
		               "written");
	}
	if (!txn->write || !txn->dirty) {
		if (pos != NULL)
			*pos = txn->applied;
		cs_txn_abort(txn); /* nothing to write, nothing to log */
		return 0;
	}
	if (txn->nops > 0 && st_append_local(txn, summary, err) != 0)
		goto fail;
	next = txn->applied;
	st_put_be64(ab, next.epoch);
	st_put_be64(ab + 8, next.seq);
	if (st_meta_put(txn, "applied", ab, sizeof(ab), err) != 0 ||
	    st_meta_put(txn, "digest", txn->digest, CS_DIGEST_LEN, err) != 0)
		goto fail;
	rc = mdb_txn_commit(txn->txn);
	txn->txn = NULL; /* LMDB frees it whether or not the commit worked */
	if (rc != 0) {
		st_mdb_fail(err, rc, "write to disk", "");
		goto fail;
	}
	if (txn->nested) {
		batch.changed = true;
		if (txn->nops > 0 || txn->split.seq != 0) {
			if (batch.first.seq == 0)
				batch.first = txn->split.seq != 0 ? txn->split : next;
			batch.last = next;
		}
	} else {
		log_durable(txn->split.seq != 0 ? txn->split : next, next);
	}
	txn_free(txn);
	if (pos != NULL)
		*pos = next;
	return 0;
fail:
	cs_txn_abort(txn);
	return cs_err_prefix(err, "commit: ");
}

cs_pos cs_txn_applied(cs_txn *txn)
{
	return txn->applied;
}

int cs_txn_log_get(cs_txn *txn, uint64_t seq, const void **val, size_t *vlen, cs_err *err)
{
	uint8_t kb[8];
	MDB_val k = {sizeof(kb), kb};
	MDB_val v;
	int rc;

	st_put_be64(kb, seq);
	rc = mdb_get(txn->txn, txn->st->log, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 1;
	if (rc != 0)
		return cs_fail(err, CS_EIO, "read log entry %" PRIu64 ": %s", seq,
		               mdb_strerror(rc));
	return hand_out(txn, &v, val, vlen, err);
}
