/* repl.h — replication of the store between the nodes of a cluster over
 * ZeroMQ: the whole API of replication/.
 *
 * The primary stamps each change with (epoch, seq) and pushes the log to
 * every follower; a follower applies entries in order and acknowledges its
 * position; one that is too far behind, or whose log forked, gets a snapshot
 * (the ZeroMQ Guide's Clone pattern).  Promotion follows Binary Star: no
 * promotion while the primary is heard, unless forced; the new primary
 * takes a new epoch, and a primary that hears a higher epoch steps down.
 * Every link is CURVE-encrypted and a ZAP handler admits only the configured
 * peers' keys.  Sealed keys travel as stored: nothing here unseals.
 *
 * Threads: repl_start runs the replication in a thread of its own that owns
 * every ZeroMQ socket.  The functions here are called from one other thread,
 * the agent's, except repl_promote, which may wait and so runs on a worker
 * (it touches only what r->mu guards); the callbacks (hooks, repl_wait's
 * done) run in the agent's thread, from repl_dispatch, which the agent
 * calls when repl_fd is readable.
 * The replication thread writes the store only on a follower (applying) and
 * for epoch changes; LMDB serializes it with the agent's writes. */
#ifndef CS_REPL_H
#define CS_REPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "../common/err.h"
#include "../common/role.h"
#include "../seal/seal.h"
#include "../store/store.h"

#define REPL_KEY_LEN 32 /* a CURVE public or secret key */
#define REPL_Z85_LEN 40 /* the same in Z85 text, without the NUL */
/* Connections to the replication port that have not finished the CURVE
 * handshake, at most (more are cut at once), and how long one may take. */
#define REPL_MAX_UNAUTHENTICATED 32
#define REPL_HANDSHAKE_MS        2000

struct Certsync__KdfParams; /* proto/records.proto */

typedef struct repl_peer {
	const char *name;
	cs_role role;
	const char *endpoint; /* its replication socket; needed for primary and backup */
	uint8_t public_key[REPL_KEY_LEN];
} repl_peer;

typedef struct repl_config {
	const char *name;
	cs_role role;
	const char *listen; /* ZeroMQ endpoint to bind, "tcp://0.0.0.0:7700" */
	uint8_t public_key[REPL_KEY_LEN];
	uint8_t secret_key[REPL_KEY_LEN];
	const repl_peer *peers;
	size_t npeers;
	/* The cluster passphrase: a node whose store has no cluster settings yet
	 * derives the key from it to check the primary's key-check value. */
	const char *pass;
	size_t passlen;
	/* Finds the key of the primary's cluster settings when they name
	 * another key than the store's (the passphrase was changed with
	 * `cluster rekey`) among this node's passphrases.  Runs on the
	 * replication thread; 0 and *out, or -1 with err saying why.  NULL:
	 * such a change is refused. */
	int (*find_key)(void *ctx, const struct Certsync__KdfParams *kdf, cs_key **out,
	                cs_err *err);
	void *find_key_ctx;
	int heartbeat_ms; /* 0 for 1000 */
	int dead_beats;   /* beats missed before a peer is down; 0 for 3 */
} repl_config;

typedef struct repl_hooks {
	/* Entries or a snapshot were applied: the store is now at pos. */
	void (*changed)(void *ctx, cs_pos pos);
	/* The cluster key, derived by a node that had no cluster settings once
	 * the primary's key-check value matched, or the new key once a change
	 * of the cluster passphrase is applied (the store is already sealed
	 * under it); the callee owns it. */
	void (*key)(void *ctx, cs_key *key);
	void *ctx;
} repl_hooks;

typedef struct repl repl;

/* Copies cfg, binds the replication socket, connects to the primary-capable
 * peers and starts the thread.  Whether this node leads comes from the
 * store: a node that led its current epoch (a promoted backup restarted)
 * leads again; a configured primary whose store never joined a cluster
 * starts leading; everyone else follows. */
int repl_start(repl **out, const repl_config *cfg, cs_store *st, const repl_hooks *hooks,
               cs_err *err);
/* The cluster's membership changed: peers (every member but this node)
 * replaces the peers from now on.  New members' keys are admitted and links
 * to new primary-capable members opened; a peer no longer listed has its key
 * refused and its connection cut.  Returns at once; the replication thread
 * applies it. */
int repl_set_peers(repl *r, const repl_peer *peers, size_t n, cs_err *err);

/* Stops the thread; every pending wait completes first, unconfirmed. */
void repl_stop(repl *r);

/* Readable when repl_dispatch has callbacks to run; never read it. */
int repl_fd(const repl *r);
void repl_dispatch(repl *r);

/* The agent committed a change (on the primary): push it to the followers. */
void repl_committed(repl *r);

typedef enum repl_wait_mode {
	REPL_WAIT_NONE,   /* return at once */
	REPL_WAIT_BACKUP, /* the other primary-capable nodes */
	REPL_WAIT_ALL     /* every peer */
} repl_wait_mode;

int repl_wait_mode_parse(const char *s, repl_wait_mode *out);

/* Calls done(arg, unconfirmed) from repl_dispatch once every node of mode
 * that is up has acknowledged pos, or after timeout_ms: unconfirmed is a
 * JSON array (a new reference for done) of the nodes that did not, and
 * nodes already down are in it without being waited for.  Never calls done
 * before returning. */
typedef void (*repl_done_fn)(void *arg, json_t *unconfirmed);
int repl_wait(repl *r, cs_pos pos, repl_wait_mode mode, int timeout_ms, repl_done_fn done,
              void *arg, cs_err *err);

/* Makes this node the primary: refused on a traffic node, on the primary,
 * and while the primary has been heard within the failure timeout unless
 * force.  The new epoch is on disk before this returns. */
CS_MUST_CHECK int repl_promote(repl *r, bool force, cs_err *err);

/* Whether this node accepts changes now, and the primary's name as this
 * node knows it: 0 and name filled, or 1 when no primary is known. */
bool repl_leading(repl *r);
int repl_leader(repl *r, char *name, size_t len);

/* Role, epoch, leader, refusal, peers (role, reachable, last heard, their
 * position and lag) and the dropped-message counters; a new reference. */
json_t *repl_status(repl *r);

/* True while this primary waits, at start, to hear its primary-capable
 * peers (at most the failure timeout): changes are refused meanwhile. */
bool repl_starting(repl *r);

/* True while this node refuses the cluster (its passphrase does not match
 * the primary's); the reason is in repl_status. */
bool repl_refusing(repl *r);

/* Key pairs: a file of two lines "public = Z85" and "secret = Z85", 0600.
 * repl_keygen writes a new one (refusing to overwrite) and gives the public
 * key in Z85; repl_key_load reads one; repl_key_parse reads a Z85 key. */
int repl_keygen(const char *path, char public_z85[REPL_Z85_LEN + 1], cs_err *err);
int repl_key_load(const char *path, uint8_t pub[REPL_KEY_LEN], uint8_t sec[REPL_KEY_LEN],
                  cs_err *err);
int repl_key_parse(const char *z85, uint8_t key[REPL_KEY_LEN], cs_err *err);

#endif
