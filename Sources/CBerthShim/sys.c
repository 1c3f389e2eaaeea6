// Syscalls glibc 2.36 does not wrap, or wraps only under _GNU_SOURCE.
#define _GNU_SOURCE
#include "CBerthShim.h"
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <pthread.h>
#include <linux/openat2.h>

int berth_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }

int berth_openat2(int dirfd, const char *path, int flags, mode_t mode, uint64_t resolve) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)flags;
    // The kernel rejects a mode unless O_CREAT or O_TMPFILE is set.
    how.mode = (flags & (O_CREAT | __O_TMPFILE)) ? mode : 0;
    how.resolve = resolve;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

int berth_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int berth_pidfd_send_signal(int pidfd, int sig) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

void berth_set_thread_name(const char *name) { (void)pthread_setname_np(pthread_self(), name); }

#include <sys/random.h>
ssize_t berth_getrandom(void *buf, size_t len) { return getrandom(buf, len, 0); }

int berth_syncfs(int fd) { return syncfs(fd); }

_Static_assert(BERTH_O_PATH == O_PATH, "BERTH_O_PATH must match O_PATH");
