/* test_repl_race.c — the agent's side of replication/ while the replication
 * thread changes what it shares: a running primary (its own thread and
 * sockets) whose membership changes while the test thread, as the agent,
 * answers finished waits.  Built with ThreadSanitizer (CERTSYNC_TSAN) this
 * reports any access of the agent's to the peers that the thread's
 * membership change does not order; every build checks the answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "../../common/clock.h"
#include "../../common/log.h"
#include "../../replication/repl.h"
#include "testlib.h"

#define ROUNDS  20
#define WAIT_MS 10000 /* for the thread to apply a membership: generous */

struct answers {
	int count;
	int bad; /* answers without tn1, which stays a member throughout */
};

static void on_done(void *arg, json_t *unconfirmed)
{
	struct answers *a = arg;
	bool tn1 = false;
	size_t i;
	json_t *name;

	json_array_foreach(unconfirmed, i, name)
	{
		if (strcmp(json_string_value(name), "tn1") == 0)
			tn1 = true;
	}
	a->count++;
	a->bad += !tn1;
	json_decref(unconfirmed);
}

static size_t npeers_listed(repl *r)
{
	json_t *st = repl_status(r);
	size_t n = json_array_size(json_object_get(st, "peers"));

	json_decref(st);
	return n;
}

static void wait_listed(repl *r, size_t n)
{
	int64_t end = cs_mono_ms() + WAIT_MS;

	while (npeers_listed(r) != n) {
		if (cs_mono_ms() > end)
			fail_msg("the replication thread did not apply a membership of %zu peers",
			         n);
		poll(NULL, 0, 1);
	}
}

static void wait_notified(repl *r)
{
	struct pollfd pfd = {.fd = repl_fd(r), .events = POLLIN};

	if (poll(&pfd, 1, WAIT_MS) != 1)
		fail_msg("the replication thread did not answer a wait");
}

/* tn2 leaves and comes back while every wait (for tn1 and tn2, both never
 * heard, so answered at once) is answered: the thread forgets or admits
 * tn2 as the agent lists the nodes that did not confirm. */
static void test_waits_answered_while_members_change(void **state)
{
	repl_peer both[2] = {{"tn1", CS_ROLE_TRAFFIC, NULL, {0}},
	                     {"tn2", CS_ROLE_TRAFFIC, NULL, {0}}};
	repl_config cfg = {.name = "primary",
	                   .role = CS_ROLE_PRIMARY,
	                   .listen = "tcp://127.0.0.1:*",
	                   .peers = both,
	                   .npeers = 2};
	repl_hooks hooks = {0};
	struct answers a = {0};
	char dir[64], pz[REPL_Z85_LEN + 1], sz[REPL_Z85_LEN + 1];
	cs_store *st;
	repl *r;
	cs_err err;

	(void)state;
	assert_int_equal(zmq_curve_keypair(pz, sz), 0);
	assert_non_null(zmq_z85_decode(cfg.public_key, pz));
	assert_non_null(zmq_z85_decode(cfg.secret_key, sz));
	both[0].public_key[0] = 1;
	both[1].public_key[0] = 2;
	test_dir_make(dir, sizeof(dir), "cs-race");
	if (cs_store_open(&st, dir, &err) != 0 || repl_start(&r, &cfg, st, &hooks, &err) != 0)
		fail_msg("start: %s", err.msg);
	for (int i = 0; i < ROUNDS; i++) {
		assert_int_equal(
		    repl_wait(r, (cs_pos){0, 0}, REPL_WAIT_ALL, WAIT_MS, on_done, &a, &err), 0);
		wait_notified(r);
		/* The thread applies this while the dispatch below runs, or
		 * in the pause after it, before the agent takes r->mu again. */
		assert_int_equal(repl_set_peers(r, both, 1, &err), 0);
		repl_dispatch(r);
		poll(NULL, 0, 20);
		wait_listed(r, 1);
		assert_int_equal(repl_set_peers(r, both, 2, &err), 0);
		wait_listed(r, 2);
	}
	repl_stop(r);
	cs_store_close(st);
	test_dir_remove(dir);
	assert_int_equal(a.count, ROUNDS);
	assert_int_equal(a.bad, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_waits_answered_while_members_change),
	};

	cs_log_set_level(getenv("CS_DEBUG") ? CS_LOG_DEBUG : CS_LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
