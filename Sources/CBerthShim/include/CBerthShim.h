#ifndef CBERTH_SHIM_H
#define CBERTH_SHIM_H
// C parts of Berth: the pre-exec paths of a container's first process (spawn.c) and of
// a process joining a running container (exec.c), and syscalls that
// glibc does not wrap or that need _GNU_SOURCE (sys.c).
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "berth_spawn.h"
#include "berth_exec.h"

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
/// prctl(PR_SET_CHILD_SUBREAPER, on): orphaned descendants are reparented to the calling
/// process instead of init (prctl is variadic, which Swift cannot call).
int berth_set_child_subreaper(int on);

/// O_PATH (open(2)), which glibc's headers define only under _GNU_SOURCE.
#define BERTH_O_PATH 010000000

/// Routes the signals in `sigs` to a close-on-exec pipe, one byte (the signal number)
/// per signal, through an async-signal-safe handler; returns the pipe's read end or -1.
/// A signal the process inherited as ignored stays ignored (a background job's SIGINT).
int berth_signal_pipe(const int *sigs, int count);
/// The terminal size of `fd` (ioctl TIOCGWINSZ); -1 with errno when it is no terminal.
int berth_get_winsize(int fd, unsigned short *rows, unsigned short *cols);
/// accept4(fd, NULL, NULL, SOCK_CLOEXEC).
int berth_accept(int fd);
/// epoll_create1(EPOLL_CLOEXEC).
int berth_epoll_create(void);
/// epoll_ctl(EPOLL_CTL_DEL).
int berth_epoll_del(int epfd, int fd);
/// Total RAM in bytes (sysinfo(2)); 0 on failure.
uint64_t berth_total_ram(void);
/// The f_type of statfs(2) on `path`; -1 with errno on failure.
long berth_statfs_type(const char *path);
/// epoll_ctl(EPOLL_CTL_ADD) of `fd` for EPOLLIN with `token` as its data.
int berth_epoll_add(int epfd, int fd, uint64_t token);
/// epoll_wait(2); stores the ready tokens in `tokens` and returns how many.
int berth_epoll_wait(int epfd, uint64_t *tokens, int max, int timeout_ms);
/// waitid(P_PIDFD, pidfd, WEXITED | `options`): 1 with the status filled in when the
/// process was reaped, 0 when WNOHANG found it still running, -1 with errno on error.
/// `code` is the exit status, or the signal number when `signaled` is set.
int berth_wait_pidfd(int pidfd, int options, int *code, int *signaled);

#define BERTH_RESOLVE_NO_XDEV 0x01
#define BERTH_RESOLVE_NO_MAGICLINKS 0x02
#define BERTH_RESOLVE_NO_SYMLINKS 0x04
#define BERTH_RESOLVE_BENEATH 0x08
#define BERTH_RESOLVE_IN_ROOT 0x10

#endif
