/* reseal.c — opening and sealing again every private key of the store:
 * what `cluster rekey` changes when the cluster passphrase changes, and
 * what a change re-applied from before one is checked with (see
 * records.h).  The walk is generic over the records that hold a key. */
#include "records.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Every replicated table whose records hold a sealed key, and where: the
 * key is sealed with the record's table key as associated data.  A new
 * record that holds a key needs its line here, or a rekey leaves it
 * sealed under the old key. */
static const struct sealed_table {
	cs_table table;
	const ProtobufCMessageDescriptor *desc;
	size_t field;       /* offset of the ProtobufCBinaryData sealed_key */
	const char *prefix; /* only the records whose key starts so (the acme table holds
	                       several kinds); NULL: every record */
} sealed_tables[] = {
    {CS_TBL_CERTS, &certsync__cert_record__descriptor, offsetof(Certsync__CertRecord, sealed_key),
     NULL},
    {CS_TBL_CAS, &certsync__cert_record__descriptor, offsetof(Certsync__CertRecord, sealed_key),
     NULL},
    {CS_TBL_REQUESTS, &certsync__request_record__descriptor,
     offsetof(Certsync__RequestRecord, sealed_key), NULL},
    {CS_TBL_KEYS, &certsync__pending_key__descriptor, offsetof(Certsync__PendingKey, sealed_key),
     NULL},
    {CS_TBL_ACME, &certsync__acme_account__descriptor, offsetof(Certsync__AcmeAccount, sealed_key),
     REC_ACME_ACCOUNT},
    {CS_TBL_ACME, &certsync__acme_order__descriptor, offsetof(Certsync__AcmeOrder, sealed_key),
     REC_ACME_ORDER "/"},
    {CS_TBL_ACME, &certsync__acme_alpn_cert__descriptor,
     offsetof(Certsync__AcmeAlpnCert, sealed_key), REC_ACME_ALPN "/"},
};

/* One record re-sealed, put once the table's walk is over (a walk must not
 * change its table). */
struct resealed {
	uint8_t *key, *val;
	size_t klen, vlen;
};

struct walk {
	const struct sealed_table *t;
	const cs_key *from, *to; /* to NULL: only check that each key opens */
	struct resealed *out;
	size_t n, cap;
	cs_err *err;
};

/* Seals the key of one record again: the plaintext exists only in
 * sodium_malloc'd memory, wiped before this returns. */
static int reseal_one(struct walk *w, const void *key, size_t klen, const void *val, size_t vlen)
{
	ProtobufCMessage *msg = protobuf_c_message_unpack(w->t->desc, NULL, vlen, val);
	ProtobufCBinaryData *field, old;
	uint8_t *plain = NULL, *sealed = NULL;
	struct resealed r = {0};
	size_t plen, slen;
	int rc = -1;

	if (msg == NULL)
		return cs_fail(w->err, CS_EIO, "a %s record does not decode",
		               cs_table_name(w->t->table));
	field = (ProtobufCBinaryData *)((char *)msg + w->t->field);
	if (field->len == 0) {
		protobuf_c_message_free_unpacked(msg, NULL);
		return 0; /* holds no key */
	}
	if (cs_unseal(w->from, field->data, field->len, key, klen, &plain, &plen, w->err) < 0)
		goto out;
	if (w->to == NULL) {
		rc = 0; /* it opens: all a check asks */
		goto out;
	}
	if (cs_seal(w->to, plain, plen, key, klen, &sealed, &slen, w->err) < 0)
		goto out;
	/* The message owns its field's bytes: the new seal is lent to it for
	 * packing only. */
	old = *field;
	*field = (ProtobufCBinaryData){slen, sealed};
	r.klen = klen;
	r.vlen = protobuf_c_message_get_packed_size(msg);
	r.key = malloc(klen);
	r.val = malloc(r.vlen ? r.vlen : 1);
	if (r.key != NULL && r.val != NULL)
		protobuf_c_message_pack(msg, r.val);
	*field = old;
	if (r.key == NULL || r.val == NULL) {
		cs_fail(w->err, CS_EIO, "out of memory");
		goto out;
	}
	memcpy(r.key, key, klen);
	if (w->n == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 64;
		struct resealed *v = realloc(w->out, cap * sizeof(*v));

		if (v == NULL) {
			cs_fail(w->err, CS_EIO, "out of memory");
			goto out;
		}
		w->out = v;
		w->cap = cap;
	}
	w->out[w->n++] = r;
	r = (struct resealed){0};
	rc = 0;
out:
	free(r.key);
	free(r.val);
	cs_secret_free(plain);
	free(sealed);
	protobuf_c_message_free_unpacked(msg, NULL);
	return rc;
}

static int visit(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct walk *w = ctx;
	size_t plen = w->t->prefix != NULL ? strlen(w->t->prefix) : 0;

	if (plen > 0 && (klen < plen || memcmp(key, w->t->prefix, plen) != 0))
		return 0; /* another kind of record of the table */
	if (reseal_one(w, key, klen, val, vlen) == 0)
		return 0;
	if (w->err->code == CS_ECRYPTO)
		cs_fail(
		    w->err, CS_ECRYPTO,
		    "the key of a record of table %s does not open under the current cluster key "
		    "(sealed before a cluster rekey?)",
		    cs_table_name(w->t->table));
	return -1;
}

int rec_reseal_all(cs_txn *txn, const cs_key *from, const cs_key *to, size_t *count, cs_err *err)
{
	int rc = 0;

	*count = 0;
	for (size_t i = 0; rc == 0 && i < sizeof(sealed_tables) / sizeof(sealed_tables[0]); i++) {
		struct walk w = {.t = &sealed_tables[i], .from = from, .to = to, .err = err};

		if (cs_txn_foreach(txn, w.t->table, visit, &w, err) != 0)
			rc = -1;
		for (size_t j = 0; j < w.n; j++) {
			if (rc == 0 && cs_txn_put(txn, w.t->table, w.out[j].key, w.out[j].klen,
			                          w.out[j].val, w.out[j].vlen, err) < 0)
				rc = -1;
			free(w.out[j].key);
			free(w.out[j].val);
		}
		free(w.out);
		*count += w.n;
	}
	return rc;
}
