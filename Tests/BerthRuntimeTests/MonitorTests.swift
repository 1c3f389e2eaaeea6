// Tests of berth-monitor (docs/monitor.md) as the agent uses it: a CONFIG file, fd 3 the
// ready pipe, stdout/stderr the diagnostics file; and its pause mode, with a pod's
// container joining the pause process's pid namespace and pinned IPC/UTS namespaces.
// Real containers (namespaces, mounts, pivot_root): they need root and /bin/busybox
// (Debian: busybox-static); without root the suite is skipped. Every process, pin and
// directory a test makes is gone when it ends, pass or fail.
#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import BerthRuntime
import BerthSystem
import CBerthNet
import CBerthShim

/// berth-monitor is built next to the test runner (BerthRuntimeTests depends on its target).
private let monitorPath: String = {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    let exe = n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
    return Files.dirname(of: exe) + "/berth-monitor"
}()

/// A temp dir with a busybox root file system and a state dir for the log and exit file.
private struct Fixture {
    static let applets = ["sh", "echo", "printf", "sleep", "head", "tr", "hostname", "readlink", "cat", "wc", "grep",
                          "ls", "touch", "mkdir", "pwd"]
    let base: String
    var rootfs: String { "\(base)/rootfs" }
    var logPath: String { "\(base)/state/console.log" }
    var exitPath: String { "\(base)/state/exit" }
    var configPath: String { "\(base)/config" }
    var diagPath: String { "\(base)/monitor.log" }

    init() throws {
        var template = Array("/tmp/berth-monitor-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw Errno.current.error("mkdtemp") }
        base = String(cString: made)
        do {
            try Files.makeDirectories("\(base)/rootfs")
            try makeBusyboxRootfs(at: "\(base)/rootfs", applets: Self.applets)
            try Files.makeDirectories("\(base)/state")
        } catch {
            try? Files.removeTree(base)
            throw error
        }
    }

    /// The pairs of a valid CONFIG running `args`.
    func config(_ args: [String], maxBytes: UInt64 = 0, maxFiles: Int = 2) -> [(String, String)] {
        [("id", String(repeating: "ab", count: 32)), ("rootfs", rootfs), ("hostname", "box"), ("cwd", "/"),
         ("uid", "0"), ("gid", "0")]
            + args.map { ("arg", $0) }
            + [("env", "PATH=/bin"), ("log", logPath), ("log-max-bytes", "\(maxBytes)"),
               ("log-max-files", "\(maxFiles)"), ("exit", exitPath)]
    }

    func writeConfig(_ pairs: [(String, String)]) throws {
        try Files.writeAtomically(configPath, pairs.flatMap { Array($0.0.utf8) + [0] + Array($0.1.utf8) + [0] })
    }

    /// What the monitor wrote to its stdout/stderr, for failure messages.
    var diagnostics: String { (try? Files.readString(diagPath)) ?? "" }

    /// rm -rf, and no mount of the rootfs may be visible here (they live in the
    /// container's mount namespace, gone with its last process).
    func remove() {
        #expect(throws: Never.self) { try Files.removeTree(base) }
        let mounts = (try? Files.readString("/proc/self/mounts")) ?? ""
        #expect(!mounts.contains(base), "a mount of \(base) is visible on the host")
    }
}

private func withFixture<R>(_ body: (Fixture) throws -> R) throws -> R {
    let fixture = try Fixture()
    defer { fixture.remove() }
    return try body(fixture)
}

// MARK: - Processes

/// posix_spawn of `argv` as the agent starts the monitor: stdin /dev/null, stdout and
/// stderr appended to `diagPath`, fd 3 = `ready`. The child's other descriptors are the
/// test process's non-close-on-exec ones, which the monitor must cope with.
private func spawn(_ argv: [String], ready: FileDescriptor, diagPath: String, ownProcessGroup: Bool = false) throws -> Int32 {
    // dup2(3, 3) would leave close-on-exec set: move the pipe off 3 first.
    let readyFd = ready.rawValue == 3 ? try sys("fcntl") { fcntl(3, F_DUPFD_CLOEXEC, 10) } : ready.rawValue
    defer { if readyFd != ready.rawValue { close(readyFd) } }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, diagPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    posix_spawn_file_actions_adddup2(&actions, readyFd, 3)
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    if ownProcessGroup {
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attr, 0)
    }
    let env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
    let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    let cEnv: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
    defer { (cArgs + cEnv).forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, argv[0], &actions, &attr, cArgs, cEnv)
    if rc != 0 { throw Errno(rawValue: rc).error("posix_spawn \(argv[0])") }
    return pid
}

/// Reads `fd` to EOF (the monitor closes the ready pipe after its one line); "" after
/// `timeoutMillis`.
private func readToEOF(_ fd: FileDescriptor, timeoutMillis: Int = 20_000) -> String {
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 512)
    let deadline = Host.monotonicNanos + UInt64(timeoutMillis) * 1_000_000
    while true {
        let now = Host.monotonicNanos
        if now >= deadline {
            Issue.record("no EOF on the ready pipe within \(timeoutMillis) ms (got \(String(decoding: out, as: UTF8.self)))")
            return ""
        }
        var p = pollfd(fd: fd.rawValue, events: Int16(POLLIN), revents: 0)
        if poll(&p, 1, Int32((deadline - now) / 1_000_000) + 1) <= 0 { continue }
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd.rawValue, $0.baseAddress, $0.count) }
        if n > 0 { out.append(contentsOf: buffer[0..<n]) } else if n == 0 || errno != EINTR { break }
    }
    return String(decoding: out, as: UTF8.self)
}

/// Waits up to `timeoutMillis` for our child `pid` to exit, reaps it and returns its exit
/// code (128 + signal when killed). nil on timeout, or when `pid` is not our child.
private func waitExit(_ pid: Int32, timeoutMillis: Int) -> Int32? {
    let pidfd = berth_pidfd_open(pid)
    if pidfd < 0 { return nil }
    defer { close(pidfd) }
    var p = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
    let deadline = Host.monotonicNanos + UInt64(timeoutMillis) * 1_000_000
    while true {
        let now = Host.monotonicNanos
        if now >= deadline { return nil }
        let ready = poll(&p, 1, Int32((deadline - now) / 1_000_000) + 1)
        if ready > 0 { break }
    }
    var status: Int32 = 0
    var rc: Int32
    repeat { rc = waitpid(pid, &status, 0) } while rc < 0 && errno == EINTR
    if rc < 0 { return nil }  // not our child: nobody to ask for the status
    return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
}

/// A field of /proc/PID/status ("PPid", "VmRSS", ...), without the unit.
private func procStatus(_ pid: Int32, _ field: String) -> String? {
    guard let text = try? Files.readString("/proc/\(pid)/status") else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("\(field):") {
        return line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.map(String.init)
    }
    return nil
}

/// Every value of a field of /proc/PID/status: "NSpid" has one per pid namespace the
/// process is in, outermost first.
private func procStatusValues(_ pid: Int32, _ field: String) -> [String] {
    guard let text = try? Files.readString("/proc/\(pid)/status") else { return [] }
    for line in text.split(separator: "\n") where line.hasPrefix("\(field):") {
        return line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
    }
    return []
}

/// How a namespace file or a pin of one shows through /proc/self/ns inside a container:
/// "ipc:[<inode>]".
private func nsName(_ kind: String, _ path: String) -> String? {
    var st = stat()
    return stat(path, &st) == 0 ? "\(kind):[\(st.st_ino)]" : nil
}

/// Field 22 of /proc/PID/stat, counted after the last ')' (the command may hold spaces).
private func startTime(_ pid: Int32) -> UInt64? {
    guard let text = try? Files.readString("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
    let fields = text[text.index(after: close)...].split(separator: " ")
    return fields.count > 19 ? UInt64(fields[19]) : nil
}

/// Whether `pid` still names the process that started at `start` (and is not a zombie).
private func isAlive(_ pid: Int32, start: UInt64) -> Bool {
    startTime(pid) == start && procStatus(pid, "State").map { !$0.hasPrefix("Z") } == true
}

/// A started monitor: its pid, and once the ready line said ok, its container's.
/// `cleanUp` leaves nothing running: it kills the container (the monitor then finishes
/// on its own), and the monitor too if it does not.
private final class Monitor {
    let pid: Int32
    let ready: String
    var containerPid: Int32 = 0
    var containerStart: UInt64 = 0
    private(set) var reaped = false

    /// Starts the monitor with `configPath` and reads its ready line.
    convenience init(_ fixture: Fixture) throws {
        try self.init(argv: [monitorPath, fixture.configPath], diagPath: fixture.diagPath)
    }

    init(argv: [String], diagPath: String, ownProcessGroup: Bool = false) throws {
        let pipe = try FileDescriptor.pipe()
        defer { pipe.read.close() }
        do {
            defer { pipe.write.close() }
            pid = try spawn(argv, ready: pipe.write, diagPath: diagPath, ownProcessGroup: ownProcessGroup)
        }
        ready = readToEOF(pipe.read)
        let fields = ready.split(separator: " ")
        if fields.count == 3, fields[0] == "ok", ready.hasSuffix("\n"), let p = Int32(fields[1]),
           let s = UInt64(fields[2].dropLast()) {
            containerPid = p
            containerStart = s
        }
    }

    /// Waits for the monitor (our child) to exit; its exit code, nil on timeout.
    func wait(timeoutMillis: Int = 20_000) -> Int32? {
        if reaped { return nil }
        let code = waitExit(pid, timeoutMillis: timeoutMillis)
        if code != nil { reaped = true }
        return code
    }

    /// SIGKILL to the container, through a pidfd checked against its start time.
    func killContainer() {
        guard containerPid > 0 else { return }
        let pidfd = berth_pidfd_open(containerPid)
        guard pidfd >= 0 else { return }
        defer { close(pidfd) }
        if startTime(containerPid) == containerStart { _ = berth_pidfd_send_signal(pidfd, SIGKILL) }
    }

    func cleanUp() {
        if reaped { return }
        killContainer()
        if wait(timeoutMillis: 5_000) == nil {
            Issue.record("monitor \(pid) still running after its container was killed; killing it")
            kill(pid, SIGKILL)
            _ = wait(timeoutMillis: 5_000)
        }
    }
}

// MARK: - Log and exit file

private struct Record {
    var ns: Int64
    var stream: String
    var tag: String
    var content: String
}

/// The records of a CRI log; a malformed line is an issue.
private func readLog(_ path: String) -> [Record] {
    guard let bytes = try? Files.read(path) else {
        Issue.record("no log at \(path)")
        return []
    }
    if let last = bytes.last, last != UInt8(ascii: "\n") { Issue.record("\(path) does not end in a newline") }
    var records: [Record] = []
    for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast() {
        let line = Array(line)
        // "<30-byte time> <stream> <tag> <content>"
        guard line.count >= 40, line[30] == UInt8(ascii: " "), let ns = parseTime(Array(line[0..<30])),
              let streamEnd = line[31...].firstIndex(of: UInt8(ascii: " ")), line.count > streamEnd + 2,
              line[streamEnd + 2] == UInt8(ascii: " ") else {
            Issue.record("malformed record \(String(decoding: line, as: UTF8.self).prefix(80))")
            continue
        }
        records.append(Record(ns: ns, stream: String(decoding: line[31..<streamEnd], as: UTF8.self),
                              tag: String(decoding: [line[streamEnd + 1]], as: UTF8.self),
                              content: String(decoding: line[(streamEnd + 3)...], as: UTF8.self)))
    }
    return records
}

/// "2026-12-04T20:11:06.123456789Z" to unix nanoseconds.
private func parseTime(_ b: [UInt8]) -> Int64? {
    func number(_ range: Range<Int>) -> Int? {
        var v = 0
        for i in range {
            guard b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9") else { return nil }
            v = v * 10 + Int(b[i] - UInt8(ascii: "0"))
        }
        return v
    }
    let separators: [(Int, Character)] = [(4, "-"), (7, "-"), (10, "T"), (13, ":"), (16, ":"), (19, "."), (29, "Z")]
    guard b.count == 30, separators.allSatisfy({ b[$0.0] == $0.1.asciiValue }),
          let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), let hour = number(11..<13),
          let minute = number(14..<16), let second = number(17..<19), let nanos = number(20..<29),
          (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 60 else { return nil }
    var t = tm()
    t.tm_year = Int32(year - 1900)
    t.tm_mon = Int32(month - 1)
    t.tm_mday = Int32(day)
    t.tm_hour = Int32(hour)
    t.tm_min = Int32(minute)
    t.tm_sec = Int32(second)
    return Int64(timegm(&t)) * 1_000_000_000 + Int64(nanos)
}

/// The exit file's fields, nil when it is missing; its format is checked exactly.
private func readExitFile(_ path: String) -> (code: Int, signal: Int, finishedNs: Int64)? {
    guard let text = try? Files.readString(path) else { return nil }
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    guard lines.count == 4, lines[3].isEmpty, lines[0].hasPrefix("exit_code="), lines[1].hasPrefix("signal="),
          lines[2].hasPrefix("finished_ns="), let code = Int(lines[0].dropFirst(10)),
          let signal = Int(lines[1].dropFirst(7)), let finished = Int64(lines[2].dropFirst(12)) else {
        Issue.record("malformed exit file: \(text)")
        return nil
    }
    return (code, signal, finished)
}

private func unixNanos() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// A container that waits until the test creates /go in its rootfs, then exits with `code`.
private func waitForGo(exit code: Int) -> [String] {
    ["sh", "-c", "until [ -e /go ]; do sleep 0.05; done; exit \(code)"]
}

/// The message of a CBerthNet error, for failure messages.
private func netErrorMessage(_ err: berth_net_err) -> String {
    withUnsafeBytes(of: err.message) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
}

/// Polls `condition` every 10 ms for up to `timeoutMillis`; whether it became true.
private func waitUntil(timeoutMillis: Int = 10_000, _ condition: () -> Bool) -> Bool {
    let deadline = Host.monotonicNanos + UInt64(timeoutMillis) * 1_000_000
    while !condition() {
        if Host.monotonicNanos >= deadline { return false }
        usleep(10_000)
    }
    return true
}

private func touch(_ path: String) throws {
    try FileDescriptor.open(path, O_WRONLY | O_CREAT).close()
}

// MARK: - Tests

@Suite("berth-monitor (needs root)", .enabled(if: getuid() == 0, "needs root"), .timeLimit(.minutes(2)))
struct MonitorTests {
    @Test func logsOutputAndWritesExitFile() throws {
        try withFixture { f in
            try f.writeConfig(f.config(["sh", "-c", "echo out; echo err >&2; printf partial; exit 7"]))
            let before = unixNanos()
            let monitor = try Monitor(f)
            defer { monitor.cleanUp() }
            #expect(monitor.containerPid > 0, "ready line \(monitor.ready.debugDescription); \(f.diagnostics)")
            #expect(monitor.wait() == 0, "\(f.diagnostics)")
            let after = unixNanos()

            let records = readLog(f.logPath)
            let stdout = records.filter { $0.stream == "stdout" }.map { "\($0.tag) \($0.content)" }
            let stderr = records.filter { $0.stream == "stderr" }.map { "\($0.tag) \($0.content)" }
            #expect(stdout == ["F out", "P partial"])
            #expect(stderr == ["F err"])
            #expect(records.count == 3)
            for stream in ["stdout", "stderr"] {
                let times = records.filter { $0.stream == stream }.map(\.ns)
                #expect(times == times.sorted(), "\(stream) timestamps go back: \(times)")
            }
            #expect(records.allSatisfy { $0.ns >= before - 1_000_000_000 && $0.ns <= after + 1_000_000_000 })

            let exit = readExitFile(f.exitPath)
            #expect(exit?.code == 7)
            #expect(exit?.signal == 0)
            if let finished = exit?.finishedNs {
                #expect(finished >= before && finished <= after)
                #expect(records.allSatisfy { $0.ns <= finished + 1_000_000_000 })
            }
            #expect(!Files.exists(f.exitPath + ".tmp"))
            var st = stat()
            #expect(stat(f.logPath, &st) == 0 && st.st_mode & 0o777 == 0o640)
        }
    }

    @Test func readyLineNamesTheLiveContainer() throws {
        try withFixture { f in
            // A stale exit file of an earlier run must not outlive the start of this one.
            try Files.writeAtomically(f.exitPath, Array("exit_code=99\nsignal=0\nfinished_ns=1\n".utf8))
            try f.writeConfig(f.config(waitForGo(exit: 0)))
            let monitor = try Monitor(f)
            defer { monitor.cleanUp() }
            let pid = monitor.containerPid
            try #require(pid > 0, "ready line \(monitor.ready.debugDescription); \(f.diagnostics)")
            #expect(startTime(pid) == monitor.containerStart)
            #expect(procStatus(pid, "PPid") == "\(monitor.pid)", "the container's parent is not the monitor")
            #expect(getsid(monitor.pid) == monitor.pid, "the monitor did not start a session of its own")
            #expect(!Files.exists(f.exitPath), "stale exit file left in place")

            // Signals meant for a terminal or a process group do not stop the monitor.
            for sig in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { kill(monitor.pid, sig) }
            usleep(200_000)
            #expect(procStatus(monitor.pid, "State").map { !$0.hasPrefix("Z") } == true, "monitor died of a signal")
            #expect(isAlive(pid, start: monitor.containerStart))

            try touch("\(f.rootfs)/go")
            #expect(monitor.wait() == 0, "\(f.diagnostics)")
            #expect(readExitFile(f.exitPath)?.code == 0)
            #expect(readLog(f.logPath).isEmpty)
        }
    }

    @Test func longLinesAreSplitIntoPartialRecords() throws {
        try withFixture { f in
            // 40000 x's, a line of exactly 16 KiB, an empty line, and output ending without a newline.
            let script = """
                head -c 40000 /dev/zero | tr '\\000' x; echo
                head -c 16384 /dev/zero | tr '\\000' y; echo
                echo; printf end
                """
            try f.writeConfig(f.config(["sh", "-c", script]))
            let monitor = try Monitor(f)
            defer { monitor.cleanUp() }
            #expect(monitor.wait() == 0, "\(f.diagnostics)")
            let records = readLog(f.logPath)
            // Each record as "<tag> <length> <its distinct bytes>", readable when it fails.
            let summary = records.map { "\($0.tag) \($0.content.utf8.count) \(String(Set($0.content).sorted()))" }
            #expect(summary == ["P 16384 x", "P 16384 x", "F 7232 x", "F 16384 y", "F 0 ", "P 3 den"])
            #expect(records.last?.content == "end")
            #expect(records.allSatisfy { $0.stream == "stdout" })
            #expect(readExitFile(f.exitPath)?.code == 0)
        }
    }

    @Test func logRotatesBySize() throws {
        try withFixture { f in
            let script = "i=1; while [ $i -le 2000 ]; do printf 'line %04d padding-padding-padding\\n' $i; i=$((i+1)); done"
            try f.writeConfig(f.config(["sh", "-c", script], maxBytes: 20_000, maxFiles: 2))
            let monitor = try Monitor(f)
            defer { monitor.cleanUp() }
            #expect(monitor.wait() == 0, "\(f.diagnostics)")

            let files = [f.logPath + ".2", f.logPath + ".1", f.logPath]
            #expect(!Files.exists(f.logPath + ".3"))
            var numbers: [Int] = []
            for file in files {
                var st = stat()
                #expect(stat(file, &st) == 0, "\(file) missing")
                #expect(st.st_size <= 20_000, "\(file) has \(st.st_size) bytes")
                // A file is only rotated when the next record would not fit.
                if file != f.logPath { #expect(st.st_size > 20_000 - 100, "\(file) rotated early: \(st.st_size) bytes") }
                for r in readLog(file) {
                    #expect(r.stream == "stdout" && r.tag == "F")
                    numbers.append(Int(r.content.dropFirst(5).prefix(4)) ?? -1)
                }
            }
            // Oldest to newest without a gap, ending with the last line in the live file.
            #expect(numbers.last == 2000)
            #expect(numbers == Array((numbers.first ?? 0)...(numbers.first ?? 0) + numbers.count - 1))
            #expect(readLog(f.logPath).last?.content == "line 2000 padding-padding-padding")
        }
    }

    @Test func rotationWithoutKeptFilesStartsOver() throws {
        try withFixture { f in
            let script = "i=1; while [ $i -le 300 ]; do printf 'line %04d\\n' $i; i=$((i+1)); done"
            try f.writeConfig(f.config(["sh", "-c", script], maxBytes: 2_000, maxFiles: 0))
            let monitor = try Monitor(f)
            defer { monitor.cleanUp() }
            #expect(monitor.wait() == 0, "\(f.diagnostics)")
            #expect(!Files.exists(f.logPath + ".1"))
            let records = readLog(f.logPath)
            #expect(!records.isEmpty && records.count < 300)
            #expect(records.last?.content == "line 0300")
        }
    }

    @Test func failedRotationKeepsTheOutput() throws {
        try withFixture { f in
            // A directory where console.log.2 should go: the second rotation cannot rename .1 over it.
            try Files.makeDirectories(f.logPath + ".2")
            let script = "i=1; while [ $i -le 300 ]; do printf 'line %04d\\n' $i; i=$((i+1)); done"
            try f.writeConfig(f.config(["sh", "-c", script], maxBytes: 2_000, maxFiles: 2))
            let monitor = try Monitor(f)
            defer { monitor.cleanUp() }
            #expect(monitor.wait() == 0, "\(f.diagnostics)")
            // Nothing lost: the lines rotated once into .1, the rest stayed in the live file.
            let numbers = (readLog(f.logPath + ".1") + readLog(f.logPath)).map { Int($0.content.dropFirst(5)) ?? -1 }
            #expect(numbers == Array(1...300))
            let failures = f.diagnostics.split(separator: "\n").filter { $0.contains("rotate log: rename") }
            #expect(failures.count == 1, "\(f.diagnostics)")
            #expect(failures.first?.hasSuffix(": Is a directory") == true, "\(f.diagnostics)")
        }
    }

    @Test func survivesTheDeathOfItsParent() throws {
        // Orphans come to us instead of init (which here reaps nobody), so the
        // monitor can be reaped and its exit status checked.
        try withSubreaper { try survivesTheDeathOfItsParentBody() }
    }

    private func survivesTheDeathOfItsParentBody() throws {
        try withFixture { f in
            try f.writeConfig(f.config(waitForGo(exit: 3)))
            // The parent: a shell in a process group of its own that starts the monitor,
            // drops its own copy of the ready pipe, and waits to be killed.
            let parent = try Monitor(argv: ["/bin/sh", "-c", "\"$0\" \"$1\" & exec 3>&-; exec sleep 100",
                                            monitorPath, f.configPath],
                                     diagPath: f.diagPath, ownProcessGroup: true)
            // The monitor is the parent's one child (a zombie by now if it failed).
            let children = (try? Files.readString("/proc/\(parent.pid)/task/\(parent.pid)/children")) ?? ""
            let monitorPid = Int32(children.split(separator: " ").first ?? "") ?? 0
            let monitorStart = startTime(monitorPid) ?? 0
            var monitorReaped = false
            defer {
                // Pass or fail: the container, then the parent's group, then the monitor,
                // which is ours by then (subreaper) and is reaped here, zombie or not.
                parent.killContainer()
                if !parent.reaped {
                    kill(-parent.pid, SIGKILL)
                    _ = parent.wait(timeoutMillis: 5_000)
                }
                if monitorPid > 0 && !monitorReaped && waitExit(monitorPid, timeoutMillis: 5_000) == nil
                    && startTime(monitorPid) == monitorStart {
                    Issue.record("monitor \(monitorPid) still running after its container was killed; killing it")
                    kill(monitorPid, SIGKILL)
                    _ = waitExit(monitorPid, timeoutMillis: 5_000)
                }
            }
            let pid = parent.containerPid
            try #require(pid > 0, "ready line \(parent.ready.debugDescription); \(f.diagnostics)")
            try #require(monitorPid > 0, "no child of the parent in \(children.debugDescription)")
            #expect(procStatus(pid, "PPid") == "\(monitorPid)", "the container's parent is not the monitor")

            // The whole process group of the parent dies; the monitor is not in it.
            #expect(kill(-parent.pid, SIGKILL) == 0)
            #expect(parent.wait(timeoutMillis: 5_000) == 128 + SIGKILL)
            usleep(100_000)
            #expect(isAlive(monitorPid, start: monitorStart), "the monitor died with its parent")
            #expect(procStatus(monitorPid, "PPid") == "\(getpid())", "the orphaned monitor was not adopted")
            #expect(isAlive(pid, start: parent.containerStart), "the container died with the monitor's parent")

            try touch("\(f.rootfs)/go")
            let code = waitExit(monitorPid, timeoutMillis: 20_000)
            monitorReaped = code != nil
            #expect(code == 0, "\(f.diagnostics)")
            #expect(readExitFile(f.exitPath)?.code == 3)
        }
    }

    @Test func killedContainerReportsTheSignal() throws {
        try withFixture { f in
            try f.writeConfig(f.config(["sh", "-c", "echo started; exec sleep 100"]))
            let monitor = try Monitor(f)
            defer { monitor.cleanUp() }
            try #require(monitor.containerPid > 0, "ready line \(monitor.ready.debugDescription); \(f.diagnostics)")
            // Output is in the log while the container runs, not only once it ends.
            #expect(waitUntil { ((try? Files.readString(f.logPath)) ?? "").hasSuffix(" stdout F started\n") },
                    "\"started\" did not reach the log of the running container")
            monitor.killContainer()
            #expect(monitor.wait() == 0, "\(f.diagnostics)")
            let exit = readExitFile(f.exitPath)
            #expect(exit?.code == 137)
            #expect(exit?.signal == 9)
            #expect(readLog(f.logPath).map(\.content) == ["started"])
        }
    }

    @Test func pauseModeStartsPid1OfANewPidNamespace() throws {
        try withFixture { f in
            let pause = try Monitor(argv: [monitorPath, "--pause"], diagPath: f.diagPath)
            defer { pause.cleanUp() }
            let pid = pause.containerPid
            try #require(pid > 0, "ready line \(pause.ready.debugDescription); \(f.diagnostics)")
            // The container's format: the pause process's pid (as we see it) and start time.
            #expect(pause.ready == "ok \(pid) \(pause.containerStart)\n")
            #expect(startTime(pid) == pause.containerStart)
            #expect(procStatus(pid, "PPid") == "\(pause.pid)", "the pause process's parent is not the monitor")
            #expect(getsid(pause.pid) == pause.pid, "the monitor did not start a session of its own")

            // pid 1 of a pid namespace of its own, named berth-pause; every other namespace
            // is the monitor's (pause mode makes a pid namespace only).
            let nspid = procStatusValues(pid, "NSpid")
            #expect(nspid == ["\(pid)", "1"], "NSpid \(nspid)")
            #expect((try? Files.readString("/proc/\(pid)/comm")) == "berth-pause\n")
            #expect(readLink("/proc/\(pid)/ns/pid") != readLink("/proc/self/ns/pid"))
            for ns in ["mnt", "net", "ipc", "uts"] {
                #expect(readLink("/proc/\(pid)/ns/\(ns)") == readLink("/proc/\(pause.pid)/ns/\(ns)"), "\(ns)")
            }
            // It holds /dev/null on 0-2 and nothing else: not the ready pipe (whose EOF we
            // have seen), not the monitor's diagnostics file.
            let fds = ((try? Files.list("/proc/\(pid)/fd")) ?? []).sorted()
            #expect(fds == ["0", "1", "2"], "fds \(fds)")
            #expect(fds.allSatisfy { readLink("/proc/\(pid)/fd/\($0)") == "/dev/null" })

            // Signals it has no handler for do not reach pid 1 from outside its namespace;
            // neither those nor SIGTERM/SIGINT/SIGHUP aimed at the monitor end anything.
            for sig in [SIGHUP, SIGUSR1, SIGPIPE] { kill(pid, sig) }
            for sig in [SIGTERM, SIGINT, SIGHUP] { kill(pause.pid, sig) }
            usleep(200_000)
            #expect(isAlive(pid, start: pause.containerStart), "the pause process died of a signal")
            #expect(procStatus(pause.pid, "State").map { !$0.hasPrefix("Z") } == true, "the monitor died of a signal")

            // SIGTERM ends the pause process with 0, and then its monitor, also with 0.
            #expect(kill(pid, SIGTERM) == 0)
            #expect(pause.wait() == 0, "\(f.diagnostics)")
            #expect(startTime(pid) == nil, "the pause process was not reaped")
            #expect(f.diagnostics.contains("berth-monitor pause: pause process exited: exit_code=0"), "\(f.diagnostics)")
        }
    }

    @Test func podContainerJoinsThePausePidNamespaceAndPinnedIpcUts() throws {
        try withFixture { f in
            // The pod: a pause process, started the way the agent does, and pinned IPC and
            // UTS namespaces named "podhost".
            let pause = try BerthRuntime.Monitor.startPause(binary: monitorPath, diagnostics: "\(f.base)/pause.log")
            var pauseReaped = false
            let ipc = "\(f.base)/ipc", uts = "\(f.base)/uts"
            var container: Monitor?
            defer {
                // Pass or fail: the pod's pid 1 first (the kernel then kills everything in
                // its namespace, the container too), then both monitors, then the pins.
                if !pauseReaped {
                    let pidfd = berth_pidfd_open(pause.pid)
                    if pidfd >= 0 {
                        if startTime(pause.pid) == pause.startTime { _ = berth_pidfd_send_signal(pidfd, SIGKILL) }
                        close(pidfd)
                    }
                }
                container?.cleanUp()
                if !pauseReaped && waitExit(pause.monitorPid, timeoutMillis: 5_000) == nil {
                    Issue.record("pause monitor \(pause.monitorPid) still running; killing it")
                    kill(pause.monitorPid, SIGKILL)
                    _ = waitExit(pause.monitorPid, timeoutMillis: 5_000)
                }
                var e = berth_net_err()
                _ = berth_ns_release(ipc, &e)
                _ = berth_ns_release(uts, &e)
            }
            #expect(pause.monitorStartTime == startTime(pause.monitorPid))
            #expect(startTime(pause.pid) == pause.startTime)
            #expect(procStatusValues(pause.pid, "NSpid").last == "1")
            var err = berth_net_err()
            try #require(berth_ns_create_ipc_uts(ipc, uts, "podhost", &err) == 0, "\(netErrorMessage(err))")

            // The container: the pod's namespaces in CONFIG (written by the agent's code),
            // its own host name "box" (not applied: a joined UTS namespace keeps its name).
            // A background sleep outlives the container's init: orphaned inside the pod, it
            // must be reaped by the pause process.
            let script = """
                hostname; readlink /proc/self/ns/ipc; readlink /proc/self/ns/uts; cat /proc/1/comm; echo $$
                sleep 0.3 &
                """
            let paths = BerthRuntime.Monitor.Paths(runDir: f.base, stateDir: "\(f.base)/state")
            let config = BerthRuntime.Monitor.config(
                id: String(repeating: "ab", count: 32), rootfs: f.rootfs, hostname: "box", workingDir: "/", uid: 0, gid: 0,
                args: ["sh", "-c", script], env: ["PATH=/bin"], paths: paths, logMaxBytes: 0, logMaxFiles: 1,
                ipcns: ipc, utsns: uts, pidns: "/proc/\(pause.pid)/ns/pid")
            try Files.writeAtomically(f.configPath, config)
            container = try Monitor(f)
            let initPid = container?.containerPid ?? 0
            try #require(initPid > 0, "ready line \(container?.ready.debugDescription ?? ""); \(f.diagnostics)")
            // Seen from here: inside the pause process's pid namespace, and not its pid 1.
            let nspid = procStatusValues(initPid, "NSpid")
            #expect(nspid.count == 2 && nspid.first == "\(initPid)" && nspid.last != "1", "NSpid \(nspid)")
            #expect(readLink("/proc/\(initPid)/ns/pid") == readLink("/proc/\(pause.pid)/ns/pid"))
            #expect(procStatus(initPid, "PPid") == "\(container?.pid ?? 0)", "the container's parent is not its monitor")
            // This process's own children still land in its own pid namespace: the monitor
            // went back to its own after the clone (spawn.c, berth_spawn_start step 4).
            #expect(readLink("/proc/\(container?.pid ?? 0)/ns/pid_for_children") == readLink("/proc/self/ns/pid"))

            #expect(container?.wait() == 0, "\(f.diagnostics)")
            let lines = readLog(f.logPath).map(\.content)
            #expect(lines.count == 5, "\(lines)")
            if lines.count == 5 {
                #expect(lines[0] == "podhost")
                #expect(lines[1] == nsName("ipc", ipc), "container \(lines[1]), pin \(nsName("ipc", ipc) ?? "?")")
                #expect(lines[2] == nsName("uts", uts), "container \(lines[2]), pin \(nsName("uts", uts) ?? "?")")
                #expect(lines[3] == "berth-pause", "the container does not see the pod's pid 1")
                #expect(lines[4] != "1" && Int(lines[4]) != nil, "the container's initPid is pid \(lines[4])")
            }
            #expect(readExitFile(f.exitPath)?.code == 0)
            // The orphaned sleep has ended and was reaped: the pause process has no child,
            // not even a zombie.
            #expect(waitUntil(timeoutMillis: 5_000) {
                ((try? Files.readString("/proc/\(pause.pid)/task/\(pause.pid)/children")) ?? "x").isEmpty
            }, "the pause process did not reap the container's orphan")

            // The end of the pod: SIGTERM to the pause process, then its monitor exits 0.
            #expect(kill(pause.pid, SIGTERM) == 0)
            let code = waitExit(pause.monitorPid, timeoutMillis: 10_000)
            pauseReaped = code != nil
            #expect(code == 0, "\((try? Files.readString("\(f.base)/pause.log")) ?? "")")
        }
    }

    @Test func commandNotFound() throws {
        try withFixture { f in
            try f.writeConfig(f.config(["nosuchcmd", "arg"]))
            let monitor = try Monitor(f)
            defer { monitor.cleanUp() }
            #expect(monitor.ready == "error exec\t2\texec \"nosuchcmd\": executable file not found in $PATH\n")
            #expect(monitor.wait() == 1)
            #expect(!Files.exists(f.exitPath))
            #expect(f.diagnostics.contains("berth-monitor abababab"), "\(f.diagnostics)")
        }
    }

    @Test func missingConfig() throws {
        try withFixture { f in
            let monitor = try Monitor(f)
            defer { monitor.cleanUp() }
            #expect(monitor.ready == "error config\t2\topen \(f.configPath)\n")
            #expect(monitor.wait() == 1)
        }
    }

    @Test func unusablePathsAreReportedBeforeTheStart() throws {
        try withFixture { f in
            let missingDir = "\(f.base)/nowhere"
            var pairs = f.config(["true"]).map { $0.0 == "log" ? ($0.0, "\(missingDir)/console.log") : $0 }
            try f.writeConfig(pairs)
            let badLog = try Monitor(f)
            defer { badLog.cleanUp() }
            #expect(badLog.ready == "error open\t2\t\(missingDir)/console.log\n")
            #expect(badLog.wait() == 1)

            pairs = f.config(["true"]).map { $0.0 == "exit" ? ($0.0, "\(missingDir)/exit") : $0 }
            try f.writeConfig(pairs)
            let badExit = try Monitor(f)
            defer { badExit.cleanUp() }
            #expect(badExit.ready == "error exit file\t2\t\(missingDir)/exit\n")
            #expect(badExit.wait() == 1)

            // A namespace to join is opened by the monitor, before the clone.
            pairs = f.config(["true"]) + [("pidns", "\(missingDir)/pid")]
            try f.writeConfig(pairs)
            let badPidns = try Monitor(f)
            defer { badPidns.cleanUp() }
            #expect(badPidns.ready == "error open\t2\t\(missingDir)/pid\n")
            #expect(badPidns.wait() == 1)
        }
    }

    @Test(arguments: BadConfig.allCases)
    func badConfigIsRefused(_ bad: BadConfig) throws {
        try withFixture { f in
            let (bytes, detail) = bad.make(f)
            try Files.writeAtomically(f.configPath, bytes)
            let monitor = try Monitor(f)
            defer { monitor.cleanUp() }
            #expect(monitor.ready == "error config\t22\t\(detail)\n")
            #expect(monitor.wait() == 1)
            #expect(!Files.exists(f.exitPath) && !Files.exists(f.logPath))
            #expect(f.diagnostics.hasPrefix("berth-monitor: config: \(detail)"), "\(f.diagnostics)")
        }
    }

    @Test func memoryStaysSmall() throws {
        try withFixture { f in
            try f.writeConfig(f.config(["sleep", "5"]))
            let monitor = try Monitor(f)
            defer { monitor.cleanUp() }
            try #require(monitor.containerPid > 0, "ready line \(monitor.ready.debugDescription); \(f.diagnostics)")
            usleep(200_000)
            let rss = Int(procStatus(monitor.pid, "VmRSS") ?? "") ?? -1
            let anon = procStatus(monitor.pid, "RssAnon") ?? "?"
            let file = procStatus(monitor.pid, "RssFile") ?? "?"
            print("berth-monitor VmRSS: \(rss) kB (RssAnon \(anon) kB, RssFile \(file) kB)")
            #expect(rss > 0 && rss <= 1024, "VmRSS \(rss) kB is over the 1 MiB budget")
            monitor.killContainer()
            #expect(monitor.wait() == 0)
            #expect(readExitFile(f.exitPath)?.code == 137)
        }
    }
}

// MARK: - Hardening

/// OCI's default masked and read-only paths (what docker and podman use).
private let ociMaskedPaths = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                              "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"]
private let ociReadonlyPaths = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
/// docker's default capabilities: CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, FSETID 4, KILL 5,
/// SETGID 6, SETUID 7, SETPCAP 8, NET_BIND_SERVICE 10, NET_RAW 13, SYS_CHROOT 18, MKNOD 27,
/// AUDIT_WRITE 29, SETFCAP 31.
private let dockerCapMask: UInt64 = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31].reduce(0) { $0 | (1 << $1) }

/// A container's run: its ready line, the monitor's exit code, and its stdout and stderr
/// lines (from the log).
private struct Run {
    var ready: String
    var code: Int32?
    var stdout: [String]
    var stderr: [String]
}

/// Runs `sh -c script` as `uid` under `security` and waits for it.
private func run(_ f: Fixture, _ script: String, uid: UInt32 = 0, _ security: MonitorSecurity) throws -> Run {
    let pairs = f.config(["sh", "-c", script]).map { $0.0 == "uid" || $0.0 == "gid" ? ($0.0, String(uid)) : $0 }
    try f.writeConfig(pairs + security.pairs)
    // A fixture may run several containers: each one's log starts empty.
    if Files.exists(f.logPath) { try sys("unlink") { unlink(f.logPath) } }
    let monitor = try Monitor(f)
    defer { monitor.cleanUp() }
    let code = monitor.wait()
    let records = readLog(f.logPath)
    return Run(ready: monitor.ready, code: code, stdout: records.filter { $0.stream == "stdout" }.map(\.content),
               stderr: records.filter { $0.stream == "stderr" }.map(\.content))
}

/// A hardened container with every capability of docker's default set.
private func hardened(_ change: (inout MonitorSecurity) -> Void = { _ in }) -> MonitorSecurity {
    var s = MonitorSecurity()
    s.harden = true
    s.capMask = dockerCapMask
    change(&s)
    return s
}

@Suite("berth-monitor hardening (needs root)", .enabled(if: getuid() == 0, "needs root"), .timeLimit(.minutes(2)))
struct MonitorHardeningTests {
    @Test func maskedAndReadonlyPaths() throws {
        try withFixture { f in
            let security = hardened { $0.maskedPaths = ociMaskedPaths; $0.readonlyPaths = ociReadonlyPaths }
            let r = try run(f, """
                cat /proc/kcore | wc -c
                if echo 1 > /proc/sys/kernel/printk; then echo printk-written; else echo printk-refused; fi
                ls -A /sys/firmware | wc -l
                """, security)
            #expect(r.ready.hasPrefix("ok "), "\(r.ready) \(f.diagnostics)")
            #expect(r.stdout == ["0", "printk-refused", "0"], "\(r.stdout) \(r.stderr)")
            #expect(r.stderr.contains { $0.contains("Read-only file system") }, "\(r.stderr)")
        }
    }

    @Test func maskedPathMustBeOnProcfs() throws {
        try withFixture { f in
            // "/proc/../bin" resolves (inside the root) to the image's /bin, which is not
            // procfs: refused rather than masked (the runc CVE-2019-16884 class).
            let r = try run(f, "true", hardened { $0.maskedPaths = ["/proc/../bin"] })
            #expect(r.ready == "error mask\t\(EXDEV)\t/proc/../bin\n", "\(f.diagnostics)")
            let ro = try run(f, "true", hardened { $0.readonlyPaths = ["/sys/../bin"] })
            #expect(ro.ready == "error readonly\t\(EXDEV)\t/sys/../bin\n", "\(f.diagnostics)")
        }
    }

    @Test func readonlyRootfs() throws {
        try withFixture { f in
            try Files.makeDirectories("\(f.rootfs)/tmp")
            let r = try run(f, """
                touch /x 2>/dev/null && echo x-written || echo x-refused
                touch /tmp/y 2>/dev/null && echo tmp-written || echo tmp-refused
                touch /dev/shm/z && echo shm-written
                """, hardened { $0.readonlyRootfs = true })
            #expect(r.ready.hasPrefix("ok "), "\(r.ready) \(f.diagnostics)")
            #expect(r.stdout == ["x-refused", "tmp-refused", "shm-written"], "\(r.stdout) \(r.stderr)")
            #expect(!Files.exists("\(f.rootfs)/x") && !Files.exists("\(f.rootfs)/tmp/y"))
        }
    }

    @Test func extraMounts() throws {
        try withFixture { f in
            let host = "\(f.base)/hostdata"
            try Files.makeDirectories(host)
            // Symlinks of the image that point out of it: the targets must land inside it.
            let probe = "berth-escape-\(getpid())-\(Host.monotonicNanos)"
            try Files.makeDirectories("\(f.rootfs)/tmp")
            try Files.makeDirectories("\(f.rootfs)/etc")
            try sys("symlink") { symlink("/../../../tmp", "\(f.rootfs)/link") }
            try sys("symlink") { symlink("/etc", "\(f.rootfs)/etclink") }
            let security = hardened {
                $0.mounts = [
                    .init(type: "bind", source: host, target: "/data", options: "rw"),
                    .init(type: "bind", source: host, target: "/ro", options: "ro"),
                    .init(type: "tmpfs", source: "tmpfs", target: "/scratch", options: "size=1m"),
                    .init(type: "tmpfs", source: "tmpfs", target: "/link/\(probe)", options: "size=64k"),
                    .init(type: "tmpfs", source: "tmpfs", target: "/etclink/\(probe)", options: "ro,size=64k"),
                ]
            }
            let r = try run(f, """
                echo hi > /data/f && echo data-written
                (echo no > /ro/g) 2>/dev/null && echo ro-written || echo ro-refused
                grep ' /scratch ' /proc/mounts
                echo s > /link/\(probe)/f && echo link-written
                grep -c " /etc/\(probe) tmpfs ro," /proc/mounts
                """, security)
            #expect(r.ready.hasPrefix("ok "), "\(r.ready) \(f.diagnostics)")
            try #require(r.stdout.count == 5, "\(r.stdout) \(r.stderr)")
            #expect(r.stdout[0] == "data-written" && r.stdout[1] == "ro-refused")
            #expect(r.stdout[2].hasPrefix("tmpfs /scratch tmpfs rw,") && r.stdout[2].contains("size=1024k"), "\(r.stdout[2])")
            #expect(r.stdout[3] == "link-written" && r.stdout[4] == "1")
            #expect((try? Files.readString("\(host)/f")) == "hi\n")
            #expect(!Files.exists("\(host)/g"))
            #expect(!Files.exists("/tmp/\(probe)") && !Files.exists("/etc/\(probe)"), "a mount target escaped the root")
            #expect(Files.exists("\(f.rootfs)/tmp/\(probe)") && Files.exists("\(f.rootfs)/etc/\(probe)"))

            // A source that does not exist: step "mount", ENOENT, the source.
            let missing = try run(f, "true", hardened {
                $0.mounts = [.init(type: "bind", source: "\(f.base)/nope", target: "/nope", options: "rw")]
            })
            #expect(missing.ready == "error mount\t\(ENOENT)\t\(f.base)/nope\n", "\(f.diagnostics)")
        }
    }

    @Test func capabilities() throws {
        try withFixture { f in
            let root = try run(f, "grep Cap /proc/self/status", hardened())
            #expect(root.ready.hasPrefix("ok "), "\(root.ready) \(f.diagnostics)")
            let mask = "00000000a80425fb"
            #expect(dockerCapMask == 0xa80425fb)
            for name in ["CapBnd", "CapEff", "CapPrm"] {
                #expect(root.stdout.contains("\(name):\t\(mask)"), "\(root.stdout)")
            }
            #expect(root.stdout.contains("CapInh:\t0000000000000000"), "\(root.stdout)")
            #expect(root.stdout.contains("CapAmb:\t0000000000000000"), "\(root.stdout)")

            let user = try run(f, "grep Cap /proc/self/status", uid: 1000, hardened())
            #expect(user.stdout.contains("CapBnd:\t\(mask)"), "\(user.stdout)")
            #expect(user.stdout.contains("CapEff:\t0000000000000000"), "\(user.stdout)")
            #expect(user.stdout.contains("CapPrm:\t0000000000000000"), "\(user.stdout)")
        }
    }

    @Test func noNewPrivs() throws {
        try withFixture { f in
            let on = try run(f, "grep NoNewPrivs /proc/self/status", hardened { $0.noNewPrivs = true })
            #expect(on.stdout == ["NoNewPrivs:\t1"], "\(on.ready) \(f.diagnostics)")
            let off = try run(f, "grep NoNewPrivs /proc/self/status", hardened())
            #expect(off.stdout == ["NoNewPrivs:\t0"], "\(off.ready) \(f.diagnostics)")
        }
    }

    #if arch(x86_64)
    /// mkdir (83) and mkdirat (258) fail with EPERM on x86_64; everything else is allowed.
    private static let denyMkdir: [UInt8] = {
        func insn(_ code: UInt16, _ jt: UInt8, _ jf: UInt8, _ k: UInt32) -> [UInt8] {
            [UInt8(code & 0xff), UInt8(code >> 8), jt, jf] + (0..<4).map { UInt8((k >> (8 * $0)) & 0xff) }
        }
        let ldAbs: UInt16 = 0x20, jeq: UInt16 = 0x15, ret: UInt16 = 0x06
        return insn(ldAbs, 0, 0, 4)                 // 0: A = arch
            + insn(jeq, 0, 3, 0xc000_003e)         // 1: AUDIT_ARCH_X86_64, else allow
            + insn(ldAbs, 0, 0, 0)                 // 2: A = nr
            + insn(jeq, 2, 0, 83)                  // 3: mkdir → EPERM
            + insn(jeq, 1, 0, 258)                 // 4: mkdirat → EPERM
            + insn(ret, 0, 0, 0x7fff_0000)         // 5: SECCOMP_RET_ALLOW
            + insn(ret, 0, 0, 0x0005_0000 | 1)     // 6: SECCOMP_RET_ERRNO | EPERM
    }()

    @Test(arguments: [false, true])
    func seccomp(noNewPrivs: Bool) throws {
        try withFixture { f in
            let filter = "\(f.base)/seccomp.bpf"
            try Files.writeAtomically(filter, Self.denyMkdir)
            let r = try run(f, "mkdir /x; grep Seccomp: /proc/self/status", hardened {
                $0.seccompFile = filter
                $0.noNewPrivs = noNewPrivs
            })
            #expect(r.ready.hasPrefix("ok "), "\(r.ready) \(f.diagnostics)")
            #expect(r.stdout == ["Seccomp:\t2"], "\(r.stdout)")
            #expect(r.stderr.contains { $0.contains("Operation not permitted") }, "\(r.stderr)")
            #expect(!Files.exists("\(f.rootfs)/x"))
        }
    }
    #endif

    @Test func plainWorkdirPassesTheCheck() throws {
        try withFixture { f in
            let pairs = f.config(["sh", "-c", "pwd"]).map { $0.0 == "cwd" ? ($0.0, "/work/dir") : $0 }
            try f.writeConfig(pairs + hardened().pairs)
            let monitor = try Monitor(f)
            defer { monitor.cleanUp() }
            #expect(monitor.wait() == 0, "\(monitor.ready) \(f.diagnostics)")
            #expect(readLog(f.logPath).map(\.content) == ["/work/dir"])
        }
    }
}

/// CONFIG files the monitor must refuse, each with the detail of its error line.
enum BadConfig: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case unknownKey, missingKey, repeatedKey, noCommand, keyWithoutValue, unterminated, uidNotANumber,
         uidMinusOne, negativeGid, maxBytesNotDecimal, tooManyFiles, relativeLog, shortId, envWithoutEquals,
         relativeIpcns, repeatedPidns, seccompOddSize, mountWithoutOptions, mountOutOfOrder, hardeningWithoutHarden,
         unknownMountType, bindOptions

    var testDescription: String { rawValue }

    fileprivate func make(_ f: Fixture) -> (bytes: [UInt8], detail: String) {
        var pairs = f.config(["true"])
        func set(_ key: String, _ value: String) {
            pairs = pairs.map { $0.0 == key ? (key, value) : $0 }
        }
        var detail: String
        var tail: [UInt8] = []
        switch self {
        case .unknownKey:
            pairs.append(("memory", "1g"))
            detail = "unknown key \"memory\""
        case .missingKey:
            pairs.removeAll { $0.0 == "exit" }
            detail = "missing key \"exit\""
        case .repeatedKey:
            pairs.append(("uid", "0"))
            detail = "key \"uid\" given twice"
        case .noCommand:
            pairs.removeAll { $0.0 == "arg" }
            detail = "missing key \"arg\" (the command)"
        case .keyWithoutValue:
            tail = Array("env".utf8) + [0]
            detail = "key \"env\" has no value"
        case .unterminated:
            tail = Array("env".utf8)
            detail = "the last string is not NUL-terminated"
        case .uidNotANumber:
            set("uid", "12x")
            detail = "uid \"12x\" is not a decimal number below 4294967295"
        case .uidMinusOne:
            set("uid", "4294967295")
            detail = "uid \"4294967295\" is not a decimal number below 4294967295"
        case .negativeGid:
            set("gid", "-1")
            detail = "gid \"-1\" is not a decimal number below 4294967295"
        case .maxBytesNotDecimal:
            set("log-max-bytes", "1e6")
            detail = "log-max-bytes \"1e6\" is not a decimal number"
        case .tooManyFiles:
            set("log-max-files", "1001")
            detail = "log-max-files \"1001\" is not a decimal number up to 1000"
        case .relativeLog:
            set("log", "console.log")
            detail = "log: \"console.log\" is not an absolute path"
        case .shortId:
            set("id", "abc")
            detail = "id \"abc\" is not 64 lowercase hex digits"
        case .envWithoutEquals:
            pairs.append(("env", "PATH"))
            detail = "env \"PATH\" is not KEY=VALUE"
        case .relativeIpcns:
            pairs.append(("ipcns", "ipc"))
            detail = "ipcns: \"ipc\" is not an absolute path"
        case .repeatedPidns:
            pairs += [("pidns", "/proc/1/ns/pid"), ("pidns", "/proc/1/ns/pid")]
            detail = "key \"pidns\" given twice"
        case .seccompOddSize:
            let path = "\(f.base)/seccomp.bpf"
            try? Files.writeAtomically(path, [UInt8](repeating: 0, count: 7))
            pairs += [("harden", "1"), ("seccomp", path)]
            detail = "seccomp: \(path) is not a filter of 1 to 4096 instructions of 8 bytes (7 bytes)"
        case .mountWithoutOptions:
            pairs += [("harden", "1"), ("mount-type", "bind"), ("mount-source", "/tmp"), ("mount-target", "/t")]
            detail = "the last mount has no mount-options (mounts are groups of mount-type, mount-source, mount-target, mount-options)"
        case .mountOutOfOrder:
            pairs += [("harden", "1"), ("mount-type", "bind"), ("mount-target", "/t")]
            detail = "mount-target where mount-source was expected (mounts are groups of mount-type, mount-source, mount-target, mount-options)"
        case .hardeningWithoutHarden:
            pairs.append(("cap-mask", "1"))
            detail = "key \"cap-mask\" needs \"harden\" 1"
        case .unknownMountType:
            pairs += [("harden", "1"), ("mount-type", "volume")]
            detail = "mount-type \"volume\" is neither \"bind\" nor \"tmpfs\""
        case .bindOptions:
            pairs += [("harden", "1"), ("mount-type", "bind"), ("mount-source", "/tmp"), ("mount-target", "/t"),
                      ("mount-options", "size=1m")]
            detail = "mount-options of a bind: \"size=1m\" is neither \"ro\" nor \"rw\""
        }
        return (pairs.flatMap { Array($0.0.utf8) + [0] + Array($0.1.utf8) + [0] } + tail, detail)
    }
}
