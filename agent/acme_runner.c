/* acme_runner.c — the thread that obtains and renews managed certificates
 * while this node is the primary.
 *
 * ACME is slow (the CA validates, polls, issues) and blocking (libcurl), so
 * it never runs on the agent's loop.  The thread reads the store itself
 * (LMDB read transactions are per thread) but writes only through the loop
 * (acme_runner_commit): a change is committed there like any command's,
 * with the loop's batch, then replicated, and the thread goes on once the
 * backup acknowledged it, so that a promoted backup finds every step the
 * CA was told about.  The loop tells the thread after each pass whether the
 * node still leads (acme_runner_tick); a node that stops leading stops at
 * the next step, and its changes are refused from then on. */
#include "acme_runner_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/crypto.h>

#include "../common/log.h"
#include "node.h"
#include "ops.h"

/* The runner looks at the schedule at least this often. */
#define RUNNER_IDLE_S 60
/* In the minute after an order, whether what it replaced may go is looked
 * at this often: the new certificate reaches every node within seconds,
 * and a short lifetime renews again within the minute. */
#define RUNNER_RETIRE_SOON_S 5
/* How long a change waits for the backup's acknowledgement. */
#define RUNNER_ACK_MS 10000

struct change {
	const char *summary;
	acme_change_fn fn;
	void *ctx;
	cs_err err;
	int rc;
	bool done;
};

struct acme_runner {
	struct cs_node *node;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	atomic_bool leading, stop;
	atomic_bool cancel;    /* !leading || stop: the client's blocking calls give up */
	bool wake;             /* under lock */
	struct change *change; /* under lock: the one waiting for the loop */
	char working_on[72];   /* under lock */
	int pipe[2];           /* the thread writes a byte when change is set */
	struct event *ev;
	const cs_key *key; /* set by the loop before leading turns true */
	/* The loop's own: the change waiting for the backup's acknowledgement,
	 * how many acknowledgements are pending, and whether the runner was
	 * stopped (then the last acknowledgement frees it). */
	struct change *inflight;
	int acks_pending;
	bool stopped;
	cs_pos seen; /* the position of the node's last change at the last tick */
};

bool acme_runner_leading(acme_runner *r)
{
	return atomic_load(&r->leading) && !atomic_load(&r->stop);
}

bool acme_runner_heard(acme_runner *r, const char *peer)
{
	json_t *st, *p;
	size_t i;
	bool heard = true; /* without replication there is no view to doubt it */

	if (r->node->repl == NULL || (st = repl_status(r->node->repl)) == NULL)
		return true;
	json_array_foreach(json_object_get(st, "peers"), i, p)
	{
		const char *name = json_string_value(json_object_get(p, "name"));

		if (name != NULL && strcmp(name, peer) == 0)
			heard = json_is_true(json_object_get(p, "reachable"));
	}
	json_decref(st);
	return heard;
}

static void finish(acme_runner *r, struct change *c, int rc)
{
	pthread_mutex_lock(&r->lock);
	c->rc = rc;
	c->done = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

struct acked {
	acme_runner *r;
	struct change *c;
};

static void release(acme_runner *r)
{
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	free(r);
}

static void on_acked(void *arg, json_t *unconfirmed)
{
	struct acked *a = arg;
	acme_runner *r = a->r;

	r->acks_pending--;
	if (!r->stopped) {
		if (json_array_size(unconfirmed) > 0)
			cs_warn("acme: %s: not acknowledged by every backup in %d ms; going on",
			        a->c->summary, RUNNER_ACK_MS);
		r->inflight = NULL;
		finish(r, a->c, 0);
	} else if (r->acks_pending == 0) {
		release(r);
	}
	json_decref(unconfirmed);
	free(a);
}

/* On the loop: one change of the runner, as a command's would be. */
static void apply(acme_runner *r, struct change *c)
{
	struct cs_node *node = r->node;
	struct acked *a;
	cs_txn *txn;

	if (!ops_leading(node)) {
		finish(r, c,
		       cs_fail(&c->err, CS_EREFUSED, "%s: this node is no longer the primary",
		               c->summary));
		return;
	}
	if (ops_batch_begin(node, &c->err) < 0 ||
	    cs_txn_begin(node->store, true, &txn, &c->err) < 0) {
		finish(r, c, -1);
		return;
	}
	if (c->fn(txn, c->ctx, &c->err) < 0) {
		cs_txn_abort(txn);
		finish(r, c, -1);
		return;
	}
	if (ops_commit(node, txn, c->summary, &c->err) < 0 || cs_node_flush(node, &c->err) < 0) {
		finish(r, c, -1);
		return;
	}
	if (node->repl == NULL || (a = malloc(sizeof(*a))) == NULL) {
		finish(r, c, 0);
		return;
	}
	*a = (struct acked){r, c};
	if (repl_wait(node->repl, node->committed, REPL_WAIT_BACKUP, RUNNER_ACK_MS, on_acked, a,
	              &c->err) < 0) {
		free(a);
		finish(r, c, 0); /* on disk; it reaches the backup when it catches up */
		return;
	}
	r->inflight = c;
	r->acks_pending++;
}

static void deliver(evutil_socket_t fd, short what, void *arg)
{
	acme_runner *r = arg;
	struct change *c;
	char buf[16];

	(void)what;
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	pthread_mutex_lock(&r->lock);
	c = r->change;
	r->change = NULL;
	pthread_mutex_unlock(&r->lock);
	if (c != NULL)
		apply(r, c);
}

int acme_runner_commit(acme_runner *r, const char *summary, acme_change_fn fn, void *ctx,
                       cs_err *err)
{
	struct change c = {.summary = summary, .fn = fn, .ctx = ctx};

	if (!acme_runner_leading(r))
		return cs_fail(err, CS_EREFUSED, "%s: this node is no longer the primary", summary);
	pthread_mutex_lock(&r->lock);
	r->change = &c;
	while (write(r->pipe[1], "", 1) < 0 && errno == EINTR)
		;
	/* The loop answers every change it takes; at stop, acme_runner_stop
	 * answers the one it did not take. */
	while (!c.done)
		pthread_cond_wait(&r->cond, &r->lock);
	pthread_mutex_unlock(&r->lock);
	if (c.rc < 0)
		*err = c.err;
	return c.rc;
}

/* ---- the schedule ---------------------------------------------------------- */

struct due {
	time_t now, first; /* first: the earliest future attempt */
	time_t poll;       /* the earliest time renewalInfo is to be asked again; 0 none */
	char name[72];
	int64_t at;
};

static int pick(void *ctx, const char *name, ProtobufCMessage *m)
{
	struct due *d = ctx;
	Certsync__AcmeCert *c = (Certsync__AcmeCert *)m;
	bool active = strcmp(c->state, REC_ACME_STATE_SCHEDULED) == 0 ||
	              strcmp(c->state, REC_ACME_STATE_RUNNING) == 0;

	if (!active || c->next_attempt <= 0)
		return 0;
	if (c->ari_next_poll > 0 && strcmp(c->window_source, "ari") == 0 &&
	    (d->poll == 0 || c->ari_next_poll < d->poll))
		d->poll = (time_t)c->ari_next_poll;
	if (c->next_attempt <= d->now && (d->name[0] == '\0' || c->next_attempt < d->at)) {
		snprintf(d->name, sizeof(d->name), "%s", name);
		d->at = c->next_attempt;
	} else if (c->next_attempt > d->now && (d->first == 0 || c->next_attempt < d->first)) {
		d->first = (time_t)c->next_attempt;
	}
	return 0;
}

/* The managed certificate due first (d->name "" for none) and when the
 * next one falls due. */
static int due(acme_runner *r, struct due *d)
{
	cs_txn *txn;
	cs_err err;
	int rc;

	memset(d, 0, sizeof(*d));
	d->now = time(NULL);
	if (cs_txn_begin(r->node->store, false, &txn, &err) < 0) {
		cs_error("acme: %s", err.msg);
		return -1;
	}
	rc = rec_acme_foreach(txn, REC_ACME_CERT, &certsync__acme_cert__descriptor, pick, d, &err);
	cs_txn_abort(txn);
	if (rc < 0)
		cs_error("acme: %s", err.msg);
	return rc;
}

static void sleep_until(acme_runner *r, time_t until)
{
	struct timespec ts = {.tv_sec = until};

	pthread_mutex_lock(&r->lock);
	while (!r->wake && !atomic_load(&r->stop) && time(NULL) < until)
		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	r->wake = false;
	pthread_mutex_unlock(&r->lock);
}

/* The [acme] section and the peers as they are now, for the pass that
 * starts; false when [acme] has no directory any more (SIGHUP removed it). */
static bool take_config(acme_runner *r, acme_ctx *ctx)
{
	cs_acme_snap *a = cs_live_acme(r->node->live);

	/* The client and the account were made for another section, maybe
	 * another CA: the next pass makes them again, from the new one. */
	if (ctx->acme != NULL && ctx->acme->gen != a->gen) {
		acme_ctx_clear(ctx);
		cs_info("acme: the [acme] section SIGHUP loaded applies from this pass on");
	}
	cs_snap_drop((cs_snap *)ctx->acme);
	ctx->acme = a;
	cs_snap_drop((cs_snap *)ctx->peers);
	ctx->peers = cs_live_peers(r->node->live);
	return a->a.directory != NULL;
}

static void *run(void *arg)
{
	acme_runner *r = arg;
	acme_ctx ctx = {.r = r, .cfg = r->node->cfg, .store = r->node->store, .cancel = &r->cancel};
	time_t retired = 0;    /* when acme_retire last ran */
	time_t obtained = 0;   /* when acme_obtain last returned */
	time_t ari_failed = 0; /* when asking renewalInfo again last failed */
	struct due d;

	pthread_setname_np(pthread_self(), "cs-acme"); /* top -H, perf, gdb */
	while (!atomic_load(&r->stop)) {
		time_t idle = time(NULL) + RUNNER_IDLE_S;

		if (!acme_runner_leading(r)) {
			acme_ctx_clear(&ctx); /* a new primary term starts afresh */
			sleep_until(r, idle);
			continue;
		}
		pthread_mutex_lock(&r->lock);
		ctx.key = r->key;
		pthread_mutex_unlock(&r->lock);
		if (!take_config(r, &ctx)) {
			acme_ctx_clear(&ctx);
			sleep_until(r, idle);
			continue;
		}
		if (due(r, &d) < 0 || d.name[0] == '\0') {
			time_t now = time(NULL), until = idle;
			time_t every =
			    now < obtained + RUNNER_IDLE_S ? RUNNER_RETIRE_SOON_S : RUNNER_IDLE_S;

			/* renewalInfo is asked again when its Retry-After has
			 * passed; after a failure, not before the next idle round */
			if (d.poll != 0 && d.poll <= now && now >= ari_failed + RUNNER_IDLE_S &&
			    acme_ari_poll(&ctx) < 0)
				ari_failed = now;
			if (now >= retired + every) {
				acme_retire(&ctx);
				retired = now;
			}
			if (retired + every < until)
				until = retired + every;
			if (d.first != 0 && d.first < until)
				until = d.first;
			if (d.poll > now && d.poll < until)
				until = d.poll;
			sleep_until(r, until);
			continue;
		}
		pthread_mutex_lock(&r->lock);
		snprintf(r->working_on, sizeof(r->working_on), "%s", d.name);
		pthread_mutex_unlock(&r->lock);
		acme_obtain(&ctx, d.name);
		retired = 0; /* what it replaced may go once it is served */
		obtained = time(NULL);
		pthread_mutex_lock(&r->lock);
		r->working_on[0] = '\0';
		pthread_mutex_unlock(&r->lock);
	}
	acme_ctx_clear(&ctx);
	cs_snap_drop((cs_snap *)ctx.acme);
	cs_snap_drop((cs_snap *)ctx.peers);
	OPENSSL_thread_stop();
	return NULL;
}

/* ---- the loop's side ----------------------------------------------------------- */

int acme_runner_start(acme_runner **out, struct cs_node *node, struct event_base *base, cs_err *err)
{
	acme_runner *r;

	*out = NULL;
	if (node->cfg->acme.directory == NULL) /* SIGHUP may start it later */
		return 0;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	r->node = node;
	r->pipe[0] = r->pipe[1] = -1;
	atomic_store(&r->cancel, true); /* until the first tick finds it leading */
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	if (pipe2(r->pipe, O_CLOEXEC | O_NONBLOCK) < 0 ||
	    (r->ev = event_new(base, r->pipe[0], EV_READ | EV_PERSIST, deliver, r)) == NULL ||
	    event_add(r->ev, NULL) < 0) {
		if (r->ev != NULL)
			event_free(r->ev);
		close(r->pipe[0]);
		close(r->pipe[1]);
		release(r);
		return cs_fail(err, CS_EIO, "cannot start the ACME runner");
	}
	acme_runner_tick(r);
	if (pthread_create(&r->thread, NULL, run, r) != 0) {
		event_free(r->ev);
		close(r->pipe[0]);
		close(r->pipe[1]);
		release(r);
		return cs_fail(err, CS_EIO, "cannot start the ACME runner thread");
	}
	*out = r;
	return 0;
}

void acme_runner_tick(acme_runner *r)
{
	bool leading;

	if (r == NULL)
		return;
	leading = ops_leading(r->node) && r->node->key != NULL;
	/* `cluster rekey` gives the node a new key: what the runner seals from
	 * now on is sealed under it */
	if (r->key != r->node->key) {
		pthread_mutex_lock(&r->lock);
		r->key = r->node->key;
		pthread_mutex_unlock(&r->lock);
	}
	/* A change on disk (acme add, renew) may have made something due. */
	if (!cs_pos_same(r->seen, r->node->committed)) {
		r->seen = r->node->committed;
		acme_runner_wake(r);
	}
	if (leading == atomic_load(&r->leading))
		return;
	atomic_store(&r->leading, leading);
	atomic_store(&r->cancel, !leading);
	cs_info("acme: %s", leading ? "this node is the primary: ACME work starts"
	                            : "this node is no longer the primary: ACME work stops");
	acme_runner_wake(r);
}

void acme_runner_wake(acme_runner *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	r->wake = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

json_t *acme_runner_status(acme_runner *r)
{
	json_t *j;

	if (r == NULL)
		return json_pack("{s:b}", "running", false);
	pthread_mutex_lock(&r->lock);
	j = json_pack("{s:b, s:b, s:s?}", "running", true, "leading", atomic_load(&r->leading),
	              "working_on", r->working_on[0] ? r->working_on : NULL);
	pthread_mutex_unlock(&r->lock);
	return j;
}

void acme_runner_stop(acme_runner *r)
{
	struct change *c;

	if (r == NULL)
		return;
	atomic_store(&r->stop, true);
	atomic_store(&r->leading, false);
	atomic_store(&r->cancel, true);
	/* A change the loop will not take any more is refused, so the thread
	 * sees the stop at its next step. */
	for (;;) {
		pthread_mutex_lock(&r->lock);
		r->wake = true;
		pthread_cond_broadcast(&r->cond);
		c = r->change;
		r->change = NULL;
		pthread_mutex_unlock(&r->lock);
		if (c != NULL)
			finish(r, c, cs_fail(&c->err, CS_EREFUSED, "the agent is stopping"));
		/* committed; its acknowledgement will not be waited for */
		if ((c = r->inflight) != NULL)
			finish(r, c, 0);
		r->inflight = NULL;
		if (pthread_tryjoin_np(r->thread, NULL) == 0)
			break;
		usleep(10000);
	}
	event_free(r->ev);
	close(r->pipe[0]);
	close(r->pipe[1]);
	r->stopped = true;
	if (r->acks_pending == 0)
		release(r);
}
