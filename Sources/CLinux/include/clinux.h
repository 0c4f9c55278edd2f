#ifndef TROVE_CLINUX_H
#define TROVE_CLINUX_H
// Linux calls that Glibc's Swift overlay does not expose (they need _GNU_SOURCE), wrapped in
// plain functions so that no _GNU_SOURCE header reaches a Swift module.
#include <stddef.h>

/// O_DIRECT for open(2)/fcntl(2).
extern const int TROVE_O_DIRECT;

/// Starts asynchronous write-back of a file range (no wait); see sync_file_range(2).
int trove_start_writeback(int fd, long long offset, long long count);

/// A large anonymous buffer, backed by transparent huge pages where the kernel allows when
/// `huge` is non-zero (a 4 MiB buffer then costs two page faults instead of a thousand, and
/// direct I/O pins two pages instead of a thousand). NULL on failure.
void *trove_map_buffer(size_t count, int huge);
void trove_unmap_buffer(void *p, size_t count);

/// The share of a file's first `size` bytes that is in the page cache (0...1), or -1 when it
/// cannot be told. Maps the file without touching it and asks mincore(2).
double trove_resident_fraction(int fd, size_t size);

/// Flushes every written page of the file system `fd` is on, with one journal commit: for
/// many small files made durable together (a batch of refs). See syncfs(2).
int trove_syncfs(int fd);

#endif
