/* order.c — an order's life at the CA: newOrder, its authorizations and
 * challenges, responding, polling with Retry-After, finalize with a CSR and
 * the certificate download, each step updating the acme_order so it can be
 * stored and resumed. */
#include "acme_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "../pki/pki.h"

#define POLL_DEFAULT 2  /* seconds between polls when the CA names no Retry-After */
#define POLL_MAX     60 /* no single wait is longer, whatever the CA asks */

static const char *const chal_names[] = {
    [ACME_CHAL_HTTP01] = "http-01",
    [ACME_CHAL_TLSALPN01] = "tls-alpn-01",
    [ACME_CHAL_DNS01] = "dns-01",
};

const char *acme_chal_name(acme_chal_type t)
{
	return (size_t)t < sizeof(chal_names) / sizeof(chal_names[0]) ? chal_names[t] : "?";
}

int acme_chal_parse(const char *name, acme_chal_type *out)
{
	for (size_t i = 0; i < sizeof(chal_names) / sizeof(chal_names[0]); i++) {
		if (strcmp(name, chal_names[i]) == 0) {
			*out = (acme_chal_type)i;
			return 0;
		}
	}
	return -1;
}

/* POST-as-GET of an ACME object. */
static json_t *fetch(acme_client *c, acme_req_type type, const char *url, long *retry_after,
                     acme_err *e)
{
	const char *what = acme_req_name(type);
	acme_http_resp r;
	json_t *obj;

	if (acme_post(c, type, url, NULL, false, NULL, &r, e) != 0)
		return NULL;
	obj = acme_json_object(&r, what, url, e);
	if (retry_after != NULL)
		*retry_after = r.retry_after;
	acme_http_resp_free(&r);
	return obj;
}

static int opt_time(json_t *obj, const char *key, time_t *out, const char *what, acme_err *e)
{
	const char *s = json_string_value(json_object_get(obj, key));

	*out = 0;
	if (s != NULL && acme_parse_time(s, out) != 0)
		return acme_fail(e, CS_EINPUT, ACME_ERR_FATAL, "%s: \"%s\" is not an RFC 3339 time",
		                 what, key);
	return 0;
}

/* The "error" member of an order or challenge: its type and detail. */
static void error_text(json_t *obj, char *type, size_t typelen, char *detail, size_t detaillen)
{
	json_t *doc = json_object_get(obj, "error");
	acme_problem p;

	type[0] = detail[0] = '\0';
	if (!json_is_object(doc))
		return;
	acme_problem_parse(doc, 0, -1, &p);
	snprintf(type, typelen, "%s", p.type);
	snprintf(detail, detaillen, "%s", p.detail);
}

static acme_challenge *find_challenge(acme_challenge *list, size_t n, const char *url)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].url, url) == 0)
			return &list[i];
	return NULL;
}

/* A token becomes a file name in URLs every node serves (http-01) and a DNS
 * and TLS input: only the base64url alphabet passes (RFC 8555 §8.3). */
static int check_token(const char *token, const char *what, acme_err *e)
{
	if (token[0] == '\0' ||
	    strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") !=
	        strlen(token))
		return acme_fail(e, CS_EINPUT, ACME_ERR_FATAL,
		                 "%s: a challenge token is empty or not base64url; refused", what);
	return 0;
}

/* An authorization object into a, keeping the responded flags of the
 * challenges it already held. */
static int parse_authz(json_t *obj, acme_authz *a, acme_err *e)
{
	json_t *chals = json_object_get(obj, "challenges"), *ch;
	acme_challenge *list;
	size_t i, n = 0;
	const char *what = a->url;

	if (acme_json_str(obj, "status", false, a->status, sizeof(a->status), what, e) != 0 ||
	    acme_json_str(json_object_get(obj, "identifier"), "value", false, a->identifier,
	                  sizeof(a->identifier), what, e) != 0 ||
	    opt_time(obj, "expires", &a->expires, what, e) != 0)
		return -1;
	a->wildcard = json_is_true(json_object_get(obj, "wildcard"));
	if (!json_is_array(chals))
		return acme_fail(e, CS_EINPUT, ACME_ERR_FATAL, "authorization %s has no challenges",
		                 what);
	list = calloc(json_array_size(chals) + 1, sizeof(*list));
	if (list == NULL)
		return acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "out of memory");
	json_array_foreach(chals, i, ch)
	{
		acme_challenge *c = &list[n], *old;
		const char *type = json_string_value(json_object_get(ch, "type"));

		if (type == NULL || acme_chal_parse(type, &c->type) != 0)
			continue; /* a type this client does not answer */
		if (acme_json_str(ch, "url", false, c->url, sizeof(c->url), what, e) != 0 ||
		    acme_json_str(ch, "status", false, c->status, sizeof(c->status), what, e) !=
		        0 ||
		    acme_json_str(ch, "token", false, c->token, sizeof(c->token), what, e) != 0 ||
		    check_token(c->token, what, e) != 0) {
			free(list);
			return -1;
		}
		error_text(ch, c->error_type, sizeof(c->error_type), c->error, sizeof(c->error));
		old = find_challenge(a->challenges, a->nchallenges, c->url);
		c->responded = old != NULL && old->responded;
		n++;
	}
	free(a->challenges);
	a->challenges = list;
	a->nchallenges = n;
	return 0;
}

/* An order object into o; authorizations already held keep their state. */
static int parse_order(json_t *obj, acme_order *o, acme_err *e)
{
	json_t *urls = json_object_get(obj, "authorizations"), *u;
	acme_authz *list;
	size_t i;

	if (acme_json_str(obj, "status", false, o->status, sizeof(o->status), o->url, e) != 0 ||
	    acme_json_str(obj, "finalize", false, o->finalize, sizeof(o->finalize), o->url, e) !=
	        0 ||
	    acme_json_str(obj, "certificate", true, o->certificate, sizeof(o->certificate), o->url,
	                  e) != 0 ||
	    opt_time(obj, "expires", &o->expires, o->url, e) != 0)
		return -1;
	{
		char type[128], detail[sizeof(o->error) - sizeof(type) - 2];

		error_text(obj, type, sizeof(type), detail, sizeof(detail));
		snprintf(o->error, sizeof(o->error), "%s%s%s", type, type[0] ? ": " : "", detail);
	}
	if (!json_is_array(urls) || json_array_size(urls) > ACME_MAX_IDENTIFIERS)
		return acme_fail(e, CS_EINPUT, ACME_ERR_FATAL,
		                 "order %s: \"authorizations\" is not a list of at most %d URLs",
		                 o->url, ACME_MAX_IDENTIFIERS);
	list = calloc(json_array_size(urls) + 1, sizeof(*list));
	if (list == NULL)
		return acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "out of memory");
	json_array_foreach(urls, i, u)
	{
		const char *url = json_string_value(u);

		if (url == NULL || strlen(url) >= sizeof(list[i].url)) {
			for (size_t k = 0; k < i; k++)
				free(list[k].challenges);
			free(list);
			return acme_fail(e, CS_EINPUT, ACME_ERR_FATAL,
			                 "order %s: authorization %zu is not a URL", o->url, i);
		}
		strcpy(list[i].url, url);
		for (size_t k = 0; k < o->nauthzs; k++) {
			if (strcmp(o->authzs[k].url, url) == 0) {
				list[i] = o->authzs[k];
				o->authzs[k].challenges = NULL; /* moved */
				break;
			}
		}
	}
	for (size_t k = 0; k < o->nauthzs; k++)
		free(o->authzs[k].challenges);
	free(o->authzs);
	o->authzs = list;
	o->nauthzs = json_array_size(urls);
	return 0;
}

static int refresh_authzs(acme_client *c, acme_order *o, long *retry_after, acme_err *e)
{
	for (size_t i = 0; i < o->nauthzs; i++) {
		long ra = -1;
		json_t *obj = fetch(c, ACME_REQ_AUTHORIZATION, o->authzs[i].url, &ra, e);
		int rc = obj != NULL ? parse_authz(obj, &o->authzs[i], e) : -1;

		json_decref(obj);
		if (rc != 0)
			return -1;
		if (retry_after != NULL && ra > *retry_after)
			*retry_after = ra;
	}
	return 0;
}

static int refresh(acme_client *c, acme_order *o, bool authzs, long *retry_after, acme_err *e)
{
	json_t *obj = fetch(c, ACME_REQ_ORDER, o->url, retry_after, e);
	int rc = obj != NULL ? parse_order(obj, o, e) : -1;

	json_decref(obj);
	if (rc == 0 && authzs)
		rc = refresh_authzs(c, o, retry_after, e);
	return rc;
}

int acme_order_refresh(acme_client *c, acme_order *o, acme_err *e)
{
	return refresh(c, o, true, NULL, e);
}

static int copy_names(acme_order *o, const char *const *names, size_t n, acme_err *e)
{
	o->identifiers = calloc(n, sizeof(char *));
	if (o->identifiers == NULL)
		return acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "out of memory");
	for (; o->nidentifiers < n; o->nidentifiers++)
		if ((o->identifiers[o->nidentifiers] = strdup(names[o->nidentifiers])) == NULL)
			return acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "out of memory");
	return 0;
}

static json_t *identifiers_json(const char *const *names, size_t n)
{
	json_t *ids = json_array();
	unsigned char ip[16];

	for (size_t i = 0; i < n; i++) {
		bool is_ip =
		    inet_pton(AF_INET, names[i], ip) == 1 || inet_pton(AF_INET6, names[i], ip) == 1;

		json_array_append_new(
		    ids, json_pack("{s:s, s:s}", "type", is_ip ? "ip" : "dns", "value", names[i]));
	}
	return ids;
}

static int create(acme_client *c, const char *const *names, size_t nnames, const char *profile,
                  const char *replaces, acme_order *o, acme_err *e)
{
	const char *url = acme_directory_url(c, "newOrder");
	acme_http_resp r;
	json_t *payload, *obj;
	int rc;

	if (nnames == 0 || nnames > ACME_MAX_IDENTIFIERS)
		return acme_fail(e, CS_EUSAGE, ACME_ERR_FATAL,
		                 "an order needs 1 to %d names, not %zu", ACME_MAX_IDENTIFIERS,
		                 nnames);
	if (profile != NULL && profile[0] != '\0' && !acme_profile_offered(c, profile))
		return acme_fail(e, CS_EUSAGE, ACME_ERR_OPERATOR,
		                 "the CA does not offer the profile \"%.64s\"; use one its "
		                 "directory lists under meta.profiles, or none",
		                 profile);
	if (snprintf(o->profile, sizeof(o->profile), "%s", profile ? profile : "") >=
	        (int)sizeof(o->profile) ||
	    snprintf(o->replaces, sizeof(o->replaces), "%s", replaces ? replaces : "") >=
	        (int)sizeof(o->replaces))
		return acme_fail(e, CS_EUSAGE, ACME_ERR_FATAL,
		                 "the profile or replaced CertID is too long");
	if (copy_names(o, names, nnames, e) != 0)
		return -1;
	for (;;) {
		payload = json_pack("{s:o}", "identifiers", identifiers_json(names, nnames));
		if (o->profile[0] != '\0')
			json_object_set_new(payload, "profile", json_string(o->profile));
		if (o->replaces[0] != '\0')
			json_object_set_new(payload, "replaces", json_string(o->replaces));
		rc = acme_post(c, ACME_REQ_NEW_ORDER, url, payload, false, NULL, &r, e);
		json_decref(payload);
		if (rc == 0)
			break;
		/* another order already renewed that certificate (RFC 9773 §5):
		 * once more as a plain order */
		if (o->replaces[0] == '\0' || strstr(e->problem.type, ":alreadyReplaced") == NULL)
			return -1;
		o->replaces[0] = '\0';
	}
	obj = acme_json_object(&r, "newOrder", url, e);
	if (obj != NULL && (r.location[0] == '\0' || strlen(r.location) >= sizeof(o->url)))
		rc = acme_fail(e, CS_EINPUT, ACME_ERR_FATAL,
		               "newOrder %s: the answer has no usable Location (the order URL)",
		               url);
	else if (obj != NULL)
		strcpy(o->url, r.location);
	rc = obj != NULL && rc == 0 ? parse_order(obj, o, e) : -1;
	json_decref(obj);
	acme_http_resp_free(&r);
	if (rc == 0)
		rc = refresh_authzs(c, o, NULL, e);
	return rc;
}

int acme_order_create(acme_client *c, const char *const *names, size_t nnames, const char *profile,
                      const char *replaces, acme_order *o, acme_err *e)
{
	memset(o, 0, sizeof(*o));
	if (create(c, names, nnames, profile, replaces, o, e) == 0)
		return 0;
	acme_order_free(o);
	return -1;
}

acme_challenge *acme_order_challenge(acme_order *o, size_t i, acme_chal_type t)
{
	if (i >= o->nauthzs)
		return NULL;
	for (size_t k = 0; k < o->authzs[i].nchallenges; k++)
		if (o->authzs[i].challenges[k].type == t)
			return &o->authzs[i].challenges[k];
	return NULL;
}

int acme_challenge_respond(acme_client *c, acme_challenge *ch, acme_err *e)
{
	json_t *empty = json_object(), *obj;
	acme_http_resp r;
	int rc = acme_post(c, ACME_REQ_CHALLENGE, ch->url, empty, false, NULL, &r, e);

	json_decref(empty);
	if (rc != 0)
		return -1;
	obj = acme_json_object(&r, "challenge", ch->url, e);
	rc = obj != NULL
	         ? acme_json_str(obj, "status", false, ch->status, sizeof(ch->status), ch->url, e)
	         : -1;
	json_decref(obj);
	acme_http_resp_free(&r);
	if (rc == 0)
		ch->responded = true;
	return rc;
}

/* Sleeps before the next poll: Retry-After when given, bounded by POLL_MAX
 * and the deadline; past the deadline, fails (transient: the order is still
 * there to resume). */
static int pause_poll(acme_client *c, long retry_after, time_t deadline, const char *what,
                      acme_err *e)
{
	long wait = retry_after > 0 ? retry_after : POLL_DEFAULT;
	time_t now = time(NULL);

	if (wait > POLL_MAX)
		wait = POLL_MAX;
	if (now + wait > deadline)
		return acme_fail(
		    e, CS_EIO, ACME_ERR_TRANSIENT,
		    "%s: still not done at the deadline; the CA asked to wait %ld s more", what,
		    wait);
	/* a second at a time, so a cancelled client stops soon */
	for (long i = 0; i < wait; i++) {
		if (c->cancel != NULL && atomic_load(c->cancel))
			return acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "%s: cancelled", what);
		sleep(1);
	}
	return 0;
}

/* The failure of an invalid authorization: its challenge's error. */
static int authz_failed(acme_authz *a, acme_err *e)
{
	for (size_t k = 0; k < a->nchallenges; k++) {
		acme_challenge *ch = &a->challenges[k];

		if (strcmp(ch->status, "invalid") == 0 && ch->error_type[0] != '\0') {
			acme_problem p = {.retry_after = -1};

			snprintf(p.type, sizeof(p.type), "%s", ch->error_type);
			snprintf(p.detail, sizeof(p.detail), "%s", ch->error);
			return acme_problem_fail(&p, acme_chal_name(ch->type), a->identifier, e);
		}
	}
	return acme_fail(e, CS_EREFUSED, ACME_ERR_OPERATOR, "authorization for %s is %s",
	                 a->identifier, a->status);
}

int acme_order_wait_authorized(acme_client *c, acme_order *o, time_t deadline, acme_err *e)
{
	for (;;) {
		long retry_after = -1;
		bool busy = false;

		if (refresh_authzs(c, o, &retry_after, e) != 0)
			return -1;
		for (size_t i = 0; i < o->nauthzs; i++) {
			acme_authz *a = &o->authzs[i];
			bool responded = false;

			if (strcmp(a->status, "valid") == 0)
				continue;
			if (strcmp(a->status, "pending") != 0)
				return authz_failed(a, e);
			for (size_t k = 0; k < a->nchallenges; k++)
				responded |= a->challenges[k].responded ||
				             strcmp(a->challenges[k].status, "processing") == 0;
			if (!responded)
				return acme_fail(
				    e, CS_EUSAGE, ACME_ERR_FATAL,
				    "authorization for %s is pending and no challenge was "
				    "responded to",
				    a->identifier);
			busy = true;
		}
		if (!busy)
			return refresh(c, o, false, NULL, e);
		if (pause_poll(c, retry_after, deadline, "waiting for the CA to validate", e) != 0)
			return -1;
	}
}

int acme_order_finalize(acme_client *c, acme_order *o, X509_REQ *csr, acme_err *e)
{
	uint8_t *der = NULL;
	size_t derlen = 0;
	char *b64;
	json_t *payload, *obj;
	acme_http_resp r;
	cs_err perr;
	int rc;

	if (strcmp(o->status, "ready") != 0)
		return acme_fail(e, CS_EUSAGE, ACME_ERR_FATAL,
		                 "order %s is %s, not ready; it cannot be finalized now", o->url,
		                 o->status);
	if (pki_csr_der(csr, &der, &derlen, &perr) != 0 ||
	    pki_key_spki_hash(X509_REQ_get0_pubkey(csr), o->csr_spki, &perr) != 0) {
		free(der);
		return acme_fail(e, perr.code, ACME_ERR_FATAL, "finalize: %s", perr.msg);
	}
	b64 = acme_b64url(der, derlen);
	free(der);
	payload = b64 ? json_pack("{s:s}", "csr", b64) : NULL;
	free(b64);
	if (payload == NULL)
		return acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "out of memory");
	rc = acme_post(c, ACME_REQ_FINALIZE, o->finalize, payload, false, NULL, &r, e);
	json_decref(payload);
	if (rc != 0)
		return -1;
	o->finalized = true;
	obj = acme_json_object(&r, "finalize", o->finalize, e);
	rc = obj != NULL ? parse_order(obj, o, e) : -1;
	json_decref(obj);
	acme_http_resp_free(&r);
	return rc;
}

int acme_order_wait_valid(acme_client *c, acme_order *o, time_t deadline, acme_err *e)
{
	long retry_after = -1;

	for (;;) {
		if (strcmp(o->status, "valid") == 0)
			return 0;
		if (strcmp(o->status, "invalid") == 0)
			return acme_fail(e, CS_EREFUSED, ACME_ERR_FATAL, "order %s is invalid: %s",
			                 o->url, o->error[0] ? o->error : "the CA gave no reason");
		if (strcmp(o->status, "processing") != 0 &&
		    !(o->finalized && strcmp(o->status, "ready") == 0))
			return acme_fail(e, CS_EUSAGE, ACME_ERR_FATAL,
			                 "order %s is %s; finalize it before waiting for the "
			                 "certificate",
			                 o->url, o->status);
		if (pause_poll(c, retry_after, deadline, "waiting for the certificate", e) != 0 ||
		    refresh(c, o, false, &retry_after, e) != 0)
			return -1;
	}
}

/* The chain must parse, run leaf first with each certificate issued by the
 * next, and the leaf must carry the key of the CSR that was finalized. */
static int check_chain(const acme_order *o, const char *pem, size_t len, acme_err *e)
{
	pki_bundle b;
	cs_err perr;
	uint8_t spki[32];
	int n;

	if (pki_decode((const uint8_t *)pem, len, NULL, "the answer", &b, &perr) != 0)
		return acme_fail(e, CS_EINPUT, ACME_ERR_FATAL,
		                 "certificate %s: the answer is not a PEM certificate chain (%s)",
		                 o->certificate, perr.msg);
	n = sk_X509_num(b.certs);
	if (n == 0 || b.nkeys != 0 || strcmp(b.format, "PEM") != 0 ||
	    pki_cert_spki_hash(sk_X509_value(b.certs, 0), spki, &perr) != 0) {
		pki_bundle_free(&b);
		return acme_fail(e, CS_EINPUT, ACME_ERR_FATAL,
		                 "certificate %s: the answer is not a PEM certificate chain",
		                 o->certificate);
	}
	for (int i = 0; i + 1 < n; i++) {
		if (X509_check_issued(sk_X509_value(b.certs, i + 1), sk_X509_value(b.certs, i)) !=
		    X509_V_OK) {
			pki_bundle_free(&b);
			return acme_fail(
			    e, CS_EINPUT, ACME_ERR_FATAL,
			    "certificate %s: certificate %d of the chain is not issued by "
			    "the next one",
			    o->certificate, i + 1);
		}
	}
	pki_bundle_free(&b);
	if (CRYPTO_memcmp(spki, o->csr_spki, sizeof(spki)) != 0)
		return acme_fail(e, CS_EINPUT, ACME_ERR_FATAL,
		                 "certificate %s: its key does not match the CSR's key; refused",
		                 o->certificate);
	return 0;
}

int acme_order_certificate(acme_client *c, acme_order *o, char **pem, acme_err *e)
{
	acme_http_resp r;

	*pem = NULL;
	if (strcmp(o->status, "valid") != 0 || o->certificate[0] == '\0' || !o->finalized)
		return acme_fail(e, CS_EUSAGE, ACME_ERR_FATAL,
		                 "order %s is %s; there is no certificate to download yet", o->url,
		                 o->status);
	if (acme_post(c, ACME_REQ_CERTIFICATE, o->certificate, NULL, false,
	              "application/pem-certificate-chain", &r, e) != 0)
		return -1;
	if (check_chain(o, r.body, r.len, e) != 0) {
		acme_http_resp_free(&r);
		return -1;
	}
	*pem = r.body;
	return 0;
}
