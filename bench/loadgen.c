/* loadgen.c — tls-loadgen: a TLS handshake load client (OpenSSL, epoll).
 *
 *   tls-loadgen --connect HOST:PORT [--duration S] [--concurrency N]
 *       [--max N] [--sni NAME[=CHECK]]... [--names-file F] [--get]
 *       [--resume] [--tls12|--tls13] [--json]
 *
 * Keeps N connections in flight for a fixed time.  Each is a full new
 * handshake (no ticket, no session cache) unless --resume, optionally a GET /,
 * then a close with SO_LINGER {1,0} (RST: no TIME_WAIT pile-up on either
 * side).  The SNI of each connection comes round-robin from the list: "-" is
 * no SNI; CHECK (default: the name itself) is the host the served certificate
 * must cover by X509_check_host with X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, so
 * the run also proves certificate selection.  Prints handshakes/s, latency
 * p50/p99, failures and mismatches.  SIGINT or SIGTERM ends the run early:
 * no new connections, those in flight finish, the figures are printed. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define MAX_NAMES           100000
#define CONN_TIMEOUT_S      5.0
#define MAX_SAMPLES         (1u << 21)
#define MAX_REPORTED_ERRORS 5

struct name {
	char *sni;   /* NULL: no SNI */
	char *check; /* the host the certificate must cover */
	char *spec;  /* the allocation both point into */
	SSL_SESSION *session;
};

struct slot {
	int fd;
	SSL *ssl;
	size_t name;
	double start;
	bool busy, requested;
	char buf[2048];
	size_t got;
};

static struct {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct name *names;
	size_t nnames, next_name;
	bool get, resume;
	SSL_CTX *ctx;
	int ep;
	unsigned long done, failed, mismatched, resumed;
	double *lat;
	size_t nlat;
	int errors_shown;
} g;

static volatile sig_atomic_t stopping;

static void on_stop(int sig)
{
	(void)sig;
	stopping = 1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fail(struct slot *s, const char *why)
{
	g.failed++;
	if (g.errors_shown++ < MAX_REPORTED_ERRORS) {
		unsigned long e = ERR_peek_error();

		fprintf(stderr, "tls-loadgen: %s (sni %s): %s%s%s\n", why,
		        g.names[s->name].sni ? g.names[s->name].sni : "-",
		        errno ? strerror(errno) : "", e ? " " : "",
		        e ? ERR_reason_error_string(e) : "");
	}
}

static void slot_close(struct slot *s)
{
	struct linger lg = {1, 0};

	if (s->ssl != NULL) {
		/* An SSL freed without a shutdown marks its session not
		 * resumable; the RST is deliberate, the session is good. */
		SSL_set_shutdown(s->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
		SSL_free(s->ssl);
	}
	ERR_clear_error();
	setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(s->fd);
	s->ssl = NULL;
	s->busy = false;
}

static int slot_open(struct slot *s)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = s};
	struct name *n;

	memset(s, 0, sizeof(*s));
	s->name = g.next_name;
	g.next_name = (g.next_name + 1) % g.nnames;
	n = &g.names[s->name];
	s->start = now_s();
	s->fd = socket(g.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0)
		return -1;
	s->busy = true;
	/* The request follows the client's Finished at once: no Nagle wait. */
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
	if ((connect(s->fd, (struct sockaddr *)&g.addr, g.addrlen) < 0 && errno != EINPROGRESS) ||
	    (s->ssl = SSL_new(g.ctx)) == NULL || SSL_set_fd(s->ssl, s->fd) != 1 ||
	    (n->sni != NULL && SSL_set_tlsext_host_name(s->ssl, n->sni) != 1) ||
	    (n->session != NULL && SSL_set_session(s->ssl, n->session) != 1) ||
	    epoll_ctl(g.ep, EPOLL_CTL_ADD, s->fd, &ev) < 0) {
		fail(s, "connect");
		slot_close(s);
		return -1;
	}
	SSL_set_app_data(s->ssl, s);
	SSL_set_connect_state(s->ssl);
	return 0;
}

static void record(struct slot *s)
{
	X509 *cert = SSL_get0_peer_certificate(s->ssl);
	struct name *n = &g.names[s->name];

	g.done++;
	if (SSL_session_reused(s->ssl))
		g.resumed++;
	if (cert == NULL ||
	    X509_check_host(cert, n->check, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) != 1) {
		g.mismatched++;
		if (g.errors_shown++ < MAX_REPORTED_ERRORS)
			fprintf(stderr, "tls-loadgen: sni %s: the certificate does not cover %s\n",
			        n->sni ? n->sni : "-", n->check);
	}
	if (g.nlat < MAX_SAMPLES)
		g.lat[g.nlat++] = now_s() - s->start;
}

/* Waits for what OpenSSL needs next; closes the slot on a real error. */
static bool want(struct slot *s, int r, const char *what)
{
	struct epoll_event ev = {.data.ptr = s};

	switch (SSL_get_error(s->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		ev.events = EPOLLIN;
		break;
	case SSL_ERROR_WANT_WRITE:
		ev.events = EPOLLOUT;
		break;
	default:
		fail(s, what);
		slot_close(s);
		return false;
	}
	epoll_ctl(g.ep, EPOLL_CTL_MOD, s->fd, &ev);
	return true;
}

static void step(struct slot *s)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
	int r;

	errno = 0;
	if (!SSL_is_init_finished(s->ssl)) {
		if ((r = SSL_do_handshake(s->ssl)) != 1) {
			want(s, r, "handshake");
			return;
		}
		if (!g.get) {
			record(s);
			slot_close(s);
			return;
		}
	}
	if (!s->requested) {
		if ((r = SSL_write(s->ssl, req, sizeof(req) - 1)) <= 0) {
			want(s, r, "request");
			return;
		}
		s->requested = true;
	}
	/* Read to the server's close: the answer, and with TLS 1.3 the ticket. */
	for (;;) {
		r = SSL_read(s->ssl, s->buf + s->got, (int)(sizeof(s->buf) - 1 - s->got));
		if (r > 0) {
			s->got += (size_t)r;
			if (s->got < sizeof(s->buf) - 1)
				continue;
		}
		if (r <= 0 && SSL_get_error(s->ssl, r) == SSL_ERROR_WANT_READ) {
			want(s, r, "response");
			return;
		}
		break;
	}
	s->buf[s->got] = '\0';
	if (strncmp(s->buf, "HTTP/1.1 200", 12) != 0) {
		fail(s, "response");
	} else {
		record(s);
	}
	slot_close(s);
}

static int on_session(SSL *ssl, SSL_SESSION *sess)
{
	struct slot *s = SSL_get_app_data(ssl);
	struct name *n = &g.names[s->name];

	SSL_SESSION_free(n->session);
	n->session = sess;
	return 1; /* we keep the reference */
}

static int parse_connect(const char *spec)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
	char host[256];
	const char *colon = strrchr(spec, ':');
	size_t hl;

	if (colon == NULL)
		return -1;
	hl = (size_t)(colon - spec);
	if (spec[0] == '[') {
		spec++;
		hl -= 2;
	}
	if (hl >= sizeof(host))
		return -1;
	memcpy(host, spec, hl);
	host[hl] = '\0';
	if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
		return -1;
	memcpy(&g.addr, res->ai_addr, res->ai_addrlen);
	g.addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: tls-loadgen --connect HOST:PORT [--duration S] "
	                "[--concurrency N] [--max N] [--sni NAME[=CHECK]]... [--names-file F] "
	                "[--get] [--resume] [--tls12|--tls13] [--json]\n");
	exit(2);
}

static void add_name(const char *spec)
{
	char *dup = strdup(spec), *eq = strchr(dup, '=');
	struct name *n;

	if (g.nnames == MAX_NAMES)
		return;
	n = &g.names[g.nnames++];
	if (eq != NULL)
		*eq = '\0';
	n->spec = dup;
	n->sni = strcmp(dup, "-") == 0 ? NULL : dup;
	n->check = eq != NULL ? eq + 1 : dup;
	if (n->sni == NULL && eq == NULL)
		usage(); /* no SNI: say which host the default must cover */
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"connect", 1, 0, 'c'}, {"duration", 1, 0, 'd'}, {"concurrency", 1, 0, 'n'},
	    {"max", 1, 0, 'm'},     {"sni", 1, 0, 's'},      {"names-file", 1, 0, 'f'},
	    {"get", 0, 0, 'g'},     {"resume", 0, 0, 'r'},   {"tls12", 0, 0, '2'},
	    {"tls13", 0, 0, '3'},   {"json", 0, 0, 'j'},     {0, 0, 0, 0},
	};
	double duration = 10, t0, t1, elapsed;
	unsigned long max = 0;
	int conc = 32, version = 0, c;
	bool json = false, connected = false;
	struct slot *slots;
	struct epoll_event evs[256];
	char line[1024];

	g.names = calloc(MAX_NAMES, sizeof(*g.names));
	g.lat = malloc(MAX_SAMPLES * sizeof(double));
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			connected = parse_connect(optarg) == 0;
			break;
		case 'd':
			duration = atof(optarg);
			break;
		case 'n':
			conc = atoi(optarg);
			break;
		case 'm':
			max = strtoul(optarg, NULL, 10);
			break;
		case 's':
			add_name(optarg);
			break;
		case 'f': {
			FILE *f = fopen(optarg, "r");

			while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
				char *sp;

				line[strcspn(line, "\r\n")] = '\0';
				if ((sp = strchr(line, ' ')) != NULL)
					*sp = '=';
				if (line[0] != '\0' && line[0] != '#')
					add_name(line);
			}
			if (f != NULL)
				fclose(f);
			break;
		}
		case 'g':
			g.get = true;
			break;
		case 'r':
			g.resume = g.get = true;
			break;
		case '2':
			version = TLS1_2_VERSION;
			break;
		case '3':
			version = TLS1_3_VERSION;
			break;
		case 'j':
			json = true;
			break;
		default:
			usage();
		}
	}
	if (!connected || g.nnames == 0 || conc < 1 || duration <= 0 || g.names == NULL ||
	    g.lat == NULL)
		usage();
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_stop);
	signal(SIGTERM, on_stop);
	g.ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(g.ctx, version ? version : TLS1_2_VERSION);
	if (version)
		SSL_CTX_set_max_proto_version(g.ctx, version);
	SSL_CTX_set_verify(g.ctx, SSL_VERIFY_NONE, NULL); /* X509_check_host checks */
	if (g.resume) {
		SSL_CTX_set_session_cache_mode(g.ctx, SSL_SESS_CACHE_CLIENT |
		                                          SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(g.ctx, on_session);
	} else {
		SSL_CTX_set_session_cache_mode(g.ctx, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_options(g.ctx, SSL_OP_NO_TICKET);
	}
	g.ep = epoll_create1(EPOLL_CLOEXEC);
	slots = calloc((size_t)conc, sizeof(*slots));
	t0 = now_s();
	t1 = t0 + duration;
	for (int i = 0; i < conc; i++)
		slot_open(&slots[i]);
	for (;;) {
		double now = now_s();
		bool more = !stopping && now < t1 && (max == 0 || g.done + g.failed < max);
		int busy = 0;

		for (int i = 0; i < conc; i++) {
			struct slot *s = &slots[i];

			if (s->busy && now - s->start > CONN_TIMEOUT_S) {
				errno = ETIMEDOUT;
				fail(s, "timeout");
				slot_close(s);
			}
			if (!s->busy && more)
				slot_open(s);
			busy += s->busy;
		}
		if (busy == 0)
			break;
		int n = epoll_wait(g.ep, evs, 256, 100);

		for (int i = 0; i < n; i++) {
			struct slot *s = evs[i].data.ptr;

			if (s->busy)
				step(s);
		}
	}
	elapsed = now_s() - t0;
	qsort(g.lat, g.nlat, sizeof(double), cmp_double);
	{
		double p50 = g.nlat ? g.lat[g.nlat / 2] * 1e3 : 0;
		double p99 = g.nlat ? g.lat[g.nlat * 99 / 100] * 1e3 : 0;

		if (json)
			printf("{\"handshakes\": %lu, \"seconds\": %.3f, \"per_second\": %.1f, "
			       "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"failures\": %lu, "
			       "\"mismatches\": %lu, \"resumed\": %lu}\n",
			       g.done, elapsed, g.done / elapsed, p50, p99, g.failed, g.mismatched,
			       g.resumed);
		else
			printf("handshakes %lu in %.2f s: %.1f/s  p50 %.3f ms  p99 %.3f ms  "
			       "failures %lu  mismatches %lu  resumed %lu\n",
			       g.done, elapsed, g.done / elapsed, p50, p99, g.failed, g.mismatched,
			       g.resumed);
	}
	for (size_t i = 0; i < g.nnames; i++) {
		SSL_SESSION_free(g.names[i].session);
		free(g.names[i].spec);
	}
	free(g.names);
	free(g.lat);
	free(slots);
	SSL_CTX_free(g.ctx);
	close(g.ep);
	return g.failed || g.mismatched ? 1 : 0;
}
