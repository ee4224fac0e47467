/* notify.c — readiness and shutdown messages to systemd through libsystemd's
 * sd_notify (see notify.h). */
#include "notify.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "../common/log.h"

/* The environment is kept (unset_environment 0): STOPPING=1 goes to the same
 * socket later.  A failure only costs the service manager's view of the
 * start, so it is logged, never fatal. */
static void notify(const char *state)
{
	int rc = sd_notify(0, state);

	if (rc < 0)
		cs_warn("cannot tell the service manager '%.*s': %s; check NOTIFY_SOCKET",
		        (int)strcspn(state, "\n"), state, strerror(-rc));
}

void cs_notify_ready(const cs_config *cfg)
{
	char msg[PATH_MAX + 256];

	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s (%s, %s); control socket %s", cfg->name,
	         cs_role_name(cfg->role), cfg->hostname, cfg->control_socket);
	notify(msg);
}

void cs_notify_stopping(void)
{
	notify("STOPPING=1\nSTATUS=stopping");
}
