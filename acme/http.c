/* http.c — the HTTP seam: one HTTPS request over libcurl with the CA's
 * trust anchors, a bounded body and a bounded time, and the headers ACME
 * reads (Replay-Nonce, Location, Retry-After, Content-Type). */
#include "acme_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct sink {
	acme_http_resp *r;
	bool too_big;
} sink;

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	sink *s = arg;
	size_t add = size * n;
	char *grown;

	if (add > ACME_BODY_MAX - s->r->len) {
		s->too_big = true;
		return 0; /* curl stops with CURLE_WRITE_ERROR */
	}
	grown = realloc(s->r->body, s->r->len + add + 1);
	if (grown == NULL)
		return 0;
	memcpy(grown + s->r->len, data, add);
	s->r->body = grown;
	s->r->len += add;
	grown[s->r->len] = '\0';
	return add;
}

/* Copies a header's value, trimmed, into out when name matches. */
static bool header_value(const char *line, size_t len, const char *name, char *out, size_t outlen)
{
	size_t nlen = strlen(name), vlen;
	const char *v;

	if (len <= nlen || strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
		return false;
	v = line + nlen + 1;
	vlen = len - nlen - 1;
	while (vlen > 0 && isspace((unsigned char)*v))
		v++, vlen--;
	while (vlen > 0 && isspace((unsigned char)v[vlen - 1]))
		vlen--;
	if (vlen >= outlen)
		vlen = 0; /* an over-long value is treated as absent */
	memcpy(out, v, vlen);
	out[vlen] = '\0';
	return true;
}

/* Retry-After is delta-seconds or an HTTP-date (RFC 9110 §10.2.3). */
static long parse_retry_after(const char *v)
{
	char *end;
	long secs = strtol(v, &end, 10);
	time_t when;

	if (end != v && *end == '\0')
		return secs < 0 ? -1 : secs;
	when = curl_getdate(v, NULL);
	if (when < 0)
		return -1;
	return when > time(NULL) ? (long)(when - time(NULL)) : 0;
}

static size_t on_header(char *line, size_t size, size_t n, void *arg)
{
	acme_http_resp *r = ((sink *)arg)->r;
	size_t len = size * n;
	char v[128];

	if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		/* a new response (after a 100 Continue): forget the last one's */
		r->content_type[0] = r->nonce[0] = r->location[0] = '\0';
		r->retry_after = -1;
		return len;
	}
	header_value(line, len, "Replay-Nonce", r->nonce, sizeof(r->nonce));
	header_value(line, len, "Location", r->location, sizeof(r->location));
	header_value(line, len, "Content-Type", r->content_type, sizeof(r->content_type));
	if (header_value(line, len, "Retry-After", v, sizeof(v)))
		r->retry_after = parse_retry_after(v);
	return len;
}

void acme_http_resp_free(acme_http_resp *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
	r->retry_after = -1;
}

/* libcurl asks about once a second: a non-zero answer aborts the transfer. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
	const atomic_bool *cancel = arg;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return atomic_load(cancel) ? 1 : 0;
}

static int send_request(acme_client *c, const char *method, const char *url, const char *body,
                        const char *accept, acme_http_resp *r, acme_err *e)
{
	struct curl_slist *hdrs = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	char accept_hdr[128];
	sink s = {.r = r};
	CURLcode rc;

	memset(r, 0, sizeof(*r));
	r->retry_after = -1;
	curl_easy_reset(c->curl);
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
	/* ACME is HTTPS only (RFC 8555 §6.1), and never follows redirects */
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, c->timeout_ms);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms);
	curl_easy_setopt(c->curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)ACME_BODY_MAX);
	curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "certsync/" CERTSYNC_VERSION);
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, &s);
	if (c->cancel != NULL) {
		curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
		curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, (void *)c->cancel);
	}
	if (c->ca_file != NULL)
		curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->ca_file);
	if (accept != NULL) {
		snprintf(accept_hdr, sizeof(accept_hdr), "Accept: %s", accept);
		hdrs = curl_slist_append(hdrs, accept_hdr);
	}
	if (strcmp(method, "POST") == 0) {
		hdrs = curl_slist_append(hdrs, "Content-Type: application/jose+json");
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
	} else if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(c->curl, CURLOPT_NOBODY, 1L);
	}
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs);
	rc = curl_easy_perform(c->curl);
	curl_slist_free_all(hdrs);
	if (rc != CURLE_OK) {
		bool too_big = s.too_big || rc == CURLE_FILESIZE_EXCEEDED;
		bool trust = rc == CURLE_PEER_FAILED_VERIFICATION;

		acme_http_resp_free(r);
		if (too_big)
			return acme_fail(e, CS_EINPUT, ACME_ERR_TRANSIENT,
			                 "%s %s: the answer is larger than %d bytes; refused",
			                 method, url, ACME_BODY_MAX);
		if (rc == CURLE_SSL_CACERT_BADFILE)
			return acme_fail(
			    e, CS_EUSAGE, ACME_ERR_OPERATOR,
			    "%s %s: the ca_file %s holds no PEM certificate OpenSSL can "
			    "read; set ca_file to the PEM file of the CA that issued the "
			    "server's certificate",
			    method, url, c->ca_file ? c->ca_file : "(system store)");
		if (trust)
			return acme_fail(
			    e, CS_EIO, ACME_ERR_OPERATOR,
			    "%s %s: the server's HTTPS certificate is not trusted (%s); "
			    "set ca_file to the CA that issued it",
			    method, url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
		return acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "%s %s: %s", method, url,
		                 errbuf[0] ? errbuf : curl_easy_strerror(rc));
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r->status);
	if (r->body == NULL && (r->body = calloc(1, 1)) == NULL)
		return acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "%s %s: out of memory", method,
		                 url);
	return 0;
}

/* The outcome of an answer with status >= 400: the class of its problem. */
static acme_errclass http_outcome(const acme_http_resp *r, const char *url)
{
	acme_err scratch = {0};

	acme_http_error(r, "", url, &scratch);
	return scratch.cls;
}

/* Counts the request curl just made (acme_request_stats). */
static void count(acme_client *c, acme_req_type type, const char *url, bool failed,
                  const acme_http_resp *r, const acme_err *e)
{
	curl_off_t us = 0;

	curl_easy_getinfo(c->curl, CURLINFO_TOTAL_TIME_T, &us);
	acme_req_record(type,
	                failed             ? e->cls
	                : r->status >= 400 ? http_outcome(r, url)
	                                   : ACME_ERR_NONE,
	                (double)us / 1e6);
}

int acme_http(acme_client *c, acme_req_type type, const char *method, const char *url,
              const char *body, const char *accept, acme_http_resp *r, acme_err *e)
{
	int ret = send_request(c, method, url, body, accept, r, e);

	count(c, type, url, ret != 0, r, e);
	return ret;
}
