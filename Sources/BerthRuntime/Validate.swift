#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import BerthWire

/// Checks of a ContainerSpec, each failing with INVALID_ARGUMENT and a message that
/// names the bad value and what is allowed.
enum Validate {
    static let defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    static func spec(_ spec: inout ContainerSpec) throws(BerthError) {
        if spec.args.isEmpty {
            throw BerthError(.invalidArgument, "empty command: give the command to run after the image name")
        }
        if spec.args[0].isEmpty { throw BerthError(.invalidArgument, "empty command: the command name is an empty string") }
        if spec.image.isEmpty == spec.rootfs.isEmpty {
            throw BerthError(.invalidArgument, spec.image.isEmpty ? "no image given: name an image or a --rootfs directory" : "give either an image or --rootfs, not both")
        }
        if !spec.rootfs.isEmpty && !spec.rootfs.hasPrefix("/") {
            throw BerthError(.invalidArgument, "rootfs \(spec.rootfs) must be an absolute path")
        }
        if !spec.name.isEmpty { try name(spec.name) }
        if !spec.hostname.isEmpty { try hostname(spec.hostname) }
        if spec.workingDir.isEmpty { spec.workingDir = "/" }
        if !spec.workingDir.hasPrefix("/") {
            throw BerthError(.invalidArgument, "working directory \(spec.workingDir) must be an absolute path")
        }
        for arg in spec.args + spec.env + [spec.workingDir, spec.hostname] where arg.utf8.contains(0) {
            throw BerthError(.invalidArgument, "a command argument, environment entry or path contains a NUL byte")
        }
        for entry in spec.env {
            guard let eq = entry.firstIndex(of: "="), eq != entry.startIndex else {
                throw BerthError(.invalidArgument, "environment entry \"\(entry)\" is not KEY=VALUE")
            }
        }
        try network(spec)
        try resources(spec.resources)
        try ContainerSecurity.validate(spec)
    }

    /// docker's rules: at least 6 MiB of memory; swap limit not below the memory limit;
    /// CPUs more than 0 and at most the host's; shares 2-262144; a cpuset like "0-1,3".
    static func resources(_ r: Resources) throws(BerthError) {
        // Sizes come from the wire as 64-bit numbers: anything above Int64.max is no
        // size the kernel takes (and would trap a conversion below).
        if r.memoryBytes > UInt64(Int64.max) {
            throw BerthError(.invalidArgument, "memory limit \(r.memoryBytes) bytes is larger than the kernel accepts")
        }
        if r.memoryBytes != 0 && r.memoryBytes < 6 << 20 {
            throw BerthError(.invalidArgument, "memory limit \(r.memoryBytes) bytes is below the minimum of 6 MiB")
        }
        if r.memorySwapBytes != 0 && r.memorySwapBytes != -1 {
            if r.memoryBytes == 0 {
                throw BerthError(.invalidArgument, "--memory-swap needs --memory")
            }
            if r.memorySwapBytes < Int64(r.memoryBytes) {
                throw BerthError(.invalidArgument, "--memory-swap (\(r.memorySwapBytes)) must be at least --memory (\(r.memoryBytes)), or -1 for unlimited swap")
            }
        }
        if r.memorySwapBytes < -1 { throw BerthError(.invalidArgument, "--memory-swap must be -1 (unlimited) or a size") }
        let cpus = UInt32(max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        if r.cpuMillis > cpus * 1000 {
            throw BerthError(.invalidArgument, "--cpus \(Double(r.cpuMillis) / 1000) is more than the \(cpus) CPUs of this host")
        }
        if r.cpuShares != 0 && !(2...262_144).contains(r.cpuShares) {
            throw BerthError(.invalidArgument, "--cpu-shares \(r.cpuShares) is outside 2-262144")
        }
        if r.pidsLimit < -1 { throw BerthError(.invalidArgument, "--pids-limit must be positive, or -1 for no limit") }
        if !r.cpusetCpus.isEmpty {
            let ok = r.cpusetCpus.split(separator: ",", omittingEmptySubsequences: false).allSatisfy { part in
                let ends = part.split(separator: "-", omittingEmptySubsequences: false)
                guard (1...2).contains(ends.count), let lo = UInt32(ends[0]), lo < cpus else { return false }
                guard ends.count == 2 else { return true }
                guard let hi = UInt32(ends[1]), hi >= lo, hi < cpus else { return false }
                return true
            }
            if !ok {
                throw BerthError(.invalidArgument, "--cpuset-cpus \"\(r.cpusetCpus)\" is not a list of CPUs of this host (0-\(cpus - 1)), such as 0-1,3")
            }
        }
    }

    /// --network, -p, --dns and --add-host.
    static func network(_ spec: ContainerSpec) throws(BerthError) {
        let mode = NetworkMode(spec.network)
        if case .bridge(let name) = mode, !name.isEmpty { try Validate.name(name, kind: "network") }
        if case .container(let ref) = mode, ref.isEmpty {
            throw BerthError(.invalidArgument, "--network container: needs a container name or id (container:NAME)")
        }
        if !spec.ports.isEmpty, case .bridge = mode {} else if !spec.ports.isEmpty {
            throw BerthError(.invalidArgument, "published ports (-p) need a bridge network; with --network \(spec.network) there is no port to publish")
        }
        var seen: [PortMapping] = []
        for p in spec.ports {
            guard (1...65535).contains(p.hostPort), (1...65535).contains(p.containerPort) else {
                throw BerthError(.invalidArgument, "invalid port mapping \(p): ports must be from 1 to 65535")
            }
            if !p.hostIP.isEmpty && IPv4Address(p.hostIP) == nil {
                throw BerthError(.invalidArgument, "invalid port mapping \(p): host IP \"\(p.hostIP)\" is not an IPv4 address")
            }
            if let other = seen.first(where: { $0.hostPort == p.hostPort && $0.proto == p.proto && ($0.hostIP.isEmpty || p.hostIP.isEmpty || $0.hostIP == p.hostIP) }) {
                throw BerthError(.invalidArgument, "port mappings \(other) and \(p) publish the same host port")
            }
            seen.append(p)
        }
        for server in spec.dns where IPv4Address(server) == nil && !isIPv6(server) {
            throw BerthError(.invalidArgument, "invalid --dns \"\(server)\": expected an IP address")
        }
        for entry in spec.extraHosts {
            if entry.name.isEmpty || entry.name.contains(where: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "#" }) {
                throw BerthError(.invalidArgument, "invalid --add-host \"\(entry.name):\(entry.ip)\": the host name is empty or has spaces")
            }
            if IPv4Address(entry.ip) == nil && !isIPv6(entry.ip) {
                throw BerthError(.invalidArgument, "invalid --add-host \"\(entry.name):\(entry.ip)\": \"\(entry.ip)\" is not an IP address")
            }
        }
    }

    /// A rough IPv6 check (hex digits, colons, at most one "::"), enough to refuse junk
    /// in resolv.conf and hosts lines.
    static func isIPv6(_ s: String) -> Bool {
        s.contains(":") && s.count <= 45 && s.allSatisfy { $0.isHexDigit || $0 == ":" || $0 == "." }
            && s.split(separator: ":", omittingEmptySubsequences: false).count <= 9
    }

    /// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 128 characters.
    static func name(_ name: String, kind: String = "container") throws(BerthError) {
        let bytes = Array(name.utf8)
        func alnum(_ b: UInt8) -> Bool {
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a)
        }
        let ok = !bytes.isEmpty && bytes.count <= 128 && alnum(bytes[0])
            && bytes.allSatisfy { alnum($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
        if !ok {
            throw BerthError(.invalidArgument, "invalid \(kind) name \"\(name)\": use letters, digits, '_', '.' and '-', starting with a letter or digit")
        }
    }

    /// RFC 1123 host name: labels of letters, digits and '-', at most 63 characters in all
    /// (the kernel's limit is 64 bytes).
    static func hostname(_ name: String) throws(BerthError) {
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        let ok = name.utf8.count <= 63 && labels.allSatisfy { label in
            !label.isEmpty && label.first != "-" && label.last != "-"
                && label.utf8.allSatisfy { b in (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b == 0x2d }
        }
        if !ok {
            throw BerthError(.invalidArgument, "invalid hostname \"\(name)\": use letters, digits and '-' in dot-separated labels, at most 63 characters")
        }
    }

    /// The environment the container's process gets: PATH and HOSTNAME (unless the spec
    /// sets them), the spec's entries, and HOME when missing — as docker does.
    static func environment(_ spec: ContainerSpec) -> [String] {
        func has(_ key: String) -> Bool { spec.env.contains { $0.hasPrefix(key + "=") } }
        var env: [String] = []
        if !has("PATH") { env.append(defaultPath) }
        if !has("HOSTNAME") { env.append("HOSTNAME=\(spec.hostname)") }
        env += spec.env
        if !has("HOME") { env.append(spec.user.uid == 0 ? "HOME=/root" : "HOME=/") }
        return env
    }
}

/// Generated container names, docker-style ("brave_turing").
enum Names {
    static let adjectives = ["agile", "bold", "brave", "calm", "clever", "eager", "fair", "gentle", "happy", "keen",
                             "lucid", "merry", "nimble", "proud", "quiet", "rapid", "sharp", "steady", "swift", "witty"]
    static let nouns = ["ada", "babbage", "curie", "darwin", "euler", "fermi", "gauss", "hopper", "kepler", "lovelace",
                        "maxwell", "newton", "noether", "pascal", "ritchie", "shannon", "tesla", "thompson", "turing", "wozniak"]

    /// A random name for which `isFree` holds; a numeric suffix is added when needed.
    static func generate(isFree: (String) -> Bool) -> String {
        for attempt in 0..<1000 {
            let base = "\(adjectives.randomElement() ?? "bold")_\(nouns.randomElement() ?? "turing")"
            let name = attempt < 20 ? base : "\(base)_\(attempt)"
            if isFree(name) { return name }
        }
        return "berth_\(Host.randomHex(bytes: 6))"
    }
}
