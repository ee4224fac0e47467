/* decode.c — everything an operator may import, recognised from its
 * content: DER or PEM certificates, PKCS#7 bundles, PKCS#12 files, PKCS#8
 * (plain or encrypted) and OpenSSL legacy keys.  Each refusal names the
 * input and the fix; a damaged input is refused whole, never half-read. */
#include "pki_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>
#include <openssl/provider.h>

#define ACCEPTED       "accepted: DER or PEM X.509, PKCS#8, PKCS#12, OpenSSL keys"
#define PEM_BEGIN      "-----BEGIN "
#define PEM_DASHES     "-----"
#define PEM_KEY_SUFFIX "PRIVATE KEY"
#define PEM_NAME_MAX   64

/* One decoding run. */
typedef struct dec {
	const char *what; /* the input, in messages */
	const char *password;
	pki_bundle *out;
	cs_err *err;
} dec;

static int need_password(dec *d)
{
	return cs_fail(d->err, CS_EINPUT,
	               "%s is an encrypted key: give its password with --password-file", d->what);
}

static int wrong_password(dec *d)
{
	return cs_fail(d->err, CS_EINPUT,
	               "%s: wrong password for the encrypted key; give the right one with "
	               "--password-file",
	               d->what);
}

static int is_csr(dec *d)
{
	return cs_fail(d->err, CS_EINPUT,
	               "%s is a certificate signing request: send it to your CA and import the "
	               "certificate it issues",
	               d->what);
}

/* False for a certificate whose outer structure parses but whose
 * extensions or public key do not: damage inside the body that DER alone
 * does not show (only the issuer's signature would). */
static bool cert_sound(X509 *cert)
{
	return (X509_get_extension_flags(cert) & EXFLAG_INVALID) == 0 &&
	       X509_get0_pubkey(cert) != NULL;
}

/* Takes cert, also when it fails. */
static int add_cert(dec *d, X509 *cert)
{
	EVP_PKEY *pub = X509_get0_pubkey(cert);
	char cn[256];

	if (pub != NULL && EVP_PKEY_is_a(pub, "RSA") && EVP_PKEY_get_bits(pub) > PKI_MAX_RSA_BITS) {
		pki_name_text(X509_get_subject_name(cert), cn, sizeof(cn));
		cs_fail(d->err, CS_EINPUT,
		        "%s: certificate %s has a %d-bit RSA key; certsync refuses RSA above %d "
		        "bits (each handshake would cost the server hundreds of times an RSA-2048 "
		        "one): ask the CA for a certificate on an RSA-2048 to 4096 or ECDSA key",
		        d->what, cn, EVP_PKEY_get_bits(pub), PKI_MAX_RSA_BITS);
		X509_free(cert);
		return -1;
	}
	if (!sk_X509_push(d->out->certs, cert)) {
		X509_free(cert);
		return cs_fail(d->err, CS_EIO, "out of memory");
	}
	return 0;
}

/* Takes key, also when it fails. */
static int add_key(dec *d, EVP_PKEY *key)
{
	EVP_PKEY **keys;

	if (pki_key_accept(key, d->what, d->err) < 0) {
		EVP_PKEY_free(key);
		return -1;
	}
	if ((keys = realloc(d->out->keys, (d->out->nkeys + 1) * sizeof(*keys))) == NULL) {
		EVP_PKEY_free(key);
		return cs_fail(d->err, CS_EIO, "out of memory");
	}
	d->out->keys = keys;
	keys[d->out->nkeys++] = key;
	return 0;
}

static int add_p7_certs(dec *d, PKCS7 *p7)
{
	STACK_OF(X509) *certs = NULL;
	X509 *cert;

	if (PKCS7_type_is_signed(p7) && p7->d.sign != NULL)
		certs = p7->d.sign->cert;
	for (int i = 0; i < sk_X509_num(certs); i++) {
		cert = sk_X509_value(certs, i);
		if (!X509_up_ref(cert))
			return pki_fail_ssl(d->err, CS_EIO, "cannot hold a certificate");
		if (add_cert(d, cert) < 0)
			return -1;
	}
	return 0;
}

/* Records that OpenSSL asked for a password: the key is encrypted. */
typedef struct asked_pass {
	const char *password;
	bool asked;
} asked_pass;

static int pass_cb(char *buf, size_t size, size_t *len, const OSSL_PARAM params[], void *arg)
{
	asked_pass *ap = arg;
	size_t n;

	(void)params;
	ap->asked = true;
	if (ap->password == NULL || (n = strlen(ap->password)) > size)
		return 0;
	memcpy(buf, ap->password, n);
	*len = n;
	return 1;
}

/* 1 when der is a private key (now in the bundle), 0 when it is none,
 * -1 when it is refused or its password is missing or wrong. */
static int decode_key(dec *d, const uint8_t *der, size_t len, const char **format)
{
	asked_pass ap = {d->password, false};
	EVP_PKEY *key;
	PKCS8_PRIV_KEY_INFO *p8 = NULL;

	if (pki_pbe_check_p8(der, len, d->what, d->err) < 0)
		return -1;
	key = pki_der_key(der, len, pass_cb, &ap);
	ERR_clear_error();
	if (key == NULL) {
		if (!ap.asked)
			return 0;
		return d->password == NULL ? need_password(d) : wrong_password(d);
	}
	/* Plain PKCS#8 is what the store seals: kept, it need not be encoded
	 * again (PKCS8_PRIV_KEY_INFO_free wipes the key octets it parsed). */
	if (!ap.asked && (p8 = pki_d2i(der, len, ASN1_ITEM_rptr(PKCS8_PRIV_KEY_INFO))) != NULL)
		pki_key_keep_der(key, der, len);
	ERR_clear_error();
	if (format != NULL)
		*format = ap.asked     ? "encrypted PKCS#8 DER"
		          : p8 != NULL ? "PKCS#8 DER"
		                       : "OpenSSL key DER";
	PKCS8_PRIV_KEY_INFO_free(p8);
	return add_key(d, key) < 0 ? -1 : 1;
}

/* ---- PKCS#12 -------------------------------------------------------------- */

static CRYPTO_ONCE legacy_once = CRYPTO_ONCE_STATIC_INIT;
static OSSL_PROVIDER *legacy;

static void load_legacy(void)
{
	legacy = OSSL_PROVIDER_try_load(NULL, "legacy", 1);
}

static int p12_parse(PKCS12 *p12, const char *pass, EVP_PKEY **key, X509 **cert,
                     STACK_OF(X509) * *ca)
{
	if (PKCS12_parse(p12, pass, key, cert, ca))
		return 1;
	/* Files from Windows and OpenSSL 1.x encrypt with RC2-40, which
	 * OpenSSL 3 keeps in its legacy provider: load it on first need. */
	return CRYPTO_THREAD_run_once(&legacy_once, load_legacy) && legacy != NULL &&
	       PKCS12_parse(p12, pass, key, cert, ca);
}

static int decode_p12(dec *d, PKCS12 *p12)
{
	const char *pass = d->password;
	STACK_OF(X509) *ca = NULL;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	int rc = 0, mac_ok;

	/* An empty password is stored either as nothing or as "": try both,
	 * as PKCS12_parse does for NULL. */
	if (pass != NULL && *pass == '\0')
		pass = NULL;
	if (pki_pbe_check_p12(p12, pass, d->what, d->err) < 0)
		return -1;
	/* Without a MAC the password is for the bags alone, but PKCS12_parse
	 * insists on checking a MAC when given one: a MAC made here with one
	 * iteration (in memory only) lets it read the bags.  Making it fails
	 * only on a malformed file (its content is not of type data). */
	if (!PKCS12_mac_present(p12) && pass != NULL &&
	    !PKCS12_set_mac(p12, pass, -1, NULL, 0, 1, NULL))
		return pki_fail_ssl(d->err, CS_EINPUT, "%s: the PKCS#12 file is malformed",
		                    d->what);
	else if (PKCS12_mac_present(p12)) {
		mac_ok = pass != NULL
		             ? PKCS12_verify_mac(p12, pass, -1)
		             : PKCS12_verify_mac(p12, NULL, 0) || PKCS12_verify_mac(p12, "", 0);
		ERR_clear_error();
		if (!mac_ok && pass != NULL)
			return cs_fail(
			    d->err, CS_EINPUT,
			    "%s: wrong password for the PKCS#12 file; give the right one "
			    "with --password-file",
			    d->what);
		if (!mac_ok)
			return cs_fail(
			    d->err, CS_EINPUT,
			    "%s: the PKCS#12 file is protected by a password; give it with "
			    "--password-file",
			    d->what);
	}
	if (!p12_parse(p12, pass, &key, &cert, &ca))
		return pki_fail_ssl(d->err, CS_EINPUT,
		                    "%s: cannot decrypt the PKCS#12 file (wrong password, or an "
		                    "algorithm OpenSSL does not offer)",
		                    d->what);
	if (cert != NULL)
		rc = add_cert(d, cert);
	while (rc == 0 && (cert = sk_X509_shift(ca)) != NULL)
		rc = add_cert(d, cert);
	if (key != NULL && rc == 0)
		rc = add_key(d, key);
	else
		EVP_PKEY_free(key);
	sk_X509_pop_free(ca, X509_free);
	return rc;
}

/* ---- DER ------------------------------------------------------------------ */

/* pki_d2i for trying formats in turn: a miss leaves no error queued. */
static void *try_der(const uint8_t *data, size_t len, const ASN1_ITEM *it)
{
	void *obj = pki_d2i(data, len, it);

	if (obj == NULL)
		ERR_clear_error();
	return obj;
}

/* True for a DER SEQUENCE whose declared length runs past the end of the
 * data: a file cut short rather than one of another format.  *cert tells
 * whether its first element is a SEQUENCE too, as in a certificate
 * (PKCS#12 files and keys start with a version INTEGER). */
static bool truncated_der(const uint8_t *data, size_t len, bool *cert)
{
	const unsigned char *p = data;
	long body;
	int tag, cls, r;

	if (len < 2 || data[0] != 0x30 || len > LONG_MAX)
		return false;
	r = ASN1_get_object(&p, &body, &tag, &cls, (long)len);
	ERR_clear_error();
	/* 0x80 alone is a broken header; 0x80 with other bits is "too long". */
	if (r == 0x80 || (r & 0x80) == 0)
		return false;
	*cert = p < data + len && *p == 0x30;
	return true;
}

static int decode_der(dec *d, const uint8_t *data, size_t len)
{
	bool cert;
	void *obj;
	int rc;

	if (truncated_der(data, len, &cert))
		return cs_fail(d->err, CS_EINPUT, "%s: truncated or corrupt DER %s", d->what,
		               cert ? "certificate" : "file");
	if ((obj = try_der(data, len, ASN1_ITEM_rptr(X509))) != NULL) {
		d->out->format = "DER X.509";
		if (!cert_sound(obj)) {
			X509_free(obj);
			return pki_fail_ssl(d->err, CS_EINPUT,
			                    "%s: truncated or corrupt DER certificate", d->what);
		}
		return add_cert(d, obj);
	}
	if ((obj = try_der(data, len, ASN1_ITEM_rptr(PKCS7))) != NULL) {
		d->out->format = "PKCS#7 DER";
		rc = add_p7_certs(d, obj);
		PKCS7_free(obj);
		return rc;
	}
	if ((obj = try_der(data, len, ASN1_ITEM_rptr(PKCS12))) != NULL) {
		d->out->format = "PKCS#12";
		rc = decode_p12(d, obj);
		PKCS12_free(obj);
		return rc;
	}
	if ((obj = try_der(data, len, ASN1_ITEM_rptr(X509_REQ))) != NULL) {
		X509_REQ_free(obj);
		return is_csr(d);
	}
	if ((rc = decode_key(d, data, len, &d->out->format)) != 0)
		return rc < 0 ? -1 : 0;
	return cs_fail(d->err, CS_EINPUT,
	               "%s is not a certificate, key or PKCS#12 file (" ACCEPTED ")", d->what);
}

/* ---- PEM ------------------------------------------------------------------ */

enum block { B_SKIP, B_CERT, B_CSR, B_P7, B_KEY };

/* What a PEM block holds, from its name; parameters, public keys and CRLs
 * are skipped as they carry nothing to import. */
static enum block block_kind(const char *name)
{
	static const struct {
		const char *name;
		enum block kind;
	} kinds[] = {
	    {PEM_STRING_X509, B_CERT},    {PEM_STRING_X509_OLD, B_CERT},
	    {PEM_STRING_X509_REQ, B_CSR}, {PEM_STRING_X509_REQ_OLD, B_CSR},
	    {PEM_STRING_PKCS7, B_P7},     {PEM_STRING_PKCS7_SIGNED, B_P7},
	};
	size_t n = strlen(name), k = strlen(PEM_KEY_SUFFIX);

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcmp(name, kinds[i].name) == 0)
			return kinds[i].kind;
	/* "PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "RSA PRIVATE KEY", ... */
	if (n >= k && strcmp(name + n - k, PEM_KEY_SUFFIX) == 0)
		return B_KEY;
	return B_SKIP;
}

static int corrupt(dec *d, int index, const char *name)
{
	return pki_fail_ssl(d->err, CS_EINPUT, "%s: PEM block %d (%s) is corrupt", d->what, index,
	                    name);
}

static int pem_pass(char *buf, int size, int rwflag, void *u)
{
	const char *pass = u;
	size_t n = strlen(pass);

	(void)rwflag;
	if (n > (size_t)size)
		return -1;
	memcpy(buf, pass, n);
	return (int)n;
}

/* A key block, decrypted first when it has the legacy Proc-Type header. */
static int pem_key(dec *d, int index, const char *name, char *header, uint8_t *body, long len)
{
	EVP_CIPHER_INFO cipher;
	bool encrypted = false;
	int found;

	if (header[0] != '\0') {
		if (!PEM_get_EVP_CIPHER_INFO(header, &cipher))
			return corrupt(d, index, name);
		if (cipher.cipher != NULL) {
			if (d->password == NULL)
				return need_password(d);
			if (!PEM_do_header(&cipher, body, &len, pem_pass, (void *)d->password)) {
				ERR_clear_error();
				return wrong_password(d);
			}
			encrypted = true;
		}
	}
	found = decode_key(d, body, (size_t)len, NULL);
	if (found == 0)
		return encrypted ? wrong_password(d) : corrupt(d, index, name);
	return found < 0 ? -1 : 0;
}

static int pem_block(dec *d, int index, const char *name, char *header, uint8_t *body, long len)
{
	void *obj;
	int rc;

	switch (block_kind(name)) {
	case B_CERT:
		if ((obj = pki_d2i(body, (size_t)len, ASN1_ITEM_rptr(X509))) == NULL ||
		    !cert_sound(obj)) {
			X509_free(obj);
			return corrupt(d, index, name);
		}
		return add_cert(d, obj);
	case B_CSR:
		return is_csr(d);
	case B_P7:
		if ((obj = pki_d2i(body, (size_t)len, ASN1_ITEM_rptr(PKCS7))) == NULL)
			return corrupt(d, index, name);
		rc = add_p7_certs(d, obj);
		PKCS7_free(obj);
		return rc;
	case B_KEY:
		return pem_key(d, index, name, header, body, len);
	case B_SKIP:
		break;
	}
	return 0;
}

/* Reads the one block in text[0..len) (BEGIN line to END line). */
static int pem_read(dec *d, int index, const char *name, const char *text, size_t len)
{
	BIO *bio = len <= INT_MAX ? BIO_new_mem_buf(text, (int)len) : NULL;
	char *pname = NULL, *header = NULL;
	unsigned char *body = NULL;
	long blen = 0;
	int rc;

	/* The secure heap keeps key bytes out of ordinary memory. */
	if (bio == NULL || !PEM_read_bio_ex(bio, &pname, &header, &body, &blen, PEM_FLAG_SECURE))
		rc = corrupt(d, index, name);
	else
		rc = pem_block(d, index, name, header, body, blen);
	OPENSSL_secure_free(pname);
	OPENSSL_secure_free(header);
	OPENSSL_secure_clear_free(body, (size_t)blen);
	BIO_free(bio);
	return rc;
}

/* Finds each block by its BEGIN and END lines, so that a damaged one is
 * named by its place and type and text around the blocks is ignored. */
static int decode_pem(dec *d, const uint8_t *data, size_t len)
{
	const char *p = (const char *)data, *end = p + len;
	const char *begin, *name, *stop;
	char type[PEM_NAME_MAX + 1], endline[PEM_NAME_MAX + 16];
	size_t n;
	int index = 0, rc = 0;

	d->out->format = "PEM";
	while (rc == 0 && (begin = memmem(p, (size_t)(end - p), PEM_BEGIN, strlen(PEM_BEGIN)))) {
		index++;
		name = begin + strlen(PEM_BEGIN);
		stop = memmem(name, (size_t)(end - name), PEM_DASHES, strlen(PEM_DASHES));
		if (stop == NULL || (n = (size_t)(stop - name)) > PEM_NAME_MAX ||
		    memchr(name, '\n', n) != NULL)
			return cs_fail(d->err, CS_EINPUT,
			               "%s: PEM block %d has a malformed BEGIN line", d->what,
			               index);
		memcpy(type, name, n);
		type[n] = '\0';
		snprintf(endline, sizeof(endline), "-----END %s-----", type);
		if ((stop = memmem(stop, (size_t)(end - stop), endline, strlen(endline))) == NULL)
			return cs_fail(
			    d->err, CS_EINPUT,
			    "%s: PEM block %d (%s) has no END line: the file is cut short", d->what,
			    index, type);
		stop += strlen(endline);
		rc = pem_read(d, index, type, begin, (size_t)(stop - begin));
		p = stop;
	}
	return rc;
}

int pki_decode(const uint8_t *data, size_t len, const char *password, const char *what,
               pki_bundle *out, cs_err *err)
{
	dec d = {what != NULL ? what : "the input", password, out, err};
	int rc;

	memset(out, 0, sizeof(*out));
	if (len == 0)
		return cs_fail(err, CS_EINPUT, "%s is empty", d.what);
	if ((out->certs = sk_X509_new_null()) == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	if (memmem(data, len, PEM_BEGIN, strlen(PEM_BEGIN)) != NULL)
		rc = decode_pem(&d, data, len);
	else
		rc = decode_der(&d, data, len);
	if (rc == 0 && sk_X509_num(out->certs) == 0 && out->nkeys == 0)
		rc = cs_fail(err, CS_EINPUT,
		             "%s holds no certificate or private key (" ACCEPTED ")", d.what);
	ERR_clear_error();
	if (rc < 0)
		pki_bundle_free(out);
	return rc;
}

void pki_bundle_free(pki_bundle *b)
{
	sk_X509_pop_free(b->certs, X509_free);
	for (size_t i = 0; i < b->nkeys; i++)
		EVP_PKEY_free(b->keys[i]);
	free(b->keys);
	memset(b, 0, sizeof(*b));
}
