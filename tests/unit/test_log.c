/* test_log.c — the log's rate limit (common/log.c): a format that repeats
 * is written five times, then held back, and the next line written says how
 * many were; info lines are never held back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../common/log.h"

/* Runs fn with stderr going to a temporary file; returns what it wrote
 * (malloc'd). */
static char *captured(void (*fn)(void))
{
	FILE *tmp = tmpfile();
	int saved = dup(2);
	long len;
	char *text;

	assert_non_null(tmp);
	fflush(stderr);
	assert_true(dup2(fileno(tmp), 2) >= 0);
	fn();
	fflush(stderr);
	assert_true(dup2(saved, 2) >= 0);
	close(saved);
	len = ftell(tmp);
	assert_true(len >= 0);
	text = calloc(1, (size_t)len + 1);
	rewind(tmp);
	assert_int_equal(fread(text, 1, (size_t)len, tmp), (size_t)len);
	fclose(tmp);
	return text;
}

static size_t count(const char *text, const char *what)
{
	size_t n = 0;

	for (const char *p = text; (p = strstr(p, what)) != NULL; p += strlen(what))
		n++;
	return n;
}

static void flood(void)
{
	for (int i = 0; i < 1000; i++)
		cs_warn("accept failed: %s (%d)", "Too many open files", i);
}

static void flood_then_one(void)
{
	flood();
	sleep(2); /* the bucket refills */
	cs_warn("accept failed: %s (%d)", "Too many open files", -1);
}

static void texts(void)
{
	for (int i = 0; i < 20; i++)
		cs_error("%s", i % 2 ? "one message" : "another message");
}

static void changes(void)
{
	for (int i = 0; i < 100; i++)
		cs_info("change 1.%d: self-signed", i);
}

static void test_a_flood_is_bounded(void **state)
{
	char *out = captured(flood_then_one);

	(void)state;
	/* five at once, perhaps one more if a second turned meanwhile, and the
	 * one after the pause with the count of what was held back */
	assert_in_range(count(out, "accept failed"), 6, 8);
	assert_int_equal(count(out, "similar lines suppressed"), 1);
	assert_non_null(strstr(out, "(-1) ("));
	free(out);
}

static void test_bare_format_limited_per_text(void **state)
{
	char *out = captured(texts);

	(void)state;
	assert_int_equal(count(out, "another message"), 5);
	assert_int_equal(count(out, "one message"), 5);
	free(out);
}

static void test_info_never_held_back(void **state)
{
	char *out = captured(changes);

	(void)state;
	assert_int_equal(count(out, ": self-signed"), 100);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_flood_is_bounded),
	    cmocka_unit_test(test_bare_format_limited_per_text),
	    cmocka_unit_test(test_info_never_held_back),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
