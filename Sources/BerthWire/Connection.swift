#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BerthErrors
import BerthSystem

/// What arrives on a stream, in order.
public enum StreamEvent: Sendable {
    /// A RESPONSE frame; `end` when the peer has finished sending on this stream.
    case response(Response, end: Bool)
    /// A DATA frame; `end` when the peer has finished sending (the chunk may be empty).
    case data(Chunk, end: Bool)
    /// The peer cancelled the stream, broke a rule on it, or the connection closed.
    case cancelled(BerthError)
}

/// Tunables of a connection. Both sides of protocol version 1 use the defaults for the
/// window (see docs/protocol.md); the keepalive interval is agreed in Hello.
public struct ConnectionOptions: Sendable {
    /// DATA payload bytes either side may send on a stream before it gets a WINDOW_UPDATE.
    public static let initialWindow: UInt32 = 1 << 20
    /// The largest DATA payload this side sends in one frame.
    public static let maxChunk = 64 << 10

    public var maxPayload: UInt32 = FrameHeader.maxPayload
    /// Seconds without a frame from the peer before this side sends a PING; after three
    /// intervals of silence the connection is closed. 0 disables keepalive.
    public var keepaliveSeconds: UInt32 = 30
    /// Streams the peer may have open at once; a REQUEST beyond it is answered RESOURCE_EXHAUSTED.
    public var maxStreams = 128
    /// Seconds the peer has to complete the handshake (`handshakeCompleted()`) before the
    /// connection is closed with GOAWAY DEADLINE_EXCEEDED. 0 = no limit (a client).
    public var handshakeTimeoutSeconds: UInt32 = 0
    /// Seconds with no open stream and no stream frame received (PING and PONG do not
    /// count) before the connection is closed with GOAWAY. 0 = no limit.
    public var idleTimeoutSeconds: UInt32 = 0
    /// Seconds a partly received frame (some header or payload bytes buffered) may wait for
    /// its next byte before the connection is closed with GOAWAY DEADLINE_EXCEEDED
    /// (a slow-loris peer). 0 = no limit.
    public var frameTimeoutSeconds: UInt32 = 0
    /// DATA bytes received and not yet consumed, summed over the connection's streams. DATA
    /// that would go beyond it cancels its stream with RESOURCE_EXHAUSTED (each stream is
    /// also bounded by its window).
    public var maxBufferedData = 16 << 20
    /// Queued outbound bytes above which DATA senders wait (back-pressure on a slow reader).
    public var writeHighWater = 1 << 20
    /// Queued outbound bytes at which the peer is judged not to be reading and the
    /// connection is closed (only control frames can push past the high-water mark).
    public var writeHardLimit = 16 << 20
    /// Milliseconds a clean close waits for the peer to close its side after our GOAWAY
    /// (or last frame) is written, dropping what it still sends, before the descriptor is
    /// closed: the lingering close that keeps the GOAWAY from being lost to a reset.
    public var lingerMillis: UInt32 = 2000
    public init() {}
}

/// One side of a Berth connection over a stream socket: the framing, the streams
/// multiplexed on it, per-stream flow control, keepalive and GOAWAY.
///
/// Threads: one reader (poll + read + decode + dispatch) and one writer (drains the
/// outbound queue). Nothing here runs on the Swift concurrency pool; callers may block
/// in `Stream.sendData` and `Stream.receive`, never the reader.
public final class Connection: Sendable {
    /// Which side this is: clients open odd stream ids, agents even ones.
    public enum Role: Sendable { case client, server }

    struct StreamEntry {
        let stream: Stream
        var sendWindow: Int = Int(ConnectionOptions.initialWindow)
        var recvWindow: Int = Int(ConnectionOptions.initialWindow)
        var localEnded = false
        var remoteEnded = false
        /// Events waiting for `receive()` when there is no sink.
        var inbox: [StreamEvent] = []
        var sink: (@Sendable (StreamEvent) -> Void)?

        /// The peer's cancellation, when it waits in the inbox for a `receive()` that has
        /// not come yet. Sending on such a stream fails with it, and `isOpen` is false.
        var pendingCancel: BerthError? {
            for case .cancelled(let error) in inbox { return error }
            return nil
        }
    }

    struct State {
        var streams: [UInt32: StreamEntry] = [:]
        var nextLocalID: UInt32
        var highestPeerID: UInt32 = 0
        var outbound: [[UInt8]] = []
        var outboundBytes = 0
        var closed = false
        var closeError: BerthError?
        var writerDone = false
        /// Why the writer stopped, when a write failed (reported unless the peer's GOAWAY says more).
        var writeFailure: BerthError?
        /// The descriptor has been closed; its number may already belong to another
        /// socket, so nothing may shut it down any more.
        var fdClosed = false
        /// The writer ended cleanly and shut down only its direction (SHUT_WR): the reader
        /// drains what the peer still sends before closing (a lingering close).
        var halfClosed = false
        var lastReceived: UInt64 = Host.monotonicNanos
        var pingOutstanding = false
        var keepaliveSeconds: UInt32
        /// When the connection was made, for the handshake deadline.
        let opened: UInt64 = Host.monotonicNanos
        var handshakeDone = false
        /// The last stream frame received, or the last moment a stream was open (idle timeout).
        var lastActivity: UInt64 = Host.monotonicNanos
        var onRequest: (@Sendable (Stream, Request) -> Void)?
        var onClose: (@Sendable (BerthError?) -> Void)?
    }

    public let role: Role
    /// A label for logs ("unix", "tcp 127.0.0.1:51234").
    public let label: String
    let fd: FileDescriptor
    let options: ConnectionOptions
    let state: ConditionLock<State>

    public init(fd: FileDescriptor, role: Role, label: String, options: ConnectionOptions = ConnectionOptions()) {
        self.fd = fd
        self.role = role
        self.label = label
        self.options = options
        self.state = ConditionLock(State(nextLocalID: role == .client ? 1 : 2, keepaliveSeconds: options.keepaliveSeconds))
    }

    /// Starts the reader and writer threads. `onRequest` is called on the reader thread
    /// for each stream the peer opens (it must hand the work to another thread);
    /// `onClose` once, when the connection ends: with nil after a local `close()` without
    /// an error or the peer's clean hang-up, otherwise with the reason (a keepalive
    /// timeout, a failed write, the peer's GOAWAY, a protocol violation, `close(error)`).
    public func start(onRequest: (@Sendable (Stream, Request) -> Void)? = nil,
                      onClose: (@Sendable (BerthError?) -> Void)? = nil) {
        state.withLock {
            $0.onRequest = onRequest
            $0.onClose = onClose
        }
        startThread("berth-write") { self.writeLoop() }
        startThread("berth-read") { self.readLoop() }
    }

    /// Changes the keepalive interval (after the Hello exchange agreed on one).
    public func setKeepalive(seconds: UInt32) {
        state.withLock { $0.keepaliveSeconds = seconds }
    }

    /// The peer has completed the handshake: the handshake deadline no longer applies.
    public func handshakeCompleted() {
        state.withLock { $0.handshakeDone = true }
    }

    /// Whether the connection has closed.
    public var isClosed: Bool { state.withLock { $0.closed } }

    /// Opens a stream by sending `request` on a new stream id. Events go to `sink`
    /// (called on the reader thread, in order) or, without one, wait for `receive()`.
    public func openStream(_ request: Request, end: Bool = true,
                           sink: (@Sendable (StreamEvent) -> Void)? = nil) throws(BerthError) -> Stream {
        let payload = request.wireEncoded()
        return try state.withLock { (s) throws(BerthError) -> Stream in
            if s.closed { throw s.closeError ?? BerthError(.unavailable, "connection \(label) is closed") }
            let id = s.nextLocalID
            s.nextLocalID += 2
            let stream = Stream(id: id, connection: self)
            var entry = StreamEntry(stream: stream)
            entry.sink = sink
            entry.localEnded = end
            s.streams[id] = entry
            enqueue(&s, Frame(streamID: id, type: .request, flags: end ? .endStream : [], payload: payload))
            return stream
        }
    }

    /// Closes the connection: sends GOAWAY with `error` (when given) after what is
    /// already queued, then shuts the socket down. Every open stream is cancelled.
    public func close(_ error: BerthError? = nil) {
        state.withLock { s in
            guard !s.closed else { return }
            if let error {
                let goAway = GoAway(error: error, lastStreamID: s.highestPeerID)
                let frame = Frame(streamID: 0, type: .goAway, payload: goAway.wireEncoded())
                s.outbound.append(frame.encoded())
                s.outboundBytes += FrameHeader.size + frame.payload.count
                s.closeError = error
            }
            markClosed(&s, error ?? BerthError(.unavailable, "connection \(label) closed"), clean: error == nil)
            if error == nil { shutdownSocket(&s) }
        }
    }

    // MARK: - Stream operations (called through `Stream`)

    func sendResponse(_ id: UInt32, _ response: Response, end: Bool) throws(BerthError) {
        let payload = response.wireEncoded()
        try state.withLock { (s) throws(BerthError) in
            try checkSendable(&s, id)
            enqueue(&s, Frame(streamID: id, type: .response, flags: end ? .endStream : [], payload: payload))
            if end { finishLocal(&s, id) }
        }
    }

    func sendData(_ id: UInt32, _ chunk: Chunk, end: Bool) throws(BerthError) {
        // Large chunks are split; each piece waits for window and for the writer to drain.
        var offset = 0
        repeat {
            let piece = Array(chunk.data[offset..<min(chunk.data.count, offset + ConnectionOptions.maxChunk)])
            offset += piece.count
            let last = offset >= chunk.data.count
            let payload = Chunk(channel: chunk.channel, data: piece).wireEncoded()
            let cost = payload.count
            let ready: Result<Void, BerthError>? = state.wait { s in
                guard let e = s.streams[id] else {
                    return .failure(s.closeError ?? BerthError(.cancelled, "stream \(id) was cancelled"))
                }
                if s.closed { return .failure(s.closeError ?? BerthError(.unavailable, "connection closed")) }
                if let cancel = e.pendingCancel {
                    s.streams[id] = nil  // the local side has now been told
                    return .failure(cancel)
                }
                if e.localEnded { return .failure(BerthError(.failedPrecondition, "stream \(id) already ended")) }
                if e.sendWindow < cost || s.outboundBytes > options.writeHighWater { return nil }
                s.streams[id]?.sendWindow -= cost
                let flags: FrameFlags = (last && end) ? .endStream : []
                enqueue(&s, Frame(streamID: id, type: .data, flags: flags, payload: payload))
                if last && end { finishLocal(&s, id) }
                return .success(())
            }
            if case .failure(let error)? = ready { throw error }
        } while offset < chunk.data.count
    }

    func sendEnd(_ id: UInt32) throws(BerthError) {
        try state.withLock { (s) throws(BerthError) in
            try checkSendable(&s, id)
            enqueue(&s, Frame(streamID: id, type: .data, flags: .endStream, payload: []))
            finishLocal(&s, id)
        }
    }

    func cancelStream(_ id: UInt32, _ reason: BerthError?) {
        state.withLock { s in
            guard s.streams[id] != nil else { return }
            // The local side learns of it too: whoever waits on the stream must wake up.
            deliver(&s, id, .cancelled(reason ?? BerthError(.cancelled, "stream \(id) was cancelled")))
            s.streams[id] = nil
            if !s.closed {
                enqueue(&s, Frame(streamID: id, type: .cancel, payload: Cancel(reason: reason).wireEncoded()))
            }
        }
    }

    func receive(_ id: UInt32) -> StreamEvent {
        let event = state.wait { s -> StreamEvent? in
            guard var e = s.streams[id] else {
                return .cancelled(s.closeError ?? BerthError(.cancelled, "stream \(id) is closed"))
            }
            if e.inbox.isEmpty {
                // The peer has ended its side: every further receive says so.
                if e.remoteEnded { return .data(Chunk(channel: .payload, data: []), end: true) }
                return nil
            }
            let ev = e.inbox.removeFirst()
            s.streams[id] = e
            if case .cancelled = ev { s.streams[id] = nil } else { removeIfDone(&s, id) }
            return ev
        }
        // `wait` without a timeout always returns a value.
        let ev = event ?? .cancelled(BerthError(.internal, "stream \(id): no event"))
        if case .data(let chunk, _) = ev { grant(id, chunk) }
        return ev
    }

    func setSink(_ id: UInt32, _ sink: @escaping @Sendable (StreamEvent) -> Void) {
        state.withLock { s in
            guard var e = s.streams[id] else {
                sink(.cancelled(s.closeError ?? BerthError(.cancelled, "stream \(id) is closed")))
                return
            }
            let queued = e.inbox
            e.inbox = []
            e.sink = sink
            s.streams[id] = e
            for event in queued { sink(event) }
            if queued.contains(where: { if case .cancelled = $0 { true } else { false } }) {
                s.streams[id] = nil
            } else {
                removeIfDone(&s, id)
            }
        }
    }

    func isOpen(_ id: UInt32) -> Bool {
        state.withLock { s in
            guard !s.closed, let e = s.streams[id] else { return false }
            if e.pendingCancel != nil {
                s.streams[id] = nil  // the local side has now been told
                return false
            }
            return true
        }
    }

    /// Returns DATA bytes to the peer's window once they have been consumed.
    func grant(_ id: UInt32, _ chunk: Chunk) {
        let n = chunk.wireCost
        guard n > 0 else { return }
        state.withLock { s in
            guard !s.closed else { return }
            s.streams[id]?.recvWindow += n
            enqueue(&s, Frame(streamID: id, type: .windowUpdate, payload: WindowUpdate(increment: UInt32(n)).wireEncoded()))
        }
    }

    // MARK: - Internals (all with the state lock held)

    private func checkSendable(_ s: inout State, _ id: UInt32) throws(BerthError) {
        if s.closed { throw s.closeError ?? BerthError(.unavailable, "connection \(label) closed") }
        guard let e = s.streams[id] else { throw BerthError(.cancelled, "stream \(id) was cancelled") }
        if let cancel = e.pendingCancel {
            s.streams[id] = nil  // the local side has now been told
            throw cancel
        }
        if e.localEnded { throw BerthError(.failedPrecondition, "stream \(id) already ended") }
    }

    /// Marks this side of a stream ended. When the agent ends a stream the client is
    /// still sending on (an error in the middle of an upload), it also cancels the
    /// stream: the client must stop, and nothing it still sends is worth reading.
    /// Callers enqueue the ending frame first, so CANCEL follows it on the wire.
    private func finishLocal(_ s: inout State, _ id: UInt32) {
        guard let e = s.streams[id] else { return }
        s.streams[id]?.localEnded = true
        if role == .server && !e.remoteEnded {
            s.streams[id] = nil
            enqueue(&s, Frame(streamID: id, type: .cancel,
                              payload: Cancel(reason: BerthError(.cancelled, "the agent has answered stream \(id); stop sending")).wireEncoded()))
            return
        }
        removeIfDone(&s, id)
    }

    private func removeIfDone(_ s: inout State, _ id: UInt32) {
        guard let e = s.streams[id], e.localEnded, e.remoteEnded, e.inbox.isEmpty else { return }
        s.streams[id] = nil
    }

    private func enqueue(_ s: inout State, _ frame: Frame) {
        guard !s.closed else { return }
        s.outbound.append(frame.encoded())
        s.outboundBytes += FrameHeader.size + frame.payload.count
        if s.outboundBytes > options.writeHardLimit {
            let error = BerthError(.resourceExhausted, "peer \(label) is not reading: \(s.outboundBytes) bytes queued")
            markClosed(&s, error)
            shutdownSocket(&s)
        }
    }

    /// Wakes both threads by shutting the socket down, unless it is already closed.
    /// Always called with the lock held, which the reader also holds to close the
    /// descriptor: a closed number may already belong to another connection.
    private func shutdownSocket(_ s: inout State) {
        if !s.fdClosed { _ = shutdown(fd.rawValue, Int32(SHUT_RDWR)) }
    }

    private func deliver(_ s: inout State, _ id: UInt32, _ event: StreamEvent) {
        guard var e = s.streams[id] else { return }
        switch event {
        case .response(_, let end), .data(_, let end): if end { e.remoteEnded = true }
        case .cancelled: e.remoteEnded = true; e.localEnded = true
        }
        if let sink = e.sink {
            sink(event)
            s.streams[id] = e
            if case .cancelled = event { s.streams[id] = nil } else { removeIfDone(&s, id) }
        } else {
            e.inbox.append(event)
            s.streams[id] = e
        }
    }

    /// Ends the connection. `clean` (a local `close()` without error, or the peer's end of
    /// stream at a frame boundary) is reported to `onClose` as nil; anything else as `error`.
    private func markClosed(_ s: inout State, _ error: BerthError, clean: Bool = false) {
        guard !s.closed else { return }
        s.closed = true
        if s.closeError == nil { s.closeError = error }
        for id in Array(s.streams.keys) { deliver(&s, id, .cancelled(s.closeError ?? error)) }
        let onClose = s.onClose
        s.onClose = nil
        s.onRequest = nil
        if let onClose { startThread("berth-close") { onClose(clean ? nil : error) } }
    }

    // MARK: - Writer

    private func writeLoop() {
        while true {
            let batch: [[UInt8]]? = state.wait { s in
                if !s.outbound.isEmpty {
                    let b = s.outbound
                    s.outbound.removeAll(keepingCapacity: true)
                    return b
                }
                if s.closed { return [] }
                return nil
            }
            guard let batch, !batch.isEmpty else { break }
            var failed = false
            for bytes in batch {
                do { try bytes.withUnsafeBytes { try fd.sendAll($0) } } catch { failed = true; break }
                state.withLock { $0.outboundBytes -= bytes.count }
            }
            if failed {
                // The peer hung up. It may have said why first (a GOAWAY: the agent refusing
                // a connection beyond its limit): give the reader a moment to find it.
                let error = BerthError(.unavailable, "connection \(label): write failed")
                state.withLock { $0.writeFailure = error }
                _ = state.wait(timeoutNanos: 1_000_000_000, until: { $0.closed ? true : nil })
                state.withLock { markClosed(&$0, error) }
                break
            }
        }
        // A GOAWAY (and what was queued before it) has been written: now end our direction
        // only. Closing with the peer's frames unread would make the kernel answer with a
        // reset, and a reset makes the peer drop what it has not read yet: the GOAWAY that
        // says why. The reader drains the peer's last frames, then closes (lingerAndClose).
        state.withLock { s in
            if s.writeFailure == nil && !s.fdClosed {
                _ = shutdown(fd.rawValue, Int32(SHUT_WR))
                s.halfClosed = true
            } else {
                shutdownSocket(&s)
            }
            s.writerDone = true
        }
    }

    // MARK: - Reader

    private func readLoop() {
        var decoder = FrameDecoder(maxPayload: options.maxPayload)
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        // Why the connection broke, when it did not end cleanly.
        var failure: BerthError?
        readLoop: while true {
            let pending = decoder.bufferedBytes
            let (closed, timeout, expired) = state.withLock { s in (s.closed, pollTimeout(s), expiredDeadline(&s, pending: pending)) }
            if closed { break }
            if let expired {
                close(expired)
                break
            }
            var pfd = pollfd(fd: fd.rawValue, events: Int16(POLLIN), revents: 0)
            let r = poll(&pfd, 1, timeout)
            if r < 0 {
                let e = Errno.current
                if e == .interrupted { continue }
                failure = BerthError(.unavailable, "connection \(label): poll failed: \(e)")
                break
            }
            if r == 0 { keepaliveTick(); continue }
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd.rawValue, $0.baseAddress, $0.count) }
            if n < 0 {
                let e = Errno.current
                if e == .interrupted || e == .again { continue }
                failure = BerthError(.unavailable, "connection \(label): read failed: \(e)")
                break
            }
            if n == 0 {
                do { try decoder.finish() } catch {
                    state.withLock { markClosed(&$0, error) }
                }
                break
            }
            state.withLock { $0.lastReceived = Host.monotonicNanos; $0.pingOutstanding = false }
            decoder.append(buffer[0..<n])
            while true {
                let frame: Frame?
                do { frame = try decoder.next() } catch {
                    // The byte stream cannot be resynchronised after a bad header: say why and close.
                    close(error)
                    break readLoop
                }
                guard let frame else { break }
                handle(frame)
            }
        }
        state.withLock { s in
            let error = failure ?? s.writeFailure
            markClosed(&s, error ?? BerthError(.unavailable, "connection \(label) closed by peer"), clean: error == nil)
        }
        // Give the writer a moment to flush a GOAWAY; then shutdown() unblocks a write
        // stuck on a peer that does not read. Close the descriptor only when the writer
        // can no longer touch it.
        if state.wait(timeoutNanos: 5_000_000_000, until: { $0.writerDone ? true : nil }) == nil {
            state.withLock { shutdownSocket(&$0) }
            _ = state.wait { $0.writerDone ? true : nil }
        }
        if state.withLock({ $0.halfClosed }) { drainUntilPeerCloses(&buffer) }
        state.withLock { s in
            s.fdClosed = true
            fd.close()
        }
    }

    /// The lingering half of a clean close: reads and drops what the peer still sends
    /// until it closes its side too, for at most `lingerMillis` and 1 MiB, so that the
    /// close that follows finds nothing unread and sends FIN, not a reset.
    private func drainUntilPeerCloses(_ buffer: inout [UInt8]) {
        let deadline = Host.monotonicNanos + UInt64(options.lingerMillis) * 1_000_000
        var drained = 0
        while drained < 1 << 20 {
            let now = Host.monotonicNanos
            guard now < deadline else { return }
            var pfd = pollfd(fd: fd.rawValue, events: Int16(POLLIN), revents: 0)
            let r = poll(&pfd, 1, Int32((deadline - now) / 1_000_000) + 1)
            if r < 0 && Errno.current == .interrupted { continue }
            guard r > 0 else { return }
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd.rawValue, $0.baseAddress, $0.count) }
            if n < 0 && (Errno.current == .interrupted || Errno.current == .again) { continue }
            guard n > 0 else { return }
            drained += n
        }
    }

    /// How long the reader may wait in poll: until the next keepalive step is due, and at
    /// most a second, so that a `setKeepalive` made while it waits (after Hello) takes
    /// effect at once rather than after the old interval.
    private func pollTimeout(_ s: State) -> Int32 {
        guard s.keepaliveSeconds > 0 else { return 1000 }
        let interval = UInt64(s.keepaliveSeconds) * 1_000_000_000
        let due = s.lastReceived + (s.pingOutstanding ? 3 * interval : interval)
        let now = Host.monotonicNanos
        let millis = due > now ? (due - now + 999_999) / 1_000_000 : 0
        return Int32(min(millis, 1000))
    }

    /// The handshake, idle and partial-frame deadlines, checked at least once a second
    /// (poll never waits longer), whether or not bytes keep arriving.
    private func expiredDeadline(_ s: inout State, pending: Int) -> BerthError? {
        let now = Host.monotonicNanos
        func over(_ since: UInt64, _ seconds: UInt32) -> Bool {
            seconds > 0 && now >= since && now - since >= UInt64(seconds) * 1_000_000_000
        }
        if !s.handshakeDone && over(s.opened, options.handshakeTimeoutSeconds) {
            return BerthError(.deadlineExceeded, "connection \(label): no handshake (Hello) within \(options.handshakeTimeoutSeconds) s")
        }
        if pending > 0 && over(s.lastReceived, options.frameTimeoutSeconds) {
            return BerthError(.deadlineExceeded, "connection \(label): a frame stalled: \(pending) bytes of it received, then nothing for \(options.frameTimeoutSeconds) s")
        }
        if !s.streams.isEmpty {
            s.lastActivity = now
        } else if over(s.lastActivity, options.idleTimeoutSeconds) {
            return BerthError(.unavailable, "connection \(label): idle for \(options.idleTimeoutSeconds) s with no open stream; reconnect when needed")
        }
        return nil
    }

    private func keepaliveTick() {
        state.withLock { s in
            guard s.keepaliveSeconds > 0, !s.closed else { return }
            let silent = Host.monotonicNanos - s.lastReceived
            let interval = UInt64(s.keepaliveSeconds) * 1_000_000_000
            if silent >= 3 * interval {
                let error = BerthError(.unavailable, "connection \(label): keepalive timeout, nothing received for \(silent / 1_000_000_000)s")
                markClosed(&s, error)
                shutdownSocket(&s)
            } else if silent >= interval && !s.pingOutstanding {
                s.pingOutstanding = true
                enqueue(&s, Frame(streamID: 0, type: .ping, payload: Ping(nonce: Host.monotonicNanos).wireEncoded()))
            }
        }
    }

    private func protocolError(_ message: String, code: BerthError.Code = .invalidArgument) -> BerthError {
        BerthError(code, message, reason: BerthError.Reason.protocolViolation)
    }

    /// Dispatches one frame. Errors confined to a stream answer on that stream; only
    /// errors that break the connection itself close it.
    private func handle(_ frame: Frame) {
        let id = frame.streamID
        let end = frame.flags.contains(.endStream)
        if id != 0 { state.withLock { $0.lastActivity = Host.monotonicNanos } }
        guard let type = frame.frameType else {
            let error = protocolError("unknown frame type 0x\(String(frame.type, radix: 16)) on stream \(id)")
            // Stream 0 has nobody to cancel: the connection itself is broken.
            if id == 0 { close(error) } else { rejectStream(id, error) }
            return
        }
        if id == 0 {
            switch type {
            case .ping:
                let payload = frame.payload
                state.withLock { enqueue(&$0, Frame(streamID: 0, type: .pong, payload: payload)) }
            case .pong:
                break
            case .goAway:
                let error = (try? GoAway(wire: frame.payload))?.error ?? BerthError(.unavailable, "peer sent GOAWAY")
                state.withLock { s in
                    markClosed(&s, error)
                    shutdownSocket(&s)
                }
            default:
                close(protocolError("frame type \(type) is not allowed on stream 0"))
            }
            return
        }
        switch type {
        case .request:
            handleRequest(frame, end: end)
        case .response:
            do {
                let response = try Response(wire: frame.payload)
                state.withLock { deliver(&$0, id, .response(response, end: end)) }
            } catch {
                rejectStream(id, error)
            }
        case .data:
            do {
                let chunk = try Chunk(wire: frame.payload)
                state.withLock { s in
                    guard let e = s.streams[id] else { return }
                    if e.remoteEnded {
                        rejectLocked(&s, id, protocolError("DATA after end of stream \(id)"))
                        return
                    }
                    if frame.payload.count > e.recvWindow {
                        rejectLocked(&s, id, protocolError("stream \(id): DATA of \(frame.payload.count) bytes exceeds the flow-control window of \(e.recvWindow)", code: .resourceExhausted))
                        return
                    }
                    // Each stream is bounded by its window; all of them together by maxBufferedData.
                    let buffered = s.streams.values.reduce(0) { $0 + max(0, Int(ConnectionOptions.initialWindow) - $1.recvWindow) }
                    if buffered + frame.payload.count > options.maxBufferedData {
                        rejectLocked(&s, id, protocolError("connection \(label): \(buffered) bytes of DATA received and not yet consumed; DATA of \(frame.payload.count) more on stream \(id) exceeds the connection's \(options.maxBufferedData)-byte limit", code: .resourceExhausted))
                        return
                    }
                    s.streams[id]?.recvWindow -= frame.payload.count
                    deliver(&s, id, .data(chunk, end: end))
                }
            } catch {
                rejectStream(id, error)
            }
        case .windowUpdate:
            guard let update = try? WindowUpdate(wire: frame.payload) else {
                rejectStream(id, protocolError("malformed WINDOW_UPDATE on stream \(id)"))
                return
            }
            state.withLock { s in
                guard let e = s.streams[id] else { return }
                if e.sendWindow + Int(update.increment) > Int(Int32.max) {
                    rejectLocked(&s, id, protocolError("stream \(id): window overflow"))
                    return
                }
                s.streams[id]?.sendWindow += Int(update.increment)
            }
        case .cancel:
            let reason = (try? Cancel(wire: frame.payload))?.reason ?? BerthError(.cancelled, "stream \(id) cancelled by peer")
            state.withLock { deliver(&$0, id, .cancelled(reason)) }
        case .ping, .pong, .goAway:
            rejectStream(id, protocolError("frame type \(type) is only allowed on stream 0"))
        }
    }

    private func handleRequest(_ frame: Frame, end: Bool) {
        let id = frame.streamID
        let peerOwnsOdd = role == .server
        let refusal: BerthError? = state.withLock { s in
            if (id % 2 == 1) != peerOwnsOdd {
                return protocolError("stream \(id) has the wrong parity for a \(role == .server ? "client" : "agent")-opened stream")
            }
            if id <= s.highestPeerID {
                return protocolError("stream \(id) was already used; stream ids must increase")
            }
            s.highestPeerID = id
            if s.streams.count >= options.maxStreams {
                return BerthError(.resourceExhausted, "too many open streams (limit \(options.maxStreams)); wait for some to finish")
            }
            return nil
        }
        if let refusal {
            answerError(id, refusal)
            return
        }
        let request: Request
        do { request = try Request(wire: frame.payload) } catch {
            answerError(id, error.berthError("stream \(id)"))
            return
        }
        let stream = Stream(id: id, connection: self)
        let handler: (@Sendable (Stream, Request) -> Void)? = state.withLock { s in
            var entry = StreamEntry(stream: stream)
            entry.remoteEnded = end
            s.streams[id] = entry
            return s.onRequest
        }
        if let handler { handler(stream, request) } else {
            cancelStream(id, BerthError(.unimplemented, "this side does not accept streams"))
        }
    }

    /// Answers a REQUEST that never became a stream with a final error RESPONSE.
    private func answerError(_ id: UInt32, _ error: BerthError) {
        state.withLock { enqueue(&$0, Frame(streamID: id, type: .response, flags: .endStream, payload: Response.error(error).wireEncoded())) }
    }

    private func rejectStream(_ id: UInt32, _ error: BerthError) {
        state.withLock { rejectLocked(&$0, id, error) }
    }

    /// Cancels a stream because of the peer's error, telling both the peer and the local side.
    private func rejectLocked(_ s: inout State, _ id: UInt32, _ error: BerthError) {
        if s.streams[id] != nil {
            deliver(&s, id, .cancelled(error))
            s.streams[id] = nil
        }
        enqueue(&s, Frame(streamID: id, type: .cancel, payload: Cancel(reason: error).wireEncoded()))
    }
}

/// One stream of a connection: a call and everything that flows on it.
public final class Stream: Sendable, Hashable {
    public let id: UInt32
    public let connection: Connection

    init(id: UInt32, connection: Connection) {
        self.id = id
        self.connection = connection
    }

    /// Sends a RESPONSE; `end` ends this side of the stream.
    public func send(_ response: Response, end: Bool) throws(BerthError) {
        try connection.sendResponse(id, response, end: end)
    }

    /// Sends DATA, blocking while the peer's window is used up or the socket is backed up.
    public func sendData(_ chunk: Chunk, end: Bool = false) throws(BerthError) {
        try connection.sendData(id, chunk, end: end)
    }

    /// Ends this side of the stream without more data.
    public func end() throws(BerthError) { try connection.sendEnd(id) }

    /// Cancels the stream, telling the peer why.
    public func cancel(_ reason: BerthError? = nil) { connection.cancelStream(id, reason) }

    /// Blocks until the next event. DATA is acknowledged to the peer's window as it is
    /// handed out. After the stream ends or is cancelled, returns `.cancelled`.
    public func receive() -> StreamEvent { connection.receive(id) }

    /// Sends every event, including those already waiting, to `sink` instead of
    /// `receive()`. The sink runs on the connection's reader thread with the
    /// connection's lock held: it must be quick and must not call back into the
    /// connection (hand work to another thread instead).
    public func setSink(_ sink: @escaping @Sendable (StreamEvent) -> Void) { connection.setSink(id, sink) }

    /// Whether the stream is still open in at least one direction and not cancelled.
    public var isOpen: Bool { connection.isOpen(id) }

    /// Acknowledges consumed DATA when events go to a sink instead of `receive()`.
    public func consumed(_ chunk: Chunk) { connection.grant(id, chunk) }

    public static func == (a: Stream, b: Stream) -> Bool { a === b }
    public func hash(into h: inout Hasher) { h.combine(ObjectIdentifier(self)) }
}

extension Chunk {
    /// The size of this chunk's protobuf encoding, which is what flow control counts,
    /// computed without encoding: field 1 (channel, 2 bytes unless the default 0) and
    /// field 2 (tag, varint length, bytes; omitted when empty), as proto3 packs them.
    var wireCost: Int {
        var n = channel == .payload ? 0 : 2
        if !data.isEmpty {
            var len = data.count
            var varint = 1
            while len >= 0x80 { len >>= 7; varint += 1 }
            n += 1 + varint + data.count
        }
        return n
    }
}
