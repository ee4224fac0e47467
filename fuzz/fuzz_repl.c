/* fuzz_repl.c — libFuzzer targets for replication messages, built twice:
 *
 * fuzz_repl_follower — as a follower receives them: wire_decode
 *   (replication/wire.c) turns each message's bytes into an envelope, and
 *   the follower's checks and state machine (repl.c, follow.c) take it:
 *   beats, welcomes, entries applied to the store, snapshots loaded into
 *   it, refusals.  The node is a backup at seq 1 of epoch 1 (the cluster
 *   settings).
 * fuzz_repl_leader (FUZZ_LEAD) — as the primary receives them: followers'
 *   beats (catch-up, fork search, snapshots), diverged entries written to
 *   the store, higher epochs that make it step down, messages of other
 *   clusters.  The node is the primary leading epoch 1 at seq 3; its
 *   answers go nowhere, since no peer is connected.
 *
 * Each input runs against a fresh copy of the node's store in a temporary
 * folder, with replication built as repl_start builds it but without
 * sockets or thread; repl_fixture.h gives the peers and the input format
 * (which peer sent each message, and over which link).  The seeds, from
 * fuzz_repl_seeds, follow the primary through a session that streams
 * entries and one that loads a snapshot, and play followers to the
 * primary. */
#include "repl_fixture.h"

#ifdef FUZZ_LEAD
#define LEAD true
#else
#define LEAD false
#endif

static struct fixture fx;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fixture_init();
	fixture_open(&fx, LEAD);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fixture_run(&fx, data, size);
	return 0;
}
