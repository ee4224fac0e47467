/* acme_account.c — the runner's ACME client and account: the account key
 * is made and sealed in the store before the CA hears of it, so whichever
 * node leads next signs as the same account; registration is idempotent
 * (the CA returns the key's existing account). */
#include "acme_runner_int.h"

#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../pki/pki.h"
#include "config.h"
#include "records.h"

void acme_ctx_clear(acme_ctx *ctx)
{
	acme_client_free(ctx->client);
	EVP_PKEY_free(ctx->account_key);
	ctx->client = NULL;
	ctx->account_key = NULL;
}

int acme_local_fail(acme_err *e, acme_errclass cls, const cs_err *err)
{
	memset(e, 0, sizeof(*e));
	e->err = *err;
	e->cls = cls;
	e->problem.retry_after = -1;
	return -1;
}

bool acme_ctx_other_ca(const acme_ctx *ctx, const char *name, const char *url)
{
	const char *dir = ctx->acme->a.directory;
	const char *path = strchr(dir + strlen("https://"), '/'); /* config_acme.c checked it */
	size_t origin = path != NULL ? (size_t)(path - dir) : strlen(dir);

	if (strncmp(url, dir, origin) == 0 && (url[origin] == '/' || url[origin] == '\0'))
		return false;
	cs_info("acme %s: the order in progress (%s) is another CA's than [acme] directory %s: "
	        "a new order is made there",
	        name, url, dir);
	return true;
}

/* ---- the account --------------------------------------------------------------- */

static int put_account(cs_txn *txn, void *ctx, cs_err *err)
{
	return rec_acme_put(txn, REC_ACME_ACCOUNT, NULL, ctx, err);
}

static int register_account(acme_ctx *ctx, const Certsync__AcmeAccount *a, acme_err *e)
{
	Certsync__AcmeAccount reg;
	const cs_acme_config *ac = &ctx->acme->a;
	acme_account_req req = {.contact = (const char *const *)ac->contact,
	                        .ncontact = ac->ncontact,
	                        .agree_tos = ac->agree_tos,
	                        .eab_kid = ac->eab_kid};
	acme_account acct;
	char *hmac = NULL;
	size_t len;
	cs_err err = {0};
	int rc;

	if (ac->eab_hmac_file != NULL &&
	    cs_secret_file_read("[acme] eab_hmac_file", ac->eab_hmac_file, false, &hmac, &len,
	                        &err) < 0)
		return acme_local_fail(e, ACME_ERR_OPERATOR, &err);
	req.eab_hmac = hmac;
	rc = acme_account_register(ctx->client, &req, &acct, e);
	cs_secret_free(hmac);
	if (rc != 0)
		return -1;
	/* A copy that borrows the new strings: a may be a decoded record,
	 * whose own strings its free releases. */
	reg = *a;
	reg.url = acct.url;
	reg.status = acct.status;
	reg.directory = ac->directory;
	reg.contact = ac->contact;
	reg.n_contact = ac->ncontact;
	if (acme_runner_commit(ctx->r, "acme account registered", put_account, &reg, &err) < 0)
		return acme_local_fail(e, ACME_ERR_TRANSIENT, &err);
	cs_info("acme: account %s (%s)", acct.url, acct.created ? "new" : "already known");
	return 0;
}

int acme_ctx_forget_account(acme_ctx *ctx, cs_err *err)
{
	Certsync__AcmeAccount *a = NULL;
	char *url, *status;
	cs_txn *txn;
	int rc;

	acme_ctx_clear(ctx);
	if (cs_txn_begin(ctx->store, false, &txn, err) < 0)
		return -1;
	rc = rec_acme_get(txn, REC_ACME_ACCOUNT, NULL, &certsync__acme_account__descriptor,
	                  (ProtobufCMessage **)&a, err);
	cs_txn_abort(txn);
	if (rc < 0 || a == NULL)
		return rc < 0 ? -1 : 0;
	url = a->url;
	status = a->status;
	a->url = a->status = "";
	rc = acme_runner_commit(ctx->r, "acme account unknown to the CA", put_account, a, err);
	a->url = url;
	a->status = status;
	certsync__acme_account__free_unpacked(a, NULL);
	return rc < 0 ? -1 : 0;
}

int acme_ctx_ready(acme_ctx *ctx, acme_err *e)
{
	const cs_acme_config *ac = &ctx->acme->a;
	Certsync__AcmeAccount *a = NULL, fresh = CERTSYNC__ACME_ACCOUNT__INIT;
	acme_client_opts o = {
	    .directory = ac->directory, .ca_file = ac->ca_file, .cancel = ctx->cancel};
	bool known;
	cs_err err = {0};
	cs_txn *txn;
	int rc;

	if (ctx->client != NULL)
		return 0;
	if (cs_txn_begin(ctx->store, false, &txn, &err) < 0)
		return acme_local_fail(e, ACME_ERR_TRANSIENT, &err);
	rc = rec_acme_get(txn, REC_ACME_ACCOUNT, NULL, &certsync__acme_account__descriptor,
	                  (ProtobufCMessage **)&a, &err);
	cs_txn_abort(txn);
	if (rc < 0)
		return acme_local_fail(e, ACME_ERR_TRANSIENT, &err);
	if (a != NULL) {
		ctx->account_key =
		    rec_unseal_key(ctx->key, &a->sealed_key, (const uint8_t *)REC_ACME_ACCOUNT,
		                   strlen(REC_ACME_ACCOUNT), &err);
	} else if ((ctx->account_key = pki_key_generate(PKI_KEY_EC_P256, &err)) != NULL) {
		/* The key is in the store before the CA hears of it: whoever
		 * leads next finds the same account. */
		a = &fresh;
		fresh.created = time(NULL);
		fresh.directory = ac->directory;
		fresh.url = fresh.status = "";
		if (rec_seal_key(ctx->key, ctx->account_key, (const uint8_t *)REC_ACME_ACCOUNT,
		                 strlen(REC_ACME_ACCOUNT), &fresh.sealed_key, &err) < 0 ||
		    acme_runner_commit(ctx->r, "acme account key", put_account, &fresh, &err) < 0) {
			free(fresh.sealed_key.data);
			acme_ctx_clear(ctx);
			return acme_local_fail(e, ACME_ERR_TRANSIENT, &err);
		}
	}
	if (ctx->account_key == NULL)
		return acme_local_fail(e, ACME_ERR_TRANSIENT, &err);
	known = a->url[0] != '\0' && strcmp(a->directory, ac->directory) == 0;
	o.account_key = ctx->account_key;
	o.account_url = known ? a->url : NULL;
	ctx->client = acme_client_new(&o, e);
	rc = ctx->client == NULL ? -1 : known ? 0 : register_account(ctx, a, e);
	ctx->ari = ctx->client != NULL && acme_directory_url(ctx->client, "renewalInfo") != NULL;
	if (a == &fresh)
		free(fresh.sealed_key.data);
	else
		certsync__acme_account__free_unpacked(a, NULL);
	if (rc != 0)
		acme_ctx_clear(ctx);
	return rc;
}
