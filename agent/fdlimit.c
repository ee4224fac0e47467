/* fdlimit.c — see fdlimit.h. */
#include "fdlimit.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../common/log.h"
#include "../monitor/monitor.h"
#include "../replication/repl.h"
#include "../tls/tls.h"
#include "control.h"

/* The store, the log, eventfds and epoll sets of every loop, ZeroMQ's I/O
 * threads and links to peers, files an import or export opens. */
#define FD_RESERVE 64
/* Fewest TLS connections worth serving; below, the limit is too low. */
#define TLS_MIN_CONNECTIONS 16
/* A hard limit of "unlimited" is not a value setrlimit takes for files. */
#define NOFILE_CEILING (1 << 20)

/* Descriptors the agent needs besides TLS connections. */
static long others(const cs_config *cfg)
{
	long workers = cfg->tls_workers > 0 ? cfg->tls_workers : sysconf(_SC_NPROCESSORS_ONLN);
	long n = FD_RESERVE + CS_CONTROL_MAX_CONNS;

	n += (workers > 0 ? workers : 1) * (long)cfg->ntls_listen; /* a listener per worker */
	if (cfg->repl_listen != NULL)
		n += REPL_MAX_UNAUTHENTICATED + 2 * (long)cfg->npeers;
	if (cfg->admin_listen != NULL)
		n += 1 + MON_ADMIN_MAX_CONNS; /* its listener and connections */
	return n;
}

int cs_fdlimit_apply(cs_config *cfg, cs_err *err)
{
	struct rlimit rl;
	long limit, rest, room;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return cs_fail(err, CS_EIO, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max < NOFILE_CEILING ? rl.rlim_max : NOFILE_CEILING;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			cs_warn("cannot raise the descriptor limit (RLIMIT_NOFILE) to %lu: %s",
			        (unsigned long)rl.rlim_cur, strerror(errno));
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	limit = rl.rlim_cur < NOFILE_CEILING ? (long)rl.rlim_cur : NOFILE_CEILING;
	if (cfg->ntls_listen == 0)
		return 0;
	rest = others(cfg);
	room = limit - rest;
	if (cfg->tls_max_connections > 0 && cfg->tls_max_connections <= room)
		return 0;
	if (cfg->tls_max_connections > 0 || room < TLS_MIN_CONNECTIONS)
		return cs_fail(err, CS_EUSAGE,
		               "%s: tls_max_connections = %d does not fit in the descriptor limit "
		               "(RLIMIT_NOFILE) of %ld, of which the agent keeps %ld for its "
		               "store, control and replication connections; lower "
		               "tls_max_connections to at most %ld, or raise the limit "
		               "(LimitNOFILE= in the systemd unit, ulimit -n in a shell) to at "
		               "least %ld",
		               cfg->path,
		               cfg->tls_max_connections > 0 ? cfg->tls_max_connections
		                                            : TLS_DEFAULT_MAX_CONNECTIONS,
		               limit, rest, room > 0 ? room : 0,
		               rest + (cfg->tls_max_connections > 0 ? cfg->tls_max_connections
		                                                    : TLS_MIN_CONNECTIONS));
	if (room < TLS_DEFAULT_MAX_CONNECTIONS) {
		cfg->tls_max_connections = (int)room;
		cs_info("tls: at most %ld connections, what the descriptor limit of %ld leaves "
		        "(raise it to serve more)",
		        room, limit);
	}
	return 0;
}
