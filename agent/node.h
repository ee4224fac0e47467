/* node.h — the agent's state: configuration, store and cluster key, and the
 * operations the control socket runs against them. */
#ifndef CS_NODE_H
#define CS_NODE_H

#include <jansson.h>

#include "../common/err.h"
#include "config.h"
#include "control.h"

typedef struct cs_node cs_node;

/* Reads the passphrase, opens the store and derives the cluster key.  On a
 * primary whose store is new, creates the cluster settings (salt, limits,
 * key-check value).  A passphrase that does not give the cluster's key-check
 * value fails with "cluster passphrase does not match" and nothing written. */
int cs_node_open(cs_node **out, const cs_config *cfg, cs_err *err);
void cs_node_close(cs_node *node);

/* Starts the SNI TLS endpoint on the configured tls_listen addresses, serving
 * the store as it is; every later commit reloads what it serves.  Does
 * nothing without tls_listen. */
int cs_node_start_tls(cs_node *node, cs_err *err);

/* Replication, when configured: its eventfd (-1 without), readable when
 * cs_node_repl_dispatch has work; and the control socket, through which
 * changes waiting for acknowledgements answer later. */
int cs_node_repl_fd(cs_node *node);
void cs_node_repl_dispatch(cs_node *node);
void cs_node_set_control(cs_node *node, cs_control *ctl);
/* The thread imports are decoded on (worker.h); NULL refuses imports. */
struct cs_worker;
void cs_node_set_worker(cs_node *node, struct cs_worker *worker);
/* The threads the monitor's slow work runs on: probes (the primary's checks
 * of what nodes serve, which may wait seconds for an endpoint) and renders
 * (/metrics); NULL: none.  Stop them before the admin listener. */
void cs_node_set_mon_worker(cs_node *node, struct cs_worker *probes, struct cs_worker *renders);

/* Runs one control request (a cs_control_fn; ctx is the node).  Changes
 * are answered later, by cs_node_flush. */
json_t *cs_node_handle(void *ctx, const char *cmd, json_t *args, cs_err *err);

/* Ends the batch of changes the requests since the last flush made: one
 * durable commit for all of them, then their answers (each held change is
 * answered with the error when the commit fails; -1 then, with err).  The
 * agent calls it after every pass of its event loop; a no-op when nothing
 * changed. */
int cs_node_flush(cs_node *node, cs_err *err);

/* Gathers this node's facts and has the monitor evaluate them (alerts go
 * out from the monitor's own threads).  The agent calls it on a timer and
 * after changes. */
void cs_node_monitor(cs_node *node);
/* The same, only when this node committed a change since the last time. */
void cs_node_monitor_changed(cs_node *node);

/* Starts the admin listener (admin_listen: /metrics) on base; *out stays
 * NULL without admin_listen.  Stop it with mon_admin_stop before base goes. */
struct event_base;
int cs_node_admin_start(cs_node *node, struct event_base *base, mon_admin **out, cs_err *err);

/* ACME (acme_agent.h): every node's challenge answers (http_listen, the
 * TLS endpoint's acme-tls/1) and, with [acme], the runner that obtains and
 * renews certificates while the node is primary.  Tick after every pass of
 * the loop; stop before base goes. */
int cs_node_acme_start(cs_node *node, struct event_base *base, cs_err *err);
void cs_node_acme_tick(cs_node *node);
void cs_node_acme_stop(cs_node *node);

#endif
