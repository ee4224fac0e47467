/* conditions.c — which facts are conditions, and how severe: the rules of
 * issue "nothing expires unnoticed".  A node judges its own certificates and
 * its own refusal; cluster-wide facts (coverage, peers, diverged changes,
 * what each node serves, ACME work) are judged on the primary alone, so one fault raises one alert
 * in the cluster. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../common/log.h"
#include "monitor.h"

#define DAY 86400

const char *mon_severity_name(mon_severity s)
{
	static const char *const names[] = {"ok", "warning", "error"};

	return names[s];
}

void mon_rules_default(mon_rules *r)
{
	r->expiry_warn_s = 25 * DAY;
	r->lag_bound = 100;
}

struct out {
	mon_condition *c;
	size_t n, max;
};

static void add(struct out *o, mon_severity sev, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void add(struct out *o, mon_severity sev, const char *key, const char *fmt, ...)
{
	mon_condition *c;
	va_list ap;

	if (o->n == o->max)
		return;
	for (size_t i = 0; i < o->n; i++)
		if (strcmp(o->c[i].key, key) == 0)
			return; /* the same certificate in another use: judged once */
	c = &o->c[o->n++];
	snprintf(c->key, sizeof(c->key), "%s", key);
	c->severity = sev;
	va_start(ap, fmt);
	vsnprintf(c->text, sizeof(c->text), fmt, ap);
	va_end(ap);
}

void mon_utc(int64_t t, char buf[32])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, 32, "%" PRId64, t);
}

mon_severity mon_cert_severity(int64_t not_before, int64_t not_after, int64_t now,
                               const mon_rules *r)
{
	int64_t tenth = (not_after - not_before) / 10;
	int64_t window = tenth > r->expiry_warn_s ? tenth : r->expiry_warn_s;

	if (now < not_before || now >= not_after)
		return MON_ERROR;
	return not_after - now <= window ? MON_WARNING : MON_OK;
}

static void judge_cert(struct out *o, const mon_rules *r, const mon_cert *c, int64_t now)
{
	mon_severity sev = mon_cert_severity(c->not_before, c->not_after, now, r);
	char key[MON_KEY_LEN], when[32], sid[9];
	int64_t days = (c->not_after - now + DAY - 1) / DAY;

	if (sev == MON_OK)
		return;
	snprintf(key, sizeof(key), "certificate:%s", c->id);
	snprintf(sid, sizeof(sid), "%.8s", c->id);
	if (now < c->not_before) {
		mon_utc(c->not_before, when);
		add(o, sev, key, "%s %s (%s) is not valid until %s; choose a certificate valid now",
		    c->use, sid, c->name, when);
	} else if (now >= c->not_after) {
		mon_utc(c->not_after, when);
		add(o, sev, key, "%s %s (%s) expired at %s; import its renewal", c->use, sid,
		    c->name, when);
	} else {
		mon_utc(c->not_after, when);
		add(o, sev, key, "%s %s (%s) expires in %" PRId64 " %s (%s); renew it", c->use, sid,
		    c->name, days, CS_PLURAL(days, "day", "days"), when);
	}
}

static void judge_cluster(struct out *o, const mon_facts *f, const mon_rules *r)
{
	char key[MON_KEY_LEN];

	for (size_t i = 0; i < f->nhosts; i++) {
		if (f->hosts[i].covered)
			continue;
		snprintf(key, sizeof(key), "coverage:%s", f->hosts[i].hostname);
		add(o, MON_ERROR, key,
		    "the default certificate does not cover %s; choose or import one that does",
		    f->hosts[i].hostname);
	}
	for (size_t i = 0; i < f->npeers; i++) {
		const mon_peer *p = &f->peers[i];

		snprintf(key, sizeof(key), "peer:%s", p->name);
		if (p->refusing)
			add(o, MON_ERROR, key,
			    "peer %s refuses the cluster passphrase (%s); give it the cluster's "
			    "passphrase",
			    p->name, p->why ? p->why : "no reason given");
		else if (!p->heard)
			add(o, MON_WARNING, key,
			    "peer %s is not heard from; check that its agent runs and the "
			    "network reaches it",
			    p->name);
		else if (p->lag > r->lag_bound)
			add(o, MON_WARNING, key,
			    "peer %s lags %" PRId64 " entries behind (more than %" PRId64 ")",
			    p->name, p->lag, r->lag_bound);
	}
	if (f->diverged > 0)
		add(o, MON_WARNING, "diverged",
		    "%zu diverged %s waiting; see `certsync diverged list`", f->diverged,
		    f->diverged == 1 ? "change is" : "changes are");
	for (size_t i = 0; i < f->nserving; i++) {
		const mon_serving *v = &f->serving[i];

		snprintf(key, sizeof(key), "serving:%s:%s", v->node, v->host);
		if (v->served == NULL)
			add(o, MON_ERROR, key,
			    "node %s does not serve %s: its TLS endpoint %s does not answer (%s); "
			    "check that its agent serves there",
			    v->node, v->host, v->endpoint, v->error ? v->error : "no reason given");
		else if (strcmp(v->served, v->expected) != 0)
			add(o, MON_ERROR, key,
			    "node %s serves %.8s for %s at %s, but its store says %.8s (%s); check "
			    "what answers on that address",
			    v->node, v->served, v->host, v->endpoint, v->expected,
			    v->expected_name ? v->expected_name : "unnamed");
	}
	for (size_t i = 0; i < f->nacme; i++) {
		const mon_acme *a = &f->acme[i];

		snprintf(key, sizeof(key), "acme:%s", a->name);
		if (a->stopped != NULL)
			add(o, MON_ERROR, key, "the ACME renewal of %s stopped: %s", a->name,
			    a->stopped);
		else if (a->window_end != 0 && f->now > a->window_end)
			add(o, MON_ERROR, key, "the ACME renewal of %s is overdue", a->name);
	}
}

size_t mon_evaluate(const mon_facts *f, const mon_rules *r, mon_condition *out, size_t max)
{
	struct out o = {out, 0, max};

	if (f->refusing)
		add(&o, MON_ERROR, "refusing",
		    "this node refuses the cluster: its passphrase does not match the primary's");
	for (size_t i = 0; i < f->ncerts; i++)
		judge_cert(&o, r, &f->certs[i], f->now);
	if (f->primary)
		judge_cluster(&o, f, r);
	return o.n;
}
