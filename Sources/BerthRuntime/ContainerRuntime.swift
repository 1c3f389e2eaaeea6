#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import BerthWire
import CBerthShim

/// Where a container's standard streams go.
public enum ContainerIO: Sendable {
    /// stdin from /dev/null; stdout and stderr appended to the container's console.log.
    case log
    /// The given descriptors (the caller keeps and closes its copies).
    case fds(stdin: FileDescriptor, stdout: FileDescriptor, stderr: FileDescriptor)
}

/// Waits for one run of a container to end. Obtained before the run starts, so the
/// exit is never missed, and still usable after an auto-removed container is gone.
public final class ExitWaiter: Sendable {
    let box: ExitBox
    let generation: Int
    /// Set when the container had already exited and the caller wants that exit.
    let done: ExitStatus?

    init(box: ExitBox, generation: Int, done: ExitStatus? = nil) {
        self.box = box
        self.generation = generation
        self.done = done
    }

    /// Blocks until the run has ended; returns how.
    public func wait() -> ExitStatus {
        wait(timeoutNanos: nil) ?? ExitStatus(exitCode: 255)
    }

    /// Like `wait()`, but gives up after `timeoutNanos` and returns nil.
    public func wait(timeoutNanos: UInt64?) -> ExitStatus? {
        if let done { return done }
        return box.lock.wait(timeoutNanos: timeoutNanos) { s in s.generation > generation ? s.last : nil } ?? nil
    }
}

/// Counts the exits of one container, so that waiters can wait for the next one.
final class ExitBox: Sendable {
    struct State {
        var generation = 0
        var last: ExitStatus?
    }
    let lock = ConditionLock(State())

    func record(_ status: ExitStatus) {
        lock.withLock { s in
            s.generation += 1
            s.last = status
        }
    }

    var generation: Int { lock.withLock { $0.generation } }
}

/// The containers of one agent: their state machine, their on-disk records and their
/// processes. Thread-safe; every method may block briefly on disk or process work.
///
/// State machine (docs/architecture.md): created → running → exited → running → …;
/// a transition not in this list fails with FAILED_PRECONDITION naming both states.
public final class ContainerRuntime: Sendable {
    /// The image store under `<state-dir>/images`.
    public let images: ImageStore
    public let stateDir: String
    public let runDir: String
    let reaper: Reaper
    let table: ConditionLock<Table>

    struct Entry {
        var record: Container
        var pidfd: FileDescriptor?
        /// A start is in progress (the rootfs is being mounted or the child set up).
        var starting = false
        /// A removal is in progress.
        var removing = false
        let exits = ExitBox()
    }

    struct Table {
        var byID: [String: Entry] = [:]
        func id(named name: String) -> String? {
            byID.first { $0.value.record.name == name }?.key
        }
    }

    /// Opens (creating when needed) the state under `stateDir` and `runDir`, and deals
    /// with containers that were running when the previous agent stopped.
    public init(stateDir: String, runDir: String) throws {
        self.stateDir = stateDir
        self.runDir = runDir
        try Files.makeDirectories(stateDir + "/containers", mode: 0o700)
        try Files.makeDirectories(runDir + "/containers", mode: 0o700)
        images = try ImageStore(directory: stateDir + "/images")
        reaper = try Reaper()
        table = ConditionLock(Table())
        try load()
    }

    // MARK: - Paths

    func containerDir(_ id: String) -> String { "\(stateDir)/containers/\(id)" }
    func recordPath(_ id: String) -> String { "\(containerDir(id))/container.pb" }
    func mountPoint(_ id: String) -> String { "\(runDir)/containers/\(id)/rootfs" }
    /// The file a detached container's output is appended to.
    public func logPath(_ id: String) -> String { "\(containerDir(id))/console.log" }

    // MARK: - Calls

    /// Validates `spec`, resolves its image and records a new container in state `created`.
    public func create(_ spec: ContainerSpec) throws -> Container {
        var spec = spec
        try Validate.spec(&spec)
        var record = Container()
        if spec.rootfs.isEmpty {
            let image = try images.resolve(spec.image)
            spec.image = image.name
            record.imageID = image.id
        } else if !Files.isDirectory(spec.rootfs) {
            throw BerthError(.invalidArgument, "rootfs \(spec.rootfs) is not a directory")
        }
        record.id = Host.randomHex(bytes: 32)
        if spec.hostname.isEmpty { spec.hostname = String(record.id.prefix(12)) }
        record.image = spec.rootfs.isEmpty ? spec.image : spec.rootfs
        record.state = .created
        record.createdUnix = Host.now

        // Reserve the name and id under the lock; write the record outside it.
        try table.withLock { (t) throws(BerthError) in
            if spec.name.isEmpty {
                spec.name = Names.generate { t.id(named: $0) == nil }
            } else if let other = t.id(named: spec.name) {
                throw BerthError(.alreadyExists, "container name \"\(spec.name)\" is already in use by container \(other.prefix(12)); remove it or choose another name")
            }
            record.name = spec.name
            record.spec = spec
            t.byID[record.id] = Entry(record: record)
        }
        do {
            try Files.makeDirectories(containerDir(record.id), mode: 0o700)
            try persist(record)
        } catch {
            table.withLock { $0.byID[record.id] = nil }
            try? Files.removeTree(containerDir(record.id))
            throw error
        }
        return record
    }

    /// Starts a created or exited container: mounts its root file system, spawns its
    /// init process in new namespaces, and watches for its exit. Returns the running
    /// container and a waiter for this run's exit.
    public func start(_ ref: String, io: ContainerIO = .log) throws -> (Container, ExitWaiter) {
        // created/exited → starting (a flag, so two starts cannot race).
        let (id, record, waiter) = try table.withLock { (t) throws(BerthError) -> (String, Container, ExitWaiter) in
            let id = try resolve(ref, in: t)
            guard var e = t.byID[id] else { throw notFound(ref) }
            if e.starting || e.removing || e.record.state == .running {
                let now = e.starting ? "starting" : e.removing ? "being removed" : "running"
                throw BerthError(.failedPrecondition, "container \(e.record.name) is \(now); cannot start it")
            }
            e.starting = true
            t.byID[id] = e
            return (id, e.record, ExitWaiter(box: e.exits, generation: e.exits.generation))
        }
        do {
            let running = try launch(id, record, io: io)
            return (running, waiter)
        } catch {
            table.withLock { $0.byID[id]?.starting = false }
            throw error.berthError("container \(record.name)").prefixedOnce("container \(record.name)")
        }
    }

    private func launch(_ id: String, _ record: Container, io: ContainerIO) throws -> Container {
        let spec = record.spec
        var rootfs = spec.rootfs
        if rootfs.isEmpty {
            let lower = try images.rootfs(id: record.imageID)
            rootfs = mountPoint(id)
            try Rootfs.mountOverlay(lower: lower, upper: containerDir(id) + "/upper",
                                    work: containerDir(id) + "/work", target: rootfs)
        }
        var opened: [FileDescriptor] = []
        defer { for fd in opened { fd.close() } }
        let stdin: FileDescriptor, stdout: FileDescriptor, stderr: FileDescriptor
        switch io {
        case .log:
            stdin = try FileDescriptor.open("/dev/null", O_RDONLY)
            opened.append(stdin)
            stdout = try FileDescriptor.open(logPath(id), O_WRONLY | O_APPEND | O_CREAT, mode: 0o640)
            opened.append(stdout)
            stderr = stdout
        case .fds(let i, let o, let e):
            (stdin, stdout, stderr) = (i, o, e)
        }
        let config = SpawnConfig(rootfs: rootfs, hostname: spec.hostname, workingDir: spec.workingDir,
                                 args: spec.args, env: Validate.environment(spec), uid: spec.user.uid, gid: spec.user.gid,
                                 stdin: stdin, stdout: stdout, stderr: stderr)
        let process: SpawnedProcess
        do {
            process = try Spawner.spawn(config)
        } catch {
            if spec.rootfs.isEmpty { Rootfs.unmount(rootfs) }
            throw error
        }
        let running = table.withLock { t -> Container in
            var e = t.byID[id] ?? Entry(record: record)
            e.starting = false
            e.pidfd = process.pidfd
            e.record.state = .running
            e.record.pid = process.pid
            e.record.pidStartTime = ProcessInfo.startTime(process.pid) ?? 0
            e.record.startedUnix = Host.now
            e.record.exit = nil
            t.byID[id] = e
            return e.record
        }
        try? persist(running)
        Log.write("container \(running.name) (\(running.id.prefix(12))) started, pid \(running.pid)")
        do {
            try reaper.watch(process.pidfd) { [self] exit in exited(id, exit) }
        } catch {
            // Without a watch nobody would reap it: kill it rather than leak it.
            _ = berth_pidfd_send_signal(process.pidfd.rawValue, SIGKILL)
            var code: Int32 = 0, sig: Int32 = 0
            _ = berth_wait_pidfd(process.pidfd.rawValue, 0, &code, &sig)
            exited(id, ProcessExit(code: 137, signal: SIGKILL))
            throw error
        }
        return running
    }

    /// Called on the reaper thread when a container's init process has been reaped.
    private func exited(_ id: String, _ exit: ProcessExit) {
        let status = ExitStatus(exitCode: exit.code, signal: exit.signal, finishedUnix: Host.now)
        let entry = table.withLock { t -> Entry? in
            guard var e = t.byID[id] else { return nil }
            e.pidfd?.close()
            e.pidfd = nil
            e.record.state = .exited
            e.record.pid = 0
            e.record.exit = status
            t.byID[id] = e
            return e
        }
        guard let entry else { return }
        Log.write("container \(entry.record.name) (\(id.prefix(12))) exited with code \(status.exitCode)")
        if entry.record.spec.rootfs.isEmpty { Rootfs.unmount(mountPoint(id)) }
        if entry.record.spec.autoRemove {
            // Removed before anyone waiting hears of the exit, so that after `run --rm`
            // returns the container is gone, as with docker.
            do { try remove(id, force: false) } catch {
                Log.write("container \(entry.record.name): auto-remove failed: \(error.berthError("remove").message)")
                try? persist(entry.record)
            }
        } else {
            try? persist(entry.record)
        }
        entry.exits.record(status)
    }

    /// A waiter for the container's current (or, if it has not started, next) run.
    /// For an exited container it returns the last exit at once.
    public func exitWaiter(_ ref: String) throws -> ExitWaiter {
        try table.withLock { (t) throws(BerthError) -> ExitWaiter in
            let id = try resolve(ref, in: t)
            guard let e = t.byID[id] else { throw notFound(ref) }
            if e.record.state == .exited, !e.starting, let exit = e.record.exit {
                return ExitWaiter(box: e.exits, generation: 0, done: exit)
            }
            return ExitWaiter(box: e.exits, generation: e.exits.generation)
        }
    }

    /// Blocks until the container's current (or next) run ends; see `exitWaiter`.
    public func wait(_ ref: String) throws -> ExitStatus {
        try exitWaiter(ref).wait()
    }

    /// Sends `signal` to a running container's init process.
    public func kill(_ ref: String, signal: Int32) throws {
        try table.withLock { (t) throws(BerthError) in
            let id = try resolve(ref, in: t)
            guard let e = t.byID[id], e.record.state == .running, let pidfd = e.pidfd else {
                throw BerthError(.failedPrecondition, "container \(ref) is not running")
            }
            try sys("kill container \(e.record.name)") { berth_pidfd_send_signal(pidfd.rawValue, signal) }
        }
    }

    /// The containers, newest first; only running ones unless `all`.
    public func list(all: Bool) -> [Container] {
        table.withLock { t in
            t.byID.values.map(\.record)
                .filter { all || $0.state == .running }
                .sorted { ($0.createdUnix, $0.id) > ($1.createdUnix, $1.id) }
        }
    }

    /// Looks a container up by name, id or unique id prefix.
    public func inspect(_ ref: String) throws -> Container {
        try table.withLock { (t) throws(BerthError) -> Container in
            let id = try resolve(ref, in: t)
            guard let e = t.byID[id] else { throw notFound(ref) }
            return e.record
        }
    }

    /// Removes a container and everything it has on disk. A running one needs `force`,
    /// which kills it first (SIGKILL) and waits for it to be reaped.
    @discardableResult
    public func remove(_ ref: String, force: Bool) throws -> String {
        let (id, name, waiter) = try table.withLock { (t) throws(BerthError) -> (String, String, ExitWaiter?) in
            let id = try resolve(ref, in: t)
            guard var e = t.byID[id] else { throw notFound(ref) }
            if e.removing { throw BerthError(.failedPrecondition, "container \(e.record.name) is already being removed") }
            if e.starting { throw BerthError(.failedPrecondition, "container \(e.record.name) is starting; try again") }
            var waiter: ExitWaiter?
            if e.record.state == .running {
                guard force else {
                    throw BerthError(.failedPrecondition, "container \(e.record.name) is running: stop it first or remove it with rm -f")
                }
                if let pidfd = e.pidfd { _ = berth_pidfd_send_signal(pidfd.rawValue, SIGKILL) }
                waiter = ExitWaiter(box: e.exits, generation: e.exits.generation)
            }
            e.removing = true
            t.byID[id] = e
            return (id, e.record.name, waiter)
        }
        _ = waiter?.wait()
        do {
            Rootfs.unmount(mountPoint(id))
            try Files.removeTree("\(runDir)/containers/\(id)")
            try Files.removeTree(containerDir(id))
        } catch {
            table.withLock { $0.byID[id]?.removing = false }
            throw error.berthError("remove container \(name)")
        }
        table.withLock { $0.byID[id] = nil }
        return id
    }

    /// Numbers for Info: (all, running, exited-or-created).
    public func counts() -> (total: Int, running: Int, stopped: Int) {
        table.withLock { t in
            let running = t.byID.values.filter { $0.record.state == .running }.count
            return (t.byID.count, running, t.byID.count - running)
        }
    }

    /// Kills every running container and waits (at most `timeoutSeconds`) for them to
    /// be reaped; auto-remove containers are removed. Used when the agent shuts down:
    /// until containers are kept by per-container monitors they cannot outlive it.
    public func shutdown(timeoutSeconds: UInt64 = 10) {
        let waiters = table.withLock { t -> [ExitWaiter] in
            t.byID.values.compactMap { e in
                guard e.record.state == .running, let pidfd = e.pidfd else { return nil }
                _ = berth_pidfd_send_signal(pidfd.rawValue, SIGKILL)
                return ExitWaiter(box: e.exits, generation: e.exits.generation)
            }
        }
        for w in waiters {
            _ = w.box.lock.wait(timeoutNanos: timeoutSeconds * 1_000_000_000) { s in s.generation > w.generation ? true : nil }
        }
    }

    // MARK: - Internals

    private func notFound(_ ref: String) -> BerthError {
        BerthError(.notFound, "no such container: \(ref)")
    }

    /// Name, full id, or a unique prefix of an id.
    private func resolve(_ ref: String, in t: Table) throws(BerthError) -> String {
        if ref.isEmpty { throw BerthError(.invalidArgument, "container name or id is empty") }
        if t.byID[ref] != nil { return ref }
        if let id = t.id(named: ref) { return id }
        let matches = t.byID.keys.filter { $0.hasPrefix(ref) }
        if matches.count == 1, let id = matches.first { return id }
        if matches.count > 1 {
            throw BerthError(.invalidArgument, "container id prefix \(ref) is ambiguous: it matches \(matches.count) containers; give more characters")
        }
        throw notFound(ref)
    }

    private func persist(_ record: Container) throws {
        try Files.writeAtomically(recordPath(record.id), record.wireEncoded(), mode: 0o600)
    }

    /// Reads every container record. A container recorded as running belonged to a
    /// previous agent: this agent cannot reap it, so it is killed (when the pid still
    /// names the same process), its rootfs unmounted, and it is recorded as exited.
    private func load() throws {
        for id in try Files.list(stateDir + "/containers") {
            let path = recordPath(id)
            guard let bytes = try? Files.read(path), var record = try? Container(wire: bytes), record.id == id else {
                if Files.exists(path) { Log.write("ignoring unreadable container record \(path)") }
                continue
            }
            if record.state == .running {
                if record.pid > 0, ProcessInfo.startTime(record.pid) == record.pidStartTime {
                    let pidfd = berth_pidfd_open(record.pid)
                    if pidfd >= 0 { _ = berth_pidfd_send_signal(pidfd, SIGKILL); Glibc.close(pidfd) }
                    Log.write("container \(record.name) (pid \(record.pid)) was left by a previous agent; killed it")
                }
                if record.spec.rootfs.isEmpty { Rootfs.unmount(mountPoint(id)) }
                record.state = .exited
                record.pid = 0
                record.exit = ExitStatus(exitCode: 255, signal: 0, finishedUnix: Host.now)
                try? persist(record)
            }
            if record.state == .exited && record.spec.autoRemove {
                try? Files.removeTree("\(runDir)/containers/\(id)")
                try? Files.removeTree(containerDir(id))
                continue
            }
            let entry = Entry(record: record)
            table.withLock { $0.byID[id] = entry }
        }
    }
}

/// Reads facts about processes from /proc.
enum ProcessInfo {
    /// Field 22 of /proc/PID/stat (start time in clock ticks since boot).
    static func startTime(_ pid: Int32) -> UInt64? {
        guard let text = try? Files.readString("/proc/\(pid)/stat") else { return nil }
        // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state), so field 22 is fields[19].
        guard fields.count > 19 else { return nil }
        return UInt64(fields[19])
    }
}


extension BerthError {
    /// Puts `context` in front of the message unless it is already there.
    func prefixedOnce(_ context: String) -> BerthError {
        message.hasPrefix(context) ? self : prefixed(context)
    }
}
