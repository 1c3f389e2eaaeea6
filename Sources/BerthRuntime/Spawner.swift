#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BerthErrors
import BerthSystem
import CBerthShim

/// Everything needed to start a container's first process.
public struct SpawnConfig: Sendable {
    /// Absolute path of the root file system on the host; must be a directory.
    public var rootfs: String
    /// The container's host name (at most 64 bytes); empty keeps the agent's.
    public var hostname: String
    /// Absolute working directory inside the container; created when missing.
    public var workingDir: String
    /// The command and its arguments; `args[0]` is searched in the `PATH` of `env`.
    public var args: [String]
    /// The environment, as `NAME=value` strings.
    public var env: [String]
    /// The user the command runs as.
    public var uid: UInt32
    /// The group the command runs as; supplementary groups are cleared.
    public var gid: UInt32
    /// Becomes the container's descriptor 0. The caller keeps (and closes) its own copy.
    public var stdin: FileDescriptor
    /// Becomes the container's descriptor 1.
    public var stdout: FileDescriptor
    /// Becomes the container's descriptor 2.
    public var stderr: FileDescriptor

    /// A configuration; see the properties.
    public init(rootfs: String, hostname: String = "", workingDir: String = "/", args: [String],
                env: [String] = [], uid: UInt32 = 0, gid: UInt32 = 0,
                stdin: FileDescriptor, stdout: FileDescriptor, stderr: FileDescriptor) {
        self.rootfs = rootfs
        self.hostname = hostname
        self.workingDir = workingDir
        self.args = args
        self.env = env
        self.uid = uid
        self.gid = gid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// A container process that has exec'd its command.
public struct SpawnedProcess: Sendable {
    /// Its pid in the agent's pid namespace. The caller reaps it.
    public let pid: Int32
    /// A pidfd for it (close-on-exec). The caller closes it.
    public let pidfd: FileDescriptor
}

/// Starts container processes through the C pre-exec path (`berth_spawn_start` /
/// `berth_spawn_finish` in CBerthShim's spawn.c). No Swift runs in the child.
public enum Spawner {
    /// The longest host name `sethostname(2)` accepts (`HOST_NAME_MAX`).
    static let maxHostnameBytes = 64

    /// Clones a child into new IPC, network, mount, PID and UTS namespaces, calls
    /// `beforeStart` with its pid while it waits (to join cgroups, receive a veth, ...),
    /// then lets it set up its root file system and exec `config.args`.
    ///
    /// On success the caller owns the returned pid (and reaps it) and the pidfd. On any
    /// failure the child has been killed and reaped, and the error names the step:
    /// `pivot_root: Invalid argument`, or for the command itself
    /// `exec "x": executable file not found in $PATH` (NOT_FOUND, reason
    /// `BerthError.Reason.execNotFound`) and `exec "x": permission denied`
    /// (PERMISSION_DENIED, reason `execPermission`).
    public static func spawn(_ config: SpawnConfig, beforeStart: (Int32) throws -> Void = { _ in }) throws -> SpawnedProcess {
        try validate(config)

        // Every C string the child will read, made here: the child must not allocate.
        let rootfs = CStrings([config.rootfs, config.hostname, config.workingDir])
        let argv = CStrings(config.args)
        let envp = CStrings(config.env)
        defer {
            rootfs.free()
            argv.free()
            envp.free()
        }

        var cfg = berth_spawn_config()
        cfg.rootfs = UnsafePointer(rootfs.pointers[0])
        cfg.hostname = UnsafePointer(rootfs.pointers[1])
        cfg.workdir = UnsafePointer(rootfs.pointers[2])
        cfg.uid = config.uid
        cfg.gid = config.gid
        cfg.stdin_fd = config.stdin.rawValue
        cfg.stdout_fd = config.stdout.rawValue
        cfg.stderr_fd = config.stderr.rawValue

        var handle = berth_spawn_handle()
        let started = argv.pointers.withUnsafeBufferPointer { args in
            envp.pointers.withUnsafeBufferPointer { env in
                cfg.argv = UnsafePointer(args.baseAddress)
                cfg.envp = UnsafePointer(env.baseAddress)
                return berth_spawn_start(&cfg, &handle)
            }
        }
        if started != 0 { throw Errno.current.error("clone container process") }

        do {
            try beforeStart(handle.pid)
        } catch {
            berth_spawn_abort(&handle)
            throw error
        }

        var failure = berth_spawn_error()
        if berth_spawn_finish(&handle, &failure) != 0 {
            // berth_spawn_finish has reaped the child and closed the pidfd already.
            throw error(from: failure)
        }
        return SpawnedProcess(pid: handle.pid, pidfd: FileDescriptor(rawValue: handle.pidfd))
    }

    private static func validate(_ c: SpawnConfig) throws {
        if c.args.isEmpty { throw BerthError.invalidArgument("empty command") }
        let all = [c.rootfs, c.hostname, c.workingDir] + c.args + c.env
        if all.contains(where: { $0.utf8.contains(0) }) {
            throw BerthError.invalidArgument("command, environment and paths must not contain NUL bytes")
        }
        if !c.rootfs.hasPrefix("/") { throw BerthError.invalidArgument("rootfs \(c.rootfs) is not an absolute path") }
        var st = stat()
        if stat(c.rootfs, &st) != 0 { throw Errno.current.error("rootfs \(c.rootfs)") }
        if (st.st_mode & S_IFMT) != S_IFDIR { throw BerthError.invalidArgument("rootfs \(c.rootfs) is not a directory") }
        if !c.workingDir.hasPrefix("/") {
            throw BerthError.invalidArgument("working directory \(c.workingDir) is not an absolute path")
        }
        if c.hostname.utf8.count > maxHostnameBytes {
            throw BerthError.invalidArgument("hostname \(c.hostname) is longer than \(maxHostnameBytes) bytes")
        }
    }

    /// The child's error record as a `BerthError`.
    static func error(from e: berth_spawn_error) -> BerthError {
        let step = withUnsafeBytes(of: e.step) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let detail = withUnsafeBytes(of: e.detail) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return error(step: step, errno: e.err, detail: detail)
    }

    /// Maps a failed pre-exec step (from spawn.c, directly or through berth-monitor's
    /// ready line) to the error a user sees.
    static func error(step: String, errno code: Int32, detail: String) -> BerthError {
        let errno = Errno(rawValue: code)
        if step == "exec" {
            // The child phrased the whole message ("exec \"x\": ...").
            switch errno {
            case .noEntry: return BerthError(.notFound, detail, reason: BerthError.Reason.execNotFound)
            case .accessDenied: return BerthError(.permissionDenied, detail, reason: BerthError.Reason.execPermission)
            default: return BerthError(errno.error("exec").code, detail)
            }
        }
        let what = detail.isEmpty ? step : "\(step) \(detail)"
        // A missing or unusable working directory comes from the user's config or image;
        // every other step failing is the agent's (or the host's) problem.
        if step.hasSuffix("workdir") { return errno.error(what) }
        return BerthError(.internal, "\(what): \(errno)")
    }
}

/// NUL-terminated copies of strings plus a trailing NULL, for `char *const *`.
/// Freed explicitly with `free()`.
private struct CStrings {
    let pointers: [UnsafeMutablePointer<CChar>?]

    init(_ strings: [String]) {
        pointers = strings.map { s in
            let utf8 = Array(s.utf8)
            let p = UnsafeMutablePointer<CChar>.allocate(capacity: utf8.count + 1)
            for (i, b) in utf8.enumerated() { p[i] = CChar(bitPattern: b) }
            p[utf8.count] = 0
            return p
        } + [nil]
    }

    func free() {
        for p in pointers { p?.deallocate() }
    }
}
