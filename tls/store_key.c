/* store_key.c — whether the key the endpoint unseals with is the store's.
 *
 * During a change of the cluster passphrase (`cluster rekey`) the store is
 * re-sealed under a new key in one commit, and the node is handed that key
 * just after.  A table built in between with the old key would open no
 * record and serve nothing; so a build first checks the key against the
 * store's key-check value, and keeps the served table when they differ. */
#include "tls_int.h"

#include <sodium.h>

#include "../records/records.h"

int tls_store_key_check(cs_txn *txn, const cs_key *key, cs_err *err)
{
	uint8_t check[CS_KEYCHECK_LEN];
	Certsync__KdfParams *kdf;
	int rc = rec_kdf_get(txn, &kdf, err);

	if (rc != 0)
		return rc < 0 ? -1 : 0; /* no cluster settings: no key to compare with */
	cs_key_check(key, check);
	rc = kdf->key_check.len == CS_KEYCHECK_LEN &&
	             sodium_memcmp(check, kdf->key_check.data, CS_KEYCHECK_LEN) == 0
	         ? 0
	         : cs_fail(err, CS_ECRYPTO,
	                   "the store is sealed under another cluster key than this node "
	                   "holds (the cluster passphrase is changing)");
	certsync__kdf_params__free_unpacked(kdf, NULL);
	return rc;
}
