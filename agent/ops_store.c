/* ops_store.c — how full the store's LMDB map is: in `status`, and in the
 * log after changes, so that a store never reaches MDB_MAP_FULL without
 * warning first. */
#include "ops.h"

#include <stdio.h>
#include <time.h>

#include "../common/log.h"

#define WARN_EVERY_S 60 /* after changes, the warning is logged this often */

/* The warning for a map used from STORE_WARN_PERCENT on, into buf ("" below). */
static int map_warning(cs_store *st, char *buf, size_t len, size_t *used, size_t *map)
{
	int percent;

	cs_store_usage(st, used, map);
	percent = *map > 0 ? (int)(*used * 100 / *map) : 0;
	buf[0] = '\0';
	if (percent >= STORE_WARN_PERCENT)
		snprintf(buf, len,
		         "the store uses %d%% of its %zu MiB map; raise store_map_size, or delete "
		         "what is not needed (certsync diverged prune)",
		         percent, *map >> 20);
	return percent;
}

void ops_store_check(cs_store *st)
{
	static time_t logged;
	char warning[160];
	size_t used, map;
	time_t now = time(NULL);

	map_warning(st, warning, sizeof(warning), &used, &map);
	if (warning[0] != '\0' && now - logged >= WARN_EVERY_S) {
		logged = now;
		cs_warn("store: %s", warning);
	}
}

json_t *ops_store_status(cs_store *st)
{
	size_t used, map, dcount = 0, dbytes = 0;
	char warning[160];
	int percent = map_warning(st, warning, sizeof(warning), &used, &map);
	cs_err err;
	cs_txn *txn;

	if (cs_txn_begin(st, false, &txn, &err) == 0) {
		cs_txn_diverged_usage(txn, &dcount, &dbytes, &err);
		cs_txn_abort(txn);
	}
	if (warning[0] != '\0')
		cs_warn("store: %s", warning);
	return json_pack("{s:I, s:I, s:i, s:{s:I, s:I}, s:s?}", "map_bytes", (json_int_t)map,
	                 "used_bytes", (json_int_t)used, "used_percent", percent, "diverged",
	                 "entries", (json_int_t)dcount, "bytes", (json_int_t)dbytes, "warning",
	                 warning[0] ? warning : NULL);
}
