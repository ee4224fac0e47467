/* acme_endpoints.c — which nodes the pre-validation check asks before the CA
 * is told to validate: this node's own listener and every peer's configured
 * endpoint, except a peer the replication does not hear.  A node that is
 * down (the old primary after a failover) cannot answer the CA either;
 * waiting for it would only stall every renewal until it is back, which is
 * when renewals matter most.  The peers left out are logged. */
#include "acme_runner_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "config.h"

/* The address the check reaches this node's own listener at (an address
 * of any is reached on loopback). */
static void own_address(const char *listen, char own[300])
{
	if (strncmp(listen, "0.0.0.0:", 8) == 0)
		snprintf(own, 300, "127.0.0.1:%s", listen + 8);
	else if (strncmp(listen, "[::]:", 5) == 0)
		snprintf(own, 300, "[::1]:%s", listen + 5);
	else
		snprintf(own, 300, "%s", listen);
}

int acme_check_endpoints(acme_ctx *ctx, acme_chal_type type, acme_endpoints *out, acme_err *e)
{
	const cs_config *cfg = ctx->cfg;
	const cs_peers_snap *ps = ctx->peers;
	bool http = type == ACME_CHAL_HTTP01;
	const char *mine = http ? cfg->http_listen : cfg->ntls_listen ? cfg->tls_listen[0] : NULL;
	cs_err err = {0};

	memset(out, 0, sizeof(*out));
	if (mine == NULL) {
		cs_fail(&err, CS_EUSAGE, "%s cannot answer %s: it has no %s; add it to [node]",
		        cfg->name, acme_chal_name(type), http ? "http_listen" : "tls_listen");
		return acme_local_fail(e, ACME_ERR_OPERATOR, &err);
	}
	out->eps = calloc(ps->n + 1, sizeof(char *));
	out->names = calloc(ps->n + 1, sizeof(char *));
	if (out->eps == NULL || out->names == NULL) {
		acme_endpoints_free(out);
		return acme_local_fail(e, ACME_ERR_TRANSIENT, &(cs_err){CS_EIO, "out of memory"});
	}
	own_address(mine, out->own);
	out->eps[0] = out->own;
	out->names[0] = cfg->name;
	out->n = 1;
	for (size_t i = 0; i < ps->n; i++) {
		const char *ep = http ? ps->v[i].http_endpoint : ps->v[i].tls_endpoint;

		if (ep == NULL) {
			acme_endpoints_free(out);
			cs_fail(&err, CS_EUSAGE,
			        "node %s cannot be checked for %s: [peer %s] has no %s; add it",
			        ps->v[i].name, acme_chal_name(type), ps->v[i].name,
			        http ? "http_endpoint" : "tls_endpoint");
			return acme_local_fail(e, ACME_ERR_OPERATOR, &err);
		}
		if (!acme_runner_heard(ctx->r, ps->v[i].name)) {
			cs_warn("acme: node %s is not heard: the %s check leaves it out",
			        ps->v[i].name, acme_chal_name(type));
			continue;
		}
		out->names[out->n] = ps->v[i].name;
		out->eps[out->n++] = ep;
	}
	return 0;
}

void acme_endpoints_name(const acme_endpoints *ep, acme_err *e)
{
	for (size_t k = 0; k < ep->n; k++)
		if (strstr(e->err.msg, ep->eps[k]) != NULL) {
			cs_err_prefix(&e->err, "node %s is not ready: ", ep->names[k]);
			return;
		}
}

void acme_endpoints_free(acme_endpoints *ep)
{
	free(ep->eps);
	free(ep->names);
	ep->eps = NULL;
	ep->names = NULL;
	ep->n = 0;
}
