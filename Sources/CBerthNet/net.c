// Links in the host's network namespace (bridges, veth pairs) through libnl-route-3, and
// the error helpers the other files share. Pinned namespaces are in netns.c, nftables in
// nft.c.
//
// Every call opens its own netlink socket and frees every libnl object it allocated
// before returning, on every path: nothing is cached between calls, so any thread may
// call at any time.
#define _GNU_SOURCE
#include "netpriv.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>

// ---------------------------------------------------------------------------------------
// Errors.

int berth_net_ok(struct berth_net_err *err) {
    if (err != NULL) {
        err->code = 0;
        err->message[0] = '\0';
    }
    return 0;
}

static void set_message(struct berth_net_err *err, const char *suffix, const char *fmt, va_list ap) {
    if (err == NULL) return;
    int n = vsnprintf(err->message, sizeof err->message, fmt, ap);
    if (suffix != NULL && n >= 0 && (size_t)n < sizeof err->message) {
        snprintf(err->message + n, sizeof err->message - (size_t)n, ": %s", suffix);
    }
}

int berth_net_fail(struct berth_net_err *err, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_message(err, NULL, fmt, ap);
    va_end(ap);
    if (err != NULL) err->code = code;
    return code;
}

int berth_net_fail_sys(struct berth_net_err *err, int code, const char *fmt, ...) {
    char buf[128];
    // The GNU strerror_r: thread-safe, and it returns the string (not always in buf).
    const char *text = strerror_r(code, buf, sizeof buf);
    va_list ap;
    va_start(ap, fmt);
    set_message(err, text, fmt, ap);
    va_end(ap);
    if (err != NULL) err->code = code;
    return code;
}

int berth_net_errno_from_nl(int nlerr) {
    switch (nlerr < 0 ? -nlerr : nlerr) {
    case NLE_EXIST: return EEXIST;
    // The kernel's ENOENT and ESRCH (no such address, route) arrive as NLE_OBJ_NOTFOUND,
    // its ENODEV (no such link) as NLE_NODEV.
    case NLE_OBJ_NOTFOUND: return ENOENT;
    case NLE_NODEV: return ENODEV;
    case NLE_PERM: return EPERM;
    case NLE_BUSY: return EBUSY;
    case NLE_INVAL: return EINVAL;
    case NLE_NOMEM: return ENOMEM;
    case NLE_RANGE: return ERANGE;
    case NLE_NOADDR: return EADDRNOTAVAIL;
    case NLE_OPNOTSUPP: return EOPNOTSUPP;
    case NLE_AGAIN: return EAGAIN;
    default: return EIO;
    }
}

// The errno of the last error the kernel answered on this thread (every socket made by
// berth_net_route_socket records it). libnl folds every errno it has no NLE_* code for
// (ENETUNREACH, ENETDOWN, EMLINK, ...) into NLE_FAILURE, "Unspecific failure"; this keeps
// the real one. Thread-local because the callback runs on the thread that receives.
static _Thread_local int last_kernel_errno;

static int record_kernel_error(struct sockaddr_nl *who, struct nlmsgerr *e, void *arg) {
    (void)who;
    (void)arg;
    last_kernel_errno = -e->error;
    // NL_STOP: libnl still returns its own translation of the error, as without a callback.
    return NL_STOP;
}

int berth_net_fail_nl(struct berth_net_err *err, int nlerr, const char *fmt, ...) {
    int code = berth_net_errno_from_nl(nlerr);
    const char *text = nl_geterror(nlerr);
    char buf[128];
    int kernel = last_kernel_errno;
    last_kernel_errno = 0;
    // Only when the recorded errno is one libnl folds into NLE_FAILURE is it the cause of
    // this failure (an earlier, accepted error such as EEXIST translates to something else).
    if ((nlerr == NLE_FAILURE || nlerr == -NLE_FAILURE) && kernel > 0 && nl_syserr2nlerr(kernel) == NLE_FAILURE) {
        code = kernel;
        text = strerror_r(kernel, buf, sizeof buf);
    }
    va_list ap;
    va_start(ap, fmt);
    set_message(err, text, fmt, ap);
    va_end(ap);
    if (err != NULL) err->code = code;
    return code;
}

// Mirrors the kernel's dev_valid_name. Checked before any name goes into a /proc path or
// a request, so that a bad name is EINVAL with its own message rather than a netlink error.
int berth_net_valid_ifname(const char *name) {
    if (name == NULL || name[0] == '\0' || strnlen(name, IFNAMSIZ) >= IFNAMSIZ) return 0;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return 0;
    for (const char *p = name; *p != '\0'; p++) {
        if (*p == '/' || *p == ':' || *p == ' ' || (*p >= '\t' && *p <= '\r')) return 0;
    }
    return 1;
}

// ---------------------------------------------------------------------------------------
// Sockets and small libnl steps.

int berth_net_route_socket(struct nl_sock **out) {
    *out = NULL;
    // Every call starts with a socket: nothing recorded by an earlier call (say, a cleanup
    // step whose error was dropped) can be mistaken for this call's cause.
    last_kernel_errno = 0;
    struct nl_sock *sk = nl_socket_alloc();
    if (sk == NULL) return -NLE_NOMEM;
    int rc = nl_socket_modify_err_cb(sk, NL_CB_CUSTOM, record_kernel_error, NULL);
    if (rc == 0) rc = nl_connect(sk, NETLINK_ROUTE);
    if (rc < 0) {
        nl_socket_free(sk);
        return rc;
    }
    *out = sk;
    return 0;
}

/// Sets IFF_UP on `link` (as fetched from the kernel through `sk`).
static int link_set_up(struct nl_sock *sk, struct rtnl_link *link) {
    struct rtnl_link *change = rtnl_link_alloc();
    if (change == NULL) return -NLE_NOMEM;
    rtnl_link_set_flags(change, IFF_UP);
    int rc = rtnl_link_change(sk, link, change, 0);
    rtnl_link_put(change);
    return rc;
}

/// Adds the IPv4 address `local` (with its prefix length) to link `ifindex`.
static int addr_add(struct nl_sock *sk, int ifindex, struct nl_addr *local) {
    struct rtnl_addr *addr = rtnl_addr_alloc();
    if (addr == NULL) return -NLE_NOMEM;
    rtnl_addr_set_ifindex(addr, ifindex);
    int rc = rtnl_addr_set_local(addr, local);
    if (rc == 0) {
        rtnl_addr_set_prefixlen(addr, (int)nl_addr_get_prefixlen(local));
        // NLM_F_EXCL: an address already there is NLE_EXIST, which callers may accept.
        rc = rtnl_addr_add(sk, addr, NLM_F_CREATE | NLM_F_EXCL);
    }
    rtnl_addr_put(addr);
    return rc;
}

/// Parses an IPv4 address ("10.0.0.1" or "10.0.0.1/16"); NULL unless it is IPv4.
static struct nl_addr *parse_ipv4(const char *text) {
    struct nl_addr *a = NULL;
    if (text == NULL || nl_addr_parse(text, AF_INET, &a) < 0) return NULL;
    // nl_addr_parse also accepts "default"/"any" (an empty address) and bare hex; neither
    // is an address a link can hold.
    if (nl_addr_get_family(a) != AF_INET || nl_addr_get_len(a) != 4 || nl_addr_get_prefixlen(a) > 32) {
        nl_addr_put(a);
        return NULL;
    }
    return a;
}

/// Adds the default route via `gateway` on link `ifindex` to the main table.
static int default_route_add(struct nl_sock *sk, int ifindex, struct nl_addr *gateway) {
    static const unsigned char any[4] = {0, 0, 0, 0};
    struct nl_addr *dst = nl_addr_build(AF_INET, any, sizeof any);
    struct rtnl_route *route = rtnl_route_alloc();
    struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
    int rc = -NLE_NOMEM;
    if (dst == NULL || route == NULL || nh == NULL) goto out;
    nl_addr_set_prefixlen(dst, 0);
    rtnl_route_set_family(route, AF_INET);
    rtnl_route_set_table(route, RT_TABLE_MAIN);
    rtnl_route_set_protocol(route, RTPROT_BOOT);
    rtnl_route_set_scope(route, RT_SCOPE_UNIVERSE);
    rtnl_route_set_type(route, RTN_UNICAST);
    if ((rc = rtnl_route_set_dst(route, dst)) < 0) goto out;
    rtnl_route_nh_set_ifindex(nh, ifindex);
    rtnl_route_nh_set_gateway(nh, gateway);
    // The route owns the nexthop from here on and frees it with itself.
    rtnl_route_add_nexthop(route, nh);
    nh = NULL;
    rc = rtnl_route_add(sk, route, NLM_F_CREATE | NLM_F_EXCL);
out:
    if (nh != NULL) rtnl_route_nh_free(nh);
    if (route != NULL) rtnl_route_put(route);
    if (dst != NULL) nl_addr_put(dst);
    return rc;
}

/// Deletes the link `name` through `sk`; a missing link is success (0).
static int link_delete_by_name(struct nl_sock *sk, const char *name) {
    struct rtnl_link *link = rtnl_link_alloc();
    if (link == NULL) return -NLE_NOMEM;
    rtnl_link_set_name(link, name);
    int rc = rtnl_link_delete(sk, link);
    rtnl_link_put(link);
    // No such link: NLE_NODEV (the kernel's ENODEV); NLE_OBJ_NOTFOUND to be safe.
    if (rc == -NLE_OBJ_NOTFOUND || rc == -NLE_NODEV) rc = 0;
    return rc;
}

/// Writes `value` to a /proc/sys file.
static int write_sysctl(const char *path, const char *value) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    size_t len = strlen(value);
    ssize_t n;
    do { n = write(fd, value, len); } while (n < 0 && errno == EINTR);
    int rc = n < 0 ? errno : ((size_t)n == len ? 0 : EIO);
    close(fd);
    return rc;
}

// ---------------------------------------------------------------------------------------
// Bridges and links.

int berth_bridge_ensure(const char *name, const char *gateway_cidr, struct berth_net_err *err) {
    if (!berth_net_valid_ifname(name)) {
        return berth_net_fail(err, EINVAL, "create bridge: invalid interface name \"%s\"", name ? name : "");
    }
    struct nl_addr *gateway = parse_ipv4(gateway_cidr);
    if (gateway == NULL) {
        return berth_net_fail(err, EINVAL, "bridge %s: invalid IPv4 address \"%s\"", name,
                              gateway_cidr ? gateway_cidr : "");
    }
    struct nl_sock *sk = NULL;
    struct rtnl_link *link = NULL, *bridge = NULL;
    int rc = berth_net_route_socket(&sk);
    if (rc < 0) {
        rc = berth_net_fail_nl(err, rc, "bridge %s: open netlink socket", name);
        goto out;
    }

    rc = rtnl_link_get_kernel(sk, 0, name, &link);
    if (rc == -NLE_OBJ_NOTFOUND || rc == -NLE_NODEV) {
        if ((bridge = rtnl_link_alloc()) == NULL) {
            rc = berth_net_fail(err, ENOMEM, "create bridge %s: out of memory", name);
            goto out;
        }
        rtnl_link_set_name(bridge, name);
        if ((rc = rtnl_link_set_type(bridge, "bridge")) < 0) {
            rc = berth_net_fail_nl(err, rc, "create bridge %s", name);
            goto out;
        }
        rc = rtnl_link_add(sk, bridge, NLM_F_CREATE | NLM_F_EXCL);
        // NLE_EXIST: a concurrent caller created it first; the type check below decides.
        if (rc < 0 && rc != -NLE_EXIST) {
            rc = berth_net_fail_nl(err, rc, "create bridge %s", name);
            goto out;
        }
        // Fetched again for its ifindex and so that the type check covers the race too.
        rc = rtnl_link_get_kernel(sk, 0, name, &link);
    }
    if (rc < 0) {
        rc = berth_net_fail_nl(err, rc, "look up bridge %s", name);
        goto out;
    }
    const char *type = rtnl_link_get_type(link);
    if (type == NULL || strcmp(type, "bridge") != 0) {
        rc = berth_net_fail(err, EEXIST, "create bridge %s: a link of that name exists and is %s%s", name,
                            type ? "a " : "not a bridge", type ? type : "");
        goto out;
    }
    int ifindex = rtnl_link_get_ifindex(link);

    rc = addr_add(sk, ifindex, gateway);
    if (rc < 0 && rc != -NLE_EXIST) {
        rc = berth_net_fail_nl(err, rc, "add address %s to bridge %s", gateway_cidr, name);
        goto out;
    }
    if ((rc = link_set_up(sk, link)) < 0) {
        rc = berth_net_fail_nl(err, rc, "set bridge %s up", name);
        goto out;
    }

    // Lets DNAT send packets for 127.0.0.1-published ports out of the bridge; without it
    // the kernel drops them as martians. The name was validated, so the path is safe.
    char path[96];
    snprintf(path, sizeof path, "/proc/sys/net/ipv4/conf/%s/route_localnet", name);
    if ((rc = write_sysctl(path, "1")) != 0) {
        rc = berth_net_fail_sys(err, rc, "write %s", path);
        goto out;
    }
    rc = berth_net_ok(err);
out:
    if (bridge != NULL) rtnl_link_put(bridge);
    if (link != NULL) rtnl_link_put(link);
    if (sk != NULL) nl_socket_free(sk);
    nl_addr_put(gateway);
    return rc;
}

int berth_link_delete(const char *name, struct berth_net_err *err) {
    if (!berth_net_valid_ifname(name)) {
        return berth_net_fail(err, EINVAL, "delete link: invalid interface name \"%s\"", name ? name : "");
    }
    struct nl_sock *sk = NULL;
    int rc = berth_net_route_socket(&sk);
    if (rc < 0) return berth_net_fail_nl(err, rc, "delete link %s: open netlink socket", name);
    rc = link_delete_by_name(sk, name);
    nl_socket_free(sk);
    if (rc < 0) return berth_net_fail_nl(err, rc, "delete link %s", name);
    return berth_net_ok(err);
}

int berth_link_exists(const char *name) {
    if (!berth_net_valid_ifname(name)) return 0;
    struct nl_sock *sk = NULL;
    if (berth_net_route_socket(&sk) < 0) return 0;
    struct rtnl_link *link = NULL;
    int rc = rtnl_link_get_kernel(sk, 0, name, &link);
    if (link != NULL) rtnl_link_put(link);
    nl_socket_free(sk);
    return rc == 0 ? 1 : 0;
}

int berth_bridge_port_count(const char *name) {
    if (!berth_net_valid_ifname(name)) return -1;
    struct nl_sock *sk = NULL;
    if (berth_net_route_socket(&sk) < 0) return -1;
    struct nl_cache *cache = NULL;
    int count = -1;
    if (rtnl_link_alloc_cache(sk, AF_UNSPEC, &cache) < 0) goto out;
    // rtnl_link_get_by_name takes a reference.
    struct rtnl_link *bridge = rtnl_link_get_by_name(cache, name);
    if (bridge == NULL) goto out;
    int ifindex = rtnl_link_get_ifindex(bridge);
    rtnl_link_put(bridge);
    count = 0;
    for (struct nl_object *obj = nl_cache_get_first(cache); obj != NULL; obj = nl_cache_get_next(obj)) {
        if (rtnl_link_get_master((struct rtnl_link *)obj) == ifindex) count++;
    }
out:
    if (cache != NULL) nl_cache_free(cache);
    nl_socket_free(sk);
    return count;
}

// ---------------------------------------------------------------------------------------
// Veth pairs.

int berth_veth_attach(const struct berth_veth_config *cfg, struct berth_net_err *err) {
    if (cfg == NULL || cfg->netns_path == NULL) {
        return berth_net_fail(err, EINVAL, "attach veth: missing configuration");
    }
    const char *names[] = {cfg->bridge, cfg->host_name, cfg->ifname};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!berth_net_valid_ifname(names[i])) {
            return berth_net_fail(err, EINVAL, "attach veth: invalid interface name \"%s\"",
                                  names[i] ? names[i] : "");
        }
    }
    const char *host = cfg->host_name, *peer_name = cfg->ifname, *pin = cfg->netns_path;

    struct nl_addr *local = parse_ipv4(cfg->address_cidr), *gateway = parse_ipv4(cfg->gateway);
    struct nl_addr *mac = nl_addr_build(AF_LLC, cfg->mac, sizeof cfg->mac);
    struct nl_sock *sk = NULL, *nsk = NULL;
    struct rtnl_link *bridge = NULL, *stale = NULL, *veth = NULL, *peer = NULL, *inside = NULL;
    int nsfd = -1, created = 0, rc;

    if (local == NULL) {
        rc = berth_net_fail(err, EINVAL, "attach veth %s: invalid IPv4 address \"%s\"", host,
                            cfg->address_cidr ? cfg->address_cidr : "");
        goto out;
    }
    if (gateway == NULL) {
        rc = berth_net_fail(err, EINVAL, "attach veth %s: invalid gateway \"%s\"", host,
                            cfg->gateway ? cfg->gateway : "");
        goto out;
    }
    if (mac == NULL) {
        rc = berth_net_fail(err, ENOMEM, "attach veth %s: out of memory", host);
        goto out;
    }
    if ((rc = berth_net_route_socket(&sk)) < 0) {
        rc = berth_net_fail_nl(err, rc, "attach veth %s: open netlink socket", host);
        goto out;
    }
    if ((rc = rtnl_link_get_kernel(sk, 0, cfg->bridge, &bridge)) < 0) {
        rc = berth_net_fail_nl(err, rc, "attach veth %s: look up bridge %s", host, cfg->bridge);
        goto out;
    }

    // A host end left over from an earlier attempt (or a container whose namespace is
    // still pinned) is replaced; deleting it takes its peer along. Only a veth is deleted:
    // a misconfigured name must never take down some other host link.
    rc = rtnl_link_get_kernel(sk, 0, host, &stale);
    if (rc == 0) {
        const char *type = rtnl_link_get_type(stale);
        if (type == NULL || strcmp(type, "veth") != 0) {
            rc = berth_net_fail(err, EEXIST, "attach veth %s: a link of that name exists and is not a veth", host);
            goto out;
        }
        if ((rc = link_delete_by_name(sk, host)) < 0) {
            rc = berth_net_fail_nl(err, rc, "delete stale veth %s", host);
            goto out;
        }
    } else if (rc != -NLE_OBJ_NOTFOUND && rc != -NLE_NODEV) {
        rc = berth_net_fail_nl(err, rc, "look up link %s", host);
        goto out;
    }

    nsfd = open(pin, O_RDONLY | O_CLOEXEC);
    if (nsfd < 0) {
        rc = berth_net_fail_sys(err, errno, "attach veth %s: open network namespace %s", host, pin);
        goto out;
    }

    // One RTM_NEWLINK: the host end enslaved and up, the peer named, addressed (MAC) and
    // placed straight into the namespace (IFLA_NET_NS_FD inside VETH_INFO_PEER), so it
    // never exists in the host namespace where its name could clash.
    if ((veth = rtnl_link_veth_alloc()) == NULL || (peer = rtnl_link_veth_get_peer(veth)) == NULL) {
        rc = berth_net_fail(err, ENOMEM, "create veth %s: out of memory", host);
        goto out;
    }
    rtnl_link_set_name(veth, host);
    rtnl_link_set_master(veth, rtnl_link_get_ifindex(bridge));
    rtnl_link_set_flags(veth, IFF_UP);
    rtnl_link_set_name(peer, peer_name);
    rtnl_link_set_addr(peer, mac);
    rtnl_link_set_ns_fd(peer, nsfd);
    if ((rc = rtnl_link_add(sk, veth, NLM_F_CREATE | NLM_F_EXCL)) < 0) {
        rc = berth_net_fail_nl(err, rc, "create veth %s (peer %s in %s)", host, peer_name, pin);
        goto out;
    }
    created = 1;

    // The rest happens inside the namespace, through a socket created there.
    if ((rc = berth_net_route_socket_in(pin, &nsk, err)) != 0) goto out;
    if ((rc = rtnl_link_get_kernel(nsk, 0, peer_name, &inside)) < 0) {
        rc = berth_net_fail_nl(err, rc, "look up %s in %s", peer_name, pin);
        goto out;
    }
    if ((rc = link_set_up(nsk, inside)) < 0) {
        rc = berth_net_fail_nl(err, rc, "set %s up in %s", peer_name, pin);
        goto out;
    }
    if ((rc = addr_add(nsk, rtnl_link_get_ifindex(inside), local)) < 0) {
        rc = berth_net_fail_nl(err, rc, "add address %s to %s in %s", cfg->address_cidr, peer_name, pin);
        goto out;
    }
    if ((rc = default_route_add(nsk, rtnl_link_get_ifindex(inside), gateway)) < 0) {
        rc = berth_net_fail_nl(err, rc, "add default route via %s in %s", cfg->gateway, pin);
        goto out;
    }
    rc = berth_net_ok(err);
out:
    // Failing after the pair exists: deleting the host end removes the peer too. The
    // error already reported is the step that failed, so this one's result is dropped.
    if (rc != 0 && created) (void)link_delete_by_name(sk, host);
    if (inside != NULL) rtnl_link_put(inside);
    if (peer != NULL) rtnl_link_put(peer);
    if (veth != NULL) rtnl_link_put(veth);
    if (stale != NULL) rtnl_link_put(stale);
    if (bridge != NULL) rtnl_link_put(bridge);
    if (nsk != NULL) nl_socket_free(nsk);
    if (sk != NULL) nl_socket_free(sk);
    if (nsfd >= 0) close(nsfd);
    if (mac != NULL) nl_addr_put(mac);
    if (gateway != NULL) nl_addr_put(gateway);
    if (local != NULL) nl_addr_put(local);
    return rc;
}

// ---------------------------------------------------------------------------------------
// Routes to other hosts' container subnets.

/// A unicast IPv4 route in the main table with Berth's protocol, to `dst` via `gw`
/// (the nexthop's link is left to the kernel: the one whose subnet holds `gw`).
static int host_route_build(struct nl_addr *dst, struct nl_addr *gw, struct rtnl_route **out) {
    *out = NULL;
    struct rtnl_route *route = rtnl_route_alloc();
    struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
    if (route == NULL || nh == NULL) {
        if (nh != NULL) rtnl_route_nh_free(nh);
        if (route != NULL) rtnl_route_put(route);
        return -NLE_NOMEM;
    }
    rtnl_route_set_family(route, AF_INET);
    rtnl_route_set_table(route, RT_TABLE_MAIN);
    rtnl_route_set_protocol(route, BERTH_ROUTE_PROTOCOL);
    rtnl_route_set_scope(route, RT_SCOPE_UNIVERSE);
    rtnl_route_set_type(route, RTN_UNICAST);
    int rc = rtnl_route_set_dst(route, dst);
    if (rc < 0) {
        rtnl_route_nh_free(nh);
        rtnl_route_put(route);
        return rc;
    }
    rtnl_route_nh_set_gateway(nh, gw);
    // The route owns the nexthop from here on.
    rtnl_route_add_nexthop(route, nh);
    *out = route;
    return 0;
}

/// Parses a route's destination and gateway: both IPv4, the destination with its prefix
/// and no host bits (the kernel refuses those with EINVAL, less clearly).
static int route_parse(const char *what, const char *dst_cidr, const char *gateway, struct nl_addr **dst,
                       struct nl_addr **gw, struct berth_net_err *err) {
    *dst = parse_ipv4(dst_cidr);
    *gw = NULL;
    if (*dst == NULL || dst_cidr == NULL || strchr(dst_cidr, '/') == NULL) {
        if (*dst != NULL) nl_addr_put(*dst);
        *dst = NULL;
        return berth_net_fail(err, EINVAL, "%s: invalid destination \"%s\": expected an IPv4 subnet such as 10.241.3.0/24",
                              what, dst_cidr ? dst_cidr : "");
    }
    const unsigned char *b = nl_addr_get_binary_addr(*dst);
    unsigned int plen = nl_addr_get_prefixlen(*dst);
    uint32_t value = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    uint32_t mask = plen == 0 ? 0 : 0xffffffffu << (32 - plen);
    if ((value & ~mask) != 0) {
        nl_addr_put(*dst);
        *dst = NULL;
        return berth_net_fail(err, EINVAL, "%s: invalid destination \"%s\": host bits are set", what, dst_cidr);
    }
    *gw = parse_ipv4(gateway);
    if (*gw == NULL || strchr(gateway, '/') != NULL) {
        if (*gw != NULL) nl_addr_put(*gw);
        nl_addr_put(*dst);
        *dst = *gw = NULL;
        return berth_net_fail(err, EINVAL, "%s: invalid gateway \"%s\": expected an IPv4 address", what,
                              gateway ? gateway : "");
    }
    return 0;
}

// Adds (replacing) or deletes one of the agent's routes to another host's subnet.
static int route_change(int add, const char *dst_cidr, const char *gateway, struct berth_net_err *err) {
    const char *what = add ? "add route" : "delete route";
    struct nl_addr *dst = NULL, *gw = NULL;
    int rc = route_parse(what, dst_cidr, gateway, &dst, &gw, err);
    if (rc != 0) return rc;
    struct nl_sock *sk = NULL;
    struct rtnl_route *route = NULL;
    if ((rc = berth_net_route_socket(&sk)) < 0) {
        rc = berth_net_fail_nl(err, rc, "%s %s via %s: open netlink socket", what, dst_cidr, gateway);
        goto out;
    }
    if ((rc = host_route_build(dst, gw, &route)) < 0) {
        rc = berth_net_fail_nl(err, rc, "%s %s via %s", what, dst_cidr, gateway);
        goto out;
    }
    if (add) {
        // REPLACE: an agent restart (or another gateway for the same subnet in a changed
        // configuration) leaves one route, not EEXIST.
        rc = rtnl_route_add(sk, route, NLM_F_CREATE | NLM_F_REPLACE);
    } else {
        // The kernel matches the protocol and the nexthop's gateway too: a route to the
        // same subnet that someone else made is not ours to delete. No such route: ESRCH
        // from the kernel, NLE_OBJ_NOTFOUND from libnl.
        rc = rtnl_route_delete(sk, route, 0);
        if (rc == -NLE_OBJ_NOTFOUND) rc = 0;
    }
    if (rc < 0) {
        rc = berth_net_fail_nl(err, rc, "%s %s via %s", what, dst_cidr, gateway);
        goto out;
    }
    rc = berth_net_ok(err);
out:
    if (route != NULL) rtnl_route_put(route);
    if (sk != NULL) nl_socket_free(sk);
    nl_addr_put(gw);
    nl_addr_put(dst);
    return rc;
}

int berth_route_replace(const char *dst_cidr, const char *gateway, struct berth_net_err *err) {
    return route_change(1, dst_cidr, gateway, err);
}

int berth_route_delete(const char *dst_cidr, const char *gateway, struct berth_net_err *err) {
    return route_change(0, dst_cidr, gateway, err);
}
