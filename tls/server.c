/* server.c — listeners, worker threads, start and stop, and the status of
 * the TLS endpoint (connections: conn.c; the reloader: reload.c).
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
#include "server_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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

#include "../common/net.h"
#include "../common/log.h"

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	uint64_t n;

	(void)what;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		cs_warn("tls: worker wake-up: %s", strerror(errno));
	event_base_loopbreak(arg);
}

static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *sslen, cs_err *err)
{
	if (cs_net_addr(s, true, ss, sslen) == 0)
		return 0;
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
	int fd = cs_net_listen(ss, len);

	if (fd < 0)
		cs_fail(err, CS_EIO, "tls_listen %s: %s%s", what, strerror(errno),
		        errno == EACCES ? low_port_fix(ss) : "");
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
		             EV_READ | EV_PERSIST, tls_conn_accept, &srv->workers[k]);
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

	pthread_setname_np(pthread_self(), "cs-tls"); /* top -H, perf, gdb */
	event_base_dispatch(w->base);
	return NULL;
}

int tls_worker_timeouts(struct tls_worker *w, int ms)
{
	int silent_ms = ms < TLS_SILENT_TIMEOUT_MS ? ms : TLS_SILENT_TIMEOUT_MS;
	struct timeval hs = {ms / 1000, ms % 1000 * 1000};
	struct timeval silent = {silent_ms / 1000, silent_ms % 1000 * 1000};
	const struct timeval *h = event_base_init_common_timeout(w->base, &hs);
	const struct timeval *q = event_base_init_common_timeout(w->base, &silent);

	w->hs_ms = ms;
	if (h == NULL || q == NULL)
		return -1;
	w->hs_tv = h;
	w->silent_tv = q;
	return 0;
}

static int worker_init(struct tls_worker *w, tls_server *srv, const uint8_t master[32], cs_err *err)
{
	struct timeval ka = {TLS_KEEPALIVE_TIMEOUT_MS / 1000,
	                     TLS_KEEPALIVE_TIMEOUT_MS % 1000 * 1000};

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
	evtimer_assign(&w->resume_ev, w->base, tls_conn_resume, w);
	/* Common timeouts: O(1) queues instead of a heap of 5,000 timers. */
	w->ka_tv = event_base_init_common_timeout(w->base, &ka);
	if (tls_worker_timeouts(w, srv->hs_timeout_ms) < 0 || w->ka_tv == NULL ||
	    event_add(&w->wake_ev, NULL) < 0)
		return cs_fail(err, CS_EIO, "cannot set up a TLS worker's events");
	return 0;
}

static void worker_free(struct tls_worker *w)
{
	while (w->open != NULL)
		tls_conn_close(w->open, false);
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

bool tls_server_healthy(tls_server *srv)
{
	tls_table *t = tls_server_table(srv);
	bool ok = t != NULL && tls_table_healthy(t, time(NULL)) &&
	          (srv->unhealthy == NULL || !srv->unhealthy(srv->unhealthy_ctx));

	tls_table_free(t);
	return ok;
}

void tls_server_set_handshake_timeout(tls_server *srv, int ms)
{
	atomic_store(&srv->hs_timeout_ms, ms > 0 ? ms : TLS_DEFAULT_HANDSHAKE_TIMEOUT_MS);
}

int tls_server_set_max_per_source(tls_server *srv, int max)
{
	/* The table is made at start, and only when the cap is below the
	 * connection cap: without it the cap cannot change live. */
	if (srv->sources == NULL || max <= 0 || max >= srv->max_conns)
		return -1;
	tls_sources_set_max(srv->sources, (uint32_t)max);
	pthread_mutex_lock(&srv->lock);
	srv->max_per_source = max;
	pthread_mutex_unlock(&srv->lock);
	return 0;
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
	int max_per_source;

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
	max_per_source = srv->sources != NULL ? srv->max_per_source : srv->max_conns;
	pthread_mutex_unlock(&srv->lock);
	st = json_pack("{s:o, s:i, s:{s:I, s:I}, s:{s:i, s:I, s:I, s:I, s:i, s:I, s:I, s:i}, s:b, "
	               "s:o, s:{s:I, s:f}}",
	               "listeners", addrs, "workers", srv->nworkers, "handshakes", "done",
	               (json_int_t)done, "failed", (json_int_t)failed, "connections", "open",
	               atomic_load(&srv->open), "accepted", (json_int_t)accepted, "refused",
	               (json_int_t)refused, "timed_out", (json_int_t)timed_out, "max",
	               srv->max_conns, "evicted", (json_int_t)evicted, "refused_per_source",
	               (json_int_t)per_source, "max_per_source", max_per_source, "healthy",
	               t != NULL && tls_table_healthy(t, now), "table",
	               t != NULL ? tls_table_status(t, now) : json_null(), "reloads", "count",
	               (json_int_t)reloads, "last_ms", last_ms);
	tls_table_free(t);
	return st;
}
