/* log.c — the store's side of replication: epochs and their history,
 * applying the primary's entries, loading snapshots, log retention and the
 * diverged table (see store.h, "replication").  Every function here works in
 * the caller's transaction, so a follower's apply and position move commit
 * together. */
#include "store.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../common/hex.h"
#include "store_int.h"

void cs_store_set_log_retain(cs_store *st, uint64_t entries)
{
	st->retain = entries;
}

uint64_t cs_txn_epoch(cs_txn *txn)
{
	return txn->epoch;
}

int cs_txn_led(cs_txn *txn, uint64_t *led)
{
	*led = txn->led;
	return txn->has_led ? 0 : 1;
}

int cs_txn_set_epoch(cs_txn *txn, uint64_t epoch, bool lead, cs_err *err)
{
	uint8_t b[8];

	if (st_check_writable(txn, "set the epoch", err) != 0)
		return -1;
	/* Fencing rests on this: an epoch once seen is never given up. */
	if (epoch < txn->epoch)
		return cs_fail(err, CS_EINPUT,
		               "epoch %" PRIu64 " is below the store's epoch %" PRIu64, epoch,
		               txn->epoch);
	if (epoch != txn->epoch) {
		st_put_be64(b, epoch);
		if (st_meta_put(txn, "epoch", b, sizeof(b), err) != 0)
			return -1;
		txn->epoch = epoch;
	}
	if (lead || !txn->has_led) {
		txn->led = lead ? epoch : 0;
		txn->has_led = true;
		st_put_be64(b, txn->led);
		if (st_meta_put(txn, "led", b, sizeof(b), err) != 0)
			return -1;
	}
	return 0;
}

int cs_txn_epochs(cs_txn *txn, cs_epoch_start **out, size_t *n, cs_err *err)
{
	cs_epoch_start *hist = NULL;
	size_t cap = 0, len = 0;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	*out = NULL;
	*n = 0;
	rc = mdb_cursor_open(txn->txn, txn->st->epochs, &cur);
	if (rc != 0)
		return st_mdb_fail(err, rc, "read the epoch history", "");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size != 8 || v.mv_size != 8) {
			mdb_cursor_close(cur);
			free(hist);
			return cs_fail(err, CS_EIO, "the epoch history is corrupt");
		}
		if (len == cap) {
			cs_epoch_start *more =
			    realloc(hist, (cap = cap ? 2 * cap : 8) * sizeof(*hist));

			if (more == NULL) {
				mdb_cursor_close(cur);
				free(hist);
				return cs_fail(err, CS_EIO, "out of memory");
			}
			hist = more;
		}
		hist[len].epoch = st_get_be64(k.mv_data);
		hist[len++].seq = st_get_be64(v.mv_data);
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND) {
		free(hist);
		return st_mdb_fail(err, rc, "read the epoch history", "");
	}
	*out = hist;
	*n = len;
	return 0;
}

int cs_txn_log_first(cs_txn *txn, uint64_t *seq, cs_err *err)
{
	MDB_val k, v;
	int rc;

	*seq = 0;
	if ((rc = st_edge(txn, txn->st->log, MDB_FIRST, &k, &v, "read the log", err)) < 0)
		return -1;
	if (rc == 0 && k.mv_size != 8)
		return cs_fail(err, CS_EIO, "the log is corrupt");
	if (rc == 0)
		*seq = st_get_be64(k.mv_data);
	return 0;
}

/* ---- applying entries ---- */

/* Everything that would make the ops fail half-way is checked before the
 * first write, so a refused entry leaves the transaction usable. */
static int check_ops(cs_txn *txn, const Certsync__LogEntry *e, cs_err *err)
{
	for (size_t i = 0; i < e->n_ops; i++) {
		const Certsync__Op *op = e->ops[i];

		if ((op->kind != CERTSYNC__OP__KIND__PUT && op->kind != CERTSYNC__OP__KIND__DEL) ||
		    op->table >= CS_TBL_NREPL || op->key.len == 0 ||
		    op->key.len > txn->st->maxkey || op->value.len > UINT32_MAX)
			return cs_fail(err, CS_EINPUT, "entry %" PRIu64 ": op %zu is malformed",
			               e->seq, i);
	}
	return 0;
}

static int check_entry(cs_txn *txn, const Certsync__LogEntry *e, cs_err *err)
{
	if (e->seq != txn->applied.seq + 1)
		return cs_fail(err, CS_EINPUT, "entry %" PRIu64 " does not follow seq %" PRIu64,
		               e->seq, txn->applied.seq);
	if (e->epoch < txn->applied.epoch || e->epoch > txn->epoch)
		return cs_fail(err, CS_EINPUT,
		               "entry %" PRIu64 " has epoch %" PRIu64 ", outside %" PRIu64
		               "..%" PRIu64,
		               e->seq, e->epoch, txn->applied.epoch, txn->epoch);
	return check_ops(txn, e, err);
}

/* Runs the ops of e; logged, they form this transaction's own change. */
static int run_ops(cs_txn *txn, const Certsync__LogEntry *e, bool log, cs_err *err)
{
	for (size_t i = 0; i < e->n_ops; i++) {
		const Certsync__Op *op = e->ops[i];
		int rc =
		    op->kind == CERTSYNC__OP__KIND__PUT
		        ? st_put(txn, (cs_table)op->table, op->key.data, op->key.len,
		                 op->value.data, op->value.len, log, err)
		        : st_del(txn, (cs_table)op->table, op->key.data, op->key.len, log, err);

		if (rc != 0) {
			txn->failed = true; /* earlier ops are in */
			return -1;
		}
	}
	return 0;
}

int cs_txn_apply(cs_txn *txn, const void *entry, size_t len, cs_err *err)
{
	Certsync__LogEntry *e;
	uint8_t kb[8];
	MDB_val k = {sizeof(kb), kb};
	MDB_val v = {len, (void *)entry};
	int rc = -1;

	if (st_check_writable(txn, "apply an entry", err) != 0)
		return -1;
	if (txn->nops > 0)
		return cs_fail(
		    err, CS_EINPUT,
		    "apply an entry: the transaction already holds a change of this node");
	e = certsync__log_entry__unpack(NULL, len, entry);
	if (e == NULL)
		return cs_fail(err, CS_EINPUT, "apply an entry: it does not decode");
	if (check_entry(txn, e, err) != 0 || run_ops(txn, e, false, err) != 0)
		goto out;
	st_put_be64(kb, e->seq);
	rc = mdb_put(txn->txn, txn->st->log, &k, &v, MDB_NOOVERWRITE);
	if (rc != 0) {
		txn->failed = true;
		rc = rc == MDB_KEYEXIST
		         ? cs_fail(err, CS_EIO,
		                   "the log already holds seq %" PRIu64
		                   " past the applied position: the store is corrupt",
		                   e->seq)
		         : st_mdb_fail(err, rc, "append to the log", "");
		goto out;
	}
	rc = st_appended(txn, (cs_pos){e->epoch, e->seq}, err);
out:
	certsync__log_entry__free_unpacked(e, NULL);
	return rc;
}

/* ---- snapshots ---- */

static int drop(cs_txn *txn, MDB_dbi dbi, const char *name, cs_err *err)
{
	int rc = mdb_drop(txn->txn, dbi, 0);

	if (rc != 0) {
		txn->failed = true;
		return st_mdb_fail(err, rc, "empty table ", name);
	}
	return 0;
}

/* Moves the log entries after keep into the diverged table. */
static int move_tail(cs_txn *txn, uint64_t keep, const char *origin, size_t *moved, cs_err *err)
{
	uint8_t kb[8];
	MDB_cursor *cur;
	MDB_val k = {sizeof(kb), kb};
	MDB_val v;
	void *copy;
	int rc;

	st_put_be64(kb, keep + 1);
	rc = mdb_cursor_open(txn->txn, txn->st->log, &cur);
	if (rc != 0)
		return st_mdb_fail(err, rc, "read the log", "");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		/* LMDB values last only until the next write of the transaction. */
		copy = malloc(v.mv_size ? v.mv_size : 1);
		if (copy == NULL) {
			mdb_cursor_close(cur);
			return cs_fail(err, CS_EIO, "out of memory");
		}
		memcpy(copy, v.mv_data, v.mv_size);
		rc = cs_txn_diverged_add(txn, origin, copy, v.mv_size, err);
		free(copy);
		if (rc < 0) {
			mdb_cursor_close(cur);
			return cs_err_prefix(err, "move a diverged entry aside: ");
		}
		(*moved)++;
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return st_mdb_fail(err, rc, "read the log", "");
	return 0;
}

int cs_txn_reset(cs_txn *txn, uint64_t keep, const char *origin, size_t *moved, cs_err *err)
{
	*moved = 0;
	if (st_check_writable(txn, "load a snapshot", err) != 0)
		return -1;
	if (txn->nops > 0)
		return cs_fail(
		    err, CS_EINPUT,
		    "load a snapshot: the transaction already holds a change of this node");
	if (move_tail(txn, keep, origin, moved, err) != 0) {
		txn->failed = true;
		return -1;
	}
	for (int t = 0; t < CS_TBL_NREPL; t++)
		if (drop(txn, txn->st->tbl[t], cs_table_name((cs_table)t), err) != 0)
			return -1;
	if (drop(txn, txn->st->log, "log", err) != 0 ||
	    drop(txn, txn->st->epochs, "epochs", err) != 0)
		return -1;
	memset(txn->digest, 0, CS_DIGEST_LEN);
	txn->applied = (cs_pos){0, 0};
	txn->dirty = true;
	return 0;
}

int cs_txn_load(cs_txn *txn, cs_table t, const void *key, size_t klen, const void *val, size_t vlen,
                cs_err *err)
{
	if (st_check_writable(txn, "load a snapshot", err) != 0)
		return -1;
	return st_put(txn, t, key, klen, val, vlen, false, err);
}

int cs_txn_set_position(cs_txn *txn, cs_pos pos, const cs_epoch_start *hist, size_t n, cs_err *err)
{
	uint8_t kb[8], vb[8];
	MDB_val k = {sizeof(kb), kb};
	MDB_val v = {sizeof(vb), vb};
	int rc;

	if (st_check_writable(txn, "set the applied position", err) != 0)
		return -1;
	if (pos.epoch > txn->epoch)
		return cs_fail(err, CS_EINPUT,
		               "position epoch %" PRIu64 " is above the store's epoch %" PRIu64,
		               pos.epoch, txn->epoch);
	for (size_t i = 0; i < n; i++)
		if (hist[i].epoch > pos.epoch || hist[i].seq > pos.seq || hist[i].seq == 0 ||
		    (i > 0 &&
		     (hist[i].epoch <= hist[i - 1].epoch || hist[i].seq < hist[i - 1].seq)))
			return cs_fail(err, CS_EINPUT,
			               "the epoch history does not fit position %" PRIu64
			               ".%" PRIu64,
			               pos.epoch, pos.seq);
	if (drop(txn, txn->st->epochs, "epochs", err) != 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		st_put_be64(kb, hist[i].epoch);
		st_put_be64(vb, hist[i].seq);
		rc = mdb_put(txn->txn, txn->st->epochs, &k, &v, 0);
		if (rc != 0) {
			txn->failed = true;
			return st_mdb_fail(err, rc, "write the epoch history", "");
		}
	}
	txn->applied = pos;
	txn->dirty = true;
	return 0;
}

/* ---- the diverged table ---- */

int cs_txn_diverged_add(cs_txn *txn, const char *origin, const void *entry, size_t len, cs_err *err)
{
	Certsync__DivergedRecord rec = CERTSYNC__DIVERGED_RECORD__INIT;
	Certsync__LogEntry *e;
	uint8_t id[CS_DIGEST_LEN];
	MDB_val k = {sizeof(id), id};
	MDB_val v;
	int rc;

	if (st_check_writable(txn, "keep a diverged entry", err) != 0)
		return -1;
	e = certsync__log_entry__unpack(NULL, len, entry);
	if (e == NULL)
		return cs_fail(err, CS_EINPUT, "a diverged entry does not decode");
	certsync__log_entry__free_unpacked(e, NULL);
	crypto_generichash(id, sizeof(id), entry, len, NULL, 0);
	rc = mdb_get(txn->txn, txn->st->diverged, &k, &v);
	if (rc == 0)
		return 1;
	if (rc != MDB_NOTFOUND)
		return st_mdb_fail(err, rc, "read table ", "diverged");
	rec.entry = (ProtobufCBinaryData){len, (uint8_t *)entry};
	rec.origin = (char *)origin;
	rec.found = (int64_t)time(NULL);
	v.mv_size = certsync__diverged_record__get_packed_size(&rec);
	v.mv_data = NULL;
	rc = mdb_put(txn->txn, txn->st->diverged, &k, &v, MDB_RESERVE);
	if (rc != 0) {
		txn->failed = true;
		return st_mdb_fail(err, rc, "write table ", "diverged");
	}
	certsync__diverged_record__pack(&rec, v.mv_data);
	txn->dirty = true;
	return 0;
}

/* Decodes one pair of the diverged table into d; *rec must be freed. */
static int diverged_view(const MDB_val *k, const MDB_val *v, Certsync__DivergedRecord **rec,
                         cs_diverged *d, cs_err *err)
{
	*rec = k->mv_size == CS_DIGEST_LEN
	           ? certsync__diverged_record__unpack(NULL, v->mv_size, v->mv_data)
	           : NULL;
	if (*rec == NULL)
		return cs_fail(err, CS_EIO,
		               "a record of table diverged does not decode: the store "
		               "is corrupt");
	memcpy(d->id, k->mv_data, CS_DIGEST_LEN);
	d->origin = (*rec)->origin;
	d->found = (*rec)->found;
	d->applied_seq = (*rec)->applied_seq;
	d->entry = (*rec)->entry.data;
	d->entry_len = (*rec)->entry.len;
	return 0;
}

int cs_txn_diverged_foreach(cs_txn *txn, cs_diverged_fn fn, void *ctx, cs_err *err)
{
	Certsync__DivergedRecord *rec;
	MDB_cursor *cur;
	MDB_val k, v;
	cs_diverged d;
	int ret = 0;
	int rc;

	rc = mdb_cursor_open(txn->txn, txn->st->diverged, &cur);
	if (rc != 0)
		return st_mdb_fail(err, rc, "walk table ", "diverged");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && ret == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (diverged_view(&k, &v, &rec, &d, err) != 0) {
			mdb_cursor_close(cur);
			return -1;
		}
		ret = fn(ctx, &d);
		certsync__diverged_record__free_unpacked(rec, NULL);
	}
	mdb_cursor_close(cur);
	if (ret != 0)
		return ret;
	if (rc != MDB_NOTFOUND)
		return st_mdb_fail(err, rc, "walk table ", "diverged");
	return 0;
}

struct find {
	const char *ref;
	size_t reflen;
	int found;
	uint8_t id[CS_DIGEST_LEN];
};

static int match(void *ctx, const cs_diverged *d)
{
	struct find *f = ctx;
	char hex[2 * CS_DIGEST_LEN + 1];

	cs_hex(d->id, CS_DIGEST_LEN, hex);
	if (strncasecmp(hex, f->ref, f->reflen) == 0) {
		memcpy(f->id, d->id, CS_DIGEST_LEN);
		f->found++;
	}
	return 0;
}

/* The one entry whose id starts with ref, into id. */
static int find_ref(cs_txn *txn, const char *ref, uint8_t id[CS_DIGEST_LEN], cs_err *err)
{
	struct find f = {.ref = ref, .reflen = strlen(ref)};

	if (f.reflen < 8 || f.reflen > 2 * CS_DIGEST_LEN ||
	    strspn(ref, "0123456789abcdefABCDEF") != f.reflen)
		return cs_fail(err, CS_EINPUT,
		               "diverged entry '%s': give 8 to 64 hex digits of its id", ref);
	if (cs_txn_diverged_foreach(txn, match, &f, err) != 0)
		return -1;
	if (f.found != 1)
		return cs_fail(err, f.found ? CS_EINPUT : CS_ENOTFOUND,
		               f.found ? "diverged entry '%s' is ambiguous; give more digits"
		                       : "no diverged entry '%s'; see `certsync diverged list`",
		               ref);
	memcpy(id, f.id, CS_DIGEST_LEN);
	return 0;
}

int cs_txn_diverged_delete(cs_txn *txn, const char *ref, uint8_t id[CS_DIGEST_LEN], cs_err *err)
{
	MDB_val k = {CS_DIGEST_LEN, id};
	int rc;

	if (st_check_writable(txn, "delete a diverged entry", err) != 0 ||
	    find_ref(txn, ref, id, err) != 0)
		return -1;
	rc = mdb_del(txn->txn, txn->st->diverged, &k, NULL);
	if (rc != 0) {
		txn->failed = true;
		return st_mdb_fail(err, rc, "delete from table ", "diverged");
	}
	txn->dirty = true;
	return 0;
}

struct prune {
	bool all;
	uint8_t (*ids)[CS_DIGEST_LEN];
	size_t n, cap;
};

/* Collects the ids to delete: deleting under the walk's cursor would move it. */
static int prunable(void *ctx, const cs_diverged *d)
{
	struct prune *p = ctx;

	if (!p->all && d->applied_seq == 0)
		return 0;
	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 64;
		void *ids = realloc(p->ids, cap * sizeof(*p->ids));

		if (ids == NULL)
			return 1;
		p->ids = ids;
		p->cap = cap;
	}
	memcpy(p->ids[p->n++], d->id, CS_DIGEST_LEN);
	return 0;
}

int cs_txn_diverged_prune(cs_txn *txn, bool all, size_t *removed, cs_err *err)
{
	struct prune p = {.all = all};
	int rc = 0;

	*removed = 0;
	if (st_check_writable(txn, "prune the diverged table", err) != 0)
		return -1;
	rc = cs_txn_diverged_foreach(txn, prunable, &p, err);
	if (rc > 0)
		rc = cs_fail(err, CS_EIO, "out of memory");
	for (size_t i = 0; rc == 0 && i < p.n; i++) {
		MDB_val k = {CS_DIGEST_LEN, p.ids[i]};

		if ((rc = mdb_del(txn->txn, txn->st->diverged, &k, NULL)) != 0) {
			txn->failed = true;
			rc = st_mdb_fail(err, rc, "delete from table ", "diverged");
		}
	}
	if (rc == 0 && p.n > 0)
		txn->dirty = true;
	*removed = rc == 0 ? p.n : 0;
	free(p.ids);
	return rc;
}

int cs_txn_diverged_usage(cs_txn *txn, size_t *count, size_t *bytes, cs_err *err)
{
	MDB_stat ms;
	int rc = mdb_stat(txn->txn, txn->st->diverged, &ms);

	if (rc != 0)
		return st_mdb_fail(err, rc, "read the size of table ", "diverged");
	*count = ms.ms_entries;
	*bytes = (ms.ms_branch_pages + ms.ms_leaf_pages + ms.ms_overflow_pages) * ms.ms_psize;
	return 0;
}

int cs_txn_diverged_apply(cs_txn *txn, const char *ref, uint8_t id[CS_DIGEST_LEN], cs_err *err)
{
	struct find f = {.ref = ref};
	Certsync__DivergedRecord *rec;
	Certsync__LogEntry *e;
	MDB_val k = {CS_DIGEST_LEN, f.id};
	MDB_val v;
	cs_diverged d;
	int rc;

	if (st_check_writable(txn, "re-apply a diverged entry", err) != 0 ||
	    find_ref(txn, ref, f.id, err) != 0)
		return -1;
	rc = mdb_get(txn->txn, txn->st->diverged, &k, &v);
	if (rc != 0)
		return st_mdb_fail(err, rc, "read table ", "diverged");
	if (diverged_view(&k, &v, &rec, &d, err) != 0)
		return -1;
	rc = -1;
	if (rec->applied_seq != 0) {
		cs_fail(err, CS_EEXIST,
		        "diverged entry %.8s was already re-applied at seq %" PRIu64, ref,
		        rec->applied_seq);
		goto out;
	}
	e = certsync__log_entry__unpack(NULL, rec->entry.len, rec->entry.data);
	if (e == NULL) {
		cs_fail(err, CS_EIO, "diverged entry %.8s does not decode: the store is corrupt",
		        ref);
		goto out;
	}
	rc = check_ops(txn, e, err);
	if (rc == 0)
		rc = run_ops(txn, e, true, err);
	certsync__log_entry__free_unpacked(e, NULL);
	if (rc != 0)
		goto out;
	/* Write transactions are serialized, so the change commits at the
	 * next seq; ops that changed nothing leave the store where it is. */
	rec->applied_seq = txn->applied.seq + (txn->nops > 0);
	v.mv_size = certsync__diverged_record__get_packed_size(rec);
	v.mv_data = NULL;
	rc = mdb_put(txn->txn, txn->st->diverged, &k, &v, MDB_RESERVE);
	if (rc != 0) {
		txn->failed = true;
		rc = st_mdb_fail(err, rc, "write table ", "diverged");
		goto out;
	}
	certsync__diverged_record__pack(rec, v.mv_data);
	memcpy(id, f.id, CS_DIGEST_LEN);
	txn->dirty = true;
out:
	certsync__diverged_record__free_unpacked(rec, NULL);
	return rc;
}

/* ---- one change in several entries ---- */

int cs_txn_log_split(cs_txn *txn, const char *summary, cs_err *err)
{
	if (txn->failed || txn->nops == 0)
		return txn->failed ? cs_fail(err, CS_EIO, "an earlier change failed") : 0;
	if (st_append_local(txn, summary, err) != 0) {
		txn->failed = true;
		return -1;
	}
	if (txn->split.seq == 0)
		txn->split = txn->applied;
	for (size_t i = 0; i < txn->nops; i++)
		free(txn->ops[i]);
	txn->nops = txn->opbytes = 0;
	return 0;
}

size_t cs_txn_log_bytes(const cs_txn *txn)
{
	return txn->opbytes;
}
