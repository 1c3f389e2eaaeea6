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

#include <sys/epoll.h>
#include <sys/wait.h>

int berth_epoll_add(int epfd, int fd, uint64_t token) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.u64 = token;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

int berth_epoll_wait(int epfd, uint64_t *tokens, int max, int timeout_ms) {
    struct epoll_event evs[64];
    if (max > 64) max = 64;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    for (int i = 0; i < n; i++) tokens[i] = evs[i].data.u64;
    return n;
}

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

int berth_wait_pidfd(int pidfd, int options, int *code, int *signaled) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED | options) != 0) return -1;
    if (info.si_pid == 0) return 0;
    *signaled = (info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED);
    *code = info.si_status;
    return 1;
}

int berth_syncfs(int fd) { return syncfs(fd); }

#include <sys/prctl.h>

int berth_set_child_subreaper(int on) { return prctl(PR_SET_CHILD_SUBREAPER, (unsigned long)(on != 0), 0UL, 0UL, 0UL); }

_Static_assert(BERTH_O_PATH == O_PATH, "BERTH_O_PATH must match O_PATH");

#include <sys/sysinfo.h>
#include <sys/vfs.h>

int berth_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int berth_epoll_del(int epfd, int fd) { return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL); }

uint64_t berth_total_ram(void) {
    struct sysinfo si;
    if (sysinfo(&si) != 0) return 0;
    return (uint64_t)si.totalram * (uint64_t)si.mem_unit;
}

long berth_statfs_type(const char *path) {
    struct statfs st;
    if (statfs(path, &st) != 0) return -1;
    return (long)st.f_type;
}

#include <sys/socket.h>

int berth_accept(int fd) { return accept4(fd, NULL, NULL, SOCK_CLOEXEC); }

#include <errno.h>

static int berth_sig_write_fd = -1;

static void berth_sig_handler(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    (void)!write(berth_sig_write_fd, &b, 1);
    errno = saved;
}

int berth_signal_pipe(const int *sigs, int count) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    // The read end blocks; only the handler's write end must never block.
    int fl = fcntl(fds[0], F_GETFL);
    if (fl >= 0) (void)fcntl(fds[0], F_SETFL, fl & ~O_NONBLOCK);
    berth_sig_write_fd = fds[1];
    for (int i = 0; i < count; i++) {
        struct sigaction old, sa;
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = berth_sig_handler;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        if (sigaction(sigs[i], &sa, NULL) != 0) return -1;
    }
    return fds[0];
}

#include <sys/ioctl.h>

int berth_get_winsize(int fd, unsigned short *rows, unsigned short *cols) {
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) != 0) return -1;
    *rows = ws.ws_row;
    *cols = ws.ws_col;
    return 0;
}
