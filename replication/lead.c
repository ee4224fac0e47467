/* lead.c — the primary's side of replication: welcoming a follower at the
 * point where its log forks from ours, streaming the log within a window of
 * unacknowledged entries, sending snapshots, and the writes that wait for
 * acknowledgements.
 *
 * A follower's session starts with its first beat naming a new session id;
 * everything sent in it carries that id, so leftovers of an older session
 * are ignored by the follower.  Lost messages need no bookkeeping: when a
 * follower's position stops moving while entries are out, they are sent
 * again from its position. */
#include "repl_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"

/* The epoch of the entry at seq s by history h; 0 when h does not say. */
static uint64_t epoch_at(const cs_epoch_start *h, size_t n, uint64_t s)
{
	uint64_t e = 0;

	for (size_t i = 0; i < n && h[i].seq <= s; i++)
		e = h[i].epoch;
	return e;
}

static uint64_t next_start(const cs_epoch_start *h, size_t n, uint64_t s)
{
	for (size_t i = 0; i < n; i++)
		if (h[i].seq > s)
			return h[i].seq;
	return UINT64_MAX;
}

/* Two logs hold the same entry at a seq when they hold one of the same epoch
 * there (one primary per epoch), and both histories are step functions, so
 * comparing them where either steps finds the first seq they differ at.  A
 * seq a history does not cover counts as a difference. */
uint64_t repl_fork(const cs_epoch_start *a, size_t na, uint64_t alast, const cs_epoch_start *b,
                   size_t nb, uint64_t blast)
{
	uint64_t last = alast < blast ? alast : blast;
	uint64_t s = 1;

	while (s <= last) {
		uint64_t ea = epoch_at(a, na, s);
		uint64_t na_ = next_start(a, na, s), nb_ = next_start(b, nb, s);

		if (ea == 0 || ea != epoch_at(b, nb, s))
			return s - 1;
		s = na_ < nb_ ? na_ : nb_;
	}
	return last;
}

/* Sends entries from p->sent + 1 while the window allows; a seq the log no
 * longer holds ends the session, so the follower's next beat gets a
 * snapshot. */
static void push_one(repl *r, cs_txn *txn, struct peer *p)
{
	while (p->session != 0 && p->sent < r->loc.applied.seq &&
	       p->sent - p->s.applied.seq < WINDOW) {
		Certsync__Envelope env = CERTSYNC__ENVELOPE__INIT;
		Certsync__Entries msg = CERTSYNC__ENTRIES__INIT;
		ProtobufCBinaryData batch[256];
		size_t bytes = 0;
		cs_err err;
		int rc = 0;

		msg.session = p->session;
		msg.first = p->sent + 1;
		msg.entries = batch;
		while (msg.n_entries < 256 && bytes < BATCH_BYTES &&
		       p->sent + msg.n_entries < r->loc.applied.seq) {
			const void *val;
			size_t vlen;

			rc = cs_txn_log_get(txn, p->sent + msg.n_entries + 1, &val, &vlen, &err);
			if (rc != 0)
				break;
			batch[msg.n_entries++] = (ProtobufCBinaryData){vlen, (uint8_t *)val};
			bytes += vlen;
		}
		if (rc < 0)
			cs_error("repl: %s", err.msg);
		if (rc != 0 && msg.n_entries == 0) {
			cs_info("repl: %s needs seq %" PRIu64 ", which the log no longer holds; "
			        "it gets a snapshot",
			        p->name, p->sent + 1);
			p->session = 0;
			return;
		}
		env.body_case = CERTSYNC__ENVELOPE__BODY_ENTRIES;
		env.entries = &msg;
		if (wire_send(r, p, &env, true) != 0)
			return; /* resent when its position stalls */
		p->sent += msg.n_entries;
	}
}

void lead_push(repl *r)
{
	cs_txn *txn;
	cs_err err;

	if (cs_txn_begin(r->st, false, &txn, &err) != 0) {
		cs_error("repl: %s", err.msg);
		return;
	}
	for (size_t i = 0; i < r->npeers; i++)
		push_one(r, txn, &r->peers[i]);
	cs_txn_abort(txn);
}

struct chunker {
	repl *r;
	struct peer *p;
	Certsync__SnapshotChunk msg;
	Certsync__Pair *pairs;
	Certsync__Pair **ptrs;
	size_t cap;
	size_t bytes;
	uint32_t sent;
	cs_table t;
	bool failed;
};

static int flush_chunk(struct chunker *c)
{
	Certsync__Envelope env = CERTSYNC__ENVELOPE__INIT;

	env.body_case = CERTSYNC__ENVELOPE__BODY_CHUNK;
	env.chunk = &c->msg;
	if (wire_send(c->r, c->p, &env, true) != 0)
		return -1;
	c->sent++;
	c->msg.n_pairs = 0;
	c->bytes = 0;
	return 0;
}

static int grow(struct chunker *c)
{
	size_t cap = c->cap ? 2 * c->cap : 64;
	Certsync__Pair *pairs = realloc(c->pairs, cap * sizeof(*pairs));
	Certsync__Pair **ptrs;

	if (pairs == NULL)
		return -1;
	c->pairs = pairs;
	ptrs = realloc(c->ptrs, cap * sizeof(*ptrs));
	if (ptrs == NULL)
		return -1;
	c->ptrs = ptrs;
	c->cap = cap;
	for (size_t i = 0; i < cap; i++)
		ptrs[i] = &pairs[i]; /* the pairs may have moved */
	c->msg.pairs = ptrs;
	return 0;
}

static int add_pair(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	static const Certsync__Pair init = CERTSYNC__PAIR__INIT;
	struct chunker *c = ctx;
	Certsync__Pair *pair;

	if (c->msg.n_pairs == c->cap && grow(c) != 0) {
		c->failed = true;
		return -1;
	}
	pair = &c->pairs[c->msg.n_pairs++];
	*pair = init;
	pair->table = (uint32_t)c->t;
	pair->key = (ProtobufCBinaryData){klen, (uint8_t *)key};
	pair->value = (ProtobufCBinaryData){vlen, (uint8_t *)val};
	c->bytes += klen + vlen;
	if (c->bytes >= BATCH_BYTES && flush_chunk(c) != 0) {
		c->failed = true;
		return -1;
	}
	return 0;
}

/* Sends every replicated pair as of one read transaction, then the position
 * and digest they make; entries after it follow in the same session. */
static void send_snapshot(repl *r, struct peer *p)
{
	Certsync__Envelope env = CERTSYNC__ENVELOPE__INIT;
	Certsync__SnapshotEnd end = CERTSYNC__SNAPSHOT_END__INIT;
	Certsync__Position pos = CERTSYNC__POSITION__INIT;
	struct chunker c = {.r = r, .p = p, .msg = CERTSYNC__SNAPSHOT_CHUNK__INIT};
	Certsync__EpochStart *hist = NULL, **hptr = NULL;
	cs_epoch_start *h = NULL;
	uint8_t digest[CS_DIGEST_LEN];
	size_t nh = 0, skip = 0;
	cs_txn *txn;
	cs_err err;
	int rc;

	c.msg.session = p->session;
	if (cs_txn_begin(r->st, false, &txn, &err) != 0) {
		cs_error("repl: snapshot for %s: %s", p->name, err.msg);
		p->session = 0;
		return;
	}
	rc = 0;
	for (int t = 0; t < CS_TBL_NREPL && rc == 0; t++) {
		c.t = (cs_table)t;
		rc = cs_txn_foreach(txn, c.t, add_pair, &c, &err);
	}
	if (rc == 0 && c.msg.n_pairs > 0)
		rc = flush_chunk(&c);
	if (rc == 0)
		rc = cs_txn_epochs(txn, &h, &nh, &err);
	/* The newest epochs are the ones a fork search compares: older ones
	 * would only make the message refused once a cluster has led more. */
	if (rc == 0 && nh > SNAPSHOT_HISTORY)
		skip = nh - SNAPSHOT_HISTORY;
	nh -= skip;
	if (rc == 0 && nh > 0) {
		hist = calloc(nh, sizeof(*hist));
		hptr = calloc(nh, sizeof(*hptr));
		rc = hist && hptr ? 0 : cs_fail(&err, CS_EIO, "out of memory");
	}
	if (rc == 0) {
		for (size_t i = 0; i < nh; i++) {
			hist[i] = (Certsync__EpochStart)CERTSYNC__EPOCH_START__INIT;
			hist[i].epoch = h[skip + i].epoch;
			hist[i].seq = h[skip + i].seq;
			hptr[i] = &hist[i];
		}
		pos.epoch = cs_txn_applied(txn).epoch;
		pos.seq = cs_txn_applied(txn).seq;
		cs_txn_digest(txn, digest);
		end.session = p->session;
		end.applied = &pos;
		end.digest = (ProtobufCBinaryData){sizeof(digest), digest};
		end.n_history = nh;
		end.history = hptr;
		end.chunks = c.sent;
		env.body_case = CERTSYNC__ENVELOPE__BODY_END;
		env.end = &end;
		rc = wire_send(r, p, &env, true);
	}
	cs_txn_abort(txn);
	if (rc == 0) {
		cs_info("repl: sent %s a snapshot at %" PRIu64 ".%" PRIu64 " in %u %s", p->name,
		        pos.epoch, pos.seq, c.sent, CS_PLURAL(c.sent, "chunk", "chunks"));
		p->sent = pos.seq;
	} else {
		/* The follower's next beat starts it over. */
		cs_warn("repl: snapshot for %s not sent%s%s", p->name, c.failed ? "" : ": ",
		        c.failed ? "" : err.msg);
		p->session = 0;
	}
	free(h);
	free(hist);
	free(hptr);
	free(c.pairs);
	free(c.ptrs);
}

static void welcome(repl *r, struct peer *p, const Certsync__Beat *b)
{
	Certsync__Envelope env = CERTSYNC__ENVELOPE__INIT;
	Certsync__Welcome w = CERTSYNC__WELCOME__INIT;
	cs_epoch_start fh[BEAT_HISTORY];
	uint64_t fseq = b->applied ? b->applied->seq : 0;
	const struct local *l = &r->loc;

	if (l->kdf == NULL)
		return;
	if (b->n_history > BEAT_HISTORY) {
		wire_drop(r, p, &r->cnt.undecodable, "a beat with %zu epochs of history",
		          b->n_history);
		return;
	}
	for (size_t i = 0; i < b->n_history; i++)
		fh[i] = (cs_epoch_start){b->history[i]->epoch, b->history[i]->seq};
	w.session = b->session;
	w.kdf = l->kdf;
	w.fork = repl_fork(fh, b->n_history, fseq, l->hist, l->nhist, l->applied.seq);
	/* Entries after the fork were never ours: only a snapshot undoes them.
	 * Entries we no longer hold: only a snapshot replaces them. */
	w.snapshot = w.fork < fseq ||
	             (w.fork < l->applied.seq && (l->log_first == 0 || l->log_first > w.fork + 1));
	env.body_case = CERTSYNC__ENVELOPE__BODY_WELCOME;
	env.welcome = &w;
	if (wire_send(r, p, &env, true) != 0)
		return;
	cs_info("repl: %s follows from seq %" PRIu64 "%s%s", p->name, w.fork,
	        w.snapshot ? " with a snapshot" : "",
	        w.fork < fseq ? " (its later entries forked)" : "");
	p->session = b->session;
	p->sent = w.fork;
	p->moved = repl_now();
	if (w.snapshot)
		send_snapshot(r, p);
}

void lead_beat(repl *r, struct peer *p, const Certsync__Beat *b)
{
	if (!r->leading)
		return;
	if (b->session == 0) {
		/* It does not follow us yet: our beat now, rather than at our next
		 * tick, tells it whom to follow, so a node that starts or comes
		 * back is served one round trip later instead of up to a beat. */
		p->session = 0;
		send_beat(r, p, true);
		return;
	}
	if (b->session != p->session) {
		welcome(r, p, b);
		return;
	}
	if (p->sent < p->s.applied.seq)
		p->sent = p->s.applied.seq;
	waiters_check(r, false);
	lead_push(r);
}

void lead_tick(repl *r)
{
	int64_t now = repl_now();
	bool resend = false;

	if (!r->leading)
		return;
	for (size_t i = 0; i < r->npeers; i++) {
		struct peer *p = &r->peers[i];

		if (p->session != 0 && p->sent > p->s.applied.seq &&
		    now - p->moved > 2 * r->beat_ms) {
			p->sent = p->s.applied.seq;
			p->moved = now;
			resend = true;
		}
	}
	if (resend)
		lead_push(r);
}

static bool led(const struct peer *p, uint64_t epoch)
{
	for (size_t i = 0; i < p->nled; i++)
		if (p->led[i] == epoch)
			return true;
	return false;
}

/* Whether p may add this entry: it led the entry's epoch, and the table has
 * room (bytes counts pages, so an entry's cost is estimated by its size). */
static int diverged_allowed(repl *r, struct peer *p, cs_txn *txn, const ProtobufCBinaryData *entry,
                            cs_err *err)
{
	Certsync__LogEntry *e = certsync__log_entry__unpack(NULL, entry->len, entry->data);
	size_t count, bytes, used, map, cap;
	uint64_t epoch;

	if (e == NULL)
		return cs_fail(err, CS_EINPUT, "a diverged entry does not decode");
	epoch = e->epoch;
	certsync__log_entry__free_unpacked(e, NULL);
	if (!led(p, epoch))
		return cs_fail(err, CS_EREFUSED,
		               "an entry of epoch %" PRIu64
		               ", which this node has not heard %s lead",
		               epoch, p->name);
	if (cs_txn_diverged_usage(txn, &count, &bytes, err) != 0)
		return -1;
	cs_store_usage(r->st, &used, &map);
	cap = map / 8 < DIVERGED_MAX_BYTES ? map / 8 : DIVERGED_MAX_BYTES;
	if (count >= DIVERGED_MAX_ENTRIES || bytes + entry->len > cap)
		return cs_fail(err, CS_EREFUSED,
		               "the diverged table holds %zu entries in %zu KiB, its bound (%d "
		               "entries, %zu KiB); see `certsync diverged list`, then `diverged "
		               "delete` or `diverged prune`",
		               count, bytes >> 10, DIVERGED_MAX_ENTRIES, cap >> 10);
	return 0;
}

/* Diverged entries are accepted only from a primary-capable node, only of
 * an epoch it was heard leading, and only while the table is within its
 * bounds: anyone else's would be a way to fill the primary's store. */
void lead_diverged(repl *r, struct peer *p, const Certsync__Diverged *d)
{
	size_t added = 0;
	cs_txn *txn;
	cs_err err;
	int rc = 0;

	if (!r->leading || d->n_entries == 0)
		return;
	if (p->role == REPL_TRAFFIC) {
		wire_drop(r, p, &r->cnt.bad_entry,
		          "diverged entries from a traffic node, which never leads");
		return;
	}
	if (cs_txn_begin(r->st, true, &txn, &err) != 0) {
		cs_error("repl: diverged entries from %s: %s", p->name, err.msg);
		return;
	}
	for (size_t i = 0; i < d->n_entries && rc >= 0; i++) {
		rc = diverged_allowed(r, p, txn, &d->entries[i], &err);
		if (rc == 0)
			rc = cs_txn_diverged_add(txn, p->name, d->entries[i].data,
			                         d->entries[i].len, &err);
		added += rc == 0;
	}
	if (rc < 0 && err.code == CS_EREFUSED) {
		/* The entries before the refused one are kept.  Logged on its
		 * own (the log rate-limits it), not with the junk a peer sends:
		 * a full table is the operator's to clear. */
		r->cnt.bad_entry++;
		cs_warn("repl: diverged entries from %s refused: %s", p->name, err.msg);
		rc = 0;
	}
	if (rc < 0) {
		cs_txn_abort(txn);
		wire_drop(r, p, &r->cnt.bad_entry, "diverged entries: %s", err.msg);
		return;
	}
	if (cs_txn_commit(txn, NULL, NULL, &err) != 0) {
		cs_error("repl: diverged entries from %s: %s", p->name, err.msg);
		return;
	}
	if (added > 0)
		cs_warn("repl: %s moved %zu %s of its log aside (they forked from this "
		        "primary's); see `certsync diverged list`",
		        p->name, added, CS_PLURAL(added, "entry", "entries"));
}

/* ---- waiting for acknowledgements ---- */

static void finish(repl *r, struct waiter *w)
{
	w->missing |= w->need;
	pthread_mutex_lock(&r->mu);
	w->next = r->finished;
	r->finished = w;
	pthread_mutex_unlock(&r->mu);
}

void waiters_check(repl *r, bool all_expired)
{
	int64_t now = repl_now();
	struct waiter **link = &r->waiters;
	bool any = false;

	while (*link != NULL) {
		struct waiter *w = *link;

		for (size_t i = 0; i < r->npeers; i++) {
			const struct peer *p = &r->peers[i];

			/* Only a follower in session holds our log, and only an
			 * entry of our epoch at or after the change's seq is
			 * ours: another node's seq may count entries we never
			 * wrote (its own, diverged). */
			if (p->session != 0 && p->s.applied.epoch == w->pos.epoch &&
			    p->s.applied.seq >= w->pos.seq)
				w->need &= ~((uint64_t)1 << i);
		}
		if (w->need != 0 && now < w->deadline && !all_expired && r->leading) {
			link = &w->next;
			continue;
		}
		*link = w->next;
		finish(r, w);
		any = true;
	}
	if (any)
		notify_agent(r);
}

void lead_stop(repl *r)
{
	for (size_t i = 0; i < r->npeers; i++)
		r->peers[i].session = 0;
	waiters_check(r, true);
}
