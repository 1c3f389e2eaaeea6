// Helpers shared by net.c, netns.c and nft.c; not part of the module's interface.
#ifndef CBERTH_NET_PRIV_H
#define CBERTH_NET_PRIV_H
#include "CBerthNet.h"
#include <netlink/netlink.h>

#define BERTH_NET_HIDDEN __attribute__((visibility("hidden")))

/// Success: code 0, empty message. Returns 0.
BERTH_NET_HIDDEN int berth_net_ok(struct berth_net_err *err);

/// Fails with the errno value `code` and a formatted message. Returns `code`.
BERTH_NET_HIDDEN int berth_net_fail(struct berth_net_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/// Fails with the errno value `code` and "<formatted>: <strerror(code)>". Returns `code`.
BERTH_NET_HIDDEN int berth_net_fail_sys(struct berth_net_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/// Fails with the errno nearest to libnl's `nlerr` (negative or positive NLE_*) and
/// "<formatted>: <nl_geterror(nlerr)>". Returns that errno.
BERTH_NET_HIDDEN int berth_net_fail_nl(struct berth_net_err *err, int nlerr, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/// The errno value nearest to a libnl error (negative or positive NLE_*).
BERTH_NET_HIDDEN int berth_net_errno_from_nl(int nlerr);

/// 1 when `name` is a name the kernel accepts for a link (dev_valid_name), else 0.
BERTH_NET_HIDDEN int berth_net_valid_ifname(const char *name);

/// A connected NETLINK_ROUTE socket in the calling thread's network namespace.
/// Returns 0 or a negative NLE_* code.
BERTH_NET_HIDDEN int berth_net_route_socket(struct nl_sock **out);

/// A connected NETLINK_ROUTE socket bound to the namespace pinned at `pin_path`; it can be
/// used from any thread. Returns 0 or an errno value with `err` filled.
BERTH_NET_HIDDEN int berth_net_route_socket_in(const char *pin_path, struct nl_sock **out,
                                               struct berth_net_err *err);

/// Runs `fn(arg)` on a new thread with every signal blocked and waits for it. Returns 0 or
/// the errno value of pthread_create.
BERTH_NET_HIDDEN int berth_net_run_thread(void *(*fn)(void *), void *arg);

#endif
