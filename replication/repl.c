/* repl.c — the replication thread and the API the agent calls (repl.h):
 * starting and stopping, the loop that polls the sockets and the agent's
 * requests, beats, and waits for acknowledgements.  The role state machine
 * is role.c; the status the agent shows is status.c.
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

#include "../common/log.h"

#define RECV_BURST 256 /* messages taken from one socket before looking at the others */

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

void repl_notify_agent(repl *r)
{
	wake(r->notify_fd);
}

void wake_thread(repl *r)
{
	wake(r->wake_fd);
}

void repl_announce_changed(repl *r)
{
	pthread_mutex_lock(&r->mu);
	r->changed = true;
	r->changed_pos = r->loc.applied;
	pthread_mutex_unlock(&r->mu);
	wake(r->notify_fd);
}

/* ---- the store as the thread sees it ---- */

int repl_local_reload(repl *r)
{
	struct local *l = &r->loc;
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
		Certsync__KdfParams *kdf;

		rc = rec_kdf_get(txn, &kdf, &err) < 0 ? -1 : 0;
		if (kdf != NULL) {
			if (l->kdf != NULL)
				certsync__kdf_params__free_unpacked(l->kdf, NULL);
			l->kdf = kdf;
		}
	}
	cs_txn_abort(txn);
	if (rc == 0)
		return 0;
fail:
	cs_error("repl: reading the store: %s", err.msg);
	return -1;
}

/* ---- messages ---- */

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
		repl_on_beat(r, p, env, router);
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

		if (p->removed || w->mode == REPL_WAIT_NONE ||
		    (w->mode == REPL_WAIT_BACKUP && p->role == CS_ROLE_TRAFFIC))
			continue;
		/* Waiting for a node that is down only delays the answer. */
		if (repl_heard_recently(r, p))
			w->need |= bit;
		else
			w->missing |= bit;
	}
	w->deadline = cs_mono_ms() + w->timeout_ms;
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
	members_take(r);
	if (pushed && r->leading && repl_local_reload(r) == 0)
		lead_push(r);
	while (in != NULL) {
		struct waiter *w = in;

		in = in->next;
		start_wait(r, w);
	}
	repl_waiters_check(r, false);
	if (promoting) {
		rc = repl_role_event(r, force ? REPL_EV_FORCE : REPL_EV_PROMOTE, 0, &err);
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
		if (r->peers[i].role != CS_ROLE_TRAFFIC && !r->peers[i].removed &&
		    r->peers[i].s.heard == 0)
			heard = false;
	if (!r->leading || heard || cs_mono_ms() >= r->starting_until) {
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
	r->next_beat = cs_mono_ms() + r->beat_ms;
	follow_choose(r);
	repl_beat_all(r);
	lead_tick(r);
	follow_tick(r);
	repl_waiters_check(r, false);
}

/* The sockets the thread polls, with the peer each link leads to: built
 * again whenever the membership opens or closes a link. */
static size_t poll_items(repl *r, zmq_pollitem_t *items, struct peer **owner)
{
	size_t n = 0;

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
	r->relink = false;
	return n;
}

static void *run(void *arg)
{
	repl *r = arg;
	zmq_pollitem_t items[4 + MAX_PEERS];
	struct peer *owner[4 + MAX_PEERS] = {NULL};
	size_t n = 0;
	bool running = true;

	pthread_setname_np(pthread_self(), "cs-repl"); /* top -H, perf, gdb */
	r->relink = true;
	while (running) {
		int64_t wait = r->next_beat - cs_mono_ms();

		if (r->relink)
			n = poll_items(r, items, owner);

		if (zmq_poll(items, (int)n, wait > 0 ? (long)wait : 0) < 0 &&
		    zmq_errno() != EINTR) {
			cs_error("repl: polling the sockets failed: %s; replication stops",
			         zmq_strerror(zmq_errno()));
			break;
		}
		if (items[0].revents & ZMQ_POLLIN)
			running = take_requests(r);
		if (r->relink)
			continue; /* a closed link's item is stale: poll again first */
		if (items[1].revents & ZMQ_POLLIN)
			wire_zap(r);
		if (items[2].revents & ZMQ_POLLIN)
			wire_watch(r);
		for (size_t i = 3; i < n; i++)
			if (items[i].revents & ZMQ_POLLIN)
				recv_all(r, items[i].socket, owner[i]);
		if (cs_mono_ms() >= r->next_beat)
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
	/* Room for every member the cluster may gain (members.c). */
	r->peers = calloc(MAX_PEERS, sizeof(*r->peers));
	r->view.peers = calloc(MAX_PEERS, sizeof(*r->view.peers));
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
		if (c->role != CS_ROLE_TRAFFIC && c->endpoint == NULL)
			return cs_fail(err, CS_EUSAGE,
			               "peer %s is a %s and needs repl_endpoint, where this node "
			               "connects to it",
			               c->name, cs_role_name(c->role));
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
	    cs_txn_set_epoch(txn, cs_txn_epoch(txn), r->role == CS_ROLE_PRIMARY, err) != 0) {
		cs_txn_abort(txn);
		return -1;
	}
	cs_txn_led(txn, &led);
	r->leading = led != 0 && led == cs_txn_epoch(txn);
	for (size_t i = 0; r->leading && i < r->npeers; i++)
		if (r->peers[i].role != CS_ROLE_TRAFFIC)
			r->starting_until = cs_mono_ms() + r->dead_ms;
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
	if (repl_local_reload(r) != 0) {
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
	members_discard(r);
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
	/* Logged before the thread starts: from then on r->leading and r->loc
	 * are the thread's, which may be reloading them (a race ThreadSanitizer
	 * reported when this line came after pthread_create). */
	cs_info("repl: %s listens on %s as %s, epoch %" PRIu64 ", at seq %" PRIu64, r->name,
	        cfg->listen, r->leading ? "the primary" : "a follower", r->loc.epoch,
	        r->loc.applied.seq);
	rc = pthread_create(&r->thread, NULL, run, r);
	if (rc != 0) {
		cs_fail(err, CS_EIO, "cannot start the replication thread: %s", strerror(rc));
		goto close;
	}
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

	/* Under mu: the thread adds peers and marks them removed (members.c)
	 * while the agent lists them here. */
	pthread_mutex_lock(&r->mu);
	for (size_t i = 0; i < r->npeers; i++)
		if ((w->missing & ((uint64_t)1 << i)) && !r->peers[i].removed)
			json_array_append_new(names, json_string(r->peers[i].name));
	pthread_mutex_unlock(&r->mu);
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
