/* passphrases.c — finding, among a node's cluster passphrases, the one the
 * store's settings name (see passphrases.h). */
#include "passphrases.h"

int cs_pass_try_file(const char *what, const char *path, const Certsync__KdfParams *kdf,
                     cs_key **out, cs_err *err)
{
	char *pass;
	size_t passlen;
	int rc;

	*out = NULL;
	if (cs_passphrase_read(what, path, &pass, &passlen, err) < 0)
		return -1;
	rc = rec_cluster_key(kdf, pass, passlen, out, err);
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
