/* store_key.c — whether the key the endpoint unseals with is the store's.
 *
 * During a change of the cluster passphrase (`cluster rekey`) the store is
 * re-sealed under a new key in one commit, and the node is handed that key
 * just after.  A table built in between with the old key would open no
 * record and serve nothing; so a build first checks the key against the
 * store's key-check value, and keeps the served table when they differ. */
#include "tls_int.h"

#include "../records/records.h"

int tls_store_key_check(cs_txn *txn, const cs_key *key, cs_err *err)
{
	int rc = rec_sealed_under(txn, key, err);

	if (rc > 0)
		return cs_fail(err, CS_ECRYPTO,
		               "the store is sealed under another cluster key than this node holds "
		               "(the cluster passphrase is changing)");
	return rc;
}
