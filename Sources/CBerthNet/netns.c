// Pinned network namespaces (like `ip netns add`), and the short-lived threads through
// which the other files reach inside one.
//
// setns(2) and unshare(2) of CLONE_NEWNET change only the calling thread, so the work is
// done on a thread of our own that is joined and gone before the call returns: the
// caller's thread never changes namespace. A netlink socket stays bound to the namespace
// it was created in, so a socket made on such a thread keeps working from the caller's.
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

int berth_netns_create(const char *pin_path, struct berth_net_err *err) {
    if (pin_path == NULL || pin_path[0] == '\0') {
        return berth_net_fail(err, EINVAL, "create network namespace: empty pin path");
    }
    // O_EXCL: the file is ours, so removing it on failure never removes someone else's.
    int fd = open(pin_path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (fd < 0) {
        int saved = errno;
        if (saved == EEXIST && berth_netns_is_pinned(pin_path)) {
            return berth_net_fail(err, EEXIST, "create network namespace: %s is already pinned", pin_path);
        }
        return berth_net_fail_sys(err, saved, "create network namespace: create %s", pin_path);
    }
    close(fd);
    struct create_job job = {.pin_path = pin_path, .err = err, .rc = 0};
    int rc = berth_net_run_thread(create_thread, &job);
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

int berth_netns_release(const char *pin_path, struct berth_net_err *err) {
    if (pin_path == NULL || pin_path[0] == '\0') {
        return berth_net_fail(err, EINVAL, "release network namespace: empty pin path");
    }
    // MNT_DETACH: a process still holding the nsfs file open (an exec'ing nsenter) must
    // not make the release fail; the namespace goes when the last reference does.
    // EINVAL: not a mount point (never pinned, or already unpinned); ENOENT: no file.
    if (umount2(pin_path, MNT_DETACH | UMOUNT_NOFOLLOW) != 0 && errno != EINVAL && errno != ENOENT) {
        return berth_net_fail_sys(err, errno, "unpin network namespace %s", pin_path);
    }
    if (unlink(pin_path) != 0 && errno != ENOENT) {
        return berth_net_fail_sys(err, errno, "remove %s", pin_path);
    }
    return berth_net_ok(err);
}
