import BerthErrors
import BerthSystem
import BerthWire

/// The namespaces a pod can share.
enum PodNamespace: String, Sendable, CaseIterable {
    case net, ipc, uts, pid
}

extension Validate {
    /// Checks and normalises a PodSpec: share list (default net, ipc, uts; net always),
    /// names, ports, network, sysctls.
    static func podSpec(_ spec: inout PodSpec) throws(BerthError) {
        if !spec.name.isEmpty { try name(spec.name, kind: "pod") }
        if !spec.hostname.isEmpty { try hostname(spec.hostname) }
        var share: [PodNamespace] = []
        for raw in spec.share.flatMap({ $0.split(separator: ",").map { String($0).trimmingSpaces } }) where !raw.isEmpty {
            guard let ns = PodNamespace(rawValue: raw) else {
                throw BerthError(.invalidArgument, "unknown namespace \"\(raw)\" in --share: use net, ipc, uts and pid")
            }
            if !share.contains(ns) { share.append(ns) }
        }
        if share.isEmpty { share = [.net, .ipc, .uts] }
        if !share.contains(.net) {
            throw BerthError(.invalidArgument, "a pod always shares its network namespace: add net to --share")
        }
        spec.share = PodNamespace.allCases.filter(share.contains).map(\.rawValue)
        switch NetworkMode(spec.network) {
        case .host, .container:
            throw BerthError(.invalidArgument, "a pod's network is a bridge network or none, not \(spec.network)")
        default: break
        }
        var probe = ContainerSpec()
        probe.network = spec.network
        probe.ports = spec.ports
        probe.dns = spec.dns
        probe.extraHosts = spec.extraHosts
        try network(probe)
        for (key, _) in spec.sysctls {
            let ns = try sysctlNamespace(key)
            if !share.contains(ns) {
                throw BerthError(.invalidArgument, "sysctl \(key) belongs to the \(ns.rawValue) namespace, which this pod does not share")
            }
        }
        for value in spec.sysctls.values where value.isEmpty || value.contains("\n") || value.utf8.count > 256 {
            throw BerthError(.invalidArgument, "invalid sysctl value \"\(value)\"")
        }
    }

    /// Which namespace a sysctl lives in. Only namespaced sysctls are accepted, so none
    /// can ever reach the host (GHSA-w2j5-3rcx-vx7x): net.*, the IPC ones, and nothing
    /// else. The key must be dotted lowercase words: no "/", no "..".
    static func sysctlNamespace(_ key: String) throws(BerthError) -> PodNamespace {
        let parts = key.split(separator: ".", omittingEmptySubsequences: false)
        let wellFormed = parts.count >= 2 && parts.allSatisfy { p in
            !p.isEmpty && p.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5f }
        }
        guard wellFormed else {
            throw BerthError(.invalidArgument, "invalid sysctl \"\(key)\": expected dotted lowercase words such as net.ipv4.ip_forward")
        }
        if parts[0] == "net" { return .net }
        let ipc = ["kernel.shmmax", "kernel.shmall", "kernel.shmmni", "kernel.shm_rmid_forced", "kernel.msgmax",
                   "kernel.msgmnb", "kernel.msgmni", "kernel.sem"]
        if ipc.contains(key) || key.hasPrefix("fs.mqueue.") { return .ipc }
        throw BerthError(.invalidArgument, "sysctl \(key) is not namespaced: only net.*, kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.* can be set for a pod")
    }
}
