/* node.c — the agent's state and the dispatch of control requests.
 *
 * Startup order matters: the passphrase and the store are checked before
 * anything is written, so a wrong passphrase or a busy data_dir changes
 * nothing on disk. */
#include "node.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../common/clock.h"
#include "../common/hex.h"
#include "../common/log.h"
#include "live.h"
#include "members.h"
#include "acme_agent.h"
#include "ops.h"
#include "passphrases.h"
#include "records.h"

/* Derives the key from the stored settings with the passphrase, or with
 * next_passphrase_file's when the cluster's passphrase was changed (a node
 * restarted after a `cluster rekey`, or one that died during it). */
static int key_from_settings(struct cs_node *node, const Certsync__KdfParams *kdf, const char *pass,
                             size_t passlen, cs_err *err)
{
	const cs_config *cfg = node->cfg;
	int rc = rec_cluster_key(kdf, pass, passlen, &node->key, err);

	if (rc == 1 && cfg->next_passphrase_file != NULL) {
		rc = cs_pass_try_file("next_passphrase_file", cfg->next_passphrase_file, kdf,
		                      &node->key, err);
		if (rc == 0)
			cs_warn(
			    "the store opens with next_passphrase_file %s, not passphrase_file: "
			    "the cluster passphrase was changed; put the new passphrase in "
			    "passphrase_file",
			    cfg->next_passphrase_file);
	}
	if (rc == 1)
		return cs_fail(
		    err, CS_EUSAGE,
		    "cluster passphrase does not match: the passphrase in %s%s%s does not "
		    "open this store; give the passphrase the cluster was created with "
		    "(or last changed to with `cluster rekey`)",
		    cfg->passphrase_file,
		    cfg->next_passphrase_file != NULL ? " nor the one in " : "",
		    cfg->next_passphrase_file != NULL ? cfg->next_passphrase_file : "");
	return rc;
}

/* A next_passphrase_file is read when a rekey arrives: a file that cannot
 * be read is said now, at start, not then. */
static int check_next(const cs_config *cfg, cs_err *err)
{
	char *pass;
	size_t passlen;

	if (cfg->next_passphrase_file == NULL)
		return 0;
	if (cs_passphrase_read("next_passphrase_file", cfg->next_passphrase_file, &pass, &passlen,
	                       err) < 0)
		return cs_err_prefix(err, "%s: ", cfg->path);
	cs_secret_free(pass);
	return 0;
}

/* A new cluster: random salt and id, MODERATE limits, and the key-check
 * value, written as the store's first change. */
static int create_settings(struct cs_node *node, const char *pass, size_t passlen, cs_err *err)
{
	uint64_t opslimit, memlimit;
	cs_txn *txn;

	cs_kdf_default_limits(&opslimit, &memlimit);
	if (cs_txn_begin(node->store, true, &txn, err) < 0)
		return -1;
	if (rec_cluster_create(txn, pass, passlen, opslimit, memlimit, &node->key, err) < 0 ||
	    ops_members_seed(node, txn, err) < 0) {
		cs_txn_abort(txn);
		return -1;
	}
	return ops_commit(node, txn, "cluster created", err);
}

static int setup_key(struct cs_node *node, const char *pass, size_t passlen, cs_err *err)
{
	Certsync__KdfParams *kdf;
	cs_txn *txn;
	int rc;

	if (cs_txn_begin(node->store, false, &txn, err) < 0)
		return -1;
	rc = rec_kdf_get(txn, &kdf, err);
	cs_txn_abort(txn);
	if (rc < 0)
		return -1;
	if (kdf != NULL) {
		rc = key_from_settings(node, kdf, pass, passlen, err);
		certsync__kdf_params__free_unpacked(kdf, NULL);
		return rc;
	}
	if (node->cfg->role != CS_ROLE_PRIMARY) {
		cs_warn("no cluster settings yet: this %s node holds no certificates until the "
		        "primary's arrive",
		        cs_role_name(node->cfg->role));
		return 0;
	}
	return create_settings(node, pass, passlen, err);
}

int cs_node_open(cs_node **out, cs_config *cfg, cs_err *err)
{
	struct cs_node *node;
	char *pass;
	size_t passlen;
	int rc;

	if (cs_seal_init(err) < 0)
		return -1;
	if (cs_passphrase_file_read(cfg, &pass, &passlen, err) < 0)
		return cs_err_prefix(err, "%s:%d: ", cfg->path, cfg->passphrase_file_line);
	if (check_next(cfg, err) < 0) {
		cs_secret_free(pass);
		return -1;
	}
	node = calloc(1, sizeof(*node));
	if (node == NULL) {
		cs_secret_free(pass);
		return cs_fail(err, CS_EIO, "out of memory");
	}
	node->cfg = cfg;
	node->started = time(NULL);
	rc = cs_live_new(&node->live, cfg, err);
	if (rc == 0)
		rc = cs_store_open(&node->store, cfg->data_dir, err);
	if (rc == 0 && cfg->store_map_size_mib > 0)
		rc = cs_store_set_map_size(node->store, (size_t)cfg->store_map_size_mib << 20, err);
	if (rc == 0)
		rc = setup_key(node, pass, passlen, err);
	/* Once the key is derived the passphrase is of no more use: wiped now.
	 * A node still waiting for the cluster settings hands it to
	 * replication, which wipes its copy once it derives the key. */
	if (node->key != NULL) {
		cs_secret_free(pass);
		pass = NULL;
		passlen = 0;
	}
	/* The replication starts with the membership's peers, not the
	 * configuration's, when the store holds one. */
	if (rc == 0)
		ops_members_sync(node);
	if (rc == 0)
		rc = ops_repl_start(node, pass, passlen, err);
	cs_secret_free(pass);
	if (rc == 0)
		rc = ops_monitor_start(node, err);
	if (rc < 0) {
		cs_node_close(node);
		return -1;
	}
	*out = node;
	return 0;
}

void cs_node_set_worker(cs_node *node, struct cs_worker *worker)
{
	node->worker = worker;
}

/* Tells the TLS endpoint the store changed; its reloader serves the change
 * shortly after, so neither a commit's answer nor the replication thread
 * waits for a table build.  Every change passes here, so the store's map is
 * checked here too, and the node follows the membership it may have
 * changed. */
void ops_reload_tls(struct cs_node *node)
{
	if (node->tls != NULL)
		tls_server_changed(node->tls);
	acme_answer_changed(node);
	ops_store_check(node->store);
	ops_members_sync(node);
}

void cs_node_members_ensure(cs_node *node)
{
	ops_members_ensure(node);
}

int cs_node_start_tls(cs_node *node, cs_err *err)
{
	const cs_config *cfg = node->cfg;
	uint8_t ticket_master[32];
	tls_config tc = {
	    .listen = (const char *const *)cfg->tls_listen,
	    .nlisten = cfg->ntls_listen,
	    .workers = cfg->tls_workers,
	    .handshake_timeout_ms = cfg->tls_handshake_timeout_ms,
	    .max_connections = cfg->tls_max_connections,
	    .node_name = cfg->name,
	    .role = cs_role_name(cfg->role),
	    .node_hostname = cfg->hostname,
	    .site_hostname = cfg->site_hostname,
	    .unhealthy = ops_refusing,
	    .unhealthy_ctx = node,
	    .max_per_source = cfg->tls_max_connections_per_ip > 0 ? cfg->tls_max_connections_per_ip
	                                                          : TLS_DEFAULT_MAX_PER_SOURCE,
	};
	int rc;

	if (cfg->ntls_listen == 0)
		return 0;
	if (node->key == NULL) {
		cs_warn("tls: not serving until the cluster settings arrive");
		return 0;
	}
	/* Every node derives the same ticket secret, so a ticket one node issued
	 * resumes on any other. */
	cs_key_subkey(node->key, 0, "tlsticks", ticket_master);
	rc = tls_server_start(&node->tls, &tc, ticket_master, err);
	sodium_memzero(ticket_master, sizeof(ticket_master));
	if (rc < 0)
		return -1;
	return tls_server_follow(node->tls, node->store, node->key, err);
}

void cs_node_close(cs_node *node)
{
	cs_err err;

	if (node == NULL)
		return;
	cs_node_flush(node, &err); /* a failure was answered to its changes */
	/* The TLS workers ask replication whether the node refuses the
	 * cluster (/healthz): they stop before it does. */
	tls_server_stop(node->tls);
	node->tls = NULL;
	repl_stop(node->repl); /* before the store it writes */
	node->repl = NULL;
	mon_stop(node->mon);
	ops_members_close(node);
	ops_import_close(node);
	json_decref(node->serving);
	cs_key_free(node->key);
	for (size_t i = 0; i < node->nretired; i++)
		cs_key_free(node->retired[i]);
	free(node->retired);
	if (node->store != NULL)
		cs_store_close(node->store);
	cs_live_free(node->live);
	free(node);
}

/* ---- helpers shared by the operations ------------------------------------ */

int ops_arg_string(json_t *args, const char *name, bool required, const char **out, cs_err *err)
{
	json_t *v = json_object_get(args, name);

	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		if (required)
			return cs_fail(err, CS_EUSAGE, "control request: args.%s is required",
			               name);
		return 0;
	}
	if (!json_is_string(v))
		return cs_fail(err, CS_EUSAGE, "control request: args.%s must be a string", name);
	*out = json_string_value(v);
	return 0;
}

int ops_arg_int(json_t *args, const char *name, json_int_t min, json_int_t max, const char *what,
                json_int_t *out, cs_err *err)
{
	json_t *v = json_object_get(args, name);

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return cs_fail(err, CS_EUSAGE,
		               "control request: args.%s, when given, %s from %lld to %lld", name,
		               what, (long long)min, (long long)max);
	*out = json_integer_value(v);
	return 1;
}

int ops_commit(struct cs_node *node, cs_txn *txn, const char *summary, cs_err *err)
{
	cs_pos pos;

	if (cs_txn_commit(txn, summary, &pos, err) < 0) {
		cs_err_prefix(err, "%s: ", summary);
		return -1;
	}
	cs_info("change %llu.%llu: %s", (unsigned long long)pos.epoch, (unsigned long long)pos.seq,
	        summary);
	node->committed = pos;
	if (cs_store_batching(node->store))
		return 0; /* cs_node_flush tells them, once it is on disk */
	if (node->repl != NULL)
		repl_committed(node->repl);
	ops_reload_tls(node);
	return 0;
}

/* ---- status ---------------------------------------------------------------- */

static json_t *default_json(cs_txn *txn, cs_err *err)
{
	uint8_t id[PKI_ID_LEN];
	char hex[2 * PKI_ID_LEN + 1], na[32];
	rec_cert c = {0};
	json_t *j;
	int rc = rec_default(txn, id, err);

	if (rc != 0)
		return rc < 0 ? NULL : json_null();
	if (rec_cert_get(txn, CS_TBL_CERTS, id, &c, err) != 0)
		return json_null();
	cs_hex(id, PKI_ID_LEN, hex);
	cs_iso_time(c.rec->not_after, na);
	j = json_pack("{s:s, s:s, s:s}", "id", hex, "name", c.rec->name, "not_after", na);
	rec_cert_clear(&c);
	return j;
}

static json_t *op_status(struct cs_node *node, json_t *args, cs_err *err)
{
	const cs_config *cfg = node->cfg;
	uint8_t digest[CS_DIGEST_LEN], again[CS_DIGEST_LEN];
	char dhex[2 * CS_DIGEST_LEN + 1], ahex[2 * CS_DIGEST_LEN + 1];
	json_t *def, *result, *health, *recompute = json_object_get(args, "recompute");
	cs_txn *txn;
	cs_pos pos;

	if (recompute != NULL && !json_is_boolean(recompute)) {
		cs_fail(err, CS_EUSAGE, "control request: args.recompute must be a boolean");
		return NULL;
	}
	if (cs_txn_begin(node->store, false, &txn, err) < 0)
		return NULL;
	pos = cs_txn_applied(txn);
	cs_txn_digest(txn, digest);
	/* The store keeps its digest as it changes; recomputing it reads every
	 * record, which at 100,000 certificates is what status would spend
	 * most of its time on: only when asked. */
	if ((json_is_true(recompute) && cs_txn_digest_recompute(txn, again, err) < 0) ||
	    (def = default_json(txn, err)) == NULL) {
		cs_txn_abort(txn);
		return NULL;
	}
	if ((health = ops_health(node, txn, err)) == NULL) {
		json_decref(def);
		cs_txn_abort(txn);
		return NULL;
	}
	cs_hex(digest, CS_DIGEST_LEN, dhex);
	result = json_pack(
	    "{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:b, s:o, s:{s:I, s:I, s:I, s:I}}",
	    "node", cfg->name, "role", cs_role_name(cfg->role), "hostname", cfg->hostname,
	    "site_hostname", cfg->site_hostname, "version", CERTSYNC_VERSION, "uptime_seconds",
	    (json_int_t)(time(NULL) - node->started), "epoch", (json_int_t)pos.epoch, "seq",
	    (json_int_t)pos.seq, "digest", dhex, "cluster_key", node->key != NULL, "default", def,
	    "counts", "certificates", (json_int_t)cs_txn_count(txn, CS_TBL_CERTS), "cas",
	    (json_int_t)cs_txn_count(txn, CS_TBL_CAS), "requests",
	    (json_int_t)cs_txn_count(txn, CS_TBL_REQUESTS), "pending_keys",
	    (json_int_t)cs_txn_count(txn, CS_TBL_KEYS));
	cs_txn_abort(txn);
	if (result != NULL && json_is_true(recompute)) {
		cs_hex(again, CS_DIGEST_LEN, ahex);
		json_object_set_new(result, "digest_recomputed", json_string(ahex));
		json_object_set_new(result, "digest_ok",
		                    json_boolean(memcmp(digest, again, CS_DIGEST_LEN) == 0));
	}
	if (result != NULL) {
		json_object_set_new(result, "health", health);
		json_object_set_new(result, "store", ops_store_status(node->store));
		json_object_set_new(result, "alerts", ops_monitor_status(node));
		if (cs_txn_begin(node->store, false, &txn, err) == 0) {
			json_object_set_new(result, "acme", ops_acme_status(node, txn));
			cs_txn_abort(txn);
		}
	} else {
		json_decref(health);
	}
	if (result != NULL && node->tls != NULL)
		json_object_set_new(result, "tls", tls_server_status(node->tls));
	if (result != NULL && node->repl != NULL) {
		json_t *rs = repl_status(node->repl);

		/* The role it acts in: a promoted backup is the primary. */
		json_object_set(result, "role", json_object_get(rs, "role"));
		json_object_set_new(result, "replication", rs);
	}
	return result;
}

/* ---- dispatch -------------------------------------------------------------- */

static const struct command {
	const char *name;
	cs_op_fn run;
	bool change;    /* refused on every node but the primary */
	bool needs_key; /* opens or seals private keys */
} commands[] = {
    {"status", op_status, false, false},
    {"cert.list", op_cert_list, false, false},
    {"cert.show", op_cert_show, false, false},
    {"cert.delete", op_cert_delete, true, false},
    {"cert.default", op_cert_default, true, false},
    {"cert.self-signed", op_self_signed, true, true},
    {"csr.create", op_csr_create, true, true},
    {"csr.list", op_csr_list, false, false},
    {"csr.show", op_csr_show, false, false},
    {"import", op_import, true, true},
    {"export", op_export, false, true},
    {"verify", op_verify, false, true},
    {"verify.cluster", op_verify_cluster, false, true},
    {"promote", op_promote, false, false},
    {"diverged.list", op_diverged_list, false, false},
    {"diverged.apply", op_diverged_apply, true, true},
    {"key.list", op_key_list, false, false},
    {"key.delete", op_key_delete, true, false},
    {"csr.delete", op_csr_delete, true, false},
    {"cert.prune", op_cert_prune, true, false},
    {"diverged.delete", op_diverged_delete, false, false},
    {"diverged.prune", op_diverged_prune, false, false},
    {"alerts", op_alerts, false, false},
    {"alerts.test", op_alerts_test, false, false},
    {"cluster.nodes", op_cluster_nodes, false, false},
    {"cluster.add-node", op_cluster_add_node, true, false},
    {"cluster.remove-node", op_cluster_remove_node, true, false},
    {"backup", op_backup, false, false},
    {"acme.add", op_acme_add, true, false},
    {"acme.list", op_acme_list, false, false},
    {"acme.show", op_acme_show, false, false},
    {"acme.renew", op_acme_renew, true, false},
    {"acme.remove", op_acme_remove, true, false},
    {"acme.account", op_acme_account, false, false},
    {"cluster.rekey", op_cluster_rekey, true, true},
};

json_t *cs_node_handle(void *ctx, const char *cmd, json_t *args, cs_err *err)
{
	struct cs_node *node = ctx;
	const cs_config *cfg = node->cfg;
	char name[64];
	ops_wait_req wait;
	json_t *result;
	cs_pos before;

	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct command *c = &commands[i];

		if (strcmp(cmd, c->name) != 0)
			continue;
		if (c->change && !ops_leading(node)) {
			const char *primary = ops_primary(node, name, sizeof(name));

			cs_fail(err, CS_EREFUSED,
			        "%s refused: %s is not the primary and only the primary "
			        "accepts changes; run it on the primary%s%s",
			        cmd, cfg->name, primary ? ", " : "", primary ? primary : "");
			return NULL;
		}
		if (c->change && ops_refuse_starting(node, cmd, err) < 0)
			return NULL;
		if (c->needs_key && node->key == NULL) {
			cs_fail(err, CS_EREFUSED,
			        "%s refused: %s has no cluster key yet (the cluster settings "
			        "have not reached it)",
			        cmd, cfg->name);
			return NULL;
		}
		if (c->needs_key && ops_rekey_settled(node, cmd, err) < 0)
			return NULL;
		if (!c->change) {
			cs_node_flush(node, err); /* a failure was answered to its changes */
			return c->run(node, args, err);
		}
		if (ops_wait_args(node, args, &wait, err) < 0 || ops_batch_begin(node, err) < 0)
			return NULL;
		before = node->committed;
		result = c->run(node, args, err);
		if (result == NULL || cs_pos_same(node->committed, before))
			return result; /* nothing changed: nothing to wait for */
		return ops_hold(node, &wait, result, err);
	}
	cs_fail(err, CS_EUSAGE, "control request names an unknown command '%s'", cmd);
	return NULL;
}
