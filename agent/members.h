/* members.h — the cluster's membership as the agent keeps it: the
 * replicated record (settings "members") every node follows, its seed from
 * the primary's configuration, and bringing the node's peers (the
 * configuration's view, the replication's allowlist and links) in line with
 * it whenever it changes.  The commands that change it are in
 * ops_members.c. */
#ifndef CS_MEMBERS_H
#define CS_MEMBERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../replication/repl.h"
#include "../store/store.h"
#include "cluster_init.h"
#include "config.h"

#define MEMBERS_MAX 65 /* this node and the replication's 64 peers */

typedef struct cs_member {
	char name[CS_NODE_NAME_MAX + 1];
	cs_role role;
	char hostname[256];
	char repl_endpoint[300]; /* "" when none */
	char tls_endpoint[300];  /* "" when none */
	uint8_t key[REPL_KEY_LEN];
} cs_member;

typedef struct cs_members {
	size_t n;
	cs_member v[MEMBERS_MAX];
} cs_members;

struct cs_node;

/* The record as txn sees it: 0 read into *m, 1 absent, -1 error. */
int members_load(cs_txn *txn, cs_members *m, cs_err *err);
int members_put(cs_txn *txn, const cs_members *m, cs_err *err);
/* The membership the configuration describes: this node (its endpoints as
 * others reach them, its public key) and its [peer] sections. */
int members_from_config(const cs_config *cfg, cs_members *m, cs_err *err);
/* The member named name, or NULL. */
const cs_member *members_find(const cs_members *m, const char *name);

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
