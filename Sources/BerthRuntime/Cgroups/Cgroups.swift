// Cgroups: one interface (`CgroupDriver`) over the two kernel hierarchies.
//   CgroupsV1 (CgroupsV1.swift): one mount per controller (memory, cpu, cpuacct, pids,
//     cpuset), also used on hybrid hosts, whose cgroup2 mount carries no controllers.
//   CgroupsV2 (CgroupsV2.swift): the unified hierarchy.
// Only plain file operations on cgroupfs: mkdir, rmdir, reads and single writes.
#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem

/// Resource limits of a container or a pod (0 / empty means "no limit").
public struct ResourceLimits: Sendable, Hashable {
    public var memoryBytes: UInt64 = 0
    /// memory + swap; 0: the docker default (twice memoryBytes when memoryBytes is set); -1: unlimited swap.
    public var memorySwapBytes: Int64 = 0
    /// CPUs in thousandths (--cpus 0.5 → 500): quota = millis * period / 1000, period 100000 µs.
    public var cpuMillis: UInt32 = 0
    /// docker --cpu-shares (v1 cpu.shares; v2 cpu.weight converted like runc:
    /// 1 + ((shares - 2) * 9999) / 262142).
    public var cpuShares: UInt32 = 0
    /// 0: none (a negative value also means none).
    public var pidsLimit: Int64 = 0
    /// "0-1", "0,1"; empty: the parent's CPUs.
    public var cpusetCpus: String = ""
    public init() {}
}

/// Usage numbers of one cgroup.
public struct CgroupStats: Sendable, Hashable {
    public var cpuUsageNanos: UInt64 = 0
    public var memoryUsageBytes: UInt64 = 0
    /// 0: no limit.
    public var memoryLimitBytes: UInt64 = 0
    public var pids: UInt64 = 0
    /// 0: no limit.
    public var pidsLimit: UInt64 = 0
    public var oomKills: UInt64 = 0
    public init() {}
}

/// One cgroup hierarchy layout behind one interface. `path` is relative to Berth's
/// place in the hierarchy, e.g. "berth/<container id>" or "berth/pod-<id>/<container id>".
/// Every path component must be non-empty, not "." or "..", without "/" or NUL.
protocol CgroupDriver: Sendable {
    var layout: CgroupLayout { get }
    /// Creates the cgroup (and missing parents, enabling what v2 needs in each parent's
    /// cgroup.subtree_control; copying cpuset.cpus/cpuset.mems from the parent on v1 so
    /// the new cpuset is usable) and writes `limits`. Idempotent: an existing cgroup gets the limits again.
    func create(_ path: String, limits: ResourceLimits) throws(BerthError)
    /// The cgroup.procs files a process is written to, to join `path` (v1: one per
    /// controller hierarchy Berth uses; v2: one). Empty for an invalid path.
    func procsFiles(_ path: String) -> [String]
    /// The usage numbers; nil when the cgroup does not exist (or the path is invalid).
    func stats(_ path: String) -> CgroupStats?
    /// Removes the cgroup directories (rmdir, children first is the caller's job; a missing one is fine);
    /// EBUSY-ish failure (processes left) → BerthError .failedPrecondition naming the path. Verifies they are gone.
    func remove(_ path: String) throws(BerthError)
    /// Whether the cgroup exists (on v1: in any of the hierarchies).
    func exists(_ path: String) -> Bool
    /// The cgroup's directory in every hierarchy (empty for an invalid path).
    func directories(_ path: String) -> [String]
}

extension CgroupDriver {
    /// Removes `path` and then each of its parents, in every hierarchy, as long as they
    /// are empty: one rmdir each, no retry (a cgroup with children or processes answers
    /// EBUSY, and stays). How Berth's own parent ("berth", "berth/pod-<id>") goes with
    /// the last cgroup in it, so a host without containers keeps nothing of Berth's.
    func prune(_ path: String) {
        guard var parts = try? Cgroups.components(path) else { return }
        while !parts.isEmpty {
            let current = parts.joined(separator: "/")
            var removedAll = true
            for dir in directories(current) where rmdir(dir) != 0 && errno != ENOENT { removedAll = false }
            if !removedAll { return }
            parts.removeLast()
        }
    }
}

enum Cgroups {
    /// The period of the CFS bandwidth limit, µs.
    static let cpuPeriod: UInt64 = 100_000

    /// The driver for this host: v2 when `root` is a cgroup2 mount (statfs magic 0x63677270),
    /// otherwise v1 (hybrid counts as v1: the unified mount has no controllers), with
    /// `layout` set to .v1/.hybrid/.v2.
    static func detect(root: String = "/sys/fs/cgroup") -> any CgroupDriver {
        let layout = CgroupLayout.detect(root: root)
        if layout == .v2 { return CgroupsV2(root: root) }
        return CgroupsV1(root: root, layout: layout)
    }

    /// The components of a cgroup path, or `.invalidArgument`.
    static func components(_ path: String) throws(BerthError) -> [String] {
        if path.isEmpty { throw .invalidArgument("invalid cgroup path \"\": it is empty") }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        for part in parts {
            if part.isEmpty || part == "." || part == ".." || part.utf8.contains(0) || part.utf8.count > 255 {
                throw .invalidArgument("invalid cgroup path \(path.debugDescription): bad component \(part.debugDescription)")
            }
        }
        return parts
    }

    /// Whether `path` passes `components`.
    static func isValid(_ path: String) -> Bool {
        (try? components(path)) != nil
    }

    /// Rejects limits no kernel accepts, before anything is written.
    static func validate(_ limits: ResourceLimits, _ path: String) throws(BerthError) {
        if limits.memorySwapBytes < -1 {
            throw .invalidArgument("cgroup \(path): memory+swap limit \(limits.memorySwapBytes) is invalid (-1 means unlimited)")
        }
        if limits.memorySwapBytes > 0 {
            if limits.memoryBytes == 0 {
                throw .invalidArgument("cgroup \(path): a memory+swap limit needs a memory limit")
            }
            if UInt64(limits.memorySwapBytes) < limits.memoryBytes {
                throw .invalidArgument("cgroup \(path): memory+swap limit \(limits.memorySwapBytes) is below the memory limit \(limits.memoryBytes)")
            }
        }
        if limits.memoryBytes > UInt64(Int64.max) {
            throw .invalidArgument("cgroup \(path): memory limit \(limits.memoryBytes) is too large")
        }
        if limits.cpuMillis > 0 && UInt64(limits.cpuMillis) * cpuPeriod / 1000 < 1000 {
            throw .invalidArgument("cgroup \(path): cpu limit \(limits.cpuMillis) millis is below the minimum of 0.01 CPUs")
        }
        if !limits.cpusetCpus.utf8.allSatisfy({ ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "-") }) {
            throw .invalidArgument("cgroup \(path): invalid cpuset \(limits.cpusetCpus.debugDescription) (expected a list like \"0-1,3\")")
        }
    }

    /// The quota for `cpuMillis`, µs per `cpuPeriod`.
    static func cpuQuota(_ millis: UInt32) -> UInt64 { UInt64(millis) * cpuPeriod / 1000 }

    /// docker --cpu-shares as a v2 cpu.weight, the way runc converts it.
    static func cpuWeight(shares: UInt32) -> UInt64 {
        if shares == 0 { return 100 }
        let s = UInt64(min(max(shares, 2), 262_144))
        return 1 + ((s - 2) * 9999) / 262_142
    }

    /// The total memory+swap limit docker's rules give, or nil for unlimited.
    static func memorySwapTotal(_ limits: ResourceLimits) -> UInt64? {
        guard limits.memoryBytes > 0 else { return nil }
        switch limits.memorySwapBytes {
        case 0: return limits.memoryBytes &* 2
        case -1: return nil
        default: return UInt64(limits.memorySwapBytes)
        }
    }
}

/// File access of the drivers: the kernel's cgroup files, or (test-only, `createsFiles`)
/// a fixture tree in an ordinary directory, where writes create the files the kernel
/// would have created and removal empties a directory before the rmdir.
struct CgroupFiles: Sendable {
    let createsFiles: Bool

    /// Writes `value` to `dir/file` in one write(2): O_WRONLY|O_CLOEXEC|O_NOFOLLOW.
    /// Errors name the cgroup (`cgroup`), the file and the value.
    func write(_ dir: String, _ file: String, _ value: String, cgroup: String) throws(BerthError) {
        let e = rawWrite(dir + "/" + file, value)
        if e == 0 { return }
        let what = "cgroup \(cgroup): \(file) = \(value.isEmpty ? "\"\"" : value)"
        if e == ENOENT {
            throw .failedPrecondition("\(what): \(dir)/\(file) does not exist (is the controller available?)")
        }
        throw Errno(rawValue: e).error(what)
    }

    /// The write of `write(_:_:_:cgroup:)`: 0, or the errno of the open or the write.
    func rawWrite(_ path: String, _ value: String) -> Int32 {
        var flags = O_WRONLY | O_CLOEXEC | O_NOFOLLOW
        if createsFiles { flags |= O_CREAT | O_TRUNC }
        let fd = Glibc.open(path, flags, 0o644)
        if fd < 0 { return errno }
        defer { Glibc.close(fd) }
        // An empty write never reaches the kernel; a newline clears a list (cpuset.cpus).
        let bytes = Array((value.isEmpty ? "\n" : value).utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + off, $0.count - off) }
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            off += n
        }
        return 0
    }

    /// Writes when `dir/file` exists (always in a fixture), or when `required`.
    func write(_ dir: String, _ file: String, _ value: String, cgroup: String, required: Bool) throws(BerthError) {
        if !required && !createsFiles && !Files.exists(dir + "/" + file) { return }
        try write(dir, file, value, cgroup: cgroup)
    }

    /// The file's text without surrounding white space, nil when unreadable.
    func read(_ path: String) -> String? {
        guard let text = try? Files.readString(path) else { return nil }
        return String(text.trimmingWhitespace())
    }

    /// A file holding one number; "max" and unreadable files give nil.
    func number(_ path: String) -> UInt64? {
        read(path).flatMap { UInt64($0) }
    }

    /// The value of `key` in a flat-keyed file ("key value" lines).
    func keyed(_ path: String, _ key: String) -> UInt64? {
        guard let text = read(path) else { return nil }
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 2 && fields[0] == key { return UInt64(fields[1]) }
        }
        return nil
    }

    /// mkdir; an existing directory is fine.
    func makeDirectory(_ path: String, cgroup: String) throws(BerthError) {
        if mkdir(path, 0o755) == 0 { return }
        let e = Errno.current
        if e.rawValue == EEXIST && Files.isDirectory(path) { return }
        throw e.error("cgroup \(cgroup): mkdir \(path)")
    }

    /// rmdir, retried briefly on EBUSY (a process that just exited can hold a cgroup
    /// for a moment); a missing directory is fine. Verifies that it is gone.
    func removeDirectory(_ path: String, cgroup: String) throws(BerthError) {
        if createsFiles, let names = try? Files.list(path) {
            for name in names where !Files.isDirectory(path + "/" + name) { unlink(path + "/" + name) }
        }
        var delayMicros: UInt32 = 10_000
        while true {
            if rmdir(path) == 0 { break }
            let e = Errno.current
            if e.rawValue == ENOENT { break }
            if e.rawValue == EINTR { continue }
            if e.rawValue == EBUSY && delayMicros <= 80_000 {
                usleep(delayMicros)
                delayMicros *= 2
                continue
            }
            if e.rawValue == EBUSY || e.rawValue == ENOTEMPTY {
                throw .failedPrecondition("cgroup \(cgroup): rmdir \(path): \(e) (processes or child cgroups are left in it)")
            }
            throw e.error("cgroup \(cgroup): rmdir \(path)")
        }
        if Files.exists(path) {
            throw .internal("cgroup \(cgroup): \(path) still exists after rmdir")
        }
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces, tabs and newlines.
    fileprivate func trimmingWhitespace() -> SubSequence {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }) else { return self[endIndex...] }
        let last = lastIndex(where: { !isSpace($0) })!
        return self[first...last]
    }
}
