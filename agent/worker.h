/* worker.h — slow work off the agent's event loop.
 *
 * Decoding what an operator imports, generating an RSA key, waiting for a
 * promotion or building verify --cluster's tables can take seconds; the
 * event loop must keep answering `status` and every other client meanwhile
 * (ops_defer.c runs those commands here).  A job's work runs on the worker's
 * thread and touches only the job; its done callback then runs on the event
 * loop, where the store may be written.  Jobs run one at a time, in order. */
#ifndef CS_WORKER_H
#define CS_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>

#include <event2/event.h>

#include "../common/err.h"

typedef struct cs_worker cs_worker;

/* Runs on the worker thread.  *stop becomes true when the agent stops: a
 * long job checks it between items and gives up. */
typedef void (*cs_work_fn)(void *job, const atomic_bool *stop);
/* Runs on the event loop once the work is done, or with cancelled when the
 * worker stopped first (the job may then be half done); frees the job. */
typedef void (*cs_work_done_fn)(void *job, bool cancelled);

int cs_worker_start(cs_worker **out, struct event_base *base, cs_err *err);
/* Queues a job; -1 (and nothing queued) when out of memory. */
int cs_worker_submit(cs_worker *w, cs_work_fn work, cs_work_done_fn done, void *job);
/* Tells the running job to stop, waits for it (a bounded wait: jobs check
 * *stop between items), and calls every job's done with cancelled. */
void cs_worker_stop(cs_worker *w);

#endif
