/* ops_new.c — new keys: self-signed certificates and certificate signing
 * requests, and the requests' listing.  The key is made, sealed and stored
 * in one transaction; its plaintext never leaves this process. */
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

json_t *op_self_signed(struct cs_node *node, json_t *args, cs_err *err)
{
	Certsync__CertRecord rec = CERTSYNC__CERT_RECORD__INIT;
	uint8_t def[PKI_ID_LEN], *der = NULL;
	char summary[160], sid[9];
	struct new_args a;
	pki_cert_info info = {0};
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	json_t *result = NULL;
	rec_cert c = {0};
	cs_txn *txn = NULL;
	bool make_default = false;
	size_t derlen;

	if (read_new_args(args, &a, err) < 0)
		return NULL;
	if ((key = pki_key_generate(a.spec, err)) == NULL ||
	    (x = pki_self_signed(key, &a.subj, err)) == NULL ||
	    pki_cert_inspect(x, &info, err) < 0 || pki_cert_der(x, &der, &derlen, err) < 0)
		goto out;
	rec_cert_describe(&rec, &info);
	rec.der = (ProtobufCBinaryData){derlen, der};
	rec.name = (char *)a.name;
	rec.source = "self-signed";
	rec.created = time(NULL);
	if (rec_seal_key(node->key, key, info.id, PKI_ID_LEN, &rec.sealed_key, err) < 0 ||
	    cs_txn_begin(node->store, true, &txn, err) < 0 ||
	    rec_name_unused(txn, a.name, false, err) < 0)
		goto out;
	/* The first identity with a key becomes the default: a node with one
	 * certificate should serve it without a second command. */
	make_default = rec_default(txn, def, err) == 1;
	if (rec_put(txn, CS_TBL_CERTS, info.id, PKI_ID_LEN, &rec.base, err) < 0 ||
	    (make_default && rec_set_default(txn, info.id, err) < 0))
		goto out;
	rec_short_id(info.id, sid);
	snprintf(summary, sizeof(summary), "self-signed %s (%s)", sid, a.name);
	if (ops_commit(node, txn, summary, err) < 0) {
		txn = NULL;
		goto out;
	}
	txn = NULL;
	c.table = CS_TBL_CERTS;
	c.rec = &rec;
	memcpy(c.id, info.id, PKI_ID_LEN);
	if (make_default)
		json_array_append_new(a.notes, json_string("it is now the default certificate"));
	result = json_pack("{s:o, s:O, s:b}", "certificate",
	                   rec_cert_json(&c, make_default, NULL, time(NULL)), "notes", a.notes,
	                   "default", make_default);
out:
	if (txn != NULL)
		cs_txn_abort(txn);
	json_decref(a.notes);
	free(rec.sealed_key.data);
	free(der);
	pki_cert_info_free(&info);
	X509_free(x);
	EVP_PKEY_free(key);
	return result;
}

json_t *op_csr_create(struct cs_node *node, json_t *args, cs_err *err)
{
	Certsync__RequestRecord rec = CERTSYNC__REQUEST_RECORD__INIT;
	uint8_t id[PKI_ID_LEN], *der = NULL;
	char summary[160], sid[9], *pem = NULL;
	struct new_args a;
	pki_cert_info info = {0};
	EVP_PKEY *key = NULL;
	X509_REQ *req = NULL;
	json_t *result = NULL;
	cs_txn *txn = NULL;
	size_t derlen;

	if (read_new_args(args, &a, err) < 0)
		return NULL;
	if ((key = pki_key_generate(a.spec, err)) == NULL ||
	    (req = pki_csr(key, &a.subj, err)) == NULL || pki_csr_inspect(req, &info, err) < 0 ||
	    pki_csr_der(req, &der, &derlen, err) < 0 || (pem = pki_csr_pem(req, err)) == NULL)
		goto out;
	/* A request's id is the SHA-256 of its DER, like a certificate's. */
	crypto_hash_sha256(id, der, derlen);
	rec.csr_der = (ProtobufCBinaryData){derlen, der};
	rec.name = (char *)a.name;
	rec.key_type = info.key_type;
	rec.subject = info.subject;
	rec.subject_cn = info.subject_cn;
	rec.n_sans = info.sans.n;
	rec.sans = info.sans.names;
	rec.created = time(NULL);
	rec.spki_sha256 = (ProtobufCBinaryData){PKI_ID_LEN, info.spki_sha256};
	if (rec_seal_key(node->key, key, id, PKI_ID_LEN, &rec.sealed_key, err) < 0 ||
	    cs_txn_begin(node->store, true, &txn, err) < 0 ||
	    /* among certificates too: the one that fulfils it inherits the name */
	    rec_name_unused(txn, a.name, true, err) < 0)
		goto out;
	rec_short_id(id, sid);
	snprintf(summary, sizeof(summary), "csr %s (%s)", sid, a.name);
	if (rec_put(txn, CS_TBL_REQUESTS, id, PKI_ID_LEN, &rec.base, err) < 0)
		goto out;
	if (ops_commit(node, txn, summary, err) < 0) {
		txn = NULL;
		goto out;
	}
	txn = NULL;
	result = json_pack("{s:o, s:s, s:O}", "request", rec_request_json(id, &rec), "pem", pem,
	                   "notes", a.notes);
out:
	if (txn != NULL)
		cs_txn_abort(txn);
	json_decref(a.notes);
	free(rec.sealed_key.data);
	free(der);
	free(pem);
	pki_cert_info_free(&info);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
	return result;
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
