/* chain.c — builds a leaf's chain from the certificates the store holds
 * and, when asked, the system trust store, with OpenSSL's own verifier. */
#include "pki_internal.h"

#include <openssl/err.h>

int pki_chain_check(X509 *leaf, STACK_OF(X509) * pool, bool use_system, STACK_OF(X509) * *chain,
                    pki_chain_status *st, cs_err *err)
{
	X509_STORE *store = NULL;
	X509_STORE_CTX *ctx = NULL;
	STACK_OF(X509) *untrusted = NULL;
	X509 *cert;
	int rc = -1;

	*chain = NULL;
	st->error = X509_V_OK;
	st->depth = 0;
	if (pki_signed_by_itself(leaf)) {
		if ((*chain = sk_X509_new_null()) == NULL)
			return cs_fail(err, CS_EIO, "out of memory");
		return 0;
	}
	if ((store = X509_STORE_new()) == NULL || (ctx = X509_STORE_CTX_new()) == NULL ||
	    (untrusted = sk_X509_new_null()) == NULL) {
		pki_fail_ssl(err, CS_EIO, "cannot set up chain building");
		goto out;
	}
	/* Self-signed certificates of the pool are the anchors the chain may
	 * end at; the others are candidate intermediates.  No partial chain:
	 * a chain is complete only when it reaches a self-signed root. */
	for (int i = 0; i < sk_X509_num(pool); i++) {
		cert = sk_X509_value(pool, i);
		if (!(pki_signed_by_itself(cert) ? X509_STORE_add_cert(store, cert)
		                                 : sk_X509_push(untrusted, cert))) {
			pki_fail_ssl(err, CS_EIO, "cannot set up chain building");
			goto out;
		}
	}
	if ((use_system && !X509_STORE_set_default_paths(store)) ||
	    !X509_STORE_CTX_init(ctx, store, leaf, untrusted)) {
		pki_fail_ssl(err, CS_EIO, "cannot set up chain building");
		goto out;
	}
	/* Expiry is the validity check's business, not the chain's. */
	X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_NO_CHECK_TIME);
	if (X509_verify_cert(ctx) != 1) {
		st->error = X509_STORE_CTX_get_error(ctx);
		st->depth = X509_STORE_CTX_get_error_depth(ctx);
	}
	/* Also after a failure the context holds the chain built so far. */
	if ((*chain = X509_STORE_CTX_get1_chain(ctx)) == NULL &&
	    (*chain = sk_X509_new_null()) == NULL) {
		cs_fail(err, CS_EIO, "out of memory");
		goto out;
	}
	X509_free(sk_X509_shift(*chain)); /* the leaf */
	rc = 0;
out:
	ERR_clear_error();
	sk_X509_free(untrusted);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	return rc;
}

int pki_chain_build(X509 *leaf, STACK_OF(X509) * pool, bool use_system, STACK_OF(X509) * *chain,
                    bool *complete, cs_err *err)
{
	pki_chain_status st;

	if (pki_chain_check(leaf, pool, use_system, chain, &st, err) < 0)
		return -1;
	*complete = st.error == X509_V_OK;
	return 0;
}
