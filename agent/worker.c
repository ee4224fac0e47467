/* worker.c — one thread that runs slow jobs off the event loop (worker.h).
 * Finished jobs go back to the loop through a pipe the loop watches, so
 * their done callbacks run between two requests like any other event. */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/crypto.h>

struct job {
	struct job *next;
	cs_work_fn work;
	cs_work_done_fn done;
	void *arg;
};

struct cs_worker {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct job *todo, *finished; /* FIFO queues, under lock */
	atomic_bool stop;
	int pipe[2]; /* the thread writes a byte per finished job */
	struct event *ev;
};

static void push(struct job **q, struct job *j)
{
	j->next = NULL;
	while (*q != NULL)
		q = &(*q)->next;
	*q = j;
}

static void *run(void *arg)
{
	cs_worker *w = arg;
	struct job *j;

	pthread_setname_np(pthread_self(), "cs-worker"); /* top -H, perf, gdb */
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (w->todo == NULL && !atomic_load(&w->stop))
			pthread_cond_wait(&w->wake, &w->lock);
		if (atomic_load(&w->stop))
			break;
		j = w->todo;
		w->todo = j->next;
		pthread_mutex_unlock(&w->lock);
		j->work(j->arg, &w->stop);
		pthread_mutex_lock(&w->lock);
		push(&w->finished, j);
		/* The pipe holds far more bytes than jobs are ever queued. */
		while (write(w->pipe[1], "", 1) < 0 && errno == EINTR)
			;
	}
	pthread_mutex_unlock(&w->lock);
	OPENSSL_thread_stop(); /* the decoders' error queue is this thread's */
	return NULL;
}

/* Answers each job of list: done on the loop, or cancelled at stop. */
static void finish_all(struct job *list, bool cancelled)
{
	struct job *j;

	while ((j = list) != NULL) {
		list = j->next;
		j->done(j->arg, cancelled);
		free(j);
	}
}

static void deliver(evutil_socket_t fd, short what, void *arg)
{
	cs_worker *w = arg;
	struct job *list;
	char buf[64];

	(void)what;
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	pthread_mutex_lock(&w->lock);
	list = w->finished;
	w->finished = NULL;
	pthread_mutex_unlock(&w->lock);
	finish_all(list, false);
}

/* Undoes cs_worker_start, whatever part of it ran. */
static void destroy(cs_worker *w)
{
	if (w->ev != NULL)
		event_free(w->ev);
	close(w->pipe[0]);
	close(w->pipe[1]);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->wake);
	free(w);
}

int cs_worker_start(cs_worker **out, struct event_base *base, cs_err *err)
{
	cs_worker *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	w->pipe[0] = w->pipe[1] = -1;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->wake, NULL);
	if (pipe2(w->pipe, O_CLOEXEC | O_NONBLOCK) < 0 ||
	    (w->ev = event_new(base, w->pipe[0], EV_READ | EV_PERSIST, deliver, w)) == NULL ||
	    event_add(w->ev, NULL) < 0 || pthread_create(&w->thread, NULL, run, w) != 0) {
		destroy(w);
		return cs_fail(err, CS_EIO, "cannot start the worker thread");
	}
	*out = w;
	return 0;
}

int cs_worker_submit(cs_worker *w, cs_work_fn work, cs_work_done_fn done, void *arg)
{
	struct job *j = calloc(1, sizeof(*j));

	if (j == NULL)
		return -1;
	j->work = work;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&w->lock);
	push(&w->todo, j);
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
	return 0;
}

void cs_worker_stop(cs_worker *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->lock);
	atomic_store(&w->stop, true);
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	finish_all(w->finished, true);
	finish_all(w->todo, true);
	destroy(w);
}
