/* test_agent_control_call.c — the command's side of the control socket
 * when the agent closes the connection before the whole request arrived
 * (a request over its bounds): the command gives the agent's answer, or
 * says the connection closed, and is never killed by SIGPIPE. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../agent/control.h"

struct early_closer {
	int listen_fd;
	const char *answer; /* NULL: close without a word */
};

/* Reads a little of the request, answers (or not) and closes, as the agent
 * does with a request over its bounds. */
static void *close_early(void *arg)
{
	struct early_closer *c = arg;
	int fd = accept(c->listen_fd, NULL, NULL);
	char buf[4096];

	if (fd < 0)
		return NULL;
	(void)!read(fd, buf, sizeof(buf));
	if (c->answer != NULL)
		(void)!write(fd, c->answer, strlen(c->answer));
	close(fd);
	return NULL;
}

static int call_closer(const char *answer, json_t **result, cs_err *err)
{
	char dir[] = "/tmp/cs-ctlcall-XXXXXX", path[64];
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct early_closer c = {.answer = answer};
	json_t *args = json_object();
	char *big = malloc(8 << 20);
	pthread_t t;
	int rc;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/control.sock", dir);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	c.listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(c.listen_fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(c.listen_fd, 1), 0);
	assert_int_equal(pthread_create(&t, NULL, close_early, &c), 0);
	/* 8 MiB: far more than the socket buffers hold, so the send is cut. */
	memset(big, 'a', 8 << 20);
	big[(8 << 20) - 1] = '\0';
	json_object_set_new(args, "blob", json_string(big));
	free(big);
	rc = cs_control_call(path, "import", args, result, err);
	pthread_join(t, NULL);
	json_decref(args);
	close(c.listen_fd);
	unlink(path);
	rmdir(dir);
	return rc;
}

static void test_refusal_before_the_request_ends_is_given(void **state)
{
	json_t *result = NULL;
	cs_err err = {0};

	(void)state;
	assert_int_equal(call_closer("{\"ok\":false,\"error\":{\"code\":\"input\",\"message\":"
	                             "\"the request is over 48 MiB\"}}\n",
	                             &result, &err),
	                 -1);
	assert_null(result);
	assert_string_equal(err.msg, "the request is over 48 MiB");
}

static void test_close_without_a_word_is_said(void **state)
{
	json_t *result = NULL;
	cs_err err = {0};

	(void)state;
	assert_int_equal(call_closer(NULL, &result, &err), -1);
	assert_null(result);
	assert_non_null(strstr(err.msg, "closed the connection before the whole request arrived"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_refusal_before_the_request_ends_is_given),
	    cmocka_unit_test(test_close_without_a_word_is_said),
	};

	/* The command's own default: SIGPIPE kills, as it did here. */
	signal(SIGPIPE, SIG_DFL);
	cs_control_init(); /* as main does: the request's text is wiped when freed */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
