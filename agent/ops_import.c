/* ops_import.c — `certsync import`: certificates, chains and keys in any
 * format, matched to each other and to what the store already holds.
 *
 * Every file is decoded before the store is touched — on the worker
 * thread (worker.h), as key derivation and thousands of certificates take
 * time the event loop owes to other clients — and every rule is then
 * checked on the loop inside one write transaction that is aborted on the
 * first failure, so a bad file changes nothing.  Keys are sealed under the record
 * they end up in: a certificate's id, or a pending key's public-key hash. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../common/hex.h"
#include "control.h"
#include "import.h"
#include "ops.h"
#include "worker.h"

void imp_add_item(struct import *im, const char *file, const char *action, const char *kind,
                  const uint8_t id[PKI_ID_LEN], const char *name, const char *fmt, ...)
{
	char hex[2 * PKI_ID_LEN + 1], message[512];
	va_list ap;

	cs_hex(id, PKI_ID_LEN, hex);
	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	json_array_append_new(im->items, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "file", file,
	                                           "action", action, "kind", kind, "id", hex,
	                                           "name", name, "message", message));
}

/* ---- decoding, on the worker thread ---------------------------------------- */

/* One import command between the control request and its commit: the
 * request's files copied out of it (the request is gone once the worker
 * runs), then what the worker decoded from them. */
struct import_job {
	struct cs_node *node;
	cs_control_pending *pending;
	ops_wait_req wait;
	char *password;           /* sodium_malloc'd, or NULL */
	char *name;               /* --name, or NULL */
	uint8_t *data[MAX_FILES]; /* sodium_malloc'd: a file may be a key */
	size_t len[MAX_FILES];
	char *files[MAX_FILES];
	size_t nfiles;
	int rc;
	cs_err err;
	struct import im;
};

static void job_free(struct import_job *job)
{
	for (size_t i = 0; i < job->nfiles; i++) {
		sodium_free(job->data[i]);
		free(job->files[i]);
		pki_bundle_free(&job->im.bundles[i]);
	}
	sodium_free(job->password);
	free(job->name);
	free(job->im.keys);
	free(job->im.keyed);
	sk_X509_pop_free(job->im.issuers, X509_free);
	free(job->im.index[0].v);
	free(job->im.index[1].v);
	free(job->im.index[2].v);
	json_decref(job->im.items);
	free(job);
}

static char *secret_copy(const char *s)
{
	size_t n = strlen(s) + 1;
	char *c = sodium_malloc(n);

	if (c != NULL)
		memcpy(c, s, n);
	return c;
}

/* On the event loop: the request's arguments, checked and copied. */
static int read_request(struct import_job *job, json_t *args, cs_err *err)
{
	json_t *files = json_object_get(args, "files"), *f;
	const char *password, *name;
	size_t i;

	if (ops_arg_string(args, "password", false, &password, err) < 0 ||
	    ops_arg_string(args, "name", false, &name, err) < 0 ||
	    ops_wait_args(job->node, args, &job->wait, err) < 0)
		return -1;
	if ((password != NULL && (job->password = secret_copy(password)) == NULL) ||
	    (name != NULL && (job->name = strdup(name)) == NULL))
		return cs_fail(err, CS_EIO, "out of memory");
	if (!json_is_array(files) || json_array_size(files) == 0 ||
	    json_array_size(files) > MAX_FILES)
		return cs_fail(err, CS_EUSAGE, "import needs 1 to %d files", MAX_FILES);
	json_array_foreach(files, i, f)
	{
		const char *fname = json_string_value(json_object_get(f, "name"));
		const char *b64 = json_string_value(json_object_get(f, "data"));

		if (fname == NULL || b64 == NULL)
			return cs_fail(err, CS_EUSAGE,
			               "control request: args.files[%zu] needs \"name\" and "
			               "\"data\" (base64)",
			               i);
		if ((job->files[i] = strdup(fname)) == NULL)
			return cs_fail(err, CS_EIO, "out of memory");
		job->nfiles = i + 1;
		/* The file may be a key: it is decoded into memory that is wiped. */
		if (cs_control_unbase64(b64, &job->data[i], &job->len[i]) < 0)
			return cs_fail(err, CS_EUSAGE,
			               "control request: args.files[%zu].data is not base64", i);
	}
	return 0;
}

static int decode_files(struct import_job *job, const atomic_bool *stop)
{
	struct import *im = &job->im;

	for (size_t i = 0; i < job->nfiles; i++) {
		const char *name = job->files[i];

		if (atomic_load(stop))
			return cs_fail(im->err, CS_EIO, "the agent is stopping; import again");
		if (pki_decode(job->data[i], job->len[i], job->password, name, &im->bundles[i],
		               im->err) < 0)
			return -1;
		sodium_free(job->data[i]); /* wiped as soon as it is decoded */
		job->data[i] = NULL;
		im->files[i] = name;
		im->nfiles = i + 1;
	}
	return 0;
}

/* The hash of key's public half, from a certificate of the command that
 * holds it when there is one (the usual key + certificate file): hashing
 * the key itself runs OpenSSL 3.0's encoders. */
static int key_spki(struct import *im, EVP_PKEY *key, uint8_t out[PKI_ID_LEN])
{
	for (size_t i = 0; i < im->nfiles; i++) {
		STACK_OF(X509) *certs = im->bundles[i].certs;

		for (int c = 0; c < sk_X509_num(certs); c++) {
			if (pki_key_matches(sk_X509_value(certs, c), key))
				return pki_cert_spki_hash(sk_X509_value(certs, c), out, im->err);
		}
	}
	return pki_key_spki_hash(key, out, im->err);
}

static int collect_keys(struct import *im)
{
	size_t total = 0, n = 0;

	for (size_t i = 0; i < im->nfiles; i++)
		total += im->bundles[i].nkeys;
	im->keys = calloc(total ? total : 1, sizeof(*im->keys));
	if (im->keys == NULL)
		return cs_fail(im->err, CS_EIO, "out of memory");
	for (size_t i = 0; i < im->nfiles; i++) {
		for (size_t k = 0; k < im->bundles[i].nkeys; k++) {
			struct cmd_key *ck = &im->keys[n];

			ck->pkey = im->bundles[i].keys[k];
			ck->file = im->files[i];
			if (key_spki(im, ck->pkey, ck->spki) < 0)
				return -1;
			/* The same key twice in one command counts once. */
			bool dup = false;
			for (size_t j = 0; j < n; j++)
				dup |= memcmp(im->keys[j].spki, ck->spki, PKI_ID_LEN) == 0;
			if (!dup)
				n++;
		}
	}
	im->nkeys = n;
	return 0;
}

/* ---- the command ------------------------------------------------------------ */

static int import_certs(struct import *im)
{
	for (size_t f = 0; f < im->nfiles; f++) {
		STACK_OF(X509) *certs = im->bundles[f].certs;

		for (int i = 0; i < sk_X509_num(certs); i++) {
			pki_cert_info info;
			int rc;

			if (pki_cert_inspect(sk_X509_value(certs, i), &info, im->err) < 0)
				return cs_err_prefix(im->err, "%s: ", im->files[f]);
			if ((rc = imp_server_root(im, sk_X509_value(certs, i), &info)) < 0) {
				pki_cert_info_free(&info);
				return -1;
			}
			if (rc > 0)
				info.kind = PKI_KIND_IDENTITY;
			rc = info.kind == PKI_KIND_IDENTITY
			         ? imp_import_identity(im, im->files[f], sk_X509_value(certs, i),
			                               &info)
			         : imp_import_ca(im, im->files[f], sk_X509_value(certs, i), &info);
			pki_cert_info_free(&info);
			if (rc < 0)
				return -1;
		}
	}
	return 0;
}

static json_t *finish(struct import *im)
{
	char summary[256];
	size_t n = json_array_size(im->items), changed = 0, i;
	json_t *item;

	json_array_foreach(im->items, i, item)
	{
		if (strcmp(json_string_value(json_object_get(item, "action")), "exists") != 0)
			changed++;
	}
	if (changed == 0) {
		cs_txn_abort(im->txn);
		im->txn = NULL;
		return json_pack("{s:b, s:O}", "changed", 0, "items", im->items);
	}
	snprintf(summary, sizeof(summary), "import %zu item%s from %s%s", changed,
	         changed == 1 ? "" : "s", im->files[0], im->nfiles > 1 ? " and more" : "");
	(void)n;
	if (ops_commit(im->node, im->txn, summary, im->err) < 0) {
		im->txn = NULL;
		return NULL;
	}
	im->txn = NULL;
	return json_pack("{s:b, s:O}", "changed", 1, "items", im->items);
}

/* On the event loop, with what the worker decoded: every rule checked and
 * the records written in one write transaction. */
static json_t *import_commit(struct import *im)
{
	uint8_t def[PKI_ID_LEN];
	json_t *result = NULL;
	int rc;

	if ((im->items = json_array()) == NULL ||
	    cs_txn_begin(im->node->store, true, &im->txn, im->err) < 0)
		return NULL;
	rc = rec_default(im->txn, def, im->err);
	im->has_default = rc == 0;
	if (rc < 0 || import_certs(im) < 0)
		goto out;
	if (im->name != NULL && im->identities_added > 1) {
		cs_fail(im->err, CS_EUSAGE,
		        "--name names one certificate, but these files hold %zu new ones; import "
		        "them one at a time",
		        im->identities_added);
		goto out;
	}
	for (size_t i = 0; i < im->nkeys; i++)
		if (!im->keys[i].used && imp_import_key(im, &im->keys[i]) < 0)
			goto out;
	if (imp_renew_default(im) < 0)
		goto out;
	result = finish(im);
out:
	if (im->txn != NULL)
		cs_txn_abort(im->txn);
	im->txn = NULL;
	return result;
}

static void import_work(void *arg, const atomic_bool *stop)
{
	struct import_job *job = arg;

	job->rc = decode_files(job, stop) < 0 || collect_keys(&job->im) < 0 ? -1 : 0;
}

static void import_done(void *arg, bool cancelled)
{
	struct import_job *job = arg;
	struct cs_node *node = job->node;
	json_t *result = NULL;
	cs_pos before = node->committed;

	if (cancelled)
		cs_fail(&job->err, CS_EIO,
		        "the agent stopped before the import was done; nothing "
		        "was stored: import again");
	else if (job->rc == 0 && !ops_leading(node))
		cs_fail(&job->err, CS_EREFUSED,
		        "import refused: %s stopped being the primary while the files were read; "
		        "run it on the primary",
		        node->cfg->name);
	else if (job->rc == 0 && ops_batch_begin(node, &job->err) == 0) {
		before = node->committed; /* the store's position: the batch read it */
		result = import_commit(&job->im);
	}
	if (result != NULL && !cs_pos_same(node->committed, before))
		ops_hold_pending(node, job->pending, &job->wait, result);
	else
		cs_control_answer(job->pending, result, &job->err);
	job_free(job);
}

json_t *op_import(struct cs_node *node, json_t *args, cs_err *err)
{
	struct import_job *job = calloc(1, sizeof(*job));

	if (job == NULL) {
		cs_fail(err, CS_EIO, "out of memory");
		return NULL;
	}
	job->node = node;
	job->im.node = node;
	job->im.err = &job->err;
	if (read_request(job, args, err) < 0)
		goto fail;
	job->im.name = job->name;
	if (node->worker == NULL) {
		cs_fail(err, CS_EIO, "the import worker is not running; restart the agent");
		goto fail;
	}
	/* Decoding may take seconds: it runs on the worker, and the answer
	 * comes from import_done, once the change is on disk. */
	if ((job->pending = cs_control_defer(node->ctl)) == NULL) {
		cs_fail(err, CS_EIO, "cannot answer the import later; try again");
		goto fail;
	}
	if (cs_worker_submit(node->worker, import_work, import_done, job) < 0) {
		cs_fail(&job->err, CS_EIO, "out of memory");
		cs_control_answer(job->pending, NULL, &job->err);
		job_free(job);
	}
	return NULL;
fail:
	job_free(job);
	return NULL;
}
