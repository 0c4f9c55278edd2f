#ifndef TROVE_SHA256MB_H
#define TROVE_SHA256MB_H
#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU (and OS) runs the 16-lane AVX-512 SHA-256 kernel and it passed its
/// known-answer test; checked once. 0 otherwise: callers hash one message at a time.
int trove_sha256_mb_available(void);

/// SHA-256 of `count` independent messages, 16 at a time on AVX-512: message i is
/// `lengths[i]` bytes at `messages[i]`. Writes message i's digest to `out[4*i ..< 4*i+4]` as
/// four 64-bit words, each the big-endian reading of 8 digest bytes (ObjectID's w0…w3).
/// Only call when trove_sha256_mb_available() returned 1.
void trove_sha256_mb(const uint8_t *const *messages, const size_t *lengths, size_t count, uint64_t *out);

#endif
