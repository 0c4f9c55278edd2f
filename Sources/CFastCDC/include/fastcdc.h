#ifndef TROVE_FASTCDC_H
#define TROVE_FASTCDC_H
#include <stddef.h>
#include <stdint.h>

/// The FastCDC inner loop (Docs/format.md §Chunking): length of the chunk starting at `p`,
/// given `n` available bytes. Gear hash from position `min_size` (h = 0 there), cut after the
/// first position where (h & mask) == 0, with `mask_s` before `normal` and `mask_l` after;
/// a cut at min(n, max_size) when none matches.
size_t trove_fastcdc_cut(const uint8_t *p, size_t n, size_t min_size, size_t normal, size_t max_size,
                         uint64_t mask_s, uint64_t mask_l, const uint64_t gear[256]);

#endif
