/* seal.c — the cluster key (Argon2id from the passphrase) and the sealing of
 * private keys under it with XChaCha20-Poly1305 (see seal.h). */
#include "seal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_LEN   crypto_aead_xchacha20poly1305_ietf_ABYTES
#define KEY_LEN   crypto_aead_xchacha20poly1305_ietf_KEYBYTES

#define CHECK_LABEL "certsync key check v1"

_Static_assert(CS_SALT_LEN == crypto_pwhash_SALTBYTES, "salt length");
_Static_assert(CS_SEAL_OVERHEAD == NONCE_LEN + TAG_LEN, "seal overhead");
_Static_assert(KEY_LEN == crypto_kdf_KEYBYTES, "subkeys derive from the cluster key");
_Static_assert(KEY_LEN >= crypto_generichash_KEYBYTES_MIN &&
                   KEY_LEN <= crypto_generichash_KEYBYTES_MAX,
               "the key check is keyed with the cluster key");

/* Lives in sodium_malloc'd memory: guard pages, locked, read-only once set. */
struct cs_key {
	uint8_t k[KEY_LEN];
};

int cs_seal_init(cs_err *err)
{
	if (sodium_init() < 0)
		return cs_fail(err, CS_EIO, "libsodium failed to initialise");
	return 0;
}

void cs_kdf_default_limits(uint64_t *opslimit, uint64_t *memlimit)
{
	*opslimit = crypto_pwhash_OPSLIMIT_MODERATE;
	*memlimit = crypto_pwhash_MEMLIMIT_MODERATE;
}

void cs_kdf_new_salt(uint8_t salt[CS_SALT_LEN])
{
	randombytes_buf(salt, CS_SALT_LEN);
}

int cs_key_derive(cs_key **out, const char *pass, size_t passlen, const uint8_t salt[CS_SALT_LEN],
                  uint64_t opslimit, uint64_t memlimit, cs_err *err)
{
	cs_key *key;

	*out = NULL;
	/* The limits come from the replicated settings: below INTERACTIVE a
	 * tampered record could make the key cheap to guess, above MAX it
	 * could make every node spin or run out of memory. */
	if (opslimit < crypto_pwhash_OPSLIMIT_INTERACTIVE ||
	    memlimit < crypto_pwhash_MEMLIMIT_INTERACTIVE)
		return cs_fail(err, CS_EINPUT,
		               "key derivation limits opslimit %llu, memlimit %llu are below the "
		               "minimum %llu, %llu",
		               (unsigned long long)opslimit, (unsigned long long)memlimit,
		               (unsigned long long)crypto_pwhash_OPSLIMIT_INTERACTIVE,
		               (unsigned long long)crypto_pwhash_MEMLIMIT_INTERACTIVE);
	if (opslimit > crypto_pwhash_OPSLIMIT_MAX || memlimit > crypto_pwhash_MEMLIMIT_MAX)
		return cs_fail(err, CS_EINPUT,
		               "key derivation limits opslimit %llu, memlimit %llu are above the "
		               "maximum",
		               (unsigned long long)opslimit, (unsigned long long)memlimit);
	if (pass == NULL && passlen > 0)
		return cs_fail(err, CS_EINPUT, "no passphrase");
	if (passlen > crypto_pwhash_PASSWD_MAX)
		return cs_fail(err, CS_EINPUT, "the passphrase is too long");

	key = sodium_malloc(sizeof(*key));
	if (key == NULL)
		return cs_fail(err, CS_EIO, "not enough memory for the cluster key");
	if (crypto_pwhash(key->k, sizeof(key->k), pass != NULL ? pass : "",
	                  (unsigned long long)passlen, salt, (unsigned long long)opslimit,
	                  (size_t)memlimit, crypto_pwhash_ALG_ARGON2ID13) != 0) {
		sodium_free(key);
		return cs_fail(err, CS_EIO,
		               "not enough memory to derive the cluster key (Argon2id needs %llu "
		               "MiB)",
		               (unsigned long long)(memlimit >> 20));
	}
	/* A stray write through a bad pointer now faults instead of silently
	 * changing the key. */
	if (sodium_mprotect_readonly(key) != 0) {
		sodium_free(key);
		return cs_fail(err, CS_EIO, "cannot make the cluster key read-only");
	}
	*out = key;
	return 0;
}

void cs_key_free(cs_key *key)
{
	sodium_free(key); /* wipes it; NULL is fine */
}

void cs_key_check(const cs_key *key, uint8_t out[CS_KEYCHECK_LEN])
{
	crypto_generichash(out, CS_KEYCHECK_LEN, (const unsigned char *)CHECK_LABEL,
	                   sizeof(CHECK_LABEL) - 1, key->k, sizeof(key->k));
}

int cs_seal(const cs_key *key, const void *plain, size_t plen, const void *ad, size_t adlen,
            uint8_t **sealed, size_t *slen, cs_err *err)
{
	unsigned long long clen;
	uint8_t *out;

	*sealed = NULL;
	*slen = 0;
	if (plen > crypto_aead_xchacha20poly1305_ietf_MESSAGEBYTES_MAX ||
	    plen > SIZE_MAX - CS_SEAL_OVERHEAD)
		return cs_fail(err, CS_EINPUT, "a key of %zu bytes is too large to seal", plen);
	out = malloc(plen + CS_SEAL_OVERHEAD);
	if (out == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	/* Random 24-byte nonces never repeat in practice, so no counter has to
	 * be kept in step across nodes. */
	randombytes_buf(out, NONCE_LEN);
	crypto_aead_xchacha20poly1305_ietf_encrypt(out + NONCE_LEN, &clen, plain, plen, ad, adlen,
	                                           NULL, out, key->k);
	*sealed = out;
	*slen = NONCE_LEN + (size_t)clen;
	return 0;
}

int cs_unseal(const cs_key *key, const void *sealed, size_t slen, const void *ad, size_t adlen,
              uint8_t **plain, size_t *plen, cs_err *err)
{
	const uint8_t *s = sealed;
	unsigned long long mlen;
	uint8_t *out;
	size_t n;

	*plain = NULL;
	*plen = 0;
	if (slen < CS_SEAL_OVERHEAD)
		return cs_fail(
		    err, CS_ECRYPTO,
		    "sealed key is %zu bytes, shorter than a seal: the record was altered", slen);
	n = slen - CS_SEAL_OVERHEAD;
	/* Plaintext goes straight into guarded memory, never a plain heap. */
	out = sodium_malloc(n > 0 ? n : 1);
	if (out == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
	        out, &mlen, NULL, s + NONCE_LEN, slen - NONCE_LEN, ad, adlen, s, key->k) != 0) {
		sodium_free(out);
		return cs_fail(
		    err, CS_ECRYPTO,
		    "sealed key does not open: the cluster passphrase does not match, or "
		    "the record was altered");
	}
	*plain = out;
	*plen = (size_t)mlen;
	return 0;
}

void cs_secret_free(void *secret)
{
	sodium_free(secret);
}

void cs_key_subkey(const cs_key *key, uint64_t id, const char context[8], uint8_t out[32])
{
	crypto_kdf_derive_from_key(out, 32, id, context, key->k);
}
