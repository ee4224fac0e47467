/* test_acme_stats.c — unit tests of the ACME request counts: every type
 * and outcome listed from the start, a request counted once under the
 * bucket of its duration (buckets cumulative, the last one the count),
 * counts made on several threads at once all kept, and a type or outcome
 * out of range ignored. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "../../acme/acme_int.h"

enum { THREADS = 4, PER_THREAD = 5000 };

/* The entry of type and outcome in stats. */
static json_t *entry(json_t *stats, const char *type, const char *outcome)
{
	json_t *r;
	size_t i;

	json_array_foreach(json_object_get(stats, "requests"), i, r)
	{
		if (strcmp(json_string_value(json_object_get(r, "type")), type) == 0 &&
		    strcmp(json_string_value(json_object_get(r, "outcome")), outcome) == 0)
			return r;
	}
	return NULL;
}

static json_int_t count_of(json_t *r)
{
	return json_integer_value(json_object_get(r, "count"));
}

static json_int_t bucket(json_t *r, size_t i)
{
	return json_integer_value(json_array_get(json_object_get(r, "buckets"), i));
}

static void test_every_series_from_zero(void **state)
{
	json_t *s = acme_request_stats();
	static const char *const types[] = {"directory",     "newNonce",   "newAccount", "newOrder",
	                                    "authorization", "challenge",  "finalize",   "order",
	                                    "certificate",   "renewalInfo"};
	static const char *const outcomes[] = {"ok", "transient", "operator", "fatal"};

	(void)state;
	assert_non_null(s);
	assert_int_equal(json_array_size(json_object_get(s, "requests")), 40);
	for (size_t t = 0; t < 10; t++)
		for (size_t o = 0; o < 4; o++) {
			json_t *r = entry(s, types[t], outcomes[o]);

			assert_non_null(r);
			assert_int_equal(count_of(r), 0);
			assert_int_equal(json_array_size(json_object_get(r, "buckets")),
			                 json_array_size(json_object_get(s, "bounds")));
		}
	json_decref(s);
}

static void test_buckets_are_cumulative(void **state)
{
	json_t *s, *r, *bounds;
	size_t n;

	(void)state;
	acme_req_record(ACME_REQ_FINALIZE, ACME_ERR_NONE, 0.003);
	acme_req_record(ACME_REQ_FINALIZE, ACME_ERR_NONE, 0.2);
	acme_req_record(ACME_REQ_FINALIZE, ACME_ERR_NONE, 0.25); /* on a bound: under it */
	acme_req_record(ACME_REQ_FINALIZE, ACME_ERR_NONE, 120);  /* above every bound */
	acme_req_record(ACME_REQ_FINALIZE, ACME_ERR_OPERATOR, 1);
	acme_req_record(ACME_REQ_TYPES, ACME_ERR_NONE, 1); /* out of range: ignored */
	acme_req_record(ACME_REQ_ORDER, (acme_errclass)9, 1);
	s = acme_request_stats();
	r = entry(s, "finalize", "ok");
	bounds = json_object_get(s, "bounds");
	n = json_array_size(bounds);
	assert_int_equal(count_of(r), 4);
	assert_true(json_real_value(json_object_get(r, "sum")) > 120.45 &&
	            json_real_value(json_object_get(r, "sum")) < 120.46);
	for (size_t i = 0; i < n; i++) {
		double le = json_real_value(json_array_get(bounds, i));
		json_int_t want = (le >= 0.003) + (le >= 0.2) + (le >= 0.25);

		assert_int_equal(bucket(r, i), want);
	}
	assert_int_equal(count_of(entry(s, "finalize", "operator")), 1);
	assert_int_equal(count_of(entry(s, "order", "ok")), 0);
	json_decref(s);
}

static void *many(void *arg)
{
	(void)arg;
	for (int i = 0; i < PER_THREAD; i++)
		acme_req_record(ACME_REQ_NEW_NONCE, ACME_ERR_TRANSIENT, 0.01 * (i % 7));
	return NULL;
}

static void test_threads_lose_nothing(void **state)
{
	pthread_t th[THREADS];
	json_t *s, *r;

	(void)state;
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, many, NULL), 0);
	for (int i = 0; i < THREADS; i++) {
		/* read while they count: the last bucket never passes the count */
		s = acme_request_stats();
		r = entry(s, "newNonce", "transient");
		assert_true(bucket(r, json_array_size(json_object_get(s, "bounds")) - 1) <=
		            count_of(r));
		json_decref(s);
		pthread_join(th[i], NULL);
	}
	s = acme_request_stats();
	assert_int_equal(count_of(entry(s, "newNonce", "transient")), THREADS * PER_THREAD);
	json_decref(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_series_from_zero),
	    cmocka_unit_test(test_buckets_are_cumulative),
	    cmocka_unit_test(test_threads_lose_nothing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
