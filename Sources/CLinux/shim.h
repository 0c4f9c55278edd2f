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
