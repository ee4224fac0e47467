/* http.c — the minimal HTTP/1.1 a node answers over TLS, so curl, load
 * balancers and `certsync verify` can ask any node what it serves.
 *
 * GET / → JSON {"node", "role", "sni", "certificate"}; GET /healthz → 200
 * while a covering certificate is served, else 503; anything else → 404.
 * Keep-alive as HTTP/1.1 says; a request with a body, or one we cannot
 * read, is answered and the connection closed, since we do not read bodies. */
#include "tls_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

/* Finds header name in the header lines [p, end), case-insensitively; its
 * value (spaces trimmed) in *val, *vlen.  False when absent. */
static bool header(const char *p, const char *end, const char *name, const char **val, size_t *vlen)
{
	size_t nlen = strlen(name);

	while (p < end) {
		const char *eol = memchr(p, '\r', (size_t)(end - p));

		if (eol == NULL)
			eol = end;
		if ((size_t)(eol - p) > nlen && p[nlen] == ':' && strncasecmp(p, name, nlen) == 0) {
			const char *v = p + nlen + 1;

			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			*val = v;
			*vlen = (size_t)(eol - v);
			while (*vlen > 0 && (v[*vlen - 1] == ' ' || v[*vlen - 1] == '\t'))
				(*vlen)--;
			return true;
		}
		p = eol + 2;
	}
	return false;
}

static bool value_has(const char *v, size_t vlen, const char *token)
{
	size_t tlen = strlen(token);

	for (size_t i = 0; i + tlen <= vlen; i++) {
		if (strncasecmp(v + i, token, tlen) == 0)
			return true;
	}
	return false;
}

#define RESPONSE                                                                                   \
	"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"                            \
	"Cache-Control: no-store\r\nConnection: %s\r\n\r\n%s"

/* Formats status line, headers and body into a malloc'd *out. */
static int respond(int code, const char *type, const char *body, bool keep, char **out,
                   size_t *outlen)
{
	const char *reason = code == 200   ? "OK"
	                     : code == 400 ? "Bad Request"
	                     : code == 404 ? "Not Found"
	                     : code == 431 ? "Request Header Fields Too Large"
	                                   : "Service Unavailable";
	const char *conn = keep ? "keep-alive" : "close";
	size_t blen = strlen(body);
	int n = snprintf(NULL, 0, RESPONSE, code, reason, type, blen, conn, body);

	if (n < 0 || (*out = malloc((size_t)n + 1)) == NULL)
		return -1;
	snprintf(*out, (size_t)n + 1, RESPONSE, code, reason, type, blen, conn, body);
	*outlen = (size_t)n;
	return 0;
}

static int respond_root(const tls_http_info *info, bool keep, char **out, size_t *outlen)
{
	json_t *j = json_pack("{s:s, s:s, s:s?, s:s?}", "node", info->node, "role", info->role,
	                      "sni", info->sni[0] != '\0' ? info->sni : NULL, "certificate",
	                      info->cert_id[0] != '\0' ? info->cert_id : NULL);
	/* A buffer of our own: the agent's jansson allocator wipes and frees
	 * its blocks itself, so nothing jansson returns may go to realloc. */
	char body[2048];
	size_t blen = j != NULL ? json_dumpb(j, body, sizeof(body) - 2, JSON_COMPACT) : 0;
	int rc = -1;

	if (blen > 0 && blen <= sizeof(body) - 2) {
		memcpy(body + blen, "\n", 2);
		rc = respond(200, "application/json", body, keep, out, outlen);
	}
	json_decref(j);
	return rc;
}

long tls_http_answer(const char *in, size_t len, size_t cap, const tls_http_info *info, char **out,
                     size_t *outlen, bool *keep)
{
	const char *end = memmem(in, len, "\r\n\r\n", 4);
	const char *sp1, *sp2, *eol, *v, *path;
	size_t vlen, plen;
	int code;

	*keep = false;
	if (end == NULL) {
		if (len < cap)
			return 0;
		return respond(431, "text/plain", "request too large\n", false, out, outlen) < 0
		           ? -1
		           : (long)len;
	}
	end += 2; /* the header lines end with the last header's CRLF */
	eol = memchr(in, '\r', (size_t)(end - in));
	sp1 = memchr(in, ' ', (size_t)(eol - in));
	sp2 = sp1 != NULL ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
	if (sp2 == NULL || (eol - sp2 - 1 != 8) || strncmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
	    (sp2[8] != '0' && sp2[8] != '1')) {
		if (respond(400, "text/plain", "bad request\n", false, out, outlen) < 0)
			return -1;
		return (long)(end + 2 - in);
	}
	*keep = sp2[8] == '1';
	if (header(eol + 2, end, "Connection", &v, &vlen)) {
		if (value_has(v, vlen, "close"))
			*keep = false;
		else if (value_has(v, vlen, "keep-alive"))
			*keep = true;
	}
	/* We never read a body, so the next request could not be found. */
	if (header(eol + 2, end, "Transfer-Encoding", &v, &vlen) ||
	    (header(eol + 2, end, "Content-Length", &v, &vlen) && !(vlen == 1 && v[0] == '0')))
		*keep = false;
	path = sp1 + 1;
	plen = (size_t)(sp2 - path);
	for (size_t i = 0; i < plen; i++) {
		if (path[i] == '?') {
			plen = i;
			break;
		}
	}
	code = 404;
	if (sp1 - in == 3 && strncmp(in, "GET", 3) == 0) {
		if (plen == 1 && path[0] == '/') {
			if (respond_root(info, *keep, out, outlen) < 0)
				return -1;
			return (long)(end + 2 - in);
		}
		if (plen == 8 && strncmp(path, "/healthz", 8) == 0)
			code = info->healthy ? 200 : 503;
	}
	if (respond(code, "text/plain",
	            code == 200   ? "ok\n"
	            : code == 503 ? "no certificate covering this node is served\n"
	                          : "not found\n",
	            *keep, out, outlen) < 0)
		return -1;
	return (long)(end + 2 - in);
}
