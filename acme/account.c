/* account.c — newAccount: registration (idempotent: the CA answers 200 with
 * the existing account for a key it knows), finding the key's account with
 * onlyReturnExisting, and External Account Binding. */
#include "acme_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Checks the request before anything is sent, so a bad contact or a
 * missing agreement changes nothing at the CA. */
static int check_request(const acme_client *c, const acme_account_req *req, acme_err *e)
{
	for (size_t i = 0; i < req->ncontact; i++) {
		const char *m = req->contact[i];

		if (strncmp(m, "mailto:", 7) != 0 || strchr(m + 7, '@') == NULL ||
		    strpbrk(m, ", \t\r\n") != NULL)
			return acme_fail(e, CS_EUSAGE, ACME_ERR_OPERATOR,
			                 "ACME contact \"%.200s\" is not a mailto: URL with one "
			                 "address; write it as mailto:admin@example.com",
			                 m);
	}
	if (acme_terms_of_service(c) != NULL && !req->agree_tos)
		return acme_fail(e, CS_EUSAGE, ACME_ERR_OPERATOR,
		                 "the CA's terms of service (%s) must be agreed to register; set "
		                 "agree_tos = yes after reading them",
		                 acme_terms_of_service(c));
	if (acme_eab_required(c) && (req->eab_kid == NULL || req->eab_hmac == NULL))
		return acme_fail(e, CS_EUSAGE, ACME_ERR_OPERATOR,
		                 "the CA requires External Account Binding; set eab_kid and "
		                 "eab_hmac_file to the key id and HMAC key the CA gave you");
	return 0;
}

/* Sends payload to newAccount and reads the account it answers with. */
static int new_account(acme_client *c, json_t *payload, acme_account *out, acme_err *e)
{
	const char *url = acme_directory_url(c, "newAccount");
	acme_http_resp r;
	json_t *acct;
	int rc;

	memset(out, 0, sizeof(*out));
	if (acme_post(c, ACME_REQ_NEW_ACCOUNT, url, payload, true, NULL, &r, e) != 0)
		return -1;
	acct = acme_json_object(&r, "newAccount", url, e);
	rc = acct == NULL ? -1 : 0;
	if (rc == 0 && (r.location[0] == '\0' || strlen(r.location) >= sizeof(out->url)))
		rc = acme_fail(e, CS_EINPUT, ACME_ERR_FATAL,
		               "newAccount %s: the answer has no usable Location (the account URL)",
		               url);
	if (rc == 0)
		rc = acme_json_str(acct, "status", false, out->status, sizeof(out->status),
		                   "the account", e);
	if (rc == 0) {
		strcpy(out->url, r.location);
		out->created = r.status == 201;
		if (strcmp(out->status, "valid") != 0)
			rc = acme_fail(e, CS_EREFUSED, ACME_ERR_OPERATOR,
			               "ACME account %s is %s; it cannot order certificates",
			               out->url, out->status);
	}
	if (rc == 0) {
		free(c->account_url);
		c->account_url = strdup(out->url);
		if (c->account_url == NULL)
			rc = acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "out of memory");
	}
	json_decref(acct);
	acme_http_resp_free(&r);
	return rc;
}

int acme_account_register(acme_client *c, const acme_account_req *req, acme_account *out,
                          acme_err *e)
{
	json_t *payload, *contact, *jwk, *eab;
	int rc;

	if (check_request(c, req, e) != 0)
		return -1;
	payload = json_pack("{s:b}", "termsOfServiceAgreed", req->agree_tos);
	contact = json_array();
	for (size_t i = 0; i < req->ncontact; i++)
		json_array_append_new(contact, json_string(req->contact[i]));
	json_object_set_new(payload, "contact", contact);
	if (req->eab_kid != NULL || req->eab_hmac != NULL) {
		jwk = acme_jwk(c->key, e);
		eab = jwk != NULL ? acme_eab(req->eab_kid, req->eab_hmac, jwk,
		                             acme_directory_url(c, "newAccount"), e)
		                  : NULL;
		json_decref(jwk);
		if (eab == NULL) {
			json_decref(payload);
			return -1;
		}
		json_object_set_new(payload, "externalAccountBinding", eab);
	}
	rc = new_account(c, payload, out, e);
	json_decref(payload);
	return rc;
}

int acme_account_find(acme_client *c, acme_account *out, acme_err *e)
{
	json_t *payload = json_pack("{s:b}", "onlyReturnExisting", 1);
	int rc = new_account(c, payload, out, e);

	json_decref(payload);
	if (rc != 0 && strstr(e->problem.type, ":accountDoesNotExist") != NULL)
		e->err.code = CS_ENOTFOUND;
	return rc;
}
