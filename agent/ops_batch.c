/* ops_batch.c — group commit: the changes one pass of the agent's event loop
 * runs share one durable commit.
 *
 * The first change of a pass opens a store batch (cs_store_batch_begin);
 * each change commits into it and its answer is held.  When the pass ends,
 * cs_node_flush commits the batch to disk once, then tells replication and
 * the TLS endpoint, and answers the held changes in the order they came:
 * at once, or once the followers acknowledged them (--wait).  So a change is
 * never answered, pushed or served before it is on disk, and N clients that
 * write at once pay one sync instead of N.  A command that is not a change
 * flushes first, so that it reads the changes before it as they are on
 * disk (and promote's replication thread can write the store: the batch
 * holds the store's write lock while it is open). */
#include "ops.h"

#include <pthread.h>
#include <stdlib.h>

#include "../common/log.h"
#include "node.h"

struct held {
	struct held *next;
	cs_control_pending *pending;
	repl_wait_mode mode;
	int timeout_ms;
	cs_pos pos;
	json_t *result;
};

/* Whether a writer off the loop holds the store (ops_exclusive_begin); the
 * gate makes its check and the batch's begin one step, so the loop never
 * waits behind such a writer for LMDB's lock. */
static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
static bool exclusive;

int ops_batch_begin(struct cs_node *node, cs_err *err)
{
	cs_txn *txn;
	int rc = -1;

	if (cs_store_batching(node->store))
		return 0;
	pthread_mutex_lock(&gate);
	if (exclusive) {
		cs_fail(err, CS_EREFUSED,
		        "the store is busy writing an import of many files (it takes seconds); "
		        "nothing changed: send this again shortly");
	} else if (cs_txn_begin(node->store, false, &txn, err) == 0) {
		/* The store's position, not the last change this node made:
		 * since then it may have followed another primary, and its own
		 * entries may have moved to diverged, so that position may even
		 * come again. */
		node->committed = cs_txn_applied(txn);
		cs_txn_abort(txn);
		node->durable = node->committed;
		rc = cs_store_batch_begin(node->store, err);
	}
	pthread_mutex_unlock(&gate);
	return rc;
}

int ops_exclusive_begin(struct cs_node *node, cs_txn **txn, cs_err *err)
{
	pthread_mutex_lock(&gate);
	exclusive = true;
	pthread_mutex_unlock(&gate);
	/* waits, at most, for the loop's batch of this pass */
	if (cs_txn_begin(node->store, true, txn, err) == 0)
		return 0;
	ops_exclusive_end();
	return -1;
}

void ops_exclusive_end(void)
{
	pthread_mutex_lock(&gate);
	exclusive = false;
	pthread_mutex_unlock(&gate);
}

static struct held *hold(struct cs_node *node, struct held *h, cs_control_pending *p,
                         const ops_wait_req *w, json_t *result)
{
	struct held **tail;

	h->pending = p;
	h->mode = w->mode;
	h->timeout_ms = w->timeout_ms;
	h->pos = node->committed;
	h->result = result;
	for (tail = &node->held; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = h;
	return h;
}

json_t *ops_hold(struct cs_node *node, const ops_wait_req *w, json_t *result, cs_err *err)
{
	struct held *h = calloc(1, sizeof(*h));
	cs_control_pending *p;

	if (h == NULL || (p = cs_control_defer(node->ctl)) == NULL) {
		/* No way to answer later: answer now, once it is on disk. */
		free(h);
		if (cs_node_flush(node, err) < 0) {
			json_decref(result);
			return NULL;
		}
		return result;
	}
	hold(node, h, p, w, result);
	return NULL; /* answered by cs_node_flush */
}

void ops_hold_pending(struct cs_node *node, cs_control_pending *p, const ops_wait_req *w,
                      json_t *result)
{
	struct held *h = calloc(1, sizeof(*h));
	cs_err err = {0};

	if (h != NULL) {
		hold(node, h, p, w, result);
		return;
	}
	/* Out of memory: answer now, once it is on disk. */
	if (cs_node_flush(node, &err) < 0) {
		json_decref(result);
		cs_control_answer(p, NULL, &err);
		return;
	}
	ops_wait(node, p, w->mode, w->timeout_ms, node->committed, result);
}

int cs_node_flush(cs_node *node, cs_err *err)
{
	struct held *h = node->held;
	cs_pos last;
	int rc;

	if (!cs_store_batching(node->store))
		return 0;
	node->held = NULL;
	rc = cs_store_batch_end(node->store, &last, err);
	if (rc < 0) {
		cs_error("changes %llu to %llu were not written: %s",
		         (unsigned long long)node->durable.seq + 1,
		         (unsigned long long)node->committed.seq, err->msg);
		node->committed = node->durable;
	} else if (last.seq != 0) {
		if (node->repl != NULL)
			repl_committed(node->repl);
		ops_reload_tls(node);
	}
	while (h != NULL) {
		struct held *next = h->next;

		if (rc < 0) {
			json_decref(h->result);
			cs_control_answer(h->pending, NULL, err);
		} else {
			ops_wait(node, h->pending, h->mode, h->timeout_ms, h->pos, h->result);
		}
		free(h);
		h = next;
	}
	return rc;
}
