/* probe.c — the loop every pre-validation check shares: before the CA is
 * told to validate, ask each node the name may lead the CA to, as the CA
 * will, and wait, bounded, until every one answers; the one that does not is
 * named, so the operator knows which node's replication or listener lags.
 * It stops as soon as the node stops leading (the cancel flag): a node that
 * steps down must not go on preparing what the CA is told. */
#include "acme_int.h"

#include <poll.h>
#include <stdlib.h>
#include <time.h>

#define PROBE_WAIT_DEFAULT 30000
#define PROBE_TRY_MAX      5000 /* one try, so a silent node does not eat the wait */
#define PROBE_NAP          300
#define PROBE_TRY_CANCEL   2000 /* one try while it may be cancelled: a stop is seen in 2 s */

typedef struct endpoint_state {
	bool ready;
	char seen[160]; /* what it answered last */
} endpoint_state;

static bool cancelled(const atomic_bool *cancel)
{
	return cancel != NULL && atomic_load(cancel);
}

int acme_probe_all(const char *what, const char *name, const char *const *endpoints, size_t n,
                   long wait_ms, const atomic_bool *cancel, acme_probe_fn fn, void *arg,
                   acme_err *e)
{
	long wait = wait_ms > 0 ? wait_ms : PROBE_WAIT_DEFAULT;
	long long deadline = cs_mono_ms() + wait;
	long try_max = cancel != NULL ? PROBE_TRY_CANCEL : PROBE_TRY_MAX;
	endpoint_state *st = calloc(n ? n : 1, sizeof(*st));
	size_t left = n;
	int rc = 0;

	if (st == NULL)
		return acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "out of memory");
	for (;;) {
		for (size_t i = 0; i < n && !cancelled(cancel); i++) {
			long long remain = deadline - cs_mono_ms();

			if (st[i].ready || remain <= 0)
				continue;
			st[i].ready =
			    fn(arg, endpoints[i], remain < try_max ? (long)remain : try_max,
			       st[i].seen, sizeof(st[i].seen));
			left -= st[i].ready;
		}
		if (left == 0 || cs_mono_ms() >= deadline || cancelled(cancel))
			break;
		poll(NULL, 0, PROBE_NAP);
	}
	if (left > 0 && cancelled(cancel)) {
		free(st);
		return acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "%s check for %s: cancelled", what,
		                 name);
	}
	for (size_t i = 0; left > 0 && i < n; i++) {
		if (st[i].ready)
			continue;
		rc = acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT,
		               "%s for %s: %s does not answer yet (%s) after %ld ms; %zu of %zu "
		               "endpoints ready",
		               what, name, endpoints[i], st[i].seen[0] ? st[i].seen : "not asked",
		               wait, n - left, n);
		break;
	}
	free(st);
	return rc;
}
