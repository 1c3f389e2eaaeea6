#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthRuntime
import BerthSystem
import BerthTLS
import BerthWire
import Synchronization

/// How an agent is set up (`berthd`'s flags).
public struct AgentConfig: Sendable {
    public var socketPath = "/run/berth/berth.sock"
    public var stateDir = "/var/lib/berth"
    public var runDir = "/run/berth"
    /// Extra listeners, e.g. `tcp://127.0.0.1:7946` (loopback only unless `insecureTCP`).
    public var listen: [String] = []
    /// Allow plain TCP listeners on non-loopback addresses (a loud warning at start and in Info).
    public var insecureTCP = false
    /// The group of the Unix socket (and of its directory when the agent creates it).
    public var socketGroup: gid_t?
    /// Connections served at once; the one beyond gets GOAWAY RESOURCE_EXHAUSTED.
    public var maxConnections = 256
    /// Streams open at once on one connection; the REQUEST beyond gets RESOURCE_EXHAUSTED.
    public var maxStreams = 128
    /// Seconds a new connection has to complete Hello (0 = no limit).
    public var handshakeTimeoutSeconds: UInt32 = 10
    /// Seconds a connection may stay with no open stream and no stream frame (0 = no limit).
    public var idleTimeoutSeconds: UInt32 = 300
    /// Seconds a partly received frame may wait for its next byte (0 = no limit).
    public var frameTimeoutSeconds: UInt32 = 10
    /// The name this node reports in Hello and Info; the host name by default.
    public var nodeName = Host.hostname
    /// The keepalive interval the agent uses when the client proposes none.
    public var keepaliveSeconds: UInt32 = 30
    /// The berth-monitor executable; by default the one next to this program.
    public var monitorBinary = AgentConfig.siblingExecutable("berth-monitor")
    /// Log rotation per container (docs/monitor.md).
    public var logMaxBytes: UInt64 = 10 << 20
    public var logMaxFiles = 3
    /// Bridge networks: names on the host, subnets, the default network.
    public var network = NetworkOptions()
    /// Berth's cgroup (docs/cgroups.md).
    public var cgroupParent = "berth"
    /// Mutual TLS on the TCP listeners (`--tls-cert/--tls-key/--tls-ca`); with it a
    /// listener may take any address, not only loopback (docs/security.md).
    public var tlsCertificate = ""
    public var tlsKey = ""
    public var tlsCA = ""
    /// Registries: plain-HTTP ones, CAs, timeout, download speed (Images.swift).
    public var registry = RegistryOptions()
    public init() {}

    /// `name` in the directory of the running executable.
    public static func siblingExecutable(_ name: String) -> String {
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { readlink("/proc/self/exe", $0.baseAddress!.assumingMemoryBound(to: CChar.self), 4095) }
        guard n > 0 else { return "/usr/local/bin/" + name }
        return Files.dirname(of: String(decoding: buf[0..<n], as: UTF8.self)) + "/" + name
    }
}

/// The node agent: listeners, connections, the Hello handshake and the dispatch of
/// calls to the runtime. One thread per connection reads, one writes, and each call
/// runs on a thread of its own (calls block on disk, processes and flow control).
public final class Agent: Sendable {
    public let config: AgentConfig
    let runtime: ContainerRuntime
    /// The TCP listeners' mutual TLS; nil: plain (loopback only).
    let tls: TLSContext?
    let lockFD: FileDescriptor
    let listeners: Mutex<[Listener]> = Mutex([])
    let connections: Mutex<[ObjectIdentifier: Connection]> = Mutex([:])
    /// TLS connections still in their handshake; they count against --max-connections
    /// (changed only with the `connections` lock held, so the two add up exactly).
    let handshaking = Atomic<Int>(0)
    let stopping = Atomic<Bool>(false)
    /// How this agent is set up unsafely, one sentence each: logged at start, shown by Info.
    let warnings: [String]

    static let features = ["flow-control", "keepalive", "run", "import-image", "logs", "exec", "restart-policy",
                           "load-image", "pull-image"]

    /// Takes the run-dir lock (one agent per set of dirs), opens the runtime state and
    /// the listeners. Nothing is served until `serve()`.
    public init(config: AgentConfig) throws {
        self.config = config
        // The socket's directory is locked down only when the agent makes it (below, or
        // as the run dir): an existing directory belongs to the administrator.
        let socketDirExisted = Files.exists(Files.dirname(of: config.socketPath))
        try Files.makeDirectories(config.runDir, mode: 0o755)
        try Files.makeDirectories(config.stateDir, mode: 0o700)
        let lockPath = config.runDir + "/berthd.lock"
        lockFD = try FileDescriptor.open(lockPath, O_RDWR | O_CREAT, mode: 0o600)
        if flock(lockFD.rawValue, LOCK_EX | LOCK_NB) != 0 {
            lockFD.close()
            throw BerthError(.alreadyExists, "another berthd is using run dir \(config.runDir) (\(lockPath) is locked)")
        }
        _ = ftruncate(lockFD.rawValue, 0)
        try? lockFD.writeAll("\(getpid())\n")
        do {
            guard access(config.monitorBinary, X_OK) == 0 else {
                throw BerthError(.notFound, "berth-monitor not found at \(config.monitorBinary); install it next to berthd or pass --monitor PATH")
            }
            if !config.tlsCertificate.isEmpty || !config.tlsKey.isEmpty || !config.tlsCA.isEmpty {
                tls = try TLSContext(server: true, certificate: config.tlsCertificate, key: config.tlsKey, ca: config.tlsCA)
            } else {
                tls = nil
            }
            var options = RuntimeOptions(monitorBinary: config.monitorBinary)
            options.logMaxBytes = config.logMaxBytes
            options.logMaxFiles = config.logMaxFiles
            options.network = config.network
            options.cgroupParent = config.cgroupParent
            runtime = try ContainerRuntime(stateDir: config.stateDir, runDir: config.runDir, options: options)
            var opened: [Listener] = []
            var warnings: [String] = []
            do {
                opened.append(try Listener.open(.unix(path: config.socketPath), group: config.socketGroup,
                                                createDirectory: !socketDirExisted))
                // Listener.open refuses plain TCP on anything but loopback, unless the agent
                // has mutual TLS (then any address is fine) or --insecure-tcp (then it warns).
                for address in config.listen {
                    let l = try Listener.open(try SocketAddress.parse(address), anyHost: tls != nil || config.insecureTCP)
                    opened.append(l)
                    if tls == nil, case .tcp(let host, _) = l.address, (try? SocketAddress.loopbackOnly(host)) == nil {
                        warnings.append("plain TCP on \(l.address): anyone who can reach it controls this host as root")
                    }
                }
            } catch {
                for l in opened { l.close() }
                throw error
            }
            listeners.withLock { $0 = opened }
            self.warnings = warnings
        } catch {
            lockFD.close()
            throw error
        }
    }

    /// The addresses actually listened on (a TCP port 0 resolved to the real port).
    public var addresses: [SocketAddress] { listeners.withLock { $0.map(\.address) } }

    /// Starts accepting connections on every listener.
    public func serve() {
        for w in warnings { Log.write("WARNING: \(w)") }
        for l in listeners.withLock({ $0 }) {
            Log.write("listening on \(l.address)")
            l.acceptLoop { [self] fd, label in accept(fd, label) }
        }
    }

    /// Stops listening, says GOAWAY to every client and releases the run-dir lock.
    /// Containers keep running under their monitors; the next agent adopts them.
    public func shutdown() {
        if stopping.exchange(true, ordering: .acquiringAndReleasing) { return }
        Log.write("shutting down")
        runtime.events.close()
        for l in listeners.withLock({ $0 }) { l.close() }
        for c in connections.withLock({ Array($0.values) }) {
            c.close(BerthError(.unavailable, "agent \(config.nodeName) is shutting down"))
        }
        _ = unlink(config.runDir + "/berthd.lock")
        lockFD.close()
    }

    // MARK: - Connections

    final class Session: Sendable {
        let greeted = Atomic<Bool>(false)
        let role: Role
        let peer: String
        init(role: Role, peer: String) { self.role = role; self.peer = peer }
    }

    /// A TCP connection on a TLS agent: the handshake (the client's certificate must be
    /// the CA's; refused before any request is read) on a thread of its own, then the
    /// connection as usual, with the role its certificate gives.
    /// A connection in its handshake holds a slot of --max-connections, so a flood of
    /// handshakes cannot take more threads than the limit allows; beyond it the socket is
    /// closed at once (nothing can be said to a peer before TLS is up).
    private func acceptTLS(_ fd: FileDescriptor, _ label: String, _ context: TLSContext) {
        let admitted = connections.withLock { c in
            guard c.count + handshaking.load(ordering: .relaxed) < config.maxConnections else { return false }
            handshaking.add(1, ordering: .relaxed)
            return true
        }
        guard admitted else {
            fd.close()
            Log.write("TLS connection \(label) refused: \(config.maxConnections) connections already")
            return
        }
        let timeout = config.handshakeTimeoutSeconds == 0 ? Int32.max : Int32(clamping: UInt64(config.handshakeTimeoutSeconds) * 1000)
        startThread("berth-tls-accept") { [self] in
            do {
                let (plain, peer) = try TLS.wrap(fd, context: context, timeoutMillis: timeout)
                let role = Role(peer)
                serve(plain, "\(label) \(peer.commonName) (\(role.rawValue))", role: role, reserved: true)
            } catch {
                connections.withLock { _ in _ = handshaking.subtract(1, ordering: .relaxed) }
                Log.write("TLS connection \(label) refused: \(error.berthError("tls").message)")
            }
        }
    }

    /// A new connection from a listener: TCP on a TLS agent goes through the handshake
    /// first; the Unix socket (and plain loopback TCP) is an admin's.
    private func accept(_ fd: FileDescriptor, _ label: String) {
        if let context = tls, label.hasPrefix("tcp") {
            acceptTLS(fd, label, context)
        } else {
            serve(fd, label, role: .admin)
        }
    }

    /// `reserved`: the connection already holds a slot taken for its TLS handshake.
    private func serve(_ fd: FileDescriptor, _ label: String, role: Role, reserved: Bool = false) {
        if stopping.load(ordering: .acquiring) {
            if reserved { connections.withLock { _ in _ = handshaking.subtract(1, ordering: .relaxed) } }
            fd.close()
            return
        }
        var options = ConnectionOptions()
        options.keepaliveSeconds = config.keepaliveSeconds
        options.maxStreams = config.maxStreams
        options.handshakeTimeoutSeconds = config.handshakeTimeoutSeconds
        options.idleTimeoutSeconds = config.idleTimeoutSeconds
        options.frameTimeoutSeconds = config.frameTimeoutSeconds
        let connection = Connection(fd: fd, role: .server, label: label, options: options)
        let key = ObjectIdentifier(connection)
        let session = Session(role: role, peer: label)
        let admitted = connections.withLock { c in
            if reserved { handshaking.subtract(1, ordering: .relaxed) }
            guard c.count + handshaking.load(ordering: .relaxed) < config.maxConnections else { return false }
            c[key] = connection
            return true
        }
        guard admitted else {
            // Say why, then hang up: GOAWAY is written by the connection's writer thread.
            connection.close(BerthError(.resourceExhausted, "agent \(config.nodeName) has \(config.maxConnections) connections, the most it takes; try again later"))
            connection.start()
            Log.write("connection \(label) refused: \(config.maxConnections) connections already")
            return
        }
        connection.start(onRequest: { [self] stream, request in
            // A call that only reads in-memory state and answers once runs on the
            // connection's reader thread: a thread per call was a third of Info's cost
            // (bench/results). Anything that waits, streams or does real work gets its own.
            if request.answersAtOnce {
                self.dispatch(stream, request, session)
            } else {
                startThread("berth-call") { self.dispatch(stream, request, session) }
            }
        }, onClose: { [self] error in
            connections.withLock { $0[key] = nil }
            if let error { Log.write("connection \(label) closed: \(error)") }
        })
    }

    /// An answer as the session's role may see it.
    private func viewable(_ response: Response, _ session: Session) -> Response {
        session.role == .viewer ? response.redactedForViewer() : response
    }

    /// Runs one call and answers it; every failure becomes an error RESPONSE on the
    /// call's own stream, so a bad call never disturbs the connection or the agent.
    private func dispatch(_ stream: Stream, _ request: Request, _ session: Session) {
        do {
            if case .hello(let hello) = request {
                try self.hello(stream, hello, session)
                return
            }
            if session.role == .viewer && !request.isReadOnly {
                Log.write("permission denied: \(session.peer) (viewer) asked for \(request.callName)")
                throw BerthError(.permissionDenied, "\(session.peer) is a viewer: \(request.callName) needs the admin role")
            }
            guard session.greeted.load(ordering: .acquiring) else {
                throw BerthError(.failedPrecondition, "the connection must start with Hello before any other call")
            }
            switch request {
            case .hello: break
            case .info:
                try stream.send(viewable(.info(info()), session), end: true)
            case .importImage(let name):
                try importImage(stream, name)
            case .listImages:
                try stream.send(.listImages(runtime.images.list().map(\.wire)), end: true)
            case .loadImage, .pullImage, .inspectImage, .removeImage, .pruneImages:
                try images(stream, request)  // Images.swift
            case .createContainer(let spec):
                try stream.send(.createContainer(runtime.create(spec)), end: true)
            case .startContainer(let ref):
                let (container, _) = try runtime.start(ref)
                try stream.send(.startContainer(container), end: true)
            case .stopContainer(let ref, let timeout):
                try stream.send(.stopContainer(runtime.stop(ref, timeout: timeout < 0 ? nil : timeout)), end: true)
            case .killContainer(let ref, let signal):
                try runtime.kill(ref, signal: signal.isEmpty ? SIGKILL : Signals.parse(signal))
                try stream.send(.killContainer, end: true)
            case .restartContainer(let ref, let timeout):
                try stream.send(.restartContainer(runtime.restart(ref, timeout: timeout < 0 ? nil : timeout)), end: true)
            case .inspectContainer(let ref):
                try stream.send(viewable(.inspectContainer(runtime.inspect(ref)), session), end: true)
            case .logs(let request):
                try logs(stream, request)
            case .exec(let request):
                try exec(stream, request)
            case .run(let spec):
                try run(stream, spec)
            case .wait(let ref):
                try wait(stream, ref)
            case .listContainers(let all, let filters):
                try stream.send(viewable(.listContainers(runtime.list(all: all, filters: try ContainerFilter.parse(filters))), session), end: true)
            case .removeContainer(let ref, let force):
                try stream.send(.removeContainer(id: runtime.remove(ref, force: force)), end: true)
            case .createNetwork(let name, let subnet):
                try stream.send(.createNetwork(runtime.networks.create(name: name, subnet: subnet)), end: true)
            case .listNetworks:
                try stream.send(.listNetworks(runtime.networks.list()), end: true)
            case .inspectNetwork(let ref):
                try stream.send(.inspectNetwork(runtime.networks.inspect(ref)), end: true)
            case .removeNetwork(let ref):
                try stream.send(.removeNetwork(name: runtime.networks.remove(ref)), end: true)
            case .createPod(let spec):
                try stream.send(.createPod(runtime.createPod(spec)), end: true)
            case .listPods:
                try stream.send(viewable(.listPods(runtime.listPods()), session), end: true)
            case .inspectPod(let ref):
                try stream.send(viewable(.inspectPod(runtime.inspectPod(ref)), session), end: true)
            case .startPod(let ref):
                try stream.send(.startPod(runtime.startPod(ref)), end: true)
            case .stopPod(let ref, let timeout):
                try stream.send(.stopPod(runtime.stopPod(ref, timeout: timeout < 0 ? nil : timeout)), end: true)
            case .removePod(let ref, let force):
                try stream.send(.removePod(id: runtime.removePod(ref, force: force)), end: true)
            case .stats(let refs):
                try stream.send(.stats(runtime.stats(refs)), end: true)
            case .events(let request):
                try events(stream, request, session)
            }
        } catch {
            let e = error.berthError("call")
            if e.code == .internal { Log.write("internal error: \(e.message)") }
            try? stream.send(.error(e), end: true)
        }
    }

    private func hello(_ stream: Stream, _ hello: HelloRequest, _ session: Session) throws {
        guard hello.protocolVersion == berthProtocolVersion else {
            let error = BerthError(.failedPrecondition, "unsupported protocol version \(hello.protocolVersion): agent \(config.nodeName) (berthd \(berthVersion)) speaks Berth protocol version \(berthProtocolVersion)",
                                   reason: "protocol_version")
            try? stream.send(.error(error), end: true)
            stream.connection.close(error)
            return
        }
        var response = HelloResponse()
        response.protocolVersion = berthProtocolVersion
        response.agentVersion = berthVersion
        response.nodeName = config.nodeName
        response.features = Agent.features
        response.keepaliveSeconds = hello.keepaliveSeconds == 0 ? config.keepaliveSeconds : min(max(hello.keepaliveSeconds, 1), 3600)
        response.initialWindow = ConnectionOptions.initialWindow
        response.maxPayload = FrameHeader.maxPayload
        stream.connection.setKeepalive(seconds: response.keepaliveSeconds)
        stream.connection.handshakeCompleted()
        session.greeted.store(true, ordering: .releasing)
        try stream.send(.hello(response), end: true)
    }

    private func info() -> InfoResponse {
        let host = HostInfo.current()
        let counts = runtime.counts()
        var info = InfoResponse()
        info.hostname = host.hostname
        info.nodeName = config.nodeName
        info.agentVersion = berthVersion
        info.kernel = host.kernel
        info.os = host.os
        info.architecture = host.architecture
        info.cgroupLayout = host.cgroupLayout.rawValue
        info.cpus = host.cpus
        info.memoryBytes = host.memoryBytes
        info.containers = UInt32(counts.total)
        info.containersRunning = UInt32(counts.running)
        info.containersStopped = UInt32(counts.stopped)
        info.images = UInt32(runtime.images.count)
        info.stateDir = config.stateDir
        info.runDir = config.runDir
        info.networks = runtime.networks.list()
        info.warnings = warnings
        addDiskUse(&info)  // Images.swift
        info.memoryAvailableBytes = host.memoryAvailableBytes
        (info.load1, info.load5, info.load15) = host.load
        info.uptimeSeconds = host.uptimeSeconds
        info.pods = UInt32(runtime.listPods().count)
        info.protocolVersion = berthProtocolVersion
        return info
    }

    /// Pulls the tarball from the stream's DATA frames into the image store.
    private func importImage(_ stream: Stream, _ name: String) throws {
        let image = try runtime.images.importImage(name: name, read: uploadReader(stream))
        runtime.events.record(Event(type: "image", action: "import", id: image.id, name: image.name))
        try stream.send(.importImage(image.wire), end: true)
    }

    /// The DATA of an upload stream (image import and load), chunk by chunk, nil at its
    /// end. Frames are acknowledged (window returned to the client) only as the reader
    /// takes them, so a slow extractor slows the client down rather than buffering.
    func uploadReader(_ stream: Stream) -> () throws -> [UInt8]? {
        var ended = false
        return {
            while !ended {
                switch stream.receive() {
                case .data(let chunk, let end):
                    ended = end
                    if !chunk.data.isEmpty { return chunk.data }
                case .response:
                    throw BerthError(.invalidArgument, "unexpected RESPONSE frame during an image upload", reason: BerthError.Reason.protocolViolation)
                case .cancelled(let error):
                    throw error
                }
            }
            return nil
        }
    }

    /// Create + start + output + exit status on one stream. The output is the
    /// container's log, followed as the monitor writes it. Cancelling the stream (or
    /// losing the connection) kills the container.
    private func run(_ stream: Stream, _ spec: ContainerSpec) throws {
        let container = try runtime.create(spec)
        let started: Container, waiter: ExitWaiter
        do {
            (started, waiter) = try runtime.start(container.id, attach: true)
        } catch {
            if spec.autoRemove { _ = try? runtime.remove(container.id, force: true) }
            throw error
        }
        let runtime = self.runtime
        let id = container.id
        var detached = false
        defer { if !detached { runtime.detach(id) } }
        stream.setSink { event in
            if case .cancelled = event { try? runtime.kill(id, signal: SIGKILL) }
        }
        do {
            try stream.send(.run(.started(started)), end: false)
            try followLog(id, LogOptions(follow: true), to: stream, until: waiter)
        } catch {
            // The client is gone or cancelled: the container must not run unattended.
            try? runtime.kill(id, signal: SIGKILL)
            _ = waiter.wait()
            throw error
        }
        let exit = waiter.wait()
        // Detach before answering: a --rm container is gone by the time the client hears
        // its exit (as with `docker run --rm`), so a `ps -a` right after never shows it.
        detached = true
        runtime.detach(id)
        try stream.send(.run(.exit(exit)), end: true)
    }

    /// Streams a container's log as DATA frames (blocking on the client's window) until
    /// the end of the log, or, when following, until `waiter`'s run has ended and the
    /// monitor has written everything.
    private func followLog(_ id: String, _ options: LogOptions, to stream: Stream, until waiter: ExitWaiter?) throws {
        let reader = LogReader(path: runtime.logPath(id), options: options)
        try reader.run(emit: { logStream, bytes in
            try stream.sendData(Chunk(channel: logStream == .stderr ? .stderr : .stdout, data: bytes))
        }, isDone: {
            if !stream.isOpen { return true }
            // The exit file, not only the reaper's record: the reaper records the exit
            // after the files' last change, and the follower would then sleep out its
            // 100 ms poll before noticing (bench/results: run-to-exit).
            guard let waiter else { return true }
            return waiter.hasEnded || runtime.outputComplete(id)
        })
        if !stream.isOpen { throw BerthError(.cancelled, "stream \(stream.id) was cancelled") }
    }

    private func logs(_ stream: Stream, _ request: LogsRequest) throws {
        let container = try runtime.inspect(request.container)
        var options = LogOptions(follow: request.follow)
        options.tail = request.tail.map(Int.init)
        options.sinceNanos = request.sinceUnixNano > 0 ? request.sinceUnixNano : nil
        options.timestamps = request.timestamps
        // Follow a running container until its run ends; anything else is read to the end.
        let waiter = request.follow && container.state == .running ? try runtime.exitWaiter(container.id) : nil
        try followLog(container.id, options, to: stream, until: waiter)
        // The output is complete once the exit file is there; the end of the stream
        // waits for the exit to be recorded too, so that after `logs -f` returns the
        // container is exited, as with docker (checked now and then for a cancel).
        if let waiter {
            while waiter.wait(timeoutNanos: 1_000_000_000) == nil {
                if !stream.isOpen { throw BerthError(.cancelled, "stream \(stream.id) was cancelled") }
            }
        }
        try stream.send(.logs, end: true)
    }

    /// Sends the journal's events after the request's starting point in batches; with
    /// `follow`, goes on sending new ones as they are recorded until the client cancels
    /// or the agent stops. Without `follow`, the last batch ends the stream.
    private func events(_ stream: Stream, _ request: EventsRequest, _ session: Session) throws {
        let journal = runtime.events
        var cursor = journal.cursor(for: request)
        var first = true
        while true {
            let batch = journal.events(after: cursor, limit: 500)
            if let last = batch.events.last { cursor = last.seq }
            let more = journal.lastSeq > cursor
            if !request.follow && !more {
                try stream.send(viewable(.events(batch), session), end: true)
                return
            }
            // The first answer goes out even when empty: the client knows the stream is live.
            if first || !batch.events.isEmpty || batch.lost > 0 { try stream.send(viewable(.events(batch), session), end: false) }
            first = false
            if more { continue }
            while !journal.waitForEvents(after: cursor, timeoutNanos: 1_000_000_000) {
                if !stream.isOpen || stopping.load(ordering: .acquiring) {
                    if stream.isOpen { try? stream.send(.error(BerthError(.unavailable, "agent \(config.nodeName) is stopping")), end: true) }
                    return
                }
            }
        }
    }

    private func wait(_ stream: Stream, _ ref: String) throws {
        let waiter = try runtime.exitWaiter(ref)
        // Wake up now and then to notice a cancelled call rather than wait forever.
        while true {
            if let exit = waiter.wait(timeoutNanos: 1_000_000_000) {
                try stream.send(.wait(exit), end: true)
                return
            }
            if !stream.isOpen { return }
        }
    }
}

extension ImageRecord {
    var wire: Image {
        var i = Image(name: name, id: id, sizeBytes: sizeBytes, createdUnix: createdUnix)
        i.config = config
        i.layers = layers
        i.digest = digest
        i.os = os
        i.architecture = architecture
        return i
    }
}

