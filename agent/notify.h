/* notify.h — the agent's readiness protocol with its service manager.
 *
 * Under systemd (Type=notify) the agent says READY=1 once its control
 * socket listens, so `systemctl start` returns when `certsync status`
 * answers, and STOPPING=1 when it begins to shut down.  Outside systemd
 * (no NOTIFY_SOCKET) these do nothing. */
#ifndef CS_NOTIFY_H
#define CS_NOTIFY_H

#include "config.h"

/* The control socket answers: the start is complete.  The node's name,
 * role and control socket go along for `systemctl status`. */
void cs_notify_ready(const cs_config *cfg);

/* The agent leaves its event loop and closes. */
void cs_notify_stopping(void);

#endif
