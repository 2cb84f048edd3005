// Linux system calls that Swift's Glibc module does not expose (they need _GNU_SOURCE).
#ifndef CKPT_SYSTEM_H
#define CKPT_SYSTEM_H
#include <stdint.h>
#include <sys/types.h>

/// copy_file_range(2): copies between two files inside the kernel. Returns bytes copied,
/// or -1 with errno set (ENOSYS where the kernel or libc lacks it).
ssize_t ckpt_copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len);


/// renameat2(RENAME_EXCHANGE): swaps two paths atomically. Returns 0, or -1 with errno
/// (EINVAL or ENOSYS where the file system or kernel cannot).
int ckpt_rename_exchange(const char *a, const char *b);

/// fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE): makes a byte range of a file read
/// as zeros without writing them (its blocks are freed, its cached pages dropped). Returns
/// 0, or -1 with errno (EOPNOTSUPP where the file system cannot).
int ckpt_punch_hole(int fd, int64_t offset, int64_t length);
#endif
