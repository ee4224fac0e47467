/* status.c — what the agent reads of the view the replication thread
 * publishes under r->mu: whether it is starting, refusing or leading, the
 * leader's name, and the status JSON (this node and each peer). */
#include "repl_int.h"

#include <stdio.h>

#include "../common/hex.h"

bool repl_starting(repl *r)
{
	bool starting;

	pthread_mutex_lock(&r->mu);
	starting = r->view.starting;
	pthread_mutex_unlock(&r->mu);
	return starting;
}

bool repl_refusing(repl *r)
{
	bool refusing;

	pthread_mutex_lock(&r->mu);
	refusing = r->view.refusal[0] != '\0';
	pthread_mutex_unlock(&r->mu);
	return refusing;
}

bool repl_leading(repl *r)
{
	bool leading;

	pthread_mutex_lock(&r->mu);
	leading = r->view.leading;
	pthread_mutex_unlock(&r->mu);
	return leading;
}

int repl_leader(repl *r, char *name, size_t len)
{
	int leader;

	pthread_mutex_lock(&r->mu);
	leader = r->view.leader;
	pthread_mutex_unlock(&r->mu);
	if (leader == -1)
		return 1;
	snprintf(name, len, "%s", leader == -2 ? r->name : r->peers[leader].name);
	return 0;
}

/* A peer as this node knows it: from its own beats while it is heard, else
 * from what the leader relays (traffic nodes have no link to each other).
 * Its position is (epoch of its last applied entry, seq), as this node's own
 * is, so that positions compare; the highest epoch it has seen, which runs
 * ahead of that after a promotion, is seen_epoch. */
static json_t *peer_json(const repl *r, size_t i, int64_t now, const cs_pos *head)
{
	const struct peer_state *s = &r->view.peers[i];
	bool direct = s->heard != 0 && now - s->heard <= r->dead_ms;
	bool relayed = !direct && s->relayed_at != 0 && now - s->relayed_at <= r->dead_ms;
	bool known = direct || relayed;
	const cs_pos *at = relayed ? &s->relayed_applied : &s->applied;
	char digest[2 * CS_DIGEST_LEN + 1];

	cs_hex(relayed ? s->relayed_digest : s->digest, CS_DIGEST_LEN, digest);
	return json_pack(
	    "{s:s, s:s, s:b, s:s?, s:o, s:b, s:I, s:o, s:I, s:o, s:o, s:b, s:o}", "name",
	    r->peers[i].name, "role", repl_role_name(r->peers[i].role), "reachable",
	    direct || (relayed && s->relayed_reachable), "heard_via",
	    direct    ? "direct"
	    : relayed ? "leader"
	              : NULL,
	    "last_heard_ms", s->heard ? json_integer((json_int_t)(now - s->heard)) : json_null(),
	    "leading", s->leading, "epoch", (json_int_t)at->epoch, "seen_epoch",
	    direct ? json_integer((json_int_t)s->epoch) : json_null(), "seq", (json_int_t)at->seq,
	    "digest", known && (direct || s->relayed_reachable) ? json_string(digest) : json_null(),
	    "lag",
	    head && known ? json_integer((json_int_t)head->seq - (json_int_t)at->seq) : json_null(),
	    "follows", s->follows, "refusal",
	    s->refusal[0] ? json_string(s->refusal) : json_null());
}

json_t *repl_status(repl *r)
{
	const struct view *v = &r->view;
	const struct counters *c = &v->cnt;
	int64_t now = repl_now();
	const cs_pos *head;
	json_t *peers = json_array(), *j;

	pthread_mutex_lock(&r->mu);
	head = v->leader == -2 ? &v->applied : v->leader >= 0 ? &v->peers[v->leader].applied : NULL;
	for (size_t i = 0; i < r->npeers; i++)
		json_array_append_new(peers, peer_json(r, i, now, head));
	j = json_pack("{s:s, s:s, s:b, s:b, s:I, s:o, s:s, s:o, s:o, s:{s:I, s:I, s:I, s:I, s:I, "
	              "s:I, s:I, s:I}}",
	              "role",
	              v->leading ? "primary"
	                         : repl_role_name(r->role == REPL_PRIMARY ? REPL_BACKUP : r->role),
	              "configured_role", repl_role_name(r->role), "leading", v->leading, "starting",
	              v->starting, "epoch", (json_int_t)v->epoch, "leader",
	              v->leader == -2  ? json_string(r->name)
	              : v->leader >= 0 ? json_string(r->peers[v->leader].name)
	                               : json_null(),
	              "sync",
	              v->starting  ? "starting"
	              : v->leading ? "leading"
	                           : follow_state_name(v->fstate),
	              "refusal", v->refusal[0] ? json_string(v->refusal) : json_null(), "peers",
	              peers, "dropped", "undecodable", (json_int_t)c->undecodable, "oversized",
	              (json_int_t)c->oversized, "unknown_key", (json_int_t)c->unknown_key,
	              "wrong_cluster", (json_int_t)c->wrong_cluster, "stale_epoch",
	              (json_int_t)c->stale_epoch, "bad_entry", (json_int_t)c->bad_entry,
	              "unauthenticated", (json_int_t)c->unauthed, "bad_epoch",
	              (json_int_t)c->bad_epoch);
	pthread_mutex_unlock(&r->mu);
	return j;
}
