/* admin.c — the admin listener (admin_listen): libevent's evhttp on the
 * agent's own loop, read-only, serving /metrics, the status page and
 * /status.json.  Loopback unless a bearer
 * token is configured (the configuration check enforces it); with a token,
 * a request without it gets 401 before anything else is looked at.
 * Headers are bounded, only GET is taken, any other path is 404. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "../common/hostport.h"
#include "../common/log.h"
#include "monitor.h"

enum { MAX_HEADERS = 8192, MAX_BODY = 1024, REQUEST_TIMEOUT_S = 10 };

struct mon_admin {
	struct evhttp *http;
	char *token;
	mon_monitor *m;
	mon_admin_source src;
};

/* Compares in time that depends on the length only. */
static bool same_secret(const char *a, const char *b)
{
	size_t n = strlen(a), k = strlen(b);
	unsigned char diff = n != k;

	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)(a[i] ^ b[i < k ? i : 0]);
	return diff == 0;
}

static bool authorized(const struct mon_admin *a, struct evhttp_request *req)
{
	const char *h;

	if (a->token == NULL)
		return true;
	h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	return h != NULL && strncmp(h, "Bearer ", 7) == 0 && same_secret(h + 7, a->token);
}

static void reply(struct evhttp_request *req, int code, const char *reason, const char *type,
                  const char *body)
{
	struct evbuffer *b = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
	if (b != NULL)
		evbuffer_add(b, body, strlen(body));
	evhttp_send_reply(req, code, reason, b);
	if (b != NULL)
		evbuffer_free(b);
}

enum page { METRICS, PAGE, STATUS_JSON };

static void answer(struct mon_admin *a, struct evhttp_request *req, enum page what)
{
	json_t *facts = what == METRICS ? a->src.metrics(a->src.ctx) : a->src.status(a->src.ctx);
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL || facts == NULL) {
		if (f != NULL)
			fclose(f);
		free(text);
		json_decref(facts);
		reply(req, 500, "Internal Server Error", "text/plain",
		      "the node's facts are not "
		      "available; see its log\n");
		return;
	}
	if (what == METRICS)
		mon_metrics_write(f, facts, a->m);
	else if (what == PAGE)
		mon_page_write(f, facts, (int64_t)time(NULL));
	else
		json_dumpf(facts, f, JSON_INDENT(2) | JSON_SORT_KEYS);
	fclose(f);
	json_decref(facts);
	if (what == PAGE)
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Security-Policy",
		                  "default-src 'none'; style-src 'unsafe-inline'; script-src "
		                  "'unsafe-inline'; connect-src 'self'");
	reply(req, 200, "OK",
	      what == METRICS ? "text/plain; version=0.0.4; charset=utf-8"
	      : what == PAGE  ? "text/html; charset=utf-8"
	                      : "application/json",
	      text);
	free(text);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct mon_admin *a = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;

	if (!authorized(a, req)) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
		                  "Bearer realm=\"certsync\"");
		reply(req, 401, "Unauthorized", "text/plain",
		      "this listener needs Authorization: Bearer with the admin token\n");
		return;
	}
	if (path != NULL && strcmp(path, "/metrics") == 0)
		answer(a, req, METRICS);
	else if (path != NULL && strcmp(path, "/") == 0)
		answer(a, req, PAGE);
	else if (path != NULL && strcmp(path, "/status.json") == 0)
		answer(a, req, STATUS_JSON);
	else
		reply(req, 404, "Not Found", "text/plain",
		      "not found; this listener serves /, /status.json and /metrics\n");
}

int mon_admin_start(mon_admin **out, struct event_base *base, const char *listen, const char *token,
                    mon_monitor *m, const mon_admin_source *src, cs_err *err)
{
	struct mon_admin *a = calloc(1, sizeof(*a));
	char host[256];
	unsigned port;

	if (a == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	a->m = m;
	a->src = *src;
	a->http = evhttp_new(base);
	if (a->http == NULL || (token != NULL && (a->token = strdup(token)) == NULL)) {
		mon_admin_stop(a);
		return cs_fail(err, CS_EIO, "out of memory");
	}
	evhttp_set_max_headers_size(a->http, MAX_HEADERS);
	evhttp_set_max_body_size(a->http, MAX_BODY);
	evhttp_set_timeout(a->http, REQUEST_TIMEOUT_S);
	evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET);
	evhttp_set_gencb(a->http, on_request, a);
	if (!cs_hostport_split(listen, host, sizeof(host), &port, false) ||
	    evhttp_bind_socket(a->http, host, (ev_uint16_t)port) != 0) {
		mon_admin_stop(a);
		return cs_fail(err, CS_EIO,
		               "admin_listen %s: cannot listen there (in use, or not an "
		               "address of this machine)",
		               listen);
	}
	cs_info("admin listener on %s (/, /status.json, /metrics)%s", listen,
	        token ? ", bearer token required" : "");
	*out = a;
	return 0;
}

void mon_admin_stop(mon_admin *a)
{
	if (a == NULL)
		return;
	if (a->http != NULL)
		evhttp_free(a->http);
	if (a->token != NULL) {
		explicit_bzero(a->token, strlen(a->token));
		free(a->token);
	}
	free(a);
}
