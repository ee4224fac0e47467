/* monitor_int.h — inside the monitor module: the delivery targets, each one
 * attempt at handing one alert over, bounded in time; and the admin
 * listener's cache of the certificate metrics. */
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

/* The certificate part of /metrics as last rendered (metrics_cache.c). */
typedef struct mon_metrics_cache mon_metrics_cache;

struct evbuffer;

mon_metrics_cache *mon_metrics_cache_new(void);
void mon_metrics_cache_free(mon_metrics_cache *c);
/* Adds the certificate metrics at now to out: the text last rendered, by
 * reference, while src's generation is the same and time has not changed
 * it; else rendered again from src.  -1 when src fails or memory runs
 * out. */
int mon_metrics_cache_add(mon_metrics_cache *c, const mon_admin_source *src, int64_t now,
                          struct evbuffer *out);

#endif
