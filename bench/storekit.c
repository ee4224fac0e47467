/* storekit.c — see storekit.h.  Test and benchmark tooling: it writes the
 * records the agent would, so the TLS module can be exercised on a real
 * store before (and without) an agent. */
#include "storekit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <sodium.h>

#include "../pki/pki.h"
#include "../records/records.h"

int storekit_open(const char *data_dir, const char *pass, cs_store **st, cs_key **key, cs_err *err)
{
	Certsync__KdfParams *kdf;
	cs_txn *txn = NULL;
	int rc;

	*key = NULL;
	if (cs_seal_init(err) < 0 || cs_store_open(st, data_dir, err) < 0)
		return -1;
	if (cs_txn_begin(*st, true, &txn, err) < 0)
		goto fail;
	rc = rec_kdf_get(txn, &kdf, err);
	/* INTERACTIVE: the lowest the store accepts, so tests start fast. */
	if (rc == 1)
		rc = rec_cluster_create(txn, pass, strlen(pass), crypto_pwhash_OPSLIMIT_INTERACTIVE,
		                        crypto_pwhash_MEMLIMIT_INTERACTIVE, key, err);
	else if (rc == 0)
		rc = rec_cluster_key(kdf, pass, strlen(pass), key, err) == 0 ? 0 : -1;
	certsync__kdf_params__free_unpacked(kdf, NULL);
	if (rc < 0)
		goto fail;
	if (cs_txn_commit(txn, "storekit: cluster settings", NULL, err) < 0) {
		txn = NULL;
		goto fail;
	}
	return 0;
fail:
	if (txn != NULL)
		cs_txn_abort(txn);
	cs_key_free(*key);
	*key = NULL;
	cs_store_close(*st);
	*st = NULL;
	return -1;
}

static int read_file(const char *path, uint8_t **data, size_t *len, cs_err *err)
{
	FILE *f = fopen(path, "rb");
	long n;

	if (f == NULL)
		return cs_fail(err, CS_EINPUT, "%s: cannot open", path);
	if (fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0 ||
	    (*data = malloc((size_t)n + 1)) == NULL) {
		fclose(f);
		return cs_fail(err, CS_EIO, "%s: cannot read", path);
	}
	*len = fread(*data, 1, (size_t)n, f);
	fclose(f);
	return 0;
}

static int decode_file(const char *path, pki_bundle *b, cs_err *err)
{
	uint8_t *data = NULL;
	size_t len = 0;
	int rc;

	if (read_file(path, &data, &len, err) < 0)
		return -1;
	rc = pki_decode(data, len, NULL, path, b, err);
	OPENSSL_cleanse(data, len);
	free(data);
	return rc;
}

/* Puts one certificate record: an identity with its key sealed, or a CA. */
static int put_cert(cs_txn *txn, const cs_key *ckey, X509 *cert, EVP_PKEY *pkey, uint8_t id[32],
                    cs_err *err)
{
	Certsync__CertRecord rec = CERTSYNC__CERT_RECORD__INIT;
	pki_cert_info info;
	uint8_t *der = NULL;
	size_t dlen;
	int rc = -1;

	if (pki_cert_inspect(cert, &info, err) < 0)
		return -1;
	memcpy(id, info.id, 32);
	if (pki_cert_der(cert, &der, &dlen, err) < 0)
		goto out;
	if (pkey != NULL && rec_seal_key(ckey, pkey, id, 32, &rec.sealed_key, err) < 0)
		goto out;
	rec.der = (ProtobufCBinaryData){dlen, der};
	rec.source = "import";
	rec.created = time(NULL);
	rec_cert_describe(&rec, &info);
	rc = rec_put(txn, info.kind == PKI_KIND_IDENTITY ? CS_TBL_CERTS : CS_TBL_CAS, id, 32,
	             &rec.base, err);
out:
	free(rec.sealed_key.data);
	free(der);
	pki_cert_info_free(&info);
	return rc;
}

int storekit_import(cs_store *st, const cs_key *key, const char *cert_path, const char *key_path,
                    bool make_default, uint8_t id[32], cs_err *err)
{
	pki_bundle certs = {0}, keys = {0};
	EVP_PKEY *pkey = NULL;
	cs_txn *txn = NULL;
	uint8_t ca_id[32];
	int rc = -1;

	if (decode_file(cert_path, &certs, err) < 0 ||
	    (key_path != NULL && decode_file(key_path, &keys, err) < 0))
		goto out;
	if (sk_X509_num(certs.certs) == 0) {
		cs_fail(err, CS_EINPUT, "%s: no certificate", cert_path);
		goto out;
	}
	pkey = keys.nkeys > 0 ? keys.keys[0] : certs.nkeys > 0 ? certs.keys[0] : NULL;
	if (pkey == NULL || !pki_key_matches(sk_X509_value(certs.certs, 0), pkey)) {
		cs_fail(err, CS_EINPUT, "%s: no key matching the first certificate", cert_path);
		goto out;
	}
	if (cs_txn_begin(st, true, &txn, err) < 0)
		goto out;
	if (put_cert(txn, key, sk_X509_value(certs.certs, 0), pkey, id, err) < 0)
		goto out;
	for (int i = 1; i < sk_X509_num(certs.certs); i++) {
		if (put_cert(txn, key, sk_X509_value(certs.certs, i), NULL, ca_id, err) < 0)
			goto out;
	}
	if (make_default && rec_set_default(txn, id, err) < 0)
		goto out;
	rc = cs_txn_commit(txn, "storekit: import", NULL, err);
	txn = NULL;
out:
	if (txn != NULL)
		cs_txn_abort(txn);
	pki_bundle_free(&certs);
	pki_bundle_free(&keys);
	return rc;
}

int storekit_delete(cs_store *st, const uint8_t id[32], const uint8_t *new_default, cs_err *err)
{
	cs_txn *txn;

	if (cs_txn_begin(st, true, &txn, err) < 0)
		return -1;
	if (cs_txn_del(txn, CS_TBL_CERTS, id, 32, err) < 0 ||
	    (new_default != NULL && rec_set_default(txn, new_default, err) < 0)) {
		cs_txn_abort(txn);
		return -1;
	}
	return cs_txn_commit(txn, "storekit: delete", NULL, err);
}

int storekit_set_default(cs_store *st, const uint8_t id[32], cs_err *err)
{
	cs_txn *txn;

	if (cs_txn_begin(st, true, &txn, err) < 0)
		return -1;
	if (rec_set_default(txn, id, err) < 0) {
		cs_txn_abort(txn);
		return -1;
	}
	return cs_txn_commit(txn, "storekit: default", NULL, err);
}
