/* capool.c — the CA pool: every CA certificate of the cas table, parsed, for
 * building chains (see records.h for its one failure policy). */
#include "records.h"

#include <openssl/evp.h>

#include "../common/hex.h"
#include "../common/log.h"

struct pool_walk {
	STACK_OF(X509) * pool;
	EVP_MD_CTX *md; /* NULL: no hash of the ids wanted */
	cs_err *err;
};

static int add_to_pool(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct pool_walk *w = ctx;
	Certsync__CertRecord *r = rec_cert_decode(val, vlen);
	X509 *x = r != NULL ? pki_cert_from_der(r->der.data, r->der.len, NULL) : NULL;
	int rc = 0;

	certsync__cert_record__free_unpacked(r, NULL);
	if (w->md != NULL && EVP_DigestUpdate(w->md, key, klen) != 1) {
		rc = cs_fail(w->err, CS_EIO, "hashing the CA pool failed");
	} else if (x == NULL) {
		char hex[9] = "?";

		/* Chains that need it come out incomplete, and say so. */
		if (klen >= 4)
			cs_hex(key, 4, hex);
		cs_warn("CA certificate record %s does not decode; chains that need it are "
		        "incomplete",
		        hex);
	} else if (sk_X509_push(w->pool, x) <= 0) {
		rc = cs_fail(w->err, CS_EIO, "out of memory");
	} else {
		x = NULL;
	}
	X509_free(x);
	return rc;
}

STACK_OF(X509) * rec_ca_pool(cs_txn *txn, uint8_t ids_hash[32], cs_err *err)
{
	struct pool_walk w = {sk_X509_new_null(), NULL, err};
	int rc = 0;

	if (w.pool == NULL ||
	    (ids_hash != NULL && ((w.md = EVP_MD_CTX_new()) == NULL ||
	                          EVP_DigestInit_ex(w.md, EVP_sha256(), NULL) != 1)))
		rc = cs_fail(err, CS_EIO, "out of memory");
	else if (cs_txn_foreach(txn, CS_TBL_CAS, add_to_pool, &w, err) != 0)
		rc = -1; /* add_to_pool or the walk said why */
	else if (w.md != NULL && EVP_DigestFinal_ex(w.md, ids_hash, NULL) != 1)
		rc = cs_fail(err, CS_EIO, "hashing the CA pool failed");
	EVP_MD_CTX_free(w.md);
	if (rc == 0)
		return w.pool;
	sk_X509_pop_free(w.pool, X509_free);
	return NULL;
}
