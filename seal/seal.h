/* seal.h — the cluster key and the sealing of private keys, the whole API
 * of the seal/ module.  The store never sees a key: it holds sealed bytes.
 *
 * The cluster key is 32 bytes derived from the cluster passphrase with
 * Argon2id (crypto_pwhash) and the cluster's salt; it lives in
 * sodium_malloc'd, locked, read-only memory.  A private key is sealed with
 * XChaCha20-Poly1305 under it, a fresh random nonce each time and the owning
 * record's id as associated data, so a sealed key cannot be moved to another
 * record.  Sealed form: 24-byte nonce || ciphertext || 16-byte tag. */
#ifndef CS_SEAL_H
#define CS_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"

#define CS_SALT_LEN      16 /* crypto_pwhash_SALTBYTES */
#define CS_KEYCHECK_LEN  32
#define CS_SEAL_OVERHEAD (24 + 16)

typedef struct cs_key cs_key;

/* Must run before any other function here (wraps sodium_init). */
int cs_seal_init(cs_err *err);

/* The KDF limits new clusters use: Argon2id MODERATE. */
void cs_kdf_default_limits(uint64_t *opslimit, uint64_t *memlimit);
/* Fills salt with random bytes. */
void cs_kdf_new_salt(uint8_t salt[CS_SALT_LEN]);

/* Derives the cluster key.  Refuses limits below INTERACTIVE (a tampered
 * settings record must not weaken the key). */
CS_MUST_CHECK int cs_key_derive(cs_key **out, const char *pass, size_t passlen,
                                const uint8_t salt[CS_SALT_LEN], uint64_t opslimit,
                                uint64_t memlimit, cs_err *err);
void cs_key_free(cs_key *key);

/* A value that is equal for equal keys and reveals nothing about the key. */
void cs_key_check(const cs_key *key, uint8_t out[CS_KEYCHECK_LEN]);

/* Seals plain; *sealed is malloc'd (free with free), plain is not touched. */
int cs_seal(const cs_key *key, const void *plain, size_t plen, const void *ad, size_t adlen,
            uint8_t **sealed, size_t *slen, cs_err *err);

/* Opens a sealed key; *plain is sodium_malloc'd and must be released with
 * cs_secret_free, which wipes it.  CS_ECRYPTO when the seal does not open. */
CS_MUST_CHECK int cs_unseal(const cs_key *key, const void *sealed, size_t slen, const void *ad,
                            size_t adlen, uint8_t **plain, size_t *plen, cs_err *err);
void cs_secret_free(void *secret);

/* Derives a 32-byte subkey for another purpose (the TLS ticket keys) with
 * crypto_kdf: context is exactly 8 characters.  The store digest is not one
 * of them: its key is a public constant (store/store.c), as every node must
 * compute the same digest, also before it holds the cluster key. */
void cs_key_subkey(const cs_key *key, uint64_t id, const char context[8], uint8_t out[32]);

#endif
