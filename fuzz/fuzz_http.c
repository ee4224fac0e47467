/* fuzz_http.c — libFuzzer target for the TLS endpoint's minimal HTTP parser
 * (tls_http_answer in tls/http.c): whatever a client sends after the
 * handshake.
 *
 * The input is the decrypted byte stream of one connection, cut at the
 * server's read buffer (8 KiB) and answered request by request as the
 * server's loop does, in a buffer of exactly its length so a read past the
 * end is caught.  Besides the sanitizers it checks what the server relies
 * on: a parser never claims more bytes than it was given, and every answer
 * is a whole HTTP/1.1 response. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../tls/tls_int.h"

#define SERVER_BUFFER 8192 /* HTTP_IN_MAX in tls/server_int.h */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const tls_http_info info = {"node-a", "primary", size % 2 ? "a.example" : "",
	                            size % 3 ? "0123abcd" : "", size % 5 != 0};
	size_t len = size < SERVER_BUFFER ? size : SERVER_BUFFER;
	char *in = malloc(len ? len : 1);
	size_t off = 0;

	if (in == NULL)
		return 0;
	memcpy(in, data, len);
	while (off < len) {
		char *out = NULL;
		size_t outlen = 0;
		bool keep = false;
		long used = tls_http_answer(in + off, len - off, SERVER_BUFFER, &info, &out,
		                            &outlen, &keep);

		if (used <= 0)
			break;
		if ((size_t)used > len - off || outlen < 12 || memcmp(out, "HTTP/1.1 ", 9) != 0 ||
		    memmem(out, outlen, "\r\n\r\n", 4) == NULL)
			__builtin_trap();
		free(out);
		off += (size_t)used;
		if (!keep)
			break;
	}
	free(in);
	return 0;
}
