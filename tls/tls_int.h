/* tls_int.h — what the files of tls/ share with each other, with their unit
 * tests and with the in-memory benchmark.  Not the module's API: the agent
 * uses tls.h only. */
#ifndef CS_TLS_INT_H
#define CS_TLS_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>

#include "../pki/pki.h"
#include "tls.h"

#define TLS_ID_LEN   32  /* a certificate id: SHA-256 of the leaf's DER */
#define TLS_NAME_MAX 253 /* longest DNS name, without the trailing dot */

/* One servable certificate: its leaf parsed and its key unsealed once, then
 * shared by reference with every table built while its record does not
 * change.  Immutable once a table holds it. */
typedef struct tls_entry {
	atomic_uint refs;
	uint8_t id[TLS_ID_LEN];
	char id_hex[2 * TLS_ID_LEN + 1];
	uint8_t seal_hash[32]; /* SHA-256 of the sealed key it was built from */
	X509 *leaf;
	EVP_PKEY *key;
	STACK_OF(X509) * chain; /* issuers to send after the leaf; may be NULL */
	bool ec;                /* ECDSA key; else RSA */
	time_t not_before, not_after;
	pki_sans names;      /* the DNS names it answers for: lower case, "*.x" for wildcards */
	uint64_t covers_for; /* a hash of the hostnames covers was found for; 0 none */
	bool covers;         /* it covers both of those hostnames */
} tls_entry;

/* A new entry with one reference and nothing in it; NULL when out of memory. */
tls_entry *tls_entry_new(void);
/* Drops one reference; the last frees the entry.  NULL is a no-op. */
void tls_entry_free(tls_entry *e);

/* Candidates for one name, best first: latest expiry first.  One candidate,
 * the usual case, is held in place; more go to v. */
typedef struct tls_cands {
	uint32_t n, cap;
	const tls_entry *one;
	const tls_entry **v;
} tls_cands;

#define TLS_CAND(c, i) ((c)->n <= 1 ? (c)->one : (c)->v[i])

/* Open-addressing hash map from byte strings, which the entries own, to
 * candidate lists. */
typedef struct tls_map {
	struct tls_slot *slots;
	size_t cap, n; /* cap is a power of two, at least twice n */
} tls_map;

struct tls_slot {
	const void *key; /* owned by an entry of the table; NULL for an empty slot */
	size_t klen;
	uint64_t hash;
	tls_cands cands;
};

/* ---- the map and candidate lists (table.c), filled by the build ---- */

/* FNV-1a: the keys come from the operator's certificates, not from
 * clients, so a keyed hash buys nothing here. */
uint64_t tls_hash_bytes(const void *p, size_t n);
/* The candidates of key; NULL when it has none. */
const tls_cands *tls_map_get(const tls_map *m, const void *key, size_t klen);
/* Room for n keys without growing: a build sizes its maps once, for every
 * name it will index, so no insert pays for a rehash.  -1: out of memory. */
int tls_map_reserve(tls_map *m, size_t n);
/* The candidates of key, an empty list when it is new. */
tls_cands *tls_map_slot(tls_map *m, const void *key, size_t klen);
void tls_map_free(tls_map *m);
/* -1: out of memory. */
int tls_cands_push(tls_cands *c, const tls_entry *e);
/* Latest expiry first; the id breaks ties so every node orders alike. */
void tls_cands_sort(tls_cands *c);
/* The first candidate valid at now, or NULL. */
const tls_entry *tls_cands_first_valid(const tls_cands *c, time_t now);

/* Takes one more reference to e. */
tls_entry *tls_entry_ref(tls_entry *e);
/* Frees t and drops its references to the entries (the last reference). */
void tls_table_destroy(tls_table *t);

/* ---- building (table_build.c) ---- */

/* A hash of the two hostnames coverage is found for; never 0, which marks
 * an entry whose coverage was not found. */
uint64_t tls_hosts_key(const char *node_hostname, const char *site_hostname);
/* The hostname as tables keep it, in TLS_NAME_MAX + 1 bytes: normalized, or
 * as given when it is not a DNS name (an IP literal is a legitimate
 * hostname to cover); "" for none.  -1 when it does not fit. */
int tls_copy_host(char *dst, const char *host);

struct tls_table {
	atomic_uint refs;
	tls_entry **entries; /* one reference each */
	size_t nentries;
	tls_map exact; /* name → candidates */
	tls_map wild;  /* parent of a "*.parent" SAN → candidates */
	tls_map byid;  /* id → the entry (one candidate), for reuse by the next build */
	tls_cands dflt;
	const tls_entry *configured; /* the store's default, when it holds a key */
	bool has_configured;         /* the store names a default at all */
	uint8_t configured_id[TLS_ID_LEN];
	bool covered; /* at the build, a valid default covered both hostnames */
	char node_hostname[TLS_NAME_MAX + 1], site_hostname[TLS_NAME_MAX + 1];
	uint64_t hosts_key;       /* their hash, as in tls_entry.covers_for */
	const char *uncovered[2]; /* hostnames the configured default misses */
	size_t nuncovered;
	uint8_t cas_hash[32];           /* which CA pool the chains were built from */
	uint8_t (*skipped)[TLS_ID_LEN]; /* records left out: key did not open or parse */
	size_t nskipped;
	bool from_store; /* tls_table_load built it, at pos */
	cs_pos pos;
	time_t built;
};

/* Lower-cases name, drops one trailing dot and checks it is a plausible DNS
 * name (1..253 characters of letters, digits, '-', '_' and '.', labels of
 * 1..63).  Returns the length written to out (TLS_NAME_MAX + 1 bytes), 0 for
 * anything else: absurd names are served the default. */
size_t tls_name_normalize(const char *name, size_t len, char *out);

/* The key types a client can take (from its ClientHello). */
#define TLS_CAN_EC  1u
#define TLS_CAN_RSA 2u
#define TLS_CAN_ANY (TLS_CAN_EC | TLS_CAN_RSA)

/* The certificate for a normalized name (NULL: no SNI) at time now, for a
 * client that can take the key types of can: the default when the name is
 * none, unknown or one the default covers; else exact, then wildcard, then
 * the default's stand-ins, each the latest-expiring valid one.  A key type
 * the client cannot take comes only when nothing else answers.  NULL when
 * no valid certificate answers the name: the handshake fails then. */
const tls_entry *tls_table_select(const tls_table *t, const char *name, unsigned can, time_t now);

/* Takes one more reference. */
tls_table *tls_table_ref(tls_table *t);

/* Builds a table from entries the caller filled (tests and tls_table_load):
 * takes the array (malloc'd) and the one reference of each entry in it. */
int tls_table_build(tls_table **out, tls_entry **entries, size_t n, const uint8_t *default_id,
                    const char *node_hostname, const char *site_hostname, time_t now, cs_err *err);

/* Per-handshake state the OpenSSL callbacks reach with SSL_get_app_data. */
typedef struct tls_acme tls_acme;

typedef struct tls_hs {
	tls_table *table; /* set before the handshake; NULL: nothing to serve */
	struct tls_tickets *tickets;
	tls_acme *acme; /* the tls-alpn-01 challenge certificates (acme.c) */
	bool acme_tls;  /* this handshake answers one: ALPN acme-tls/1 */
	char cert_id[2 * TLS_ID_LEN + 1];
	char sni[TLS_NAME_MAX + 1]; /* normalized; "" for none or absurd */
} tls_hs;

/* ---- tls-alpn-01 (acme.c) ---- */
tls_acme *tls_acme_new(void);
void tls_acme_free(tls_acme *a);
tls_acme *tls_server_acme(tls_server *srv);
/* True when the ClientHello offers ALPN acme-tls/1 and nothing else. */
bool tls_acme_only(SSL *s);
/* Installs the challenge certificate for name; false when there is none. */
bool tls_acme_use(tls_acme *a, SSL *s, const char *name);
/* The ALPN answer of such a handshake: acme-tls/1. */
int tls_acme_select(const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                    unsigned int inlen);

/* What an HTTP answer tells about its connection. */
typedef struct tls_http_info {
	const char *node, *role, *sni, *cert_id; /* sni, cert_id: "" when none */
	bool healthy;
} tls_http_info;

/* Answers the request at the start of in[0..len), buffered in cap bytes:
 * 0 when it is not whole yet; else the bytes it used, with the response in
 * *out (malloc'd) and *keep false when the connection must close after it
 * (a full buffer without a whole request gets 431).  -1: out of memory. */
long tls_http_answer(const char *in, size_t len, size_t cap, const tls_http_info *info, char **out,
                     size_t *outlen, bool *keep);

/* True when the table serves, by default, a valid certificate that covers
 * the node and site hostnames, and the default has not expired (/healthz). */
bool tls_table_healthy(const tls_table *t, time_t now);

/* store_key.c: 0 when key is the one the store is sealed under (or the
 * store has no cluster settings), -1 (CS_ECRYPTO) when not. */
int tls_store_key_check(cs_txn *txn, const cs_key *key, cs_err *err);

/* Ticket keys derived from the cluster's ticket secret, one set per hour;
 * each worker holds its own copy so the callback takes no lock. */
struct tls_tickets {
	uint8_t master[32];
	uint64_t period; /* the hour the keys below were derived for */
	struct tls_ticket_key {
		uint8_t name[16], aes[32], hmac[32];
	} keys[3]; /* period - 1, period, period + 1 */
	EVP_CIPHER *cipher;
};

/* Open connections per source address (sources.c): an IPv4 address, or
 * the /64 of an IPv6 one. */
#define TLS_SRC_KEY_LEN       9
#define MAX_WORKERS_IN_FLIGHT 256 /* connections past the cap while workers check it */
typedef struct tls_sources tls_sources;
struct sockaddr;
tls_sources *tls_sources_new(uint32_t max_per_source, size_t max_conns);
void tls_sources_free(tls_sources *s);
void tls_source_key(const struct sockaddr *sa, uint8_t key[TLS_SRC_KEY_LEN]);
/* Counts one more connection of key: false (nothing counted) at the cap. */
bool tls_sources_take(tls_sources *s, const uint8_t key[TLS_SRC_KEY_LEN]);
void tls_sources_release(tls_sources *s, const uint8_t key[TLS_SRC_KEY_LEN]);

int tls_tickets_init(struct tls_tickets *tk, const uint8_t master[32], cs_err *err);
void tls_tickets_clear(struct tls_tickets *tk);

/* A server SSL_CTX: TLS 1.2/1.3, modern ciphers, ALPN http/1.1, certificate
 * selection in the ClientHello callback, stateless tickets.  Every SSL made
 * from it needs a tls_hs attached with SSL_set_app_data. */
SSL_CTX *tls_ctx_new(cs_err *err);

#endif
