/* http01_check.c — the http-01 pre-validation check: fetch the token from
 * every node the name may lead the CA to, as the CA will (plain HTTP, the
 * name as the Host, no redirects), until each answers with the key
 * authorization (the waiting is probe.c's). */
#include "acme_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_BODY_MAX 1024

typedef struct body {
	char buf[CHECK_BODY_MAX + 1];
	size_t len;
} body;

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
	body *b = arg;

	if (b->len + size * n > CHECK_BODY_MAX)
		return 0; /* larger than any key authorization: abort */
	memcpy(b->buf + b->len, p, size * n);
	b->len += size * n;
	b->buf[b->len] = '\0';
	return size * n;
}

typedef struct http01_probe {
	CURL *curl;
	char url[600];
	const char *key_auth;
} http01_probe;

/* One fetch from endpoint (an acme_probe_fn); true when it answered 200
 * with the key authorization. */
static bool fetch(void *arg, const char *endpoint, long timeout_ms, char *seen, size_t seenlen)
{
	http01_probe *pr = arg;
	CURL *c = pr->curl;
	struct curl_slist *to = NULL;
	char connect_to[300];
	body b = {.len = 0};
	long status = 0;
	CURLcode rc;

	b.buf[0] = '\0';
	/* any host and port of the URL goes to this endpoint; the Host stays
	 * the name */
	snprintf(connect_to, sizeof(connect_to), "::%s", endpoint);
	to = curl_slist_append(NULL, connect_to);
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, pr->url);
	curl_easy_setopt(c, CURLOPT_CONNECT_TO, to);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	rc = curl_easy_perform(c);
	curl_slist_free_all(to);
	if (rc != CURLE_OK) {
		snprintf(seen, seenlen, "%s", curl_easy_strerror(rc));
		return false;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	while (b.len > 0 && (b.buf[b.len - 1] == '\n' || b.buf[b.len - 1] == '\r' ||
	                     b.buf[b.len - 1] == ' ' || b.buf[b.len - 1] == '\t'))
		b.buf[--b.len] = '\0';
	if (status == 200 && strcmp(b.buf, pr->key_auth) == 0)
		return true;
	snprintf(seen, seenlen, "HTTP %ld%s", status,
	         status == 200 ? " with another key authorization" : "");
	return false;
}

int acme_http01_check(const char *const *endpoints, size_t nendpoints, const char *name,
                      const char *token, const char *key_auth, long wait_ms,
                      const atomic_bool *cancel, acme_err *e)
{
	http01_probe pr = {.curl = curl_easy_init(), .key_auth = key_auth};
	bool v6 = strchr(name, ':') != NULL;
	int rc;

	if (pr.curl == NULL)
		return acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "out of memory");
	snprintf(pr.url, sizeof(pr.url), "http://%s%s%s/.well-known/acme-challenge/%s",
	         v6 ? "[" : "", name, v6 ? "]" : "", token);
	rc = acme_probe_all("http-01", name, endpoints, nendpoints, wait_ms, cancel, fetch, &pr, e);
	curl_easy_cleanup(pr.curl);
	return rc;
}
