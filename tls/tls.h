/* tls.h — the node's SNI TLS endpoint, the whole API of the tls/ module.
 *
 * A tls_server binds every listener (SO_REUSEPORT, one libevent loop per
 * worker thread) and serves TLS 1.2/1.3 with the certificate a selection
 * table picks in the ClientHello callback: exact SAN, then a one-label
 * wildcard (RFC 6125), then the default.  Tables are built from the store off
 * the handshake path (keys unsealed and parsed once, when a record first
 * appears) and swapped in atomically; a handshake keeps the table it started
 * with.
 *
 * Threads: the workers serve connections; the reloader (tls_server_follow)
 * builds tables.  tls_server_changed, _swap, _table, _status and _healthy may
 * be called from any thread; _start, _follow and _stop from the one thread
 * that owns the server.  Tables are immutable once built and reference
 * counted, so any thread may read one it holds a reference to.
 *
 * Session tickets are on, with keys derived from a secret every node of the
 * cluster shares, so any node resumes a ticket another node issued.
 *
 * Over TLS the server answers a minimal HTTP/1.1: GET / (JSON: node, role,
 * sni, certificate id), GET /healthz (200 while a certificate covering the
 * node and site hostnames is served, else 503), anything else 404. */
#ifndef CS_TLS_H
#define CS_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "../common/err.h"
#include "../seal/seal.h"
#include "../store/store.h"

typedef struct tls_config {
	const char *const *listen; /* "127.0.0.1:8443", "[::1]:8443"; port 0 picks one */
	size_t nlisten;
	int workers;                               /* 0: the number of online cores */
	int handshake_timeout_ms;                  /* 0: TLS_DEFAULT_HANDSHAKE_TIMEOUT_MS */
	int max_connections;                       /* 0: TLS_DEFAULT_MAX_CONNECTIONS */
	const char *node_name, *role;              /* reported by GET / */
	const char *node_hostname, *site_hostname; /* the coverage gate's hostnames */
	/* What the agent knows that makes the node unhealthy beyond its table
	 * (it refuses the cluster passphrase): /healthz answers 503 while it
	 * returns true.  Called from the workers; NULL: nothing. */
	bool (*unhealthy)(void *ctx);
	void *unhealthy_ctx;
	int max_per_source; /* connections of one address (IPv6: its /64); 0: no cap */
} tls_config;

#define TLS_DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
#define TLS_DEFAULT_MAX_CONNECTIONS      10000
#define TLS_DEFAULT_MAX_PER_SOURCE       256
/* A connection that has sent nothing is closed after this (or the
 * handshake timeout, if shorter): silent sockets cost the least to hold. */
#define TLS_SILENT_TIMEOUT_MS 2000
/* How long an established connection may stay idle between requests. */
#define TLS_KEEPALIVE_TIMEOUT_MS 30000

/* ---- selection tables ---------------------------------------------------- */

typedef struct tls_table tls_table;

/* Builds a selection table from the store as txn sees it: every identity
 * certificate of the certs table that holds a key (unsealed with key, the
 * record id as associated data), its chain from the cas table, and the
 * default of the settings table behind the coverage gate (the default is
 * served for no SNI and unknown names only when it covers node_hostname and
 * site_hostname; otherwise the best valid certificate that covers both is,
 * or none, and the table names the uncovered hostnames).  Only certificates
 * valid at the handshake's time are served.  Records whose key does not
 * open or parse are skipped with a warning in the log.
 *
 * prev (may be NULL) is a table built before: records unchanged since (same
 * id, same sealed key) reuse its parsed certificates and keys instead of
 * unsealing and parsing again.  When prev was built from this store and the
 * log still holds every entry since, only the records those entries touched
 * are read, so a change is served quickly however many certificates the
 * store holds; otherwise every record is.  *out holds one reference. */
int tls_table_load(tls_table **out, cs_txn *txn, const cs_key *key, const char *node_hostname,
                   const char *site_hostname, const tls_table *prev, time_t now, cs_err *err);

/* Drops one reference; the last one frees the table.  NULL is a no-op. */
void tls_table_free(tls_table *t);

/* The table's state for `status` (certificates, default, coverage). */
json_t *tls_table_status(const tls_table *t, time_t now);

/* The id (hex) of the certificate a client that offers ECDSA and sends sni
 * (NULL: none) gets from t at now, or NULL when the handshake would fail. */
const char *tls_table_served(const tls_table *t, const char *sni, time_t now);

/* ---- the client side, for `verify --cluster` ------------------------------- */

/* Connects to endpoint (HOST:PORT or [V6]:PORT), completes a TLS handshake
 * sending sni, and gives the id (SHA-256 hex of the DER) of the leaf
 * certificate served.  The chain is not checked: the caller compares ids.
 * Errors name the endpoint and what failed; every step is bounded by
 * timeout_ms. */
int tls_probe(const char *endpoint, const char *sni, int timeout_ms, char id_hex[65], cs_err *err);

/* ---- the server ---------------------------------------------------------- */

typedef struct tls_server tls_server;

/* Binds every listener and starts the workers.  Until the first table is
 * swapped in, every handshake fails cleanly (no certificate).  ticket_master
 * is the cluster's ticket secret (cs_key_subkey(key, 0, "tlsticks", out)):
 * ticket keys for each hour are derived from it, the current and the
 * neighbouring hours accepted.  Errors: CS_EUSAGE for a bad listen address,
 * CS_EIO when a socket cannot be bound (the message names the address). */
int tls_server_start(tls_server **out, const tls_config *cfg, const uint8_t ticket_master[32],
                     cs_err *err);

/* Serves table from now on; takes ownership of the caller's reference.
 * Handshakes in flight finish on the table they started with; the old table
 * is freed when its last handshake ends.  Logs the coverage state. */
void tls_server_swap(tls_server *srv, tls_table *table);

/* A new reference to the table being served (NULL before the first swap). */
tls_table *tls_server_table(tls_server *srv);

/* tls_table_load with the served table as prev, then tls_server_swap, on the
 * caller's thread.  On error the served table stays. */
int tls_server_reload(tls_server *srv, cs_txn *txn, const cs_key *key, time_t now, cs_err *err);

/* Serves tables built from store with key: builds the first one now, on the
 * caller's thread, then starts the reloader, a thread of the server that
 * rebuilds (its own read transaction, the served table as prev) after each
 * tls_server_changed.  store and key must outlive the server.  Call it once,
 * from the thread that owns srv. */
int tls_server_follow(tls_server *srv, cs_store *store, const cs_key *key, cs_err *err);

/* The cluster key changed (`cluster rekey`): builds from now on unseal
 * with key, and one starts.  A build meets the store and the key in step or
 * keeps the served table: the store is re-sealed and the key handed over
 * one after the other.  The old key must outlive the server (a build may
 * still hold it).  Any thread. */
void tls_server_set_key(tls_server *srv, const cs_key *key);

/* The store changed: returns at once, and the reloader builds and swaps in a
 * table that holds the change.  Changes signalled while a build runs are
 * served by one build after it.  Any thread; a no-op before
 * tls_server_follow. */
void tls_server_changed(tls_server *srv);

/* {"listeners": [...], "workers", "handshakes": {"done", "failed"},
 *  "connections": {"open", "accepted", "refused", "timed_out"},
 *  "healthy", "served": [{"hostname", "certificate"}] for the node and site
 *  hostnames, "table": tls_table_status or null, "reloads": {"count",
 *  "last_ms"} (builds swapped in; for the last one, from the first
 *  tls_server_changed it holds, or the start of a tls_server_reload, to its
 *  swap)}.  Caller owns the result. */
json_t *tls_server_status(tls_server *srv);

/* True while a certificate covering the node and site hostnames is served. */
bool tls_server_healthy(tls_server *srv);

/* The tls-alpn-01 challenge certificates (RFC 8737) the endpoint shows,
 * for a handshake that offers ALPN acme-tls/1 alone, for names[i]: the
 * whole set is replaced (each certificate and key gains a reference).  Any
 * thread. */
struct x509_st;
struct evp_pkey_st;
int tls_server_set_acme(tls_server *srv, const char *const *names, struct x509_st *const *certs,
                        struct evp_pkey_st *const *keys, size_t n, cs_err *err);

/* Stops the reloader (a build under way finishes first) and the workers,
 * closes every connection and listener and frees everything, the served
 * table included.  NULL is a no-op. */
void tls_server_stop(tls_server *srv);

#endif
