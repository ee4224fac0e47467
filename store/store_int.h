/* store_int.h — what store.c and log.c share and nothing else may see: the
 * environment, the transaction and the primitives that keep the digest, the
 * log and the applied position in step (see store.h for the invariants). */
#ifndef CS_STORE_INT_H
#define CS_STORE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <lmdb.h>
#include <sodium.h>

#include "proto/store.pb-c.h"
#include "store.h"

struct cs_store {
	MDB_env *env;
	MDB_dbi tbl[CS_TBL_NREPL];
	MDB_dbi log;      /* seq (8 bytes big-endian) -> packed LogEntry */
	MDB_dbi meta;     /* "applied", "digest", "epoch", "led" */
	MDB_dbi epochs;   /* epoch (8 bytes big-endian) -> its first seq (8 bytes) */
	MDB_dbi diverged; /* BLAKE2b of the entry -> DivergedRecord */
	int lockfd;
	size_t maxkey;
	_Atomic uint64_t retain; /* log entries kept behind the head; 0 keeps all */
	uint8_t dkey[crypto_generichash_KEYBYTES]; /* keys the pair hashes */
};

/* A copy of a value cs_txn_get handed out in a write transaction: LMDB may
 * reuse a dirty page on the next put, but callers were promised the pointer
 * lasts until the transaction ends. */
struct blob {
	struct blob *next;
	unsigned char data[];
};

struct cs_txn {
	cs_store *st;
	MDB_txn *txn;
	bool write;
	bool failed; /* a change failed half-way: only abort is left */
	bool dirty;  /* something was written: commit must write the meta too */
	bool has_led;
	bool nested; /* inside the thread's batch (cs_store_batch_begin) */
	cs_pos applied;
	uint64_t epoch;
	uint64_t led; /* the epoch this node leads; meaningful when has_led */
	uint8_t digest[CS_DIGEST_LEN];
	Certsync__Op **ops; /* the log entry being built; each op owns its bytes */
	size_t nops;
	size_t capops;
	size_t opbytes; /* keys and values the ops hold (cs_txn_log_bytes) */
	cs_pos split;   /* the first entry cs_txn_log_split appended; seq 0: none */
	struct blob *blobs;
};

/* Appends the log entry of txn's ops at (epoch, applied seq + 1) and moves
 * the applied position to it (store.c). */
int st_append_local(cs_txn *txn, const char *summary, cs_err *err);

void st_put_be64(uint8_t *p, uint64_t v);
uint64_t st_get_be64(const uint8_t *p);

/* Fills err from an LMDB return code; returns -1. */
int st_mdb_fail(cs_err *err, int rc, const char *what, const char *name);
/* The first or last (op MDB_FIRST or MDB_LAST) pair of dbi into *k, *v:
 * 0, 1 when the table is empty, or -1 with err set. */
int st_edge(cs_txn *txn, MDB_dbi dbi, MDB_cursor_op op, MDB_val *k, MDB_val *v, const char *what,
            cs_err *err);

/* Refuses a read-only transaction and one where a change already failed. */
int st_check_writable(cs_txn *txn, const char *what, cs_err *err);

/* Put and delete in a replicated table with the digest kept up to date.
 * With log, the op joins the entry cs_txn_commit appends; without, the
 * caller records the change itself (a received entry, a snapshot).  Input
 * that cannot be stored fails with CS_EINPUT and changes nothing; any other
 * failure marks the transaction failed. */
int st_put(cs_txn *txn, cs_table t, const void *key, size_t klen, const void *val, size_t vlen,
           bool log, cs_err *err);
int st_del(cs_txn *txn, cs_table t, const void *key, size_t klen, bool log, cs_err *err);

/* Records that the entry at pos is now in the log: the epoch history gains
 * pos.epoch when it is new, the applied position moves to pos and the log
 * is pruned to the retention. */
int st_appended(cs_txn *txn, cs_pos pos, cs_err *err);

/* Writes meta key name; marks the transaction dirty. */
int st_meta_put(cs_txn *txn, const char *name, const void *val, size_t len, cs_err *err);

/* ---- digest.c ---- */
/* Sets st->dkey, the digest's hash key. */
void st_digest_key(cs_store *st);
/* The keyed hash of one replicated pair of table t. */
void st_pair_hash(const cs_store *st, cs_table t, const void *key, size_t klen, const void *val,
                  size_t vlen, uint8_t out[CS_DIGEST_LEN]);
/* acc ^= h: adds a pair to the digest, or takes it away. */
void st_xor_into(uint8_t acc[CS_DIGEST_LEN], const uint8_t h[CS_DIGEST_LEN]);

#endif
