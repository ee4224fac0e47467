/* import_store.c — what an import finds in the store: records indexed by
 * their public-key hash (read once per command), the key sealed in one of
 * them, a pending key a certificate claims, a request it fulfils. */
#include <stdlib.h>
#include <string.h>

#include "import.h"
#include "ops.h"
#include "spki_map.h"

/* ---- looking up what the store holds ------------------------------------- */

/* Every record's public-key hash, read once per command and hashed:
 * looking each new certificate's key up by reading the whole table, and
 * later by scanning the list, made an import of many leaves quadratic. */
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
	if (spki_map_add(&x->map, spki, x->n) < 0)
		return -1;
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

int imp_find_spki(struct import *im, cs_table t, const uint8_t spki[PKI_ID_LEN],
                  struct spki_walk *w)
{
	struct spki_index *x = spki_index_of(im, t);
	size_t at[MAX_MATCH], n;

	memset(w, 0, sizeof(*w));
	w->table = t;
	if (x == NULL)
		return -1;
	n = spki_map_find(&x->map, spki, at, MAX_MATCH);
	for (size_t i = 0; i < n && i < MAX_MATCH; i++) {
		memcpy(w->ids[w->n], x->v[at[i]].id, PKI_ID_LEN);
		w->has_key[w->n++] = x->v[at[i]].has_key;
	}
	return 0;
}

/* Keeps the certificates' index in step with a record this command wrote. */
int imp_index_put(struct import *im, const uint8_t id[PKI_ID_LEN], const uint8_t spki[PKI_ID_LEN],
                  bool has_key)
{
	struct spki_index *x = &im->index[0];
	size_t at[MAX_MATCH], n;

	if (!x->built)
		return 0; /* it is read from the transaction, which holds the record */
	/* one certificate has one key: the records of id are among spki's */
	n = spki_map_find(&x->map, spki, at, MAX_MATCH);
	for (size_t i = 0; i < n && i < MAX_MATCH; i++)
		if (memcmp(x->v[at[i]].id, id, PKI_ID_LEN) == 0) {
			x->v[at[i]].has_key = has_key;
			return 0;
		}
	return index_add(x, spki, id, has_key) < 0 ? cs_fail(im->err, CS_EIO, "out of memory") : 0;
}

/* Unseals the key held by record id of table t (a certificate or request). */
EVP_PKEY *imp_unseal_from(struct import *im, cs_table t, const uint8_t id[PKI_ID_LEN])
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
EVP_PKEY *imp_claim_pending(struct import *im, const uint8_t spki[PKI_ID_LEN])
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

int imp_add_fulfilled(struct import *im, const uint8_t req_id[PKI_ID_LEN],
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
