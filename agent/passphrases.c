/* passphrases.c — finding, among a node's cluster passphrases, the one the
 * store's settings name (see passphrases.h). */
#include "passphrases.h"

#include <sodium.h>

int cs_pass_try(const char *pass, size_t passlen, const Certsync__KdfParams *kdf, cs_key **out,
                cs_err *err)
{
	uint8_t check[CS_KEYCHECK_LEN];
	cs_key *key;

	*out = NULL;
	if (kdf->salt.len != CS_SALT_LEN || kdf->key_check.len != CS_KEYCHECK_LEN)
		return cs_fail(err, CS_EIO, "the cluster settings are damaged (kdf)");
	if (cs_key_derive(&key, pass, passlen, kdf->salt.data, kdf->opslimit, kdf->memlimit, err) <
	    0)
		return -1;
	cs_key_check(key, check);
	if (sodium_memcmp(check, kdf->key_check.data, CS_KEYCHECK_LEN) != 0) {
		cs_key_free(key);
		return 1;
	}
	*out = key;
	return 0;
}

int cs_pass_try_file(const char *what, const char *path, const Certsync__KdfParams *kdf,
                     cs_key **out, cs_err *err)
{
	char *pass;
	size_t passlen;
	int rc;

	*out = NULL;
	if (cs_passphrase_read(what, path, &pass, &passlen, err) < 0)
		return -1;
	rc = cs_pass_try(pass, passlen, kdf, out, err);
	cs_secret_free(pass);
	return rc;
}

int cs_pass_find(const cs_config *cfg, const Certsync__KdfParams *kdf, cs_key **out,
                 const char **which, cs_err *err)
{
	int rc;

	*which = "passphrase_file";
	rc = cs_pass_try_file(*which, cfg->passphrase_file, kdf, out, err);
	if (rc == 1 && cfg->next_passphrase_file != NULL) {
		*which = "next_passphrase_file";
		rc = cs_pass_try_file(*which, cfg->next_passphrase_file, kdf, out, err);
	}
	if (rc == 1 && cfg->next_passphrase_file != NULL)
		cs_fail(err, CS_ECRYPTO,
		        "cluster passphrase does not match: neither passphrase_file %s nor "
		        "next_passphrase_file %s gives the cluster's key; put the cluster's "
		        "passphrase in one of them and restart",
		        cfg->passphrase_file, cfg->next_passphrase_file);
	else if (rc == 1)
		cs_fail(err, CS_ECRYPTO,
		        "cluster passphrase does not match: passphrase_file %s does not give the "
		        "cluster's key (and no next_passphrase_file is set); put the cluster's "
		        "passphrase in it, or in next_passphrase_file, and restart",
		        cfg->passphrase_file);
	return rc;
}
