/* config.h — the agent's INI configuration (parsed with inih).
 *
 * Every key is known here; an unknown section or key, a missing required key
 * or a bad value is a configuration error (exit status 2) whose message names
 * the file, the line and the fix. */
#ifndef CS_CONFIG_H
#define CS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "../common/err.h"
#include "../common/log.h"
#include "../common/role.h"
#include "../monitor/monitor.h"

typedef struct cs_peer {
	char *name;
	cs_role role;
	char *hostname;
	char *repl_endpoint;    /* where its replication socket listens */
	char *curve_public_key; /* Z85; the replication allowlist */
	char *tls_endpoint;     /* HOST:PORT of its TLS endpoint, for verify --cluster */
	char *http_endpoint;    /* HOST:PORT where its http_listen is reached (http-01) */
} cs_peer;

/* A deep copy of n peers, and freeing one (config_copy.c). */
int cs_config_peers_copy(const cs_peer *src, size_t n, cs_peer **out, cs_err *err);
void cs_config_peers_free(cs_peer *peers, size_t n);

/* [acme] (config_acme.c): the cluster's ACME client; directory NULL: none. */
typedef struct cs_acme_config {
	char *directory; /* https URL of the CA's directory */
	char **contact;  /* "mailto:..." each; repeatable */
	size_t ncontact;
	bool agree_tos;
	char *ca_file; /* trust anchors of the CA's HTTPS; NULL: the system's */
	char *eab_kid, *eab_hmac_file;
	char *profile;
	char *key; /* the certificates' key type; "ec:p256" when not given */
	char *dns_server, *dns_tsig_key_file, *dns_hook;
	int check_timeout_s; /* the pre-validation wait; 30 when not given */
} cs_acme_config;

/* One key of [acme]; err's message says what is wrong and the fix. */
int cs_config_acme_set(cs_acme_config *a, const char *key, const char *value, cs_err *err);
/* Once the file is read: what the keys of [acme] need from each other and
 * from the files they name (the EAB HMAC, the TSIG key), and http_listen. */
struct cs_config;
int cs_config_acme_check(const struct cs_config *cfg, cs_err *err);
void cs_config_acme_free(cs_acme_config *a);
/* A deep copy of src (config_copy.c); dst is empty on failure. */
int cs_config_acme_copy(cs_acme_config *dst, const cs_acme_config *src, cs_err *err);
/* The key type of new certificates, and the pre-validation wait (seconds). */
const char *cs_config_acme_key(const cs_acme_config *a);
int cs_config_acme_check_timeout(const cs_acme_config *a);

typedef struct cs_config {
	char *path;
	/* [node] */
	char *name;
	cs_role role;
	char *hostname;
	char *data_dir;
	char *control_socket;
	char *passphrase_file;
	int passphrase_file_line; /* for messages about the file it names */
	enum cs_log_level log_level;
	char **tls_listen; /* "ADDR:PORT", repeatable; none: no TLS endpoint */
	size_t ntls_listen;
	int tls_workers;              /* 0: one per core */
	int tls_handshake_timeout_ms; /* 0: the endpoint's default */
	int tls_max_connections;      /* 0: the endpoint's default */
	char *repl_listen;            /* NULL: no replication (a single node) */
	char *curve_secret_file;
	int log_retain; /* log entries kept; 0: the default */
	/* TLS connections of one address; 0: TLS_DEFAULT_MAX_PER_SOURCE */
	int tls_max_connections_per_ip;
	/* the LMDB map's size in MiB; 0: the store's default */
	int store_map_size_mib;
	int core_dumps;         /* 1: leave core dumps on (debugging); 0: off (default) */
	char *admin_listen;     /* ADDR:PORT of /metrics; NULL: none */
	char *admin_token_file; /* bearer token the admin listener requires */
	char *http_listen;      /* ADDR:PORT of the http-01 responder; NULL: none */
	/* the passphrase a `cluster rekey` changes to; NULL: none expected */
	char *next_passphrase_file;
	/* [cluster] */
	char *site_hostname;
	/* [alerts]: delivery targets and timing (the monitor checks the keys) */
	mon_config alerts;
	cs_acme_config acme;
	/* [peer NAME] sections, in file order */
	cs_peer *peers;
	size_t npeers;
} cs_config;

/* Parses and checks path.  On error cfg is left empty (nothing to free) and
 * err has code CS_EUSAGE. */
int cs_config_load(cs_config *cfg, const char *path, cs_err *err);
void cs_config_free(cs_config *cfg);

/* The primary's name as the configuration knows it: this node's when it is
 * the primary, else the first peer with role primary, else NULL. */
const char *cs_config_primary(const cs_config *cfg);

/* Every hostname a default certificate must cover: the site hostname, this
 * node's, then each peer's, without repeats.  Returns the count; the strings
 * belong to cfg. */
size_t cs_config_hosts(const cs_config *cfg, const char **hosts, size_t max);
/* The same with the peers given: off the loop, a snapshot's (live.h). */
size_t cs_config_hosts_of(const cs_config *cfg, const cs_peer *peers, size_t npeers,
                          const char **hosts, size_t max);

/* Reads the first line of a secret file (the cluster passphrase, a PKCS#12
 * password) into sodium_malloc'd memory; free it with cs_secret_free.  what
 * names the file's role in messages ("passphrase_file", "--password-file").
 * Refuses an unreadable file, and an empty first line unless allow_empty. */
int cs_secret_file_read(const char *what, const char *path, bool allow_empty, char **secret,
                        size_t *len, cs_err *err);
/* The cluster passphrase from passphrase_file: cs_secret_file_read, and the
 * file must be a regular file only its owner can read (a symlink to one is
 * followed).  A NUL byte in the first line is refused by both. */
int cs_passphrase_file_read(const cs_config *cfg, char **secret, size_t *len, cs_err *err);
/* The same checks for any file holding a cluster passphrase (what names it
 * in messages: "next_passphrase_file", "--new-passphrase-file"). */
int cs_passphrase_read(const char *what, const char *path, char **secret, size_t *len, cs_err *err);

#endif
