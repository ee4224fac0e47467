/* import.h — what the files of `certsync import` share: ops_import.c (the
 * command: decoding on the worker, then the rules in one transaction),
 * import_store.c (what the store already holds, looked up by public key)
 * and import_rules.c (the rules for identities, CA certificates, keys and
 * renewals of the default).  Nothing outside them includes it. */
#ifndef CS_AGENT_IMPORT_H
#define CS_AGENT_IMPORT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "node.h"
#include "records.h"
#include "spki_map.h"

/* One command's bounds: the files of all its parts, and their bytes. */
#define IMPORT_MAX_FILES 250000
#define IMPORT_MAX_BYTES ((size_t)256 << 20)
/* A command's log entry is split where its ops pass this, so each entry
 * travels to the followers as an ordinary replication message. */
#define IMPORT_ENTRY_BYTES ((size_t)1 << 20)
/* A command of more certificates than this is written to the store from
 * the worker, in a transaction of its own, not on the event loop: writing
 * 100,000 records takes seconds every client would wait. */
#define IMPORT_LOOP_CERTS 1000
#define MAX_MATCH         16

/* One key found in the files of this command. */
struct cmd_key {
	EVP_PKEY *pkey;
	uint8_t spki[PKI_ID_LEN];
	const char *file;
	bool used;
};

struct import {
	struct cs_node *node;
	cs_txn *txn;
	const char *name;    /* --name, or NULL */
	pki_bundle *bundles; /* one per file decoded so far */
	const char **files;
	size_t nfiles, capfiles;
	struct cmd_key *keys;
	size_t nkeys;
	spki_map keymap; /* spki -> position in keys */
	json_t *items;
	struct spki_index {
		struct spki_ent *v;
		size_t n, cap;
		spki_map map; /* spki -> positions in v */
		bool built;
	} index[3];               /* the certificates', the requests' and the CAs' (find_spki) */
	STACK_OF(X509) * issuers; /* CA certificates known: the store's and this command's */
	size_t identities_added;
	bool has_default;
	/* identities of this command that hold their key: one that renews the
	 * default takes over from it */
	struct keyed {
		uint8_t id[PKI_ID_LEN];
		const char *file;
	} * keyed;
	size_t nkeyed, capkeyed;
	cs_err *err;
	bool on_worker; /* written from the worker (IMPORT_LOOP_CERTS) */
	bool committed; /* ... and committed there, at pos */
	cs_pos pos;
	char summary[256]; /* the change's summary, for the log */
};

/* Records of one table whose public-key hash equals spki. */
struct spki_walk {
	cs_table table;
	size_t n;
	uint8_t ids[MAX_MATCH][PKI_ID_LEN];
	bool has_key[MAX_MATCH];
};

/* Adds one line to the command's answer: what happened to what of file. */
void imp_add_item(struct import *im, const char *file, const char *action, const char *kind,
                  const uint8_t id[PKI_ID_LEN], const char *name, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* ---- import_store.c ---- */
int imp_find_spki(struct import *im, cs_table t, const uint8_t spki[PKI_ID_LEN],
                  struct spki_walk *w);
int imp_index_put(struct import *im, const uint8_t id[PKI_ID_LEN], const uint8_t spki[PKI_ID_LEN],
                  bool has_key);
EVP_PKEY *imp_unseal_from(struct import *im, cs_table t, const uint8_t id[PKI_ID_LEN]);
EVP_PKEY *imp_claim_pending(struct import *im, const uint8_t spki[PKI_ID_LEN]);
int imp_add_fulfilled(struct import *im, const uint8_t req_id[PKI_ID_LEN],
                      const uint8_t cert_id[PKI_ID_LEN]);

/* ---- import_rules.c ---- */
int imp_import_identity(struct import *im, const char *file, X509 *x, pki_cert_info *info);
int imp_import_ca(struct import *im, const char *file, X509 *x, pki_cert_info *info);
int imp_server_root(struct import *im, X509 *x, const pki_cert_info *info);
int imp_import_key(struct import *im, struct cmd_key *ck);
int imp_renew_default(struct import *im);

#endif
