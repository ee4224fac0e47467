/* test_tls.c — unit tests of the TLS module: name normalization, selection
 * (exact, one-label wildcard, default; key type; expiry), the coverage gate,
 * tables loaded from a real store (and reused across builds), the HTTP
 * answers, and a running server: handshakes, swaps, cluster-wide tickets. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#include "../../bench/storekit.h"
#include "../../common/hex.h"
#include "../../tls/tls_int.h"

#define DAY 86400

/* ---- test certificates -------------------------------------------------------- */

static EVP_PKEY *ec_key, *rsa_key; /* made once: RSA generation is slow */

static X509 *make_cert(const char *sans, EVP_PKEY *key, long from, long to)
{
	X509 *x = X509_new();
	X509V3_CTX v3;
	X509_EXTENSION *ext;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), rand());
	X509_gmtime_adj(X509_getm_notBefore(x), from);
	X509_gmtime_adj(X509_getm_notAfter(x), to);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	                           (const unsigned char *)"test", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_set_pubkey(x, key);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, sans);
	assert_non_null(ext);
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:FALSE");
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	return x;
}

/* One entry as tls_table_load would make it; sans like "DNS:a,DNS:*.b". */
static tls_entry *make_entry(const char *sans, bool rsa, long from, long to)
{
	EVP_PKEY *key = rsa ? rsa_key : ec_key;
	char *list = strdup(sans), *save;
	tls_entry *e = tls_entry_new();
	unsigned len;

	assert_non_null(e);
	e->leaf = make_cert(sans, key, from, to);
	EVP_PKEY_up_ref(key);
	e->key = key;
	e->ec = !rsa;
	e->not_before = time(NULL) + from;
	e->not_after = time(NULL) + to;
	X509_digest(e->leaf, EVP_sha256(), e->id, &len);
	cs_hex(e->id, TLS_ID_LEN, e->id_hex);
	for (char *t = strtok_r(list, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save))
		assert_int_equal(pki_sans_add(&e->names, t + 4), 0); /* drop "DNS:" */
	free(list);
	return e;
}

struct spec {
	const char *sans;
	bool rsa;
	long from, to;
};

/* Builds a table of n certificates; default: index or -1. */
static tls_table *build(const struct spec *sp, size_t n, int dflt, const char *node,
                        const char *site)
{
	tls_entry **e = calloc(n, sizeof(*e));
	uint8_t id[TLS_ID_LEN];
	tls_table *t;
	cs_err err;

	for (size_t i = 0; i < n; i++)
		e[i] = make_entry(sp[i].sans, sp[i].rsa, sp[i].from, sp[i].to);
	if (dflt >= 0)
		memcpy(id, e[dflt]->id, TLS_ID_LEN);
	assert_int_equal(
	    tls_table_build(&t, e, n, dflt >= 0 ? id : NULL, node, site, time(NULL), &err), 0);
	return t;
}

static const char *sel_id(tls_table *t, const char *name, bool ecdsa)
{
	const tls_entry *e =
	    tls_table_select(t, name, ecdsa ? TLS_CAN_ANY : TLS_CAN_RSA, time(NULL));

	return e != NULL ? e->id_hex : "none";
}

static const char *entry_id(tls_table *t, size_t i)
{
	return t->entries[i]->id_hex;
}

static int setup(void **state)
{
	(void)state;
	ec_key = EVP_EC_gen("P-256");
	rsa_key = EVP_RSA_gen(2048);
	return ec_key != NULL && rsa_key != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(ec_key);
	EVP_PKEY_free(rsa_key);
	return 0;
}

/* ---- names ------------------------------------------------------------------------ */

static void test_normalize(void **state)
{
	char out[TLS_NAME_MAX + 1], big[400];

	(void)state;
	assert_int_equal(tls_name_normalize("WWW.Example.TEST.", 17, out), 16);
	assert_string_equal(out, "www.example.test");
	assert_int_equal(tls_name_normalize("a_b-c.d", 7, out), 7);
	assert_int_equal(tls_name_normalize("", 0, out), 0);
	assert_int_equal(tls_name_normalize(".", 1, out), 0);
	assert_int_equal(tls_name_normalize("a..b", 4, out), 0);
	assert_int_equal(tls_name_normalize(".a", 2, out), 0);
	assert_int_equal(tls_name_normalize("a\x01.test", 7, out), 0);
	assert_int_equal(tls_name_normalize("a b.test", 8, out), 0);
	assert_int_equal(tls_name_normalize("*.test", 6, out), 0);
	assert_int_equal(tls_name_normalize("caf\xc3\xa9.test", 10, out), 0);
	memset(big, 'a', sizeof(big));
	for (int i = 60; i < 400; i += 61)
		big[i] = '.';
	assert_int_equal(tls_name_normalize(big, 253, out), 253);
	assert_int_equal(tls_name_normalize(big, 254, out), 0);
	assert_int_equal(tls_name_normalize(big, 300, out), 0);
	memset(big, 'a', 64);
	assert_int_equal(tls_name_normalize(big, 64, out), 0); /* label > 63 */
}

/* ---- selection ------------------------------------------------------------------------ */

static void test_select_order(void **state)
{
	static const struct spec sp[] = {
	    {"DNS:www.example.test", false, -DAY, 30 * DAY},
	    {"DNS:*.example.test", false, -DAY, 30 * DAY},
	    {"DNS:support.example.test,DNS:node.example.test", false, -DAY, 30 * DAY},
	    {"DNS:*.com", false, -DAY, 30 * DAY},
	};
	tls_table *t = build(sp, 4, 2, "node.example.test", "support.example.test");

	(void)state;
	assert_string_equal(sel_id(t, "www.example.test", true), entry_id(t, 0));
	assert_string_equal(sel_id(t, "a.example.test", true), entry_id(t, 1));
	/* RFC 6125: one label only. */
	assert_string_equal(sel_id(t, "a.b.example.test", true), entry_id(t, 2));
	assert_string_equal(sel_id(t, "example.test", true), entry_id(t, 2));
	assert_string_equal(sel_id(t, "unknown.test", true), entry_id(t, 2));
	assert_string_equal(sel_id(t, NULL, true), entry_id(t, 2));
	/* A wildcard over a whole top-level domain is never indexed. */
	assert_string_equal(sel_id(t, "x.com", true), entry_id(t, 2));
	assert_true(t->covered);
	assert_int_equal(t->nuncovered, 0);
	assert_true(tls_table_healthy(t, time(NULL)));
	tls_table_free(t);
}

static void test_select_key_type_and_expiry(void **state)
{
	static const struct spec sp[] = {
	    {"DNS:www.example.test", true, -DAY, 60 * DAY},  /* RSA, later expiry */
	    {"DNS:www.example.test", false, -DAY, 30 * DAY}, /* ECDSA */
	    {"DNS:www.example.test", false, -DAY, 40 * DAY}, /* ECDSA, later */
	    {"DNS:www.example.test", false, -9 * DAY, -DAY}, /* expired */
	    {"DNS:www.example.test", false, DAY, 90 * DAY},  /* not yet valid */
	    {"DNS:old.example.test", false, -9 * DAY, -DAY}, /* expired, alone */
	    {"DNS:d.example.test", false, -DAY, 30 * DAY},   /* default */
	};
	tls_table *t = build(sp, 7, 6, "d.example.test", "d.example.test");

	(void)state;
	/* The latest expiry wins whatever the key type; a client that
	 * cannot take RSA gets the best ECDSA one. */
	assert_string_equal(sel_id(t, "www.example.test", true), entry_id(t, 0));
	assert_string_equal(sel_id(t, "www.example.test", false), entry_id(t, 0));
	assert_string_equal(tls_table_select(t, "www.example.test", TLS_CAN_EC, time(NULL))->id_hex,
	                    entry_id(t, 2));
	/* An expired certificate is never chosen while a valid one exists... */
	assert_string_equal(sel_id(t, "old.example.test", true), entry_id(t, 6));
	/* ...nor at all: 45 days on, the default has expired, so
	 * old.example.test gets nothing and the node is not healthy; and the
	 * certificate that was not yet valid has taken over www by itself. */
	assert_null(tls_table_select(t, "old.example.test", TLS_CAN_ANY, time(NULL) + 45 * DAY));
	assert_ptr_equal(
	    tls_table_select(t, "www.example.test", TLS_CAN_ANY, time(NULL) + 45 * DAY),
	    t->entries[4]);
	assert_false(tls_table_healthy(t, time(NULL) + 45 * DAY));
	tls_table_free(t);
}

/* The operator's default wins over the key type preference: for no SNI,
 * unknown names and every name it covers, unless the client cannot take
 * its key type; the preference only picks between equal expiries. */
static void test_select_default_wins(void **state)
{
	static const struct spec sp[] = {
	    {"DNS:*.example.test,DNS:example.test", true, -DAY, 90 * DAY}, /* default, RSA */
	    {"DNS:example.test,DNS:node.example.test", false, -DAY, 365 * DAY},
	    {"DNS:a.example.test", false, -DAY, 365 * DAY},
	    {"DNS:b.other.test", true, -DAY, 30 * DAY},
	    {"DNS:b.other.test", false, -DAY, 30 * DAY},
	};
	tls_table *t = build(sp, 5, 0, "node.example.test", "example.test");
	const char *names[] = {NULL, "example.test", "node.example.test", "a.example.test",
	                       "unknown.test"};

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		assert_string_equal(sel_id(t, names[i], true), entry_id(t, 0));
		assert_string_equal(sel_id(t, names[i], false), entry_id(t, 0));
	}
	/* A client that takes only ECDSA gets the best covering ECDSA one. */
	assert_string_equal(tls_table_select(t, NULL, TLS_CAN_EC, time(NULL))->id_hex,
	                    entry_id(t, 1));
	assert_string_equal(tls_table_select(t, "a.example.test", TLS_CAN_EC, time(NULL))->id_hex,
	                    entry_id(t, 2));
	tls_table_free(t);
	/* Equal expiries: ECDSA to the clients that offer it. */
	{
		tls_entry **e = calloc(2, sizeof(*e));
		tls_table *u;
		cs_err err;

		e[0] = make_entry(sp[3].sans, true, -DAY, 30 * DAY);
		e[1] = make_entry(sp[4].sans, false, -DAY, 30 * DAY);
		e[1]->not_after = e[0]->not_after;
		assert_int_equal(tls_table_build(&u, e, 2, NULL, "", "", time(NULL), &err), 0);
		assert_string_equal(sel_id(u, "b.other.test", true), entry_id(u, 1));
		assert_string_equal(sel_id(u, "b.other.test", false), entry_id(u, 0));
		tls_table_free(u);
	}
}

static void test_gate(void **state)
{
	static const struct spec sp[] = {
	    {"DNS:other.example.test", false, -DAY, 30 * DAY},
	    {"DNS:*.example.test", false, -DAY, 20 * DAY},
	    {"DNS:*.example.test,DNS:example.test", false, -DAY, 25 * DAY},
	};
	tls_table *t = build(sp, 3, 0, "node.example.test", "example.test");
	json_t *st;

	(void)state;
	/* The default misses both hostnames: the covering one serves instead. */
	assert_int_equal(t->nuncovered, 2);
	assert_true(t->covered);
	assert_string_equal(sel_id(t, NULL, true), entry_id(t, 2));
	assert_string_equal(sel_id(t, "other.example.test", true), entry_id(t, 0));
	st = tls_table_status(t, time(NULL));
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(st, "default"), "configured")),
	    entry_id(t, 0));
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(st, "default"), "served")),
	    entry_id(t, 2));
	assert_int_equal(
	    json_array_size(json_object_get(json_object_get(st, "default"), "uncovered")), 2);
	json_decref(st);
	tls_table_free(t);

	/* Nothing covers: no default is served at all, and /healthz says 503. */
	t = build(sp, 1, 0, "node.example.test", "example.test");
	assert_false(t->covered);
	assert_false(tls_table_healthy(t, time(NULL)));
	assert_string_equal(sel_id(t, NULL, true), "none");
	assert_string_equal(sel_id(t, "other.example.test", true), entry_id(t, 0));
	tls_table_free(t);

	/* No default at all and nothing covering: unknown names get nothing. */
	t = build(sp, 1, -1, "node.example.test", "example.test");
	assert_string_equal(sel_id(t, "unknown.test", true), "none");
	assert_string_equal(sel_id(t, "other.example.test", true), entry_id(t, 0));
	tls_table_free(t);
}

/* ---- HTTP ------------------------------------------------------------------------------- */

static long answer(const char *req, char **out, bool *keep, bool healthy)
{
	tls_http_info info = {"n1", "primary", "www.example.test", "ab12", healthy};
	size_t outlen;

	*out = NULL;
	return tls_http_answer(req, strlen(req), 8192, &info, out, &outlen, keep);
}

static void test_http(void **state)
{
	char *out;
	bool keep;
	long n;

	(void)state;
	assert_int_equal(answer("GET / HTTP/1.1\r\nHost: x\r\n", &out, &keep, true), 0);
	n = answer("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /x", &out, &keep, true);
	assert_int_equal(n, 27);
	assert_true(keep);
	assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(out, "{\"node\":\"n1\",\"role\":\"primary\",\"sni\":"
	                            "\"www.example.test\",\"certificate\":\"ab12\"}"));
	free(out);
	answer("GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", &out, &keep, false);
	assert_non_null(strstr(out, "HTTP/1.1 503 "));
	assert_false(keep);
	free(out);
	answer("GET /healthz?x=1 HTTP/1.0\r\n\r\n", &out, &keep, true);
	assert_non_null(strstr(out, "HTTP/1.1 200 "));
	assert_false(keep);
	free(out);
	answer("GET /nope HTTP/1.1\r\n\r\n", &out, &keep, true);
	assert_non_null(strstr(out, "HTTP/1.1 404 "));
	assert_true(keep);
	free(out);
	answer("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", &out, &keep, true);
	assert_non_null(strstr(out, "HTTP/1.1 404 "));
	assert_false(keep);
	free(out);
	answer("garbage\r\n\r\n", &out, &keep, true);
	assert_non_null(strstr(out, "HTTP/1.1 400 "));
	assert_false(keep);
	free(out);
	{
		char big[8192];
		tls_http_info info = {"n", "r", "", "", true};
		size_t outlen;

		memset(big, 'a', sizeof(big));
		assert_int_equal(
		    tls_http_answer(big, sizeof(big), sizeof(big), &info, &out, &outlen, &keep),
		    sizeof(big));
		assert_non_null(strstr(out, "HTTP/1.1 431 "));
		free(out);
	}
}

/* ---- a real store ------------------------------------------------------------------------- */

static void write_pem(const char *dir, const char *name, X509 *x, EVP_PKEY *k, char *path,
                      size_t size)
{
	FILE *f;

	snprintf(path, size, "%s/%s.pem", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	PEM_write_X509(f, x);
	PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	fclose(f);
}

static tls_table *load(cs_store *st, cs_key *key, const tls_table *prev)
{
	cs_txn *txn;
	tls_table *t;
	cs_err err;

	assert_int_equal(cs_txn_begin(st, false, &txn, &err), 0);
	if (tls_table_load(&t, txn, key, "node.example.test", "node.example.test", prev, time(NULL),
	                   &err) != 0)
		fail_msg("tls_table_load: %s", err.msg);
	cs_txn_abort(txn);
	return t;
}

static void test_load_store(void **state)
{
	char dir[] = "/tmp/test_tls.XXXXXX", path[512], hex[65];
	X509 *a = make_cert("DNS:node.example.test", ec_key, -DAY, 30 * DAY);
	X509 *b = make_cert("DNS:*.example.test", rsa_key, -DAY, 30 * DAY);
	uint8_t ida[32], idb[32];
	cs_store *st;
	cs_key *key, *other;
	tls_table *t1, *t2, *t3;
	const tls_entry *ea;
	cs_err err;

	(void)state;
	assert_non_null(mkdtemp(dir));
	if (storekit_open(dir, "pass", &st, &key, &err) < 0)
		fail_msg("storekit_open: %s", err.msg);
	write_pem(dir, "a", a, ec_key, path, sizeof(path));
	assert_int_equal(storekit_import(st, key, path, NULL, true, ida, &err), 0);
	t1 = load(st, key, NULL);
	assert_int_equal(t1->nentries, 1);
	cs_hex(ida, 32, hex);
	assert_string_equal(sel_id(t1, NULL, true), hex);
	assert_true(tls_table_healthy(t1, time(NULL)));

	/* A second build reuses what did not change: no unseal, no parse. */
	write_pem(dir, "b", b, rsa_key, path, sizeof(path));
	assert_int_equal(storekit_import(st, key, path, NULL, false, idb, &err), 0);
	t2 = load(st, key, t1);
	assert_int_equal(t2->nentries, 2);
	ea = tls_table_select(t2, "node.example.test", TLS_CAN_ANY, time(NULL));
	assert_ptr_equal(ea->leaf, tls_table_select(t1, NULL, TLS_CAN_ANY, time(NULL))->leaf);
	cs_hex(idb, 32, hex);
	assert_string_equal(sel_id(t2, "x.example.test", true), hex);
	assert_false(tls_table_select(t2, "x.example.test", TLS_CAN_ANY, time(NULL))->ec);

	/* A key that does not open under the cluster key is skipped, not fatal. */
	assert_int_equal(cs_seal_init(&err), 0);
	assert_int_equal(cs_key_derive(&other, "other", 5, (const uint8_t *)"0123456789abcdef",
	                               crypto_pwhash_OPSLIMIT_INTERACTIVE,
	                               crypto_pwhash_MEMLIMIT_INTERACTIVE, &err),
	                 0);
	t3 = load(st, other, NULL);
	assert_int_equal(t3->nentries, 0);
	assert_int_equal(t3->nskipped, 2);
	assert_string_equal(sel_id(t3, NULL, true), "none");
	tls_table_free(t3);
	cs_key_free(other);

	/* Deleting the default leaves no default: the gate finds another. */
	assert_int_equal(storekit_delete(st, ida, NULL, &err), 0);
	t3 = load(st, key, t2);
	assert_int_equal(t3->nentries, 1);
	assert_true(t3->covered); /* *.example.test covers node.example.test */
	assert_string_equal(sel_id(t3, NULL, true), hex);

	tls_table_free(t1);
	tls_table_free(t2);
	tls_table_free(t3);
	X509_free(a);
	X509_free(b);
	cs_key_free(key);
	cs_store_close(st);
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	assert_int_equal(system(path), 0);
}

/* A table built from the previous one and the log entries since must
 * serve exactly what a table read from the whole store serves. */
static void assert_same(tls_table *delta, tls_table *whole)
{
	static const char *const names[] = {
	    "node.example.test",
	    "a.example.test",
	    "b.example.test",
	    "x.wild.example.test",
	    "deep.x.wild.example.test",
	    "unknown.test",
	    NULL,
	};

	assert_int_equal(delta->nentries, whole->nentries);
	assert_int_equal(delta->nskipped, whole->nskipped);
	assert_int_equal(delta->covered, whole->covered);
	assert_int_equal(delta->nuncovered, whole->nuncovered);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		assert_string_equal(sel_id(delta, names[i], true), sel_id(whole, names[i], true));
		assert_string_equal(sel_id(delta, names[i], false), sel_id(whole, names[i], false));
	}
}

/* Imports a new certificate (own key) for sans; its id goes to id. */
static void add_cert(cs_store *st, cs_key *key, const char *dir, const char *sans, bool rsa,
                     long to, bool dflt, uint8_t id[32])
{
	static int serial;
	X509 *x = make_cert(sans, rsa ? rsa_key : ec_key, -DAY, to);
	char name[32], path[512];
	cs_err err;

	snprintf(name, sizeof(name), "c%d", serial++);
	write_pem(dir, name, x, rsa ? rsa_key : ec_key, path, sizeof(path));
	if (storekit_import(st, key, path, NULL, dflt, id, &err) != 0)
		fail_msg("storekit_import: %s", err.msg);
	X509_free(x);
}

/* Checks one more change: the table from the log since prev against a
 * table from the whole store; returns the new one, prev freed. */
static tls_table *step(cs_store *st, cs_key *key, tls_table *prev)
{
	tls_table *delta = load(st, key, prev), *whole = load(st, key, NULL);

	assert_same(delta, whole);
	tls_table_free(whole);
	tls_table_free(prev);
	return delta;
}

static void test_load_delta(void **state)
{
	char dir[] = "/tmp/test_tls.XXXXXX", cmd[64], hex[65];
	uint8_t a[32], b[32], c[32], d[32], e[32], f[32];
	cs_store *st;
	cs_key *key;
	tls_table *t, *kept;
	cs_err err;

	(void)state;
	assert_non_null(mkdtemp(dir));
	if (storekit_open(dir, "pass", &st, &key, &err) < 0)
		fail_msg("storekit_open: %s", err.msg);
	add_cert(st, key, dir, "DNS:a.example.test,DNS:node.example.test", false, 30 * DAY, true,
	         a);
	add_cert(st, key, dir, "DNS:b.example.test", true, 30 * DAY, false, b);
	t = load(st, key, NULL);
	assert_true(t->from_store);

	/* Added: a later one for the same name takes over, a wildcard joins. */
	add_cert(st, key, dir, "DNS:a.example.test", false, 60 * DAY, false, c);
	add_cert(st, key, dir, "DNS:*.wild.example.test", false, 30 * DAY, false, d);
	kept = tls_table_ref(t);
	t = step(st, key, t);
	cs_hex(d, 32, hex);
	assert_string_equal(sel_id(t, "x.wild.example.test", true), hex);
	/* Entries that did not change are the same objects, not parsed again. */
	assert_ptr_equal(tls_table_select(t, "b.example.test", TLS_CAN_RSA, time(NULL)),
	                 tls_table_select(kept, "b.example.test", TLS_CAN_RSA, time(NULL)));
	tls_table_free(kept);

	/* Deleted, the default among them; then a new default. */
	assert_int_equal(storekit_delete(st, c, NULL, &err), 0);
	t = step(st, key, t);
	assert_int_equal(storekit_delete(st, a, d, &err), 0);
	t = step(st, key, t);
	assert_false(t->covered); /* the wildcard does not cover node.example.test */
	add_cert(st, key, dir, "DNS:node.example.test,DNS:*.example.test", true, 90 * DAY, false,
	         e);
	assert_int_equal(storekit_set_default(st, e, &err), 0);
	t = step(st, key, t);
	assert_true(t->covered);

	/* Several changes the log no longer holds: the whole store is read. */
	cs_store_set_log_retain(st, 1);
	add_cert(st, key, dir, "DNS:b.example.test", false, 120 * DAY, false, f);
	assert_int_equal(storekit_delete(st, b, NULL, &err), 0);
	assert_int_equal(storekit_delete(st, d, NULL, &err), 0);
	t = step(st, key, t);
	assert_int_equal(t->nentries, 2);

	tls_table_free(t);
	cs_key_free(key);
	cs_store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* ---- a running server ---------------------------------------------------------------------- */

static int port_of(tls_server *srv)
{
	json_t *st = tls_server_status(srv);
	const char *a = json_string_value(json_array_get(json_object_get(st, "listeners"), 0));
	int port = atoi(strrchr(a, ':') + 1);

	json_decref(st);
	return port;
}

/* One blocking handshake; the served certificate's id in hex (or "fail"),
 * the session in *sess when asked. */
static void handshake(int port, const char *sni, SSL_SESSION **sess, char hex[65], bool *reused)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	SSL *ssl = SSL_new(ctx);
	char buf[512];

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	SSL_set_fd(ssl, fd);
	if (sni != NULL)
		SSL_set_tlsext_host_name(ssl, sni);
	if (sess != NULL && *sess != NULL)
		SSL_set_session(ssl, *sess);
	strcpy(hex, "fail");
	if (SSL_connect(ssl) == 1) {
		X509 *x = SSL_get0_peer_certificate(ssl);
		uint8_t id[32];
		unsigned len;

		X509_digest(x, EVP_sha256(), id, &len);
		cs_hex(id, 32, hex);
		*reused = SSL_session_reused(ssl);
		/* A request, so the TLS 1.3 ticket is read too. */
		SSL_write(ssl, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 38);
		while (SSL_read(ssl, buf, sizeof(buf)) > 0)
			;
		if (sess != NULL) {
			SSL_SESSION_free(*sess);
			*sess = SSL_get1_session(ssl);
		}
		/* Freed unshut, the SSL would mark the session not resumable. */
		SSL_shutdown(ssl);
	}
	SSL_free(ssl);
	ERR_clear_error();
	close(fd);
	SSL_CTX_free(ctx);
}

static void test_server(void **state)
{
	static const struct spec sp[] = {
	    {"DNS:www.example.test", false, -DAY, 30 * DAY},
	    {"DNS:node.example.test", false, -DAY, 30 * DAY},
	};
	static const char *const listen[] = {"127.0.0.1:0"};
	tls_config cfg = {
	    listen, 1, 2, 2000, 100, "n1", "primary", "node.example.test", "node.example.test"};
	uint8_t master[32] = {1}, other[32] = {2};
	tls_server *a, *b, *c;
	SSL_SESSION *sess = NULL;
	char hex[65], want[65];
	bool reused = false;
	tls_table *t;
	json_t *st;
	cs_err err;

	(void)state;
	assert_int_equal(tls_server_start(&a, &cfg, master, &err), 0);
	/* No table yet: the handshake fails cleanly, the server lives on. */
	handshake(port_of(a), "www.example.test", NULL, hex, &reused);
	assert_string_equal(hex, "fail");
	assert_false(tls_server_healthy(a));

	t = build(sp, 2, 1, "node.example.test", "node.example.test");
	strcpy(want, entry_id(t, 0));
	tls_server_swap(a, t);
	assert_true(tls_server_healthy(a));
	handshake(port_of(a), "www.example.test", &sess, hex, &reused);
	assert_string_equal(hex, want);
	assert_false(reused);

	/* Another node of the cluster (same ticket secret) resumes the ticket;
	 * a node of another cluster does not. */
	assert_int_equal(tls_server_start(&b, &cfg, master, &err), 0);
	assert_int_equal(tls_server_start(&c, &cfg, other, &err), 0);
	tls_server_swap(b, tls_server_table(a));
	tls_server_swap(c, tls_server_table(a));
	handshake(port_of(b), "www.example.test", &sess, hex, &reused);
	assert_true(reused);
	handshake(port_of(c), "www.example.test", &sess, hex, &reused);
	assert_false(reused);
	assert_string_equal(hex, want);

	st = tls_server_status(a);
	assert_true(
	    json_integer_value(json_object_get(json_object_get(st, "handshakes"), "done")) >= 1);
	assert_true(
	    json_integer_value(json_object_get(json_object_get(st, "handshakes"), "failed")) >= 1);
	assert_true(json_is_true(json_object_get(st, "healthy")));
	assert_int_equal(json_integer_value(json_object_get(st, "workers")), 2);
	json_decref(st);

	SSL_SESSION_free(sess);
	tls_server_stop(a);
	tls_server_stop(b);
	tls_server_stop(c);
}

static void test_bad_listen(void **state)
{
	static const char *const bad[] = {"localhost:443", "1.2.3.4", "::1:443", "[::1]443",
	                                  "127.0.0.1:99999"};
	uint8_t master[32] = {0};
	tls_server *srv;
	cs_err err;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tls_config cfg = {.listen = &bad[i], .nlisten = 1, .workers = 1};

		assert_int_equal(tls_server_start(&srv, &cfg, master, &err), -1);
		assert_int_equal(err.code, CS_EUSAGE);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_normalize),
	    cmocka_unit_test(test_select_order),
	    cmocka_unit_test(test_select_key_type_and_expiry),
	    cmocka_unit_test(test_select_default_wins),
	    cmocka_unit_test(test_gate),
	    cmocka_unit_test(test_http),
	    cmocka_unit_test(test_load_store),
	    cmocka_unit_test(test_load_delta),
	    cmocka_unit_test(test_server),
	    cmocka_unit_test(test_bad_listen),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
