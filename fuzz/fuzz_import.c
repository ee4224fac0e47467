/* fuzz_import.c — libFuzzer target for the import decoder (pki_decode in
 * pki/decode.c): the bytes of a file an operator imports, in any format
 * (DER/PEM certificates and keys, PKCS#8 plain and encrypted, PKCS#12,
 * PKCS#7, OpenSSL legacy keys).
 *
 * Built twice: fuzz_import decodes without a password, as `certsync import
 * FILE` does; fuzz_import_password (FUZZ_PASSWORD defined) with the one the
 * seed corpus's encrypted files use, so the fuzzer gets past the MAC and
 * into the bags and the decrypted keys.  What import does next with a
 * success runs too: each certificate inspected, each key turned into the
 * PKCS#8 that gets sealed.  A success must hold at least one certificate or
 * key, and a failure must leave the bundle empty. */
#include <stdint.h>
#include <stdlib.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "../common/log.h"
#include "../pki/pki.h"

#ifdef FUZZ_PASSWORD
#define PASSWORD FUZZ_PASSWORD
#else
#define PASSWORD NULL
#endif

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	cs_log_set_level(CS_LOG_ERROR);
	return 0;
}

/* What ops_import does with each decoded certificate and key. */
static void use_bundle(const pki_bundle *b)
{
	cs_err err;

	for (int i = 0; i < sk_X509_num(b->certs); i++) {
		pki_cert_info info;

		if (pki_cert_inspect(sk_X509_value(b->certs, i), &info, &err) == 0)
			pki_cert_info_free(&info);
	}
	for (size_t i = 0; i < b->nkeys; i++) {
		uint8_t *der;
		size_t len;

		if (pki_key_to_der(b->keys[i], &der, &len, &err) == 0)
			OPENSSL_secure_clear_free(der, len);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	pki_bundle b = {0};
	cs_err err = {0};

	if (pki_decode(data, size, PASSWORD, "fuzz.input", &b, &err) == 0) {
		if (b.certs == NULL || (sk_X509_num(b.certs) == 0 && b.nkeys == 0))
			__builtin_trap();
		use_bundle(&b);
		pki_bundle_free(&b);
	} else if ((b.certs != NULL && sk_X509_num(b.certs) != 0) || b.nkeys != 0 ||
	           err.code != CS_EINPUT || err.msg[0] == '\0') {
		__builtin_trap();
	}
	ERR_clear_error();
	return 0;
}
