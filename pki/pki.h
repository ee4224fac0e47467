/* pki.h — certificate work: keys, self-signed certificates and CSRs, decoding
 * of every import format, chains, coverage, export and verification.
 *
 * Everything here is OpenSSL 3; this module never touches the store and never
 * sees the cluster key.  Private keys move in and out only as PKCS#8 DER in
 * buffers the caller wipes (pki_key_to_der / pki_key_from_der), so the agent
 * can seal them at once.  Functions that fail fill a cs_err whose message names
 * the thing and the fix, and carries no key material. */
#ifndef CS_PKI_H
#define CS_PKI_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "../common/err.h"

#define PKI_ID_LEN 32 /* SHA-256 */

/* Has OpenSSL wipe every block it frees (copies of key DER its decoders
 * leave behind).  Call first thing, before OpenSSL allocates anything;
 * false when that is too late. */
bool pki_memory_init(void);

/* ---- keys ---------------------------------------------------------------- */

typedef enum pki_keyspec {
	PKI_KEY_EC_P256,
	PKI_KEY_EC_P384,
	PKI_KEY_RSA_2048,
	PKI_KEY_RSA_3072,
	PKI_KEY_RSA_4096,
} pki_keyspec;

/* RSA above this costs a TLS server too much per handshake (RSA-16384:
 * about 280 times RSA-2048): refused at import and generation. */
#define PKI_MAX_RSA_BITS 8192

/* Parses "ec:p256", "ec:p384", "rsa:2048", "rsa:3072" or "rsa:4096".  RSA
 * below 2048 or above PKI_MAX_RSA_BITS bits is refused with that reason;
 * anything else names the list. */
int pki_keyspec_parse(const char *s, pki_keyspec *out, cs_err *err);
EVP_PKEY *pki_key_generate(pki_keyspec spec, cs_err *err);
/* pki_key_generate that gives up (an error that says so) once *stop is
 * true: an RSA key takes seconds, and a stopping agent must not wait for
 * one.  stop may be NULL. */
EVP_PKEY *pki_key_generate_until(pki_keyspec spec, const atomic_bool *stop, cs_err *err);

/* Accepts RSA of 2048 to PKI_MAX_RSA_BITS bits and EC P-256/P-384; refuses DSA, Ed25519,
 * Ed448, other curves and short RSA, naming the key type. */
int pki_key_supported(EVP_PKEY *key, cs_err *err);

/* "ec:p256", "rsa:3072", ... into out (at least 16 bytes). */
void pki_key_type(EVP_PKEY *key, char *out, size_t outlen);

/* SHA-256 of the public key's SubjectPublicKeyInfo DER: matches a key, a
 * certificate and a request to each other. */
int pki_key_spki_hash(EVP_PKEY *key, uint8_t out[PKI_ID_LEN], cs_err *err);
/* The same hash for the public key cert carries, read from its
 * SubjectPublicKeyInfo; much cheaper than pki_key_spki_hash, which runs
 * OpenSSL 3.0's encoders. */
int pki_cert_spki_hash(X509 *cert, uint8_t out[PKI_ID_LEN], cs_err *err);

/* Unencrypted PKCS#8 DER, in an OPENSSL_secure_malloc'd buffer that the
 * caller releases with OPENSSL_secure_clear_free(*der, *len). */
int pki_key_to_der(EVP_PKEY *key, uint8_t **der, size_t *len, cs_err *err);
EVP_PKEY *pki_key_from_der(const uint8_t *der, size_t len, cs_err *err);

/* ---- new certificates and requests ------------------------------------- */

typedef struct pki_subject {
	const char *country;                       /* ISO 3166-1 alpha-2, required */
	const char *state, *locality, *org, *unit; /* optional (NULL) */
	const char *common_name;                   /* required */
	const char *const *sans;                   /* DNS names, *.wildcards, IP addresses */
	size_t nsans;
	int days; /* self-signed validity; 0 means 365 */
	/* A request for an ACME CA, which takes the names from the SANs and
	 * ignores the rest of the subject: no country needed. */
	bool names_only;
} pki_subject;

/* The SAN list a certificate or request will carry: the given SANs checked
 * (DNS syntax, a wildcard only as the whole left-most label, IPv4/IPv6
 * literals), lower-cased, de-duplicated, and the common name first when it
 * is a FQDN not already listed.  *note receives a sentence to show the
 * operator when the common name was added ("" otherwise).  Fails for a
 * country that is not an ISO 3166 alpha-2 code, no SAN at all, a bad SAN. */
typedef struct pki_sans {
	char **names;
	size_t n;
} pki_sans;
int pki_subject_check(const pki_subject *subj, pki_sans *sans, char *note, size_t notelen,
                      cs_err *err);
/* Appends a copy of name; -1 when out of memory. */
int pki_sans_add(pki_sans *sans, const char *name);
void pki_sans_free(pki_sans *sans);

/* Why name is not a valid DNS host name (no wildcard; a trailing dot and
 * upper case allowed), or NULL when it is. */
const char *pki_hostname_problem(const char *name);

/* True for an ISO 3166-1 alpha-2 code (upper case, "GB", "US"; not "XX"). */
bool pki_country_valid(const char *cc);

/* Self-signed identity certificate (CA:FALSE, serverAuth + clientAuth,
 * digitalSignature (+ keyEncipherment for RSA), SKI, random 128-bit serial,
 * SHA-256 signature) valid from now - 1 minute for subj->days.  subj is
 * checked with pki_subject_check first. */
X509 *pki_self_signed(EVP_PKEY *key, const pki_subject *subj, cs_err *err);
/* PKCS#10 request with the SANs in an extensionRequest, signed SHA-256. */
X509_REQ *pki_csr(EVP_PKEY *key, const pki_subject *subj, cs_err *err);

/* ---- decoding what operators import ------------------------------------ */

/* Everything found in one file.  The format is found from the content only. */
typedef struct pki_bundle {
	STACK_OF(X509) * certs; /* in file order; never NULL after success */
	EVP_PKEY **keys;
	size_t nkeys;
	const char *format; /* "DER X.509", "PEM", "PKCS#12", "PKCS#8 DER",
	                       "encrypted PKCS#8 DER", "OpenSSL key DER", ... */
} pki_bundle;

/* The most key-derivation work an imported file may ask for: iterations of
 * a PKCS#12 MAC, a PKCS#12 or PKCS#5 PBE or PBKDF2 (OpenSSL and Windows
 * write 2,000 to 10,000; 1,000,000 take about a second), and scrypt's
 * N * r * p (OpenSSL writes 2^17).  More is refused before any of it runs. */
/* The most names (subjectAltName entries) a certificate may carry to be
 * imported: every name is an entry of each node's TLS selection index and
 * a line of the record.  Let's Encrypt issues at most 100. */
#define PKI_MAX_SANS 1000

#define PKI_MAX_KDF_ITER    1000000
#define PKI_MAX_SCRYPT_COST (1 << 23)

/* Decodes DER X.509, PEM with any number of certificates and keys (PKCS#8,
 * encrypted PKCS#8, traditional "RSA/EC PRIVATE KEY"), PKCS#8 DER (plain or
 * encrypted), PKCS#12, OpenSSL legacy DER keys and certificates-only PKCS#7
 * (.p7b, DER or PEM; format "PKCS#7 DER").  password may be NULL.
 * what names the input in messages (a file name).  Errors, all CS_EINPUT:
 * empty input; not any known format; truncated or corrupt DER/PEM; a CSR
 * ("... is a certificate signing request: ..."); wrong or missing password;
 * PKCS#12 or encrypted key that needs one; key derivation above
 * PKI_MAX_KDF_ITER / PKI_MAX_SCRYPT_COST; unsupported key types
 * (pki_key_supported).  On error out is left empty. */
int pki_decode(const uint8_t *data, size_t len, const char *password, const char *what,
               pki_bundle *out, cs_err *err);
void pki_bundle_free(pki_bundle *b);

/* DER of a certificate or request, malloc'd. */
int pki_cert_der(X509 *cert, uint8_t **der, size_t *len, cs_err *err);
X509 *pki_cert_from_der(const uint8_t *der, size_t len, cs_err *err);
int pki_csr_der(X509_REQ *req, uint8_t **der, size_t *len, cs_err *err);
X509_REQ *pki_csr_from_der(const uint8_t *der, size_t len, cs_err *err);
/* PEM text ("-----BEGIN CERTIFICATE REQUEST-----...") of a request, malloc'd. */
char *pki_csr_pem(X509_REQ *req, cs_err *err);

/* ---- what a certificate says ------------------------------------------- */

typedef enum pki_kind {
	PKI_KIND_IDENTITY = 0, /* numbering equals proto CertKind */
	PKI_KIND_INTERMEDIATE = 1,
	PKI_KIND_ROOT = 2,
} pki_kind;

typedef struct pki_cert_info {
	uint8_t id[PKI_ID_LEN]; /* SHA-256 of the DER */
	uint8_t spki_sha256[PKI_ID_LEN];
	pki_kind kind;     /* CA:TRUE → root when self-signed, else intermediate */
	char subject[512]; /* RFC 2253 one line */
	char subject_cn[256];
	char issuer[512];
	pki_sans sans; /* DNS names and IP addresses, in certificate order */
	time_t not_before, not_after;
	char key_type[16];
	bool self_signed;
} pki_cert_info;

/* (The function is not named pki_cert_info: that is the type's name.) */
int pki_cert_inspect(X509 *cert, pki_cert_info *info, cs_err *err);
void pki_cert_info_free(pki_cert_info *info);

/* Subject, SANs and key type of a request, for `csr list`. */
int pki_csr_inspect(X509_REQ *req, pki_cert_info *info, cs_err *err);

/* True when key is the private half of cert's public key. */
bool pki_key_matches(X509 *cert, EVP_PKEY *key);

/* True when cert covers host: a DNS name through X509_check_host with
 * X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS (one left-most label, RFC 6125), an
 * IP literal through X509_check_ip_asc.  Case-insensitive; a trailing dot on
 * host is ignored.  Only SANs count (X509_CHECK_FLAG_NEVER_CHECK_SUBJECT):
 * browsers ignore the subject CN, so a CN-only certificate covers nothing. */
bool pki_covers(X509 *cert, const char *host);

/* ---- chains -------------------------------------------------------------- */

/* Builds leaf's chain from pool (intermediates and roots held by the store)
 * and, when use_system, the system trust store.  *chain gets the issuers
 * after the leaf, nearest first (empty for a self-signed leaf).  *complete is
 * true when the chain ends at a self-signed root; a chain that reaches a
 * root only found in the system store includes it. Expiry is ignored here. */
int pki_chain_build(X509 *leaf, STACK_OF(X509) * pool, bool use_system, STACK_OF(X509) * *chain,
                    bool *complete, cs_err *err);

/* Whether a CA certificate's signature verifies: a self-signed one with its
 * own key, any other with the key of its issuer among candidates (and the
 * system trust store when use_system).  UNKNOWN when no issuer is known:
 * it is checked once one is. */
typedef enum pki_sig { PKI_SIG_OK, PKI_SIG_UNKNOWN, PKI_SIG_BAD } pki_sig;
pki_sig pki_ca_signature(X509 *cert, STACK_OF(X509) * candidates, bool use_system);

/* ---- export ---------------------------------------------------------------- */

typedef enum pki_format { PKI_FMT_PEM, PKI_FMT_DER, PKI_FMT_P7B, PKI_FMT_P12 } pki_format;

int pki_format_parse(const char *s, pki_format *out, cs_err *err);

/* pem: leaf then chain; der: the leaf; p7b: certificates-only PKCS#7 (DER) of
 * leaf and chain; p12: leaf, chain and key under passphrase with
 * AES-256-CBC, PBKDF2 and a SHA-256 MAC (readable by `openssl pkcs12`).
 * p12 without key or passphrase is refused.  *out is malloc'd. */
int pki_export(pki_format fmt, X509 *leaf, STACK_OF(X509) * chain, EVP_PKEY *key,
               const char *friendly_name, const char *passphrase, uint8_t **out, size_t *outlen,
               cs_err *err);

/* ---- verification ------------------------------------------------------- */

typedef enum pki_check_status { PKI_CHECK_OK, PKI_CHECK_WARN, PKI_CHECK_FAIL } pki_check_status;

typedef struct pki_check {
	const char *name; /* "coverage", "chain", "key", "validity" */
	pki_check_status status;
	char detail[1024]; /* names each uncovered host and the SANs, days left, ... */
} pki_check;

#define PKI_NCHECKS 4

/* The four checks of `certsync verify`, in this order:
 *  coverage — every host in hosts is covered (pki_covers); the detail names
 *             each uncovered host and lists the certificate's SANs;
 *  chain    — pki_chain_build(pool, system store) is complete;
 *  key      — key is not NULL and matches (key NULL: "no private key held");
 *  validity — valid at now; expired, not yet valid, or 25 days or less left
 *             fails; 30 days or less warns.
 * Returns the worst status. */
pki_check_status pki_verify(X509 *leaf, STACK_OF(X509) * pool, EVP_PKEY *key,
                            const char *const *hosts, size_t nhosts, time_t now,
                            pki_check checks[PKI_NCHECKS]);

/* ---- the ACME tls-alpn-01 challenge certificate (RFC 8737) --------------- */

#define PKI_ACME_IDENTIFIER_OID "1.3.6.1.5.5.7.1.31" /* id-pe-acmeIdentifier */

/* The self-signed certificate a node shows for ALPN acme-tls/1: name (a DNS
 * name) as its only SAN, the critical acmeIdentifier extension holding
 * digest (SHA-256 of the key authorization) as an OCTET STRING, signed
 * SHA-256 with key, valid from a minute ago for 7 days. */
X509 *pki_tlsalpn01_cert(EVP_PKEY *key, const char *name, const uint8_t digest[32], cs_err *err);
/* 0 when cert is the challenge certificate for name and digest: exactly one
 * SAN, the DNS name name; the acmeIdentifier extension present once,
 * critical, an OCTET STRING of these 32 bytes.  Otherwise CS_EINPUT saying
 * what differs. */
int pki_tlsalpn01_check(X509 *cert, const char *name, const uint8_t digest[32], cs_err *err);

#endif
