/* acme_records.c — the records of the replicated acme table: keys of the
 * form KIND/NAME, reading, writing and walking them, and a managed
 * certificate as the commands show it. */
#include "acme_agent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/hex.h"
#include "records.h"

size_t acme_rec_key(char out[ACME_KEY_MAX], const char *kind, const char *name)
{
	int n = name != NULL ? snprintf(out, ACME_KEY_MAX, "%s/%s", kind, name)
	                     : snprintf(out, ACME_KEY_MAX, "%s", kind);

	return n < 0 || n >= ACME_KEY_MAX ? ACME_KEY_MAX - 1 : (size_t)n;
}

int acme_rec_get(cs_txn *txn, const char *kind, const char *name,
                 const ProtobufCMessageDescriptor *d, ProtobufCMessage **out, cs_err *err)
{
	char key[ACME_KEY_MAX];
	size_t klen = acme_rec_key(key, kind, name), vlen;
	const void *val;
	int rc = cs_txn_get(txn, CS_TBL_ACME, key, klen, &val, &vlen, err);

	*out = NULL;
	if (rc != 0)
		return rc;
	if ((*out = protobuf_c_message_unpack(d, NULL, vlen, val)) == NULL)
		return cs_fail(err, CS_EIO, "the store's acme record %s does not decode", key);
	return 0;
}

int acme_rec_put(cs_txn *txn, const char *kind, const char *name, const ProtobufCMessage *m,
                 cs_err *err)
{
	char key[ACME_KEY_MAX];
	size_t klen = acme_rec_key(key, kind, name);

	return rec_put(txn, CS_TBL_ACME, (const uint8_t *)key, klen, m, err);
}

int acme_rec_del(cs_txn *txn, const char *kind, const char *name, cs_err *err)
{
	char key[ACME_KEY_MAX];
	size_t klen = acme_rec_key(key, kind, name);

	return cs_txn_del(txn, CS_TBL_ACME, key, klen, err);
}

struct walk {
	const char *kind;
	size_t kindlen;
	const ProtobufCMessageDescriptor *d;
	acme_rec_fn fn;
	void *ctx;
	cs_err *err;
};

static int visit(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct walk *w = ctx;
	char name[ACME_KEY_MAX];
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

int acme_rec_foreach(cs_txn *txn, const char *kind, const ProtobufCMessageDescriptor *d,
                     acme_rec_fn fn, void *ctx, cs_err *err)
{
	struct walk w = {kind, strlen(kind), d, fn, ctx, err};

	return cs_txn_foreach(txn, CS_TBL_ACME, visit, &w, err);
}

static json_t *time_or_null(int64_t t)
{
	char s[32];

	if (t <= 0)
		return json_null();
	rec_time((time_t)t, s);
	return json_string(s);
}

static json_t *current_json(cs_txn *txn, const Certsync__AcmeCert *c)
{
	char hex[2 * PKI_ID_LEN + 1], na[32];
	rec_cert cert = {0};
	cs_err err;
	json_t *j;

	if (c->current_id.len != PKI_ID_LEN ||
	    rec_cert_get(txn, CS_TBL_CERTS, c->current_id.data, &cert, &err) != 0)
		return json_null();
	cs_hex(c->current_id.data, PKI_ID_LEN, hex);
	rec_time(cert.rec->not_after, na);
	j = json_pack("{s:s, s:s}", "id", hex, "not_after", na);
	rec_cert_clear(&cert);
	return j;
}

static json_t *order_json(cs_txn *txn, const char *name)
{
	Certsync__AcmeOrder *o;
	acme_order order;
	acme_err e;
	cs_err err;
	json_t *j;

	if (acme_rec_get(txn, ACME_REC_ORDER, name, &certsync__acme_order__descriptor,
	                 (ProtobufCMessage **)&o, &err) != 0)
		return json_null();
	if (acme_order_from_json(o->order_json, &order, &e) != 0) {
		certsync__acme_order__free_unpacked(o, NULL);
		return json_null();
	}
	j = json_pack("{s:s, s:s, s:s, s:o}", "url", order.url, "status", order.status, "next",
	              acme_next_name(acme_order_next(&order, time(NULL))), "started",
	              time_or_null(o->started));
	acme_order_free(&order);
	certsync__acme_order__free_unpacked(o, NULL);
	return j;
}

json_t *acme_cert_json(cs_txn *txn, const Certsync__AcmeCert *c, bool full)
{
	json_t *domains = json_array(), *j, *err, *window;

	for (size_t i = 0; i < c->n_domains; i++)
		json_array_append_new(domains, json_string(c->domains[i]));
	err = c->last_error[0] == '\0'
	          ? json_null()
	          : json_pack("{s:s, s:s, s:s}", "message", c->last_error, "type",
	                      c->last_error_type, "url", c->last_error_url);
	window = c->window_end == 0
	             ? json_null()
	             : json_pack("{s:o, s:o, s:s}", "start", time_or_null(c->window_start), "end",
	                         time_or_null(c->window_end), "source", c->window_source);
	j = json_pack("{s:s, s:o, s:s, s:s, s:s, s:b, s:s, s:o, s:s, s:o, s:o, s:I, s:o}", "name",
	              c->name, "domains", domains, "challenge", c->challenge, "profile",
	              c->profile, "key_type", c->key_type, "default", c->make_default, "state",
	              c->state, "next_attempt", time_or_null(c->next_attempt), "next_reason",
	              c->next_reason, "renewal_window", window, "last_error", err, "failures",
	              (json_int_t)c->failures, "certificate", current_json(txn, c));
	if (j != NULL && full)
		json_object_set_new(j, "order", order_json(txn, c->name));
	return j;
}

int acme_cert_update(cs_txn *txn, const char *name, acme_cert_edit edit, void *arg, cs_err *err)
{
	Certsync__AcmeCert *mc, copy;
	int rc = acme_rec_get(txn, ACME_REC_CERT, name, &certsync__acme_cert__descriptor,
	                      (ProtobufCMessage **)&mc, err);

	if (rc != 0)
		return rc;
	/* edit sets the copy's fields to strings it owns; mc keeps its own to
	 * be freed */
	copy = *mc;
	rc = edit(txn, &copy, arg, err);
	if (rc == 0)
		rc = acme_rec_put(txn, ACME_REC_CERT, name, &copy.base, err);
	certsync__acme_cert__free_unpacked(mc, NULL);
	return rc;
}
