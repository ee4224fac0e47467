/* acme_obtain.c — one managed certificate's order, on the runner's thread:
 * the account, the order, publishing every challenge in the replicated
 * store (or DNS), checking that every node answers before the CA is told,
 * finalizing with a key sealed in the store, and the outcome with the next
 * attempt.  Each step the CA hears of is committed first (acknowledged by
 * the backup), so a promoted backup goes on from the order's record. */
#include "acme_runner_int.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../common/log.h"
#include "../pki/pki.h"
#include "config.h"
#include "records.h"

/* Bounds of the waits on the CA (it polls its own way meanwhile). */
#define WAIT_AUTHZ_S 180
#define WAIT_CERT_S  180
#define MAX_STEPS    16

/* ---- records of one certificate ----------------------------------------------- */

typedef struct job {
	acme_ctx *ctx;
	const char *name;
	Certsync__AcmeCert *mc;
	acme_order order;
	bool have_order;
	EVP_PKEY *cert_key;
	uint8_t *sealed; /* the cert key sealed, for the order's record */
	size_t sealed_len;
	int64_t started;
	acme_chal_type type;
	/* what publish() writes */
	Certsync__AcmeHttpToken *tokens;
	Certsync__AcmeAlpnCert *alpn;
	char **keys; /* their names */
	size_t npub;
} job;

static int put_order(cs_txn *txn, const job *j, cs_err *err)
{
	Certsync__AcmeOrder rec = CERTSYNC__ACME_ORDER__INIT;
	char *json = acme_order_to_json(&j->order);
	int rc;

	if (json == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	rec.order_json = json;
	rec.sealed_key = (ProtobufCBinaryData){j->sealed_len, j->sealed};
	rec.started = j->started;
	if (j->mc->current_id.len > 0)
		rec.replaces_id = j->mc->current_id;
	rc = rec_acme_put(txn, REC_ACME_ORDER, j->name, &rec.base, err);
	free(json);
	return rc;
}

static int change_order(cs_txn *txn, void *ctx, cs_err *err)
{
	return put_order(txn, ctx, err);
}

static int save_order(job *j, const char *what, acme_err *e)
{
	char summary[160];
	cs_err err = {0};

	snprintf(summary, sizeof(summary), "acme %s: %s", j->name, what);
	if (acme_runner_commit(j->ctx->r, summary, change_order, j, &err) < 0)
		return acme_local_fail(e, ACME_ERR_TRANSIENT, &err);
	return 0;
}

static int load(job *j, acme_err *e)
{
	Certsync__AcmeOrder *o = NULL;
	cs_err err = {0};
	char ad[REC_ACME_KEY_MAX];
	cs_txn *txn;
	int rc;

	if (cs_txn_begin(j->ctx->store, false, &txn, &err) < 0)
		return acme_local_fail(e, ACME_ERR_TRANSIENT, &err);
	rc = rec_acme_get(txn, REC_ACME_CERT, j->name, &certsync__acme_cert__descriptor,
	                  (ProtobufCMessage **)&j->mc, &err);
	if (rc == 0)
		rc = rec_acme_get(txn, REC_ACME_ORDER, j->name, &certsync__acme_order__descriptor,
		                  (ProtobufCMessage **)&o, &err);
	cs_txn_abort(txn);
	if (rc < 0 || j->mc == NULL)
		return rc < 0 ? acme_local_fail(e, ACME_ERR_TRANSIENT, &err) : 1;
	if (o == NULL)
		return 0;
	j->started = o->started;
	if (o->sealed_key.len > 0) {
		rec_acme_key(ad, REC_ACME_ORDER, j->name);
		j->cert_key = rec_unseal_key(j->ctx->key, &o->sealed_key, (const uint8_t *)ad,
		                             strlen(ad), &err);
		j->sealed = malloc(o->sealed_key.len);
		if (j->cert_key == NULL || j->sealed == NULL) {
			certsync__acme_order__free_unpacked(o, NULL);
			return acme_local_fail(e, ACME_ERR_FATAL, &err);
		}
		memcpy(j->sealed, o->sealed_key.data, o->sealed_key.len);
		j->sealed_len = o->sealed_key.len;
	}
	j->have_order = acme_order_from_json(o->order_json, &j->order, e) == 0;
	if (j->have_order && acme_ctx_other_ca(j->ctx, j->name, j->order.url)) {
		acme_order_free(&j->order);
		j->have_order = false;
	}
	certsync__acme_order__free_unpacked(o, NULL);
	return 0;
}

/* ---- publishing and checking the challenges ----------------------------------- */

/* The authorizations this order still has to answer, with their challenge. */
#define EACH_PENDING(j, i, ch)                                                                     \
	for (size_t i = 0; i < (j)->order.nauthzs; i++)                                            \
		if (strcmp((j)->order.authzs[i].status, "pending") == 0 &&                         \
		    ((ch) = acme_order_challenge(&(j)->order, i, (j)->type)) != NULL)

static int publish_dns(job *j, bool add, const char *ident, const char *key_auth, acme_err *e)
{
	const cs_acme_config *ac = &j->ctx->acme->a;
	acme_tsig_key key;
	char value[44];
	int rc;

	if (acme_dns01_value(key_auth, value, e) != 0)
		return -1;
	if (ac->dns_server == NULL)
		return acme_dns_hook(ac->dns_hook, add, ident, value, 0, e);
	if (acme_tsig_key_load(ac->dns_tsig_key_file, &key, e) != 0)
		return -1;
	rc = acme_dns01_update(ac->dns_server, &key, add, ident, value, 0, e);
	acme_tsig_key_wipe(&key);
	return rc;
}

static void free_published(job *j)
{
	for (size_t i = 0; i < j->npub; i++) {
		if (j->tokens != NULL)
			free(j->tokens[i].key_authorization);
		if (j->alpn != NULL) {
			free(j->alpn[i].der.data);
			free(j->alpn[i].sealed_key.data);
		}
		free(j->keys[i]);
	}
	free(j->tokens);
	free(j->alpn);
	free(j->keys);
	j->tokens = NULL;
	j->alpn = NULL;
	j->keys = NULL;
	j->npub = 0;
}

static int change_publish(cs_txn *txn, void *ctx, cs_err *err)
{
	job *j = ctx;

	for (size_t i = 0; i < j->npub; i++) {
		const ProtobufCMessage *m =
		    j->tokens != NULL ? &j->tokens[i].base : &j->alpn[i].base;

		if (rec_acme_put(txn, j->tokens != NULL ? REC_ACME_HTTP01 : REC_ACME_ALPN,
		                 j->keys[i], m, err) < 0)
			return -1;
	}
	return put_order(txn, j, err);
}

/* The tls-alpn-01 record of ident: a challenge certificate with a key of
 * its own, sealed under the record's key. */
static int alpn_record(job *j, Certsync__AcmeAlpnCert *rec, const char *ident, const char *key_auth,
                       acme_err *e)
{
	Certsync__AcmeAlpnCert init = CERTSYNC__ACME_ALPN_CERT__INIT;
	char ad[REC_ACME_KEY_MAX];
	uint8_t digest[32];
	EVP_PKEY *k = NULL;
	X509 *x = NULL;
	cs_err err = {0};
	int rc = -1;

	*rec = init;
	rec->name = (char *)j->name;
	rec->created = time(NULL);
	rec_acme_key(ad, REC_ACME_ALPN, ident);
	if (acme_tlsalpn01_digest(key_auth, digest, e) != 0)
		return -1;
	if ((k = pki_key_generate(PKI_KEY_EC_P256, &err)) != NULL &&
	    (x = pki_tlsalpn01_cert(k, ident, digest, &err)) != NULL &&
	    pki_cert_der(x, &rec->der.data, &rec->der.len, &err) == 0 &&
	    rec_seal_key(j->ctx->key, k, (const uint8_t *)ad, strlen(ad), &rec->sealed_key, &err) ==
	        0)
		rc = 0;
	EVP_PKEY_free(k);
	X509_free(x);
	return rc < 0 ? acme_local_fail(e, ACME_ERR_FATAL, &err) : 0;
}

static int publish(job *j, acme_err *e)
{
	acme_challenge *ch;
	size_t n = j->order.nauthzs;
	int rc = 0;

	j->keys = calloc(n + 1, sizeof(char *));
	if (j->type == ACME_CHAL_HTTP01)
		j->tokens = calloc(n + 1, sizeof(*j->tokens));
	else if (j->type == ACME_CHAL_TLSALPN01)
		j->alpn = calloc(n + 1, sizeof(*j->alpn));
	if (j->keys == NULL || (j->type == ACME_CHAL_HTTP01 && j->tokens == NULL) ||
	    (j->type == ACME_CHAL_TLSALPN01 && j->alpn == NULL))
		return acme_local_fail(e, ACME_ERR_TRANSIENT, &(cs_err){CS_EIO, "out of memory"});
	EACH_PENDING(j, i, ch)
	{
		const char *ident = j->order.authzs[i].identifier;
		char *ka = acme_key_authorization(j->ctx->account_key, ch->token, e);

		if (ka == NULL)
			return -1;
		if (j->type == ACME_CHAL_DNS01) {
			rc = publish_dns(j, true, ident, ka, e);
			free(ka);
		} else if (j->type == ACME_CHAL_HTTP01) {
			Certsync__AcmeHttpToken init = CERTSYNC__ACME_HTTP_TOKEN__INIT;

			j->tokens[j->npub] = init;
			j->tokens[j->npub].key_authorization = ka;
			j->tokens[j->npub].name = (char *)j->name;
			j->tokens[j->npub].created = time(NULL);
			j->keys[j->npub] = strdup(ch->token);
			j->npub++;
		} else {
			rc = alpn_record(j, &j->alpn[j->npub], ident, ka, e);
			free(ka);
			j->keys[j->npub] = strdup(ident);
			j->npub++;
		}
		if (rc != 0)
			return -1;
	}
	return 0;
}

/* Every node's address for the check: this node's listener (an address
 * of any is reached on loopback) and each peer's configured endpoint. */
static int endpoints(job *j, const char ***out, size_t *n, char own[300], acme_err *e)
{
	const cs_config *cfg = j->ctx->cfg;
	const cs_peers_snap *ps = j->ctx->peers;
	bool http = j->type == ACME_CHAL_HTTP01;
	const char *mine = http ? cfg->http_listen : cfg->ntls_listen ? cfg->tls_listen[0] : NULL;
	const char **list = calloc(ps->n + 1, sizeof(char *));
	cs_err err = {0};

	if (list == NULL)
		return acme_local_fail(e, ACME_ERR_TRANSIENT, &(cs_err){CS_EIO, "out of memory"});
	if (mine == NULL) {
		free(list);
		cs_fail(&err, CS_EUSAGE, "%s cannot answer %s: it has no %s; add it to [node]",
		        cfg->name, acme_chal_name(j->type), http ? "http_listen" : "tls_listen");
		return acme_local_fail(e, ACME_ERR_OPERATOR, &err);
	}
	if (strncmp(mine, "0.0.0.0:", 8) == 0)
		snprintf(own, 300, "127.0.0.1:%s", mine + 8);
	else if (strncmp(mine, "[::]:", 5) == 0)
		snprintf(own, 300, "[::1]:%s", mine + 5);
	else
		snprintf(own, 300, "%s", mine);
	list[0] = own;
	*n = 1;
	for (size_t i = 0; i < ps->n; i++) {
		const char *ep = http ? ps->v[i].http_endpoint : ps->v[i].tls_endpoint;

		if (ep == NULL) {
			free(list);
			cs_fail(&err, CS_EUSAGE,
			        "node %s cannot be checked for %s: [peer %s] has no %s; add it",
			        ps->v[i].name, acme_chal_name(j->type), ps->v[i].name,
			        http ? "http_endpoint" : "tls_endpoint");
			return acme_local_fail(e, ACME_ERR_OPERATOR, &err);
		}
		list[(*n)++] = ep;
	}
	*out = list;
	return 0;
}

/* The check's error names an endpoint: say whose it is (eps[0] is this
 * node, then the peers in order). */
static void name_node(const acme_ctx *ctx, const char **eps, size_t n, acme_err *e)
{
	for (size_t k = 0; k < n; k++)
		if (strstr(e->err.msg, eps[k]) != NULL) {
			cs_err_prefix(&e->err, "node %s is not ready: ",
			              k == 0 ? ctx->cfg->name : ctx->peers->v[k - 1].name);
			return;
		}
}

/* Before the CA is told: every node answers (or the DNS server does). */
static int prevalidate(job *j, acme_err *e)
{
	long wait_ms = 1000L * cs_config_acme_check_timeout(&j->ctx->acme->a);
	const char *dns = j->ctx->acme->a.dns_server;
	const char **eps = NULL;
	char own[300], value[44];
	size_t n = 0;
	acme_challenge *ch;
	int rc = 0;

	if (j->type != ACME_CHAL_DNS01 && endpoints(j, &eps, &n, own, e) < 0)
		return -1;
	EACH_PENDING(j, i, ch)
	{
		const char *ident = j->order.authzs[i].identifier;
		char *ka = acme_key_authorization(j->ctx->account_key, ch->token, e);

		if (ka == NULL || ch->responded) {
			rc = ka == NULL ? -1 : 0;
		} else if (j->type == ACME_CHAL_HTTP01) {
			rc = acme_http01_check(eps, n, ident, ch->token, ka, wait_ms, e);
		} else if (j->type == ACME_CHAL_TLSALPN01) {
			rc = acme_tlsalpn01_check(eps, n, ident, ka, wait_ms, e);
		} else if (dns != NULL) {
			rc = acme_dns01_value(ka, value, e) != 0
			         ? -1
			         : acme_dns01_wait(dns, ident, value, wait_ms, e);
		}
		free(ka);
		if (rc != 0)
			break;
	}
	if (rc != 0 && eps != NULL)
		name_node(j->ctx, eps, n, e);
	free(eps);
	return rc;
}

/* Takes the challenge answers down, whatever the outcome. */
static int change_unpublish(cs_txn *txn, void *ctx, cs_err *err)
{
	job *j = ctx;

	if (ops_acme_drop_challenges(txn, j->name, err) < 0)
		return -1;
	return j->have_order ? put_order(txn, j, err) : 0;
}

static void unpublish(job *j)
{
	acme_challenge *ch;
	acme_err e;
	cs_err err = {0};
	char summary[160];

	if (j->type == ACME_CHAL_DNS01 && j->have_order)
		for (size_t i = 0; i < j->order.nauthzs; i++) {
			char *ka;

			ch = acme_order_challenge(&j->order, i, j->type);
			if (ch == NULL || !ch->responded ||
			    (ka = acme_key_authorization(j->ctx->account_key, ch->token, &e)) ==
			        NULL)
				continue;
			if (publish_dns(j, false, j->order.authzs[i].identifier, ka, &e) != 0)
				cs_warn("acme: %s: %s", j->name, e.err.msg);
			free(ka);
		}
	snprintf(summary, sizeof(summary), "acme %s: challenges removed", j->name);
	if (acme_runner_leading(j->ctx->r) &&
	    acme_runner_commit(j->ctx->r, summary, change_unpublish, j, &err) < 0)
		cs_warn("acme: %s", err.msg);
}

static int respond(job *j, acme_err *e)
{
	acme_challenge *ch;
	char summary[160];
	cs_err err = {0};

	if (publish(j, e) < 0) {
		free_published(j);
		return -1;
	}
	snprintf(summary, sizeof(summary), "acme %.30s: %s challenges published", j->name,
	         acme_chal_name(j->type));
	if (acme_runner_commit(j->ctx->r, summary, change_publish, j, &err) < 0) {
		free_published(j);
		return acme_local_fail(e, ACME_ERR_TRANSIENT, &err);
	}
	free_published(j);
	if (prevalidate(j, e) < 0)
		return -1;
	EACH_PENDING(j, i, ch)
	if (!ch->responded && acme_challenge_respond(j->ctx->client, ch, e) != 0)
		return -1;
	return save_order(j, "the CA validates", e);
}

/* ---- the order's steps ------------------------------------------------------------- */

static int create(job *j, acme_err *e)
{
	const Certsync__AcmeCert *mc = j->mc;
	char certid[128] = "";
	rec_cert cur = {0};
	cs_err err = {0};
	cs_txn *txn;
	X509 *x;

	/* ARI: the order says which certificate it replaces. */
	if (j->ctx->ari && mc->current_id.len == PKI_ID_LEN &&
	    cs_txn_begin(j->ctx->store, false, &txn, &err) == 0) {
		if (rec_cert_get(txn, CS_TBL_CERTS, mc->current_id.data, &cur, &err) == 0 &&
		    (x = pki_cert_from_der(cur.rec->der.data, cur.rec->der.len, &err)) != NULL) {
			if (acme_ari_certid(x, certid, sizeof(certid), e) != 0)
				certid[0] = '\0';
			X509_free(x);
		}
		rec_cert_clear(&cur);
		cs_txn_abort(txn);
	}
	if (j->have_order)
		acme_order_free(&j->order);
	j->have_order = false;
	EVP_PKEY_free(j->cert_key);
	j->cert_key = NULL;
	free(j->sealed);
	j->sealed = NULL;
	j->sealed_len = 0;
	if (acme_order_create(j->ctx->client, (const char *const *)mc->domains, mc->n_domains,
	                      mc->profile, certid, &j->order, e) != 0)
		return -1;
	j->have_order = true;
	j->started = time(NULL);
	return save_order(j, "order created", e);
}

static int finalize(job *j, acme_err *e)
{
	pki_subject subj = {.common_name = NULL, .names_only = true};
	char ad[REC_ACME_KEY_MAX];
	pki_keyspec spec;
	X509_REQ *csr;
	cs_err err = {0};
	int rc;

	/* A common name only when the first DNS name fits one (64 characters). */
	for (size_t i = 0; i < j->mc->n_domains && subj.common_name == NULL; i++)
		if (strlen(j->mc->domains[i]) <= 64 && strchr(j->mc->domains[i], ':') == NULL)
			subj.common_name = j->mc->domains[i];
	subj.sans = (const char *const *)j->mc->domains;
	subj.nsans = j->mc->n_domains;
	if (j->cert_key == NULL) {
		/* The key is sealed in the order's record before the CA sees its
		 * request, so whoever finishes the order holds the key. */
		rec_acme_key(ad, REC_ACME_ORDER, j->name);
		if (pki_keyspec_parse(j->mc->key_type, &spec, &err) < 0 ||
		    (j->cert_key = pki_key_generate(spec, &err)) == NULL)
			return acme_local_fail(e, ACME_ERR_FATAL, &err);
		ProtobufCBinaryData sealed;
		if (rec_seal_key(j->ctx->key, j->cert_key, (const uint8_t *)ad, strlen(ad), &sealed,
		                 &err) < 0)
			return acme_local_fail(e, ACME_ERR_FATAL, &err);
		j->sealed = sealed.data;
		j->sealed_len = sealed.len;
		if (save_order(j, "certificate key made", e) < 0)
			return -1;
	}
	if ((csr = pki_csr(j->cert_key, &subj, &err)) == NULL)
		return acme_local_fail(e, ACME_ERR_FATAL, &err);
	rc = acme_order_finalize(j->ctx->client, &j->order, csr, e);
	X509_REQ_free(csr);
	return rc != 0 ? -1 : save_order(j, "finalized", e);
}

static int download(job *j, acme_err *e)
{
	char *pem = NULL;
	int rc;

	if (acme_order_certificate(j->ctx->client, &j->order, &pem, e) != 0)
		return -1;
	rc = acme_install(j->ctx, j->mc, j->cert_key, pem, e);
	free(pem);
	return rc;
}

/* Runs the order until it is done (1), failed (-1) or the node stepped
 * down (0). */
static int steps(job *j, acme_err *e)
{
	for (int n = 0; n < MAX_STEPS; n++) {
		if (!acme_runner_leading(j->ctx->r))
			return 0;
		switch (j->have_order ? acme_order_next(&j->order, time(NULL)) : ACME_NEXT_CREATE) {
		case ACME_NEXT_CREATE:
			if (create(j, e) < 0)
				return -1;
			break;
		case ACME_NEXT_RESPOND:
			if (respond(j, e) < 0) {
				unpublish(j);
				return -1;
			}
			break;
		case ACME_NEXT_WAIT_AUTHZ: {
			int rc = acme_order_wait_authorized(j->ctx->client, &j->order,
			                                    time(NULL) + WAIT_AUTHZ_S, e);

			unpublish(j);
			if (rc != 0)
				return -1;
			break;
		}
		case ACME_NEXT_FINALIZE:
			if (finalize(j, e) < 0)
				return -1;
			break;
		case ACME_NEXT_WAIT_CERT:
			if (acme_order_wait_valid(j->ctx->client, &j->order,
			                          time(NULL) + WAIT_CERT_S, e) != 0)
				return -1;
			break;
		case ACME_NEXT_DOWNLOAD:
			return download(j, e) < 0 ? -1 : 1;
		case ACME_NEXT_FAILED: {
			cs_err err = {0};

			cs_fail(&err, CS_EREFUSED, "the order %s is %s%s%s; a new one follows",
			        j->order.url, j->order.status, j->order.error[0] ? ": " : "",
			        j->order.error);
			return acme_local_fail(e, ACME_ERR_TRANSIENT, &err);
		}
		}
	}
	return 0;
}

/* ---- the outcome ------------------------------------------------------------------ */

struct outcome {
	job *j;
	const acme_err *e;
	bool drop_order;
	char reason[160];
};

/* Whether the CA stops this client until someone acts: a paused account
 * or a rate limit (with the CA's page to read). */
static bool paused(const acme_err *e)
{
	return strstr(e->problem.type, "rateLimited") != NULL || e->problem.instance[0] != '\0';
}

static int edit_failed(cs_txn *txn, Certsync__AcmeCert *mc, void *arg, cs_err *err)
{
	struct outcome *o = arg;
	const acme_err *e = o->e;
	rec_cert cur = {0};
	time_t now = time(NULL), line = 0;

	if (mc->current_id.len == PKI_ID_LEN &&
	    rec_cert_get(txn, CS_TBL_CERTS, mc->current_id.data, &cur, err) == 0) {
		line = acme_emergency_line(cur.rec->not_before, cur.rec->not_after);
		rec_cert_clear(&cur);
	}
	mc->failures++;
	mc->last_error = (char *)e->err.msg;
	mc->last_error_type = (char *)e->problem.type;
	mc->last_error_url = (char *)e->problem.instance;
	if (e->cls == ACME_ERR_OPERATOR) {
		mc->state = paused(e) ? REC_ACME_STATE_PAUSED : REC_ACME_STATE_FAILED;
		mc->next_attempt = 0;
		mc->next_reason = "stopped: the error needs the operator; fix it, then `certsync "
		                  "acme renew NAME`";
	} else {
		mc->state = REC_ACME_STATE_SCHEDULED;
		mc->next_attempt = acme_retry_time(mc->failures, now, e->problem.retry_after, line);
		snprintf(o->reason, sizeof(o->reason), "retry %u after a %s error", mc->failures,
		         acme_errclass_name(e->cls));
		mc->next_reason = o->reason;
	}
	return 0;
}

static int change_failed(cs_txn *txn, void *ctx, cs_err *err)
{
	struct outcome *o = ctx;
	int rc = rec_acme_cert_update(txn, o->j->name, edit_failed, o, err);

	if (rc == 0 && o->drop_order)
		rc = rec_acme_del(txn, REC_ACME_ORDER, o->j->name, err);
	return rc < 0 ? -1 : 0;
}

static int edit_running(cs_txn *txn, Certsync__AcmeCert *mc, void *arg, cs_err *err)
{
	(void)txn;
	(void)arg;
	(void)err;
	mc->state = REC_ACME_STATE_RUNNING;
	mc->next_reason = "order in progress";
	return 0;
}

static int change_running(cs_txn *txn, void *ctx, cs_err *err)
{
	return rec_acme_cert_update(txn, ctx, edit_running, NULL, err) < 0 ? -1 : 0;
}

void acme_obtain(acme_ctx *ctx, const char *name)
{
	job j = {.ctx = ctx, .name = name};
	struct outcome o = {.j = &j};
	char summary[160];
	acme_err e = {0};
	cs_err err = {0};
	int rc = load(&j, &e);

	if (rc == 1)
		return; /* removed meanwhile */
	if (rc == 0 && strcmp(j.mc->state, REC_ACME_STATE_RUNNING) != 0) {
		snprintf(summary, sizeof(summary), "acme %s: running", name);
		rc = acme_runner_commit(ctx->r, summary, change_running, (void *)name, &err) < 0
		         ? acme_local_fail(&e, ACME_ERR_TRANSIENT, &err)
		         : 0;
	}
	if (rc == 0 && acme_chal_parse(j.mc->challenge, &j.type) != 0)
		rc = acme_local_fail(&e, ACME_ERR_OPERATOR,
		                     &(cs_err){CS_EINPUT, "the record names an unknown challenge"});
	if (rc == 0)
		rc = acme_ctx_ready(ctx, &e);
	/* A stored order is asked about again: the CA may have moved on. */
	if (rc == 0 && j.have_order && acme_order_refresh(ctx->client, &j.order, &e) != 0) {
		cs_warn("acme: %s: the stored order %s: %s; starting a new one", name, j.order.url,
		        e.err.msg);
		acme_order_free(&j.order);
		j.have_order = false;
	}
	if (rc == 0)
		rc = steps(&j, &e);
	/* A CA that lost the account (its state reset) takes the same key
	 * again as a new account: once, at once, with a new order. */
	if (rc < 0 && strstr(e.problem.type, ":accountDoesNotExist") != NULL &&
	    acme_runner_leading(ctx->r) && acme_ctx_forget_account(ctx, &err) == 0) {
		cs_warn("acme: %s: the CA no longer knows the cluster's account; registering its "
		        "key again",
		        name);
		if (j.have_order)
			acme_order_free(&j.order);
		j.have_order = false;
		e = (acme_err){0};
		rc = acme_ctx_ready(ctx, &e);
		if (rc == 0)
			rc = steps(&j, &e);
	}
	if (rc < 0 && acme_runner_leading(ctx->r)) {
		cs_warn("acme: %s: %s (%s)", name, e.err.msg, acme_errclass_name(e.cls));
		o.e = &e;
		/* an order that cannot go on is started again next time */
		o.drop_order =
		    !j.have_order || e.cls != ACME_ERR_TRANSIENT ||
		    (j.have_order && acme_order_next(&j.order, time(NULL)) == ACME_NEXT_FAILED);
		snprintf(summary, sizeof(summary), "acme %s: failed (%s)", name,
		         acme_errclass_name(e.cls));
		if (acme_runner_commit(ctx->r, summary, change_failed, &o, &err) < 0)
			cs_warn("acme: %s", err.msg);
		/* a client whose account or directory failed is made again */
		if (e.cls != ACME_ERR_TRANSIENT || ctx->client == NULL)
			acme_ctx_clear(ctx);
	}
	if (j.have_order)
		acme_order_free(&j.order);
	EVP_PKEY_free(j.cert_key);
	free(j.sealed);
	if (j.mc != NULL)
		certsync__acme_cert__free_unpacked(j.mc, NULL);
}
