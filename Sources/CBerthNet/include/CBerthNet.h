#ifndef CBERTH_NET_H
#define CBERTH_NET_H
// The kernel side of Berth's bridge networks (net.c): pinned network namespaces, bridges
// and veth pairs through libnl-route-3 (rtnetlink), and Berth's nftables table through
// libnftables; and the other namespaces a pod pins (IPC, UTS, pid) and its namespaced
// sysctls (netns.c). The agent never runs ip(8), nft(8), iptables(8) or sysctl(8).
//
// Every function is synchronous and may be called from any thread: work that must
// happen inside another namespace runs on a short-lived thread of its own (setns/unshare
// of CLONE_NEWNET, CLONE_NEWIPC and CLONE_NEWUTS affect only the calling thread), so the
// caller's thread never changes namespace. Every function returns 0 on success, or an
// errno value (> 0) with `err->message` saying what failed on which object ("create
// bridge berth0: File exists"); libnl's NLE_* codes are translated to the nearest errno.
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

/// 1 when `pin_path` is a pinned namespace of any kind (an nsfs mount), 0 otherwise.
int berth_netns_is_pinned(const char *pin_path);

/// berth_ns_release for a network namespace (the same code; its messages say "network
/// namespace"). The kernel destroys the namespace, and with it the container end of its
/// veth pair (and so the host end), once no process is left in it.
int berth_netns_release(const char *pin_path, struct berth_net_err *err);

// ---------------------------------------------------------------------------------------
// A pod's other namespaces, pinned the same way (like CRI-O's pinns): IPC and UTS made
// here, and the pid namespace of a pod's pause process (a pid namespace cannot live
// without its pid 1, so that one is made by `berth-monitor --pause`, and only pinned here).

/// Creates a new IPC namespace and a new UTS namespace whose host name is `hostname`
/// (empty: the copied host's name is kept), on a short-lived thread (unshare of
/// CLONE_NEWIPC | CLONE_NEWUTS), and pins them at `ipc_pin` and `uts_pin` (empty files
/// are created there, O_EXCL; their directories must exist). EEXIST when either path
/// exists already (saying "already pinned" when it is a pin); EINVAL for a host name the
/// kernel refuses (longer than 64 bytes). Nothing is left behind on failure.
int berth_ns_create_ipc_uts(const char *ipc_pin, const char *uts_pin, const char *hostname,
                            struct berth_net_err *err);

/// Pins the namespace of the nsfs file `source` ("/proc/1234/ns/pid": a pause process's
/// pid namespace) at `pin` (created O_EXCL, as above) with a bind mount. EINVAL when
/// `source` is not a namespace file (the mount is undone). Nothing is left on failure.
int berth_ns_pin(const char *source, const char *pin, struct berth_net_err *err);

/// Unpins (umount2 MNT_DETACH) and unlinks `pin_path`, a pin of any kind (network, IPC,
/// UTS, pid); a missing path is success. The kernel destroys the namespace once nothing
/// else refers to it (no process in it, no open descriptor of it).
int berth_ns_release(const char *pin_path, struct berth_net_err *err);

/// The `nstype` values of berth_sysctl_write_in: CLONE_NEWNET, CLONE_NEWIPC and
/// CLONE_NEWUTS of <sched.h>, spelled out because Swift's Glibc module does not export
/// those (they need _GNU_SOURCE). C callers may pass either.
#define BERTH_NS_TYPE_NET 0x40000000
#define BERTH_NS_TYPE_IPC 0x08000000
#define BERTH_NS_TYPE_UTS 0x04000000

/// Writes `value` to the sysctl `key` ("net.ipv4.ip_unprivileged_port_start") inside the
/// namespace pinned at `pin`, whose type `nstype` is CLONE_NEWNET, CLONE_NEWIPC or
/// CLONE_NEWUTS (BERTH_NS_TYPE_NET, _IPC, _UTS): on a short-lived thread that joins it
/// (setns), as /proc/sys/net/ipv4/ip_unprivileged_port_start opened
/// O_WRONLY|O_NOFOLLOW. ENOENT: no such sysctl (in that namespace).
/// EINVAL for another `nstype`, a pin of another type, a key that is not components of
/// [a-z0-9_] joined by single dots (no "/", no "..", no leading or trailing dot: it can
/// name nothing outside /proc/sys; this also refuses keys naming an interface with "-"
/// or "." in its name), or a key `nstype` does not isolate. That last check matters
/// most: a sysctl that is not namespaced (vm.*, most of kernel.*) is the host's, whatever
/// thread writes it (GHSA-w2j5-3rcx-vx7x: CRI-O's pinns set such sysctls on the host).
/// The keys taken are the ones runc calls namespaced: for CLONE_NEWNET net.*; for
/// CLONE_NEWIPC kernel.shm*, kernel.msg*, kernel.sem* and fs.mqueue.*; for CLONE_NEWUTS
/// kernel.hostname and kernel.domainname. The caller validates keys too.
int berth_sysctl_write_in(const char *pin, int nstype, const char *key, const char *value,
                          struct berth_net_err *err);

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
// Routes to other hosts' container subnets (host-gw: `berthd --route CIDR=GATEWAY`), in the
// caller's network namespace, main table.

/// The rtnetlink protocol Berth's routes carry (`ip route` shows "proto 217", after
/// 10.217.0.0/16): it tells them from routes someone else made to the same destination.
/// Unassigned in the kernel's RTPROT_* and iproute2's rt_protos (where bird has 12 and
/// bgp 186): a daemon's own number.
#define BERTH_ROUTE_PROTOCOL 217

/// Adds or replaces (NLM_F_CREATE | NLM_F_REPLACE) the IPv4 route to `dst_cidr`
/// ("10.241.3.0/24") via `gateway` ("10.240.0.13"), protocol BERTH_ROUTE_PROTOCOL, so
/// repeating it (an agent restart) leaves exactly one route. EINVAL for a destination or
/// gateway that is not IPv4; ENETUNREACH when no link of this namespace reaches `gateway`.
int berth_route_replace(const char *dst_cidr, const char *gateway, struct berth_net_err *err);

/// Deletes the route to `dst_cidr` via `gateway` with protocol BERTH_ROUTE_PROTOCOL; a
/// missing route is success. A route to the same destination that Berth did not make
/// (another protocol or gateway) is left alone.
int berth_route_delete(const char *dst_cidr, const char *gateway, struct berth_net_err *err);

// ---------------------------------------------------------------------------------------
// nftables.

/// Runs nft commands (the nft(8) language, several lines, applied as one transaction:
/// all or nothing) through libnftables. On failure `err->message` holds libnftables'
/// error output.
int berth_nft_run(const char *commands, struct berth_net_err *err);

#endif
