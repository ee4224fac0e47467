/* jws.c — the account key's JWK and thumbprint, flattened JWS signed ES256,
 * External Account Binding (HS256), and the key authorizations each
 * challenge type publishes. */
#include "acme_int.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <sodium.h>

#define EAB_KEY_MAX 256 /* bytes of a decoded HMAC key */

char *acme_b64url(const uint8_t *data, size_t len)
{
	const int variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
	size_t size = sodium_base64_ENCODED_LEN(len, variant);
	char *out = malloc(size);

	if (out != NULL)
		sodium_bin2base64(out, size, data, len, variant);
	return out;
}

static int b64url_text(json_t *obj, const char *key, const uint8_t *data, size_t len)
{
	char *s = acme_b64url(data, len);
	int rc = s != NULL ? json_object_set_new(obj, key, json_string(s)) : -1;

	free(s);
	return rc;
}

static bool is_p256(EVP_PKEY *key)
{
	char group[32];

	return key != NULL && EVP_PKEY_is_a(key, "EC") &&
	       EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
	                                      NULL) == 1 &&
	       strcmp(group, "prime256v1") == 0;
}

json_t *acme_jwk(EVP_PKEY *key, acme_err *e)
{
	const char *names[2] = {OSSL_PKEY_PARAM_EC_PUB_X, OSSL_PKEY_PARAM_EC_PUB_Y};
	const char *members[2] = {"x", "y"};
	json_t *jwk;

	if (!is_p256(key)) {
		acme_fail(e, CS_EINPUT, ACME_ERR_FATAL, "the ACME account key must be ec:p256");
		return NULL;
	}
	jwk = json_pack("{s:s, s:s}", "crv", "P-256", "kty", "EC");
	for (int i = 0; jwk != NULL && i < 2; i++) {
		BIGNUM *bn = NULL;
		uint8_t coord[32];

		if (EVP_PKEY_get_bn_param(key, names[i], &bn) != 1 ||
		    BN_bn2binpad(bn, coord, sizeof(coord)) != sizeof(coord) ||
		    b64url_text(jwk, members[i], coord, sizeof(coord)) != 0) {
			json_decref(jwk);
			jwk = NULL;
		}
		BN_free(bn);
	}
	if (jwk == NULL)
		acme_fail(e, CS_EIO, ACME_ERR_FATAL, "cannot read the account key's public point");
	return jwk;
}

int acme_jwk_thumbprint(EVP_PKEY *key, char *out, size_t outlen, acme_err *e)
{
	json_t *jwk = acme_jwk(key, e);
	uint8_t digest[32];
	char *canon, *b64;
	int rc = -1;

	if (jwk == NULL)
		return -1;
	/* RFC 7638 §3: the required members, sorted, no whitespace */
	canon = acme_json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(jwk);
	if (canon != NULL &&
	    EVP_Digest(canon, strlen(canon), digest, NULL, EVP_sha256(), NULL) == 1 &&
	    (b64 = acme_b64url(digest, sizeof(digest))) != NULL) {
		if (strlen(b64) < outlen) {
			strcpy(out, b64);
			rc = 0;
		}
		free(b64);
	}
	free(canon);
	if (rc != 0)
		acme_fail(e, CS_EIO, ACME_ERR_FATAL, "cannot compute the account key's thumbprint");
	return rc;
}

/* ES256 wants r||s, 32 bytes each (RFC 7518 §3.4), not OpenSSL's DER. */
static int sign_es256(EVP_PKEY *key, const char *input, uint8_t sig[64])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t der[80];
	size_t derlen = sizeof(der);
	const uint8_t *p = der;
	ECDSA_SIG *es = NULL;
	int rc = -1;

	if (md != NULL && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
	    EVP_DigestSign(md, der, &derlen, (const uint8_t *)input, strlen(input)) == 1 &&
	    (es = d2i_ECDSA_SIG(NULL, &p, (long)derlen)) != NULL &&
	    BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32) == 32 &&
	    BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32) == 32)
		rc = 0;
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(md);
	return rc;
}

/* The flattened JWS of a protected header and a payload, signed by sign. */
static json_t *jws_object(json_t *protected_hdr, const char *payload,
                          int (*sign)(const void *ctx, const char *input, uint8_t *sig,
                                      size_t *siglen),
                          const void *ctx)
{
	char *hdr = acme_json_dumps(protected_hdr, JSON_COMPACT);
	char *hdr64 = hdr ? acme_b64url((const uint8_t *)hdr, strlen(hdr)) : NULL;
	char *pay64 = acme_b64url((const uint8_t *)payload, strlen(payload));
	char *input = NULL;
	uint8_t sig[64];
	size_t siglen = sizeof(sig);
	char *sig64 = NULL;
	json_t *jws = NULL;

	if (hdr64 != NULL && pay64 != NULL &&
	    (input = malloc(strlen(hdr64) + strlen(pay64) + 2)) != NULL) {
		sprintf(input, "%s.%s", hdr64, pay64);
		if (sign(ctx, input, sig, &siglen) == 0 && (sig64 = acme_b64url(sig, siglen)))
			jws = json_pack("{s:s, s:s, s:s}", "protected", hdr64, "payload", pay64,
			                "signature", sig64);
	}
	free(hdr);
	free(hdr64);
	free(pay64);
	free(input);
	free(sig64);
	return jws;
}

static int es256(const void *ctx, const char *input, uint8_t *sig, size_t *siglen)
{
	*siglen = 64;
	return sign_es256((EVP_PKEY *)ctx, input, sig);
}

char *acme_jws(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
               const char *payload, acme_err *e)
{
	json_t *hdr, *jws;
	char *text = NULL;

	hdr = json_pack("{s:s, s:s, s:s}", "alg", "ES256", "nonce", nonce, "url", url);
	if (hdr == NULL)
		goto fail;
	if (kid != NULL) {
		json_object_set_new(hdr, "kid", json_string(kid));
	} else {
		json_t *jwk = acme_jwk(key, e);

		if (jwk == NULL) {
			json_decref(hdr);
			return NULL;
		}
		json_object_set_new(hdr, "jwk", jwk);
	}
	jws = jws_object(hdr, payload, es256, key);
	json_decref(hdr);
	if (jws != NULL)
		text = acme_json_dumps(jws, JSON_COMPACT);
	json_decref(jws);
	if (text != NULL)
		return text;
fail:
	acme_fail(e, CS_EIO, ACME_ERR_FATAL, "cannot sign the request to %s with the account key",
	          url);
	return NULL;
}

typedef struct hmac_key {
	uint8_t *bytes;
	size_t len;
} hmac_key;

static int hs256(const void *ctx, const char *input, uint8_t *sig, size_t *siglen)
{
	const hmac_key *k = ctx;

	return EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, k->bytes, k->len,
	                 (const uint8_t *)input, strlen(input), sig, *siglen, siglen) != NULL
	           ? 0
	           : -1;
}

json_t *acme_eab(const char *kid, const char *hmac_b64url, json_t *jwk, const char *url,
                 acme_err *e)
{
	uint8_t bytes[EAB_KEY_MAX];
	hmac_key k = {.bytes = bytes};
	const char *end = NULL;
	json_t *hdr, *eab = NULL;
	char *payload;

	if (kid == NULL || kid[0] == '\0' || hmac_b64url == NULL || hmac_b64url[0] == '\0') {
		acme_fail(e, CS_EINPUT, ACME_ERR_OPERATOR,
		          "External Account Binding needs both a key id and an HMAC key");
		return NULL;
	}
	/* the key is a secret: the message never quotes it */
	if (sodium_base642bin(bytes, sizeof(bytes), hmac_b64url, strlen(hmac_b64url), NULL, &k.len,
	                      &end, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    end != hmac_b64url + strlen(hmac_b64url) || k.len == 0) {
		OPENSSL_cleanse(bytes, sizeof(bytes));
		acme_fail(
		    e, CS_EINPUT, ACME_ERR_OPERATOR,
		    "the External Account Binding HMAC key is not base64url (RFC 4648 §5: "
		    "A-Z a-z 0-9 - _, no padding, at most %d bytes); copy it exactly as the CA "
		    "gave it",
		    EAB_KEY_MAX);
		return NULL;
	}
	hdr = json_pack("{s:s, s:s, s:s}", "alg", "HS256", "kid", kid, "url", url);
	payload = acme_json_dumps(jwk, JSON_COMPACT);
	if (hdr != NULL && payload != NULL)
		eab = jws_object(hdr, payload, hs256, &k);
	OPENSSL_cleanse(bytes, sizeof(bytes));
	json_decref(hdr);
	free(payload);
	if (eab == NULL)
		acme_fail(e, CS_EIO, ACME_ERR_FATAL, "cannot sign the External Account Binding");
	return eab;
}

char *acme_key_authorization(EVP_PKEY *account_key, const char *token, acme_err *e)
{
	char thumb[64];
	char *ka;

	if (acme_jwk_thumbprint(account_key, thumb, sizeof(thumb), e) != 0)
		return NULL;
	ka = malloc(strlen(token) + strlen(thumb) + 2);
	if (ka == NULL) {
		acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "out of memory");
		return NULL;
	}
	sprintf(ka, "%s.%s", token, thumb);
	return ka;
}

int acme_tlsalpn01_digest(const char *key_auth, uint8_t out[32], acme_err *e)
{
	if (EVP_Digest(key_auth, strlen(key_auth), out, NULL, EVP_sha256(), NULL) != 1)
		return acme_fail(e, CS_EIO, ACME_ERR_FATAL, "SHA-256 failed");
	return 0;
}

int acme_dns01_value(const char *key_auth, char out[44], acme_err *e)
{
	uint8_t digest[32];
	char *b64;

	if (acme_tlsalpn01_digest(key_auth, digest, e) != 0)
		return -1;
	b64 = acme_b64url(digest, sizeof(digest));
	if (b64 == NULL)
		return acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "out of memory");
	memcpy(out, b64, 44); /* 43 characters and the NUL */
	free(b64);
	return 0;
}
