/* acme_retire.c — the certificates a renewal replaced leave the store once
 * every node serves the new one (the handshake `verify --cluster` makes, on
 * each node's TLS endpoint), or once they have expired: until then a node
 * still serving the old one keeps a valid certificate to fall back on. */
#include "acme_runner_int.h"

#include <stdlib.h>
#include <string.h>

#include "../common/hex.h"
#include "../common/log.h"
#include "../tls/tls.h"
#include "config.h"
#include "records.h"

#define PROBE_MS 5000

struct retire {
	acme_ctx *ctx;
	char name[72];
	char sni[300];
	uint8_t current[PKI_ID_LEN];
	uint8_t (*ids)[PKI_ID_LEN]; /* replaced certificates that may go */
	size_t n;
	bool all;     /* every replaced one goes: the new one is served everywhere */
	bool expired; /* one of them has expired (or is gone already) */
	cs_txn *txn;
	ProtobufCBinaryData *kept; /* the record's replaced list as it is stored again */
};

/* Whether every node's TLS endpoint serves the current certificate for
 * sni; false when a node cannot be asked (no tls_endpoint). */
static bool served_everywhere(const acme_ctx *ctx, const char *sni, const uint8_t id[PKI_ID_LEN])
{
	const cs_config *cfg = ctx->cfg;
	const cs_peers_snap *ps = ctx->peers;
	char want[2 * PKI_ID_LEN + 1], got[65], own[300];
	cs_err err;

	if (cfg->ntls_listen == 0)
		return false;
	cs_hex(id, PKI_ID_LEN, want);
	if (strncmp(cfg->tls_listen[0], "0.0.0.0:", 8) == 0)
		snprintf(own, sizeof(own), "127.0.0.1:%s", cfg->tls_listen[0] + 8);
	else if (strncmp(cfg->tls_listen[0], "[::]:", 5) == 0)
		snprintf(own, sizeof(own), "[::1]:%s", cfg->tls_listen[0] + 5);
	else
		snprintf(own, sizeof(own), "%s", cfg->tls_listen[0]);
	if (tls_probe(own, sni, PROBE_MS, got, &err) < 0 || strcmp(got, want) != 0)
		return false;
	for (size_t i = 0; i < ps->n; i++)
		if (ps->v[i].tls_endpoint == NULL ||
		    tls_probe(ps->v[i].tls_endpoint, sni, PROBE_MS, got, &err) < 0 ||
		    strcmp(got, want) != 0)
			return false;
	return true;
}

/* The first managed certificate with replaced certificates, read in one
 * transaction: which of them may go now. */
static int find(void *arg, const char *name, ProtobufCMessage *m)
{
	struct retire *r = arg;
	Certsync__AcmeCert *mc = (Certsync__AcmeCert *)m;
	const char *d = mc->n_domains > 0 ? mc->domains[0] : "";

	if (mc->n_replaced == 0 || mc->current_id.len != PKI_ID_LEN)
		return 0;
	snprintf(r->name, sizeof(r->name), "%s", name);
	snprintf(r->sni, sizeof(r->sni), strncmp(d, "*.", 2) == 0 ? "acme-check.%s" : "%s",
	         strncmp(d, "*.", 2) == 0 ? d + 2 : d);
	memcpy(r->current, mc->current_id.data, PKI_ID_LEN);
	if ((r->ids = calloc(mc->n_replaced, PKI_ID_LEN)) == NULL)
		return -1;
	for (size_t i = 0; i < mc->n_replaced; i++) {
		rec_cert c;
		cs_err err;
		int got;

		if (mc->replaced[i].len != PKI_ID_LEN)
			continue;
		memcpy(r->ids[r->n++], mc->replaced[i].data, PKI_ID_LEN);
		got = rec_cert_get(r->txn, CS_TBL_CERTS, mc->replaced[i].data, &c, &err);
		r->expired = r->expired || got == 1 || (got == 0 && c.rec->not_after < time(NULL));
		if (got == 0)
			rec_cert_clear(&c);
	}
	return 1;
}

static int edit_replaced(cs_txn *txn, Certsync__AcmeCert *mc, void *arg, cs_err *err)
{
	struct retire *r = arg;
	size_t kept = 0;

	(void)txn;
	/* keep what did not go (it was still in use, or is the default), in an
	 * array of its own: mc is a shallow copy, and the record read still
	 * frees every entry of its own array */
	free(r->kept);
	if ((r->kept = calloc(mc->n_replaced + 1, sizeof(*r->kept))) == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	for (size_t i = 0; i < mc->n_replaced; i++) {
		bool gone = false;

		for (size_t k = 0; k < r->n; k++)
			gone = gone || (mc->replaced[i].len == PKI_ID_LEN &&
			                memcmp(mc->replaced[i].data, r->ids[k], PKI_ID_LEN) == 0);
		if (!gone)
			r->kept[kept++] = mc->replaced[i];
	}
	mc->replaced = r->kept;
	mc->n_replaced = kept;
	return 0;
}

static int change_retire(cs_txn *txn, void *arg, cs_err *err)
{
	struct retire *r = arg;
	uint8_t def[PKI_ID_LEN];
	int rc = rec_default(txn, def, err);
	size_t gone = 0;
	rec_cert c;
	time_t now = time(NULL);

	if (rc < 0)
		return -1;
	for (size_t i = 0; i < r->n; i++) {
		bool expired = false,
		     is_default = rc == 0 && memcmp(def, r->ids[i], PKI_ID_LEN) == 0;
		int got = rec_cert_get(txn, CS_TBL_CERTS, r->ids[i], &c, err);

		if (got < 0)
			return -1;
		if (got == 0) {
			expired = c.rec->not_after < now;
			rec_cert_clear(&c);
		}
		if (is_default || (!r->all && !expired && got == 0))
			continue; /* stays, and stays listed */
		if (got == 0 && cs_txn_del(txn, CS_TBL_CERTS, r->ids[i], PKI_ID_LEN, err) < 0)
			return -1;
		memcpy(r->ids[gone++], r->ids[i], PKI_ID_LEN);
	}
	r->n = gone;
	return rec_acme_cert_update(txn, r->name, edit_replaced, r, err) < 0 ? -1 : 0;
}

void acme_retire(acme_ctx *ctx)
{
	struct retire r = {.ctx = ctx};
	char summary[160];
	cs_err err = {0};
	cs_txn *txn;
	int rc;

	if (cs_txn_begin(ctx->store, false, &txn, &err) < 0)
		return;
	r.txn = txn;
	rc = rec_acme_foreach(txn, REC_ACME_CERT, &certsync__acme_cert__descriptor, find, &r, &err);
	cs_txn_abort(txn);
	if (rc == 1 && r.n > 0) {
		r.all = served_everywhere(ctx, r.sni, r.current);
		if (!r.all && !r.expired) {
			free(r.ids);
			return; /* nothing goes yet */
		}
		snprintf(summary, sizeof(summary), "acme %s: replaced certificates deleted%s",
		         r.name, r.all ? " (every node serves the new one)" : " (expired)");
		if (acme_runner_commit(ctx->r, summary, change_retire, &r, &err) < 0)
			cs_warn("acme: %s", err.msg);
	}
	free(r.kept);
	free(r.ids);
}
