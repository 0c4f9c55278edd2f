#define _GNU_SOURCE 1
#include "clinux.h"
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

const int TROVE_O_DIRECT = O_DIRECT;

int trove_start_writeback(int fd, long long offset, long long count) {
    return sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE);
}

void *trove_map_buffer(size_t count, int huge) {
    void *p = mmap(NULL, count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    if (huge) madvise(p, count, MADV_HUGEPAGE);
    return p;
}

void trove_unmap_buffer(void *p, size_t count) { munmap(p, count); }

double trove_resident_fraction(int fd, size_t size) {
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

int trove_syncfs(int fd) { return syncfs(fd); }
