/* repl_fixture.c — the store, the replication instance and the input format
 * the replication fuzz targets share (repl_fixture.h). */
#include "repl_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <zmq.h>

#include "../common/log.h"
#include "fuzz_files.h"

const uint8_t fixture_cluster_id[16] = "fuzz cluster id";

/* ---- constant random bytes ---- */

static const char *rnd_name(void)
{
	return "fuzzing constant";
}

static uint32_t rnd_random(void)
{
	return 0x5a5a5a5a;
}

static void rnd_buf(void *buf, size_t n)
{
	memset(buf, 0x5a, n);
}

static randombytes_implementation constant = {
    .implementation_name = rnd_name,
    .random = rnd_random,
    .buf = rnd_buf,
};

void fixture_init(void)
{
	/* CERTSYNC_FUZZ_LOG=debug shows the node's log while replaying an input */
	const char *want = getenv("CERTSYNC_FUZZ_LOG");
	enum cs_log_level level = CS_LOG_ERROR;

	if (randombytes_set_implementation(&constant) != 0 || sodium_init() < 0)
		fuzz_die("libsodium", "cannot start");
	if (want != NULL && cs_log_parse_level(want, &level) != 0)
		fuzz_die("CERTSYNC_FUZZ_LOG", "give debug, info, warn or error");
	cs_log_set_level(level);
}

/* ---- the store ---- */

static void commit_put(cs_store *st, cs_table t, const char *key, const void *val, size_t vlen,
                       const char *summary)
{
	cs_txn *txn;
	cs_err err;

	if (cs_txn_begin(st, true, &txn, &err) != 0 ||
	    cs_txn_put(txn, t, key, strlen(key), val, vlen, &err) != 0 ||
	    cs_txn_commit(txn, summary, NULL, &err) != 0)
		fuzz_die("making the store", err.msg);
}

static char *new_dir(void)
{
	char *dir = malloc(128);

	if (dir == NULL)
		fuzz_die("making the store", "out of memory");
	fuzz_mkdtemp(dir, 128, "fuzz-repl");
	return dir;
}

/* A new store in epoch 1, led by this node or following. */
static cs_store *new_store(const char *dir, bool lead)
{
	cs_store *st;
	cs_txn *txn;
	cs_err err;

	if (cs_store_open(&st, dir, &err) != 0 || cs_txn_begin(st, true, &txn, &err) != 0 ||
	    cs_txn_set_epoch(txn, 1, lead, &err) != 0 || cs_txn_commit(txn, NULL, NULL, &err) != 0)
		fuzz_die("making the store", err.msg);
	return st;
}

/* The primary's store: the cluster settings, then two changes. */
static char *leader_store(void)
{
	Certsync__KdfParams kdf = CERTSYNC__KDF_PARAMS__INIT;
	uint8_t salt[CS_SALT_LEN], check[CS_KEYCHECK_LEN], buf[256];
	char *dir = new_dir();
	cs_store *st = new_store(dir, true);

	memset(salt, 0x11, sizeof(salt));
	memset(check, 0x22, sizeof(check));
	kdf.opslimit = crypto_pwhash_OPSLIMIT_INTERACTIVE;
	kdf.memlimit = crypto_pwhash_MEMLIMIT_INTERACTIVE;
	kdf.salt = (ProtobufCBinaryData){sizeof(salt), salt};
	kdf.key_check = (ProtobufCBinaryData){sizeof(check), check};
	kdf.cluster_id =
	    (ProtobufCBinaryData){sizeof(fixture_cluster_id), (uint8_t *)fixture_cluster_id};
	commit_put(st, CS_TBL_SETTINGS, REC_SETTINGS_KDF, buf,
	           certsync__kdf_params__pack(&kdf, buf), "cluster created");
	commit_put(st, CS_TBL_SETTINGS, "fuzz-a", "first change", 12, "a change");
	commit_put(st, CS_TBL_SETTINGS, "fuzz-b", "second change", 13, "another change");
	cs_store_close(st);
	return dir;
}

/* A follower's store: the primary's first entry applied. */
static char *follower_store(void)
{
	char *dir = new_dir(), *from = leader_store();
	cs_store *lst, *st = new_store(dir, false);
	const void *entry;
	size_t len;
	cs_txn *ltxn, *txn;
	cs_err err;

	if (cs_store_open(&lst, from, &err) != 0 || cs_txn_begin(lst, false, &ltxn, &err) != 0 ||
	    cs_txn_log_get(ltxn, 1, &entry, &len, &err) != 0 ||
	    cs_txn_begin(st, true, &txn, &err) != 0 || cs_txn_apply(txn, entry, len, &err) != 0 ||
	    cs_txn_commit(txn, NULL, NULL, &err) != 0)
		fuzz_die("making the follower's store", err.msg);
	cs_txn_abort(ltxn);
	cs_store_close(lst);
	cs_store_close(st);
	fixture_remove(from);
	return dir;
}

char *fixture_store(bool lead)
{
	return lead ? leader_store() : follower_store();
}

void fixture_remove(char *dir)
{
	fuzz_remove_dir(dir);
	free(dir);
}

static struct fixture *opened; /* removed at exit */

static void remove_dirs(void)
{
	zmq_close(opened->router);
	zmq_close(opened->dealer);
	zmq_ctx_term(opened->zctx);
	fuzz_remove_dir(opened->template_dir);
	fuzz_remove_dir(opened->work_dir);
}

void fixture_open(struct fixture *f, bool lead)
{
	memset(f, 0, sizeof(*f));
	f->lead = lead;
	f->template_dir = fixture_store(lead);
	fuzz_mkdtemp(f->work_dir, sizeof(f->work_dir), "fuzz-repl");
	f->zctx = zmq_ctx_new();
	if (f->zctx == NULL || (f->router = zmq_socket(f->zctx, ZMQ_ROUTER)) == NULL ||
	    (f->dealer = zmq_socket(f->zctx, ZMQ_DEALER)) == NULL)
		fuzz_die("ZeroMQ", zmq_strerror(zmq_errno()));
	opened = f;
	atexit(remove_dirs);
}

/* ---- one input ---- */

static void start(struct fixture *f)
{
	static const char *const names[FIXTURE_PEERS] = {"primary", "backup", "traffic"};
	static const repl_role roles[FIXTURE_PEERS] = {REPL_PRIMARY, REPL_BACKUP, REPL_TRAFFIC};
	repl_peer peers[FIXTURE_PEERS];
	repl_config cfg = {0};
	repl_hooks hooks = {0};
	char from[160], to[160];
	cs_err err;

	snprintf(from, sizeof(from), "%s/data.mdb", f->template_dir);
	snprintf(to, sizeof(to), "%s/data.mdb", f->work_dir);
	fuzz_copy_file(from, to);
	if (cs_store_open(&f->st, f->work_dir, &err) != 0)
		fuzz_die("opening the store", err.msg);
	for (size_t i = 0; i < FIXTURE_PEERS; i++) {
		peers[i] = (repl_peer){names[i], roles[i],
		                       roles[i] != REPL_TRAFFIC ? "tcp://127.0.0.1:9" : NULL};
		memset(peers[i].public_key, (int)i + 1, REPL_KEY_LEN);
	}
	cfg.name = "self";
	cfg.role = f->lead ? REPL_PRIMARY : REPL_BACKUP;
	cfg.peers = peers;
	cfg.npeers = FIXTURE_PEERS;
	if (repl_prepare(&f->r, &cfg, f->st, &hooks, &err) != 0)
		fuzz_die("starting replication", err.msg);
	if (f->r->leading != f->lead)
		fuzz_die("starting replication", "the store does not give the expected role");
	f->r->router = f->router;
	for (size_t i = 0; i < FIXTURE_PEERS; i++) {
		struct peer *p = &f->r->peers[i];

		p->dealer = p->role != REPL_TRAFFIC ? f->dealer : NULL;
		p->rid[0] = (uint8_t)i;
		p->ridlen = 1;
	}
}

static void stop(struct fixture *f)
{
	follow_stop(f->r);
	lead_stop(f->r);
	f->r->router = NULL; /* the fixture's, not the node's */
	for (size_t i = 0; i < FIXTURE_PEERS; i++)
		f->r->peers[i].dealer = NULL;
	repl_discard(f->r);
	cs_store_close(f->st);
	f->r = NULL;
	f->st = NULL;
}

void fixture_run(struct fixture *f, const uint8_t *data, size_t size)
{
	start(f);
	while (size >= 3) {
		struct peer *p = &f->r->peers[(data[0] & 3) % FIXTURE_PEERS];
		bool router = (data[0] & FIXTURE_ROUTER) != 0;
		size_t len = (size_t)data[1] << 8 | data[2];
		envelope *env;

		data += 3;
		size -= 3;
		if (len > size)
			len = size;
		/* its own buffer, so a read past the message is caught */
		{
			uint8_t *msg = malloc(len ? len : 1);

			if (msg == NULL)
				break;
			memcpy(msg, data, len);
			env = wire_decode(f->r, p, msg, len);
			free(msg);
		}
		if (env != NULL) {
			repl_on_msg(f->r, p, env, router);
			certsync__envelope__free_unpacked(env, NULL);
		}
		data += len;
		size -= len;
	}
	stop(f);
}
