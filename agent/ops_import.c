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
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#include "../common/hex.h"
#include "control.h"
#include "ops.h"
#include "records.h"
#include "worker.h"

#define MAX_FILES 64
#define MAX_MATCH 16

/* One key found in the files of this command. */
struct cmd_key {
	EVP_PKEY *pkey;
	uint8_t spki[PKI_ID_LEN];
	const char *file;
	bool used;
};

struct import {
	struct cs_node *node;
	cs_txn *txn;
	const char *name; /* --name, or NULL */
	pki_bundle bundles[MAX_FILES];
	const char *files[MAX_FILES];
	size_t nfiles;
	struct cmd_key *keys;
	size_t nkeys;
	json_t *items;
	struct spki_index {
		struct spki_ent *v;
		size_t n, cap;
		bool built;
	} index[3];               /* the certificates', the requests' and the CAs' (find_spki) */
	STACK_OF(X509) * issuers; /* CA certificates known: the store's and this command's */
	size_t identities_added;
	bool has_default;
	/* identities of this command that hold their key: one that renews the
	 * default takes over from it */
	struct keyed {
		uint8_t id[PKI_ID_LEN];
		const char *file;
	} * keyed;
	size_t nkeyed, capkeyed;
	cs_err *err;
};

static void add_item(struct import *im, const char *file, const char *action, const char *kind,
                     const uint8_t id[PKI_ID_LEN], const char *name, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

static void add_item(struct import *im, const char *file, const char *action, const char *kind,
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

/* ---- looking up what the store holds ------------------------------------- */

/* Records of one table whose public-key hash equals spki. */
struct spki_walk {
	cs_table table;
	size_t n;
	uint8_t ids[MAX_MATCH][PKI_ID_LEN];
	bool has_key[MAX_MATCH];
};

/* Every record's public-key hash, read once per command: looking each new
 * certificate's key up by reading the whole table made an import of 10,000
 * leaves quadratic. */
struct spki_ent {
	uint8_t spki[PKI_ID_LEN], id[PKI_ID_LEN];
	bool has_key;
};

static int index_add(struct spki_index *x, const uint8_t *spki, const uint8_t *id, bool has_key)
{
	if (x->n == x->cap) {
		size_t cap = x->cap ? 2 * x->cap : 256;
		struct spki_ent *v = realloc(x->v, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		x->v = v;
		x->cap = cap;
	}
	memcpy(x->v[x->n].spki, spki, PKI_ID_LEN);
	memcpy(x->v[x->n].id, id, PKI_ID_LEN);
	x->v[x->n++].has_key = has_key;
	return 0;
}

struct index_walk {
	cs_table table;
	struct spki_index *x;
	cs_err *err;
};

static int index_one(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct index_walk *w = ctx;
	ProtobufCBinaryData spki, sealed;
	Certsync__CertRecord *c = NULL;
	Certsync__RequestRecord *r = NULL;
	int rc = 0;

	if (w->table == CS_TBL_REQUESTS) {
		if ((r = certsync__request_record__unpack(NULL, vlen, val)) == NULL)
			return 0;
		spki = r->spki_sha256;
		sealed = r->sealed_key;
	} else {
		if ((c = certsync__cert_record__unpack(NULL, vlen, val)) == NULL)
			return 0;
		spki = c->spki_sha256;
		sealed = c->sealed_key;
	}
	if (klen == PKI_ID_LEN && spki.len == PKI_ID_LEN &&
	    index_add(w->x, spki.data, key, sealed.len > 0) < 0)
		rc = cs_fail(w->err, CS_EIO, "out of memory");
	certsync__request_record__free_unpacked(r, NULL);
	certsync__cert_record__free_unpacked(c, NULL);
	return rc;
}

static struct spki_index *spki_index_of(struct import *im, cs_table t)
{
	struct spki_index *x = &im->index[t == CS_TBL_REQUESTS ? 1 : t == CS_TBL_CAS ? 2 : 0];
	struct index_walk w = {t, x, im->err};

	if (!x->built && cs_txn_foreach(im->txn, t, index_one, &w, im->err) != 0)
		return NULL;
	x->built = true;
	return x;
}

static int find_spki(struct import *im, cs_table t, const uint8_t spki[PKI_ID_LEN],
                     struct spki_walk *w)
{
	struct spki_index *x = spki_index_of(im, t);

	memset(w, 0, sizeof(*w));
	w->table = t;
	if (x == NULL)
		return -1;
	for (size_t i = 0; i < x->n && w->n < MAX_MATCH; i++) {
		if (memcmp(x->v[i].spki, spki, PKI_ID_LEN) != 0)
			continue;
		memcpy(w->ids[w->n], x->v[i].id, PKI_ID_LEN);
		w->has_key[w->n++] = x->v[i].has_key;
	}
	return 0;
}

/* Keeps the certificates' index in step with a record this command wrote. */
static int index_put(struct import *im, const uint8_t id[PKI_ID_LEN],
                     const uint8_t spki[PKI_ID_LEN], bool has_key)
{
	struct spki_index *x = &im->index[0];

	if (!x->built)
		return 0; /* it is read from the transaction, which holds the record */
	for (size_t i = 0; i < x->n; i++)
		if (memcmp(x->v[i].id, id, PKI_ID_LEN) == 0) {
			x->v[i].has_key = has_key;
			return 0;
		}
	return index_add(x, spki, id, has_key) < 0 ? cs_fail(im->err, CS_EIO, "out of memory") : 0;
}

/* Unseals the key held by record id of table t (a certificate or request). */
static EVP_PKEY *unseal_from(struct import *im, cs_table t, const uint8_t id[PKI_ID_LEN])
{
	const void *val;
	size_t vlen;
	EVP_PKEY *pkey = NULL;
	Certsync__CertRecord *c = NULL;
	Certsync__RequestRecord *r = NULL;

	if (cs_txn_get(im->txn, t, id, PKI_ID_LEN, &val, &vlen, im->err) != 0)
		return NULL;
	if (t == CS_TBL_REQUESTS && (r = certsync__request_record__unpack(NULL, vlen, val)))
		pkey = rec_unseal_key(im->node->key, &r->sealed_key, id, PKI_ID_LEN, im->err);
	else if (t != CS_TBL_REQUESTS && (c = certsync__cert_record__unpack(NULL, vlen, val)))
		pkey = rec_unseal_key(im->node->key, &c->sealed_key, id, PKI_ID_LEN, im->err);
	certsync__request_record__free_unpacked(r, NULL);
	certsync__cert_record__free_unpacked(c, NULL);
	return pkey;
}

/* Takes the pending key with this public-key hash out of the keys table. */
static EVP_PKEY *claim_pending(struct import *im, const uint8_t spki[PKI_ID_LEN])
{
	Certsync__PendingKey *pk;
	const void *val;
	size_t vlen;
	EVP_PKEY *pkey = NULL;

	if (cs_txn_get(im->txn, CS_TBL_KEYS, spki, PKI_ID_LEN, &val, &vlen, im->err) != 0)
		return NULL;
	pk = certsync__pending_key__unpack(NULL, vlen, val);
	if (pk != NULL)
		pkey = rec_unseal_key(im->node->key, &pk->sealed_key, spki, PKI_ID_LEN, im->err);
	certsync__pending_key__free_unpacked(pk, NULL);
	if (pkey != NULL && cs_txn_del(im->txn, CS_TBL_KEYS, spki, PKI_ID_LEN, im->err) < 0) {
		EVP_PKEY_free(pkey);
		return NULL;
	}
	return pkey;
}

static int add_fulfilled(struct import *im, const uint8_t req_id[PKI_ID_LEN],
                         const uint8_t cert_id[PKI_ID_LEN])
{
	Certsync__RequestRecord *r;
	ProtobufCBinaryData *by;
	const void *val;
	size_t vlen;
	int rc;

	if (cs_txn_get(im->txn, CS_TBL_REQUESTS, req_id, PKI_ID_LEN, &val, &vlen, im->err) != 0)
		return -1;
	r = certsync__request_record__unpack(NULL, vlen, val);
	if (r == NULL)
		return cs_fail(im->err, CS_EIO, "a request record does not decode");
	/* Grow the unpacked array by one; protobuf-c frees it with the allocator
	 * it unpacked with, which is malloc. */
	by = realloc(r->fulfilled_by, (r->n_fulfilled_by + 1) * sizeof(*by));
	if (by == NULL) {
		certsync__request_record__free_unpacked(r, NULL);
		return cs_fail(im->err, CS_EIO, "out of memory");
	}
	r->fulfilled_by = by;
	by[r->n_fulfilled_by].data = malloc(PKI_ID_LEN);
	by[r->n_fulfilled_by].len = PKI_ID_LEN;
	if (by[r->n_fulfilled_by].data == NULL) {
		certsync__request_record__free_unpacked(r, NULL);
		return cs_fail(im->err, CS_EIO, "out of memory");
	}
	memcpy(by[r->n_fulfilled_by++].data, cert_id, PKI_ID_LEN);
	rc = rec_put(im->txn, CS_TBL_REQUESTS, req_id, PKI_ID_LEN, &r->base, im->err);
	certsync__request_record__free_unpacked(r, NULL);
	return rc;
}

/* ---- identities ---------------------------------------------------------- */

/* Where a new identity's key came from. */
struct key_source {
	EVP_PKEY *pkey; /* owned */
	const char *what;
	char name[256]; /* name inherited from a request or a renewed certificate */
	bool from_request;
	uint8_t request_id[PKI_ID_LEN];
};

static struct cmd_key *command_key(struct import *im, const uint8_t spki[PKI_ID_LEN])
{
	for (size_t i = 0; i < im->nkeys; i++)
		if (memcmp(im->keys[i].spki, spki, PKI_ID_LEN) == 0)
			return &im->keys[i];
	return NULL;
}

static void inherit_name(struct import *im, cs_table t, const uint8_t id[PKI_ID_LEN],
                         struct key_source *ks)
{
	const void *val;
	size_t vlen;

	if (cs_txn_get(im->txn, t, id, PKI_ID_LEN, &val, &vlen, NULL) != 0)
		return;
	char *name = NULL;
	if (t == CS_TBL_REQUESTS) {
		Certsync__RequestRecord *r = certsync__request_record__unpack(NULL, vlen, val);
		name = r ? strdup(r->name) : NULL;
		certsync__request_record__free_unpacked(r, NULL);
	} else {
		Certsync__CertRecord *c = certsync__cert_record__unpack(NULL, vlen, val);
		name = c ? strdup(c->name) : NULL;
		certsync__cert_record__free_unpacked(c, NULL);
	}
	if (name != NULL)
		snprintf(ks->name, sizeof(ks->name), "%s", name);
	free(name);
}

/* Finds the key of a new identity: in this command, among pending keys, in a
 * request, or in a certificate with the same key (a renewal).  0 with
 * ks->pkey NULL when there is none. */
static int find_key(struct import *im, X509 *x, const uint8_t spki[PKI_ID_LEN],
                    struct key_source *ks)
{
	struct cmd_key *ck = command_key(im, spki);
	struct spki_walk w;

	memset(ks, 0, sizeof(*ks));
	if (ck != NULL && pki_key_matches(x, ck->pkey)) {
		ck->used = true;
		EVP_PKEY_up_ref(ck->pkey);
		ks->pkey = ck->pkey;
		ks->what = "with its key";
		return 0;
	}
	if ((ks->pkey = claim_pending(im, spki)) != NULL) {
		ks->what = "with its pending key";
		return 0;
	}
	if (im->err->code != CS_OK || find_spki(im, CS_TBL_REQUESTS, spki, &w) < 0)
		return -1;
	if (w.n > 0) {
		ks->pkey = unseal_from(im, CS_TBL_REQUESTS, w.ids[0]);
		ks->from_request = true;
		memcpy(ks->request_id, w.ids[0], PKI_ID_LEN);
		inherit_name(im, CS_TBL_REQUESTS, w.ids[0], ks);
		ks->what = "with the key of its request";
		return ks->pkey ? 0 : -1;
	}
	if (find_spki(im, CS_TBL_CERTS, spki, &w) < 0)
		return -1;
	for (size_t i = 0; i < w.n; i++) {
		if (!w.has_key[i])
			continue;
		ks->pkey = unseal_from(im, CS_TBL_CERTS, w.ids[i]);
		inherit_name(im, CS_TBL_CERTS, w.ids[i], ks);
		ks->what = "with the key of the certificate it renews";
		return ks->pkey ? 0 : -1;
	}
	return 0;
}

/* A keyless leaf naming a host that a pending request asks for was most
 * likely issued for another key: refuse it rather than keep a useless copy. */
struct host_walk {
	const pki_cert_info *info;
	char found[256];
};

static int host_clash(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct host_walk *w = ctx;
	Certsync__RequestRecord *r = certsync__request_record__unpack(NULL, vlen, val);
	char sid[9];

	if (r == NULL || klen != PKI_ID_LEN || r->n_fulfilled_by > 0) {
		certsync__request_record__free_unpacked(r, NULL);
		return 0;
	}
	for (size_t i = 0; i < r->n_sans && !*w->found; i++)
		for (size_t j = 0; j < w->info->sans.n && !*w->found; j++)
			if (strcasecmp(r->sans[i], w->info->sans.names[j]) == 0) {
				rec_short_id(key, sid);
				snprintf(w->found, sizeof(w->found), "%s (%s)", sid, r->name);
			}
	certsync__request_record__free_unpacked(r, NULL);
	return *w->found != 0;
}

static int put_identity(struct import *im, const char *file, X509 *x, pki_cert_info *info,
                        const char *name, EVP_PKEY *pkey, const char *source,
                        const uint8_t *request_id)
{
	Certsync__CertRecord rec = CERTSYNC__CERT_RECORD__INIT;
	uint8_t *der;
	size_t derlen;
	int rc;

	if (pki_cert_der(x, &der, &derlen, im->err) < 0)
		return -1;
	rec_cert_describe(&rec, info);
	rec.der = (ProtobufCBinaryData){derlen, der};
	rec.name = (char *)name;
	rec.source = (char *)source;
	rec.created = time(NULL);
	if (request_id != NULL)
		rec.request_id = (ProtobufCBinaryData){PKI_ID_LEN, (uint8_t *)request_id};
	rc = pkey
	         ? rec_seal_key(im->node->key, pkey, info->id, PKI_ID_LEN, &rec.sealed_key, im->err)
	         : 0;
	if (rc == 0)
		rc = rec_put(im->txn, CS_TBL_CERTS, info->id, PKI_ID_LEN, &rec.base, im->err);
	if (rc == 0)
		rc = index_put(im, info->id, info->spki_sha256, pkey != NULL);
	free(rec.sealed_key.data);
	free(der);
	if (rc == 0 && pkey != NULL) {
		if (im->nkeyed == im->capkeyed) {
			size_t cap = im->capkeyed ? 2 * im->capkeyed : 8;
			struct keyed *v = realloc(im->keyed, cap * sizeof(*v));

			if (v == NULL)
				return cs_fail(im->err, CS_EIO, "out of memory");
			im->keyed = v;
			im->capkeyed = cap;
		}
		memcpy(im->keyed[im->nkeyed].id, info->id, PKI_ID_LEN);
		im->keyed[im->nkeyed++].file = file;
	}
	return rc;
}

static int import_identity(struct import *im, const char *file, X509 *x, pki_cert_info *info)
{
	struct key_source ks;
	rec_cert existing = {0};
	struct host_walk hw = {.info = info};
	const char *name;
	char sid[9];
	int rc;

	rec_short_id(info->id, sid);
	if (info->sans.n == 0)
		return cs_fail(im->err, CS_EINPUT,
		               "%s: certificate %s (%s) has no subjectAltName: TLS clients ignore "
		               "the common name, so it would match no host; ask the CA for a "
		               "certificate with SANs",
		               file, sid, info->subject_cn);
	rc = rec_cert_get(im->txn, CS_TBL_CERTS, info->id, &existing, im->err);
	if (rc < 0)
		return -1;
	if (rc == 0) {
		bool attach = existing.rec->sealed_key.len == 0;
		struct cmd_key *ck = attach ? command_key(im, info->spki_sha256) : NULL;

		if (ck != NULL && pki_key_matches(x, ck->pkey)) {
			ck->used = true;
			rc = put_identity(im, file, x, info, existing.rec->name, ck->pkey,
			                  existing.rec->source, NULL);
			if (rc == 0)
				add_item(im, file, "key-attached", "identity", info->id,
				         existing.rec->name,
				         "certificate %s (%s) now holds its key", sid,
				         existing.rec->name);
		} else {
			if (ck != NULL)
				ck->used = true;
			add_item(im, file, "exists", "identity", info->id, existing.rec->name,
			         "certificate %s (%s) is already in the store", sid,
			         existing.rec->name);
		}
		rec_cert_clear(&existing);
		return rc;
	}
	if (find_key(im, x, info->spki_sha256, &ks) < 0)
		return -1;
	if (ks.pkey == NULL) {
		if (cs_txn_foreach(im->txn, CS_TBL_REQUESTS, host_clash, &hw, im->err) < 0 &&
		    !*hw.found)
			return -1;
		if (*hw.found)
			return cs_fail(im->err, CS_EINPUT,
			               "%s: certificate %s (%s) does not match the key of pending "
			               "request %s; was it issued for another request?",
			               file, sid, info->subject_cn, hw.found);
	}
	/* --name must select this certificate alone.  Without it a renewal
	 * keeps the name of the certificate it renews, so both answer to that
	 * name and only their ids tell them apart. */
	if (im->name != NULL && rec_name_unused(im->txn, im->name, false, im->err) < 0) {
		EVP_PKEY_free(ks.pkey);
		return cs_err_prefix(im->err, "%s: ", file);
	}
	name = im->name ? im->name : *ks.name ? ks.name : info->subject_cn;
	rc = put_identity(im, file, x, info, name, ks.pkey, ks.from_request ? "csr" : "import",
	                  ks.from_request ? ks.request_id : NULL);
	if (rc == 0 && ks.from_request)
		rc = add_fulfilled(im, ks.request_id, info->id);
	/* The first identity with its key becomes the default, once valid. */
	if (rc == 0 && ks.pkey != NULL && !im->has_default && info->not_before <= time(NULL) &&
	    time(NULL) < info->not_after) {
		rc = rec_set_default(im->txn, info->id, im->err);
		im->has_default = true;
	}
	if (rc == 0) {
		im->identities_added++;
		if (ks.pkey != NULL)
			add_item(im, file, "added", "identity", info->id, name,
			         "added certificate %s (%s) %s", sid, name, ks.what);
		else
			add_item(im, file, "added", "identity", info->id, name,
			         "added certificate %s (%s) without a key: import its key to "
			         "serve it",
			         sid, name);
	}
	EVP_PKEY_free(ks.pkey);
	return rc;
}

/* A CA certificate whose signature fails is damaged or forged: refused.
 * One whose issuer is not known yet is kept; `cert list` flags it until
 * its issuer arrives.  *unverified tells which. */
static int check_ca_signature(struct import *im, const char *file, X509 *x,
                              const pki_cert_info *info, bool *unverified)
{
	char sid[9];

	if (im->issuers == NULL) {
		if ((im->issuers = rec_ca_pool(im->txn, NULL, im->err)) == NULL)
			return -1;
		for (size_t f = 0; f < im->nfiles; f++)
			for (int i = 0; i < sk_X509_num(im->bundles[f].certs); i++) {
				X509 *c = sk_X509_value(im->bundles[f].certs, i);

				if (X509_check_ca(c) != 0 &&
				    (!X509_up_ref(c) || !sk_X509_push(im->issuers, c)))
					return cs_fail(im->err, CS_EIO, "out of memory");
			}
	}
	rec_short_id(info->id, sid);
	switch (pki_ca_signature(x, im->issuers, true)) {
	case PKI_SIG_BAD:
		return cs_fail(im->err, CS_EINPUT,
		               "%s: CA certificate %s (%s): its signature does not verify with the "
		               "key of %s; the file is damaged or forged: get the certificate "
		               "again from its CA",
		               file, sid, info->subject_cn,
		               strcmp(info->subject, info->issuer) == 0 ? "the certificate itself"
		                                                        : info->issuer);
	case PKI_SIG_UNKNOWN:
		*unverified = true;
		return 0;
	case PKI_SIG_OK:
		break;
	}
	*unverified = false;
	return 0;
}

static int import_ca(struct import *im, const char *file, X509 *x, pki_cert_info *info)
{
	static const char *const kinds[] = {"identity", "intermediate", "root"};
	Certsync__CertRecord rec = CERTSYNC__CERT_RECORD__INIT;
	const char *kind = kinds[info->kind];
	uint8_t *der;
	size_t derlen;
	char sid[9];
	bool unverified = false;
	int rc;

	rec_short_id(info->id, sid);
	rc = cs_txn_get(im->txn, CS_TBL_CAS, info->id, PKI_ID_LEN, &(const void *){0}, &(size_t){0},
	                im->err);
	if (rc < 0)
		return -1;
	if (rc == 0) {
		add_item(im, file, "exists", kind, info->id, info->subject_cn,
		         "CA certificate %s (%s) is already in the store", sid, info->subject_cn);
		return 0;
	}
	if (check_ca_signature(im, file, x, info, &unverified) < 0 ||
	    pki_cert_der(x, &der, &derlen, im->err) < 0)
		return -1;
	rec_cert_describe(&rec, info);
	rec.der = (ProtobufCBinaryData){derlen, der};
	rec.name = info->subject_cn;
	rec.source = "import";
	rec.created = time(NULL);
	rc = rec_put(im->txn, CS_TBL_CAS, info->id, PKI_ID_LEN, &rec.base, im->err);
	free(der);
	if (rc == 0)
		add_item(im, file, "added", kind, info->id, info->subject_cn,
		         "added %s CA certificate %s (%s)%s", kind, sid, info->subject_cn,
		         unverified ? "; signature unverified until its issuer is imported" : "");
	return rc;
}

/* ---- self-signed server certificates marked CA:TRUE -------------------------- */

/* `openssl req -x509` marks CA:TRUE unless told otherwise, and many
 * appliances ship such a certificate as their own.  A self-signed one with
 * subjectAltNames whose key this command brings or a pending key holds is
 * the appliance's identity, not a root: 1 then, 0 when it stays a root. */
static int server_root(struct import *im, X509 *x, const pki_cert_info *info)
{
	struct cmd_key *ck;
	int rc;

	if (info->kind != PKI_KIND_ROOT || info->sans.n == 0)
		return 0;
	/* Already an identity: imported again (a chain file holding it, say),
	 * it stays one and is reported as there, never filed as a root too. */
	rc = cs_txn_get(im->txn, CS_TBL_CERTS, info->id, PKI_ID_LEN, &(const void *){0},
	                &(size_t){0}, im->err);
	if (rc <= 0)
		return rc < 0 ? -1 : 1;
	ck = command_key(im, info->spki_sha256);
	if (ck == NULL || !pki_key_matches(x, ck->pkey)) {
		rc = cs_txn_get(im->txn, CS_TBL_KEYS, info->spki_sha256, PKI_ID_LEN,
		                &(const void *){0}, &(size_t){0}, im->err);
		if (rc != 0)
			return rc < 0 ? -1 : 0;
	}
	/* It becomes an identity: filed as a root by an earlier import
	 * without its key, it leaves the CA pool. */
	rc = cs_txn_del(im->txn, CS_TBL_CAS, info->id, PKI_ID_LEN, im->err);
	return rc < 0 ? -1 : 1;
}

/* ---- keys no certificate of this command claimed ------------------------- */

/* Attaches ck to the keyless certificates of w (in the certs table) or,
 * for w of the CA pool, to a self-signed one with subjectAltNames that came
 * before its key: it moves to the identities.  Counts them in *attached. */
static int attach_to_stored(struct import *im, struct cmd_key *ck, const struct spki_walk *w,
                            size_t *attached)
{
	bool ca = w->table == CS_TBL_CAS;

	for (size_t i = 0; i < w->n; i++) {
		rec_cert c = {0};
		X509 *x;
		pki_cert_info info;
		char sid[9];
		int rc;

		if (w->has_key[i] || rec_cert_get(im->txn, w->table, w->ids[i], &c, im->err))
			continue;
		x = pki_cert_from_der(c.rec->der.data, c.rec->der.len, im->err);
		rc = x && pki_key_matches(x, ck->pkey) ? pki_cert_inspect(x, &info, im->err) : 1;
		if (rc == 0 && ca && (info.kind != PKI_KIND_ROOT || info.sans.n == 0)) {
			pki_cert_info_free(&info);
			rc = 1;
		}
		if (rc == 0) {
			info.kind = PKI_KIND_IDENTITY;
			rc = ca ? cs_txn_del(im->txn, CS_TBL_CAS, w->ids[i], PKI_ID_LEN, im->err)
			        : 0;
			if (rc == 0)
				rc = put_identity(im, ck->file, x, &info, c.rec->name, ck->pkey,
				                  c.rec->source, NULL);
			if (rc == 0 && ca && !im->has_default &&
			    rec_valid_at(c.rec, time(NULL), NULL)) {
				rc = rec_set_default(im->txn, w->ids[i], im->err);
				im->has_default = true;
			}
			rec_short_id(w->ids[i], sid);
			if (rc == 0)
				add_item(
				    im, ck->file, "key-attached", "identity", w->ids[i],
				    c.rec->name, "key joined certificate %s (%s)%s", sid,
				    c.rec->name,
				    ca ? ": self-signed with subjectAltNames, it is an identity "
				         "certificate now"
				       : "");
			(*attached)++;
			pki_cert_info_free(&info);
		}
		X509_free(x);
		rec_cert_clear(&c);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static int import_key(struct import *im, struct cmd_key *ck)
{
	Certsync__PendingKey pk = CERTSYNC__PENDING_KEY__INIT;
	struct spki_walk certs, reqs, cas;
	char sid[9], type[16], holder[9];
	size_t attached = 0;
	int rc;

	rec_short_id(ck->spki, sid);
	if (find_spki(im, CS_TBL_CERTS, ck->spki, &certs) < 0 ||
	    attach_to_stored(im, ck, &certs, &attached) < 0 ||
	    find_spki(im, CS_TBL_REQUESTS, ck->spki, &reqs) < 0)
		return -1;
	if (attached > 0)
		return 0;
	if (find_spki(im, CS_TBL_CAS, ck->spki, &cas) < 0 ||
	    attach_to_stored(im, ck, &cas, &attached) < 0)
		return -1;
	if (attached > 0)
		return 0;
	rc = cs_txn_get(im->txn, CS_TBL_KEYS, ck->spki, PKI_ID_LEN, &(const void *){0},
	                &(size_t){0}, im->err);
	if (rc < 0)
		return -1;
	if (rc == 0 || certs.n > 0 || reqs.n > 0) {
		rec_short_id(certs.n ? certs.ids[0] : reqs.n ? reqs.ids[0] : ck->spki, holder);
		add_item(im, ck->file, "exists", "key", ck->spki, "",
		         "key %s is already in the store (%s %s)", sid,
		         certs.n  ? "certificate"
		         : reqs.n ? "request"
		                  : "pending key",
		         holder);
		return 0;
	}
	pki_key_type(ck->pkey, type, sizeof(type));
	pk.key_type = type;
	pk.created = time(NULL);
	pk.name = im->name ? (char *)im->name : "";
	if (rec_seal_key(im->node->key, ck->pkey, ck->spki, PKI_ID_LEN, &pk.sealed_key, im->err) <
	    0)
		return -1;
	rc = rec_put(im->txn, CS_TBL_KEYS, ck->spki, PKI_ID_LEN, &pk.base, im->err);
	free(pk.sealed_key.data);
	if (rc == 0)
		add_item(im, ck->file, "pending-key", "key", ck->spki, pk.name,
		         "key %s (%s) matches no certificate or request; kept pending until its "
		         "certificate is imported",
		         sid, type);
	return rc;
}

/* ---- renewals of the default ------------------------------------------------ */

/* Whether c, held with its key, can serve now: valid, its chain complete. */
static int ready_to_serve(struct import *im, const rec_cert *c, STACK_OF(X509) * pool, bool *ok)
{
	X509 *x = pki_cert_from_der(c->rec->der.data, c->rec->der.len, im->err);
	STACK_OF(X509) *chain = NULL;
	bool complete = false;
	int rc = x != NULL ? pki_chain_build(x, pool, true, &chain, &complete, im->err) : -1;

	*ok = rc == 0 && complete && rec_valid_at(c->rec, time(NULL), NULL);
	sk_X509_pop_free(chain, X509_free);
	X509_free(x);
	return rc;
}

/* An identity of this command that renews the default (its key or its
 * names, later expiry), holds its key, is valid now and has its whole
 * chain becomes the default; the latest-expiring one when several do. */
static int renew_default(struct import *im)
{
	rec_cert d = {0}, best = {0};
	const char *best_file = NULL;
	uint8_t def[PKI_ID_LEN];
	STACK_OF(X509) *pool = NULL;
	char sid[9], did[9];
	int rc = 0;

	if (im->nkeyed == 0 || (rc = rec_default(im->txn, def, im->err)) != 0 ||
	    (rc = rec_cert_get(im->txn, CS_TBL_CERTS, def, &d, im->err)) != 0)
		return rc < 0 ? -1 : 0;
	if ((pool = rec_ca_pool(im->txn, NULL, im->err)) == NULL)
		rc = -1;
	for (size_t i = 0; rc == 0 && i < im->nkeyed; i++) {
		rec_cert c = {0};
		bool ok = false;
		int got = memcmp(im->keyed[i].id, def, PKI_ID_LEN) == 0
		              ? 1
		              : rec_cert_get(im->txn, CS_TBL_CERTS, im->keyed[i].id, &c, im->err);

		if (got != 0) {
			rc = got < 0 ? -1 : 0;
			continue;
		}
		if (rec_renews(c.rec, d.rec) &&
		    (best.rec == NULL || c.rec->not_after > best.rec->not_after) &&
		    (rc = ready_to_serve(im, &c, pool, &ok)) == 0 && ok) {
			rec_cert_clear(&best);
			best = c;
			best_file = im->keyed[i].file;
			continue;
		}
		rec_cert_clear(&c);
	}
	if (rc == 0 && best.rec != NULL && (rc = rec_set_default(im->txn, best.id, im->err)) == 0) {
		rec_short_id(best.id, sid);
		rec_short_id(d.id, did);
		add_item(im, best_file, "default", "identity", best.id, best.rec->name,
		         "certificate %s (%s) renews the default %s (%s) and is now the default; "
		         "`certsync cert default %s` chooses the old one again",
		         sid, best.rec->name, did, d.rec->name, did);
	}
	sk_X509_pop_free(pool, X509_free);
	rec_cert_clear(&best);
	rec_cert_clear(&d);
	return rc;
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
			if ((rc = server_root(im, sk_X509_value(certs, i), &info)) < 0) {
				pki_cert_info_free(&info);
				return -1;
			}
			if (rc > 0)
				info.kind = PKI_KIND_IDENTITY;
			rc = info.kind == PKI_KIND_IDENTITY
			         ? import_identity(im, im->files[f], sk_X509_value(certs, i), &info)
			         : import_ca(im, im->files[f], sk_X509_value(certs, i), &info);
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
		if (!im->keys[i].used && import_key(im, &im->keys[i]) < 0)
			goto out;
	if (renew_default(im) < 0)
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
