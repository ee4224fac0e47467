/* ops_repl.c — the agent's side of replication: starting it from the
 * configuration, the hooks that reload the TLS endpoint and hand over the
 * cluster key, which node accepts changes, changes that wait for the
 * followers' acknowledgements, and the promote and diverged commands.  The
 * replication itself lives in replication/. */
#include "ops.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../common/hex.h"
#include "../common/log.h"
#include "node.h"
#include "proto/store.pb-c.h"
#include "records.h"

#define DEFAULT_LOG_RETAIN 10000
#define DEFAULT_WAIT_MS    5000

static repl_role repl_role_of(cs_role role)
{
	return role == CS_ROLE_PRIMARY  ? REPL_PRIMARY
	       : role == CS_ROLE_BACKUP ? REPL_BACKUP
	                                : REPL_TRAFFIC;
}

static void on_change(void *ctx, cs_pos pos)
{
	struct cs_node *node = ctx;

	cs_debug("replicated up to %llu.%llu", (unsigned long long)pos.epoch,
	         (unsigned long long)pos.seq);
	ops_reload_tls(node);
	node->mon_stale = true; /* evaluated once this loop pass ends */
}

/* A node that started without cluster settings gets the key once the
 * primary's key-check value matched its passphrase. */
static void on_key(void *ctx, cs_key *key)
{
	struct cs_node *node = ctx;
	cs_err err = {0};

	if (node->key != NULL) {
		ops_rekey_take(node, key); /* the cluster passphrase changed */
		return;
	}
	node->key = key;
	cs_info("the cluster key matches the primary's");
	if (node->tls == NULL && cs_node_start_tls(node, &err) < 0)
		cs_error("%s", err.msg);
}

int ops_repl_start(struct cs_node *node, const char *pass, size_t passlen, cs_err *err)
{
	const cs_config *cfg = node->cfg;
	repl_config rc = {0};
	repl_hooks hooks = {on_change, on_key, node};
	repl_peer *peers;
	int ret;

	if (cfg->repl_listen == NULL)
		return 0;
	peers = calloc(cfg->npeers ? cfg->npeers : 1, sizeof(*peers));
	if (peers == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	for (size_t i = 0; i < cfg->npeers; i++) {
		peers[i].name = cfg->peers[i].name;
		peers[i].role = repl_role_of(cfg->peers[i].role);
		peers[i].endpoint = cfg->peers[i].repl_endpoint;
		/* config.c checked the key */
		repl_key_parse(cfg->peers[i].curve_public_key, peers[i].public_key, NULL);
	}
	rc.name = cfg->name;
	rc.role = repl_role_of(cfg->role);
	rc.listen = cfg->repl_listen;
	rc.peers = peers;
	rc.npeers = cfg->npeers;
	rc.pass = pass;
	rc.passlen = passlen;
	rc.find_key = ops_rekey_find_key;
	rc.find_key_ctx = (void *)cfg;
	ret = repl_key_load(cfg->curve_secret_file, rc.public_key, rc.secret_key, err);
	if (ret == 0) {
		cs_store_set_log_retain(node->store, cfg->log_retain > 0 ? (uint64_t)cfg->log_retain
		                                                         : DEFAULT_LOG_RETAIN);
		ret = repl_start(&node->repl, &rc, node->store, &hooks, err);
	}
	sodium_memzero(rc.secret_key, sizeof(rc.secret_key));
	free(peers);
	return ret;
}

bool ops_leading(struct cs_node *node)
{
	return node->repl != NULL ? repl_leading(node->repl) : node->cfg->role == CS_ROLE_PRIMARY;
}

int ops_refuse_starting(struct cs_node *node, const char *cmd, cs_err *err)
{
	if (node->repl == NULL || !repl_starting(node->repl))
		return 0;
	return cs_fail(err, CS_EREFUSED,
	               "%s refused: %s is starting and accepts changes once it has heard its "
	               "peers (a few seconds at most: one of them may have been promoted "
	               "meanwhile); retry shortly",
	               cmd, node->cfg->name);
}

const char *ops_primary(struct cs_node *node, char *buf, size_t len)
{
	if (node->repl == NULL)
		return cs_config_primary(node->cfg);
	return repl_leader(node->repl, buf, len) == 0 ? buf : NULL;
}

int cs_node_repl_fd(cs_node *node)
{
	return node->repl != NULL ? repl_fd(node->repl) : -1;
}

void cs_node_repl_dispatch(cs_node *node)
{
	repl_dispatch(node->repl);
}

void cs_node_set_control(cs_node *node, cs_control *ctl)
{
	node->ctl = ctl;
}

/* ---- changes that wait for acknowledgements ---- */

struct held_ack {
	cs_control_pending *pending;
	json_t *result;
	const char *mode;
};

static void on_acked(void *arg, json_t *unconfirmed)
{
	struct held_ack *h = arg;

	json_object_set_new(h->result, "replication",
	                    json_pack("{s:s, s:o}", "wait", h->mode, "unconfirmed", unconfirmed));
	cs_control_answer(h->pending, h->result, NULL);
	free(h);
}

/* --wait's default: the backup's acknowledgement when there is one. */
static const char *default_wait(const cs_config *cfg)
{
	for (size_t i = 0; i < cfg->npeers; i++)
		if (cfg->peers[i].role != CS_ROLE_TRAFFIC)
			return "backup";
	return "none";
}

int ops_wait_args(struct cs_node *node, json_t *args, ops_wait_req *w, cs_err *err)
{
	json_t *timeout = json_object_get(args, "wait_timeout_ms");
	const char *name;

	if (ops_arg_string(args, "wait", false, &name, err) < 0)
		return -1;
	w->name = name != NULL ? name : default_wait(node->cfg);
	if (repl_wait_mode_parse(w->name, &w->mode) < 0)
		return cs_fail(err, CS_EUSAGE, "--wait %s: use backup, all or none", w->name);
	if (timeout != NULL && (!json_is_integer(timeout) || json_integer_value(timeout) < 0 ||
	                        json_integer_value(timeout) > 3600 * 1000))
		return cs_fail(err, CS_EUSAGE,
		               "control request: args.wait_timeout_ms must be 0 to 3600000");
	w->timeout_ms = timeout != NULL ? (int)json_integer_value(timeout) : DEFAULT_WAIT_MS;
	return 0;
}

static const char *const wait_modes[] = {"none", "backup", "all"};

/* A change that could not wait (out of memory) is confirmed by none of the
 * peers mode names: it must not answer as confirmed. */
static void answer_unwaited(struct cs_node *node, cs_control_pending *p, repl_wait_mode mode,
                            json_t *result)
{
	json_t *names = json_array();

	for (size_t i = 0; i < node->cfg->npeers; i++)
		if (mode == REPL_WAIT_ALL || node->cfg->peers[i].role != CS_ROLE_TRAFFIC)
			json_array_append_new(names, json_string(node->cfg->peers[i].name));
	json_object_set_new(
	    result, "replication",
	    json_pack("{s:s, s:o}", "wait", wait_modes[mode], "unconfirmed", names));
	cs_control_answer(p, result, NULL);
}

void ops_wait(struct cs_node *node, cs_control_pending *p, repl_wait_mode mode, int timeout_ms,
              cs_pos pos, json_t *result)
{
	struct held_ack *h;
	cs_err err;

	if (mode == REPL_WAIT_NONE || node->repl == NULL) {
		cs_control_answer(p, result, NULL); /* on disk: answered without waiting */
		return;
	}
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		answer_unwaited(node, p, mode, result);
		return;
	}
	h->result = result;
	h->mode = wait_modes[mode];
	h->pending = p;
	if (repl_wait(node->repl, pos, mode, timeout_ms, on_acked, h, &err) < 0) {
		cs_warn("answering without waiting for acknowledgements: %s", err.msg);
		answer_unwaited(node, p, mode, result);
		free(h);
	}
}

/* ---- commands ---- */

json_t *op_promote(struct cs_node *node, json_t *args, cs_err *err)
{
	json_t *force = json_object_get(args, "force");

	if (node->repl == NULL) {
		cs_fail(err, CS_EREFUSED,
		        "promote refused: %s has no replication configured (repl_listen)",
		        node->cfg->name);
		return NULL;
	}
	if (repl_promote(node->repl, json_is_true(force), err) < 0)
		return NULL;
	return repl_status(node->repl);
}

/* Returns 1 for an entry that does not decode or memory that ran out. */
static int diverged_json(void *ctx, const cs_diverged *d)
{
	Certsync__LogEntry *e = certsync__log_entry__unpack(NULL, d->entry_len, d->entry);
	char id[2 * CS_DIGEST_LEN + 1], when[32], found[32];
	json_t *item;

	if (e == NULL)
		return 1;
	cs_hex(d->id, CS_DIGEST_LEN, id);
	rec_time((time_t)e->time, when);
	rec_time((time_t)d->found, found);
	item = json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:I, s:o}", "id", id, "origin",
	                 d->origin, "epoch", (json_int_t)e->epoch, "seq", (json_int_t)e->seq,
	                 "time", when, "summary", e->summary, "found", found, "ops",
	                 (json_int_t)e->n_ops, "applied_seq",
	                 d->applied_seq ? json_integer((json_int_t)d->applied_seq) : json_null());
	certsync__log_entry__free_unpacked(e, NULL);
	return item != NULL && json_array_append_new(ctx, item) == 0 ? 0 : 1;
}

json_t *ops_diverged_list(cs_store *st, cs_err *err)
{
	json_t *list = json_array();
	cs_txn *txn;
	int rc;

	if (list == NULL) {
		cs_fail(err, CS_EIO, "out of memory");
		return NULL;
	}
	if (cs_txn_begin(st, false, &txn, err) != 0) {
		json_decref(list);
		return NULL;
	}
	rc = cs_txn_diverged_foreach(txn, diverged_json, list, err);
	cs_txn_abort(txn);
	if (rc > 0)
		cs_fail(err, CS_EIO, "a diverged entry does not decode, or memory ran out");
	if (rc != 0) {
		json_decref(list);
		return NULL;
	}
	return list;
}

json_t *op_diverged_list(struct cs_node *node, json_t *args, cs_err *err)
{
	json_t *list;

	(void)args;
	list = ops_diverged_list(node->store, err);
	return list ? json_pack("{s:o}", "diverged", list) : NULL;
}

json_t *op_diverged_apply(struct cs_node *node, json_t *args, cs_err *err)
{
	uint8_t id[CS_DIGEST_LEN];
	char hex[2 * CS_DIGEST_LEN + 1], summary[64];
	const char *ref;
	cs_txn *txn;

	if (ops_arg_string(args, "id", true, &ref, err) < 0 ||
	    cs_txn_begin(node->store, true, &txn, err) < 0)
		return NULL;
	/* A change written before a cluster rekey holds keys that the
	 * current key does not open: refused rather than stored unreadable. */
	if (cs_txn_diverged_apply(txn, ref, id, err) < 0 ||
	    ops_sealed_check("diverged apply", txn, node->key, err) < 0) {
		cs_txn_abort(txn);
		return NULL;
	}
	cs_hex(id, CS_DIGEST_LEN, hex);
	snprintf(summary, sizeof(summary), "diverged apply %.8s", hex);
	if (ops_commit(node, txn, summary, err) < 0)
		return NULL;
	return json_pack("{s:s, s:I}", "applied", hex, "seq", (json_int_t)node->committed.seq);
}

json_t *op_diverged_delete(struct cs_node *node, json_t *args, cs_err *err)
{
	uint8_t id[CS_DIGEST_LEN];
	char hex[2 * CS_DIGEST_LEN + 1];
	const char *ref;
	cs_txn *txn;

	if (ops_arg_string(args, "id", true, &ref, err) < 0 ||
	    cs_txn_begin(node->store, true, &txn, err) < 0)
		return NULL;
	if (cs_txn_diverged_delete(txn, ref, id, err) < 0) {
		cs_txn_abort(txn);
		return NULL;
	}
	/* A local table: no log entry, nothing to replicate. */
	if (cs_txn_commit(txn, NULL, NULL, err) < 0)
		return NULL;
	cs_hex(id, CS_DIGEST_LEN, hex);
	cs_info("diverged entry %.8s deleted", hex);
	return json_pack("{s:s}", "deleted", hex);
}

json_t *op_diverged_prune(struct cs_node *node, json_t *args, cs_err *err)
{
	size_t removed;
	cs_txn *txn;

	if (cs_txn_begin(node->store, true, &txn, err) < 0)
		return NULL;
	if (cs_txn_diverged_prune(txn, json_is_true(json_object_get(args, "all")), &removed, err) <
	    0) {
		cs_txn_abort(txn);
		return NULL;
	}
	if (cs_txn_commit(txn, NULL, NULL, err) < 0)
		return NULL;
	cs_info("%zu diverged entries pruned", removed);
	return json_pack("{s:I}", "removed", (json_int_t)removed);
}
