// Cgroup drivers: v2 against a fixture tree in a temp dir, v1 against the kernel
// (root on a v1/hybrid host), detection, and path/limit validation.
#if canImport(Glibc)
import Glibc
#endif
import Testing
import BerthErrors
import BerthSystem
import CBerthShim
@testable import BerthRuntime

// MARK: - helpers

/// A fresh directory under /tmp.
private func cgroupTempDir() throws -> String {
    var template = Array("/tmp/berth-cgroup-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw Errno.current.error("mkdtemp") }
    return String(cString: made)
}

/// Creates or replaces a plain file.
private func cgWrite(_ path: String, _ text: String) throws {
    let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC)
    defer { fd.close() }
    try fd.writeAll(text)
}

/// Writes to an existing (kernel) file, as a process joins a cgroup.
private func cgWriteExisting(_ path: String, _ text: String) throws {
    let fd = try FileDescriptor.open(path, O_WRONLY)
    defer { fd.close() }
    try fd.writeAll(text)
}

/// A file's text without surrounding white space; nil when unreadable.
private func cgRead(_ path: String) -> String? {
    guard let text = try? Files.readString(path) else { return nil }
    var s = Substring(text)
    while let c = s.first, c == " " || c == "\n" { s = s.dropFirst() }
    while let c = s.last, c == " " || c == "\n" { s = s.dropLast() }
    return String(s)
}

private func cgWords(_ path: String) -> Set<String> {
    Set((cgRead(path) ?? "").split(separator: " ").map(String.init))
}

private let mebibyte: UInt64 = 1 << 20

private func testLimits() -> ResourceLimits {
    var limits = ResourceLimits()
    limits.memoryBytes = 64 * mebibyte
    limits.cpuMillis = 500
    limits.cpuShares = 512
    limits.pidsLimit = 50
    return limits
}

// MARK: - v2 fixture

@Suite("Cgroup v2 driver against a fixture tree")
struct CgroupV2FixtureTests {
    @Test func createStatsRemove() throws {
        let root = try cgroupTempDir()
        defer { try? Files.removeTree(root) }
        try cgWrite(root + "/cgroup.controllers", "cpuset cpu io memory pids\n")
        try cgWrite(root + "/cgroup.subtree_control", "")
        let driver = CgroupsV2(root: root, createsFiles: true)
        #expect(driver.layout == .v2)

        let path = "berth/abc"
        let leaf = root + "/" + path
        #expect(!driver.exists(path))
        #expect(driver.stats(path) == nil)

        var limits = testLimits()
        limits.memorySwapBytes = Int64(192 * mebibyte)
        limits.cpusetCpus = "0-1"
        try driver.create(path, limits: limits)
        #expect(driver.exists(path))
        #expect(cgRead(leaf + "/memory.max") == "67108864")
        #expect(cgRead(leaf + "/memory.swap.max") == String(128 * mebibyte))
        #expect(cgRead(leaf + "/cpu.max") == "50000 100000")
        #expect(cgRead(leaf + "/cpu.weight") == "20")
        #expect(cgRead(leaf + "/pids.max") == "50")
        #expect(cgRead(leaf + "/cpuset.cpus") == "0-1")

        // Each ancestor enables the controllers for its children; io is not Berth's.
        let wanted: Set = ["memory", "cpu", "pids", "cpuset"]
        #expect(cgWords(root + "/cgroup.subtree_control") == wanted)
        #expect(cgWords(root + "/berth/cgroup.controllers") == wanted)
        #expect(cgWords(root + "/berth/cgroup.subtree_control") == wanted)
        #expect(cgWords(leaf + "/cgroup.controllers") == wanted)
        #expect(!Files.exists(leaf + "/cgroup.subtree_control"))

        // Docker's default swap: as much swap as memory.
        limits.memorySwapBytes = 0
        try driver.create(path, limits: limits)
        #expect(cgRead(leaf + "/memory.swap.max") == "67108864")
        limits.memorySwapBytes = -1
        try driver.create(path, limits: limits)
        #expect(cgRead(leaf + "/memory.swap.max") == "max")

        // Again without limits: everything lifted.
        try driver.create(path, limits: ResourceLimits())
        #expect(cgRead(leaf + "/memory.max") == "max")
        #expect(cgRead(leaf + "/memory.swap.max") == "max")
        #expect(cgRead(leaf + "/cpu.max") == "max 100000")
        #expect(cgRead(leaf + "/cpu.weight") == "100")
        #expect(cgRead(leaf + "/pids.max") == "max")
        #expect(cgRead(leaf + "/cpuset.cpus") == "")
        try driver.create(path, limits: limits)

        #expect(driver.procsFiles(path) == [root + "/berth/abc/cgroup.procs"])

        // What the kernel would report.
        try cgWrite(leaf + "/memory.current", "4096\n")
        try cgWrite(leaf + "/cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
        try cgWrite(leaf + "/pids.current", "3\n")
        try cgWrite(leaf + "/memory.events", "low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\noom_group_kill 0\n")
        let stats = try #require(driver.stats(path))
        var expected = CgroupStats()
        expected.cpuUsageNanos = 1_500_000
        expected.memoryUsageBytes = 4096
        expected.memoryLimitBytes = 64 * mebibyte
        expected.pids = 3
        expected.pidsLimit = 50
        expected.oomKills = 1
        #expect(stats == expected)

        // A parent with a child left cannot go.
        let busy = #expect(throws: BerthError.self) { try driver.remove("berth") }
        #expect(busy?.code == .failedPrecondition)
        #expect(busy?.message.contains("berth") == true)

        try driver.remove(path)
        #expect(!driver.exists(path))
        #expect(!Files.exists(leaf))
        try driver.remove(path)  // already gone: fine
        try driver.remove("berth")
        #expect(!Files.exists(root + "/berth"))
        #expect(cgRead(root + "/cgroup.controllers") == "cpuset cpu io memory pids")
    }

    @Test func onlyAvailableControllersAreEnabled() throws {
        let root = try cgroupTempDir()
        defer { try? Files.removeTree(root) }
        try cgWrite(root + "/cgroup.controllers", "cpu io memory\n")
        try cgWrite(root + "/cgroup.subtree_control", "memory\n")
        let driver = CgroupsV2(root: root, createsFiles: true)
        try driver.create("berth/x", limits: ResourceLimits())
        #expect(cgWords(root + "/cgroup.subtree_control") == ["memory", "cpu"])
        #expect(cgWords(root + "/berth/cgroup.subtree_control") == ["memory", "cpu"])
        try driver.remove("berth/x")
        try driver.remove("berth")
    }

    @Test func cpuWeightConversion() {
        #expect(Cgroups.cpuWeight(shares: 0) == 100)
        #expect(Cgroups.cpuWeight(shares: 2) == 1)
        #expect(Cgroups.cpuWeight(shares: 512) == 20)
        #expect(Cgroups.cpuWeight(shares: 1024) == 39)
        #expect(Cgroups.cpuWeight(shares: 262_144) == 10_000)
        #expect(Cgroups.cpuWeight(shares: 1_000_000) == 10_000)
    }
}

// MARK: - v1 against the kernel

private let procRoot = "/sys/fs/cgroup"

private func v1Available() -> Bool {
    getuid() == 0 && CgroupLayout.detect(root: procRoot) != .v2 && Files.isDirectory(procRoot + "/memory")
}

/// `/bin/sh` that waits for a line on stdin, then execs `sleep 5`: like Berth's spawner,
/// the test moves the process into its cgroup before the exec, so the exec's memory is
/// charged to the new cgroup (v1 does not move existing charges with a process).
private func spawnWaitingSleeper() throws -> (pid: pid_t, release: Int32) {
    var fds: [Int32] = [-1, -1]
    guard berth_pipe2(&fds, O_CLOEXEC) == 0 else { throw Errno.current.error("pipe2") }
    defer { close(fds[0]) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, fds[0], 0)
    let args = ["/bin/sh", "-c", "read line; exec /bin/sleep 5"]
    let cArgs = args.map { strdup($0) } + [nil]
    let cEnv: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/bin:/bin"), nil]
    defer { for p in cArgs + cEnv { free(p) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, args[0], &actions, nil, cArgs, cEnv)
    guard rc == 0 else {
        close(fds[1])
        throw Errno(rawValue: rc).error("posix_spawn /bin/sh")
    }
    return (pid, fds[1])
}

/// controller → cgroup path, from /proc/PID/cgroup.
private func procCgroups(_ pid: pid_t) -> [String: String] {
    var out: [String: String] = [:]
    for line in (cgRead("/proc/\(pid)/cgroup") ?? "").split(separator: "\n") {
        let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard fields.count == 3 else { continue }
        for controller in fields[1].split(separator: ",") { out[String(controller)] = String(fields[2]) }
    }
    return out
}

private func monotonicMillis() -> Int {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Int(now.tv_sec) * 1000 + now.tv_nsec / 1_000_000
}

@Suite("Cgroup v1 driver against the kernel (root, v1 or hybrid host)",
       .enabled(if: v1Available(), "needs root and cgroup v1 controllers"), .timeLimit(.minutes(1)))
struct CgroupV1KernelTests {
    @Test func pruneRemovesEmptyParentsOnly() throws {
        let driver = CgroupsV1(root: procRoot, layout: CgroupLayout.detect(root: procRoot))
        let top = "berth-test-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        defer {
            for hierarchy in driver.hierarchies {
                for leaf in ["a", "b"] { rmdir(hierarchy + "/" + top + "/" + leaf) }
                rmdir(hierarchy + "/" + top)
            }
        }
        try driver.create(top + "/a", limits: ResourceLimits())
        try driver.create(top + "/b", limits: ResourceLimits())
        try driver.remove(top + "/a")
        driver.prune(top)
        #expect(driver.exists(top), "a parent with a child left must stay")
        #expect(driver.exists(top + "/b"))
        try driver.remove(top + "/b")
        driver.prune(top)
        #expect(!driver.exists(top))
        #expect(driver.directories(top).allSatisfy { !Files.exists($0) })
        #expect(driver.directories("../x").isEmpty)
    }

    @Test func createJoinStatsRemove() throws {
        let driver = CgroupsV1(root: procRoot, layout: CgroupLayout.detect(root: procRoot))
        let top = "berth-test-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let path = top + "/c1"
        var child: pid_t = 0
        var release: Int32 = -1
        defer {
            if release >= 0 { close(release) }
            if child > 0 {
                kill(child, SIGKILL)
                var status: Int32 = 0
                while waitpid(child, &status, 0) < 0 && errno == EINTR {}
            }
            for hierarchy in driver.hierarchies {
                rmdir(hierarchy + "/" + path)
                rmdir(hierarchy + "/" + top)
            }
        }

        for controller in CgroupsV1.controllers { #expect(driver.mounts[controller] != nil, "\(controller) mount") }
        let memory = try #require(driver.mounts["memory"]) + "/" + path
        let cpu = try #require(driver.mounts["cpu"]) + "/" + path
        let pids = try #require(driver.mounts["pids"]) + "/" + path
        let cpusetRoot = try #require(driver.mounts["cpuset"])
        let cpuset = cpusetRoot + "/" + path

        var limits = testLimits()
        limits.cpusetCpus = "0"
        try driver.create(path, limits: limits)
        #expect(driver.exists(path))
        func expectLimited() {
            #expect(cgRead(memory + "/memory.limit_in_bytes") == "67108864")
            if Files.exists(memory + "/memory.memsw.limit_in_bytes") {
                #expect(cgRead(memory + "/memory.memsw.limit_in_bytes") == String(128 * mebibyte))
            }
            #expect(cgRead(cpu + "/cpu.cfs_period_us") == "100000")
            #expect(cgRead(cpu + "/cpu.cfs_quota_us") == "50000")
            #expect(cgRead(cpu + "/cpu.shares") == "512")
            #expect(cgRead(pids + "/pids.max") == "50")
            #expect(cgRead(cpuset + "/cpuset.cpus") == "0")
        }
        expectLimited()
        // The parent's cpuset was made usable from the root's.
        #expect(cgRead(cpusetRoot + "/" + top + "/cpuset.cpus") == cgRead(cpusetRoot + "/cpuset.cpus"))
        #expect(cgRead(cpusetRoot + "/" + top + "/cpuset.mems") == cgRead(cpusetRoot + "/cpuset.mems"))
        #expect(cgRead(cpuset + "/cpuset.mems") == cgRead(cpusetRoot + "/cpuset.mems"))

        // A value the kernel refuses: the error names the cgroup, the file and the value.
        var badCpus = limits
        badCpus.cpusetCpus = String(sysconf(Int32(_SC_NPROCESSORS_CONF)) + 4000)
        let refused = #expect(throws: BerthError.self) { try driver.create(path, limits: badCpus) }
        #expect(refused?.message.hasPrefix("cgroup \(path): cpuset.cpus = \(badCpus.cpusetCpus): ") == true,
                "\(String(describing: refused))")

        // Idempotent, and lifting every limit works on an existing cgroup.
        try driver.create(path, limits: ResourceLimits())
        #expect(UInt64(cgRead(memory + "/memory.limit_in_bytes") ?? "") ?? 0 >= CgroupsV1.unlimitedMemory)
        #expect(cgRead(cpu + "/cpu.cfs_quota_us") == "-1")
        #expect(cgRead(cpu + "/cpu.shares") == "1024")
        #expect(cgRead(pids + "/pids.max") == "max")
        #expect(cgRead(cpuset + "/cpuset.cpus") == cgRead(cpusetRoot + "/cpuset.cpus"))
        #expect(driver.stats(path)?.memoryLimitBytes == 0)
        #expect(driver.stats(path)?.pidsLimit == 0)
        try driver.create(path, limits: limits)
        expectLimited()

        // A process joins through every procs file.
        let files = driver.procsFiles(path)
        #expect(files.count == driver.hierarchies.count)
        #expect(Set(files).count == files.count)
        (child, release) = try spawnWaitingSleeper()
        for file in files { try cgWriteExisting(file, String(child)) }
        #expect(write(release, "go\n", 3) == 3)
        let cgroups = procCgroups(child)
        for controller in ["memory", "pids", "cpu", "cpuacct", "cpuset"] {
            #expect(cgroups[controller] == "/" + path, "\(controller) in /proc/\(child)/cgroup")
        }

        // The exec after the join is charged to the cgroup (CPU time once the sleep runs).
        var stats = try #require(driver.stats(path))
        let deadline = monotonicMillis() + 3000
        while (stats.memoryUsageBytes == 0 || stats.cpuUsageNanos == 0 || cgRead("/proc/\(child)/comm") != "sleep")
            && monotonicMillis() < deadline {
            usleep(20_000)
            stats = try #require(driver.stats(path))
        }
        #expect(stats.pids >= 1)
        #expect(stats.memoryUsageBytes > 0)
        #expect(stats.memoryLimitBytes == 64 * mebibyte)
        #expect(stats.pidsLimit == 50)
        #expect(stats.cpuUsageNanos > 0)
        #expect(stats.oomKills == 0)

        // Not while a process is inside; nothing is removed then.
        let busy = #expect(throws: BerthError.self) { try driver.remove(path) }
        #expect(busy?.code == .failedPrecondition)
        #expect(busy?.message.contains(path) == true)
        #expect(driver.exists(path))
        for hierarchy in driver.hierarchies { #expect(Files.isDirectory(hierarchy + "/" + path)) }

        kill(child, SIGKILL)
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        child = 0

        try driver.remove(path)
        #expect(!driver.exists(path))
        #expect(driver.stats(path) == nil)
        for hierarchy in driver.hierarchies { #expect(!Files.exists(hierarchy + "/" + path)) }
        try driver.remove(path)  // already gone: fine
        try driver.remove(top)
        #expect(!driver.exists(top))
        for hierarchy in driver.hierarchies { #expect(!Files.exists(hierarchy + "/" + top)) }
    }
}

// MARK: - detection

@Suite("Cgroup detection")
struct CgroupDetectTests {
    @Test func thisHost() {
        let cgroup2Magic = 0x6367_7270
        let expected: CgroupLayout
        if berth_statfs_type(procRoot) == cgroup2Magic {
            expected = .v2
        } else if berth_statfs_type(procRoot + "/unified") == cgroup2Magic {
            expected = .hybrid
        } else {
            expected = .v1
        }
        let driver = Cgroups.detect()
        #expect(driver.layout == expected)
        if expected == .v2 {
            #expect(driver is CgroupsV2)
        } else {
            #expect(driver is CgroupsV1)
        }
    }

    @Test func plainDirectoryIsV1() throws {
        let root = try cgroupTempDir()
        defer { try? Files.removeTree(root) }
        let driver = Cgroups.detect(root: root)
        #expect(driver.layout == .v1)
        let v1 = try #require(driver as? CgroupsV1)
        #expect(v1.hierarchies.isEmpty)
    }

    @Test func combinedCpuHierarchy() throws {
        // "cpu,cpuacct" with "cpu" and "cpuacct" symlinks, as on many hosts: one hierarchy.
        let root = try cgroupTempDir()
        defer { try? Files.removeTree(root) }
        for dir in ["memory", "cpu,cpuacct", "pids", "cpuset", "net_cls,net_prio"] {
            try Files.makeDirectories(root + "/" + dir)
        }
        #expect(symlink("cpu,cpuacct", root + "/cpu") == 0)
        #expect(symlink("cpu,cpuacct", root + "/cpuacct") == 0)
        let driver = CgroupsV1(root: root, layout: .v1)
        #expect(driver.mounts["cpu"] == driver.mounts["cpuacct"])
        #expect(driver.mounts["cpu"]?.hasSuffix("/cpu,cpuacct") == true)
        #expect(driver.hierarchies.count == 4)
        #expect(driver.procsFiles("berth/a").count == 4)

        // Without the symlinks, the combined directory is found by name.
        unlink(root + "/cpu")
        unlink(root + "/cpuacct")
        let bare = CgroupsV1(root: root, layout: .v1)
        #expect(bare.mounts["cpuacct"]?.hasSuffix("/cpu,cpuacct") == true)
        #expect(bare.hierarchies.count == 4)
    }
}

// MARK: - bad input

@Suite("Cgroup path and limit validation")
struct CgroupValidationTests {
    static let badPaths = ["../x", "", "a//b", "/a", "a/", ".", "..", "a/./b", "a/../b", "a\0b"]

    @Test(arguments: badPaths)
    func badPathIsRejected(_ path: String) throws {
        let root = try cgroupTempDir()
        defer { try? Files.removeTree(root) }
        try cgWrite(root + "/cgroup.controllers", "cpu memory pids\n")
        let drivers: [any CgroupDriver] = [CgroupsV2(root: root, createsFiles: true), CgroupsV1(root: root, layout: .v1)]
        for driver in drivers {
            let created = #expect(throws: BerthError.self) { try driver.create(path, limits: ResourceLimits()) }
            #expect(created?.code == .invalidArgument)
            let removed = #expect(throws: BerthError.self) { try driver.remove(path) }
            #expect(removed?.code == .invalidArgument)
            #expect(driver.procsFiles(path).isEmpty)
            #expect(driver.stats(path) == nil)
            #expect(!driver.exists(path))
        }
        #expect(try Files.list(root) == ["cgroup.controllers"])
    }

    @Test func badLimitsAreRejected() throws {
        let root = try cgroupTempDir()
        defer { try? Files.removeTree(root) }
        try cgWrite(root + "/cgroup.controllers", "cpu memory pids\n")
        let driver = CgroupsV2(root: root, createsFiles: true)
        var swapOnly = ResourceLimits()
        swapOnly.memorySwapBytes = 1 << 30
        var swapBelowMemory = ResourceLimits()
        swapBelowMemory.memoryBytes = 1 << 30
        swapBelowMemory.memorySwapBytes = 1 << 20
        var badSwap = ResourceLimits()
        badSwap.memorySwapBytes = -2
        var tinyCpu = ResourceLimits()
        tinyCpu.cpuMillis = 5
        var badCpuset = ResourceLimits()
        badCpuset.cpusetCpus = "0\n1"
        for limits in [swapOnly, swapBelowMemory, badSwap, tinyCpu, badCpuset] {
            let error = #expect(throws: BerthError.self) { try driver.create("berth/x", limits: limits) }
            #expect(error?.code == .invalidArgument)
        }
        #expect(!Files.exists(root + "/berth"))
    }
}
