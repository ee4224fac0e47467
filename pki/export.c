/* export.c — a certificate with its chain in the formats operators and
 * other appliances take: PEM, DER, certificates-only PKCS#7, and PKCS#12
 * with the key under an export passphrase. */
#include "pki_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>

/* PBKDF2 rounds for the key and certificate bags, and for the MAC: well
 * above OpenSSL's default of 2048, still fast to import. */
#define P12_ITER 10000

static const struct {
	const char *name;
	pki_format fmt;
} formats[] = {
    {"pem", PKI_FMT_PEM}, {"der", PKI_FMT_DER}, {"p7b", PKI_FMT_P7B},
    {"p12", PKI_FMT_P12}, {"pfx", PKI_FMT_P12},
};

int pki_format_parse(const char *s, pki_format *out, cs_err *err)
{
	for (size_t i = 0; s != NULL && i < sizeof(formats) / sizeof(formats[0]); i++) {
		if (strcasecmp(s, formats[i].name) == 0) {
			*out = formats[i].fmt;
			return 0;
		}
	}
	return cs_fail(err, CS_EUSAGE, "unknown format \"%.32s\"; use pem, der, p7b or p12",
	               s != NULL ? s : "");
}

static int export_pem(X509 *leaf, STACK_OF(X509) * chain, uint8_t **out, size_t *outlen,
                      cs_err *err)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int ok = bio != NULL && PEM_write_bio_X509(bio, leaf);
	int rc = -1;

	for (int i = 0; ok && i < sk_X509_num(chain); i++)
		ok = PEM_write_bio_X509(bio, sk_X509_value(chain, i));
	if (!ok)
		pki_fail_ssl(err, CS_EIO, "cannot write PEM");
	else
		rc = pki_bio_take(bio, out, outlen, err);
	BIO_free(bio);
	return rc;
}

/* Certificates-only SignedData with no content and no signers, as
 * `openssl crl2pkcs7 -nocrl` writes it. */
static int export_p7b(X509 *leaf, STACK_OF(X509) * chain, uint8_t **out, size_t *outlen,
                      cs_err *err)
{
	PKCS7 *p7 = PKCS7_new();
	int ok = p7 != NULL && PKCS7_set_type(p7, NID_pkcs7_signed) &&
	         PKCS7_content_new(p7, NID_pkcs7_data) && PKCS7_set_detached(p7, 1) &&
	         PKCS7_add_certificate(p7, leaf);
	int rc = -1;

	for (int i = 0; ok && i < sk_X509_num(chain); i++)
		ok = PKCS7_add_certificate(p7, sk_X509_value(chain, i));
	if (!ok)
		pki_fail_ssl(err, CS_EIO, "cannot build the PKCS#7 bundle");
	else
		rc = pki_i2d(p7, ASN1_ITEM_rptr(PKCS7), out, outlen, err);
	PKCS7_free(p7);
	return rc;
}

static int export_p12(X509 *leaf, STACK_OF(X509) * chain, EVP_PKEY *key, const char *name,
                      const char *pass, uint8_t **out, size_t *outlen, cs_err *err)
{
	PKCS12 *p12;
	int rc = -1;

	if (key == NULL)
		return cs_fail(
		    err, CS_EREFUSED,
		    "no private key held for this certificate: PKCS#12 export needs one");
	if (pass == NULL || *pass == '\0')
		return cs_fail(err, CS_EUSAGE,
		               "PKCS#12 export needs an export passphrase to protect the key");
	if (!pki_key_matches(leaf, key))
		return cs_fail(err, CS_EINPUT, "the private key does not match the certificate");
	/* AES-256-CBC with PBKDF2 for both bags and an HMAC-SHA-256 MAC: what
	 * OpenSSL 3 reads without its legacy provider.  mac_iter -1 skips the
	 * SHA-1 MAC PKCS12_create_ex would add. */
	p12 = PKCS12_create_ex(pass, name, key, leaf, chain, NID_aes_256_cbc, NID_aes_256_cbc,
	                       P12_ITER, -1, 0, NULL, NULL);
	if (p12 == NULL || !PKCS12_set_mac(p12, pass, -1, NULL, 0, P12_ITER, EVP_sha256()))
		pki_fail_ssl(err, CS_EIO, "cannot build the PKCS#12 file");
	else
		rc = pki_i2d(p12, ASN1_ITEM_rptr(PKCS12), out, outlen, err);
	PKCS12_free(p12);
	return rc;
}

int pki_export(pki_format fmt, X509 *leaf, STACK_OF(X509) * chain, EVP_PKEY *key,
               const char *friendly_name, const char *passphrase, uint8_t **out, size_t *outlen,
               cs_err *err)
{
	*out = NULL;
	*outlen = 0;
	switch (fmt) {
	case PKI_FMT_PEM:
		return export_pem(leaf, chain, out, outlen, err);
	case PKI_FMT_DER:
		return pki_cert_der(leaf, out, outlen, err);
	case PKI_FMT_P7B:
		return export_p7b(leaf, chain, out, outlen, err);
	case PKI_FMT_P12:
		return export_p12(leaf, chain, key, friendly_name, passphrase, out, outlen, err);
	}
	return cs_fail(err, CS_EUSAGE, "unknown export format %d", (int)fmt);
}
