#ifndef CBERTH_NET_H
#define CBERTH_NET_H
// The kernel side of Berth's bridge networks (net.c): pinned network namespaces, bridges
// and veth pairs through libnl-route-3 (rtnetlink), and Berth's nftables table through
// libnftables. The agent never runs ip(8), nft(8) or iptables(8).
//
// Every function is synchronous and may be called from any thread: work that must
// happen inside another network namespace runs on a short-lived thread of its own
// (setns/unshare of CLONE_NEWNET affect only the calling thread), so the caller's thread
// never changes namespace. Every function returns 0 on success, or an errno value (> 0)
// with `err->message` saying what failed on which object ("create bridge berth0: File
// exists"); libnl's NLE_* codes are translated to the nearest errno.
#include <stddef.h>

struct berth_net_err {
    /// An errno value (EEXIST, ENOENT, EBUSY, EINVAL, ...); 0 on success.
    int code;
    /// What failed, NUL-terminated; empty on success.
    char message[512];
};

// ---------------------------------------------------------------------------------------
// Network namespaces, pinned like `ip netns add`: the namespace lives as long as a bind
// mount of its nsfs file exists at `pin_path`, with no process in it.

/// Creates a new network namespace with its loopback up and pins it at `pin_path` (an
/// empty file is created there; its directory must exist). EEXIST when something is
/// already pinned there. Nothing is left behind on failure.
int berth_netns_create(const char *pin_path, struct berth_net_err *err);

/// 1 when `pin_path` is a pinned namespace (an nsfs mount), 0 otherwise.
int berth_netns_is_pinned(const char *pin_path);

/// Unpins (umount2 MNT_DETACH) and unlinks `pin_path`; a missing path is success. The
/// kernel destroys the namespace, and with it the container end of its veth pair (and
/// so the host end), once no process is left in it.
int berth_netns_release(const char *pin_path, struct berth_net_err *err);

// ---------------------------------------------------------------------------------------
// Links in the caller's (the host's) network namespace.

/// Makes sure a bridge `name` exists, holds the IPv4 address `gateway_cidr`
/// ("10.217.0.1/16") and is up, and sets net.ipv4.conf.<name>.route_localnet=1 (so
/// that ports published on 127.0.0.1 can be DNATed onto it). Idempotent. EEXIST when
/// `name` exists but is not a bridge.
int berth_bridge_ensure(const char *name, const char *gateway_cidr, struct berth_net_err *err);

/// Deletes the link `name` (a bridge, or the host end of a veth pair, which takes its
/// peer with it). A missing link is success.
int berth_link_delete(const char *name, struct berth_net_err *err);

/// 1 when a link `name` exists in the host's namespace, 0 otherwise.
int berth_link_exists(const char *name);

/// The number of links whose master is the bridge `name` (its ports); -1 when there is
/// no such link.
int berth_bridge_port_count(const char *name);

struct berth_veth_config {
    /// The host bridge the host end is attached to.
    const char *bridge;
    /// The host end's name (at most 15 bytes).
    const char *host_name;
    /// A pinned network namespace (berth_netns_create) that receives the other end.
    const char *netns_path;
    /// The other end's name inside that namespace ("eth0").
    const char *ifname;
    /// The other end's MAC address.
    unsigned char mac[6];
    /// The other end's IPv4 address with prefix ("10.217.0.5/16").
    const char *address_cidr;
    /// The default route's gateway inside the namespace ("10.217.0.1").
    const char *gateway;
};

/// Creates a veth pair: the host end `host_name`, attached to `bridge` and up; the other
/// end created directly inside the namespace at `netns_path` (IFLA_NET_NS_FD, so its name
/// never clashes with a host link) as `ifname`, with `mac`, `address_cidr`, up, and a
/// default route via `gateway`. A stale host end of the same name is deleted first, so
/// the call can be repeated. On failure nothing it created is left.
int berth_veth_attach(const struct berth_veth_config *cfg, struct berth_net_err *err);

// ---------------------------------------------------------------------------------------
// nftables.

/// Runs nft commands (the nft(8) language, several lines, applied as one transaction:
/// all or nothing) through libnftables. On failure `err->message` holds libnftables'
/// error output.
int berth_nft_run(const char *commands, struct berth_net_err *err);

#endif
