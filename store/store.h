/* store.h — the node's certificate store: one LMDB environment under data_dir.
 *
 * Replicated tables (certs, cas, requests, keys, settings, acme) hold protobuf
 * records (proto/store.proto).  Local tables hold the log, the applied
 * position and the digest.  Invariants:
 *  - every write transaction that changes a replicated table also appends one
 *    log entry holding exactly those ops and moves the applied position to it;
 *    LMDB commits all of it or none, so a crash leaves a consistent store;
 *  - the digest is the XOR over every replicated (table, key, value) of a keyed
 *    BLAKE2b-256 hash (the key is a public constant, not a secret: every node
 *    must compute the same digest), updated in the same transaction, so two stores at the
 *    same position compare in O(1); cs_txn_digest_recompute checks it;
 *  - one process owns a data_dir at a time (an flock on data_dir/lock);
 *  - entries carry (epoch, seq); only the node that leads the store's epoch
 *    appends entries of its own (see "Replication" below). */
#ifndef CS_STORE_H
#define CS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"

typedef enum cs_table {
	CS_TBL_CERTS,    /* identity certificates: CertRecord */
	CS_TBL_CAS,      /* intermediate and root certificates: CertRecord */
	CS_TBL_REQUESTS, /* certificate signing requests: RequestRecord */
	CS_TBL_KEYS,     /* imported keys no certificate claimed yet: PendingKey */
	CS_TBL_SETTINGS, /* "kdf": KdfParams, "default": DefaultCert */
	CS_TBL_ACME,     /* ACME account, managed certificates, orders, challenges */
	CS_TBL_NREPL     /* number of replicated tables */
} cs_table;

#define CS_DIGEST_LEN 32

typedef struct cs_pos {
	uint64_t epoch;
	uint64_t seq; /* 0 before the first change */
} cs_pos;

/* Positions are equal only with the same epoch and seq: after a fork two
 * logs hold different entries at the same seq. */
static inline bool cs_pos_same(cs_pos a, cs_pos b)
{
	return a.epoch == b.epoch && a.seq == b.seq;
}

typedef struct cs_store cs_store;
typedef struct cs_txn cs_txn;

/* Creates data_dir (0700) when missing, takes its lock and opens the
 * environment.  A second process on the same data_dir gets CS_EREFUSED naming
 * the pid that holds it. */
int cs_store_open(cs_store **out, const char *data_dir, cs_err *err);
/* Sets the LMDB map size (the store's ceiling; the file grows as pages are
 * used) right after cs_store_open; refused below what the store uses. */
int cs_store_set_map_size(cs_store *st, size_t bytes, cs_err *err);
/* The bytes of the map in use, and the map's size. */
void cs_store_usage(cs_store *st, size_t *used, size_t *map);
void cs_store_close(cs_store *st);

/* Name of a replicated table, for messages ("certs", "cas", ...). */
const char *cs_table_name(cs_table t);

/* Read transactions see one snapshot; write transactions are serialized by
 * LMDB.  Every transaction ends with cs_txn_commit or cs_txn_abort. */
int cs_txn_begin(cs_store *st, bool write, cs_txn **out, cs_err *err);

/* 0 and *val, *vlen set (valid until the transaction ends) when found,
 * 1 when absent, -1 on error. */
int cs_txn_get(cs_txn *txn, cs_table t, const void *key, size_t klen, const void **val,
               size_t *vlen, cs_err *err);

/* Record a put or a delete: the table, the digest and the pending log entry
 * change together.  Deleting an absent key is a no-op returning 0.  Keys hold
 * 1 to 511 bytes (CS_EINPUT otherwise, nothing changed).  After any other
 * failure the transaction can only be aborted (commit refuses it). */
int cs_txn_put(cs_txn *txn, cs_table t, const void *key, size_t klen, const void *val, size_t vlen,
               cs_err *err);
int cs_txn_del(cs_txn *txn, cs_table t, const void *key, size_t klen, cs_err *err);

/* Calls fn for every pair of table t in key order; a non-zero return from fn
 * stops the walk and is returned.  key and val are valid during the call only,
 * and fn must not change table t. */
typedef int (*cs_visit_fn)(void *ctx, const void *key, size_t klen, const void *val, size_t vlen);
int cs_txn_foreach(cs_txn *txn, cs_table t, cs_visit_fn fn, void *ctx, cs_err *err);
/* The same from the first key above key: where a listing in pages left off,
 * found by a seek rather than a walk from the start. */
int cs_txn_foreach_after(cs_txn *txn, cs_table t, const void *key, size_t klen, cs_visit_fn fn,
                         void *ctx, cs_err *err);

/* Number of pairs in table t. */
size_t cs_txn_count(cs_txn *txn, cs_table t);

/* Ends a write transaction: when it changed anything, appends the log entry
 * (current epoch, applied seq + 1, summary) and moves the applied position,
 * then commits durably.  *pos (may be NULL) receives the position after it.
 * A read transaction just ends.  The transaction ends even when this fails
 * (then nothing was written): do not abort it afterwards. */
CS_MUST_CHECK int cs_txn_commit(cs_txn *txn, const char *summary, cs_pos *pos, cs_err *err);
void cs_txn_abort(cs_txn *txn);
/* Appends the log entry of the ops so far (as cs_txn_commit would, same
 * summary) and goes on with the same transaction: a change too large for
 * one replication message becomes several entries that still commit, or
 * fail, together on this node.  cs_txn_log_bytes: the keys and values the
 * entry being built holds. */
int cs_txn_log_split(cs_txn *txn, const char *summary, cs_err *err);
size_t cs_txn_log_bytes(const cs_txn *txn);

/* Group commit.  Between cs_store_batch_begin and cs_store_batch_end, the
 * write transactions the calling thread begins nest in one LMDB write
 * transaction: each cs_txn_commit appends its log entry and moves the
 * applied position as usual, but nothing reaches the disk, or any other
 * transaction, until cs_store_batch_end commits them all with one durable
 * commit.  So concurrent changes share one sync instead of paying one each.
 * Meanwhile other threads' write transactions wait (LMDB has one writer),
 * and read transactions, this thread's too, see the store as it was before
 * the batch.  A thread holds one batch at a time.  cs_store_batch_end returns
 * 0 when every change of the batch is on disk, -1 when none is (the write
 * failed); *last (may be NULL) receives the position the batch reached,
 * (0, 0) when it committed nothing. */
int cs_store_batch_begin(cs_store *st, cs_err *err);
CS_MUST_CHECK int cs_store_batch_end(cs_store *st, cs_pos *last, cs_err *err);
/* Whether the calling thread holds a batch of st. */
bool cs_store_batching(const cs_store *st);

/* The applied position ((0, 0) before the first change) and the maintained
 * digest as of this transaction; the digest already counts its own changes. */
cs_pos cs_txn_applied(cs_txn *txn);
void cs_txn_digest(cs_txn *txn, uint8_t out[CS_DIGEST_LEN]);

/* Recomputes the digest from every replicated pair, for `status --check`
 * and for tests: equal to cs_txn_digest unless the store is corrupt. */
int cs_txn_digest_recompute(cs_txn *txn, uint8_t out[CS_DIGEST_LEN], cs_err *err);

/* Reads log entry seq as packed LogEntry bytes: 0 found, 1 absent, -1 error. */
int cs_txn_log_get(cs_txn *txn, uint64_t seq, const void **val, size_t *vlen, cs_err *err);

/* ---- replication ----------------------------------------------------------
 *
 * What replication/ needs from the store.  The epoch is the highest this
 * store has seen; the node leads it when it became primary of that epoch.
 * The epoch history records the first seq of every epoch that wrote entries,
 * so two nodes find where their logs fork.  Received entries are stored
 * byte for byte as the primary packed them, so the logs of all nodes agree. */

typedef struct cs_epoch_start {
	uint64_t epoch;
	uint64_t seq; /* the first entry of the epoch */
} cs_epoch_start;

/* Log entries kept behind the applied position (0 keeps them all).  Older
 * entries are dropped as changes arrive; a follower further behind needs a
 * snapshot. */
void cs_store_set_log_retain(cs_store *st, uint64_t entries);

/* The store's epoch, and the epoch this node leads: 0 and *led set, or 1 when
 * the store never joined a cluster (then it writes freely). */
uint64_t cs_txn_epoch(cs_txn *txn);
int cs_txn_led(cs_txn *txn, uint64_t *led);

/* Raises the store's epoch to epoch (CS_EINPUT when that would lower it).
 * With lead this node leads it; without, a store that never joined a cluster
 * is marked as following, and a node that led an older epoch stops writing:
 * cs_txn_commit refuses its changes (CS_EREFUSED) from then on. */
int cs_txn_set_epoch(cs_txn *txn, uint64_t epoch, bool lead, cs_err *err);

/* The epoch history, ascending; *out is malloc'd (NULL when *n is 0). */
int cs_txn_epochs(cs_txn *txn, cs_epoch_start **out, size_t *n, cs_err *err);

/* *seq receives the first seq the log still holds; 0 when it is empty. */
int cs_txn_log_first(cs_txn *txn, uint64_t *seq, cs_err *err);

/* Applies one entry the primary sent (packed LogEntry): it must follow the
 * applied position and carry an epoch between the applied one and the
 * store's.  Its ops, its log record and the applied position change together;
 * several entries may share one transaction.  A malformed or out-of-order
 * entry fails with CS_EINPUT and changes nothing. */
int cs_txn_apply(cs_txn *txn, const void *entry, size_t len, cs_err *err);

/* Loading a snapshot, all in one write transaction: cs_txn_reset moves the
 * log entries after keep into the diverged table under origin (they forked
 * from the primary's log), then empties the log and every replicated table;
 * cs_txn_load puts the primary's pairs; cs_txn_set_position sets the applied
 * position and replaces the epoch history with the primary's. */
int cs_txn_reset(cs_txn *txn, uint64_t keep, const char *origin, size_t *moved, cs_err *err);
int cs_txn_load(cs_txn *txn, cs_table t, const void *key, size_t klen, const void *val, size_t vlen,
                cs_err *err);
int cs_txn_set_position(cs_txn *txn, cs_pos pos, const cs_epoch_start *hist, size_t n, cs_err *err);

/* The diverged table (local): entries an old primary wrote after its log
 * forked, kept for the operator.  An entry's id is the BLAKE2b-256 of its
 * bytes, so the same entry reported twice is kept once. */
typedef struct cs_diverged {
	uint8_t id[CS_DIGEST_LEN];
	const char *origin;   /* the node whose log held it */
	int64_t found;        /* unix seconds when it was moved aside */
	uint64_t applied_seq; /* the change that re-applied it; 0 while not */
	const void *entry;    /* packed LogEntry */
	size_t entry_len;
} cs_diverged;

/* 0 added, 1 already there, -1 error (CS_EINPUT for an entry that does not
 * decode). */
int cs_txn_diverged_add(cs_txn *txn, const char *origin, const void *entry, size_t len,
                        cs_err *err);
/* Calls fn for each, in id order; a non-zero return stops the walk and is
 * returned.  d and what it points to are valid during the call only. */
typedef int (*cs_diverged_fn)(void *ctx, const cs_diverged *d);
int cs_txn_diverged_foreach(cs_txn *txn, cs_diverged_fn fn, void *ctx, cs_err *err);
/* Re-applies the ops of the entry whose id starts with ref (8 to 64 hex
 * digits) as this transaction's change and records the seq it will commit
 * at.  CS_ENOTFOUND, CS_EINPUT (ambiguous or bad ref) or CS_EEXIST (already
 * re-applied); id receives the full id. */
int cs_txn_diverged_apply(cs_txn *txn, const char *ref, uint8_t id[CS_DIGEST_LEN], cs_err *err);
/* Deletes the entry whose id starts with ref (as cs_txn_diverged_apply
 * finds it); id receives the full id.  Local: no log entry. */
int cs_txn_diverged_delete(cs_txn *txn, const char *ref, uint8_t id[CS_DIGEST_LEN], cs_err *err);
/* Deletes every entry already re-applied, or every entry when all;
 * *removed receives how many. */
int cs_txn_diverged_prune(cs_txn *txn, bool all, size_t *removed, cs_err *err);
/* How many entries the diverged table holds and the bytes of its pages. */
int cs_txn_diverged_usage(cs_txn *txn, size_t *count, size_t *bytes, cs_err *err);

/* ---- backup and restore (backup.c) ---------------------------------------- */

/* Writes a compacted copy of the environment (an LMDB data file) to fd,
 * from one read transaction: consistent while changes go on.  It takes as
 * long as the store is large: run it off the event loop. */
int cs_store_copy(cs_store *st, int fd, cs_err *err);
/* Marks the store as following: it leads no epoch (not even the one it
 * holds) until promoted, whatever the node's configured role. */
int cs_txn_follow(cs_txn *txn, cs_err *err);

#endif
