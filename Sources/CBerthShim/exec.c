// Running a new process inside a running container (`docker exec`): clone3 the exec shim,
// which joins the container's namespaces with setns(2) and forks the real process, which
// execs the command. See berth_exec.h for the why; the order of every step is below.
//
//   agent ──clone3──▶ shim (agent's child; host pid namespace; joins ipc/uts/net/pid/mnt)
//                      └──clone3──▶ real process (container pid namespace) ──execve──▶ cmd
//
// Everything in the shim and the real process follows the rules at the top of child.h:
// no malloc, no stdio, raw credential syscalls, every failure reported as
// {step, errno, detail} over the close-on-exec error pipe. The shim, which lives on after
// the clone, keeps to the same rules:
//   * it forks the real process with a raw clone3 too: glibc's fork(3) runs atfork
//     handlers that take the malloc locks, possibly held by an agent thread at our clone.
//   * it signals itself with kill(2) of getpid(2), not raise(3): after a raw clone3 the
//     thread descriptor glibc keeps still describes the agent's thread, and direct
//     syscalls depend on nothing in it.
#define _GNU_SOURCE
#include "CBerthShim.h"
#include "child.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

// The signals a shim passes on to the real process. SIGKILL cannot be caught: killing the
// shim kills the real process through PR_SET_PDEATHSIG instead. SIGSTOP/SIGCONT are not
// forwarded (stopping the shim stops only the shim).
static const int forwarded_signals[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH };

// The namespaces an exec joins: all that berth_spawn_start creates. Since Linux 5.8,
// setns(2) on a pidfd joins them all at once, or none.
#define JOINED_NAMESPACES (CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWNS)

// ---------------------------------------------------------------------------------------
// The real process, from the shim's clone3 to execve. It is already in all the
// container's namespaces: the pid namespace because the shim joined it before cloning,
// the others inherited from the shim.

__attribute__((noreturn))
static void real_main(const struct berth_exec_config *cfg, int error_fd, int lifeline) {
    // 1. Signals. Dispositions are SIG_DFL already (the shim reset them); the mask is the
    //    shim's (forwarded signals and SIGCHLD blocked). Unblocking lets a signal the shim
    //    forwarded in the meantime take effect now, with its default action.
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);

    // 2. A session of our own, so that a terminal can become our controlling one and its
    //    job control (^C, ^Z) applies to the command and its children, not to the shim.
    CHECK(setsid(), "setsid", "");

    // 3. Controlling terminal: TIOCSCTTY on the first stdio descriptor that is a terminal,
    //    while we are a session leader without one. ^C on it is then SIGINT to the
    //    foreground process group, as in `docker exec -it`.
    int stdio[3] = { cfg->stdin_fd, cfg->stdout_fd, cfg->stderr_fd };
    if (cfg->tty) {
        int ctty = -1;
        for (int i = 0; i < 3 && ctty < 0; i++) {
            if (isatty(stdio[i])) ctty = stdio[i];
        }
        if (ctty < 0) berth_child_fail(error_fd, "tty", ENOTTY, "none of stdin, stdout and stderr is a terminal");
        CHECK(ioctl(ctty, TIOCSCTTY, 0), "tty", "TIOCSCTTY");
    }

    // 4. stdio onto 0, 1 and 2; 5. everything else close-on-exec, the error pipe included:
    //    its EOF tells the agent that execve succeeded.
    berth_child_stdio(error_fd, stdio);
    CHECK(close_range(3, ~0U, CLOSE_RANGE_CLOEXEC), "close_range", "");

    // 6. The umask the command starts with: 0022, as for the container's first process.
    (void)umask(022);

    // 7. Working directory, which must exist (docker exec -w does not create it). Relative
    //    to the container's root: setns(CLONE_NEWNS) moved our root and cwd there. Tried
    //    as root first; on EACCES/EPERM (a root-squashed NFS volume, say) once more after
    //    the uid switch, when the user may have access where root has not (as runc does).
    int chdir_again = 0;
    if (chdir(cfg->workdir) < 0) {
        if (errno != EACCES && errno != EPERM) berth_child_fail(error_fd, "chdir workdir", errno, cfg->workdir);
        chdir_again = 1;
    }

    // 7b. (Hardened, as the container's first process, spawn.c step 13b) the bounding set
    //     shrinks to the container's capabilities while we are still root; without
    //     no_new_privs, seccomp goes in now, while we still hold CAP_SYS_ADMIN.
    if (cfg->harden) {
        berth_drop_bounding_caps(error_fd, cfg->cap_mask);
        if (!cfg->no_new_privs && cfg->seccomp_bpf != NULL) berth_load_seccomp(error_fd, cfg->seccomp_bpf, cfg->seccomp_len);
    }

    // 8. Credentials: groups and gid while we still may, the uid last. Raw syscalls.
    CHECK(syscall(SYS_setgroups, 0, NULL), "setgroups", "");
    CHECK(syscall(SYS_setresgid, cfg->gid, cfg->gid, cfg->gid), "setgid", "");
    CHECK(syscall(SYS_setresuid, cfg->uid, cfg->uid, cfg->uid), "setuid", "");
    if (chdir_again) CHECK(chdir(cfg->workdir), "chdir workdir", cfg->workdir);

    // 9. Die with the shim: the agent knows only the shim, so a real process outliving it
    //    could be neither waited for nor signalled. After the credential change, which
    //    clears the parent-death signal. If the shim died before this line, no signal
    //    will come: the lifeline pipe, whose only write end the shim holds, tells.
    //    (The kernel clears the setting again when the command is a set-user-ID program;
    //    such a command survives a SIGKILLed shim.)
    CHECK(prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), "prctl", "PR_SET_PDEATHSIG");
    struct pollfd life = { .fd = lifeline, .events = POLLIN, .revents = 0 };
    if (poll(&life, 1, 0) > 0 && (life.revents & (POLLHUP | POLLERR)) != 0) _exit(127);

    // 9b. (Hardened) effective and permitted capabilities after the uid switch; then
    //     no_new_privs and, last before execve, seccomp (spawn.c step 14b).
    if (cfg->harden) {
        berth_set_caps(error_fd, cfg->cap_mask, cfg->uid);
        if (cfg->no_new_privs) {
            CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1UL, 0UL, 0UL, 0UL), "no_new_privs", "");
            if (cfg->seccomp_bpf != NULL) berth_load_seccomp(error_fd, cfg->seccomp_bpf, cfg->seccomp_len);
        }
    }

    // 10. execve, searching the PATH of the exec's environment. Reports "exec" on failure.
    berth_child_exec(error_fd, cfg->argv, cfg->envp);
}

// ---------------------------------------------------------------------------------------
// The shim.

// Ends the shim the way the real process ended (its waitid status): the same exit code,
// or death by the same signal, so that the agent's waitid on the shim reads like one on
// the real process.
__attribute__((noreturn))
static void mirror_exit(const siginfo_t *status) {
    if (status->si_code == CLD_EXITED) _exit(status->si_status);
    int sig = status->si_status;
    // No core file of the shim: the real process dumped its own if it was to.
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    (void)sigaction(sig, &dfl, NULL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    (void)sigprocmask(SIG_UNBLOCK, &one, NULL);
    // kill(2) of our own pid, not raise(3): see the top of this file. The signal is
    // unblocked and SIG_DFL, so it is delivered (and kills) before kill returns.
    (void)syscall(SYS_kill, (pid_t)syscall(SYS_getpid), sig);
    // Only reached for a signal whose default action does not kill; a shell's encoding.
    _exit(128 + sig);
}

__attribute__((noreturn))
static void shim_main(const struct berth_exec_config *cfg, int sync_read, int sync_write, int error_fd) {
    // 1. Drop every inherited descriptor that is not ours, first thing (see spawn.c).
    //    Our copy of the sync pipe's write end goes too: if the agent dies, the read in
    //    step 3 sees EOF.
    close(sync_write);
    int keep[] = { sync_read, error_fd, cfg->target_pidfd, cfg->stdin_fd, cfg->stdout_fd, cfg->stderr_fd };
    berth_close_all_but(3, keep, (int)(sizeof keep / sizeof keep[0]));

    // 2. Signals. Every disposition back to SIG_DFL (the agent blocked everything around
    //    clone3, so none of its handlers ran here). The signals we forward and SIGCHLD stay
    //    blocked for good: the loop in step 8 takes them with sigwaitinfo, and one that
    //    arrives before it is kept pending, not lost. All others are unblocked.
    berth_child_default_signals();
    sigset_t waited;
    sigemptyset(&waited);
    sigaddset(&waited, SIGCHLD);
    for (size_t i = 0; i < sizeof forwarded_signals / sizeof forwarded_signals[0]; i++) {
        sigaddset(&waited, forwarded_signals[i]);
    }
    (void)sigprocmask(SIG_SETMASK, &waited, NULL);

    // 3. Wait for the go byte (the agent may put us into the container's cgroup first;
    //    the real process inherits it). EOF without a byte: the agent gave up.
    char go;
    ssize_t n;
    do { n = read(sync_read, &go, 1); } while (n < 0 && errno == EINTR);
    if (n != 1) _exit(127);
    close(sync_read);

    // 4. A session of our own: off the agent's terminal, so that ^C typed at a foreground
    //    agent does not reach us (and through us the real process).
    CHECK(setsid(), "setsid", "");

    // 5. Join the container: ipc, uts, net and mnt for ourselves (mnt also moves our root
    //    and cwd to the container's root), pid for the children we create from now on.
    //    ESRCH: the container's init has exited.
    CHECK(setns(cfg->target_pidfd, JOINED_NAMESPACES), "setns", "");
    close(cfg->target_pidfd);

    // 6. The lifeline for step 9 of real_main: we hold its only write end until we die.
    int lifeline[2];
    CHECK(berth_pipe_above_stdio(lifeline), "pipe", "lifeline");

    // 7. The real process: a raw clone3, fork-like (no flags), SIGCHLD on exit. It lands
    //    in the container's pid namespace; ENOMEM here means that namespace is dying.
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) {
        close(lifeline[1]);
        real_main(cfg, error_fd, lifeline[0]);
    }
    CHECK(pid, "fork", "");

    //    From here on we hold nothing but the lifeline: not the error pipe (its EOF must
    //    mean "exec'd"), not stdio (a reader of the command's stdout must see EOF when the
    //    command closes it, a writer to its stdin EPIPE), not even our own 0, 1 and 2.
    int keep_life[] = { lifeline[1] };
    berth_close_all_but(0, keep_life, 1);

    // 8. Forward signals until the real process ends, then end the same way.
    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&waited, &info);
        if (sig < 0) continue; // EINTR (e.g. after SIGSTOP/SIGCONT of the shim)
        if (sig != SIGCHLD) {
            // Safe by pid: the real process is our unreaped child, its pid cannot be reused.
            (void)syscall(SYS_kill, (pid_t)pid, sig);
            continue;
        }
        siginfo_t status;
        memset(&status, 0, sizeof status);
        int rc = waitid(P_PID, (id_t)pid, &status, WEXITED | WNOHANG);
        if (rc < 0 && errno == EINTR) continue;
        if (rc < 0) _exit(127); // cannot happen: nobody else reaps our child
        if (status.si_pid == (pid_t)pid) mirror_exit(&status);
        // A SIGCHLD for a stop or continue, or coalesced: keep waiting.
    }
}

// ---------------------------------------------------------------------------------------
// Agent side.

static void exec_body(const void *cfg, int sync_read, int sync_write, int error_fd) {
    shim_main((const struct berth_exec_config *)cfg, sync_read, sync_write, error_fd);
}

int berth_exec_start(const struct berth_exec_config *cfg, struct berth_exec_handle *out) {
    out->pid = -1;
    out->pidfd = -1;
    out->sync_read = out->sync_write = out->error_read = -1;
    // No CLONE_NEW*: the shim joins the container's namespaces with setns instead.
    return berth_clone_child(0, exec_body, cfg,
                             &out->pid, &out->pidfd, &out->sync_read, &out->sync_write, &out->error_read);
}

int berth_exec_finish(struct berth_exec_handle *h, struct berth_spawn_error *err) {
    if (berth_go_and_collect(&h->sync_read, &h->sync_write, &h->error_read, err) == 0) return 0;
    // The failing process is on its way out (_exit(127)) and the shim after it; killing
    // the shim also kills a real process that has not gone yet (PR_SET_PDEATHSIG).
    berth_exec_abort(h);
    return -1;
}

void berth_exec_abort(struct berth_exec_handle *h) {
    berth_abort_child(&h->pidfd, &h->sync_read, &h->sync_write, &h->error_read);
    h->pid = -1;
}

// ---------------------------------------------------------------------------------------
// Pseudo-terminals (on the agent's host; see berth_exec.h for why that is acceptable).

int berth_set_winsize(int fd, unsigned short rows, unsigned short cols) {
    struct winsize ws;
    memset(&ws, 0, sizeof ws);
    ws.ws_row = rows;
    ws.ws_col = cols;
    return ioctl(fd, TIOCSWINSZ, &ws);
}

int berth_openpty(int *master, int *slave, unsigned short rows, unsigned short cols) {
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) return -1;
    int s = -1;
    // grantpt is a no-op on devpts (the kernel creates the slave with the right owner),
    // kept for the record; unlockpt is what makes the slave openable.
    if (grantpt(m) < 0 || unlockpt(m) < 0) goto fail;
    // The slave through the master (Linux 4.13): no ptsname path to look up, which would
    // resolve in whatever /dev/pts our mount namespace has, and could be raced.
    s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) goto fail;
    if (berth_set_winsize(m, rows, cols) < 0) goto fail;
    *master = m;
    *slave = s;
    return 0;
fail:;
    int saved = errno;
    if (s >= 0) close(s);
    close(m);
    errno = saved;
    return -1;
}
