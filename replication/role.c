/* role.c — the role state machine (Binary Star): a node follows or leads;
 * a promotion (refused while the primary is heard, unless forced) takes the
 * next epoch, persisted before the epoch's first change, and a higher epoch
 * heard from another node makes a leader step down and follow it. */
#include "repl_int.h"

#include <inttypes.h>

#include "../common/log.h"

static int persist_epoch(repl *r, uint64_t epoch, bool lead, cs_err *err)
{
	cs_txn *txn;

	if (cs_txn_begin(r->st, true, &txn, err) != 0)
		return -1;
	if (cs_txn_set_epoch(txn, epoch, lead, err) != 0) {
		cs_txn_abort(txn);
		return -1;
	}
	if (cs_txn_commit(txn, NULL, NULL, err) != 0)
		return -1;
	return local_reload(r) == 0 ? 0 : cs_fail(err, CS_EIO, "cannot reread the store");
}

/* A traffic node is never promoted, whatever it hears of the primary. */
static int refuse_traffic(const repl *r, cs_err *err)
{
	return r->role == REPL_TRAFFIC
	           ? cs_fail(err, CS_EREFUSED,
	                     "promote refused: %s is a traffic node, and traffic nodes cannot be "
	                     "promoted; promote the backup",
	                     r->name)
	           : 0;
}

static int take_epoch(repl *r, uint64_t unused, cs_err *err)
{
	uint64_t epoch = r->loc.epoch;

	(void)unused;
	if (refuse_traffic(r, err) != 0)
		return -1;
	if (r->loc.kdf == NULL || r->f.state == F_REFUSED)
		return cs_fail(err, CS_EREFUSED, "promote refused: %s %s", r->name,
		               r->f.state == F_REFUSED ? r->refusal
		                                       : "has no cluster settings yet");
	/* Only primary-capable nodes can have led an epoch. */
	for (size_t i = 0; i < r->npeers; i++)
		if (r->peers[i].role != REPL_TRAFFIC && r->peers[i].s.epoch > epoch)
			epoch = r->peers[i].s.epoch;
	if (epoch == UINT64_MAX)
		return cs_fail(err, CS_EREFUSED,
		               "promote refused: epoch %" PRIu64 " is the last one; the cluster "
		               "must be created again",
		               epoch);
	follow_stop(r);
	/* On disk before the first change of the epoch, or a crash right
	 * after could reuse it. */
	if (persist_epoch(r, epoch + 1, true, err) != 0)
		return cs_err_prefix(err, "promote: ");
	r->leading = true;
	r->refusal[0] = '\0';
	cs_warn("repl: %s is the primary now, epoch %" PRIu64 " from seq %" PRIu64, r->name,
	        epoch + 1, r->loc.applied.seq + 1);
	repl_beat_all(r);
	return 0;
}

static int promote(repl *r, uint64_t unused, cs_err *err)
{
	int64_t now = repl_now();

	if (refuse_traffic(r, err) != 0)
		return -1;
	for (size_t i = 0; i < r->npeers; i++) {
		const struct peer *p = &r->peers[i];

		if (p->s.leading && p->s.epoch >= r->loc.epoch && repl_heard_recently(r, p))
			return cs_fail(err, CS_EREFUSED,
			               "promote refused: primary %s was heard %" PRId64
			               " ms ago, within the %d ms failure timeout; stop it first, "
			               "or use --force if it is cut off for good",
			               p->name, now - p->s.heard, r->dead_ms);
	}
	return take_epoch(r, unused, err);
}

static int refuse_leading(repl *r, uint64_t unused, cs_err *err)
{
	(void)unused;
	return cs_fail(err, CS_EEXIST, "%s is already the primary (epoch %" PRIu64 ")", r->name,
	               r->loc.epoch);
}

static int raise_epoch(repl *r, uint64_t epoch, cs_err *err)
{
	follow_stop(r); /* a snapshot in progress holds the write lock */
	return persist_epoch(r, epoch, false, err);
}

static int step_down(repl *r, uint64_t epoch, cs_err *err)
{
	if (raise_epoch(r, epoch, err) != 0)
		return -1;
	r->leading = false;
	lead_stop(r);
	cs_warn("repl: another node leads epoch %" PRIu64 ": %s steps down and follows it", epoch,
	        r->name);
	return 0;
}

enum rstate { R_FOLLOWING, R_LEADING };

static const struct {
	enum rstate state;
	enum repl_event event;
	int (*act)(repl *r, uint64_t epoch, cs_err *err);
} roles[] = {
    {R_FOLLOWING, REPL_EV_PROMOTE, promote},    {R_FOLLOWING, REPL_EV_FORCE, take_epoch},
    {R_FOLLOWING, REPL_EV_HIGHER, raise_epoch}, {R_LEADING, REPL_EV_PROMOTE, refuse_leading},
    {R_LEADING, REPL_EV_FORCE, refuse_leading}, {R_LEADING, REPL_EV_HIGHER, step_down},
};

int repl_role_event(repl *r, enum repl_event ev, uint64_t epoch, cs_err *err)
{
	enum rstate s = r->leading ? R_LEADING : R_FOLLOWING;

	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
		if (roles[i].state == s && roles[i].event == ev)
			return roles[i].act(r, epoch, err);
	return 0;
}

void repl_higher_epoch(repl *r, uint64_t epoch)
{
	cs_err err;

	if (epoch > r->loc.epoch && repl_role_event(r, REPL_EV_HIGHER, epoch, &err) != 0)
		cs_error("repl: cannot move to epoch %" PRIu64 ": %s", epoch, err.msg);
}
