/* reload.h — SIGHUP: the agent reads its configuration again and applies
 * what can change while it runs (log_level, the alert targets of [alerts],
 * tls_handshake_timeout, tls_max_connections_per_ip, the [acme] section);
 * every other key that
 * changed is logged by name as needing a restart.  A configuration that no longer loads changes
 * nothing: the agent keeps running on the one it has and logs why. */
#ifndef CS_RELOAD_H
#define CS_RELOAD_H

#include <event2/event.h>

#include "../common/err.h"
#include "config.h"
#include "node.h"

typedef struct cs_reload cs_reload;

/* Catches SIGHUP on base (a libevent signal event: the work runs on the
 * loop, never in the handler).  boot is the configuration the agent
 * started with; it must outlive the reload. */
int cs_reload_start(cs_reload **out, struct event_base *base, cs_node *node, const cs_config *boot,
                    cs_err *err);
/* Stops catching SIGHUP (before base goes). */
void cs_reload_stop(cs_reload *r);
/* Frees the configurations it loaded; after the node is closed, as its
 * monitor may use one. */
void cs_reload_free(cs_reload *r);

#endif
