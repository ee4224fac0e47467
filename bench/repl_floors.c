/* repl_floors.c — the floors the replication benchmark (compare_etcd.py)
 * holds certsync against, measured on this machine in the same run, and the
 * certificates it writes:
 *
 *   repl-floors lmdb  --dir D [--count N] [--size B]  durable LMDB commits/s,
 *                     one B-byte record per write transaction, with the
 *                     environment settings store/env.c uses
 *   repl-floors curve [--count N] [--size B]  ZeroMQ CURVE DEALER/ROUTER round
 *                     trip of a B-byte message between two processes over
 *                     TCP on 127.0.0.1 (p50/p99)
 *   repl-floors gen   --out D [--count N] [--first K] [--sans S]  N certificate
 *                     + private key PEM files (EC P-256 leaves issued by one
 *                     RSA bench CA), made in-process because 10,000 openssl
 *                     runs would take longer than the benchmark
 *   repl-floors sizes --dir D  mean value sizes of a stopped agent's "certs"
 *                     table and "log", so the record size is measured, not
 *                     guessed
 *
 * Every command prints one JSON object on stdout. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <zmq.h>

/* As in store/env.c, so the floor is the store's own ceiling. */
#define MAPSIZE ((size_t)4 << 30)
#define MAXDBS  16

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static _Noreturn void die(const char *what, const char *detail)
{
	fprintf(stderr, "repl-floors: %s: %s\n", what, detail ? detail : "failed");
	exit(1);
}

static const char *opt(int argc, char **argv, const char *name, const char *def)
{
	for (int i = 2; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return def;
}

static long opt_long(int argc, char **argv, const char *name, long def)
{
	const char *v = opt(argc, argv, name, NULL);

	return v ? strtol(v, NULL, 10) : def;
}

/* ---- LMDB -------------------------------------------------------------------- */

static int cmd_lmdb(int argc, char **argv)
{
	const char *dir = opt(argc, argv, "--dir", NULL);
	long count = opt_long(argc, argv, "--count", 2000);
	long size = opt_long(argc, argv, "--size", 5120);
	unsigned char *val = malloc((size_t)size);
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	double t0, t;
	int rc;

	if (dir == NULL || val == NULL || count <= 0 || size <= 0)
		die("lmdb", "give --dir DIR (a fresh folder), --count N > 0, --size B > 0");
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		die("mkdir", strerror(errno));
	RAND_bytes(val, (int)size); /* incompressible, like a certificate */
	if ((rc = mdb_env_create(&env)) || (rc = mdb_env_set_mapsize(env, MAPSIZE)) ||
	    (rc = mdb_env_set_maxdbs(env, MAXDBS)) || (rc = mdb_env_open(env, dir, 0, 0600)))
		die("mdb_env_open", mdb_strerror(rc));
	if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) ||
	    (rc = mdb_dbi_open(txn, "bench", MDB_CREATE, &dbi)) || (rc = mdb_txn_commit(txn)))
		die("mdb_dbi_open", mdb_strerror(rc));
	t0 = now_s();
	for (long i = 0; i < count; i++) {
		uint64_t k = __builtin_bswap64((uint64_t)i); /* appended in key order */
		MDB_val key = {sizeof(k), &k}, v = {(size_t)size, val};

		val[0] = (unsigned char)i; /* every record differs */
		if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) ||
		    (rc = mdb_put(txn, dbi, &key, &v, 0)) || (rc = mdb_txn_commit(txn)))
			die("commit", mdb_strerror(rc));
	}
	t = now_s() - t0;
	mdb_env_close(env);
	free(val);
	printf("{\"commits\": %ld, \"size\": %ld, \"seconds\": %.6f, \"per_s\": %.1f}\n", count,
	       size, t, (double)count / t);
	return 0;
}

/* ---- CURVE round trip ---------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void curve_server(void *ctx, const char *secret, int ready_fd)
{
	void *router = zmq_socket(ctx, ZMQ_ROUTER);
	int one = 1, zero = 0;
	char endpoint[64];
	size_t len = sizeof(endpoint);

	zmq_setsockopt(router, ZMQ_CURVE_SERVER, &one, sizeof(one));
	zmq_setsockopt(router, ZMQ_CURVE_SECRETKEY, secret, 40);
	zmq_setsockopt(router, ZMQ_LINGER, &zero, sizeof(zero));
	if (zmq_bind(router, "tcp://127.0.0.1:*") != 0)
		die("zmq_bind", zmq_strerror(zmq_errno()));
	zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, endpoint, &len);
	if (write(ready_fd, endpoint, strlen(endpoint) + 1) < 0)
		die("write", strerror(errno));
	for (;;) { /* echo until the parent kills us */
		zmq_msg_t id, body;

		zmq_msg_init(&id);
		zmq_msg_init(&body);
		if (zmq_msg_recv(&id, router, 0) < 0 || zmq_msg_recv(&body, router, 0) < 0)
			break;
		zmq_msg_send(&id, router, ZMQ_SNDMORE);
		zmq_msg_send(&body, router, 0);
	}
	_exit(0);
}

static int cmd_curve(int argc, char **argv)
{
	long count = opt_long(argc, argv, "--count", 5000);
	long size = opt_long(argc, argv, "--size", 5120);
	char spub[41], ssec[41], cpub[41], csec[41], endpoint[64] = {0};
	char *msg = malloc((size_t)size), *back = malloc((size_t)size + 1);
	double *rt = calloc((size_t)count, sizeof(double));
	int fds[2], zero = 0, status;
	void *ctx, *dealer;
	pid_t pid;

	if (msg == NULL || back == NULL || rt == NULL || count <= 0 || size <= 0)
		die("curve", "give --count N > 0 and --size B > 0");
	RAND_bytes((unsigned char *)msg, (int)size);
	if (zmq_curve_keypair(spub, ssec) != 0 || zmq_curve_keypair(cpub, csec) != 0)
		die("zmq_curve_keypair", "libzmq has no CURVE");
	if (pipe(fds) < 0)
		die("pipe", strerror(errno));
	/* Two processes, as between two agents: nothing shared but the socket. */
	pid = fork();
	if (pid < 0)
		die("fork", strerror(errno));
	if (pid == 0) {
		close(fds[0]);
		curve_server(zmq_ctx_new(), ssec, fds[1]);
	}
	close(fds[1]);
	if (read(fds[0], endpoint, sizeof(endpoint) - 1) <= 0)
		die("server", "did not start");
	close(fds[0]);
	ctx = zmq_ctx_new();
	dealer = zmq_socket(ctx, ZMQ_DEALER);
	zmq_setsockopt(dealer, ZMQ_CURVE_SERVERKEY, spub, 40);
	zmq_setsockopt(dealer, ZMQ_CURVE_PUBLICKEY, cpub, 40);
	zmq_setsockopt(dealer, ZMQ_CURVE_SECRETKEY, csec, 40);
	zmq_setsockopt(dealer, ZMQ_LINGER, &zero, sizeof(zero));
	if (zmq_connect(dealer, endpoint) != 0)
		die("zmq_connect", zmq_strerror(zmq_errno()));
	for (long i = -200; i < count; i++) { /* 200 to warm up, not counted */
		double t0 = now_s();

		if (zmq_send(dealer, msg, (size_t)size, 0) != (int)size ||
		    zmq_recv(dealer, back, (size_t)size + 1, 0) != (int)size)
			die("round trip", zmq_strerror(zmq_errno()));
		if (i >= 0)
			rt[i] = now_s() - t0;
	}
	zmq_close(dealer);
	zmq_ctx_term(ctx);
	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	qsort(rt, (size_t)count, sizeof(double), cmp_double);
	printf("{\"round_trips\": %ld, \"size\": %ld, \"p50_us\": %.1f, \"p99_us\": %.1f, "
	       "\"max_us\": %.1f}\n",
	       count, size, rt[count / 2] * 1e6, rt[count * 99 / 100] * 1e6, rt[count - 1] * 1e6);
	free(msg);
	free(back);
	free(rt);
	return 0;
}

/* ---- certificates -------------------------------------------------------------- */

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;

	X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (ext == NULL || !X509_add_ext(cert, ext, -1))
		die("extension", value);
	X509_EXTENSION_free(ext);
}

static X509 *new_cert(EVP_PKEY *pub, const char *cn, X509 *issuer, long serial, int days)
{
	X509 *c = X509_new();
	X509_NAME *name = X509_NAME_new();

	X509_set_version(c, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(c), serial);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"certsync bench",
	                           -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(c, name);
	X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : name);
	X509_NAME_free(name);
	X509_gmtime_adj(X509_getm_notBefore(c), -3600);
	X509_gmtime_adj(X509_getm_notAfter(c), (long)days * 86400);
	X509_set_pubkey(c, pub);
	return c;
}

static int cmd_gen(int argc, char **argv)
{
	const char *out = opt(argc, argv, "--out", NULL);
	long count = opt_long(argc, argv, "--count", 10000);
	long first = opt_long(argc, argv, "--first", 1);
	long nsans = opt_long(argc, argv, "--sans", 8);
	char path[4096], buf[8192];
	EVP_PKEY *ca_key = NULL;
	X509 *ca = NULL;
	FILE *f;
	double t0 = now_s();
	long made = 0;

	if (out == NULL || count < 0 || nsans < 1 || nsans > 100)
		die("gen", "give --out DIR, --count N, --sans 1..100");
	if (mkdir(out, 0700) < 0 && errno != EEXIST)
		die("mkdir", strerror(errno));
	snprintf(path, sizeof(path), "%s/ca.pem", out);
	if ((f = fopen(path, "r")) != NULL) { /* one CA for every run in this folder */
		ca = PEM_read_X509(f, NULL, NULL, NULL);
		ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (ca == NULL || ca_key == NULL) {
		ca_key = EVP_RSA_gen(2048);
		ca = new_cert(ca_key, "certsync bench CA", NULL, 1, 3650);
		add_ext(ca, ca, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
		add_ext(ca, ca, NID_key_usage, "critical,keyCertSign,cRLSign");
		add_ext(ca, ca, NID_subject_key_identifier, "hash");
		if (!X509_sign(ca, ca_key, EVP_sha256()) || (f = fopen(path, "w")) == NULL)
			die("CA", path);
		PEM_write_X509(f, ca);
		PEM_write_PrivateKey(f, ca_key, NULL, NULL, 0, NULL, NULL);
		fclose(f);
	}
	for (long i = first; i < first + count; i++) {
		char host[64];
		EVP_PKEY *key;
		X509 *c;
		int n;

		snprintf(path, sizeof(path), "%s/l%06ld.pem", out, i);
		if (access(path, R_OK) == 0)
			continue; /* kept from an earlier run */
		snprintf(host, sizeof(host), "l%06ld.bench.test", i);
		key = EVP_EC_gen("P-256");
		c = new_cert(key, host, ca, 1000000 + i, 90);
		/* What a public CA's leaf carries: a few names of one service,
		 * OCSP and CRL locations. */
		n = snprintf(buf, sizeof(buf), "DNS:%s", host);
		for (long s = 1; s < nsans && n < (int)sizeof(buf) - 80; s++)
			n +=
			    snprintf(buf + n, sizeof(buf) - (size_t)n, ",DNS:alt%02ld-%s", s, host);
		add_ext(c, ca, NID_basic_constraints, "critical,CA:FALSE");
		add_ext(c, ca, NID_key_usage, "critical,digitalSignature");
		add_ext(c, ca, NID_ext_key_usage, "serverAuth,clientAuth");
		add_ext(c, ca, NID_subject_alt_name, buf);
		add_ext(c, ca, NID_subject_key_identifier, "hash");
		add_ext(c, ca, NID_authority_key_identifier, "keyid:always");
		add_ext(
		    c, ca, NID_info_access,
		    "OCSP;URI:http://ocsp.bench.test/,caIssuers;URI:http://ca.bench.test/ca.der");
		add_ext(c, ca, NID_crl_distribution_points, "URI:http://crl.bench.test/ca.crl");
		if (!X509_sign(c, ca_key, EVP_sha256()) || (f = fopen(path, "w")) == NULL)
			die("leaf", path);
		PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
		PEM_write_X509(f, c);
		fclose(f);
		X509_free(c);
		EVP_PKEY_free(key);
		made++;
	}
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	printf("{\"made\": %ld, \"seconds\": %.3f}\n", made, now_s() - t0);
	return 0;
}

/* ---- record sizes ------------------------------------------------------------------ */

static void table_size(MDB_txn *txn, const char *name, const char *sep)
{
	MDB_dbi dbi;
	MDB_cursor *cur;
	MDB_val k, v;
	uint64_t n = 0, bytes = 0;
	int rc;

	if (mdb_dbi_open(txn, name, 0, &dbi) == 0 && mdb_cursor_open(txn, dbi, &cur) == 0) {
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			n++;
			bytes += v.mv_size;
		}
		mdb_cursor_close(cur);
	}
	printf("\"%s\": {\"n\": %" PRIu64 ", \"mean_bytes\": %.0f}%s", name, n,
	       n ? (double)bytes / (double)n : 0.0, sep);
}

static int cmd_sizes(int argc, char **argv)
{
	const char *dir = opt(argc, argv, "--dir", NULL);
	MDB_env *env;
	MDB_txn *txn;
	int rc;

	if (dir == NULL)
		die("sizes", "give --dir DIR (a stopped agent's data_dir)");
	if ((rc = mdb_env_create(&env)) || (rc = mdb_env_set_maxdbs(env, MAXDBS)) ||
	    (rc = mdb_env_set_mapsize(env, MAPSIZE)) ||
	    (rc = mdb_env_open(env, dir, MDB_RDONLY, 0600)) ||
	    (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)))
		die("mdb_env_open", mdb_strerror(rc));
	printf("{");
	table_size(txn, "certs", ", ");
	table_size(txn, "log", "}\n");
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "lmdb") == 0)
		return cmd_lmdb(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "curve") == 0)
		return cmd_curve(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "gen") == 0)
		return cmd_gen(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "sizes") == 0)
		return cmd_sizes(argc, argv);
	fprintf(stderr, "usage: repl-floors lmdb --dir D [--count N] [--size B]\n"
	                "       repl-floors curve [--count N] [--size B]\n"
	                "       repl-floors gen --out D [--count N] [--first K] [--sans S]\n"
	                "       repl-floors sizes --dir D\n");
	return 2;
}
