// Linux calls that Glibc's Swift overlay does not expose (they need _GNU_SOURCE).
#define _GNU_SOURCE 1
#include <fcntl.h>

/// Starts asynchronous write-back of a file range (no wait); see sync_file_range(2).
static inline int trove_start_writeback(int fd, long long offset, long long count) {
    return sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE);
}

#include <sys/mman.h>
#include <stddef.h>

/// A large anonymous buffer backed by transparent huge pages where the kernel allows: a 4 MiB
/// buffer then costs two page faults instead of a thousand. NULL on failure.
static inline void *trove_map_buffer(size_t count) {
    void *p = mmap(NULL, count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    madvise(p, count, MADV_HUGEPAGE);
    return p;
}

static inline void trove_unmap_buffer(void *p, size_t count) { munmap(p, count); }

#include <stdlib.h>

/// The share of a file's first `size` bytes that is in the page cache (0...1), or -1 when it
/// cannot be told. Maps the file without touching it and asks mincore(2).
static inline double trove_resident_fraction(int fd, size_t size) {
    if (size == 0) return 1.0;
    void *p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return -1.0;
    size_t page = 4096, pages = (size + page - 1) / page, resident = 0;
    unsigned char *vec = (unsigned char *)malloc(pages);
    double result = -1.0;
    if (vec && mincore(p, size, vec) == 0) {
        for (size_t i = 0; i < pages; i++) resident += vec[i] & 1;
        result = (double)resident / (double)pages;
    }
    free(vec);
    munmap(p, size);
    return result;
}
