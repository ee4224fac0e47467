/* client.c — the ACME client's session: the directory and its checks,
 * nonces, signed POSTs with badNonce retries, and problem documents turned
 * into classified errors. */
#include "acme_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROBLEM_PREFIX "urn:ietf:params:acme:error:"

int acme_fail(acme_err *e, enum cs_errcode code, acme_errclass cls, const char *fmt, ...)
{
	va_list ap;

	if (e == NULL)
		return -1;
	memset(&e->problem, 0, sizeof(e->problem));
	e->problem.retry_after = -1;
	e->cls = cls;
	e->err.code = code;
	va_start(ap, fmt);
	vsnprintf(e->err.msg, sizeof(e->err.msg), fmt, ap);
	va_end(ap);
	return -1;
}

const char *acme_errclass_name(acme_errclass cls)
{
	switch (cls) {
	case ACME_ERR_NONE:
		return "none";
	case ACME_ERR_TRANSIENT:
		return "transient";
	case ACME_ERR_OPERATOR:
		return "operator";
	case ACME_ERR_FATAL:
		break;
	}
	return "fatal";
}

acme_errclass acme_problem_class(const char *type, int status)
{
	/* what no retry fixes until someone acts: account, names, CA policy,
	 * limits, and a challenge answer the CA could not see */
	static const char *const operator[] = {
	    "unauthorized",
	    "rejectedIdentifier",
	    "caa",
	    "rateLimited",
	    "accountDoesNotExist",
	    "externalAccountRequired",
	    "userActionRequired",
	    "unsupportedIdentifier",
	    "invalidContact",
	    "unsupportedContact",
	    "dns",
	    "connection",
	    "incorrectResponse",
	    "tls",
	};
	const char *name = type;

	if (strncmp(type, PROBLEM_PREFIX, strlen(PROBLEM_PREFIX)) == 0)
		name = type + strlen(PROBLEM_PREFIX);
	if (strcmp(name, "badNonce") == 0 || strcmp(name, "serverInternal") == 0)
		return ACME_ERR_TRANSIENT;
	for (size_t i = 0; i < sizeof(operator) / sizeof(operator[0]); i++)
		if (strcmp(name, operator[i]) == 0)
			return ACME_ERR_OPERATOR;
	return status >= 500 ? ACME_ERR_TRANSIENT : ACME_ERR_FATAL;
}

int acme_json_str(json_t *obj, const char *key, bool optional, char *out, size_t outlen,
                  const char *what, acme_err *e)
{
	json_t *v = json_object_get(obj, key);
	const char *s = json_string_value(v);

	out[0] = '\0';
	if (v == NULL && optional)
		return 0;
	if (s == NULL)
		return acme_fail(e, CS_EINPUT, ACME_ERR_FATAL, "%s has no \"%s\" string", what,
		                 key);
	if (strlen(s) >= outlen)
		return acme_fail(e, CS_EINPUT, ACME_ERR_FATAL,
		                 "%s: \"%s\" is longer than %zu characters", what, key, outlen - 1);
	strcpy(out, s);
	return 0;
}

json_t *acme_json_object(const acme_http_resp *r, const char *what, const char *url, acme_err *e)
{
	json_error_t jerr;
	json_t *j = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, &jerr);

	if (j != NULL && json_is_object(j))
		return j;
	json_decref(j);
	acme_fail(e, CS_EINPUT, ACME_ERR_FATAL, "%s %s: the answer is not a JSON object (%s)", what,
	          url, j == NULL ? jerr.text : "another JSON value");
	return NULL;
}

static const char *str_or_empty(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s != NULL ? s : "";
}

/* The detail and each subproblem's identifier and detail, into out. */
static void problem_detail(json_t *doc, char *out, size_t outlen)
{
	size_t used;
	size_t i;
	json_t *sub;

	snprintf(out, outlen, "%s", str_or_empty(doc, "detail"));
	json_array_foreach(json_object_get(doc, "subproblems"), i, sub)
	{
		used = strlen(out);
		snprintf(out + used, outlen - used, "%s%s: %s", used ? "; " : "",
		         str_or_empty(json_object_get(sub, "identifier"), "value"),
		         str_or_empty(sub, "detail"));
	}
}

void acme_problem_parse(json_t *doc, int status, long retry_after, acme_problem *p)
{
	memset(p, 0, sizeof(*p));
	p->status = status != 0 ? status : (int)json_integer_value(json_object_get(doc, "status"));
	p->retry_after = retry_after;
	snprintf(p->type, sizeof(p->type), "%s", str_or_empty(doc, "type"));
	problem_detail(doc, p->detail, sizeof(p->detail));
	snprintf(p->instance, sizeof(p->instance), "%s", str_or_empty(doc, "instance"));
}

int acme_problem_fail(const acme_problem *p, const char *what, const char *url, acme_err *e)
{
	const char *name = strncmp(p->type, PROBLEM_PREFIX, strlen(PROBLEM_PREFIX)) == 0
	                       ? p->type + strlen(PROBLEM_PREFIX)
	                       : p->type;

	char status[24] = "";

	if (p->status != 0)
		snprintf(status, sizeof(status), " (HTTP %d)", p->status);
	acme_fail(e, p->status >= 500 ? CS_EIO : CS_EREFUSED,
	          acme_problem_class(p->type, p->status), "%s %s: the CA answered %s%s: %s%s%s",
	          what, url, name, status, p->detail, p->instance[0] ? "; see " : "", p->instance);
	e->problem = *p;
	return -1;
}

int acme_http_error(const acme_http_resp *r, const char *what, const char *url, acme_err *e)
{
	json_t *doc = json_loadb(r->body, r->len, 0, NULL);
	acme_problem p;

	if (json_string_value(json_object_get(doc, "type")) == NULL) {
		json_decref(doc);
		return acme_fail(e, r->status >= 500 ? CS_EIO : CS_EREFUSED,
		                 r->status >= 500 ? ACME_ERR_TRANSIENT : ACME_ERR_FATAL,
		                 "%s %s: HTTP %ld without a problem document", what, url,
		                 r->status);
	}
	acme_problem_parse(doc, (int)r->status, r->retry_after, &p);
	json_decref(doc);
	return acme_problem_fail(&p, what, url, e);
}

static int fetch_directory(acme_client *c, acme_err *e)
{
	static const char *const required[] = {"newNonce", "newAccount", "newOrder"};
	acme_http_resp r;

	if (acme_http(c, ACME_REQ_DIRECTORY, "GET", c->dir_url, NULL, "application/json", &r, e) !=
	    0)
		return cs_err_prefix(&e->err, "ACME directory: ");
	if (r.status != 200) {
		acme_http_error(&r, "ACME directory", c->dir_url, e);
		acme_http_resp_free(&r);
		return -1;
	}
	c->dir = acme_json_object(&r, "ACME directory", c->dir_url, e);
	acme_http_resp_free(&r);
	if (c->dir == NULL)
		return cs_err_prefix(&e->err, "%s is not an ACME directory: ", c->dir_url);
	for (size_t i = 0; i < 3; i++)
		if (json_string_value(json_object_get(c->dir, required[i])) == NULL)
			return acme_fail(e, CS_EINPUT, ACME_ERR_OPERATOR,
			                 "%s is not an ACME directory: it names no %s URL; set the "
			                 "directory to the CA's ACME directory URL",
			                 c->dir_url, required[i]);
	return 0;
}

acme_client *acme_client_new(const acme_client_opts *opts, acme_err *e)
{
	acme_client *c;

	if (opts->directory == NULL || strncmp(opts->directory, "https://", 8) != 0) {
		acme_fail(e, CS_EUSAGE, ACME_ERR_OPERATOR,
		          "the ACME directory must be an https:// URL, not \"%.200s\"",
		          opts->directory ? opts->directory : "");
		return NULL;
	}
	if (opts->ca_file != NULL && access(opts->ca_file, R_OK) != 0) {
		acme_fail(e, CS_EUSAGE, ACME_ERR_OPERATOR, "ca_file %.512s cannot be read: %s",
		          opts->ca_file, strerror(errno));
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL || (c->curl = curl_easy_init()) == NULL ||
	    (c->dir_url = strdup(opts->directory)) == NULL ||
	    (opts->ca_file != NULL && (c->ca_file = strdup(opts->ca_file)) == NULL) ||
	    (opts->account_url != NULL && (c->account_url = strdup(opts->account_url)) == NULL)) {
		acme_client_free(c);
		acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "out of memory");
		return NULL;
	}
	c->key = opts->account_key;
	c->cancel = opts->cancel;
	c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 30000;
	c->nonce_retries = opts->nonce_retries > 0 ? opts->nonce_retries : 15;
	if (fetch_directory(c, e) != 0) {
		acme_client_free(c);
		return NULL;
	}
	return c;
}

void acme_client_free(acme_client *c)
{
	if (c == NULL)
		return;
	if (c->curl != NULL)
		curl_easy_cleanup(c->curl);
	json_decref(c->dir);
	free(c->dir_url);
	free(c->ca_file);
	free(c->account_url);
	free(c);
}

const char *acme_directory_url(const acme_client *c, const char *name)
{
	return json_string_value(json_object_get(c->dir, name));
}

static json_t *meta(const acme_client *c, const char *name)
{
	return json_object_get(json_object_get(c->dir, "meta"), name);
}

const char *acme_terms_of_service(const acme_client *c)
{
	return json_string_value(meta(c, "termsOfService"));
}

bool acme_eab_required(const acme_client *c)
{
	return json_is_true(meta(c, "externalAccountRequired"));
}

bool acme_profile_offered(const acme_client *c, const char *name)
{
	return json_object_get(meta(c, "profiles"), name) != NULL;
}

const char *acme_account_url(const acme_client *c)
{
	return c->account_url;
}

static int new_nonce(acme_client *c, acme_err *e)
{
	const char *url = acme_directory_url(c, "newNonce");
	acme_http_resp r;

	if (acme_http(c, ACME_REQ_NEW_NONCE, "HEAD", url, NULL, NULL, &r, e) != 0)
		return cs_err_prefix(&e->err, "newNonce: ");
	if (r.status >= 400 || r.nonce[0] == '\0') {
		acme_http_resp_free(&r);
		return acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT,
		                 "newNonce %s: HTTP %ld without a Replay-Nonce", url, r.status);
	}
	snprintf(c->nonce, sizeof(c->nonce), "%s", r.nonce);
	acme_http_resp_free(&r);
	return 0;
}

static bool is_bad_nonce(const acme_err *e)
{
	return strcmp(e->problem.type, PROBLEM_PREFIX "badNonce") == 0;
}

int acme_post(acme_client *c, acme_req_type type, const char *url, json_t *payload, bool use_jwk,
              const char *accept, acme_http_resp *r, acme_err *e)
{
	const char *what = acme_req_name(type);
	char *body = payload != NULL ? acme_json_dumps(payload, JSON_COMPACT) : strdup("");

	if (body == NULL)
		return acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "out of memory");
	if (!use_jwk && c->account_url == NULL) {
		free(body);
		return acme_fail(e, CS_EUSAGE, ACME_ERR_FATAL,
		                 "%s: no ACME account yet; register the account first", what);
	}
	for (int attempt = 0;; attempt++) {
		char *jws;
		int rc;

		if (c->nonce[0] == '\0' && new_nonce(c, e) != 0)
			break;
		jws = acme_jws(c->key, use_jwk ? NULL : c->account_url, c->nonce, url, body, e);
		c->nonce[0] = '\0'; /* a nonce is good for one request */
		if (jws == NULL)
			break;
		rc = acme_http(c, type, "POST", url, jws, accept, r, e);
		free(jws);
		if (rc != 0)
			break;
		if (r->nonce[0] != '\0')
			snprintf(c->nonce, sizeof(c->nonce), "%s", r->nonce);
		if (r->status < 400) {
			free(body);
			return 0;
		}
		acme_http_error(r, what, url, e);
		acme_http_resp_free(r);
		/* the error carried a fresh nonce (RFC 8555 §6.5): retry with it */
		if (!is_bad_nonce(e) || attempt >= c->nonce_retries)
			break;
	}
	free(body);
	return -1;
}

int acme_parse_time(const char *s, time_t *out)
{
	struct tm tm = {0};
	const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	long off = 0;

	if (p == NULL)
		return -1;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			; /* fractions of a second do not matter here */
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
		int h, m;

		if (sscanf(p + 1, "%2d:%2d", &h, &m) != 2)
			return -1;
		off = (h * 60L + m) * 60L * (*p == '+' ? 1 : -1);
		p += 6;
	} else {
		return -1;
	}
	if (*p != '\0')
		return -1;
	*out = timegm(&tm) - off;
	return 0;
}

char *acme_json_dumps(const json_t *j, size_t flags)
{
	json_malloc_t jmalloc;
	json_free_t jfree;
	char *text = json_dumps(j, flags), *copy;

	if (text == NULL)
		return NULL;
	copy = strdup(text);
	json_get_alloc_funcs(&jmalloc, &jfree);
	jfree(text);
	return copy;
}
