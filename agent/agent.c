/* agent.c — `certsync agent`: loads the configuration, opens the node and
 * serves the control socket until SIGTERM or SIGINT.  This is the edge where
 * startup errors are printed, once. */
#include "agent.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <event2/event.h>

#include "../common/log.h"
#include "config.h"
#include "control.h"
#include "fdlimit.h"
#include "node.h"
#include "notify.h"
#include "reload.h"
#include "worker.h"

static const char usage[] = "usage: certsync agent -c FILE\n"
                            "\n"
                            "Runs the node agent in the foreground, logging to stderr.\n"
                            "Stops cleanly on SIGTERM or SIGINT; on SIGHUP reads FILE again.\n";

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	cs_info("signal %d: stopping", (int)sig);
	event_base_loopbreak(arg);
}

static void on_repl(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	cs_node_repl_dispatch(arg);
}

/* The monitor's tick: conditions are evaluated at least this often, and
 * after every pass of the loop that committed a change. */
static void on_monitor(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	cs_node_monitor(arg);
}

/* *reload outlives serve: the monitor may deliver by a configuration it
 * loaded until the node is closed. */
/* A SIGHUP that arrives before the loop catches it would end the agent
 * (its default action) during the key derivation at start-up, and one
 * during shutdown after the handler is gone likewise.  It is blocked
 * meanwhile, in every thread, which all inherit the mask from this one:
 * a blocked SIGHUP stays pending and reloads the file once unblocked. */
static void hold_sighup(bool hold)
{
	sigset_t hup;

	sigemptyset(&hup);
	sigaddset(&hup, SIGHUP);
	pthread_sigmask(hold ? SIG_BLOCK : SIG_UNBLOCK, &hup, NULL);
}

static int serve(const cs_config *cfg, cs_node *node, cs_reload **reload, cs_err *err)
{
	struct event_base *base = event_base_new();
	struct event *sigterm = NULL, *sigint = NULL, *repl_ev = NULL, *mon_ev = NULL;
	struct timeval mon_every = {cfg->alerts.interval_s, 0};
	mon_admin *admin = NULL;
	cs_control *ctl = NULL;
	cs_worker *worker = NULL, *mon_worker = NULL, *admin_worker = NULL;
	int rc = -1;

	if (base == NULL)
		return cs_fail(err, CS_EIO, "cannot create the event loop");
	sigterm = evsignal_new(base, SIGTERM, on_signal, base);
	sigint = evsignal_new(base, SIGINT, on_signal, base);
	if (sigterm == NULL || sigint == NULL || evsignal_add(sigterm, NULL) < 0 ||
	    evsignal_add(sigint, NULL) < 0) {
		cs_fail(err, CS_EIO, "cannot catch SIGTERM and SIGINT");
		goto out;
	}
	if (cs_control_listen(&ctl, base, cfg->control_socket, cs_node_handle, node, err) < 0 ||
	    cs_worker_start(&worker, base, err) < 0 ||
	    cs_worker_start(&mon_worker, base, err) < 0 ||
	    cs_worker_start(&admin_worker, base, err) < 0 || cs_node_start_tls(node, err) < 0)
		goto out;
	cs_node_set_control(node, ctl);
	cs_node_set_worker(node, worker);
	cs_node_set_mon_worker(node, mon_worker, admin_worker);
	if (cs_node_repl_fd(node) >= 0 &&
	    ((repl_ev = event_new(base, cs_node_repl_fd(node), EV_READ | EV_PERSIST, on_repl,
	                          node)) == NULL ||
	     event_add(repl_ev, NULL) < 0)) {
		cs_fail(err, CS_EIO, "cannot watch the replication thread");
		goto out;
	}
	if (cs_node_admin_start(node, base, &admin, err) < 0 ||
	    cs_reload_start(reload, base, node, cfg, err) < 0 ||
	    cs_node_acme_start(node, base, err) < 0)
		goto out;
	hold_sighup(false);
	if ((mon_ev = event_new(base, -1, EV_PERSIST, on_monitor, node)) == NULL ||
	    event_add(mon_ev, &mon_every) < 0) {
		cs_fail(err, CS_EIO, "cannot schedule the monitor");
		goto out;
	}
	cs_info("%s (%s, %s) ready; control socket %s", cfg->name, cs_role_name(cfg->role),
	        cfg->hostname, cfg->control_socket);
	cs_notify_ready(cfg);
	/* One pass at a time: the changes a pass ran reach the disk together
	 * (cs_node_flush), before the next pass reads more requests. */
	do {
		cs_err ignored; /* a failed flush was answered to its changes */

		rc = event_base_loop(base, EVLOOP_ONCE);
		cs_node_flush(node, &ignored);
		cs_node_monitor_changed(node);
		cs_node_members_ensure(node);
		cs_node_acme_tick(node);
	} while (rc == 0 && !event_base_got_break(base));
	cs_notify_stopping();
	rc = rc < 0 ? cs_fail(err, CS_EIO, "the event loop failed") : 0;
out:
	hold_sighup(true);
	/* The runner's last change is answered before the loop goes. */
	cs_node_acme_stop(node);
	if (repl_ev)
		event_free(repl_ev);
	/* An import still decoding stops at its next file and is answered
	 * while the control socket is still open. */
	cs_node_set_worker(node, NULL);
	cs_worker_stop(worker);
	cs_node_set_mon_worker(node, NULL, NULL);
	cs_worker_stop(mon_worker);
	cs_worker_stop(admin_worker);
	if (mon_ev)
		event_free(mon_ev);
	mon_admin_stop(admin);
	cs_node_set_control(node, NULL);
	cs_control_close(ctl);
	cs_reload_stop(*reload);
	if (sigterm)
		event_free(sigterm);
	if (sigint)
		event_free(sigint);
	event_base_free(base);
	return rc;
}

/* The agent holds unsealed keys and the cluster key: a core dump would
 * write them to disk, so there is none unless core_dumps = 1. */
static int no_core_dumps(const cs_config *cfg, cs_err *err)
{
	const struct rlimit none = {0, 0};

	if (cfg->core_dumps) {
		cs_warn("core_dumps = 1: a core dump of this agent holds its unsealed keys");
		return 0;
	}
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 || setrlimit(RLIMIT_CORE, &none) != 0)
		return cs_fail(err, CS_EIO, "cannot turn core dumps off: %s", strerror(errno));
	return 0;
}

int cs_agent_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	cs_config cfg;
	cs_node *node;
	cs_reload *reload = NULL;
	cs_err err = {0};
	int c, rc;

	hold_sighup(true);
	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	if (path == NULL || optind != argc) {
		fputs(usage, stderr);
		return 2;
	}
	if (cs_config_load(&cfg, path, &err) < 0) {
		cs_error("%s", err.msg);
		return 2;
	}
	cs_log_set_level(cfg.log_level);
	if (cs_fdlimit_apply(&cfg, &err) < 0) {
		cs_error("%s", err.msg);
		cs_config_free(&cfg);
		return 2;
	}
	if (no_core_dumps(&cfg, &err) < 0) {
		cs_error("%s", err.msg);
		cs_config_free(&cfg);
		return 1;
	}
	/* A client that goes away mid-answer must not kill the agent. */
	signal(SIGPIPE, SIG_IGN);
	if (cs_node_open(&node, &cfg, &err) < 0) {
		cs_error("%s", err.msg);
		cs_config_free(&cfg);
		return cs_err_exit_status(err.code) == 2 ? 2 : 1;
	}
	rc = serve(&cfg, node, &reload, &err);
	if (rc < 0)
		cs_error("%s", err.msg);
	else
		cs_info("stopped");
	cs_node_close(node);
	cs_reload_free(reload);
	cs_config_free(&cfg);
	/* A configured path that cannot be used is a configuration error. */
	return rc < 0 ? (cs_err_exit_status(err.code) == 2 ? 2 : 1) : 0;
}
