/* spki_map.h — a hash table from a 32-byte hash (a public key's SPKI hash)
 * to the positions of the things that carry it, for `import`: matching
 * 100,000 keys to 100,000 certificates by scanning lists was quadratic.
 * A hash may map to several positions (two records on one key). */
#ifndef CS_AGENT_SPKI_MAP_H
#define CS_AGENT_SPKI_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct spki_map {
	struct spki_slot *slot;
	size_t cap, n;
} spki_map;

/* Adds (hash, pos); -1 when out of memory. */
int spki_map_add(spki_map *m, const uint8_t hash[32], size_t pos);
/* The positions stored under hash, in the order they were added, at most
 * max of them into out; returns how many there are (may exceed max). */
size_t spki_map_find(const spki_map *m, const uint8_t hash[32], size_t *out, size_t max);
void spki_map_free(spki_map *m);

#endif
