/* test_agent_cli.c — the operator command's pieces that stand alone since
 * the split of agent/cli.c: flag parsers (the request they build, the
 * refusal in words with the usage) and printers, which write through the
 * run's context (here a memory stream) rather than to standard output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../agent/cli.h"

static const struct cli_command self_signed = {
    "cert self-signed",
    "cert.self-signed",
    "cert self-signed --name NAME --country CC --common-name CN [--san HOST]... [--days N]",
    "",
    cli_parse_new,
    NULL,
    NULL};

static int parse(const struct cli_command *cmd, char **argv, json_t *args, cs_err *err)
{
	int argc = 0;

	while (argv[argc] != NULL)
		argc++;
	optind = 1;
	opterr = 0;
	return cmd->parse(cmd, argc, argv, args, err);
}

static void test_parse_new(void **state)
{
	char *ok[] = {"self-signed",
	              "--name",
	              "www",
	              "--country",
	              "GB",
	              "--common-name",
	              "www.example.test",
	              "--san",
	              "a.example.test",
	              "--san",
	              "b.example.test",
	              "--days",
	              "30",
	              NULL};
	char *no_value[] = {"self-signed", "--name", "--country", "GB", NULL};
	char *bad_days[] = {"self-signed",   "--name",         "w",      "--country", "GB",
	                    "--common-name", "w.example.test", "--days", "0",         NULL};
	char *missing[] = {"self-signed", "--name", "w", NULL};
	json_t *args = json_object();
	cs_err err;

	(void)state;
	assert_int_equal(parse(&self_signed, ok, args, &err), 0);
	assert_string_equal(json_string_value(json_object_get(args, "common_name")),
	                    "www.example.test");
	assert_int_equal(json_array_size(json_object_get(args, "sans")), 2);
	assert_int_equal(json_integer_value(json_object_get(args, "days")), 30);
	json_decref(args);

	/* a flag taken for another flag's value is refused, naming the value */
	args = json_object();
	assert_int_equal(parse(&self_signed, no_value, args, &err), -1);
	assert_int_equal(err.code, CS_EUSAGE);
	assert_non_null(strstr(err.msg, "--name needs a value (NAME)"));
	assert_non_null(strstr(err.msg, "usage: certsync cert self-signed"));
	json_decref(args);

	args = json_object();
	assert_int_equal(parse(&self_signed, bad_days, args, &err), -1);
	assert_non_null(strstr(err.msg, "--days takes a number from 1 to 3650"));
	json_decref(args);

	args = json_object();
	assert_int_equal(parse(&self_signed, missing, args, &err), -1);
	assert_non_null(strstr(err.msg, "--name, --country and --common-name are required"));
	json_decref(args);
}

/* Runs a printer with its output in a string (free it). */
static char *print(cli_print_fn fn, const char *answer, const char *args_json, int *rc)
{
	json_t *r = json_loads(answer, 0, NULL), *args = json_loads(args_json, 0, NULL);
	char *text = NULL;
	size_t len = 0;
	cli_ctx ctx = {.json = false};

	assert_non_null(r);
	assert_non_null(args);
	ctx.human = open_memstream(&text, &len);
	assert_non_null(ctx.human);
	ctx.aside = ctx.human;
	*rc = fn(&ctx, r, args);
	fclose(ctx.human);
	json_decref(r);
	json_decref(args);
	return text;
}

static void test_print_cert_list(void **state)
{
	char *text;
	int rc;

	(void)state;
	text = print(cli_print_cert_list,
	             "{\"certificates\": [{\"id\": \"3fa9c2d1aabbccdd\", \"name\": \"www\", "
	             "\"kind\": \"identity\", \"subject_cn\": \"www.example.test\", "
	             "\"not_after\": \"2027-11-22T07:00:00Z\", \"key_type\": \"ec:p256\", "
	             "\"has_key\": true, \"default\": true, \"sans\": [\"www.example.test\", "
	             "\"example.test\"], \"issuer\": \"CN=www.example.test\", \"warnings\": "
	             "[\"chain incomplete\"]}]}",
	             "{}", &rc);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(text, "3fa9c2d1  www"));
	assert_non_null(strstr(text, "2027-11-22 ec:p256"));
	assert_non_null(strstr(text, "SANs: www.example.test, example.test\n"));
	assert_non_null(strstr(text, "warnings: chain incomplete\n"));
	free(text);

	text = print(cli_print_cert_list, "{\"certificates\": []}", "{}", &rc);
	assert_non_null(strstr(text, "no certificates"));
	free(text);
}

/* status --check: the problems are printed and the exit status says so. */
static void test_print_status_check(void **state)
{
	static const char answer[] =
	    "{\"node\": \"n1\", \"role\": \"primary\", \"health\": {\"ok\": false, "
	    "\"problems\": [\"no default certificate\"]}}";
	char *text;
	int rc;

	(void)state;
	text = print(cli_print_status, answer, "{\"check\": true}", &rc);
	assert_int_equal(rc, 1);
	assert_non_null(strstr(text, "node       n1 (primary)\n"));
	assert_non_null(strstr(text, "UNHEALTHY  no default certificate\n"));
	free(text);

	text = print(cli_print_status, answer, "{}", &rc);
	assert_int_equal(rc, 0);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_new),
	    cmocka_unit_test(test_print_cert_list),
	    cmocka_unit_test(test_print_status_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
