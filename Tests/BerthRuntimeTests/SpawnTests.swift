// Integration tests of the pre-exec path: real namespaces, mounts and pivot_root.
// They need root (CAP_SYS_ADMIN and friends) and /bin/busybox (Debian: busybox-static);
// without root the suite is skipped.
#if canImport(Glibc)
import Glibc
#endif
import Testing
import BerthErrors
import BerthRuntime
import BerthSystem
import CBerthShim

/// The applets the spawn tests use.
private let spawnApplets = ["sh", "hostname", "cat", "ls", "readlink", "echo", "id", "pwd", "touch", "test"]

/// Runs `body` with a fresh rootfs and removes it afterwards, pass or fail.
private func withRootfs<R>(_ body: (TestRootfs) throws -> R) throws -> R {
    let root = try TestRootfs(prefix: "berth-spawn", applets: spawnApplets)
    defer { root.remove() }
    return try body(root)
}

private struct Finished {
    /// The exit code, or 128 + the signal number when killed.
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Spawns `args` in `root`, collects stdout/stderr until EOF and reaps the process.
/// A container still running after 30 s is killed, so a hang cannot leak a process.
private func run(_ root: TestRootfs, _ args: [String], env: [String] = ["PATH=/bin"],
                 workingDir: String = "/", hostname: String = "box", uid: UInt32 = 0, gid: UInt32 = 0,
                 beforeStart: (Int32) throws -> Void = { _ in }) throws -> Finished {
    let null = try FileDescriptor.open("/dev/null", O_RDWR)
    defer { null.close() }
    let out = try FileDescriptor.pipe()
    defer { out.read.close() }
    let err = try FileDescriptor.pipe()
    defer { err.read.close() }
    let process: SpawnedProcess
    do {
        defer {
            // The container has its own copies now; without closing ours, EOF never comes.
            out.write.close()
            err.write.close()
        }
        process = try Spawner.spawn(SpawnConfig(
            rootfs: root.path, hostname: hostname, workingDir: workingDir, args: args, env: env,
            uid: uid, gid: gid, stdin: null, stdout: out.write, stderr: err.write), beforeStart: beforeStart)
    }
    defer { process.pidfd.close() }

    let (stdout, stderr) = readBoth(out.read, err.read, pidfd: process.pidfd, timeoutMillis: 30_000)
    var status: Int32 = 0
    while waitpid(process.pid, &status, 0) < 0 && errno == EINTR {}
    let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return Finished(status: code, stdout: stdout, stderr: stderr)
}

/// Reads both pipes to EOF with poll; kills the process through `pidfd` at the deadline.
private func readBoth(_ a: FileDescriptor, _ b: FileDescriptor, pidfd: FileDescriptor, timeoutMillis: Int) -> (String, String) {
    var outputs: [[UInt8]] = [[], []]
    var open = [true, true]
    let deadline = Host.monotonicNanos + UInt64(timeoutMillis) * 1_000_000
    var buffer = [UInt8](repeating: 0, count: 4096)
    while open[0] || open[1] {
        let now = Host.monotonicNanos
        if now >= deadline {
            _ = berth_pidfd_send_signal(pidfd.rawValue, SIGKILL)
            Issue.record("container did not finish within \(timeoutMillis) ms; killed")
            break
        }
        var fds = [pollfd(fd: open[0] ? a.rawValue : -1, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: open[1] ? b.rawValue : -1, events: Int16(POLLIN), revents: 0)]
        let ready = poll(&fds, 2, Int32((deadline - now) / 1_000_000) + 1)
        if ready <= 0 { continue }
        for i in 0..<2 where open[i] && fds[i].revents != 0 {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fds[i].fd, $0.baseAddress, $0.count) }
            if n > 0 { outputs[i].append(contentsOf: buffer[0..<n]) } else if n == 0 || errno != EINTR { open[i] = false }
        }
    }
    return (String(decoding: outputs[0], as: UTF8.self), String(decoding: outputs[1], as: UTF8.self))
}

/// Runs `args`, expecting spawn to fail; returns the error and checks that the child was
/// reaped (no zombie left behind).
private func spawnError(_ root: TestRootfs, _ args: [String], env: [String] = ["PATH=/bin"]) -> BerthError? {
    var childPid: Int32 = -1
    do {
        _ = try run(root, args, env: env, beforeStart: { childPid = $0 })
        Issue.record("spawn of \(args) succeeded")
        return nil
    } catch let e as BerthError {
        #expect(childPid > 0)
        if childPid > 0 {
            var status: Int32 = 0
            #expect(waitpid(childPid, &status, WNOHANG) == -1 && errno == ECHILD, "child \(childPid) was not reaped")
        }
        return e
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

private func hostNamespace(_ name: String) -> String {
    var buf = [CChar](repeating: 0, count: 256)
    let n = readlink("/proc/self/ns/\(name)", &buf, buf.count - 1)
    return n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
}

@Suite("Spawner (needs root)", .enabled(if: getuid() == 0, "needs root"), .timeLimit(.minutes(2)))
struct SpawnTests {
    @Test func hostnameIsSet() throws {
        let r = try withRootfs { try run($0, ["hostname"], hostname: "web-1") }
        #expect(r.status == 0)
        #expect(r.stdout == "web-1\n")
    }

    @Test func commandIsPidOne() throws {
        let r = try withRootfs { try run($0, ["sh", "-c", "echo $$"]) }
        #expect(r.stdout == "1\n")
    }

    @Test func namespacesDifferFromHost() throws {
        let kinds = ["ipc", "net", "mnt", "pid", "uts"]
        let r = try withRootfs {
            try run($0, ["sh", "-c", "for n in \(kinds.joined(separator: " ")); do readlink /proc/self/ns/$n; done"])
        }
        #expect(r.status == 0, "\(r.stderr)")
        let inside = r.stdout.split(separator: "\n").map(String.init)
        #expect(inside.count == kinds.count)
        for (kind, link) in zip(kinds, inside) {
            let host = hostNamespace(kind)
            #expect(link.hasPrefix("\(kind):["))
            #expect(!host.isEmpty && link != host, "\(kind) namespace is the host's (\(host))")
        }
    }

    @Test func exitCodePassesThrough() throws {
        let r = try withRootfs { try run($0, ["sh", "-c", "exit 3"]) }
        #expect(r.status == 3)
    }

    @Test func environmentAndMissingWorkingDir() throws {
        let r = try withRootfs { root in
            let r = try run(root, ["sh", "-c", "echo $GREETING; pwd"], env: ["PATH=/bin", "GREETING=hello world"],
                            workingDir: "/srv/app/data")
            #expect(Files.isDirectory("\(root.path)/srv/app/data"))
            return r
        }
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "hello world\n/srv/app/data\n")
    }

    @Test func pathComesFromContainerEnvironment() throws {
        try withRootfs { root in
            try Files.makeDirectories("\(root.path)/opt/tools")
            try sys("symlink") { symlink("/bin/busybox", "\(root.path)/opt/tools/echo") }
            let found = try run(root, ["echo", "from opt"], env: ["PATH=/nowhere:/opt/tools"])
            #expect(found.stdout == "from opt\n")
            // No PATH at all: the default one, which has /bin.
            let byDefault = try run(root, ["echo", "default"], env: [])
            #expect(byDefault.stdout == "default\n")
            // A PATH without /bin must not find /bin/echo, whatever the agent's PATH is.
            let e = spawnError(root, ["echo"], env: ["PATH=/opt"])
            #expect(e?.reason == BerthError.Reason.execNotFound)
        }
    }

    @Test func userAndGroupApplied() throws {
        let r = try withRootfs { try run($0, ["sh", "-c", "id -u; id -g; id -G"], uid: 1000, gid: 2000) }
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "1000\n2000\n2000\n")
    }

    @Test func devProcSysAndLoopback() throws {
        let script = """
            test -c /dev/null && echo null; test -c /dev/urandom && echo urandom
            test -L /dev/ptmx && echo ptmx; test -d /dev/pts && echo pts
            touch /sys/x 2>/dev/null && echo sys-writable || echo sys-readonly
            cat /sys/class/net/lo/operstate
            echo /proc/[0-9]*
            """
        let r = try withRootfs { try run($0, ["sh", "-c", script]) }
        #expect(r.stdout == "null\nurandom\nptmx\npts\nsys-readonly\nunknown\n/proc/1\n", "\(r.stderr)")
    }

    @Test func mountsStayInsideContainer() throws {
        try withRootfs { root in
            // The container blocks reading stdin; once spawn returns, all its mounts exist.
            let input = try FileDescriptor.pipe()
            defer { input.read.close() }
            let null = try FileDescriptor.open("/dev/null", O_RDWR)
            defer { null.close() }
            let process: SpawnedProcess
            do {
                process = try Spawner.spawn(SpawnConfig(rootfs: root.path, args: ["sh", "-c", "read line; exit 0"],
                                                        stdin: input.read, stdout: null, stderr: null))
            } catch {
                input.write.close()
                throw error
            }
            defer { process.pidfd.close() }
            let mounts = (try? Files.readString("/proc/self/mounts")) ?? ""
            #expect(!mounts.contains(root.path), "container mounts propagated to the host")
            input.write.close()
            var status: Int32 = 0
            while waitpid(process.pid, &status, 0) < 0 && errno == EINTR {}
            #expect(status == 0)
        }
    }

    @Test func commandNotFound() throws {
        let e = try withRootfs { spawnError($0, ["nosuchcmd", "arg"]) }
        #expect(e?.code == .notFound)
        #expect(e?.reason == BerthError.Reason.execNotFound)
        #expect(e?.message == "exec \"nosuchcmd\": executable file not found in $PATH")
    }

    @Test func pathNotFound() throws {
        let e = try withRootfs { spawnError($0, ["/bin/nope"]) }
        #expect(e?.reason == BerthError.Reason.execNotFound)
        #expect(e?.message == "exec \"/bin/nope\": no such file or directory")
    }

    @Test func commandNotExecutable() throws {
        let e = try withRootfs { root in
            try TestRootfs.copy("/bin/busybox", to: "\(root.path)/bin/plain", mode: 0o644)
            return spawnError(root, ["plain"])
        }
        #expect(e?.code == .permissionDenied)
        #expect(e?.reason == BerthError.Reason.execPermission)
        #expect(e?.message == "exec \"plain\": permission denied")
    }

    @Test func failedStepIsNamed() throws {
        // A rootfs whose /proc is a symlink to / must not get proc mounted over the host's /.
        let e = try withRootfs { root in
            try sys("symlink") { symlink("/", "\(root.path)/proc") }
            return spawnError(root, ["sh", "-c", "true"])
        }
        #expect(e?.code == .internal)
        #expect(e?.message == "mkdir /proc: Not a directory")
    }

    @Test func emptyCommandIsInvalid() throws {
        try withRootfs { root in
            let null = try FileDescriptor.open("/dev/null", O_RDWR)
            defer { null.close() }
            #expect { try Spawner.spawn(SpawnConfig(rootfs: root.path, args: [], stdin: null, stdout: null, stderr: null)) }
                throws: { ($0 as? BerthError)?.code == .invalidArgument && ($0 as? BerthError)?.message == "empty command" }
        }
    }

    @Test func rootfsMustBeADirectory() throws {
        try withRootfs { root in
            let null = try FileDescriptor.open("/dev/null", O_RDWR)
            defer { null.close() }
            for rootfs in ["\(root.path)/bin/busybox", "\(root.path)/missing", "relative/path"] {
                #expect(throws: BerthError.self) {
                    try Spawner.spawn(SpawnConfig(rootfs: rootfs, args: ["sh"], stdin: null, stdout: null, stderr: null))
                }
            }
        }
    }

    @Test func beforeStartSeesWaitingChildAndCanAbort() throws {
        struct Refused: Error {}
        try withRootfs { root in
            var seen: Int32 = -1
            var childMountNamespace = ""
            #expect(throws: Refused.self) {
                _ = try run(root, ["sh", "-c", "true"]) { pid in
                    seen = pid
                    var buf = [CChar](repeating: 0, count: 256)
                    let n = readlink("/proc/\(pid)/ns/mnt", &buf, buf.count - 1)
                    if n > 0 { childMountNamespace = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
                    throw Refused()
                }
            }
            #expect(seen > 0)
            #expect(childMountNamespace.hasPrefix("mnt:[") && childMountNamespace != hostNamespace("mnt"))
            var status: Int32 = 0
            #expect(waitpid(seen, &status, WNOHANG) == -1 && errno == ECHILD, "aborted child was not reaped")
        }
    }
}

/// berth_spawn_start refuses a hardened config it could not apply, before any clone.
@Suite("berth_spawn_start hardening checks")
struct SpawnHardeningConfigTests {
    private func start(_ change: (inout berth_spawn_config) -> Void) -> (rc: Int32, errno: Int32) {
        var cfg = berth_spawn_config()
        cfg.netns_fd = BERTH_NETNS_NEW
        cfg.ipcns_fd = BERTH_NS_NEW
        cfg.utsns_fd = BERTH_NS_NEW
        cfg.pidns_fd = BERTH_NS_NEW
        cfg.harden = 1
        change(&cfg)
        var handle = berth_spawn_handle()
        let rc = berth_spawn_start(&cfg, &handle)
        let e = errno
        if rc == 0 { berth_spawn_abort(&handle) }
        return (rc, e)
    }

    @Test func countsAndFilterAreChecked() {
        #expect(start { $0.masked_count = Int32(BERTH_SPAWN_MAX_PATHS) + 1 } == (-1, EINVAL))
        #expect(start { $0.readonly_count = -1 } == (-1, EINVAL))
        #expect(start { $0.mount_count = 1 } == (-1, EINVAL), "mounts NULL with a count")
        #expect(start { $0.seccomp_len = 1 } == (-1, EINVAL), "a length without a filter")
        #expect(start { $0.seccomp_len = UInt32(BERTH_SPAWN_MAX_SECCOMP) + 1; $0.seccomp_bpf = UnsafeRawPointer(bitPattern: 8) }
                == (-1, EINVAL))
    }
}
