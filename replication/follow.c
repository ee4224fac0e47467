/* follow.c — the follower's side of replication: choosing whom to follow,
 * the session with that primary, applying its entries, loading its
 * snapshots, and refusing a cluster whose passphrase is not ours.
 *
 * The session is a state machine (the table below): a message that does not
 * fit the state it arrives in is ignored, so leftovers of an older session or
 * a confused primary never reach the store.  A snapshot is loaded in one
 * write transaction held from the welcome to its end: a crash or a lost
 * chunk leaves the store as it was. */
#include "repl_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../common/hex.h"
#include "../common/log.h"

/* Diverged entries one report to the primary carries at most (the first
 * of the table that are not applied yet). */
#define DIVERGED_REPORT_MAX 64

static const char *const fstate_names[] = {
    [F_IDLE] = "idle",        [F_WAIT] = "waiting",    [F_SNAP] = "snapshot",
    [F_STREAM] = "streaming", [F_REFUSED] = "refused",
};

const char *follow_state_name(enum fstate s)
{
	return fstate_names[s];
}

static void abort_snapshot(repl *r)
{
	if (r->f.snap != NULL) {
		cs_txn_abort(r->f.snap);
		r->f.snap = NULL;
	}
}

/* A new session with the current leader: its first beat says so. */
static enum fstate restart(repl *r)
{
	abort_snapshot(r);
	if (r->f.leader == NULL)
		return F_IDLE;
	do
		randombytes_buf(&r->f.session, sizeof(r->f.session));
	while (r->f.session == 0);
	r->f.since = repl_now();
	r->f.state = F_WAIT;
	send_beat(r, r->f.leader, false);
	return F_WAIT;
}

/* Sends the primary what our log held after the fork, until it has it. */
static void report_diverged(repl *r);

/* ---- the cluster check ---- */

/* Whether kdf, the primary's cluster settings, are ours: the same cluster
 * id and key-check value as our store's, or, before our store has any, the
 * key our passphrase gives under the primary's salt and limits.  Sets
 * r->refusal when not. */
static int check_cluster(repl *r, const Certsync__KdfParams *kdf)
{
	const Certsync__KdfParams *own = r->loc.kdf;
	cs_key *key;
	cs_err err;
	int rc;

	if (kdf->key_check.len != CS_KEYCHECK_LEN || kdf->salt.len != CS_SALT_LEN ||
	    kdf->cluster_id.len == 0) {
		snprintf(r->refusal, sizeof(r->refusal),
		         "the primary's cluster settings are malformed");
		return -1;
	}
	if (own != NULL) {
		if (own->cluster_id.len != kdf->cluster_id.len ||
		    memcmp(own->cluster_id.data, kdf->cluster_id.data, kdf->cluster_id.len) != 0)
			snprintf(r->refusal, sizeof(r->refusal),
			         "this node's store belongs to another cluster than the primary's");
		else
			return rekey_find(r, kdf); /* the same key, or a rekey */
		return -1;
	}
	if (r->keycheck > 0)
		return 0;
	if (r->keycheck < 0) {
		snprintf(r->refusal, sizeof(r->refusal),
		         "cluster passphrase does not match the primary's");
		return -1;
	}
	rc = r->pass == NULL ? -1 : rec_cluster_key(kdf, r->pass, r->passlen, &key, &err);
	if (rc < 0) {
		snprintf(r->refusal, sizeof(r->refusal), "cannot derive the cluster key: %.150s",
		         r->pass == NULL ? "no passphrase was given" : err.msg);
		return -1;
	}
	/* The cluster's passphrase may have changed since this node was set
	 * up (`cluster rekey`): its other passphrases may give the key. */
	if (rc == 1 && r->find_key != NULL && r->find_key(r->find_key_ctx, kdf, &key, &err) == 0)
		rc = 0;
	r->keycheck = rc == 0 ? 1 : -1;
	cs_secret_free(r->pass);
	r->pass = NULL;
	if (r->keycheck < 0) {
		snprintf(r->refusal, sizeof(r->refusal),
		         "cluster passphrase does not match the primary's");
		return -1;
	}
	pthread_mutex_lock(&r->mu);
	r->newkey = key;
	pthread_mutex_unlock(&r->mu);
	notify_agent(r);
	return 0;
}

/* ---- actions of the session table; each returns the next state ---- */

static enum fstate on_welcome(repl *r, struct peer *p, const envelope *env)
{
	const Certsync__Welcome *w = env->welcome;
	size_t moved = 0;
	cs_err err;

	abort_snapshot(r);
	if (w->kdf == NULL) {
		wire_drop(r, p, &r->cnt.undecodable, "a welcome without cluster settings");
		return F_WAIT;
	}
	if (check_cluster(r, w->kdf) != 0) {
		cs_error("repl: refusing the cluster of %s: %s", p->name, r->refusal);
		return F_REFUSED;
	}
	r->f.since = repl_now();
	if (!w->snapshot) {
		/* Our log agrees with the primary's up to the position our beat
		 * gave; what we applied since came from it in this session. */
		if (w->fork > r->loc.applied.seq)
			return restart(r);
		report_diverged(r);
		return F_STREAM;
	}
	if (cs_txn_begin(r->st, true, &r->f.snap, &err) != 0 ||
	    cs_txn_reset(r->f.snap, w->fork, r->name, &moved, &err) != 0) {
		cs_error("repl: cannot start loading %s's snapshot: %s", p->name, err.msg);
		abort_snapshot(r);
		return F_WAIT;
	}
	if (moved > 0)
		cs_warn("repl: %zu %s after seq %" PRIu64 " forked from %s's log; %s "
		        "moved aside (`certsync diverged list`)",
		        moved, CS_PLURAL(moved, "entry", "entries"), w->fork, p->name,
		        CS_PLURAL(moved, "it is", "they are"));
	r->f.chunks = 0;
	return F_SNAP;
}

static enum fstate on_entries(repl *r, struct peer *p, const envelope *env)
{
	const Certsync__Entries *e = env->entries;
	uint64_t next = r->loc.applied.seq + 1;
	Certsync__KdfParams *kdf;
	size_t skip;
	cs_txn *txn;
	cs_err err;
	cs_pos pos;
	int rc;

	/* Entries we hold already were resent; a gap waits for the resend. */
	if (e->first > next || e->first + e->n_entries <= next)
		return F_STREAM;
	skip = (size_t)(next - e->first);
	if (cs_txn_begin(r->st, true, &txn, &err) != 0) {
		cs_error("repl: %s", err.msg);
		return F_STREAM;
	}
	for (size_t i = skip; i < e->n_entries; i++) {
		if (cs_txn_apply(txn, e->entries[i].data, e->entries[i].len, &err) != 0) {
			cs_txn_abort(txn);
			wire_drop(r, p, &r->cnt.bad_entry, "%s", err.msg);
			return restart(r);
		}
	}
	/* A change of the cluster passphrase: its key is found with no
	 * write transaction open (Argon2id takes a while), then applied
	 * again; without it nothing is applied. */
	if ((rc = rekey_check(r, txn, &kdf)) != 0) {
		cs_txn_abort(txn);
		if (rc < 0)
			return restart(r);
		rc = rekey_find(r, kdf);
		certsync__kdf_params__free_unpacked(kdf, NULL);
		if (rc != 0)
			return F_REFUSED;
		return on_entries(r, p, env);
	}
	if (cs_txn_commit(txn, NULL, &pos, &err) != 0) {
		cs_error("repl: applying entries from %s: %s", p->name, err.msg);
		return F_STREAM;
	}
	local_reload(r);
	rekey_handover(r);
	announce_changed(r);
	send_beat(r, p, false); /* the acknowledgement */
	return F_STREAM;
}

static enum fstate on_chunk(repl *r, struct peer *p, const envelope *env)
{
	const Certsync__SnapshotChunk *c = env->chunk;
	cs_err err;

	r->f.since = repl_now();
	r->f.chunks++;
	for (size_t i = 0; i < c->n_pairs; i++) {
		const Certsync__Pair *kv = c->pairs[i];

		if (cs_txn_load(r->f.snap, (cs_table)kv->table, kv->key.data, kv->key.len,
		                kv->value.data, kv->value.len, &err) != 0) {
			wire_drop(r, p, &r->cnt.bad_entry, "snapshot: %s", err.msg);
			return restart(r);
		}
	}
	return F_SNAP;
}

static enum fstate on_end(repl *r, struct peer *p, const envelope *env)
{
	const Certsync__SnapshotEnd *end = env->end;
	cs_epoch_start hist[SNAPSHOT_HISTORY];
	Certsync__KdfParams *kdf;
	uint8_t digest[CS_DIGEST_LEN];
	cs_pos pos;
	cs_err err;
	int rc;

	if (end->applied == NULL || end->chunks != r->f.chunks ||
	    end->n_history > SNAPSHOT_HISTORY || end->digest.len != CS_DIGEST_LEN) {
		wire_drop(r, p, &r->cnt.bad_entry, "a snapshot end that does not fit its chunks");
		return restart(r);
	}
	for (size_t i = 0; i < end->n_history; i++)
		hist[i] = (cs_epoch_start){end->history[i]->epoch, end->history[i]->seq};
	pos = (cs_pos){end->applied->epoch, end->applied->seq};
	rc = cs_txn_set_position(r->f.snap, pos, hist, end->n_history, &err);
	cs_txn_digest(r->f.snap, digest);
	if (rc == 0 && sodium_memcmp(digest, end->digest.data, CS_DIGEST_LEN) != 0)
		rc = cs_fail(&err, CS_EINPUT, "its digest is not the primary's");
	if (rc != 0) {
		wire_drop(r, p, &r->cnt.bad_entry, "snapshot at seq %" PRIu64 ": %s", pos.seq,
		          err.msg);
		return restart(r);
	}
	/* The welcome found the key of the primary's settings; a snapshot
	 * sealed under yet another (a rekey since) starts over. */
	if ((rc = rekey_check(r, r->f.snap, &kdf)) != 0) {
		certsync__kdf_params__free_unpacked(kdf, NULL);
		cs_warn("repl: %s's snapshot names another cluster key than its welcome; "
		        "starting over",
		        p->name);
		return restart(r);
	}
	rc = cs_txn_commit(r->f.snap, NULL, NULL, &err);
	r->f.snap = NULL;
	if (rc != 0) {
		cs_error("repl: loading %s's snapshot: %s", p->name, err.msg);
		return restart(r);
	}
	cs_info("repl: loaded %s's snapshot at %" PRIu64 ".%" PRIu64, p->name, pos.epoch, pos.seq);
	local_reload(r);
	rekey_handover(r);
	announce_changed(r);
	send_beat(r, p, false);
	report_diverged(r);
	return F_STREAM;
}

static enum fstate on_refusal(repl *r, struct peer *p, const envelope *env)
{
	snprintf(r->refusal, sizeof(r->refusal), "%s refuses this node: %.120s", p->name,
	         env->refusal->reason);
	cs_error("repl: %s", r->refusal);
	abort_snapshot(r);
	return F_REFUSED;
}

/* What a message from the followed primary does in each state; anything
 * else is ignored. */
static const struct {
	enum fstate state;
	Certsync__Envelope__BodyCase body;
	enum fstate (*act)(repl *r, struct peer *p, const envelope *env);
} table[] = {
    {F_WAIT, CERTSYNC__ENVELOPE__BODY_WELCOME, on_welcome},
    {F_SNAP, CERTSYNC__ENVELOPE__BODY_WELCOME, on_welcome},
    {F_STREAM, CERTSYNC__ENVELOPE__BODY_WELCOME, on_welcome},
    {F_STREAM, CERTSYNC__ENVELOPE__BODY_ENTRIES, on_entries},
    {F_SNAP, CERTSYNC__ENVELOPE__BODY_CHUNK, on_chunk},
    {F_SNAP, CERTSYNC__ENVELOPE__BODY_END, on_end},
    {F_WAIT, CERTSYNC__ENVELOPE__BODY_REFUSAL, on_refusal},
    {F_SNAP, CERTSYNC__ENVELOPE__BODY_REFUSAL, on_refusal},
    {F_STREAM, CERTSYNC__ENVELOPE__BODY_REFUSAL, on_refusal},
};

/* The session a message belongs to; 0 for one that belongs to none. */
static uint64_t session_of(const envelope *env)
{
	switch (env->body_case) {
	case CERTSYNC__ENVELOPE__BODY_WELCOME:
		return env->welcome->session;
	case CERTSYNC__ENVELOPE__BODY_ENTRIES:
		return env->entries->session;
	case CERTSYNC__ENVELOPE__BODY_CHUNK:
		return env->chunk->session;
	case CERTSYNC__ENVELOPE__BODY_END:
		return env->end->session;
	default:
		return 0;
	}
}

void follow_msg(repl *r, struct peer *p, const envelope *env)
{
	bool refusal = env->body_case == CERTSYNC__ENVELOPE__BODY_REFUSAL;

	if (env->epoch < r->loc.epoch) {
		wire_drop(r, p, &r->cnt.stale_epoch, "epoch %" PRIu64 " is older than %" PRIu64,
		          env->epoch, r->loc.epoch);
		return;
	}
	if (p != r->f.leader || (!refusal && session_of(env) != r->f.session))
		return; /* an older session's, or a peer we do not follow */
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		if (table[i].state == r->f.state && table[i].body == env->body_case) {
			r->f.state = table[i].act(r, p, env);
			return;
		}
	}
}

/* ---- whom to follow ---- */

static bool alive(const repl *r, const struct peer *p)
{
	return p->s.heard != 0 && repl_now() - p->s.heard <= r->dead_ms;
}

void follow_choose(repl *r)
{
	struct peer *best = NULL;

	for (size_t i = 0; i < r->npeers; i++) {
		struct peer *p = &r->peers[i];

		if (p->role == REPL_TRAFFIC || !alive(r, p) || !p->s.leading)
			continue;
		if (p->s.epoch > r->loc.epoch && r->leading)
			repl_higher_epoch(r, p->s.epoch);
		/* Followers never take entries from an epoch they left. */
		if (p->s.epoch >= r->loc.epoch && (best == NULL || p->s.epoch > best->s.epoch))
			best = p;
	}
	if (r->leading || best == r->f.leader)
		return;
	if (best != NULL && best->s.epoch > r->loc.epoch)
		repl_higher_epoch(r, best->s.epoch);
	r->f.leader = best;
	r->refusal[0] = '\0';
	if (best != NULL)
		cs_info("repl: following %s (epoch %" PRIu64 ")", best->name, best->s.epoch);
	else
		cs_warn("repl: no primary is reachable");
	r->f.state = restart(r);
}

void follow_tick(repl *r)
{
	if (r->leading || r->f.leader == NULL)
		return;
	/* A lost welcome or chunk: the session starts over. */
	if ((r->f.state == F_WAIT || r->f.state == F_SNAP) && repl_now() - r->f.since > r->dead_ms)
		r->f.state = restart(r);
}

void follow_stop(repl *r)
{
	abort_snapshot(r);
	r->f.leader = NULL;
	r->f.state = F_IDLE;
}

struct report {
	Certsync__Diverged msg;
	ProtobufCBinaryData entries[DIVERGED_REPORT_MAX];
};

/* Copies the entry: the record d points into ends with the call. */
static int collect(void *ctx, const cs_diverged *d)
{
	struct report *rep = ctx;
	ProtobufCBinaryData *e = &rep->entries[rep->msg.n_entries];

	if (d->applied_seq != 0 || rep->msg.n_entries == DIVERGED_REPORT_MAX)
		return 0;
	e->data = malloc(d->entry_len ? d->entry_len : 1);
	if (e->data == NULL)
		return 1;
	memcpy(e->data, d->entry, d->entry_len);
	e->len = d->entry_len;
	rep->msg.n_entries++;
	return 0;
}

static void report_diverged(repl *r)
{
	Certsync__Envelope env = CERTSYNC__ENVELOPE__INIT;
	struct report rep = {.msg = CERTSYNC__DIVERGED__INIT};
	cs_txn *txn;
	cs_err err;
	int rc;

	/* The primary takes them only from the node that led their epoch: a
	 * traffic node keeps its copies to itself. */
	if (r->role == REPL_TRAFFIC)
		return;
	if (cs_txn_begin(r->st, false, &txn, &err) != 0) {
		cs_error("repl: %s", err.msg);
		return;
	}
	rep.msg.entries = rep.entries;
	rc = cs_txn_diverged_foreach(txn, collect, &rep, &err);
	cs_txn_abort(txn);
	if (rc != 0)
		cs_error("repl: reading the diverged table: %s",
		         rc > 0 ? "out of memory" : err.msg);
	else if (rep.msg.n_entries > 0) {
		env.body_case = CERTSYNC__ENVELOPE__BODY_DIVERGED;
		env.diverged = &rep.msg;
		wire_send(r, r->f.leader, &env, false);
	}
	for (size_t i = 0; i < rep.msg.n_entries; i++)
		free(rep.entries[i].data);
}
