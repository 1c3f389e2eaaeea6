#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthRuntime
import BerthSystem
import BerthWire
import CBerthShim
import Synchronization

extension Agent {
    /// docker exec: a new process in a running container's namespaces, its stdio
    /// streamed on the call's stream (a pty with `tty`), its exit status at the end.
    func exec(_ stream: Stream, _ request: ExecRequest) throws {
        guard !request.args.isEmpty, !request.args[0].isEmpty else {
            throw BerthError(.invalidArgument, "exec needs a command to run")
        }
        let (container, initPidfd) = try runtime.runningInit(request.container)
        defer { initPidfd.close() }

        // The process's ends go to the container; ours are read (output) and written (stdin).
        var theirs: [FileDescriptor] = []
        var outputs: [(FileDescriptor, Channel)] = []
        var stdinWriter: FileDescriptor?
        var terminal: FileDescriptor?
        defer {
            for fd in theirs { fd.close() }
            for (fd, _) in outputs { fd.close() }
            stdinWriter?.close()
        }
        let childIn: FileDescriptor, childOut: FileDescriptor, childErr: FileDescriptor
        if request.tty {
            let rows = UInt16(clamping: request.rows == 0 ? 24 : request.rows)
            let cols = UInt16(clamping: request.cols == 0 ? 80 : request.cols)
            let pty = try Pty.open(rows: rows, cols: cols)
            theirs.append(pty.slave)
            (childIn, childOut, childErr) = (pty.slave, pty.slave, pty.slave)
            outputs.append((pty.master, .stdout))
            terminal = pty.master
            if request.stdin {
                let copy = fcntl(pty.master.rawValue, F_DUPFD_CLOEXEC, 3)
                guard copy >= 0 else { throw Errno.current.error("dup pty") }
                stdinWriter = FileDescriptor(rawValue: copy)
            }
        } else {
            let out = try FileDescriptor.pipe()
            outputs.append((out.read, .stdout))
            theirs.append(out.write)
            let err = try FileDescriptor.pipe()
            outputs.append((err.read, .stderr))
            theirs.append(err.write)
            if request.stdin {
                let input = try FileDescriptor.pipe()
                theirs.append(input.read)
                stdinWriter = input.write
                childIn = input.read
            } else {
                let null = try FileDescriptor.open("/dev/null", O_RDONLY)
                theirs.append(null)
                childIn = null
            }
            (childOut, childErr) = (out.write, err.write)
        }

        var env = ContainerRuntime.environment(for: container.spec)
        for entry in request.env {
            guard let eq = entry.firstIndex(of: "="), eq != entry.startIndex else {
                throw BerthError(.invalidArgument, "environment entry \"\(entry)\" is not KEY=VALUE")
            }
            let key = entry[..<eq]
            env.removeAll { $0.hasPrefix(key + "=") }
            env.append(entry)
        }
        if request.tty && !env.contains(where: { $0.hasPrefix("TERM=") }) { env.append("TERM=xterm") }
        let user = request.user ?? container.spec.user
        var config = ExecConfig(pidfd: initPidfd, args: request.args, env: env,
                                workingDir: request.workingDir.isEmpty ? container.spec.workingDir : request.workingDir,
                                uid: user.uid, gid: user.gid, stdin: childIn, stdout: childOut, stderr: childErr, tty: request.tty)
        config.security = try runtime.execSecurity(container)
        let process: SpawnedProcess
        // The shim joins the container's cgroup before it joins the container, so the
        // exec'd process counts against the container's limits.
        do { process = try Execer.exec(config) { pid in try self.runtime.joinCgroup(container.id, pid: pid) } } catch {
            throw error.berthError("exec").prefixed("container \(container.name)")
        }
        // Only the process may hold its ends now, or EOF would never come.
        for fd in theirs { fd.close() }
        theirs = []

        let exited = ConditionLock<ExitStatus?>(nil)
        do {
            try runtime.watchProcess(process.pidfd) { exit in
                exited.withLock { $0 = ExitStatus(exitCode: exit.code, signal: exit.signal, finishedUnix: Host.now) }
            }
        } catch {
            _ = berth_pidfd_send_signal(process.pidfd.rawValue, SIGKILL)
            throw error
        }
        defer { process.pidfd.close() }
        try stream.send(.exec(.started(pid: process.pid)), end: false)

        // stdin and resizes arrive on the stream: a thread of their own takes them.
        let input = ExecInput(writer: stdinWriter.map(dup), terminal: terminal.map(dup), pidfd: dup(process.pidfd), shimPid: process.pid)
        // The input thread owns stdin now: our copy would keep the process from ever seeing EOF.
        stdinWriter?.close()
        stdinWriter = nil
        startThread("berth-exec-in") { input.pump(stream) }

        do {
            try pumpOutput(outputs, to: stream)
        } catch {
            // The client is gone: stop the process (the shim forwards SIGTERM), then kill it.
            _ = berth_pidfd_send_signal(process.pidfd.rawValue, SIGTERM)
            if exited.wait(timeoutNanos: 5_000_000_000, until: { $0 }) == nil {
                ExecShim.kill(shimPid: process.pid, shimPidfd: process.pidfd)
                _ = exited.wait { $0 }
            }
            throw error
        }
        let status = exited.wait { $0 } ?? ExitStatus(exitCode: 255)
        input.finished.store(true, ordering: .releasing)
        try stream.send(.exec(.exit(status)), end: true)
    }

    /// A close-on-exec duplicate, so another thread can own (and close) its copy.
    private func dup(_ fd: FileDescriptor) -> FileDescriptor {
        FileDescriptor(rawValue: fcntl(fd.rawValue, F_DUPFD_CLOEXEC, 3))
    }

    /// Copies the process's output to DATA frames until every source reaches EOF (EIO
    /// on a pty master once the last slave is closed).
    private func pumpOutput(_ sources: [(FileDescriptor, Channel)], to stream: Stream) throws {
        var open = sources
        var buffer = [UInt8](repeating: 0, count: ConnectionOptions.maxChunk)
        while !open.isEmpty {
            var fds = open.map { pollfd(fd: $0.0.rawValue, events: Int16(POLLIN), revents: 0) }
            let r = poll(&fds, nfds_t(fds.count), 1000)
            if r < 0 { if errno == EINTR { continue }; throw Errno.current.error("poll exec output") }
            if r == 0 {
                if !stream.isOpen { throw BerthError(.cancelled, "exec stream \(stream.id) was cancelled") }
                continue
            }
            var closed: [Int] = []
            for (i, p) in fds.enumerated() where p.revents != 0 {
                let n = buffer.withUnsafeMutableBytes { read(p.fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    try stream.sendData(Chunk(channel: open[i].1, data: Array(buffer[0..<n])))
                } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                    closed.append(i)
                }
            }
            for i in closed.reversed() { open.remove(at: i) }
        }
    }
}

/// The client's side of an exec: stdin bytes, END_STREAM (stdin closed), resizes,
/// cancellation. Runs on its own thread, blocking in `Stream.receive`; owns the
/// descriptors it is given.
final class ExecInput: Sendable {
    let writer: FileDescriptor?
    let terminal: FileDescriptor?
    let pidfd: FileDescriptor
    let shimPid: Int32
    /// Set once the exit status is being sent: the stream's end is then no reason to
    /// stop the process.
    let finished = Atomic<Bool>(false)

    init(writer: FileDescriptor?, terminal: FileDescriptor?, pidfd: FileDescriptor, shimPid: Int32) {
        self.writer = writer
        self.terminal = terminal
        self.pidfd = pidfd
        self.shimPid = shimPid
    }

    func pump(_ stream: Stream) {
        var writer = self.writer
        defer {
            writer?.close()
            terminal?.close()
            pidfd.close()
        }
        while true {
            switch stream.receive() {
            case .data(let chunk, let end):
                switch chunk.channel {
                case .stdin:
                    if let w = writer, !chunk.data.isEmpty {
                        do { try chunk.data.withUnsafeBytes { try w.writeAll($0) } } catch {
                            w.close()
                            writer = nil
                        }
                    }
                case .resize:
                    if let size = chunk.terminalSize, let t = terminal {
                        try? Pty.resize(t, rows: size.rows, cols: size.cols)
                    }
                default:
                    break
                }
                if end {
                    // stdin closed: a pipe reader sees EOF. On a tty, EOF is ^D, which the
                    // client sends itself; the terminal stays open for output. Keep
                    // waiting for a cancel so the process can still be stopped.
                    writer?.close()
                    writer = nil
                }
            case .response:
                break
            case .cancelled:
                if !finished.load(ordering: .acquiring) { stop() }
                return
            }
        }
    }

    /// The client went away: SIGTERM through the exec shim (which forwards it), SIGKILL
    /// after 5 s.
    private func stop() {
        _ = berth_pidfd_send_signal(pidfd.rawValue, SIGTERM)
        var pfd = pollfd(fd: pidfd.rawValue, events: Int16(POLLIN), revents: 0)
        if poll(&pfd, 1, 5000) == 0 { ExecShim.kill(shimPid: shimPid, shimPidfd: pidfd) }
    }
}

/// Killing an exec for good. SIGKILL cannot be forwarded, and killing the shim itself
/// would orphan the real process (its death signal kills it, but its zombie then
/// belongs to whatever reaps orphans, and until something does, the container's pid
/// namespace cannot end). So the real process — the shim's one child — gets the
/// SIGKILL, and the shim reaps it and exits with its status.
enum ExecShim {
    static func kill(shimPid: Int32, shimPidfd: FileDescriptor) {
        let children = (try? Files.readString("/proc/\(shimPid)/task/\(shimPid)/children")) ?? ""
        var killed = false
        for child in children.split(separator: " ").compactMap({ Int32($0) }) {
            let fd = berth_pidfd_open(child)
            guard fd >= 0 else { continue }
            if berth_pidfd_send_signal(fd, SIGKILL) == 0 { killed = true }
            close(fd)
        }
        // No child (it already ended, or the shim never forked): the shim itself.
        if !killed { _ = berth_pidfd_send_signal(shimPidfd.rawValue, SIGKILL) }
    }
}
