/* microbench.c — tls-microbench: the server's CPU per handshake, in memory.
 *
 *   tls-microbench --data-dir DIR --passphrase-file F [--import CERT,KEY]...
 *       [--sni NAME[=CHECK]]... [-n HANDSHAKES] [--tls12] [--ctx-per-cert]
 *       [--ticket]
 *
 * Client and server run in one thread over a BIO pair: no sockets, no
 * scheduler, no noisy neighbour.  Only the server's calls are timed, with the
 * thread CPU clock: SSL_new, every SSL_do_handshake step (the ClientHello
 * callback, selection, signing, the ticket) and SSL_free.  The client offers
 * no ticket and keeps no session, so every handshake is a full one.
 *
 * --ticket adds a TLS 1.3 ticket to each handshake (the server sends its
 * ticket with the first HTTP answer, so plain handshakes carry none).
 * --ctx-per-cert measures the alternative nginx uses: one prepared SSL_CTX per
 * certificate, switched with SSL_set_SSL_CTX in the servername callback; it
 * also prints what building those contexts cost in time and memory.
 * The last line compares with ECDSA P-256 signatures per second measured
 * here (what `openssl speed ecdsap256` reports). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "../tls/tls_int.h"
#include "storekit.h"

#define MAX_NAMES 4096

struct name {
	const char *sni, *check;
};

/* The prepared contexts of --ctx-per-cert, by entry index; each leaf
 * carries its context in ex_data slot idx, found in O(1) per handshake. */
static struct {
	const tls_table *t;
	SSL_CTX **ctx;
	int idx;
} prep;

static double thread_cpu(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double wall(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, rss = 0;

	if (f != NULL) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * 4;
}

/* ECDSA P-256 signatures of a SHA-256 digest per second, for one second. */
static double sign_rate(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	unsigned char dgst[32] = {1}, sig[80];
	double t0 = wall(), t;
	long n = 0;

	do {
		EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(k, NULL);
		size_t slen = sizeof(sig);

		EVP_PKEY_sign_init(pc);
		EVP_PKEY_sign(pc, sig, &slen, dgst, sizeof(dgst));
		EVP_PKEY_CTX_free(pc);
		n++;
	} while ((t = wall() - t0) < 1.0);
	EVP_PKEY_free(k);
	return n / t;
}

/* --ctx-per-cert: nginx's way, SNI from SSL_get_servername. */
static int on_servername(SSL *s, int *alert, void *arg)
{
	const char *sni = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
	char name[TLS_NAME_MAX + 1];
	size_t n = sni != NULL ? tls_name_normalize(sni, strlen(sni), name) : 0;
	const tls_entry *e = tls_table_select(prep.t, n ? name : NULL, TLS_CAN_ANY, time(NULL));

	(void)alert;
	(void)arg;
	if (e == NULL)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	SSL_set_SSL_CTX(s, X509_get_ex_data(e->leaf, prep.idx));
	return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *prepare(tls_table *t, cs_err *err)
{
	double t0 = wall();
	long rss0 = rss_kb();
	SSL_CTX *base = tls_ctx_new(err);

	prep.t = t;
	prep.ctx = calloc(t->nentries, sizeof(SSL_CTX *));
	prep.idx = X509_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	for (size_t i = 0; i < t->nentries; i++) {
		tls_entry *e = t->entries[i];

		prep.ctx[i] = tls_ctx_new(err);
		if (prep.ctx[i] == NULL ||
		    SSL_CTX_use_cert_and_key(prep.ctx[i], e->leaf, e->key, e->chain, 1) != 1 ||
		    !X509_set_ex_data(e->leaf, prep.idx, prep.ctx[i]))
			return NULL;
	}
	SSL_CTX_set_client_hello_cb(base, NULL, NULL);
	SSL_CTX_set_tlsext_servername_callback(base, on_servername);
	printf("ctx-per-cert: %zu SSL_CTX built in %.1f ms, %ld kB more RSS (%.1f kB each)\n",
	       t->nentries, (wall() - t0) * 1e3, rss_kb() - rss0,
	       t->nentries ? (double)(rss_kb() - rss0) / (double)t->nentries : 0.0);
	return base;
}

static tls_table *open_table(const char *dir, const char *passfile, char **imports, size_t nimports,
                             cs_err *err)
{
	char pass[1024];
	FILE *f = fopen(passfile, "r");
	cs_store *st;
	cs_key *key;
	cs_txn *txn;
	tls_table *t = NULL;
	uint8_t id[32];

	if (f == NULL || fgets(pass, sizeof(pass), f) == NULL) {
		fprintf(stderr, "tls-microbench: cannot read %s\n", passfile);
		exit(2);
	}
	fclose(f);
	pass[strcspn(pass, "\r\n")] = '\0';
	if (storekit_open(dir, pass, &st, &key, err) < 0)
		return NULL;
	for (size_t i = 0; i < nimports; i++) {
		char *comma = strchr(imports[i], ',');

		if (comma != NULL)
			*comma = '\0';
		if (storekit_import(st, key, imports[i], comma ? comma + 1 : NULL, i == 0, id,
		                    err) < 0)
			goto out;
	}
	if (cs_txn_begin(st, false, &txn, err) == 0) {
		if (tls_table_load(&t, txn, key, NULL, NULL, NULL, time(NULL), err) < 0)
			t = NULL;
		cs_txn_abort(txn);
	}
out:
	cs_key_free(key);
	cs_store_close(st);
	return t;
}

/* Runs one handshake; returns the server's CPU seconds, -1 on failure. */
static double one(SSL_CTX *sctx, SSL_CTX *cctx, tls_table *t, struct tls_tickets *tk,
                  const struct name *nm, bool *match)
{
	BIO *cb, *sb;
	SSL *c, *s;
	tls_hs hs = {.table = t, .tickets = tk};
	double cpu = 0, t0;
	int cr = 0, sr = 0;

	BIO_new_bio_pair(&cb, 0, &sb, 0);
	c = SSL_new(cctx);
	SSL_set_bio(c, cb, cb);
	if (nm->sni != NULL)
		SSL_set_tlsext_host_name(c, nm->sni);
	t0 = thread_cpu();
	s = SSL_new(sctx);
	SSL_set_bio(s, sb, sb);
	SSL_set_app_data(s, &hs);
	SSL_set_accept_state(s);
	cpu += thread_cpu() - t0;
	for (int round = 0; round < 20 && (cr != 1 || sr != 1); round++) {
		if (cr != 1)
			cr = SSL_connect(c);
		t0 = thread_cpu();
		if (sr != 1)
			sr = SSL_accept(s);
		cpu += thread_cpu() - t0;
	}
	*match = cr == 1 && sr == 1 &&
	         X509_check_host(SSL_get0_peer_certificate(c), nm->check, 0,
	                         X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
	SSL_set_shutdown(c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	SSL_free(c);
	t0 = thread_cpu();
	SSL_set_shutdown(s, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	SSL_free(s);
	cpu += thread_cpu() - t0;
	ERR_clear_error();
	return cr == 1 && sr == 1 ? cpu : -1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"data-dir", 1, 0, 'd'}, {"passphrase-file", 1, 0, 'p'},
	    {"import", 1, 0, 'i'},   {"sni", 1, 0, 's'},
	    {"tls12", 0, 0, '2'},    {"ctx-per-cert", 0, 0, 'c'},
	    {"ticket", 0, 0, 'T'},   {0, 0, 0, 0},
	};
	const char *dir = NULL, *passfile = NULL;
	static char *imports[MAX_NAMES];
	static struct name names[MAX_NAMES];
	size_t nimports = 0, nnames = 0;
	long n = 2000, failed = 0, mismatched = 0;
	bool tls12 = false, per_cert = false, ticket = false;
	uint8_t master[32] = {0};
	struct tls_tickets tk;
	double cpu = 0, sps;
	tls_table *t;
	SSL_CTX *sctx, *cctx;
	cs_err err = {0};
	int c;

	while ((c = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			dir = optarg;
			break;
		case 'p':
			passfile = optarg;
			break;
		case 'i':
			if (nimports < MAX_NAMES)
				imports[nimports++] = optarg;
			break;
		case 's':
			if (nnames < MAX_NAMES) {
				char *eq = strchr(optarg, '=');

				if (eq != NULL)
					*eq = '\0';
				names[nnames].sni = strcmp(optarg, "-") == 0 ? NULL : optarg;
				names[nnames++].check = eq != NULL ? eq + 1 : optarg;
			}
			break;
		case 'n':
			n = atol(optarg);
			break;
		case '2':
			tls12 = true;
			break;
		case 'c':
			per_cert = true;
			break;
		case 'T':
			ticket = true;
			break;
		default:
			fprintf(stderr, "usage: see bench/microbench.c\n");
			return 2;
		}
	}
	if (dir == NULL || passfile == NULL || nnames == 0 || n <= 0) {
		fprintf(stderr, "usage: tls-microbench --data-dir DIR --passphrase-file F "
		                "--sni NAME[=CHECK]... [-n N] [--tls12] [--ctx-per-cert]\n");
		return 2;
	}
	if ((t = open_table(dir, passfile, imports, nimports, &err)) == NULL ||
	    tls_tickets_init(&tk, master, &err) < 0 ||
	    (sctx = per_cert ? prepare(t, &err) : tls_ctx_new(&err)) == NULL) {
		fprintf(stderr, "tls-microbench: %s\n", err.msg);
		return 1;
	}
	/* What a TLS 1.3 ticket inside the handshake would cost the server. */
	if (ticket)
		SSL_CTX_set_num_tickets(sctx, 1);
	cctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_options(cctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_OFF);
	if (tls12)
		SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION);
	for (long i = 0; i < n; i++) {
		bool match;
		double d = one(sctx, cctx, t, &tk, &names[(size_t)i % nnames], &match);

		if (d < 0)
			failed++;
		else
			cpu += d;
		mismatched += d >= 0 && !match;
	}
	sps = sign_rate();
	printf("%s%s: %ld handshakes over %zu names, %zu certificates: server %.1f us CPU "
	       "each, %.0f handshakes per server-CPU-second; failed %ld, mismatched %ld\n",
	       per_cert ? "ctx-per-cert" : "certsync", tls12 ? " TLS 1.2" : " TLS 1.3", n, nnames,
	       t->nentries, cpu / (double)(n - failed) * 1e6, (double)(n - failed) / cpu, failed,
	       mismatched);
	printf("ECDSA P-256 sign/s here: %.0f; handshakes per server-CPU-second / sign/s = "
	       "%.3f\n",
	       sps, (double)(n - failed) / cpu / sps);
	for (size_t i = 0; per_cert && i < t->nentries; i++)
		SSL_CTX_free(prep.ctx[i]);
	free(prep.ctx);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	tls_tickets_clear(&tk);
	tls_table_free(t);
	return failed || mismatched ? 1 : 0;
}
