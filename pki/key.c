/* key.c — private keys: the types certsync accepts, generation, names
 * ("ec:p256"), the public-key hash that pairs keys with certificates, and
 * the PKCS#8 DER form in which keys leave this module to be sealed. */
#include "pki_internal.h"

#include <ctype.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/err.h>

#define KEYSPECS "ec:p256, ec:p384, rsa:2048, rsa:3072 or rsa:4096"

static const struct {
	const char *name;
	pki_keyspec spec;
	const char *curve; /* NULL for RSA */
	size_t bits;
} keyspecs[] = {
    {"ec:p256", PKI_KEY_EC_P256, "P-256", 0},   {"ec:p384", PKI_KEY_EC_P384, "P-384", 0},
    {"rsa:2048", PKI_KEY_RSA_2048, NULL, 2048}, {"rsa:3072", PKI_KEY_RSA_3072, NULL, 3072},
    {"rsa:4096", PKI_KEY_RSA_4096, NULL, 4096},
};
#define NKEYSPECS (sizeof(keyspecs) / sizeof(keyspecs[0]))

int pki_keyspec_parse(const char *s, pki_keyspec *out, cs_err *err)
{
	char *end;
	long bits;

	if (s == NULL)
		s = "";
	for (size_t i = 0; i < NKEYSPECS; i++) {
		if (strcasecmp(s, keyspecs[i].name) == 0) {
			*out = keyspecs[i].spec;
			return 0;
		}
	}
	if (strncasecmp(s, "rsa:", 4) == 0 && isdigit((unsigned char)s[4])) {
		bits = strtol(s + 4, &end, 10);
		/* a well-formed size the appliance's rule refuses, unlike a
		 * spec that means nothing */
		if (*end == '\0' && bits < 2048)
			return cs_fail(err, CS_EREFUSED,
			               "RSA keys below 2048 bits are refused; use rsa:2048, "
			               "rsa:3072 or rsa:4096");
		if (*end == '\0' && bits > PKI_MAX_RSA_BITS)
			return cs_fail(err, CS_EREFUSED,
			               "RSA keys above %d bits are refused (every handshake would "
			               "cost the server many times an rsa:4096 one); use rsa:2048, "
			               "rsa:3072 or rsa:4096",
			               PKI_MAX_RSA_BITS);
	}
	return cs_fail(err, CS_EUSAGE, "unknown key type \"%.64s\"; use " KEYSPECS, s);
}

/* Called by OpenSSL between prime candidates: 0 stops the generation. */
static int keygen_go_on(EVP_PKEY_CTX *ctx)
{
	const atomic_bool *stop = EVP_PKEY_CTX_get_app_data(ctx);

	return !atomic_load(stop);
}

EVP_PKEY *pki_key_generate_until(pki_keyspec spec, const atomic_bool *stop, cs_err *err)
{
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *key = NULL;
	size_t i;
	int ok;

	for (i = 0; i < NKEYSPECS && keyspecs[i].spec != spec; i++)
		;
	if (i == NKEYSPECS) {
		cs_fail(err, CS_EUSAGE, "unknown key type %d; use " KEYSPECS, (int)spec);
		return NULL;
	}
	ctx = EVP_PKEY_CTX_new_from_name(NULL, keyspecs[i].curve != NULL ? "EC" : "RSA", NULL);
	ok = ctx != NULL && EVP_PKEY_keygen_init(ctx) == 1 &&
	     (keyspecs[i].curve != NULL
	          ? EVP_PKEY_CTX_set_group_name(ctx, keyspecs[i].curve) == 1
	          : EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int)keyspecs[i].bits) == 1);
	if (ok && stop != NULL) {
		EVP_PKEY_CTX_set_app_data(ctx, (void *)stop);
		EVP_PKEY_CTX_set_cb(ctx, keygen_go_on);
	}
	if (ok && EVP_PKEY_generate(ctx, &key) != 1)
		ok = 0;
	EVP_PKEY_CTX_free(ctx);
	if (ok)
		return key;
	if (stop != NULL && atomic_load(stop)) {
		ERR_clear_error();
		cs_fail(err, CS_EIO, "%s key generation stopped", keyspecs[i].name);
	} else {
		pki_fail_ssl(err, CS_EIO, "%s key generation failed", keyspecs[i].name);
	}
	return NULL;
}

EVP_PKEY *pki_key_generate(pki_keyspec spec, cs_err *err)
{
	return pki_key_generate_until(spec, NULL, err);
}

/* The NID of an EC key's named curve (NID_undef for explicit parameters),
 * and its name in name. */
static int ec_curve(EVP_PKEY *key, char *name, size_t size)
{
	int nid;

	name[0] = '\0';
	if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, name, size, NULL)) {
		ERR_clear_error();
		name[0] = '\0';
		return NID_undef;
	}
	nid = OBJ_sn2nid(name);
	return nid != NID_undef ? nid : EC_curve_nist2nid(name);
}

/* Describes a key certsync refuses ("a DSA key"); NULL for one it accepts. */
static const char *refusal(EVP_PKEY *key, char *buf, size_t size)
{
	static const struct {
		const char *type, *desc;
	} named[] = {
	    {"DSA", "a DSA key"},          {"ED25519", "an Ed25519 key"}, {"ED448", "an Ed448 key"},
	    {"RSA-PSS", "an RSA-PSS key"}, {"X25519", "an X25519 key"},   {"X448", "an X448 key"},
	};
	char curve[64];
	const char *type;
	int bits, nid;

	if (EVP_PKEY_is_a(key, "RSA")) {
		if ((bits = EVP_PKEY_get_bits(key)) >= 2048 && bits <= PKI_MAX_RSA_BITS)
			return NULL;
		snprintf(buf, size,
		         bits > PKI_MAX_RSA_BITS ? "a %d-bit RSA key (a handshake with it costs "
		                                   "the server hundreds of times an RSA-2048 one)"
		                                 : "a %d-bit RSA key",
		         bits);
		return buf;
	}
	if (EVP_PKEY_is_a(key, "EC")) {
		nid = ec_curve(key, curve, sizeof(curve));
		if (nid == NID_X9_62_prime256v1 || nid == NID_secp384r1)
			return NULL;
		if (curve[0] == '\0')
			snprintf(buf, size, "an EC key with explicit curve parameters");
		else
			snprintf(buf, size, "an EC key on curve %s", curve);
		return buf;
	}
	for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++)
		if (EVP_PKEY_is_a(key, named[i].type))
			return named[i].desc;
	type = EVP_PKEY_get0_type_name(key);
	snprintf(buf, size, "a key of type %s", type != NULL ? type : "unknown");
	return buf;
}

int pki_key_accept(EVP_PKEY *key, const char *what, cs_err *err)
{
	char buf[128];
	const char *desc;

	if (key == NULL)
		return cs_fail(err, CS_EINPUT, "no key given; " PKI_ACCEPTED_KEYS);
	if ((desc = refusal(key, buf, sizeof(buf))) == NULL)
		return 0;
	if (what != NULL)
		return cs_fail(err, CS_EINPUT, "%s holds %s; " PKI_ACCEPTED_KEYS, what, desc);
	return cs_fail(err, CS_EINPUT, "the key is %s; " PKI_ACCEPTED_KEYS, desc);
}

int pki_key_supported(EVP_PKEY *key, cs_err *err)
{
	return pki_key_accept(key, NULL, err);
}

void pki_key_type(EVP_PKEY *key, char *out, size_t outlen)
{
	char curve[64];
	const char *type = key != NULL ? EVP_PKEY_get0_type_name(key) : NULL;

	if (type == NULL) {
		snprintf(out, outlen, "unknown");
	} else if (EVP_PKEY_is_a(key, "RSA")) {
		snprintf(out, outlen, "rsa:%d", EVP_PKEY_get_bits(key));
	} else if (EVP_PKEY_is_a(key, "DSA")) {
		snprintf(out, outlen, "dsa:%d", EVP_PKEY_get_bits(key));
	} else if (EVP_PKEY_is_a(key, "EC")) {
		switch (ec_curve(key, curve, sizeof(curve))) {
		case NID_X9_62_prime256v1:
			snprintf(out, outlen, "ec:p256");
			break;
		case NID_secp384r1:
			snprintf(out, outlen, "ec:p384");
			break;
		default:
			snprintf(out, outlen, "ec:%s", curve[0] != '\0' ? curve : "explicit");
		}
	} else {
		snprintf(out, outlen, "%s", type);
		for (char *p = out; *p != '\0'; p++)
			*p = (char)tolower((unsigned char)*p);
	}
}

static int spki_der_hash(const unsigned char *der, int n, uint8_t out[PKI_ID_LEN], cs_err *err)
{
	if (n <= 0 || !EVP_Digest(der, (size_t)n, out, NULL, EVP_sha256(), NULL))
		return pki_fail_ssl(err, CS_EINPUT, "cannot encode the public key");
	return 0;
}

int pki_key_spki_hash(EVP_PKEY *key, uint8_t out[PKI_ID_LEN], cs_err *err)
{
	unsigned char *der = NULL;
	int n = key != NULL ? i2d_PUBKEY(key, &der) : -1;
	int rc = spki_der_hash(der, n, out, err);

	OPENSSL_free(der);
	return rc;
}

/* The same hash from the SubjectPublicKeyInfo a certificate or request
 * carries: re-encoding the parsed structure is a copy, where i2d_PUBKEY on
 * the key runs OpenSSL's encoder machinery (a hundred times slower). */
int pki_spki_hash(const X509_PUBKEY *spki, uint8_t out[PKI_ID_LEN], cs_err *err)
{
	unsigned char *der = NULL;
	int n = spki != NULL ? i2d_X509_PUBKEY(spki, &der) : -1;
	int rc = spki_der_hash(der, n, out, err);

	OPENSSL_free(der);
	return rc;
}

int pki_cert_spki_hash(X509 *cert, uint8_t out[PKI_ID_LEN], cs_err *err)
{
	return pki_spki_hash(X509_get_X509_PUBKEY(cert), out, err);
}

/* The unencrypted PKCS#8 a key was imported from, kept with the key (ex_data
 * of the EVP_PKEY, wiped when the key is freed): sealing it again needs no
 * encoder, whose set-up costs OpenSSL 3.0 more than the import's whole
 * decode of the key.  Keys unsealed from the store do not carry it. */
struct kept_der {
	size_t len;
	uint8_t der[];
};

static CRYPTO_ONCE kept_once = CRYPTO_ONCE_STATIC_INIT;
static int kept_index = -1;

static void kept_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	struct kept_der *k = ptr;

	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	if (k != NULL)
		OPENSSL_secure_clear_free(k, sizeof(*k) + k->len);
}

static void kept_init(void)
{
	kept_index = EVP_PKEY_get_ex_new_index(0, NULL, NULL, NULL, kept_free);
}

void pki_key_keep_der(EVP_PKEY *key, const uint8_t *der, size_t len)
{
	struct kept_der *k;

	if (!CRYPTO_THREAD_run_once(&kept_once, kept_init) || kept_index < 0 ||
	    EVP_PKEY_get_ex_data(key, kept_index) != NULL ||
	    (k = OPENSSL_secure_malloc(sizeof(*k) + len)) == NULL)
		return; /* pki_key_to_der encodes it then */
	k->len = len;
	memcpy(k->der, der, len);
	if (!EVP_PKEY_set_ex_data(key, kept_index, k))
		OPENSSL_secure_clear_free(k, sizeof(*k) + len);
}

static int kept_der(EVP_PKEY *key, uint8_t **der, size_t *len, cs_err *err)
{
	const struct kept_der *k;

	if (!CRYPTO_THREAD_run_once(&kept_once, kept_init) || kept_index < 0 ||
	    (k = EVP_PKEY_get_ex_data(key, kept_index)) == NULL)
		return 1;
	if ((*der = OPENSSL_secure_malloc(k->len)) == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	memcpy(*der, k->der, k->len);
	*len = k->len;
	return 0;
}

int pki_key_to_der(EVP_PKEY *key, uint8_t **der, size_t *len, cs_err *err)
{
	OSSL_ENCODER_CTX *ctx;
	BIO *bio;
	char *data;
	long n = 0;
	int rc;

	*der = NULL;
	*len = 0;
	if ((rc = kept_der(key, der, len, err)) <= 0)
		return rc;
	rc = -1;
	ctx = OSSL_ENCODER_CTX_new_for_pkey(key, EVP_PKEY_KEYPAIR, "DER", "PrivateKeyInfo", NULL);
	/* A secure-heap BIO is wiped when freed, so no clear copy of the key
	 * is left behind in ordinary memory. */
	bio = BIO_new(BIO_s_secmem());
	if (ctx == NULL || bio == NULL || OSSL_ENCODER_CTX_get_num_encoders(ctx) == 0 ||
	    !OSSL_ENCODER_to_bio(ctx, bio) || (n = BIO_get_mem_data(bio, &data)) <= 0) {
		pki_fail_ssl(err, CS_EINPUT, "cannot encode the private key as PKCS#8");
	} else if ((*der = OPENSSL_secure_malloc((size_t)n)) == NULL) {
		cs_fail(err, CS_EIO, "out of memory");
	} else {
		memcpy(*der, data, (size_t)n);
		*len = (size_t)n;
		rc = 0;
	}
	BIO_free(bio);
	OSSL_ENCODER_CTX_free(ctx);
	return rc;
}

/* Building a decoder context gathers every decoder chain OpenSSL has and
 * costs some fifteen times the decode itself in OpenSSL 3.0 (openssl/openssl
 * #15199; 3.2 caches contexts inside the library).  A key without a password
 * -- every key unsealed from the store, most imported ones -- is decoded with
 * one context kept for the process, under a lock, as the agent thread and the
 * TLS reloader both decode.  A key that needs a password gets a context of
 * its own: a decoder context may keep the passphrase it was given. */
static pthread_mutex_t plain_lock = PTHREAD_MUTEX_INITIALIZER;
static OSSL_DECODER_CTX *plain_ctx;
static EVP_PKEY *plain_key; /* where plain_ctx puts what it decodes */

static EVP_PKEY *der_key_plain(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	size_t left = len;
	EVP_PKEY *key = NULL;

	pthread_mutex_lock(&plain_lock);
	if (plain_ctx == NULL)
		plain_ctx = OSSL_DECODER_CTX_new_for_pkey(&plain_key, "DER", NULL, NULL,
		                                          EVP_PKEY_KEYPAIR, NULL, NULL);
	if (plain_ctx != NULL && OSSL_DECODER_from_data(plain_ctx, &p, &left) && left == 0)
		key = plain_key;
	else
		EVP_PKEY_free(plain_key);
	plain_key = NULL;
	pthread_mutex_unlock(&plain_lock);
	return key;
}

EVP_PKEY *pki_der_key(const uint8_t *der, size_t len, OSSL_PASSPHRASE_CALLBACK *cb, void *cbarg)
{
	EVP_PKEY *key = der_key_plain(der, len);
	const unsigned char *p = der;
	size_t left = len;
	OSSL_DECODER_CTX *ctx;

	if (key != NULL || cb == NULL)
		return key;
	/* No input structure: OpenSSL tries PKCS#8, encrypted PKCS#8 and the
	 * legacy per-type forms itself. */
	ERR_clear_error();
	ctx = OSSL_DECODER_CTX_new_for_pkey(&key, "DER", NULL, NULL, EVP_PKEY_KEYPAIR, NULL, NULL);
	if (ctx == NULL || !OSSL_DECODER_CTX_set_passphrase_cb(ctx, cb, cbarg) ||
	    !OSSL_DECODER_from_data(ctx, &p, &left) || left != 0) {
		EVP_PKEY_free(key);
		key = NULL;
	}
	OSSL_DECODER_CTX_free(ctx);
	return key;
}

EVP_PKEY *pki_key_from_der(const uint8_t *der, size_t len, cs_err *err)
{
	EVP_PKEY *key = pki_der_key(der, len, NULL, NULL);

	if (key == NULL) {
		/* The decoders' reason ("unsupported") would say nothing more. */
		ERR_clear_error();
		cs_fail(err, CS_EINPUT, "not a PKCS#8 DER private key");
		return NULL;
	}
	if (pki_key_supported(key, err) < 0) {
		EVP_PKEY_free(key);
		return NULL;
	}
	return key;
}
