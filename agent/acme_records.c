/* acme_records.c — a managed certificate (the acme table's AcmeCert) as
 * the `acme` commands show it, with its certificate and its order; and
 * when each current certificate is due for renewal, for /metrics. */
#include "acme_agent.h"

#include "../common/clock.h"
#include "../common/hex.h"
#include "records.h"

static json_t *time_or_null(int64_t t)
{
	char s[32];

	if (t <= 0)
		return json_null();
	cs_iso_time((time_t)t, s);
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
	cs_iso_time(cert.rec->not_after, na);
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

	if (rec_acme_get(txn, REC_ACME_ORDER, name, &certsync__acme_order__descriptor,
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

/* When the current certificate is due for renewal; none without one. */
static json_t *renewal_time(const Certsync__AcmeCert *c)
{
	return time_or_null(c->current_id.len == PKI_ID_LEN ? c->renewal_time : 0);
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
	j = json_pack("{s:s, s:o, s:s, s:s, s:s, s:b, s:s, s:o, s:s, s:o, s:o, s:o, s:I, s:o}",
	              "name", c->name, "domains", domains, "challenge", c->challenge, "profile",
	              c->profile, "key_type", c->key_type, "default", c->make_default, "state",
	              c->state, "next_attempt", time_or_null(c->next_attempt), "next_reason",
	              c->next_reason, "renewal_time", renewal_time(c), "renewal_window", window,
	              "last_error", err, "failures", (json_int_t)c->failures, "certificate",
	              current_json(txn, c));
	if (j != NULL && full)
		json_object_set_new(j, "order", order_json(txn, c->name));
	return j;
}

static int renewal_one(void *ctx, const char *name, ProtobufCMessage *m)
{
	const Certsync__AcmeCert *c = (const Certsync__AcmeCert *)m;
	char hex[2 * PKI_ID_LEN + 1];

	(void)name;
	if (c->current_id.len != PKI_ID_LEN || c->renewal_time <= 0)
		return 0;
	cs_hex(c->current_id.data, PKI_ID_LEN, hex);
	return json_object_set_new(ctx, hex, json_integer((json_int_t)c->renewal_time)) < 0 ? -1
	                                                                                    : 0;
}

json_t *acme_renewal_times(cs_txn *txn, cs_err *err)
{
	json_t *times = json_object();

	if (times != NULL && rec_acme_foreach(txn, REC_ACME_CERT, &certsync__acme_cert__descriptor,
	                                      renewal_one, times, err) == 0)
		return times;
	json_decref(times);
	if (err->code == CS_OK)
		cs_fail(err, CS_EIO, "out of memory");
	return NULL;
}
