/* config_query.c — questions asked of a loaded configuration: who the
 * primary is, and every hostname a certificate must cover. */
#include "config.h"

#include <strings.h>

const char *cs_config_primary(const cs_config *cfg)
{
	if (cfg->role == CS_ROLE_PRIMARY)
		return cfg->name;
	for (size_t i = 0; i < cfg->npeers; i++)
		if (cfg->peers[i].role == CS_ROLE_PRIMARY)
			return cfg->peers[i].name;
	return NULL;
}

static size_t add_host(const char **hosts, size_t n, size_t max, const char *h)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(hosts[i], h) == 0)
			return n;
	if (n < max)
		hosts[n++] = h;
	return n;
}

size_t cs_config_hosts_of(const cs_config *cfg, const cs_peer *peers, size_t npeers,
                          const char **hosts, size_t max)
{
	size_t n = 0;

	n = add_host(hosts, n, max, cfg->site_hostname);
	n = add_host(hosts, n, max, cfg->hostname);
	for (size_t i = 0; i < npeers; i++)
		n = add_host(hosts, n, max, peers[i].hostname);
	return n;
}

size_t cs_config_hosts(const cs_config *cfg, const char **hosts, size_t max)
{
	return cs_config_hosts_of(cfg, cfg->peers, cfg->npeers, hosts, max);
}
