/* acme.h — the RFC 8555 client: directory, nonces, JWS (ES256), accounts
 * with optional External Account Binding, orders, authorizations and
 * challenges, finalization, certificate download, and the RFC 9773 (ARI)
 * renewal information; and what answering a challenge needs: the dns-01
 * record through RFC 2136 or a hook, the http-01 responder, and the checks
 * that every node answers before the CA is told to validate.
 *
 * The client is a set of blocking calls over libcurl; every response body is
 * bounded (ACME_BODY_MAX) and every wait has a deadline.  An order lives in
 * an acme_order that serialises to JSON (acme_order_to_json), so whoever
 * holds it (the agent's replicated store) can resume it in another process
 * or on another node: acme_order_next says what to do next from the state
 * alone.  The account key is an EC P-256 EVP_PKEY the caller owns; this
 * module never stores or prints it.
 *
 * libcurl's global state must be set up once (curl_global_init) before
 * threads use this module; each acme_client is for one thread at a time.
 *
 * Failures fill an acme_err: a message with context, a class (retry later or
 * stop and tell the operator), and the CA's problem document when it sent
 * one.  Nothing here logs; the edge does. */
#ifndef CS_ACME_H
#define CS_ACME_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "../common/err.h"

#define ACME_BODY_MAX (1024 * 1024) /* a larger answer is refused */

/* ---- errors ---------------------------------------------------------------- */

typedef enum acme_errclass {
	ACME_ERR_NONE = 0,
	ACME_ERR_TRANSIENT, /* network, 5xx, badNonce: try again later */
	ACME_ERR_OPERATOR,  /* unauthorized, rejectedIdentifier, caa, rateLimited, a paused
	                       or unknown account, EAB required: stop until someone acts */
	ACME_ERR_FATAL,     /* this request cannot succeed as made: a malformed answer,
	                       a refused CSR, bad input from the caller */
} acme_errclass;

/* An RFC 7807 problem document the CA answered with. */
typedef struct acme_problem {
	int status;         /* HTTP status */
	char type[128];     /* "urn:ietf:params:acme:error:rateLimited" */
	char detail[768];   /* with the subproblems' identifiers and details appended */
	char instance[384]; /* the CA's URL for this problem (a paused account's unpause
	                       page), or "" */
	long retry_after;   /* seconds the CA asked to wait, or -1 */
} acme_problem;

typedef struct acme_err {
	cs_err err; /* the whole message, with context; code CS_EIO for network and
	               CA-side failures, CS_EINPUT for malformed answers or input,
	               CS_EREFUSED for the CA's refusals */
	acme_errclass cls;
	acme_problem problem; /* problem.type[0] != '\0' when the CA sent one */
} acme_err;

/* The class of a problem type ("urn:ietf:params:acme:error:caa") at an
 * HTTP status. */
acme_errclass acme_problem_class(const char *type, int status);
const char *acme_errclass_name(acme_errclass cls); /* "transient", "operator", ... */

/* ---- request counts -------------------------------------------------------
 * Every request to the CA is counted by type and outcome ("ok" for an HTTP
 * status below 400, else the class of the failure: transient, operator,
 * fatal) with its duration as libcurl measured it.  The counts are the
 * process's, kept under a lock: any thread may make requests while another
 * reads them. */

typedef enum acme_req_type {
	ACME_REQ_DIRECTORY,
	ACME_REQ_NEW_NONCE,
	ACME_REQ_NEW_ACCOUNT,
	ACME_REQ_NEW_ORDER,
	ACME_REQ_AUTHORIZATION,
	ACME_REQ_CHALLENGE,
	ACME_REQ_FINALIZE,
	ACME_REQ_ORDER, /* polling an order */
	ACME_REQ_CERTIFICATE,
	ACME_REQ_RENEWAL_INFO,
	ACME_REQ_TYPES
} acme_req_type;

/* "directory", "newNonce", "newAccount", "newOrder", "authorization",
 * "challenge", "finalize", "order", "certificate", "renewalInfo": the
 * directory's and RFC 8555's names. */
const char *acme_req_name(acme_req_type t);

/* The counts so far: {"bounds": [upper bounds of the duration buckets, in
 * seconds], "requests": [{"type", "outcome", "count", "sum" (seconds),
 * "buckets": [cumulative counts, one per bound]}]}, with every type and
 * outcome listed, counted or not.  A new reference, NULL out of memory. */
json_t *acme_request_stats(void);

/* ---- the client ---------------------------------------------------------- */

typedef struct acme_client acme_client;

typedef struct acme_client_opts {
	const char *directory;   /* https URL of the CA's directory */
	const char *ca_file;     /* PEM trust anchors for the CA's HTTPS; NULL: the system's */
	EVP_PKEY *account_key;   /* EC P-256, borrowed for the client's life */
	const char *account_url; /* the account's URL ("kid") when already known, or NULL */
	long timeout_ms;         /* one request, connect to last byte; 0: 30 s */
	int nonce_retries;       /* badNonce retries of one request; 0: 15, enough for a CA that
	                            rejects half of all nonces (pebble's test mode) */
	/* When it becomes true the client's blocking calls (a request, a poll's
	 * wait) stop within about a second and fail (transient, "cancelled"):
	 * a node that stops leading stops its ACME work at once.  NULL: never. */
	const atomic_bool *cancel;
} acme_client_opts;

/* Fetches and checks the directory: a URL that does not answer, answers
 * with something other than a JSON object naming newNonce, newAccount and
 * newOrder, or whose HTTPS certificate ca_file does not trust is refused,
 * saying which. */
acme_client *acme_client_new(const acme_client_opts *opts, acme_err *e);
void acme_client_free(acme_client *c);

/* What the directory says (NULL when it does not say). */
const char *acme_directory_url(const acme_client *c, const char *name); /* "newOrder", ... */
const char *acme_terms_of_service(const acme_client *c);
bool acme_eab_required(const acme_client *c);
/* True when the directory's meta.profiles lists name. */
bool acme_profile_offered(const acme_client *c, const char *name);

/* The account's URL, once known (acme_account_register/find), or NULL. */
const char *acme_account_url(const acme_client *c);

/* ---- keys and JWS ------------------------------------------------------- */

/* base64url without padding (RFC 4648 §5) of len bytes, malloc'd. */
char *acme_b64url(const uint8_t *data, size_t len);
/* The account key's RFC 7638 thumbprint, base64url, into out (>= 44 bytes). */
int acme_jwk_thumbprint(EVP_PKEY *key, char *out, size_t outlen, acme_err *e);

/* The key authorization of a token (RFC 8555 §8.1): "token.thumbprint",
 * malloc'd; the http-01 file's content. */
char *acme_key_authorization(EVP_PKEY *account_key, const char *token, acme_err *e);
/* base64url(SHA-256(key authorization)): the dns-01 TXT value. */
int acme_dns01_value(const char *key_auth, char out[44], acme_err *e);
/* SHA-256(key authorization): the tls-alpn-01 acmeIdentifier extension's
 * content (RFC 8737 §3). */
int acme_tlsalpn01_digest(const char *key_auth, uint8_t out[32], acme_err *e);

/* ---- accounts ------------------------------------------------------------- */

typedef struct acme_account_req {
	const char *const *contact; /* "mailto:..." URLs; each must be mailto: */
	size_t ncontact;
	bool agree_tos;
	const char *eab_kid;  /* External Account Binding, or NULL */
	const char *eab_hmac; /* the CA's HMAC key, base64url; checked before anything is sent */
} acme_account_req;

typedef struct acme_account {
	char url[512];
	char status[32]; /* "valid", "deactivated", "revoked" */
	bool created;    /* false: the account already existed for this key */
} acme_account;

/* newAccount; idempotent: for a key the CA already knows it returns that
 * account (created false) and registers nothing new.  A status other than
 * "valid" is an operator error. */
int acme_account_register(acme_client *c, const acme_account_req *req, acme_account *out,
                          acme_err *e);
/* newAccount with onlyReturnExisting: the key's account, or CS_ENOTFOUND. */
int acme_account_find(acme_client *c, acme_account *out, acme_err *e);

/* ---- orders ------------------------------------------------------------- */

#define ACME_MAX_IDENTIFIERS 100

typedef enum acme_chal_type {
	ACME_CHAL_HTTP01,
	ACME_CHAL_TLSALPN01,
	ACME_CHAL_DNS01,
} acme_chal_type;

/* "http-01" ... and back; -1 from parse for a type this client does not do
 * (an authorization keeps only the challenges of these three types). */
const char *acme_chal_name(acme_chal_type t);
int acme_chal_parse(const char *name, acme_chal_type *out);

typedef struct acme_challenge {
	acme_chal_type type;
	char url[512];
	char token[128];      /* "" for types without one */
	char status[16];      /* "pending", "processing", "valid", "invalid" */
	bool responded;       /* this client told the CA to validate it */
	char error_type[128]; /* the CA's error for an invalid challenge ("" for none): */
	char error[768];      /* its problem type and detail */
} acme_challenge;

typedef struct acme_authz {
	char url[512];
	char identifier[256]; /* a DNS name; without "*." for a wildcard */
	bool wildcard;
	char status[16]; /* "pending", "valid", "invalid", "deactivated", "expired", "revoked" */
	time_t expires;  /* 0 when not given */
	acme_challenge *challenges;
	size_t nchallenges;
} acme_authz;

typedef struct acme_order {
	char url[512];
	char status[16]; /* "pending", "ready", "processing", "valid", "invalid" */
	time_t expires;
	char **identifiers; /* DNS names as asked, "*." included */
	size_t nidentifiers;
	char profile[64];   /* "" for the CA's default */
	char replaces[256]; /* the ARI CertID of the certificate this renews, or "" */
	char finalize[512];
	char certificate[512]; /* once valid */
	uint8_t csr_spki[32];  /* SHA-256 of the finalized CSR's public key */
	bool finalized;
	acme_authz *authzs;
	size_t nauthzs;
	char error[768]; /* the CA's error for an invalid order, or "" */
} acme_order;

void acme_order_free(acme_order *o);

/* newOrder for names (DNS names, "*.x" wildcards; IP literals as "ip"
 * identifiers), with an optional profile and the CertID it replaces (both
 * NULL or "" for none), then acme_order_refresh.  When the CA answers
 * alreadyReplaced, the order is made once more without replaces (o->replaces
 * is then "").  On failure o is left empty (nothing to free). */
int acme_order_create(acme_client *c, const char *const *names, size_t nnames, const char *profile,
                      const char *replaces, acme_order *o, acme_err *e);
/* Fetches the order and each authorization with its challenges, keeping
 * what this client did (responded, finalized). */
int acme_order_refresh(acme_client *c, acme_order *o, acme_err *e);

/* The challenge of type t in authorization i, or NULL. */
acme_challenge *acme_order_challenge(acme_order *o, size_t i, acme_chal_type t);
/* Tells the CA to validate ch (publish its answer first). */
int acme_challenge_respond(acme_client *c, acme_challenge *ch, acme_err *e);

/* Polls until no authorization is pending or processing, honouring
 * Retry-After, until deadline.  An invalid authorization fails with the
 * CA's error for its challenge (operator class for unauthorized, caa,
 * dns, connection, ...: the answer was not reachable). */
int acme_order_wait_authorized(acme_client *c, acme_order *o, time_t deadline, acme_err *e);
/* Sends the CSR (DER) once the order is ready and records its key. */
int acme_order_finalize(acme_client *c, acme_order *o, X509_REQ *csr, acme_err *e);
/* Polls the order until it is valid or invalid, until deadline. */
int acme_order_wait_valid(acme_client *c, acme_order *o, time_t deadline, acme_err *e);
/* Downloads the PEM chain of a valid order (leaf first), malloc'd.  It must
 * parse, and its leaf's key must be the finalized CSR's. */
int acme_order_certificate(acme_client *c, acme_order *o, char **pem, acme_err *e);

/* What the order needs next, from its state alone (after a refresh). */
typedef enum acme_next {
	ACME_NEXT_CREATE,     /* no order yet */
	ACME_NEXT_RESPOND,    /* challenges to publish and respond to */
	ACME_NEXT_WAIT_AUTHZ, /* responded; the CA is validating */
	ACME_NEXT_FINALIZE,   /* ready: send the CSR */
	ACME_NEXT_WAIT_CERT,  /* finalized; the CA is issuing */
	ACME_NEXT_DOWNLOAD,   /* valid: fetch the certificate */
	ACME_NEXT_FAILED,     /* invalid (see error) or expired: start a new order */
} acme_next;
acme_next acme_order_next(const acme_order *o, time_t now);
const char *acme_next_name(acme_next n);

/* The order as JSON (malloc'd) and back; a document that is not one this
 * function wrote is refused (CS_EINPUT), leaving o empty. */
char *acme_order_to_json(const acme_order *o);
int acme_order_from_json(const char *json, acme_order *o, acme_err *e);

/* ---- dns-01 publishing -------------------------------------------------------
 * The TXT record at _acme-challenge.NAME, through an RFC 2136 UPDATE signed
 * with a TSIG key (HMAC-SHA256), or through an operator's hook program for
 * DNS services without RFC 2136.  server is "HOST:PORT" of the authoritative
 * server; timeout_ms bounds one exchange (0: 10 s). */

typedef struct acme_tsig_key {
	char name[256];   /* the key's name, as the server knows it */
	char secret[256]; /* base64, as in the file; wipe with acme_tsig_key_wipe */
} acme_tsig_key;

/* Reads a BIND-format key file (key "NAME" { algorithm hmac-sha256;
 * secret "..."; };, what tsig-keygen writes).  A file that does not parse
 * is an operator error naming the file, the line and the expected form. */
int acme_tsig_key_load(const char *path, acme_tsig_key *k, acme_err *e);
void acme_tsig_key_wipe(acme_tsig_key *k);

/* Adds (add true) or removes the TXT record "value" at _acme-challenge.NAME
 * (NAME without "*."), in the zone the server is authoritative for (found
 * by asking it for the SOA).  The answer's TSIG must verify.  A server that
 * refuses (REFUSED, NOTAUTH, ...) is an operator error naming the rcode. */
int acme_dns01_update(const char *server, const acme_tsig_key *key, bool add, const char *name,
                      const char *value, long timeout_ms, acme_err *e);

/* The pre-validation check: 1 when the server answers the TXT value at
 * _acme-challenge.NAME, 0 when it does not (yet), -1 when it cannot be
 * asked. */
int acme_dns01_check(const char *server, const char *name, const char *value, long timeout_ms,
                     acme_err *e);
/* The same, polled until the server answers the value or wait_ms (0: 30 s)
 * has passed; then the error (transient) names the server and what it
 * answered last.  Like every pre-validation check it gives up (transient,
 * "cancelled") soon after *cancel (NULL: never) turns true: a node that
 * stops leading stops its ACME work. */
int acme_dns01_wait(const char *server, const char *name, const char *value, long wait_ms,
                    const atomic_bool *cancel, acme_err *e);

/* Runs the hook program (an absolute path to an executable, run directly,
 * no shell) with argv "add"|"remove", _acme-challenge.NAME and the value,
 * killed when it has not exited within timeout_ms (0: 60 s).  A hook that
 * exits non-zero, is killed or is not an executable is an operator error
 * saying which. */
int acme_dns_hook(const char *hook, bool add, const char *name, const char *value, long timeout_ms,
                  acme_err *e);

/* ---- http-01 ---------------------------------------------------------------- */

struct event_base;
typedef struct acme_http01 acme_http01;

/* The key authorization for token (malloc'd), or NULL when unknown.  Called
 * only with a base64url token of at most 127 characters. */
typedef char *(*acme_http01_lookup)(void *arg, const char *token);

typedef struct acme_http01_opts {
	struct event_base *base; /* the loop the listener runs on */
	const char *listen;      /* "HOST:PORT" (port 0: any free port) */
	acme_http01_lookup lookup;
	void *arg;
	int timeout_s; /* an idle or slow connection is closed after this; 0: 10 s */
} acme_http01_opts;

/* The http-01 responder on evhttp: GET or HEAD /.well-known/acme-challenge/
 * TOKEN answers 200 with the lookup's key authorization, 404 for a token
 * unknown or not base64url, 400 for one over 127 characters; every other
 * path is 301 to https://HOST/PATH (the Host without its port).  Headers
 * are held to 8 KiB, bodies refused, other methods 501 (evhttp's answer). */
acme_http01 *acme_http01_new(const acme_http01_opts *o, acme_err *e);
unsigned acme_http01_port(const acme_http01 *h); /* the port it listens on */
void acme_http01_free(acme_http01 *h);

/* The http-01 pre-validation check: fetches
 * http://NAME/.well-known/acme-challenge/TOKEN from each endpoint
 * ("HOST:PORT", where a node's http_listen is reached) with NAME as the
 * Host, polling until every one answers 200 with key_auth or wait_ms (0:
 * 30 s) has passed.  On timeout the error (transient) names the first
 * endpoint that does not answer yet and what it answered. */
int acme_http01_check(const char *const *endpoints, size_t nendpoints, const char *name,
                      const char *token, const char *key_auth, long wait_ms,
                      const atomic_bool *cancel, acme_err *e);

/* ---- tls-alpn-01 ------------------------------------------------------------
 * The challenge certificate itself is pki_tlsalpn01_cert (pki/pki.h), so the
 * TLS endpoint can make it without this module. */

/* The tls-alpn-01 pre-validation probe: a handshake with each endpoint
 * ("HOST:PORT", a node's TLS endpoint) with SNI name and ALPN acme-tls/1
 * only, polled until every one selects acme-tls/1 and shows the challenge
 * certificate for name carrying SHA-256(key_auth), or wait_ms (0: 30 s)
 * has passed; then the error (transient) names the first endpoint not
 * ready and what it showed. */
int acme_tlsalpn01_check(const char *const *endpoints, size_t nendpoints, const char *name,
                         const char *key_auth, long wait_ms, const atomic_bool *cancel,
                         acme_err *e);

/* ---- renewal information (RFC 9773) --------------------------------------- */

/* The ARI CertID: base64url(AKI keyIdentifier) "." base64url(serial DER
 * content), into out (>= 128 bytes).  A certificate without an AKI fails. */
int acme_ari_certid(X509 *cert, char *out, size_t outlen, acme_err *e);

typedef struct acme_renewal_info {
	time_t start, end;     /* the suggested window */
	char explanation[384]; /* explanationURL, or "" */
	long retry_after;      /* seconds until asking again, or -1 */
} acme_renewal_info;

/* GETs renewalInfo/CERTID.  A directory without renewalInfo: CS_ENOTFOUND. */
int acme_ari_fetch(acme_client *c, const char *certid, acme_renewal_info *out, acme_err *e);

/* ---- when to renew ---------------------------------------------------------
 * Pure functions of the certificate's validity, the CA's answers and a
 * random value r the caller draws (randombytes_random()), so a schedule is
 * reproducible in tests and spread out in a fleet.  Nothing counts fixed
 * days: every line is a fraction of the certificate's lifetime. */

#define ACME_BACKOFF_MIN      60 /* seconds after the first failure */
#define ACME_BACKOFF_MAX      (6 * 3600)
#define ACME_ARI_POLL_DEFAULT (6 * 3600) /* renewalInfo without Retry-After */
#define ACME_ARI_POLL_MIN     60
#define ACME_ARI_POLL_MAX     86400

/* The emergency line: when less than 1/20 of the lifetime remains. */
time_t acme_emergency_line(time_t not_before, time_t not_after);

/* When to renew, never before now.  With a suggested ARI window (ari not
 * NULL): a moment spread by r over what remains of the window, now when the
 * window has passed.  Without: one third of the lifetime before not_after
 * starts the renewal window, and the moment is spread by r over the first
 * tenth of it.  Past the emergency line: now, whatever the window says. */
time_t acme_renewal_time(time_t not_before, time_t not_after, const acme_renewal_info *ari,
                         time_t now, uint32_t r);

/* The next attempt after the failures-th failure in a row (1 for the
 * first): 1 minute doubling up to 6 hours, not past the emergency line
 * while it is ahead (line 0: none), and never before the Retry-After the
 * CA sent (retry_after < 0: none). */
time_t acme_retry_time(unsigned failures, time_t now, long retry_after, time_t line);

/* When to ask renewalInfo again: its Retry-After held to one minute .. one
 * day (RFC 9773 §4.3), six hours when the CA gave none. */
time_t acme_ari_next_poll(time_t now, long retry_after);

#endif
