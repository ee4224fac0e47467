/* state.c — an order as a resumable state: what to do next from the state
 * alone, and the JSON form the agent stores and replicates so another
 * process or a promoted backup picks the order up where it was. */
#include "acme_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define STATE_VERSION 1

void acme_order_free(acme_order *o)
{
	for (size_t i = 0; i < o->nidentifiers; i++)
		free(o->identifiers[i]);
	free(o->identifiers);
	for (size_t i = 0; i < o->nauthzs; i++)
		free(o->authzs[i].challenges);
	free(o->authzs);
	memset(o, 0, sizeof(*o));
}

static bool is(const char *status, const char *want)
{
	return strcmp(status, want) == 0;
}

acme_next acme_order_next(const acme_order *o, time_t now)
{
	if (o->url[0] == '\0')
		return ACME_NEXT_CREATE;
	if (is(o->status, "valid"))
		return ACME_NEXT_DOWNLOAD;
	if (is(o->status, "invalid") || (o->expires != 0 && o->expires <= now))
		return ACME_NEXT_FAILED;
	if (is(o->status, "processing") || (is(o->status, "ready") && o->finalized))
		return ACME_NEXT_WAIT_CERT;
	if (is(o->status, "ready"))
		return ACME_NEXT_FINALIZE;
	for (size_t i = 0; i < o->nauthzs; i++) {
		const acme_authz *a = &o->authzs[i];
		bool responded = false;

		if (is(a->status, "valid"))
			continue;
		if (!is(a->status, "pending"))
			return ACME_NEXT_FAILED;
		for (size_t k = 0; k < a->nchallenges; k++)
			responded |= a->challenges[k].responded;
		if (!responded)
			return ACME_NEXT_RESPOND;
	}
	return ACME_NEXT_WAIT_AUTHZ;
}

const char *acme_next_name(acme_next n)
{
	static const char *const names[] = {
	    [ACME_NEXT_CREATE] = "create",         [ACME_NEXT_RESPOND] = "respond",
	    [ACME_NEXT_WAIT_AUTHZ] = "wait-authz", [ACME_NEXT_FINALIZE] = "finalize",
	    [ACME_NEXT_WAIT_CERT] = "wait-cert",   [ACME_NEXT_DOWNLOAD] = "download",
	    [ACME_NEXT_FAILED] = "failed",
	};

	return (size_t)n < sizeof(names) / sizeof(names[0]) ? names[n] : "?";
}

static json_t *challenge_json(const acme_challenge *c)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:b, s:s, s:s}", "type", acme_chal_name(c->type),
	                 "url", c->url, "token", c->token, "status", c->status, "responded",
	                 c->responded, "error_type", c->error_type, "error", c->error);
}

static json_t *authz_json(const acme_authz *a)
{
	json_t *chals = json_array();

	for (size_t i = 0; i < a->nchallenges; i++)
		json_array_append_new(chals, challenge_json(&a->challenges[i]));
	return json_pack("{s:s, s:s, s:b, s:s, s:I, s:o}", "url", a->url, "identifier",
	                 a->identifier, "wildcard", a->wildcard, "status", a->status, "expires",
	                 (json_int_t)a->expires, "challenges", chals);
}

char *acme_order_to_json(const acme_order *o)
{
	json_t *ids = json_array(), *authzs = json_array(), *doc;
	char spki[sizeof(o->csr_spki) * 2 + 1];
	char *text;

	for (size_t i = 0; i < o->nidentifiers; i++)
		json_array_append_new(ids, json_string(o->identifiers[i]));
	for (size_t i = 0; i < o->nauthzs; i++)
		json_array_append_new(authzs, authz_json(&o->authzs[i]));
	sodium_bin2hex(spki, sizeof(spki), o->csr_spki, sizeof(o->csr_spki));
	doc = json_pack("{s:i, s:s, s:s, s:I, s:o, s:s, s:s, s:s, s:s, s:s, s:b, s:s, s:o}",
	                "version", STATE_VERSION, "url", o->url, "status", o->status, "expires",
	                (json_int_t)o->expires, "identifiers", ids, "profile", o->profile,
	                "replaces", o->replaces, "finalize", o->finalize, "certificate",
	                o->certificate, "csr_spki", spki, "finalized", o->finalized, "error",
	                o->error, "authorizations", authzs);
	text = doc != NULL ? acme_json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(doc);
	return text;
}

/* Copies s into out when it fits. */
static bool put(char *out, size_t outlen, const char *s)
{
	if (strlen(s) >= outlen)
		return false;
	strcpy(out, s);
	return true;
}

static bool challenge_from(json_t *j, acme_challenge *c)
{
	const char *type, *url, *token, *status, *etype, *error;
	int responded;

	if (json_unpack(j, "{s:s, s:s, s:s, s:s, s:b, s:s, s:s !}", "type", &type, "url", &url,
	                "token", &token, "status", &status, "responded", &responded, "error_type",
	                &etype, "error", &error) != 0)
		return false;
	c->responded = responded;
	return acme_chal_parse(type, &c->type) == 0 && put(c->url, sizeof(c->url), url) &&
	       put(c->token, sizeof(c->token), token) &&
	       put(c->status, sizeof(c->status), status) &&
	       put(c->error_type, sizeof(c->error_type), etype) &&
	       put(c->error, sizeof(c->error), error);
}

static bool authz_from(json_t *j, acme_authz *a)
{
	const char *url, *ident, *status;
	int wildcard;
	json_int_t expires;
	json_t *chals, *ch;
	size_t i;

	if (json_unpack(j, "{s:s, s:s, s:b, s:s, s:I, s:o !}", "url", &url, "identifier", &ident,
	                "wildcard", &wildcard, "status", &status, "expires", &expires, "challenges",
	                &chals) != 0 ||
	    !json_is_array(chals) || !put(a->url, sizeof(a->url), url) ||
	    !put(a->identifier, sizeof(a->identifier), ident) ||
	    !put(a->status, sizeof(a->status), status))
		return false;
	a->wildcard = wildcard;
	a->expires = (time_t)expires;
	a->challenges = calloc(json_array_size(chals) + 1, sizeof(*a->challenges));
	if (a->challenges == NULL)
		return false;
	json_array_foreach(chals, i, ch)
	{
		if (!challenge_from(ch, &a->challenges[i]))
			return false;
		a->nchallenges++;
	}
	return true;
}

static bool order_from(json_t *doc, acme_order *o)
{
	const char *url, *status, *profile, *replaces, *finalize, *cert, *spki, *error;
	json_t *ids, *authzs, *v;
	json_int_t expires;
	int version, finalized;
	size_t i, binlen;

	if (json_unpack(doc, "{s:i, s:s, s:s, s:I, s:o, s:s, s:s, s:s, s:s, s:s, s:b, s:s, s:o !}",
	                "version", &version, "url", &url, "status", &status, "expires", &expires,
	                "identifiers", &ids, "profile", &profile, "replaces", &replaces, "finalize",
	                &finalize, "certificate", &cert, "csr_spki", &spki, "finalized", &finalized,
	                "error", &error, "authorizations", &authzs) != 0 ||
	    version != STATE_VERSION || !json_is_array(ids) || !json_is_array(authzs) ||
	    json_array_size(ids) > ACME_MAX_IDENTIFIERS ||
	    json_array_size(authzs) > ACME_MAX_IDENTIFIERS || !put(o->url, sizeof(o->url), url) ||
	    !put(o->status, sizeof(o->status), status) ||
	    !put(o->profile, sizeof(o->profile), profile) ||
	    !put(o->replaces, sizeof(o->replaces), replaces) ||
	    !put(o->finalize, sizeof(o->finalize), finalize) ||
	    !put(o->certificate, sizeof(o->certificate), cert) ||
	    !put(o->error, sizeof(o->error), error) ||
	    sodium_hex2bin(o->csr_spki, sizeof(o->csr_spki), spki, strlen(spki), NULL, &binlen,
	                   NULL) != 0 ||
	    binlen != sizeof(o->csr_spki))
		return false;
	o->expires = (time_t)expires;
	o->finalized = finalized;
	o->identifiers = calloc(json_array_size(ids) + 1, sizeof(char *));
	o->authzs = calloc(json_array_size(authzs) + 1, sizeof(*o->authzs));
	if (o->identifiers == NULL || o->authzs == NULL)
		return false;
	json_array_foreach(ids, i, v)
	{
		if (!json_is_string(v) ||
		    (o->identifiers[i] = strdup(json_string_value(v))) == NULL)
			return false;
		o->nidentifiers++;
	}
	json_array_foreach(authzs, i, v)
	{
		o->nauthzs++; /* counted first, so a half-read one is freed too */
		if (!authz_from(v, &o->authzs[i]))
			return false;
	}
	return true;
}

int acme_order_from_json(const char *json, acme_order *o, acme_err *e)
{
	json_error_t jerr;
	json_t *doc = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
	bool ok;

	memset(o, 0, sizeof(*o));
	ok = doc != NULL && order_from(doc, o);
	json_decref(doc);
	if (ok)
		return 0;
	acme_order_free(o);
	return acme_fail(e, CS_EINPUT, ACME_ERR_FATAL,
	                 "the stored ACME order state is not one this version wrote%s%s",
	                 doc == NULL ? ": " : "", doc == NULL ? jerr.text : "");
}
