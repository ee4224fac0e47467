/* storekit.h — fills a certsync store from PEM files without the agent, for
 * the TLS module's tests and benchmarks (tls-serve-store, test_tls).
 *
 * Records are written the way the agent writes them (proto/store.proto):
 * the cluster settings under "kdf", identities in certs with their key sealed
 * under the record id, CA certificates in cas, the default under "default". */
#ifndef CS_STOREKIT_H
#define CS_STOREKIT_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/err.h"
#include "../seal/seal.h"
#include "../store/store.h"

/* Opens (creating when new) the store in data_dir and derives the cluster
 * key from pass; a new store gets cluster settings with INTERACTIVE limits. */
int storekit_open(const char *data_dir, const char *pass, cs_store **st, cs_key **key, cs_err *err);

/* Imports the PEM file cert_path (leaf first, then its issuers) and the key
 * in key_path (may be NULL when cert_path holds it too), in one transaction.
 * The leaf's id goes to id; make_default also makes it the default. */
int storekit_import(cs_store *st, const cs_key *key, const char *cert_path, const char *key_path,
                    bool make_default, uint8_t id[32], cs_err *err);

/* Deletes an identity record; makes another the default if given (NULL: none). */
int storekit_delete(cs_store *st, const uint8_t id[32], const uint8_t *new_default, cs_err *err);

/* Makes id the default. */
int storekit_set_default(cs_store *st, const uint8_t id[32], cs_err *err);

#endif
