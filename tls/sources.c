/* sources.c — connections per source address, shared by the workers, so
 * that one address cannot take every connection of the endpoint.
 *
 * An open-addressing table (linear probing, backward-shift deletion) under
 * one mutex, taken twice per connection (accept and close).  It holds an
 * entry per address with open connections, never more than the endpoint's
 * connection cap plus one per worker in flight, so it is sized once. */
#include "tls_int.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct src_slot {
	uint8_t key[TLS_SRC_KEY_LEN];
	uint32_t count; /* 0: empty */
};

struct tls_sources {
	pthread_mutex_t lock;
	struct src_slot *slots;
	size_t mask;
	uint32_t max;
};

tls_sources *tls_sources_new(uint32_t max_per_source, size_t max_conns)
{
	tls_sources *s = calloc(1, sizeof(*s));
	size_t cap = 64;

	while (cap < 2 * (max_conns + MAX_WORKERS_IN_FLIGHT))
		cap *= 2;
	if (s == NULL || (s->slots = calloc(cap, sizeof(*s->slots))) == NULL) {
		free(s);
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	s->mask = cap - 1;
	s->max = max_per_source;
	return s;
}

void tls_sources_set_max(tls_sources *s, uint32_t max_per_source)
{
	pthread_mutex_lock(&s->lock);
	s->max = max_per_source;
	pthread_mutex_unlock(&s->lock);
}

void tls_sources_free(tls_sources *s)
{
	if (s == NULL)
		return;
	pthread_mutex_destroy(&s->lock);
	free(s->slots);
	free(s);
}

void tls_source_key(const struct sockaddr *sa, uint8_t key[TLS_SRC_KEY_LEN])
{
	memset(key, 0, TLS_SRC_KEY_LEN);
	if (sa->sa_family == AF_INET) {
		key[0] = 4;
		memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		/* One IPv6 host has a /64 to itself: it counts as one source. */
		key[0] = 6;
		memcpy(key + 1, &((const struct sockaddr_in6 *)sa)->sin6_addr, 8);
	}
}

static size_t home(const tls_sources *s, const uint8_t key[TLS_SRC_KEY_LEN])
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < TLS_SRC_KEY_LEN; i++)
		h = (h ^ key[i]) * 1099511628211ULL;
	return (size_t)h & s->mask;
}

bool tls_sources_take(tls_sources *s, const uint8_t key[TLS_SRC_KEY_LEN])
{
	size_t i;
	bool ok = true;

	pthread_mutex_lock(&s->lock);
	for (i = home(s, key); s->slots[i].count != 0; i = (i + 1) & s->mask)
		if (memcmp(s->slots[i].key, key, TLS_SRC_KEY_LEN) == 0)
			break;
	if (s->slots[i].count == 0)
		memcpy(s->slots[i].key, key, TLS_SRC_KEY_LEN);
	if (s->slots[i].count >= s->max)
		ok = false;
	else
		s->slots[i].count++;
	pthread_mutex_unlock(&s->lock);
	return ok;
}

void tls_sources_release(tls_sources *s, const uint8_t key[TLS_SRC_KEY_LEN])
{
	size_t i, j, k;

	pthread_mutex_lock(&s->lock);
	for (i = home(s, key); s->slots[i].count != 0; i = (i + 1) & s->mask)
		if (memcmp(s->slots[i].key, key, TLS_SRC_KEY_LEN) == 0)
			break;
	if (s->slots[i].count > 1) {
		s->slots[i].count--;
	} else if (s->slots[i].count == 1) {
		/* Backward shift: later entries of the run move up so that no
		 * lookup stops early at the hole. */
		s->slots[i].count = 0;
		for (j = (i + 1) & s->mask; s->slots[j].count != 0; j = (j + 1) & s->mask) {
			k = home(s, s->slots[j].key);
			if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
				s->slots[i] = s->slots[j];
				s->slots[j].count = 0;
				i = j;
			}
		}
	}
	pthread_mutex_unlock(&s->lock);
}
