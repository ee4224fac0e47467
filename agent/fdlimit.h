/* fdlimit.h — the agent's descriptor budget.
 *
 * A service starts with a soft RLIMIT_NOFILE of 1,024 while the TLS
 * endpoint alone may hold tls_max_connections sockets.  At start the agent
 * raises the soft limit to the hard one and checks that its bounded users
 * of descriptors (TLS connections, control connections, unauthenticated
 * replication connections, the admin listener's connections, and a reserve
 * for the store, event loops and links) fit in it, so that accept never
 * runs out in normal operation. */
#ifndef CS_FDLIMIT_H
#define CS_FDLIMIT_H

#include "../common/err.h"
#include "config.h"

/* Raises the soft limit and checks the budget.  A tls_max_connections left
 * to its default is lowered to what fits (and logged); a configured one
 * that does not fit is a configuration error (CS_EUSAGE) naming the key,
 * the limit and the fix. */
int cs_fdlimit_apply(cs_config *cfg, cs_err *err);

#endif
