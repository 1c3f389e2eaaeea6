#ifndef CBERTH_SHIM_H
#define CBERTH_SHIM_H
// C parts of Berth: the pre-exec path of a container (spawn.c) and syscalls that
// glibc does not wrap or that need _GNU_SOURCE (sys.c).
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// pipe2(2).
int berth_pipe2(int fds[2], int flags);
/// openat2(2) with `resolve` flags (RESOLVE_*); returns -1 and sets errno on failure.
int berth_openat2(int dirfd, const char *path, int flags, mode_t mode, uint64_t resolve);
/// pidfd_open(2).
int berth_pidfd_open(pid_t pid);
/// getrandom(2), flags 0.
ssize_t berth_getrandom(void *buf, size_t len);
/// pthread_setname_np(3) for the calling thread.
void berth_set_thread_name(const char *name);
/// pidfd_send_signal(2).
int berth_pidfd_send_signal(int pidfd, int sig);
/// syncfs(2): flush the file system holding `fd` (glibc declares it only under _GNU_SOURCE).
int berth_syncfs(int fd);

/// O_PATH (open(2)), which glibc's headers define only under _GNU_SOURCE.
#define BERTH_O_PATH 010000000

#define BERTH_RESOLVE_NO_XDEV 0x01
#define BERTH_RESOLVE_NO_MAGICLINKS 0x02
#define BERTH_RESOLVE_NO_SYMLINKS 0x04
#define BERTH_RESOLVE_BENEATH 0x08
#define BERTH_RESOLVE_IN_ROOT 0x10

#endif
