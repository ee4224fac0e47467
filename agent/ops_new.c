/* ops_new.c — new keys: self-signed certificates and certificate signing
 * requests, and the requests' listing.  The key is made and sealed on the
 * worker, then stored in one transaction on the loop; its plaintext never
 * leaves this process. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../common/hex.h"
#include "ops.h"
#include "records.h"

#define MAX_SANS 100

/* The subject and key options shared by `cert self-signed` and `csr create`;
 * strings point into args. */
struct new_args {
	const char *name, *keyspec;
	pki_keyspec spec;
	pki_subject subj;
	const char *sans[MAX_SANS];
	json_t *notes;
};

static int read_new_args(json_t *args, struct new_args *a, cs_err *err)
{
	json_t *sans = json_object_get(args, "sans"), *days = json_object_get(args, "days");
	const char *note_fields[] = {"country", "state", "locality", "org", "unit", "common_name"};
	const char **slots[] = {&a->subj.country, &a->subj.state, &a->subj.locality,
	                        &a->subj.org,     &a->subj.unit,  &a->subj.common_name};
	char note[512] = "";
	pki_sans checked = {0};
	size_t i;

	memset(a, 0, sizeof(*a));
	if (ops_arg_string(args, "name", true, &a->name, err) < 0 ||
	    ops_arg_string(args, "key", false, &a->keyspec, err) < 0)
		return -1;
	for (i = 0; i < 6; i++)
		if (ops_arg_string(args, note_fields[i], i == 0 || i == 5, slots[i], err) < 0)
			return -1;
	if (*a->name == '\0')
		return cs_fail(err, CS_EUSAGE, "--name must not be empty");
	if (pki_keyspec_parse(a->keyspec ? a->keyspec : "ec:p256", &a->spec, err) < 0)
		return -1;
	if (sans != NULL && (!json_is_array(sans) || json_array_size(sans) > MAX_SANS))
		return cs_fail(err, CS_EUSAGE,
		               "control request: args.sans must be an array of "
		               "at most %d strings",
		               MAX_SANS);
	for (i = 0; i < json_array_size(sans); i++) {
		a->sans[i] = json_string_value(json_array_get(sans, i));
		if (a->sans[i] == NULL)
			return cs_fail(err, CS_EUSAGE,
			               "control request: args.sans[%zu] must be a "
			               "string",
			               i);
	}
	a->subj.sans = a->sans;
	a->subj.nsans = json_array_size(sans);
	if (days != NULL && !json_is_integer(days))
		return cs_fail(err, CS_EUSAGE, "control request: args.days must be an integer");
	a->subj.days = days ? (int)json_integer_value(days) : 0;
	if (pki_subject_check(&a->subj, &checked, note, sizeof(note), err) < 0)
		return -1;
	pki_sans_free(&checked);
	a->notes = json_array();
	if (*note)
		json_array_append_new(a->notes, json_string(note));
	return 0;
}

/* One `cert self-signed` or `csr create`.  The key is made, the
 * certificate or request signed and the key sealed on the worker (an
 * RSA-4096 key takes seconds); the record is stored on the loop. */
struct new_job {
	ops_deferred d; /* first: the job is run as one (ops_defer.c) */
	json_t *args;   /* a reference: the strings of a point into it */
	struct new_args a;
	bool csr;
	/* the cluster key when the command came: `cluster rekey` may replace
	 * the node's meanwhile (the old one stays until the agent stops) */
	const cs_key *seal_key;
	/* made on the worker */
	EVP_PKEY *key; /* freed (its secret numbers cleared) once sealed */
	X509 *x;
	X509_REQ *req;
	pki_cert_info info;
	uint8_t id[PKI_ID_LEN], *der;
	size_t derlen;
	char *pem;
	ProtobufCBinaryData sealed;
};

static void new_free(ops_deferred *d)
{
	struct new_job *j = (struct new_job *)d;

	EVP_PKEY_free(j->key);
	X509_free(j->x);
	X509_REQ_free(j->req);
	pki_cert_info_free(&j->info);
	free(j->der);
	free(j->pem);
	free(j->sealed.data);
	json_decref(j->a.notes);
	json_decref(j->args);
	free(j);
}

static int new_work(ops_deferred *d, const atomic_bool *stop)
{
	struct new_job *j = (struct new_job *)d;
	cs_err *err = &d->err;
	int rc;

	if ((j->key = pki_key_generate_until(j->a.spec, stop, err)) == NULL)
		return -1;
	if (j->csr) {
		rc = (j->req = pki_csr(j->key, &j->a.subj, err)) == NULL ||
		             pki_csr_inspect(j->req, &j->info, err) < 0 ||
		             pki_csr_der(j->req, &j->der, &j->derlen, err) < 0 ||
		             (j->pem = pki_csr_pem(j->req, err)) == NULL
		         ? -1
		         : 0;
		/* A request's id is the SHA-256 of its DER, like a certificate's. */
		if (rc == 0)
			crypto_hash_sha256(j->id, j->der, j->derlen);
	} else {
		rc = (j->x = pki_self_signed(j->key, &j->a.subj, err)) == NULL ||
		             pki_cert_inspect(j->x, &j->info, err) < 0 ||
		             pki_cert_der(j->x, &j->der, &j->derlen, err) < 0
		         ? -1
		         : 0;
		if (rc == 0)
			memcpy(j->id, j->info.id, PKI_ID_LEN);
	}
	if (rc == 0)
		rc = rec_seal_key(j->seal_key, j->key, j->id, PKI_ID_LEN, &j->sealed, err);
	EVP_PKEY_free(j->key); /* sealed or given up: the plaintext goes now */
	j->key = NULL;
	return rc;
}

/* A key sealed under a key the store is no longer sealed under would never
 * open again. */
static int still_sealed_under(const struct new_job *j, cs_err *err)
{
	if (j->seal_key == j->d.node->key)
		return 0;
	return cs_fail(err, CS_EREFUSED,
	               "%s refused: the cluster passphrase changed (cluster rekey) while the key "
	               "was made; nothing was stored: run it again",
	               j->d.cmd);
}

static json_t *self_signed_finish(ops_deferred *d, cs_err *err)
{
	struct new_job *j = (struct new_job *)d;
	Certsync__CertRecord rec = CERTSYNC__CERT_RECORD__INIT;
	uint8_t def[PKI_ID_LEN];
	char summary[160], sid[9];
	rec_cert c = {0};
	cs_txn *txn = NULL;
	bool make_default;

	rec_cert_describe(&rec, &j->info);
	rec.der = (ProtobufCBinaryData){j->derlen, j->der};
	rec.name = (char *)j->a.name;
	rec.source = "self-signed";
	rec.created = time(NULL);
	rec.sealed_key = j->sealed;
	if (still_sealed_under(j, err) < 0 || cs_txn_begin(d->node->store, true, &txn, err) < 0 ||
	    rec_name_unused(txn, j->a.name, false, err) < 0)
		goto fail;
	/* The first identity with a key becomes the default: a node with one
	 * certificate should serve it without a second command. */
	make_default = rec_default(txn, def, err) == 1;
	if (rec_put(txn, CS_TBL_CERTS, j->id, PKI_ID_LEN, &rec.base, err) < 0 ||
	    (make_default && rec_set_default(txn, j->id, err) < 0))
		goto fail;
	rec_short_id(j->id, sid);
	snprintf(summary, sizeof(summary), "self-signed %s (%s)", sid, j->a.name);
	if (ops_commit(d->node, txn, summary, err) < 0)
		return NULL;
	c.table = CS_TBL_CERTS;
	c.rec = &rec;
	memcpy(c.id, j->id, PKI_ID_LEN);
	if (make_default)
		json_array_append_new(j->a.notes, json_string("it is now the default certificate"));
	return json_pack("{s:o, s:O, s:b}", "certificate",
	                 rec_cert_json(&c, make_default, NULL, time(NULL)), "notes", j->a.notes,
	                 "default", make_default);
fail:
	if (txn != NULL)
		cs_txn_abort(txn);
	return NULL;
}

static json_t *csr_finish(ops_deferred *d, cs_err *err)
{
	struct new_job *j = (struct new_job *)d;
	Certsync__RequestRecord rec = CERTSYNC__REQUEST_RECORD__INIT;
	char summary[160], sid[9];
	cs_txn *txn = NULL;

	rec.csr_der = (ProtobufCBinaryData){j->derlen, j->der};
	rec.name = (char *)j->a.name;
	rec.key_type = j->info.key_type;
	rec.subject = j->info.subject;
	rec.subject_cn = j->info.subject_cn;
	rec.n_sans = j->info.sans.n;
	rec.sans = j->info.sans.names;
	rec.created = time(NULL);
	rec.spki_sha256 = (ProtobufCBinaryData){PKI_ID_LEN, j->info.spki_sha256};
	rec.sealed_key = j->sealed;
	if (still_sealed_under(j, err) < 0 || cs_txn_begin(d->node->store, true, &txn, err) < 0 ||
	    /* among certificates too: the one that fulfils it inherits the name */
	    rec_name_unused(txn, j->a.name, true, err) < 0 ||
	    rec_put(txn, CS_TBL_REQUESTS, j->id, PKI_ID_LEN, &rec.base, err) < 0) {
		if (txn != NULL)
			cs_txn_abort(txn);
		return NULL;
	}
	rec_short_id(j->id, sid);
	snprintf(summary, sizeof(summary), "csr %s (%s)", sid, j->a.name);
	if (ops_commit(d->node, txn, summary, err) < 0)
		return NULL;
	return json_pack("{s:o, s:s, s:O}", "request", rec_request_json(j->id, &rec), "pem", j->pem,
	                 "notes", j->a.notes);
}

/* Checks the arguments on the loop (bad input is answered at once) and
 * queues the rest. */
static json_t *new_key(struct cs_node *node, json_t *args, bool csr, cs_err *err)
{
	struct new_job *j = calloc(1, sizeof(*j));

	if (j == NULL) {
		cs_fail(err, CS_EIO, "out of memory");
		return NULL;
	}
	j->d = (ops_deferred){.node = node,
	                      .cmd = csr ? "csr create" : "cert self-signed",
	                      .change = true,
	                      .work = new_work,
	                      .finish = csr ? csr_finish : self_signed_finish,
	                      .free = new_free};
	j->csr = csr;
	j->seal_key = node->key;
	j->args = json_incref(args);
	if (read_new_args(args, &j->a, err) < 0 || ops_wait_args(node, args, &j->d.wait, err) < 0) {
		new_free(&j->d);
		return NULL;
	}
	return ops_defer(&j->d, err);
}

json_t *op_self_signed(struct cs_node *node, json_t *args, cs_err *err)
{
	return new_key(node, args, false, err);
}

json_t *op_csr_create(struct cs_node *node, json_t *args, cs_err *err)
{
	return new_key(node, args, true, err);
}

struct req_walk {
	json_t *out;
	cs_err *err;
};

static int list_request(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct req_walk *w = ctx;
	Certsync__RequestRecord *r = certsync__request_record__unpack(NULL, vlen, val);

	if (r == NULL || klen != PKI_ID_LEN) {
		certsync__request_record__free_unpacked(r, NULL);
		return cs_fail(w->err, CS_EIO, "a request record does not decode");
	}
	json_array_append_new(w->out, rec_request_json(key, r));
	certsync__request_record__free_unpacked(r, NULL);
	return 0;
}

json_t *op_csr_list(struct cs_node *node, json_t *args, cs_err *err)
{
	struct req_walk w = {json_array(), err};
	cs_txn *txn;
	int rc;

	(void)args;
	if (cs_txn_begin(node->store, false, &txn, err) < 0) {
		json_decref(w.out);
		return NULL;
	}
	rc = cs_txn_foreach(txn, CS_TBL_REQUESTS, list_request, &w, err);
	cs_txn_abort(txn);
	if (rc != 0) {
		json_decref(w.out);
		return NULL;
	}
	return json_pack("{s:o}", "requests", w.out);
}

json_t *op_csr_show(struct cs_node *node, json_t *args, cs_err *err)
{
	Certsync__RequestRecord *r = NULL;
	uint8_t id[PKI_ID_LEN];
	const char *ref;
	X509_REQ *req = NULL;
	char *pem = NULL;
	json_t *j = NULL;
	cs_txn *txn;

	if (ops_arg_string(args, "id", true, &ref, err) < 0 ||
	    cs_txn_begin(node->store, false, &txn, err) < 0)
		return NULL;
	if (rec_request_find(txn, ref, id, &r, err) == 0 &&
	    (req = pki_csr_from_der(r->csr_der.data, r->csr_der.len, err)) != NULL &&
	    (pem = pki_csr_pem(req, err)) != NULL) {
		j = rec_request_json(id, r);
		json_object_set_new(j, "pem", json_string(pem));
	}
	free(pem);
	X509_REQ_free(req);
	certsync__request_record__free_unpacked(r, NULL);
	cs_txn_abort(txn);
	return j;
}
