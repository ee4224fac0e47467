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

/* The ACME client's request counts and durations (metrics_acme.c), from
 * what acme_request_stats gives; nothing without it. */
void mon_metrics_acme(FILE *f, const json_t *acme);

/* The certificate part of /metrics as last rendered (metrics_cache.c). */
typedef struct mon_metrics_cache mon_metrics_cache;

struct evbuffer;

mon_metrics_cache *mon_metrics_cache_new(void);
/* Call it with no render running (src's offload thread stopped). */
void mon_metrics_cache_free(mon_metrics_cache *c);
/* Calls ready(arg, ok) on the loop once the certificate metrics at now are
 * there to add: at once while src's generation is the same as the text
 * last rendered and time has not changed it; else after a render off the
 * loop (src's offload; one at a time, shared by every scrape waiting).  ok
 * is false when src failed or the render was cancelled.  -1 (ready not
 * called) when memory runs out. */
int mon_metrics_cache_when_ready(mon_metrics_cache *c, const mon_admin_source *src, int64_t now,
                                 void (*ready)(void *arg, bool ok), void *arg);
/* Adds the text last rendered to out, by reference; -1 when out of memory. */
int mon_metrics_cache_add(mon_metrics_cache *c, struct evbuffer *out);

#endif
