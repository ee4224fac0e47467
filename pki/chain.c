/* chain.c — builds a leaf's chain from the certificates the store holds
 * and, when asked, the system trust store, with OpenSSL's own verifier;
 * checks a CA certificate's signature against its issuer.
 *
 * The system trust store is read once and again only when its file or
 * folder changes (their mtime): reading it per certificate made `cert list`
 * take 37 s for 1,000 certificates. */
#include "pki_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>

/* One reading of the system trust store, shared while in use. */
typedef struct sys_trust {
	STACK_OF(X509) * certs;
	struct timespec file_mtime, dir_mtime;
	int refs; /* under trust_lock */
} sys_trust;

static pthread_mutex_t trust_lock = PTHREAD_MUTEX_INITIALIZER;
static sys_trust *trust_now;

static struct timespec mtime_of(const char *env, const char *dflt)
{
	const char *path = getenv(env);
	struct stat st;

	if (path == NULL || *path == '\0')
		path = dflt;
	if (stat(path, &st) < 0)
		return (struct timespec){0, 0};
	return st.st_mtim;
}

static void trust_release(sys_trust *t)
{
	bool last;

	if (t == NULL)
		return;
	pthread_mutex_lock(&trust_lock);
	last = --t->refs == 0;
	pthread_mutex_unlock(&trust_lock);
	if (last) {
		sk_X509_pop_free(t->certs, X509_free);
		free(t);
	}
}

/* The system's trusted certificates as they are now; NULL when they
 * cannot be read (then no chain ends in them). */
static sys_trust *trust_get(void)
{
	struct timespec fm =
	    mtime_of(X509_get_default_cert_file_env(), X509_get_default_cert_file());
	struct timespec dm = mtime_of(X509_get_default_cert_dir_env(), X509_get_default_cert_dir());
	sys_trust *t = NULL, *old = NULL;
	X509_STORE *store;

	pthread_mutex_lock(&trust_lock);
	if (trust_now != NULL && memcmp(&trust_now->file_mtime, &fm, sizeof(fm)) == 0 &&
	    memcmp(&trust_now->dir_mtime, &dm, sizeof(dm)) == 0) {
		t = trust_now;
		t->refs++;
		pthread_mutex_unlock(&trust_lock);
		return t;
	}
	pthread_mutex_unlock(&trust_lock);
	/* Read outside the lock; two readers at once both read, one wins. */
	if ((t = calloc(1, sizeof(*t))) == NULL || (store = X509_STORE_new()) == NULL) {
		free(t);
		return NULL;
	}
	if (X509_STORE_set_default_paths(store))
		t->certs = X509_STORE_get1_all_certs(store);
	X509_STORE_free(store);
	ERR_clear_error();
	if (t->certs == NULL && (t->certs = sk_X509_new_null()) == NULL) {
		free(t);
		return NULL;
	}
	t->file_mtime = fm;
	t->dir_mtime = dm;
	t->refs = 2; /* the cache's and the caller's */
	pthread_mutex_lock(&trust_lock);
	old = trust_now;
	trust_now = t;
	pthread_mutex_unlock(&trust_lock);
	trust_release(old);
	return t;
}

int pki_chain_check(X509 *leaf, STACK_OF(X509) * pool, bool use_system, STACK_OF(X509) * *chain,
                    pki_chain_status *st, cs_err *err)
{
	X509_STORE *store = NULL;
	X509_STORE_CTX *ctx = NULL;
	STACK_OF(X509) *untrusted = NULL, *trusted = NULL;
	sys_trust *sys = NULL;
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
	    (untrusted = sk_X509_new_null()) == NULL || (trusted = sk_X509_new_null()) == NULL ||
	    (use_system && (sys = trust_get()) == NULL)) {
		pki_fail_ssl(err, CS_EIO, "cannot set up chain building");
		goto out;
	}
	/* Self-signed certificates of the pool are the anchors the chain may
	 * end at; the others are candidate intermediates.  No partial chain:
	 * a chain is complete only when it reaches a self-signed root. */
	for (int i = 0; i < sk_X509_num(pool); i++) {
		cert = sk_X509_value(pool, i);
		if (!sk_X509_push(pki_signed_by_itself(cert) ? trusted : untrusted, cert)) {
			pki_fail_ssl(err, CS_EIO, "cannot set up chain building");
			goto out;
		}
	}
	for (int i = 0; sys != NULL && i < sk_X509_num(sys->certs); i++)
		if (!sk_X509_push(trusted, sk_X509_value(sys->certs, i))) {
			pki_fail_ssl(err, CS_EIO, "cannot set up chain building");
			goto out;
		}
	if (!X509_STORE_CTX_init(ctx, store, leaf, untrusted)) {
		pki_fail_ssl(err, CS_EIO, "cannot set up chain building");
		goto out;
	}
	/* The anchors: the pool's roots and the system's, borrowed. */
	X509_STORE_CTX_set0_trusted_stack(ctx, trusted);
	/* Expiry is the validity check's business, not the chain's; a root
	 * whose own signature fails ends no chain. */
	X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx),
	                            X509_V_FLAG_NO_CHECK_TIME | X509_V_FLAG_CHECK_SS_SIGNATURE);
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
	X509_STORE_CTX_free(ctx);
	sk_X509_free(untrusted);
	sk_X509_free(trusted);
	trust_release(sys);
	X509_STORE_free(store);
	return rc;
}

/* PKI_SIG_OK when one of certs (or of the system's, when use_system) issued
 * cert and its key verifies cert's signature. */
static pki_sig issued_by(X509 *cert, STACK_OF(X509) * certs, pki_sig found)
{
	for (int i = 0; i < sk_X509_num(certs); i++) {
		X509 *issuer = sk_X509_value(certs, i);
		EVP_PKEY *pub;

		if (issuer == cert || X509_check_issued(issuer, cert) != X509_V_OK)
			continue;
		found = PKI_SIG_BAD;
		if ((pub = X509_get0_pubkey(issuer)) != NULL && X509_verify(cert, pub) == 1) {
			ERR_clear_error();
			return PKI_SIG_OK;
		}
	}
	ERR_clear_error();
	return found;
}

pki_sig pki_ca_signature(X509 *cert, STACK_OF(X509) * candidates, bool use_system)
{
	sys_trust *sys;
	pki_sig sig;

	if (pki_signed_by_itself(cert))
		return PKI_SIG_OK;
	sig = issued_by(cert, candidates, PKI_SIG_UNKNOWN);
	if (sig != PKI_SIG_OK && use_system && (sys = trust_get()) != NULL) {
		sig = issued_by(cert, sys->certs, sig);
		trust_release(sys);
	}
	/* A root whose own signature fails is no root of anything. */
	if (sig != PKI_SIG_OK &&
	    X509_NAME_cmp(X509_get_subject_name(cert), X509_get_issuer_name(cert)) == 0)
		return PKI_SIG_BAD;
	return sig;
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
