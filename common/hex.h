/* hex.h — lower-case hex for ids (SHA-256 of a leaf's DER) and digests. */
#ifndef CS_HEX_H
#define CS_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Writes 2*n hex digits and a NUL into out, which holds at least 2*n+1 bytes. */
void cs_hex(const uint8_t *bytes, size_t n, char *out);

/* Parses exactly 2*n hex digits (either case) into bytes; -1 when s is not that. */
int cs_unhex(const char *s, uint8_t *bytes, size_t n);

#endif
