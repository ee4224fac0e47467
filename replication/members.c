/* members.c — the peers follow the cluster's membership while the node
 * runs.  The agent hands the replication the membership it read from the
 * store (repl_set_peers) whenever it changes; the thread then admits new
 * members (the ZAP handler asks for their keys at once), links to new
 * primary-capable ones, and forgets removed ones: their key is refused from
 * then on and their connection to our ROUTER is cut.  A removed peer keeps
 * its slot, marked removed, so that waiters' bit masks and the pointers the
 * follower holds stay valid. */
#include "repl_int.h"

#include <stdlib.h>
#include <string.h>

#include "../common/log.h"

static void free_list(repl_peer *list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)list[i].name);
		free((char *)list[i].endpoint);
	}
	free(list);
}

int repl_set_peers(repl *r, const repl_peer *peers, size_t n, cs_err *err)
{
	repl_peer *copy = calloc(n ? n : 1, sizeof(*copy));

	if (n > MAX_PEERS) {
		free(copy);
		return cs_fail(err, CS_EREFUSED, "%zu peers: a cluster has at most %d", n,
		               MAX_PEERS);
	}
	for (size_t i = 0; copy != NULL && i < n; i++) {
		copy[i] = peers[i];
		copy[i].name = strdup(peers[i].name);
		copy[i].endpoint = peers[i].endpoint ? strdup(peers[i].endpoint) : NULL;
		if (copy[i].name == NULL || (peers[i].endpoint && copy[i].endpoint == NULL)) {
			free_list(copy, i + 1);
			copy = NULL;
		}
	}
	if (copy == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	pthread_mutex_lock(&r->mu);
	free_list(r->members, r->nmembers);
	r->members = copy;
	r->nmembers = n;
	r->members_pending = true;
	pthread_mutex_unlock(&r->mu);
	wake_thread(r);
	return 0;
}

void members_discard(repl *r)
{
	free_list(r->members, r->nmembers);
	r->members = NULL;
	r->nmembers = 0;
}

static bool same(const struct peer *p, const repl_peer *c)
{
	return p->role == c->role && memcmp(p->pub, c->public_key, REPL_KEY_LEN) == 0 &&
	       (p->endpoint == NULL ? c->endpoint == NULL
	                            : c->endpoint != NULL && strcmp(p->endpoint, c->endpoint) == 0);
}

static const repl_peer *find(const repl_peer *list, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].name, name) == 0)
			return &list[i];
	return NULL;
}

static void forget(repl *r, struct peer *p)
{
	uint64_t bit = (uint64_t)1 << (p - r->peers);

	if (r->f.leader == p)
		follow_stop(r);
	wire_unlink(r, p);
	/* Nobody waits for a node that left. */
	for (struct waiter *w = r->waiters; w != NULL; w = w->next)
		w->need &= ~bit;
	p->session = 0;
	p->sent = 0;
	p->nled = 0;
	pthread_mutex_lock(&r->mu);
	p->removed = true;
	memset(&p->s, 0, sizeof(p->s));
	pthread_mutex_unlock(&r->mu);
}

/* A new member, or one whose role, key or endpoint changed: its slot (an
 * old one of the same name, else a new one) takes the membership's word. */
static void admit(repl *r, const repl_peer *c)
{
	struct peer *p = NULL;
	char *endpoint = c->endpoint ? strdup(c->endpoint) : NULL;
	cs_err err;

	for (size_t i = 0; i < r->npeers && p == NULL; i++)
		if (strcmp(r->peers[i].name, c->name) == 0)
			p = &r->peers[i];
	if (p == NULL && r->npeers < MAX_PEERS) {
		p = &r->peers[r->npeers];
		memset(p, 0, sizeof(*p));
		p->name = strdup(c->name);
		p->removed = true; /* until it is complete */
		if (p->name == NULL)
			p = NULL;
	}
	if (p == NULL || (c->endpoint != NULL && endpoint == NULL)) {
		free(endpoint);
		cs_error("repl: cannot admit member %s: out of memory or more than %d peers",
		         c->name, MAX_PEERS);
		return;
	}
	free(p->endpoint);
	p->endpoint = endpoint;
	memcpy(p->pub, c->public_key, REPL_KEY_LEN);
	if (c->role != CS_ROLE_TRAFFIC && p->endpoint != NULL) {
		if (wire_link(r, p, 0, &err) != 0)
			cs_error("repl: member %s: %s", c->name, err.msg);
		r->relink = true;
	}
	pthread_mutex_lock(&r->mu);
	p->role = c->role;
	p->removed = false;
	if (p == &r->peers[r->npeers])
		r->npeers++;
	pthread_mutex_unlock(&r->mu);
	cs_info("repl: %s (%s) is a member: its key is admitted", c->name, cs_role_name(c->role));
}

void members_take(repl *r)
{
	repl_peer *list;
	size_t n;

	pthread_mutex_lock(&r->mu);
	if (!r->members_pending) {
		pthread_mutex_unlock(&r->mu);
		return;
	}
	list = r->members;
	n = r->nmembers;
	r->members = NULL;
	r->nmembers = 0;
	r->members_pending = false;
	pthread_mutex_unlock(&r->mu);
	for (size_t i = 0; i < r->npeers; i++) {
		struct peer *p = &r->peers[i];
		const repl_peer *c = find(list, n, p->name);

		if (p->removed || (c != NULL && same(p, c)))
			continue;
		forget(r, p);
		if (c == NULL)
			cs_info("repl: %s is no longer a member: its key is refused from now on",
			        p->name);
	}
	for (size_t i = 0; i < n; i++) {
		struct peer *p = wire_peer_by_name(r, list[i].name);

		if (p == NULL)
			admit(r, &list[i]);
	}
	free_list(list, n);
}
