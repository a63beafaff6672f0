// Header-only shim: operating-system calls that Swift's Glibc module does not export
// (glibc declares them only under _GNU_SOURCE). No stable API: only GramEngine uses it.
#ifndef NTK_CSYSTEM_H
#define NTK_CSYSTEM_H

#if defined(__linux__)
#include <sys/types.h>
int sync_file_range(int fd, __off64_t offset, __off64_t nbytes, unsigned int flags);
#endif

#include <errno.h>
#include <fcntl.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

/// Keeps freed blocks of up to `mmap_threshold` bytes in the heap (rather than mapping
/// each such allocation afresh, zeroed page by page, and unmapping it when freed), and
/// returns heap memory to the system only past `trim_threshold` free bytes at its top.
/// glibc's mallopt; elsewhere nothing.
static inline void ntk_keep_heap(int mmap_threshold, int trim_threshold) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, mmap_threshold);
    mallopt(M_TRIM_THRESHOLD, trim_threshold);
#else
    (void)mmap_threshold; (void)trim_threshold;
#endif
}

/// Opens `path` for reading with O_DIRECT (transfers between the device and the caller's
/// buffer, no page cache: offsets, lengths and buffers must be aligned to the device's
/// logical block). glibc names the flag O_DIRECT only under _GNU_SOURCE; __O_DIRECT is
/// always there. Returns -1 with errno set where the file system refuses it (tmpfs).
static inline int ntk_open_read_direct(const char *path) {
#if defined(__linux__) && defined(__O_DIRECT)
    return open(path, O_RDONLY | O_CLOEXEC | __O_DIRECT);
#else
    (void)path;
    return -1;
#endif
}

/// Opens the existing file `path` for writing with O_DIRECT. Returns -1 with errno set
/// where the file system refuses direct I/O (EINVAL on tmpfs).
static inline int ntk_open_write_direct(const char *path) {
#if defined(__linux__) && defined(__O_DIRECT)
    return open(path, O_WRONLY | O_CLOEXEC | __O_DIRECT);
#else
    (void)path;
    errno = EINVAL;
    return -1;
#endif
}

/// Turns on O_DIRECT for an open file descriptor (fcntl F_SETFL). Returns -1 with errno
/// set (EINVAL) where the file system refuses direct I/O; the descriptor is then unchanged.
/// (Opening a new file with O_CREAT | O_DIRECT on such a file system creates the file and
/// then fails, leaving it behind: create first, then ask for direct I/O.)
static inline int ntk_set_direct(int fd) {
#if defined(__linux__) && defined(__O_DIRECT)
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    return fcntl(fd, F_SETFL, flags | __O_DIRECT);
#else
    (void)fd;
    errno = EINVAL;
    return -1;
#endif
}

/// Starts writing the dirty pages of [offset, offset + length) of a file to disk and
/// returns at once (Linux sync_file_range with SYNC_FILE_RANGE_WRITE); a no-op elsewhere.
static inline int ntk_start_writeback(int fd, long long offset, long long length) {
#if defined(__linux__)
    return sync_file_range(fd, offset, length, 2 /* SYNC_FILE_RANGE_WRITE */);
#else
    (void)fd; (void)offset; (void)length;
    return 0;
#endif
}

#endif
