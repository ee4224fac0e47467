/* monitor.c — the monitor as the agent runs it: each evaluation turns the
 * facts into conditions, the tracker turns them into alerts, and every
 * alert is logged and queued to every configured target.  Each target has
 * its own thread and queue, so a webhook that hangs delays neither the
 * agent nor the other targets; a failed attempt is retried with
 * exponential backoff, in order, and counted. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "../common/log.h"
#include "monitor_int.h"

enum {
	MAX_ATTEMPTS = 8,  /* about 4 minutes of retries, then the alert is given up */
	MAX_QUEUED = 1000, /* per target; past it new alerts are refused and counted */
	BACKOFF_MAX_S = 60,
	REPEAT_S = 24 * 3600, /* an active alert repeats daily */
	MAX_WHY = 256,
};

struct job {
	char *json;
	char subject[MON_TEXT_LEN + 64];
	int attempts;
	struct timespec next; /* CLOCK_MONOTONIC */
	struct job *next_job;
};

struct target {
	const char *name;
	mon_deliver_fn deliver;
	struct mon_monitor *m;
	pthread_t thread;
	bool started;
	struct job *head, *tail;
	size_t queued;
	unsigned long long sent, failed, given_up;
	char last_error[MAX_WHY];
};

struct mon_monitor {
	const mon_config *cfg;
	mon_secrets sec; /* copies, wiped at stop */
	char *node;
	mon_rules rules;
	mon_tracker *tracker;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* a job queued, or stopping */
	bool stopping;
	struct target targets[3];
	size_t ntargets;
};

static struct timespec mono_in(long ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

static bool reached(const struct timespec *t)
{
	struct timespec now = mono_in(0);

	return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

/* One target's thread: the head of its queue, attempted until it is taken
 * or has had MAX_ATTEMPTS, waiting 1, 2, 4 ... seconds between attempts. */
static void *worker(void *arg)
{
	struct target *t = arg;
	struct mon_monitor *m = t->m;

	pthread_setname_np(pthread_self(), "cs-alerts"); /* top -H, perf, gdb */
	pthread_mutex_lock(&m->mu);
	while (!m->stopping) {
		struct job *j = t->head;
		char why[MAX_WHY];
		int rc;

		if (j == NULL) {
			pthread_cond_wait(&m->cv, &m->mu);
			continue;
		}
		if (!reached(&j->next)) {
			pthread_cond_timedwait(&m->cv, &m->mu, &j->next);
			continue;
		}
		pthread_mutex_unlock(&m->mu);
		rc = t->deliver(m->cfg, &m->sec, j->json, j->subject, why, sizeof(why));
		pthread_mutex_lock(&m->mu);
		if (rc == 0) {
			t->sent++;
		} else {
			t->failed++;
			snprintf(t->last_error, sizeof(t->last_error), "%s", why);
			j->attempts++;
			cs_warn("alerts: %s: attempt %d of %d failed: %s", t->name, j->attempts,
			        MAX_ATTEMPTS, why);
			if (j->attempts < MAX_ATTEMPTS) {
				long s = 1L << (j->attempts - 1);

				j->next = mono_in(1000 * (s < BACKOFF_MAX_S ? s : BACKOFF_MAX_S));
				continue;
			}
			t->given_up++;
			cs_error("alerts: %s: gave up on an alert after %d attempts", t->name,
			         MAX_ATTEMPTS);
		}
		t->head = j->next_job;
		if (t->head == NULL)
			t->tail = NULL;
		t->queued--;
		free(j->json);
		free(j);
	}
	pthread_mutex_unlock(&m->mu);
	return NULL;
}

static char *dup_secret(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

static void wipe_secret(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* Frees the jobs queued to t. */
static void drop_queue(struct target *t)
{
	while (t->head != NULL) {
		struct job *j = t->head;

		t->head = j->next_job;
		free(j->json);
		free(j);
	}
	t->tail = NULL;
	t->queued = 0;
}

/* Starts a thread for every target cfg configures.  A target of the same
 * kind among old (stopped) carries over its queue and counts; what stays in
 * old is the caller's to drop. */
static int start_targets(struct mon_monitor *m, const mon_config *cfg, struct target *old,
                         size_t nold, cs_err *err)
{
	const struct {
		const char *name;
		bool on;
		mon_deliver_fn fn;
	} kinds[] = {{"command", cfg->command != NULL, mon_deliver_command},
	             {"webhook", cfg->webhook != NULL, mon_deliver_webhook},
	             {"smtp", cfg->smtp_url != NULL, mon_deliver_smtp}};

	m->ntargets = 0;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		struct target *t = &m->targets[m->ntargets];

		if (!kinds[i].on)
			continue;
		memset(t, 0, sizeof(*t));
		for (size_t j = 0; j < nold; j++) {
			if (old[j].name == NULL || strcmp(old[j].name, kinds[i].name) != 0)
				continue;
			*t = old[j];
			memset(&old[j], 0, sizeof(old[j]));
		}
		t->name = kinds[i].name;
		t->deliver = kinds[i].fn;
		t->m = m;
		t->started = false;
		m->ntargets++;
		if (pthread_create(&t->thread, NULL, worker, t) != 0)
			return cs_fail(err, CS_EIO, "alerts: cannot start the %s delivery thread",
			               kinds[i].name);
		t->started = true;
	}
	return 0;
}

int mon_start(mon_monitor **out, const mon_config *cfg, const mon_secrets *sec, const char *node,
              cs_err *err)
{
	struct mon_monitor *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	m->cfg = cfg;
	m->node = strdup(node);
	m->sec.webhook_token = dup_secret(sec->webhook_token);
	m->sec.smtp_password = dup_secret(sec->smtp_password);
	m->tracker = mon_tracker_new(cfg->grace_s, REPEAT_S);
	mon_rules_default(&m->rules);
	pthread_mutex_init(&m->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (m->node == NULL || m->tracker == NULL ||
	    (sec->webhook_token && !m->sec.webhook_token) ||
	    (sec->smtp_password && !m->sec.smtp_password)) {
		mon_stop(m);
		return cs_fail(err, CS_EIO, "out of memory");
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		mon_stop(m);
		return cs_fail(err, CS_EIO, "alerts: libcurl does not initialise");
	}
	if (start_targets(m, cfg, NULL, 0, err) < 0) {
		mon_stop(m);
		return -1;
	}
	*out = m;
	return 0;
}

/* Stops every target's thread (an attempt in flight ends within its
 * timeout); their queues stay. */
static void stop_targets(struct mon_monitor *m)
{
	pthread_mutex_lock(&m->mu);
	m->stopping = true;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	for (size_t i = 0; i < m->ntargets; i++)
		if (m->targets[i].started)
			pthread_join(m->targets[i].thread, NULL);
}

int mon_retarget(mon_monitor *m, const mon_config *cfg, const mon_secrets *sec, cs_err *err)
{
	struct target old[sizeof(m->targets) / sizeof(m->targets[0])];
	size_t nold = m->ntargets;
	char *token = dup_secret(sec->webhook_token), *password = dup_secret(sec->smtp_password);
	int rc;

	if ((sec->webhook_token && !token) || (sec->smtp_password && !password)) {
		wipe_secret(token);
		wipe_secret(password);
		return cs_fail(err, CS_EIO, "out of memory");
	}
	stop_targets(m);
	memcpy(old, m->targets, sizeof(old));
	pthread_mutex_lock(&m->mu);
	wipe_secret((char *)m->sec.webhook_token);
	wipe_secret((char *)m->sec.smtp_password);
	m->sec = (mon_secrets){token, password};
	m->cfg = cfg;
	m->stopping = false;
	rc = start_targets(m, cfg, old, nold, err);
	pthread_mutex_unlock(&m->mu);
	for (size_t i = 0; i < nold; i++) {
		if (old[i].name != NULL && old[i].queued > 0)
			cs_warn(
			    "alerts: %s is no longer a target: %zu alerts queued to it are dropped",
			    old[i].name, old[i].queued);
		drop_queue(&old[i]);
	}
	return rc;
}

void mon_stop(mon_monitor *m)
{
	if (m == NULL)
		return;
	stop_targets(m);
	for (size_t i = 0; i < m->ntargets; i++)
		drop_queue(&m->targets[i]);
	curl_global_cleanup();
	pthread_cond_destroy(&m->cv);
	pthread_mutex_destroy(&m->mu);
	wipe_secret((char *)m->sec.webhook_token);
	wipe_secret((char *)m->sec.smtp_password);
	mon_tracker_free(m->tracker);
	free(m->node);
	free(m);
}

static void enqueue(struct mon_monitor *m, const char *json, const char *subject)
{
	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < m->ntargets; i++) {
		struct target *t = &m->targets[i];
		struct job *j;

		if (t->queued >= MAX_QUEUED || (j = calloc(1, sizeof(*j))) == NULL ||
		    (j->json = strdup(json)) == NULL) {
			if (t->queued < MAX_QUEUED)
				free(j);
			t->given_up++;
			cs_error("alerts: %s: %zu alerts wait already; this one is dropped",
			         t->name, t->queued);
			continue;
		}
		snprintf(j->subject, sizeof(j->subject), "%s", subject);
		j->next = mono_in(0);
		if (t->tail != NULL)
			t->tail->next_job = j;
		else
			t->head = j;
		t->tail = j;
		t->queued++;
	}
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

/* The alert's JSON text in memory of our own: jansson's allocator may be the
 * caller's (the agent wipes what it frees). */
static char *dump(const json_t *j)
{
	const size_t flags = JSON_COMPACT | JSON_SORT_KEYS;
	size_t n = j ? json_dumpb(j, NULL, 0, flags) : 0;
	char *s = n ? malloc(n + 1) : NULL;

	if (s != NULL) {
		json_dumpb(j, s, n, flags);
		s[n] = '\0';
	}
	return s;
}

/* Logs the alert and hands it to every target. */
static void emit(void *arg, const mon_alert *a)
{
	struct mon_monitor *m = arg;
	json_t *j = mon_alert_json(a, m->node);
	char *json = dump(j);
	char subject[MON_TEXT_LEN + 64];
	const char *sev =
	    mon_severity_name(a->kind == MON_ALERT_RECOVERY ? a->previous : a->severity);

	if (a->kind == MON_ALERT_RECOVERY)
		snprintf(subject, sizeof(subject), "[certsync %s] recovered: %s", m->node, a->text);
	else
		snprintf(subject, sizeof(subject), "[certsync %s] %s%s: %s", m->node, sev,
		         a->kind == MON_ALERT_START    ? ""
		         : a->kind == MON_ALERT_CHANGE ? " (changed)"
		         : a->kind == MON_ALERT_TEST   ? " (test)"
		                                       : " (still active)",
		         a->text);
	cs_log(a->kind == MON_ALERT_RECOVERY || a->kind == MON_ALERT_TEST ? CS_LOG_INFO
	       : a->severity == MON_ERROR                                 ? CS_LOG_ERROR
	                                                                  : CS_LOG_WARN,
	       "alert %s %s %s: %s", mon_alert_kind_name(a->kind), sev, a->key, a->text);
	if (json != NULL)
		enqueue(m, json, subject);
	else
		cs_error("alerts: out of memory; alert %s not delivered", a->key);
	free(json);
	json_decref(j);
}

int mon_observe(mon_monitor *m, const mon_facts *f)
{
	size_t max = f->ncerts + f->nhosts + f->npeers + f->nacme + f->nserving + 2, n;
	mon_condition *c = calloc(max, sizeof(*c));
	int rc;

	if (c == NULL)
		return -1;
	n = mon_evaluate(f, &m->rules, c, max);
	rc = mon_tracker_update(m->tracker, c, n, f->now, emit, m);
	free(c);
	return rc;
}

size_t mon_send_test(mon_monitor *m, int64_t now)
{
	mon_alert a = {.kind = MON_ALERT_TEST, .severity = MON_WARNING, .time = now, .since = now};

	snprintf(a.key, sizeof(a.key), "test");
	snprintf(a.text, sizeof(a.text),
	         "a test alert from certsync alerts test; this target receives alerts");
	emit(m, &a);
	return m->ntargets;
}

json_t *mon_status(mon_monitor *m)
{
	json_t *targets = json_array();

	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < m->ntargets; i++) {
		const struct target *t = &m->targets[i];

		json_array_append_new(
		    targets,
		    json_pack("{s:s, s:I, s:I, s:I, s:I, s:s?}", "target", t->name, "sent",
		              (json_int_t)t->sent, "failed", (json_int_t)t->failed, "given_up",
		              (json_int_t)t->given_up, "queued", (json_int_t)t->queued,
		              "last_error", t->last_error[0] ? t->last_error : NULL));
	}
	pthread_mutex_unlock(&m->mu);
	return json_pack("{s:o, s:s, s:o}", "active", mon_tracker_active(m->tracker), "worst",
	                 mon_severity_name(mon_tracker_worst(m->tracker)), "targets", targets);
}
