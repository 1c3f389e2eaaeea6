import BerthSystem

/// Berth's nftables table (docs/network.md), generated whole from the agent's state and
/// applied as one transaction that first deletes the table: applying it any number of
/// times leaves exactly one copy, and an agent restart cannot duplicate a rule.
struct Ruleset: Sendable, Hashable {
    struct Bridge: Sendable, Hashable {
        var name: String
        var subnet: IPv4Subnet
    }
    struct Published: Sendable, Hashable {
        /// nil: every host address.
        var hostIP: IPv4Address?
        var hostPort: UInt32
        var udp: Bool
        var containerIP: IPv4Address
        var containerPort: UInt32
    }

    /// The table's name (family ip).
    var table: String
    var bridges: [Bridge]
    var published: [Published]
    /// Other hosts' container subnets this agent routes to (`--route`): forwarded both
    /// ways between them and the local bridges, and never masqueraded.
    var remote: [IPv4Subnet] = []

    /// The nft commands that replace the table with this ruleset; when there are no
    /// bridges, they only remove it.
    var commands: String {
        // "add table" first, so that "delete table" has something to delete on the first run.
        var out = "add table ip \(table)\ndelete table ip \(table)\n"
        guard !bridges.isEmpty else { return out }
        out += "table ip \(table) {\n"
        // route_localnet (needed for ports published on 127.0.0.1) would also let a
        // container that routes 127.0.0.0/8 out of its eth0 reach the host's loopback
        // services (CVE-2020-8558 in Kubernetes): drop such packets before anything else.
        let names = bridges.map { "\"\($0.name)\"" }.joined(separator: ", ")
        out += "\tchain guard {\n\t\ttype filter hook prerouting priority raw; policy accept;\n"
        out += "\t\tiifname { \(names) } ip daddr 127.0.0.0/8 drop\n\t}\n"
        // Published ports: DNAT what is addressed to one of the host's own addresses,
        // arriving from outside (prerouting) or sent by the host itself (output, which
        // includes 127.0.0.1: route_localnet on the bridges lets it leave through them).
        out += "\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
        out += "\t\tfib daddr type local jump published\n\t}\n"
        out += "\tchain output {\n\t\ttype nat hook output priority -100; policy accept;\n"
        out += "\t\tfib daddr type local jump published\n\t}\n"
        out += "\tchain published {\n"
        for p in published.sorted(by: { ($0.hostPort, $0.udp ? 1 : 0, $0.hostIP?.value ?? 0) < ($1.hostPort, $1.udp ? 1 : 0, $1.hostIP?.value ?? 0) }) {
            let proto = p.udp ? "udp" : "tcp"
            let match = p.hostIP.map { "ip daddr \($0) " } ?? ""
            out += "\t\t\(match)\(proto) dport \(p.hostPort) dnat to \(p.containerIP):\(p.containerPort)\n"
        }
        out += "\t}\n"
        out += "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
        let local = "{ " + bridges.map { $0.subnet.description }.joined(separator: ", ") + " }"
        let remoteSet = remote.isEmpty ? "" : "{ " + remote.map(\.description).joined(separator: ", ") + " }"
        if !remote.isEmpty {
            // Routes between hosts: a container reaching another host's container keeps its
            // own address (the other host routes the answer back); "accept" in a nat chain
            // ends it here, before the masquerade below.
            out += "\t\tip saddr \(local) ip daddr \(remoteSet) accept\n"
        }
        for b in bridges {
            // Outbound NAT: a container's traffic leaving its bridge takes the host's address.
            out += "\t\tip saddr \(b.subnet) oifname != \"\(b.name)\" masquerade\n"
            // The host itself (127.0.0.1 or one of its addresses) reaching a published
            // port: the container must answer the bridge, not a loopback address.
            out += "\t\toifname \"\(b.name)\" fib saddr type local masquerade\n"
            // Hairpin: a container reaching a published port of its own bridge through a
            // host address; without this the answer would bypass the host's NAT.
            out += "\t\toifname \"\(b.name)\" ip saddr \(b.subnet) ct status dnat masquerade\n"
        }
        out += "\t}\n"
        // Isolation: nothing is forwarded from one Berth network to another.
        out += "\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n"
        if !remote.isEmpty {
            // Routed traffic between the local bridges and other hosts' containers, both ways.
            out += "\t\tip saddr \(local) ip daddr \(remoteSet) accept\n"
            out += "\t\tip saddr \(remoteSet) ip daddr \(local) accept\n"
        }
        if bridges.count > 1 {
            for b in bridges {
                let others = bridges.filter { $0.name != b.name }.map { "\"\($0.name)\"" }.joined(separator: ", ")
                out += "\t\tiifname \"\(b.name)\" oifname { \(others) } drop\n"
            }
        }
        out += "\t}\n}\n"
        return out
    }
}
