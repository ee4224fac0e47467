/* metrics_cache.c — the certificate part of /metrics, rendered once per
 * generation of the certificates (the store's position) and sent by
 * reference until they change or time changes a certificate's readiness.
 * At 10,000 certificates that part is nearly all of /metrics (about 6 MB
 * of text and a fifth of a second to read and render), so it is rendered
 * off the agent's loop, once for every scrape that waits for it; a scrape
 * with nothing changed costs a look at the position.  The cache itself is
 * used on the loop only. */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "monitor_int.h"

/* Rendered text, held by the cache and by each reply still sending it. */
struct body {
	unsigned refs;
	size_t len;
	char text[];
};

struct waiter {
	void (*ready)(void *arg, bool ok);
	void *arg;
	struct waiter *next;
};

/* A render: filled off the loop, installed on it. */
struct render {
	mon_metrics_cache *c;
	mon_admin_source src;
	int64_t now;
	json_t *generation;
	int64_t stale_at;
	struct body *body;
};

struct mon_metrics_cache {
	json_t *generation; /* of body; NULL before the first render */
	int64_t stale_at;   /* when time alone changes what body says */
	struct body *body;
	bool rendering;
	struct waiter *waiters;
};

static void body_unref(const void *data, size_t len, void *arg)
{
	struct body *b = arg;

	(void)data;
	(void)len;
	if (--b->refs == 0)
		free(b);
}

mon_metrics_cache *mon_metrics_cache_new(void)
{
	return calloc(1, sizeof(mon_metrics_cache));
}

void mon_metrics_cache_free(mon_metrics_cache *c)
{
	if (c == NULL)
		return;
	if (c->body != NULL)
		body_unref(NULL, 0, c->body);
	json_decref(c->generation);
	free(c);
}

/* Off the loop: reads the certificates and renders them. */
static void render_work(void *arg, const atomic_bool *stop)
{
	struct render *r = arg;
	json_t *j = r->src.certificates(r->src.ctx);
	char *text = NULL;
	size_t len = 0;
	FILE *f = j != NULL ? open_memstream(&text, &len) : NULL;

	(void)stop;
	if (f != NULL) {
		r->stale_at =
		    mon_metrics_certificates(f, json_object_get(j, "certificates"), r->now);
		fclose(f);
		r->body = malloc(sizeof(*r->body) + len);
	}
	if (r->body != NULL) {
		r->body->refs = 1;
		r->body->len = len;
		memcpy(r->body->text, text, len);
		r->generation = json_incref(json_object_get(j, "generation"));
	}
	free(text);
	json_decref(j);
}

/* On the loop: installs the render and answers every scrape waiting. */
static void render_done(void *arg, bool cancelled)
{
	struct render *r = arg;
	mon_metrics_cache *c = r->c;
	bool ok = !cancelled && r->body != NULL;
	struct waiter *w = c->waiters;

	c->rendering = false;
	c->waiters = NULL;
	if (ok) {
		if (c->body != NULL)
			body_unref(NULL, 0, c->body);
		json_decref(c->generation);
		c->body = r->body;
		c->generation = r->generation;
		c->stale_at = r->stale_at;
	} else {
		free(r->body);
		json_decref(r->generation);
	}
	free(r);
	while (w != NULL) {
		struct waiter *next = w->next;

		w->ready(w->arg, ok);
		free(w);
		w = next;
	}
}

int mon_metrics_cache_when_ready(mon_metrics_cache *c, const mon_admin_source *src, int64_t now,
                                 void (*ready)(void *arg, bool ok), void *arg)
{
	static const atomic_bool keep_going = false;
	json_t *g = src->generation(src->ctx);
	bool fresh =
	    g != NULL && c->body != NULL && now < c->stale_at && json_equal(g, c->generation);
	struct waiter *w;
	struct render *r;

	json_decref(g);
	if (fresh) {
		ready(arg, true);
		return 0;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return -1;
	*w = (struct waiter){ready, arg, c->waiters};
	if (c->rendering) {
		c->waiters = w;
		return 0;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		free(w);
		return -1;
	}
	c->waiters = w;
	c->rendering = true;
	*r = (struct render){.c = c, .src = *src, .now = now};
	if (src->offload(src->ctx, render_work, render_done, r) < 0) {
		render_work(r, &keep_going);
		render_done(r, false);
	}
	return 0;
}

int mon_metrics_cache_add(mon_metrics_cache *c, struct evbuffer *out)
{
	c->body->refs++;
	if (evbuffer_add_reference(out, c->body->text, c->body->len, body_unref, c->body) < 0) {
		c->body->refs--;
		return -1;
	}
	return 0;
}
