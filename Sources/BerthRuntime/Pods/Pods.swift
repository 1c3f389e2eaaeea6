#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import BerthWire
import CBerthShim

/// A pod as the runtime keeps it.
struct PodEntry {
    var record: Pod
    /// A removal is in progress: no container may join.
    var removing = false
    var pausePidfd: FileDescriptor?
}

/// Pods (docs/pods.md): containers that share the pod's network, IPC and UTS (and, if
/// asked, pid) namespaces. The namespaces are pinned by bind-mounting their nsfs files
/// under `<run-dir>/pods/<id>` (the network one under `<run-dir>/netns/<id>`, where the
/// network layer keeps every bridge endpoint): they outlive any process, so no pause
/// process runs for a pod — except when its pid namespace is shared, which needs a
/// living init to reap: then a `berth-monitor --pause` process is that init.
extension ContainerRuntime {
    func podDir(_ id: String) -> String { "\(stateDir)/pods/\(id)" }
    func podRunDir(_ id: String) -> String { "\(runDir)/pods/\(id)" }
    func podRecordPath(_ id: String) -> String { "\(podDir(id))/pod.pb" }
    func podPin(_ id: String, _ ns: PodNamespace) -> String { "\(podRunDir(id))/\(ns.rawValue)" }

    private func shares(_ pod: Pod, _ ns: PodNamespace) -> Bool { pod.spec.share.contains(ns.rawValue) }

    // MARK: - Create

    /// `pod create`: pins the pod's namespaces, gives it its network endpoint (address,
    /// published ports, /etc files), applies its sysctls inside its own namespaces, and
    /// starts the pause process when the pid namespace is shared. All or nothing.
    public func createPod(_ input: PodSpec) throws -> Pod {
        var spec = input
        try Validate.podSpec(&spec)
        var pod = Pod()
        pod.id = Host.randomHex(bytes: 32)
        if spec.hostname.isEmpty { spec.hostname = String(pod.id.prefix(12)) }
        pod.createdUnix = Host.now
        try pods.withLock { (p) throws(BerthError) in
            if spec.name.isEmpty {
                spec.name = Names.generate { name in !p.values.contains { $0.record.name == name } }
            } else if let other = p.values.first(where: { $0.record.name == spec.name }) {
                throw BerthError(.alreadyExists, "pod name \"\(spec.name)\" is already in use by pod \(other.record.id.prefix(12))")
            }
            pod.name = spec.name
            pod.spec = spec
            p[pod.id] = PodEntry(record: pod, removing: true)  // not joinable until made
        }
        do {
            try Files.makeDirectories(podDir(pod.id), mode: 0o700)
            try Files.makeDirectories(podRunDir(pod.id), mode: 0o700)
            pod = try plumbPod(pod)
            try persistPod(pod)
        } catch {
            let failed = pod
            teardownPod(failed)
            pods.withLock { $0[failed.id] = nil }
            throw error.berthError("create pod \(failed.name)").prefixed("pod \(failed.name)")
        }
        pods.withLock { $0[pod.id] = PodEntry(record: pod) }
        events.record(Event(type: "pod", action: "create", id: pod.id, name: pod.name, attributes: ["share": pod.spec.share.joined(separator: ",")]))
        Log.write("pod \(pod.name) (\(pod.id.prefix(12))) created: \(pod.spec.share.joined(separator: ",")) shared\(pod.network.ip.isEmpty ? "" : ", address \(pod.network.ip)")")
        return pod
    }

    /// The kernel side of a new pod; returns the record with what was made.
    private func plumbPod(_ input: Pod) throws -> Pod {
        var pod = input
        // The network: a bridge endpoint keyed by the pod's id (its pin is the network
        // layer's), or, with --network none, a namespace with only lo, pinned here.
        var net = ContainerSpec()
        net.network = pod.spec.network
        net.ports = pod.spec.ports
        net.dns = pod.spec.dns
        net.extraHosts = pod.spec.extraHosts
        pod.network = try networks.connect(.init(containerID: pod.id, name: pod.name, hostname: pod.spec.hostname,
                                                 spec: net, filesDir: podDir(pod.id)))
        if pod.network.netns.isEmpty {
            let pin = podPin(pod.id, .net)
            try networks.kernel.createNetns(pin)
            pod.network.netns = pin
        }
        // IPC and UTS, made together on one short-lived thread (the UTS one with the
        // pod's host name); the one not shared is released at once.
        let ipcPin = podPin(pod.id, .ipc), utsPin = podPin(pod.id, .uts)
        if shares(pod, .ipc) || shares(pod, .uts) {
            try networks.kernel.createIPCUTS(ipcPin: ipcPin, utsPin: utsPin, hostname: pod.spec.hostname)
            if !shares(pod, .ipc) { try networks.kernel.releaseNetns(ipcPin) }
            if !shares(pod, .uts) { try networks.kernel.releaseNetns(utsPin) }
        }
        // Sysctls, each written from inside the pod's own namespace (never the host's).
        for (key, value) in pod.spec.sysctls.sorted(by: { $0.key < $1.key }) {
            let ns = try Validate.sysctlNamespace(key)
            try networks.kernel.writeSysctl(pin: ns == .net ? pod.network.netns : ipcPin, namespace: ns, key: key, value: value)
        }
        // The pod's cgroup, with the pod-level limits; its containers' cgroups nest in it.
        var limits = ResourceLimits()
        limits.memoryBytes = pod.spec.memoryBytes
        limits.cpuMillis = pod.spec.cpuMillis
        try makeCgroup(podCgroup(pod.id), limits: limits)
        if shares(pod, .pid) { pod = try startPause(pod) }
        pod.namespaces = pinnedNamespaces(pod)
        return pod
    }

    /// The pause process: pid 1 of the pod's pid namespace, which is pinned too.
    private func startPause(_ input: Pod) throws -> Pod {
        var pod = input
        let started = try Monitor.startPause(binary: options.monitorBinary, diagnostics: podRunDir(pod.id) + "/pause.log")
        pod.pausePid = started.pid
        pod.pauseStartTime = started.startTime
        pod.pauseMonitorPid = started.monitorPid
        pod.pauseMonitorStartTime = started.monitorStartTime
        // The monitor is our child: reap it when it ends.
        if let fd = openPodPidfd(started.monitorPid, started.monitorStartTime) {
            try? reaper.watch(fd) { _ in }
        }
        let pin = podPin(pod.id, .pid)
        try networks.kernel.releaseNetns(pin)
        try networks.kernel.pin(source: "/proc/\(started.pid)/ns/pid", pin: pin)
        Log.write("pod \(pod.name): pause process \(started.pid) (monitor \(started.monitorPid))")
        return pod
    }

    private func openPodPidfd(_ pid: Int32, _ startTime: UInt64) -> FileDescriptor? {
        guard pid > 0 else { return nil }
        let fd = berth_pidfd_open(pid)
        guard fd >= 0 else { return nil }
        guard ProcessInfo.startTime(pid) == startTime else { close(fd); return nil }
        return FileDescriptor(rawValue: fd)
    }

    func pauseAlive(_ pod: Pod) -> Bool {
        pod.pausePid > 0 && ProcessInfo.startTime(pod.pausePid) == pod.pauseStartTime
    }

    /// Before a container of a pid-sharing pod starts: the pause process runs (a new one,
    /// with a new pid namespace, after a pod stop or a reboot).
    func ensurePause(_ podID: String) throws -> Pod {
        guard let pod = pods.withLock({ $0[podID]?.record }) else {
            throw BerthError(.notFound, "pod \(podID.prefix(12)) no longer exists")
        }
        guard shares(pod, .pid), !pauseAlive(pod) else { return pod }
        try Files.makeDirectories(podRunDir(podID), mode: 0o700)  // gone after a reboot
        let restarted = try startPause(pod)
        var updated = restarted
        updated.namespaces = pinnedNamespaces(updated)
        try persistPod(updated)
        pods.withLock { $0[podID]?.record = updated }
        return updated
    }

    private func stopPause(_ pod: Pod) {
        guard pauseAlive(pod), let fd = openPodPidfd(pod.pausePid, pod.pauseStartTime) else { return }
        _ = berth_pidfd_send_signal(fd.rawValue, SIGKILL)
        fd.close()
        var waited = 0
        while waited < 100 && pod.pauseMonitorPid > 0 && ProcessInfo.startTime(pod.pauseMonitorPid) == pod.pauseMonitorStartTime {
            usleep(10_000)
            waited += 1
        }
    }

    /// Undoes everything `plumbPod` may have made; safe on a half-made pod.
    func podCgroup(_ id: String) -> String { "\(options.cgroupParent)/pod-\(id)" }

    private func teardownPod(_ pod: Pod) {
        stopPause(pod)
        cgroupLock.withLock { _ in
            if (try? cgroups.remove(podCgroup(pod.id))) == nil {
                Log.write("pod \(pod.name): its cgroup \(podCgroup(pod.id)) could not be removed")
            }
            cgroups.prune(options.cgroupParent)
        }
        for ns in [PodNamespace.pid, .ipc, .uts, .net] { try? networks.kernel.releaseNetns(podPin(pod.id, ns)) }
        try? networks.disconnect(pod.id)
        try? Files.removeTree(podRunDir(pod.id))
        try? Files.removeTree(podDir(pod.id))
    }

    func persistPod(_ pod: Pod) throws {
        var stored = pod
        stored.containers = []
        stored.state = ""
        try Files.writeAtomically(podRecordPath(pod.id), stored.wireEncoded(), mode: 0o600)
    }

    /// The pins and their inodes.
    func pinnedNamespaces(_ pod: Pod) -> [NamespaceInfo] {
        var out: [NamespaceInfo] = []
        for ns in PodNamespace.allCases where shares(pod, ns) {
            let path = ns == .net ? pod.network.netns : podPin(pod.id, ns)
            var st = stat()
            out.append(NamespaceInfo(type: ns.rawValue, path: path, inode: stat(path, &st) == 0 ? UInt64(st.st_ino) : 0))
        }
        return out
    }

    // MARK: - Containers in pods

    /// At a container's create: the pod it joins (not one being removed).
    func podForNewContainer(_ ref: String, _ spec: ContainerSpec) throws(BerthError) -> Pod {
        if !spec.network.isEmpty || !spec.ports.isEmpty {
            throw BerthError(.invalidArgument, "a container in a pod uses the pod's network: --network and -p belong to the pod (pod create)")
        }
        if !spec.dns.isEmpty || !spec.extraHosts.isEmpty {
            throw BerthError(.invalidArgument, "a container in a pod uses the pod's /etc/hosts and resolv.conf: --dns and --add-host belong to the pod")
        }
        let entry = try pods.withLock { (p) throws(BerthError) -> PodEntry in try resolvePod(ref, p) }
        if entry.removing { throw BerthError(.failedPrecondition, "pod \(entry.record.name) is being removed (or is still being created)") }
        if !spec.hostname.isEmpty && shares(entry.record, .uts) {
            throw BerthError(.invalidArgument, "a container in pod \(entry.record.name) shares its UTS namespace: --hostname belongs to the pod")
        }
        return entry.record
    }

    /// The namespaces and /etc files of a pod container's run.
    func podSettings(_ podID: String) throws -> (netns: String, ipc: String?, uts: String?, pid: String?, filesDir: String) {
        var pod = try pods.withLock { (p) throws(BerthError) -> Pod in
            guard let e = p[podID], !e.removing else { throw BerthError(.failedPrecondition, "pod \(podID.prefix(12)) is being removed") }
            return e.record
        }
        // After a reboot the pins are gone: a bridge endpoint is made again by the network
        // layer; the rest of a pod does not survive a reboot (docs/pods.md).
        try networks.ensure(podID)
        for ns in PodNamespace.allCases where shares(pod, ns) && ns != .pid {
            let path = ns == .net ? pod.network.netns : podPin(podID, ns)
            if !networks.kernel.isPinned(path) {
                throw BerthError(.failedPrecondition, "pod \(pod.name) lost its \(ns.rawValue) namespace (\(path)), probably in a reboot: remove and create it again")
            }
        }
        if shares(pod, .pid) { pod = try ensurePause(podID) }
        return (pod.network.netns, shares(pod, .ipc) ? podPin(podID, .ipc) : nil, shares(pod, .uts) ? podPin(podID, .uts) : nil,
                shares(pod, .pid) ? podPin(podID, .pid) : nil, podDir(podID))
    }

    // MARK: - Queries

    private func resolvePod(_ ref: String, _ p: [String: PodEntry]) throws(BerthError) -> PodEntry {
        if ref.isEmpty { throw BerthError(.invalidArgument, "pod name or id is empty") }
        if let e = p[ref] { return e }
        if let e = p.values.first(where: { $0.record.name == ref }) { return e }
        let matches = p.values.filter { $0.record.id.hasPrefix(ref) }
        if matches.count == 1, let e = matches.first { return e }
        if matches.count > 1 {
            throw BerthError(.invalidArgument, "pod id prefix \(ref) is ambiguous: it matches \(matches.count) pods; give more characters")
        }
        throw BerthError(.notFound, "no such pod: \(ref)")
    }

    /// A pod with its containers (and their namespaces' inodes) and its state.
    private func describe(_ pod: Pod) -> Pod {
        var pod = pod
        let members = table.withLock { t in t.byID.values.map(\.record).filter { $0.podID == pod.id } }
            .sorted { ($0.createdUnix, $0.id) < ($1.createdUnix, $1.id) }
        pod.containers = members.map { c in
            PodContainer(id: c.id, name: c.name, state: c.state, namespaces: c.state == .running ? ContainerRuntime.namespaces(of: c.pid) : [])
        }
        pod.namespaces = pinnedNamespaces(pod)
        if !shares(pod, .pid) || !pauseAlive(pod) { (pod.pausePid, pod.pauseStartTime) = (0, 0) }
        pod.state = members.contains { $0.state == .running } ? "running"
            : members.contains { $0.state == .exited } ? "exited" : "created"
        return pod
    }

    /// The net, ipc, uts, pid and mnt namespaces of a process, from /proc/PID/ns.
    static func namespaces(of pid: Int32) -> [NamespaceInfo] {
        guard pid > 0 else { return [] }
        return ["net", "ipc", "uts", "pid", "mnt"].compactMap { type in
            let path = "/proc/\(pid)/ns/\(type)"
            var st = stat()
            guard stat(path, &st) == 0 else { return nil }
            return NamespaceInfo(type: type, path: path, inode: UInt64(st.st_ino))
        }
    }

    public func listPods() -> [Pod] {
        pods.withLock { p in p.values.map(\.record) }.sorted { ($0.createdUnix, $0.id) > ($1.createdUnix, $1.id) }.map(describe)
    }

    public func inspectPod(_ ref: String) throws -> Pod {
        describe(try pods.withLock { (p) throws(BerthError) -> Pod in try resolvePod(ref, p).record })
    }

    // MARK: - Start, stop, remove

    private func podMembers(_ podID: String) -> [Container] {
        table.withLock { t in t.byID.values.map(\.record).filter { $0.podID == podID } }
            .sorted { ($0.createdUnix, $0.id) < ($1.createdUnix, $1.id) }
    }

    /// `pod start`: starts the pod's containers that are not running, oldest first.
    public func startPod(_ ref: String) throws -> Pod {
        let pod = try pods.withLock { (p) throws(BerthError) -> Pod in try resolvePod(ref, p).record }
        for c in podMembers(pod.id) where c.state != .running {
            _ = try start(c.id)
        }
        return try inspectPod(pod.id)
    }

    /// `pod stop`: stops every running container of the pod, then its pause process.
    public func stopPod(_ ref: String, timeout: Int32? = nil) throws -> Pod {
        let pod = try pods.withLock { (p) throws(BerthError) -> Pod in try resolvePod(ref, p).record }
        for c in podMembers(pod.id).reversed() where c.state == .running {
            _ = try stop(c.id, timeout: timeout)
        }
        stopPause(pod)
        return try inspectPod(pod.id)
    }

    /// `pod rm`: removes the pod and its containers; running containers need `force`.
    @discardableResult
    public func removePod(_ ref: String, force: Bool) throws -> String {
        let pod = try pods.withLock { (p) throws(BerthError) -> Pod in
            let e = try resolvePod(ref, p)
            if e.removing { throw BerthError(.failedPrecondition, "pod \(e.record.name) is already being removed") }
            return e.record
        }
        let running = podMembers(pod.id).filter { $0.state == .running }.map(\.name)
        if !running.isEmpty && !force {
            throw BerthError(.failedPrecondition, "pod \(pod.name) has running containers (\(running.joined(separator: ", "))): stop them or use pod rm -f")
        }
        pods.withLock { $0[pod.id]?.removing = true }
        do {
            for c in podMembers(pod.id) { try remove(c.id, force: true) }
        } catch {
            pods.withLock { $0[pod.id]?.removing = false }
            throw error.berthError("remove pod \(pod.name)").prefixed("pod \(pod.name)")
        }
        teardownPod(pod)
        pods.withLock { $0[pod.id] = nil }
        events.record(Event(type: "pod", action: "remove", id: pod.id, name: pod.name))
        Log.write("pod \(pod.name) (\(pod.id.prefix(12))) removed")
        return pod.id
    }

    // MARK: - Start-up

    /// Reads the pod records; their network endpoints are restored before the network
    /// layer reconciles (so their pins are not taken for strays).
    func loadPods() throws {
        try Files.makeDirectories(stateDir + "/pods", mode: 0o700)
        for id in try Files.list(stateDir + "/pods") {
            let path = podRecordPath(id)
            guard let bytes = try? Files.read(path), let pod = try? Pod(wire: bytes), pod.id == id else {
                if Files.exists(path) { Log.write("ignoring unreadable pod record \(path)") }
                continue
            }
            var spec = ContainerSpec()
            spec.ports = pod.spec.ports
            spec.dns = pod.spec.dns
            spec.extraHosts = pod.spec.extraHosts
            if pod.network.network != "none" {
                networks.restore(containerID: id, name: pod.name, hostname: pod.spec.hostname, spec: spec,
                                 attachment: pod.network, filesDir: podDir(id))
            }
            if let fd = openPodPidfd(pod.pauseMonitorPid, pod.pauseMonitorStartTime) { try? reaper.watch(fd) { _ in } }
            pods.withLock { $0[id] = PodEntry(record: pod) }
        }
    }
}
