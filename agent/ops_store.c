/* ops_store.c — the store's share of `status`: how full the LMDB map is, so
 * that a store never reaches MDB_MAP_FULL without warning first. */
#include "ops.h"

#include <stdio.h>

#include "../common/log.h"

json_t *ops_store_status(cs_store *st)
{
	size_t used, map, dcount = 0, dbytes = 0;
	int percent;
	char warning[160] = "";
	cs_err err;
	cs_txn *txn;

	cs_store_usage(st, &used, &map);
	if (cs_txn_begin(st, false, &txn, &err) == 0) {
		cs_txn_diverged_usage(txn, &dcount, &dbytes, &err);
		cs_txn_abort(txn);
	}
	percent = map > 0 ? (int)(used * 100 / map) : 0;
	if (percent >= STORE_WARN_PERCENT) {
		snprintf(warning, sizeof(warning),
		         "the store uses %d%% of its %zu MiB map; raise store_map_size, or "
		         "delete what is not needed (certsync diverged prune)",
		         percent, map >> 20);
		cs_warn("store: %s", warning);
	}
	return json_pack("{s:I, s:I, s:i, s:{s:I, s:I}, s:s?}", "map_bytes", (json_int_t)map,
	                 "used_bytes", (json_int_t)used, "used_percent", percent, "diverged",
	                 "entries", (json_int_t)dcount, "bytes", (json_int_t)dbytes, "warning",
	                 warning[0] ? warning : NULL);
}
