#if canImport(Glibc)
import Glibc
#endif
import BerthSystem
import Synchronization
import CBerthShim

/// Facts about the host the agent runs on, for `Info`.
public struct HostInfo: Sendable {
    public var hostname: String
    public var kernel: String
    public var os: String
    public var architecture: String
    public var cgroupLayout: CgroupLayout
    public var cpus: UInt32
    public var memoryBytes: UInt64
    /// MemAvailable from /proc/meminfo: what can be given without swapping.
    public var memoryAvailableBytes: UInt64 = 0
    /// The 1, 5 and 15 minute load averages from /proc/loadavg.
    public var load: (Double, Double, Double) = (0, 0, 0)
    /// Seconds since boot, from /proc/uptime.
    public var uptimeSeconds: UInt64 = 0

    /// What cannot change while the agent runs (kernel, architecture, distribution,
    /// cgroup layout), read once: Info is answered often (schedulers poll it) and
    /// re-reading /etc/os-release and statfs-ing the cgroup mounts each time was most
    /// of its cost (bench/results).
    private static let fixed: (kernel: String, architecture: String, os: String, cgroupLayout: CgroupLayout) = {
        var u = utsname()
        uname(&u)
        func field<T>(_ value: T) -> String {
            withUnsafeBytes(of: value) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
        }
        return (field(u.release), field(u.machine), osRelease(), CgroupLayout.detect())
    }()

    /// The last reading and when it was taken (monotonic ns).
    private static let cache = Mutex<(at: UInt64, info: HostInfo?)>((0, nil))

    /// The host's facts, read at most every 100 ms: schedulers poll Info many times a
    /// second, and the /proc reads were a quarter of its cost (bench/results); load
    /// averages and MemAvailable do not mean more at a finer grain.
    public static func current() -> HostInfo {
        let now = Host.monotonicNanos
        if let recent = cache.withLock({ c in c.info.flatMap { now &- c.at < 100_000_000 ? $0 : nil } }) { return recent }
        let info = read()
        cache.withLock { $0 = (now, info) }
        return info
    }

    /// Reads the facts from the kernel: uname(2), statfs(2) of the cgroup mount and
    /// /etc/os-release once (`fixed`); sysconf(3), sysinfo(2), /proc/meminfo,
    /// /proc/loadavg and /proc/uptime on every call.
    static func read() -> HostInfo {
        let fixed = Self.fixed
        var info = HostInfo(
            hostname: Host.hostname,
            kernel: fixed.kernel,
            os: fixed.os,
            architecture: fixed.architecture,
            cgroupLayout: fixed.cgroupLayout,
            cpus: UInt32(max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))),
            memoryBytes: berth_total_ram())
        if let meminfo = try? Files.readString("/proc/meminfo") {
            info.memoryAvailableBytes = memAvailable(meminfo) * 1024
        }
        if let loadavg = try? Files.readString("/proc/loadavg") {
            let f = loadavg.split(separator: " ", maxSplits: 3).prefix(3).map { Double($0) ?? 0 }
            if f.count == 3 { info.load = (f[0], f[1], f[2]) }
        }
        if let uptime = try? Files.readString("/proc/uptime") {
            info.uptimeSeconds = UInt64(Double(uptime.split(separator: " ", maxSplits: 1).first ?? "0") ?? 0)
        }
        return info
    }

    /// MemAvailable in KiB from the text of /proc/meminfo. It is the third line on every
    /// kernel since 3.14: the first lines are looked at before the whole file is split.
    static func memAvailable(_ meminfo: String) -> UInt64 {
        func value(_ line: Substring) -> UInt64 { line.split(separator: " ").dropFirst().first.flatMap { UInt64($0) } ?? 0 }
        for line in meminfo.split(separator: "\n", maxSplits: 4).prefix(4) where line.hasPrefix("MemAvailable:") {
            return value(line)
        }
        for line in meminfo.split(separator: "\n") where line.hasPrefix("MemAvailable:") { return value(line) }
        return 0
    }

    static func osRelease() -> String {
        guard let text = try? Files.readString("/etc/os-release") else { return "Linux" }
        for line in text.split(separator: "\n") where line.hasPrefix("PRETTY_NAME=") {
            return String(line.dropFirst("PRETTY_NAME=".count)).trimmingQuotes()
        }
        return "Linux"
    }
}

/// Which cgroup hierarchy the host mounts at /sys/fs/cgroup.
public enum CgroupLayout: String, Sendable {
    /// cgroup v1 controllers only.
    case v1
    /// v1 controllers plus a cgroup2 mount at /sys/fs/cgroup/unified.
    case hybrid
    /// The unified hierarchy only.
    case v2

    static let cgroup2Magic: Int = 0x6367_7270

    /// Detects the layout from the file-system types under `root`.
    public static func detect(root: String = "/sys/fs/cgroup") -> CgroupLayout {
        if fsType(root) == cgroup2Magic { return .v2 }
        if fsType(root + "/unified") == cgroup2Magic { return .hybrid }
        return .v1
    }

    private static func fsType(_ path: String) -> Int? {
        let type = berth_statfs_type(path)
        return type < 0 ? nil : Int(type)
    }
}

extension StringProtocol {
    func trimmingQuotes() -> String {
        var s = Substring(self)
        while let f = s.first, f == "\"" || f == "'" { s = s.dropFirst() }
        while let l = s.last, l == "\"" || l == "'" { s = s.dropLast() }
        return String(s)
    }
}
