/* repl.c — the replication thread and the API the agent calls (repl.h):
 * starting and stopping, the loop that polls the sockets and the agent's
 * requests, beats, the role state machine (promotion and stepping down),
 * waits for acknowledgements, and the status the agent shows.
 *
 * The agent and the thread meet under r->mu only: the agent queues
 * requests and wakes the thread through wake_fd; the thread publishes a
 * view for status and queues results, and wakes the agent through
 * notify_fd.  Neither holds mu across a store transaction or a send, so
 * neither can wait on the other while LMDB's write lock is held. */
#include "repl_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <zmq.h>

#include "../common/hex.h"
#include "../common/log.h"

#define RECV_BURST 256 /* messages taken from one socket before looking at the others */

int64_t repl_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *repl_role_name(repl_role role)
{
	static const char *const names[] = {"primary", "backup", "traffic"};

	return names[role];
}

int repl_wait_mode_parse(const char *s, repl_wait_mode *out)
{
	static const char *const names[] = {"none", "backup", "all"};

	for (int m = REPL_WAIT_NONE; m <= REPL_WAIT_ALL; m++) {
		if (strcmp(s, names[m]) == 0) {
			*out = (repl_wait_mode)m;
			return 0;
		}
	}
	return -1;
}

static void wake(int fd)
{
	uint64_t one = 1;

	/* Only fails when the counter is already huge: it is awake then. */
	if (write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		cs_error("repl: cannot wake a thread: %s", strerror(errno));
}

static void drain_fd(int fd)
{
	uint64_t n;

	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		cs_error("repl: cannot read an eventfd: %s", strerror(errno));
}

void notify_agent(repl *r)
{
	wake(r->notify_fd);
}

void announce_changed(repl *r)
{
	pthread_mutex_lock(&r->mu);
	r->changed = true;
	r->changed_pos = r->loc.applied;
	pthread_mutex_unlock(&r->mu);
	wake(r->notify_fd);
}

/* ---- the store as the thread sees it ---- */

int local_reload(repl *r)
{
	struct local *l = &r->loc;
	const void *val;
	size_t vlen;
	cs_txn *txn;
	cs_err err;
	int rc;

	if (cs_txn_begin(r->st, false, &txn, &err) != 0)
		goto fail;
	l->applied = cs_txn_applied(txn);
	l->epoch = cs_txn_epoch(txn);
	cs_txn_digest(txn, l->digest);
	free(l->hist);
	rc = cs_txn_epochs(txn, &l->hist, &l->nhist, &err);
	if (rc == 0)
		rc = cs_txn_log_first(txn, &l->log_first, &err);
	/* Read every time: `cluster rekey` changes them. */
	if (rc == 0) {
		Certsync__KdfParams *kdf = NULL;

		rc = cs_txn_get(txn, CS_TBL_SETTINGS, CS_SETTINGS_KDF, strlen(CS_SETTINGS_KDF),
		                &val, &vlen, &err);
		if (rc == 0 && (kdf = certsync__kdf_params__unpack(NULL, vlen, val)) == NULL)
			rc = cs_fail(&err, CS_EIO, "the store's cluster settings do not decode");
		if (kdf != NULL) {
			if (l->kdf != NULL)
				certsync__kdf_params__free_unpacked(l->kdf, NULL);
			l->kdf = kdf;
		}
		rc = rc < 0 ? -1 : 0;
	}
	cs_txn_abort(txn);
	if (rc == 0)
		return 0;
fail:
	cs_error("repl: reading the store: %s", err.msg);
	return -1;
}

/* ---- beats ---- */

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

static void beat_all(repl *r)
{
	for (size_t i = 0; i < r->npeers; i++) {
		struct peer *p = &r->peers[i];

		if (p->dealer != NULL)
			send_beat(r, p, false);
		if (p->ridlen > 0)
			send_beat(r, p, true);
	}
}

static bool heard_recently(const repl *r, const struct peer *p)
{
	return p->s.heard != 0 && repl_now() - p->s.heard <= r->dead_ms;
}

/* ---- the role state machine (Binary Star) ---- */

static int persist_epoch(repl *r, uint64_t epoch, bool lead, cs_err *err)
{
	cs_txn *txn;

	if (cs_txn_begin(r->st, true, &txn, err) != 0)
		return -1;
	if (cs_txn_set_epoch(txn, epoch, lead, err) != 0) {
		cs_txn_abort(txn);
		return -1;
	}
	if (cs_txn_commit(txn, NULL, NULL, err) != 0)
		return -1;
	return local_reload(r) == 0 ? 0 : cs_fail(err, CS_EIO, "cannot reread the store");
}

/* A traffic node is never promoted, whatever it hears of the primary. */
static int refuse_traffic(const repl *r, cs_err *err)
{
	return r->role == REPL_TRAFFIC
	           ? cs_fail(err, CS_EREFUSED,
	                     "promote refused: %s is a traffic node, and traffic nodes cannot be "
	                     "promoted; promote the backup",
	                     r->name)
	           : 0;
}

static int take_epoch(repl *r, uint64_t unused, cs_err *err)
{
	uint64_t epoch = r->loc.epoch;

	(void)unused;
	if (refuse_traffic(r, err) != 0)
		return -1;
	if (r->loc.kdf == NULL || r->f.state == F_REFUSED)
		return cs_fail(err, CS_EREFUSED, "promote refused: %s %s", r->name,
		               r->f.state == F_REFUSED ? r->refusal
		                                       : "has no cluster settings yet");
	/* Only primary-capable nodes can have led an epoch. */
	for (size_t i = 0; i < r->npeers; i++)
		if (r->peers[i].role != REPL_TRAFFIC && r->peers[i].s.epoch > epoch)
			epoch = r->peers[i].s.epoch;
	if (epoch == UINT64_MAX)
		return cs_fail(err, CS_EREFUSED,
		               "promote refused: epoch %" PRIu64 " is the last one; the cluster "
		               "must be created again",
		               epoch);
	follow_stop(r);
	/* On disk before the first change of the epoch, or a crash right
	 * after could reuse it. */
	if (persist_epoch(r, epoch + 1, true, err) != 0)
		return cs_err_prefix(err, "promote: ");
	r->leading = true;
	r->refusal[0] = '\0';
	cs_warn("repl: %s is the primary now, epoch %" PRIu64 " from seq %" PRIu64, r->name,
	        epoch + 1, r->loc.applied.seq + 1);
	beat_all(r);
	return 0;
}

static int promote(repl *r, uint64_t unused, cs_err *err)
{
	int64_t now = repl_now();

	if (refuse_traffic(r, err) != 0)
		return -1;
	for (size_t i = 0; i < r->npeers; i++) {
		const struct peer *p = &r->peers[i];

		if (p->s.leading && p->s.epoch >= r->loc.epoch && heard_recently(r, p))
			return cs_fail(err, CS_EREFUSED,
			               "promote refused: primary %s was heard %" PRId64
			               " ms ago, within the %d ms failure timeout; stop it first, "
			               "or use --force if it is cut off for good",
			               p->name, now - p->s.heard, r->dead_ms);
	}
	return take_epoch(r, unused, err);
}

static int refuse_leading(repl *r, uint64_t unused, cs_err *err)
{
	(void)unused;
	return cs_fail(err, CS_EEXIST, "%s is already the primary (epoch %" PRIu64 ")", r->name,
	               r->loc.epoch);
}

static int raise_epoch(repl *r, uint64_t epoch, cs_err *err)
{
	follow_stop(r); /* a snapshot in progress holds the write lock */
	return persist_epoch(r, epoch, false, err);
}

static int step_down(repl *r, uint64_t epoch, cs_err *err)
{
	if (raise_epoch(r, epoch, err) != 0)
		return -1;
	r->leading = false;
	lead_stop(r);
	cs_warn("repl: another node leads epoch %" PRIu64 ": %s steps down and follows it", epoch,
	        r->name);
	return 0;
}

enum rstate { R_FOLLOWING, R_LEADING };
enum revent { RE_PROMOTE, RE_FORCE, RE_HIGHER };

static const struct {
	enum rstate state;
	enum revent event;
	int (*act)(repl *r, uint64_t epoch, cs_err *err);
} roles[] = {
    {R_FOLLOWING, RE_PROMOTE, promote},    {R_FOLLOWING, RE_FORCE, take_epoch},
    {R_FOLLOWING, RE_HIGHER, raise_epoch}, {R_LEADING, RE_PROMOTE, refuse_leading},
    {R_LEADING, RE_FORCE, refuse_leading}, {R_LEADING, RE_HIGHER, step_down},
};

static int role_event(repl *r, enum revent ev, uint64_t epoch, cs_err *err)
{
	enum rstate s = r->leading ? R_LEADING : R_FOLLOWING;

	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
		if (roles[i].state == s && roles[i].event == ev)
			return roles[i].act(r, epoch, err);
	return 0;
}

void repl_higher_epoch(repl *r, uint64_t epoch)
{
	cs_err err;

	if (epoch > r->loc.epoch && role_event(r, RE_HIGHER, epoch, &err) != 0)
		cs_error("repl: cannot move to epoch %" PRIu64 ": %s", epoch, err.msg);
}

/* ---- messages ---- */

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

static void on_beat(repl *r, struct peer *p, const envelope *env, bool router)
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

static void refuse(repl *r, struct peer *p, const char *reason)
{
	Certsync__Envelope env = CERTSYNC__ENVELOPE__INIT;
	Certsync__Refusal msg = CERTSYNC__REFUSAL__INIT;

	msg.reason = (char *)reason;
	env.body_case = CERTSYNC__ENVELOPE__BODY_REFUSAL;
	env.refusal = &msg;
	wire_send(r, p, &env, true);
}

/* Only a node that has not joined yet sends no cluster id: its store has
 * no cluster settings, and those are every store's first entry, so it has
 * applied nothing, leads nothing and sends nothing but its beat.  Any other
 * message without the id cannot show which cluster it belongs to. */
static bool newcomer(const envelope *env)
{
	const Certsync__Beat *b = env->beat;

	return env->body_case == CERTSYNC__ENVELOPE__BODY_BEAT && !b->leading &&
	       (b->applied == NULL || b->applied->seq == 0);
}

void repl_on_msg(repl *r, struct peer *p, const envelope *env, bool router)
{
	const Certsync__KdfParams *own = r->loc.kdf;
	bool beat = env->body_case == CERTSYNC__ENVELOPE__BODY_BEAT;
	bool foreign = env->cluster_id.len == 0
	                   ? !newcomer(env)
	                   : own != NULL && (env->cluster_id.len != own->cluster_id.len ||
	                                     memcmp(env->cluster_id.data, own->cluster_id.data,
	                                            own->cluster_id.len) != 0);

	if (foreign) {
		wire_drop(r, p, &r->cnt.wrong_cluster, "%s",
		          env->cluster_id.len == 0
		              ? "it names no cluster, yet is more than a new node's beat"
		              : "it belongs to another cluster");
		if (router && beat && r->leading)
			refuse(r, p, "it belongs to another cluster than this primary's");
		return;
	}
	/* An epoch far above ours would make ours wrap. */
	if (env->epoch > r->loc.epoch && env->epoch - r->loc.epoch > EPOCH_JUMP_MAX) {
		wire_drop(r, p, &r->cnt.bad_epoch,
		          "epoch %" PRIu64 " is more than %d above %" PRIu64 ", the highest known",
		          env->epoch, EPOCH_JUMP_MAX, r->loc.epoch);
		return;
	}
	if (beat) {
		on_beat(r, p, env, router);
	} else if (!router) {
		follow_msg(r, p, env);
	} else if (env->body_case == CERTSYNC__ENVELOPE__BODY_DIVERGED) {
		lead_diverged(r, p, env->diverged);
	} else if (env->epoch < r->loc.epoch) {
		wire_drop(r, p, &r->cnt.stale_epoch, "epoch %" PRIu64 " is older than %" PRIu64,
		          env->epoch, r->loc.epoch);
	} else {
		wire_drop(r, p, &r->cnt.undecodable,
		          "a primary's message sent to a follower's "
		          "socket");
	}
}

static void recv_all(repl *r, void *sock, struct peer *from)
{
	envelope *env;
	struct peer *p;

	for (int i = 0; i < RECV_BURST && wire_recv(r, sock, from, &env, &p); i++) {
		if (env == NULL)
			continue;
		repl_on_msg(r, p, env, from == NULL);
		certsync__envelope__free_unpacked(env, NULL);
	}
}

/* ---- requests from the agent ---- */

static void start_wait(repl *r, struct waiter *w)
{
	for (size_t i = 0; i < r->npeers; i++) {
		const struct peer *p = &r->peers[i];
		uint64_t bit = (uint64_t)1 << i;

		if (w->mode == REPL_WAIT_NONE ||
		    (w->mode == REPL_WAIT_BACKUP && p->role == REPL_TRAFFIC))
			continue;
		/* Waiting for a node that is down only delays the answer. */
		if (heard_recently(r, p))
			w->need |= bit;
		else
			w->missing |= bit;
	}
	w->deadline = repl_now() + w->timeout_ms;
	w->next = r->waiters;
	r->waiters = w;
}

static void publish(repl *r)
{
	struct view *v = &r->view;

	pthread_mutex_lock(&r->mu);
	v->leading = r->leading;
	v->starting = r->starting_until != 0;
	v->epoch = r->loc.epoch;
	v->applied = r->loc.applied;
	v->leader = r->leading ? -2 : r->f.leader ? (int)(r->f.leader - r->peers) : -1;
	v->fstate = r->f.state;
	memcpy(v->refusal, r->refusal, sizeof(v->refusal));
	v->cnt = r->cnt;
	for (size_t i = 0; i < r->npeers; i++)
		v->peers[i] = r->peers[i].s;
	pthread_mutex_unlock(&r->mu);
}

/* Takes what the agent queued; false when it asks the thread to stop. */
static bool take_requests(repl *r)
{
	struct waiter *in;
	bool stop, pushed, promoting, force;
	cs_err err = {0};
	int rc;

	drain_fd(r->wake_fd);
	pthread_mutex_lock(&r->mu);
	stop = r->stop;
	pushed = r->pushed;
	r->pushed = false;
	in = r->incoming;
	r->incoming = NULL;
	promoting = r->promote.pending;
	force = r->promote.force;
	r->promote.pending = false;
	pthread_mutex_unlock(&r->mu);
	if (pushed && r->leading && local_reload(r) == 0)
		lead_push(r);
	while (in != NULL) {
		struct waiter *w = in;

		in = in->next;
		start_wait(r, w);
	}
	waiters_check(r, false);
	if (promoting) {
		rc = role_event(r, force ? RE_FORCE : RE_PROMOTE, 0, &err);
		publish(r);
		pthread_mutex_lock(&r->mu);
		r->promote.rc = rc;
		r->promote.err = err;
		r->promote.done = true;
		pthread_cond_broadcast(&r->cv);
		pthread_mutex_unlock(&r->mu);
	}
	return !stop;
}

/* Ends the start-up wait once every primary-capable peer was heard (a
 * higher epoch among them has made this node step down already) or the
 * failure timeout has passed. */
static void check_started(repl *r)
{
	bool heard = true;

	if (r->starting_until == 0)
		return;
	for (size_t i = 0; i < r->npeers; i++)
		if (r->peers[i].role != REPL_TRAFFIC && r->peers[i].s.heard == 0)
			heard = false;
	if (!r->leading || heard || repl_now() >= r->starting_until) {
		if (r->leading)
			cs_info("repl: %s accepts changes: %s", r->name,
			        heard ? "every primary-capable peer was heard"
			              : "no primary-capable peer was heard within the failure "
			                "timeout");
		r->starting_until = 0;
	}
}

static void tick(repl *r)
{
	r->next_beat = repl_now() + r->beat_ms;
	follow_choose(r);
	beat_all(r);
	lead_tick(r);
	follow_tick(r);
	waiters_check(r, false);
}

static void *run(void *arg)
{
	repl *r = arg;
	zmq_pollitem_t items[4 + MAX_PEERS];
	struct peer *owner[4 + MAX_PEERS] = {NULL};
	size_t n = 0;
	bool running = true;

	items[n++] = (zmq_pollitem_t){.fd = r->wake_fd, .events = ZMQ_POLLIN};
	items[n++] = (zmq_pollitem_t){.socket = r->zap, .events = ZMQ_POLLIN};
	items[n++] = (zmq_pollitem_t){.socket = r->monitor, .events = ZMQ_POLLIN};
	items[n++] = (zmq_pollitem_t){.socket = r->router, .events = ZMQ_POLLIN};
	for (size_t i = 0; i < r->npeers; i++) {
		if (r->peers[i].dealer == NULL)
			continue;
		owner[n] = &r->peers[i];
		items[n++] = (zmq_pollitem_t){.socket = r->peers[i].dealer, .events = ZMQ_POLLIN};
	}
	while (running) {
		int64_t wait = r->next_beat - repl_now();

		if (zmq_poll(items, (int)n, wait > 0 ? (long)wait : 0) < 0 &&
		    zmq_errno() != EINTR) {
			cs_error("repl: polling the sockets failed: %s; replication stops",
			         zmq_strerror(zmq_errno()));
			break;
		}
		if (items[0].revents & ZMQ_POLLIN)
			running = take_requests(r);
		if (items[1].revents & ZMQ_POLLIN)
			wire_zap(r);
		if (items[2].revents & ZMQ_POLLIN)
			wire_watch(r);
		for (size_t i = 3; i < n; i++)
			if (items[i].revents & ZMQ_POLLIN)
				recv_all(r, items[i].socket, owner[i]);
		if (repl_now() >= r->next_beat)
			tick(r);
		check_started(r);
		publish(r);
	}
	follow_stop(r);
	lead_stop(r); /* every wait completes */
	return NULL;
}

/* ---- the API ---- */

static void free_repl(repl *r)
{
	for (size_t i = 0; i < r->npeers; i++) {
		free(r->peers[i].name);
		free(r->peers[i].endpoint);
	}
	free(r->peers);
	free(r->view.peers);
	free(r->name);
	free(r->loc.hist);
	if (r->loc.kdf != NULL)
		certsync__kdf_params__free_unpacked(r->loc.kdf, NULL);
	if (r->pass != NULL)
		cs_secret_free(r->pass);
	cs_key_free(r->newkey);
	cs_key_free(r->nextkey);
	if (r->wake_fd >= 0)
		close(r->wake_fd);
	if (r->notify_fd >= 0)
		close(r->notify_fd);
	sodium_memzero(r->sec, sizeof(r->sec));
	free(r);
}

static int copy_config(repl *r, const repl_config *cfg, cs_err *err)
{
	if (cfg->npeers > MAX_PEERS)
		return cs_fail(err, CS_EUSAGE, "%zu peers: a cluster has at most %d", cfg->npeers,
		               MAX_PEERS);
	r->name = strdup(cfg->name);
	r->peers = calloc(cfg->npeers ? cfg->npeers : 1, sizeof(*r->peers));
	r->view.peers = calloc(cfg->npeers ? cfg->npeers : 1, sizeof(*r->view.peers));
	if (r->name == NULL || r->peers == NULL || r->view.peers == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	r->role = cfg->role;
	memcpy(r->pub, cfg->public_key, REPL_KEY_LEN);
	memcpy(r->sec, cfg->secret_key, REPL_KEY_LEN);
	r->beat_ms = cfg->heartbeat_ms > 0 ? cfg->heartbeat_ms : 1000;
	r->dead_ms = r->beat_ms * (cfg->dead_beats > 0 ? cfg->dead_beats : 3);
	for (size_t i = 0; i < cfg->npeers; i++) {
		const repl_peer *c = &cfg->peers[i];
		struct peer *p = &r->peers[i];

		r->npeers = i + 1;
		if (c->role != REPL_TRAFFIC && c->endpoint == NULL)
			return cs_fail(err, CS_EUSAGE,
			               "peer %s is a %s and needs repl_endpoint, where this node "
			               "connects to it",
			               c->name, repl_role_name(c->role));
		p->name = strdup(c->name);
		p->endpoint = c->endpoint ? strdup(c->endpoint) : NULL;
		if (p->name == NULL || (c->endpoint != NULL && p->endpoint == NULL))
			return cs_fail(err, CS_EIO, "out of memory");
		p->role = c->role;
		memcpy(p->pub, c->public_key, REPL_KEY_LEN);
	}
	if (cfg->pass != NULL) {
		r->pass = sodium_malloc(cfg->passlen + 1);
		if (r->pass == NULL)
			return cs_fail(err, CS_EIO, "out of memory");
		memcpy(r->pass, cfg->pass, cfg->passlen);
		r->pass[cfg->passlen] = '\0';
		r->passlen = cfg->passlen;
	}
	r->find_key = cfg->find_key;
	r->find_key_ctx = cfg->find_key_ctx;
	return 0;
}

/* The role this node starts in comes from the store (see repl_start). */
static int initial_role(repl *r, cs_err *err)
{
	uint64_t led;
	cs_txn *txn;

	if (cs_txn_begin(r->st, true, &txn, err) != 0)
		return -1;
	if (cs_txn_led(txn, &led) == 1 &&
	    cs_txn_set_epoch(txn, cs_txn_epoch(txn), r->role == REPL_PRIMARY, err) != 0) {
		cs_txn_abort(txn);
		return -1;
	}
	cs_txn_led(txn, &led);
	r->leading = led != 0 && led == cs_txn_epoch(txn);
	for (size_t i = 0; r->leading && i < r->npeers; i++)
		if (r->peers[i].role != REPL_TRAFFIC)
			r->starting_until = repl_now() + r->dead_ms;
	return cs_txn_commit(txn, NULL, NULL, err);
}

int repl_prepare(repl **out, const repl_config *cfg, cs_store *st, const repl_hooks *hooks,
                 cs_err *err)
{
	repl *r = calloc(1, sizeof(*r));

	*out = NULL;
	if (r == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	r->st = st;
	r->hooks = *hooks;
	r->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	r->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->wake_fd < 0 || r->notify_fd < 0) {
		cs_fail(err, CS_EIO, "eventfd: %s", strerror(errno));
		goto fail;
	}
	if (copy_config(r, cfg, err) != 0 || initial_role(r, err) != 0)
		goto fail;
	if (local_reload(r) != 0) {
		cs_fail(err, CS_EIO, "cannot read the store");
		goto fail;
	}
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	*out = r;
	return 0;
fail:
	free_repl(r);
	return -1;
}

void repl_discard(repl *r)
{
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free_repl(r);
}

int repl_start(repl **out, const repl_config *cfg, cs_store *st, const repl_hooks *hooks,
               cs_err *err)
{
	repl *r;
	int rc;

	if (repl_prepare(&r, cfg, st, hooks, err) != 0)
		return -1;
	if (wire_open(r, cfg->listen, err) != 0)
		goto close;
	publish(r);
	rc = pthread_create(&r->thread, NULL, run, r);
	if (rc != 0) {
		cs_fail(err, CS_EIO, "cannot start the replication thread: %s", strerror(rc));
		goto close;
	}
	cs_info("repl: %s listens on %s as %s, epoch %" PRIu64 ", at seq %" PRIu64, r->name,
	        cfg->listen, r->leading ? "the primary" : "a follower", r->loc.epoch,
	        r->loc.applied.seq);
	*out = r;
	return 0;
close:
	wire_close(r);
	repl_discard(r);
	return -1;
}

static void run_done(repl *r, struct waiter *w)
{
	json_t *names = json_array();

	for (size_t i = 0; i < r->npeers; i++)
		if (w->missing & ((uint64_t)1 << i))
			json_array_append_new(names, json_string(r->peers[i].name));
	w->done(w->arg, names);
	free(w);
}

void repl_dispatch(repl *r)
{
	struct waiter *done = NULL, *w;
	bool changed;
	cs_pos pos;
	cs_key *key;

	drain_fd(r->notify_fd);
	pthread_mutex_lock(&r->mu);
	changed = r->changed;
	pos = r->changed_pos;
	r->changed = false;
	key = r->newkey;
	r->newkey = NULL;
	/* The thread queues at the front; answer in the order asked. */
	while ((w = r->finished) != NULL) {
		r->finished = w->next;
		w->next = done;
		done = w;
	}
	pthread_mutex_unlock(&r->mu);
	if (changed && r->hooks.changed != NULL)
		r->hooks.changed(r->hooks.ctx, pos);
	if (key != NULL && r->hooks.key != NULL)
		r->hooks.key(r->hooks.ctx, key);
	else
		cs_key_free(key);
	while ((w = done) != NULL) {
		done = w->next;
		run_done(r, w);
	}
}

void repl_stop(repl *r)
{
	struct waiter *w;

	if (r == NULL)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	pthread_mutex_unlock(&r->mu);
	wake(r->wake_fd);
	pthread_join(r->thread, NULL);
	wire_close(r);
	/* Waits the thread never took complete like the ones it did. */
	while ((w = r->incoming) != NULL) {
		r->incoming = w->next;
		w->missing = ~(uint64_t)0 >> (64 - (r->npeers ? r->npeers : 1));
		w->next = r->finished;
		r->finished = w;
	}
	repl_dispatch(r);
	repl_discard(r);
}

int repl_fd(const repl *r)
{
	return r->notify_fd;
}

void repl_committed(repl *r)
{
	pthread_mutex_lock(&r->mu);
	r->pushed = true;
	pthread_mutex_unlock(&r->mu);
	wake(r->wake_fd);
}

int repl_wait(repl *r, cs_pos pos, repl_wait_mode mode, int timeout_ms, repl_done_fn done,
              void *arg, cs_err *err)
{
	struct waiter *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	w->pos = pos;
	w->mode = mode;
	w->timeout_ms = timeout_ms;
	w->done = done;
	w->arg = arg;
	pthread_mutex_lock(&r->mu);
	w->next = r->incoming;
	r->incoming = w;
	pthread_mutex_unlock(&r->mu);
	wake(r->wake_fd);
	return 0;
}

int repl_promote(repl *r, bool force, cs_err *err)
{
	int rc;

	pthread_mutex_lock(&r->mu);
	r->promote.pending = true;
	r->promote.force = force;
	r->promote.done = false;
	pthread_mutex_unlock(&r->mu);
	wake(r->wake_fd);
	pthread_mutex_lock(&r->mu);
	while (!r->promote.done)
		pthread_cond_wait(&r->cv, &r->mu);
	rc = r->promote.rc;
	if (rc != 0)
		*err = r->promote.err;
	pthread_mutex_unlock(&r->mu);
	return rc;
}

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

static void iso_time(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, 32, "%" PRId64, t);
}

/* Returns 1 for an entry that does not decode or memory that ran out. */
static int diverged_json(void *ctx, const cs_diverged *d)
{
	Certsync__LogEntry *e = certsync__log_entry__unpack(NULL, d->entry_len, d->entry);
	char id[2 * CS_DIGEST_LEN + 1], when[32], found[32];
	json_t *item;

	if (e == NULL)
		return 1;
	cs_hex(d->id, CS_DIGEST_LEN, id);
	iso_time(e->time, when);
	iso_time(d->found, found);
	item = json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:I, s:o}", "id", id, "origin",
	                 d->origin, "epoch", (json_int_t)e->epoch, "seq", (json_int_t)e->seq,
	                 "time", when, "summary", e->summary, "found", found, "ops",
	                 (json_int_t)e->n_ops, "applied_seq",
	                 d->applied_seq ? json_integer((json_int_t)d->applied_seq) : json_null());
	certsync__log_entry__free_unpacked(e, NULL);
	return item != NULL && json_array_append_new(ctx, item) == 0 ? 0 : 1;
}

json_t *repl_diverged_list(cs_store *st, cs_err *err)
{
	json_t *list = json_array();
	cs_txn *txn;
	int rc;

	if (list == NULL) {
		cs_fail(err, CS_EIO, "out of memory");
		return NULL;
	}
	if (cs_txn_begin(st, false, &txn, err) != 0) {
		json_decref(list);
		return NULL;
	}
	rc = cs_txn_diverged_foreach(txn, diverged_json, list, err);
	cs_txn_abort(txn);
	if (rc > 0)
		cs_fail(err, CS_EIO, "a diverged entry does not decode, or memory ran out");
	if (rc != 0) {
		json_decref(list);
		return NULL;
	}
	return list;
}
