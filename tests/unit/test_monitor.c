/* test_monitor.c — unit tests of the monitor module with injected time: the
 * condition rules (expiry thresholds relative to 25 days and the lifetime,
 * not yet valid, coverage, peers, diverged changes, ACME, a node serving
 * another certificate than its store says, primary-only
 * cluster conditions) and the alert state machine (start, change, daily
 * repeat, recovery, flapping inside the grace period sends nothing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../monitor/monitor.h"

#define MIN 60L
#define DAY 86400L

static const int64_t t0 = 1798859045; /* 2027-01-02T03:04:05Z */

static size_t eval(const mon_facts *f, mon_condition *c, size_t max)
{
	mon_rules r;

	mon_rules_default(&r);
	return mon_evaluate(f, &r, c, max);
}

static size_t eval_cert(int64_t nb, int64_t na, int64_t now, mon_condition *c)
{
	mon_cert cert = {"3fa9c2d1aa", "web", "the default certificate", nb, na};
	mon_facts f = {.now = now, .certs = &cert, .ncerts = 1};

	return eval(&f, c, 4);
}

static void test_expiry_90_days(void **state)
{
	mon_condition c[4];

	(void)state;
	/* 90 days: 25 days come before the last tenth (9 days) */
	assert_int_equal(eval_cert(t0, t0 + 90 * DAY, t0 + 64 * DAY, c), 0);
	assert_int_equal(eval_cert(t0, t0 + 90 * DAY, t0 + 65 * DAY, c), 1);
	assert_int_equal(c[0].severity, MON_WARNING);
	assert_string_equal(c[0].key, "certificate:3fa9c2d1aa");
	assert_non_null(
	    strstr(c[0].text, "the default certificate 3fa9c2d1 (web) expires in 25 days"));
	assert_int_equal(eval_cert(t0, t0 + 90 * DAY, t0 + 90 * DAY - 1, c), 1);
	assert_non_null(strstr(c[0].text, "expires in 1 day "));
	assert_int_equal(eval_cert(t0, t0 + 90 * DAY, t0 + 90 * DAY, c), 1);
	assert_int_equal(c[0].severity, MON_ERROR);
	assert_non_null(strstr(c[0].text, "expired at 2027-04-02T03:04:05Z"));
}

static void test_expiry_tenth_of_a_long_lifetime(void **state)
{
	mon_condition c[4];

	(void)state;
	/* 400 days: the last tenth (40 days) comes before 25 days */
	assert_int_equal(eval_cert(t0, t0 + 400 * DAY, t0 + 359 * DAY, c), 0);
	assert_int_equal(eval_cert(t0, t0 + 400 * DAY, t0 + 360 * DAY, c), 1);
	assert_int_equal(c[0].severity, MON_WARNING);
	/* 6 days: always inside 25 days */
	assert_int_equal(eval_cert(t0, t0 + 6 * DAY, t0, c), 1);
	assert_int_equal(c[0].severity, MON_WARNING);
}

static void test_not_yet_valid(void **state)
{
	mon_condition c[4];

	(void)state;
	assert_int_equal(eval_cert(t0 + DAY, t0 + 90 * DAY, t0, c), 1);
	assert_int_equal(c[0].severity, MON_ERROR);
	assert_non_null(strstr(c[0].text, "is not valid until 2027-01-03T03:04:05Z"));
}

static void test_same_certificate_in_two_uses_is_one_condition(void **state)
{
	mon_cert certs[] = {{"aa11bb22cc", "web", "the default certificate", t0, t0 + DAY},
	                    {"aa11bb22cc", "web", "served for a.example.test", t0, t0 + DAY}};
	mon_facts f = {.now = t0, .certs = certs, .ncerts = 2};
	mon_condition c[4];

	(void)state;
	assert_int_equal(eval(&f, c, 4), 1);
}

static void test_cluster_conditions_on_the_primary_alone(void **state)
{
	mon_host hosts[] = {{"support.example.test", true}, {"tn1.example.test", false}};
	mon_peer peers[] = {{"backup", true, 0, false, NULL},
	                    {"tn1", false, -1, false, NULL},
	                    {"tn2", true, 101, false, NULL},
	                    {"tn3", true, 100, false, NULL},
	                    {"tn4", true, 0, true, "cluster passphrase does not match"}};
	mon_acme acme[] = {{"web", t0 - 1, NULL}, {"api", t0 + DAY, NULL}, {"mail", 0, "badCSR"}};
	mon_facts f = {.now = t0,
	               .hosts = hosts,
	               .nhosts = 2,
	               .peers = peers,
	               .npeers = 5,
	               .diverged = 2,
	               .acme = acme,
	               .nacme = 3};
	mon_condition c[16];
	size_t n;

	(void)state;
	assert_int_equal(eval(&f, c, 16), 0); /* a follower: none of these are its own */
	f.primary = true;
	n = eval(&f, c, 16);
	assert_int_equal(n, 7);
	assert_string_equal(c[0].key, "coverage:tn1.example.test");
	assert_int_equal(c[0].severity, MON_ERROR);
	assert_string_equal(c[1].key, "peer:tn1");
	assert_int_equal(c[1].severity, MON_WARNING);
	assert_non_null(strstr(c[1].text, "not heard from"));
	assert_string_equal(c[2].key, "peer:tn2");
	assert_non_null(strstr(c[2].text, "lags 101 entries"));
	assert_string_equal(c[3].key, "peer:tn4");
	assert_int_equal(c[3].severity, MON_ERROR);
	assert_string_equal(c[4].key, "diverged");
	assert_non_null(strstr(c[4].text, "2 diverged changes are waiting"));
	assert_string_equal(c[5].key, "acme:web");
	assert_non_null(strstr(c[5].text, "overdue"));
	assert_string_equal(c[6].key, "acme:mail");
	assert_non_null(strstr(c[6].text, "stopped: badCSR"));
	/* max bounds what is written */
	assert_int_equal(eval(&f, c, 3), 3);
}

static void test_a_node_serving_another_certificate(void **state)
{
	mon_serving v[] = {
	    {"primary", "primary.example.test", "127.0.0.1:8443", "aa11", "aa11", "web", NULL},
	    {"backup", "backup.example.test", "127.0.0.1:9443", "bb22bb22bb", "aa11", "web", NULL},
	    {"tn1", "tn1.example.test", "127.0.0.1:7443", NULL, "aa11", "web",
	     "127.0.0.1:7443: connection refused"},
	};
	mon_facts f = {.now = t0, .serving = v, .nserving = 3};
	mon_condition c[4];

	(void)state;
	assert_int_equal(eval(&f, c, 4), 0); /* the primary's check alone */
	f.primary = true;
	assert_int_equal(eval(&f, c, 4), 2);
	assert_string_equal(c[0].key, "serving:backup:backup.example.test");
	assert_int_equal(c[0].severity, MON_ERROR);
	assert_string_equal(c[0].text, "node backup serves bb22bb22 for backup.example.test at "
	                               "127.0.0.1:9443, but its store says aa11 (web); check what "
	                               "answers on that address");
	assert_string_equal(c[1].key, "serving:tn1:tn1.example.test");
	assert_int_equal(c[1].severity, MON_ERROR);
	assert_non_null(strstr(c[1].text, "does not answer (127.0.0.1:7443: connection refused)"));
}

static void test_own_refusal_on_any_node(void **state)
{
	mon_facts f = {.now = t0, .refusing = true};
	mon_condition c[2];

	(void)state;
	assert_int_equal(eval(&f, c, 2), 1);
	assert_string_equal(c[0].key, "refusing");
	assert_int_equal(c[0].severity, MON_ERROR);
}

/* ---- the state machine ----------------------------------------------------- */

struct sink {
	mon_alert a[16];
	size_t n;
};

static void collect(void *arg, const mon_alert *a)
{
	struct sink *s = arg;

	assert_true(s->n < 16);
	s->a[s->n++] = *a;
}

/* One evaluation: at t, condition "k" seen at sev (MON_OK: not seen); the
 * alert expected (or none) and its severity. */
struct tick {
	int64_t t;
	mon_severity sev;
	int kind; /* -1: no alert */
	mon_severity sent;
};

static void run(const struct tick *ticks, size_t n, int64_t grace)
{
	mon_tracker *tr = mon_tracker_new(grace, DAY);

	assert_non_null(tr);
	for (size_t i = 0; i < n; i++) {
		mon_condition c = {"k", ticks[i].sev, "text"};
		struct sink s = {.n = 0};

		assert_int_equal(mon_tracker_update(tr, &c, ticks[i].sev == MON_OK ? 0 : 1,
		                                    t0 + ticks[i].t, collect, &s),
		                 0);
		if (ticks[i].kind < 0) {
			if (s.n != 0)
				fail_msg("tick %zu (t=%ld): unexpected %s alert", i,
				         (long)ticks[i].t, mon_alert_kind_name(s.a[0].kind));
			continue;
		}
		if (s.n != 1)
			fail_msg("tick %zu (t=%ld): %zu alerts, expected one %s", i,
			         (long)ticks[i].t, s.n, mon_alert_kind_name(ticks[i].kind));
		assert_int_equal(s.a[0].kind, ticks[i].kind);
		assert_int_equal(s.a[0].severity, ticks[i].sent);
		assert_string_equal(s.a[0].key, "k");
		assert_int_equal(s.a[0].time, t0 + ticks[i].t);
	}
	mon_tracker_free(tr);
}

#define RUN(ticks, grace) run(ticks, sizeof(ticks) / sizeof(ticks[0]), grace)
#define NONE              -1, MON_OK

static void test_start_repeat_change_recovery(void **state)
{
	static const struct tick ticks[] = {
	    {0, MON_WARNING, NONE},
	    {60, MON_WARNING, NONE},
	    {120, MON_WARNING, MON_ALERT_START, MON_WARNING},
	    {180, MON_WARNING, NONE},
	    {120 + DAY - 1, MON_WARNING, NONE},
	    {120 + DAY, MON_WARNING, MON_ALERT_REPEAT, MON_WARNING},
	    {120 + DAY + 60, MON_ERROR, NONE},
	    {120 + DAY + 180, MON_ERROR, MON_ALERT_CHANGE, MON_ERROR},
	    {120 + DAY + 240, MON_OK, NONE},
	    {120 + DAY + 300, MON_OK, NONE},
	    {120 + DAY + 360, MON_OK, MON_ALERT_RECOVERY, MON_OK},
	    {120 + DAY + 420, MON_OK, NONE},
	};

	(void)state;
	RUN(ticks, 2 * MIN);
}

static void test_flapping_inside_the_grace_period_sends_nothing(void **state)
{
	static const struct tick ticks[] = {
	    /* a start that does not hold */
	    {0, MON_ERROR, NONE},
	    {60, MON_OK, NONE},
	    {100, MON_ERROR, NONE},
	    {200, MON_OK, NONE},
	    {300, MON_ERROR, NONE},
	    {420, MON_ERROR, MON_ALERT_START, MON_ERROR},
	    /* an end that does not hold, nor a change */
	    {480, MON_OK, NONE},
	    {540, MON_ERROR, NONE},
	    {600, MON_WARNING, NONE},
	    {660, MON_ERROR, NONE},
	    {780, MON_ERROR, NONE},
	    {900, MON_OK, NONE},
	    {1019, MON_OK, NONE},
	    {1020, MON_OK, MON_ALERT_RECOVERY, MON_OK},
	};

	(void)state;
	RUN(ticks, 2 * MIN);
}

static void test_no_grace_period(void **state)
{
	static const struct tick ticks[] = {
	    {0, MON_WARNING, MON_ALERT_START, MON_WARNING},
	    {1, MON_ERROR, MON_ALERT_CHANGE, MON_ERROR},
	    {2, MON_OK, MON_ALERT_RECOVERY, MON_OK},
	    {3, MON_WARNING, MON_ALERT_START, MON_WARNING},
	};

	(void)state;
	RUN(ticks, 0);
}

static void test_active_list_and_alert_json(void **state)
{
	mon_tracker *tr = mon_tracker_new(0, DAY);
	mon_condition c[] = {{"a", MON_WARNING, "a warns"}, {"b", MON_ERROR, "b fails"}};
	struct sink s = {.n = 0};
	json_t *active, *j;

	(void)state;
	assert_int_equal(mon_tracker_update(tr, c, 2, t0, collect, &s), 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(mon_tracker_worst(tr), MON_ERROR);
	active = mon_tracker_active(tr);
	assert_int_equal(json_array_size(active), 2);
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(active, 1), "severity")), "error");
	json_decref(active);
	j = mon_alert_json(&s.a[1], "primary");
	assert_string_equal(json_string_value(json_object_get(j, "kind")), "start");
	assert_string_equal(json_string_value(json_object_get(j, "text")), "b fails");
	assert_string_equal(json_string_value(json_object_get(j, "node")), "primary");
	assert_string_equal(json_string_value(json_object_get(j, "time")), "2027-01-02T03:04:05Z");
	json_decref(j);
	/* b ends: only a stays active */
	s.n = 0;
	assert_int_equal(mon_tracker_update(tr, c, 1, t0 + 1, collect, &s), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.a[0].kind, MON_ALERT_RECOVERY);
	assert_int_equal(s.a[0].previous, MON_ERROR);
	assert_int_equal(mon_tracker_worst(tr), MON_WARNING);
	mon_tracker_free(tr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_expiry_90_days),
	    cmocka_unit_test(test_expiry_tenth_of_a_long_lifetime),
	    cmocka_unit_test(test_not_yet_valid),
	    cmocka_unit_test(test_same_certificate_in_two_uses_is_one_condition),
	    cmocka_unit_test(test_cluster_conditions_on_the_primary_alone),
	    cmocka_unit_test(test_a_node_serving_another_certificate),
	    cmocka_unit_test(test_own_refusal_on_any_node),
	    cmocka_unit_test(test_start_repeat_change_recovery),
	    cmocka_unit_test(test_flapping_inside_the_grace_period_sends_nothing),
	    cmocka_unit_test(test_no_grace_period),
	    cmocka_unit_test(test_active_list_and_alert_json),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
