#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem

/// Human-readable output: tables, durations, sizes, statuses.
enum Format {
    /// Left-aligned columns separated by three spaces, like docker's tables.
    static func table(_ rows: [[String]]) -> String {
        guard let first = rows.first else { return "" }
        var widths = [Int](repeating: 0, count: first.count)
        for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
        var out = ""
        for row in rows {
            var line = ""
            for (i, cell) in row.enumerated() {
                line += cell
                if i < row.count - 1 { line += String(repeating: " ", count: widths[i] - cell.count + 3) }
            }
            out += line + "\n"
        }
        return out
    }

    /// "5 seconds ago", "2 minutes ago", "3 hours ago", "4 days ago".
    static func ago(_ seconds: Int64) -> String { duration(seconds) + " ago" }

    /// "Less than a second", "5 seconds", "About a minute", "2 hours"… (docker's wording).
    static func duration(_ seconds: Int64) -> String {
        let s = max(0, seconds)
        if s < 1 { return "Less than a second" }
        if s == 1 { return "1 second" }
        if s < 60 { return "\(s) seconds" }
        let m = s / 60
        if m == 1 { return "About a minute" }
        if m < 60 { return "\(m) minutes" }
        let h = m / 60
        if h == 1 { return "About an hour" }
        if h < 48 { return "\(h) hours" }
        let d = h / 24
        if d < 14 { return "\(d) days" }
        if d < 60 { return "\(d / 7) weeks" }
        return "\(d / 30) months"
    }

    /// "Up 5 seconds", "Exited (3) 2 minutes ago", "Created".
    static func status(_ c: Container, now: Int64) -> String {
        switch c.state {
        case .running: "Up " + duration(now - c.startedUnix)
        case .exited: "Exited (\(c.exit?.exitCode ?? 0)) " + ago(now - (c.exit?.finishedUnix ?? now))
        case .created: "Created"
        case .unknown: "Unknown"
        }
    }

    /// The command quoted and shortened as docker shows it: "\"sh -c 'hostn…\"".
    static func command(_ args: [String]) -> String {
        let joined = args.joined(separator: " ")
        let short = joined.count > 20 ? String(joined.prefix(19)) + "…" : joined
        return "\"" + short + "\""
    }

    /// "12.34%".
    static func percent(_ v: Double) -> String {
        let hundredths = Int((v * 100).rounded())
        let frac = hundredths % 100
        return "\(hundredths / 100).\(frac < 10 ? "0" : "")\(frac)%"
    }

    /// "0.0.0.0:8080->80/tcp, 127.0.0.1:53->53/udp", as docker's PORTS column.
    static func ports(_ ports: [PortMapping]) -> String {
        ports.map { "\($0.hostIP.isEmpty ? "0.0.0.0" : $0.hostIP):\($0.hostPort)->\($0.containerPort)/\($0.proto.rawValue)" }
            .joined(separator: ", ")
    }

    /// "64m", "1g", "512k", "1048576" (docker's --memory units, powers of 1024).
    static func parseBytes(_ text: String) -> UInt64? {
        let lower = text.lowercased()
        let units: [(String, UInt64)] = [("kb", 1 << 10), ("mb", 1 << 20), ("gb", 1 << 30), ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("b", 1)]
        for (suffix, scale) in units where lower.hasSuffix(suffix) {
            guard let n = UInt64(lower.dropLast(suffix.count)) else { return nil }
            let (v, overflow) = n.multipliedReportingOverflow(by: scale)
            return overflow ? nil : v
        }
        return UInt64(lower)
    }

    /// "0.5" → 500, "2" → 2000 (at most three decimals).
    static func parseMillis(_ text: String) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, let whole = UInt32(parts[0].isEmpty ? "0" : parts[0]), whole <= 4_000_000 else { return nil }
        var frac: UInt32 = 0
        if parts.count == 2 {
            let digits = parts[1]
            guard !digits.isEmpty, digits.count <= 3, let f = UInt32(digits) else { return nil }
            frac = f * [1, 100, 10, 1][digits.count]
        }
        return whole * 1000 + frac
    }

    /// Decimal units, as docker prints image sizes: "4.2MB".
    static func bytesSI(_ n: UInt64) -> String { scaled(n, 1000, ["B", "kB", "MB", "GB", "TB"]) }

    /// Binary units for memory: "23.4GiB".
    static func bytesIEC(_ n: UInt64) -> String { scaled(n, 1024, ["B", "KiB", "MiB", "GiB", "TiB"]) }

    private static func scaled(_ n: UInt64, _ base: Double, _ units: [String]) -> String {
        var v = Double(n)
        var i = 0
        while v >= base && i < units.count - 1 { v /= base; i += 1 }
        if i == 0 { return "\(n)\(units[0])" }
        let tenths = Int((v * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)\(units[i])"
    }
}

/// Minimal JSON writing for `--format json` (no Foundation in the CLI).
enum JSON {
    static func string(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    static func array(_ items: [String]) -> String { "[" + items.map(string).joined(separator: ",") + "]" }

    /// One container as a JSON object, with docker-like keys.
    static func container(_ c: Container) -> String {
        var fields = [
            "\"ID\":\(string(c.id))",
            "\"Name\":\(string(c.name))",
            "\"Image\":\(string(c.image))",
            "\"ImageID\":\(string(c.imageID))",
            "\"Command\":\(array(c.spec.args))",
            "\"State\":\(string(c.state.description))",
            "\"Pid\":\(c.pid)",
            "\"Hostname\":\(string(c.spec.hostname))",
            "\"Created\":\(c.createdUnix)",
            "\"Started\":\(c.startedUnix)",
            "\"AutoRemove\":\(c.spec.autoRemove)",
        ]
        if let exit = c.exit {
            fields.append("\"ExitCode\":\(exit.exitCode)")
            fields.append("\"Signal\":\(exit.signal)")
            fields.append("\"Finished\":\(exit.finishedUnix)")
        }
        return "{" + fields.joined(separator: ",") + "}"
    }
}

extension JSON {
    /// `berth inspect`: the whole record, docker-like keys.
    static func inspect(_ c: Container) -> String {
        func object(_ fields: [String]) -> String { "{" + fields.joined(separator: ",") + "}" }
        let labels = object(c.spec.labels.sorted { $0.key < $1.key }.map { "\(string($0.key)):\(string($0.value))" })
        let config = object([
            "\"Image\":\(string(c.spec.image))", "\"Rootfs\":\(string(c.spec.rootfs))",
            "\"Cmd\":\(array(c.spec.args))", "\"Env\":\(array(c.spec.env))",
            "\"WorkingDir\":\(string(c.spec.workingDir))", "\"User\":\(string("\(c.spec.user.uid):\(c.spec.user.gid)"))",
            "\"Hostname\":\(string(c.spec.hostname))", "\"Labels\":\(labels)",
            "\"AutoRemove\":\(c.spec.autoRemove)", "\"RestartPolicy\":\(string(c.spec.restart.description))",
            "\"StopSignal\":\(string(Signals.name(c.spec.stopSignal == 0 ? SIGTERM : c.spec.stopSignal)))",
            "\"StopTimeout\":\(c.spec.stopTimeout == 0 ? 10 : c.spec.stopTimeout)",
        ])
        let state = object([
            "\"Status\":\(string(c.state.description))", "\"Running\":\(c.state == .running)",
            "\"Pid\":\(c.pid)", "\"ExitCode\":\(c.exit?.exitCode ?? 0)", "\"Signal\":\(c.exit?.signal ?? 0)",
            "\"OOMKilled\":\(c.oomKilled)",
            "\"StartedAt\":\(string(c.startedUnix > 0 ? Time.format(unix: c.startedUnix) : ""))",
            "\"FinishedAt\":\(string((c.exit?.finishedUnix ?? 0) > 0 ? Time.format(unix: c.exit?.finishedUnix ?? 0) : ""))",
            "\"MonitorPid\":\(c.monitorPid)",
        ])
        let n = c.network
        let ports = "[" + c.spec.ports.map { p in
            object(["\"HostIp\":\(string(p.hostIP.isEmpty ? "0.0.0.0" : p.hostIP))", "\"HostPort\":\(p.hostPort)",
                    "\"ContainerPort\":\(p.containerPort)", "\"Protocol\":\(string(p.proto.rawValue))"])
        }.joined(separator: ",") + "]"
        let network = object([
            "\"Network\":\(string(n.network))", "\"IPAddress\":\(string(n.ip))", "\"IPPrefixLen\":\(n.prefixLength)",
            "\"Gateway\":\(string(n.gateway))", "\"MacAddress\":\(string(n.mac))", "\"Bridge\":\(string(n.bridge))",
            "\"HostVeth\":\(string(n.hostVeth))", "\"SandboxKey\":\(string(n.netns))", "\"Ports\":\(ports)",
            "\"Dns\":\(array(c.spec.dns))",
            "\"ExtraHosts\":\(array(c.spec.extraHosts.map { "\($0.name):\($0.ip)" }))",
        ])
        return object([
            "\"Id\":\(string(c.id))", "\"Name\":\(string(c.name))",
            "\"Created\":\(string(Time.format(unix: c.createdUnix)))",
            "\"Image\":\(string(c.image))", "\"ImageID\":\(string(c.imageID))",
            "\"State\":\(state)", "\"RestartCount\":\(c.restartCount)", "\"Config\":\(config)",
            "\"NetworkSettings\":\(network)",
            "\"Mounts\":[" + c.spec.mounts.map { m in
                object(["\"Type\":\(string(m.kind.rawValue))", "\"Source\":\(string(m.source))", "\"Destination\":\(string(m.target))",
                        "\"RW\":\(!m.readOnly)", "\"Options\":\(string(m.options))"])
            }.joined(separator: ",") + "]",
            "\"Pod\":\(object(["\"Id\":\(string(c.podID))", "\"Name\":\(string(c.podName))"]))",
        ])
    }

    /// `berth pod inspect`: the pinned namespaces and, per container, its namespaces'
    /// inodes, so anyone can check what is shared.
    static func pod(_ p: Pod) -> String {
        func object(_ fields: [String]) -> String { "{" + fields.joined(separator: ",") + "}" }
        func namespaces(_ list: [NamespaceInfo]) -> String {
            object(list.map { "\(string($0.type)):\(object(["\"Path\":\(string($0.path))", "\"Inode\":\($0.inode)"]))" })
        }
        let containers = "[" + p.containers.map { c in
            object(["\"Id\":\(string(c.id))", "\"Name\":\(string(c.name))", "\"State\":\(string(c.state.description))",
                    "\"Namespaces\":\(namespaces(c.namespaces))"])
        }.joined(separator: ",") + "]"
        let labels = object(p.spec.labels.sorted { $0.key < $1.key }.map { "\(string($0.key)):\(string($0.value))" })
        let sysctls = object(p.spec.sysctls.sorted { $0.key < $1.key }.map { "\(string($0.key)):\(string($0.value))" })
        return object([
            "\"Id\":\(string(p.id))", "\"Name\":\(string(p.name))", "\"State\":\(string(p.state))",
            "\"Created\":\(string(Time.format(unix: p.createdUnix)))", "\"Hostname\":\(string(p.spec.hostname))",
            "\"Shared\":\(array(p.spec.share))", "\"Labels\":\(labels)", "\"Sysctls\":\(sysctls)",
            "\"MemoryBytes\":\(p.spec.memoryBytes)", "\"CpuMillis\":\(p.spec.cpuMillis)",
            "\"Network\":\(object(["\"Network\":\(string(p.network.network))", "\"IPAddress\":\(string(p.network.ip))", "\"Gateway\":\(string(p.network.gateway))", "\"MacAddress\":\(string(p.network.mac))", "\"Ports\":\(array(p.spec.ports.map(\.description)))"]))",
            "\"PinnedNamespaces\":\(namespaces(p.namespaces))", "\"PausePid\":\(p.pausePid)",
            "\"Containers\":\(containers)",
        ])
    }

    /// `berth network inspect`.
    static func network(_ n: Network) -> String {
        func object(_ fields: [String]) -> String { "{" + fields.joined(separator: ",") + "}" }
        let containers = "[" + n.endpoints.map { e in
            object(["\"Id\":\(string(e.containerID))", "\"Name\":\(string(e.name))",
                    "\"IPAddress\":\(string(e.ip))", "\"MacAddress\":\(string(e.mac))"])
        }.joined(separator: ",") + "]"
        return object([
            "\"Name\":\(string(n.name))", "\"Id\":\(string(n.id))", "\"Driver\":\"bridge\"",
            "\"Subnet\":\(string(n.subnet))", "\"Gateway\":\(string(n.gateway))", "\"Bridge\":\(string(n.bridge))",
            "\"Default\":\(n.isDefault)", "\"Created\":\(string(Time.format(unix: n.createdUnix)))",
            "\"Containers\":\(containers)",
        ])
    }
}
