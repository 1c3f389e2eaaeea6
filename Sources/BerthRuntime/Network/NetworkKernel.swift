#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import CBerthNet

/// A veth pair to create (see `berth_veth_attach` in CBerthNet.h).
struct VethConfig: Sendable, Hashable {
    var bridge: String
    var hostName: String
    var netnsPath: String
    var ifname = "eth0"
    var mac: [UInt8]
    var address: IPv4Address
    var prefixLength: Int
    var gateway: IPv4Address
}

/// Everything the network layer asks of the kernel, behind one protocol so that IPAM,
/// the ruleset and the state machine can be unit-tested with a recording fake
/// (Tests/BerthRuntimeTests/NetworkTests.swift) and run for real with `KernelNetwork`.
protocol NetworkKernel: Sendable {
    func createNetns(_ pin: String) throws(BerthError)
    func isPinned(_ pin: String) -> Bool
    func releaseNetns(_ pin: String) throws(BerthError)
    func ensureBridge(_ name: String, gateway: IPv4Address, prefixLength: Int) throws(BerthError)
    func deleteLink(_ name: String) throws(BerthError)
    func linkExists(_ name: String) -> Bool
    func attachVeth(_ config: VethConfig) throws(BerthError)
    /// Runs nft commands as one transaction.
    func nft(_ commands: String) throws(BerthError)
    /// net.ipv4.ip_forward.
    func ipForward() -> Bool
    func setIPForward(_ on: Bool) throws(BerthError)
    /// Adds or replaces the route to another host's container subnet (`--route`).
    func replaceRoute(_ route: HostRoute) throws(BerthError)
    /// Deletes a route `replaceRoute` made; a missing one is success.
    func deleteRoute(_ route: HostRoute) throws(BerthError)
    /// The host's IPv4 routes (destination subnet, device), for subnet clash checks.
    func hostRoutes() -> [(subnet: IPv4Subnet, device: String)]
    /// New IPC and UTS namespaces (the UTS one named `hostname`), pinned (pods).
    func createIPCUTS(ipcPin: String, utsPin: String, hostname: String) throws(BerthError)
    /// Pins an nsfs file ("/proc/PID/ns/pid") at `pin`.
    func pin(source: String, pin: String) throws(BerthError)
    /// Writes a sysctl from inside the `namespace` pinned at `pin`.
    func writeSysctl(pin: String, namespace: PodNamespace, key: String, value: String) throws(BerthError)
    /// Whether `port` can be published: 0 when a bind to it works, EADDRINUSE when
    /// something on the host holds it, EADDRNOTAVAIL when `hostIP` is not the host's.
    func portCheck(_ hostIP: IPv4Address?, _ port: UInt16, udp: Bool) -> Int32
}

/// The real kernel: CBerthNet (libnl-route-3, libnftables) and /proc/sys.
struct KernelNetwork: NetworkKernel {
    private func check(_ what: String, _ body: (UnsafeMutablePointer<berth_net_err>) -> Int32) throws(BerthError) {
        var err = berth_net_err()
        let rc = body(&err)
        guard rc != 0 else { return }
        let message = withUnsafeBytes(of: &err.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        let errno = Errno(rawValue: rc)
        var e = errno.error(what)
        e.message = message.isEmpty ? e.message : message
        throw e
    }

    func createNetns(_ pin: String) throws(BerthError) {
        try check("pin network namespace \(pin)") { berth_netns_create(pin, $0) }
    }

    func isPinned(_ pin: String) -> Bool { berth_netns_is_pinned(pin) == 1 }

    func releaseNetns(_ pin: String) throws(BerthError) {
        try check("release namespace \(pin)") { berth_ns_release(pin, $0) }
    }

    func ensureBridge(_ name: String, gateway: IPv4Address, prefixLength: Int) throws(BerthError) {
        try check("bridge \(name)") { berth_bridge_ensure(name, "\(gateway)/\(prefixLength)", $0) }
    }

    func deleteLink(_ name: String) throws(BerthError) {
        try check("delete link \(name)") { berth_link_delete(name, $0) }
    }

    func linkExists(_ name: String) -> Bool { berth_link_exists(name) == 1 }

    func attachVeth(_ c: VethConfig) throws(BerthError) {
        let cidr = "\(c.address)/\(c.prefixLength)"
        let gateway = c.gateway.description
        try check("veth \(c.hostName)") { err in
            c.bridge.withCString { bridge in
                c.hostName.withCString { host in
                    c.netnsPath.withCString { netns in
                        c.ifname.withCString { ifname in
                            cidr.withCString { address in
                                gateway.withCString { gw in
                                    var cfg = berth_veth_config()
                                    cfg.bridge = bridge
                                    cfg.host_name = host
                                    cfg.netns_path = netns
                                    cfg.ifname = ifname
                                    cfg.address_cidr = address
                                    cfg.gateway = gw
                                    withUnsafeMutableBytes(of: &cfg.mac) { mac in
                                        for (i, b) in c.mac.prefix(6).enumerated() { mac[i] = b }
                                    }
                                    return berth_veth_attach(&cfg, err)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    func createIPCUTS(ipcPin: String, utsPin: String, hostname: String) throws(BerthError) {
        try check("pin IPC and UTS namespaces") { berth_ns_create_ipc_uts(ipcPin, utsPin, hostname, $0) }
    }

    func pin(source: String, pin: String) throws(BerthError) {
        try check("pin \(source)") { berth_ns_pin(source, pin, $0) }
    }

    func writeSysctl(pin: String, namespace: PodNamespace, key: String, value: String) throws(BerthError) {
        let type: Int32
        switch namespace {
        case .net: type = BERTH_NS_TYPE_NET
        case .ipc: type = BERTH_NS_TYPE_IPC
        case .uts: type = BERTH_NS_TYPE_UTS
        case .pid: throw BerthError(.invalidArgument, "sysctl \(key): no sysctl lives in a pid namespace")
        }
        try check("sysctl \(key)") { berth_sysctl_write_in(pin, type, key, value, $0) }
    }

    func nft(_ commands: String) throws(BerthError) {
        try check("nftables") { berth_nft_run(commands, $0) }
    }

    func replaceRoute(_ route: HostRoute) throws(BerthError) {
        try check("add route \(route.subnet) via \(route.gateway)") {
            berth_route_replace(route.subnet.description, route.gateway.description, $0)
        }
    }

    func deleteRoute(_ route: HostRoute) throws(BerthError) {
        try check("delete route \(route.subnet) via \(route.gateway)") {
            berth_route_delete(route.subnet.description, route.gateway.description, $0)
        }
    }

    private static let forwardPath = "/proc/sys/net/ipv4/ip_forward"

    func ipForward() -> Bool {
        ((try? Files.readString(KernelNetwork.forwardPath)) ?? "0").hasPrefix("1")
    }

    func setIPForward(_ on: Bool) throws(BerthError) {
        do {
            let fd = try FileDescriptor.open(KernelNetwork.forwardPath, O_WRONLY | O_CLOEXEC)
            defer { fd.close() }
            try fd.writeAll(Array((on ? "1\n" : "0\n").utf8))
        } catch {
            throw error.berthError("set net.ipv4.ip_forward")
        }
    }

    /// /proc/net/route: "Iface Destination Gateway Flags RefCnt Use Metric Mask ...", the
    /// addresses as little-endian hex.
    func hostRoutes() -> [(subnet: IPv4Subnet, device: String)] {
        guard let text = try? Files.readString("/proc/net/route") else { return [] }
        var out: [(IPv4Subnet, String)] = []
        for line in text.split(separator: "\n").dropFirst() {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard f.count >= 8, let dest = UInt32(f[1], radix: 16), let mask = UInt32(f[7], radix: 16) else { continue }
            let d = dest.byteSwapped, m = mask.byteSwapped
            guard m != 0 else { continue } // the default route clashes with nothing
            out.append((IPv4Subnet(network: IPv4Address(d), prefixLength: m.nonzeroBitCount), String(f[0])))
        }
        return out
    }

    func portCheck(_ hostIP: IPv4Address?, _ port: UInt16, udp: Bool) -> Int32 {
        let fd = socket(AF_INET, Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        // SO_REUSEADDR: a TCP port whose last connection lingers in TIME_WAIT is free for
        // a new listener, and so it is for us; only a live socket counts.
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = (hostIP?.value ?? 0).bigEndian
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return rc == 0 ? 0 : errno
    }
}
