/* test_common.c — unit tests of common/: the role names, how a moment is
 * written, the days-left rule (`cert list` and `verify` say the same), and the socket plumbing (a
 * numeric listen address, a listener, a connection within a deadline, the refusals). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/clock.h"
#include "../../common/net.h"
#include "../../common/role.h"

static void test_roles(void **state)
{
	static const char *const names[] = {"primary", "backup", "traffic"};
	cs_role r;

	(void)state;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(cs_role_parse(names[i], &r), 0);
		assert_string_equal(cs_role_name(r), names[i]);
	}
	r = CS_ROLE_BACKUP;
	assert_int_equal(cs_role_parse("Primary", &r), -1);
	assert_int_equal(cs_role_parse("", &r), -1);
	assert_int_equal(r, CS_ROLE_BACKUP); /* untouched when refused */
}

static void test_time(void **state)
{
	char when[CS_ISO_TIME_LEN];
	int64_t a, b;

	(void)state;
	cs_iso_time(1795330800, when);
	assert_string_equal(when, "2026-11-22T07:00:00Z");
	cs_iso_time(0, when);
	assert_string_equal(when, "1970-01-01T00:00:00Z");
	a = cs_mono_ms();
	b = cs_mono_ms();
	assert_true(b >= a);
}

/* Days left round up, so a certificate still valid for a second is never
 * said to have 0 days left, and the wording agrees in number. */
static void test_days_left(void **state)
{
	const time_t now = 1700000000, day = 86400;
	char text[32];

	(void)state;
	assert_int_equal(cs_days_left(now, now), 0);
	assert_int_equal(cs_days_left(now + 1, now), 1);
	assert_int_equal(cs_days_left(now + day, now), 1);
	assert_int_equal(cs_days_left(now + day + 1, now), 2);
	assert_int_equal(cs_days_left(now + 30 * day - 1, now), 30);
	assert_string_equal(cs_days_text(0, text), "0 days");
	assert_string_equal(cs_days_text(1, text), "1 day");
	assert_string_equal(cs_days_text(cs_days_left(now + 90, now), text), "1 day");
	assert_string_equal(cs_days_text(30, text), "30 days");
}

static void test_addr(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;

	(void)state;
	assert_int_equal(cs_net_addr("127.0.0.1:8443", false, &ss, &len), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 8443);
	assert_int_equal(cs_net_addr("[::1]:0", true, &ss, &len), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	/* port 0 only when asked for, a name never, brackets for IPv6 */
	assert_int_equal(cs_net_addr("127.0.0.1:0", false, &ss, &len), -1);
	assert_int_equal(cs_net_addr("localhost:8443", false, &ss, &len), -1);
	assert_int_equal(cs_net_addr("::1:8443", false, &ss, &len), -1);
}

static void test_connect(void **state)
{
	struct sockaddr_storage ss;
	struct sockaddr_in bound;
	socklen_t len, blen = sizeof(bound);
	char endpoint[64];
	int lfd, fd;
	cs_err err;

	(void)state;
	assert_int_equal(cs_net_addr("127.0.0.1:0", true, &ss, &len), 0);
	lfd = cs_net_listen(&ss, len);
	assert_true(lfd >= 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&bound, &blen), 0);
	snprintf(endpoint, sizeof(endpoint), "127.0.0.1:%u", ntohs(bound.sin_port));
	fd = cs_net_connect(endpoint, cs_mono_ms() + 2000, &err);
	if (fd < 0)
		fail_msg("connect %s: %s", endpoint, err.msg);
	close(fd);
	close(lfd);
	/* nothing listens there any more */
	assert_int_equal(cs_net_connect(endpoint, cs_mono_ms() + 2000, &err), -1);
	assert_int_equal(err.code, CS_EIO);
	assert_non_null(strstr(err.msg, "cannot connect: Connection refused"));
	assert_int_equal(cs_net_connect("no-port", cs_mono_ms() + 2000, &err), -1);
	assert_int_equal(err.code, CS_EUSAGE);
	assert_string_equal(err.msg, "not HOST:PORT");
}

static void test_unix(void **state)
{
	struct sockaddr_un sun;
	char path[200];

	(void)state;
	assert_int_equal(cs_net_unix_addr(&sun, "/run/certsync/control.sock"), 0);
	assert_string_equal(sun.sun_path, "/run/certsync/control.sock");
	memset(path, 'a', sizeof(path) - 1);
	path[sizeof(path) - 1] = '\0';
	path[0] = '/';
	assert_int_equal(cs_net_unix_addr(&sun, path), -1);
	/* no socket there: refused or absent, with errno saying which */
	snprintf(path, sizeof(path), "%s/cs-common-none.sock",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	assert_int_equal(cs_net_unix_addr(&sun, path), 0);
	assert_int_equal(cs_net_unix_connect(&sun), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roles),     cmocka_unit_test(test_time),
	    cmocka_unit_test(test_days_left), cmocka_unit_test(test_addr),
	    cmocka_unit_test(test_connect),   cmocka_unit_test(test_unix),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
