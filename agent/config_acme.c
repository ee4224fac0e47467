/* config_acme.c — the [acme] section of the agent's configuration and
 * [node] http_listen: each key's form when it is read, and what the keys
 * need from each other and from the files they name once the file is read,
 * so that a bad value stops the agent at start (exit 2) instead of failing
 * an order later. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "../acme/acme.h"
#include "../common/hostport.h"
#include "../pki/pki.h"
#include "../seal/seal.h"

#define ACME_CHECK_TIMEOUT_DEFAULT 30

static int set_str(char **slot, const char *key, const char *value, cs_err *err)
{
	if (*value == '\0')
		return cs_fail(err, CS_EUSAGE, "[acme] %s is empty; give it a value", key);
	free(*slot);
	*slot = strdup(value);
	return *slot ? 0 : cs_fail(err, CS_EIO, "out of memory");
}

static int set_contact(cs_acme_config *a, const char *value, cs_err *err)
{
	char **list;

	if (strncmp(value, "mailto:", 7) != 0 || strchr(value + 7, '@') == NULL ||
	    strpbrk(value, " ,;<>") != NULL)
		return cs_fail(err, CS_EUSAGE,
		               "[acme] contact = %s: give one mailto: address per line, as in "
		               "contact = mailto:admin@example.com",
		               value);
	list = realloc(a->contact, (a->ncontact + 1) * sizeof(*list));
	if (list == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	a->contact = list;
	if ((list[a->ncontact] = strdup(value)) == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	a->ncontact++;
	return 0;
}

int cs_config_acme_set(cs_acme_config *a, const char *key, const char *value, cs_err *err)
{
	static const struct {
		const char *key;
		size_t offset;
	} strings[] = {
	    {"ca_file", offsetof(cs_acme_config, ca_file)},
	    {"eab_kid", offsetof(cs_acme_config, eab_kid)},
	    {"eab_hmac_file", offsetof(cs_acme_config, eab_hmac_file)},
	    {"profile", offsetof(cs_acme_config, profile)},
	    {"dns_tsig_key_file", offsetof(cs_acme_config, dns_tsig_key_file)},
	    {"dns_hook", offsetof(cs_acme_config, dns_hook)},
	};
	pki_keyspec spec;
	char host[256];
	unsigned port;

	if (strcmp(key, "directory") == 0) {
		if (strncmp(value, "https://", 8) != 0 || value[8] == '\0')
			return cs_fail(err, CS_EUSAGE,
			               "[acme] directory = %s: give the https:// URL of the CA's "
			               "ACME directory, as in "
			               "https://acme-v02.api.letsencrypt.org/directory",
			               value);
		return set_str(&a->directory, key, value, err);
	}
	if (strcmp(key, "contact") == 0)
		return set_contact(a, value, err);
	if (strcmp(key, "agree_tos") == 0) {
		if (strcmp(value, "yes") != 0 && strcmp(value, "no") != 0)
			return cs_fail(err, CS_EUSAGE,
			               "[acme] agree_tos = %s: write yes (you agree to the CA's "
			               "terms of service) or no",
			               value);
		a->agree_tos = strcmp(value, "yes") == 0;
		return 0;
	}
	if (strcmp(key, "key") == 0) {
		if (pki_keyspec_parse(value, &spec, err) < 0)
			return cs_err_prefix(err, "[acme] key = %s: ", value);
		return set_str(&a->key, key, value, err);
	}
	if (strcmp(key, "dns_server") == 0) {
		if (!cs_hostport_split(value, host, sizeof(host), &port, false))
			return cs_fail(
			    err, CS_EUSAGE,
			    "[acme] dns_server = %s: write HOST:PORT of the authoritative "
			    "server that takes RFC 2136 updates, as in 192.0.2.53:53",
			    value);
		return set_str(&a->dns_server, key, value, err);
	}
	if (strcmp(key, "check_timeout") == 0) {
		char *end;
		long v = strtol(value, &end, 10);

		if (*value == '\0' || *end != '\0' || v < 1 || v > 600)
			return cs_fail(err, CS_EUSAGE,
			               "[acme] check_timeout = %s: give a whole number of seconds "
			               "from 1 to 600",
			               value);
		a->check_timeout_s = (int)v;
		return 0;
	}
	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
		if (strcmp(key, strings[i].key) == 0)
			return set_str((char **)((char *)a + strings[i].offset), key, value, err);
	return cs_fail(err, CS_EUSAGE,
	               "unknown key '%s' in [acme]; keys are directory, contact, agree_tos, "
	               "ca_file, eab_kid, eab_hmac_file, profile, key, dns_server, "
	               "dns_tsig_key_file, dns_hook and check_timeout",
	               key);
}

/* The EAB HMAC must be base64url (RFC 8555 §7.3.4 gives it so); it is read
 * here only to check its form, and wiped. */
static int check_eab(const cs_acme_config *a, cs_err *err)
{
	char *hmac;
	size_t len;
	int rc = 0;

	if ((a->eab_kid == NULL) != (a->eab_hmac_file == NULL))
		return cs_fail(err, CS_EUSAGE,
		               "[acme] eab_kid and eab_hmac_file go together: give both (the "
		               "CA's key id and a file holding its HMAC key) or neither");
	if (a->eab_hmac_file == NULL)
		return 0;
	/* the secret is read into sodium_malloc'd memory, before the node's
	 * own start has set libsodium up */
	if (sodium_init() < 0)
		return cs_fail(err, CS_EIO, "libsodium cannot start");
	if (cs_secret_file_read("[acme] eab_hmac_file", a->eab_hmac_file, false, &hmac, &len, err) <
	    0)
		return -1;
	if (strspn(hmac, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != len)
		rc = cs_fail(err, CS_EUSAGE,
		             "[acme] eab_hmac_file %s does not hold a base64url HMAC key (letters, "
		             "digits, '-' and '_', no padding); copy the key the CA gave",
		             a->eab_hmac_file);
	cs_secret_free(hmac);
	return rc;
}

static int check_dns(const cs_acme_config *a, cs_err *err)
{
	acme_tsig_key key;
	acme_err e;

	if (a->dns_tsig_key_file != NULL && a->dns_server == NULL)
		return cs_fail(err, CS_EUSAGE,
		               "[acme] dns_tsig_key_file needs dns_server, the server that takes "
		               "the updates it signs");
	if (a->dns_server != NULL && a->dns_tsig_key_file == NULL)
		return cs_fail(
		    err, CS_EUSAGE,
		    "[acme] dns_server needs dns_tsig_key_file, the TSIG key (HMAC-SHA256) "
		    "the server accepts updates with; make one with tsig-keygen");
	if (a->dns_tsig_key_file != NULL) {
		if (acme_tsig_key_load(a->dns_tsig_key_file, &key, &e) != 0) {
			*err = e.err;
			err->code = CS_EUSAGE;
			return cs_err_prefix(err, "[acme] dns_tsig_key_file: ");
		}
		acme_tsig_key_wipe(&key);
	}
	if (a->dns_hook != NULL && (a->dns_hook[0] != '/' || access(a->dns_hook, X_OK) != 0))
		return cs_fail(err, CS_EUSAGE,
		               "[acme] dns_hook = %s: give the absolute path of an executable "
		               "program (it runs as `PROGRAM add|remove NAME VALUE`)",
		               a->dns_hook);
	return 0;
}

int cs_config_acme_check(const struct cs_config *cfg, cs_err *err)
{
	const cs_acme_config *a = &cfg->acme;
	const char *paths[] = {a->ca_file, a->eab_hmac_file, a->dns_tsig_key_file};
	char host[256];
	unsigned port;

	if (cfg->http_listen != NULL &&
	    !cs_hostport_split(cfg->http_listen, host, sizeof(host), &port, true))
		return cs_fail(err, CS_EUSAGE,
		               "[node] http_listen = %s: write ADDR:PORT, as in 0.0.0.0:80",
		               cfg->http_listen);
	if (a->directory == NULL) {
		if (a->ncontact > 0 || a->ca_file || a->eab_kid || a->eab_hmac_file || a->profile ||
		    a->key || a->dns_server || a->dns_hook || a->dns_tsig_key_file)
			return cs_fail(err, CS_EUSAGE,
			               "[acme] needs directory, the https:// URL of the CA's ACME "
			               "directory");
		return 0;
	}
	if (!a->agree_tos)
		return cs_fail(err, CS_EUSAGE,
		               "[acme] agree_tos must be yes to register with the CA: read its "
		               "terms of service, then set agree_tos = yes");
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (paths[i] != NULL && paths[i][0] != '/')
			return cs_fail(err, CS_EUSAGE,
			               "[acme] %s is a relative path; give an absolute one",
			               paths[i]);
	if (a->ca_file != NULL && access(a->ca_file, R_OK) != 0)
		return cs_fail(err, CS_EUSAGE,
		               "[acme] ca_file = %s cannot be read; give the PEM file of the CA "
		               "that signed the ACME server's HTTPS certificate",
		               a->ca_file);
	return check_eab(a, err) < 0 ? -1 : check_dns(a, err);
}

const char *cs_config_acme_key(const cs_acme_config *a)
{
	return a->key != NULL ? a->key : "ec:p256";
}

int cs_config_acme_check_timeout(const cs_acme_config *a)
{
	return a->check_timeout_s > 0 ? a->check_timeout_s : ACME_CHECK_TIMEOUT_DEFAULT;
}

void cs_config_acme_free(cs_acme_config *a)
{
	free(a->directory);
	for (size_t i = 0; i < a->ncontact; i++)
		free(a->contact[i]);
	free(a->contact);
	free(a->ca_file);
	free(a->eab_kid);
	free(a->eab_hmac_file);
	free(a->profile);
	free(a->key);
	free(a->dns_server);
	free(a->dns_tsig_key_file);
	free(a->dns_hook);
	memset(a, 0, sizeof(*a));
}
