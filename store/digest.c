/* digest.c — the store digest: the XOR over every replicated (table, key,
 * value) of a keyed BLAKE2b-256 hash, kept up to date by every put and
 * delete, and recomputed from scratch for `status --check` (see store.h). */
#include "store.h"

#include <string.h>

#include <sodium.h>

#include "store_int.h"

/* The digest's BLAKE2b key is the hash of this public label: it only makes the
 * hash one of certsync's own; nothing about it is secret. */
#define DIGEST_LABEL "certsync store digest v1"

void st_digest_key(cs_store *st)
{
	crypto_generichash(st->dkey, sizeof(st->dkey), (const unsigned char *)DIGEST_LABEL,
	                   sizeof(DIGEST_LABEL) - 1, NULL, 0);
}

static void put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

void st_pair_hash(const cs_store *st, cs_table t, const void *key, size_t klen, const void *val,
                  size_t vlen, uint8_t out[CS_DIGEST_LEN])
{
	crypto_generichash_state s;
	uint8_t tb = (uint8_t)t;
	uint8_t len[4];

	crypto_generichash_init(&s, st->dkey, sizeof(st->dkey), CS_DIGEST_LEN);
	crypto_generichash_update(&s, &tb, 1);
	put_be32(len, (uint32_t)klen);
	crypto_generichash_update(&s, len, sizeof(len));
	crypto_generichash_update(&s, key, klen);
	put_be32(len, (uint32_t)vlen);
	crypto_generichash_update(&s, len, sizeof(len));
	crypto_generichash_update(&s, val, vlen);
	crypto_generichash_final(&s, out, CS_DIGEST_LEN);
}

void st_xor_into(uint8_t acc[CS_DIGEST_LEN], const uint8_t h[CS_DIGEST_LEN])
{
	for (int i = 0; i < CS_DIGEST_LEN; i++)
		acc[i] ^= h[i];
}

void cs_txn_digest(cs_txn *txn, uint8_t out[CS_DIGEST_LEN])
{
	memcpy(out, txn->digest, CS_DIGEST_LEN);
}

struct recompute {
	const cs_store *st;
	cs_table t;
	uint8_t acc[CS_DIGEST_LEN];
};

static int recompute_pair(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct recompute *r = ctx;
	uint8_t h[CS_DIGEST_LEN];

	st_pair_hash(r->st, r->t, key, klen, val, vlen, h);
	st_xor_into(r->acc, h);
	return 0;
}

int cs_txn_digest_recompute(cs_txn *txn, uint8_t out[CS_DIGEST_LEN], cs_err *err)
{
	struct recompute r = {.st = txn->st};

	for (int t = 0; t < CS_TBL_NREPL; t++) {
		r.t = (cs_table)t;
		if (cs_txn_foreach(txn, r.t, recompute_pair, &r, err) != 0)
			return -1;
	}
	memcpy(out, r.acc, CS_DIGEST_LEN);
	return 0;
}
