/* ops_rekey.c — `cluster rekey`: changing the cluster passphrase.
 *
 * On the primary, every sealed key of the store is opened with the current
 * cluster key and sealed again under a key derived from the new passphrase
 * with a new salt, and the cluster settings (salt, key-check value) change
 * with them: all in one write transaction, so one log entry that followers
 * apply together or not at all, and a crash at any point leaves the store
 * wholly under the old key or wholly under the new one.  Argon2id runs on
 * the worker thread; the keys are opened only into wiped memory, and only
 * sealed keys reach the disk and the followers.
 *
 * On every node, the key of the new settings replaces the old one once the
 * store is sealed under it (ops_rekey_take); the old one is kept until the
 * agent stops, as the TLS reloader may still be building with it.  Which
 * passphrase gives which key is passphrases.c's concern. */
#include "ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../common/log.h"
#include "node.h"
#include "passphrases.h"
#include "records.h"
#include "worker.h"

/* How long the answer waits for the nodes --wait names, unless the
 * request says otherwise. */
#define REKEY_WAIT_MS 30000

struct rekey_job {
	struct cs_node *node;
	cs_control_pending *pending;
	ops_wait_req wait;
	char *pass; /* sodium_malloc'd; wiped once the key is derived */
	size_t passlen;
	Certsync__KdfParams *kdf; /* the store's settings when asked; the new limits */
	uint8_t salt[CS_SALT_LEN];
	cs_key *key; /* the new key */
	int rc;
	cs_err err;
};

static void job_free(struct rekey_job *job)
{
	if (job->pass != NULL)
		cs_secret_free(job->pass);
	if (job->kdf != NULL)
		certsync__kdf_params__free_unpacked(job->kdf, NULL);
	cs_key_free(job->key);
	free(job);
}

/* ---- the change, in the write transaction ------------------------------ */

/* The cluster settings, read in txn: 0, or -1 when absent or damaged. */
static int read_kdf(cs_txn *txn, Certsync__KdfParams **out, cs_err *err)
{
	int rc = rec_kdf_get(txn, out, err);

	if (rc > 0)
		return cs_fail(err, CS_EREFUSED,
		               "rekey refused: the store has no cluster settings yet");
	if (rc == 0 &&
	    ((*out)->key_check.len != CS_KEYCHECK_LEN || (*out)->salt.len != CS_SALT_LEN))
		return cs_fail(err, CS_EIO, "the store's cluster settings are damaged (kdf)");
	return rc;
}

/* A key of the store that does not open is a refusal of the command. */
static int refuse_unopened(const char *cmd, cs_err *err)
{
	char why[sizeof(err->msg)];

	if (err->code != CS_ECRYPTO)
		return -1;
	snprintf(why, sizeof(why), "%s", err->msg);
	return cs_fail(err, CS_EREFUSED, "%s refused: %s; nothing was changed", cmd, why);
}

/* Changes written by an old primary that were moved aside hold keys sealed
 * under the current key: re-applied after a rekey they would not open. */
static int count_unapplied(void *ctx, const cs_diverged *d)
{
	*(size_t *)ctx += d->applied_seq == 0;
	return 0;
}

/* The change itself: every key re-sealed and the new settings, one commit. */
static json_t *rekey_commit(struct rekey_job *job)
{
	struct cs_node *node = job->node;
	Certsync__KdfParams *now = NULL, kdf;
	uint8_t check[CS_KEYCHECK_LEN];
	size_t count = 0, unapplied = 0;
	char summary[96];
	cs_txn *txn;
	cs_err *err = &job->err;

	if (cs_txn_begin(node->store, true, &txn, err) < 0)
		return NULL;
	if (read_kdf(txn, &now, err) < 0 ||
	    cs_txn_diverged_foreach(txn, count_unapplied, &unapplied, err) != 0)
		goto fail;
	if (sodium_memcmp(now->key_check.data, job->kdf->key_check.data, CS_KEYCHECK_LEN) != 0) {
		cs_fail(
		    err, CS_EREFUSED,
		    "rekey refused: the cluster passphrase changed while the new key was derived; "
		    "nothing was changed");
		goto fail;
	}
	if (unapplied > 0) {
		cs_fail(err, CS_EREFUSED,
		        "rekey refused: %zu diverged %s hold keys sealed under the current "
		        "passphrase; re-apply or delete %s first (certsync diverged list)",
		        unapplied, CS_PLURAL(unapplied, "change", "changes"),
		        CS_PLURAL(unapplied, "it", "them"));
		goto fail;
	}
	if (rec_reseal_all(txn, node->key, job->key, &count, err) < 0) {
		refuse_unopened("rekey", err);
		goto fail;
	}
	kdf = *now;
	kdf.opslimit = job->kdf->opslimit; /* what the new key was derived with */
	kdf.memlimit = job->kdf->memlimit;
	cs_key_check(job->key, check);
	kdf.salt = (ProtobufCBinaryData){CS_SALT_LEN, job->salt};
	kdf.key_check = (ProtobufCBinaryData){CS_KEYCHECK_LEN, check};
	if (rec_put(txn, CS_TBL_SETTINGS, (const uint8_t *)REC_SETTINGS_KDF,
	            strlen(REC_SETTINGS_KDF), &kdf.base, err) < 0)
		goto fail;
	certsync__kdf_params__free_unpacked(now, NULL);
	snprintf(summary, sizeof(summary), "cluster rekey: %zu %s sealed under a new passphrase",
	         count, CS_PLURAL(count, "key", "keys"));
	if (ops_commit(node, txn, summary, err) < 0)
		return NULL;
	ops_rekey_take(node, job->key);
	job->key = NULL;
	return json_pack("{s:I, s:s}", "resealed", (json_int_t)count, "message",
	                 "the cluster passphrase was changed: every node uses the new one now; "
	                 "make it every node's passphrase_file before they restart");
fail:
	if (now != NULL)
		certsync__kdf_params__free_unpacked(now, NULL);
	cs_txn_abort(txn);
	return NULL;
}

/* ---- the command ----------------------------------------------------------- */

/* On the worker: the new passphrase must not be the current one (checked
 * by the key it gives, as a node checks its own), then the new key. */
static void rekey_work(void *arg, const atomic_bool *stop)
{
	struct rekey_job *job = arg;
	uint64_t ops, mem;
	cs_key *same;
	int rc;

	(void)stop;
	rc = rec_cluster_key(job->kdf, job->pass, job->passlen, &same, &job->err);
	cs_key_free(same);
	if (rc == 0)
		rc =
		    cs_fail(&job->err, CS_EREFUSED,
		            "rekey refused: the new passphrase is the cluster's current one; write "
		            "a new passphrase in the file");
	else if (rc == 1) {
		job->err = (cs_err){0}; /* "does not match": what is wanted here */
		/* Never weaker than the cluster's limits nor than the default. */
		cs_kdf_default_limits(&ops, &mem);
		ops = job->kdf->opslimit > ops ? job->kdf->opslimit : ops;
		mem = job->kdf->memlimit > mem ? job->kdf->memlimit : mem;
		job->kdf->opslimit = ops;
		job->kdf->memlimit = mem;
		cs_kdf_new_salt(job->salt);
		rc = cs_key_derive(&job->key, job->pass, job->passlen, job->salt, ops, mem,
		                   &job->err);
	}
	cs_secret_free(job->pass);
	job->pass = NULL;
	job->rc = rc;
}

static void rekey_done(void *arg, bool cancelled)
{
	struct rekey_job *job = arg;
	struct cs_node *node = job->node;
	json_t *result = NULL;

	if (cancelled)
		cs_fail(&job->err, CS_EIO,
		        "the agent stopped before the rekey was done; nothing was changed");
	else if (job->rc == 0 && !ops_leading(node))
		cs_fail(&job->err, CS_EREFUSED,
		        "rekey refused: %s stopped being the primary while the key was derived; "
		        "run it on the primary",
		        node->cfg->name);
	/* Its own durable commit, outside any batch: the node takes the new
	 * key only once the store is sealed under it on disk. */
	else if (job->rc == 0 && cs_node_flush(node, &job->err) == 0) {
		cs_info("cluster rekey: the new key is derived; re-sealing every key under it");
		result = rekey_commit(job);
	}
	if (result != NULL) {
		cs_warn("the cluster passphrase was changed: put the new one in passphrase_file "
		        "before the next restart");
		ops_wait(node, job->pending, job->wait.mode, job->wait.timeout_ms, node->committed,
		         result);
	} else {
		cs_control_answer(job->pending, NULL, &job->err);
	}
	job_free(job);
}

json_t *op_cluster_rekey(struct cs_node *node, json_t *args, cs_err *err)
{
	struct rekey_job *job = calloc(1, sizeof(*job));
	const char *path;
	cs_txn *txn;
	int rc;

	if (job == NULL) {
		cs_fail(err, CS_EIO, "out of memory");
		return NULL;
	}
	job->node = node;
	if (ops_arg_string(args, "new_passphrase_file", true, &path, err) < 0 ||
	    ops_wait_args(node, args, &job->wait, err) < 0)
		goto fail;
	/* Each follower derives the new key (Argon2id) before it can apply
	 * the change and acknowledge it: a change's usual wait is too short. */
	if (json_object_get(args, "wait_timeout_ms") == NULL)
		job->wait.timeout_ms = REKEY_WAIT_MS;
	if (path[0] != '/') {
		cs_fail(err, CS_EUSAGE,
		        "control request: args.new_passphrase_file must be an absolute path");
		goto fail;
	}
	if (cs_passphrase_read("--new-passphrase-file", path, &job->pass, &job->passlen, err) < 0) {
		/* the command's input, refused like an unreadable import file */
		err->code = CS_EINPUT;
		goto fail;
	}
	if (cs_txn_begin(node->store, false, &txn, err) < 0)
		goto fail;
	rc = read_kdf(txn, &job->kdf, err);
	cs_txn_abort(txn);
	if (rc < 0)
		goto fail;
	if (node->worker == NULL) {
		cs_fail(err, CS_EIO, "the worker is not running; restart the agent");
		goto fail;
	}
	/* Argon2id takes a second or more: the worker derives, and the answer
	 * comes from rekey_done once the change is on disk. */
	if ((job->pending = cs_control_defer(node->ctl)) == NULL) {
		cs_fail(err, CS_EIO, "cannot answer the rekey later; try again");
		goto fail;
	}
	if (cs_worker_submit(node->worker, rekey_work, rekey_done, job) < 0) {
		cs_fail(&job->err, CS_EIO, "out of memory");
		cs_control_answer(job->pending, NULL, &job->err);
		job_free(job);
	}
	return NULL;
fail:
	job_free(job);
	return NULL;
}

/* ---- the key, on every node ---------------------------------------------- */

int ops_sealed_check(const char *cmd, cs_txn *txn, const cs_key *key, cs_err *err)
{
	size_t count;

	if (rec_reseal_all(txn, key, NULL, &count, err) == 0)
		return 0;
	return refuse_unopened(cmd, err);
}

int ops_rekey_settled(struct cs_node *node, const char *cmd, cs_err *err)
{
	cs_txn *txn;
	int rc;

	if (cs_txn_begin(node->store, false, &txn, err) < 0)
		return -1;
	rc = rec_sealed_under(txn, node->key, err);
	cs_txn_abort(txn);
	if (rc > 0)
		return cs_fail(err, CS_EREFUSED,
		               "%s refused: %s has just applied a change of the cluster passphrase "
		               "and takes the new key in a moment; retry",
		               cmd, node->cfg->name);
	return rc;
}

void ops_rekey_take(struct cs_node *node, cs_key *key)
{
	cs_key **retired = realloc(node->retired, (node->nretired + 1) * sizeof(*retired));

	/* The store is sealed under key already: the node takes it whatever
	 * happens.  Without memory to remember the old key it stays allocated
	 * (freeing it could pull it from under a TLS build). */
	if (retired != NULL) {
		node->retired = retired;
		node->retired[node->nretired++] = node->key;
	}
	node->key = key;
	if (node->tls != NULL)
		tls_server_set_key(node->tls, key);
	cs_info("now using the key of the new cluster passphrase");
}

int ops_rekey_find_key(void *ctx, const struct Certsync__KdfParams *kdf, cs_key **out, cs_err *err)
{
	const char *which;
	int rc = cs_pass_find(ctx, kdf, out, &which, err);

	if (rc == 0)
		cs_info("the cluster's new passphrase is the one in %s", which);
	return rc == 0 ? 0 : -1;
}
