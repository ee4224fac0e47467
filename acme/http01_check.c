/* http01_check.c — before the CA is told to validate an http-01 challenge,
 * fetch the token from every node the name may lead the CA to, as the CA
 * will (plain HTTP, the name as the Host), and wait, bounded, until each
 * answers with the key authorization.  The one that does not is named, so
 * the operator knows which node's replication or listener lags. */
#include "acme_int.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK_WAIT_DEFAULT 30000
#define CHECK_REQUEST_MAX  5000 /* one request, so a silent node does not eat the wait */
#define CHECK_BODY_MAX     1024
#define CHECK_NAP          300

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

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One fetch from endpoint; true when it answered 200 with key_auth.  What
 * it did answer goes into seen. */
static bool fetch(CURL *c, const char *url, const char *endpoint, const char *key_auth,
                  long timeout_ms, char *seen, size_t seenlen)
{
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
	curl_easy_setopt(c, CURLOPT_URL, url);
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
	if (status == 200 && strcmp(b.buf, key_auth) == 0)
		return true;
	snprintf(seen, seenlen, "HTTP %ld%s", status,
	         status == 200 ? " with another key authorization" : "");
	return false;
}

typedef struct endpoint_state {
	bool ready;
	char seen[160]; /* what it answered last */
} endpoint_state;

int acme_http01_check(const char *const *endpoints, size_t nendpoints, const char *name,
                      const char *token, const char *key_auth, long wait_ms, acme_err *e)
{
	long wait = wait_ms > 0 ? wait_ms : CHECK_WAIT_DEFAULT;
	long long deadline = now_ms() + wait;
	endpoint_state *st = calloc(nendpoints ? nendpoints : 1, sizeof(*st));
	CURL *c = curl_easy_init();
	char url[600];
	size_t left = nendpoints;
	int rc = 0;

	if (st == NULL || c == NULL) {
		free(st);
		curl_easy_cleanup(c);
		return acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "out of memory");
	}
	snprintf(url, sizeof(url), "http://%s%s%s/.well-known/acme-challenge/%s",
	         strchr(name, ':') != NULL ? "[" : "", name, strchr(name, ':') != NULL ? "]" : "",
	         token);
	for (;;) {
		for (size_t i = 0; i < nendpoints; i++) {
			long long remain = deadline - now_ms();

			if (st[i].ready || remain <= 0)
				continue;
			st[i].ready =
			    fetch(c, url, endpoints[i], key_auth,
			          remain < CHECK_REQUEST_MAX ? (long)remain : CHECK_REQUEST_MAX,
			          st[i].seen, sizeof(st[i].seen));
			left -= st[i].ready;
		}
		if (left == 0 || now_ms() >= deadline)
			break;
		poll(NULL, 0, CHECK_NAP);
	}
	for (size_t i = 0; left > 0 && i < nendpoints; i++) {
		if (st[i].ready)
			continue;
		rc =
		    acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT,
		              "http-01 for %s: %s does not answer the token yet (%s) after %ld ms; "
		              "%zu of %zu endpoints ready",
		              name, endpoints[i], st[i].seen[0] ? st[i].seen : "not asked", wait,
		              nendpoints - left, nendpoints);
		break;
	}
	curl_easy_cleanup(c);
	free(st);
	return rc;
}
