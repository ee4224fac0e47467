/* der.c — single objects to and from bytes (DER of certificates and
 * requests, PEM of a request) and the OpenSSL glue the module shares:
 * error reasons, i2d/d2i of any item, memory BIOs. */
#include "pki_internal.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

int pki_fail_ssl(cs_err *err, enum cs_errcode code, const char *fmt, ...)
{
	char msg[sizeof(err->msg)];
	const char *reason = ERR_reason_error_string(ERR_peek_error());
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ERR_clear_error();
	if (reason != NULL)
		return cs_fail(err, code, "%s: %s", msg, reason);
	return cs_fail(err, code, "%s", msg);
}

int pki_i2d(const void *obj, const ASN1_ITEM *it, uint8_t **der, size_t *len, cs_err *err)
{
	int n = ASN1_item_i2d((const ASN1_VALUE *)obj, NULL, it);
	unsigned char *p;

	*der = NULL;
	*len = 0;
	if (n <= 0)
		return pki_fail_ssl(err, CS_EINPUT, "DER encoding failed");
	if ((*der = malloc((size_t)n)) == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	p = *der;
	if (ASN1_item_i2d((const ASN1_VALUE *)obj, &p, it) != n) {
		free(*der);
		*der = NULL;
		return pki_fail_ssl(err, CS_EIO, "DER encoding failed");
	}
	*len = (size_t)n;
	return 0;
}

void *pki_d2i(const uint8_t *der, size_t len, const ASN1_ITEM *it)
{
	const unsigned char *p = der;
	ASN1_VALUE *v;

	if (len > LONG_MAX)
		return NULL;
	v = ASN1_item_d2i(NULL, &p, (long)len, it);
	if (v != NULL && p != der + len) {
		ASN1_item_free(v, it);
		return NULL;
	}
	return v;
}

int pki_bio_take(BIO *bio, uint8_t **out, size_t *len, cs_err *err)
{
	char *data;
	long n = BIO_get_mem_data(bio, &data);

	*out = NULL;
	*len = 0;
	if (n < 0)
		return pki_fail_ssl(err, CS_EIO, "cannot read the encoded output");
	if ((*out = malloc((size_t)n + 1)) == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	memcpy(*out, data, (size_t)n);
	(*out)[n] = '\0';
	*len = (size_t)n;
	return 0;
}

int pki_cert_der(X509 *cert, uint8_t **der, size_t *len, cs_err *err)
{
	return pki_i2d(cert, ASN1_ITEM_rptr(X509), der, len, err);
}

X509 *pki_cert_from_der(const uint8_t *der, size_t len, cs_err *err)
{
	X509 *cert = pki_d2i(der, len, ASN1_ITEM_rptr(X509));

	if (cert == NULL)
		pki_fail_ssl(err, CS_EINPUT, "not a DER certificate");
	return cert;
}

int pki_csr_der(X509_REQ *req, uint8_t **der, size_t *len, cs_err *err)
{
	return pki_i2d(req, ASN1_ITEM_rptr(X509_REQ), der, len, err);
}

X509_REQ *pki_csr_from_der(const uint8_t *der, size_t len, cs_err *err)
{
	X509_REQ *req = pki_d2i(der, len, ASN1_ITEM_rptr(X509_REQ));

	if (req == NULL)
		pki_fail_ssl(err, CS_EINPUT, "not a DER certificate signing request");
	return req;
}

char *pki_csr_pem(X509_REQ *req, cs_err *err)
{
	BIO *bio = BIO_new(BIO_s_mem());
	uint8_t *pem = NULL;
	size_t len;

	if (bio == NULL || !PEM_write_bio_X509_REQ(bio, req))
		pki_fail_ssl(err, CS_EIO, "cannot write the request as PEM");
	else
		pki_bio_take(bio, &pem, &len, err);
	BIO_free(bio);
	return (char *)pem;
}
