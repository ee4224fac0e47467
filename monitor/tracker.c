/* tracker.c — when a condition becomes an alert: the state machine.
 *
 * Each condition seen is tracked in one of four states.  What happens at
 * each evaluation is read from one table: (state, what was seen, whether
 * the grace period or the daily repeat is due) gives the next state and the
 * alert to send.  A start, a change of severity and an end must each hold
 * for the grace period before they are sent, so a condition that flaps
 * inside it sends nothing; an active alert repeats daily. */
#include <stdlib.h>
#include <string.h>

#include "monitor.h"

#include "../common/clock.h"

enum state {
	PENDING,  /* seen, not yet sent */
	ACTIVE,   /* sent, at the severity sent */
	CHANGING, /* sent, now seen at another severity */
	CLEARING, /* sent, no longer seen */
	GONE,     /* forgotten */
};

/* What an evaluation shows for a tracked condition, against what was sent. */
enum seen { ABSENT, SAME, OTHER };

enum guard { ALWAYS, GRACE_DUE, REPEAT_DUE };

enum action { NOTHING, SEND_START, SEND_CHANGE, SEND_REPEAT, SEND_RECOVERY };

static const struct transition {
	enum state from;
	enum seen seen;
	enum guard guard;
	enum state to;
	enum action action;
} table[] = {
    /* first matching row wins */
    {PENDING, ABSENT, ALWAYS, GONE, NOTHING},
    {PENDING, OTHER, GRACE_DUE, ACTIVE, SEND_START},
    {PENDING, OTHER, ALWAYS, PENDING, NOTHING},
    {ACTIVE, SAME, REPEAT_DUE, ACTIVE, SEND_REPEAT},
    {ACTIVE, SAME, ALWAYS, ACTIVE, NOTHING},
    {ACTIVE, OTHER, ALWAYS, CHANGING, NOTHING},
    {ACTIVE, ABSENT, ALWAYS, CLEARING, NOTHING},
    {CHANGING, SAME, ALWAYS, ACTIVE, NOTHING},
    {CHANGING, OTHER, GRACE_DUE, ACTIVE, SEND_CHANGE},
    {CHANGING, OTHER, ALWAYS, CHANGING, NOTHING},
    {CHANGING, ABSENT, ALWAYS, CLEARING, NOTHING},
    {CLEARING, ABSENT, GRACE_DUE, GONE, SEND_RECOVERY},
    {CLEARING, ABSENT, ALWAYS, CLEARING, NOTHING},
    {CLEARING, SAME, ALWAYS, ACTIVE, NOTHING},
    {CLEARING, OTHER, ALWAYS, CHANGING, NOTHING},
};

struct tracked {
	enum state state;
	char key[MON_KEY_LEN];
	char text[MON_TEXT_LEN];
	mon_severity seen; /* as last evaluated */
	mon_severity sent; /* MON_OK until the start is sent */
	int64_t first_seen, state_since, last_sent;
};

struct mon_tracker {
	int64_t grace_s, repeat_s;
	struct tracked *t;
	size_t n, cap;
};

const char *mon_alert_kind_name(mon_alert_kind k)
{
	static const char *const names[] = {"start", "change", "repeat", "recovery", "test"};

	return names[k];
}

mon_tracker *mon_tracker_new(int64_t grace_s, int64_t repeat_s)
{
	mon_tracker *t = calloc(1, sizeof(*t));

	if (t != NULL) {
		t->grace_s = grace_s;
		t->repeat_s = repeat_s;
	}
	return t;
}

void mon_tracker_free(mon_tracker *t)
{
	if (t != NULL)
		free(t->t);
	free(t);
}

static const mon_condition *find_cond(const mon_condition *c, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(c[i].key, key) == 0)
			return &c[i];
	return NULL;
}

static bool due(const mon_tracker *t, const struct tracked *e, enum guard g, int64_t now)
{
	switch (g) {
	case GRACE_DUE:
		return now - e->state_since >= t->grace_s;
	case REPEAT_DUE:
		return now - e->last_sent >= t->repeat_s;
	default:
		return true;
	}
}

static const struct transition *next(const mon_tracker *t, const struct tracked *e, enum seen seen,
                                     int64_t now)
{
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (table[i].from == e->state && table[i].seen == seen &&
		    due(t, e, table[i].guard, now))
			return &table[i];
	return NULL; /* not reached: the table covers every state but GONE */
}

static void send(struct tracked *e, enum action a, int64_t now, mon_emit_fn emit, void *arg)
{
	static const mon_alert_kind kinds[] = {
	    [SEND_START] = MON_ALERT_START,
	    [SEND_CHANGE] = MON_ALERT_CHANGE,
	    [SEND_REPEAT] = MON_ALERT_REPEAT,
	    [SEND_RECOVERY] = MON_ALERT_RECOVERY,
	};
	mon_alert al = {.kind = kinds[a], .time = now, .since = e->first_seen, .previous = e->sent};

	al.severity = a == SEND_RECOVERY ? MON_OK : e->seen;
	memcpy(al.key, e->key, sizeof(al.key));
	memcpy(al.text, e->text, sizeof(al.text));
	e->sent = al.severity;
	e->last_sent = now;
	emit(arg, &al);
}

/* Runs the table until the state settles: with no grace period a change
 * goes ACTIVE -> CHANGING -> ACTIVE in one evaluation. */
static void step(mon_tracker *t, struct tracked *e, const mon_condition *c, int64_t now,
                 mon_emit_fn emit, void *arg)
{
	if (c != NULL) {
		e->seen = c->severity;
		memcpy(e->text, c->text, sizeof(e->text));
	}
	for (int guard = 0; guard < 4 && e->state != GONE; guard++) {
		enum seen seen = c == NULL ? ABSENT : c->severity == e->sent ? SAME : OTHER;
		const struct transition *tr = next(t, e, seen, now);

		if (tr == NULL)
			return;
		if (tr->action != NOTHING)
			send(e, tr->action, now, emit, arg);
		if (tr->to == e->state)
			return;
		e->state = tr->to;
		e->state_since = now;
	}
}

int mon_tracker_update(mon_tracker *t, const mon_condition *conds, size_t n, int64_t now,
                       mon_emit_fn emit, void *arg)
{
	size_t keep = 0;

	for (size_t i = 0; i < t->n; i++)
		step(t, &t->t[i], find_cond(conds, n, t->t[i].key), now, emit, arg);
	for (size_t i = 0; i < n; i++) {
		bool known = false;

		for (size_t j = 0; j < t->n && !known; j++)
			known = t->t[j].state != GONE && strcmp(t->t[j].key, conds[i].key) == 0;
		if (known || conds[i].severity == MON_OK)
			continue;
		if (t->n == t->cap) {
			size_t cap = t->cap ? 2 * t->cap : 16;
			struct tracked *nt = realloc(t->t, cap * sizeof(*nt));

			if (nt == NULL)
				return -1;
			t->t = nt;
			t->cap = cap;
		}
		struct tracked *e = &t->t[t->n++];

		memset(e, 0, sizeof(*e));
		e->state = PENDING;
		memcpy(e->key, conds[i].key, sizeof(e->key));
		e->first_seen = e->state_since = now;
		step(t, e, &conds[i], now, emit, arg);
	}
	for (size_t i = 0; i < t->n; i++)
		if (t->t[i].state != GONE)
			t->t[keep++] = t->t[i];
	t->n = keep;
	return 0;
}

json_t *mon_tracker_active(const mon_tracker *t)
{
	json_t *a = json_array();
	char since[32], sent[32];

	for (size_t i = 0; a != NULL && i < t->n; i++) {
		const struct tracked *e = &t->t[i];

		if (e->sent == MON_OK)
			continue;
		cs_iso_time(e->first_seen, since);
		cs_iso_time(e->last_sent, sent);
		json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s, s:s}", "key", e->key,
		                                   "severity", mon_severity_name(e->sent), "text",
		                                   e->text, "since", since, "sent", sent));
	}
	return a;
}

mon_severity mon_tracker_worst(const mon_tracker *t)
{
	mon_severity w = MON_OK;

	for (size_t i = 0; i < t->n; i++)
		if (t->t[i].sent > w)
			w = t->t[i].sent;
	return w;
}

json_t *mon_alert_json(const mon_alert *a, const char *node)
{
	char when[32], since[32];

	cs_iso_time(a->time, when);
	cs_iso_time(a->since, since);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "kind",
	                 mon_alert_kind_name(a->kind), "key", a->key, "severity",
	                 mon_severity_name(a->severity), "previous", mon_severity_name(a->previous),
	                 "text", a->text, "node", node, "time", when, "since", since);
}
