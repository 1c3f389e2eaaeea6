// Pinned namespaces: network ones (like `ip netns add`) and a pod's IPC, UTS and pid ones
// (like CRI-O's pinns); sysctls written inside a pinned namespace; and the short-lived
// threads through which the other files reach inside one.
//
// setns(2) and unshare(2) of CLONE_NEWNET, CLONE_NEWIPC and CLONE_NEWUTS change only the
// calling thread, so the work is done on a thread of our own that is joined and gone
// before the call returns: the caller's thread never changes namespace. A netlink socket
// stays bound to the namespace it was created in, so a socket made on such a thread keeps
// working from the caller's.
#define _GNU_SOURCE
#include "netpriv.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <netlink/route/link.h>

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

int berth_net_run_thread(void *(*fn)(void *), void *arg) {
    // The thread inherits the creator's signal mask: blocking everything keeps signals
    // meant for the process (the agent's signal handling) away from a thread that may be
    // in another namespace.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t thread;
    int rc = pthread_create(&thread, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) return rc;
    pthread_join(thread, NULL);
    return 0;
}

// ---------------------------------------------------------------------------------------
// A netlink socket inside a pinned namespace.

struct socket_in_job {
    const char *pin_path;
    struct nl_sock *sk;
    struct berth_net_err *err;
    int rc;
};

static void *socket_in_thread(void *arg) {
    struct socket_in_job *job = arg;
    int fd = open(job->pin_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        job->rc = berth_net_fail_sys(job->err, errno, "open network namespace %s", job->pin_path);
        return NULL;
    }
    int rc = setns(fd, CLONE_NEWNET);
    int saved = errno;
    close(fd);
    if (rc != 0) {
        job->rc = berth_net_fail_sys(job->err, saved, "enter network namespace %s", job->pin_path);
        return NULL;
    }
    if ((rc = berth_net_route_socket(&job->sk)) < 0) {
        job->rc = berth_net_fail_nl(job->err, rc, "open netlink socket in %s", job->pin_path);
        return NULL;
    }
    job->rc = 0;
    return NULL;
}

int berth_net_route_socket_in(const char *pin_path, struct nl_sock **out, struct berth_net_err *err) {
    struct socket_in_job job = {.pin_path = pin_path, .sk = NULL, .err = err, .rc = 0};
    int rc = berth_net_run_thread(socket_in_thread, &job);
    if (rc != 0) return berth_net_fail_sys(err, rc, "start thread for network namespace %s", pin_path);
    *out = job.sk;
    return job.rc;
}

// ---------------------------------------------------------------------------------------
// Pinned namespaces.

struct create_job {
    const char *pin_path;
    struct berth_net_err *err;
    int rc;
};

static int loopback_up(struct berth_net_err *err) {
    struct nl_sock *sk = NULL;
    struct rtnl_link *lo = NULL, *change = NULL;
    int rc = berth_net_route_socket(&sk);
    if (rc < 0) return berth_net_fail_nl(err, rc, "new network namespace: open netlink socket");
    if ((rc = rtnl_link_get_kernel(sk, 0, "lo", &lo)) < 0) {
        rc = berth_net_fail_nl(err, rc, "new network namespace: look up lo");
        goto out;
    }
    if ((change = rtnl_link_alloc()) == NULL) {
        rc = berth_net_fail(err, ENOMEM, "new network namespace: set lo up: out of memory");
        goto out;
    }
    rtnl_link_set_flags(change, IFF_UP);
    if ((rc = rtnl_link_change(sk, lo, change, 0)) < 0) {
        rc = berth_net_fail_nl(err, rc, "new network namespace: set lo up");
        goto out;
    }
    rc = 0;
out:
    if (change != NULL) rtnl_link_put(change);
    if (lo != NULL) rtnl_link_put(lo);
    nl_socket_free(sk);
    return rc;
}

static void *create_thread(void *arg) {
    struct create_job *job = arg;
    if (unshare(CLONE_NEWNET) != 0) {
        job->rc = berth_net_fail_sys(job->err, errno, "create network namespace");
        return NULL;
    }
    if ((job->rc = loopback_up(job->err)) != 0) return NULL;
    // The bind mount of this thread's nsfs file is what keeps the namespace alive once the
    // thread exits. /proc/thread-self, not /proc/self: only this thread is in it.
    // "none": a bind mount ignores the type, but some tools (valgrind) object to NULL.
    if (mount("/proc/thread-self/ns/net", job->pin_path, "none", MS_BIND, NULL) != 0) {
        job->rc = berth_net_fail_sys(job->err, errno, "pin network namespace at %s", job->pin_path);
        return NULL;
    }
    job->rc = 0;
    return NULL;
}

// Creates the empty file a namespace is pinned on (a bind mount needs an existing file).
// O_EXCL: the file is ours, so removing it on failure never removes someone else's.
// `what` starts the messages ("create network namespace").
static int create_pin_file(const char *pin_path, const char *what, struct berth_net_err *err) {
    if (pin_path == NULL || pin_path[0] == '\0') return berth_net_fail(err, EINVAL, "%s: empty pin path", what);
    int fd = open(pin_path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (fd < 0) {
        int saved = errno;
        if (saved == EEXIST && berth_netns_is_pinned(pin_path)) {
            return berth_net_fail(err, EEXIST, "%s: %s is already pinned", what, pin_path);
        }
        return berth_net_fail_sys(err, saved, "%s: create %s", what, pin_path);
    }
    close(fd);
    return 0;
}

int berth_netns_create(const char *pin_path, struct berth_net_err *err) {
    int rc = create_pin_file(pin_path, "create network namespace", err);
    if (rc != 0) return rc;
    struct create_job job = {.pin_path = pin_path, .err = err, .rc = 0};
    rc = berth_net_run_thread(create_thread, &job);
    if (rc != 0) rc = berth_net_fail_sys(err, rc, "create network namespace: start thread");
    else rc = job.rc;
    // The mount is the thread's last step, so on failure there is only the file to remove;
    // the namespace itself died with the thread.
    if (rc != 0) {
        unlink(pin_path);
        return rc;
    }
    return berth_net_ok(err);
}

int berth_netns_is_pinned(const char *pin_path) {
    struct statfs st;
    if (pin_path == NULL || statfs(pin_path, &st) != 0) return 0;
    return st.f_type == NSFS_MAGIC ? 1 : 0;
}

// Unpin and unlink, for every kind of pin; `what` names the kind in messages.
static int release_pin(const char *pin_path, const char *what, struct berth_net_err *err) {
    if (pin_path == NULL || pin_path[0] == '\0') {
        return berth_net_fail(err, EINVAL, "release %s: empty pin path", what);
    }
    // MNT_DETACH: a process still holding the nsfs file open (an exec'ing nsenter) must
    // not make the release fail; the namespace goes when the last reference does.
    // EINVAL: not a mount point (never pinned, or already unpinned); ENOENT: no file.
    if (umount2(pin_path, MNT_DETACH | UMOUNT_NOFOLLOW) != 0 && errno != EINVAL && errno != ENOENT) {
        return berth_net_fail_sys(err, errno, "unpin %s %s", what, pin_path);
    }
    if (unlink(pin_path) != 0 && errno != ENOENT) {
        return berth_net_fail_sys(err, errno, "remove %s", pin_path);
    }
    return berth_net_ok(err);
}

int berth_netns_release(const char *pin_path, struct berth_net_err *err) {
    return release_pin(pin_path, "network namespace", err);
}

int berth_ns_release(const char *pin_path, struct berth_net_err *err) {
    return release_pin(pin_path, "namespace", err);
}

// ---------------------------------------------------------------------------------------
// A pod's IPC and UTS namespaces, and pins of existing namespaces.

struct ipc_uts_job {
    const char *ipc_pin;
    const char *uts_pin;
    const char *hostname;
    struct berth_net_err *err;
    int rc;
};

static void *ipc_uts_thread(void *arg) {
    struct ipc_uts_job *job = arg;
    // 1. Both namespaces at once, for this thread only.
    if (unshare(CLONE_NEWIPC | CLONE_NEWUTS) != 0) {
        job->rc = berth_net_fail_sys(job->err, errno, "create ipc and uts namespaces");
        return NULL;
    }
    // 2. The pod's host name, before anyone can join: its containers keep it (spawn.c
    //    sets none in a joined UTS namespace).
    size_t len = strlen(job->hostname);
    if (len > 0 && sethostname(job->hostname, len) != 0) {
        job->rc = berth_net_fail_sys(job->err, errno, "create uts namespace: set host name \"%.80s\"", job->hostname);
        return NULL;
    }
    // 3. The pins, last: what keeps the namespaces alive once the thread is gone. On
    //    failure the first is undone here, so the caller has only files to remove.
    if (mount("/proc/thread-self/ns/ipc", job->ipc_pin, "none", MS_BIND, NULL) != 0) {
        job->rc = berth_net_fail_sys(job->err, errno, "pin ipc namespace at %s", job->ipc_pin);
        return NULL;
    }
    if (mount("/proc/thread-self/ns/uts", job->uts_pin, "none", MS_BIND, NULL) != 0) {
        job->rc = berth_net_fail_sys(job->err, errno, "pin uts namespace at %s", job->uts_pin);
        (void)umount2(job->ipc_pin, MNT_DETACH | UMOUNT_NOFOLLOW);
        return NULL;
    }
    job->rc = 0;
    return NULL;
}

int berth_ns_create_ipc_uts(const char *ipc_pin, const char *uts_pin, const char *hostname,
                            struct berth_net_err *err) {
    if (hostname == NULL) hostname = "";
    // sethostname's own limit, checked here so that the message names the host name
    // rather than the kernel's bare EINVAL.
    if (strlen(hostname) > sizeof ((struct utsname *)0)->nodename - 1) {
        return berth_net_fail(err, EINVAL, "create uts namespace: host name \"%.80s\" is longer than %zu bytes",
                              hostname, sizeof ((struct utsname *)0)->nodename - 1);
    }
    int rc = create_pin_file(ipc_pin, "create ipc namespace", err);
    if (rc != 0) return rc;
    if ((rc = create_pin_file(uts_pin, "create uts namespace", err)) != 0) {
        unlink(ipc_pin);
        return rc;
    }
    struct ipc_uts_job job = {.ipc_pin = ipc_pin, .uts_pin = uts_pin, .hostname = hostname, .err = err, .rc = 0};
    rc = berth_net_run_thread(ipc_uts_thread, &job);
    if (rc != 0) rc = berth_net_fail_sys(err, rc, "create ipc and uts namespaces: start thread");
    else rc = job.rc;
    // The thread undid its own mounts; the namespaces died with it.
    if (rc != 0) {
        unlink(ipc_pin);
        unlink(uts_pin);
        return rc;
    }
    return berth_net_ok(err);
}

int berth_ns_pin(const char *source, const char *pin, struct berth_net_err *err) {
    if (source == NULL || source[0] == '\0') return berth_net_fail(err, EINVAL, "pin namespace: empty source");
    int rc = create_pin_file(pin, "pin namespace", err);
    if (rc != 0) return rc;
    // No thread needed: the mount changes no namespace of ours. mount(2) follows the
    // /proc/PID/ns/* magic link to the namespace itself, so the pin outlives the process.
    if (mount(source, pin, "none", MS_BIND, NULL) != 0) {
        rc = berth_net_fail_sys(err, errno, "pin namespace %s at %s", source, pin);
        unlink(pin);
        return rc;
    }
    // A bind mount of any file would succeed: only an nsfs file pins a namespace.
    if (!berth_netns_is_pinned(pin)) {
        (void)umount2(pin, MNT_DETACH | UMOUNT_NOFOLLOW);
        unlink(pin);
        return berth_net_fail(err, EINVAL, "pin namespace: %s is not a namespace file", source);
    }
    return berth_net_ok(err);
}

// ---------------------------------------------------------------------------------------
// Sysctls inside a pinned namespace.

_Static_assert(BERTH_NS_TYPE_NET == CLONE_NEWNET && BERTH_NS_TYPE_IPC == CLONE_NEWIPC &&
               BERTH_NS_TYPE_UTS == CLONE_NEWUTS, "BERTH_NS_TYPE_* are the CLONE_NEW* values");

// Components of [a-z0-9_], joined by single dots: nothing that could climb out of
// /proc/sys or follow a path of the caller's choosing.
static int valid_sysctl_key(const char *key) {
    size_t component = 0;
    for (const char *p = key;; p++) {
        if (*p == '.' || *p == '\0') {
            if (component == 0) return 0;  // empty key, leading, trailing or double dot
            if (*p == '\0') return 1;
            component = 0;
        } else if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_') {
            component++;
        } else {
            return 0;
        }
    }
}

// Whether `nstype` isolates `key` (the namespaced sysctls runc accepts): a key of another
// kind would be written on the host's, not the namespace's.
static int sysctl_in_namespace(const char *key, int nstype) {
    static const struct { int nstype; const char *prefix; int exact; } namespaced[] = {
        { CLONE_NEWNET, "net.", 0 },
        { CLONE_NEWIPC, "kernel.shm", 0 },
        { CLONE_NEWIPC, "kernel.msg", 0 },
        { CLONE_NEWIPC, "kernel.sem", 0 },
        { CLONE_NEWIPC, "fs.mqueue.", 0 },
        { CLONE_NEWUTS, "kernel.hostname", 1 },
        { CLONE_NEWUTS, "kernel.domainname", 1 },
    };
    for (size_t i = 0; i < sizeof namespaced / sizeof namespaced[0]; i++) {
        if (namespaced[i].nstype != nstype) continue;
        size_t n = strlen(namespaced[i].prefix);
        if (namespaced[i].exact ? strcmp(key, namespaced[i].prefix) == 0 : strncmp(key, namespaced[i].prefix, n) == 0) {
            return 1;
        }
    }
    return 0;
}

struct sysctl_job {
    const char *pin;
    int nstype;
    const char *key;
    const char *path;
    const char *value;
    struct berth_net_err *err;
    int rc;
};

static void *sysctl_thread(void *arg) {
    struct sysctl_job *job = arg;
    // 1. Into the namespace. setns checks the pin's type against nstype (EINVAL).
    int fd = open(job->pin, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        job->rc = berth_net_fail_sys(job->err, errno, "sysctl %s: open namespace %s", job->key, job->pin);
        return NULL;
    }
    int rc = setns(fd, job->nstype);
    int saved = errno;
    close(fd);
    if (rc != 0) {
        job->rc = berth_net_fail_sys(job->err, saved, "sysctl %s: enter namespace %s", job->key, job->pin);
        return NULL;
    }
    // 2. The file, opened and written from this thread: /proc/sys resolves (and writes)
    //    network, IPC and UTS sysctls by the namespaces of the task doing so.
    //    O_NOFOLLOW: /proc/sys has no symlinks, so one in its place is refused.
    fd = open(job->path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        job->rc = berth_net_fail_sys(job->err, errno, "sysctl %s: open %s", job->key, job->path);
        return NULL;
    }
    // 3. One write: a sysctl takes its value in one piece (a short write is an error).
    size_t len = strlen(job->value);
    ssize_t n;
    do { n = write(fd, job->value, len); } while (n < 0 && errno == EINTR);
    saved = errno;
    close(fd);
    if (n < 0) {
        job->rc = berth_net_fail_sys(job->err, saved, "sysctl %s: write \"%.80s\"", job->key, job->value);
        return NULL;
    }
    if ((size_t)n != len) {
        job->rc = berth_net_fail(job->err, EIO, "sysctl %s: short write of \"%.80s\"", job->key, job->value);
        return NULL;
    }
    job->rc = 0;
    return NULL;
}

int berth_sysctl_write_in(const char *pin, int nstype, const char *key, const char *value,
                          struct berth_net_err *err) {
    if (pin == NULL || pin[0] == '\0') return berth_net_fail(err, EINVAL, "sysctl: empty pin path");
    if (key == NULL || value == NULL) return berth_net_fail(err, EINVAL, "sysctl: no key or value");
    if (nstype != CLONE_NEWNET && nstype != CLONE_NEWIPC && nstype != CLONE_NEWUTS) {
        return berth_net_fail(err, EINVAL, "sysctl %.200s: namespace type %#x is not net, ipc or uts", key, nstype);
    }
    // Defence in depth (the agent validates keys too): see CBerthNet.h.
    char path[512];
    if (!valid_sysctl_key(key) || strlen(key) >= sizeof path - sizeof "/proc/sys/") {
        return berth_net_fail(err, EINVAL, "sysctl \"%.200s\": not a sysctl name", key);
    }
    if (!sysctl_in_namespace(key, nstype)) {
        return berth_net_fail(err, EINVAL, "sysctl %s: not isolated by the %s namespace", key,
                              nstype == CLONE_NEWNET ? "network" : nstype == CLONE_NEWIPC ? "ipc" : "uts");
    }
    // net.ipv4.ip_forward -> /proc/sys/net/ipv4/ip_forward
    size_t at = (size_t)snprintf(path, sizeof path, "/proc/sys/%s", key);
    for (size_t i = sizeof "/proc/sys/" - 1; i < at; i++) {
        if (path[i] == '.') path[i] = '/';
    }
    struct sysctl_job job = {.pin = pin, .nstype = nstype, .key = key, .path = path, .value = value, .err = err, .rc = 0};
    int rc = berth_net_run_thread(sysctl_thread, &job);
    if (rc != 0) return berth_net_fail_sys(err, rc, "sysctl %s: start thread", key);
    if (job.rc != 0) return job.rc;
    return berth_net_ok(err);
}
