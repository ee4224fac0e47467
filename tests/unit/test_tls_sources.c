/* test_tls_sources.c — connections per source address (tls/sources.c)
 * against a plain array kept alongside: random takes and releases of a few
 * hundred addresses, enough to share slots of the table and to delete from
 * the middle of its probe runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "../../tls/tls_int.h"

#define ADDRS 600
#define CAP   3

static void key_of(int i, uint8_t key[TLS_SRC_KEY_LEN])
{
	struct sockaddr_in sin = {.sin_family = AF_INET};

	sin.sin_addr.s_addr = htonl(0x0a000000u + (uint32_t)i * 7919u);
	tls_source_key((struct sockaddr *)&sin, key);
}

static void test_matches_a_plain_count(void **state)
{
	tls_sources *s = tls_sources_new(CAP, 100);
	uint8_t key[TLS_SRC_KEY_LEN];
	int model[ADDRS] = {0};

	(void)state;
	assert_non_null(s);
	srand(11);
	for (int op = 0; op < 200000; op++) {
		int i = rand() % ADDRS;

		key_of(i, key);
		if (rand() % 2 == 0) {
			bool ok = tls_sources_take(s, key);

			assert_int_equal(ok, model[i] < CAP);
			model[i] += ok;
		} else if (model[i] > 0) {
			tls_sources_release(s, key);
			model[i]--;
		}
	}
	/* every address at its count: one more is refused exactly when full */
	for (int i = 0; i < ADDRS; i++) {
		key_of(i, key);
		assert_int_equal(tls_sources_take(s, key), model[i] < CAP);
	}
	tls_sources_free(s);
}

static void test_ipv6_counts_per_64(void **state)
{
	tls_sources *s = tls_sources_new(1, 10);
	struct sockaddr_in6 a = {.sin6_family = AF_INET6}, b = a;
	uint8_t ka[TLS_SRC_KEY_LEN], kb[TLS_SRC_KEY_LEN];

	(void)state;
	inet_pton(AF_INET6, "2001:db8:1:2::1", &a.sin6_addr);
	inet_pton(AF_INET6, "2001:db8:1:2:ffff::9", &b.sin6_addr);
	tls_source_key((struct sockaddr *)&a, ka);
	tls_source_key((struct sockaddr *)&b, kb);
	assert_true(tls_sources_take(s, ka));
	assert_false(tls_sources_take(s, kb)); /* the same /64 */
	tls_sources_release(s, ka);
	assert_true(tls_sources_take(s, kb));
	tls_sources_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_matches_a_plain_count),
	    cmocka_unit_test(test_ipv6_counts_per_64),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
