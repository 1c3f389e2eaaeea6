// The pre-exec path of a container: clone3 into new namespaces, wait for the agent, set up
// mounts, pivot_root, host name, loopback, working dir and credentials, then execve.
//
// Rules for everything that runs in the child (from clone3 to execve or _exit):
//   * No malloc and no stdio: another thread of the agent may have held the malloc or
//     stdio lock at the moment of the clone, and the child would wait for it forever.
//   * Only plain syscall wrappers, plus string formatting into fixed buffers.
//   * Not even glibc's setuid/setgid/setgroups: in a multi-threaded process they
//     broadcast the change to every thread glibc knows of (SIGSETXID, under a lock).
//     After a raw clone3 glibc still believes those threads exist (it only resets its
//     thread list in fork()), so the child calls the syscalls directly.
//   * Every failure is reported as {step, errno, detail} over the error pipe, then
//     _exit(127). The pipe is O_CLOEXEC: EOF without a record means execve succeeded.
#define _GNU_SOURCE
#include "CBerthShim.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ---------------------------------------------------------------------------------------
// Fixed-buffer string helpers (async-signal-safe: they only touch the given buffers).

// Appends `src` to the NUL-terminated string in `dst`, truncating to `cap` - 1 bytes.
static void str_append(char *dst, size_t cap, const char *src) {
    size_t len = strlen(dst);
    while (*src != '\0' && len + 1 < cap) dst[len++] = *src++;
    dst[len] = '\0';
}

// Appends at most `n` bytes of `src`.
static void str_append_n(char *dst, size_t cap, const char *src, size_t n) {
    size_t len = strlen(dst);
    while (n > 0 && *src != '\0' && len + 1 < cap) { dst[len++] = *src++; n--; }
    dst[len] = '\0';
}

// ---------------------------------------------------------------------------------------
// Child side.

// Writes the error record with one write(2) (292 bytes < PIPE_BUF, so it is atomic and
// the parent reads all of it or nothing) and exits. 127 is what shells use for "could
// not run the command"; the parent reports the record, not the status.
__attribute__((noreturn))
static void child_fail(int error_fd, const char *step, int err, const char *detail) {
    struct berth_spawn_error rec;
    memset(&rec, 0, sizeof rec);
    str_append(rec.step, sizeof rec.step, step);
    rec.err = err;
    str_append(rec.detail, sizeof rec.detail, detail != NULL ? detail : "");
    ssize_t n;
    do { n = write(error_fd, &rec, sizeof rec); } while (n < 0 && errno == EINTR);
    _exit(127);
}

// Reports the current errno for `step` when `rc` is negative.
#define CHECK(rc, step, detail) \
    do { if ((rc) < 0) child_fail(error_fd, (step), errno, (detail)); } while (0)

// mkdir that accepts an existing directory but not a symlink or a file in its place:
// the rootfs comes from an image, and a "proc" symlink pointing at "/" would otherwise
// make us mount over the host's own directories (we have not pivoted yet).
static void ensure_dir(int error_fd, const char *name, mode_t mode, const char *shown) {
    if (mkdir(name, mode) < 0 && errno != EEXIST) child_fail(error_fd, "mkdir", errno, shown);
    struct stat st;
    CHECK(lstat(name, &st), "lstat", shown);
    if (!S_ISDIR(st.st_mode)) child_fail(error_fd, "mkdir", ENOTDIR, shown);
}

static void must_mount(int error_fd, const char *source, const char *target, const char *fstype,
                       unsigned long flags, const char *data, const char *shown) {
    CHECK(mount(source, target, fstype, flags, data), "mount", shown);
}

// Closes every descriptor >= 3 except those in `keep` (n of them). Called right after
// clone3: the child inherits every descriptor of the agent, including the pipes of other
// containers being spawned concurrently, and would keep their write ends open (delaying
// their EOF) until it execs.
static void close_all_but(const int *keep, int n) {
    int sorted[8];
    for (int i = 0; i < n; i++) {
        int j = i;
        while (j > 0 && sorted[j - 1] > keep[i]) { sorted[j] = sorted[j - 1]; j--; }
        sorted[j] = keep[i];
    }
    unsigned int low = 3;
    for (int i = 0; i < n; i++) {
        if (sorted[i] < 0 || (unsigned int)sorted[i] < low) continue;
        if ((unsigned int)sorted[i] > low) (void)close_range(low, (unsigned int)sorted[i] - 1, 0);
        low = (unsigned int)sorted[i] + 1;
    }
    (void)close_range(low, ~0U, 0);
}

// Turns on IFF_UP on "lo": a new network namespace starts with its loopback down, and
// programs expect 127.0.0.1 to work.
static void loopback_up(int error_fd) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(s, "loopback", "socket");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    str_append(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    CHECK(ioctl(s, SIOCGIFFLAGS, &ifr), "loopback", "SIOCGIFFLAGS lo");
    ifr.ifr_flags |= IFF_UP;
    CHECK(ioctl(s, SIOCSIFFLAGS, &ifr), "loopback", "SIOCSIFFLAGS lo");
    close(s);
}

// mkdir -p of an absolute path, as docker does for a missing working directory. The
// directories are created as root with mode 0755 (before the uid switch), like runc.
static void make_workdir(int error_fd, const char *path) {
    char buf[4096];
    if (strlen(path) >= sizeof buf) child_fail(error_fd, "mkdir workdir", ENAMETOOLONG, path);
    buf[0] = '\0';
    str_append(buf, sizeof buf, path);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0755) < 0 && errno != EEXIST) child_fail(error_fd, "mkdir workdir", errno, buf);
            *p = saved;
            if (saved == '\0') break;
        }
    }
}

// Copies the message of a failed exec of `name` into `out`, phrased the way docker does.
static void exec_message(char *out, size_t cap, const char *name, int err, int searched) {
    out[0] = '\0';
    str_append(out, cap, "exec \"");
    str_append(out, cap, name);
    str_append(out, cap, "\": ");
    if (err == ENOENT && searched) {
        str_append(out, cap, "executable file not found in $PATH");
    } else if (err == ENOENT) {
        str_append(out, cap, "no such file or directory");
    } else if (err == EACCES) {
        str_append(out, cap, "permission denied");
    } else {
        // strerrordesc_np returns a constant string: no locale lookup, no allocation.
        const char *desc = strerrordesc_np(err);
        size_t at = strlen(out);
        str_append(out, cap, desc != NULL ? desc : "unknown error");
        if (out[at] >= 'A' && out[at] <= 'Z') out[at] = (char)(out[at] - 'A' + 'a');
    }
}

// execve, retried for up to ~100 ms on ETXTBSY. The kernel refuses to exec a file that
// some process has open for writing, and in a multi-threaded agent that process can be a
// sibling: another thread's freshly cloned child inherits, for the moment between its
// clone3 and its close_all_but, the descriptor with which some thread is still writing
// (say, extracting) this very executable. The window is short; a short retry covers it.
static int execve_retrying(const char *path, char *const *argv, char *const *envp) {
    for (int attempt = 0; ; attempt++) {
        execve(path, argv, envp);
        if (errno != ETXTBSY || attempt == 50) return -1;
        struct timespec pause = { .tv_sec = 0, .tv_nsec = 2 * 1000 * 1000 };
        (void)nanosleep(&pause, NULL);
    }
}

// Resolves argv[0] like execvp(3), but with PATH from the container's own environment
// (the agent's PATH says nothing about the image), and execs it. Returns only on failure.
__attribute__((noreturn))
static void exec_command(int error_fd, char *const *argv, char *const *envp) {
    char message[BERTH_SPAWN_DETAIL_MAX];
    const char *name = argv[0];
    if (name[0] == '\0') {
        exec_message(message, sizeof message, name, ENOENT, 0);
        child_fail(error_fd, "exec", ENOENT, message);
    }
    if (strchr(name, '/') != NULL) {
        execve_retrying(name, argv, envp);
        int err = errno;
        exec_message(message, sizeof message, name, err, 0);
        child_fail(error_fd, "exec", err, message);
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
            if (dir_len == 0) str_append(candidate, sizeof candidate, ".");
            else str_append_n(candidate, sizeof candidate, p, dir_len);
            str_append(candidate, sizeof candidate, "/");
            str_append(candidate, sizeof candidate, name);
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
                child_fail(error_fd, "exec", err, message);
            }
        }
        if (end == NULL) break;
        p = end + 1;
    }
    int err = saw_eacces ? EACCES : ENOENT;
    exec_message(message, sizeof message, name, err, 1);
    child_fail(error_fd, "exec", err, message);
}

// The child, from clone3 to execve. Every step says why it is where it is.
__attribute__((noreturn))
static void child_main(const struct berth_spawn_config *cfg, int sync_read, int sync_write, int error_fd) {
    // 1. First of all, drop every inherited descriptor that is not ours: the sooner, the
    //    shorter the window in which we hold other spawns' pipes and files other threads
    //    are writing (see close_all_but and execve_retrying). Our own copy of the sync
    //    pipe's write end goes too, so that if the agent dies the read below sees EOF.
    close(sync_write);
    int keep[] = { sync_read, error_fd, cfg->stdin_fd, cfg->stdout_fd, cfg->stderr_fd };
    close_all_but(keep, (int)(sizeof keep / sizeof keep[0]));

    // 2. Signals. The parent blocked everything around clone3 so that none of the agent's
    //    handlers can run here (they are Swift code and would touch the agent's state in
    //    a copy of it). Reset every disposition to SIG_DFL first, then unblock: an ignored
    //    signal would stay ignored across execve, and a caught one must not fire before
    //    it. glibc refuses its two internal signals (32, 33) with EINVAL; that is fine,
    //    execve resets caught signals anyway.
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < _NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        (void)sigaction(sig, &dfl, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    (void)pthread_sigmask(SIG_SETMASK, &none, NULL);

    // 3. Wait for the go byte. Until then the agent puts us into cgroups and moves network
    //    interfaces into our namespace; everything below must happen inside those limits.
    //    EOF without a byte means the agent gave up (or died): leave quietly.
    char go;
    ssize_t n;
    do { n = read(sync_read, &go, 1); } while (n < 0 && errno == EINTR);
    if (n != 1) _exit(127);
    close(sync_read);

    // 4. A session of our own: the container must not share the agent's controlling
    //    terminal or receive its job-control signals.
    CHECK(setsid(), "setsid", "");

    // 5. stdio. Copy the three descriptors above 2 first, so that moving one onto 0/1/2
    //    cannot clobber another that happens to sit there (e.g. stdin=1, stdout=0).
    int stdio[3] = { cfg->stdin_fd, cfg->stdout_fd, cfg->stderr_fd };
    int high[3];
    for (int i = 0; i < 3; i++) {
        high[i] = fcntl(stdio[i], F_DUPFD_CLOEXEC, 3);
        CHECK(high[i], "stdio", i == 0 ? "stdin" : i == 1 ? "stdout" : "stderr");
    }
    for (int i = 0; i < 3; i++) {
        // dup2 clears FD_CLOEXEC on the new descriptor, so 0/1/2 survive execve.
        CHECK(dup2(high[i], i), "stdio", i == 0 ? "stdin" : i == 1 ? "stdout" : "stderr");
    }

    // 6. Everything >= 3 close-on-exec, so the command starts with exactly 0, 1 and 2.
    //    The error pipe is among them: its EOF tells the parent that execve succeeded.
    CHECK(close_range(3, ~0U, CLOSE_RANGE_CLOEXEC), "close_range", "");

    // 7. Mount propagation: our mount namespace is a copy of the host's, and mounts
    //    may still be shared with it. Make everything private before mounting anything,
    //    so nothing we do here propagates back to the host.
    must_mount(error_fd, NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL, "/ (make private)");

    // 8. Bind the rootfs onto itself: pivot_root needs the new root to be a mount point.
    //    Then work inside it with relative paths: chdir after the bind, so "." is the
    //    bind mount and not the directory underneath it.
    must_mount(error_fd, cfg->rootfs, cfg->rootfs, NULL, MS_BIND | MS_REC, NULL, cfg->rootfs);
    CHECK(chdir(cfg->rootfs), "chdir", cfg->rootfs);

    // 9. /proc, /sys, /dev. Devices made with mknod get exactly mode 0666: no umask.
    (void)umask(0);
    ensure_dir(error_fd, "proc", 0555, "/proc");
    ensure_dir(error_fd, "sys", 0555, "/sys");
    ensure_dir(error_fd, "dev", 0755, "/dev");
    //    proc of our own pid namespace (we are its pid 1), so the container sees its
    //    processes only.
    must_mount(error_fd, "proc", "proc", "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL, "/proc");
    //    sysfs read-only: a container must not tune the host's kernel or devices. In a
    //    new network namespace it shows only that namespace's interfaces.
    must_mount(error_fd, "sysfs", "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL, "/sys");
    //    A private /dev with the handful of devices every program expects, never the host's
    //    (not nodev, of course: the nodes live on it).
    must_mount(error_fd, "tmpfs", "dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k", "/dev");
    static const struct { const char *name; const char *shown; unsigned int major, minor; } devices[] = {
        { "dev/null", "/dev/null", 1, 3 },       { "dev/zero", "/dev/zero", 1, 5 },
        { "dev/full", "/dev/full", 1, 7 },       { "dev/random", "/dev/random", 1, 8 },
        { "dev/urandom", "/dev/urandom", 1, 9 }, { "dev/tty", "/dev/tty", 5, 0 },
    };
    for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++) {
        CHECK(mknod(devices[i].name, S_IFCHR | 0666, makedev(devices[i].major, devices[i].minor)),
              "mknod", devices[i].shown);
    }
    //    A devpts instance of our own, so the container's ptys are not the host's.
    ensure_dir(error_fd, "dev/pts", 0755, "/dev/pts");
    must_mount(error_fd, "devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
               "newinstance,ptmxmode=0666,mode=0620,gid=5", "/dev/pts");
    CHECK(symlink("pts/ptmx", "dev/ptmx"), "symlink", "/dev/ptmx");
    ensure_dir(error_fd, "dev/shm", 01777, "/dev/shm");
    must_mount(error_fd, "shm", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
               "mode=1777,size=65536k", "/dev/shm");
    //    POSIX message queues of our own IPC namespace (mqueue binds to the mounter's).
    ensure_dir(error_fd, "dev/mqueue", 0755, "/dev/mqueue");
    must_mount(error_fd, "mqueue", "dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, "/dev/mqueue");
    CHECK(symlink("/proc/self/fd", "dev/fd"), "symlink", "/dev/fd");
    CHECK(symlink("/proc/self/fd/0", "dev/stdin"), "symlink", "/dev/stdin");
    CHECK(symlink("/proc/self/fd/1", "dev/stdout"), "symlink", "/dev/stdout");
    CHECK(symlink("/proc/self/fd/2", "dev/stderr"), "symlink", "/dev/stderr");
    //    The umask the command starts with: 0022, the OCI/runc default.
    (void)umask(022);

    // 10. pivot_root without a put_old directory: pivot_root(".", ".") stacks the old root
    //     on top of the new one at "."; detaching "." then drops the old root (and with it
    //     every host mount) from this namespace. chroot would leave the host's root
    //     reachable; pivot_root does not.
    CHECK(syscall(SYS_pivot_root, ".", "."), "pivot_root", "");
    CHECK(umount2(".", MNT_DETACH), "umount old root", "");
    CHECK(chdir("/"), "chdir", "/");

    // 11. Host name of our UTS namespace.
    size_t hostname_len = strlen(cfg->hostname);
    if (hostname_len > 0) CHECK(sethostname(cfg->hostname, hostname_len), "sethostname", cfg->hostname);

    // 12. Loopback up in our network namespace.
    loopback_up(error_fd);

    // 13. Working directory: created when missing (as root, before the uid switch, so an
    //     unprivileged user gets it too), then entered.
    make_workdir(error_fd, cfg->workdir);
    CHECK(chdir(cfg->workdir), "chdir workdir", cfg->workdir);

    // 14. Credentials, in this order: supplementary groups and the gid need privilege to
    //     change, so they go first; setuid goes last, after it we could no longer setgid.
    //     Raw syscalls, not glibc's wrappers (see the top of this file).
    CHECK(syscall(SYS_setgroups, 0, NULL), "setgroups", "");
    CHECK(syscall(SYS_setresgid, cfg->gid, cfg->gid, cfg->gid), "setgid", "");
    CHECK(syscall(SYS_setresuid, cfg->uid, cfg->uid, cfg->uid), "setuid", "");

    // 15. execve, searching the container's PATH. Reports "exec" on failure.
    exec_command(error_fd, cfg->argv, cfg->envp);
}

// ---------------------------------------------------------------------------------------
// Parent side.

// pipe2(O_CLOEXEC) whose ends are both >= 3, so that the child's dup2 onto 0/1/2 can
// never clobber them even when the agent runs with one of its stdio slots closed.
static int pipe_above_stdio(int fds[2]) {
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

int berth_spawn_start(const struct berth_spawn_config *cfg, struct berth_spawn_handle *out) {
    out->pid = -1;
    out->pidfd = -1;
    out->sync_read = out->sync_write = out->error_read = -1;

    int sync_pipe[2], error_pipe[2];
    if (pipe_above_stdio(sync_pipe) < 0) return -1;
    if (pipe_above_stdio(error_pipe) < 0) {
        int saved = errno;
        close(sync_pipe[0]);
        close(sync_pipe[1]);
        errno = saved;
        return -1;
    }

    // Block every signal across clone3: the child must not run one of the agent's
    // handlers before it has reset them (step 1 in child_main).
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);

    int pidfd = -1;
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_PIDFD;
    args.pidfd = (uint64_t)(uintptr_t)&pidfd;
    // SIGCHLD so that ordinary waitpid/waitid (the agent's reaper) sees the exit.
    args.exit_signal = SIGCHLD;
    // No stack: fork-like, the child continues on a copy of this stack.
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) {
        close(error_pipe[0]);
        child_main(cfg, sync_pipe[0], sync_pipe[1], error_pipe[1]);
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
    out->pid = (pid_t)pid;
    out->pidfd = pidfd;
    out->sync_read = sync_pipe[0];
    out->sync_write = sync_pipe[1];
    out->error_read = error_pipe[0];
    return 0;
}

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

static void fill_error(struct berth_spawn_error *err, const char *step, int errnum, const char *detail) {
    memset(err, 0, sizeof *err);
    str_append(err->step, sizeof err->step, step);
    err->err = errnum;
    str_append(err->detail, sizeof err->detail, detail);
}

int berth_spawn_finish(struct berth_spawn_handle *h, struct berth_spawn_error *err) {
    // The go byte. The parent still holds the read end itself, so this cannot fail with
    // EPIPE (and raise SIGPIPE) even when the child has already died.
    ssize_t n;
    do { n = write(h->sync_write, "g", 1); } while (n < 0 && errno == EINTR);
    if (n != 1) {
        fill_error(err, "start", n < 0 ? errno : EIO, "write to sync pipe");
        berth_spawn_abort(h);
        return -1;
    }
    close_fd(&h->sync_write);
    close_fd(&h->sync_read);

    // EOF: every copy of the write end is gone, i.e. the child exec'd (O_CLOEXEC) or died
    // without a word (killed, e.g. by the OOM killer inside its new cgroup; the caller's
    // reaper then sees that status). Otherwise one complete record.
    struct berth_spawn_error rec;
    size_t got = 0;
    while (got < sizeof rec) {
        n = read(h->error_read, (char *)&rec + got, sizeof rec - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    int read_errno = n < 0 ? errno : 0;
    close_fd(&h->error_read);
    if (got == 0 && read_errno == 0) return 0;

    if (got == sizeof rec) {
        rec.step[sizeof rec.step - 1] = '\0';
        rec.detail[sizeof rec.detail - 1] = '\0';
        *err = rec;
    } else {
        fill_error(err, "start", read_errno != 0 ? read_errno : EPROTO, "short read from error pipe");
    }
    // The child is on its way out (_exit(127)); SIGKILL changes nothing, the reap is the point.
    berth_spawn_abort(h);
    return -1;
}

void berth_spawn_abort(struct berth_spawn_handle *h) {
    if (h->pidfd >= 0) {
        (void)syscall(SYS_pidfd_send_signal, h->pidfd, SIGKILL, NULL, 0);
        // Reap through the pidfd, not the pid: the pid could have been reaped and reused
        // already. ECHILD (a P_ALL reaper got there first) is fine.
        siginfo_t info;
        int rc;
        do { rc = waitid((idtype_t)P_PIDFD, (id_t)h->pidfd, &info, WEXITED); } while (rc < 0 && errno == EINTR);
    }
    close_fd(&h->pidfd);
    close_fd(&h->sync_write);
    close_fd(&h->sync_read);
    close_fd(&h->error_read);
    h->pid = -1;
}
