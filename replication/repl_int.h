/* repl_int.h — the inside of replication/, shared by its files: the state of
 * the replication thread, the peers, and the functions each file offers the
 * others.  Nothing outside replication/ includes it (tests may).
 *
 * Who touches what: fields under "thread" belong to the replication thread
 * alone; fields under "shared" are read and written with mu held, by either
 * thread; the configuration never changes after repl_start. */
#ifndef CS_REPL_INT_H
#define CS_REPL_INT_H

#include <pthread.h>

#include "../records/records.h"
#include "proto/replication.pb-c.h"
#include "proto/store.pb-c.h"
#include "repl.h"

#define MAX_PEERS     64                  /* waiters track peers in a 64-bit mask */
#define MAX_MSG       ((int64_t)64 << 20) /* above the largest control request */
#define BATCH_BYTES   (1u << 20)          /* entries or pairs gathered in one message */
#define WINDOW        4096                /* entries sent to a follower and not acked */
#define BEAT_HISTORY  16                  /* epochs of history a beat carries */
#define REFUSAL_LEN   200
#define CLUSTER_IDLEN 16
/* Epochs grow by one per promotion: a message whose epoch is further than
 * this above the highest this node knows is a lie, not a failover it
 * missed, and is dropped. */
#define EPOCH_JUMP_MAX 1000000
#define LED_HISTORY    8 /* epochs remembered per peer as led by it */
/* Epochs of history a snapshot carries at most: the newest, which is what
 * a fork search compares (beats carry fewer).  A cluster may have led more. */
#define SNAPSHOT_HISTORY 64
/* The diverged table holds at most this many entries, and bytes: the lesser
 * of DIVERGED_MAX_BYTES and an eighth of the store's map. */
#define DIVERGED_MAX_ENTRIES 1000
#define DIVERGED_MAX_BYTES   ((size_t)16 << 20)

typedef struct Certsync__Envelope envelope;

/* What a peer last told us, on either link; published for status. */
struct peer_state {
	int64_t heard; /* monotonic ms of its last valid message; 0 never */
	bool leading;
	uint64_t epoch;
	cs_pos applied;
	uint8_t digest[CS_DIGEST_LEN]; /* at applied */
	bool follows;                  /* it follows us (we lead) */
	char refusal[REFUSAL_LEN];
	/* The leader's word on it, for a peer we have no link to: valid while
	 * relayed_at is recent and the leader is heard. */
	int64_t relayed_at;
	bool relayed_reachable;
	cs_pos relayed_applied;
	uint8_t relayed_digest[CS_DIGEST_LEN];
};

struct peer {
	char *name;
	repl_role role;
	char *endpoint;
	uint8_t pub[REPL_KEY_LEN];
	void *dealer; /* our link to it; only to primary-capable peers */
	struct peer_state s;
	/* its connection to our ROUTER */
	uint8_t rid[256];
	size_t ridlen; /* 0 until it has written to us */
	/* when we lead: its session, how far we sent, when its position moved */
	uint64_t session;
	uint64_t sent;
	int64_t moved;
	int64_t logged; /* when a drop from it was last logged (rate limit) */
	/* epochs it was heard leading (since this process started): the only
	 * ones whose diverged entries it may report */
	uint64_t led[LED_HISTORY];
	size_t nled;
};

/* Messages dropped, by cause; published for status. */
struct counters {
	uint64_t undecodable;   /* not an envelope, or more than one frame */
	uint64_t oversized;     /* over MAX_MSG */
	uint64_t unknown_key;   /* a CURVE key no peer has (refused by ZAP) */
	uint64_t wrong_cluster; /* another cluster's id */
	uint64_t stale_epoch;   /* a primary's message from an epoch we left */
	uint64_t bad_entry;     /* an entry or snapshot the store refused */
	uint64_t unauthed;      /* connections cut: too many not authenticated */
	uint64_t bad_epoch;     /* a traffic node leading, or an epoch too far ahead */
};

/* Follower states (see the table in follow.c). */
enum fstate { F_IDLE, F_WAIT, F_SNAP, F_STREAM, F_REFUSED };

struct waiter {
	struct waiter *next;
	cs_pos pos;
	repl_wait_mode mode;
	int timeout_ms;
	int64_t deadline;
	uint64_t need;    /* peers still to acknowledge (bit = peer index) */
	uint64_t missing; /* peers that did not: down at the start or not in time */
	repl_done_fn done;
	void *arg;
};

/* The store as the thread last read it: beats are built from it while a
 * snapshot holds the write transaction, when no read may start. */
struct local {
	cs_pos applied;
	uint64_t epoch;
	cs_epoch_start *hist;
	size_t nhist;
	uint64_t log_first;
	uint8_t digest[CS_DIGEST_LEN];
	Certsync__KdfParams *kdf; /* NULL until the cluster settings arrive */
};

struct view {
	bool leading;
	bool starting;
	uint64_t epoch;
	cs_pos applied;
	int leader; /* peer index, -1 none, -2 this node */
	enum fstate fstate;
	char refusal[REFUSAL_LEN];
	struct counters cnt;
	struct peer_state *peers;
};

struct repl {
	/* configuration */
	char *name;
	repl_role role;
	uint8_t sec[REPL_KEY_LEN];
	uint8_t pub[REPL_KEY_LEN];
	char *pass; /* sodium_malloc'd; freed once the key is derived */
	size_t passlen;
	int beat_ms;
	int dead_ms;
	struct peer *peers;
	size_t npeers;
	cs_store *st;
	repl_hooks hooks;
	int wake_fd;   /* the agent wakes the thread */
	int notify_fd; /* the thread wakes the agent */
	pthread_t thread;
	void *zctx;

	/* thread */
	void *router;
	void *zap;
	bool leading;
	/* The Binary Star rule: a primary that starts accepts no change until
	 * it has heard every primary-capable peer (one may have been promoted
	 * meanwhile) or the failure timeout has passed; 0 when not starting. */
	int64_t starting_until;
	struct local loc;
	struct {
		enum fstate state;
		struct peer *leader;
		uint64_t session;
		int64_t since; /* when it last heard from the leader in this session */
		cs_txn *snap;  /* the snapshot being loaded */
		uint32_t chunks;
	} f;
	char refusal[REFUSAL_LEN];
	int keycheck; /* the passphrase against the primary's settings: 0 unknown, 1 ok, -1 not */
	/* The key of the primary's settings when they changed (rekey.c):
	 * found at the welcome or when the change arrives, handed to the agent
	 * once the change is applied. */
	int (*find_key)(void *ctx, const struct Certsync__KdfParams *kdf, cs_key **out,
	                cs_err *err);
	void *find_key_ctx;
	cs_key *nextkey;
	struct counters cnt;
	int64_t next_beat;
	int64_t zap_logged;
	struct waiter *waiters;
	/* connections accepted on the replication port within the handshake
	 * interval: the ones that may still be unauthenticated (wire_watch) */
	void *monitor;
	unsigned listen_port;
	struct {
		int fd;
		int64_t at;
	} young[REPL_MAX_UNAUTHENTICATED];
	size_t nyoung;

	/* shared */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	bool pushed; /* the agent committed since the thread last looked */
	struct waiter *incoming;
	struct waiter *finished;
	struct {
		bool pending, done, force;
		int rc;
		cs_err err;
	} promote;
	bool changed;
	cs_pos changed_pos;
	cs_key *newkey;
	struct view view;
};

int64_t repl_now(void);

/* ---- wire.c: sockets, envelopes, ZAP ---- */
int wire_open(repl *r, const char *listen, cs_err *err);
void wire_close(repl *r);
/* Sends env to a peer: through our ROUTER when it is connected to us, else
 * through our link to it.  Never blocks; 0 sent, -1 not. */
int wire_send(repl *r, struct peer *p, envelope *env, bool via_router);
void wire_zap(repl *r);
/* Reads the ROUTER's connection events: a connection accepted while
 * REPL_MAX_UNAUTHENTICATED younger than the handshake interval are open is
 * shut down at once. */
void wire_watch(repl *r);
/* Receives one message from sock (the ROUTER when from is NULL, else the
 * link to from): 0 when none was waiting; 1 with *env the envelope, or NULL
 * when the message was dropped (counted and logged), and *p its sender. */
int wire_recv(repl *r, void *sock, struct peer *from, envelope **env, struct peer **p);
/* The envelope in the bytes of one message from p (its sender, NULL when
 * unknown), or NULL when they are over MAX_MSG or no envelope with a body:
 * the message is dropped, counted and logged. */
envelope *wire_decode(repl *r, struct peer *p, const void *data, size_t len);
/* The configured peer of that name, or NULL. */
struct peer *wire_peer_by_name(repl *r, const char *name);
/* Logs a dropped message, at most once a few seconds per peer. */
void wire_drop(repl *r, struct peer *p, uint64_t *counter, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- lead.c: the primary's side ---- */
uint64_t repl_fork(const cs_epoch_start *a, size_t na, uint64_t alast, const cs_epoch_start *b,
                   size_t nb, uint64_t blast);
void lead_beat(repl *r, struct peer *p, const Certsync__Beat *b);
void lead_push(repl *r);
void lead_tick(repl *r);
void lead_diverged(repl *r, struct peer *p, const Certsync__Diverged *d);
void lead_stop(repl *r);
void waiters_check(repl *r, bool all_expired);

/* ---- follow.c: the follower's side ---- */
const char *follow_state_name(enum fstate s);
void follow_msg(repl *r, struct peer *p, const envelope *env);
void follow_choose(repl *r);
void follow_tick(repl *r);
void follow_stop(repl *r);

/* ---- rekey.c: a change of the cluster passphrase, on a follower ---- */
/* Whether kdf (the primary's settings, or the store's after applying what
 * it sent) names the store's key: 0 when it does, or when it names another
 * and this node's passphrases give it (r->nextkey holds that key); -1 with
 * r->refusal set when none does.  May run Argon2id: never with a write
 * transaction open. */
int rekey_find(repl *r, const Certsync__KdfParams *kdf);
/* After applying into txn (not committed): 0 when the settings in txn name
 * the store's key or r->nextkey; 1 when they name another key, to find
 * with rekey_find once txn is gone (*kdf, to free, holds them); -1 on
 * error. */
int rekey_check(repl *r, cs_txn *txn, Certsync__KdfParams **kdf);
/* After the commit: hands r->nextkey to the agent when the store now
 * names it. */
void rekey_handover(repl *r);

/* ---- repl.c ---- */
/* repl_start without the sockets and the thread: the configuration copied
 * and the store read.  repl_discard frees what it made.  The fuzz targets
 * drive such a repl with repl_on_msg, as the thread would. */
int repl_prepare(repl **out, const repl_config *cfg, cs_store *st, const repl_hooks *hooks,
                 cs_err *err);
void repl_discard(repl *r);
/* A message from p: through our ROUTER (router) or our link to p. */
void repl_on_msg(repl *r, struct peer *p, const envelope *env, bool router);
/* Rereads the store into r->loc; -1 logged. */
int local_reload(repl *r);
/* Wakes the agent for repl_dispatch; announce_changed also tells it the
 * store moved to r->loc.applied. */
void notify_agent(repl *r);
void announce_changed(repl *r);

/* ---- beat.c ---- */
/* Builds and sends our beat to p (session when we follow it). */
void send_beat(repl *r, struct peer *p, bool via_router);
/* What p's beat says of p (and, from the leader, of the cluster). */
void repl_on_beat(repl *r, struct peer *p, const envelope *env, bool router);
/* Sends our beat to every peer, on every link we have to it. */
void repl_beat_all(repl *r);
/* Whether p was heard within the failure timeout. */
bool repl_heard_recently(const repl *r, const struct peer *p);

/* ---- role.c ---- */
/* What moves the role state machine. */
enum repl_event {
	REPL_EV_PROMOTE, /* the operator's promote */
	REPL_EV_FORCE,   /* promote --force */
	REPL_EV_HIGHER,  /* a peer leads a higher epoch */
};
/* Acts on ev in the current role (epoch: REPL_EV_HIGHER's); -1 with err
 * when the act is refused or fails. */
int repl_role_event(repl *r, enum repl_event ev, uint64_t epoch, cs_err *err);
/* A peer leads a higher epoch: step down, persist it. */
void repl_higher_epoch(repl *r, uint64_t epoch);

#endif
