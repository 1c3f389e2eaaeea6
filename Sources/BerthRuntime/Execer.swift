#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BerthErrors
import BerthSystem
import CBerthShim

/// Everything needed to run a new process inside a running container (`docker exec`).
/// The confinement of an exec'd process: the container's (ContainerSecurity).
public struct ExecSecurity: Sendable {
    public var capMask: UInt64
    public var noNewPrivs: Bool
    /// A sock_filter array; empty: no filter.
    public var seccompBPF: [UInt8]
    public init(capMask: UInt64, noNewPrivs: Bool, seccompBPF: [UInt8]) {
        self.capMask = capMask; self.noNewPrivs = noNewPrivs; self.seccompBPF = seccompBPF
    }
}

public struct ExecConfig: Sendable {
    /// A pidfd of the container's init (`SpawnedProcess.pidfd`): the process joins its
    /// IPC, UTS, network, PID and mount namespaces. The caller keeps (and closes) it.
    public var pidfd: FileDescriptor
    /// The command and its arguments; `args[0]` is searched in the `PATH` of `env`.
    public var args: [String]
    /// The environment, as `NAME=value` strings (docker: the container's plus `-e`).
    public var env: [String]
    /// Absolute working directory inside the container; it must exist.
    public var workingDir: String
    /// The user the command runs as.
    public var uid: UInt32
    /// The group the command runs as; supplementary groups are cleared.
    public var gid: UInt32
    /// Becomes the process's descriptor 0. The caller keeps (and closes) its own copy.
    public var stdin: FileDescriptor
    /// Becomes the process's descriptor 1.
    public var stdout: FileDescriptor
    /// Becomes the process's descriptor 2.
    public var stderr: FileDescriptor
    /// Makes the first of stdin/stdout/stderr that is a terminal (normally all three are
    /// the slave of a `Pty`) the process's controlling terminal, in a session of its own.
    public var tty: Bool
    /// The container's confinement, applied to this process too (nil: none, as in tests
    /// of the bare exec path).
    public var security: ExecSecurity?

    /// A configuration; see the properties.
    public init(pidfd: FileDescriptor, args: [String], env: [String] = [], workingDir: String = "/",
                uid: UInt32 = 0, gid: UInt32 = 0,
                stdin: FileDescriptor, stdout: FileDescriptor, stderr: FileDescriptor, tty: Bool = false) {
        self.pidfd = pidfd
        self.args = args
        self.env = env
        self.workingDir = workingDir
        self.uid = uid
        self.gid = gid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.tty = tty
    }
}

/// Runs processes inside running containers through the C path of CBerthShim's exec.c
/// (`berth_exec_start` / `berth_exec_finish`). No Swift runs in the children.
public enum Execer {
    /// Starts `config.args` inside the container whose init `config.pidfd` names.
    ///
    /// What is returned is the *exec shim*: the agent's child that joined the container's
    /// namespaces and is the parent of the real process. It mirrors the real process: it
    /// exits with its exit code or dies of the same signal, so `waitid` on its pidfd tells
    /// how the command ended; SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and
    /// SIGWINCH sent to it are forwarded; SIGKILL kills both. The caller reaps it and
    /// closes the pidfd. `beforeStart` gets the shim's pid while it waits, before it joins
    /// the container (to put it into the container's cgroup, which the command inherits).
    ///
    /// Errors are those of `Spawner.spawn` (`exec "x": executable file not found in $PATH`
    /// is NOT_FOUND with reason `BerthError.Reason.execNotFound`, ...), plus
    /// FAILED_PRECONDITION "container is not running" when the init has exited, and
    /// NOT_FOUND `chdir workdir /x: No such file or directory` for a missing working dir.
    /// On any failure the shim and the real process have been killed and reaped.
    public static func exec(_ config: ExecConfig, beforeStart: (Int32) throws -> Void = { _ in }) throws -> SpawnedProcess {
        try validate(config)
        if !isRunning(config.pidfd) { throw notRunning }

        // Every C string the children will read, made here: they must not allocate.
        let workdir = CStrings([config.workingDir])
        let argv = CStrings(config.args)
        let envp = CStrings(config.env)
        defer {
            workdir.free()
            argv.free()
            envp.free()
        }

        var cfg = berth_exec_config()
        cfg.target_pidfd = config.pidfd.rawValue
        cfg.workdir = UnsafePointer(workdir.pointers[0])
        cfg.uid = config.uid
        cfg.gid = config.gid
        cfg.stdin_fd = config.stdin.rawValue
        cfg.stdout_fd = config.stdout.rawValue
        cfg.stderr_fd = config.stderr.rawValue
        cfg.tty = config.tty ? 1 : 0
        // The filter's bytes must stay put until berth_exec_start returns (the shim
        // reads them in its own copy of our memory).
        let bpf = config.security?.seccompBPF ?? []
        if let security = config.security {
            cfg.harden = 1
            cfg.cap_mask = security.capMask
            cfg.no_new_privs = security.noNewPrivs ? 1 : 0
            cfg.seccomp_len = UInt32(bpf.count / 8)
        }

        var handle = berth_exec_handle()
        let started = argv.pointers.withUnsafeBufferPointer { args in
            envp.pointers.withUnsafeBufferPointer { env in
                cfg.argv = UnsafePointer(args.baseAddress)
                cfg.envp = UnsafePointer(env.baseAddress)
                return bpf.withUnsafeBytes { raw in
                    cfg.seccomp_bpf = bpf.isEmpty ? nil : raw.baseAddress
                    return berth_exec_start(&cfg, &handle)
                }
            }
        }
        if started != 0 { throw Errno.current.error("clone exec process") }

        do {
            try beforeStart(handle.pid)
        } catch {
            berth_exec_abort(&handle)
            throw error
        }

        var failure = berth_spawn_error()
        if berth_exec_finish(&handle, &failure) != 0 {
            // berth_exec_finish has reaped the shim and closed its pidfd already.
            // setns fails with ESRCH once the init is gone; a dying pid namespace refuses
            // new processes (the fork step, ENOMEM): both mean the container has stopped.
            if (failure.stepName == "setns" && failure.err == ESRCH) || !isRunning(config.pidfd) {
                throw notRunning
            }
            throw failure.berthError
        }
        return SpawnedProcess(pid: handle.pid, pidfd: FileDescriptor(rawValue: handle.pidfd))
    }

    private static var notRunning: BerthError { .failedPrecondition("container is not running") }

    /// Whether the process behind `pidfd` is still running: a pidfd polls readable once
    /// its process has exited, whether it is a zombie yet or already reaped.
    static func isRunning(_ pidfd: FileDescriptor) -> Bool {
        var p = pollfd(fd: pidfd.rawValue, events: Int16(POLLIN), revents: 0)
        while true {
            let n = poll(&p, 1, 0)
            if n < 0 && errno == EINTR { continue }
            return n == 0
        }
    }

    private static func validate(_ c: ExecConfig) throws {
        if c.pidfd.rawValue < 0 { throw BerthError.invalidArgument("no pidfd of the container's init") }
        if c.args.isEmpty { throw BerthError.invalidArgument("empty command") }
        if ([c.workingDir] + c.args + c.env).contains(where: { $0.utf8.contains(0) }) {
            throw BerthError.invalidArgument("command, environment and working directory must not contain NUL bytes")
        }
        if !c.workingDir.hasPrefix("/") {
            throw BerthError.invalidArgument("working directory \(c.workingDir) is not an absolute path")
        }
    }
}
