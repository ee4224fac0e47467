/* admin.c — the admin listener (admin_listen): libevent's evhttp on the
 * agent's own loop, read-only, serving /metrics, the status page and
 * /status.json.  Loopback unless a bearer
 * token is configured (the configuration check enforces it); with a token,
 * a request without it gets 401 before anything else is looked at.
 * Headers are bounded, only GET is taken, any other path is 404.
 *
 * libevent 2.1's evhttp has no connection cap of its own: the bufferevent
 * of each connection is made here (evhttp_set_bevcb) and counted, the
 * connection's close callback counts it out, and the listener stops
 * accepting while MON_ADMIN_MAX_CONNS are open, so further clients wait in
 * the kernel's backlog, holding none of the agent's descriptors. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/keyvalq_struct.h>

#include "../common/hostport.h"
#include "../common/log.h"
#include "monitor_int.h"

enum { MAX_HEADERS = 8192, MAX_BODY = 1024, REQUEST_TIMEOUT_S = 10 };

/* The open connections.  A new one is known by its bufferevent until evhttp
 * has made its connection (just after accepting), when a pass of the loop
 * gives it a close callback. */
struct conns {
	unsigned open;
	struct evconnlistener *listener;
	struct bufferevent *fresh[MON_ADMIN_MAX_CONNS]; /* each holds a reference */
	size_t nfresh;
	struct event *adopt; /* made active when fresh has some */
};

struct mon_admin {
	struct evhttp *http;
	struct conns conns;
	mon_metrics_cache *cache;
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

static void send_body(struct evhttp_request *req, int code, const char *reason, const char *type,
                      struct evbuffer *b)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
	evhttp_send_reply(req, code, reason, b);
}

static void reply(struct evhttp_request *req, int code, const char *reason, const char *type,
                  const char *body)
{
	struct evbuffer *b = evbuffer_new();

	if (b != NULL)
		evbuffer_add(b, body, strlen(body));
	send_body(req, code, reason, type, b);
	if (b != NULL)
		evbuffer_free(b);
}

static void unavailable(struct evhttp_request *req)
{
	reply(req, 500, "Internal Server Error", "text/plain",
	      "the node's facts are not available; see its log\n");
}

static void conn_gone(struct conns *c)
{
	if (c->open-- == MON_ADMIN_MAX_CONNS && c->listener != NULL)
		evconnlistener_enable(c->listener);
}

static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	conn_gone(arg);
}

/* A pass of the loop after accepting: each fresh bufferevent has its
 * connection (evhttp's callback argument), which gets the close callback;
 * one whose callbacks are gone was freed already. */
static void adopt(evutil_socket_t fd, short what, void *arg)
{
	struct conns *c = arg;

	(void)fd;
	(void)what;
	for (size_t i = 0; i < c->nfresh; i++) {
		bufferevent_event_cb on_event;
		void *evcon;

		bufferevent_getcb(c->fresh[i], NULL, NULL, &on_event, &evcon);
		if (on_event != NULL)
			evhttp_connection_set_closecb(evcon, conn_closed, c);
		else
			conn_gone(c);
		bufferevent_decref(c->fresh[i]);
	}
	c->nfresh = 0;
}

/* evhttp's bevcb: called for each accepted connection, before its socket is
 * set on what this returns.  NULL lets evhttp make one itself (only when
 * memory runs out; the connection is then not counted). */
static struct bufferevent *conn_new(struct event_base *base, void *arg)
{
	struct conns *c = arg;
	struct bufferevent *b = bufferevent_socket_new(base, -1, 0);

	if (b == NULL)
		return NULL;
	bufferevent_incref(b);
	c->fresh[c->nfresh++] = b;
	event_active(c->adopt, EV_TIMEOUT, 0);
	if (++c->open == MON_ADMIN_MAX_CONNS)
		evconnlistener_disable(c->listener);
	return b;
}

/* A scrape of /metrics waiting for the certificate metrics. */
struct scrape {
	struct mon_admin *a;
	struct evhttp_request *req;
};

/* The certificate metrics (cached) and the node's own, written fresh.  A
 * client that left meanwhile still has its request (libevent keeps it for
 * the reply, which then frees it). */
static void metrics_ready(void *arg, bool ok)
{
	struct scrape *s = arg;
	struct mon_admin *a = s->a;
	struct evhttp_request *req = s->req;
	struct evbuffer *b = ok ? evbuffer_new() : NULL;
	json_t *facts = NULL;
	char *text = NULL;
	size_t len = 0;
	FILE *f = NULL;

	free(s);
	if (b == NULL || mon_metrics_cache_add(a->cache, b) < 0 ||
	    (facts = a->src.metrics(a->src.ctx)) == NULL ||
	    (f = open_memstream(&text, &len)) == NULL) {
		json_decref(facts);
		if (b != NULL)
			evbuffer_free(b);
		unavailable(req);
		return;
	}
	mon_metrics_write(f, facts, a->m);
	fclose(f);
	json_decref(facts);
	evbuffer_add(b, text, len);
	free(text);
	send_body(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b);
	evbuffer_free(b);
}

static void answer_metrics(struct mon_admin *a, struct evhttp_request *req)
{
	struct scrape *s = malloc(sizeof(*s));

	if (s == NULL) {
		unavailable(req);
		return;
	}
	*s = (struct scrape){a, req};
	if (mon_metrics_cache_when_ready(a->cache, &a->src, (int64_t)time(NULL), metrics_ready, s) <
	    0) {
		free(s);
		unavailable(req);
	}
}

/* The status page, or what it is drawn from. */
static void answer_status(struct mon_admin *a, struct evhttp_request *req, bool page)
{
	json_t *facts = a->src.status(a->src.ctx);
	char *text = NULL;
	size_t len = 0;
	FILE *f = facts != NULL ? open_memstream(&text, &len) : NULL;

	if (f == NULL) {
		json_decref(facts);
		unavailable(req);
		return;
	}
	if (page)
		mon_page_write(f, facts, (int64_t)time(NULL));
	else
		json_dumpf(facts, f, JSON_INDENT(2) | JSON_SORT_KEYS);
	fclose(f);
	json_decref(facts);
	if (page)
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Security-Policy",
		                  "default-src 'none'; style-src 'unsafe-inline'; script-src "
		                  "'unsafe-inline'; connect-src 'self'");
	reply(req, 200, "OK", page ? "text/html; charset=utf-8" : "application/json", text);
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
		answer_metrics(a, req);
	else if (path != NULL && strcmp(path, "/") == 0)
		answer_status(a, req, true);
	else if (path != NULL && strcmp(path, "/status.json") == 0)
		answer_status(a, req, false);
	else
		reply(req, 404, "Not Found", "text/plain",
		      "not found; this listener serves /, /status.json and /metrics\n");
}

int mon_admin_start(mon_admin **out, struct event_base *base, const char *listen, const char *token,
                    mon_monitor *m, const mon_admin_source *src, cs_err *err)
{
	struct mon_admin *a = calloc(1, sizeof(*a));
	struct evhttp_bound_socket *bound = NULL;
	char host[256];
	unsigned port;

	if (a == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	a->m = m;
	a->src = *src;
	a->http = evhttp_new(base);
	a->conns.adopt = event_new(base, -1, 0, adopt, &a->conns);
	a->cache = mon_metrics_cache_new();
	if (a->http == NULL || a->conns.adopt == NULL || a->cache == NULL ||
	    (token != NULL && (a->token = strdup(token)) == NULL)) {
		mon_admin_stop(a);
		return cs_fail(err, CS_EIO, "out of memory");
	}
	evhttp_set_max_headers_size(a->http, MAX_HEADERS);
	evhttp_set_max_body_size(a->http, MAX_BODY);
	evhttp_set_timeout(a->http, REQUEST_TIMEOUT_S);
	evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET);
	evhttp_set_gencb(a->http, on_request, a);
	evhttp_set_bevcb(a->http, conn_new, &a->conns);
	if (!cs_hostport_split(listen, host, sizeof(host), &port, false) ||
	    (bound = evhttp_bind_socket_with_handle(a->http, host, (ev_uint16_t)port)) == NULL) {
		mon_admin_stop(a);
		return cs_fail(err, CS_EIO,
		               "admin_listen %s: cannot listen there (in use, or not an "
		               "address of this machine)",
		               listen);
	}
	a->conns.listener = evhttp_bound_socket_get_listener(bound);
	cs_info("admin listener on %s (/, /status.json, /metrics; at most %d connections)%s",
	        listen, MON_ADMIN_MAX_CONNS, token ? ", bearer token required" : "");
	*out = a;
	return 0;
}

void mon_admin_stop(mon_admin *a)
{
	if (a == NULL)
		return;
	/* evhttp_free closes the connections (their close callbacks run
	 * during the call) after the listener. */
	a->conns.listener = NULL;
	if (a->http != NULL)
		evhttp_free(a->http);
	for (size_t i = 0; i < a->conns.nfresh; i++)
		bufferevent_decref(a->conns.fresh[i]);
	if (a->conns.adopt != NULL)
		event_free(a->conns.adopt);
	mon_metrics_cache_free(a->cache);
	if (a->token != NULL) {
		explicit_bzero(a->token, strlen(a->token));
		free(a->token);
	}
	free(a);
}
