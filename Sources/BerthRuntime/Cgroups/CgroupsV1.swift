#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem

/// cgroup v1 (and hybrid hosts): one hierarchy per controller, each mounted in a
/// directory under `root` named after its controllers ("memory", "cpu,cpuacct", often
/// with "cpu" and "cpuacct" symlinks to the combined one). A cgroup is the same
/// relative directory in every hierarchy Berth uses.
struct CgroupsV1: CgroupDriver {
    /// The controllers Berth uses, in the order their hierarchies are listed.
    static let controllers = ["memory", "cpu", "cpuacct", "pids", "cpuset"]
    /// memory.limit_in_bytes at or above this reads as "no limit" (the kernel shows
    /// PAGE_COUNTER_MAX pages, 9223372036854771712 with 4 KiB pages).
    static let unlimitedMemory: UInt64 = 1 << 62

    let root: String
    let layout: CgroupLayout
    /// Each controller's hierarchy (its mount directory, symlinks resolved); absent when not mounted.
    let mounts: [String: String]
    /// The distinct hierarchies, in `controllers` order (cpu and cpuacct share one on many hosts).
    let hierarchies: [String]
    private let files = CgroupFiles(createsFiles: false)

    init(root: String, layout: CgroupLayout) {
        self.root = root
        self.layout = layout
        let names = (try? Files.list(root)) ?? []
        var mounts: [String: String] = [:]
        var hierarchies: [String] = []
        for controller in Self.controllers {
            // "memory" itself first, then combined mounts such as "cpu,cpuacct".
            let candidates = [controller] + names.filter {
                $0 != controller && $0.split(separator: ",").contains(Substring(controller))
            }
            for name in candidates where Files.isDirectory(root + "/" + name) {
                let dir = Self.resolved(root + "/" + name)
                mounts[controller] = dir
                if !hierarchies.contains(dir) { hierarchies.append(dir) }
                break
            }
        }
        self.mounts = mounts
        self.hierarchies = hierarchies
    }

    /// `path` with symlinks resolved (realpath(3)), or as it is.
    private static func resolved(_ path: String) -> String {
        guard let p = realpath(path, nil) else { return path }
        defer { free(p) }
        return String(cString: p)
    }

    /// The directory of `path` in `controller`'s hierarchy, nil when it is not mounted.
    private func directory(_ controller: String, _ path: String) -> String? {
        mounts[controller].map { $0 + "/" + path }
    }

    func create(_ path: String, limits: ResourceLimits) throws(BerthError) {
        let parts = try Cgroups.components(path)
        try Cgroups.validate(limits, path)
        for (controller, needed) in [("memory", limits.memoryBytes > 0),
                                     ("cpu", limits.cpuMillis > 0 || limits.cpuShares > 0),
                                     ("pids", limits.pidsLimit > 0),
                                     ("cpuset", !limits.cpusetCpus.isEmpty)]
        where needed && mounts[controller] == nil {
            throw .failedPrecondition("cgroup \(path): the \(controller) controller is not mounted under \(root)")
        }

        for hierarchy in hierarchies {
            var dir = hierarchy
            for (i, part) in parts.enumerated() {
                let parent = dir
                dir += "/" + part
                try files.makeDirectory(dir, cgroup: path)
                if hierarchy == mounts["cpuset"] {
                    let isLeaf = i == parts.count - 1
                    try inheritCpuset(dir, parent: parent, cpus: isLeaf ? limits.cpusetCpus : nil, cgroup: path)
                }
            }
        }

        if let dir = directory("memory", path) {
            // The kernel keeps memory.limit <= memsw.limit at every step: lift memsw
            // out of the way, set memory, then set memsw.
            let memsw = Files.exists(dir + "/memory.memsw.limit_in_bytes")
            if memsw { try files.write(dir, "memory.memsw.limit_in_bytes", "-1", cgroup: path) }
            try files.write(dir, "memory.limit_in_bytes", limits.memoryBytes > 0 ? String(limits.memoryBytes) : "-1",
                            cgroup: path, required: limits.memoryBytes > 0)
            if memsw {
                let total = Cgroups.memorySwapTotal(limits).map { String($0) } ?? "-1"
                try files.write(dir, "memory.memsw.limit_in_bytes", total, cgroup: path)
            }
        }
        if let dir = directory("cpu", path) {
            let quota = limits.cpuMillis > 0 ? String(Cgroups.cpuQuota(limits.cpuMillis)) : "-1"
            try files.write(dir, "cpu.cfs_period_us", String(Cgroups.cpuPeriod), cgroup: path, required: limits.cpuMillis > 0)
            try files.write(dir, "cpu.cfs_quota_us", quota, cgroup: path, required: limits.cpuMillis > 0)
            let shares = limits.cpuShares > 0 ? String(min(max(limits.cpuShares, 2), 262_144)) : "1024"
            try files.write(dir, "cpu.shares", shares, cgroup: path, required: limits.cpuShares > 0)
        }
        if let dir = directory("pids", path) {
            try files.write(dir, "pids.max", limits.pidsLimit > 0 ? String(limits.pidsLimit) : "max",
                            cgroup: path, required: limits.pidsLimit > 0)
        }
    }

    /// A new v1 cpuset has empty cpuset.cpus and cpuset.mems, and no process can join
    /// it: copy the parent's. The leaf (`cpus` non-nil) gets `cpus`, or the parent's
    /// CPUs when that is empty (so re-creating without a limit lifts an earlier one).
    private func inheritCpuset(_ dir: String, parent: String, cpus: String?, cgroup: String) throws(BerthError) {
        for file in ["cpuset.mems", "cpuset.cpus"] {
            var value: String?
            if file == "cpuset.cpus", let cpus, !cpus.isEmpty {
                value = cpus
            } else if (file == "cpuset.cpus" && cpus != nil) || (files.read(dir + "/" + file) ?? "").isEmpty {
                value = files.read(parent + "/" + file) ?? ""
            }
            if let value { try files.write(dir, file, value, cgroup: cgroup) }
        }
    }

    func procsFiles(_ path: String) -> [String] {
        guard Cgroups.isValid(path) else { return [] }
        return hierarchies.map { $0 + "/" + path + "/cgroup.procs" }
    }

    func stats(_ path: String) -> CgroupStats? {
        guard exists(path) else { return nil }
        var s = CgroupStats()
        if let dir = directory("memory", path) {
            s.memoryUsageBytes = files.number(dir + "/memory.usage_in_bytes") ?? 0
            let limit = files.number(dir + "/memory.limit_in_bytes") ?? 0
            s.memoryLimitBytes = limit >= Self.unlimitedMemory ? 0 : limit
            s.oomKills = files.keyed(dir + "/memory.oom_control", "oom_kill") ?? 0
        }
        if let dir = directory("cpuacct", path) {
            s.cpuUsageNanos = files.number(dir + "/cpuacct.usage") ?? 0
        }
        if let dir = directory("pids", path) {
            s.pids = files.number(dir + "/pids.current") ?? 0
            s.pidsLimit = files.number(dir + "/pids.max") ?? 0
        }
        return s
    }

    func remove(_ path: String) throws(BerthError) {
        _ = try Cgroups.components(path)
        var first: BerthError?
        for hierarchy in hierarchies {
            do { try files.removeDirectory(hierarchy + "/" + path, cgroup: path) } catch { first = first ?? error }
        }
        if let first { throw first }
    }

    func directories(_ path: String) -> [String] {
        Cgroups.isValid(path) ? hierarchies.map { $0 + "/" + path } : []
    }

    func exists(_ path: String) -> Bool {
        guard Cgroups.isValid(path) else { return false }
        return hierarchies.contains { Files.isDirectory($0 + "/" + path) }
    }
}
