/* ops_tidy.c — tidying the store: pending keys (`key list`, `key delete`),
 * requests (`csr delete`) and expired certificates (`cert prune`). */
#include <string.h>

#include "../common/clock.h"
#include "../common/hex.h"
#include "../common/log.h"
#include "ops.h"
#include "records.h"

#define DAY            86400
#define PRUNE_MAX_DAYS 36500 /* a hundred years: what the command line takes */

static int list_key(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	Certsync__PendingKey *k = certsync__pending_key__unpack(NULL, vlen, val);
	char hex[2 * PKI_ID_LEN + 1], created[32];

	if (k != NULL && klen == PKI_ID_LEN) {
		cs_hex(key, PKI_ID_LEN, hex);
		cs_iso_time(k->created, created);
		json_array_append_new(ctx,
		                      json_pack("{s:s, s:s, s:s, s:s}", "id", hex, "name", k->name,
		                                "key_type", k->key_type, "created", created));
	}
	certsync__pending_key__free_unpacked(k, NULL);
	return 0;
}

json_t *op_key_list(struct cs_node *node, json_t *args, cs_err *err)
{
	json_t *keys = json_array();
	cs_txn *txn;
	int rc;

	(void)args;
	if (cs_txn_begin(node->store, false, &txn, err) < 0) {
		json_decref(keys);
		return NULL;
	}
	rc = cs_txn_foreach(txn, CS_TBL_KEYS, list_key, keys, err);
	cs_txn_abort(txn);
	if (rc < 0) {
		json_decref(keys);
		return NULL;
	}
	return json_pack("{s:o}", "keys", keys);
}

/* Deletes one record of table t in its own change; summary and message
 * name it. */
static json_t *delete_one(struct cs_node *node, cs_txn *txn, cs_table t,
                          const uint8_t id[PKI_ID_LEN], const char *summary, const char *message,
                          cs_err *err)
{
	char hex[2 * PKI_ID_LEN + 1];

	if (cs_txn_del(txn, t, id, PKI_ID_LEN, err) < 0) {
		cs_txn_abort(txn);
		return NULL;
	}
	if (ops_commit(node, txn, summary, err) < 0)
		return NULL;
	cs_hex(id, PKI_ID_LEN, hex);
	return json_pack("{s:s, s:s}", "deleted", hex, "message", message);
}

/* The write transaction of a delete, and in *ref what its args name. */
static cs_txn *begin_delete(struct cs_node *node, json_t *args, const char **ref, cs_err *err)
{
	cs_txn *txn;

	if (ops_arg_string(args, "id", true, ref, err) < 0 ||
	    cs_txn_begin(node->store, true, &txn, err) < 0)
		return NULL;
	return txn;
}

json_t *op_key_delete(struct cs_node *node, json_t *args, cs_err *err)
{
	char summary[128], message[256], sid[9];
	uint8_t id[PKI_ID_LEN];
	const char *ref;
	cs_txn *txn = begin_delete(node, args, &ref, err);

	if (txn == NULL)
		return NULL;
	if (rec_key_find(txn, ref, id, err) < 0) {
		cs_txn_abort(txn);
		return NULL;
	}
	rec_short_id(id, sid);
	snprintf(summary, sizeof(summary), "delete pending key %s", sid);
	snprintf(message, sizeof(message), "deleted pending key %s", sid);
	return delete_one(node, txn, CS_TBL_KEYS, id, summary, message, err);
}

json_t *op_csr_delete(struct cs_node *node, json_t *args, cs_err *err)
{
	char summary[128], message[512], sid[9];
	Certsync__RequestRecord *r = NULL;
	uint8_t id[PKI_ID_LEN];
	const char *ref;
	cs_txn *txn = begin_delete(node, args, &ref, err);

	if (txn == NULL)
		return NULL;
	if (rec_request_find(txn, ref, id, &r, err) < 0) {
		cs_txn_abort(txn);
		return NULL;
	}
	rec_short_id(id, sid);
	snprintf(summary, sizeof(summary), "delete request %s (%.64s)", sid, r->name);
	/* The request record holds its sealed key: both go at once. */
	snprintf(message, sizeof(message),
	         "deleted request %s (%.64s) and its sealed private key%s", sid, r->name,
	         r->n_fulfilled_by > 0 ? "; the certificates it fulfilled keep their own copy"
	                               : ": a certificate the CA issues for it can no longer be "
	                                 "served");
	certsync__request_record__free_unpacked(r, NULL);
	return delete_one(node, txn, CS_TBL_REQUESTS, id, summary, message, err);
}

/* ---- cert prune --------------------------------------------------------------- */

struct prune_walk {
	time_t before; /* expired before this */
	const uint8_t *default_id;
	json_t *found;
};

static int prune_one(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct prune_walk *w = ctx;
	Certsync__CertRecord *r = certsync__cert_record__unpack(NULL, vlen, val);
	char hex[2 * PKI_ID_LEN + 1], na[32];

	if (r != NULL && klen == PKI_ID_LEN && (time_t)r->not_after <= w->before &&
	    (w->default_id == NULL || memcmp(w->default_id, key, PKI_ID_LEN) != 0)) {
		cs_hex(key, PKI_ID_LEN, hex);
		cs_iso_time(r->not_after, na);
		json_array_append_new(w->found, json_pack("{s:s, s:s, s:s}", "id", hex, "name",
		                                          r->name, "not_after", na));
	}
	certsync__cert_record__free_unpacked(r, NULL);
	return 0;
}

json_t *op_cert_prune(struct cs_node *node, json_t *args, cs_err *err)
{
	json_t *days = json_object_get(args, "older_than"), *c;
	bool yes = json_is_true(json_object_get(args, "yes"));
	struct prune_walk w = {.found = json_array()};
	uint8_t def[PKI_ID_LEN], id[PKI_ID_LEN];
	char summary[64];
	cs_txn *txn;
	size_t i;
	int rc;

	if (!json_is_true(json_object_get(args, "expired")) ||
	    (days != NULL && (!json_is_integer(days) || json_integer_value(days) < 0 ||
	                      json_integer_value(days) > PRUNE_MAX_DAYS))) {
		json_decref(w.found);
		cs_fail(err, CS_EUSAGE,
		        "control request: cert.prune needs args.expired = true and "
		        "args.older_than, when given, a number of days from 0 to %d",
		        PRUNE_MAX_DAYS);
		return NULL;
	}
	w.before = time(NULL) - (days ? (time_t)json_integer_value(days) * DAY : 0);
	if (cs_txn_begin(node->store, yes, &txn, err) < 0) {
		json_decref(w.found);
		return NULL;
	}
	rc = rec_default(txn, def, err);
	w.default_id = rc == 0 ? def : NULL;
	if (rc < 0 || cs_txn_foreach(txn, CS_TBL_CERTS, prune_one, &w, err) < 0)
		goto fail;
	json_array_foreach(w.found, i, c)
	{
		if (yes &&
		    (cs_unhex(json_string_value(json_object_get(c, "id")), id, PKI_ID_LEN) < 0 ||
		     cs_txn_del(txn, CS_TBL_CERTS, id, PKI_ID_LEN, err) < 0))
			goto fail;
	}
	if (!yes || json_array_size(w.found) == 0) {
		cs_txn_abort(txn);
	} else {
		snprintf(summary, sizeof(summary), "prune %zu expired %s", json_array_size(w.found),
		         CS_PLURAL(json_array_size(w.found), "certificate", "certificates"));
		if (ops_commit(node, txn, summary, err) < 0) {
			json_decref(w.found);
			return NULL;
		}
	}
	return json_pack("{s:b, s:o}", "deleted", yes, "certificates", w.found);
fail:
	cs_txn_abort(txn);
	json_decref(w.found);
	return NULL;
}
