/* backup.c — what `certsync backup` and `certsync restore` need from the
 * store: a compacted copy of the environment, taken by LMDB in one read
 * transaction while writers go on, and marking a restored store as one that
 * follows (it leads no epoch until it is promoted), so that a node restored
 * from an old copy can never lead the cluster back to it. */
#include "store.h"

#include "store_int.h"

int cs_store_copy(cs_store *st, int fd, cs_err *err)
{
	int rc = mdb_env_copyfd2(st->env, fd, MDB_CP_COMPACT);

	return rc == 0 ? 0 : st_mdb_fail(err, rc, "copy the store", "");
}

int cs_txn_follow(cs_txn *txn, cs_err *err)
{
	uint8_t zero[8];

	if (st_check_writable(txn, "mark the store as following", err) != 0)
		return -1;
	st_put_be64(zero, 0);
	if (st_meta_put(txn, "led", zero, sizeof(zero), err) != 0)
		return -1;
	txn->led = 0;
	txn->has_led = true;
	return 0;
}
