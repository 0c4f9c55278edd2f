#include "fastcdc.h"

// Four bytes per step. From the hash h before bytes b0..b3 (G = gear):
//   h1 = (h<<1) + G[b0], h2 = (h<<2) + (G[b0]<<1) + G[b1], ... h4 = (h<<4) + ...
// Every hi is computed from h, not from h(i-1), so the loop-carried chain is one shift and one
// add per four bytes; each position is still tested, in order, so the cuts are exactly those of
// the one-byte loop (Chunker.referenceCut, checked by the tests).
static inline size_t scan(const uint8_t *p, size_t i, size_t end, uint64_t *hp, uint64_t mask,
                          const uint64_t gear[256], int *found) {
    uint64_t h = *hp;
    while (i + 4 <= end) {
        uint64_t g0 = gear[p[i]], g1 = gear[p[i + 1]], g2 = gear[p[i + 2]], g3 = gear[p[i + 3]];
        uint64_t a1 = g0;
        uint64_t a2 = (g0 << 1) + g1;
        uint64_t a3 = (a2 << 1) + g2;
        uint64_t a4 = (a3 << 1) + g3;
        uint64_t h1 = (h << 1) + a1, h2 = (h << 2) + a2, h3 = (h << 3) + a3, h4 = (h << 4) + a4;
        if (__builtin_expect(((h1 & mask) == 0) | ((h2 & mask) == 0) | ((h3 & mask) == 0) | ((h4 & mask) == 0), 0)) {
            if ((h1 & mask) == 0) { *hp = h1; *found = 1; return i + 1; }
            if ((h2 & mask) == 0) { *hp = h2; *found = 1; return i + 2; }
            if ((h3 & mask) == 0) { *hp = h3; *found = 1; return i + 3; }
            *hp = h4; *found = 1; return i + 4;
        }
        h = h4;
        i += 4;
    }
    while (i < end) {
        h = (h << 1) + gear[p[i]];
        i += 1;
        if ((h & mask) == 0) { *hp = h; *found = 1; return i; }
    }
    *hp = h;
    *found = 0;
    return i;
}

size_t trove_fastcdc_cut(const uint8_t *p, size_t n, size_t min_size, size_t normal, size_t max_size,
                         uint64_t mask_s, uint64_t mask_l, const uint64_t gear[256]) {
    if (n <= min_size) return n;
    if (n > max_size) n = max_size;
    if (normal > n) normal = n;
    uint64_t h = 0;
    int found = 0;
    size_t i = scan(p, min_size, normal, &h, mask_s, gear, &found);
    if (found) return i;
    i = scan(p, i, n, &h, mask_l, gear, &found);
    return found ? i : n;
}
