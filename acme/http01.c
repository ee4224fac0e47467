/* http01.c — the http-01 responder: a plain HTTP listener on libevent's
 * evhttp that answers GET /.well-known/acme-challenge/TOKEN with the key
 * authorization its owner's lookup gives (on every node, from the
 * replicated store), and sends every other path to https on the same host
 * (301).  A token that is not base64url or is too long never reaches the
 * lookup.  Headers, bodies and idle connections are bounded. */
#include "acme_int.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "../common/hostport.h"

#define PREFIX          "/.well-known/acme-challenge/"
#define HEADERS_MAX     8192
#define TIMEOUT_DEFAULT 10
#define TOKEN_MAX       127 /* acme_challenge.token's room; ACME tokens are 43 */

struct acme_http01 {
	struct evhttp *http;
	struct evhttp_bound_socket *sock;
	acme_http01_lookup lookup;
	void *arg;
	unsigned port;
};

static bool is_b64url(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
			return false;
	return n > 0;
}

/* A Host that may go into a Location: a DNS name or an IP literal. */
static bool is_host(const char *h)
{
	size_t n = strlen(h);

	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((h[i] >= 'A' && h[i] <= 'Z') || (h[i] >= 'a' && h[i] <= 'z') ||
		      (h[i] >= '0' && h[i] <= '9') || strchr("-.[]:", h[i]) != NULL))
			return false;
	return true;
}

static void reply(struct evhttp_request *req, int code, const char *reason, const char *body)
{
	struct evbuffer *b = evbuffer_new();
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);

	evhttp_add_header(out, "Content-Type", "text/plain");
	evhttp_add_header(out, "Cache-Control", "no-store");
	if (b != NULL && body != NULL)
		evbuffer_add(b, body, strlen(body));
	evhttp_send_reply(req, code, reason, b);
	if (b != NULL)
		evbuffer_free(b);
}

static void redirect(struct evhttp_request *req, const char *path, const char *query)
{
	const char *host = evhttp_request_get_host(req);
	struct evbuffer *loc;

	if (host == NULL || !is_host(host)) {
		reply(req, HTTP_BADREQUEST, "Bad Request", "no usable Host header\n");
		return;
	}
	if ((loc = evbuffer_new()) == NULL) {
		reply(req, HTTP_INTERNAL, "Internal Server Error", NULL);
		return;
	}
	/* the path as it came (still percent-encoded); the port is dropped:
	 * https is on its own */
	evbuffer_add_printf(loc, "https://%s%s%s%s", host, path[0] == '/' ? "" : "/", path,
	                    query != NULL ? "?" : "");
	if (query != NULL)
		evbuffer_add(loc, query, strlen(query));
	evbuffer_add(loc, "", 1);
	/* evhttp refuses a value with CR or LF: no header injection */
	if (evhttp_add_header(evhttp_request_get_output_headers(req), "Location",
	                      (const char *)evbuffer_pullup(loc, -1)) != 0)
		reply(req, HTTP_BADREQUEST, "Bad Request", "unusable path\n");
	else
		reply(req, HTTP_MOVEPERM, "Moved Permanently", NULL);
	evbuffer_free(loc);
}

static void handle(struct evhttp_request *req, void *arg)
{
	acme_http01 *h = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	const char *token;
	size_t n;
	char *ka;

	if (path == NULL || path[0] == '\0')
		path = "/";
	if (strncmp(path, PREFIX, strlen(PREFIX)) != 0) {
		redirect(req, path, evhttp_uri_get_query(uri));
		return;
	}
	token = path + strlen(PREFIX);
	n = strlen(token);
	if (n > TOKEN_MAX) {
		reply(req, HTTP_BADREQUEST, "Bad Request", "token too long\n");
		return;
	}
	/* "..", "/", "%2e" and the like are not base64url: no lookup */
	if (!is_b64url(token, n) || (ka = h->lookup(h->arg, token)) == NULL) {
		reply(req, HTTP_NOTFOUND, "Not Found", "no such challenge\n");
		return;
	}
	reply(req, HTTP_OK, "OK", ka);
	free(ka);
}

acme_http01 *acme_http01_new(const acme_http01_opts *o, acme_err *e)
{
	acme_http01 *h = calloc(1, sizeof(*h));
	char host[256];
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (h == NULL) {
		acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "out of memory");
		return NULL;
	}
	if (!cs_hostport_split(o->listen, host, sizeof(host), &h->port, true)) {
		acme_fail(e, CS_EUSAGE, ACME_ERR_OPERATOR,
		          "http_listen \"%.200s\" is not HOST:PORT; write it as 0.0.0.0:80",
		          o->listen);
		free(h);
		return NULL;
	}
	h->lookup = o->lookup;
	h->arg = o->arg;
	if ((h->http = evhttp_new(o->base)) == NULL) {
		acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "out of memory");
		free(h);
		return NULL;
	}
	evhttp_set_max_headers_size(h->http, HEADERS_MAX);
	evhttp_set_max_body_size(h->http, 0);
	evhttp_set_timeout(h->http, o->timeout_s > 0 ? o->timeout_s : TIMEOUT_DEFAULT);
	evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_gencb(h->http, handle, h);
	h->sock = evhttp_bind_socket_with_handle(h->http, host, (ev_uint16_t)h->port);
	if (h->sock == NULL) {
		acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT,
		          "http_listen %s: cannot listen there (in use, or not this host's "
		          "address)",
		          o->listen);
		evhttp_free(h->http);
		free(h);
		return NULL;
	}
	if (getsockname(evhttp_bound_socket_get_fd(h->sock), (struct sockaddr *)&ss, &len) == 0)
		h->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
		                                         : ((struct sockaddr_in *)&ss)->sin_port);
	return h;
}

unsigned acme_http01_port(const acme_http01 *h)
{
	return h->port;
}

void acme_http01_free(acme_http01 *h)
{
	if (h == NULL)
		return;
	evhttp_free(h->http);
	free(h);
}
