/* passphrases.h — which of a node's cluster passphrases opens a store.
 *
 * A node holds the passphrase of passphrase_file and, while the cluster's
 * passphrase is being changed (`cluster rekey`), the one of
 * next_passphrase_file.  The store's cluster settings (salt, limits,
 * key-check value) say which one is the cluster's: the key each derives is
 * compared with the key-check value, never the passphrases themselves.
 * Each try runs Argon2id: off the event loop once the agent serves. */
#ifndef CS_PASSPHRASES_H
#define CS_PASSPHRASES_H

#include "../common/err.h"
#include "../records/records.h"
#include "config.h"

/* Reads the file of what (a configuration key or flag) and derives the key
 * its passphrase gives under kdf: 0 and *out when it matches kdf's
 * key-check value, 1 when not, -1 when the file cannot be read. */
int cs_pass_try_file(const char *what, const char *path, const Certsync__KdfParams *kdf,
                     cs_key **out, cs_err *err);

/* Tries passphrase_file, then next_passphrase_file when set: 0 and *out
 * (*which names the key that matched), 1 when neither matches (err says
 * so, naming the files), -1 when a file cannot be read. */
int cs_pass_find(const cs_config *cfg, const Certsync__KdfParams *kdf, cs_key **out,
                 const char **which, cs_err *err);

#endif
