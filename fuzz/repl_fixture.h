/* repl_fixture.h — what the replication fuzz targets and their seed
 * generator share: the store a node starts from, a replication instance
 * over it with neither sockets nor thread, and the input format, a sequence
 * of messages as they arrive from the peers. */
#ifndef CS_FUZZ_REPL_FIXTURE_H
#define CS_FUZZ_REPL_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../replication/repl_int.h"

/* The peers of the node under test, in this order: "primary" (a primary),
 * "backup" (a backup), "traffic" (a traffic node).  The node itself is
 * "self", a backup that follows (lead false) or the primary that leads
 * epoch 1 (lead true). */
#define FIXTURE_PEERS 3

/* One message of an input: a byte naming the sender (its low two bits, the
 * peer index; 3 counts as 0) and the link (0x04: it came through our
 * ROUTER, else through our link to that peer), two bytes of length, big
 * endian, and the message; a short last message takes what is left. */
#define FIXTURE_ROUTER 0x04

/* Makes libsodium's random bytes a constant pattern, so a follower's
 * session id is always FIXTURE_SESSION and a crash replays; sets up
 * sodium and quiet logging.  Call first. */
#define FIXTURE_SESSION 0x5a5a5a5a5a5a5a5aull
void fixture_init(void);

/* The cluster id in every fixture store's settings. */
extern const uint8_t fixture_cluster_id[16];

/* Makes a store in a new folder under the temporary directory and returns
 * that folder: the cluster settings (seq 1) and, with lead, two more
 * changes (seqs 2 and 3), all in epoch 1; this node leads epoch 1 with lead,
 * follows it without. */
char *fixture_store(bool lead);
/* Removes a folder fixture_store made, and frees dir. */
void fixture_remove(char *dir);

struct fixture {
	char *template_dir; /* fixture_store's */
	char work_dir[128]; /* a copy of it for one input */
	bool lead;
	cs_store *st;
	repl *r;
	/* Sockets connected to nothing, so the node's answers are built and
	 * packed, then dropped, as for a peer that went away. */
	void *zctx, *router, *dealer;
};

/* fixture_store into f, and the work folder. */
void fixture_open(struct fixture *f, bool lead);
/* Runs one input against a fresh copy of the store. */
void fixture_run(struct fixture *f, const uint8_t *data, size_t size);

#endif
