#if canImport(Glibc)
import Glibc
#endif
import BerthSystem
import Synchronization

/// One node's answer in a fan-out: its value or why it has none.
public struct NodeResult<T: Sendable>: Sendable {
    public let node: String
    public let result: Result<T, BerthError>
    /// The value, when the node answered.
    public var value: T? { if case .success(let v) = result { v } else { nil } }
    /// The error, when it did not.
    public var error: BerthError? { if case .failure(let e) = result { e } else { nil } }
}

/// An event from one node of a fleet, or news about that node's event stream.
public enum FleetEvent: Sendable {
    /// An event of `node`'s journal.
    case event(node: String, Event)
    /// The stream from `node` broke; the fleet reconnects with backoff and resumes
    /// after the last event it delivered.
    case disconnected(node: String, BerthError)
    /// The stream from `node` is (again) live.
    case connected(node: String)
    /// `node`'s journal no longer held `count` events the fleet asked for (retention).
    case lost(node: String, count: UInt64)
}

/// Many agents behind one object, for schedulers and for `berth --all`: one reused
/// connection per node (made on first use, remade after a drop with exponential
/// backoff), calls fanned out concurrently with a per-call timeout, results keyed by
/// node, and one merged event stream that survives drops without losing events.
///
/// ```swift
/// let fleet = try Fleet(hostsFile: HostsFile.defaultPath)
/// for r in await fleet.forEach({ try await $0.info() }) {
///     print(r.node, r.value?.containersRunning ?? -1, r.error?.message ?? "")
/// }
/// ```
/// Cancelling the calling task cancels the calls in flight on every node.
public final class Fleet: Sendable {
    /// The nodes, in the hosts file's order.
    public let nodes: [Node]
    /// How long one call on one node may take (connecting included) before it fails
    /// with DEADLINE_EXCEEDED.
    public let callTimeout: Duration
    let links: [String: Link]

    /// A fleet of `nodes`. Nothing is connected until a call needs it. After a failed
    /// connect a node is not dialled again for `backoff`, doubling with each failure up
    /// to 10 s.
    public init(nodes: [Node], callTimeout: Duration = .seconds(10), backoff: Duration = .milliseconds(100)) {
        self.nodes = nodes
        self.callTimeout = callTimeout
        let backoffMillis = UInt64(max(0, backoff.milliseconds))
        var links: [String: Link] = [:]
        for n in nodes { links[n.name] = Link(n, backoffMillis: max(1, backoffMillis)) }
        self.links = links
    }

    /// A fleet of every node of a hosts file.
    public convenience init(hostsFile path: String = HostsFile.defaultPath, callTimeout: Duration = .seconds(10),
                            backoff: Duration = .milliseconds(100)) throws {
        self.init(nodes: try HostsFile.load(path).nodes, callTimeout: callTimeout, backoff: backoff)
    }

    /// The names of the nodes.
    public var nodeNames: [String] { nodes.map(\.name) }

    /// The connection to `node`, reused while it is up. A node whose last connect
    /// failed is not dialled again before its backoff (by default 100 ms doubling to 10 s) has
    /// passed: the call fails at once with UNAVAILABLE and the last reason.
    public func client(_ node: String) async throws -> BerthClient {
        guard let link = links[node] else {
            throw BerthError(.notFound, "no node \"\(node)\" in this fleet (it has: \(nodeNames.joined(separator: ", ")))")
        }
        return try await link.client(timeout: callTimeout)
    }

    /// Runs `body` on each of `names` (default: every node) concurrently, each with
    /// `timeout` (default: `callTimeout`); the results come in the order of `names`.
    public func forEach<T: Sendable>(_ names: [String]? = nil, timeout: Duration? = nil,
                                     _ body: @escaping @Sendable (BerthClient) async throws -> T) async -> [NodeResult<T>] {
        let targets = names ?? nodeNames
        let limit = timeout ?? callTimeout
        return await withTaskGroup(of: (Int, NodeResult<T>).self) { group in
            for (i, name) in targets.enumerated() {
                group.addTask {
                    do {
                        let value = try await Fleet.withTimeout(limit, node: name) {
                            try await body(try await self.client(name))
                        }
                        return (i, NodeResult(node: name, result: .success(value)))
                    } catch {
                        return (i, NodeResult(node: name, result: .failure(error.berthError("call"))))
                    }
                }
            }
            var results = [NodeResult<T>?](repeating: nil, count: targets.count)
            for await (i, r) in group { results[i] = r }
            return results.compactMap { $0 }
        }
    }

    /// Info from each node: what `berth node ls` shows and a scheduler weighs.
    public func info(_ names: [String]? = nil) async -> [NodeResult<InfoResponse>] {
        await forEach(names) { try await $0.info() }
    }

    /// Containers of each node.
    public func listContainers(_ names: [String]? = nil, all: Bool = false, filters: [String] = []) async -> [NodeResult<[Container]>] {
        await forEach(names) { try await $0.listContainers(all: all, filters: filters) }
    }

    /// Pods of each node.
    public func listPods(_ names: [String]? = nil) async -> [NodeResult<[Pod]>] {
        await forEach(names) { try await $0.listPods() }
    }

    /// The events of every node (or of `names`), merged as they arrive, from `since`
    /// (per node: the last sequence number already seen; absent: from now). A stream
    /// that breaks is remade with backoff and resumes after the last event delivered,
    /// so nothing the agent's journal still holds is lost; `.lost` says when the
    /// journal had already dropped some. Ends when the consumer stops iterating.
    public func events(_ names: [String]? = nil, since: [String: UInt64] = [:]) -> AsyncStream<FleetEvent> {
        let (stream, continuation) = AsyncStream<FleetEvent>.makeStream()
        let targets = names ?? nodeNames
        let task = Task {
            await withTaskGroup(of: Void.self) { group in
                for name in targets {
                    group.addTask { await self.follow(name, since: since[name], into: continuation) }
                }
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    private func follow(_ name: String, since: UInt64?, into out: AsyncStream<FleetEvent>.Continuation) async {
        var cursor = since
        var failures = 0
        while !Task.isCancelled {
            var current: EventSubscription?
            do {
                let client = try await self.client(name)
                var request = EventsRequest(follow: true)
                if let cursor { request.sinceSeq = cursor; request.fromStart = cursor == 0 }
                let subscription = try client.events(request)
                current = subscription
                out.yield(.connected(node: name))
                failures = 0
                var reportedLost: UInt64 = 0
                try await withTaskCancellationHandler {
                    for try await event in subscription {
                        if subscription.lost > reportedLost {
                            out.yield(.lost(node: name, count: subscription.lost - reportedLost))
                            reportedLost = subscription.lost
                        }
                        cursor = event.seq
                        out.yield(.event(node: name, event))
                    }
                } onCancel: {
                    subscription.cancel()
                }
                if Task.isCancelled { return }
                // The agent ended a follow stream: it is stopping.
                out.yield(.disconnected(node: name, BerthError(.unavailable, "the agent ended the event stream")))
            } catch {
                if Task.isCancelled { return }
                out.yield(.disconnected(node: name, error.berthError("events")))
            }
            // Resume after everything the agent said it had sent, events or not.
            if let p = current?.position, cursor == nil || p > (cursor ?? 0) { cursor = p }
            failures += 1
            let delay = min(100 << min(failures, 7), 10_000)
            try? await Task.sleep(for: .milliseconds(delay))
        }
    }

    /// Closes every connection.
    public func close() {
        for link in links.values { link.close() }
    }

    static func withTimeout<T: Sendable>(_ limit: Duration, node: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: limit)
                throw BerthError(.deadlineExceeded, "no answer within \(limit.seconds) s")
            }
            defer { group.cancelAll() }
            guard let first = try await group.next() else { throw BerthError(.cancelled, "cancelled") }
            return first
        }
    }
}

extension Duration {
    /// Whole milliseconds.
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }

    /// Whole and fractional seconds, for messages ("2.5").
    var seconds: String {
        let tenths = milliseconds % 1000 / 100
        return tenths == 0 ? "\(milliseconds / 1000)" : "\(milliseconds / 1000).\(tenths)"
    }
}

/// One node's connection: made on demand, shared by every call, remade after it drops.
final class Link: Sendable {
    let node: Node
    let backoffMillis: UInt64

    struct State {
        var client: BerthClient?
        var connecting: Task<BerthClient, any Error>?
        var failures = 0
        var retryAt: UInt64 = 0
        var lastError: BerthError?
        var closed = false
    }
    let state = Mutex(State())

    init(_ node: Node, backoffMillis: UInt64) { self.node = node; self.backoffMillis = backoffMillis }

    private enum Step {
        case ready(BerthClient)
        case wait(Task<BerthClient, any Error>)
        case fail(BerthError)
    }

    func client(timeout: Duration) async throws -> BerthClient {
        let node = self.node
        let millis = Int32(clamping: timeout.milliseconds)
        let step = state.withLock { s -> Step in
            if s.closed { return .fail(BerthError(.cancelled, "the fleet is closed")) }
            if let c = s.client {
                if c.isConnected { return .ready(c) }
                s.client = nil
            }
            if let t = s.connecting { return .wait(t) }
            if let e = s.lastError, Host.monotonicNanos < s.retryAt {
                let ms = (s.retryAt - Host.monotonicNanos) / 1_000_000
                return .fail(BerthError(.unavailable, "unreachable (next try in \(ms) ms): \(e.message)"))
            }
            let t = Task { try await BerthClient.connect(to: node.endpoint, keepaliveSeconds: 15, tls: node.tls, timeoutMillis: millis) }
            s.connecting = t
            return .wait(t)
        }
        switch step {
        case .ready(let c): return c
        case .fail(let e): throw e
        case .wait(let task):
            do {
                let c = try await task.value
                let keep = state.withLock { s -> Bool in
                    s.connecting = nil
                    s.failures = 0
                    s.lastError = nil
                    if s.closed { return false }
                    if s.client == nil || s.client !== c { s.client = c }
                    return true
                }
                if !keep { c.close(); throw BerthError(.cancelled, "the fleet is closed") }
                return c
            } catch {
                let e = error.berthError("connect to \(node.name)")
                state.withLock { s in
                    if s.connecting != nil {
                        s.connecting = nil
                        s.failures += 1
                        s.lastError = e
                        s.retryAt = Host.monotonicNanos + min(backoffMillis << UInt64(min(s.failures - 1, 16)), max(10_000, backoffMillis)) * 1_000_000
                    }
                }
                throw e
            }
        }
    }

    func close() {
        let c = state.withLock { s -> BerthClient? in
            s.closed = true
            s.connecting?.cancel()
            defer { s.client = nil }
            return s.client
        }
        c?.close()
    }
}
