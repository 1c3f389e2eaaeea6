#ifndef BERTH_EXEC_H
#define BERTH_EXEC_H
// Running a new process inside a running container (`docker exec`), in two phases like
// berth_spawn_* (exec.c):
//
//   berth_exec_start   clone3 the "exec shim" (no new namespaces); it blocks on a sync
//                      pipe. The caller now has its pid and pidfd and may put it into the
//                      container's cgroup.
//   berth_exec_finish  let the shim go on: it joins the container's namespaces with
//                      setns(2) on the container init's pidfd and forks the real process,
//                      which execs the command. Returns 0 once exec succeeded, or -1 with
//                      the failed step in a berth_spawn_error.
//   berth_exec_abort   kill and reap a shim that was started but should not run.
//
// Why a shim: joining a pid namespace (setns CLONE_NEWPID) changes only where the
// caller's *children* go, so someone has to fork once more after setns. That someone, the
// shim, stays in the container's namespaces as the parent of the real process until it
// ends, and mirrors it: it exits with the same code, or dies of the same signal. Signals
// the caller sends the shim (TERM, INT, HUP, QUIT, USR1, USR2, WINCH) are forwarded to the
// real process. The caller therefore waits on and signals the shim's pidfd only; if the
// shim dies (SIGKILL), the real process is killed too (PR_SET_PDEATHSIG).
//
// Like spawn, everything is prepared before berth_exec_start: neither the shim nor the
// real process allocates.
#include "berth_spawn.h"
#include <stdint.h>
#include <sys/types.h>

/// What an exec needs. Read by the shim in its own copy of the address space, so it must
/// be complete when berth_exec_start is called; the caller may free it once that returns.
struct berth_exec_config {
    /// A pidfd of the container's init: its namespaces are the ones joined.
    int target_pidfd;
    /// Absolute working directory inside the container; it must exist (step "chdir
    /// workdir" fails otherwise, as `docker exec -w` does).
    const char *workdir;
    /// The command and its arguments, NULL-terminated; argv[0] is resolved like execvp
    /// does, but against the PATH in `envp`.
    char *const *argv;
    /// The process's environment, NULL-terminated.
    char *const *envp;
    /// The user and group the command runs as (supplementary groups are cleared).
    uid_t uid;
    gid_t gid;
    /// Descriptors that become the process's 0, 1 and 2 (they may be any numbers).
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;
    /// Non-zero: the first of stdin/stdout/stderr that is a terminal becomes the process's
    /// controlling terminal (TIOCSCTTY in its new session), so that ^C typed on it
    /// reaches the command as SIGINT. Step "tty" fails when none is a terminal.
    int tty;
    /// Non-zero: the same confinement as the container's own processes (docker applies
    /// the container's capabilities and seccomp profile to exec'd processes too):
    /// bounding/effective/permitted capabilities from `cap_mask` (none effective for a
    /// non-root uid), no_new_privs when `no_new_privs`, and the seccomp filter
    /// `seccomp_bpf` (`seccomp_len` sock_filter instructions; NULL: none).
    int harden;
    uint64_t cap_mask;
    int no_new_privs;
    const void *seccomp_bpf;
    unsigned int seccomp_len;
};

/// A started shim, between berth_exec_start and berth_exec_finish / berth_exec_abort.
struct berth_exec_handle {
    /// The shim's pid in the caller's pid namespace.
    pid_t pid;
    /// A pidfd for the shim (O_CLOEXEC); owned by the caller after a successful finish.
    int pidfd;
    // Private: the sync pipe and the read end of the error pipe, as in berth_spawn_handle.
    int sync_read;
    int sync_write;
    int error_read;
};

/// Clones the shim (clone3 with CLONE_PIDFD, exit signal SIGCHLD) and leaves it waiting.
/// Returns 0 and fills `out`, or -1 with errno set and nothing left behind.
int berth_exec_start(const struct berth_exec_config *cfg, struct berth_exec_handle *out);

/// Tells the shim to go on and waits until the real process has exec'd (returns 0;
/// `h->pid` and `h->pidfd` now belong to the caller, who reaps the shim) or something
/// failed (returns -1 with `err` filled: step "setns" with ESRCH when the container is
/// gone, "chdir workdir", "exec", ...; the shim has been reaped and `h->pidfd` closed).
int berth_exec_finish(struct berth_exec_handle *h, struct berth_spawn_error *err);

/// Kills (SIGKILL through the pidfd) and reaps a started shim and closes every descriptor
/// of `h`. Safe to call on a handle that was already finished or aborted.
void berth_exec_abort(struct berth_exec_handle *h);

/// Opens a pseudo-terminal on the agent's host: posix_openpt(/dev/ptmx), unlockpt, and
/// the slave opened through the master (TIOCGPTPEER, so no path lookup can be raced).
/// Both ends are O_CLOEXEC and O_NOCTTY; the window size is set to rows x cols.
/// Returns 0, or -1 with errno set and nothing left open.
///
/// The pty lives in the host's devpts, not in the container's own /dev/pts: a process
/// given the slave as stdio can use it fully (it is its controlling terminal, `stty`
/// works), but its path means nothing inside the container, so `tty`/ttyname(3) there
/// answer "not a tty". runc instead allocates inside the container and passes the master
/// back over a "console socket"; allocating here is simpler and is a documented
/// difference.
int berth_openpty(int *master, int *slave, unsigned short rows, unsigned short cols);

/// Sets a terminal's window size (TIOCSWINSZ on either end of a pty); the kernel sends
/// SIGWINCH to the terminal's foreground process group.
int berth_set_winsize(int fd, unsigned short rows, unsigned short cols);

#endif
