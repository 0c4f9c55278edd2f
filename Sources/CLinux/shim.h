// Linux calls that Glibc's Swift overlay does not expose (they need _GNU_SOURCE).
#define _GNU_SOURCE 1
#include <fcntl.h>

/// Starts asynchronous write-back of a file range (no wait); see sync_file_range(2).
static inline int trove_start_writeback(int fd, long long offset, long long count) {
    return sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE);
}
