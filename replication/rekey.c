/* rekey.c — a follower meeting a change of the cluster passphrase.
 *
 * `cluster rekey` re-seals every key of the store under a new key and
 * changes the cluster settings (salt, key-check value) in the same entry.
 * A follower applies that entry only when one of its passphrases gives the
 * new key (the agent's find_key tries them); otherwise it applies nothing,
 * refuses the primary and says why, so its store stays whole under the old
 * key.  The new key reaches the agent only once the store is sealed under
 * it, through the same hook as a first key. */
#include "repl_int.h"

#include <sodium.h>

#include "../common/log.h"

static bool same_check(const Certsync__KdfParams *a, const Certsync__KdfParams *b)
{
	return a->key_check.len == CS_KEYCHECK_LEN && b->key_check.len == CS_KEYCHECK_LEN &&
	       sodium_memcmp(a->key_check.data, b->key_check.data, CS_KEYCHECK_LEN) == 0;
}

/* What a follower holds already: the store's key, or the new one found. */
static bool known(const repl *r, const Certsync__KdfParams *kdf)
{
	return r->loc.kdf == NULL || same_check(r->loc.kdf, kdf) || rec_kdf_names(kdf, r->nextkey);
}

int rekey_find(repl *r, const Certsync__KdfParams *kdf)
{
	cs_err err = {0};
	cs_key *key;

	if (known(r, kdf))
		return 0;
	if (r->find_key == NULL || r->find_key(r->find_key_ctx, kdf, &key, &err) != 0) {
		cs_error("repl: the primary changed the cluster passphrase and this node cannot "
		         "follow: %s",
		         r->find_key == NULL ? "it has no passphrase to try" : err.msg);
		snprintf(
		    r->refusal, sizeof(r->refusal),
		    "cluster passphrase changed (cluster rekey) and no passphrase of this node "
		    "gives the new key: set next_passphrase_file to the new one and restart");
		return -1;
	}
	cs_key_free(r->nextkey);
	r->nextkey = key;
	cs_info("repl: the primary's new cluster passphrase is one of this node's");
	return 0;
}

int rekey_check(repl *r, cs_txn *txn, Certsync__KdfParams **out)
{
	Certsync__KdfParams *kdf;
	cs_err err;
	int rc = rec_kdf_get(txn, &kdf, &err);

	*out = NULL;
	if (rc != 0) {
		if (rc < 0)
			cs_error("repl: the cluster settings the primary sent: %s", err.msg);
		return rc < 0 ? -1 : 0;
	}
	if (known(r, kdf)) {
		certsync__kdf_params__free_unpacked(kdf, NULL);
		return 0;
	}
	*out = kdf;
	return 1;
}

void rekey_handover(repl *r)
{
	if (r->nextkey == NULL || r->loc.kdf == NULL || !rec_kdf_names(r->loc.kdf, r->nextkey))
		return;
	cs_info("repl: applied the change of the cluster passphrase; the store is sealed under "
	        "the new key");
	pthread_mutex_lock(&r->mu);
	cs_key_free(r->newkey);
	r->newkey = r->nextkey;
	pthread_mutex_unlock(&r->mu);
	r->nextkey = NULL;
	notify_agent(r);
}
