#if canImport(Glibc)
import Glibc
#endif
@_exported import BerthErrors
import BerthSystem
import BerthTLS
@_exported import BerthWire
import Synchronization

/// A connection to one Berth agent, with an async API for every call.
///
/// ```swift
/// let client = try await BerthClient.connect(to: "unix:///run/berth/berth.sock")
/// var spec = ContainerSpec()
/// spec.image = "busybox"; spec.args = ["echo", "hi"]; spec.autoRemove = true
/// let run = try await client.run(spec)
/// for try await chunk in run.output { … }
/// let status = try await run.exitStatus()
/// ```
/// Many calls may run at once on one client; each has its own stream.
public final class BerthClient: Sendable {
    /// The default agent address (also what `BERTH_HOST` overrides in the CLI).
    public static let defaultAddress = "unix:///run/berth/berth.sock"

    let connection: Connection
    /// What the agent said in the handshake: its version, node name and features.
    public let hello: HelloResponse
    /// The address this client is connected to.
    public let address: String

    init(connection: Connection, hello: HelloResponse, address: String) {
        self.connection = connection
        self.hello = hello
        self.address = address
    }

    /// Connects to `address` (`unix:///path` or `tcp://host:port`) and performs the
    /// Hello handshake. `keepaliveSeconds` (0: the agent's default) is proposed to it.
    /// The TCP connect and the TLS handshake each give up after `timeoutMillis`; they
    /// run on a thread of their own, never blocking the caller's executor.
    public static func connect(to address: String = defaultAddress, keepaliveSeconds: UInt32 = 0,
                               tls: TLSOptions? = nil, timeoutMillis: Int32 = 10_000) async throws -> BerthClient {
        let parsed = try SocketAddress.parse(address)
        let fd: FileDescriptor
        if case .tcp = parsed {
            fd = try await withCheckedThrowingContinuation { (cont: CheckedContinuation<FileDescriptor, any Error>) in
                startThread("berth-dial") {
                    cont.resume(with: Result { try dial(parsed, tls: tls, timeoutMillis: timeoutMillis) })
                }
            }
        } else {
            fd = try dial(parsed, tls: nil, timeoutMillis: timeoutMillis)
        }
        let connection = Connection(fd: fd, role: .client, label: address)
        connection.start()
        var request = HelloRequest()
        request.keepaliveSeconds = keepaliveSeconds
        request.features = ["flow-control", "keepalive"]
        do {
            let response = try await unary(connection, .hello(request))
            guard case .hello(let hello) = response else { throw unexpected(response, "Hello") }
            // 0: an agent that does not fill the field in; any other value must be ours.
            if hello.protocolVersion != 0 && hello.protocolVersion != berthProtocolVersion {
                throw BerthError(.failedPrecondition, "agent \(hello.nodeName) at \(address) speaks Berth protocol version \(hello.protocolVersion) (berthd \(hello.agentVersion)); this client speaks version \(berthProtocolVersion): use a client and agent of the same protocol version",
                                 reason: "protocol_version")
            }
            connection.setKeepalive(seconds: hello.keepaliveSeconds)
            return BerthClient(connection: connection, hello: hello, address: address)
        } catch let error as BerthError where error.reason == "protocol_version" && !error.message.contains("this client") {
            // The agent refused our version: say which side is which.
            connection.close()
            throw BerthError(.failedPrecondition, "\(address): \(error.message); this client speaks version \(berthProtocolVersion): use a client and agent of the same protocol version",
                             reason: "protocol_version")
        } catch {
            connection.close()
            throw error
        }
    }

    /// Opens the socket and, for TLS, runs the handshake.
    private static func dial(_ address: SocketAddress, tls: TLSOptions?, timeoutMillis: Int32) throws -> FileDescriptor {
        let fd = try SocketAddress.connect(address, timeoutMillis: timeoutMillis)
        guard let tls, case .tcp(let host, _) = address else { return fd }
        // Mutual TLS: the agent's certificate must be the CA's and name the host or IP
        // we dialled (like docker --tlsverify); ours tells the agent who we are.
        let context: TLSContext
        do { context = try TLSContext(server: false, certificate: tls.certificate, key: tls.key, ca: tls.ca) } catch {
            fd.close()
            throw error
        }
        return try TLS.wrap(fd, context: context, expectedHost: host, timeoutMillis: timeoutMillis).0
    }

    /// Whether the connection is still up (false once either side closed it).
    public var isConnected: Bool { !connection.isClosed }

    /// The files of mutual TLS to a remote agent (`berth --tls-ca --tls-cert --tls-key`).
    public struct TLSOptions: Sendable, Hashable {
        public var ca: String
        public var certificate: String
        public var key: String
        public init(ca: String, certificate: String, key: String) { self.ca = ca; self.certificate = certificate; self.key = key }
    }

    /// Closes the connection; calls in flight fail with UNAVAILABLE.
    public func close() { connection.close() }

    deinit { connection.close() }

    // MARK: - Calls

    /// Host and agent facts: kernel, cgroup layout, CPUs, memory, counts.
    public func info() async throws -> InfoResponse {
        let r = try await call(.info)
        guard case .info(let info) = r else { throw Self.unexpected(r, "Info") }
        return info
    }

    /// Imports a root-file-system tarball (plain or gzip) from `path` ("-" for stdin)
    /// as image `name`, streaming it in chunks under the agent's flow control.
    public func importImage(name: String, path: String) async throws -> Image {
        let fd: FileDescriptor
        if path == "-" {
            fd = FileDescriptor(rawValue: 0)
        } else {
            do { fd = try FileDescriptor.open(path, O_RDONLY) } catch {
                throw BerthError(.notFound, "cannot read image tarball \(path): \(error.berthError("open").message)")
            }
        }
        defer { if path != "-" { fd.close() } }
        return try await importImage(name: name, from: fd)
    }

    /// Imports a tarball read from `fd` until end of file.
    public func importImage(name: String, from fd: FileDescriptor) async throws -> Image {
        let r = try await upload(.importImage(name: name), from: fd, what: "image tarball")
        guard case .importImage(let image) = r else { throw Self.unexpected(r, "ImportImage") }
        return image
    }

    /// The agent's images.
    public func listImages() async throws -> [Image] {
        let r = try await call(.listImages)
        guard case .listImages(let images) = r else { throw Self.unexpected(r, "ListImages") }
        return images
    }

    /// Records a container without starting it.
    public func createContainer(_ spec: ContainerSpec) async throws -> Container {
        let r = try await call(.createContainer(spec))
        guard case .createContainer(let c) = r else { throw Self.unexpected(r, "CreateContainer") }
        return c
    }

    /// Starts a created (or exited) container detached; its output goes to its log.
    public func startContainer(_ ref: String) async throws -> Container {
        let r = try await call(.startContainer(ref))
        guard case .startContainer(let c) = r else { throw Self.unexpected(r, "StartContainer") }
        return c
    }

    /// Creates and starts a container and streams its output. Returns once it runs.
    public func run(_ spec: ContainerSpec) async throws -> ContainerRun {
        let events = EventQueue()
        let stream = try connection.openStream(.run(spec), end: true) { event in events.push(event) }
        let first = await withTaskCancellationHandler {
            await events.next()
        } onCancel: {
            stream.cancel(BerthError(.cancelled, "run cancelled by the client"))
        }
        switch first {
        case .response(.run(.started(let container)), _)?:
            return ContainerRun(container: container, call: OutputCall(stream: stream, events: events))
        case .response(.error(let error), _)?:
            throw error
        case .cancelled(let error)?:
            throw error
        case .response(let r, _)?:
            throw Self.unexpected(r, "Run")
        case .data?, nil:
            throw BerthError(.internal, "run stream \(stream.id) ended before the container started")
        }
    }

    /// Waits for a container's current (or next) run to end.
    public func wait(_ ref: String) async throws -> ExitStatus {
        let r = try await call(.wait(ref))
        guard case .wait(let status) = r else { throw Self.unexpected(r, "Wait") }
        return status
    }

    /// The agent's containers: running ones, or all with `all`; only those matching
    /// every filter ("status=exited", "name=web", "label=tier" or "label=tier=web", "id=3f2a").
    public func listContainers(all: Bool = false, filters: [String] = []) async throws -> [Container] {
        let r = try await call(.listContainers(all: all, filters: filters))
        guard case .listContainers(let list) = r else { throw Self.unexpected(r, "ListContainers") }
        return list
    }

    /// Removes a container; `force` kills it first if it runs. Returns its id.
    @discardableResult
    public func removeContainer(_ ref: String, force: Bool = false) async throws -> String {
        let r = try await call(.removeContainer(ref, force: force))
        guard case .removeContainer(let id) = r else { throw Self.unexpected(r, "RemoveContainer") }
        return id
    }

    /// docker stop: the stop signal, then SIGKILL after `timeout` seconds (nil: the
    /// container's own stop timeout). Not an error when it is not running.
    @discardableResult
    public func stopContainer(_ ref: String, timeout: Int32? = nil) async throws -> Container {
        let r = try await call(.stopContainer(ref, timeout: timeout ?? -1))
        guard case .stopContainer(let c) = r else { throw Self.unexpected(r, "StopContainer") }
        return c
    }

    /// Sends a signal ("TERM", "SIGHUP", "9"; empty: SIGKILL) to the container's init.
    public func killContainer(_ ref: String, signal: String = "") async throws {
        let r = try await call(.killContainer(ref, signal: signal))
        guard case .killContainer = r else { throw Self.unexpected(r, "KillContainer") }
    }

    /// Stops (if running) and starts a container.
    @discardableResult
    public func restartContainer(_ ref: String, timeout: Int32? = nil) async throws -> Container {
        let r = try await call(.restartContainer(ref, timeout: timeout ?? -1))
        guard case .restartContainer(let c) = r else { throw Self.unexpected(r, "RestartContainer") }
        return c
    }

    /// A container's full record: spec, state, pid, exit, restart count.
    public func inspectContainer(_ ref: String) async throws -> Container {
        let r = try await call(.inspectContainer(ref))
        guard case .inspectContainer(let c) = r else { throw Self.unexpected(r, "InspectContainer") }
        return c
    }

    /// Creates a bridge network; an empty `subnet` lets the agent pick a free /24.
    public func createNetwork(name: String, subnet: String = "") async throws -> Network {
        let r = try await call(.createNetwork(name: name, subnet: subnet))
        guard case .createNetwork(let n) = r else { throw Self.unexpected(r, "CreateNetwork") }
        return n
    }

    /// The agent's bridge networks with their containers.
    public func listNetworks() async throws -> [Network] {
        let r = try await call(.listNetworks)
        guard case .listNetworks(let n) = r else { throw Self.unexpected(r, "ListNetworks") }
        return n
    }

    public func inspectNetwork(_ ref: String) async throws -> Network {
        let r = try await call(.inspectNetwork(ref))
        guard case .inspectNetwork(let n) = r else { throw Self.unexpected(r, "InspectNetwork") }
        return n
    }

    /// Removes a network that no container uses; returns its name.
    @discardableResult
    public func removeNetwork(_ ref: String) async throws -> String {
        let r = try await call(.removeNetwork(ref))
        guard case .removeNetwork(let name) = r else { throw Self.unexpected(r, "RemoveNetwork") }
        return name
    }

    /// One sample of each container's cgroup (`refs` empty: every running container).
    public func stats(_ refs: [String] = []) async throws -> [ContainerStats] {
        let r = try await call(.stats(refs))
        guard case .stats(let s) = r else { throw Self.unexpected(r, "Stats") }
        return s
    }

    /// Creates a pod: its namespaces pinned, its network endpoint made.
    public func createPod(_ spec: PodSpec) async throws -> Pod {
        let r = try await call(.createPod(spec))
        guard case .createPod(let p) = r else { throw Self.unexpected(r, "CreatePod") }
        return p
    }

    public func listPods() async throws -> [Pod] {
        let r = try await call(.listPods)
        guard case .listPods(let p) = r else { throw Self.unexpected(r, "ListPods") }
        return p
    }

    /// A pod with its pinned namespaces and, per container, its namespaces' inodes.
    public func inspectPod(_ ref: String) async throws -> Pod {
        let r = try await call(.inspectPod(ref))
        guard case .inspectPod(let p) = r else { throw Self.unexpected(r, "InspectPod") }
        return p
    }

    /// Starts the pod's containers that are not running.
    public func startPod(_ ref: String) async throws -> Pod {
        let r = try await call(.startPod(ref))
        guard case .startPod(let p) = r else { throw Self.unexpected(r, "StartPod") }
        return p
    }

    /// Stops the pod's running containers (`timeout`: seconds before SIGKILL).
    public func stopPod(_ ref: String, timeout: Int32? = nil) async throws -> Pod {
        let r = try await call(.stopPod(ref, timeout: timeout ?? -1))
        guard case .stopPod(let p) = r else { throw Self.unexpected(r, "StopPod") }
        return p
    }

    /// Removes a pod and its containers; running ones need `force`.
    @discardableResult
    public func removePod(_ ref: String, force: Bool = false) async throws -> String {
        let r = try await call(.removePod(ref, force: force))
        guard case .removePod(let id) = r else { throw Self.unexpected(r, "RemovePod") }
        return id
    }

    /// A container's log as chunks of stdout and stderr; with `follow`, it goes on
    /// until the container exits.
    public func logs(_ request: LogsRequest) async throws -> OutputSequence {
        let events = EventQueue()
        let stream = try connection.openStream(.logs(request), end: true) { event in events.push(event) }
        return OutputSequence(call: OutputCall(stream: stream, events: events))
    }

    /// Runs a process in a running container. Returns once it has started.
    public func exec(_ request: ExecRequest) async throws -> ExecSession {
        let events = EventQueue()
        let stream = try connection.openStream(.exec(request), end: !request.stdin && !request.tty) { event in events.push(event) }
        let first = await withTaskCancellationHandler {
            await events.next()
        } onCancel: {
            stream.cancel(BerthError(.cancelled, "exec cancelled by the client"))
        }
        switch first {
        case .response(.exec(.started(let pid)), _)?:
            return ExecSession(pid: pid, call: OutputCall(stream: stream, events: events))
        case .response(.error(let error), _)?, .cancelled(let error)?:
            throw error
        case .response(let r, _)?:
            throw Self.unexpected(r, "Exec")
        case .data?, nil:
            throw BerthError(.internal, "exec stream \(stream.id) ended before the process started")
        }
    }

    // MARK: - Plumbing

    func call(_ request: Request) async throws -> Response {
        try await Self.unary(connection, request)
    }

    /// Sends `request` on a new stream and waits for its one RESPONSE. An error
    /// RESPONSE is thrown as the `BerthError` it carries.
    static func unary(_ connection: Connection, _ request: Request) async throws -> Response {
        let result = ResultBox<Response>()
        let stream = try connection.openStream(request, end: true) { event in
            switch event {
            case .response(let r, _): result.set(.success(r))
            case .cancelled(let e): result.set(.failure(e))
            case .data: break
            }
        }
        return try await withTaskCancellationHandler {
            try await result.value()
        } onCancel: {
            stream.cancel(BerthError(.cancelled, "call cancelled by the client"))
            result.set(.failure(BerthError(.cancelled, "call cancelled")))
        }
    }

    static func unexpected(_ response: Response, _ call: String) -> BerthError {
        if case .error(let e) = response { return e }
        return BerthError(.internal, "the agent answered \(call) with an unexpected response", reason: BerthError.Reason.protocolViolation)
    }
}

/// The DATA chunks of a call's stream, then its final event. Shared by Run, Logs and
/// Exec: `output` yields chunks as they come (acknowledging them to the agent's
/// flow control as they are taken); the final RESPONSE ends it.
final class OutputCall: Sendable {
    let stream: Stream
    let events: EventQueue
    /// The final event: the response that ended the stream, or the error.
    let final = Mutex<Result<Response, BerthError>?>(nil)

    init(stream: Stream, events: EventQueue) {
        self.stream = stream
        self.events = events
    }

    func cancel(_ why: String) {
        stream.cancel(BerthError(.cancelled, why))
    }

    /// The next chunk, or nil once the final event is in.
    func nextChunk() async throws -> Chunk? {
        switch final.withLock({ $0 }) {
        case .success?: return nil
        case .failure(let e)?: throw e
        case nil: break
        }
        let event = await withTaskCancellationHandler {
            await events.next()
        } onCancel: { [stream] in
            stream.cancel(BerthError(.cancelled, "cancelled by the client"))
        }
        let result: Result<Response, BerthError>
        switch event {
        case .data(let chunk, _)?:
            stream.consumed(chunk)
            return chunk
        case .response(.error(let error), _)?, .cancelled(let error)?:
            result = .failure(error)
        case .response(let response, _)?:
            result = .success(response)
        case nil:
            result = .failure(BerthError(.internal, "stream \(stream.id) ended without a final response"))
        }
        final.withLock { $0 = result }
        if case .failure(let e) = result { throw e }
        return nil
    }

    /// Reads (and drops) remaining output, then returns the final response.
    func finish() async throws -> Response {
        while try await nextChunk() != nil {}
        switch final.withLock({ $0 }) {
        case .success(let r)?: return r
        case .failure(let e)?: throw e
        case nil: throw BerthError(.internal, "stream \(stream.id) ended without a final response")
        }
    }

    /// Sends stdin or a resize, waiting (on a thread of its own, not the async pool)
    /// for the agent's window.
    func send(_ chunk: Chunk, end: Bool) async throws {
        let stream = self.stream
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Void, any Error>) in
            startThread("berth-send") {
                do {
                    if chunk.data.isEmpty && end { try stream.end() } else { try stream.sendData(chunk, end: end) }
                    cont.resume()
                } catch {
                    cont.resume(throwing: error)
                }
            }
        }
    }
}

/// The output of a call as an `AsyncSequence` of chunks (stdout and stderr, in the
/// order the agent sent them). Iterate it once.
public struct OutputSequence: AsyncSequence, Sendable {
    public typealias Element = Chunk
    let call: OutputCall

    /// Iterates the chunks; throws if the call failed or was cancelled.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let call: OutputCall
        public mutating func next() async throws -> Chunk? { try await call.nextChunk() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(call: call) }

    /// Stops the call (the agent stops following the log).
    public func cancel() { call.cancel("cancelled by the client") }
}

/// A running container's output and, after it, its exit status.
public final class ContainerRun: Sendable {
    /// The container as it started (id, name, pid).
    public let container: Container
    let call: OutputCall

    init(container: Container, call: OutputCall) {
        self.container = container
        self.call = call
    }

    /// The container's stdout and stderr chunks; ends when the container has exited.
    public var output: OutputSequence { OutputSequence(call: call) }

    /// Kills the container (the agent does, when the stream is cancelled).
    public func cancel() { call.cancel("run cancelled by the client") }

    /// The exit status, once the container has exited; output not yet read is discarded.
    public func exitStatus() async throws -> ExitStatus {
        let r = try await call.finish()
        guard case .run(.exit(let status)) = r else { throw BerthClient.unexpected(r, "Run") }
        return status
    }
}

/// A process started by `exec`: its output, its stdin, its terminal, its exit status.
public final class ExecSession: Sendable {
    /// The process's pid on the agent's host.
    public let pid: Int32
    let call: OutputCall

    init(pid: Int32, call: OutputCall) {
        self.pid = pid
        self.call = call
    }

    /// stdout and stderr (with a tty, everything is stdout).
    public var output: OutputSequence { OutputSequence(call: call) }

    /// Writes to the process's stdin (the exec must have been made with `stdin`).
    public func write(_ bytes: [UInt8]) async throws { try await call.send(Chunk(channel: .stdin, data: bytes), end: false) }

    /// Closes the process's stdin (EOF for a pipe).
    public func closeStdin() async throws { try await call.send(Chunk(channel: .stdin, data: []), end: true) }

    /// Tells the process's terminal its new size (SIGWINCH inside).
    public func resize(rows: UInt16, cols: UInt16) async throws {
        try await call.send(.resize(rows: rows, cols: cols), end: false)
    }

    /// Stops the process (SIGTERM, then SIGKILL after 5 s).
    public func cancel() { call.cancel("exec cancelled by the client") }

    /// The exit status; output not yet read is discarded.
    public func exitStatus() async throws -> ExitStatus {
        let r = try await call.finish()
        guard case .exec(.exit(let status)) = r else { throw BerthClient.unexpected(r, "Exec") }
        return status
    }
}

/// The events of one stream, pushed by the connection's reader thread and taken by
/// one async consumer. Unbounded here, but bounded in practice: the agent sends DATA
/// only within the window, which grows only as the consumer takes chunks.
final class EventQueue: Sendable {
    struct State {
        var buffer: [StreamEvent] = []
        var head = 0
        var waiter: CheckedContinuation<StreamEvent?, Never>?
        var finished = false
    }
    let state = Mutex(State())

    func push(_ event: StreamEvent) {
        let waiter = state.withLock { s -> CheckedContinuation<StreamEvent?, Never>? in
            if s.finished { return nil }
            switch event {
            case .cancelled, .response(_, end: true), .data(_, end: true): s.finished = true
            default: break
            }
            if let w = s.waiter {
                s.waiter = nil
                return w
            }
            s.buffer.append(event)
            return nil
        }
        waiter?.resume(returning: event)
    }

    /// The next event; nil once the stream has ended and every event was taken.
    func next() async -> StreamEvent? {
        await withCheckedContinuation { cont in
            let ready = state.withLock { s -> StreamEvent?? in
                if s.head < s.buffer.count {
                    let e = s.buffer[s.head]
                    s.head += 1
                    if s.head > 64 && s.head * 2 > s.buffer.count {
                        s.buffer.removeFirst(s.head)
                        s.head = 0
                    }
                    return .some(e)
                }
                if s.finished { return .some(nil) }
                s.waiter = cont
                return nil
            }
            if let ready { cont.resume(returning: ready) }
        }
    }
}

/// A one-shot result that an async caller waits for and a callback thread sets.
final class ResultBox<T: Sendable>: Sendable {
    struct State {
        var result: Result<T, any Error>?
        var waiter: CheckedContinuation<T, any Error>?
    }
    let state = Mutex(State())

    /// Sets the result (the first call wins) and resumes the waiter.
    func set(_ result: Result<T, any Error>) {
        let waiter = state.withLock { s -> CheckedContinuation<T, any Error>? in
            guard s.result == nil else { return nil }
            s.result = result
            let w = s.waiter
            s.waiter = nil
            return w
        }
        waiter?.resume(with: result)
    }

    var isSet: Bool { state.withLock { $0.result != nil } }

    func value() async throws -> T {
        try await withCheckedThrowingContinuation { cont in
            let ready = state.withLock { s -> Result<T, any Error>? in
                if let r = s.result { return r }
                s.waiter = cont
                return nil
            }
            if let ready { cont.resume(with: ready) }
        }
    }
}
