/* monitor_int.h — inside the monitor module: the delivery targets, each one
 * attempt at handing one alert over, bounded in time. */
#ifndef CS_MONITOR_INT_H
#define CS_MONITOR_INT_H

#include <stddef.h>

#include "monitor.h"
#include <stdbool.h>

/* One attempt: 0 when the target took the alert, -1 with why filled.
 * json is the alert as mon_alert_json gives it; subject a one-line
 * summary for e-mail. */
typedef int (*mon_deliver_fn)(const mon_config *cfg, const mon_secrets *sec, const char *json,
                              const char *subject, char *why, size_t whylen);

int mon_deliver_command(const mon_config *cfg, const mon_secrets *sec, const char *json,
                        const char *subject, char *why, size_t whylen);
int mon_deliver_webhook(const mon_config *cfg, const mon_secrets *sec, const char *json,
                        const char *subject, char *why, size_t whylen);
int mon_deliver_smtp(const mon_config *cfg, const mon_secrets *sec, const char *json,
                     const char *subject, char *why, size_t whylen);

#endif
