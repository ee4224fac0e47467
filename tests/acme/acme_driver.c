/* acme_driver.c — a test program that drives the acme module one step per
 * run, so the integration tests exercise it against a real ACME server and
 * resume an order from its stored JSON state in a new process each step.
 * Built only with the tests; not a user command.
 *
 *   acme_driver [--dir URL] [--ca-file F] [--key ACCOUNT.pem] [--timeout-ms N] STEP [options]
 *   directory                       fetch and check the directory
 *   account [--contact M]... [--agree-tos] [--eab-kid K --eab-hmac-file F] [--find]
 *   order --state F --domain D... [--profile P] [--replaces CERTID]
 *   respond --state F --challenge TYPE [--wait SECONDS]
 *   finish --state F --cert-key KEY.pem --country CC --out CHAIN.pem [--wait SECONDS]
 *   certid --cert CERT.pem            (no server)
 *   ari --cert CERT.pem
 *   dns-add|dns-remove --server HOST:PORT --tsig-key F --name N --value V   (no CA)
 *   dns-check --server HOST:PORT --name N --value V                         (no CA)
 *   dns-wait --server HOST:PORT --name N --value V [--timeout-ms W]         (no CA)
 *   hook-add|hook-remove --hook PROGRAM --name N --value V                  (no CA)
 *   serve-http01 --listen HOST:PORT --tokens DIR   the http-01 responder until SIGTERM:
 *       prints {"port": N}, then {"lookup": TOKEN} per lookup; TOKEN's key
 *       authorization is the content of DIR/TOKEN
 *   http01-check --endpoint HOST:PORT... --name N --token T --value KEYAUTH [--timeout-ms W]
 *   tlsalpn01-cert --name N --value KEYAUTH --cert-key KEY.pem --out CERT.pem
 *       the challenge certificate for N with a new EC P-256 key (written to --cert-key)
 *   tlsalpn01-check --endpoint HOST:PORT... --name N --value KEYAUTH [--timeout-ms W]
 *
 * stdout is one JSON object; a failure prints {"error": {...}} and exits 1
 * (2 for bad flags). */
#include <errno.h>
#include <signal.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>
#include <openssl/pem.h>

#include "../../acme/acme.h"
#include "../../pki/pki.h"

#define MAXLIST 16

typedef struct args {
	const char *dir, *ca_file, *key, *step, *state, *profile, *replaces, *challenge;
	const char *cert_key, *country, *out, *cert, *eab_kid, *eab_hmac_file;
	const char *server, *tsig_key, *name, *value, *hook, *listen, *tokens, *token;
	const char *endpoints[MAXLIST];
	size_t nendpoints;
	const char *domains[MAXLIST], *contacts[MAXLIST];
	size_t ndomains, ncontacts;
	bool agree_tos, find;
	long wait, timeout_ms;
} args;

static int usage(const char *why)
{
	fprintf(stderr, "acme_driver: %s\n", why);
	return 2;
}

static int fail(const acme_err *e)
{
	json_t *j = json_pack("{s:{s:s, s:s, s:s, s:s, s:s, s:I}}", "error", "message", e->err.msg,
	                      "code", cs_err_name(e->err.code), "class", acme_errclass_name(e->cls),
	                      "problem_type", e->problem.type, "instance", e->problem.instance,
	                      "retry_after", (json_int_t)e->problem.retry_after);

	json_dumpf(j, stdout, JSON_COMPACT);
	putchar('\n');
	json_decref(j);
	fprintf(stderr, "acme_driver: %s\n", e->err.msg);
	return 1;
}

__attribute__((format(printf, 2, 3))) static int local_fail(acme_err *e, const char *fmt, ...)
{
	va_list ap;

	memset(e, 0, sizeof(*e));
	e->cls = ACME_ERR_FATAL;
	e->problem.retry_after = -1;
	e->err.code = CS_EINPUT;
	va_start(ap, fmt);
	vsnprintf(e->err.msg, sizeof(e->err.msg), fmt, ap);
	va_end(ap);
	return -1;
}

static int print(json_t *j)
{
	json_dumpf(j, stdout, JSON_COMPACT);
	putchar('\n');
	json_decref(j);
	return 0;
}

/* Appends v to a repeated flag's list. */
static int push(const char **list, size_t *n, const char *v)
{
	if (*n == MAXLIST)
		return -1;
	list[(*n)++] = v;
	return 0;
}

static int parse(int argc, char **argv, args *a)
{
	static const struct option opts[] = {
	    {"dir", 1, NULL, 'D'},
	    {"ca-file", 1, NULL, 'C'},
	    {"key", 1, NULL, 'K'},
	    {"state", 1, NULL, 's'},
	    {"profile", 1, NULL, 'p'},
	    {"replaces", 1, NULL, 'r'},
	    {"challenge", 1, NULL, 'c'},
	    {"cert-key", 1, NULL, 'k'},
	    {"country", 1, NULL, 'n'},
	    {"out", 1, NULL, 'o'},
	    {"cert", 1, NULL, 'x'},
	    {"eab-kid", 1, NULL, 'e'},
	    {"eab-hmac-file", 1, NULL, 'h'},
	    {"domain", 1, NULL, 'd'},
	    {"contact", 1, NULL, 'm'},
	    {"wait", 1, NULL, 'w'},
	    {"timeout-ms", 1, NULL, 't'},
	    {"agree-tos", 0, NULL, 'a'},
	    {"find", 0, NULL, 'f'},
	    {"server", 1, NULL, 'S'},
	    {"tsig-key", 1, NULL, 'T'},
	    {"name", 1, NULL, 'N'},
	    {"value", 1, NULL, 'V'},
	    {"hook", 1, NULL, 'H'},
	    {"listen", 1, NULL, 'L'},
	    {"tokens", 1, NULL, 'O'},
	    {"endpoint", 1, NULL, 'E'},
	    {"token", 1, NULL, 'G'},
	    {NULL, 0, NULL, 0},
	};
	int ch;

	memset(a, 0, sizeof(*a));
	a->wait = 120;
	a->timeout_ms = 10000;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'D':
			a->dir = optarg;
			break;
		case 'C':
			a->ca_file = optarg;
			break;
		case 'K':
			a->key = optarg;
			break;
		case 's':
			a->state = optarg;
			break;
		case 'p':
			a->profile = optarg;
			break;
		case 'r':
			a->replaces = optarg;
			break;
		case 'c':
			a->challenge = optarg;
			break;
		case 'k':
			a->cert_key = optarg;
			break;
		case 'n':
			a->country = optarg;
			break;
		case 'o':
			a->out = optarg;
			break;
		case 'x':
			a->cert = optarg;
			break;
		case 'e':
			a->eab_kid = optarg;
			break;
		case 'h':
			a->eab_hmac_file = optarg;
			break;
		case 'w':
			a->wait = strtol(optarg, NULL, 10);
			break;
		case 't':
			a->timeout_ms = strtol(optarg, NULL, 10);
			break;
		case 'a':
			a->agree_tos = true;
			break;
		case 'f':
			a->find = true;
			break;
		case 'S':
			a->server = optarg;
			break;
		case 'T':
			a->tsig_key = optarg;
			break;
		case 'N':
			a->name = optarg;
			break;
		case 'V':
			a->value = optarg;
			break;
		case 'H':
			a->hook = optarg;
			break;
		case 'L':
			a->listen = optarg;
			break;
		case 'O':
			a->tokens = optarg;
			break;
		case 'G':
			a->token = optarg;
			break;
		case 'E':
			if (push(a->endpoints, &a->nendpoints, optarg) != 0)
				return -1;
			break;
		case 'd':
			if (push(a->domains, &a->ndomains, optarg) != 0)
				return -1;
			break;
		case 'm':
			if (push(a->contacts, &a->ncontacts, optarg) != 0)
				return -1;
			break;
		default:
			return -1;
		}
	}
	if (optind + 1 != argc)
		return -1;
	a->step = argv[optind];
	return 0;
}

static EVP_PKEY *read_key(const char *path)
{
	BIO *b = BIO_new_file(path, "r");
	EVP_PKEY *k = b != NULL ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;

	BIO_free(b);
	return k;
}

static X509 *read_cert(const char *path)
{
	BIO *b = BIO_new_file(path, "r");
	X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;

	BIO_free(b);
	return x;
}

/* The whole file, NUL-terminated, with trailing white space cut. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = calloc(1, 1 << 20);
	size_t n = 0;

	if (f != NULL && buf != NULL)
		n = fread(buf, 1, (1 << 20) - 1, f);
	if (f != NULL)
		fclose(f);
	while (buf != NULL && n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	if (f == NULL) {
		free(buf);
		return NULL;
	}
	return buf;
}

static int save_state(const char *path, const acme_order *o)
{
	char *text = acme_order_to_json(o);
	FILE *f = fopen(path, "w");
	int rc = text != NULL && f != NULL && fputs(text, f) >= 0 ? 0 : -1;

	if (f != NULL && fclose(f) != 0)
		rc = -1;
	free(text);
	return rc;
}

static int load_state(const char *path, acme_order *o, acme_err *e)
{
	char *text = slurp(path);
	int rc;

	if (text == NULL)
		return local_fail(e, "cannot read %s: %s", path, strerror(errno));
	rc = acme_order_from_json(text, o, e);
	free(text);
	return rc;
}

static json_t *challenges_json(acme_order *o, EVP_PKEY *account_key, acme_err *e)
{
	json_t *list = json_array();

	for (size_t i = 0; i < o->nauthzs; i++) {
		acme_authz *a = &o->authzs[i];

		for (size_t k = 0; k < a->nchallenges; k++) {
			acme_challenge *ch = &a->challenges[k];
			char *ka = acme_key_authorization(account_key, ch->token, e);
			char dns[44];

			if (ka == NULL || acme_dns01_value(ka, dns, e) != 0) {
				free(ka);
				json_decref(list);
				return NULL;
			}
			json_array_append_new(list, json_pack("{s:s, s:b, s:s, s:s, s:s, s:s, s:s}",
			                                      "identifier", a->identifier,
			                                      "wildcard", a->wildcard, "type",
			                                      acme_chal_name(ch->type), "token",
			                                      ch->token, "key_authorization", ka,
			                                      "dns01", dns, "status", ch->status));
			free(ka);
		}
	}
	return list;
}

static json_t *order_summary(acme_order *o)
{
	return json_pack("{s:s, s:s, s:s, s:s}", "next",
	                 acme_next_name(acme_order_next(o, time(NULL))), "status", o->status, "url",
	                 o->url, "replaces", o->replaces);
}

static int step_account(acme_client *c, const args *a, acme_err *e)
{
	acme_account acct;
	acme_account_req req = {.contact = a->contacts,
	                        .ncontact = a->ncontacts,
	                        .agree_tos = a->agree_tos,
	                        .eab_kid = a->eab_kid};
	char *hmac = NULL;
	int rc;

	if (a->eab_hmac_file != NULL && (hmac = slurp(a->eab_hmac_file)) == NULL)
		return local_fail(e, "cannot read %s: %s", a->eab_hmac_file, strerror(errno));
	req.eab_hmac = hmac;
	rc = a->find ? acme_account_find(c, &acct, e) : acme_account_register(c, &req, &acct, e);
	free(hmac);
	if (rc != 0)
		return -1;
	return print(json_pack("{s:s, s:s, s:b}", "url", acct.url, "status", acct.status, "created",
	                       acct.created));
}

/* Every step after the account's needs the account URL; the CA gives the
 * key's account back without creating one. */
static int known_account(acme_client *c, acme_err *e)
{
	acme_account acct;

	return acme_account_find(c, &acct, e);
}

static int step_order(acme_client *c, const args *a, EVP_PKEY *key, acme_err *e)
{
	acme_order o;
	json_t *chals, *out;

	if (a->state == NULL || a->ndomains == 0)
		return local_fail(e, "order needs --state and --domain");
	if (known_account(c, e) != 0 ||
	    acme_order_create(c, a->domains, a->ndomains, a->profile, a->replaces, &o, e) != 0)
		return -1;
	if (save_state(a->state, &o) != 0) {
		acme_order_free(&o);
		return local_fail(e, "cannot write %s: %s", a->state, strerror(errno));
	}
	chals = challenges_json(&o, key, e);
	out = order_summary(&o);
	acme_order_free(&o);
	if (chals == NULL) {
		json_decref(out);
		return -1;
	}
	json_object_set_new(out, "challenges", chals);
	return print(out);
}

static int step_respond(acme_client *c, const args *a, acme_err *e)
{
	acme_chal_type t;
	acme_order o;
	int rc = 0;

	if (a->state == NULL || a->challenge == NULL || acme_chal_parse(a->challenge, &t) != 0)
		return local_fail(
		    e, "respond needs --state and --challenge http-01|tls-alpn-01|dns-01");
	if (load_state(a->state, &o, e) != 0)
		return -1;
	if (known_account(c, e) != 0 || acme_order_refresh(c, &o, e) != 0)
		rc = -1;
	for (size_t i = 0; rc == 0 && i < o.nauthzs; i++) {
		acme_challenge *ch = acme_order_challenge(&o, i, t);

		if (strcmp(o.authzs[i].status, "pending") != 0 || ch == NULL || ch->responded)
			continue;
		rc = acme_challenge_respond(c, ch, e);
	}
	/* the state is saved at each step, so a failed wait resumes */
	if (rc == 0 && save_state(a->state, &o) != 0)
		rc = local_fail(e, "cannot write %s: %s", a->state, strerror(errno));
	if (rc == 0 && acme_order_wait_authorized(c, &o, time(NULL) + a->wait, e) != 0)
		rc = -1;
	if (save_state(a->state, &o) != 0 && rc == 0)
		rc = local_fail(e, "cannot write %s: %s", a->state, strerror(errno));
	if (rc == 0)
		print(order_summary(&o));
	acme_order_free(&o);
	return rc;
}

static X509_REQ *make_csr(const args *a, acme_order *o, EVP_PKEY *key, acme_err *e)
{
	pki_subject subj = {.country = a->country,
	                    .common_name = o->identifiers[0],
	                    .sans = (const char *const *)o->identifiers,
	                    .nsans = o->nidentifiers};
	X509_REQ *req = pki_csr(key, &subj, &e->err);

	if (req == NULL)
		e->cls = ACME_ERR_FATAL;
	return req;
}

static int step_finish(acme_client *c, const args *a, acme_err *e)
{
	EVP_PKEY *cert_key;
	X509_REQ *csr = NULL;
	acme_order o;
	char *pem = NULL;
	FILE *f;
	int rc = 0;

	if (a->state == NULL || a->cert_key == NULL || a->out == NULL)
		return local_fail(e, "finish needs --state, --cert-key and --out");
	if ((cert_key = read_key(a->cert_key)) == NULL)
		return local_fail(e, "cannot read the key %s", a->cert_key);
	if (load_state(a->state, &o, e) != 0) {
		EVP_PKEY_free(cert_key);
		return -1;
	}
	if (known_account(c, e) != 0 || acme_order_refresh(c, &o, e) != 0)
		rc = -1;
	if (rc == 0 && acme_order_next(&o, time(NULL)) == ACME_NEXT_FINALIZE &&
	    ((csr = make_csr(a, &o, cert_key, e)) == NULL ||
	     acme_order_finalize(c, &o, csr, e) != 0))
		rc = -1;
	if (rc == 0 && acme_order_wait_valid(c, &o, time(NULL) + a->wait, e) != 0)
		rc = -1;
	if (rc == 0 && acme_order_certificate(c, &o, &pem, e) != 0)
		rc = -1;
	if (rc == 0) {
		f = fopen(a->out, "w");
		if (f == NULL || fputs(pem, f) < 0 || fclose(f) != 0)
			rc = local_fail(e, "cannot write %s: %s", a->out, strerror(errno));
	}
	if (save_state(a->state, &o) != 0 && rc == 0)
		rc = local_fail(e, "cannot write %s: %s", a->state, strerror(errno));
	if (rc == 0)
		print(order_summary(&o));
	free(pem);
	X509_REQ_free(csr);
	EVP_PKEY_free(cert_key);
	acme_order_free(&o);
	return rc;
}

static int step_certid(const args *a, acme_client *c, acme_err *e)
{
	X509 *cert = a->cert ? read_cert(a->cert) : NULL;
	char certid[256];
	acme_renewal_info info;
	int rc;

	if (cert == NULL)
		return local_fail(e, "cannot read the certificate %s", a->cert ? a->cert : "");
	rc = acme_ari_certid(cert, certid, sizeof(certid), e);
	X509_free(cert);
	if (rc != 0)
		return -1;
	if (c == NULL)
		return print(json_pack("{s:s}", "certid", certid));
	if (acme_ari_fetch(c, certid, &info, e) != 0)
		return -1;
	return print(json_pack("{s:s, s:I, s:I, s:s, s:I}", "certid", certid, "start",
	                       (json_int_t)info.start, "end", (json_int_t)info.end, "explanation",
	                       info.explanation, "retry_after", (json_int_t)info.retry_after));
}

/* The dns-01 steps, which need no CA: publish, check or remove a record. */
static int step_dns(const args *a, acme_err *e)
{
	bool add = strstr(a->step, "-add") != NULL;
	acme_tsig_key key;
	int rc;

	if (a->name == NULL || a->value == NULL)
		return local_fail(e, "%s needs --name and --value", a->step);
	if (strncmp(a->step, "hook-", 5) == 0) {
		if (a->hook == NULL)
			return local_fail(e, "%s needs --hook", a->step);
		if (acme_dns_hook(a->hook, add, a->name, a->value, a->timeout_ms, e) != 0)
			return -1;
		return print(json_pack("{s:b}", "ok", true));
	}
	if (a->server == NULL)
		return local_fail(e, "%s needs --server", a->step);
	if (strcmp(a->step, "dns-wait") == 0)
		return acme_dns01_wait(a->server, a->name, a->value, a->timeout_ms, NULL, e) != 0
		           ? -1
		           : print(json_pack("{s:b}", "found", true));
	if (strcmp(a->step, "dns-check") == 0) {
		rc = acme_dns01_check(a->server, a->name, a->value, a->timeout_ms, e);
		return rc < 0 ? -1 : print(json_pack("{s:b}", "found", rc == 1));
	}
	if (a->tsig_key == NULL)
		return local_fail(e, "%s needs --tsig-key", a->step);
	if (acme_tsig_key_load(a->tsig_key, &key, e) != 0)
		return -1;
	rc = acme_dns01_update(a->server, &key, add, a->name, a->value, a->timeout_ms, e);
	acme_tsig_key_wipe(&key);
	return rc != 0 ? -1 : print(json_pack("{s:b}", "ok", true));
}

/* The responder's lookup: DIR/TOKEN's content (the responder passes only
 * base64url tokens, so the path stays in DIR). */
static char *lookup_file(void *arg, const char *token)
{
	char path[4096];

	printf("{\"lookup\":\"%s\"}\n", token);
	fflush(stdout);
	snprintf(path, sizeof(path), "%s/%s", (const char *)arg, token);
	return slurp(path);
}

static void on_term(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

static int step_serve_http01(const args *a, acme_err *e)
{
	struct event_base *base = event_base_new();
	struct event *term = base != NULL ? evsignal_new(base, SIGTERM, on_term, base) : NULL;
	acme_http01_opts o = {.base = base,
	                      .listen = a->listen,
	                      .lookup = lookup_file,
	                      .arg = (void *)a->tokens,
	                      .timeout_s = 5};
	acme_http01 *h = NULL;

	if (a->listen == NULL || a->tokens == NULL)
		local_fail(e, "serve-http01 needs --listen and --tokens");
	else if (term == NULL || event_add(term, NULL) != 0)
		local_fail(e, "cannot set up the event loop");
	else if ((h = acme_http01_new(&o, e)) != NULL) {
		printf("{\"port\":%u}\n", acme_http01_port(h));
		fflush(stdout);
		event_base_dispatch(base);
	}
	acme_http01_free(h);
	if (term != NULL)
		event_free(term);
	if (base != NULL)
		event_base_free(base);
	return h != NULL ? 0 : -1;
}

static int step_http01_check(const args *a, acme_err *e)
{
	if (a->nendpoints == 0 || a->name == NULL || a->token == NULL || a->value == NULL)
		return local_fail(e, "http01-check needs --endpoint, --name, --token and --value");
	if (acme_http01_check(a->endpoints, a->nendpoints, a->name, a->token, a->value,
	                      a->timeout_ms, NULL, e) != 0)
		return -1;
	return print(json_pack("{s:b}", "ready", true));
}

static int write_pem(const char *path, X509 *x, EVP_PKEY *k)
{
	FILE *f = fopen(path, "w");
	int ok = f != NULL && (x == NULL || PEM_write_X509(f, x)) &&
	         (k == NULL || PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL));

	if (f != NULL && fclose(f) != 0)
		ok = 0;
	return ok ? 0 : -1;
}

static int step_tlsalpn01_cert(const args *a, acme_err *e)
{
	uint8_t digest[32];
	EVP_PKEY *k = NULL;
	X509 *x = NULL;
	int rc = -1;

	if (a->name == NULL || a->value == NULL || a->cert_key == NULL || a->out == NULL)
		return local_fail(e, "tlsalpn01-cert needs --name, --value, --cert-key and --out");
	if (acme_tlsalpn01_digest(a->value, digest, e) != 0 ||
	    (k = pki_key_generate(PKI_KEY_EC_P256, &e->err)) == NULL ||
	    (x = pki_tlsalpn01_cert(k, a->name, digest, &e->err)) == NULL)
		e->cls = ACME_ERR_FATAL;
	else if (write_pem(a->out, x, NULL) != 0 || write_pem(a->cert_key, NULL, k) != 0)
		local_fail(e, "cannot write %s or %s", a->out, a->cert_key);
	else
		rc = print(json_pack("{s:b}", "ok", true));
	X509_free(x);
	EVP_PKEY_free(k);
	return rc;
}

static int step_tlsalpn01_check(const args *a, acme_err *e)
{
	if (a->nendpoints == 0 || a->name == NULL || a->value == NULL)
		return local_fail(e, "tlsalpn01-check needs --endpoint, --name and --value");
	if (acme_tlsalpn01_check(a->endpoints, a->nendpoints, a->name, a->value, a->timeout_ms,
	                         NULL, e) != 0)
		return -1;
	return print(json_pack("{s:b}", "ready", true));
}

int main(int argc, char **argv)
{
	acme_client_opts opts = {0};
	acme_client *c = NULL;
	EVP_PKEY *key = NULL;
	acme_err e;
	args a;
	int rc;

	memset(&e, 0, sizeof(e));
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (parse(argc, argv, &a) != 0)
		return usage("bad arguments; see the top of acme_driver.c");
	if (strcmp(a.step, "certid") == 0)
		return step_certid(&a, NULL, &e) == 0 ? 0 : fail(&e);
	if (strncmp(a.step, "dns-", 4) == 0 || strncmp(a.step, "hook-", 5) == 0)
		return step_dns(&a, &e) == 0 ? 0 : fail(&e);
	if (strcmp(a.step, "serve-http01") == 0)
		return step_serve_http01(&a, &e) == 0 ? 0 : fail(&e);
	if (strcmp(a.step, "http01-check") == 0)
		return step_http01_check(&a, &e) == 0 ? 0 : fail(&e);
	if (strcmp(a.step, "tlsalpn01-cert") == 0)
		return step_tlsalpn01_cert(&a, &e) == 0 ? 0 : fail(&e);
	if (strcmp(a.step, "tlsalpn01-check") == 0)
		return step_tlsalpn01_check(&a, &e) == 0 ? 0 : fail(&e);
	if (a.dir == NULL || a.key == NULL)
		return usage("--dir and --key are needed");
	if ((key = read_key(a.key)) == NULL)
		return usage("cannot read the account key");
	opts.directory = a.dir;
	opts.ca_file = a.ca_file;
	opts.account_key = key;
	opts.timeout_ms = a.timeout_ms;
	c = acme_client_new(&opts, &e);
	if (c == NULL)
		rc = -1;
	else if (strcmp(a.step, "directory") == 0)
		rc = print(json_pack("{s:s, s:s?, s:b}", "newOrder",
		                     acme_directory_url(c, "newOrder"), "renewalInfo",
		                     acme_directory_url(c, "renewalInfo"), "eab_required",
		                     acme_eab_required(c)));
	else if (strcmp(a.step, "account") == 0)
		rc = step_account(c, &a, &e);
	else if (strcmp(a.step, "order") == 0)
		rc = step_order(c, &a, key, &e);
	else if (strcmp(a.step, "respond") == 0)
		rc = step_respond(c, &a, &e);
	else if (strcmp(a.step, "finish") == 0)
		rc = step_finish(c, &a, &e);
	else if (strcmp(a.step, "ari") == 0)
		rc = step_certid(&a, c, &e);
	else
		rc = local_fail(&e, "unknown step %s", a.step);
	acme_client_free(c);
	EVP_PKEY_free(key);
	return rc == 0 ? 0 : fail(&e);
}
