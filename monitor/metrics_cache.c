/* metrics_cache.c — the certificate part of /metrics, rendered once per
 * generation of the certificates (the store's position) and sent by
 * reference until they change or time changes a certificate's readiness.
 * At 10,000 certificates that part is nearly all of /metrics (about 2 MB
 * of text, tens of milliseconds to read and render on the agent's loop);
 * a scrape with nothing changed costs a look at the position.  Used on the
 * agent's loop only. */
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

struct mon_metrics_cache {
	json_t *generation; /* of body; NULL before the first render */
	int64_t stale_at;   /* when time alone changes what body says */
	struct body *body;
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

static int render(mon_metrics_cache *c, const mon_admin_source *src, int64_t now)
{
	json_t *j = src->certificates(src->ctx);
	char *text = NULL;
	size_t len = 0;
	FILE *f = j != NULL ? open_memstream(&text, &len) : NULL;
	struct body *b;
	int64_t stale_at;

	if (f == NULL) {
		json_decref(j);
		return -1;
	}
	stale_at = mon_metrics_certificates(f, json_object_get(j, "certificates"), now);
	fclose(f);
	b = malloc(sizeof(*b) + len);
	if (b == NULL) {
		free(text);
		json_decref(j);
		return -1;
	}
	b->refs = 1;
	b->len = len;
	memcpy(b->text, text, len);
	free(text);
	if (c->body != NULL)
		body_unref(NULL, 0, c->body);
	json_decref(c->generation);
	c->body = b;
	c->generation = json_incref(json_object_get(j, "generation"));
	c->stale_at = stale_at;
	json_decref(j);
	return 0;
}

int mon_metrics_cache_add(mon_metrics_cache *c, const mon_admin_source *src, int64_t now,
                          struct evbuffer *out)
{
	json_t *g = src->generation(src->ctx);
	bool fresh =
	    g != NULL && c->body != NULL && now < c->stale_at && json_equal(g, c->generation);

	json_decref(g);
	if (!fresh && render(c, src, now) < 0)
		return -1;
	c->body->refs++;
	if (evbuffer_add_reference(out, c->body->text, c->body->len, body_unref, c->body) < 0) {
		c->body->refs--;
		return -1;
	}
	return 0;
}
