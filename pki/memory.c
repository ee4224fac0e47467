/* memory.c — every block OpenSSL frees is wiped first.
 *
 * OpenSSL 3.0's decoders copy a key's DER into buffers of their own (the
 * DER reader's BUF_MEM, the PKCS#8 re-encoding of EVP_PKCS82PKEY, the
 * encoders behind i2d) and free them without clearing: an AddressSanitizer
 * build, whose freed memory stays put, showed about twenty copies of an
 * imported RSA key's DER in the agent's heap.  Wiping on free in OpenSSL's
 * own allocator removes them all, including those of code paths not found
 * yet; the cost is a memset of each freed block. */
#include "pki_internal.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

static void *wiped_malloc(size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return malloc(n);
}

static void wiped_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	if (p == NULL)
		return;
	explicit_bzero(p, malloc_usable_size(p));
	free(p);
}

static void *wiped_realloc(void *p, size_t n, const char *file, int line)
{
	size_t old;
	void *q;

	if (p == NULL)
		return wiped_malloc(n, file, line);
	if (n == 0) {
		wiped_free(p, file, line);
		return NULL;
	}
	/* Never realloc in place: the old block could move and stay unwiped. */
	if ((q = malloc(n)) == NULL)
		return NULL;
	old = malloc_usable_size(p);
	memcpy(q, p, old < n ? old : n);
	wiped_free(p, file, line);
	return q;
}

bool pki_memory_init(void)
{
	return CRYPTO_set_mem_functions(wiped_malloc, wiped_realloc, wiped_free) == 1;
}
