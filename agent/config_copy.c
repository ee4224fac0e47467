/* config_copy.c — copies of the parts of a configuration that are handed to
 * other threads as snapshots (live.h): the peers and [acme]. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

/* *dst = a copy of src (NULL stays NULL); false when out of memory. */
static bool dup_str(char **dst, const char *src)
{
	*dst = src != NULL ? strdup(src) : NULL;
	return src == NULL || *dst != NULL;
}

void cs_config_peers_free(cs_peer *peers, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(peers[i].name);
		free(peers[i].hostname);
		free(peers[i].repl_endpoint);
		free(peers[i].curve_public_key);
		free(peers[i].tls_endpoint);
		free(peers[i].http_endpoint);
	}
	free(peers);
}

int cs_config_peers_copy(const cs_peer *src, size_t n, cs_peer **out, cs_err *err)
{
	cs_peer *v = calloc(n ? n : 1, sizeof(*v));
	bool ok = v != NULL;

	for (size_t i = 0; ok && i < n; i++) {
		v[i].role = src[i].role;
		ok = dup_str(&v[i].name, src[i].name) && dup_str(&v[i].hostname, src[i].hostname) &&
		     dup_str(&v[i].repl_endpoint, src[i].repl_endpoint) &&
		     dup_str(&v[i].curve_public_key, src[i].curve_public_key) &&
		     dup_str(&v[i].tls_endpoint, src[i].tls_endpoint) &&
		     dup_str(&v[i].http_endpoint, src[i].http_endpoint);
	}
	if (!ok) {
		if (v != NULL)
			cs_config_peers_free(v, n);
		return cs_fail(err, CS_EIO, "out of memory");
	}
	*out = v;
	return 0;
}

int cs_config_acme_copy(cs_acme_config *dst, const cs_acme_config *src, cs_err *err)
{
	bool ok;

	memset(dst, 0, sizeof(*dst));
	dst->agree_tos = src->agree_tos;
	dst->check_timeout_s = src->check_timeout_s;
	ok = dup_str(&dst->directory, src->directory) && dup_str(&dst->ca_file, src->ca_file) &&
	     dup_str(&dst->eab_kid, src->eab_kid) &&
	     dup_str(&dst->eab_hmac_file, src->eab_hmac_file) &&
	     dup_str(&dst->profile, src->profile) && dup_str(&dst->key, src->key) &&
	     dup_str(&dst->dns_server, src->dns_server) &&
	     dup_str(&dst->dns_tsig_key_file, src->dns_tsig_key_file) &&
	     dup_str(&dst->dns_hook, src->dns_hook) &&
	     (src->ncontact == 0 || (dst->contact = calloc(src->ncontact, sizeof(char *))) != NULL);
	for (size_t i = 0; ok && i < src->ncontact; i++, dst->ncontact++)
		ok = dup_str(&dst->contact[i], src->contact[i]);
	if (!ok) {
		cs_config_acme_free(dst);
		return cs_fail(err, CS_EIO, "out of memory");
	}
	return 0;
}
