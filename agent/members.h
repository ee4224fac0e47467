/* members.h — the cluster's membership as the agent keeps it: the
 * replicated record (records.h: rec_members) every node follows, its seed from
 * the primary's configuration, and bringing the node's peers (the
 * configuration's view, the replication's allowlist and links) in line with
 * it whenever it changes.  The commands that change it are in
 * ops_members.c. */
#ifndef CS_MEMBERS_H
#define CS_MEMBERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../records/records.h"
#include "../store/store.h"
#include "config.h"

struct cs_node;

/* The membership the configuration describes: this node (its endpoints as
 * others reach them, its public key) and its [peer] sections. */
int members_from_config(const cs_config *cfg, rec_members *m, cs_err *err);

/* Puts the configuration's membership into txn: the first change of a new
 * cluster carries it.  Does nothing on a node without replication. */
int ops_members_seed(struct cs_node *node, cs_txn *txn, cs_err *err);
/* A primary whose store has no membership yet (a cluster older than it)
 * writes the seed once it accepts changes; called after every pass of the
 * agent's loop, a no-op once the record is known. */
void ops_members_ensure(struct cs_node *node);
/* Reads the record after a change and, when it differs from what the node
 * follows, makes it the node's peers (the configuration's view and the
 * replication's), logging where it overrides the configuration. */
void ops_members_sync(struct cs_node *node);
/* Frees what the node kept of its configuration's [peer] sections. */
void ops_members_close(struct cs_node *node);

#endif
