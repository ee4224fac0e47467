/* test_pki_trust.c — the system trust store completes a chain: with
 * SSL_CERT_FILE naming a bundle that holds a private root, a leaf that root
 * issued is complete with an empty pool once the system store is asked, and
 * incomplete without it.  (test_pki.c shows the negative: the real system
 * store does not know the test root.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "../../pki/pki.h"

/* A version 3 certificate for cn under issuer (NULL: self-signed), valid for
 * a day either side of now, with the one extension a chain needs. */
static X509 *make_cert(const char *cn, bool ca, EVP_PKEY *key, X509 *issuer, EVP_PKEY *signer)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	X509V3_CTX v3;
	X509_EXTENSION *bc;

	assert_non_null(x);
	assert_true(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn,
	                                       -1, -1, 0));
	assert_true(X509_set_version(x, X509_VERSION_3));
	assert_true(ASN1_INTEGER_set(X509_get_serialNumber(x), ca ? 1 : 2));
	assert_true(X509_set_subject_name(x, name));
	assert_true(X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name));
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -86400));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
	assert_true(X509_set_pubkey(x, key));
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	bc = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
	                         ca ? "critical,CA:TRUE" : "CA:FALSE");
	assert_non_null(bc);
	assert_true(X509_add_ext(x, bc, -1));
	assert_true(X509_sign(x, signer, EVP_sha256()) > 0);
	X509_EXTENSION_free(bc);
	X509_NAME_free(name);
	return x;
}

static void test_system_store_completes_a_chain(void **state)
{
	char dir[] = "/tmp/certsync-trust-XXXXXX", bundle[64], certs[64];
	EVP_PKEY *root_key = pki_key_generate(PKI_KEY_EC_P256, NULL);
	EVP_PKEY *leaf_key = pki_key_generate(PKI_KEY_EC_P256, NULL);
	STACK_OF(X509) *pool = sk_X509_new_null(), *chain;
	X509 *root, *leaf;
	bool complete = true;
	cs_err err = {0};
	FILE *f;

	(void)state;
	assert_non_null(root_key);
	assert_non_null(leaf_key);
	root = make_cert("certsync Trust Test Root", true, root_key, NULL, root_key);
	leaf = make_cert("trust.example.test", false, leaf_key, root, root_key);
	assert_non_null(mkdtemp(dir));
	snprintf(bundle, sizeof(bundle), "%s/bundle.pem", dir);
	snprintf(certs, sizeof(certs), "%s/certs", dir);
	assert_int_equal(mkdir(certs, 0700), 0);
	f = fopen(bundle, "w");
	assert_non_null(f);
	assert_true(PEM_write_X509(f, root));
	assert_int_equal(fclose(f), 0);
	/* OpenSSL reads these at every X509_STORE_set_default_paths: the
	 * bundle stands in for the system's, and an empty folder for its
	 * hashed directory, so only the test root is trusted. */
	assert_int_equal(setenv("SSL_CERT_FILE", bundle, 1), 0);
	assert_int_equal(setenv("SSL_CERT_DIR", certs, 1), 0);

	assert_int_equal(pki_chain_build(leaf, pool, false, &chain, &complete, &err), 0);
	assert_false(complete);
	sk_X509_pop_free(chain, X509_free);

	assert_int_equal(pki_chain_build(leaf, pool, true, &chain, &complete, &err), 0);
	assert_true(complete);
	assert_int_equal(sk_X509_num(chain), 1);
	assert_int_equal(X509_cmp(sk_X509_value(chain, 0), root), 0);
	sk_X509_pop_free(chain, X509_free);

	unlink(bundle);
	rmdir(certs);
	rmdir(dir);
	sk_X509_free(pool);
	X509_free(leaf);
	X509_free(root);
	EVP_PKEY_free(leaf_key);
	EVP_PKEY_free(root_key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_system_store_completes_a_chain),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
