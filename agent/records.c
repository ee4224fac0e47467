/* records.c — the JSON the commands print for records (README, CONTRACT:
 * CERT and REQUEST), with the warnings `cert list` shows. */
#include "records.h"

#include "../common/hex.h"

#define WARN_DAYS 30

static const char *kind_name(Certsync__CertKind k)
{
	switch (k) {
	case CERTSYNC__CERT_KIND__CERT_KIND_INTERMEDIATE:
		return "intermediate";
	case CERTSYNC__CERT_KIND__CERT_KIND_ROOT:
		return "root";
	default:
		return "identity";
	}
}

static json_t *string_array(char **items, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(items[i]));
	return a;
}

static json_t *warnings(const rec_cert *c, STACK_OF(X509) * pool, time_t now)
{
	const Certsync__CertRecord *r = c->rec;
	json_t *w = json_array();
	char text[64];

	if (r->not_after <= now) {
		json_array_append_new(w, json_string("expired"));
	} else if (now < (time_t)r->not_before) {
		rec_valid_at(r, now, text);
		json_array_append_new(w, json_string(text));
	} else if (pki_days_left((time_t)r->not_after, now) <= WARN_DAYS) {
		char left[32];

		snprintf(text, sizeof(text), "expires in %s",
		         pki_days_text(pki_days_left((time_t)r->not_after, now), left));
		json_array_append_new(w, json_string(text));
	}
	if (c->table != CS_TBL_CERTS) {
		X509 *ca = pool != NULL && r->kind == CERTSYNC__CERT_KIND__CERT_KIND_INTERMEDIATE
		               ? pki_cert_from_der(r->der.data, r->der.len, NULL)
		               : NULL;

		if (ca != NULL && pki_ca_signature(ca, pool, true) != PKI_SIG_OK)
			json_array_append_new(w, json_string("signature unverified"));
		X509_free(ca);
		return w;
	}
	if (pool != NULL) {
		X509 *leaf = pki_cert_from_der(r->der.data, r->der.len, NULL);
		STACK_OF(X509) *chain = NULL;
		bool complete = false;

		if (leaf != NULL &&
		    pki_chain_build(leaf, pool, true, &chain, &complete, NULL) == 0 && !complete)
			json_array_append_new(w, json_string("chain incomplete"));
		sk_X509_pop_free(chain, X509_free);
		X509_free(leaf);
	}
	if (r->sealed_key.len == 0)
		json_array_append_new(w, json_string("key missing"));
	return w;
}

json_t *rec_cert_json(const rec_cert *c, bool is_default, STACK_OF(X509) * pool, time_t now)
{
	const Certsync__CertRecord *r = c->rec;
	char id[2 * PKI_ID_LEN + 1], nb[32], na[32];

	cs_hex(c->id, PKI_ID_LEN, id);
	rec_time(r->not_before, nb);
	rec_time(r->not_after, na);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:s, s:b, s:b, s:s, s:o}",
	                 "id", id, "name", r->name, "kind", kind_name(r->kind), "subject",
	                 r->subject, "subject_cn", r->subject_cn, "sans",
	                 string_array(r->sans, r->n_sans), "issuer", r->issuer, "not_before", nb,
	                 "not_after", na, "key_type", r->key_type, "has_key", r->sealed_key.len > 0,
	                 "default", is_default, "source", r->source, "warnings",
	                 warnings(c, pool, now));
}

json_t *rec_request_json(const uint8_t id[PKI_ID_LEN], const Certsync__RequestRecord *r)
{
	char hex[2 * PKI_ID_LEN + 1], created[32];
	json_t *by = json_array();

	cs_hex(id, PKI_ID_LEN, hex);
	rec_time(r->created, created);
	for (size_t i = 0; i < r->n_fulfilled_by; i++) {
		char fid[2 * PKI_ID_LEN + 1];

		if (r->fulfilled_by[i].len != PKI_ID_LEN)
			continue;
		cs_hex(r->fulfilled_by[i].data, PKI_ID_LEN, fid);
		json_array_append_new(by, json_string(fid));
	}
	return json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:o}", "id", hex, "name", r->name,
	                 "subject", r->subject, "subject_cn", r->subject_cn, "sans",
	                 string_array(r->sans, r->n_sans), "key_type", r->key_type, "created",
	                 created, "fulfilled_by", by);
}
