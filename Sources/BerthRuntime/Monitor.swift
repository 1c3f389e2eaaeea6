#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import CBerthShim

/// A container's hardening, as the monitor's CONFIG keys (docs/monitor.md, "Hardening";
/// `struct berth_spawn_config` in berth_spawn.h says what each does in the child).
struct MonitorSecurity: Sendable {
    /// `harden`: nothing below applies without it (and the monitor refuses the keys).
    var harden = false
    /// `cap-mask`: capabilities kept, bit n = capability n.
    var capMask: UInt64 = 0
    /// `no-new-privs`.
    var noNewPrivs = false
    /// `seccomp`: absolute path of a file holding a compiled `struct sock_filter` array.
    var seccompFile: String? = nil
    /// `masked-path`, `readonly-path`: absolute paths inside the container (≤ 16 each).
    var maskedPaths: [String] = []
    var readonlyPaths: [String] = []
    /// `readonly-rootfs`.
    var readonlyRootfs = false
    /// `mount-type`, `mount-source`, `mount-target`, `mount-options` (≤ 16 groups).
    var mounts: [Mount] = []

    /// One extra mount. `type` "bind" (`source` a host path, `options` "ro" or "rw") or
    /// "tmpfs" (`source` "tmpfs", `options` tmpfs data such as "size=64m", optionally
    /// prefixed "ro,").
    struct Mount: Sendable { var type: String; var source: String; var target: String; var options: String }

    /// The CONFIG pairs, in the order the monitor expects (a mount's four keys together).
    var pairs: [(String, String)] {
        var pairs: [(String, String)] = []
        if harden { pairs.append(("harden", "1")) }
        if capMask != 0 { pairs.append(("cap-mask", String(capMask))) }
        if noNewPrivs { pairs.append(("no-new-privs", "1")) }
        if readonlyRootfs { pairs.append(("readonly-rootfs", "1")) }
        if let seccompFile { pairs.append(("seccomp", seccompFile)) }
        pairs += maskedPaths.map { ("masked-path", $0) }
        pairs += readonlyPaths.map { ("readonly-path", $0) }
        for m in mounts {
            pairs += [("mount-type", m.type), ("mount-source", m.source), ("mount-target", m.target),
                      ("mount-options", m.options)]
        }
        return pairs
    }
}

/// The agent's side of berth-monitor (docs/monitor.md): writing its CONFIG, starting
/// it, reading its ready line and its exit file.
enum Monitor {
    /// What a monitor reported on its ready pipe: the monitor, and the process it watches
    /// (a container's init, or a pod's pause process).
    struct Started: Sendable {
        var monitorPid: Int32
        var monitorStartTime: UInt64
        var pid: Int32
        var startTime: UInt64
    }

    /// Where the files of one container's monitor live.
    struct Paths: Sendable {
        /// `<run-dir>/containers/<id>`: CONFIG and the monitor's diagnostics.
        var runDir: String
        /// `<state-dir>/containers/<id>`: log and exit file.
        var stateDir: String
        var config: String { runDir + "/monitor.conf" }
        var diagnostics: String { runDir + "/monitor.log" }
        var log: String { stateDir + "/console.log" }
        var exitFile: String { stateDir + "/exit" }
    }

    /// The CONFIG file: NUL-terminated key, value, key, value…
    /// `netns`: nil for a network namespace of the container's own, "host", or the path of
    /// one to join. `ipcns`, `utsns`, `pidns`: nil for a namespace of the container's own,
    /// or the path of a pod's to join (a joined UTS namespace keeps its host name, so
    /// `hostname` is then not applied; a pid namespace is `/proc/<pause pid>/ns/pid` or a
    /// pin of it). `binds`: (host file, path inside the container). `security`: the
    /// hardening keys (docs/monitor.md, "Hardening"); written only when set, and the
    /// monitor refuses any of them without `harden`.
    static func config(id: String, rootfs: String, hostname: String, workingDir: String, uid: UInt32, gid: UInt32,
                       args: [String], env: [String], paths: Paths, logMaxBytes: UInt64, logMaxFiles: Int,
                       netns: String? = nil, ipcns: String? = nil, utsns: String? = nil, pidns: String? = nil,
                       binds: [(source: String, target: String)] = [], cgroupProcs: [String] = [],
                       security: MonitorSecurity = MonitorSecurity()) -> [UInt8] {
        var pairs: [(String, String)] = [("id", id), ("rootfs", rootfs), ("hostname", hostname), ("cwd", workingDir),
                                         ("uid", String(uid)), ("gid", String(gid))]
        pairs += args.map { ("arg", $0) }
        pairs += env.map { ("env", $0) }
        if let netns { pairs.append(("netns", netns)) }
        if let ipcns { pairs.append(("ipcns", ipcns)) }
        if let utsns { pairs.append(("utsns", utsns)) }
        if let pidns { pairs.append(("pidns", pidns)) }
        pairs += cgroupProcs.map { ("cgroup-procs", $0) }
        for b in binds { pairs += [("bind-source", b.source), ("bind-target", b.target)] }
        pairs += [("log", paths.log), ("log-max-bytes", String(logMaxBytes)), ("log-max-files", String(logMaxFiles)),
                  ("exit", paths.exitFile)]
        pairs += security.pairs
        var out: [UInt8] = []
        for (k, v) in pairs {
            out += Array(k.utf8) + [0] + Array(v.utf8) + [0]
        }
        return out
    }

    /// Starts `binary CONFIG` detached from the agent's terminal and signal state, and
    /// waits (at most `timeoutSeconds`) for its ready line. The monitor is the agent's
    /// child until the agent exits; it never depends on that.
    static func start(binary: String, paths: Paths, timeoutSeconds: Int32 = 30) throws -> Started {
        try launch([binary, paths.config], diagnostics: paths.diagnostics, timeoutSeconds: timeoutSeconds,
                   what: "the container")
    }

    /// Starts `binary --pause` (docs/monitor.md, "Pause mode") like `start`: a monitor
    /// whose child is pid 1 of a new pid namespace, a pod's pause process. `Started.pid`
    /// and `startTime` are the pause process's; the pod's containers join its namespace
    /// through `/proc/<pid>/ns/pid` (CONFIG `pidns`), and SIGTERM to it ends the pod's
    /// pid namespace and then the monitor. `diagnostics` receives the monitor's stdout
    /// and stderr (appended).
    static func startPause(binary: String, diagnostics: String, timeoutSeconds: Int32 = 30) throws -> Started {
        try launch([binary, "--pause"], diagnostics: diagnostics, timeoutSeconds: timeoutSeconds,
                   what: "the pause process")
    }

    /// posix_spawn of the monitor `argv` (fd 3 the ready pipe, 1 and 2 `diagnostics`) and
    /// its ready line, the same in both modes. `what` names its process in errors.
    private static func launch(_ argv: [String], diagnostics: String, timeoutSeconds: Int32,
                               what: String) throws -> Started {
        let binary = argv[0]
        let ready = try FileDescriptor.pipe()
        defer { ready.read.close() }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, diagnostics, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // dup2 onto 3 clears close-on-exec there; every other descriptor of the agent is
        // close-on-exec, so the monitor inherits nothing else.
        posix_spawn_file_actions_adddup2(&actions, ready.write.rawValue, 3)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // The agent blocks SIGTERM/SIGINT (it sigwaits for them) and ignores SIGPIPE;
        // the monitor starts with an empty mask and default dispositions.
        var empty = sigset_t(), all = sigset_t()
        sigemptyset(&empty)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        var cEnv: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), nil]
        defer { for p in cArgs + cEnv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, binary, &actions, &attr, &cArgs, &cEnv)
        ready.write.close()
        if rc != 0 { throw Errno(rawValue: rc).error("start monitor \(binary)") }
        let monitorStart = ProcessInfo.startTime(pid) ?? 0

        // One line, then EOF. A monitor that dies first leaves EOF without a line.
        var line: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 512)
        let deadline = Host.monotonicNanos + UInt64(timeoutSeconds) * 1_000_000_000
        while !line.contains(UInt8(ascii: "\n")) {
            let now = Host.monotonicNanos
            if now >= deadline {
                kill(pid, SIGKILL)
                throw BerthError(.internal, "the monitor did not report within \(timeoutSeconds)s; see \(diagnostics)")
            }
            var pfd = pollfd(fd: ready.read.rawValue, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, Int32((deadline - now) / 1_000_000)) <= 0 { continue }
            let n = buf.withUnsafeMutableBytes { read(ready.read.rawValue, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            line += buf[0..<n]
        }
        let text = String(decoding: line.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
        if text.hasPrefix("ok ") {
            let f = text.split(separator: " ")
            guard f.count == 3, let cpid = Int32(f[1]), let start = UInt64(f[2]) else {
                throw BerthError(.internal, "the monitor sent an unreadable ready line \"\(text)\"")
            }
            return Started(monitorPid: pid, monitorStartTime: monitorStart, pid: cpid, startTime: start)
        }
        // Reap a monitor that failed (it is our child and exits at once).
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        if text.hasPrefix("error ") {
            let f = text.dropFirst("error ".count).split(separator: "\t", maxSplits: 2, omittingEmptySubsequences: false)
            let step = f.count > 0 ? String(f[0]) : "?"
            let err = f.count > 1 ? Int32(f[1]) ?? 0 : 0
            let detail = f.count > 2 ? String(f[2]) : ""
            throw PreExecError.map(step: step, errno: err, detail: detail)
        }
        let diag = (try? Files.readString(diagnostics)).map { $0.split(separator: "\n").suffix(3).joined(separator: "; ") } ?? ""
        throw BerthError(.internal, "the monitor exited without starting \(what)\(diag.isEmpty ? "" : ": \(diag)")")
    }

    /// The exit file the monitor wrote, or nil when there is none (the monitor died).
    static func readExit(_ path: String) -> ExitRecord? {
        guard let text = try? Files.readString(path) else { return nil }
        var code: Int32?, signal: Int32 = 0, finished: Int64 = 0
        for line in text.split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1)
            guard kv.count == 2 else { continue }
            switch kv[0] {
            case "exit_code": code = Int32(kv[1])
            case "signal": signal = Int32(kv[1]) ?? 0
            case "finished_ns": finished = Int64(kv[1]) ?? 0
            default: continue
            }
        }
        guard let code else { return nil }
        return ExitRecord(code: code, signal: signal, finishedNanos: finished)
    }

    struct ExitRecord: Sendable {
        var code: Int32
        var signal: Int32
        var finishedNanos: Int64
    }
}
