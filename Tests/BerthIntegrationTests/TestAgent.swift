#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem
import CBerthShim
import Testing

/// Integration tests need root: they start real agents that create namespaces and mounts.
let isRoot = geteuid() == 0

/// The directory holding the test runner, and so the berthd and berth binaries.
let binDir: String = {
    var buf = [UInt8](repeating: 0, count: 4096)
    let n = buf.withUnsafeMutableBytes { readlink("/proc/self/exe", $0.baseAddress!.assumingMemoryBound(to: CChar.self), 4095) }
    return Files.dirname(of: String(decoding: buf[0..<max(0, n)], as: UTF8.self))
}()

/// The repository root (for deploy/make-test-image.sh).
let repoRoot: String = {
    var path = #filePath
    for _ in 0..<3 { path = Files.dirname(of: path) }
    return path
}()

/// The result of running a program.
struct ProcessOutput {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs `argv` with posix_spawn, capturing stdout and stderr (through files, so a
/// chatty program cannot fill a pipe and stall), and waits for it.
func runProgram(_ argv: [String], env extra: [String] = [], stdin: String? = nil) throws -> ProcessOutput {
    let dir = try TempDir("berth-run")
    defer { dir.remove() }
    let outPath = dir.path + "/out", errPath = dir.path + "/err", inPath = dir.path + "/in"
    try Files.writeAtomically(inPath, Array((stdin ?? "").utf8))
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, inPath, O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    var env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + extra
    let pid = try spawn(argv, &env, &actions)
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return ProcessOutput(status: code,
                         stdout: (try? Files.readString(outPath)) ?? "",
                         stderr: (try? Files.readString(errPath)) ?? "")
}

func spawn(_ argv: [String], _ env: inout [String], _ actions: inout posix_spawn_file_actions_t) throws -> pid_t {
    var cArgs = argv.map { strdup($0) } + [nil]
    var cEnv = env.map { strdup($0) } + [nil]
    defer { for p in cArgs + cEnv { free(p) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, argv[0], &actions, nil, &cArgs, &cEnv)
    if rc != 0 { throw Errno(rawValue: rc).error("posix_spawn \(argv[0])") }
    return pid
}

/// A temporary directory, removed (never across a mount) by `remove()`.
struct TempDir: Sendable {
    let path: String
    init(_ prefix: String) throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw Errno.current.error("mkdtemp")
        }
        path = String(cString: p)
    }
    func remove() { try? Files.removeTree(path) }
}

/// The busybox test image tarball, built once per test run by the project's script.
let testImage: Result<String, BerthError> = {
    let path = "/tmp/berth-test-busybox-\(getpid()).tar"
    do {
        let r = try runProgram(["/bin/bash", repoRoot + "/deploy/make-test-image.sh", path])
        guard r.status == 0 else { return .failure(BerthError(.internal, "make-test-image.sh failed: \(r.stderr)")) }
        atexit { unlink("/tmp/berth-test-busybox-\(getpid()).tar") }
        return .success(path)
    } catch {
        return .failure(error.berthError("make-test-image"))
    }
}()

/// A real berthd in a private set of dirs, stopped and cleaned up by `stop()`.
final class TestAgent: Sendable {
    let dir: TempDir
    let pid: pid_t
    let socket: String
    let address: String
    /// The loopback TCP port the agent listens on, when asked for one (0 asks the
    /// kernel for a free port; this is then the one it gave).
    let tcpPort: UInt16?
    let lifeline: FileDescriptor
    /// This agent's --network-prefix: its bridges, veths and nftables table carry it, so
    /// agents of parallel tests never touch each other's, and `stop()` can find them.
    let netPrefix: String
    /// This agent's default subnet (a /24 of 10.231.0.0/16 picked at random).
    let defaultSubnet: String

    /// Starts berthd and waits until it answers Hello.
    /// `reusing`: the dirs of an agent that was killed, with its network names and
    /// subnet (`netOf`), for agent-restart tests.
    init(tcpPort: UInt16? = nil, extraArgs: [String] = [], reusing: TempDir? = nil, netOf previous: TestAgent? = nil) async throws {
        dir = try reusing ?? TempDir("berth-it")
        socket = dir.path + "/berth.sock"
        address = "unix://" + socket
        // An agent on the dirs of an earlier one keeps its names (and so finds its
        // bridges, table and cgroups): they are kept in the dir.
        let saved = ((try? Files.readString(dir.path + "/netprefix")) ?? "").split(separator: " ").map(String.init)
        netPrefix = previous?.netPrefix ?? (saved.count == 2 ? saved[0] : "bt" + Host.randomHex(bytes: 2))
        defaultSubnet = previous?.defaultSubnet ?? (saved.count == 2 ? saved[1] : "10.231.\(Int(Host.randomHex(bytes: 1), radix: 16) ?? 0).0/24")
        try? Files.writeAtomically(dir.path + "/netprefix", Array("\(netPrefix) \(defaultSubnet)".utf8))
        // Tests that do not ask for networking run containers with --network none (the
        // network tests pass --default-network bridge).
        var argv = [binDir + "/berthd", "--socket", socket, "--state-dir", dir.path + "/state",
                    "--run-dir", dir.path + "/run", "--node-name", "test-node", "--exit-on-stdin-eof",
                    "--network-prefix", netPrefix, "--default-subnet", defaultSubnet, "--subnet-pool", "10.232.0.0/16",
                    "--default-network", "none", "--cgroup-parent", "berth-test-\(netPrefix)"] + extraArgs
        if let tcpPort { argv += ["--listen", "tcp://127.0.0.1:\(tcpPort)"] }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // stdin is a pipe whose write end only this process holds (close-on-exec): if the
        // test process dies, the agent sees EOF and shuts down instead of being orphaned.
        let lifeline = try FileDescriptor.pipe()
        self.lifeline = lifeline.write
        posix_spawn_file_actions_adddup2(&actions, lifeline.read.rawValue, 0)
        posix_spawn_file_actions_addopen(&actions, 1, dir.path + "/berthd.log", O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, dir.path + "/berthd.log", O_WRONLY | O_CREAT | O_APPEND, 0o600)
        var env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
        pid = try spawn(argv, &env, &actions)
        lifeline.read.close()
        for _ in 0..<200 {
            if let client = try? await BerthClient.connect(to: address) {
                client.close()
                // Port 0: the kernel picked a free one, which the agent logs. A port chosen
                // by the test could be taken meanwhile by another test's connection.
                self.tcpPort = tcpPort == 0 ? Self.loggedTCPPort(dir.path + "/berthd.log") : tcpPort
                return
            }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                let log = (try? Files.readString(dir.path + "/berthd.log")) ?? ""
                lifeline.write.close()
                dir.remove()
                throw BerthError(.unavailable, "berthd exited during start-up: \(log)")
            }
            usleep(50_000)
        }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        lifeline.write.close()
        dir.remove()
        throw BerthError(.unavailable, "berthd did not answer within 10 s")
    }

    /// The port of the agent's "listening on tcp://HOST:PORT" log line.
    private static func loggedTCPPort(_ log: String) -> UInt16? {
        for _ in 0..<100 {
            let text = (try? Files.readString(log)) ?? ""
            for line in text.split(separator: "\n") where line.contains("listening on tcp://") {
                if let port = line.split(separator: ":").last.flatMap({ UInt16($0) }) { return port }
            }
            usleep(50_000)
        }
        return nil
    }

    func connect() async throws -> BerthClient {
        try await BerthClient.connect(to: address)
    }

    /// The berth CLI against this agent.
    func cli(_ args: [String], stdin: String? = nil) throws -> ProcessOutput {
        try runProgram([binDir + "/berth", "-H", address] + args, stdin: stdin)
    }

    /// A client with the busybox image imported as `busybox`.
    func clientWithImage() async throws -> BerthClient {
        let client = try await connect()
        _ = try await client.importImage(name: "busybox", path: try testImage.get())
        return client
    }

    var log: String { (try? Files.readString(dir.path + "/berthd.log")) ?? "" }

    /// SIGKILLs the agent alone, as a crash would: its containers, dirs, networks and
    /// cgroups stay for an agent started with `reusing: dir` to adopt.
    func crash() {
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        lifeline.close()
    }

    /// SIGTERM, wait for a clean exit, then remove the dirs. Returns berthd's exit status.
    @discardableResult
    func stop() -> Int32 {
        // Containers outlive agents by design: kill this agent's containers first.
        killContainers()
        kill(pid, SIGTERM)
        lifeline.close()
        var status: Int32 = 0
        var waited = false
        for _ in 0..<300 {
            if waitpid(pid, &status, WNOHANG) == pid { waited = true; break }
            usleep(50_000)
        }
        if !waited {
            kill(pid, SIGKILL)
            waitpid(pid, &status, 0)
        }
        // Nothing may stay mounted under the agent's dirs once it is gone.
        if let mounts = try? Files.readString("/proc/self/mountinfo") {
            for line in mounts.split(separator: "\n") where line.contains(dir.path) {
                let fields = line.split(separator: " ")
                if fields.count > 4 { umount2(String(fields[4]), Int32(MNT_DETACH)) }
            }
        }
        removeNetworkLeftovers()
        removeCgroupLeftovers()
        dir.remove()
        return waited ? (status >> 8) & 0xff : -1
    }

    /// The links and the nftables table this agent made (by its prefix), for tests to
    /// check and for `stop()` to clean up after a failed test. Removing them is the
    /// test harness's safety net, never the agent's way of working.
    var networkLinks: [String] {
        let r = try? runProgram(["/usr/sbin/ip", "-o", "link", "show"])
        return (r?.stdout ?? "").split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 1 else { return nil }
            let name = String(fields[1].split(separator: "@").first ?? "").replacingColon()
            return name.hasPrefix(netPrefix) ? name : nil
        }
    }

    var nftTableExists: Bool {
        ((try? runProgram(["/usr/sbin/nft", "list", "tables"]))?.stdout ?? "").contains("table ip \(netPrefix)\n")
    }

    /// This agent's cgroup parent in every hierarchy of the host (v1 controllers and the
    /// unified mount): "/sys/fs/cgroup/<controller>/berth-test-<prefix>".
    var cgroupDirs: [String] {
        let parent = "berth-test-\(netPrefix)"
        var out: [String] = []
        if Files.exists("/sys/fs/cgroup/\(parent)") { out.append("/sys/fs/cgroup/\(parent)") }
        for ctrl in (try? Files.list("/sys/fs/cgroup")) ?? [] where Files.exists("/sys/fs/cgroup/\(ctrl)/\(parent)") {
            out.append("/sys/fs/cgroup/\(ctrl)/\(parent)")
        }
        return Array(Set(out)).sorted()
    }

    /// The cgroups left under this agent's parent (none after every container and pod
    /// is removed).
    var cgroupsLeft: [String] {
        cgroupDirs.flatMap { dir in
            ((try? Files.list(dir)) ?? []).filter { Files.isDirectory(dir + "/" + $0) }.map { dir + "/" + $0 }
        }
    }

    /// rmdir, deepest first, of everything under this agent's cgroup parent, and the parent.
    func removeCgroupLeftovers() {
        func rmdirTree(_ path: String) {
            for child in (try? Files.list(path)) ?? [] where Files.isDirectory(path + "/" + child) { rmdirTree(path + "/" + child) }
            rmdir(path)
        }
        for dir in cgroupDirs { rmdirTree(dir) }
    }

    func removeNetworkLeftovers() {
        for link in networkLinks { _ = try? runProgram(["/usr/sbin/ip", "link", "del", link]) }
        if nftTableExists { _ = try? runProgram(["/usr/sbin/nft", "delete", "table", "ip", netPrefix]) }
        // The agent turned ip_forward on and left its marker: turn it off again.
        if Files.exists(dir.path + "/state/networks/ip_forward.berth") {
            if let fd = try? FileDescriptor.open("/proc/sys/net/ipv4/ip_forward", O_WRONLY | O_CLOEXEC) {
                try? fd.writeAll("0\n")
                fd.close()
            }
        }
    }

    /// The berth-monitor processes of this agent's containers (found by their CONFIG
    /// path, which lies under the agent's run dir).
    var monitors: [pid_t] {
        Processes.all().filter { p in
            guard p.cmdline.contains("berth-monitor") else { return false }
            if p.cmdline.contains(dir.path) { return true }
            // A pod's pause monitor (`berth-monitor --pause`) names no path: its stdout,
            // the pause log under the agent's run dir, tells whose it is.
            var buf = [CChar](repeating: 0, count: 4096)
            let n = readlink("/proc/\(p.pid)/fd/1", &buf, buf.count - 1)
            return n > 0 && String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self).hasPrefix(dir.path)
        }.map(\.pid)
    }

    /// SIGKILLs the init of every container of this agent (the kernel then kills the rest
    /// of each pid namespace), and waits for their monitors to finish.
    func killContainers() {
        let monitors = self.monitors
        defer { Processes.reapOrphanedMonitors() }
        guard !monitors.isEmpty else { return }
        for p in Processes.all() where monitors.contains(p.ppid) { kill(p.pid, SIGKILL) }
        for _ in 0..<100 {
            Processes.reapOrphanedMonitors()
            if self.monitors.isEmpty { return }
            usleep(50_000)
        }
        for m in self.monitors { kill(m, SIGKILL) }
    }

    /// What is mounted under the agent's dirs.
    var mountsLeft: [String] {
        guard let mounts = try? Files.readString("/proc/self/mountinfo") else { return [] }
        return mounts.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            return fields.count > 4 && fields[4].hasPrefix(dir.path) ? String(fields[4]) : nil
        }
    }
}

/// Runs `body` with a fresh agent and always stops it.
func withAgent<T>(tcpPort: UInt16? = nil, extraArgs: [String] = [], _ body: (TestAgent) async throws -> T) async throws -> T {
    let agent = try await TestAgent(tcpPort: tcpPort, extraArgs: extraArgs)
    do {
        let result = try await body(agent)
        agent.stop()
        return result
    } catch {
        let log = agent.log
        agent.stop()
        Issue.record("berthd log:\n\(log)")
        throw error
    }
}

/// Collects a run's output per channel and its exit status.
func collect(_ run: ContainerRun) async throws -> (stdout: String, stderr: String, status: BerthWire.ExitStatus) {
    var out: [UInt8] = [], err: [UInt8] = []
    for try await chunk in run.output {
        if chunk.channel == .stderr { err += chunk.data } else { out += chunk.data }
    }
    let status = try await run.exitStatus()
    return (String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self), status)
}

func spec(_ args: [String], image: String = "busybox", rm: Bool = true, name: String = "", hostname: String = "") -> ContainerSpec {
    var s = ContainerSpec()
    s.image = image
    s.args = args
    s.autoRemove = rm
    s.name = name
    s.hostname = hostname
    return s
}

/// Expects `body` to throw a BerthError with `code` (and `reason` when given).
func expectError<T>(_ code: BerthError.Code, reason: String? = nil, contains: String? = nil,
                    sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> T) async {
    do {
        _ = try await body()
        Issue.record("expected \(code), got success", sourceLocation: sourceLocation)
    } catch let e as BerthError {
        #expect(e.code == code, "\(e)", sourceLocation: sourceLocation)
        if let reason { #expect(e.reason == reason, "\(e)", sourceLocation: sourceLocation) }
        if let contains { #expect(e.message.contains(contains), "\(e.message)", sourceLocation: sourceLocation) }
    } catch {
        Issue.record("expected BerthError \(code), got \(error)", sourceLocation: sourceLocation)
    }
}

/// Host namespace inode links, e.g. "net:[4026531840]".
func hostNamespaces() -> [String] {
    ["ipc", "net", "mnt", "pid", "uts"].map { ns in
        var buf = [UInt8](repeating: 0, count: 256)
        let n = buf.withUnsafeMutableBytes { readlink("/proc/self/ns/\(ns)", $0.baseAddress!.assumingMemoryBound(to: CChar.self), 255) }
        return String(decoding: buf[0..<max(0, n)], as: UTF8.self)
    }
}

enum Rootfs {
    /// Whether anything is mounted at or under `path` in this mount namespace.
    static func isMounted(under path: String) -> Bool {
        guard let mounts = try? Files.readString("/proc/self/mountinfo") else { return false }
        return mounts.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ")
            return fields.count > 4 && fields[4].hasPrefix(path)
        }
    }
}

/// A look at /proc.
enum Processes {
    struct Info {
        var pid: pid_t
        var ppid: pid_t
        var cmdline: String
        var comm: String
        var state: String
    }

    /// Reaps monitors that were reparented to this process (a subreaper) after their
    /// agent died, and have exited since.
    static func reapOrphanedMonitors() {
        let me = getpid()
        for p in all() where p.ppid == me && p.comm == "berth-monitor" && p.state == "Z" {
            var status: Int32 = 0
            waitpid(p.pid, &status, WNOHANG)
        }
    }

    static func all() -> [Info] {
        guard let names = try? Files.list("/proc") else { return [] }
        return names.compactMap { name -> Info? in
            guard let pid = pid_t(name), let stat = try? Files.readString("/proc/\(pid)/stat"),
                  let close = stat.lastIndex(of: ")") else { return nil }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 1, let ppid = pid_t(fields[1]),
                  let open = stat.firstIndex(of: "(") else { return nil }
            let comm = String(stat[stat.index(after: open)..<close])
            let cmd = ((try? Files.read("/proc/\(pid)/cmdline")) ?? []).map { $0 == 0 ? UInt8(ascii: " ") : $0 }
            return Info(pid: pid, ppid: ppid, cmdline: String(decoding: cmd, as: UTF8.self), comm: comm, state: String(fields[0]))
        }
    }
}

extension String {
    /// "eth0:" → "eth0" (ip -o link prints names with a colon).
    func replacingColon() -> String { hasSuffix(":") ? String(dropLast()) : self }
}
