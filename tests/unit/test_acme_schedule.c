/* test_acme_schedule.c — unit tests of when the acme module renews and
 * retries: the lifetime-relative window (90-day and 6-day certificates),
 * the ARI window, the emergency line, exponential backoff with Retry-After,
 * and the renewalInfo polling interval. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../acme/acme.h"

#define MIN  60L
#define HOUR 3600L
#define DAY  86400L

static const time_t t0 = 1798859045; /* 2027-01-02T03:04:05Z, an issuance */

static void test_ninety_days(void **state)
{
	time_t nb = t0, na = t0 + 90 * DAY;

	(void)state;
	/* a third remains at day 60; the first tenth of that window is 3 days */
	assert_int_equal(acme_renewal_time(nb, na, NULL, t0, 0), t0 + 60 * DAY);
	assert_int_equal(acme_renewal_time(nb, na, NULL, t0, UINT32_MAX / 2 + 1),
	                 t0 + 60 * DAY + 36 * HOUR);
	assert_in_range(acme_renewal_time(nb, na, NULL, t0, UINT32_MAX), t0 + 63 * DAY - 1,
	                t0 + 63 * DAY - 1);
	/* every draw lands in [day 60, day 63) */
	for (uint32_t r = 0; r < UINT32_MAX - 99999999u; r += 99999989u)
		assert_in_range(acme_renewal_time(nb, na, NULL, t0, r), t0 + 60 * DAY,
		                t0 + 63 * DAY - 1);
	/* inside the window already (a restart on day 61): not before now */
	assert_int_equal(acme_renewal_time(nb, na, NULL, t0 + 62 * DAY, 0), t0 + 62 * DAY);
	assert_int_equal(acme_renewal_time(nb, na, NULL, t0 + 61 * DAY, UINT32_MAX / 2 + 1),
	                 t0 + 61 * DAY + 12 * HOUR); /* 61.5 d is still ahead */
	/* the emergency line: 1/20 of 90 days (4.5 days) before expiry */
	assert_int_equal(acme_emergency_line(nb, na), na - 108 * HOUR);
	assert_int_equal(acme_renewal_time(nb, na, NULL, na - 108 * HOUR, UINT32_MAX),
	                 na - 108 * HOUR);
	assert_int_equal(acme_renewal_time(nb, na, NULL, na + DAY, 0), na + DAY); /* expired */
}

static void test_six_days(void **state)
{
	time_t nb = t0, na = t0 + 6 * DAY;

	(void)state;
	/* two days remain at day 4; the window's first tenth is 4.8 hours */
	assert_int_equal(acme_renewal_time(nb, na, NULL, t0, 0), t0 + 4 * DAY);
	assert_in_range(acme_renewal_time(nb, na, NULL, t0, UINT32_MAX), t0 + 4 * DAY,
	                t0 + 4 * DAY + 288 * MIN - 1);
	assert_int_equal(acme_emergency_line(nb, na), na - 432 * MIN); /* 7.2 hours */
}

static void test_ari_window(void **state)
{
	time_t nb = t0, na = t0 + 90 * DAY;
	acme_renewal_info ari = {.start = t0 + 50 * DAY, .end = t0 + 52 * DAY};

	(void)state;
	/* the CA's window wins over the lifetime rule */
	assert_int_equal(acme_renewal_time(nb, na, &ari, t0, 0), t0 + 50 * DAY);
	assert_int_equal(acme_renewal_time(nb, na, &ari, t0, UINT32_MAX / 2 + 1), t0 + 51 * DAY);
	/* inside the window: spread over what remains of it */
	assert_int_equal(acme_renewal_time(nb, na, &ari, t0 + 51 * DAY, UINT32_MAX / 2 + 1),
	                 t0 + 51 * DAY + 12 * HOUR);
	/* the window has passed: now */
	assert_int_equal(acme_renewal_time(nb, na, &ari, t0 + 53 * DAY, UINT32_MAX), t0 + 53 * DAY);
	/* a window later than the emergency line: the line wins once reached */
	ari.start = na - DAY;
	ari.end = na;
	assert_int_equal(acme_renewal_time(nb, na, &ari, na - 5 * DAY, 0), na - DAY);
	assert_int_equal(acme_renewal_time(nb, na, &ari, na - 4 * DAY, 0), na - 4 * DAY);
	/* an invalid window (end before start) counts as none (RFC 9773 §4.2) */
	ari.start = t0 + 52 * DAY;
	ari.end = t0 + 50 * DAY;
	assert_int_equal(acme_renewal_time(nb, na, &ari, t0, 0), t0 + 60 * DAY);
}

static void test_backoff(void **state)
{
	const time_t now = t0 + 70 * DAY, line = t0 + 90 * DAY;
	static const long expect[] = {1 * MIN,  2 * MIN,   4 * MIN,   8 * MIN,  16 * MIN, 32 * MIN,
	                              64 * MIN, 128 * MIN, 256 * MIN, 6 * HOUR, 6 * HOUR};

	(void)state;
	for (unsigned i = 0; i < sizeof(expect) / sizeof(expect[0]); i++)
		assert_int_equal(acme_retry_time(i + 1, now, -1, line), now + expect[i]);
	assert_int_equal(acme_retry_time(1000, now, -1, line), now + 6 * HOUR); /* no overflow */
	assert_int_equal(acme_retry_time(0, now, -1, 0), now + MIN);
	/* never past the emergency line while it is ahead */
	assert_int_equal(acme_retry_time(10, now, -1, now + HOUR), now + HOUR);
	/* past it, the backoff still holds: no tight loop */
	assert_int_equal(acme_retry_time(10, now, -1, now - HOUR), now + 6 * HOUR);
	/* Retry-After: later than the backoff wins; earlier does not hurry it */
	assert_int_equal(acme_retry_time(1, now, 3 * HOUR, line), now + 3 * HOUR);
	assert_int_equal(acme_retry_time(5, now, 30, line), now + 16 * MIN);
	assert_int_equal(acme_retry_time(10, now, 12 * HOUR, now + HOUR), now + 12 * HOUR);
}

static void test_ari_poll(void **state)
{
	(void)state;
	assert_int_equal(acme_ari_next_poll(t0, -1), t0 + 6 * HOUR);
	assert_int_equal(acme_ari_next_poll(t0, 0), t0 + MIN);
	assert_int_equal(acme_ari_next_poll(t0, 5), t0 + MIN);
	assert_int_equal(acme_ari_next_poll(t0, 21600), t0 + 21600);
	assert_int_equal(acme_ari_next_poll(t0, 7 * DAY), t0 + DAY);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ninety_days), cmocka_unit_test(test_six_days),
	    cmocka_unit_test(test_ari_window),  cmocka_unit_test(test_backoff),
	    cmocka_unit_test(test_ari_poll),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
