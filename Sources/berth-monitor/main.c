// berth-monitor CONFIG: the per-container monitor (docs/monitor.md).
// berth-monitor --pause: the parent of a pod's pause process (pause.c).
//
// It starts the container's init through the same two-phase spawn as the agent
// (CBerthShim's berth_spawn_start / berth_spawn_finish), tells the agent how that went
// with one line on fd 3, then stays the init's parent: it copies the container's stdout
// and stderr into the CRI log, reaps the init through its pidfd and, once the log is
// complete, writes the exit file. The agent may come and go meanwhile.
//
// Memory: everything after start-up lives in fixed buffers (static or on the stack); the
// config is the only allocation and is freed once the container's child has its copy.
#define _GNU_SOURCE
#include "monitor.h"
#include "CBerthShim.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/// The write end of the ready pipe, by contract.
#define READY_FD 3

// READY_FD while the ready line is still to be written, then -1.
static int ready_fd = -1;

// The agent may be gone by now (EPIPE, and SIGPIPE is ignored): the container (or the
// pause process) runs on regardless, and the exit file (or its monitor's exit) will tell.
void ready_send(const char *line, size_t len) {
    if (ready_fd < 0) return;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(ready_fd, line + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            diag("write ready line: %s", errno_text(n < 0 ? errno : EIO));
            break;
        }
        done += (size_t)n;
    }
    close(ready_fd);
    ready_fd = -1;
}

// Tabs and newlines separate the fields and end the line: in a detail (which may quote
// a command name from the user) they become spaces.
static void copy_field(char *dst, size_t cap, const char *src) {
    size_t i = 0;
    for (; src[i] != '\0' && i + 1 < cap; i++) dst[i] = (src[i] == '\t' || src[i] == '\n') ? ' ' : src[i];
    dst[i] = '\0';
}

// No exit file: the container never ran (or was killed and reaped before this).
void fail_ready(const char *step, int err, const char *detail) {
    // The exec step's detail is the whole message ("exec \"x\": executable file not
    // found"), a config one a sentence; others name an object ("open /path").
    if (strcmp(step, "exec") == 0) diag("%s", detail);
    else if (strcmp(step, "config") == 0) diag("config: %s: %s", detail, errno_text(err));
    else diag("%s%s%s: %s", step, detail[0] != '\0' ? " " : "", detail, errno_text(err));
    char s[BERTH_SPAWN_STEP_MAX], d[MONITOR_DETAIL_MAX];
    copy_field(s, sizeof s, step);
    copy_field(d, sizeof d, detail);
    char line[sizeof s + sizeof d + 32];
    int len = snprintf(line, sizeof line, "error %s\t%d\t%s\n", s, err, d);
    ready_send(line, (size_t)len);
    _exit(1);
}

// The command name (field 2) may hold spaces and parentheses, so counting starts after
// the last ')'.
int proc_start_time(pid_t pid, unsigned long long *out, char *path, size_t cap) {
    (void)snprintf(path, cap, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[2048];
    ssize_t n;
    do { n = read(fd, buf, sizeof buf - 1); } while (n < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    if (n < 0) {
        errno = saved;
        return -1;
    }
    buf[n] = '\0';
    char *p = memrchr(buf, ')', (size_t)n);
    if (p == NULL) {
        errno = EPROTO;
        return -1;
    }
    p++;
    // After ')' come " <field 3> <field 4> ...": find the space before field 22.
    for (int field = 2; field < 22; field++) {
        p = strchr(p, ' ');
        if (p == NULL) {
            errno = EPROTO;
            return -1;
        }
        p++;
    }
    char *end;
    errno = 0;
    *out = strtoull(p, &end, 10);
    if (errno != 0 || end == p || (*end != ' ' && *end != '\n' && *end != '\0')) {
        errno = EPROTO;
        return -1;
    }
    return 0;
}

static void set_disposition(int sig, void (*handler)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    (void)sigaction(sig, &sa, NULL);
}

// BERTH_NS_NEW for NULL, else `path` opened for setns; an "open" error line on failure.
static int open_namespace(const char *path) {
    if (path == NULL) return BERTH_NS_NEW;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail_ready("open", errno, path);
    return fd;
}

// Writes `pid` in decimal to a cgroup.procs file (one write: the kernel takes one pid per write).
static int write_pid(const char *path, pid_t pid) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%d", (int)pid);
    ssize_t w;
    do { w = write(fd, buf, (size_t)n); } while (w < 0 && errno == EINTR);
    int e = errno;
    close(fd);
    if (w != n) { errno = w < 0 ? e : EIO; return -1; }
    return 0;
}

static struct monitor_config cfg;
static struct log_file log_file;
static struct log_stream streams[2];
static struct exit_file exit_file;
static char read_buf[16384];

int main(int argc, char **argv) {
    // 1. Descriptors. 0, 1 and 2 must be open, or the first files opened below would
    //    take their numbers and diagnostics would land in the log. fd 3 is the ready
    //    pipe (kept out of the container by FD_CLOEXEC, though the spawn closes it too).
    //    Anything else is closed: a stray copy of, say, another container's pipe would
    //    delay that pipe's EOF for as long as this container runs.
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) < 0) (void)open("/dev/null", O_RDWR);
    }
    if (fcntl(READY_FD, F_SETFD, FD_CLOEXEC) == 0) ready_fd = READY_FD;
    else diag("fd %d (the ready pipe) is not open", READY_FD);
    (void)close_range(READY_FD + 1, ~0U, 0);

    // 2. A session of our own: a Ctrl-C or SIGHUP meant for the agent's terminal or
    //    process group must not reach us. Already leading one (spawned with
    //    POSIX_SPAWN_SETSID) is as good; leading just a process group is not, and
    //    makes setsid fail.
    if (setsid() < 0 && getsid(0) != getpid()) fail_ready("setsid", errno, "");

    // 3. Signals. SIGPIPE ignored: a write to a vanished agent (the ready pipe) must fail
    //    with EPIPE, not kill us. SIGTERM, SIGINT and SIGHUP ignored: whoever signals our
    //    old process group or us must not orphan the container (the agent signals the
    //    container's init directly). The container does not inherit any of this: its
    //    child resets every disposition and the mask (spawn.c, step 2). SIGCHLD back to
    //    default: inherited as ignored it would make the kernel reap the init for us,
    //    and its status would be lost.
    set_disposition(SIGPIPE, SIG_IGN);
    set_disposition(SIGTERM, SIG_IGN);
    set_disposition(SIGINT, SIG_IGN);
    set_disposition(SIGHUP, SIG_IGN);
    set_disposition(SIGCHLD, SIG_DFL);
    //    Every file we create states its mode (log 0640, exit file 0644). The
    //    container's umask is set by spawn.c.
    (void)umask(0);

    // 3b. Pause mode (pause.c): the start-up above is the same, the rest is its own.
    if (argc == 2 && strcmp(argv[1], "--pause") == 0) return pause_main();

    // 4. The config, while the relative path given still means what the agent meant.
    if (argc != 2) fail_ready("config", EINVAL, "usage: berth-monitor CONFIG | berth-monitor --pause");
    int err = 0;
    char detail[MONITOR_DETAIL_MAX];
    if (config_load(argv[1], &cfg, &err, detail, sizeof detail) < 0) fail_ready("config", err, detail);
    diag_set_id(cfg.id);
    //    Hold no directory busy for the container's lifetime (an unmount elsewhere).
    if (chdir("/") < 0) fail_ready("chdir", errno, "/");

    // 5. Log and exit file before the container starts: a bad path is reported in the
    //    ready line, not discovered with output in hand or once the container is gone.
    if (log_open(&log_file, cfg.log_path, cfg.log_max_bytes, cfg.log_max_files) < 0) {
        fail_ready("open", errno, cfg.log_path);
    }
    if (exit_file_prepare(&exit_file, cfg.exit_path) < 0) fail_ready("exit file", errno, cfg.exit_path);

    // 6. The container's stdio: /dev/null and two pipes, all close-on-exec here (the
    //    child dup2s them onto 0, 1 and 2).
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) fail_ready("open", errno, "/dev/null");
    int out_pipe[2], err_pipe[2];
    if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0) fail_ready("pipe", errno, "");

    // 7. Spawn. The namespaces to join (network, and a pod's ipc, uts and pid) are
    //    opened here, so the child only uses descriptors (and the pid one is used by
    //    berth_spawn_start, before the clone). berth_spawn_finish returns once the
    //    command has exec'd or failed.
    int netns_fd = BERTH_NETNS_NEW;
    if (cfg.netns != NULL && strcmp(cfg.netns, "host") == 0) {
        netns_fd = BERTH_NETNS_HOST;
    } else if (cfg.netns != NULL) {
        netns_fd = open(cfg.netns, O_RDONLY | O_CLOEXEC);
        if (netns_fd < 0) fail_ready("open", errno, cfg.netns);
    }
    int ipcns_fd = open_namespace(cfg.ipcns);
    int utsns_fd = open_namespace(cfg.utsns);
    int pidns_fd = open_namespace(cfg.pidns);
    struct berth_spawn_config spawn = {
        .netns_fd = netns_fd,
        .ipcns_fd = ipcns_fd,
        .utsns_fd = utsns_fd,
        .pidns_fd = pidns_fd,
        .bind_sources = cfg.bind_sources,
        .bind_targets = cfg.bind_targets,
        .bind_count = cfg.bind_count,
        .rootfs = cfg.rootfs,
        .hostname = cfg.hostname,
        .workdir = cfg.cwd,
        .argv = cfg.argv,
        .envp = cfg.envp,
        .uid = cfg.uid,
        .gid = cfg.gid,
        .stdin_fd = null_fd,
        .stdout_fd = out_pipe[1],
        .stderr_fd = err_pipe[1],
        .harden = cfg.harden,
        .masked_paths = cfg.masked_paths,
        .masked_count = cfg.masked_count,
        .readonly_paths = cfg.readonly_paths,
        .readonly_count = cfg.readonly_count,
        .readonly_rootfs = cfg.readonly_rootfs,
        .mounts = cfg.mounts,
        .mount_count = cfg.mount_count,
        .cap_mask = cfg.cap_mask,
        .no_new_privs = cfg.no_new_privs,
        .seccomp_bpf = cfg.seccomp_bpf,
        .seccomp_len = cfg.seccomp_len,
    };
    struct berth_spawn_handle handle;
    if (berth_spawn_start(&spawn, &handle) < 0) fail_ready("clone", errno, "container process");
    //    Between the phases: into the container's cgroups, so that its limits hold
    //    before its command runs (and for everything it forks).
    for (int i = 0; i < cfg.cgroup_count; i++) {
        if (write_pid(cfg.cgroup_procs[i], handle.pid) < 0) {
            int e = errno;
            berth_spawn_abort(&handle);
            fail_ready("cgroup", e, cfg.cgroup_procs[i]);
        }
    }
    struct berth_spawn_error spawn_err;
    if (berth_spawn_finish(&handle, &spawn_err) < 0) fail_ready(spawn_err.step, spawn_err.err, spawn_err.detail);
    //    Our copies of the write ends go, or the pipes would never reach EOF.
    close(out_pipe[1]);
    close(err_pipe[1]);
    close(null_fd);
    if (netns_fd >= 0) close(netns_fd);
    if (ipcns_fd >= 0) close(ipcns_fd);
    if (utsns_fd >= 0) close(utsns_fd);
    if (pidns_fd >= 0) close(pidns_fd);
    config_release_spawn_data(&cfg);

    // 8. The ready line.
    unsigned long long start_time;
    char stat_path[64];
    if (proc_start_time(handle.pid, &start_time, stat_path, sizeof stat_path) < 0) {
        // The agent could not tell this process from a later one with the same pid.
        int saved = errno;
        berth_spawn_abort(&handle);
        fail_ready("read", saved, stat_path);
    }
    char line[64];
    int len = snprintf(line, sizeof line, "ok %d %llu\n", (int)handle.pid, start_time);
    ready_send(line, (size_t)len);
    diag("container started, pid %d", (int)handle.pid);

    // 9. Until the init has exited and both pipes are at EOF. The pipes end soon after
    //    the init: it is pid 1 of its pid namespace, and the kernel kills every process
    //    left in there when it dies, closing the last write ends. Reading on to EOF
    //    keeps what they wrote last.
    streams[0].name = "stdout";
    streams[1].name = "stderr";
    struct pollfd fds[3] = {
        { .fd = out_pipe[0], .events = POLLIN },
        { .fd = err_pipe[0], .events = POLLIN },
        { .fd = handle.pidfd, .events = POLLIN },
    };
    int exit_code = 255, exit_signal = 0;
    int64_t finished = 0;
    while (fds[0].fd >= 0 || fds[1].fd >= 0 || fds[2].fd >= 0) {
        // poll skips negative descriptors.
        if (poll(fds, 3, -1) < 0) {
            if (errno == EINTR) continue;
            // ENOMEM is the one failure that is not a bug; giving up would leave the
            // container without a reaper, so wait and try again.
            diag("poll: %s", errno_text(errno));
            struct timespec pause = { .tv_sec = 0, .tv_nsec = 100 * 1000 * 1000 };
            (void)nanosleep(&pause, NULL);
            continue;
        }
        // One read per ready stream per round, so neither can starve the other.
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || fds[i].revents == 0) continue;
            ssize_t n = read(fds[i].fd, read_buf, sizeof read_buf);
            if (n > 0) {
                log_input(&log_file, &streams[i], read_buf, (size_t)n, now_ns());
                continue;
            }
            if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (n < 0) diag("read %s: %s", streams[i].name, errno_text(errno));
            log_end(&log_file, &streams[i], now_ns());
            close(fds[i].fd);
            fds[i].fd = -1;
        }
        if (fds[2].fd >= 0 && fds[2].revents != 0) {
            int code = 0, signaled = 0;
            int reaped = berth_wait_pidfd(fds[2].fd, WNOHANG, &code, &signaled);
            if (reaped == 0 || (reaped < 0 && errno == EINTR)) continue;
            if (reaped < 0) {
                // Cannot happen to the parent of a live child; record an unknown end
                // rather than wait forever.
                diag("waitid: %s", errno_text(errno));
            } else {
                exit_code = signaled ? 128 + code : code;
                exit_signal = signaled ? code : 0;
            }
            finished = now_ns();
            close(fds[2].fd);
            fds[2].fd = -1;
        }
    }
    log_close(&log_file);

    // 10. The exit file, then exit 0: our exit is what the agent waits for.
    if (exit_file_write(&exit_file, exit_code, exit_signal, finished) < 0) {
        diag("write exit file %s: %s", cfg.exit_path, errno_text(errno));
        return 1;
    }
    diag("container exited: exit_code=%d signal=%d", exit_code, exit_signal);
    return 0;
}
