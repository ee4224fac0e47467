/* live.c — the snapshots of the peers and of [acme] threads read while the
 * loop replaces them (live.h). */
#include "live.h"

#include <pthread.h>
#include <stdlib.h>

struct cs_live {
	pthread_mutex_t lock; /* guards the two pointers, not what they point to */
	cs_snap *peers;       /* a cs_peers_snap */
	cs_snap *acme;        /* a cs_acme_snap */
	uint64_t acme_gen;    /* the loop's */
};

void cs_snap_drop(cs_snap *s)
{
	if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1)
		s->destroy(s);
}

static cs_snap *take(cs_live *l, cs_snap **slot)
{
	cs_snap *s;

	pthread_mutex_lock(&l->lock);
	s = *slot;
	atomic_fetch_add(&s->refs, 1);
	pthread_mutex_unlock(&l->lock);
	return s;
}

/* The slot's reference moves to s; the old snapshot goes once the last
 * thread holding it drops it. */
static void publish(cs_live *l, cs_snap **slot, cs_snap *s)
{
	cs_snap *old;

	atomic_init(&s->refs, 1);
	pthread_mutex_lock(&l->lock);
	old = *slot;
	*slot = s;
	pthread_mutex_unlock(&l->lock);
	cs_snap_drop(old);
}

static void peers_destroy(cs_snap *s)
{
	cs_peers_snap *p = (cs_peers_snap *)s;

	cs_config_peers_free(p->v, p->n);
	free(p);
}

static void acme_destroy(cs_snap *s)
{
	cs_acme_snap *a = (cs_acme_snap *)s;

	cs_config_acme_free(&a->a);
	free(a);
}

int cs_live_set_peers(cs_live *l, const cs_peer *v, size_t n, cs_err *err)
{
	cs_peers_snap *p = calloc(1, sizeof(*p));

	if (p == NULL || cs_config_peers_copy(v, n, &p->v, err) < 0) {
		free(p);
		return cs_fail(err, CS_EIO, "out of memory");
	}
	p->n = n;
	p->base.destroy = peers_destroy;
	publish(l, &l->peers, &p->base);
	return 0;
}

int cs_live_set_acme(cs_live *l, const cs_acme_config *a, cs_err *err)
{
	cs_acme_snap *s = calloc(1, sizeof(*s));

	if (s == NULL || cs_config_acme_copy(&s->a, a, err) < 0) {
		free(s);
		return cs_fail(err, CS_EIO, "out of memory");
	}
	s->gen = ++l->acme_gen;
	s->base.destroy = acme_destroy;
	publish(l, &l->acme, &s->base);
	return 0;
}

cs_peers_snap *cs_live_peers(cs_live *l)
{
	return (cs_peers_snap *)take(l, &l->peers);
}

cs_acme_snap *cs_live_acme(cs_live *l)
{
	return (cs_acme_snap *)take(l, &l->acme);
}

int cs_live_new(cs_live **out, const cs_config *cfg, cs_err *err)
{
	cs_live *l = calloc(1, sizeof(*l));

	*out = NULL;
	if (l == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	pthread_mutex_init(&l->lock, NULL);
	if (cs_live_set_peers(l, cfg->peers, cfg->npeers, err) < 0 ||
	    cs_live_set_acme(l, &cfg->acme, err) < 0) {
		cs_live_free(l);
		return -1;
	}
	*out = l;
	return 0;
}

void cs_live_free(cs_live *l)
{
	if (l == NULL)
		return;
	cs_snap_drop(l->peers);
	cs_snap_drop(l->acme);
	pthread_mutex_destroy(&l->lock);
	free(l);
}
