/* reload.c — the table the workers serve and the reloader that builds the
 * next one from the store after tls_server_changed, off the thread that
 * committed, resting after each build (see server.c) so that a stream of
 * changes takes a bounded share of a core. */
#include "server_int.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../common/log.h"

tls_table *tls_server_table(tls_server *srv)
{
	tls_table *t;

	pthread_mutex_lock(&srv->lock);
	t = srv->table != NULL ? tls_table_ref(srv->table) : NULL;
	pthread_mutex_unlock(&srv->lock);
	return t;
}

static void log_coverage(const tls_table *t, time_t now)
{
	const tls_entry *served = tls_table_select(t, NULL, TLS_CAN_ANY, now);
	char missing[2 * (TLS_NAME_MAX + 2)] = "";

	for (size_t i = 0; i < t->nuncovered; i++) {
		strcat(missing, i > 0 ? ", " : "");
		strcat(missing, t->uncovered[i]);
	}
	if (t->nuncovered == 0)
		cs_info("tls: serving %zu certificate%s, default %.8s", t->nentries,
		        t->nentries == 1 ? "" : "s", served != NULL ? served->id_hex : "(none)");
	else if (t->covered)
		cs_warn("tls: the default certificate does not cover %s; serving %.8s instead",
		        missing, served->id_hex);
	else
		cs_warn("tls: no certificate covers %s; clients without SNI or with an "
		        "unknown name are refused, /healthz answers 503",
		        missing);
}

/* The reload figures change with the table, under one lock, so whoever sees
 * the new table served sees its figures too. */
static void swap_in(tls_server *srv, tls_table *table, const struct timespec *since)
{
	tls_table *old;

	pthread_mutex_lock(&srv->lock);
	old = srv->table;
	srv->table = table;
	if (since != NULL) {
		struct timespec t1;

		clock_gettime(CLOCK_MONOTONIC, &t1);
		srv->reloads++;
		srv->last_reload_ms = (double)(t1.tv_sec - since->tv_sec) * 1e3 +
		                      (double)(t1.tv_nsec - since->tv_nsec) / 1e6;
	}
	pthread_mutex_unlock(&srv->lock);
	log_coverage(table, time(NULL));
	tls_table_free(old);
}

void tls_server_swap(tls_server *srv, tls_table *table)
{
	swap_in(srv, table, NULL);
}

/* Builds from txn with the served table as prev and swaps; the reload
 * figure is the time from since to the swap, measured here, where it
 * happens, so a test or an operator can see how long a change waits to be
 * served without timing it from outside. */
static int reload(tls_server *srv, cs_txn *txn, const cs_key *key, time_t now,
                  const struct timespec *since, cs_err *err)
{
	tls_table *prev, *t;
	int rc;

	prev = tls_server_table(srv);
	rc = tls_table_load(&t, txn, key, srv->node_hostname, srv->site_hostname, prev, now, err);
	tls_table_free(prev);
	if (rc != 0)
		return rc;
	swap_in(srv, t, since);
	return 0;
}

int tls_server_reload(tls_server *srv, cs_txn *txn, const cs_key *key, time_t now, cs_err *err)
{
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	return reload(srv, txn, key, now, &t0, err);
}

static void reload_from_store(tls_server *srv, const cs_key *key, const struct timespec *since)
{
	cs_err err = {0};
	cs_txn *txn;

	if (cs_txn_begin(srv->store, false, &txn, &err) == 0) {
		if (tls_store_key_check(txn, key, &err) == 0)
			reload(srv, txn, key, time(NULL), since, &err);
		cs_txn_abort(txn);
	}
	if (err.code != CS_OK)
		cs_warn("tls: still serving the previous certificates: %s", err.msg);
}

/* t + ns nanoseconds */
static struct timespec ts_add(struct timespec t, int64_t ns)
{
	ns += t.tv_nsec;
	t.tv_sec += (time_t)(ns / 1000000000);
	t.tv_nsec = (long)(ns % 1000000000);
	return t;
}

static int64_t ts_diff_ns(const struct timespec *a, const struct timespec *b)
{
	return (int64_t)(a->tv_sec - b->tv_sec) * 1000000000 + (a->tv_nsec - b->tv_nsec);
}

static void *reloader_main(void *arg)
{
	tls_server *srv = arg;
	struct timespec since, t0, t1, rested;
	const cs_key *key;
	int64_t rest;

	pthread_setname_np(pthread_self(), "cs-tls-reload"); /* top -H, perf, gdb */
	/* On Linux a thread's nice value is its own: only this thread yields,
	 * so a build never delays the commit or the push of the next change.
	 * Failing to lower it changes nothing but timing. */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), RELOADER_NICE) != 0)
		cs_debug("tls: the reloader keeps its priority: %s", strerror(errno));
	pthread_mutex_lock(&srv->lock);
	for (;;) {
		while (!srv->dirty && !srv->stopping)
			pthread_cond_wait(&srv->wake, &srv->lock);
		if (srv->stopping)
			break;
		/* Cleared before the build reads the store: a change
		 * committed from now on sets it again and gets a build of
		 * its own, one for however many arrive meanwhile. */
		srv->dirty = false;
		since = srv->dirty_since;
		key = srv->key;
		pthread_mutex_unlock(&srv->lock);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		reload_from_store(srv, key, &since);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		rest = RELOAD_REST * ts_diff_ns(&t1, &t0);
		rested = ts_add(
		    t1, rest < RELOAD_REST_MAX * 1000000LL ? rest : RELOAD_REST_MAX * 1000000LL);
		pthread_mutex_lock(&srv->lock);
		while (!srv->stopping &&
		       pthread_cond_timedwait(&srv->wake, &srv->lock, &rested) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&srv->lock);
	return NULL;
}

int tls_server_follow(tls_server *srv, cs_store *store, const cs_key *key, cs_err *err)
{
	struct timespec now;
	sigset_t all, old;

	srv->store = store;
	srv->key = key;
	clock_gettime(CLOCK_MONOTONIC, &now);
	reload_from_store(srv, key, &now);
	/* Like the workers, the reloader takes no signals. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	errno = pthread_create(&srv->reloader, NULL, reloader_main, srv);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (errno != 0)
		return cs_fail(err, CS_EIO, "cannot start the TLS reloader: %s", strerror(errno));
	srv->reloading = true;
	return 0;
}

void tls_server_set_key(tls_server *srv, const cs_key *key)
{
	pthread_mutex_lock(&srv->lock);
	srv->key = key;
	pthread_mutex_unlock(&srv->lock);
	tls_server_changed(srv);
}

void tls_server_changed(tls_server *srv)
{
	pthread_mutex_lock(&srv->lock);
	if (!srv->dirty)
		clock_gettime(CLOCK_MONOTONIC, &srv->dirty_since);
	srv->dirty = true;
	pthread_cond_signal(&srv->wake);
	pthread_mutex_unlock(&srv->lock);
}
