/* acme_install.c — what the CA issued, verified before it is committed
 * (its key is the request's, its chain verifies link by link, it covers
 * every name asked for, it expires later than the certificate it replaces),
 * then stored as a certificate record like an import, the default moved
 * to it when due, and the renewal scheduled: from the CA's renewalInfo
 * (RFC 9773) when the directory has it, else from the lifetime. */
#include "acme_runner_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509v3.h>
#include <sodium.h>

#include "../common/clock.h"
#include "../common/log.h"
#include "../pki/pki.h"
#include "records.h"

void acme_schedule(acme_ctx *ctx, Certsync__AcmeCert *mc, X509 *leaf, time_t nb, time_t na)
{
	acme_renewal_info ari;
	char certid[128];
	acme_err e;
	bool have = false;
	time_t now = time(NULL);

	if (ctx->ari && acme_ari_certid(leaf, certid, sizeof(certid), &e) == 0) {
		have = acme_ari_fetch(ctx->client, certid, &ari, &e) == 0;
		if (!have)
			cs_warn("acme: %s: renewalInfo: %s; renewing by the lifetime", mc->name,
			        e.err.msg);
	}
	if (have) {
		mc->window_start = ari.start;
		mc->window_end = ari.end;
		mc->window_source = "ari";
		mc->ari_next_poll = acme_ari_next_poll(now, ari.retry_after);
	} else {
		mc->window_start = na - (na - nb) / 3;
		mc->window_end = acme_emergency_line(nb, na);
		mc->window_source = "lifetime";
		mc->ari_next_poll = 0;
	}
	mc->next_attempt = acme_renewal_time(nb, na, have ? &ari : NULL, now, randombytes_random());
	mc->renewal_time = mc->next_attempt;
	mc->next_reason = have ? "renewal: a moment in the CA's renewalInfo window"
	                       : "renewal: a moment in the first tenth of the last third of the "
	                         "lifetime";
}

__attribute__((format(printf, 2, 3))) static int refuse(acme_err *e, const char *fmt, ...)
{
	cs_err err = {0};
	va_list ap;

	err.code = CS_EREFUSED;
	va_start(ap, fmt);
	vsnprintf(err.msg, sizeof(err.msg), fmt, ap);
	va_end(ap);
	return acme_local_fail(e, ACME_ERR_OPERATOR, &err);
}

/* The checks before anything is stored. */
static int verify(const Certsync__AcmeCert *mc, STACK_OF(X509) * certs, EVP_PKEY *key,
                  time_t replaces_na, const pki_cert_info *info, acme_err *e)
{
	X509 *leaf = sk_X509_value(certs, 0);
	char probe[300], na[32], old[32];

	if (!pki_key_matches(leaf, key))
		return refuse(e,
		              "%s: the CA sent a certificate whose key is not the one requested; "
		              "it was refused and the certificate in use stays served",
		              mc->name);
	if (sk_X509_num(certs) < 2)
		return refuse(e, "%s: the CA sent no issuer with the certificate; refused",
		              mc->name);
	for (int i = 0; i + 1 < sk_X509_num(certs); i++) {
		X509 *c = sk_X509_value(certs, i), *issuer = sk_X509_value(certs, i + 1);

		if (X509_check_issued(issuer, c) != X509_V_OK ||
		    X509_verify(c, X509_get0_pubkey(issuer)) != 1)
			return refuse(
			    e,
			    "%s: the chain the CA sent does not verify (%s is not signed by "
			    "the certificate after it); refused",
			    mc->name, i == 0 ? "the leaf" : "an intermediate");
	}
	for (size_t i = 0; i < mc->n_domains; i++) {
		const char *d = mc->domains[i];

		/* a wildcard covers any one label: try one */
		snprintf(probe, sizeof(probe), strncmp(d, "*.", 2) == 0 ? "acme-check.%s" : "%s",
		         strncmp(d, "*.", 2) == 0 ? d + 2 : d);
		if (!pki_covers(leaf, probe))
			return refuse(e,
			              "%s: the certificate the CA sent does not cover %s; refused",
			              mc->name, d);
	}
	if (replaces_na != 0 && info->not_after <= replaces_na) {
		cs_iso_time(info->not_after, na);
		cs_iso_time(replaces_na, old);
		return refuse(e,
		              "%s: the new certificate expires %s, not later than the one it "
		              "replaces (%s); refused",
		              mc->name, na, old);
	}
	return 0;
}

struct install {
	acme_ctx *ctx;
	const char *name;
	STACK_OF(X509) * certs;
	EVP_PKEY *key;
	pki_cert_info info;
	Certsync__AcmeCert sched; /* the window and next attempt acme_schedule set */
	bool make_default;
};

static int put_cas(cs_txn *txn, struct install *in, cs_err *err)
{
	for (int i = 1; i < sk_X509_num(in->certs); i++) {
		Certsync__CertRecord rec = CERTSYNC__CERT_RECORD__INIT;
		pki_cert_info info = {0};
		uint8_t *der = NULL;
		size_t len;
		int rc;

		if (pki_cert_inspect(sk_X509_value(in->certs, i), &info, err) < 0)
			return -1;
		rc = cs_txn_get(txn, CS_TBL_CAS, info.id, PKI_ID_LEN, &(const void *){0},
		                &(size_t){0}, err);
		if (rc == 1 &&
		    (rc = pki_cert_der(sk_X509_value(in->certs, i), &der, &len, err)) == 0) {
			rec_cert_describe(&rec, &info);
			rec.der = (ProtobufCBinaryData){len, der};
			rec.name = "";
			rec.source = "acme";
			rec.created = time(NULL);
			rc = rec_put(txn, CS_TBL_CAS, info.id, PKI_ID_LEN, &rec.base, err);
		}
		free(der);
		pki_cert_info_free(&info);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* What acme_schedule put in sched, into the stored record mc. */
static void take_schedule(Certsync__AcmeCert *mc, const Certsync__AcmeCert *sched)
{
	mc->next_attempt = sched->next_attempt;
	mc->renewal_time = sched->renewal_time;
	mc->next_reason = sched->next_reason;
	mc->window_start = sched->window_start;
	mc->window_end = sched->window_end;
	mc->window_source = sched->window_source;
	mc->ari_next_poll = sched->ari_next_poll;
}

static int edit_installed(cs_txn *txn, Certsync__AcmeCert *mc, void *arg, cs_err *err)
{
	struct install *in = arg;
	uint8_t def[PKI_ID_LEN];
	int rc = rec_default(txn, def, err);
	bool was_default = rc == 0 && mc->current_id.len == PKI_ID_LEN &&
	                   memcmp(def, mc->current_id.data, PKI_ID_LEN) == 0;
	ProtobufCBinaryData *replaced;

	if (rc < 0)
		return -1;
	/* The default moves to it: when there is none, when --default asked
	 * for it, or when it replaces the default. */
	if ((rc == 1 || (mc->make_default && mc->current_id.len == 0) || was_default) &&
	    rec_set_default(txn, in->info.id, err) < 0)
		return -1;
	if (mc->current_id.len == PKI_ID_LEN) {
		/* kept on the record until every node serves the new one */
		replaced = malloc((mc->n_replaced + 1) * sizeof(*replaced));
		if (replaced == NULL)
			return cs_fail(err, CS_EIO, "out of memory");
		if (mc->n_replaced > 0)
			memcpy(replaced, mc->replaced, mc->n_replaced * sizeof(*replaced));
		replaced[mc->n_replaced] = mc->current_id;
		in->sched.replaced = replaced; /* freed by acme_install */
		mc->replaced = replaced;
		mc->n_replaced++;
	}
	mc->current_id = (ProtobufCBinaryData){PKI_ID_LEN, in->info.id};
	mc->state = REC_ACME_STATE_SCHEDULED;
	mc->failures = 0;
	mc->last_error = mc->last_error_type = mc->last_error_url = "";
	mc->last_success = time(NULL);
	take_schedule(mc, &in->sched);
	return 0;
}

static int change_install(cs_txn *txn, void *ctx, cs_err *err)
{
	struct install *in = ctx;
	Certsync__CertRecord rec = CERTSYNC__CERT_RECORD__INIT;
	uint8_t *der = NULL;
	size_t len;
	int rc;

	if (pki_cert_der(sk_X509_value(in->certs, 0), &der, &len, err) < 0)
		return -1;
	rec_cert_describe(&rec, &in->info);
	rec.der = (ProtobufCBinaryData){len, der};
	rec.name = (char *)in->name;
	rec.source = "acme";
	rec.created = time(NULL);
	rc = rec_seal_key(in->ctx->key, in->key, in->info.id, PKI_ID_LEN, &rec.sealed_key, err);
	if (rc == 0)
		rc = rec_put(txn, CS_TBL_CERTS, in->info.id, PKI_ID_LEN, &rec.base, err);
	free(der);
	free(rec.sealed_key.data);
	if (rc < 0 || put_cas(txn, in, err) < 0 ||
	    rec_acme_cert_update(txn, in->name, edit_installed, in, err) < 0 ||
	    rec_acme_del(txn, REC_ACME_ORDER, in->name, err) < 0)
		return -1;
	return 0;
}

/* The not-after of the certificate mc holds now, or 0. */
static time_t current_not_after(acme_ctx *ctx, const Certsync__AcmeCert *mc)
{
	rec_cert cur = {0};
	time_t na = 0;
	cs_err err;
	cs_txn *txn;

	if (mc->current_id.len != PKI_ID_LEN || cs_txn_begin(ctx->store, false, &txn, &err) < 0)
		return 0;
	if (rec_cert_get(txn, CS_TBL_CERTS, mc->current_id.data, &cur, &err) == 0)
		na = (time_t)cur.rec->not_after;
	rec_cert_clear(&cur);
	cs_txn_abort(txn);
	return na;
}

int acme_install(acme_ctx *ctx, const Certsync__AcmeCert *mc, EVP_PKEY *cert_key, const char *pem,
                 acme_err *e)
{
	Certsync__AcmeCert init = CERTSYNC__ACME_CERT__INIT;
	struct install in = {.ctx = ctx, .name = mc->name, .key = cert_key, .sched = init};
	pki_bundle b = {0};
	char summary[200], sid[9];
	cs_err err = {0};
	int rc;

	if (cert_key == NULL)
		return refuse(e, "%s: the order's key is not in the store; a new order follows",
		              mc->name);
	if (pki_decode((const uint8_t *)pem, strlen(pem), NULL, "the CA's certificate", &b, &err) <
	        0 ||
	    sk_X509_num(b.certs) == 0) {
		pki_bundle_free(&b);
		return acme_local_fail(e, ACME_ERR_FATAL, &err);
	}
	in.certs = b.certs;
	in.sched.name = mc->name;
	if (pki_cert_inspect(sk_X509_value(b.certs, 0), &in.info, &err) < 0) {
		pki_bundle_free(&b);
		return acme_local_fail(e, ACME_ERR_FATAL, &err);
	}
	rc = verify(mc, b.certs, cert_key, current_not_after(ctx, mc), &in.info, e);
	if (rc == 0) {
		acme_schedule(ctx, &in.sched, sk_X509_value(b.certs, 0), in.info.not_before,
		              in.info.not_after);
		rec_short_id(in.info.id, sid);
		snprintf(summary, sizeof(summary), "acme %s: certificate %s obtained", mc->name,
		         sid);
		if (acme_runner_commit(ctx->r, summary, change_install, &in, &err) < 0)
			rc = acme_local_fail(e, ACME_ERR_TRANSIENT, &err);
		else
			cs_info("acme: %s: certificate %s stored", mc->name, sid);
	}
	free(in.sched.replaced);
	pki_cert_info_free(&in.info);
	pki_bundle_free(&b);
	return rc;
}

/* ---- asking renewalInfo again ------------------------------------------------ */

struct ari_poll {
	acme_ctx *ctx;
	time_t now;
	char name[72];
	Certsync__AcmeCert sched;
	X509 *leaf;
	cs_txn *txn;
};

static int ari_due(void *arg, const char *name, ProtobufCMessage *m)
{
	struct ari_poll *p = arg;
	Certsync__AcmeCert *mc = (Certsync__AcmeCert *)m;
	rec_cert cur = {0};
	cs_err err;

	if (strcmp(mc->window_source, "ari") != 0 || mc->ari_next_poll <= 0 ||
	    mc->ari_next_poll > p->now || strcmp(mc->state, REC_ACME_STATE_SCHEDULED) != 0 ||
	    mc->current_id.len != PKI_ID_LEN ||
	    rec_cert_get(p->txn, CS_TBL_CERTS, mc->current_id.data, &cur, &err) != 0)
		return 0;
	p->leaf = pki_cert_from_der(cur.rec->der.data, cur.rec->der.len, &err);
	p->sched.window_start = cur.rec->not_before; /* borrowed: the lifetime */
	p->sched.window_end = cur.rec->not_after;
	rec_cert_clear(&cur);
	snprintf(p->name, sizeof(p->name), "%s", name);
	return p->leaf != NULL ? 1 : 0;
}

static int edit_ari(cs_txn *txn, Certsync__AcmeCert *mc, void *arg, cs_err *err)
{
	struct ari_poll *p = arg;

	(void)txn;
	(void)err;
	take_schedule(mc, &p->sched);
	return 0;
}

static int change_ari(cs_txn *txn, void *arg, cs_err *err)
{
	struct ari_poll *p = arg;

	return rec_acme_cert_update(txn, p->name, edit_ari, p, err) < 0 ? -1 : 0;
}

int acme_ari_poll(acme_ctx *ctx)
{
	Certsync__AcmeCert init = CERTSYNC__ACME_CERT__INIT;
	struct ari_poll p = {.ctx = ctx, .now = time(NULL), .sched = init};
	char summary[160];
	acme_err e;
	cs_err err = {0};
	cs_txn *txn;
	int rc;

	if (cs_txn_begin(ctx->store, false, &txn, &err) < 0) {
		cs_warn("acme: %s", err.msg);
		return -1;
	}
	p.txn = txn;
	rc = rec_acme_foreach(txn, REC_ACME_CERT, &certsync__acme_cert__descriptor, ari_due, &p,
	                      &err);
	cs_txn_abort(txn);
	if (rc != 1)
		return rc < 0 ? -1 : 0;
	p.sched.name = p.name;
	rc = -1;
	if (acme_ctx_ready(ctx, &e) == 0) {
		acme_schedule(ctx, &p.sched, p.leaf, (time_t)p.sched.window_start,
		              (time_t)p.sched.window_end);
		snprintf(summary, sizeof(summary), "acme %s: renewalInfo asked again", p.name);
		if (acme_runner_commit(ctx->r, summary, change_ari, &p, &err) < 0)
			cs_warn("acme: %s", err.msg);
		else
			rc = 1;
	} else {
		cs_warn("acme: %s: renewalInfo: %s", p.name, e.err.msg);
	}
	X509_free(p.leaf);
	return rc;
}
