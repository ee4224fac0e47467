/* ops_list.c — `cert list`: identity certificates, then CA certificates,
 * each in id order, with filters that select what a fleet of tens of
 * thousands needs (--name, --expiring) and pages (--limit, --after) that
 * seek to where the previous one stopped rather than walk from the start. */
#include <fnmatch.h>
#include <string.h>

#include "../common/hex.h"
#include "control.h"
#include "ops.h"
#include "records.h"

#define DAY            86400
#define LIST_MAX_DAYS  36500
#define LIST_MAX_LIMIT 1000000

struct list_walk {
	cs_table table;
	STACK_OF(X509) * pool;
	const uint8_t *default_id; /* NULL when none */
	time_t now;
	const char *glob;   /* NULL: every name */
	time_t expiring_by; /* 0: any expiry */
	json_int_t left;    /* entries the page still takes; -1 without a limit */
	bool more;          /* a further entry matched after the page was full */
	json_t *out;
	cs_err *err;
};

/* Whether the friendly name, the subject's CN or a SAN matches the glob,
 * without regard to case (DNS names have none). */
static bool name_matches(const Certsync__CertRecord *r, const char *glob)
{
	if (fnmatch(glob, r->name, FNM_CASEFOLD) == 0 ||
	    fnmatch(glob, r->subject_cn, FNM_CASEFOLD) == 0)
		return true;
	for (size_t i = 0; i < r->n_sans; i++)
		if (fnmatch(glob, r->sans[i], FNM_CASEFOLD) == 0)
			return true;
	return false;
}

static int list_one(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct list_walk *w = ctx;
	rec_cert c = {.table = w->table};
	bool take;

	if (klen != PKI_ID_LEN)
		return 0;
	c.rec = certsync__cert_record__unpack(NULL, vlen, val);
	if (c.rec == NULL)
		return cs_fail(w->err, CS_EIO, "a record in table %s does not decode",
		               cs_table_name(w->table));
	take = (w->glob == NULL || name_matches(c.rec, w->glob)) &&
	       (w->expiring_by == 0 || c.rec->not_after <= w->expiring_by);
	if (take && w->left == 0) {
		/* One more match than the page holds: say there is a next page,
		 * and stop. */
		w->more = true;
		rec_cert_clear(&c);
		return 1;
	}
	if (take) {
		memcpy(c.id, key, PKI_ID_LEN);
		json_array_append_new(w->out,
		                      rec_cert_json(&c,
		                                    w->default_id != NULL &&
		                                        memcmp(w->default_id, key, PKI_ID_LEN) == 0,
		                                    w->pool, w->now));
		if (w->left > 0)
			w->left--;
	}
	rec_cert_clear(&c);
	return 0;
}

static int read_list_args(json_t *args, struct list_walk *w, const char **after, cs_err *err)
{
	json_int_t days = 0;
	int has_days;

	w->left = -1;
	if (ops_arg_string(args, "name", false, &w->glob, err) < 0 ||
	    ops_arg_string(args, "after", false, after, err) < 0 ||
	    ops_arg_int(args, "limit", 1, LIST_MAX_LIMIT, "a number of certificates", &w->left,
	                err) < 0 ||
	    (has_days = ops_arg_int(args, "expiring", 0, LIST_MAX_DAYS, "a number of days", &days,
	                            err)) < 0)
		return -1;
	if (has_days)
		w->expiring_by = w->now + (time_t)days * DAY;
	return 0;
}

/* Walks the two tables in order, from just after the certificate ref names
 * when there is one. */
static int walk(cs_txn *txn, struct list_walk *w, const char *after, cs_err *err)
{
	cs_table first = CS_TBL_CERTS;
	rec_cert from = {0};
	int rc = 0;

	if (after != NULL) {
		if (rec_cert_find(txn, after, &from, err) != 0)
			return -1;
		first = from.table;
	}
	for (cs_table t = first; rc == 0 && t <= CS_TBL_CAS; t++) {
		w->table = t;
		rc = after != NULL && t == from.table
		         ? cs_txn_foreach_after(txn, t, from.id, PKI_ID_LEN, list_one, w, err)
		         : cs_txn_foreach(txn, t, list_one, w, err);
	}
	rec_cert_clear(&from);
	return rc < 0 || err->code != CS_OK ? -1 : 0;
}

json_t *op_cert_list(struct cs_node *node, json_t *args, cs_err *err)
{
	uint8_t def[PKI_ID_LEN];
	char next[2 * PKI_ID_LEN + 1];
	struct list_walk w = {.now = time(NULL), .err = err};
	const char *after = NULL;
	json_t *last, *result;
	cs_txn *txn;
	int rc;

	if (read_list_args(args, &w, &after, err) < 0)
		return NULL;
	if (cs_txn_begin(node->store, false, &txn, err) < 0)
		return NULL;
	rc = rec_default(txn, def, err);
	w.default_id = rc == 0 ? def : NULL;
	w.pool = rc < 0 ? NULL : rec_ca_pool(txn, NULL, err);
	w.out = json_array();
	rc = w.pool != NULL ? walk(txn, &w, after, err) : -1;
	cs_txn_abort(txn);
	sk_X509_pop_free(w.pool, X509_free);
	if (rc < 0) {
		json_decref(w.out);
		return NULL;
	}
	result = json_pack("{s:o}", "certificates", w.out);
	/* Where the next page starts: the id to give --after. */
	last = json_array_get(w.out, json_array_size(w.out) - 1);
	if (result != NULL && w.more && last != NULL) {
		snprintf(next, sizeof(next), "%s", json_string_value(json_object_get(last, "id")));
		json_object_set_new(result, "next_after", json_string(next));
	}
	return result;
}
