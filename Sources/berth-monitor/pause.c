// berth-monitor --pause: the parent of a pod's pause process (docs/monitor.md, "Pause
// mode").
//
// A pod whose containers share a pid namespace needs a living pid 1 in it: when a pid
// namespace's init dies the kernel kills every other process in it and creates no new
// one there, and orphans are reparented to it, so it must reap them. The agent pins a
// pod's other namespaces with bind mounts (no process), but a pid namespace without its
// init is useless, so here is one:
//
//   agent ──posix_spawn──▶ berth-monitor --pause    (the agent's pid namespace)
//                            │ unshare(CLONE_NEWPID)
//                            └──fork──▶ berth-pause (pid 1 of the new namespace)
//
// The pause process is this binary's own code after fork, no exec: it sleeps in
// sigsuspend, reaps every child on SIGCHLD, and exits 0 on SIGTERM or SIGINT (taking
// the pod's processes with it: the kernel kills them when pid 1 exits). It allocates
// nothing, mounts nothing and holds no descriptor but 0-2 (/dev/null). The monitor
// reports it on the ready pipe ("ok <pid> <start time>", as for a container's init),
// waits for it and exits 0 when it has exited. The pod's containers join the namespace
// through CONFIG `pidns` = /proc/<pid>/ns/pid (or a pin of it).
#define _GNU_SOURCE
#include "monitor.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

// ---------------------------------------------------------------------------------------
// The pause process.

// Set by the SIGTERM/SIGINT handler; read between two sigsuspend calls.
static volatile sig_atomic_t stop_requested;

static void on_stop(int sig) {
    (void)sig;
    stop_requested = 1;
}

// Nothing to do in the handler: its only purpose is to end sigsuspend (a signal whose
// action is the default "ignore", as SIGCHLD's is, would not). The reaping happens in
// the loop.
static void on_child(int sig) {
    (void)sig;
}

// From fork to _exit. SIGTERM, SIGINT and SIGCHLD are blocked on entry (the parent
// blocked them across fork). Nothing here can fail with the arguments it gets.
__attribute__((noreturn))
static void pause_child(int null_fd) {
    // 1. The name tools show (ps, /proc/PID/comm): how people, and the agent's checks,
    //    recognise a pod's pause process. No exec, so it would otherwise be berth-monitor.
    (void)prctl(PR_SET_NAME, "berth-pause", 0, 0, 0);

    // 2. Handlers, while the signals are still blocked: one that arrived since the
    //    agent learned our pid is pending and runs in the first sigsuspend. Until now
    //    SIGTERM and SIGINT were ignored (inherited from the monitor, main.c step 3):
    //    delivered then, they would have been lost. As pid 1 of a namespace we only
    //    receive, from outside it, the signals we have a handler for (and SIGKILL): the
    //    kernel drops the rest (SIGHUP stays ignored as inherited, SIGPIPE cannot occur).
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    (void)sigaction(SIGTERM, &sa, NULL);
    (void)sigaction(SIGINT, &sa, NULL);
    //    SA_NOCLDSTOP: a stopped child needs no reaping.
    sa.sa_handler = on_child;
    sa.sa_flags = SA_NOCLDSTOP;
    (void)sigaction(SIGCHLD, &sa, NULL);

    // 3. Descriptors: /dev/null on 0, 1 and 2 (the monitor's diagnostics file is not
    //    ours to hold open for the pod's lifetime), everything else closed, last: that
    //    closes our copy of the ready pipe (the agent must not wait for our exit to see
    //    its EOF) and the start pipe's write end, whose EOF tells the parent that the
    //    steps above are done.
    for (int fd = 0; fd < 3; fd++) (void)dup2(null_fd, fd);
    (void)close_range(3, ~0U, 0);

    // 4. Sleep and reap. The signals stay blocked outside sigsuspend, which unblocks
    //    them atomically while it waits: a SIGCHLD or SIGTERM that arrives between the
    //    checks below and the sleep is not missed, it ends the sleep. Every exited child
    //    is reaped, ours or an orphan reparented to us (the pod's containers' orphans
    //    are).
    sigset_t wait_mask;
    sigemptyset(&wait_mask);
    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
        if (stop_requested) _exit(0);
        (void)sigsuspend(&wait_mask);
    }
}

// ---------------------------------------------------------------------------------------
// The monitor: main.c's start-up is done (descriptors 0-3, session, signals, umask).

int pause_main(void) {
    diag_set_id("pause");

    // 1. Hold no directory busy for the pod's lifetime.
    if (chdir("/") < 0) fail_ready("chdir", errno, "/");

    // 2. What the pause process needs, made before the fork so that it has nothing
    //    left that can fail: /dev/null for its 0-2, and the start pipe (close-on-exec,
    //    though nobody execs).
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0) fail_ready("open", errno, "/dev/null");
    int start_pipe[2];
    if (pipe2(start_pipe, O_CLOEXEC) < 0) fail_ready("pipe", errno, "");

    // 3. The pid namespace. unshare(CLONE_NEWPID) does not move us: it decides where
    //    our children are created, and the first one becomes pid 1 of the new namespace.
    //    We fork nothing else (after pid 1's death a fork there fails anyway).
    if (unshare(CLONE_NEWPID) < 0) fail_ready("unshare", errno, "pid namespace");

    // 4. The pause process. SIGTERM, SIGINT and SIGCHLD blocked across the fork, so that
    //    it inherits them blocked (see pause_child, step 2). fork(3), not a raw clone3:
    //    this process is single-threaded, so glibc's atfork handlers are harmless.
    sigset_t blocked, old;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGCHLD);
    (void)sigprocmask(SIG_BLOCK, &blocked, &old);
    pid_t pid = fork();
    if (pid == 0) pause_child(null_fd);
    int saved = errno;
    (void)sigprocmask(SIG_SETMASK, &old, NULL);
    close(start_pipe[1]);
    close(null_fd);
    if (pid < 0) fail_ready("fork", saved, "pause process");

    // 5. Wait until the pause process has named itself and installed its handlers: the
    //    start pipe's EOF (its last setup step closes its copy). Only then is it what
    //    the ready line promises.
    char byte;
    ssize_t n;
    do { n = read(start_pipe[0], &byte, 1); } while (n < 0 && errno == EINTR);
    close(start_pipe[0]);
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) fail_ready("start", ESRCH, "pause process exited");

    // 6. The ready line, in the format of a container's (main.c step 8): the pause
    //    process's pid as the agent sees it (ours is the agent's pid namespace) and its
    //    start time. Without the start time the agent could not tell it from a later
    //    process with the same pid.
    unsigned long long start_time;
    char stat_path[64];
    if (proc_start_time(pid, &start_time, stat_path, sizeof stat_path) < 0) {
        saved = errno;
        (void)kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        fail_ready("read", saved, stat_path);
    }
    char line[64];
    int len = snprintf(line, sizeof line, "ok %d %llu\n", (int)pid, start_time);
    ready_send(line, (size_t)len);
    diag("pause process started, pid %d", (int)pid);

    // 7. Until the pause process exits (SIGTERM/SIGINT from the agent, or SIGKILL).
    //    Ours is the only child there is: the pod's processes are its children, not
    //    ours. Exit 0 either way: how it ended is in the diagnostics, and the pod's end
    //    is what the agent waits for.
    pid_t reaped;
    do { reaped = waitpid(pid, &status, 0); } while (reaped < 0 && errno == EINTR);
    if (reaped < 0) diag("waitpid: %s", errno_text(errno));
    else if (WIFSIGNALED(status)) diag("pause process killed by signal %d", WTERMSIG(status));
    else diag("pause process exited: exit_code=%d", WEXITSTATUS(status));
    return 0;
}
