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
        cfg.netns_fd = BERTH_NETNS_NEW
        // Spelled out: in the zeroed struct they would be descriptor 0, to be joined.
        cfg.ipcns_fd = BERTH_NS_NEW
        cfg.utsns_fd = BERTH_NS_NEW
        cfg.pidns_fd = BERTH_NS_NEW
        // No hardening on this path: the zeroed masked/readonly paths, mounts, cap mask and
        // seccomp filter are then ignored by the child (berth_spawn.h).
        cfg.harden = 0

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
            throw failure.berthError
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
}
