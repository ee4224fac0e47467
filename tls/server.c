/* server.c — listeners, worker threads and connections of the TLS endpoint.
 *
 * Each worker owns an event loop, an SSL_CTX, its own SO_REUSEPORT socket on
 * every listen address (the kernel spreads connections over them) and its
 * connections; workers share nothing but the served table (a pointer behind a
 * mutex, taken once per handshake) and a few atomic counters.
 *
 * One more thread, the reloader, builds tables from the store after
 * tls_server_changed: a build unseals and parses what changed and indexes
 * every name, so it must not run on the thread that committed (the commit's
 * answer would wait for it), and changes that arrive while one runs are
 * folded into the next one.  After a build of d, the next starts no sooner
 * than RELOAD_REST * d later (at most RELOAD_REST_MAX): under a stream of
 * changes the reloader takes a bounded share of a core (the agent's commits
 * and the replication thread need the rest), while a change on a quiet node
 * is built at once, and one after a long build (thousands of certificates
 * arrived at once) waits no more than RELOAD_REST_MAX.
 *
 * Slow or silent clients: a connection that has sent nothing is closed
 * after TLS_SILENT_TIMEOUT_MS, one that has not finished its handshake after
 * the handshake timeout; one source address holds at most max_per_source
 * connections (sources.c); and at the global cap a new connection closes
 * the oldest one of its worker still in its handshake instead of being
 * refused, so that idle sockets cannot lock real clients out.
 *
 * Sockets are driven directly with SSL_do_handshake/SSL_read/SSL_write on
 * the fd, with persistent read events: no bufferevents, no allocation per
 * handshake beyond OpenSSL's own (connection structs are recycled per
 * worker). */
#include "tls_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/err.h>

#include "../common/hostport.h"
#include "../common/log.h"

#define ACCEPT_BATCH    64   /* accepts per wake-up, so handshakes in flight progress */
#define SPARE_CONNS     256  /* connection structs a worker keeps for reuse */
#define HTTP_IN_MAX     8192 /* largest request head we read */
#define EMFILE_PAUSE_MS 100  /* out of descriptors: stop accepting this long */
#define MAX_WORKERS     256
#define RELOAD_REST     3   /* rest after a build, in builds: at most a quarter of a core */
#define RELOAD_REST_MAX 200 /* ms: a long build (a node that caught up) rests no longer */
#define RELOADER_NICE   10  /* the reloader yields the CPU to commits and replication */

enum conn_state { CONN_NEW, CONN_HANDSHAKE, CONN_HTTP };

struct tls_conn {
	tls_hs hs; /* the SSL's app data */
	struct tls_worker *w;
	struct tls_conn *prev, *next;   /* the worker's open connections, or spares */
	struct tls_conn *older, *newer; /* the worker's connections in their handshake */
	bool in_handshake;              /* on that list */
	uint8_t src[TLS_SRC_KEY_LEN];   /* its source address, counted in srv->sources */
	int fd;
	enum conn_state state;
	SSL *ssl;
	struct event rev, wev, timer;
	char *in, *out; /* request bytes read; response not yet written */
	size_t inlen, outlen;
	bool keep, ticketed;
};

struct tls_listener {
	int fd;
	struct event ev;
};

struct tls_worker {
	tls_server *srv;
	pthread_t thread;
	bool running;
	struct event_base *base;
	SSL_CTX *ctx;
	struct tls_tickets tickets;
	struct tls_listener *ls; /* one per listen address */
	int wake_fd;
	struct event wake_ev, resume_ev;
	const struct timeval *hs_tv, *ka_tv, *silent_tv; /* libevent common timeouts */
	struct tls_conn *open, *spare;
	struct tls_conn *oldest_hs, *newest_hs; /* connections in their handshake, by age */
	size_t nspare;
	atomic_uint_fast64_t done, failed, accepted, refused, timed_out, evicted, per_source;
};

struct tls_server {
	char *node_name, *role, *node_hostname, *site_hostname;
	bool (*unhealthy)(void *ctx);
	void *unhealthy_ctx;
	char **addrs; /* bound listen addresses, port resolved */
	size_t naddrs;
	int hs_timeout_ms, max_conns, max_per_source, nworkers;
	struct tls_worker *workers;
	tls_sources *sources; /* NULL: no cap per source */
	tls_acme *acme;       /* tls-alpn-01 challenge certificates */
	atomic_int open;
	pthread_mutex_t lock; /* guards table, the reload figures and the reloader's state */
	tls_table *table;
	uint64_t reloads;
	double last_reload_ms; /* signal of a change to its swap: its wait until it is served */
	/* The reloader, once tls_server_follow started it. */
	cs_store *store;
	const cs_key *key;
	pthread_t reloader;
	bool reloading, dirty, stopping;
	struct timespec dirty_since; /* the first change not in a table yet */
	pthread_cond_t wake;         /* dirty or stopping became true */
};

static void add_relaxed(atomic_uint_fast64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* ---- connections -------------------------------------------------------------- */

static void handshake_done(struct tls_conn *c)
{
	struct tls_worker *w = c->w;

	if (!c->in_handshake)
		return;
	c->in_handshake = false;
	if (c->older != NULL)
		c->older->newer = c->newer;
	else
		w->oldest_hs = c->newer;
	if (c->newer != NULL)
		c->newer->older = c->older;
	else
		w->newest_hs = c->older;
}

static void conn_close(struct tls_conn *c, bool polite)
{
	struct tls_worker *w = c->w;

	handshake_done(c);
	if (w->srv->sources != NULL)
		tls_sources_release(w->srv->sources, c->src);

	if (c->ssl != NULL) {
		/* close_notify only where the peer is still listening.
		 * Otherwise mark the SSL shut down anyway: sessions live in
		 * tickets only, and SSL_free would lock the context to drop
		 * an unfinished one from the cache we do not keep. */
		if (polite)
			SSL_shutdown(c->ssl);
		else
			SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
		SSL_free(c->ssl);
	}
	ERR_clear_error();
	event_del(&c->rev);
	event_del(&c->wev);
	event_del(&c->timer);
	close(c->fd);
	tls_table_free(c->hs.table);
	free(c->in);
	free(c->out);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		w->open = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	atomic_fetch_sub_explicit(&w->srv->open, 1, memory_order_relaxed);
	if (w->nspare < SPARE_CONNS) {
		c->next = w->spare;
		w->spare = c;
		w->nspare++;
	} else {
		free(c);
	}
}

/* After an SSL call that did not complete: wait for what it needs, or close
 * the connection (a handshake that ends so has failed). */
static void conn_wait(struct tls_conn *c, int r)
{
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		return; /* the read event is persistent */
	case SSL_ERROR_WANT_WRITE:
		/* Reading waits too: a level-triggered read event on unread
		 * bytes would spin until the socket drains. */
		if (event_del(&c->rev) == 0 && event_add(&c->wev, NULL) == 0)
			return;
		break;
	default:
		break;
	}
	if (c->state == CONN_HANDSHAKE)
		add_relaxed(&c->w->failed);
	conn_close(c, false);
}

static void http_drive(struct tls_conn *c)
{
	tls_server *srv = c->w->srv;
	tls_http_info info = {srv->node_name, srv->role, c->hs.sni, c->hs.cert_id, false};
	long used;
	int r;

	for (;;) {
		if (c->out != NULL) {
			/* A client that asks for something will likely come
			 * back: one TLS 1.3 ticket, ahead of the first answer. */
			if (!c->ticketed && SSL_version(c->ssl) == TLS1_3_VERSION)
				SSL_new_session_ticket(c->ssl);
			c->ticketed = true;
			if ((r = SSL_write(c->ssl, c->out, (int)c->outlen)) <= 0) {
				conn_wait(c, r);
				return;
			}
			free(c->out);
			c->out = NULL;
			if (!c->keep) {
				conn_close(c, true);
				return;
			}
			event_add(&c->timer, c->w->ka_tv);
		}
		if (c->inlen > 0) {
			info.healthy = tls_server_healthy(srv);
			used = tls_http_answer(c->in, c->inlen, HTTP_IN_MAX, &info, &c->out,
			                       &c->outlen, &c->keep);
			if (used < 0) {
				conn_close(c, false);
				return;
			}
			if (used > 0) {
				c->inlen -= (size_t)used;
				memmove(c->in, c->in + used, c->inlen);
				continue;
			}
		}
		if (c->in == NULL && (c->in = malloc(HTTP_IN_MAX)) == NULL) {
			conn_close(c, false);
			return;
		}
		if ((r = SSL_read(c->ssl, c->in + c->inlen, (int)(HTTP_IN_MAX - c->inlen))) <= 0) {
			conn_wait(c, r);
			return;
		}
		c->inlen += (size_t)r;
	}
}

/* The first bytes arrived: only now does the connection cost an SSL. */
static int conn_begin(struct tls_conn *c)
{
	struct tls_worker *w = c->w;

	if ((c->ssl = SSL_new(w->ctx)) == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		add_relaxed(&w->failed);
		conn_close(c, false);
		return -1;
	}
	SSL_set_accept_state(c->ssl);
	SSL_set_app_data(c->ssl, &c->hs);
	c->hs.table = tls_server_table(w->srv);
	c->state = CONN_HANDSHAKE;
	/* It spoke: from now on it has the whole handshake timeout. */
	if (event_add(&c->timer, w->hs_tv) < 0) {
		conn_close(c, false);
		return -1;
	}
	return 0;
}

static void conn_drive(struct tls_conn *c)
{
	int r;

	if (c->state == CONN_NEW && conn_begin(c) < 0)
		return;
	if (c->state == CONN_HANDSHAKE) {
		if ((r = SSL_do_handshake(c->ssl)) != 1) {
			conn_wait(c, r);
			return;
		}
		add_relaxed(&c->w->done);
		handshake_done(c);
		/* The certificate is the SSL's now; old tables need not wait
		 * for keep-alive connections. */
		tls_table_free(c->hs.table);
		c->hs.table = NULL;
		c->state = CONN_HTTP;
		event_add(&c->timer, c->w->ka_tv);
	}
	http_drive(c);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_drive(arg);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
	struct tls_conn *c = arg;

	(void)fd;
	(void)what;
	if (event_add(&c->rev, NULL) < 0) {
		conn_close(c, false);
		return;
	}
	conn_drive(c);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct tls_conn *c = arg;

	(void)fd;
	(void)what;
	add_relaxed(&c->w->timed_out);
	if (c->state == CONN_HANDSHAKE)
		add_relaxed(&c->w->failed);
	conn_close(c, false);
}

static void conn_start(struct tls_worker *w, int fd, const uint8_t src[TLS_SRC_KEY_LEN])
{
	struct tls_conn *c = w->spare;

	if (c != NULL) {
		w->spare = c->next;
		w->nspare--;
		memset(c, 0, sizeof(*c));
	} else if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		atomic_fetch_sub_explicit(&w->srv->open, 1, memory_order_relaxed);
		if (w->srv->sources != NULL)
			tls_sources_release(w->srv->sources, src);
		return;
	}
	c->w = w;
	c->fd = fd;
	memcpy(c->src, src, TLS_SRC_KEY_LEN);
	c->hs.tickets = &w->tickets;
	c->hs.acme = w->srv->acme;
	c->next = w->open;
	if (w->open != NULL)
		w->open->prev = c;
	w->open = c;
	c->in_handshake = true;
	c->older = w->newest_hs;
	if (w->newest_hs != NULL)
		w->newest_hs->newer = c;
	else
		w->oldest_hs = c;
	w->newest_hs = c;
	event_assign(&c->rev, w->base, fd, EV_READ | EV_PERSIST, on_io, c);
	event_assign(&c->wev, w->base, fd, EV_WRITE, on_writable, c);
	evtimer_assign(&c->timer, w->base, on_timeout, c);
	if (event_add(&c->rev, NULL) < 0 || event_add(&c->timer, w->silent_tv) < 0)
		conn_close(c, false);
}

/* Whether a new connection from src may open: within its source's cap, and
 * within the global cap, if need be by closing this worker's oldest
 * connection still in its handshake.  Counts it when it may. */
static bool admit(struct tls_worker *w, const uint8_t src[TLS_SRC_KEY_LEN])
{
	tls_server *srv = w->srv;

	if (srv->sources != NULL && !tls_sources_take(srv->sources, src)) {
		add_relaxed(&w->refused);
		add_relaxed(&w->per_source);
		return false;
	}
	/* Room is made before the new one counts, so open never shows more
	 * than the cap for longer than a worker's check. */
	if (atomic_load_explicit(&srv->open, memory_order_relaxed) >= srv->max_conns &&
	    w->oldest_hs != NULL) {
		add_relaxed(&w->evicted);
		if (w->oldest_hs->state == CONN_HANDSHAKE)
			add_relaxed(&w->failed);
		conn_close(w->oldest_hs, false);
	}
	if (atomic_fetch_add_explicit(&srv->open, 1, memory_order_relaxed) < srv->max_conns)
		return true;
	atomic_fetch_sub_explicit(&srv->open, 1, memory_order_relaxed);
	if (srv->sources != NULL)
		tls_sources_release(srv->sources, src);
	add_relaxed(&w->refused);
	return false;
}

/* ---- listeners -------------------------------------------------------------------- */

static void listeners_enable(struct tls_worker *w, bool on)
{
	for (size_t i = 0; i < w->srv->naddrs; i++) {
		if (on)
			event_add(&w->ls[i].ev, NULL);
		else
			event_del(&w->ls[i].ev);
	}
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	listeners_enable(arg, true);
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct tls_worker *w = arg;

	(void)what;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t sslen = sizeof(ss);
		uint8_t src[TLS_SRC_KEY_LEN];
		int fd = accept4(lfd, (struct sockaddr *)&ss, &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* The backlog stays readable: without a pause
				 * this loop would spin. */
				struct timeval tv = {0, EMFILE_PAUSE_MS * 1000};

				cs_warn("tls: cannot accept: %s; pausing %d ms", strerror(errno),
				        EMFILE_PAUSE_MS);
				listeners_enable(w, false);
				evtimer_add(&w->resume_ev, &tv);
			}
			return;
		}
		add_relaxed(&w->accepted);
		tls_source_key((struct sockaddr *)&ss, src);
		if (!admit(w, src)) {
			close(fd);
			continue;
		}
		conn_start(w, fd, src);
	}
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	uint64_t n;

	(void)what;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		cs_warn("tls: worker wake-up: %s", strerror(errno));
	event_base_loopbreak(arg);
}

/* Splits "1.2.3.4:443" or "[::1]:443" and resolves it, numerically only. */
static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *sslen, cs_err *err)
{
	struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
	                         .ai_socktype = SOCK_STREAM};
	struct addrinfo *res;
	char host[INET6_ADDRSTRLEN], port[8];
	unsigned pnum;

	if (!cs_hostport_split(s, host, sizeof(host), &pnum, true))
		goto bad;
	snprintf(port, sizeof(port), "%u", pnum);
	if (getaddrinfo(host, port, &hints, &res) != 0)
		goto bad;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*sslen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
bad:
	return cs_fail(err, CS_EUSAGE,
	               "tls_listen \"%s\": expected ADDRESS:PORT with a numeric address, "
	               "as 127.0.0.1:8443 or [::1]:8443",
	               s);
}

/* The service runs without capabilities (dist/certsync.service), so a port
 * below 1024 is refused there until the operator grants the one it needs. */
static const char *low_port_fix(const struct sockaddr_storage *ss)
{
	in_port_t port = ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port
	                                           : ((const struct sockaddr_in *)ss)->sin_port;

	if (ntohs(port) >= 1024)
		return "";
	return "; a port below 1024 needs CAP_NET_BIND_SERVICE: under systemd, add "
	       "CapabilityBoundingSet=CAP_NET_BIND_SERVICE and "
	       "AmbientCapabilities=CAP_NET_BIND_SERVICE in a drop-in (systemctl edit certsync), "
	       "or use a port from 1024";
}

static int bind_listener(const struct sockaddr_storage *ss, socklen_t len, const char *what,
                         cs_err *err)
{
	int one = 1;
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return cs_fail(err, CS_EIO, "tls_listen %s: socket: %s", what, strerror(errno));
	/* TCP_NODELAY is inherited by accepted sockets: a handshake flight is
	 * written at once and must not wait for an ACK. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    (ss->ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
	    bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, SOMAXCONN) < 0) {
		int e = errno;

		cs_fail(err, CS_EIO, "tls_listen %s: %s%s", what, strerror(e),
		        e == EACCES ? low_port_fix(ss) : "");
		close(fd);
		return -1;
	}
	return fd;
}

static char *addr_text(const struct sockaddr_storage *ss)
{
	char host[INET6_ADDRSTRLEN], buf[INET6_ADDRSTRLEN + 16];
	const void *a;
	unsigned port;

	if (ss->ss_family == AF_INET6) {
		a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
		port = ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	} else {
		a = &((const struct sockaddr_in *)ss)->sin_addr;
		port = ntohs(((const struct sockaddr_in *)ss)->sin_port);
	}
	inet_ntop(ss->ss_family, a, host, sizeof(host));
	snprintf(buf, sizeof(buf), ss->ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, port);
	return strdup(buf);
}

/* Binds address i on every worker.  Port 0 is resolved by the first bind so
 * every worker shares the same port. */
static int bind_address(tls_server *srv, size_t i, const char *spec, cs_err *err)
{
	struct sockaddr_storage ss;
	socklen_t len;

	if (parse_addr(spec, &ss, &len, err) < 0)
		return -1;
	for (int k = 0; k < srv->nworkers; k++) {
		int fd = bind_listener(&ss, len, spec, err);

		if (fd < 0)
			return -1;
		srv->workers[k].ls[i].fd = fd;
		event_assign(&srv->workers[k].ls[i].ev, srv->workers[k].base, fd,
		             EV_READ | EV_PERSIST, on_accept, &srv->workers[k]);
		if (k == 0 && getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
			return cs_fail(err, CS_EIO, "tls_listen %s: %s", spec, strerror(errno));
	}
	if ((srv->addrs[i] = addr_text(&ss)) == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	return 0;
}

/* ---- workers ---------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
	struct tls_worker *w = arg;

	event_base_dispatch(w->base);
	return NULL;
}

static int worker_init(struct tls_worker *w, tls_server *srv, const uint8_t master[32], cs_err *err)
{
	struct timeval hs = {srv->hs_timeout_ms / 1000, srv->hs_timeout_ms % 1000 * 1000};
	struct timeval ka = {TLS_KEEPALIVE_TIMEOUT_MS / 1000,
	                     TLS_KEEPALIVE_TIMEOUT_MS % 1000 * 1000};
	int silent_ms =
	    srv->hs_timeout_ms < TLS_SILENT_TIMEOUT_MS ? srv->hs_timeout_ms : TLS_SILENT_TIMEOUT_MS;
	struct timeval silent = {silent_ms / 1000, silent_ms % 1000 * 1000};

	w->srv = srv;
	w->wake_fd = -1;
	for (size_t i = 0; i < srv->naddrs; i++)
		w->ls[i].fd = -1;
	if (tls_tickets_init(&w->tickets, master, err) < 0 || (w->ctx = tls_ctx_new(err)) == NULL)
		return -1;
	if ((w->base = event_base_new()) == NULL ||
	    (w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
		return cs_fail(err, CS_EIO, "cannot create a TLS worker's event loop");
	event_assign(&w->wake_ev, w->base, w->wake_fd, EV_READ | EV_PERSIST, on_wake, w->base);
	evtimer_assign(&w->resume_ev, w->base, on_resume, w);
	/* Common timeouts: O(1) queues instead of a heap of 5,000 timers. */
	w->hs_tv = event_base_init_common_timeout(w->base, &hs);
	w->ka_tv = event_base_init_common_timeout(w->base, &ka);
	w->silent_tv = event_base_init_common_timeout(w->base, &silent);
	if (w->hs_tv == NULL || w->ka_tv == NULL || w->silent_tv == NULL ||
	    event_add(&w->wake_ev, NULL) < 0)
		return cs_fail(err, CS_EIO, "cannot set up a TLS worker's events");
	return 0;
}

static void worker_free(struct tls_worker *w)
{
	while (w->open != NULL)
		conn_close(w->open, false);
	while (w->spare != NULL) {
		struct tls_conn *c = w->spare;

		w->spare = c->next;
		free(c);
	}
	for (size_t i = 0; w->ls != NULL && i < w->srv->naddrs; i++) {
		if (event_initialized(&w->ls[i].ev))
			event_del(&w->ls[i].ev);
		if (w->ls[i].fd >= 0)
			close(w->ls[i].fd);
	}
	free(w->ls);
	if (event_initialized(&w->wake_ev)) {
		event_del(&w->wake_ev);
		event_del(&w->resume_ev);
	}
	if (w->base != NULL)
		event_base_free(w->base);
	if (w->wake_fd >= 0)
		close(w->wake_fd);
	SSL_CTX_free(w->ctx);
	tls_tickets_clear(&w->tickets);
}

/* ---- the server ------------------------------------------------------------------------ */

static char *dup_or_empty(const char *s)
{
	return strdup(s != NULL ? s : "");
}

static int start_threads(tls_server *srv, cs_err *err)
{
	sigset_t all, old;
	int rc = 0;

	/* Workers take no signals: the agent's main thread handles them, and a
	 * write to a reset socket must not raise SIGPIPE anywhere. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (int k = 0; k < srv->nworkers && rc == 0; k++) {
		struct tls_worker *w = &srv->workers[k];

		for (size_t i = 0; i < srv->naddrs; i++) {
			if (event_add(&w->ls[i].ev, NULL) < 0)
				rc = cs_fail(err, CS_EIO, "cannot watch a TLS listener");
		}
		if (rc == 0 && (errno = pthread_create(&w->thread, NULL, worker_main, w)) != 0)
			rc = cs_fail(err, CS_EIO, "cannot start a TLS worker: %s", strerror(errno));
		w->running = rc == 0;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

int tls_server_start(tls_server **out, const tls_config *cfg, const uint8_t ticket_master[32],
                     cs_err *err)
{
	tls_server *srv = calloc(1, sizeof(*srv));
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	pthread_condattr_t monotonic;

	if (srv == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	pthread_mutex_init(&srv->lock, NULL);
	pthread_condattr_init(&monotonic);
	pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
	pthread_cond_init(&srv->wake, &monotonic);
	pthread_condattr_destroy(&monotonic);
	srv->nworkers = cfg->workers > 0 ? cfg->workers : cores > 0 ? (int)cores : 1;
	if (srv->nworkers > MAX_WORKERS)
		srv->nworkers = MAX_WORKERS;
	srv->hs_timeout_ms = cfg->handshake_timeout_ms > 0 ? cfg->handshake_timeout_ms
	                                                   : TLS_DEFAULT_HANDSHAKE_TIMEOUT_MS;
	srv->max_conns =
	    cfg->max_connections > 0 ? cfg->max_connections : TLS_DEFAULT_MAX_CONNECTIONS;
	srv->max_per_source = cfg->max_per_source;
	if (srv->max_per_source > 0 && srv->max_per_source < srv->max_conns &&
	    (srv->sources =
	         tls_sources_new((uint32_t)srv->max_per_source, (size_t)srv->max_conns)) == NULL) {
		cs_fail(err, CS_EIO, "out of memory");
		goto fail;
	}
	if ((srv->acme = tls_acme_new()) == NULL) {
		cs_fail(err, CS_EIO, "out of memory");
		goto fail;
	}
	srv->naddrs = cfg->nlisten;
	srv->node_name = dup_or_empty(cfg->node_name);
	srv->role = dup_or_empty(cfg->role);
	srv->unhealthy = cfg->unhealthy;
	srv->unhealthy_ctx = cfg->unhealthy_ctx;
	srv->node_hostname = dup_or_empty(cfg->node_hostname);
	srv->site_hostname = dup_or_empty(cfg->site_hostname);
	srv->addrs = calloc(cfg->nlisten ? cfg->nlisten : 1, sizeof(char *));
	srv->workers = calloc((size_t)srv->nworkers, sizeof(*srv->workers));
	if (srv->node_name == NULL || srv->role == NULL || srv->node_hostname == NULL ||
	    srv->site_hostname == NULL || srv->addrs == NULL || srv->workers == NULL) {
		cs_fail(err, CS_EIO, "out of memory");
		goto fail;
	}
	if (cfg->nlisten == 0) {
		cs_fail(err, CS_EUSAGE, "no tls_listen address");
		goto fail;
	}
	for (int k = 0; k < srv->nworkers; k++) {
		struct tls_worker *w = &srv->workers[k];

		if ((w->ls = calloc(cfg->nlisten, sizeof(*w->ls))) == NULL) {
			cs_fail(err, CS_EIO, "out of memory");
			goto fail;
		}
		if (worker_init(w, srv, ticket_master, err) < 0)
			goto fail;
	}
	for (size_t i = 0; i < cfg->nlisten; i++) {
		if (bind_address(srv, i, cfg->listen[i], err) < 0)
			goto fail;
	}
	if (start_threads(srv, err) < 0)
		goto fail;
	*out = srv;
	return 0;
fail:
	tls_server_stop(srv);
	return -1;
}

void tls_server_stop(tls_server *srv)
{
	const uint64_t one = 1;

	if (srv == NULL)
		return;
	if (srv->reloading) {
		pthread_mutex_lock(&srv->lock);
		srv->stopping = true;
		pthread_cond_signal(&srv->wake);
		pthread_mutex_unlock(&srv->lock);
		/* A rebuild under way finishes first: it holds a read
		 * transaction of the store the caller closes next. */
		pthread_join(srv->reloader, NULL);
	}
	for (int k = 0; srv->workers != NULL && k < srv->nworkers; k++) {
		if (srv->workers[k].running &&
		    write(srv->workers[k].wake_fd, &one, sizeof(one)) != sizeof(one))
			cs_warn("tls: cannot wake worker %d: %s", k, strerror(errno));
	}
	for (int k = 0; srv->workers != NULL && k < srv->nworkers; k++) {
		if (srv->workers[k].running)
			pthread_join(srv->workers[k].thread, NULL);
		if (srv->workers[k].srv != NULL)
			worker_free(&srv->workers[k]);
		else
			free(srv->workers[k].ls);
	}
	for (size_t i = 0; srv->addrs != NULL && i < srv->naddrs; i++)
		free(srv->addrs[i]);
	free(srv->addrs);
	free(srv->workers);
	tls_table_free(srv->table);
	tls_sources_free(srv->sources);
	tls_acme_free(srv->acme);
	pthread_cond_destroy(&srv->wake);
	pthread_mutex_destroy(&srv->lock);
	free(srv->node_name);
	free(srv->role);
	free(srv->node_hostname);
	free(srv->site_hostname);
	free(srv);
}

tls_acme *tls_server_acme(tls_server *srv)
{
	return srv->acme;
}

/* ---- tables ------------------------------------------------------------------------------ */

tls_table *tls_server_table(tls_server *srv)
{
	tls_table *t;

	pthread_mutex_lock(&srv->lock);
	t = srv->table != NULL ? tls_table_ref(srv->table) : NULL;
	pthread_mutex_unlock(&srv->lock);
	return t;
}

static void log_coverage(const tls_table *t, time_t now)
{
	const tls_entry *served = tls_table_select(t, NULL, TLS_CAN_ANY, now);
	char missing[2 * (TLS_NAME_MAX + 2)] = "";

	for (size_t i = 0; i < t->nuncovered; i++) {
		strcat(missing, i > 0 ? ", " : "");
		strcat(missing, t->uncovered[i]);
	}
	if (t->nuncovered == 0)
		cs_info("tls: serving %zu certificate%s, default %.8s", t->nentries,
		        t->nentries == 1 ? "" : "s", served != NULL ? served->id_hex : "(none)");
	else if (t->covered)
		cs_warn("tls: the default certificate does not cover %s; serving %.8s instead",
		        missing, served->id_hex);
	else
		cs_warn("tls: no certificate covers %s; clients without SNI or with an "
		        "unknown name are refused, /healthz answers 503",
		        missing);
}

/* The reload figures change with the table, under one lock, so whoever sees
 * the new table served sees its figures too. */
static void swap_in(tls_server *srv, tls_table *table, const struct timespec *since)
{
	tls_table *old;

	pthread_mutex_lock(&srv->lock);
	old = srv->table;
	srv->table = table;
	if (since != NULL) {
		struct timespec t1;

		clock_gettime(CLOCK_MONOTONIC, &t1);
		srv->reloads++;
		srv->last_reload_ms = (double)(t1.tv_sec - since->tv_sec) * 1e3 +
		                      (double)(t1.tv_nsec - since->tv_nsec) / 1e6;
	}
	pthread_mutex_unlock(&srv->lock);
	log_coverage(table, time(NULL));
	tls_table_free(old);
}

void tls_server_swap(tls_server *srv, tls_table *table)
{
	swap_in(srv, table, NULL);
}

/* Builds from txn with the served table as prev and swaps; the reload
 * figure is the time from since to the swap, measured here, where it
 * happens, so a test or an operator can see how long a change waits to be
 * served without timing it from outside. */
static int reload(tls_server *srv, cs_txn *txn, const cs_key *key, time_t now,
                  const struct timespec *since, cs_err *err)
{
	tls_table *prev, *t;
	int rc;

	prev = tls_server_table(srv);
	rc = tls_table_load(&t, txn, key, srv->node_hostname, srv->site_hostname, prev, now, err);
	tls_table_free(prev);
	if (rc != 0)
		return rc;
	swap_in(srv, t, since);
	return 0;
}

int tls_server_reload(tls_server *srv, cs_txn *txn, const cs_key *key, time_t now, cs_err *err)
{
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	return reload(srv, txn, key, now, &t0, err);
}

static void reload_from_store(tls_server *srv, const cs_key *key, const struct timespec *since)
{
	cs_err err = {0};
	cs_txn *txn;

	if (cs_txn_begin(srv->store, false, &txn, &err) == 0) {
		if (tls_store_key_check(txn, key, &err) == 0)
			reload(srv, txn, key, time(NULL), since, &err);
		cs_txn_abort(txn);
	}
	if (err.code != CS_OK)
		cs_warn("tls: still serving the previous certificates: %s", err.msg);
}

/* t + ns nanoseconds */
static struct timespec ts_add(struct timespec t, int64_t ns)
{
	ns += t.tv_nsec;
	t.tv_sec += (time_t)(ns / 1000000000);
	t.tv_nsec = (long)(ns % 1000000000);
	return t;
}

static int64_t ts_diff_ns(const struct timespec *a, const struct timespec *b)
{
	return (int64_t)(a->tv_sec - b->tv_sec) * 1000000000 + (a->tv_nsec - b->tv_nsec);
}

static void *reloader_main(void *arg)
{
	tls_server *srv = arg;
	struct timespec since, t0, t1, rested;
	const cs_key *key;
	int64_t rest;

	/* On Linux a thread's nice value is its own: only this thread yields,
	 * so a build never delays the commit or the push of the next change.
	 * Failing to lower it changes nothing but timing. */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), RELOADER_NICE) != 0)
		cs_debug("tls: the reloader keeps its priority: %s", strerror(errno));
	pthread_mutex_lock(&srv->lock);
	for (;;) {
		while (!srv->dirty && !srv->stopping)
			pthread_cond_wait(&srv->wake, &srv->lock);
		if (srv->stopping)
			break;
		/* Cleared before the build reads the store: a change
		 * committed from now on sets it again and gets a build of
		 * its own, one for however many arrive meanwhile. */
		srv->dirty = false;
		since = srv->dirty_since;
		key = srv->key;
		pthread_mutex_unlock(&srv->lock);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		reload_from_store(srv, key, &since);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		rest = RELOAD_REST * ts_diff_ns(&t1, &t0);
		rested = ts_add(
		    t1, rest < RELOAD_REST_MAX * 1000000LL ? rest : RELOAD_REST_MAX * 1000000LL);
		pthread_mutex_lock(&srv->lock);
		while (!srv->stopping &&
		       pthread_cond_timedwait(&srv->wake, &srv->lock, &rested) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&srv->lock);
	return NULL;
}

int tls_server_follow(tls_server *srv, cs_store *store, const cs_key *key, cs_err *err)
{
	struct timespec now;
	sigset_t all, old;

	srv->store = store;
	srv->key = key;
	clock_gettime(CLOCK_MONOTONIC, &now);
	reload_from_store(srv, key, &now);
	/* Like the workers, the reloader takes no signals. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	errno = pthread_create(&srv->reloader, NULL, reloader_main, srv);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (errno != 0)
		return cs_fail(err, CS_EIO, "cannot start the TLS reloader: %s", strerror(errno));
	srv->reloading = true;
	return 0;
}

void tls_server_set_key(tls_server *srv, const cs_key *key)
{
	pthread_mutex_lock(&srv->lock);
	srv->key = key;
	pthread_mutex_unlock(&srv->lock);
	tls_server_changed(srv);
}

void tls_server_changed(tls_server *srv)
{
	pthread_mutex_lock(&srv->lock);
	if (!srv->dirty)
		clock_gettime(CLOCK_MONOTONIC, &srv->dirty_since);
	srv->dirty = true;
	pthread_cond_signal(&srv->wake);
	pthread_mutex_unlock(&srv->lock);
}

bool tls_server_healthy(tls_server *srv)
{
	tls_table *t = tls_server_table(srv);
	bool ok = t != NULL && tls_table_healthy(t, time(NULL)) &&
	          (srv->unhealthy == NULL || !srv->unhealthy(srv->unhealthy_ctx));

	tls_table_free(t);
	return ok;
}

json_t *tls_server_status(tls_server *srv)
{
	uint64_t done = 0, failed = 0, accepted = 0, refused = 0, timed_out = 0, evicted = 0,
	         per_source = 0;
	json_t *addrs = json_array();
	tls_table *t = tls_server_table(srv);
	time_t now = time(NULL);
	json_t *st;
	uint64_t reloads;
	double last_ms;

	for (int k = 0; k < srv->nworkers; k++) {
		struct tls_worker *w = &srv->workers[k];

		done += atomic_load_explicit(&w->done, memory_order_relaxed);
		failed += atomic_load_explicit(&w->failed, memory_order_relaxed);
		accepted += atomic_load_explicit(&w->accepted, memory_order_relaxed);
		refused += atomic_load_explicit(&w->refused, memory_order_relaxed);
		timed_out += atomic_load_explicit(&w->timed_out, memory_order_relaxed);
		evicted += atomic_load_explicit(&w->evicted, memory_order_relaxed);
		per_source += atomic_load_explicit(&w->per_source, memory_order_relaxed);
	}
	for (size_t i = 0; i < srv->naddrs; i++)
		json_array_append_new(addrs, json_string(srv->addrs[i]));
	pthread_mutex_lock(&srv->lock);
	reloads = srv->reloads;
	last_ms = srv->last_reload_ms;
	pthread_mutex_unlock(&srv->lock);
	st = json_pack("{s:o, s:i, s:{s:I, s:I}, s:{s:i, s:I, s:I, s:I, s:i, s:I, s:I, s:i}, s:b, "
	               "s:o, s:{s:I, s:f}}",
	               "listeners", addrs, "workers", srv->nworkers, "handshakes", "done",
	               (json_int_t)done, "failed", (json_int_t)failed, "connections", "open",
	               atomic_load(&srv->open), "accepted", (json_int_t)accepted, "refused",
	               (json_int_t)refused, "timed_out", (json_int_t)timed_out, "max",
	               srv->max_conns, "evicted", (json_int_t)evicted, "refused_per_source",
	               (json_int_t)per_source, "max_per_source",
	               srv->sources != NULL ? srv->max_per_source : srv->max_conns, "healthy",
	               t != NULL && tls_table_healthy(t, now), "table",
	               t != NULL ? tls_table_status(t, now) : json_null(), "reloads", "count",
	               (json_int_t)reloads, "last_ms", last_ms);
	tls_table_free(t);
	return st;
}
