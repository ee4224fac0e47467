/* monitor.h — conditions, alerts and their delivery (the monitor module's API).
 *
 * The agent hands the monitor a snapshot of facts (mon_facts: the
 * certificates in use, coverage, peers, diverged changes) and the monitor
 * owns every rule about them: which facts are conditions and how severe
 * (mon_evaluate), when a condition becomes an alert (mon_tracker: start,
 * severity change, daily repeat, recovery, with a grace period against
 * flapping), and where alerts go (mon_monitor: logged, then delivered off
 * the caller's thread).  Time is always passed in, so every rule is tested
 * with injected time.  It also renders what the node knows for others:
 * Prometheus metrics and the status page, served by the admin listener
 * (mon_admin) from facts the agent gives as JSON. */
#ifndef CS_MONITOR_H
#define CS_MONITOR_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "../common/err.h"

struct event_base;

typedef enum mon_severity { MON_OK = 0, MON_WARNING, MON_ERROR } mon_severity;

const char *mon_severity_name(mon_severity s);

/* ---- facts: what the agent knows, with no judgement ----------------------- */

/* A certificate the node uses: the default, or the one it serves for its
 * hostname or the site hostname.  One entry per use; the same certificate
 * in several uses is judged once. */
typedef struct mon_cert {
	const char *id; /* hex SHA-256 of the leaf */
	const char *name;
	const char *use; /* "the default certificate", "served for HOST" */
	int64_t not_before, not_after;
} mon_cert;

/* A hostname of the cluster and whether the default certificate covers it. */
typedef struct mon_host {
	const char *hostname;
	bool covered;
} mon_host;

/* A peer as replication knows it. */
typedef struct mon_peer {
	const char *name;
	bool heard;      /* within the failure timeout */
	int64_t lag;     /* entries behind the primary; -1 unknown */
	bool refusing;   /* it refuses the cluster passphrase */
	const char *why; /* its refusal, when refusing */
} mon_peer;

/* ACME work.  Not wired yet: the agent passes none until the acme module
 * runs in it; the rule (overdue past its window, or stopped on an error
 * that needs the operator: error) is evaluated on what is passed. */
typedef struct mon_acme {
	const char *name;    /* the certificate the order renews */
	int64_t window_end;  /* the renewal should be done by then; 0 none */
	const char *stopped; /* an error that needs the operator; NULL none */
} mon_acme;

/* What a node's TLS endpoint served for a hostname at the primary's last
 * check (the TLS check of verify --cluster), for nodes at the primary's
 * position. */
typedef struct mon_serving {
	const char *node;
	const char *host;
	const char *endpoint;
	const char *served;   /* id (hex) of the leaf served; NULL: no answer */
	const char *expected; /* id (hex) its store says it serves */
	const char *expected_name;
	const char *error; /* why it did not answer, when served is NULL */
} mon_serving;

typedef struct mon_facts {
	int64_t now;
	bool primary;  /* cluster-wide conditions are the primary's alone */
	bool refusing; /* this node refuses the cluster passphrase */
	const mon_cert *certs;
	size_t ncerts;
	const mon_host *hosts;
	size_t nhosts;
	const mon_peer *peers;
	size_t npeers;
	size_t diverged; /* diverged changes not re-applied */
	const mon_acme *acme;
	size_t nacme;
	const mon_serving *serving;
	size_t nserving;
} mon_facts;

/* ---- conditions ----------------------------------------------------------- */

enum { MON_KEY_LEN = 160, MON_TEXT_LEN = 384 };

/* A condition: a stable key (the same across severities, so a warning that
 * becomes an error is one condition changing), its severity and a sentence
 * an operator acts on. */
typedef struct mon_condition {
	char key[MON_KEY_LEN];
	mon_severity severity;
	char text[MON_TEXT_LEN];
} mon_condition;

typedef struct mon_rules {
	int64_t expiry_warn_s; /* warn this long before expiry at least (25 days) */
	int64_t lag_bound;     /* a follower further behind is lagging (entries) */
} mon_rules;

void mon_rules_default(mon_rules *r);

/* How a certificate valid from not_before to not_after stands at now:
 * expired or not yet valid is an error; within expiry_warn_s of expiry or
 * its last tenth of lifetime, whichever comes first, a warning. */
mon_severity mon_cert_severity(int64_t not_before, int64_t not_after, int64_t now,
                               const mon_rules *r);

/* Every condition the facts show, at most max (the rest are dropped, and
 * the count returned is what was written). */
size_t mon_evaluate(const mon_facts *f, const mon_rules *r, mon_condition *out, size_t max);

/* ---- alerts: the state machine -------------------------------------------- */

typedef enum mon_alert_kind {
	MON_ALERT_START,
	MON_ALERT_CHANGE,
	MON_ALERT_REPEAT,
	MON_ALERT_RECOVERY,
	MON_ALERT_TEST,
} mon_alert_kind;

const char *mon_alert_kind_name(mon_alert_kind k);

typedef struct mon_alert {
	mon_alert_kind kind;
	char key[MON_KEY_LEN];
	mon_severity severity; /* MON_OK for a recovery */
	mon_severity previous; /* what was last sent; MON_OK for a start */
	char text[MON_TEXT_LEN];
	int64_t time;
	int64_t since; /* when the condition was first seen */
} mon_alert;

typedef struct mon_tracker mon_tracker;

/* grace_s: how long a start, a change or an end must hold before it is
 * sent; repeat_s: how often an active alert repeats (a day). */
mon_tracker *mon_tracker_new(int64_t grace_s, int64_t repeat_s);
void mon_tracker_free(mon_tracker *t);

/* Feeds the conditions seen at now; calls emit for every alert due, in
 * order.  Returns -1 only when memory runs out. */
typedef void (*mon_emit_fn)(void *arg, const mon_alert *a);
int mon_tracker_update(mon_tracker *t, const mon_condition *conds, size_t n, int64_t now,
                       mon_emit_fn emit, void *arg);

/* The alerts sent and not recovered: [{key, severity, text, since, sent}]. */
json_t *mon_tracker_active(const mon_tracker *t);
/* The highest severity among them. */
mon_severity mon_tracker_worst(const mon_tracker *t);

/* An alert as delivered: {"kind","key","severity","previous","text","node",
 * "time","since"} (times in RFC 3339). */
json_t *mon_alert_json(const mon_alert *a, const char *node);

/* ---- the [alerts] section ------------------------------------------------- */

typedef struct mon_config {
	char *command;            /* absolute path, run with the alert on stdin */
	char *webhook;            /* https://, or http:// to a loopback address */
	char *webhook_ca_file;    /* CA bundle the webhook's certificate is checked with */
	char *webhook_token_file; /* bearer token (not world-readable) */
	char *smtp_url;           /* smtp:// (STARTTLS required) or smtps:// */
	char *smtp_from;
	char *smtp_ca_file; /* CA bundle the mail server's certificate is checked with */
	char **smtp_to;     /* repeatable */
	size_t nsmtp_to;
	char *smtp_user;
	char *smtp_password_file; /* not world-readable */
	int grace_s;              /* a change must hold this long (default 120) */
	int interval_s;           /* evaluate at least this often (default 15) */
	int timeout_ms;           /* one delivery attempt (default 10000) */
	int serving_check_s;      /* the primary checks what nodes serve this often (300) */
} mon_config;

void mon_config_init(mon_config *c);
void mon_config_free(mon_config *c);
/* Whether key may be given more than once (smtp_to). */
bool mon_config_repeatable(const char *key);
/* Sets one key of [alerts]; -1 with a CS_EUSAGE message naming the key and
 * the fix (the caller adds the file and line). */
int mon_config_set(mon_config *c, const char *key, const char *value, cs_err *err);
/* Checks the section as a whole (SMTP needs a sender and a recipient; the
 * secret files exist and are not world-readable); -1 with CS_EUSAGE. */
int mon_config_check(const mon_config *c, cs_err *err);

/* ---- the monitor: evaluation, alerts, delivery ---------------------------- */

typedef struct mon_monitor mon_monitor;

/* Secrets the agent read from the configured files (NULL when not
 * configured); copied, and wiped when the monitor stops. */
typedef struct mon_secrets {
	const char *webhook_token;
	const char *smtp_password;
} mon_secrets;

/* Starts the delivery thread.  cfg must outlive the monitor. */
int mon_start(mon_monitor **out, const mon_config *cfg, const mon_secrets *sec, const char *node,
              cs_err *err);
/* Delivers to the targets cfg configures from now on (SIGHUP): a target
 * kept keeps its queue and counts, one removed drops what it had queued.
 * It waits for an attempt in flight to end (within its timeout).  cfg must
 * outlive the monitor, or the next mon_retarget. */
int mon_retarget(mon_monitor *m, const mon_config *cfg, const mon_secrets *sec, cs_err *err);
/* Stops delivery (an attempt in flight ends within its timeout) and frees. */
void mon_stop(mon_monitor *m);

/* Evaluates the facts, logs every alert due and queues it to every target.
 * Never waits for a delivery. */
int mon_observe(mon_monitor *m, const mon_facts *f);
/* Queues a test alert to every target (and logs it); the count of targets. */
size_t mon_send_test(mon_monitor *m, int64_t now);

/* {"active": [...], "worst": severity, "targets": [{"target","sent","failed",
 * "queued","last_error"}]}. */
json_t *mon_status(mon_monitor *m);

/* ---- metrics and the admin listener ---------------------------------------- */

/* What the node reports for /metrics besides its certificates, as JSON the
 * agent builds on request:
 *   {"tls": tls_server_status() or absent,
 *    "replication": repl_status() or absent,
 *    "position": {"epoch", "seq"},
 *    "serving": the primary's last check of what nodes serve, or absent:
 *               {"results": [{"node", "host", "status", ...}]},
 *    "acme": the ACME client's request counts (acme_request_stats), or
 *            absent}
 * The monitor adds its own alert figures. */
typedef json_t *(*mon_facts_json_fn)(void *ctx);

/* Writes the Prometheus text exposition of facts and m's alerts to f. */
void mon_metrics_write(FILE *f, const json_t *facts, mon_monitor *m);

/* Writes the certificate metrics of certs, [{"id", "name", "not_before",
 * "not_after" (Unix seconds), "default", "has_key", "renewal" (Unix
 * seconds, only on a managed certificate's current one)}], as they stand at now
 * (ready: it holds its key and is valid then).  Returns when that text
 * goes stale by time alone: the next not_before or not_after after now
 * (INT64_MAX: never). */
int64_t mon_metrics_certificates(FILE *f, const json_t *certs, int64_t now);

/* Checks [node] admin_listen (ADDR:PORT) and admin_token_file: a
 * non-loopback address needs the token, and the token file must exist and
 * not be world-readable; -1 with CS_EUSAGE naming the key and the fix. */
int mon_admin_config_check(const char *listen, const char *token_file, cs_err *err);

typedef struct mon_admin mon_admin;

/* Connections the admin listener holds at most; more wait until one ends
 * (the agent's descriptor budget counts them). */
#define MON_ADMIN_MAX_CONNS 16

/* Where the admin listener's answers come from. */
typedef struct mon_admin_source {
	mon_facts_json_fn metrics; /* the facts above, for /metrics */
	/* the certificates for /metrics: {"generation": G, "certificates": [as
	 * mon_metrics_certificates takes them]}, where G is any JSON value that
	 * changes whenever they may (the store's position) */
	mon_facts_json_fn certificates;
	mon_facts_json_fn generation; /* G alone, cheaply */
	/* runs work(arg, stop) on a thread off the loop, then done(arg,
	 * cancelled) on the loop; -1 when it cannot (neither is called):
	 * certificates is then called on the loop */
	int (*offload)(void *ctx, void (*work)(void *arg, const atomic_bool *stop),
	               void (*done)(void *arg, bool cancelled), void *arg);
	/* what `status --json` prints, plus "certificates": the identity
	 * certificates as `cert list --json` gives them, without their chain:
	 * /status.json, and the page drawn from it */
	mon_facts_json_fn status;
	void *ctx;
} mon_admin_source;

/* Serves /metrics, the status page (/) and /status.json on listen from
 * base (the agent's loop); with token, every request needs
 * "Authorization: Bearer TOKEN" (401 otherwise).  Headers over 8 KiB are
 * refused; only GET is taken; any other path is 404; at most
 * MON_ADMIN_MAX_CONNS connections are open at once.  The token is copied.
 * Stop src's offload thread (its jobs done or cancelled) before
 * mon_admin_stop. */
int mon_admin_start(mon_admin **out, struct event_base *base, const char *listen, const char *token,
                    mon_monitor *m, const mon_admin_source *src, cs_err *err);
void mon_admin_stop(mon_admin *a);

/* The status page: one self-contained HTML document (no external assets)
 * drawn from what the status source gives, with an SVG timeline of every
 * identity certificate's validity over the next 120 days from now. */
void mon_page_write(FILE *f, const json_t *status, int64_t now);

#endif
