#ifndef BERTH_SPAWN_H
#define BERTH_SPAWN_H
// The pre-exec path of a container, in two phases (spawn.c):
//
//   berth_spawn_start   clone3 the child into a new mount namespace and into new or joined
//                       ipc, uts, pid and network namespaces (a pod's containers share
//                       all but the mount one); it blocks on a sync pipe. The caller now
//                       has its pid and pidfd and may put it into cgroups.
//   berth_spawn_finish  let the child go on: join the given ipc/uts/network namespaces,
//                       mounts, pivot_root, hostname, loopback, working dir, credentials,
//                       execve. Returns 0 once exec succeeded, or -1 with the failed step
//                       in a berth_spawn_error.
//   berth_spawn_abort   kill and reap a child that was started but should not run.
//
// Everything the child needs is prepared by the caller before berth_spawn_start: the child
// never allocates and calls nothing but plain syscalls and fixed-buffer string formatting.
#include <sys/types.h>

/// What a container's child process needs. The child reads it in its own copy of the
/// address space (clone3 without CLONE_VM), so it must be complete and valid when
/// berth_spawn_start is called; the caller may free it once that returns.
struct berth_spawn_config {
    /// Absolute path of the root file system (a directory) on the host.
    const char *rootfs;
    /// The container's host name; empty keeps the one copied into the new UTS namespace.
    /// Ignored when `utsns_fd` joins a namespace: that one keeps the name it has (a pod's
    /// name, set when it was pinned), which all the pod's containers share.
    const char *hostname;
    /// Absolute working directory inside the container; created (mkdir -p) when missing.
    const char *workdir;
    /// The command and its arguments, NULL-terminated; argv[0] is resolved like execvp
    /// does, but against the PATH in `envp`.
    char *const *argv;
    /// The container's environment, NULL-terminated.
    char *const *envp;
    /// The user and group the command runs as (supplementary groups are cleared).
    uid_t uid;
    gid_t gid;
    /// Descriptors that become the container's 0, 1 and 2 (they may be any numbers).
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;
    /// The network namespace: BERTH_NETNS_NEW creates one with only a loopback (brought
    /// up); BERTH_NETNS_HOST keeps the caller's (`--network host`); any other value is an
    /// open descriptor of a network namespace (an nsfs file: a pinned bridge namespace or
    /// another container's) that the child joins with setns(2) before anything else.
    int netns_fd;
    /// The IPC and UTS namespaces: BERTH_NS_NEW creates one; any other value is an open
    /// nsfs descriptor (a pod's pinned namespace) that the child joins with setns(2) right
    /// after the go byte, next to the network namespace, and then closes. A joined IPC
    /// namespace is in place before /dev/mqueue is mounted, so that mount is the pod's.
    int ipcns_fd;
    int utsns_fd;
    /// The pid namespace: BERTH_NS_NEW creates one, whose pid 1 the child becomes; any
    /// other value is an open nsfs descriptor of a pid namespace (a pod's, whose pid 1 is
    /// its pause process) in which the child is created as an ordinary process. A process
    /// cannot move itself into a pid namespace (setns(CLONE_NEWPID) only places its later
    /// children), so berth_spawn_start joins it in the calling thread right before clone3
    /// and goes back to the thread's previous one right after (see berth_spawn_start).
    /// Either way the child mounts a fresh /proc, which shows the namespace's processes.
    /// Not being pid 1, a child in a joined namespace takes no one with it when it dies:
    /// its orphans go to the namespace's pid 1, which reaps them.
    int pidns_fd;
    /// Files bind-mounted over paths inside the container (/etc/hosts, /etc/hostname,
    /// /etc/resolv.conf): `bind_sources[i]`, a host path, is mounted on `bind_targets[i]`,
    /// an absolute path resolved inside the root file system with RESOLVE_IN_ROOT (so an
    /// image's symlinks cannot point the mount at the host). A missing target file is
    /// created (its directory too, one level); a target that is not a regular file fails.
    const char *const *bind_sources;
    const char *const *bind_targets;
    int bind_count;
};

/// For ipcns_fd, utsns_fd and pidns_fd: a new namespace of the container's own.
#define BERTH_NS_NEW (-1)
#define BERTH_NETNS_NEW (-1)
#define BERTH_NETNS_HOST (-2)
/// Most bind mounts a spawn takes.
#define BERTH_SPAWN_MAX_BINDS 8

/// A started child, between berth_spawn_start and berth_spawn_finish / berth_spawn_abort.
struct berth_spawn_handle {
    /// The child's pid in the caller's pid namespace.
    pid_t pid;
    /// A pidfd for the child (O_CLOEXEC); owned by the caller after a successful finish.
    int pidfd;
    // Private: the sync pipe (both ends stay with the parent until finish, so the go
    // write never meets EPIPE/SIGPIPE) and the read end of the error pipe.
    int sync_read;
    int sync_write;
    int error_read;
};

#define BERTH_SPAWN_STEP_MAX 32
#define BERTH_SPAWN_DETAIL_MAX 256

/// The record a failing child writes (with one write(2)) before `_exit(127)`.
/// For step "exec" `detail` is the whole message (`exec "x": executable file not found
/// in $PATH`); for other steps it names the object (a path such as "/proc") or is empty.
struct berth_spawn_error {
    /// Which step failed: "mount", "pivot_root", "setuid", "exec", ...
    char step[BERTH_SPAWN_STEP_MAX];
    /// The errno of the failed call.
    int err;
    /// See above. Always NUL-terminated.
    char detail[BERTH_SPAWN_DETAIL_MAX];
};

/// Clones the child and leaves it waiting: clone3 with CLONE_NEWNS | CLONE_PIDFD, plus
/// CLONE_NEWIPC, CLONE_NEWUTS and CLONE_NEWPID for each of `ipcns_fd`, `utsns_fd` and
/// `pidns_fd` that is BERTH_NS_NEW, and CLONE_NEWNET when `netns_fd` is BERTH_NETNS_NEW.
/// With a `pidns_fd` to join, the calling thread does setns(pidns_fd, CLONE_NEWPID)
/// before clone3 (so the child is created inside that namespace) and returns to the pid
/// namespace its children were created in before, right after: no later child of the
/// thread lands in the pod. The setting is per thread, so other threads of the caller
/// are never affected, and this one only for the duration of the call. Should going
/// back fail (it cannot in practice: the thread was just there), the child is killed
/// and reaped and the call fails with that errno; the thread's later children would
/// then land in the pod's namespace.
/// EINVAL when `bind_count` exceeds BERTH_SPAWN_MAX_BINDS; ENOMEM from clone3 when the
/// joined pid namespace's init has died. Returns 0 and fills `out`, or -1 with errno set
/// and nothing left behind.
int berth_spawn_start(const struct berth_spawn_config *cfg, struct berth_spawn_handle *out);

/// Tells the child to go on and waits until it has exec'd (returns 0; `h->pid` and
/// `h->pidfd` now belong to the caller, who reaps the pid) or failed (returns -1 with
/// `err` filled; the child has been reaped and `h->pidfd` closed).
int berth_spawn_finish(struct berth_spawn_handle *h, struct berth_spawn_error *err);

/// Kills (SIGKILL through the pidfd) and reaps a started child and closes every
/// descriptor of `h`. Safe to call on a handle that was already finished or aborted.
void berth_spawn_abort(struct berth_spawn_handle *h);

#endif
