/* test_agent_live.c — the snapshots threads read while the loop replaces
 * the peers and [acme] (agent/live.c): a snapshot a thread holds stays
 * whole after the loop published another and freed its own list, the
 * copies are deep, and a reader thread racing a publishing one only ever
 * sees whole lists (the sanitizer builds catch a read of freed memory). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../agent/live.h"

#define ROUNDS 2000

/* n peers named "gG-pI" (generation g), as members.c would make them. */
static cs_peer *peers_of(int g, size_t n)
{
	cs_peer *v = calloc(n, sizeof(*v));
	char name[32];

	assert_non_null(v);
	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "g%d-p%zu", g, i);
		v[i].name = strdup(name);
		v[i].role = CS_ROLE_TRAFFIC;
		v[i].hostname = strdup("tn.example.test");
		v[i].tls_endpoint = strdup("127.0.0.1:8443");
	}
	return v;
}

static cs_config config_with(cs_peer *v, size_t n)
{
	cs_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.peers = v;
	cfg.npeers = n;
	return cfg;
}

static void test_held_snapshot_outlives_the_list_it_copied(void **state)
{
	cs_peer *first = peers_of(1, 3), *second = peers_of(2, 1);
	cs_config cfg = config_with(first, 3);
	cs_live *l;
	cs_err err;
	cs_peers_snap *held, *now;

	(void)state;
	assert_int_equal(cs_live_new(&l, &cfg, &err), 0);
	held = cs_live_peers(l);
	/* the loop's list goes, as members.c frees it; then a new one */
	cs_config_peers_free(first, 3);
	assert_int_equal(cs_live_set_peers(l, second, 1, &err), 0);
	cs_config_peers_free(second, 1);
	assert_int_equal(held->n, 3);
	assert_string_equal(held->v[2].name, "g1-p2");
	assert_string_equal(held->v[2].tls_endpoint, "127.0.0.1:8443");
	assert_null(held->v[2].http_endpoint);
	now = cs_live_peers(l);
	assert_int_equal(now->n, 1);
	assert_string_equal(now->v[0].name, "g2-p0");
	cs_snap_drop((cs_snap *)held); /* the last reference: freed here */
	cs_snap_drop((cs_snap *)now);
	cs_live_free(l);
}

static void test_acme_copy_is_deep_and_counts_generations(void **state)
{
	char *contact[] = {"mailto:a@example.test", "mailto:b@example.test"};
	cs_acme_config a = {.directory = "https://ca.example.test/dir",
	                    .contact = contact,
	                    .ncontact = 2,
	                    .agree_tos = true,
	                    .check_timeout_s = 5};
	cs_config cfg = config_with(NULL, 0);
	cs_acme_snap *boot, *next;
	cs_live *l;
	cs_err err;

	(void)state;
	cfg.acme = a;
	assert_int_equal(cs_live_new(&l, &cfg, &err), 0);
	boot = cs_live_acme(l);
	a.directory = "https://ca2.example.test/dir";
	a.ncontact = 1;
	assert_int_equal(cs_live_set_acme(l, &a, &err), 0);
	next = cs_live_acme(l);
	assert_string_equal(boot->a.directory, "https://ca.example.test/dir");
	assert_int_equal(boot->a.ncontact, 2);
	assert_string_equal(boot->a.contact[1], "mailto:b@example.test");
	assert_ptr_not_equal(boot->a.contact[0], contact[0]);
	assert_string_equal(next->a.directory, "https://ca2.example.test/dir");
	assert_int_equal(next->a.ncontact, 1);
	assert_true(next->a.agree_tos);
	assert_int_equal(next->a.check_timeout_s, 5);
	assert_true(next->gen > boot->gen);
	cs_snap_drop((cs_snap *)boot);
	cs_snap_drop((cs_snap *)next);
	cs_live_free(l);
}

struct race {
	cs_live *l;
	int torn; /* lists whose peers were not of one generation */
};

static void *reader(void *arg)
{
	struct race *r = arg;

	for (int k = 0; k < ROUNDS; k++) {
		cs_peers_snap *s = cs_live_peers(r->l);
		char gen[16];

		if (s->n > 0) {
			snprintf(gen, sizeof(gen), "%.*s", (int)strcspn(s->v[0].name, "-"),
			         s->v[0].name);
			for (size_t i = 0; i < s->n; i++)
				if (strncmp(s->v[i].name, gen, strlen(gen)) != 0)
					r->torn++;
		}
		cs_snap_drop((cs_snap *)s);
	}
	return NULL;
}

static void test_reader_racing_the_loop_sees_whole_lists(void **state)
{
	cs_config cfg = config_with(NULL, 0);
	struct race r = {0};
	pthread_t t;
	cs_err err;

	(void)state;
	assert_int_equal(cs_live_new(&r.l, &cfg, &err), 0);
	assert_int_equal(pthread_create(&t, NULL, reader, &r), 0);
	for (int g = 1; g <= ROUNDS; g++) {
		size_t n = 1 + (size_t)g % 5;
		cs_peer *v = peers_of(g, n);

		assert_int_equal(cs_live_set_peers(r.l, v, n, &err), 0);
		cs_config_peers_free(v, n);
	}
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(r.torn, 0);
	cs_live_free(r.l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_held_snapshot_outlives_the_list_it_copied),
	    cmocka_unit_test(test_acme_copy_is_deep_and_counts_generations),
	    cmocka_unit_test(test_reader_racing_the_loop_sees_whole_lists),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
