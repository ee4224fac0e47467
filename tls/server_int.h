/* server_int.h — the parts of the TLS endpoint's server that its files
 * share: server.c (listeners, workers, start and stop, status), conn.c
 * (accepting, admitting and driving connections) and reload.c (the served
 * table and the reloader).  Nothing outside tls/ includes it. */
#ifndef CS_TLS_SERVER_INT_H
#define CS_TLS_SERVER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "tls_int.h"

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
	int hs_ms; /* the handshake timeout hs_tv and silent_tv stand for */
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
	_Atomic int hs_timeout_ms; /* SIGHUP may change it: each worker follows at its accept */
	int max_conns, max_per_source, nworkers;
	struct tls_worker *workers;
	tls_sources *sources; /* NULL: no cap per source */
	tls_acme *acme;       /* tls-alpn-01 challenge certificates (acme.c) */
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

static inline void add_relaxed(atomic_uint_fast64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* ---- conn.c ---- */

/* A listener's read event: accepts a batch of connections for worker arg. */
void tls_conn_accept(evutil_socket_t lfd, short what, void *arg);
/* server.c: the handshake and silence timeouts for ms as common timeouts of
 * w's loop, made on w's thread (or before it runs): its loop has no locks. */
int tls_worker_timeouts(struct tls_worker *w, int ms);
/* The pause after running out of descriptors is over: accept again. */
void tls_conn_resume(evutil_socket_t fd, short what, void *arg);
/* Closes c (polite: with close_notify) and keeps its struct for reuse. */
void tls_conn_close(struct tls_conn *c, bool polite);

#endif
