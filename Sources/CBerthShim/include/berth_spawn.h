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
#include <stdint.h>
#include <sys/types.h>

/// An extra mount of `struct berth_spawn_config` (docker's `-v`, `--mount`, `--tmpfs`).
struct berth_mount {
    /// BERTH_MOUNT_BIND: a host path (file or directory) that must exist.
    /// BERTH_MOUNT_TMPFS: the name the mount shows in mountinfo ("tmpfs").
    const char *source;
    /// Absolute path inside the container, resolved with RESOLVE_IN_ROOT (an image's
    /// symlinks stay inside the root file system: the runc CVE-2021-30465 class); created
    /// when missing (mkdir -p for a directory source or a tmpfs, an empty file for a file
    /// source), never through a symlink out of the root.
    const char *target;
    /// BERTH_MOUNT_TMPFS: the tmpfs options ("size=65536k,mode=1777"; NULL or "" for none).
    /// Ignored for a bind.
    const char *data;
    /// BERTH_MOUNT_BIND or BERTH_MOUNT_TMPFS.
    int type;
    /// Non-zero: read-only (a bind is remounted MS_BIND|MS_REMOUNT|MS_RDONLY, a tmpfs is
    /// mounted MS_RDONLY).
    int readonly;
};

/// Bind mount of a host file or directory (MS_BIND|MS_REC).
#define BERTH_MOUNT_BIND 1
/// A new tmpfs (nosuid, nodev, noexec, as docker's --tmpfs).
#define BERTH_MOUNT_TMPFS 2

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

    // Hardening (harden.c). All of it is read only when `harden` is 1; with 0 every field
    // below is ignored and the spawn is exactly what it was without them (the Spawner
    // and the tests of the plain path pass 0). The child applies them in runc's order:
    //   before pivot_root:  extra `mounts` (with the /etc binds) → `readonly_paths` →
    //                       `masked_paths`
    //   after it:           working dir created → `readonly_rootfs` → chdir + getcwd check
    //                       → bounding set and ambient caps → seccomp when
    //                       !no_new_privs → uid/gid → capset → no_new_privs → seccomp
    //                       when no_new_privs → execve

    /// 0: none of the fields below apply; 1: all of them do.
    int harden;
    /// Paths (absolute inside the container, e.g. "/proc/kcore") hidden from it, as OCI's
    /// maskedPaths: a directory gets an empty read-only tmpfs over it, a file /dev/null
    /// bound over it; a missing path is skipped. Resolved with RESOLVE_IN_ROOT; one
    /// under /proc (or /sys) must really be on procfs (sysfs), checked with fstatfs on the
    /// opened target (the runc CVE-2019-16884 class: an image cannot make us mount over
    /// something else). Step "mask". At most BERTH_SPAWN_MAX_PATHS.
    const char *const *masked_paths;
    int masked_count;
    /// Paths made read-only, as OCI's readonlyPaths: resolved and checked as masked paths,
    /// bound onto themselves and remounted MS_RDONLY (keeping nosuid, nodev and noexec);
    /// a missing path is skipped. Step "readonly". At most BERTH_SPAWN_MAX_PATHS.
    const char *const *readonly_paths;
    int readonly_count;
    /// Non-zero: "/" is remounted read-only after pivot_root and every mount (docker's
    /// --read-only); /dev, /dev/shm, /proc, /sys, the /etc binds and the extra mounts are
    /// mounts of their own and keep their modes. The working directory is created before.
    /// Step "readonly rootfs".
    int readonly_rootfs;
    /// Extra mounts, in order, before pivot_root (see struct berth_mount). Step "mount",
    /// detail the source (a missing one: ENOENT) or the target. At most
    /// BERTH_SPAWN_MAX_MOUNTS.
    const struct berth_mount *mounts;
    int mount_count;
    /// Capabilities the container keeps (bit n = capability n, as in capability.h):
    /// every other one is dropped from the bounding set, the ambient set is cleared, and
    /// after the uid/gid switch the effective and permitted sets become the mask for uid
    /// 0 and empty for another uid (as docker; the bounding set stays the mask, so a
    /// setuid-root program in the image can regain them). The inheritable set is emptied
    /// (the runc/moby fix for CVE-2022-24769). Step "capabilities".
    uint64_t cap_mask;
    /// Non-zero: prctl(PR_SET_NO_NEW_PRIVS) right before seccomp, the last step before
    /// execve. Step "no_new_privs".
    int no_new_privs;
    /// A compiled seccomp filter: an array of `seccomp_len` `struct sock_filter`
    /// (1..BERTH_SPAWN_MAX_SECCOMP; NULL and 0 = unconfined). Loaded with
    /// prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER): right before execve when
    /// `no_new_privs` is set; otherwise (loading then needs CAP_SYS_ADMIN) before the
    /// capabilities are dropped and the uid switched, as runc does, and the filter must
    /// then allow setgroups, setresgid, setresuid, capget, capset and execve. It
    /// must allow execve in any case (the caller's job). Step "seccomp".
    const void *seccomp_bpf;
    unsigned int seccomp_len;
};

/// For ipcns_fd, utsns_fd and pidns_fd: a new namespace of the container's own.
#define BERTH_NS_NEW (-1)
#define BERTH_NETNS_NEW (-1)
#define BERTH_NETNS_HOST (-2)
/// Most bind mounts a spawn takes.
#define BERTH_SPAWN_MAX_BINDS 8
/// Most masked paths, and most read-only paths, a spawn takes.
#define BERTH_SPAWN_MAX_PATHS 16
/// Most extra mounts a spawn takes.
#define BERTH_SPAWN_MAX_MOUNTS 16
/// Most seccomp instructions (the kernel's BPF_MAXINSNS).
#define BERTH_SPAWN_MAX_SECCOMP 4096

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
/// EINVAL when `bind_count` exceeds BERTH_SPAWN_MAX_BINDS, or (with `harden`) a count
/// exceeds its maximum, a mount has an unknown type, or `seccomp_bpf` and `seccomp_len`
/// disagree (one NULL/0, the other not); ENOMEM from clone3 when the
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
