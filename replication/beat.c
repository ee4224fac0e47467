/* beat.c — the heartbeat both ways: the beat this node sends every peer
 * (its role, position, digest, epoch history and, from the leader, what it
 * hears of every node), and what a peer's beat tells about it. */
#include "repl_int.h"

#include <inttypes.h>
#include <string.h>

/* What the leader relays of every node but p: views[i] and pos[i] are
 * filled for each; returns how many. */
static size_t cluster_views(const repl *r, const struct peer *p, Certsync__NodeView *views,
                            Certsync__Position *pos, Certsync__NodeView **vp)
{
	int64_t now = repl_now();
	size_t n = 0;

	for (size_t i = 0; i < r->npeers; i++) {
		const struct peer *q = &r->peers[i];

		if (q == p)
			continue;
		views[n] = (Certsync__NodeView)CERTSYNC__NODE_VIEW__INIT;
		pos[n] = (Certsync__Position)CERTSYNC__POSITION__INIT;
		views[n].name = q->name;
		views[n].reachable = q->s.heard != 0 && now - q->s.heard <= r->dead_ms;
		pos[n].epoch = q->s.applied.epoch;
		pos[n].seq = q->s.applied.seq;
		views[n].applied = &pos[n];
		views[n].digest.data = (uint8_t *)q->s.digest;
		views[n].digest.len = CS_DIGEST_LEN;
		vp[n] = &views[n];
		n++;
	}
	return n;
}

void send_beat(repl *r, struct peer *p, bool via_router)
{
	Certsync__Envelope env = CERTSYNC__ENVELOPE__INIT;
	Certsync__Beat b = CERTSYNC__BEAT__INIT;
	Certsync__Position pos = CERTSYNC__POSITION__INIT;
	Certsync__EpochStart h[BEAT_HISTORY], *hp[BEAT_HISTORY];
	Certsync__NodeView views[MAX_PEERS], *vp[MAX_PEERS];
	Certsync__Position vpos[MAX_PEERS];
	size_t n = r->loc.nhist < BEAT_HISTORY ? r->loc.nhist : BEAT_HISTORY;
	bool follows =
	    !via_router && p == r->f.leader && r->f.state != F_IDLE && r->f.state != F_REFUSED;

	/* repl_role and the wire's Role list the roles in the same order. */
	b.role = (Certsync__Role)r->role;
	b.leading = r->leading;
	pos.epoch = r->loc.applied.epoch;
	pos.seq = r->loc.applied.seq;
	b.applied = &pos;
	/* the newest n; hist is NULL when there are none */
	for (size_t i = 0; i < n; i++) {
		const cs_epoch_start *e = &r->loc.hist[r->loc.nhist - n + i];

		h[i] = (Certsync__EpochStart)CERTSYNC__EPOCH_START__INIT;
		h[i].epoch = e->epoch;
		h[i].seq = e->seq;
		hp[i] = &h[i];
	}
	b.n_history = n;
	b.history = hp;
	b.session = follows ? r->f.session : 0;
	b.refusal = r->refusal;
	b.digest.data = r->loc.digest;
	b.digest.len = CS_DIGEST_LEN;
	if (r->leading) {
		b.n_cluster = cluster_views(r, p, views, vpos, vp);
		b.cluster = vp;
	}
	env.body_case = CERTSYNC__ENVELOPE__BODY_BEAT;
	env.beat = &b;
	wire_send(r, p, &env, via_router);
}

void repl_beat_all(repl *r)
{
	for (size_t i = 0; i < r->npeers; i++) {
		struct peer *p = &r->peers[i];

		if (p->dealer != NULL)
			send_beat(r, p, false);
		if (p->ridlen > 0)
			send_beat(r, p, true);
	}
}

bool repl_heard_recently(const repl *r, const struct peer *p)
{
	return p->s.heard != 0 && repl_now() - p->s.heard <= r->dead_ms;
}

/* ---- a peer's beat ---- */

/* The leader's view of the nodes, for those this node has no link to. */
static void take_cluster_views(repl *r, const Certsync__Beat *b, int64_t now)
{
	for (size_t i = 0; i < b->n_cluster; i++) {
		const Certsync__NodeView *nv = b->cluster[i];
		struct peer *q = wire_peer_by_name(r, nv->name);

		if (q == NULL || nv->applied == NULL || nv->digest.len != CS_DIGEST_LEN)
			continue;
		q->s.relayed_at = now;
		q->s.relayed_reachable = nv->reachable;
		q->s.relayed_applied = (cs_pos){nv->applied->epoch, nv->applied->seq};
		memcpy(q->s.relayed_digest, nv->digest.data, CS_DIGEST_LEN);
	}
}

static void note_led(struct peer *p, uint64_t epoch)
{
	for (size_t i = 0; i < p->nled; i++)
		if (p->led[i] == epoch)
			return;
	if (p->nled == LED_HISTORY) {
		memmove(p->led, p->led + 1, (LED_HISTORY - 1) * sizeof(p->led[0]));
		p->nled--;
	}
	p->led[p->nled++] = epoch;
}

void repl_on_beat(repl *r, struct peer *p, const envelope *env, bool router)
{
	const Certsync__Beat *b = env->beat;
	cs_pos applied = {0, 0};
	int64_t now = repl_now();

	/* A primary of an epoch we left is fenced: what it says of itself or
	 * of the cluster is not taken, so it neither counts as heard nor
	 * blocks a promotion.  It learns of the new epoch from our beats. */
	if (b->leading && env->epoch < r->loc.epoch) {
		wire_drop(r, p, &r->cnt.stale_epoch,
		          "it claims to lead epoch %" PRIu64 ", older than %" PRIu64, env->epoch,
		          r->loc.epoch);
		return;
	}
	/* A traffic node never leads: its claim could only block a promotion. */
	if (b->leading && p->role == REPL_TRAFFIC) {
		wire_drop(r, p, &r->cnt.bad_epoch, "traffic node %s claims to lead epoch %" PRIu64,
		          p->name, env->epoch);
		return;
	}
	if (b->applied != NULL)
		applied = (cs_pos){b->applied->epoch, b->applied->seq};
	if (applied.seq != p->s.applied.seq)
		p->moved = now;
	p->s.heard = now;
	p->s.leading = b->leading;
	p->s.epoch = env->epoch;
	p->s.applied = applied;
	if (b->digest.len == CS_DIGEST_LEN)
		memcpy(p->s.digest, b->digest.data, CS_DIGEST_LEN);
	snprintf(p->s.refusal, sizeof(p->s.refusal), "%s", b->refusal);
	if (b->leading) {
		take_cluster_views(r, b, now);
		note_led(p, env->epoch);
	}
	if (router) {
		p->s.follows = b->session != 0 && r->leading;
		lead_beat(r, p, b);
	}
	follow_choose(r);
}
