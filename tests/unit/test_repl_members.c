/* test_repl_members.c — unit tests of replication/members.c: the peers
 * follow the membership the agent hands over.  A replication prepared
 * without its sockets or thread (repl_prepare), driven as its thread would
 * be (members_take): a removed peer is no longer found by name, its slot
 * and the others' indices stay, waits stop counting it, and a name that
 * comes back takes its old slot with the new key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zmq.h>

#include "../../common/log.h"
#include "../../replication/repl.h"
#include "../../replication/repl_int.h"

struct fix {
	char dir[64];
	cs_store *st;
	repl *r;
};

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void new_key(uint8_t key[REPL_KEY_LEN])
{
	char pz[REPL_Z85_LEN + 1], sz[REPL_Z85_LEN + 1];

	assert_int_equal(zmq_curve_keypair(pz, sz), 0);
	assert_non_null(zmq_z85_decode(key, pz));
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	repl_peer peers[2] = {{"backup", CS_ROLE_BACKUP, "tcp://127.0.0.1:7701", {0}},
	                      {"tn1", CS_ROLE_TRAFFIC, "tcp://127.0.0.1:7702", {0}}};
	repl_config cfg = {.name = "primary", .role = CS_ROLE_PRIMARY, .peers = peers, .npeers = 2};
	repl_hooks hooks = {0};
	cs_err err;

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/cs-members-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	new_key(cfg.public_key);
	new_key(peers[0].public_key);
	new_key(peers[1].public_key);
	if (cs_store_open(&f->st, f->dir, &err) != 0 ||
	    repl_prepare(&f->r, &cfg, f->st, &hooks, &err) != 0)
		fail_msg("prepare: %s", err.msg);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	repl_discard(f->r);
	cs_store_close(f->st);
	nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* The names repl_status lists, comma-separated, into out. */
static const char *listed(repl *r, char *out, size_t len)
{
	json_t *st = repl_status(r), *p;
	size_t i, n = 0;

	out[0] = '\0';
	json_array_foreach(json_object_get(st, "peers"), i, p)
	{
		n += (size_t)snprintf(out + n, len - n, "%s%s", n ? "," : "",
		                      json_string_value(json_object_get(p, "name")));
	}
	json_decref(st);
	return out;
}

static void test_join_and_leave(void **state)
{
	struct fix *f = *state;
	repl *r = f->r;
	struct peer *backup = wire_peer_by_name(r, "backup"), *tn1 = wire_peer_by_name(r, "tn1");
	struct waiter w = {.need = 3, .mode = REPL_WAIT_ALL};
	repl_peer next[2] = {{"backup", CS_ROLE_BACKUP, "tcp://127.0.0.1:7701", {0}},
	                     {"tn2", CS_ROLE_TRAFFIC, "tcp://127.0.0.1:7703", {0}}};
	uint8_t old_key[REPL_KEY_LEN];
	char names[128];
	cs_err err;

	assert_non_null(backup);
	assert_non_null(tn1);
	memcpy(next[0].public_key, backup->pub, REPL_KEY_LEN);
	memcpy(old_key, tn1->pub, REPL_KEY_LEN);
	new_key(next[1].public_key);
	r->waiters = &w; /* a change waiting for every peer */

	/* tn1 leaves, tn2 joins */
	assert_int_equal(repl_set_peers(r, next, 2, &err), 0);
	members_take(r);
	r->waiters = NULL;
	assert_null(wire_peer_by_name(r, "tn1"));
	assert_true(tn1->removed);
	assert_ptr_equal(wire_peer_by_name(r, "backup"), backup); /* untouched, same slot */
	assert_ptr_equal(wire_peer_by_name(r, "tn2"), &r->peers[2]);
	assert_memory_equal(r->peers[2].pub, next[1].public_key, REPL_KEY_LEN);
	assert_int_equal(w.need, 1); /* the wait no longer counts tn1 */
	assert_string_equal(listed(r, names, sizeof(names)), "backup,tn2");

	/* tn1 comes back with a new key: its old slot, the new key */
	next[1].name = "tn1";
	new_key(next[1].public_key);
	assert_int_equal(repl_set_peers(r, next, 2, &err), 0);
	members_take(r);
	assert_ptr_equal(wire_peer_by_name(r, "tn1"), tn1);
	assert_false(tn1->removed);
	assert_memory_not_equal(tn1->pub, old_key, REPL_KEY_LEN);
	assert_null(wire_peer_by_name(r, "tn2"));
	assert_int_equal(r->npeers, 3);
	assert_string_equal(listed(r, names, sizeof(names)), "backup,tn1");

	/* nothing queued: nothing changes */
	members_take(r);
	assert_string_equal(listed(r, names, sizeof(names)), "backup,tn1");
}

static void test_too_many(void **state)
{
	struct fix *f = *state;
	repl_peer many[MAX_PEERS + 1];
	char names[MAX_PEERS + 1][16];
	cs_err err;

	for (size_t i = 0; i <= MAX_PEERS; i++) {
		snprintf(names[i], sizeof(names[i]), "tn%zu", i);
		many[i] = (repl_peer){names[i], CS_ROLE_TRAFFIC, NULL, {0}};
		many[i].public_key[0] = (uint8_t)i;
	}
	assert_int_equal(repl_set_peers(f->r, many, MAX_PEERS + 1, &err), -1);
	assert_non_null(strstr(err.msg, "at most"));
	members_take(f->r);
	assert_non_null(wire_peer_by_name(f->r, "tn1")); /* the peers stay as they were */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_join_and_leave, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_too_many, setup, teardown),
	};

	cs_log_set_level(getenv("CS_DEBUG") ? CS_LOG_DEBUG : CS_LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
