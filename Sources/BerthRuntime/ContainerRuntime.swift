#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import BerthWire
import CBerthShim

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

    /// Whether the run has ended (without waiting).
    public var hasEnded: Bool { wait(timeoutNanos: 0) != nil }
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

/// Tunables of the runtime.
public struct RuntimeOptions: Sendable {
    /// The berth-monitor executable.
    public var monitorBinary: String
    /// Log rotation (docs/monitor.md): size of the live file and rotated files kept.
    public var logMaxBytes: UInt64 = 10 << 20
    public var logMaxFiles = 3
    /// Bridge networks (docs/network.md).
    public var network = NetworkOptions()
    /// Berth's cgroup, under which every container's and pod's cgroup is made
    /// (docs/cgroups.md): "<parent>/<container id>", "<parent>/pod-<pod id>/<container id>".
    public var cgroupParent = "berth"
    /// Where the cgroup hierarchy is mounted.
    public var cgroupRoot = "/sys/fs/cgroup"
    /// Events the journal keeps for clients that resume (docs/events.md).
    public var eventRetention = 10_000
    public init(monitorBinary: String) { self.monitorBinary = monitorBinary }
}

/// The containers of one agent: their state machine, their on-disk records, and their
/// monitors. Thread-safe; every method may block briefly on disk or process work.
///
/// Each running container has a berth-monitor (docs/monitor.md) that is the parent of
/// its init, writes its log and its exit file, and outlives the agent. The runtime
/// starts monitors, watches them through pidfds, signals containers directly, and on
/// start-up adopts the monitors a previous agent left running.
///
/// State machine (docs/architecture.md): created → running → exited → running → …;
/// a transition not in this list fails with FAILED_PRECONDITION naming both states.
public final class ContainerRuntime: Sendable {
    /// The image store under `<state-dir>/images`.
    public let images: ImageStore
    /// Bridge networks, addresses and published ports.
    public let networks: NetworkManager
    /// Lifecycle events, numbered (docs/events.md).
    public let events: EventJournal
    public let stateDir: String
    public let runDir: String
    public let options: RuntimeOptions
    let reaper: Reaper
    let table: ConditionLock<Table>
    /// Pods by id (Pods/Pods.swift).
    let pods = ConditionLock([String: PodEntry]())
    /// The cgroup driver of this host's layout (Cgroups/).
    let cgroups: any CgroupDriver
    /// Serialises making cgroups with pruning Berth's empty parent: a prune between a
    /// create's mkdir of the parent and of the leaf would fail the create.
    let cgroupLock = ConditionLock(())

    struct Entry {
        var record: Container
        /// pidfd of the container's init (its monitor is the parent, not us).
        var initPidfd: FileDescriptor?
        /// pidfd of the monitor, watched by the reaper.
        var monitorPidfd: FileDescriptor?
        /// A start is in progress.
        var starting = false
        /// A removal is in progress.
        var removing = false
        /// Run streams reading this container's log: `--rm` waits for them.
        var attached = 0
        /// A restart by the policy is scheduled.
        var restartPending = false
        /// The monitor has exited and the exit is being recorded (monitorExited).
        var exiting = false
        /// The next restart delay is 100 ms · 2^backoffStep (reset by a run of 10 s).
        var backoffStep = 0
        let exits = ExitBox()
    }

    struct Table {
        var byID: [String: Entry] = [:]
        func id(named name: String) -> String? {
            byID.first { $0.value.record.name == name }?.key
        }
    }

    /// Opens (creating when needed) the state under `stateDir` and `runDir`, and adopts
    /// the containers a previous agent left: running ones keep running under their
    /// monitors; those that exited meanwhile get their real exit status.
    public init(stateDir: String, runDir: String, options: RuntimeOptions) throws {
        self.stateDir = stateDir
        self.runDir = runDir
        self.options = options
        try Files.makeDirectories(stateDir + "/containers", mode: 0o700)
        try Files.makeDirectories(runDir + "/containers", mode: 0o700)
        images = try ImageStore(directory: stateDir + "/images")
        networks = try NetworkManager(stateDir: stateDir + "/networks", runDir: runDir + "/netns", options: options.network)
        cgroups = Cgroups.detect(root: options.cgroupRoot)
        events = try EventJournal(path: stateDir + "/events.journal", retention: options.eventRetention)
        reaper = try Reaper()
        table = ConditionLock(Table())
        try load()
    }

    // MARK: - Paths

    func containerDir(_ id: String) -> String { "\(stateDir)/containers/\(id)" }
    func containerRunDir(_ id: String) -> String { "\(runDir)/containers/\(id)" }
    func recordPath(_ id: String) -> String { "\(containerDir(id))/container.pb" }
    func mountPoint(_ id: String) -> String { "\(containerRunDir(id))/rootfs" }
    func monitorPaths(_ id: String) -> Monitor.Paths { Monitor.Paths(runDir: containerRunDir(id), stateDir: containerDir(id)) }
    /// The container's log (CRI format, docs/monitor.md).
    public func logPath(_ id: String) -> String { monitorPaths(id).log }

    /// Whether the monitor of the container's current run has written its exit file,
    /// which it does only once the init has exited and its output is all in the log
    /// (docs/monitor.md). A log follower can stop on it without waiting for the reaper
    /// to record the exit; and the file appears in the log's directory, so the
    /// follower's inotify watch wakes for it.
    public func outputComplete(_ id: String) -> Bool { Files.exists(monitorPaths(id).exitFile) }

    // MARK: - Create

    /// Validates `spec`, resolves its image and records a new container in state `created`.
    public func create(_ spec: ContainerSpec) throws -> Container {
        var spec = spec
        // The image's config gives the defaults (command, env, user…) before the checks.
        let image = spec.rootfs.isEmpty && !spec.image.isEmpty ? try images.find(spec.image) : nil
        if let image { try images.applyDefaults(image, to: &spec) }
        try Validate.spec(&spec)
        var record = Container()
        if let image {
            spec.image = image.name.isEmpty ? image.id : image.name
            record.imageID = image.id
        } else if !Files.isDirectory(spec.rootfs) {
            throw BerthError(.invalidArgument, "rootfs \(spec.rootfs) is not a directory")
        }
        record.id = Host.randomHex(bytes: 32)
        // A container in a pod: the pod's network, files and (with uts shared) host name.
        var pod: Pod?
        if !spec.pod.isEmpty {
            let p = try podForNewContainer(spec.pod, spec)
            pod = p
            spec.pod = p.id
            if p.spec.share.contains("uts") { spec.hostname = p.spec.hostname }
            record.podID = p.id
            record.podName = p.name
        }
        // On the host's network a container takes the host's name, as in docker.
        if spec.hostname.isEmpty { spec.hostname = spec.network == "host" ? Host.hostname : String(record.id.prefix(12)) }
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
            // container:<name> is kept as container:<id>: names can be reused.
            if case .container(let ref) = NetworkMode(spec.network) {
                let other = try resolve(ref, in: t)
                if let p = t.byID[other]?.record, !p.podID.isEmpty {
                    throw BerthError(.invalidArgument, "container \(p.name) is in pod \(p.podName): join the pod with --pod \(p.podName) instead of --network container:")
                }
                spec.network = "container:\(other)"
            }
            record.name = spec.name
            record.spec = spec
            t.byID[record.id] = Entry(record: record)
        }
        var connected = false
        do {
            try Files.makeDirectories(containerDir(record.id), mode: 0o700)
            if let pod {
                record.network = pod.network
                record.network.network = "pod:\(pod.name)"
            } else {
                record.network = try networks.connect(.init(containerID: record.id, name: record.name, hostname: spec.hostname,
                                                            spec: spec, filesDir: containerDir(record.id)))
                connected = true
            }
            try persist(record)
        } catch {
            if connected { try? networks.disconnect(record.id) }
            table.withLock { $0.byID[record.id] = nil }
            try? Files.removeTree(containerDir(record.id))
            throw error.berthError("create container \(record.name)").prefixed("container \(record.name)")
        }
        table.withLock { $0.byID[record.id]?.record = record }
        recordEvent("create", record)
        return record
    }

    /// Journals a container event with its image (and pod) as attributes.
    func recordEvent(_ action: String, _ c: Container, exitCode: Int32 = 0, extra: [String: String] = [:]) {
        var attributes = extra
        attributes["image"] = c.image
        if !c.podName.isEmpty { attributes["pod"] = c.podName }
        events.record(Event(type: "container", action: action, id: c.id, name: c.name, exitCode: exitCode, attributes: attributes))
    }

    // MARK: - Start

    /// Starts a created or exited container under a new monitor. With `attach`, the
    /// caller streams its log and calls `detach` when done; an auto-remove container is
    /// removed only then. Returns the running container and a waiter for this run.
    public func start(_ ref: String, attach: Bool = false) throws -> (Container, ExitWaiter) {
        try start(ref, attach: attach, byPolicy: false)
    }

    private func start(_ ref: String, attach: Bool, byPolicy: Bool) throws -> (Container, ExitWaiter) {
        // created/exited → starting (a flag, so two starts cannot race).
        let (id, record, waiter) = try table.withLock { (t) throws(BerthError) -> (String, Container, ExitWaiter) in
            let id = try resolve(ref, in: t)
            guard var e = t.byID[id] else { throw notFound(ref) }
            if e.starting || e.removing || e.record.state == .running {
                let now = e.starting ? "starting" : e.removing ? "being removed" : "running"
                throw BerthError(.failedPrecondition, "container \(e.record.name) is \(now); cannot start it")
            }
            if byPolicy && (e.record.stoppedByUser || !e.restartPending) {
                throw BerthError(.failedPrecondition, "container \(e.record.name) was stopped by a user")
            }
            e.starting = true
            e.restartPending = false
            if attach { e.attached += 1 }
            t.byID[id] = e
            return (id, e.record, ExitWaiter(box: e.exits, generation: e.exits.generation))
        }
        do {
            let running = try launch(id, record, byPolicy: byPolicy)
            return (running, waiter)
        } catch {
            table.withLock { t in
                t.byID[id]?.starting = false
                if attach { t.byID[id]?.attached -= 1 }
            }
            throw error.berthError("container \(record.name)").prefixed("container \(record.name)")
        }
    }

    private func launch(_ id: String, _ record: Container, byPolicy: Bool) throws -> Container {
        let spec = record.spec
        var rootfs = spec.rootfs
        try Files.makeDirectories(containerRunDir(id), mode: 0o700)
        if rootfs.isEmpty {
            let lower = try images.lowerDirs(id: record.imageID)
            rootfs = mountPoint(id)
            try Rootfs.mountOverlay(lowers: lower, upper: containerDir(id) + "/upper",
                                    work: containerDir(id) + "/work", target: rootfs)
        }
        let paths = monitorPaths(id)
        // A stale exit file would be taken for this run's.
        _ = unlink(paths.exitFile)
        let ns: RunNamespaces
        do {
            ns = try networkSettings(id, record)
        } catch {
            if spec.rootfs.isEmpty { Rootfs.unmount(rootfs) }
            throw error
        }
        // A fresh cgroup per run (its OOM counter then counts this run's kills only),
        // with its limits written before the command runs: the monitor puts the init in
        // it between the two phases of the spawn.
        if !record.cgroup.isEmpty && record.cgroup != newCgroupPath(id, record) { dropCgroup(record.cgroup, record) }
        let cgroup = newCgroupPath(id, record)
        do {
            try makeCgroup(cgroup, limits: ResourceLimits(spec.resources))
        } catch {
            if spec.rootfs.isEmpty { Rootfs.unmount(rootfs) }
            throw error
        }
        let security: MonitorSecurity
        do {
            security = try ContainerSecurity.settings(spec, bpfPath: containerRunDir(id) + "/seccomp.bpf")
        } catch {
            if spec.rootfs.isEmpty { Rootfs.unmount(rootfs) }
            dropCgroup(cgroup, record)
            throw error
        }
        let config = Monitor.config(id: id, rootfs: rootfs, hostname: spec.hostname, workingDir: spec.workingDir,
                                    uid: spec.user.uid, gid: spec.user.gid, args: spec.args, env: Validate.environment(spec),
                                    paths: paths, logMaxBytes: options.logMaxBytes, logMaxFiles: options.logMaxFiles,
                                    netns: ns.net, ipcns: ns.ipc, utsns: ns.uts, pidns: ns.pid, binds: ns.binds,
                                    cgroupProcs: cgroups.procsFiles(cgroup), security: security)
        let started: Monitor.Started
        do {
            // In the run dir: read by the monitor now, meaningless after a reboot.
            try Files.writeAtomically(paths.config, config, mode: 0o600, durable: false)
            started = try Monitor.start(binary: options.monitorBinary, paths: paths)
        } catch {
            if spec.rootfs.isEmpty { Rootfs.unmount(rootfs) }
            dropCgroup(cgroup, record)
            throw error
        }
        let monitorPidfd = openPidfd(started.monitorPid, startTime: started.monitorStartTime)
        let initPidfd = openPidfd(started.pid, startTime: started.startTime)
        let running = table.withLock { t -> Container in
            var e = t.byID[id] ?? Entry(record: record)
            e.starting = false
            e.initPidfd = initPidfd
            e.monitorPidfd = monitorPidfd
            e.record.state = .running
            e.record.cgroup = cgroup
            e.record.pid = started.pid
            e.record.pidStartTime = started.startTime
            e.record.monitorPid = started.monitorPid
            e.record.monitorStartTime = started.monitorStartTime
            e.record.startedUnix = Host.now
            e.record.exit = nil
            e.record.oomKilled = false
            if !byPolicy { e.record.stoppedByUser = false }
            t.byID[id] = e
            return e.record
        }
        try? persist(running)
        recordEvent("start", running)
        Log.write("container \(running.name) (\(id.prefix(12))) started, pid \(running.pid), monitor \(started.monitorPid)")
        watchMonitor(id, monitorPidfd)
        return running
    }

    /// What a run joins: nil for a namespace of its own, "host" (net only), or a path.
    struct RunNamespaces {
        var net: String?
        var ipc: String?
        var uts: String?
        var pid: String?
        var binds: [(source: String, target: String)]
    }

    /// The container's cgroup, relative to the hierarchy's root.
    /// The cgroup recorded at its last start wins: an agent restarted with another
    /// --cgroup-parent still finds the cgroups of the containers it adopts.
    func cgroupPath(_ id: String, _ record: Container) -> String {
        if !record.cgroup.isEmpty { return record.cgroup }
        return newCgroupPath(id, record)
    }

    func newCgroupPath(_ id: String, _ record: Container) -> String {
        record.podID.isEmpty ? "\(options.cgroupParent)/\(id)" : "\(options.cgroupParent)/pod-\(record.podID)/\(id)"
    }

    /// The confinement an exec into the container gets: the container's own.
    public func execSecurity(_ container: Container) throws -> ExecSecurity {
        try ContainerSecurity.exec(container.spec, bpfPath: containerRunDir(container.id) + "/seccomp.bpf")
    }

    /// A run's cgroup, made afresh (an old one of the same path goes first).
    func makeCgroup(_ path: String, limits: ResourceLimits) throws(BerthError) {
        try cgroupLock.withLock { (_) throws(BerthError) in
            if cgroups.exists(path) { try cgroups.remove(path) }
            try cgroups.create(path, limits: limits)
        }
    }

    /// Removes a container's cgroup and, for one outside a pod, Berth's parent when that
    /// was the last cgroup in it (a pod's cgroup goes with the pod, Pods.swift).
    func removeCgroup(_ path: String, _ record: Container) throws(BerthError) {
        try cgroupLock.withLock { (_) throws(BerthError) in
            try cgroups.remove(path)
            if record.podID.isEmpty { cgroups.prune(options.cgroupParent) }
        }
    }

    /// `removeCgroup` on a failure path, where the first error is the one to report.
    func dropCgroup(_ path: String, _ record: Container) {
        if (try? removeCgroup(path, record)) == nil { Log.write("cgroup \(path) could not be removed") }
    }

    /// Puts a process (an exec's shim, before it joins the container) into the
    /// container's cgroup, so that exec'd processes count against its limits.
    public func joinCgroup(_ ref: String, pid: Int32) throws {
        let (id, record) = try table.withLock { (t) throws(BerthError) -> (String, Container) in
            let id = try resolve(ref, in: t)
            guard let e = t.byID[id] else { throw notFound(ref) }
            return (id, e.record)
        }
        for file in cgroups.procsFiles(cgroupPath(id, record)) {
            do {
                let fd = try FileDescriptor.open(file, O_WRONLY | O_CLOEXEC)
                defer { fd.close() }
                try fd.writeAll(String(pid))
            } catch {
                throw error.berthError("join cgroup \(file)")
            }
        }
    }

    /// One sample per container (`refs` empty: every running one).
    public func stats(_ refs: [String]) throws -> [ContainerStats] {
        let records = try table.withLock { (t) throws(BerthError) -> [Container] in
            if refs.isEmpty { return t.byID.values.map(\.record).filter { $0.state == .running }.sorted { $0.name < $1.name } }
            var out: [Container] = []
            for ref in refs {
                let id = try resolve(ref, in: t)
                guard let e = t.byID[id] else { throw notFound(ref) }
                out.append(e.record)
            }
            return out
        }
        return records.map { c in
            var s = ContainerStats()
            s.id = c.id
            s.name = c.name
            if c.state == .running, let g = cgroups.stats(cgroupPath(c.id, c)) {
                s.cpuUsageNanos = g.cpuUsageNanos
                s.memoryUsageBytes = g.memoryUsageBytes
                s.memoryLimitBytes = g.memoryLimitBytes
                s.pids = g.pids
                s.pidsLimit = g.pidsLimit
                s.oomKills = g.oomKills
            }
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            s.readUnixNano = Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
            return s
        }
    }

    /// The namespaces a run joins and the /etc files it gets (docs/network.md, pods.md).
    private func networkSettings(_ id: String, _ record: Container) throws -> RunNamespaces {
        func etc(_ filesDir: String, hostname: String) -> [(source: String, target: String)] {
            [(source: filesDir + "/hosts", target: "/etc/hosts"), (source: hostname + "/hostname", target: "/etc/hostname"),
             (source: filesDir + "/resolv.conf", target: "/etc/resolv.conf")]
        }
        if !record.podID.isEmpty {
            let pod = try podSettings(record.podID)
            // The pod's host name file when its UTS namespace is shared, else our own.
            let hostnameDir = pod.uts != nil ? pod.filesDir : containerDir(id)
            if pod.uts == nil { try? Files.writeAtomically(containerDir(id) + "/hostname", Array((record.spec.hostname + "\n").utf8)) }
            return RunNamespaces(net: pod.netns, ipc: pod.ipc, uts: pod.uts, pid: pod.pid, binds: etc(pod.filesDir, hostname: hostnameDir))
        }
        var filesDir = containerDir(id)
        var netns: String?
        // Records from before networking existed have no attachment: a namespace of their own.
        switch record.network.network.isEmpty ? .none : NetworkMode(record.network.network) {
        case .bridge:
            try networks.ensure(id)
            netns = record.network.netns
        case .none:
            netns = nil
        case .host:
            netns = "host"
        case .container(let otherID):
            // Another container's namespace: its pin on a bridge network, the host's, or,
            // for a namespace of its own, that of its running init. Its hosts and
            // resolv.conf come along (the host name stays this container's).
            let other = try table.withLock { (t) throws(BerthError) -> Entry in
                guard let e = t.byID[otherID] else {
                    throw BerthError(.notFound, "container \(otherID.prefix(12)), whose network this container shares, no longer exists")
                }
                return e
            }
            filesDir = containerDir(otherID)
            switch NetworkMode(other.record.network.network) {
            case .bridge: netns = other.record.network.netns
            case .host: netns = "host"
            case .none, .container:
                guard other.record.state == .running, other.record.pid > 0 else {
                    throw BerthError(.failedPrecondition, "container \(other.record.name), whose network this container shares, is not running")
                }
                netns = "/proc/\(other.record.pid)/ns/net"
            }
        }
        return RunNamespaces(net: netns, binds: etc(filesDir, hostname: containerDir(id)))
    }

    /// pidfd_open of `pid`, but only if it is still the process that started at `startTime`.
    private func openPidfd(_ pid: Int32, startTime: UInt64) -> FileDescriptor? {
        guard pid > 0 else { return nil }
        let fd = berth_pidfd_open(pid)
        guard fd >= 0 else { return nil }
        // Checked after opening: from here on the pidfd cannot be recycled.
        guard ProcessInfo.startTime(pid) == startTime else { Glibc.close(fd); return nil }
        return FileDescriptor(rawValue: fd)
    }

    private func watchMonitor(_ id: String, _ pidfd: FileDescriptor?) {
        guard let pidfd else {
            // The monitor is already gone: its exit file tells the rest.
            startThread("berth-exit") { [self] in monitorExited(id) }
            return
        }
        do {
            try reaper.watch(pidfd) { [self] _ in monitorExited(id) }
        } catch {
            Log.write("container \(id.prefix(12)): cannot watch its monitor: \(error.berthError("epoll").message)")
        }
    }

    // MARK: - Exit

    /// The monitor has exited (reaped by us, or by init when a previous agent started
    /// it): read the exit file, record the exit, then apply --rm or the restart policy.
    private func monitorExited(_ id: String) {
        let paths = monitorPaths(id)
        let exit = Monitor.readExit(paths.exitFile)
        if exit == nil { Log.write("container \(id.prefix(12)): its monitor ended without an exit file; see \(paths.diagnostics)") }
        let status = ExitStatus(exitCode: exit?.code ?? 255, signal: exit?.signal ?? 0,
                                finishedUnix: exit.map { $0.finishedNanos / 1_000_000_000 } ?? Host.now)
        // The kernel's OOM killer counts its kills in the run's cgroup.
        let oomKills = table.withLock { t in t.byID[id].map { cgroups.stats(cgroupPath(id, $0.record))?.oomKills ?? 0 } } ?? 0
        // Claim the exit, but keep the container "running" in the table until its root
        // file system is unmounted and its record says exited: a `wait` must not answer
        // (nor an `rm` start) while this is half done. Its waiters wake at the end.
        let claimed = table.withLock { t -> Entry? in
            guard var e = t.byID[id], e.record.state == .running, !e.exiting else { return nil }
            e.exiting = true
            t.byID[id] = e
            return e
        }
        guard let claimed else { return }
        if claimed.record.spec.rootfs.isEmpty { Rootfs.unmount(mountPoint(id)) }
        let entry = table.withLock { t -> Entry in
            var e = t.byID[id] ?? claimed
            e.exiting = false
            e.record.oomKilled = oomKills > 0
            e.initPidfd?.close()
            e.monitorPidfd?.close()
            e.initPidfd = nil
            e.monitorPidfd = nil
            e.record.state = .exited
            e.record.pid = 0
            e.record.monitorPid = 0
            e.record.exit = status
            let ranFor = status.finishedUnix - e.record.startedUnix
            // Docker's rule: a run of 10 s or more resets the backoff.
            e.backoffStep = ranFor >= 10 ? 0 : e.backoffStep
            e.restartPending = shouldRestart(e.record) && !e.removing
            t.byID[id] = e
            return e
        }
        Log.write("container \(entry.record.name) (\(id.prefix(12))) exited with code \(status.exitCode)")
        if entry.record.oomKilled {
            Log.write("container \(entry.record.name) (\(id.prefix(12))): OOM event: the kernel's OOM killer killed \(oomKills) process\(oomKills == 1 ? "" : "es") (memory limit \(entry.record.spec.resources.memoryBytes) bytes)")
        }
        // The events before the record: an agent killed in between records the exit
        // again when it restarts (at least once, never lost; docs/events.md).
        if entry.record.oomKilled { recordEvent("oom", entry.record) }
        recordEvent("die", entry.record, exitCode: status.exitCode,
                    extra: status.signal != 0 ? ["signal": String(status.signal)] : [:])
        try? persist(entry.record)
        if entry.restartPending {
            scheduleRestart(id, step: entry.backoffStep)
        } else if entry.record.spec.autoRemove && entry.attached == 0 {
            // Removed before anyone waiting hears of the exit, so that after `run --rm`
            // returns the container is gone, as with docker.
            do { try remove(id, force: false) } catch {
                Log.write("container \(entry.record.name): auto-remove failed: \(error.berthError("remove").message)")
            }
        }
        entry.exits.record(status)
    }

    private func shouldRestart(_ c: Container) -> Bool {
        if c.stoppedByUser { return false }
        switch c.spec.restart.kind {
        case .no: return false
        case .always: return true
        case .onFailure:
            let code = c.exit?.exitCode ?? 0
            return code != 0 && (c.spec.restart.maxRetries == 0 || c.restartCount < c.spec.restart.maxRetries)
        }
    }

    /// Restarts after 100 ms · 2^step (at most a minute), unless a user stops or removes
    /// the container first.
    private func scheduleRestart(_ id: String, step: Int) {
        let delayMs = min(100 << min(step, 10), 60_000)
        table.withLock { $0.byID[id]?.backoffStep = step + 1 }
        startThread("berth-restart") { [self] in
            usleep(useconds_t(delayMs) * 1000)
            let go = table.withLock { t -> Bool in
                guard var e = t.byID[id], e.restartPending, !e.record.stoppedByUser, !e.removing else { return false }
                e.record.restartCount += 1
                t.byID[id] = e
                return true
            }
            guard go else { return }
            do {
                _ = try start(id, attach: false, byPolicy: true)
            } catch {
                Log.write("container \(id.prefix(12)): restart by policy failed: \(error.berthError("restart").message)")
            }
        }
    }

    // MARK: - Signals, stop, restart

    /// Sends `signal` to the container's init process. With `byUser` (stop, kill with
    /// SIGKILL or the stop signal) the restart policy will not bring it back.
    public func kill(_ ref: String, signal: Int32, byUser: Bool = true) throws {
        let record = try table.withLock { (t) throws(BerthError) -> Container in
            let id = try resolve(ref, in: t)
            guard var e = t.byID[id] else { throw notFound(ref) }
            guard e.record.state == .running, let pidfd = e.initPidfd else {
                throw BerthError(.failedPrecondition, "container \(e.record.name) is not running (it is \(e.record.state))")
            }
            if byUser && (signal == SIGKILL || signal == (e.record.spec.stopSignal == 0 ? SIGTERM : e.record.spec.stopSignal)) {
                e.record.stoppedByUser = true
                e.restartPending = false
                t.byID[id] = e
            }
            if berth_pidfd_send_signal(pidfd.rawValue, signal) != 0 {
                let err = Errno.current
                // Its init has exited and the exit is on its way to monitorExited: not running.
                if err == .noProcess {
                    throw BerthError(.failedPrecondition, "container \(e.record.name) is not running (its process has exited)", reason: "exited")
                }
                throw err.error("signal \(Signals.name(signal)) to container \(e.record.name)")
            }
            return e.record
        }
        try? persist(record)
    }

    /// docker stop: the stop signal (SIGTERM unless the container says otherwise), then
    /// SIGKILL after `timeout` seconds (nil: the container's stop timeout, default 10).
    /// Stopping a container that is not running is not an error.
    public func stop(_ ref: String, timeout: Int32? = nil) throws -> Container {
        let (id, record, waiter) = try table.withLock { (t) throws(BerthError) -> (String, Container, ExitWaiter) in
            let id = try resolve(ref, in: t)
            guard var e = t.byID[id] else { throw notFound(ref) }
            e.record.stoppedByUser = true
            e.restartPending = false
            t.byID[id] = e
            return (id, e.record, ExitWaiter(box: e.exits, generation: e.exits.generation))
        }
        try? persist(record)
        guard record.state == .running else { return record }
        let grace = max(0, timeout ?? (record.spec.stopTimeout > 0 ? record.spec.stopTimeout : 10))
        let sig = record.spec.stopSignal == 0 ? SIGTERM : record.spec.stopSignal
        do { try kill(id, signal: sig) } catch let e as BerthError where e.code == .failedPrecondition {
            // It exited meanwhile: let the exit be recorded (a moment at most), then answer.
            if e.reason == "exited" { _ = waiter.wait(timeoutNanos: UInt64(max(grace, 1)) * 1_000_000_000) }
            return try inspect(id)
        }
        if waiter.wait(timeoutNanos: UInt64(grace) * 1_000_000_000) == nil {
            // pid 1 of a pid namespace ignores signals it has no handler for: only SIGKILL is sure.
            Log.write("container \(record.name) did not stop within \(grace)s; sending SIGKILL")
            try? kill(id, signal: SIGKILL)
            _ = waiter.wait()
        }
        return try inspect(id)
    }

    /// docker restart: stop (if running), then start.
    public func restart(_ ref: String, timeout: Int32? = nil) throws -> Container {
        let stopped = try stop(ref, timeout: timeout)
        return try start(stopped.id).0
    }

    /// Ends a Run's hold on an auto-remove container (see `start(_:attach:)`).
    public func detach(_ id: String) {
        let removeNow = table.withLock { t -> Bool in
            guard var e = t.byID[id] else { return false }
            e.attached = max(0, e.attached - 1)
            t.byID[id] = e
            return e.attached == 0 && e.record.spec.autoRemove && e.record.state == .exited && !e.restartPending
        }
        if removeNow { _ = try? remove(id, force: false) }
    }

    // MARK: - Queries

    /// A waiter for the container's current (or, if it has not started, next) run.
    /// For an exited container it returns the last exit at once.
    public func exitWaiter(_ ref: String) throws -> ExitWaiter {
        try table.withLock { (t) throws(BerthError) -> ExitWaiter in
            let id = try resolve(ref, in: t)
            guard let e = t.byID[id] else { throw notFound(ref) }
            if e.record.state == .exited, !e.starting, !e.restartPending, let exit = e.record.exit {
                return ExitWaiter(box: e.exits, generation: 0, done: exit)
            }
            return ExitWaiter(box: e.exits, generation: e.exits.generation)
        }
    }

    /// Blocks until the container's current (or next) run ends; see `exitWaiter`.
    public func wait(_ ref: String) throws -> ExitStatus {
        try exitWaiter(ref).wait()
    }

    /// The containers, newest first; only running ones unless `all`; only those
    /// matching every filter.
    public func list(all: Bool, filters: [ContainerFilter] = []) -> [Container] {
        table.withLock { t in
            t.byID.values.map(\.record)
                .filter { c in (all || c.state == .running || filters.contains { if case .status = $0 { true } else { false } })
                    && filters.allSatisfy { $0.matches(c) } }
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

    /// A running container's record and a duplicate of its init's pidfd (the caller
    /// closes it), for exec. FAILED_PRECONDITION when it is not running.
    public func runningInit(_ ref: String) throws -> (Container, FileDescriptor) {
        try table.withLock { (t) throws(BerthError) -> (Container, FileDescriptor) in
            let id = try resolve(ref, in: t)
            guard let e = t.byID[id] else { throw notFound(ref) }
            guard e.record.state == .running, let pidfd = e.initPidfd else {
                throw BerthError(.failedPrecondition, "container \(e.record.name) is not running (it is \(e.record.state)); start it first")
            }
            let copy = fcntl(pidfd.rawValue, F_DUPFD_CLOEXEC, 3)
            guard copy >= 0 else { throw Errno.current.error("dup pidfd") }
            return (e.record, FileDescriptor(rawValue: copy))
        }
    }

    /// Whether the container's current run has ended and its log is complete.
    public func isRunning(_ id: String) -> Bool {
        table.withLock { $0.byID[id].map { $0.record.state == .running || $0.starting } ?? false }
    }

    /// Calls `onExit` when the process behind `pidfd` (a child of the agent) has exited
    /// and been reaped. The caller keeps and closes `pidfd`, after `onExit`.
    public func watchProcess(_ pidfd: FileDescriptor, onExit: @escaping @Sendable (ProcessExit) -> Void) throws {
        try reaper.watch(pidfd, onExit: onExit)
    }

    /// The environment a container's processes get (PATH, HOSTNAME, HOME as docker sets them).
    public static func environment(for spec: ContainerSpec) -> [String] {
        Validate.environment(spec)
    }

    // MARK: - Remove

    /// Removes a container and everything it has on disk. A running one needs `force`,
    /// which kills it first (SIGKILL) and waits for its monitor to finish.
    @discardableResult
    public func remove(_ ref: String, force: Bool) throws -> String {
        let (id, name, waiter) = try table.withLock { (t) throws(BerthError) -> (String, String, ExitWaiter?) in
            let id = try resolve(ref, in: t)
            guard var e = t.byID[id] else { throw notFound(ref) }
            if e.removing { throw BerthError(.failedPrecondition, "container \(e.record.name) is already being removed") }
            let sharers = networks.users(of: id)
            if !sharers.isEmpty {
                throw BerthError(.failedPrecondition, "container \(e.record.name) shares its network namespace with \(sharers.joined(separator: ", ")): remove those first")
            }
            if e.starting { throw BerthError(.failedPrecondition, "container \(e.record.name) is starting; try again") }
            var waiter: ExitWaiter?
            if e.record.state == .running {
                guard force else {
                    throw BerthError(.failedPrecondition, "container \(e.record.name) is running: stop it first or remove it with rm -f")
                }
                if let pidfd = e.initPidfd { _ = berth_pidfd_send_signal(pidfd.rawValue, SIGKILL) }
                waiter = ExitWaiter(box: e.exits, generation: e.exits.generation)
            }
            e.removing = true
            e.restartPending = false
            e.record.stoppedByUser = true
            t.byID[id] = e
            return (id, e.record.name, waiter)
        }
        _ = waiter?.wait()
        do {
            try networks.disconnect(id)
            if let record = table.withLock({ $0.byID[id]?.record }) { try removeCgroup(cgroupPath(id, record), record) }
            Rootfs.unmount(mountPoint(id))
            try Files.removeTree(containerRunDir(id))
            try Files.removeTree(containerDir(id))
        } catch {
            table.withLock { $0.byID[id]?.removing = false }
            throw error.berthError("remove container \(name)")
        }
        let removed = table.withLock { $0.byID.removeValue(forKey: id)?.record }
        if let removed { recordEvent("remove", removed) }
        return id
    }

    /// Numbers for Info: (all, running, exited-or-created).
    public func counts() -> (total: Int, running: Int, stopped: Int) {
        table.withLock { t in
            let running = t.byID.values.filter { $0.record.state == .running }.count
            return (t.byID.count, running, t.byID.count - running)
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

    /// Reads every container record and adopts what a previous agent left: a running
    /// container whose monitor still runs is watched again; one whose monitor has
    /// finished gets the exit status the monitor recorded (and its restart policy).
    private func load() throws {
        try loadPods()
        var adopted: [(String, FileDescriptor?)] = []
        for id in try Files.list(stateDir + "/containers") {
            let path = recordPath(id)
            guard let bytes = try? Files.read(path), let record = try? Container(wire: bytes), record.id == id else {
                if Files.exists(path) { Log.write("ignoring unreadable container record \(path)") }
                continue
            }
            var entry = Entry(record: record)
            if record.state == .running {
                entry.monitorPidfd = openPidfd(record.monitorPid, startTime: record.monitorStartTime)
                entry.initPidfd = openPidfd(record.pid, startTime: record.pidStartTime)
                adopted.append((id, entry.monitorPidfd))
                if entry.monitorPidfd != nil {
                    Log.write("container \(record.name) (\(id.prefix(12))) is still running under monitor \(record.monitorPid); adopted")
                }
            }
            table.withLock { $0.byID[id] = entry }
            // A pod's container has no endpoint of its own: the pod has.
            if record.podID.isEmpty {
                networks.restore(containerID: id, name: record.name, hostname: record.spec.hostname, spec: record.spec,
                                 attachment: record.network, filesDir: containerDir(id))
            }
        }
        networks.reconcile()
        // Watching may call monitorExited at once (monitor gone): only after the table is full.
        for (id, pidfd) in adopted { watchMonitor(id, pidfd) }
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
