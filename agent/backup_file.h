/* backup_file.h — the backup file: a one-line JSON header naming the
 * cluster, the position and the store digest, then a compacted copy of the
 * store's LMDB data file, whose BLAKE2b-256 the header carries.  Private
 * keys stay sealed in it: without the cluster passphrase it opens nothing.
 *
 * bk_write makes one from a running node's store; bk_restore puts one into
 * an empty data_dir, after checking it whole, as a store that follows. */
#ifndef CS_BACKUP_FILE_H
#define CS_BACKUP_FILE_H

#include <stdint.h>

#include <jansson.h>

#include "../common/err.h"
#include "../store/store.h"
#include "config.h"

typedef struct bk_info {
	char cluster[33];  /* the cluster id, hex */
	char node[128];    /* the node it was taken on */
	char created[32];  /* ISO 8601 UTC */
	cs_pos pos;        /* the store's applied position in the copy */
	char digest[65];   /* the store digest at pos, hex */
	uint64_t bytes;    /* of the store copy after the header */
	char checksum[65]; /* BLAKE2b-256 of those bytes, hex */
} bk_info;

/* {"cluster","node","created","epoch","seq","digest","bytes"}. */
json_t *bk_info_json(const bk_info *info);

/* Writes a backup of st to path (absolute): the copy is made in one read
 * transaction, read back to fill the header, and the file appears whole or
 * not at all (a temporary file beside it, renamed), mode 0600.  Slow for a
 * large store: not for the event loop. */
int bk_write(cs_store *st, const char *path, const char *node, bk_info *info, cs_err *err);

/* Restores the backup in file into data_dir, which must be missing or an
 * empty folder no agent holds (CS_EREFUSED naming the fix otherwise).  The
 * file is checked whole (its checksum, and the copy against its header: a
 * truncated or altered file is CS_EINPUT) and one of cfg's passphrases
 * must open its cluster settings (CS_EREFUSED: another cluster's backup)
 * before anything appears in data_dir; the store is marked as following.
 * On any failure data_dir is left as it was. */
int bk_restore(const char *file, const char *data_dir, const cs_config *cfg, bk_info *info,
               cs_err *err);

#endif
