/* ops_defer.c — commands whose slow part runs on the worker (worker.h):
 * decoding an import, generating a key, waiting for a promotion, building
 * the tables of `verify --cluster`.  One pass of the event loop is the
 * group-commit unit and the acknowledgement dispatcher, so anything slow
 * there would delay every client.  The request is answered later through
 * the control socket's deferred answers; a change writes the store back on
 * the loop, in the batch of the pass its work came back in. */
#include "ops.h"

#include "worker.h"

static void defer_work(void *arg, const atomic_bool *stop)
{
	ops_deferred *d = arg;

	d->rc = d->work(d, stop);
	d->ran = true;
}

static void defer_done(void *arg, bool cancelled)
{
	ops_deferred *d = arg;
	struct cs_node *node = d->node;
	json_t *result = NULL;
	cs_pos before = node->committed;

	/* A change writes nothing once the loop has stopped; what was done
	 * off the loop (a promotion) is answered as it came out. */
	if (cancelled && (d->change || !d->ran))
		cs_fail(&d->err, CS_EIO,
		        "%s: the agent stopped before it was done; nothing was stored: run it "
		        "again",
		        d->cmd);
	else if (d->rc == 0 && d->change && !ops_leading(node))
		cs_fail(&d->err, CS_EREFUSED,
		        "%s refused: %s stopped being the primary while it ran; run it on the "
		        "primary",
		        d->cmd, node->cfg->name);
	else if (d->rc == 0 && (!d->change || ops_batch_begin(node, &d->err) == 0)) {
		before = node->committed; /* the store's position: the batch read it */
		result = d->finish(d, &d->err);
	}
	if (result != NULL && d->change && !cs_pos_same(node->committed, before))
		ops_hold_pending(node, d->pending, &d->wait, result);
	else if (!d->answered)
		cs_control_answer(d->pending, result, &d->err);
	d->free(d);
}

json_t *ops_defer(ops_deferred *d, cs_err *err)
{
	struct cs_node *node = d->node;

	if (node->worker == NULL) {
		cs_fail(err, CS_EIO, "%s: the agent's worker is not running; restart the agent",
		        d->cmd);
		d->free(d);
		return NULL;
	}
	if ((d->pending = cs_control_defer(node->ctl)) == NULL) {
		cs_fail(err, CS_EIO, "cannot answer %s later; try again", d->cmd);
		d->free(d);
		return NULL;
	}
	if (cs_worker_submit(node->worker, defer_work, defer_done, d) < 0) {
		cs_fail(&d->err, CS_EIO, "out of memory");
		cs_control_answer(d->pending, NULL, &d->err);
		d->free(d);
	}
	return NULL;
}
