/* repl_seeds.c — fuzz_repl_seeds FOLLOWER_DIR LEADER_DIR: writes the seed
 * corpora of fuzz_repl_follower and fuzz_repl_leader.
 *
 * Each seed is a sequence of messages in the targets' input format
 * (repl_fixture.h), packed by protobuf-c as replication/ packs them, and
 * filled from a real primary's store (the fixture's): its cluster settings,
 * log entries, pairs, digest and epoch history. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "fuzz_files.h"
#include "repl_fixture.h"

#define MAXPAIRS 16

/* What the primary's store holds, as its messages carry it. */
static struct {
	Certsync__KdfParams *kdf;
	ProtobufCBinaryData entries[4]; /* seqs 1..3 */
	uint8_t digest[CS_DIGEST_LEN];
	Certsync__Pair pairs[MAXPAIRS];
	Certsync__Pair *pp[MAXPAIRS];
	size_t npairs;
	cs_table table;
} primary;

static void *copy(const void *p, size_t n)
{
	void *c = malloc(n ? n : 1);

	if (c == NULL)
		fuzz_die("reading the store", "out of memory");
	memcpy(c, p, n);
	return c;
}

static int take_pair(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	Certsync__Pair *p = &primary.pairs[primary.npairs];

	(void)ctx;
	if (primary.npairs == MAXPAIRS)
		return 1;
	certsync__pair__init(p);
	p->table = primary.table;
	p->key = (ProtobufCBinaryData){klen, copy(key, klen)};
	p->value = (ProtobufCBinaryData){vlen, copy(val, vlen)};
	primary.pp[primary.npairs++] = p;
	return 0;
}

static void read_primary(void)
{
	char *dir = fixture_store(true);
	const void *val;
	size_t vlen;
	cs_store *st;
	cs_txn *txn;
	cs_err err;

	if (cs_store_open(&st, dir, &err) != 0 || cs_txn_begin(st, false, &txn, &err) != 0 ||
	    cs_txn_get(txn, CS_TBL_SETTINGS, REC_SETTINGS_KDF, strlen(REC_SETTINGS_KDF), &val,
	               &vlen, &err) != 0 ||
	    (primary.kdf = certsync__kdf_params__unpack(NULL, vlen, val)) == NULL)
		fuzz_die("reading the primary's store", err.msg);
	for (uint64_t seq = 1; seq <= 3; seq++) {
		if (cs_txn_log_get(txn, seq, &val, &vlen, &err) != 0)
			fuzz_die("reading the primary's log", err.msg);
		primary.entries[seq] = (ProtobufCBinaryData){vlen, copy(val, vlen)};
	}
	cs_txn_digest(txn, primary.digest);
	for (primary.table = 0; primary.table < CS_TBL_NREPL; primary.table++)
		if (cs_txn_foreach(txn, primary.table, take_pair, NULL, &err) < 0)
			fuzz_die("reading the primary's tables", err.msg);
	cs_txn_abort(txn);
	cs_store_close(st);
	fixture_remove(dir);
}

/* ---- writing a seed ---- */

static uint8_t seed[65536];
static size_t seedlen;

/* Appends env, sent by peer (an index, | FIXTURE_ROUTER) with cluster id
 * and epoch as a node of the cluster sends them. */
static void add(uint8_t peer, Certsync__Envelope *env, bool cluster, uint64_t epoch)
{
	size_t len;

	if (cluster)
		env->cluster_id = (ProtobufCBinaryData){sizeof(fixture_cluster_id),
		                                        (uint8_t *)fixture_cluster_id};
	env->epoch = epoch;
	len = certsync__envelope__get_packed_size(env);
	if (len > 0xffff || seedlen + 3 + len > sizeof(seed))
		fuzz_die("a seed", "too long");
	seed[seedlen++] = peer;
	seed[seedlen++] = (uint8_t)(len >> 8);
	seed[seedlen++] = (uint8_t)len;
	seedlen += certsync__envelope__pack(env, seed + seedlen);
}

static void write_seed(const char *dir, const char *name)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(seed, 1, seedlen, f) != seedlen || fclose(f) != 0)
		fuzz_die(path, "cannot write");
	seedlen = 0;
}

/* ---- messages ---- */

static Certsync__Position pos13 = {PROTOBUF_C_MESSAGE_INIT(&certsync__position__descriptor), 1, 3};
static Certsync__Position pos11 = {PROTOBUF_C_MESSAGE_INIT(&certsync__position__descriptor), 1, 1};
static Certsync__EpochStart epoch1 = {PROTOBUF_C_MESSAGE_INIT(&certsync__epoch_start__descriptor),
                                      1, 1};
static Certsync__EpochStart *history[] = {&epoch1};

/* A beat: the primary's (leading, at seq 3) or a follower's. */
static void beat(uint8_t peer, Certsync__Role role, bool leading, Certsync__Position *applied,
                 uint64_t session, bool cluster, uint64_t epoch)
{
	Certsync__Envelope env = CERTSYNC__ENVELOPE__INIT;
	Certsync__Beat b = CERTSYNC__BEAT__INIT;
	Certsync__NodeView view = CERTSYNC__NODE_VIEW__INIT, *views[] = {&view};

	b.role = role;
	b.leading = leading;
	b.applied = applied;
	b.history = history;
	b.n_history = 1;
	b.session = session;
	b.refusal = "";
	if (applied == &pos13)
		b.digest = (ProtobufCBinaryData){CS_DIGEST_LEN, primary.digest};
	if (leading) {
		view.name = "backup";
		view.reachable = true;
		view.applied = &pos11;
		view.digest = (ProtobufCBinaryData){CS_DIGEST_LEN, primary.digest};
		b.cluster = views;
		b.n_cluster = 1;
	}
	env.body_case = CERTSYNC__ENVELOPE__BODY_BEAT;
	env.beat = &b;
	add(peer, &env, cluster, epoch);
}

static void welcome(bool snapshot)
{
	Certsync__Envelope env = CERTSYNC__ENVELOPE__INIT;
	Certsync__Welcome w = CERTSYNC__WELCOME__INIT;

	w.session = FIXTURE_SESSION;
	w.kdf = primary.kdf;
	w.fork = snapshot ? 0 : 1;
	w.snapshot = snapshot;
	env.body_case = CERTSYNC__ENVELOPE__BODY_WELCOME;
	env.welcome = &w;
	add(0, &env, true, 1);
}

static void entries(uint64_t first)
{
	Certsync__Envelope env = CERTSYNC__ENVELOPE__INIT;
	Certsync__Entries e = CERTSYNC__ENTRIES__INIT;

	e.session = FIXTURE_SESSION;
	e.first = first;
	e.entries = &primary.entries[first];
	e.n_entries = 4 - first;
	env.body_case = CERTSYNC__ENVELOPE__BODY_ENTRIES;
	env.entries = &e;
	add(0, &env, true, 1);
}

static void snapshot(void)
{
	Certsync__Envelope env = CERTSYNC__ENVELOPE__INIT;
	Certsync__SnapshotChunk c = CERTSYNC__SNAPSHOT_CHUNK__INIT;
	Certsync__SnapshotEnd e = CERTSYNC__SNAPSHOT_END__INIT;

	c.session = FIXTURE_SESSION;
	c.pairs = primary.pp;
	c.n_pairs = primary.npairs;
	env.body_case = CERTSYNC__ENVELOPE__BODY_CHUNK;
	env.chunk = &c;
	add(0, &env, true, 1);
	e.session = FIXTURE_SESSION;
	e.applied = &pos13;
	e.digest = (ProtobufCBinaryData){CS_DIGEST_LEN, primary.digest};
	e.history = history;
	e.n_history = 1;
	e.chunks = 1;
	env.body_case = CERTSYNC__ENVELOPE__BODY_END;
	env.end = &e;
	add(0, &env, true, 1);
}

static void refusal(uint8_t peer, const char *reason)
{
	Certsync__Envelope env = CERTSYNC__ENVELOPE__INIT;
	Certsync__Refusal r = CERTSYNC__REFUSAL__INIT;

	r.reason = (char *)reason;
	env.body_case = CERTSYNC__ENVELOPE__BODY_REFUSAL;
	env.refusal = &r;
	add(peer, &env, true, 1);
}

static void diverged(uint8_t peer)
{
	Certsync__Envelope env = CERTSYNC__ENVELOPE__INIT;
	Certsync__Diverged d = CERTSYNC__DIVERGED__INIT;

	d.entries = &primary.entries[2];
	d.n_entries = 2;
	env.body_case = CERTSYNC__ENVELOPE__BODY_DIVERGED;
	env.diverged = &d;
	add(peer, &env, true, 1);
}

int main(int argc, char **argv)
{
	const char *fdir = argc == 3 ? argv[1] : NULL, *ldir = argc == 3 ? argv[2] : NULL;
	Certsync__Position ahead = {PROTOBUF_C_MESSAGE_INIT(&certsync__position__descriptor), 1, 9};
	const uint8_t router = FIXTURE_ROUTER, from_primary = 0, from_backup = 1, from_traffic = 2;

	if (fdir == NULL) {
		fputs("usage: fuzz_repl_seeds FOLLOWER_DIR LEADER_DIR\n", stderr);
		return 2;
	}
	fixture_init();
	read_primary();

	/* to the follower, from the primary it follows */
	beat(from_primary, CERTSYNC__ROLE__ROLE_PRIMARY, true, &pos13, 0, true, 1);
	welcome(false);
	entries(2);
	write_seed(fdir, "stream-entries");
	beat(from_primary, CERTSYNC__ROLE__ROLE_PRIMARY, true, &pos13, 0, true, 1);
	welcome(true);
	snapshot();
	write_seed(fdir, "snapshot");
	beat(from_primary, CERTSYNC__ROLE__ROLE_PRIMARY, true, &pos13, 0, true, 1);
	refusal(from_primary, "it belongs to another cluster than this primary's");
	write_seed(fdir, "refused");
	beat(from_primary, CERTSYNC__ROLE__ROLE_PRIMARY, true, &pos13, 0, true, 2);
	welcome(false);
	write_seed(fdir, "higher-epoch");
	beat(from_backup | router, CERTSYNC__ROLE__ROLE_BACKUP, false, &pos11, 0, true, 1);
	beat(from_traffic | router, CERTSYNC__ROLE__ROLE_TRAFFIC, false, &pos11, 0, true, 1);
	write_seed(fdir, "peers-beats");

	/* to the primary, from its followers */
	beat(from_backup | router, CERTSYNC__ROLE__ROLE_BACKUP, false, &pos11, 7, true, 1);
	write_seed(ldir, "follower-behind");
	beat(from_backup | router, CERTSYNC__ROLE__ROLE_BACKUP, false, &ahead, 7, true, 1);
	write_seed(ldir, "follower-forked");
	beat(from_traffic | router, CERTSYNC__ROLE__ROLE_TRAFFIC, false, NULL, 9, false, 0);
	write_seed(ldir, "newcomer");
	beat(from_backup | router, CERTSYNC__ROLE__ROLE_BACKUP, false, &pos13, 7, true, 1);
	diverged(from_backup | router);
	write_seed(ldir, "diverged");
	beat(from_primary | router, CERTSYNC__ROLE__ROLE_PRIMARY, true, &pos13, 0, true, 2);
	write_seed(ldir, "higher-epoch");
	beat(from_backup | router, CERTSYNC__ROLE__ROLE_BACKUP, false, &pos11, 7, false, 1);
	refusal(from_backup | router, "cluster passphrase does not match the primary's");
	write_seed(ldir, "refusal-to-primary");
	return 0;
}
