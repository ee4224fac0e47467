/* pki_internal.h — helpers the files of pki/ share; not part of the API. */
#ifndef CS_PKI_INTERNAL_H
#define CS_PKI_INTERNAL_H

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/core.h>
#include <openssl/pkcs12.h>
#include <openssl/x509v3.h>

#include "pki.h"

/* The accepted key types, for messages. */
#define PKI_ACCEPTED_KEYS "certsync accepts RSA (2048 to 8192 bits) and ECDSA P-256/P-384 keys"

/* cs_fail with the first OpenSSL reason appended (": reason") when the
 * error queue holds one.  Always empties the queue, so an old failure
 * never shows up in a later message. */
int pki_fail_ssl(cs_err *err, enum cs_errcode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A random 128-bit serial number for x (issue.c). */
int pki_random_serial(X509 *x);

/* DER of any ASN.1 item into a malloc'd buffer. */
int pki_i2d(const void *obj, const ASN1_ITEM *it, uint8_t **der, size_t *len, cs_err *err);
/* Parses exactly len bytes as item it; NULL when it does not parse or when
 * bytes are left over.  OpenSSL's reason stays queued for the caller. */
void *pki_d2i(const uint8_t *der, size_t len, const ASN1_ITEM *it);
/* Copies what a memory BIO holds into a malloc'd buffer, NUL-terminated. */
int pki_bio_take(BIO *bio, uint8_t **out, size_t *len, cs_err *err);

/* A private key from DER in any form OpenSSL knows (PKCS#8, encrypted
 * PKCS#8, OpenSSL legacy), with all bytes used; cb is asked for the
 * password of an encrypted one.  NULL when it is none of these. */
EVP_PKEY *pki_der_key(const uint8_t *der, size_t len, OSSL_PASSPHRASE_CALLBACK *cb, void *cbarg);
/* pki_key_spki_hash of the key a certificate or request carries, from
 * its SubjectPublicKeyInfo. */
int pki_spki_hash(const X509_PUBKEY *spki, uint8_t out[PKI_ID_LEN], cs_err *err);
/* Keeps with key the unencrypted PKCS#8 DER it was decoded from, which
 * pki_key_to_der then gives instead of encoding the key again. */
void pki_key_keep_der(EVP_PKEY *key, const uint8_t *der, size_t len);
/* pki_key_supported, naming what holds the key ("FILE holds a DSA key;
 * ...") when what is not NULL. */
int pki_key_accept(EVP_PKEY *key, const char *what, cs_err *err);

/* Appends the DNS names and IP addresses of gens (which may be NULL). */
int pki_sans_from_names(const GENERAL_NAMES *gens, pki_sans *sans);

/* True when cert is signed by its own key under its own name.  Unlike
 * X509_self_signed this holds for identity certificates too, whose key
 * usage has no keyCertSign. */
bool pki_signed_by_itself(X509 *cert);

/* RFC 2253 text of a name, UTF-8 kept as is, truncated to size. */
void pki_name_text(const X509_NAME *name, char *out, size_t size);

/* Why a chain is not complete: an X509_V_ERR_* code (X509_V_OK when it is)
 * and the depth of the certificate concerned (0 is the leaf). */
typedef struct pki_chain_status {
	int error;
	int depth;
} pki_chain_status;
/* pki_chain_build with the reason; *chain is filled even when incomplete. */
int pki_chain_check(X509 *leaf, STACK_OF(X509) * pool, bool use_system, STACK_OF(X509) * *chain,
                    pki_chain_status *st, cs_err *err);

/* pbe.c: 0 when the key derivation an encrypted PKCS#8 (X509_SIG DER;
 * anything else passes) or a PKCS#12 file (its MAC, encrypted safes and
 * shrouded key bags) asks for is within PKI_MAX_KDF_ITER iterations or
 * PKI_MAX_SCRYPT_COST; -1 with a CS_EINPUT naming what and the count. */
int pki_pbe_check_p8(const uint8_t *der, size_t len, const char *what, cs_err *err);
int pki_pbe_check_p12(const PKCS12 *p12, const char *pass, const char *what, cs_err *err);

#endif
