/* members.c — the cluster's membership record and the node following it.
 *
 * The primary keeps the list of nodes in the replicated settings under
 * "members"; every node reads it after each change and, when it moved,
 * takes it as its peers: the configuration's [peer] sections only seed it,
 * and where they disagree on who is a member, a role, a hostname or a key
 * the membership wins and the log says so.  A [peer] section's endpoints
 * stay this node's route to that member. */
#include "members.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <zmq.h>

#include "../common/hostport.h"
#include "../common/log.h"
#include "live.h"
#include "ops.h"

/* Where others reach an address this node binds: its hostname when it binds
 * every address, else the address itself. */
static void reach(const char *listen, const char *hostname, const char *scheme, char *out,
                  size_t cap)
{
	char host[256];
	unsigned port;
	size_t skip = strlen(scheme);

	*out = '\0';
	if (listen == NULL || strncmp(listen, scheme, skip) != 0 ||
	    !cs_hostport_split(listen + skip, host, sizeof(host), &port, false))
		return;
	if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0)
		snprintf(host, sizeof(host), "%s", hostname);
	snprintf(out, cap, strchr(host, ':') ? "%s[%s]:%u" : "%s%s:%u", scheme, host, port);
}

int members_from_config(const cs_config *cfg, rec_members *m, cs_err *err)
{
	uint8_t sec[REC_MEMBER_KEY_LEN];
	rec_member *self = &m->v[0];
	int rc;

	memset(self, 0, sizeof(*self));
	snprintf(self->name, sizeof(self->name), "%s", cfg->name);
	snprintf(self->role, sizeof(self->role), "%s", cs_role_name(cfg->role));
	snprintf(self->hostname, sizeof(self->hostname), "%s", cfg->hostname);
	reach(cfg->repl_listen, cfg->hostname, "tcp://", self->repl_endpoint,
	      sizeof(self->repl_endpoint));
	reach(cfg->ntls_listen ? cfg->tls_listen[0] : NULL, cfg->hostname, "", self->tls_endpoint,
	      sizeof(self->tls_endpoint));
	rc = repl_key_load(cfg->curve_secret_file, self->key, sec, err);
	sodium_memzero(sec, sizeof(sec));
	if (rc < 0)
		return -1;
	m->n = 1;
	for (size_t i = 0; i < cfg->npeers && m->n < REC_MEMBERS_MAX; i++) {
		const cs_peer *p = &cfg->peers[i];
		rec_member *x = &m->v[m->n++];

		memset(x, 0, sizeof(*x));
		snprintf(x->name, sizeof(x->name), "%s", p->name);
		snprintf(x->role, sizeof(x->role), "%s", cs_role_name(p->role));
		snprintf(x->hostname, sizeof(x->hostname), "%s", p->hostname);
		snprintf(x->repl_endpoint, sizeof(x->repl_endpoint), "%s",
		         p->repl_endpoint ? p->repl_endpoint : "");
		snprintf(x->tls_endpoint, sizeof(x->tls_endpoint), "%s",
		         p->tls_endpoint ? p->tls_endpoint : "");
		if (p->curve_public_key == NULL ||
		    repl_key_parse(p->curve_public_key, x->key, err) < 0)
			return cs_fail(err, CS_EUSAGE,
			               "[peer %s] has no curve_public_key: a member needs one",
			               p->name);
	}
	return 0;
}

int ops_members_seed(struct cs_node *node, cs_txn *txn, cs_err *err)
{
	rec_members *m;
	int rc;

	if (node->cfg->repl_listen == NULL)
		return 0;
	if ((m = malloc(sizeof(*m))) == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	rc = members_from_config(node->cfg, m, err);
	if (rc == 0)
		rc = rec_members_put(txn, m, err);
	free(m);
	return rc;
}

void ops_members_ensure(struct cs_node *node)
{
	cs_txn *txn;
	cs_err err;
	int rc;

	if (node->members_known || node->repl == NULL || !ops_leading(node) ||
	    repl_starting(node->repl) || cs_store_batching(node->store))
		return;
	if (cs_txn_begin(node->store, true, &txn, &err) < 0) {
		cs_error("membership: %s", err.msg);
		return;
	}
	rc = cs_txn_get(txn, CS_TBL_SETTINGS, REC_SETTINGS_MEMBERS, strlen(REC_SETTINGS_MEMBERS),
	                &(const void *){0}, &(size_t){0}, &err);
	if (rc == 1 && ops_members_seed(node, txn, &err) == 0) {
		if (ops_commit(node, txn, "membership seeded from the configuration", &err) < 0)
			cs_error("membership: %s", err.msg);
		return;
	}
	cs_txn_abort(txn);
	if (rc != 0)
		cs_error("membership: %s", err.msg);
	node->members_known = true; /* tried once: a failure is not retried every pass */
}

/* ---- following the record ------------------------------------------------ */

static char *dup_or_null(const char *s)
{
	return s[0] != '\0' ? strdup(s) : NULL;
}

/* What differs between the peers the node followed and the membership,
 * logged once per difference: against the configuration's [peer] sections
 * when seed (the first membership the node reads), else against the
 * membership followed until then. */
static void log_differences(const cs_peer *peers, size_t npeers, const char *self,
                            const rec_members *m, bool seed)
{
	char z85[REPL_Z85_LEN + 1];

	/* Members joining and leaving later are logged by the replication,
	 * which admits and refuses their keys. */
	for (size_t i = 0; seed && i < npeers; i++)
		if (rec_members_find(m, peers[i].name) == NULL)
			cs_warn(
			    "membership: %s is not a member of the cluster but in the "
			    "configuration's [peer] sections: the replicated membership wins, %s "
			    "is no peer and its key is refused",
			    peers[i].name, peers[i].name);
	for (size_t i = 0; i < m->n; i++) {
		const rec_member *x = &m->v[i];
		const cs_peer *p = NULL;

		if (strcmp(x->name, self) == 0)
			continue;
		for (size_t j = 0; j < npeers && p == NULL; j++)
			if (strcmp(peers[j].name, x->name) == 0)
				p = &peers[j];
		zmq_z85_encode(z85, x->key, REC_MEMBER_KEY_LEN);
		if (p == NULL && seed)
			cs_info(
			    "membership: %s (%s, %s) is a member of the cluster but not in the "
			    "configuration's [peer] sections: the replicated membership wins, it "
			    "is a peer",
			    x->name, x->role, x->hostname);
		else if (p == NULL)
			continue;
		else if (strcmp(cs_role_name(p->role), x->role) != 0 ||
		         strcmp(p->hostname, x->hostname) != 0 ||
		         strcmp(p->curve_public_key ? p->curve_public_key : "", z85) != 0)
			cs_warn("membership: %s differs from %s (role, hostname or key): the "
			        "replicated membership wins",
			        x->name, seed ? "its [peer] section" : "what this node followed");
	}
	if (rec_members_find(m, self) == NULL)
		cs_error("membership: this node, %s, is not a member of the cluster: the other "
		         "nodes refuse its key",
		         self);
}

static const cs_peer *seed_peer(const struct cs_node *node, const char *name)
{
	for (size_t i = 0; i < node->nseed; i++)
		if (strcmp(node->seed[i].name, name) == 0)
			return &node->seed[i];
	return NULL;
}

/* Where this node reaches a member: the endpoint its own [peer] section
 * gives, when it gives one (the route from here: NAT, a relay, split DNS),
 * else the membership's. */
static char *endpoint(const char *own, const char *member, const char *name, const char *what)
{
	if (own == NULL)
		return dup_or_null(member);
	if (strcmp(own, member) != 0)
		cs_info("membership: this node reaches %s at %s (%s in its [peer %s] section); the "
		        "membership's is %s",
		        name, own, what, name, member[0] ? member : "none");
	return strdup(own);
}

/* Every member but this node as configuration peers, and as the
 * replication's peers (pointing into the former). */
static int to_peers(const struct cs_node *node, const rec_members *m, cs_peer **out, repl_peer *rp,
                    size_t *n)
{
	const cs_config *cfg = node->cfg;
	cs_peer *peers = calloc(m->n ? m->n : 1, sizeof(*peers));
	size_t k = 0;

	if (peers == NULL)
		return -1;
	for (size_t i = 0; i < m->n; i++) {
		const rec_member *x = &m->v[i];
		cs_peer *p = &peers[k];
		const cs_peer *own;

		if (strcmp(x->name, cfg->name) == 0)
			continue;
		p->name = strdup(x->name);
		cs_role_parse(x->role, &p->role); /* rec_members_get checked it */
		p->hostname = strdup(x->hostname);
		own = seed_peer(node, x->name);
		p->repl_endpoint = endpoint(own ? own->repl_endpoint : NULL, x->repl_endpoint,
		                            x->name, "repl_endpoint");
		p->tls_endpoint = endpoint(own ? own->tls_endpoint : NULL, x->tls_endpoint, x->name,
		                           "tls_endpoint");
		/* The membership knows no HTTP listener: this node's [peer]
		 * section says where it reaches the member's (ACME http-01). */
		p->http_endpoint =
		    own != NULL && own->http_endpoint != NULL ? strdup(own->http_endpoint) : NULL;
		p->curve_public_key = malloc(REPL_Z85_LEN + 1);
		k++;
		if (p->name == NULL || p->hostname == NULL || p->curve_public_key == NULL ||
		    (own != NULL && own->http_endpoint != NULL && p->http_endpoint == NULL)) {
			cs_config_peers_free(peers, k);
			return -1;
		}
		zmq_z85_encode(p->curve_public_key, x->key, REC_MEMBER_KEY_LEN);
		rp[k - 1] = (repl_peer){p->name, p->role, p->repl_endpoint, {0}};
		memcpy(rp[k - 1].public_key, x->key, REC_MEMBER_KEY_LEN);
	}
	*out = peers;
	*n = k;
	return 0;
}

void ops_members_sync(struct cs_node *node)
{
	uint8_t hash[32];
	rec_members *m = calloc(1, sizeof(*m)); /* zeroed: its bytes are hashed */
	repl_peer rp[REC_MEMBERS_MAX];
	cs_peer *peers;
	size_t n;
	cs_txn *txn;
	cs_err err;
	int rc = -1;

	if (m == NULL || cs_txn_begin(node->store, false, &txn, &err) < 0) {
		free(m);
		return;
	}
	rc = rec_members_get(txn, m, &err);
	cs_txn_abort(txn);
	if (rc != 0) {
		if (rc < 0)
			cs_error("membership: %s", err.msg);
		free(m);
		return;
	}
	crypto_generichash(hash, sizeof(hash), (const uint8_t *)m->v, m->n * sizeof(m->v[0]), NULL,
	                   0);
	if (node->members_known && memcmp(hash, node->members_hash, sizeof(hash)) == 0) {
		free(m);
		return;
	}
	if (!node->members_known) {
		/* The configuration's [peer] sections: kept for their endpoints. */
		node->seed = node->cfg->peers;
		node->nseed = node->cfg->npeers;
		node->cfg->peers = NULL;
		node->cfg->npeers = 0;
	}
	if (to_peers(node, m, &peers, rp, &n) < 0) {
		cs_error("membership: out of memory; the peers stay as they were");
		free(m);
		return;
	}
	log_differences(node->members_known ? node->cfg->peers : node->seed,
	                node->members_known ? node->cfg->npeers : node->nseed, node->cfg->name, m,
	                !node->members_known);
	if (node->repl != NULL && repl_set_peers(node->repl, rp, n, &err) < 0) {
		cs_error("membership: %s; the peers stay as they were", err.msg);
		cs_config_peers_free(peers, n);
		free(m);
		return;
	}
	cs_config_peers_free(node->cfg->peers, node->cfg->npeers);
	node->cfg->peers = peers;
	node->cfg->npeers = n;
	/* the workers' view: the list they may be reading stays theirs */
	if (cs_live_set_peers(node->live, peers, n, &err) < 0)
		cs_error("membership: %s; the checks off the loop still see the peers before",
		         err.msg);
	memcpy(node->members_hash, hash, sizeof(hash));
	node->members_known = true;
	node->mon_stale = true;
	free(m);
}

void ops_members_close(struct cs_node *node)
{
	cs_config_peers_free(node->seed, node->nseed);
	node->seed = NULL;
	node->nseed = 0;
}
