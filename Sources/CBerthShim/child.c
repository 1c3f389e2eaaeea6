// Pieces shared by spawn.c and exec.c; see child.h for the rules every child follows.
#define _GNU_SOURCE
#include "child.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <pthread.h>
#include <stdint.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ---------------------------------------------------------------------------------------
// Fixed-buffer string helpers (async-signal-safe: they only touch the given buffers).

void berth_str_append(char *dst, size_t cap, const char *src) {
    size_t len = strlen(dst);
    while (*src != '\0' && len + 1 < cap) dst[len++] = *src++;
    dst[len] = '\0';
}

void berth_str_append_n(char *dst, size_t cap, const char *src, size_t n) {
    size_t len = strlen(dst);
    while (n > 0 && *src != '\0' && len + 1 < cap) { dst[len++] = *src++; n--; }
    dst[len] = '\0';
}

void berth_str_append_uint(char *dst, size_t cap, unsigned int v) {
    char digits[16];
    size_t n = 0;
    do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v != 0 && n < sizeof digits);
    char out[16];
    for (size_t i = 0; i < n; i++) out[i] = digits[n - 1 - i];
    berth_str_append_n(dst, cap, out, n);
}

// ---------------------------------------------------------------------------------------
// Child side.

// One write(2) of the record (292 bytes < PIPE_BUF, so it is atomic and the parent reads
// all of it or nothing). 127 is what shells use for "could not run the command"; the
// parent reports the record, not the status.
void berth_child_fail(int error_fd, const char *step, int err, const char *detail) {
    struct berth_spawn_error rec;
    memset(&rec, 0, sizeof rec);
    berth_str_append(rec.step, sizeof rec.step, step);
    rec.err = err;
    berth_str_append(rec.detail, sizeof rec.detail, detail != NULL ? detail : "");
    ssize_t n;
    do { n = write(error_fd, &rec, sizeof rec); } while (n < 0 && errno == EINTR);
    _exit(127);
}

// Called right after clone3: the child inherits every descriptor of the agent, including
// the pipes of other containers being spawned concurrently, and would keep their write
// ends open (delaying their EOF) until it execs.
void berth_close_all_but(unsigned int from, const int *keep, int n) {
    int sorted[BERTH_CHILD_MAX_KEEP];
    if (n > BERTH_CHILD_MAX_KEEP) n = BERTH_CHILD_MAX_KEEP;
    for (int i = 0; i < n; i++) {
        int j = i;
        while (j > 0 && sorted[j - 1] > keep[i]) { sorted[j] = sorted[j - 1]; j--; }
        sorted[j] = keep[i];
    }
    unsigned int low = from;
    for (int i = 0; i < n; i++) {
        if (sorted[i] < 0 || (unsigned int)sorted[i] < low) continue;
        if ((unsigned int)sorted[i] > low) (void)close_range(low, (unsigned int)sorted[i] - 1, 0);
        low = (unsigned int)sorted[i] + 1;
    }
    (void)close_range(low, ~0U, 0);
}

// glibc refuses its two internal signals (32, 33) with EINVAL; that is fine, execve
// resets caught signals anyway.
void berth_child_default_signals(void) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < _NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        (void)sigaction(sig, &dfl, NULL);
    }
}

// Copy the three descriptors above 2 first, so that moving one onto 0/1/2 cannot clobber
// another that happens to sit there (e.g. stdin=1, stdout=0).
void berth_child_stdio(int error_fd, const int fds[3]) {
    static const char *const names[3] = { "stdin", "stdout", "stderr" };
    int high[3];
    for (int i = 0; i < 3; i++) {
        high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
        CHECK(high[i], "stdio", names[i]);
    }
    for (int i = 0; i < 3; i++) {
        // dup2 clears FD_CLOEXEC on the new descriptor, so 0/1/2 survive execve.
        CHECK(dup2(high[i], i), "stdio", names[i]);
    }
}

// Copies the message of a failed exec of `name` into `out`, phrased the way docker does.
static void exec_message(char *out, size_t cap, const char *name, int err, int searched) {
    out[0] = '\0';
    berth_str_append(out, cap, "exec \"");
    berth_str_append(out, cap, name);
    berth_str_append(out, cap, "\": ");
    if (err == ENOENT && searched) {
        berth_str_append(out, cap, "executable file not found in $PATH");
    } else if (err == ENOENT) {
        berth_str_append(out, cap, "no such file or directory");
    } else if (err == EACCES) {
        berth_str_append(out, cap, "permission denied");
    } else {
        // strerrordesc_np returns a constant string: no locale lookup, no allocation.
        const char *desc = strerrordesc_np(err);
        size_t at = strlen(out);
        berth_str_append(out, cap, desc != NULL ? desc : "unknown error");
        if (out[at] >= 'A' && out[at] <= 'Z') out[at] = (char)(out[at] - 'A' + 'a');
    }
}

// execve, retried for up to ~100 ms on ETXTBSY. The kernel refuses to exec a file that
// some process has open for writing, and in a multi-threaded agent that process can be a
// sibling: another thread's freshly cloned child inherits, for the moment between its
// clone3 and its berth_close_all_but, the descriptor with which some thread is still
// writing (say, extracting) this very executable. The window is short; a short retry
// covers it.
static int execve_retrying(const char *path, char *const *argv, char *const *envp) {
    for (int attempt = 0; ; attempt++) {
        execve(path, argv, envp);
        if (errno != ETXTBSY || attempt == 50) return -1;
        struct timespec pause = { .tv_sec = 0, .tv_nsec = 2 * 1000 * 1000 };
        (void)nanosleep(&pause, NULL);
    }
}

void berth_child_exec(int error_fd, char *const *argv, char *const *envp) {
    char message[BERTH_SPAWN_DETAIL_MAX];
    const char *name = argv[0];
    if (name[0] == '\0') {
        exec_message(message, sizeof message, name, ENOENT, 0);
        berth_child_fail(error_fd, "exec", ENOENT, message);
    }
    if (strchr(name, '/') != NULL) {
        execve_retrying(name, argv, envp);
        int err = errno;
        exec_message(message, sizeof message, name, err, 0);
        berth_child_fail(error_fd, "exec", err, message);
    }
    // getenv would read the agent's environment; the first PATH= wins, as in getenv.
    const char *path = DEFAULT_PATH;
    for (char *const *e = envp; *e != NULL; e++) {
        if (strncmp(*e, "PATH=", 5) == 0) { path = *e + 5; break; }
    }
    size_t name_len = strlen(name);
    int saw_eacces = 0;
    const char *p = path;
    for (;;) {
        const char *end = strchr(p, ':');
        size_t dir_len = end != NULL ? (size_t)(end - p) : strlen(p);
        char candidate[4096];
        // An empty PATH element means the current directory, as in execvp.
        if (dir_len + 1 + name_len < sizeof candidate) {
            candidate[0] = '\0';
            if (dir_len == 0) berth_str_append(candidate, sizeof candidate, ".");
            else berth_str_append_n(candidate, sizeof candidate, p, dir_len);
            berth_str_append(candidate, sizeof candidate, "/");
            berth_str_append(candidate, sizeof candidate, name);
            execve_retrying(candidate, argv, envp);
            int err = errno;
            switch (err) {
            // Not in this directory: try the next one, like execvp.
            case ENOENT: case ENOTDIR: case ESTALE: case ELOOP: case ENODEV: case ETIMEDOUT: case ENAMETOOLONG:
                break;
            // Found but not executable here: remember it, a later directory may still work.
            case EACCES:
                saw_eacces = 1;
                break;
            // Found and failed for a real reason (ENOEXEC, E2BIG, ENOMEM, ...): report it.
            default:
                exec_message(message, sizeof message, name, err, 1);
                berth_child_fail(error_fd, "exec", err, message);
            }
        }
        if (end == NULL) break;
        p = end + 1;
    }
    int err = saw_eacces ? EACCES : ENOENT;
    exec_message(message, sizeof message, name, err, 1);
    berth_child_fail(error_fd, "exec", err, message);
}

// ---------------------------------------------------------------------------------------
// Parent side.

int berth_pipe_above_stdio(int fds[2]) {
    if (pipe2(fds, O_CLOEXEC) < 0) return -1;
    for (int i = 0; i < 2; i++) {
        if (fds[i] >= 3) continue;
        int moved = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
        if (moved < 0) {
            int saved = errno;
            close(fds[0]);
            close(fds[1]);
            errno = saved;
            return -1;
        }
        close(fds[i]);
        fds[i] = moved;
    }
    return 0;
}

void berth_close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

void berth_fill_error(struct berth_spawn_error *err, const char *step, int errnum, const char *detail) {
    memset(err, 0, sizeof *err);
    berth_str_append(err->step, sizeof err->step, step);
    err->err = errnum;
    berth_str_append(err->detail, sizeof err->detail, detail);
}

int berth_go_and_collect(int *sync_read, int *sync_write, int *error_read, struct berth_spawn_error *err) {
    // The go byte. The parent still holds the read end itself, so this cannot fail with
    // EPIPE (and raise SIGPIPE) even when the child has already died.
    ssize_t n;
    do { n = write(*sync_write, "g", 1); } while (n < 0 && errno == EINTR);
    if (n != 1) {
        berth_fill_error(err, "start", n < 0 ? errno : EIO, "write to sync pipe");
        return -1;
    }
    berth_close_fd(sync_write);
    berth_close_fd(sync_read);

    // EOF: every copy of the write end is gone, i.e. the child exec'd (O_CLOEXEC) or died
    // without a word (killed, e.g. by the OOM killer inside its new cgroup; the caller's
    // reaper then sees that status). Otherwise one complete record.
    struct berth_spawn_error rec;
    size_t got = 0;
    while (got < sizeof rec) {
        n = read(*error_read, (char *)&rec + got, sizeof rec - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    int read_errno = n < 0 ? errno : 0;
    berth_close_fd(error_read);
    if (got == 0 && read_errno == 0) return 0;

    if (got == sizeof rec) {
        rec.step[sizeof rec.step - 1] = '\0';
        rec.detail[sizeof rec.detail - 1] = '\0';
        *err = rec;
    } else {
        berth_fill_error(err, "start", read_errno != 0 ? read_errno : EPROTO, "short read from error pipe");
    }
    return -1;
}

void berth_kill_and_reap(int pidfd) {
    if (pidfd < 0) return;
    (void)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    siginfo_t info;
    int rc;
    do { rc = waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED); } while (rc < 0 && errno == EINTR);
}

int berth_clone_child(uint64_t flags, berth_child_body body, const void *cfg, pid_t *out_pid,
                      int *out_pidfd, int *sync_read, int *sync_write, int *error_read) {
    int sync_pipe[2], error_pipe[2];
    if (berth_pipe_above_stdio(sync_pipe) < 0) return -1;
    if (berth_pipe_above_stdio(error_pipe) < 0) {
        int saved = errno;
        close(sync_pipe[0]);
        close(sync_pipe[1]);
        errno = saved;
        return -1;
    }

    // Block every signal across clone3: the child must not run one of the parent's
    // handlers before it has reset them.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);

    int pidfd = -1;
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = flags | CLONE_PIDFD;
    args.pidfd = (uint64_t)(uintptr_t)&pidfd;
    // SIGCHLD so that ordinary waitpid/waitid sees the exit.
    args.exit_signal = SIGCHLD;
    // No stack: fork-like, the child continues on a copy of this stack.
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) {
        close(error_pipe[0]);
        body(cfg, sync_pipe[0], sync_pipe[1], error_pipe[1]);
        _exit(127);  // bodies never return; this is only a guard
    }
    int saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(error_pipe[1]);
    if (pid < 0) {
        close(sync_pipe[0]);
        close(sync_pipe[1]);
        close(error_pipe[0]);
        errno = saved;
        return -1;
    }
    *out_pid = (pid_t)pid;
    *out_pidfd = pidfd;
    *sync_read = sync_pipe[0];
    *sync_write = sync_pipe[1];
    *error_read = error_pipe[0];
    return 0;
}

void berth_abort_child(int *pidfd, int *sync_read, int *sync_write, int *error_read) {
    berth_kill_and_reap(*pidfd);
    berth_close_fd(pidfd);
    berth_close_fd(sync_write);
    berth_close_fd(sync_read);
    berth_close_fd(error_read);
}
