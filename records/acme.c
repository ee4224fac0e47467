/* acme.c — the records of the replicated acme table (proto/records.proto:
 * AcmeAccount, AcmeCert, AcmeOrder, AcmeHttpToken, AcmeAlpnCert): keys of
 * the form KIND/NAME, reading, writing, walking and updating them. */
#include "records.h"

#include <stdio.h>
#include <string.h>

size_t rec_acme_key(char out[REC_ACME_KEY_MAX], const char *kind, const char *name)
{
	int n = name != NULL ? snprintf(out, REC_ACME_KEY_MAX, "%s/%s", kind, name)
	                     : snprintf(out, REC_ACME_KEY_MAX, "%s", kind);

	return n < 0 || n >= REC_ACME_KEY_MAX ? REC_ACME_KEY_MAX - 1 : (size_t)n;
}

int rec_acme_get(cs_txn *txn, const char *kind, const char *name,
                 const ProtobufCMessageDescriptor *d, ProtobufCMessage **out, cs_err *err)
{
	char key[REC_ACME_KEY_MAX];
	size_t klen = rec_acme_key(key, kind, name), vlen;
	const void *val;
	int rc = cs_txn_get(txn, CS_TBL_ACME, key, klen, &val, &vlen, err);

	*out = NULL;
	if (rc != 0)
		return rc;
	if ((*out = protobuf_c_message_unpack(d, NULL, vlen, val)) == NULL)
		return cs_fail(err, CS_EIO, "the store's acme record %s does not decode", key);
	return 0;
}

int rec_acme_put(cs_txn *txn, const char *kind, const char *name, const ProtobufCMessage *m,
                 cs_err *err)
{
	char key[REC_ACME_KEY_MAX];
	size_t klen = rec_acme_key(key, kind, name);

	return rec_put(txn, CS_TBL_ACME, (const uint8_t *)key, klen, m, err);
}

int rec_acme_del(cs_txn *txn, const char *kind, const char *name, cs_err *err)
{
	char key[REC_ACME_KEY_MAX];
	size_t klen = rec_acme_key(key, kind, name);

	return cs_txn_del(txn, CS_TBL_ACME, key, klen, err);
}

struct walk {
	const char *kind;
	size_t kindlen;
	const ProtobufCMessageDescriptor *d;
	rec_acme_fn fn;
	void *ctx;
	cs_err *err;
};

static int visit(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct walk *w = ctx;
	char name[REC_ACME_KEY_MAX];
	ProtobufCMessage *m;
	int rc;

	if (klen <= w->kindlen + 1 || klen >= sizeof(name) ||
	    memcmp(key, w->kind, w->kindlen) != 0 || ((const char *)key)[w->kindlen] != '/')
		return 0;
	memcpy(name, (const char *)key + w->kindlen + 1, klen - w->kindlen - 1);
	name[klen - w->kindlen - 1] = '\0';
	if ((m = protobuf_c_message_unpack(w->d, NULL, vlen, val)) == NULL)
		return cs_fail(w->err, CS_EIO, "the store's acme record %s/%s does not decode",
		               w->kind, name);
	rc = w->fn(w->ctx, name, m);
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

int rec_acme_foreach(cs_txn *txn, const char *kind, const ProtobufCMessageDescriptor *d,
                     rec_acme_fn fn, void *ctx, cs_err *err)
{
	struct walk w = {kind, strlen(kind), d, fn, ctx, err};

	return cs_txn_foreach(txn, CS_TBL_ACME, visit, &w, err);
}

int rec_acme_cert_update(cs_txn *txn, const char *name, rec_acme_cert_edit edit, void *arg,
                         cs_err *err)
{
	Certsync__AcmeCert *mc, copy;
	int rc = rec_acme_get(txn, REC_ACME_CERT, name, &certsync__acme_cert__descriptor,
	                      (ProtobufCMessage **)&mc, err);

	if (rc != 0)
		return rc;
	/* edit sets the copy's fields to strings it owns; mc keeps its own to
	 * be freed */
	copy = *mc;
	rc = edit(txn, &copy, arg, err);
	if (rc == 0)
		rc = rec_acme_put(txn, REC_ACME_CERT, name, &copy.base, err);
	certsync__acme_cert__free_unpacked(mc, NULL);
	return rc;
}
