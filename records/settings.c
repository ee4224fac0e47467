/* settings.c — the records of the settings table: the cluster settings
 * (how the cluster key is derived and the value that checks it) and the
 * default certificate (see records.h). */
#include "records.h"

#include <string.h>

#include <sodium.h>

#define CLUSTER_ID_LEN 16

int rec_kdf_get(cs_txn *txn, Certsync__KdfParams **out, cs_err *err)
{
	const void *val;
	size_t vlen;
	int rc = cs_txn_get(txn, CS_TBL_SETTINGS, REC_SETTINGS_KDF, strlen(REC_SETTINGS_KDF), &val,
	                    &vlen, err);

	*out = NULL;
	if (rc != 0)
		return rc;
	*out = certsync__kdf_params__unpack(NULL, vlen, val);
	return *out != NULL ? 0
	                    : cs_fail(err, CS_EIO, "the store's cluster settings do not decode");
}

int rec_cluster_create(cs_txn *txn, const char *pass, size_t passlen, uint64_t opslimit,
                       uint64_t memlimit, cs_key **key, cs_err *err)
{
	Certsync__KdfParams kdf = CERTSYNC__KDF_PARAMS__INIT;
	uint8_t salt[CS_SALT_LEN], check[CS_KEYCHECK_LEN], cluster_id[CLUSTER_ID_LEN];

	cs_kdf_new_salt(salt);
	randombytes_buf(cluster_id, sizeof(cluster_id));
	kdf.opslimit = opslimit;
	kdf.memlimit = memlimit;
	if (cs_key_derive(key, pass, passlen, salt, opslimit, memlimit, err) < 0)
		return -1;
	cs_key_check(*key, check);
	kdf.salt = (ProtobufCBinaryData){sizeof(salt), salt};
	kdf.key_check = (ProtobufCBinaryData){sizeof(check), check};
	kdf.cluster_id = (ProtobufCBinaryData){sizeof(cluster_id), cluster_id};
	if (rec_put(txn, CS_TBL_SETTINGS, (const uint8_t *)REC_SETTINGS_KDF,
	            strlen(REC_SETTINGS_KDF), &kdf.base, err) < 0) {
		cs_key_free(*key);
		*key = NULL;
		return -1;
	}
	return 0;
}

int rec_cluster_key(const Certsync__KdfParams *kdf, const char *pass, size_t passlen, cs_key **key,
                    cs_err *err)
{
	uint8_t check[CS_KEYCHECK_LEN];

	*key = NULL;
	if (kdf->salt.len != CS_SALT_LEN || kdf->key_check.len != CS_KEYCHECK_LEN)
		return cs_fail(err, CS_EIO, "the store's cluster settings are damaged (kdf)");
	if (cs_key_derive(key, pass, passlen, kdf->salt.data, kdf->opslimit, kdf->memlimit, err) <
	    0)
		return -1;
	cs_key_check(*key, check);
	if (sodium_memcmp(check, kdf->key_check.data, CS_KEYCHECK_LEN) == 0)
		return 0;
	cs_key_free(*key);
	*key = NULL;
	cs_fail(err, CS_ECRYPTO, "cluster passphrase does not match");
	return 1;
}

bool rec_kdf_names(const Certsync__KdfParams *kdf, const cs_key *key)
{
	uint8_t check[CS_KEYCHECK_LEN];

	if (key == NULL || kdf->key_check.len != CS_KEYCHECK_LEN)
		return false;
	cs_key_check(key, check);
	return sodium_memcmp(check, kdf->key_check.data, CS_KEYCHECK_LEN) == 0;
}

int rec_sealed_under(cs_txn *txn, const cs_key *key, cs_err *err)
{
	Certsync__KdfParams *kdf;
	int rc = rec_kdf_get(txn, &kdf, err);

	if (rc != 0)
		return rc < 0 ? -1 : 0;
	rc = rec_kdf_names(kdf, key) ? 0 : 1;
	certsync__kdf_params__free_unpacked(kdf, NULL);
	return rc;
}

int rec_default(cs_txn *txn, uint8_t id[PKI_ID_LEN], cs_err *err)
{
	Certsync__DefaultCert *d;
	const void *val;
	size_t vlen;
	int rc;

	rc = cs_txn_get(txn, CS_TBL_SETTINGS, REC_SETTINGS_DEFAULT, strlen(REC_SETTINGS_DEFAULT),
	                &val, &vlen, err);
	if (rc != 0)
		return rc;
	d = certsync__default_cert__unpack(NULL, vlen, val);
	rc = d && d->id.len == PKI_ID_LEN ? 0 : 1;
	if (rc == 0)
		memcpy(id, d->id.data, PKI_ID_LEN);
	certsync__default_cert__free_unpacked(d, NULL);
	return rc;
}

int rec_set_default(cs_txn *txn, const uint8_t id[PKI_ID_LEN], cs_err *err)
{
	Certsync__DefaultCert d = CERTSYNC__DEFAULT_CERT__INIT;

	d.id.data = (uint8_t *)id;
	d.id.len = PKI_ID_LEN;
	return rec_put(txn, CS_TBL_SETTINGS, (const uint8_t *)REC_SETTINGS_DEFAULT,
	               strlen(REC_SETTINGS_DEFAULT), &d.base, err);
}
