/* live.h — the parts of the configuration the agent's loop replaces while
 * other threads read them: the peers (the cluster's membership: members.c)
 * and [acme] (SIGHUP: reload.c).
 *
 * Each is published as an immutable, reference-counted snapshot.  A thread
 * (the command worker, the monitor's worker, the ACME runner) takes a
 * reference to the current one, reads it for as long as its work takes and
 * drops it; the loop publishes a new one under the lock, and a replaced
 * snapshot is freed by whoever drops the last reference, so no thread ever
 * reads a list the loop freed.  The loop's own copy (node->cfg) stays the
 * loop's: only the loop reads it. */
#ifndef CS_LIVE_H
#define CS_LIVE_H

#include <stdatomic.h>
#include <stdint.h>

#include "../common/err.h"
#include "config.h"

typedef struct cs_live cs_live;

/* What every snapshot starts with: a snapshot's pointer is its cs_snap's
 * (cs_snap_drop((cs_snap *)s)). */
typedef struct cs_snap {
	atomic_uint refs;
	void (*destroy)(struct cs_snap *s);
} cs_snap;

typedef struct cs_peers_snap {
	cs_snap base;
	cs_peer *v; /* the node's peers (this node is not among them) */
	size_t n;
} cs_peers_snap;

typedef struct cs_acme_snap {
	cs_snap base;
	/* 1 for the section the agent started with, one more for each
	 * section SIGHUP published: a client made under another generation
	 * may speak to another CA, as another account */
	uint64_t gen;
	cs_acme_config a; /* directory NULL: no [acme] */
} cs_acme_snap;

/* Copies cfg's peers and [acme] into the first snapshots. */
int cs_live_new(cs_live **out, const cs_config *cfg, cs_err *err);
/* Drops the live snapshots; those a thread still holds stay until it drops
 * them.  After every thread that takes snapshots stopped. */
void cs_live_free(cs_live *l);

/* On the loop: publishes copies of peers / of a. */
int cs_live_set_peers(cs_live *l, const cs_peer *v, size_t n, cs_err *err);
int cs_live_set_acme(cs_live *l, const cs_acme_config *a, cs_err *err);

/* Any thread: a reference to the current snapshot; drop it when done. */
cs_peers_snap *cs_live_peers(cs_live *l);
cs_acme_snap *cs_live_acme(cs_live *l);
void cs_snap_drop(cs_snap *s); /* NULL: nothing */

#endif
