/* test_repl.c — unit tests of replication/: nodes in one process, each with
 * its own store, thread and sockets, talking CURVE over 127.0.0.1 with real
 * keys.  The test thread plays every node's agent: it commits changes on the
 * primary and runs repl_dispatch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <zmq.h>

#include "../../common/hex.h"
#include "../../common/log.h"
#include "../../replication/repl.h"
#include "../../replication/repl_int.h"
#include "../../seal/seal.h"
#include "proto/replication.pb-c.h"
#include "../../records/records.h"

#define PASS     "correct horse battery staple"
#define MAXNODES 4

struct node {
	char name[16];
	repl_role role;
	char dir[64];
	char endpoint[64];
	uint8_t pub[REPL_KEY_LEN], sec[REPL_KEY_LEN];
	const char *pass;
	bool stranger; /* its key is in nobody's allowlist */
	cs_store *st;
	repl *r;
	cs_pos changed;
	int nchanged;
	cs_key *key;
};

/* Valgrind runs everything tens of times slower: CS_TEST_SLOW=N stretches
 * the heartbeat and every wait N times. */
static int slow = 1;
/* 100 ms: a node is down after three missed beats, and under a sanitizer
 * on a busy machine 150 ms went by without one. */
#define BEAT_BASE 100
#define BEAT_MS   (BEAT_BASE * slow)

static struct node nodes[MAXNODES];
static int nnodes;
static int port_base;

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void on_changed(void *ctx, cs_pos pos)
{
	struct node *n = ctx;

	n->changed = pos;
	n->nchanged++;
}

static void on_key(void *ctx, cs_key *key)
{
	struct node *n = ctx;

	cs_key_free(n->key);
	n->key = key;
}

static void add_node(const char *name, repl_role role)
{
	struct node *n = &nodes[nnodes];
	char pz[41], sz[41];

	memset(n, 0, sizeof(*n));
	snprintf(n->name, sizeof(n->name), "%s", name);
	n->role = role;
	n->pass = PASS;
	snprintf(n->endpoint, sizeof(n->endpoint), "tcp://127.0.0.1:%d", port_base + nnodes);
	assert_int_equal(zmq_curve_keypair(pz, sz), 0);
	assert_non_null(zmq_z85_decode(n->pub, pz));
	assert_non_null(zmq_z85_decode(n->sec, sz));
	snprintf(n->dir, sizeof(n->dir), "/tmp/cs-repl-XXXXXX");
	assert_non_null(mkdtemp(n->dir));
	nnodes++;
}

static void open_store(struct node *n)
{
	cs_err err;

	if (cs_store_open(&n->st, n->dir, &err) != 0)
		fail_msg("open %s: %s", n->name, err.msg);
}

/* The primary's first change: the cluster settings, with limits fast
 * enough for tests. */
static void create_cluster(struct node *n)
{
	cs_key *key;
	cs_txn *txn;
	cs_err err;

	assert_int_equal(cs_txn_begin(n->st, true, &txn, &err), 0);
	if (rec_cluster_create(txn, PASS, strlen(PASS), crypto_pwhash_OPSLIMIT_INTERACTIVE,
	                       crypto_pwhash_MEMLIMIT_INTERACTIVE, &key, &err) != 0)
		fail_msg("cluster settings: %s", err.msg);
	cs_key_free(key);
	assert_int_equal(cs_txn_commit(txn, "cluster created", NULL, &err), 0);
}

static void start(struct node *n)
{
	repl_peer peers[MAXNODES];
	repl_config cfg = {0};
	repl_hooks hooks = {on_changed, on_key, n};
	size_t np = 0;
	cs_err err;

	if (n->st == NULL)
		open_store(n);
	for (int i = 0; i < nnodes; i++) {
		if (&nodes[i] == n)
			continue;
		peers[np] = (repl_peer){nodes[i].name, nodes[i].role, nodes[i].endpoint};
		memcpy(peers[np].public_key, nodes[i].pub, REPL_KEY_LEN);
		/* A stranger's key is known to nobody: others list a key of
		 * their own making under its name. */
		if (nodes[i].stranger)
			randombytes_buf(peers[np].public_key, REPL_KEY_LEN);
		np++;
	}
	cfg.name = n->name;
	cfg.role = n->role;
	cfg.listen = n->endpoint;
	memcpy(cfg.public_key, n->pub, REPL_KEY_LEN);
	memcpy(cfg.secret_key, n->sec, REPL_KEY_LEN);
	cfg.peers = peers;
	cfg.npeers = np;
	cfg.pass = n->pass;
	cfg.passlen = strlen(n->pass);
	cfg.heartbeat_ms = BEAT_MS;
	if (repl_start(&n->r, &cfg, n->st, &hooks, &err) != 0)
		fail_msg("start %s: %s", n->name, err.msg);
}

static void stop(struct node *n)
{
	repl_stop(n->r);
	n->r = NULL;
}

static void stop_all(void)
{
	for (int i = 0; i < nnodes; i++) {
		struct node *n = &nodes[i];

		if (n->r != NULL)
			stop(n);
		if (n->st != NULL)
			cs_store_close(n->st);
		cs_key_free(n->key);
		nftw(n->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	}
	nnodes = 0;
}

static int setup(void **state)
{
	(void)state;
	/* below the kernel's ephemeral ports (32768 up): a node restarted in
	 * a test must find its port free, not taken as a client's source port */
	port_base = 10000 + (int)(getpid() % 2500) * 8;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	stop_all();
	return 0;
}

/* Runs every running node's dispatch until cond holds or ms pass. */
static bool pump(bool (*cond)(void *), void *arg, int ms)
{
	int64_t end = repl_now() + (int64_t)ms * slow;

	while (!cond(arg)) {
		struct pollfd pfd[MAXNODES];
		struct node *who[MAXNODES];
		int k = 0;

		if (repl_now() > end)
			return false;
		for (int i = 0; i < nnodes; i++) {
			if (nodes[i].r == NULL)
				continue;
			pfd[k] = (struct pollfd){.fd = repl_fd(nodes[i].r), .events = POLLIN};
			who[k++] = &nodes[i];
		}
		poll(pfd, (nfds_t)k, 10);
		for (int i = 0; i < k; i++)
			if (pfd[i].revents & POLLIN)
				repl_dispatch(who[i]->r);
	}
	return true;
}

static cs_pos applied(struct node *n, uint8_t digest[CS_DIGEST_LEN])
{
	cs_txn *txn;
	cs_err err;
	cs_pos pos;
	uint8_t again[CS_DIGEST_LEN];

	if (cs_txn_begin(n->st, false, &txn, &err) != 0)
		fail_msg("%s: %s", n->name, err.msg);
	pos = cs_txn_applied(txn);
	if (digest != NULL) {
		cs_txn_digest(txn, digest);
		assert_int_equal(cs_txn_digest_recompute(txn, again, &err), 0);
		assert_memory_equal(digest, again, CS_DIGEST_LEN);
	}
	cs_txn_abort(txn);
	return pos;
}

/* A change on n: puts certs[key] = val and tells replication. */
static cs_pos change(struct node *n, const char *key, const char *val)
{
	cs_txn *txn;
	cs_err err;
	cs_pos pos;

	assert_int_equal(cs_txn_begin(n->st, true, &txn, &err), 0);
	assert_int_equal(cs_txn_put(txn, CS_TBL_CERTS, key, strlen(key), val, strlen(val), &err),
	                 0);
	if (cs_txn_commit(txn, key, &pos, &err) != 0)
		fail_msg("change on %s: %s", n->name, err.msg);
	if (n->r != NULL)
		repl_committed(n->r);
	return pos;
}

static void changes(struct node *n, int count, const char *prefix)
{
	char k[32], v[64];

	for (int i = 0; i < count; i++) {
		snprintf(k, sizeof(k), "%s%d", prefix, i);
		snprintf(v, sizeof(v), "value %d of %s", i, prefix);
		change(n, k, v);
	}
}

/* Every running node other than the first is at the first's position with
 * the same digest. */
static bool in_sync(void *arg)
{
	struct node *lead = arg;
	uint8_t d0[CS_DIGEST_LEN], d[CS_DIGEST_LEN];
	cs_pos p0 = applied(lead, d0);

	for (int i = 0; i < nnodes; i++) {
		struct node *n = &nodes[i];
		cs_pos p;

		if (n == lead || n->r == NULL || n->stranger)
			continue;
		p = applied(n, d);
		if (p.seq != p0.seq || p.epoch != p0.epoch || memcmp(d, d0, CS_DIGEST_LEN) != 0)
			return false;
	}
	return true;
}

static json_t *status_of(struct node *n)
{
	return repl_status(n->r);
}

static json_int_t dropped(struct node *n, const char *what)
{
	json_t *s = status_of(n);
	json_int_t v = json_integer_value(json_object_get(json_object_get(s, "dropped"), what));

	json_decref(s);
	return v;
}

/* A field of what n's status says of its peer named peer; -1 when null. */
static json_int_t peer_field(struct node *n, const char *peer, const char *key)
{
	json_t *s = status_of(n), *q;
	json_int_t v = -1;
	size_t i;

	json_array_foreach(json_object_get(s, "peers"), i, q)
	{
		if (strcmp(json_string_value(json_object_get(q, "name")), peer) == 0 &&
		    json_is_integer(json_object_get(q, key)))
			v = json_integer_value(json_object_get(q, key));
	}
	json_decref(s);
	return v;
}

static void three_nodes(void)
{
	add_node("p", REPL_PRIMARY);
	add_node("b", REPL_BACKUP);
	add_node("t", REPL_TRAFFIC);
	open_store(&nodes[0]);
	create_cluster(&nodes[0]);
	for (int i = 0; i < 3; i++)
		start(&nodes[i]);
}

/* ---- the tests ---- */

static void test_fork(void **state)
{
	const cs_epoch_start one[] = {{1, 1}};
	const cs_epoch_start two[] = {{1, 1}, {2, 101}};
	const cs_epoch_start t3[] = {{1, 1}, {2, 30}, {3, 40}};
	const cs_epoch_start t4[] = {{1, 1}, {2, 30}, {4, 45}};
	const cs_epoch_start late[] = {{5, 20}};

	(void)state;
	assert_int_equal(repl_fork(one, 1, 50, one, 1, 100), 50);   /* behind */
	assert_int_equal(repl_fork(one, 1, 0, one, 1, 100), 0);     /* empty */
	assert_int_equal(repl_fork(one, 1, 101, one, 1, 100), 100); /* ahead, same epoch */
	assert_int_equal(repl_fork(one, 1, 105, two, 2, 110), 100); /* an old primary's tail */
	assert_int_equal(repl_fork(two, 2, 110, one, 1, 105), 100);
	assert_int_equal(repl_fork(t3, 3, 50, t4, 3, 60), 39);   /* epoch 3 never reached 4 */
	assert_int_equal(repl_fork(late, 1, 30, one, 1, 30), 0); /* history does not reach */
	assert_int_equal(repl_fork(NULL, 0, 10, one, 1, 30), 0);
}

/* A follower may start a session over after a late beat; it settles. */
static bool streaming(void *arg)
{
	json_t *s = status_of(arg);
	bool ok = strcmp(json_string_value(json_object_get(s, "sync")), "streaming") == 0;

	json_decref(s);
	return ok;
}

/* The replication thread applies, then tells the agent's thread: the hook
 * runs from a later dispatch than the one that saw the store in sync. */
static bool heard_of_changes(void *arg)
{
	return ((struct node *)arg)->nchanged > 0;
}

static void test_stream(void **state)
{
	struct node *p = &nodes[0], *t;
	json_t *s;

	(void)state;
	three_nodes();
	t = &nodes[2];
	changes(p, 50, "c");
	assert_true(pump(in_sync, p, 10000));
	assert_int_equal(applied(t, NULL).seq, 51);
	/* the agent heard of the changes, and a fresh node got the key */
	assert_true(pump(heard_of_changes, t, 5000));
	assert_true(t->changed.seq <= 51);
	assert_non_null(t->key);
	s = status_of(p);
	assert_string_equal(json_string_value(json_object_get(s, "role")), "primary");
	assert_true(json_is_true(json_object_get(s, "leading")));
	json_decref(s);
	assert_true(pump(streaming, t, 5000));
	s = status_of(t);
	assert_string_equal(json_string_value(json_object_get(s, "leader")), "p");
	json_decref(s);
	assert_false(repl_leading(t->r));
}

struct done {
	bool called;
	json_t *unconfirmed;
};

static void on_done(void *arg, json_t *unconfirmed)
{
	struct done *d = arg;

	d->called = true;
	d->unconfirmed = unconfirmed;
}

static bool is_done(void *arg)
{
	return ((struct done *)arg)->called;
}

static bool b_follows(void *arg)
{
	json_t *s = status_of(arg);
	bool ok = json_is_true(
	              json_object_get(json_array_get(json_object_get(s, "peers"), 0), "follows")) &&
	          json_is_true(
	              json_object_get(json_array_get(json_object_get(s, "peers"), 1), "follows"));

	json_decref(s);
	return ok;
}

/* Whether the primary's status says the backup (b) is down. */
static bool p_lost_b(void *arg)
{
	json_t *s = status_of(arg), *q;
	bool ok = false;
	size_t i;

	json_array_foreach(json_object_get(s, "peers"), i, q)
	{
		if (strcmp(json_string_value(json_object_get(q, "name")), "b") == 0)
			ok = json_is_false(json_object_get(q, "reachable"));
	}
	json_decref(s);
	return ok;
}

static void test_wait(void **state)
{
	struct node *p = &nodes[0];
	struct done d = {0};
	cs_err err;
	cs_pos pos;

	(void)state;
	three_nodes();
	assert_true(pump(b_follows, p, 5000));
	pos = change(p, "w", "1");
	assert_int_equal(repl_wait(p->r, pos, REPL_WAIT_ALL, 5000, on_done, &d, &err), 0);
	assert_false(d.called); /* never before returning */
	assert_true(pump(is_done, &d, 5000));
	assert_int_equal(json_array_size(d.unconfirmed), 0);
	assert_true(applied(&nodes[1], NULL).seq >= pos.seq);
	json_decref(d.unconfirmed);

	/* the backup gone: the wait names it, without waiting out the timeout */
	stop(&nodes[1]);
	assert_true(pump(p_lost_b, p, 5000));
	d = (struct done){0};
	pos = change(p, "w", "2");
	assert_int_equal(repl_wait(p->r, pos, REPL_WAIT_BACKUP, 60000, on_done, &d, &err), 0);
	assert_true(pump(is_done, &d, 5000));
	assert_int_equal(json_array_size(d.unconfirmed), 1);
	assert_string_equal(json_string_value(json_array_get(d.unconfirmed, 0)), "b");
	json_decref(d.unconfirmed);
}

static void test_catchup(void **state)
{
	struct node *p = &nodes[0], *t = &nodes[2];
	uint64_t first;
	cs_txn *txn;
	cs_err err;

	(void)state;
	three_nodes();
	assert_true(pump(in_sync, p, 5000));
	/* by the log */
	stop(t);
	changes(p, 40, "log");
	start(t);
	assert_true(pump(in_sync, p, 10000));
	/* by a snapshot: the log no longer reaches back */
	stop(t);
	cs_store_set_log_retain(p->st, 10);
	changes(p, 40, "snap");
	assert_int_equal(cs_txn_begin(p->st, false, &txn, &err), 0);
	assert_int_equal(cs_txn_log_first(txn, &first, &err), 0);
	cs_txn_abort(txn);
	assert_true(first > applied(t, NULL).seq + 1);
	start(t);
	assert_true(pump(in_sync, p, 10000));
	/* and streams on after it */
	changes(p, 5, "after");
	assert_true(pump(in_sync, p, 10000));
}

/* A cluster that has been through more epochs than a snapshot carries
 * (SNAPSHOT_HISTORY) still takes new nodes: the snapshot carries the
 * newest epochs of its history, and the node joins and streams on. */
static void test_snapshot_long_history(void **state)
{
	struct node *p = &nodes[0];
	cs_epoch_start hist[SNAPSHOT_HISTORY + 6];
	const size_t n = sizeof(hist) / sizeof(hist[0]);
	cs_txn *txn;
	cs_err err;
	cs_pos at;

	(void)state;
	add_node("p", REPL_PRIMARY);
	add_node("t", REPL_TRAFFIC);
	open_store(p);
	create_cluster(p);
	/* as if each of these changes had been written by a primary of an
	 * epoch of its own, one promotion after another */
	changes(p, (int)n, "epoch");
	at = applied(p, NULL);
	for (size_t i = 0; i < n; i++)
		hist[i] = (cs_epoch_start){i + 1, i + 2};
	assert_int_equal(cs_txn_begin(p->st, true, &txn, &err), 0);
	assert_int_equal(cs_txn_set_epoch(txn, n, true, &err), 0);
	assert_int_equal(cs_txn_set_position(txn, (cs_pos){n, at.seq}, hist, n, &err), 0);
	assert_int_equal(cs_txn_commit(txn, NULL, NULL, &err), 0);
	/* the log no longer reaches back: the new node needs a snapshot */
	cs_store_set_log_retain(p->st, 10);
	changes(p, 20, "pruned");
	start(p);
	start(&nodes[1]);
	assert_true(pump(in_sync, p, 10000));
	assert_int_equal(applied(&nodes[1], NULL).epoch, n);
	changes(p, 5, "after");
	assert_true(pump(in_sync, p, 10000));
}

static bool leader_is(void *arg)
{
	struct node *n = arg;
	char name[64];

	return n->r != NULL && repl_leader(n->r, name, sizeof(name)) == 0 &&
	       strcmp(name, n->name) != 0 && strcmp(name, "b") == 0;
}

static bool p_sees_nobody(void *arg)
{
	json_t *s = status_of(arg);
	bool ok = !json_is_true(
	    json_object_get(json_array_get(json_object_get(s, "peers"), 0), "reachable"));

	json_decref(s);
	return ok;
}

static bool b_heard_t_at_epoch_2(void *arg)
{
	(void)arg;
	return peer_field(&nodes[1], "t", "seen_epoch") == 2;
}

static int count_diverged(void *ctx, const cs_diverged *d)
{
	(void)d;
	(*(int *)ctx)++;
	return 0;
}

/* The first diverged entry a table holds: its id, origin and summary. */
struct diverged_seen {
	int n;
	char id[2 * CS_DIGEST_LEN + 1], origin[32], summary[64];
};

static int see_diverged(void *ctx, const cs_diverged *d)
{
	struct diverged_seen *seen = ctx;
	Certsync__LogEntry *e;

	if (seen->n++ > 0)
		return 0;
	e = certsync__log_entry__unpack(NULL, d->entry_len, d->entry);
	assert_non_null(e);
	cs_hex(d->id, CS_DIGEST_LEN, seen->id);
	snprintf(seen->origin, sizeof(seen->origin), "%s", d->origin);
	snprintf(seen->summary, sizeof(seen->summary), "%s", e->summary);
	certsync__log_entry__free_unpacked(e, NULL);
	return 0;
}

static void test_failover(void **state)
{
	struct node *p = &nodes[0], *b = &nodes[1], *t = &nodes[2];
	uint8_t id[CS_DIGEST_LEN];
	struct diverged_seen seen;
	cs_txn *txn;
	cs_err err;
	int n = 0;

	(void)state;
	three_nodes();
	changes(p, 5, "before");
	assert_true(pump(in_sync, p, 10000));
	/* no promotion while the primary is heard */
	assert_int_equal(repl_promote(b->r, false, &err), -1);
	assert_int_equal(err.code, CS_EREFUSED);
	assert_non_null(strstr(err.msg, "primary p was heard"));
	assert_int_equal(repl_promote(t->r, true, &err), -1);
	assert_non_null(strstr(err.msg, "traffic"));
	assert_int_equal(repl_promote(p->r, false, &err), -1);
	assert_int_equal(err.code, CS_EEXIST);

	/* the primary dies; cut off, it writes one more change */
	stop(p);
	change(p, "lost", "written by the old primary alone");
	assert_true(pump(p_sees_nobody, b, 5000));
	assert_int_equal(repl_promote(b->r, false, &err), 0);
	assert_true(repl_leading(b->r));
	assert_int_equal(applied(b, NULL).seq, 6);
	/* before the new epoch's first change every position is still the
	 * last applied entry's: the status of a peer that has seen epoch 2
	 * says so apart, and does not make it look ahead */
	assert_true(pump(leader_is, t, 5000));
	assert_true(pump(b_heard_t_at_epoch_2, NULL, 5000));
	assert_int_equal(peer_field(b, "t", "epoch"), 1);
	assert_int_equal(peer_field(b, "t", "seq"), 6);
	assert_int_equal(peer_field(t, "b", "epoch"), 1);
	assert_int_equal(peer_field(t, "b", "seen_epoch"), 2);
	changes(b, 3, "after");
	assert_true(pump(in_sync, b, 10000));
	assert_int_equal(applied(t, NULL).epoch, 2);

	/* the old primary comes back, still configured as primary: it steps
	 * down, its change is moved aside and reaches the new primary */
	start(p);
	assert_true(pump(leader_is, p, 5000));
	assert_true(pump(in_sync, b, 10000));
	assert_false(repl_leading(p->r));
	assert_int_equal(cs_txn_begin(p->st, true, &txn, &err), 0);
	assert_int_equal(cs_txn_diverged_foreach(txn, count_diverged, &n, &err), 0);
	cs_txn_abort(txn);
	assert_int_equal(n, 1);
	for (int i = 0; i < 100; i++) {
		memset(&seen, 0, sizeof(seen));
		assert_int_equal(cs_txn_begin(b->st, false, &txn, &err), 0);
		if (cs_txn_diverged_foreach(txn, see_diverged, &seen, &err) != 0)
			fail_msg("diverged list: %s", err.msg);
		cs_txn_abort(txn);
		if (seen.n == 1)
			break;
		usleep(20000 * slow);
	}
	assert_int_equal(seen.n, 1);
	assert_string_equal(seen.origin, "p");
	assert_string_equal(seen.summary, "lost");
	/* re-applied through the new primary, it reaches everyone */
	assert_int_equal(cs_txn_begin(b->st, true, &txn, &err), 0);
	assert_int_equal(cs_txn_diverged_apply(txn, seen.id, id, &err), 0);
	assert_int_equal(cs_txn_commit(txn, "diverged apply", NULL, &err), 0);
	repl_committed(b->r);
	assert_true(pump(in_sync, b, 10000));
	assert_int_equal(applied(p, NULL).seq, 10);
	/* the old primary cannot write any more */
	assert_int_equal(cs_txn_begin(p->st, true, &txn, &err), 0);
	assert_int_equal(cs_txn_put(txn, CS_TBL_CERTS, "x", 1, "y", 1, &err), 0);
	assert_int_equal(cs_txn_commit(txn, "fenced", NULL, &err), -1);
	assert_int_equal(err.code, CS_EREFUSED);
}

static bool refused(void *arg)
{
	json_t *s = status_of(arg);
	bool ok = json_is_string(json_object_get(s, "refusal"));

	json_decref(s);
	return ok;
}

static bool p_sees_refusal(void *arg)
{
	json_t *s = status_of(arg);
	bool ok = json_is_string(
	    json_object_get(json_array_get(json_object_get(s, "peers"), 0), "refusal"));

	json_decref(s);
	return ok;
}

static void test_wrong_passphrase(void **state)
{
	struct node *p = &nodes[0], *t;
	json_t *s;

	(void)state;
	add_node("p", REPL_PRIMARY);
	add_node("t", REPL_TRAFFIC);
	t = &nodes[1];
	t->pass = "not the passphrase";
	open_store(p);
	create_cluster(p);
	start(p);
	start(t);
	changes(p, 3, "c");
	assert_true(pump(refused, t, 10000));
	s = status_of(t);
	assert_non_null(strstr(json_string_value(json_object_get(s, "refusal")),
	                       "cluster passphrase does not match the primary's"));
	json_decref(s);
	/* the primary sees it too, and by then t has still applied nothing */
	assert_true(pump(p_sees_refusal, p, 5000));
	assert_int_equal(applied(t, NULL).seq, 0);
	assert_null(t->key);
	s = status_of(p);
	assert_non_null(strstr(json_string_value(json_object_get(
	                           json_array_get(json_object_get(s, "peers"), 0), "refusal")),
	                       "passphrase"));
	json_decref(s);
}

static bool unknown_counted(void *arg)
{
	return dropped(arg, "unknown_key") > 0;
}

/* Whether the backup (the third node) has applied the primary's change u0. */
static bool b_has_u(void *arg)
{
	cs_pos want = applied(arg, NULL);

	return want.seq > 0 && applied(&nodes[2], NULL).seq == want.seq;
}

static void test_unknown_key(void **state)
{
	struct node *p = &nodes[0], *t;

	(void)state;
	add_node("p", REPL_PRIMARY);
	add_node("t", REPL_TRAFFIC);
	t = &nodes[1];
	t->stranger = true;
	add_node("b", REPL_BACKUP);
	open_store(p);
	create_cluster(p);
	start(p);
	start(t);
	start(&nodes[2]);
	assert_true(pump(unknown_counted, p, 5000));
	/* a change made now reaches the listed peer b; by then t, refused,
	 * has still applied nothing */
	changes(p, 1, "u");
	assert_true(pump(b_has_u, p, 5000));
	assert_int_equal(applied(t, NULL).seq, 0);
}

/* A client holding a configured peer's key sends junk to the primary. */
static void send_raw(void *sock, const void *data, size_t len, int flags)
{
	assert_true(zmq_send(sock, data, len, flags) >= 0);
}

static bool junk_counted(void *arg)
{
	return dropped(arg, "undecodable") >= 2 && dropped(arg, "stale_epoch") >= 2 &&
	       dropped(arg, "wrong_cluster") >= 2;
}

static void send_env(void *sock, Certsync__Envelope *env)
{
	uint8_t buf[256];

	assert_true(certsync__envelope__get_packed_size(env) <= sizeof(buf));
	send_raw(sock, buf, certsync__envelope__pack(env, buf), 0);
}

static void test_garbage(void **state)
{
	struct node *p = &nodes[0], *t = &nodes[1];
	Certsync__Envelope env = CERTSYNC__ENVELOPE__INIT;
	Certsync__Entries e = CERTSYNC__ENTRIES__INIT;
	Certsync__Beat b = CERTSYNC__BEAT__INIT;
	Certsync__Position at = CERTSYNC__POSITION__INIT;
	void *ctx, *s;

	(void)state;
	add_node("p", REPL_PRIMARY);
	add_node("t", REPL_TRAFFIC);
	open_store(p);
	create_cluster(p);
	{
		cs_txn *txn;
		cs_err err;

		/* the primary is at epoch 2, so epoch 1 is stale */
		assert_int_equal(cs_txn_begin(p->st, true, &txn, &err), 0);
		assert_int_equal(cs_txn_set_epoch(txn, 2, true, &err), 0);
		assert_int_equal(cs_txn_commit(txn, NULL, NULL, &err), 0);
	}
	start(p);
	ctx = zmq_ctx_new();
	s = zmq_socket(ctx, ZMQ_DEALER);
	assert_int_equal(zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, p->pub, 32), 0);
	assert_int_equal(zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, t->pub, 32), 0);
	assert_int_equal(zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, t->sec, 32), 0);
	assert_int_equal(zmq_connect(s, p->endpoint), 0);
	send_raw(s, "garbage", 7, 0);
	send_raw(s, "two", 3, ZMQ_SNDMORE);
	send_raw(s, "frames", 6, 0);
	/* the cluster's own id, from an epoch the cluster left: an entry and
	 * a claim to lead */
	env.cluster_id = p->r->loc.kdf->cluster_id;
	env.epoch = 1;
	e.first = 2;
	env.body_case = CERTSYNC__ENVELOPE__BODY_ENTRIES;
	env.entries = &e;
	send_env(s, &env);
	b.leading = true;
	at.epoch = 1;
	at.seq = 9;
	b.applied = &at;
	env.body_case = CERTSYNC__ENVELOPE__BODY_BEAT;
	env.beat = &b;
	send_env(s, &env);
	/* no cluster id: only a new node's beat may omit it */
	env.cluster_id = (ProtobufCBinaryData){0, NULL};
	env.epoch = 2;
	send_env(s, &env);
	env.body_case = CERTSYNC__ENVELOPE__BODY_ENTRIES;
	send_env(s, &env);
	assert_true(pump(junk_counted, p, 5000));
	assert_int_equal(applied(p, NULL).seq, 1);
	/* a dropped beat does not make its sender heard */
	assert_int_equal(peer_field(p, "t", "last_heard_ms"), -1);
	zmq_close(s);
	zmq_ctx_term(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fork),
	    cmocka_unit_test_setup_teardown(test_stream, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wait, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_catchup, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_snapshot_long_history, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failover, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_passphrase, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_key, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
	};

	cs_log_set_level(getenv("CS_DEBUG") ? CS_LOG_DEBUG : CS_LOG_WARN);
	if (getenv("CS_TEST_SLOW") != NULL && atoi(getenv("CS_TEST_SLOW")) > 1)
		slow = atoi(getenv("CS_TEST_SLOW"));
	if (cs_seal_init(NULL) != 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
