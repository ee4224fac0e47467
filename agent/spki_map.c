/* spki_map.c — open addressing with linear probing; the hashes are SHA-256
 * outputs, so their first bytes are already uniform. */
#include "spki_map.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct spki_slot {
	uint8_t hash[32];
	size_t pos;
	bool used;
};

static size_t home(const uint8_t hash[32], size_t cap)
{
	uint64_t h;

	memcpy(&h, hash, sizeof(h));
	return (size_t)(h & (cap - 1));
}

static void put(struct spki_slot *slot, size_t cap, const uint8_t hash[32], size_t pos)
{
	size_t i = home(hash, cap);

	while (slot[i].used)
		i = (i + 1) & (cap - 1);
	memcpy(slot[i].hash, hash, 32);
	slot[i].pos = pos;
	slot[i].used = true;
}

static int grow(spki_map *m)
{
	size_t cap = m->cap ? 2 * m->cap : 256;
	struct spki_slot *slot = calloc(cap, sizeof(*slot));

	if (slot == NULL)
		return -1;
	for (size_t i = 0; i < m->cap; i++)
		if (m->slot[i].used)
			put(slot, cap, m->slot[i].hash, m->slot[i].pos);
	free(m->slot);
	m->slot = slot;
	m->cap = cap;
	return 0;
}

int spki_map_add(spki_map *m, const uint8_t hash[32], size_t pos)
{
	if (2 * (m->n + 1) > m->cap && grow(m) < 0)
		return -1;
	put(m->slot, m->cap, hash, pos);
	m->n++;
	return 0;
}

size_t spki_map_find(const spki_map *m, const uint8_t hash[32], size_t *out, size_t max)
{
	size_t n = 0;

	if (m->cap == 0)
		return 0;
	for (size_t i = home(hash, m->cap); m->slot[i].used; i = (i + 1) & (m->cap - 1)) {
		if (memcmp(m->slot[i].hash, hash, 32) != 0)
			continue;
		if (n < max) {
			/* in the order they were added (positions grow with it),
			 * whatever a wrap-around or a rehash did to the run */
			size_t j = n;

			while (j > 0 && out[j - 1] > m->slot[i].pos) {
				out[j] = out[j - 1];
				j--;
			}
			out[j] = m->slot[i].pos;
		}
		n++;
	}
	return n;
}

void spki_map_free(spki_map *m)
{
	free(m->slot);
	*m = (spki_map){0};
}
