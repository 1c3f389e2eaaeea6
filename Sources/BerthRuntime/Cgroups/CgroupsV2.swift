#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem

/// cgroup v2: one unified hierarchy at `root`. Controllers reach a cgroup only when
/// every ancestor lists them in its cgroup.subtree_control.
struct CgroupsV2: CgroupDriver {
    /// The controllers Berth enables for its cgroups; cpuset is optional (not every
    /// kernel or parent offers it).
    static let controllers = ["memory", "cpu", "pids", "cpuset"]
    static let optionalControllers: Set<String> = ["cpuset"]

    let root: String
    var layout: CgroupLayout { .v2 }
    private let files: CgroupFiles

    /// `createsFiles` is for tests only: `root` is then an ordinary directory (a fixture),
    /// writes create the files the kernel would provide, cgroup.subtree_control and a new
    /// child's cgroup.controllers are maintained the way the kernel shows them, and
    /// removal deletes the files in a directory before the rmdir.
    init(root: String, createsFiles: Bool = false) {
        self.root = root
        self.files = CgroupFiles(createsFiles: createsFiles)
    }

    func create(_ path: String, limits: ResourceLimits) throws(BerthError) {
        let parts = try Cgroups.components(path)
        try Cgroups.validate(limits, path)
        var dir = root
        for part in parts {
            try enableControllers(dir, cgroup: path)
            let parent = dir
            dir += "/" + part
            try files.makeDirectory(dir, cgroup: path)
            if files.createsFiles && !Files.exists(dir + "/cgroup.controllers") {
                try files.write(dir, "cgroup.controllers", files.read(parent + "/cgroup.subtree_control") ?? "", cgroup: path)
            }
        }

        try files.write(dir, "memory.max", limits.memoryBytes > 0 ? String(limits.memoryBytes) : "max",
                        cgroup: path, required: limits.memoryBytes > 0)
        // memory.swap.max is swap alone (docker's memory-swap counts memory too);
        // the file is absent without swap accounting.
        let swap = Cgroups.memorySwapTotal(limits).map { String($0 - limits.memoryBytes) } ?? "max"
        try files.write(dir, "memory.swap.max", swap, cgroup: path, required: false)
        let quota = limits.cpuMillis > 0 ? String(Cgroups.cpuQuota(limits.cpuMillis)) : "max"
        try files.write(dir, "cpu.max", "\(quota) \(Cgroups.cpuPeriod)", cgroup: path, required: limits.cpuMillis > 0)
        try files.write(dir, "cpu.weight", String(Cgroups.cpuWeight(shares: limits.cpuShares)),
                        cgroup: path, required: limits.cpuShares > 0)
        try files.write(dir, "pids.max", limits.pidsLimit > 0 ? String(limits.pidsLimit) : "max",
                        cgroup: path, required: limits.pidsLimit > 0)
        // Empty: the parent's CPUs.
        try files.write(dir, "cpuset.cpus", limits.cpusetCpus, cgroup: path, required: !limits.cpusetCpus.isEmpty)
    }

    /// Enables Berth's controllers in `dir`'s cgroup.subtree_control, one at a time,
    /// each only when `dir` has it (cgroup.controllers) and it is not enabled yet.
    private func enableControllers(_ dir: String, cgroup: String) throws(BerthError) {
        let available = words(dir + "/cgroup.controllers")
        var enabled = words(dir + "/cgroup.subtree_control")
        for controller in Self.controllers where available.contains(controller) && !enabled.contains(controller) {
            let e: Int32
            if files.createsFiles {
                // A plain file: keep the list the kernel would show.
                enabled.append(controller)
                e = files.rawWrite(dir + "/cgroup.subtree_control", enabled.joined(separator: " "))
            } else {
                e = files.rawWrite(dir + "/cgroup.subtree_control", "+" + controller)
            }
            if e == 0 || (Self.optionalControllers.contains(controller) && (e == EINVAL || e == ENOENT)) { continue }
            throw Errno(rawValue: e).error("cgroup \(cgroup): \(dir)/cgroup.subtree_control = +\(controller)")
        }
    }

    private func words(_ path: String) -> [String] {
        (files.read(path) ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
    }

    func procsFiles(_ path: String) -> [String] {
        guard Cgroups.isValid(path) else { return [] }
        return [root + "/" + path + "/cgroup.procs"]
    }

    func stats(_ path: String) -> CgroupStats? {
        guard exists(path) else { return nil }
        let dir = root + "/" + path
        var s = CgroupStats()
        s.cpuUsageNanos = (files.keyed(dir + "/cpu.stat", "usage_usec") ?? 0) &* 1000
        s.memoryUsageBytes = files.number(dir + "/memory.current") ?? 0
        s.memoryLimitBytes = files.number(dir + "/memory.max") ?? 0
        s.pids = files.number(dir + "/pids.current") ?? 0
        s.pidsLimit = files.number(dir + "/pids.max") ?? 0
        s.oomKills = files.keyed(dir + "/memory.events", "oom_kill") ?? 0
        return s
    }

    func remove(_ path: String) throws(BerthError) {
        _ = try Cgroups.components(path)
        try files.removeDirectory(root + "/" + path, cgroup: path)
    }

    func directories(_ path: String) -> [String] {
        Cgroups.isValid(path) ? [root + "/" + path] : []
    }

    func exists(_ path: String) -> Bool {
        Cgroups.isValid(path) && Files.isDirectory(root + "/" + path)
    }
}
