#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem

/// A route to another host's container subnet (host-gw style: `berthd --route
/// 10.241.3.0/24=10.240.0.13`), installed by the agent in its own network namespace so
/// that containers on different hosts reach each other by their own addresses
/// (docs/network.md, "Routes between hosts").
public struct HostRoute: Sendable, Hashable, CustomStringConvertible {
    /// The remote host's container subnet.
    public var subnet: IPv4Subnet
    /// The remote host's address, on a link of this host.
    public var gateway: IPv4Address

    public init(subnet: IPv4Subnet, gateway: IPv4Address) {
        self.subnet = subnet
        self.gateway = gateway
    }

    /// Parses `CIDR=GATEWAY` ("10.241.3.0/24=10.240.0.13").
    public init(parsing text: String) throws(BerthError) {
        let parts = text.split(separator: "=", omittingEmptySubsequences: false)
        guard parts.count == 2 else {
            throw BerthError(.invalidArgument, "invalid route \"\(text)\": expected CIDR=GATEWAY such as 10.241.3.0/24=10.240.0.13")
        }
        let subnet: IPv4Subnet
        do {
            subnet = try IPv4Subnet(parsing: String(parts[0]))
        } catch {
            throw BerthError(.invalidArgument, "invalid route \"\(text)\": \(error.message)")
        }
        guard let gateway = IPv4Address(String(parts[1])) else {
            throw BerthError(.invalidArgument, "invalid route \"\(text)\": gateway \"\(parts[1])\" is not an IPv4 address")
        }
        guard !gateway.isUnspecified, !gateway.isLoopback, gateway.value >> 28 != 0xe, gateway.value != UInt32.max else {
            throw BerthError(.invalidArgument, "invalid route \"\(text)\": gateway \(gateway) is not a unicast address of another host")
        }
        guard !subnet.contains(gateway) else {
            throw BerthError(.invalidArgument, "invalid route \"\(text)\": the gateway \(gateway) lies inside the subnet it leads to")
        }
        self.init(subnet: subnet, gateway: gateway)
    }

    /// `CIDR=GATEWAY`, as parsed.
    public var description: String { "\(subnet)=\(gateway)" }
}

extension NetworkOptions {
    /// The routes must not lead to this agent's own subnets, nor twice to one place.
    func validateRoutes() throws(BerthError) {
        let local = [("--default-subnet", defaultSubnet), ("--subnet-pool", subnetPool)]
        for (i, r) in routes.enumerated() {
            for (flag, text) in local {
                if let s = try? IPv4Subnet(parsing: text), s.overlaps(r.subnet) {
                    throw BerthError(.invalidArgument, "route \(r): \(r.subnet) overlaps this agent's \(flag) \(s): a route must lead to another host's containers")
                }
                if let s = try? IPv4Subnet(parsing: text), s.contains(r.gateway) {
                    throw BerthError(.invalidArgument, "route \(r): the gateway \(r.gateway) lies inside this agent's \(flag) \(s)")
                }
            }
            for other in routes[..<i] where other.subnet.overlaps(r.subnet) {
                throw BerthError(.invalidArgument, "routes \(other) and \(r) lead to overlapping subnets")
            }
        }
    }
}

extension NetworkManager {
    /// Where the agent records the routes it installed, so that a route dropped from the
    /// configuration is removed at the next start (and nobody else's route ever is).
    var routesRecord: String { stateDir + "/routes.berth" }

    /// Agent start: removes the routes an earlier run installed that the configuration no
    /// longer has, and installs (replaces) every configured one. Idempotent: a restart
    /// leaves the same routes. A route the kernel refuses (no link reaches its gateway)
    /// fails the start with a message naming it. Routes are not removed when the agent
    /// stops: containers outlive the agent, and so does their reach to other hosts.
    func installRoutes() throws(BerthError) {
        let wanted = options.routes
        let recorded = ((try? Files.readString(routesRecord)) ?? "").split(separator: "\n").compactMap {
            try? HostRoute(parsing: String($0))
        }
        var installed = recorded
        func record(_ routes: [HostRoute]) throws(BerthError) {
            let text = routes.map { "\($0)\n" }.joined()
            do {
                if routes.isEmpty { _ = unlink(routesRecord) } else { try Files.writeAtomically(routesRecord, Array(text.utf8), mode: 0o600) }
            } catch {
                throw error.berthError("record the routes in \(routesRecord)")
            }
        }
        for old in recorded where !wanted.contains(old) {
            do {
                try kernel.deleteRoute(old)
                Log.write("route \(old) removed: it is no longer configured")
                installed.removeAll { $0 == old }
            } catch {
                Log.write("route \(old): \(error)")
            }
        }
        for r in wanted {
            // Recorded before the kernel is asked, so that a crash in between cannot leave
            // a route of ours that no record names.
            if !installed.contains(r) {
                installed.append(r)
                try record(installed)
            }
            do {
                try kernel.replaceRoute(r)
            } catch {
                throw BerthError(error.code, "route \(r): \(error.message)")
            }
        }
        // A stale route whose deletion failed stays recorded, so the next start tries again.
        try record(installed.filter { !wanted.contains($0) } + wanted)
        if !wanted.isEmpty { Log.write("routes to other hosts: \(wanted.map(\.description).joined(separator: ", "))") }
    }
}
