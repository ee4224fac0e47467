/* ops.h — the operations behind the control socket, one function per command,
 * shared by node.c (which dispatches) and the ops_*.c files (which do them). */
#ifndef CS_OPS_H
#define CS_OPS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include <jansson.h>

#include "../replication/repl.h"
#include "../seal/seal.h"
#include "../store/store.h"
#include "../tls/tls.h"
#include "config.h"
#include "control.h"

struct cs_node {
	cs_config *cfg; /* its peers follow the cluster's membership (members.c) */
	/* what threads read of the peers and [acme] (live.h); cfg is the loop's */
	struct cs_live *live;
	cs_store *store;
	cs_key *key; /* NULL on a non-primary until it has the cluster settings */
	time_t started;
	tls_server *tls;  /* NULL without tls_listen */
	repl *repl;       /* NULL without repl_listen */
	mon_monitor *mon; /* conditions and alerts (ops_monitor.c) */
	cs_pos mon_pos;   /* committed when the monitor last evaluated */
	bool mon_stale;   /* a replicated change arrived since */
	cs_control *ctl;
	cs_pos committed;  /* the store's position after this node's last change (read again when a
	                      batch opens) */
	cs_pos durable;    /* where the store stood when the open batch began */
	struct held *held; /* changes of the open batch, to answer once it is on disk */
	struct cs_worker *worker;       /* slow commands off the event loop (ops_defer.c) */
	struct cs_worker *mon_worker;   /* the primary's probes (ops_serving.c) */
	struct cs_worker *admin_worker; /* renders of /metrics (ops_monitor.c) */
	json_t *serving;                /* the last probes' results, or NULL */
	time_t serving_started;         /* when the last probes began; 0 never */
	bool serving_busy;              /* probes are running */
	bool members_known;             /* the membership record was read (members.c) */
	uint8_t members_hash[32];       /* of the membership the node follows */
	/* the configuration's [peer] sections, once the membership replaced
	 * them: where this node reaches each peer (members.c) */
	cs_peer *seed;
	size_t nseed;
	struct acme_runner *acme; /* ACME on the primary (acme_agent.h); NULL without [acme] */
	struct acme_answer *acme_answer; /* http-01 and tls-alpn-01 answers */
	/* keys replaced by `cluster rekey`, freed when the node closes */
	cs_key **retired;
	size_t nretired;
	struct import_job *import_session; /* an import sent in parts (ops_import.c) */
};

typedef json_t *(*cs_op_fn)(struct cs_node *node, json_t *args, cs_err *err);

/* Reads string argument name: 0 and *out set (NULL when absent and not
 * required), -1 with a usage error otherwise. */
int ops_arg_string(json_t *args, const char *name, bool required, const char **out, cs_err *err);
/* Reads optional integer argument name, from min to max: 1 and *out set,
 * 0 when absent, -1 with a usage error naming what it counts otherwise. */
int ops_arg_int(json_t *args, const char *name, json_int_t min, json_int_t max, const char *what,
                json_int_t *out, cs_err *err);

/* Commits txn and logs the change; txn has ended either way.  Inside a
 * batch (ops_batch.c) the change reaches the disk, the followers and the TLS
 * endpoint with the batch. */
/* Drops an import whose parts stopped coming (ops_import.c). */
void ops_import_close(struct cs_node *node);

CS_MUST_CHECK int ops_commit(struct cs_node *node, cs_txn *txn, const char *summary, cs_err *err);

/* ops_batch.c: group commit.  A change opens the pass's batch before it
 * runs (ops_batch_begin) and, when it changed the store, has its answer
 * held (ops_hold returns NULL: the answer goes out from cs_node_flush). */
int ops_batch_begin(struct cs_node *node, cs_err *err);
/* A write transaction of its own, off the loop, for a change that takes
 * seconds to write (an import of many files): until ops_exclusive_end,
 * ops_batch_begin refuses changes instead of letting the loop wait for
 * LMDB's writer lock. */
int ops_exclusive_begin(struct cs_node *node, cs_txn **txn, cs_err *err);
void ops_exclusive_end(void);

json_t *op_cert_list(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_cert_show(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_cert_delete(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_cert_default(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_export(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_verify(struct cs_node *node, json_t *args, cs_err *err);
/* Every node as this one knows it (position, digest, reachable, TLS endpoint)
 * and the ids each should serve for its hostname and the site hostname; the
 * command compares and probes (verify --cluster). */
json_t *op_verify_cluster(struct cs_node *node, json_t *args, cs_err *err);

json_t *op_self_signed(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_csr_create(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_csr_list(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_csr_show(struct cs_node *node, json_t *args, cs_err *err);

json_t *op_import(struct cs_node *node, json_t *args, cs_err *err);

/* ops_tidy.c */
json_t *op_key_list(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_key_delete(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_csr_delete(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_cert_prune(struct cs_node *node, json_t *args, cs_err *err);

/* Has the TLS endpoint serve the store as it is now, soon after; returns
 * at once (tls_server_changed). */
void ops_reload_tls(struct cs_node *node);

/* ops_repl.c: replication wired into the node. */
int ops_repl_start(struct cs_node *node, const char *pass, size_t passlen, cs_err *err);
/* Whether this node accepts changes, and the primary's name as far as it
 * knows (buf holds it; NULL when unknown). */
bool ops_leading(struct cs_node *node);
/* -1 with a refusal that says to retry while this primary is starting
 * (it has not heard its peers yet); 0 otherwise. */
int ops_refuse_starting(struct cs_node *node, const char *cmd, cs_err *err);
/* The diverged table as JSON: [{"id","origin","epoch","seq","time",
 * "summary","found","ops","applied_seq"}]. */
json_t *ops_diverged_list(cs_store *st, cs_err *err);

/* ops_health.c: {"ok", "problems": [text]} as txn sees the store. */
json_t *ops_health(struct cs_node *node, cs_txn *txn, cs_err *err);
/* True while the node refuses the cluster passphrase (a tls_config hook). */
bool ops_refusing(void *node);
const char *ops_primary(struct cs_node *node, char *buf, size_t len);

/* --wait of a change: parsed before the change runs, so a bad flag changes
 * nothing. */
typedef struct ops_wait_req {
	const char *name;
	repl_wait_mode mode;
	int timeout_ms;
} ops_wait_req;
int ops_wait_args(struct cs_node *node, json_t *args, ops_wait_req *w, cs_err *err);
json_t *ops_hold(struct cs_node *node, const ops_wait_req *w, json_t *result, cs_err *err);
/* ops_hold for a change whose request was deferred before it ran (an
 * import, decoded off the loop): p is answered by cs_node_flush. */
void ops_hold_pending(struct cs_node *node, cs_control_pending *p, const ops_wait_req *w,
                      json_t *result);
/* Answers a change that is on disk at pos on p with result (a reference it
 * takes): at once, or once the nodes of mode acknowledged pos. */
void ops_wait(struct cs_node *node, cs_control_pending *p, repl_wait_mode mode, int timeout_ms,
              cs_pos pos, json_t *result);

/* ops_monitor.c: the monitor fed from the node's facts, and its commands. */
int ops_monitor_start(struct cs_node *node, cs_err *err);
/* Delivers alerts to the targets of mc from now on (SIGHUP); mc must stay
 * until the next call or the node's end. */
int ops_monitor_retarget(struct cs_node *node, const mon_config *mc, cs_err *err);
/* The monitor's status (active alerts, delivery counts); a new reference. */
json_t *ops_monitor_status(struct cs_node *node);
json_t *op_alerts(struct cs_node *node, json_t *args, cs_err *err);

/* ops_serving.c: the primary's check, every [alerts] serving_check seconds,
 * of the certificate each node's TLS endpoint serves (verify --cluster's
 * TLS check, run on the monitor worker's thread).  ops_serving_tick starts one when
 * due (the monitor calls it at each evaluation); ops_serving_facts gives
 * the last results as facts, pointing into node->serving (valid until the
 * next tick); ops_serving_status gives them as JSON (a new reference, null
 * before the first check or off the primary). */
void ops_serving_tick(struct cs_node *node);
size_t ops_serving_facts(struct cs_node *node, mon_serving *out, size_t max);
json_t *ops_serving_status(struct cs_node *node);
json_t *op_alerts_test(struct cs_node *node, json_t *args, cs_err *err);

json_t *op_promote(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_diverged_list(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_diverged_apply(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_diverged_delete(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_diverged_prune(struct cs_node *node, json_t *args, cs_err *err);

/* ---- ops_defer.c: commands whose slow part runs on the worker ---- */
/* The first member of such a command's job.  work runs on the worker
 * thread and touches only the job (and what is safe from any thread: the
 * cluster key, a read transaction of its own); finish then runs on the
 * loop once work returned 0, and gives the answer (a new reference) or
 * NULL with err.  A change's finish writes the store in the pass's batch
 * and is held for --wait like any change; a change is refused when the
 * node stopped leading meanwhile. */
typedef struct ops_deferred ops_deferred;
struct ops_deferred {
	struct cs_node *node;
	const char *cmd;   /* names the command in messages: "cert self-signed" */
	bool change;       /* writes the store: needs this node to lead at the end */
	ops_wait_req wait; /* a change's --wait */
	int (*work)(ops_deferred *d, const atomic_bool *stop);
	json_t *(*finish)(ops_deferred *d, cs_err *err);
	void (*free)(ops_deferred *d); /* frees the job, wiping what it holds */
	/* set by the worker */
	int rc;
	cs_err err;
	bool ran;
	cs_control_pending *pending;
	bool answered; /* finish took pending over (and returned NULL) */
};
/* Queues d on the worker and returns NULL: the request is answered later
 * (or now, with err, when it cannot be queued; d is freed either way). */
json_t *ops_defer(ops_deferred *d, cs_err *err);

/* verify --cluster's view of every node (what its store says each serves,
 * and where): taken on the loop by ops_cluster_view_new, built by
 * ops_cluster_view_build on whichever thread runs it (the command's worker,
 * or the primary's serving check on the monitor's), freed with d->free. */
ops_deferred *ops_cluster_view_new(struct cs_node *node, cs_err *err);
json_t *ops_cluster_view_build(ops_deferred *d, const atomic_bool *stop, cs_err *err);

/* ops_members.c: the cluster's membership (members.h). */
json_t *op_cluster_nodes(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_cluster_add_node(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_cluster_remove_node(struct cs_node *node, json_t *args, cs_err *err);

/* ops_backup.c: a copy of the store written to args.file, off the loop. */
json_t *op_backup(struct cs_node *node, json_t *args, cs_err *err);
/* ---- ops_rekey.c: changing the cluster passphrase ---- */
json_t *op_cluster_rekey(struct cs_node *node, json_t *args, cs_err *err);
/* -1 with a refusal that says to retry in the moment between a follower
 * applying a rekey and its agent taking the new key (the store is sealed
 * under a key the node does not hold yet); 0 otherwise. */
int ops_rekey_settled(struct cs_node *node, const char *cmd, cs_err *err);
/* The store is now sealed under key (a rekey committed here or applied
 * from the primary): the node and its TLS endpoint use it from now on. */
void ops_rekey_take(struct cs_node *node, cs_key *key);
/* Opens every sealed key of txn with key: -1 (CS_EREFUSED, the refusal
 * naming cmd and the table) when one does not open; a change re-applied
 * from before a rekey would hold such a key. */
int ops_sealed_check(const char *cmd, cs_txn *txn, const cs_key *key, cs_err *err);
/* repl_config's find_key: ctx is the node's cs_config. */
int ops_rekey_find_key(void *ctx, const struct Certsync__KdfParams *kdf, cs_key **out, cs_err *err);

/* ---- ops_store.c ---- */
/* The store's map: its size, the bytes in use, the diverged table's share,
 * and a warning from STORE_WARN_PERCENT of the map on. */
#define STORE_WARN_PERCENT 80
json_t *ops_store_status(cs_store *st);
/* Logs the warning (at most once a minute); called after every change. */
void ops_store_check(cs_store *st);

#endif
