// The pre-exec path of a container: clone3 into new namespaces (or, for a pod's
// containers, the pod's pid namespace), wait for the agent, join the given ipc/uts/network
// namespaces, set up mounts, pivot_root, host name, loopback, working dir and credentials,
// then execve.
//
// Everything in the child follows the rules at the top of child.h: no malloc, no stdio,
// raw credential syscalls, every failure reported as {step, errno, detail} over the
// close-on-exec error pipe.
#define _GNU_SOURCE
#include "CBerthShim.h"
#include "child.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

// ---------------------------------------------------------------------------------------
// Child side.

// mkdir that accepts an existing directory but not a symlink or a file in its place:
// the rootfs comes from an image, and a "proc" symlink pointing at "/" would otherwise
// make us mount over the host's own directories (we have not pivoted yet).
static void ensure_dir(int error_fd, const char *name, mode_t mode, const char *shown) {
    if (mkdir(name, mode) < 0 && errno != EEXIST) berth_child_fail(error_fd, "mkdir", errno, shown);
    struct stat st;
    CHECK(lstat(name, &st), "lstat", shown);
    if (!S_ISDIR(st.st_mode)) berth_child_fail(error_fd, "mkdir", ENOTDIR, shown);
}

static void must_mount(int error_fd, const char *source, const char *target, const char *fstype,
                       unsigned long flags, const char *data, const char *shown) {
    CHECK(mount(source, target, fstype, flags, data), "mount", shown);
}

// Turns on IFF_UP on "lo": a new network namespace starts with its loopback down, and
// programs expect 127.0.0.1 to work.
static void loopback_up(int error_fd) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(s, "loopback", "socket");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    berth_str_append(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    CHECK(ioctl(s, SIOCGIFFLAGS, &ifr), "loopback", "SIOCGIFFLAGS lo");
    ifr.ifr_flags |= IFF_UP;
    CHECK(ioctl(s, SIOCSIFFLAGS, &ifr), "loopback", "SIOCSIFFLAGS lo");
    close(s);
}

// mkdir -p of an absolute path, as docker does for a missing working directory. The
// directories are created as root with mode 0755 (before the uid switch), like runc.
static void make_dirs(int error_fd, const char *path, const char *step) {
    char buf[4096];
    if (strlen(path) >= sizeof buf) berth_child_fail(error_fd, step, ENAMETOOLONG, path);
    buf[0] = '\0';
    berth_str_append(buf, sizeof buf, path);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0755) < 0 && errno != EEXIST) berth_child_fail(error_fd, step, errno, buf);
            *p = saved;
            if (saved == '\0') break;
        }
    }
}

// The child, from clone3 to execve. Every step says why it is where it is.
__attribute__((noreturn))
static void child_main(const struct berth_spawn_config *cfg, int sync_read, int sync_write, int error_fd) {
    // 1. First of all, drop every inherited descriptor that is not ours: the sooner, the
    //    shorter the window in which we hold other spawns' pipes and files other threads
    //    are writing (see berth_close_all_but and execve_retrying in child.c). Our own
    //    copy of the sync pipe's write end goes too, so that if the agent dies the read
    //    below sees EOF.
    close(sync_write);
    int keep[BERTH_CHILD_MAX_KEEP];
    int nkeep = 0;
    keep[nkeep++] = sync_read;
    keep[nkeep++] = error_fd;
    keep[nkeep++] = cfg->stdin_fd;
    keep[nkeep++] = cfg->stdout_fd;
    keep[nkeep++] = cfg->stderr_fd;
    keep[nkeep++] = cfg->netns_fd;
    keep[nkeep++] = cfg->ipcns_fd;
    keep[nkeep++] = cfg->utsns_fd;
    //    Not the pid namespace's descriptor: the parent used it before clone3, and we are
    //    in that namespace already.
    berth_close_all_but(3, keep, nkeep);

    // 2. Signals. The parent blocked everything around clone3 so that none of the agent's
    //    handlers can run here (they are Swift code and would touch the agent's state in
    //    a copy of it). Reset every disposition to SIG_DFL first, then unblock: an ignored
    //    signal would stay ignored across execve, and a caught one must not fire before
    //    it.
    berth_child_default_signals();
    sigset_t none;
    sigemptyset(&none);
    (void)pthread_sigmask(SIG_SETMASK, &none, NULL);

    // 3. Wait for the go byte. Until then the caller may put us into cgroups; everything
    //    below must happen inside those limits.
    //    EOF without a byte means the agent gave up (or died): leave quietly.
    char go;
    ssize_t n;
    do { n = read(sync_read, &go, 1); } while (n < 0 && errno == EINTR);
    if (n != 1) _exit(127);
    close(sync_read);

    // 3b. Join the namespaces we were given, before anything that could depend on them:
    //     the network namespace (a pinned bridge namespace, or another container's), and
    //     a pod's IPC namespace (before step 9 mounts /dev/mqueue, which binds to the
    //     mounter's) and UTS namespace (it keeps the pod's host name: step 11 skips
    //     sethostname). clone3 made no new namespace of these kinds for us.
    if (cfg->netns_fd >= 0) {
        CHECK(setns(cfg->netns_fd, CLONE_NEWNET), "setns", "network namespace");
        close(cfg->netns_fd);
    }
    if (cfg->ipcns_fd >= 0) {
        CHECK(setns(cfg->ipcns_fd, CLONE_NEWIPC), "setns", "ipc namespace");
        close(cfg->ipcns_fd);
    }
    if (cfg->utsns_fd >= 0) {
        CHECK(setns(cfg->utsns_fd, CLONE_NEWUTS), "setns", "uts namespace");
        close(cfg->utsns_fd);
    }

    // 4. A session of our own: the container must not share the agent's controlling
    //    terminal or receive its job-control signals.
    CHECK(setsid(), "setsid", "");

    // 5. stdio onto 0, 1 and 2 (in any order the caller gave them).
    int stdio[3] = { cfg->stdin_fd, cfg->stdout_fd, cfg->stderr_fd };
    berth_child_stdio(error_fd, stdio);

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
    //    proc of our pid namespace (our own, whose pid 1 we are, or a pod's, joined by
    //    the parent for us), so the container sees its (or its pod's) processes only.
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

    // 9b. Bind mounts of host files (/etc/hosts, ...), then (hardened) the extra mounts,
    //     while the host's paths are still reachable in our copy of its mount namespace
    //     (a mount from another namespace, or from a detached one, cannot be bound:
    //     EINVAL). Targets resolve inside the root file system and can never reach the
    //     host (harden.c, berth_mount_in_root: one implementation for both). The /etc
    //     binds report step "bind" with the target without its "/", as always.
    for (int i = 0; i < cfg->bind_count; i++) {
        const char *shown = cfg->bind_targets[i];
        while (*shown == '/') shown++;
        struct berth_mount m = { .source = cfg->bind_sources[i], .target = cfg->bind_targets[i],
                                 .type = BERTH_MOUNT_BIND };
        berth_mount_in_root(error_fd, "bind", &m, shown);
    }
    if (cfg->harden) {
        for (int i = 0; i < cfg->mount_count; i++) {
            berth_mount_in_root(error_fd, "mount", &cfg->mounts[i], cfg->mounts[i].target);
        }
        // 9c. OCI readonlyPaths, then maskedPaths, in runc's order: after every mount (a
        //     later mount could cover them) and after /proc and /sys exist (they are
        //     mostly under those), checked to be on procfs/sysfs; before pivot_root,
        //     while the host's /dev/null is at hand for masking files.
        for (int i = 0; i < cfg->readonly_count; i++) berth_readonly_path(error_fd, cfg->readonly_paths[i]);
        for (int i = 0; i < cfg->masked_count; i++) berth_mask_path(error_fd, cfg->masked_paths[i]);
    }

    // 10. pivot_root without a put_old directory: pivot_root(".", ".") stacks the old root
    //     on top of the new one at "."; detaching "." then drops the old root (and with it
    //     every host mount) from this namespace. chroot would leave the host's root
    //     reachable; pivot_root does not.
    CHECK(syscall(SYS_pivot_root, ".", "."), "pivot_root", "");
    CHECK(umount2(".", MNT_DETACH), "umount old root", "");
    CHECK(chdir("/"), "chdir", "/");

    // 11. Host name of our UTS namespace; a joined one (a pod's) keeps the name it was
    //     pinned with, shared by all the pod's containers.
    size_t hostname_len = strlen(cfg->hostname);
    if (cfg->utsns_fd < 0 && hostname_len > 0) {
        CHECK(sethostname(cfg->hostname, hostname_len), "sethostname", cfg->hostname);
    }

    // 12. Loopback up in a network namespace of our own (a joined one is already set up,
    //     and the host's is not ours to touch).
    if (cfg->netns_fd == BERTH_NETNS_NEW) loopback_up(error_fd);


    // 13. Working directory: created when missing (as root, before the uid switch, so an
    //     unprivileged user gets it too), then entered.
    make_dirs(error_fd, cfg->workdir, "mkdir workdir");
    //     (Hardened) a read-only "/" (docker's --read-only) now: the working directory
    //     above was the last thing written to it, every mount is in place (a remount of
    //     "/" touches only that mount: /dev, /proc, the binds keep their modes).
    if (cfg->harden && cfg->readonly_rootfs) berth_readonly_root(error_fd);
    CHECK(chdir(cfg->workdir), "chdir workdir", cfg->workdir);
    //     (Hardened) and make sure we really are inside our root (CVE-2024-21626 class).
    if (cfg->harden) berth_check_cwd_inside(error_fd, cfg->workdir);

    // 13b. (Hardened) capabilities, first half: the bounding set and the ambient set,
    //      while we are still root with CAP_SETPCAP (needed to drop from the bounding set).
    //      Then, without no_new_privs, seccomp: loading it needs CAP_SYS_ADMIN, which the
    //      mask may not keep and a non-root uid loses, so it goes in before either (runc's
    //      order; the filter must allow the few syscalls left until execve).
    if (cfg->harden) {
        berth_drop_bounding_caps(error_fd, cfg->cap_mask);
        if (!cfg->no_new_privs && cfg->seccomp_bpf != NULL) {
            berth_load_seccomp(error_fd, cfg->seccomp_bpf, cfg->seccomp_len);
        }
    }

    // 14. Credentials, in this order: supplementary groups and the gid need privilege to
    //     change, so they go first; setuid goes last, after it we could no longer setgid.
    //     Raw syscalls, not glibc's wrappers (see the top of this file).
    CHECK(syscall(SYS_setgroups, 0, NULL), "setgroups", "");
    CHECK(syscall(SYS_setresgid, cfg->gid, cfg->gid, cfg->gid), "setgid", "");
    CHECK(syscall(SYS_setresuid, cfg->uid, cfg->uid, cfg->uid), "setuid", "");

    // 14b. (Hardened) capabilities, second half: effective and permitted become the mask
    //      (empty for a non-root uid, as docker), after the uid switch, which would clear
    //      them anyway for a non-root uid. Then no_new_privs and, last of all before
    //      execve (nothing of ours runs under it), seccomp: no_new_privs lets an
    //      unprivileged process load it.
    if (cfg->harden) {
        berth_set_caps(error_fd, cfg->cap_mask, cfg->uid);
        if (cfg->no_new_privs) {
            CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1UL, 0UL, 0UL, 0UL), "no_new_privs", "");
            if (cfg->seccomp_bpf != NULL) berth_load_seccomp(error_fd, cfg->seccomp_bpf, cfg->seccomp_len);
        }
    }

    // 15. execve, searching the container's PATH. Reports "exec" on failure.
    berth_child_exec(error_fd, cfg->argv, cfg->envp);
}

// ---------------------------------------------------------------------------------------
// Parent side.

// The hardening fields' counts, pointers and mount types (see berth_spawn_start).
static int harden_config_valid(const struct berth_spawn_config *cfg) {
    if (cfg->masked_count < 0 || cfg->masked_count > BERTH_SPAWN_MAX_PATHS) return 0;
    if (cfg->readonly_count < 0 || cfg->readonly_count > BERTH_SPAWN_MAX_PATHS) return 0;
    if (cfg->mount_count < 0 || cfg->mount_count > BERTH_SPAWN_MAX_MOUNTS) return 0;
    if ((cfg->masked_count > 0 && cfg->masked_paths == NULL) || (cfg->readonly_count > 0 && cfg->readonly_paths == NULL)
        || (cfg->mount_count > 0 && cfg->mounts == NULL)) return 0;
    for (int i = 0; i < cfg->mount_count; i++) {
        const struct berth_mount *m = &cfg->mounts[i];
        if (m->type != BERTH_MOUNT_BIND && m->type != BERTH_MOUNT_TMPFS) return 0;
        if (m->target == NULL || (m->type == BERTH_MOUNT_BIND && m->source == NULL)) return 0;
    }
    if ((cfg->seccomp_bpf == NULL) != (cfg->seccomp_len == 0) || cfg->seccomp_len > BERTH_SPAWN_MAX_SECCOMP) return 0;
    return 1;
}

static void spawn_body(const void *cfg, int sync_read, int sync_write, int error_fd) {
    child_main((const struct berth_spawn_config *)cfg, sync_read, sync_write, error_fd);
}

int berth_spawn_start(const struct berth_spawn_config *cfg, struct berth_spawn_handle *out) {
    out->pid = -1;
    out->pidfd = -1;
    out->sync_read = out->sync_write = out->error_read = -1;
    if (cfg->bind_count < 0 || cfg->bind_count > BERTH_SPAWN_MAX_BINDS) {
        errno = EINVAL;
        return -1;
    }
    if (cfg->harden && !harden_config_valid(cfg)) {
        errno = EINVAL;
        return -1;
    }
    // 1. The clone flags: a new mount namespace always; new ipc, uts and pid namespaces
    //    unless one is joined, and a new network namespace unless one is joined or the
    //    host's is kept. (clone3 adds CLONE_PIDFD, and SIGCHLD so that the parent's
    //    waitid sees the exit.)
    unsigned long flags = CLONE_NEWNS;
    if (cfg->ipcns_fd < 0) flags |= CLONE_NEWIPC;
    if (cfg->utsns_fd < 0) flags |= CLONE_NEWUTS;
    if (cfg->pidns_fd < 0) flags |= CLONE_NEWPID;
    if (cfg->netns_fd == BERTH_NETNS_NEW) flags |= CLONE_NEWNET;
    if (cfg->pidns_fd < 0) {
        return berth_clone_child(flags, spawn_body, cfg,
                                 &out->pid, &out->pidfd, &out->sync_read, &out->sync_write, &out->error_read);
    }

    // 2. A pid namespace to join. A process never changes its own pid namespace: setns
    //    of CLONE_NEWPID only decides where this thread's later children are created. So
    //    the thread joins it here and the child is created inside it. First remember
    //    where the thread's children went until now, to go back there after the clone:
    //    anything else this thread starts later (in the agent, a pool thread's next
    //    posix_spawn) must not land in the pod. /proc/thread-self: the setting is the
    //    thread's, not the process's.
    int previous = open("/proc/thread-self/ns/pid_for_children", O_RDONLY | O_CLOEXEC);
    if (previous < 0) return -1;
    if (setns(cfg->pidns_fd, CLONE_NEWPID) < 0) {
        int saved = errno;
        close(previous);
        errno = saved;
        return -1;
    }

    // 3. The clone, inside the pod's pid namespace (ENOMEM when its init has died: the
    //    kernel creates no more processes in it).
    int rc = berth_clone_child(flags, spawn_body, cfg,
                               &out->pid, &out->pidfd, &out->sync_read, &out->sync_write, &out->error_read);
    int saved = errno;

    // 4. Back where the thread's children went before. This cannot fail in practice (the
    //    kernel allows the thread's own pid namespace and its descendants, and the
    //    thread was there a moment ago); if it does, the child goes too, so that the
    //    caller learns of it.
    if (setns(previous, CLONE_NEWPID) < 0) {
        saved = errno;
        if (rc == 0) berth_spawn_abort(out);
        rc = -1;
    }
    close(previous);
    errno = saved;
    return rc;
}

int berth_spawn_finish(struct berth_spawn_handle *h, struct berth_spawn_error *err) {
    if (berth_go_and_collect(&h->sync_read, &h->sync_write, &h->error_read, err) == 0) return 0;
    // The child is on its way out (_exit(127)); SIGKILL changes nothing, the reap is the point.
    berth_spawn_abort(h);
    return -1;
}

void berth_spawn_abort(struct berth_spawn_handle *h) {
    berth_abort_child(&h->pidfd, &h->sync_read, &h->sync_write, &h->error_read);
    h->pid = -1;
}
