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
#include "../common/log.h"
#include "../replication/repl.h"
#include "control.h"
#include "import.h"
#include "ops.h"
#include "spki_map.h"

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

/* One import command between its first request and its commit.  A command
 * of many files comes in parts (see read_files), each request one part; the
 * files of every part stay here, in the requests' own JSON (references), and
 * what the worker decoded from them piles up in im until the last part
 * commits the lot in one transaction.  A command of one request is a
 * command of one part. */
struct import_job {
	char *password; /* sodium_malloc'd, or NULL */
	char *name;     /* --name, or NULL */
	json_t *files;  /* every part's {"name", "data"} objects; "data" goes once decoded */
	size_t bytes;   /* of the files' data, every part */
	char token[33]; /* the session a later part names, in hex */
	time_t last;    /* when the last part came */
	bool busy;      /* a part of it is on the worker */
	struct import im;
};

/* One request of a command: a part, or the whole of it. */
struct import_part {
	ops_deferred d; /* first: the part is run as one (ops_defer.c) */
	struct import_job *job;
	bool last;      /* commits the command */
	json_t *result; /* the answer, when the worker wrote the change */
};

/* Parts of one command may come at most this far apart. */
#define SESSION_IDLE_S 60

/* Frees what was decoded (wiping it: keys); the answer's items stay.  For
 * a large command this is a good part of a second of wiping, done on the
 * worker once the change is written. */
static void release_decoded(struct import *im)
{
	for (size_t i = 0; i < im->nfiles; i++)
		pki_bundle_free(&im->bundles[i]);
	im->nfiles = 0;
	free(im->keys);
	im->keys = NULL;
	im->nkeys = 0;
	spki_map_free(&im->keymap);
	sk_X509_pop_free(im->issuers, X509_free);
	im->issuers = NULL;
	for (int t = 0; t < 3; t++) {
		free(im->index[t].v);
		spki_map_free(&im->index[t].map);
		im->index[t] = (struct spki_index){0};
	}
}

static void job_free(struct import_job *job)
{
	release_decoded(&job->im);
	free(job->im.bundles);
	free(job->im.files);
	sodium_free(job->password);
	free(job->name);
	free(job->im.keyed);
	json_decref(job->im.items);
	json_decref(job->files);
	free(job);
}

void ops_import_close(struct cs_node *node)
{
	if (node->import_session != NULL)
		job_free(node->import_session);
	node->import_session = NULL;
}

/* Runs on the loop once the part's answer went (or could not go): a
 * command whose part failed, or whose last part ran, is over. */
static void part_free(ops_deferred *d)
{
	struct import_part *p = (struct import_part *)d;
	struct import_job *job = p->job;

	job->busy = false;
	job->last = time(NULL);
	json_decref(p->result); /* not answered: the agent stopped */
	if (p->last || d->rc != 0 || !d->ran || d->err.code != CS_OK) {
		if (d->node->import_session == job)
			d->node->import_session = NULL;
		job_free(job);
	}
	free(p);
}

static char *secret_copy(const char *s)
{
	size_t n = strlen(s) + 1;
	char *c = sodium_malloc(n);

	if (c != NULL)
		memcpy(c, s, n);
	return c;
}

/* The command this part belongs to: a new one, or the session args.session
 * names.  A command whose parts stopped coming is dropped when the next one
 * starts. */
static struct import_job *find_job(struct cs_node *node, json_t *args, cs_err *err)
{
	const char *session, *password, *name;
	struct import_job *job = node->import_session;
	uint8_t token[16];

	if (ops_arg_string(args, "session", false, &session, err) < 0)
		return NULL;
	if (job != NULL && !job->busy && time(NULL) - job->last > SESSION_IDLE_S) {
		ops_import_close(node);
		job = NULL;
	}
	if (session != NULL) {
		if (job == NULL || strcmp(session, job->token) != 0) {
			cs_fail(
			    err, CS_EREFUSED,
			    "import: no import in parts named %.40s is open (its parts came more "
			    "than %d s apart, or one of them failed); run the import again",
			    session, SESSION_IDLE_S);
			return NULL;
		}
		if (job->busy) {
			cs_fail(err, CS_EREFUSED,
			        "import: the part before this one is still running");
			return NULL;
		}
		return job;
	}
	if (ops_arg_string(args, "password", false, &password, err) < 0 ||
	    ops_arg_string(args, "name", false, &name, err) < 0)
		return NULL;
	if ((job = calloc(1, sizeof(*job))) == NULL || (job->files = json_array()) == NULL ||
	    (password != NULL && (job->password = secret_copy(password)) == NULL) ||
	    (name != NULL && (job->name = strdup(name)) == NULL)) {
		if (job != NULL)
			job_free(job);
		cs_fail(err, CS_EIO, "out of memory");
		return NULL;
	}
	randombytes_buf(token, sizeof(token));
	cs_hex(token, sizeof(token), job->token);
	job->im.node = node;
	job->im.name = job->name;
	return job;
}

/* On the event loop: the part's files, checked and kept (by reference:
 * their data may be a key, and the JSON's memory is wiped when freed). */
static int read_files(struct import_job *job, json_t *args, cs_err *err)
{
	json_t *files = json_object_get(args, "files"), *f;
	size_t i, bytes = job->bytes;

	if (!json_is_array(files) || json_array_size(files) == 0)
		return cs_fail(err, CS_EUSAGE, "import needs at least 1 file");
	if (json_array_size(job->files) + json_array_size(files) > IMPORT_MAX_FILES)
		return cs_fail(err, CS_EINPUT,
		               "import: more than %d files in one command; import them in "
		               "several commands",
		               IMPORT_MAX_FILES);
	json_array_foreach(files, i, f)
	{
		json_t *name = json_object_get(f, "name"), *data = json_object_get(f, "data");

		if (!json_is_string(name) || !json_is_string(data))
			return cs_fail(err, CS_EUSAGE,
			               "control request: args.files[%zu] needs \"name\" and "
			               "\"data\" (base64)",
			               i);
		bytes += json_string_length(data) / 4 * 3;
	}
	if (bytes > IMPORT_MAX_BYTES)
		return cs_fail(err, CS_EINPUT,
		               "import: the files of one command hold more than %zu MiB; import "
		               "them in several commands",
		               IMPORT_MAX_BYTES >> 20);
	job->bytes = bytes;
	return json_array_extend(job->files, files) == 0 ? 0
	                                                 : cs_fail(err, CS_EIO, "out of memory");
}

static int grow_files(struct import *im, size_t n)
{
	pki_bundle *b;
	const char **f;
	size_t cap = im->capfiles;

	if (n <= cap)
		return 0;
	while (cap < n)
		cap = cap ? 2 * cap : 64;
	if ((b = realloc(im->bundles, cap * sizeof(*b))) != NULL)
		im->bundles = b;
	if ((f = realloc(im->files, cap * sizeof(*f))) != NULL)
		im->files = f;
	if (b == NULL || f == NULL)
		return cs_fail(im->err, CS_EIO, "out of memory");
	memset(b + im->capfiles, 0, (cap - im->capfiles) * sizeof(*b));
	im->capfiles = cap;
	return 0;
}

/* Decodes the files the earlier parts did not: each file's base64 into one
 * wiped buffer, then its formats; its data leaves the JSON once decoded. */
static int decode_files(struct import_job *job, const atomic_bool *stop)
{
	struct import *im = &job->im;
	size_t n = json_array_size(job->files), cap = 0, len;
	uint8_t *buf = NULL;
	int rc = 0;

	if (grow_files(im, n) < 0)
		return -1;
	for (size_t i = im->nfiles; rc == 0 && i < n; i++) {
		json_t *f = json_array_get(job->files, i);
		const char *name = json_string_value(json_object_get(f, "name"));
		const char *b64 = json_string_value(json_object_get(f, "data"));
		size_t blen = strlen(b64);

		if (atomic_load(stop)) {
			rc = cs_fail(im->err, CS_EIO, "the agent is stopping; import again");
			break;
		}
		if (blen + 1 > cap) {
			sodium_free(buf);
			cap = blen + 1 > 4096 ? blen + 1 : 4096;
			if ((buf = sodium_malloc(cap)) == NULL) {
				rc = cs_fail(im->err, CS_EIO, "out of memory");
				break;
			}
		}
		if (sodium_base642bin(buf, cap, b64, blen, NULL, &len, NULL,
		                      sodium_base64_VARIANT_ORIGINAL) != 0) {
			rc = cs_fail(im->err, CS_EUSAGE,
			             "control request: the data of file %s is not base64", name);
			break;
		}
		rc = pki_decode(buf, len, job->password, name, &im->bundles[i], im->err);
		sodium_memzero(buf, len); /* the file may be a key */
		json_object_del(f, "data");
		im->files[i] = name;
		if (rc == 0)
			im->nfiles = i + 1;
	}
	sodium_free(buf);
	return rc;
}

/* The hash of key's public half, from a certificate of its own file that
 * holds it when there is one (the usual key + certificate file): hashing
 * the key itself runs OpenSSL 3.0's encoders. */
static int key_spki(struct import *im, size_t file, EVP_PKEY *key, uint8_t out[PKI_ID_LEN])
{
	STACK_OF(X509) *certs = im->bundles[file].certs;

	for (int c = 0; c < sk_X509_num(certs); c++) {
		if (pki_key_matches(sk_X509_value(certs, c), key))
			return pki_cert_spki_hash(sk_X509_value(certs, c), out, im->err);
	}
	return pki_key_spki_hash(key, out, im->err);
}

static int collect_keys(struct import *im)
{
	size_t total = 0, n = 0, at;

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
			if (key_spki(im, i, ck->pkey, ck->spki) < 0)
				return -1;
			/* The same key twice in one command counts once. */
			if (spki_map_find(&im->keymap, ck->spki, &at, 1) > 0)
				continue;
			if (spki_map_add(&im->keymap, ck->spki, n) < 0)
				return cs_fail(im->err, CS_EIO, "out of memory");
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
			if (info.sans.n > PKI_MAX_SANS) {
				char sid[9];

				rec_short_id(info.id, sid);
				cs_fail(im->err, CS_EINPUT,
				        "%s: certificate %s (%s) has %zu names (subjectAltName), "
				        "over the limit of %d per certificate; split its names "
				        "over several certificates",
				        im->files[f], sid, info.subject_cn, info.sans.n,
				        PKI_MAX_SANS);
				pki_cert_info_free(&info);
				return -1;
			}
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
			/* every refusal names the file, the store's limits too */
			if (rc < 0 && strstr(im->err->msg, im->files[f]) == NULL)
				cs_err_prefix(im->err, "%s: ", im->files[f]);
			if (rc < 0)
				return -1;
		}
		if (cs_txn_log_bytes(im->txn) >= IMPORT_ENTRY_BYTES &&
		    cs_txn_log_split(im->txn, "import (one part of a large command)", im->err) < 0)
			return -1;
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
	if (im->on_worker) {
		/* the loop tells the log, replication and the TLS endpoint */
		snprintf(im->summary, sizeof(im->summary), "%s", summary);
		im->committed = cs_txn_commit(im->txn, summary, &im->pos, im->err) == 0;
		im->txn = NULL;
		if (!im->committed)
			return NULL;
	} else if (ops_commit(im->node, im->txn, summary, im->err) < 0) {
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
	    (im->on_worker ? ops_exclusive_begin(im->node, &im->txn, im->err)
	                   : cs_txn_begin(im->node->store, true, &im->txn, im->err)) < 0)
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

static size_t count_certs(const struct import *im)
{
	size_t n = 0;

	for (size_t i = 0; i < im->nfiles; i++)
		n += (size_t)sk_X509_num(im->bundles[i].certs);
	return n;
}

static int import_work(ops_deferred *d, const atomic_bool *stop)
{
	struct import_part *p = (struct import_part *)d;
	struct import *im = &p->job->im;

	if (decode_files(p->job, stop) < 0)
		return -1;
	if (!p->last)
		return 0;
	if (collect_keys(im) < 0)
		return -1;
	if (count_certs(im) <= IMPORT_LOOP_CERTS)
		return 0; /* the loop writes it, with the other changes of its pass */
	/* The change is written here; the loop then tells the others and
	 * answers (import_finish), so it does not open a batch for it. */
	im->on_worker = true;
	d->change = false;
	p->result = import_commit(im);
	ops_exclusive_end();
	release_decoded(im);
	return p->result != NULL ? 0 : -1;
}

static json_t *import_finish(ops_deferred *d, cs_err *err)
{
	struct import_part *p = (struct import_part *)d;
	struct import_job *job = p->job;

	(void)err; /* the import's rules fill d->err, which err is */
	json_t *result = p->result;
	struct cs_node *node = d->node;

	if (!p->last)
		return json_pack("{s:s, s:I}", "session", job->token, "files",
		                 (json_int_t)job->im.nfiles);
	if (!job->im.on_worker)
		return import_commit(&job->im);
	p->result = NULL;
	if (!job->im.committed)
		return result; /* nothing changed */
	/* What ops_commit and the batch's flush do for a change of the loop. */
	cs_info("change %llu.%llu: %s", (unsigned long long)job->im.pos.epoch,
	        (unsigned long long)job->im.pos.seq, job->im.summary);
	node->committed = job->im.pos;
	if (node->repl != NULL)
		repl_committed(node->repl);
	ops_reload_tls(node);
	ops_wait(node, d->pending, d->wait.mode, d->wait.timeout_ms, job->im.pos, result);
	d->answered = true;
	return NULL;
}

/* A command in parts: every part but the last has args.more true and, but
 * the first, the session the first one's answer named; the last commits. */
json_t *op_import(struct cs_node *node, json_t *args, cs_err *err)
{
	struct import_part *p = calloc(1, sizeof(*p));
	struct import_job *job;
	bool more = json_is_true(json_object_get(args, "more"));

	if (p == NULL) {
		cs_fail(err, CS_EIO, "out of memory");
		return NULL;
	}
	p->d = (ops_deferred){.node = node,
	                      .cmd = "import",
	                      .change = !more,
	                      .work = import_work,
	                      .finish = import_finish,
	                      .free = part_free};
	if ((job = find_job(node, args, err)) == NULL ||
	    (!more && ops_wait_args(node, args, &p->d.wait, err) < 0) ||
	    read_files(job, args, err) < 0) {
		if (job != NULL && job != node->import_session)
			job_free(job);
		else if (job != NULL)
			ops_import_close(node); /* a bad part ends its command */
		free(p);
		return NULL;
	}
	if (more && node->import_session == NULL) {
		/* one command in parts at a time: their files fill memory */
		node->import_session = job;
	} else if (more && node->import_session != job) {
		job_free(job);
		free(p);
		cs_fail(err, CS_EREFUSED,
		        "import: another import in parts is being sent; run this one when it is "
		        "done");
		return NULL;
	}
	p->job = job;
	p->last = !more;
	job->busy = true;
	job->im.err = &p->d.err;
	/* Decoding may take seconds: it runs on the worker, and the last
	 * part's answer comes once the change is on disk. */
	return ops_defer(&p->d, err);
}
