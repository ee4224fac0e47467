/* acme_int.h — what the files of the acme module share and nothing outside
 * it uses: the client's insides, the HTTP seam (acme_http, the one function
 * that makes a request), signed requests, JWS building and error helpers. */
#ifndef CS_ACME_INT_H
#define CS_ACME_INT_H

#include "acme.h"

#include <curl/curl.h>
#include <jansson.h>

#include "../common/clock.h"

struct acme_client {
	CURL *curl;
	char *ca_file;
	long timeout_ms;
	int nonce_retries;
	EVP_PKEY *key;
	char *dir_url;
	json_t *dir; /* the directory object */
	char nonce[256];
	char *account_url;
	const atomic_bool *cancel; /* acme_client_opts.cancel */
};

/* ---- the HTTP seam ---------------------------------------------------------- */

typedef struct acme_http_resp {
	long status;
	char *body; /* NUL-terminated, at most ACME_BODY_MAX bytes */
	size_t len;
	char content_type[128];
	char nonce[256];
	char location[512];
	long retry_after; /* seconds, or -1 */
} acme_http_resp;

/* One HTTPS request: method "GET", "HEAD" or "POST" (body sent as
 * application/jose+json).  Fails (transient) when the server cannot be
 * reached, its certificate is not trusted, or the body is over
 * ACME_BODY_MAX; any HTTP status is a success here.  Each request is
 * counted as type (acme_request_stats). */
int acme_http(acme_client *c, acme_req_type type, const char *method, const char *url,
              const char *body, const char *accept, acme_http_resp *r, acme_err *e);
void acme_http_resp_free(acme_http_resp *r);

/* Counts one request of type t that ended with outcome (ACME_ERR_NONE: an
 * HTTP status below 400) after seconds (stats.c). */
void acme_req_record(acme_req_type t, acme_errclass outcome, double seconds);

/* ---- requests ------------------------------------------------------------- */

/* A JWS-signed POST to url: payload NULL is POST-as-GET; use_jwk sends the
 * key instead of the account URL (newAccount).  Takes a nonce when it has
 * none, retries badNonce with the fresh nonce (bounded), and turns an HTTP
 * error into an acme_err carrying the problem document.  type names
 * the request in messages. */
int acme_post(acme_client *c, acme_req_type type, const char *url, json_t *payload, bool use_jwk,
              const char *accept, acme_http_resp *r, acme_err *e);

/* The body as a JSON object, or a fatal error naming what and the URL. */
json_t *acme_json_object(const acme_http_resp *r, const char *what, const char *url, acme_err *e);

/* An error (HTTP status >= 400) into e: the problem document when there is
 * one, else the status.  Returns -1. */
int acme_http_error(const acme_http_resp *r, const char *what, const char *url, acme_err *e);

/* The RFC 7807 document doc (a response body or an "error" member) into p. */
void acme_problem_parse(json_t *doc, int status, long retry_after, acme_problem *p);
/* e from p, its class from its type; what and url say what was asked.
 * Returns -1. */
int acme_problem_fail(const acme_problem *p, const char *what, const char *url, acme_err *e);

/* Fills e with code, class and message; returns -1. */
int acme_fail(acme_err *e, enum cs_errcode code, acme_errclass cls, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* json_dumps into memory the caller frees with free(), whatever allocator
 * jansson was given (the agent gives it one that wipes). */
char *acme_json_dumps(const json_t *j, size_t flags);

/* Copies a string member of obj into out (truncation is an error); a
 * missing member gives "" when optional, else fails naming what. */
int acme_json_str(json_t *obj, const char *key, bool optional, char *out, size_t outlen,
                  const char *what, acme_err *e);

/* RFC 3339 ("2027-01-02T03:04:05.123Z", "+01:00" offsets) to time_t. */
int acme_parse_time(const char *s, time_t *out);

/* ---- JWS ------------------------------------------------------------------ */

/* The account key's public JWK (RFC 7517) as a new JSON object; a key that
 * is not EC P-256 is refused. */
json_t *acme_jwk(EVP_PKEY *key, acme_err *e);
/* A flattened JWS (RFC 7515 §7.2.2) of payload ("" for POST-as-GET) signed
 * ES256 with key, the protected header carrying alg, nonce, url and either
 * kid or jwk.  malloc'd JSON text. */
char *acme_jws(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
               const char *payload, acme_err *e);
/* The External Account Binding object (RFC 8555 §7.3.4): the JWK signed
 * HS256 with the base64url HMAC key. */
json_t *acme_eab(const char *kid, const char *hmac_b64url, json_t *jwk, const char *url,
                 acme_err *e);

/* ---- pre-validation checks ---------------------------------------------------- */

/* One try at endpoint ("HOST:PORT"), bounded by timeout_ms: true when it
 * answers as the CA will need; otherwise what it answered goes into seen. */
typedef bool (*acme_probe_fn)(void *arg, const char *endpoint, long timeout_ms, char *seen,
                              size_t seenlen);

/* Tries every endpoint, again and again with short naps, until each has
 * answered or wait_ms (0: 30 s) has passed; then fails (transient) naming
 * the first endpoint not ready and what it last answered.  what and name
 * ("http-01", the identifier) start the message.  Once *cancel (NULL: never)
 * turns true it stops within a nap and a try, failing (transient,
 * "cancelled"). */
int acme_probe_all(const char *what, const char *name, const char *const *endpoints, size_t n,
                   long wait_ms, const atomic_bool *cancel, acme_probe_fn fn, void *arg,
                   acme_err *e);

#endif
