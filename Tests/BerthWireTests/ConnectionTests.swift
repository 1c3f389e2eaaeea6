#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BerthErrors
import BerthSystem
import Testing
@testable import BerthWire

// Connection over real sockets (socketpair(AF_UNIX, SOCK_STREAM)), two ways:
//  - `Pair`: a client Connection talking to a server Connection whose handler runs on
//    its own thread and uses the blocking Stream API, as the agent does;
//  - `RawPeer`: one end is a Connection, the other is driven by hand with raw frames,
//    so the tests can break the protocol on purpose and see exactly what comes back.
// SIGPIPE is deliberately left at its default: a Connection must never raise it.

// MARK: - Helpers

private let second: UInt64 = 1_000_000_000
private let window = Int(ConnectionOptions.initialWindow)

/// A connected pair of Unix stream sockets, close-on-exec.
private func socketPair() -> (FileDescriptor, FileDescriptor) {
    var fds: [Int32] = [-1, -1]
    let rc = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
    precondition(rc == 0, "socketpair: \(Errno.current)")
    return (FileDescriptor(rawValue: fds[0]), FileDescriptor(rawValue: fds[1]))
}

/// `send(2)` with MSG_NOSIGNAL, so a test writing to a dead socket fails instead of dying.
private func sendAll(_ fd: FileDescriptor, _ bytes: [UInt8]) throws {
    try bytes.withUnsafeBytes { buf in
        var off = 0
        while off < buf.count {
            off += try syscall { send(fd.rawValue, buf.baseAddress! + off, buf.count - off, Int32(MSG_NOSIGNAL)) }
        }
    }
}

private func sleep(ms: Int) { usleep(UInt32(ms * 1000)) }

private func elapsedSeconds(since start: UInt64) -> Double { Double(Host.monotonicNanos - start) / 1e9 }

/// `count` reproducible pseudo-random bytes.
private func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var generator = SeededGenerator(seed: seed)
    var out: [UInt8] = []
    out.reserveCapacity(count + 8)
    while out.count < count {
        let word = generator.next()
        for shift in stride(from: 0, to: 64, by: 8) { out.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
    }
    out.removeLast(out.count - count)
    return out
}

/// Values handed from one thread to another, with waiting.
final class Mailbox<T: Sendable>: Sendable {
    private let lock = ConditionLock<[T]>([])

    func put(_ value: T) { lock.withLock { $0.append(value) } }

    /// Everything put so far.
    var all: [T] { lock.withLock { $0 } }

    /// Waits until at least `count` values are in and returns all of them; nil on timeout.
    func wait(count: Int, seconds: Double = 10) -> [T]? {
        lock.wait(timeoutNanos: UInt64(seconds * 1e9)) { $0.count >= count ? $0 : nil }
    }

    /// Removes the oldest value, waiting for one; nil on timeout.
    func take(seconds: Double = 10) -> T? {
        lock.wait(timeoutNanos: UInt64(seconds * 1e9)) { $0.isEmpty ? nil : $0.removeFirst() }
    }
}

extension StreamEvent {
    var response: Response? { if case .response(let r, _) = self { r } else { nil } }
    var chunk: Chunk? { if case .data(let c, _) = self { c } else { nil } }
    var cancellation: BerthError? { if case .cancelled(let e) = self { e } else { nil } }
    var ends: Bool {
        switch self {
        case .response(_, let end), .data(_, let end): end
        case .cancelled: true
        }
    }
}

/// Receives until the peer ends its side; returns the concatenated DATA bytes, the
/// RESPONSEs, and the cancellation if the stream was cancelled instead.
private func drain(_ stream: Stream) -> (bytes: [UInt8], responses: [Response], cancelled: BerthError?) {
    var bytes: [UInt8] = []
    var responses: [Response] = []
    while true {
        let event = stream.receive()
        switch event {
        case .data(let chunk, _): bytes += chunk.data
        case .response(let r, _): responses.append(r)
        case .cancelled(let e): return (bytes, responses, e)
        }
        if event.ends { return (bytes, responses, nil) }
    }
}

private let sampleInfo: InfoResponse = {
    var info = InfoResponse()
    info.hostname = "test-host"
    info.nodeName = "node-7"
    info.kernel = "6.1.0-test"
    info.cgroupLayout = "v2"
    info.cpus = 12
    info.memoryBytes = 64 << 30
    info.containersRunning = 3
    return info
}()

/// A client Connection and a server Connection on the two ends of a socket pair. The
/// server runs `handler` on a thread of its own for every stream the client opens.
final class Pair: Sendable {
    let client: Connection
    let server: Connection
    let clientClosed = Mailbox<BerthError?>()
    let serverClosed = Mailbox<BerthError?>()

    init(clientOptions: ConnectionOptions = ConnectionOptions(), serverOptions: ConnectionOptions = ConnectionOptions(),
         handler: @escaping @Sendable (Stream, Request) -> Void) {
        let (a, b) = socketPair()
        client = Connection(fd: a, role: .client, label: "test-client", options: clientOptions)
        server = Connection(fd: b, role: .server, label: "test-server", options: serverOptions)
        let serverClosed = self.serverClosed, clientClosed = self.clientClosed
        server.start(onRequest: { stream, request in
            startThread("test-handler") { handler(stream, request) }
        }, onClose: { serverClosed.put($0) })
        client.start(onClose: { clientClosed.put($0) })
    }

    /// Closes the client; the server sees the end of the stream and closes too. Both report it.
    func close() {
        client.close()
        #expect(clientClosed.wait(count: 1) != nil, "the client's onClose was not called")
        #expect(serverClosed.wait(count: 1) != nil, "the server's onClose was not called")
    }
}

/// Answers Info with `sampleInfo`, Wait("job-N") with exit code N after a short pause (so
/// answers come out of order), ImportImage by draining the upload, anything else with an error.
@Sendable private func standardHandler(_ stream: Stream, _ request: Request) {
    switch request {
    case .info:
        try? stream.send(.info(sampleInfo), end: true)
    case .wait(let ref):
        let n = Int32(ref.dropFirst("job-".count)) ?? -1
        sleep(ms: Int(50 - n % 50))
        try? stream.send(.wait(ExitStatus(exitCode: n, signal: n % 7, finishedUnix: 1_700_000_000 + Int64(n))), end: true)
    case .importImage(let name):
        let (bytes, _, cancelled) = drain(stream)
        if cancelled != nil { return }
        try? stream.send(.importImage(Image(name: name, id: "sha256:test", sizeBytes: UInt64(bytes.count), createdUnix: 0)), end: true)
    default:
        try? stream.send(.error(BerthError(.unimplemented, "not in this test")), end: true)
    }
}

/// The far end of a socket pair, driven by hand: raw frames out, decoded frames in.
final class RawPeer {
    let fd: FileDescriptor
    private var decoder = FrameDecoder()
    private(set) var eof = false

    init(_ fd: FileDescriptor) { self.fd = fd }

    func send(_ frame: Frame) throws { try sendAll(fd, frame.encoded()) }
    func send(bytes: [UInt8]) throws { try sendAll(fd, bytes) }

    /// The next frame; nil when `seconds` pass first or at the end of the stream (see `eof`).
    func next(seconds: Double = 10, skipping skipped: Set<FrameType> = [.windowUpdate]) throws -> Frame? {
        let deadline = Host.monotonicNanos + UInt64(seconds * 1e9)
        while true {
            while let frame = try decoder.next() {
                if let type = frame.frameType, skipped.contains(type) { continue }
                return frame
            }
            if eof { return nil }
            let now = Host.monotonicNanos
            if now >= deadline { return nil }
            var pfd = pollfd(fd: fd.rawValue, events: Int16(POLLIN), revents: 0)
            let r = poll(&pfd, 1, Int32((deadline - now) / 1_000_000) + 1)
            if r < 0 { if errno == EINTR { continue }; throw Errno.current }
            if r == 0 { continue }
            let bytes = try fd.read(upTo: 1 << 16)
            if bytes.isEmpty { eof = true } else { decoder.append(bytes) }
        }
    }

    /// Every frame until the end of the stream; nil if `seconds` pass first.
    func framesUntilEOF(seconds: Double = 10) throws -> [Frame]? {
        let deadline = Host.monotonicNanos + UInt64(seconds * 1e9)
        var frames: [Frame] = []
        while !eof {
            let now = Host.monotonicNanos
            if now >= deadline { return nil }
            if let frame = try next(seconds: Double(deadline - now) / 1e9, skipping: []) { frames.append(frame) }
        }
        return frames
    }

    func close() { fd.close() }
}

/// A Connection (server side unless said otherwise) on one end and a RawPeer on the other.
private func rawSetup(role: Connection.Role = .server, options: ConnectionOptions = ConnectionOptions(),
                      handler: @escaping @Sendable (Stream, Request) -> Void = standardHandler)
    -> (Connection, RawPeer, Mailbox<BerthError?>) {
    let (a, b) = socketPair()
    let connection = Connection(fd: a, role: role, label: "test-raw", options: options)
    let closed = Mailbox<BerthError?>()
    connection.start(onRequest: { stream, request in
        startThread("test-handler") { handler(stream, request) }
    }, onClose: { closed.put($0) })
    return (connection, RawPeer(b), closed)
}

/// Ends a raw setup: the peer hangs up, and the Connection must notice and report it.
private func finish(_ connection: Connection, _ peer: RawPeer, _ closed: Mailbox<BerthError?>) {
    peer.close()
    #expect(closed.wait(count: 1) != nil, "onClose was not called")
    #expect(connection.isClosed)
}

private func requestFrame(_ id: UInt32, _ request: Request, end: Bool = true) -> Frame {
    Frame(streamID: id, type: .request, flags: end ? .endStream : [], payload: request.wireEncoded())
}

/// Checks that `frame` is a RESPONSE on `id` with END_STREAM and returns its message.
private func expectFinalResponse(_ frame: Frame?, on id: UInt32,
                                 sourceLocation: SourceLocation = #_sourceLocation) throws -> Response {
    let frame = try #require(frame, "no frame arrived", sourceLocation: sourceLocation)
    #expect(frame.streamID == id, sourceLocation: sourceLocation)
    #expect(frame.frameType == .response, sourceLocation: sourceLocation)
    #expect(frame.flags.contains(.endStream), sourceLocation: sourceLocation)
    return try Response(wire: frame.payload)
}

/// Checks that `frame` is a CANCEL on `id` and returns its reason.
private func expectCancel(_ frame: Frame?, on id: UInt32,
                          sourceLocation: SourceLocation = #_sourceLocation) throws -> BerthError? {
    let frame = try #require(frame, "no frame arrived", sourceLocation: sourceLocation)
    #expect(frame.streamID == id, sourceLocation: sourceLocation)
    #expect(frame.frameType == .cancel, sourceLocation: sourceLocation)
    return try Cancel(wire: frame.payload).reason
}

private func errorCode(_ response: Response) -> BerthError.Code? {
    if case .error(let e) = response { e.code } else { nil }
}

// MARK: - Tests

// Serialized: the tests measure time (back-pressure, keepalive), and the machine may have
// only a couple of cores; run in parallel they would mostly measure each other.
@Suite("Connection", .serialized)
struct ConnectionTests {

    // MARK: Request and response

    @Test("a unary call gets its RESPONSE with END_STREAM, and both sides forget the stream",
          .timeLimit(.minutes(1)))
    func unaryRoundTrip() throws {
        let pair = Pair(handler: standardHandler)
        defer { pair.close() }
        let events = Mailbox<StreamEvent>()
        let stream = try pair.client.openStream(.info) { events.put($0) }
        #expect(stream.id == 1)
        let got = try #require(events.wait(count: 1))
        #expect(got.count == 1)
        #expect(got[0].response == .info(sampleInfo))
        #expect(got[0].ends)
        // Both directions ended: the stream is closed on both sides, nothing lingers.
        #expect(!stream.isOpen)
        #expect(pair.client.state.withLock { $0.streams.count } == 0)
        #expect(pair.server.state.withLock { $0.streams.count } == 0)

        // Without a sink, receive() hands out the same answer; ids keep increasing by 2.
        let again = try pair.client.openStream(.info)
        #expect(again.id == 3)
        let event = again.receive()
        #expect(event.response == .info(sampleInfo))
        #expect(event.ends)
        #expect(again.receive().cancellation?.code == .cancelled)
        #expect(pair.clientClosed.all.isEmpty)
    }

    @Test("50 streams opened concurrently on one connection each get their own answer",
          .timeLimit(.minutes(1)))
    func concurrentStreams() throws {
        let pair = Pair(handler: standardHandler)
        defer { pair.close() }
        let answers = Mailbox<(Int32, StreamEvent)>()
        let opened = Mailbox<UInt32>()
        let failures = Mailbox<BerthError>()
        // Five threads open ten streams each, at the same time; each sink knows which
        // job its stream asked for, so a mix-up between streams shows as a wrong exit code.
        for t in 0..<5 {
            startThread("test-open") {
                for k in 0..<10 {
                    let n = Int32(t * 10 + k)
                    do throws(BerthError) {
                        let stream = try pair.client.openStream(.wait("job-\(n)")) { answers.put((n, $0)) }
                        opened.put(stream.id)
                    } catch {
                        failures.put(error)
                    }
                }
            }
        }
        let ids = try #require(opened.wait(count: 50))
        #expect(failures.all.isEmpty)
        #expect(Set(ids) == Set((0..<50).map { UInt32(2 * $0 + 1) }))
        let all = try #require(answers.wait(count: 50), "only \(answers.all.count) of 50 answers arrived")
        for (n, event) in all {
            #expect(event.response == .wait(ExitStatus(exitCode: n, signal: n % 7, finishedUnix: 1_700_000_000 + Int64(n))))
            #expect(event.ends)
        }
        // One answer per stream, and they came back out of order (job 49 waits 1 ms, job 0 50 ms).
        #expect(all.map(\.0).sorted() == Array(0..<50))
        #expect(all.map(\.0) != Array(0..<50))
        sleep(ms: 50)
        #expect(answers.all.count == 50)
        #expect(pair.client.state.withLock { $0.streams.count } == 0)
        #expect(pair.server.state.withLock { $0.streams.count } == 0)
    }

    // MARK: Flow control

    @Test("a 5 MiB upload blocks on the 1 MiB window until the server consumes, and arrives intact",
          .timeLimit(.minutes(1)), arguments: [false, true])
    func upload(randomPieces: Bool) throws {
        let payload = randomBytes(5 << 20, seed: randomPieces ? 7 : 5)
        let go = Mailbox<Bool>()
        let received = Mailbox<[UInt8]>()
        let pair = Pair { stream, request in
            guard case .importImage(let name) = request else { return }
            _ = go.take(seconds: 30)  // nothing is consumed until the test says so
            let (bytes, responses, cancelled) = drain(stream)
            received.put(responses.isEmpty && cancelled == nil ? bytes : [])
            try? stream.send(.importImage(Image(name: name, id: "sha256:up", sizeBytes: UInt64(bytes.count), createdUnix: 1)), end: true)
        }
        defer { pair.close() }
        defer { go.put(true) }  // never leave the handler waiting, even when a check fails

        let stream = try pair.client.openStream(.importImage(name: "upload:latest"), end: false)
        let sent = Mailbox<BerthError?>()
        startThread("test-upload") {
            do throws(BerthError) {
                if randomPieces {
                    var generator = SeededGenerator(seed: 99)
                    var offset = 0
                    while offset < payload.count {
                        let n = min(payload.count - offset, Int.random(in: 0...200_000, using: &generator))
                        let last = offset + n == payload.count
                        try stream.sendData(Chunk(channel: .payload, data: Array(payload[offset..<offset + n])), end: last)
                        offset += n
                    }
                } else {
                    try stream.sendData(Chunk(channel: .payload, data: payload))
                    try stream.end()
                }
                sent.put(nil)
            } catch {
                sent.put(error)
            }
        }

        // The server reads nothing yet: the client may put at most one window on the wire.
        sleep(ms: 300)
        #expect(sent.all.isEmpty, "sendData returned although the server consumed nothing")
        let queued = pair.server.state.withLock { s in
            (s.streams[stream.id]?.inbox ?? []).reduce(0) { $0 + ($1.chunk?.wireCost ?? 0) }
        }
        #expect(queued <= window)
        #expect(queued > window - 2 * ConnectionOptions.maxChunk - 16)
        #expect(pair.client.state.withLock { $0.streams[stream.id]?.sendWindow ?? -1 } < ConnectionOptions.maxChunk + 16)

        go.put(true)
        let result = try #require(sent.take(seconds: 30), "the upload did not finish")
        #expect(result == nil, "upload failed: \(String(describing: result))")
        let answer = stream.receive()
        #expect(answer.response == .importImage(Image(name: "upload:latest", id: "sha256:up", sizeBytes: 5 << 20, createdUnix: 1)))
        #expect(answer.ends)
        let bytes = try #require(received.take())
        #expect(bytes.count == payload.count)
        #expect(bytes == payload)
        #expect(pair.client.state.withLock { $0.streams.count } == 0)
        #expect(pair.server.state.withLock { $0.streams.count } == 0)
    }

    @Test("a sink that does not call consumed() stops the sender at one window", .timeLimit(.minutes(1)))
    func backPressure() throws {
        let output = randomBytes(4 << 20, seed: 4)
        var started = Container()
        started.id = "c1"
        started.state = .running
        let sendDone = Mailbox<BerthError?>()
        let pair = Pair { [started] stream, request in
            guard case .run = request else { return }
            do throws(BerthError) {
                try stream.send(.run(.started(started)), end: false)
                try stream.sendData(Chunk(channel: .stdout, data: output))
                sendDone.put(nil)
                try stream.send(.run(.exit(ExitStatus(exitCode: 3))), end: true)
            } catch {
                sendDone.put(error)
            }
        }
        defer { pair.close() }

        let events = Mailbox<StreamEvent>()
        var spec = ContainerSpec()
        spec.image = "busybox"
        let stream = try pair.client.openStream(.run(spec)) { events.put($0) }
        _ = try #require(events.wait(count: 2), "no output arrived")
        sleep(ms: 300)

        // The server is stuck in sendData and the client has at most one window of output.
        #expect(sendDone.all.isEmpty, "sendData returned although the client consumed nothing")
        let first = events.all
        let chunks = first.compactMap(\.chunk)
        let cost = chunks.reduce(0) { $0 + $1.wireCost }
        let bytes = chunks.reduce(0) { $0 + $1.data.count }
        #expect(cost <= window)
        #expect(bytes <= window)
        #expect(bytes > window - 2 * ConnectionOptions.maxChunk)
        #expect(first.count == chunks.count + 1)  // the `started` response and output, nothing else
        #expect(first.first?.response == .run(.started(started)))

        // Consume everything, in order, as it comes: the rest flows.
        var seen = 0
        var collected: [UInt8] = []
        var last: StreamEvent?
        while last?.ends != true {
            let all = try #require(events.wait(count: seen + 1, seconds: 20),
                                   "stalled after \(collected.count) bytes")
            for event in all[seen...] {
                if let chunk = event.chunk {
                    #expect(chunk.channel == .stdout)
                    #expect(chunk.data.count <= ConnectionOptions.maxChunk)
                    collected += chunk.data
                    stream.consumed(chunk)
                }
                last = event
            }
            seen = all.count
        }
        #expect(collected.count == output.count)
        #expect(collected == output)
        #expect(last?.response == .run(.exit(ExitStatus(exitCode: 3))))
        #expect(sendDone.wait(count: 1) == [nil])
    }

    @Test("Chunk.wireCost is the size of the encoding flow control counts", .timeLimit(.minutes(1)))
    func wireCost() {
        for channel in [Channel.payload, .stdin, .stdout, .stderr] {
            for size in [0, 1, 127, 128, 16_383, 16_384, 65_536, 2_097_151, 2_097_152] {
                let chunk = Chunk(channel: channel, data: Array(repeating: 0xab, count: size))
                #expect(chunk.wireCost == chunk.wireEncoded().count, "\(channel) \(size)")
            }
        }
    }

    // MARK: Protocol violations from a raw peer

    @Test("an oversized length header gets GOAWAY RESOURCE_EXHAUSTED and the connection closes",
          .timeLimit(.minutes(1)))
    func oversizedHeader() throws {
        let (connection, peer, closed) = rawSetup()
        defer { peer.close() }
        // One good call first, so GOAWAY has a last stream id to report.
        try peer.send(requestFrame(1, .info))
        #expect(try expectFinalResponse(peer.next(), on: 1) == .info(sampleInfo))

        var header: [UInt8] = []
        FrameHeader(length: FrameHeader.maxPayload + 1, streamID: 3, type: FrameType.request.rawValue, flags: .endStream)
            .encode(into: &header)
        try peer.send(bytes: header)
        let frames = try #require(try peer.framesUntilEOF(), "the connection did not close")
        #expect(frames.count == 1)
        let goAway = try #require(frames.first)
        #expect(goAway.streamID == 0)
        #expect(goAway.frameType == .goAway)
        let message = try GoAway(wire: goAway.payload)
        #expect(message.error.code == .resourceExhausted)
        #expect(message.error.reason == BerthError.Reason.protocolViolation)
        #expect(message.error.message.contains("4194305"))
        #expect(message.lastStreamID == 1)

        let reported = try #require(closed.wait(count: 1), "onClose was not called")
        #expect(reported.count == 1)
        #expect(reported.first??.code == .resourceExhausted)
        #expect(connection.isClosed)
        #expect(throws: BerthError.self) { try connection.openStream(.info) }
    }

    @Test("a REQUEST whose payload does not parse gets an error RESPONSE; the connection goes on",
          .timeLimit(.minutes(1)))
    func malformedRequest() throws {
        let (connection, peer, closed) = rawSetup()
        defer { finish(connection, peer, closed) }
        try peer.send(Frame(streamID: 1, type: .request, flags: .endStream, payload: [0xff, 0xff, 0xff]))
        let answer = try expectFinalResponse(peer.next(), on: 1)
        #expect(answer == .error(BerthError(.invalidArgument, "malformed Request payload (3 bytes)",
                                            reason: BerthError.Reason.protocolViolation)))
        try peer.send(requestFrame(3, .info))
        #expect(try expectFinalResponse(peer.next(), on: 3) == .info(sampleInfo))
        #expect(!connection.isClosed)
    }

    @Test("an unknown frame type on a stream gets CANCEL on that stream; the connection goes on",
          .timeLimit(.minutes(1)))
    func unknownFrameType() throws {
        let seen = Mailbox<StreamEvent>()
        let (connection, peer, closed) = rawSetup { stream, request in
            if case .importImage = request { seen.put(stream.receive()) } else { standardHandler(stream, request) }
        }
        defer { finish(connection, peer, closed) }
        // On an open stream: the peer is told, and so is the handler waiting on it.
        try peer.send(requestFrame(1, .importImage(name: "x"), end: false))
        sleep(ms: 50)
        try peer.send(Frame(streamID: 1, rawType: 0x42, flags: [], payload: [1, 2, 3]))
        let reason = try expectCancel(peer.next(), on: 1)
        #expect(reason?.code == .invalidArgument)
        #expect(reason?.reason == BerthError.Reason.protocolViolation)
        // (The local side learns only that the stream is gone, not the peer's offence.)
        #expect(try #require(seen.take()).cancellation != nil)
        // On a stream that was never opened.
        try peer.send(Frame(streamID: 9, rawType: 0x42, flags: .endStream, payload: []))
        #expect(try expectCancel(peer.next(), on: 9)?.code == .invalidArgument)
        // A connection-level type on a stream.
        try peer.send(Frame(streamID: 11, type: .ping, payload: Ping(nonce: 1).wireEncoded()))
        #expect(try expectCancel(peer.next(), on: 11)?.code == .invalidArgument)

        try peer.send(requestFrame(13, .info))
        #expect(try expectFinalResponse(peer.next(), on: 13) == .info(sampleInfo))
        #expect(!connection.isClosed)
    }

    @Test("DATA beyond the window gets CANCEL RESOURCE_EXHAUSTED", .timeLimit(.minutes(1)))
    func dataBeyondWindow() throws {
        let go = Mailbox<Bool>()
        let seen = Mailbox<StreamEvent>()
        let (connection, peer, closed) = rawSetup { stream, request in
            guard case .importImage = request else { return standardHandler(stream, request) }
            _ = go.take()  // consume nothing: the window is not replenished
            while true {
                let event = stream.receive()
                seen.put(event)
                if event.ends { return }
            }
        }
        defer { finish(connection, peer, closed) }
        try peer.send(requestFrame(1, .importImage(name: "x"), end: false))
        let piece = Chunk(channel: .payload, data: Array(repeating: 7, count: 600_000)).wireEncoded()
        // 600 000 fits in 1 MiB; a second 600 000 does not.
        try peer.send(Frame(streamID: 1, type: .data, payload: piece))
        try peer.send(Frame(streamID: 1, type: .data, payload: piece))
        let reason = try expectCancel(peer.next(), on: 1)
        #expect(reason?.code == .resourceExhausted)
        #expect(reason?.reason == BerthError.Reason.protocolViolation)

        // The handler, blocked or not, learns that the stream is gone.
        go.put(true)
        #expect(try #require(seen.take()).cancellation != nil)

        // A single DATA frame larger than a whole window, on a fresh stream.
        try peer.send(requestFrame(3, .importImage(name: "y"), end: false))
        let big = Chunk(channel: .payload, data: Array(repeating: 1, count: window)).wireEncoded()
        try peer.send(Frame(streamID: 3, type: .data, payload: big))
        #expect(try expectCancel(peer.next(), on: 3)?.code == .resourceExhausted)
        go.put(true)

        try peer.send(requestFrame(5, .info))
        #expect(try expectFinalResponse(peer.next(), on: 5) == .info(sampleInfo))
    }

    @Test("a REQUEST with an even, reused or lower stream id gets an error RESPONSE", .timeLimit(.minutes(1)))
    func badStreamIDs() throws {
        let (connection, peer, closed) = rawSetup()
        defer { finish(connection, peer, closed) }
        try peer.send(requestFrame(2, .info))
        let even = try expectFinalResponse(peer.next(), on: 2)
        #expect(errorCode(even) == .invalidArgument)
        if case .error(let e) = even { #expect(e.reason == BerthError.Reason.protocolViolation) }

        try peer.send(requestFrame(7, .info))
        #expect(try expectFinalResponse(peer.next(), on: 7) == .info(sampleInfo))
        try peer.send(requestFrame(7, .info))
        #expect(errorCode(try expectFinalResponse(peer.next(), on: 7)) == .invalidArgument)
        try peer.send(requestFrame(5, .info))
        #expect(errorCode(try expectFinalResponse(peer.next(), on: 5)) == .invalidArgument)
        try peer.send(requestFrame(9, .info))
        #expect(try expectFinalResponse(peer.next(), on: 9) == .info(sampleInfo))
    }

    @Test("the REQUEST beyond maxStreams gets RESOURCE_EXHAUSTED", .timeLimit(.minutes(1)))
    func tooManyStreams() throws {
        var options = ConnectionOptions()
        options.maxStreams = 2
        let (connection, peer, closed) = rawSetup(options: options)
        defer { finish(connection, peer, closed) }
        try peer.send(requestFrame(1, .importImage(name: "a"), end: false))
        try peer.send(requestFrame(3, .importImage(name: "b"), end: false))
        try peer.send(requestFrame(5, .info))
        #expect(errorCode(try expectFinalResponse(peer.next(), on: 5)) == .resourceExhausted)
        // Once one finishes there is room again.
        try peer.send(Frame(streamID: 1, type: .data, flags: .endStream, payload: []))
        let done = try expectFinalResponse(peer.next(), on: 1)
        #expect(done == .importImage(Image(name: "a", id: "sha256:test", sizeBytes: 0, createdUnix: 0)))
        try peer.send(requestFrame(7, .info))
        #expect(try expectFinalResponse(peer.next(), on: 7) == .info(sampleInfo))
    }

    @Test("PING on stream 0 gets PONG with the same payload", .timeLimit(.minutes(1)))
    func pingPong() throws {
        let (connection, peer, closed) = rawSetup()
        defer { finish(connection, peer, closed) }
        for nonce: UInt64 in [0xdead_beef_cafe_f00d, 0, 1] {
            let payload = Ping(nonce: nonce).wireEncoded()
            try peer.send(Frame(streamID: 0, type: .ping, payload: payload))
            let pong = try #require(try peer.next())
            #expect(pong.streamID == 0)
            #expect(pong.frameType == .pong)
            #expect(pong.payload == payload)
            #expect(try Ping(wire: pong.payload).nonce == nonce)
        }
    }

    @Test("GOAWAY from the peer closes the connection and reports the peer's reason", .timeLimit(.minutes(1)))
    func goAwayFromPeer() throws {
        let (connection, peer, closed) = rawSetup(role: .client)
        defer { peer.close() }
        let events = Mailbox<StreamEvent>()
        _ = try connection.openStream(.info) { events.put($0) }
        #expect(try peer.next()?.frameType == .request)
        let reason = BerthError(.unavailable, "agent node-7 is shutting down")
        try peer.send(Frame(streamID: 0, type: .goAway, payload: GoAway(error: reason, lastStreamID: 1).wireEncoded()))
        #expect(events.wait(count: 1)?.first?.cancellation == reason)
        #expect(try peer.framesUntilEOF() == [])
        #expect(closed.wait(count: 1) == [reason])
        #expect(connection.isClosed)
    }

    // MARK: Keepalive

    @Test("a silent peer gets PINGs, then the connection closes after three intervals", .timeLimit(.minutes(1)))
    func keepaliveTimeout() throws {
        let (connection, peer, closed) = rawSetup(role: .client)
        defer { peer.close() }
        let events = Mailbox<StreamEvent>()
        _ = try connection.openStream(.info) { events.put($0) }
        #expect(try peer.next()?.frameType == .request)
        // As after a Hello: the interval is agreed while the reader already waits.
        try peer.send(Frame(streamID: 0, type: .ping, payload: Ping(nonce: 5).wireEncoded()))
        #expect(try peer.next()?.frameType == .pong)
        connection.setKeepalive(seconds: 1)
        let start = Host.monotonicNanos

        let frames = try #require(try peer.framesUntilEOF(seconds: 40), "the connection stayed open")
        let elapsed = elapsedSeconds(since: start)
        #expect(elapsed > 2.5 && elapsed < 5, "closed after \(elapsed) s")
        #expect(!frames.isEmpty)
        #expect(frames.allSatisfy { $0.frameType == .ping && $0.streamID == 0 })
        for frame in frames { _ = try Ping(wire: frame.payload) }

        let reported = try #require(closed.wait(count: 1), "onClose was not called")
        #expect(reported.first??.code == .unavailable, "onClose got \(String(describing: reported.first))")
        #expect(events.wait(count: 1)?.first?.cancellation?.code == .unavailable)
        #expect(connection.isClosed)
    }

    @Test("PONGs keep the connection open past three intervals", .timeLimit(.minutes(1)))
    func keepaliveAnswered() throws {
        var options = ConnectionOptions()
        options.keepaliveSeconds = 1
        let (connection, peer, closed) = rawSetup(role: .client, options: options)
        defer { finish(connection, peer, closed) }
        let start = Host.monotonicNanos
        var pings = 0
        while elapsedSeconds(since: start) < 4.5 {
            guard let frame = try peer.next(seconds: 0.2) else {
                #expect(!peer.eof, "the connection closed although every PING was answered")
                if peer.eof { return }
                continue
            }
            #expect(frame.frameType == .ping)
            pings += 1
            try peer.send(Frame(streamID: 0, type: .pong, payload: frame.payload))
        }
        #expect(pings >= 3)
        #expect(!connection.isClosed)
        #expect(closed.all.isEmpty)
    }

    @Test("two Connections with a 1 s keepalive stay open while idle", .timeLimit(.minutes(1)))
    func keepaliveIdlePair() throws {
        var options = ConnectionOptions()
        options.keepaliveSeconds = 1
        let pair = Pair(clientOptions: options, serverOptions: options, handler: standardHandler)
        defer { pair.close() }
        sleep(ms: 4000)
        #expect(!pair.client.isClosed)
        #expect(!pair.server.isClosed)
        #expect(pair.clientClosed.all.isEmpty)
        #expect(pair.serverClosed.all.isEmpty)
        // PINGs (or PONGs) arrived within the last interval on both sides.
        let now = Host.monotonicNanos
        #expect(now - pair.client.state.withLock { $0.lastReceived } < 2 * second)
        #expect(now - pair.server.state.withLock { $0.lastReceived } < 2 * second)
        let stream = try pair.client.openStream(.info)
        #expect(stream.receive().response == .info(sampleInfo))
    }

    // MARK: Cancel and close

    @Test("a client cancel wakes the server's receive() with .cancelled", .timeLimit(.minutes(1)))
    func clientCancel() throws {
        let waiting = Mailbox<UInt32>()
        let seen = Mailbox<StreamEvent>()
        let pair = Pair { stream, _ in
            waiting.put(stream.id)
            seen.put(stream.receive())
        }
        defer { pair.close() }

        let events = Mailbox<StreamEvent>()
        let plain = try pair.client.openStream(.importImage(name: "a"), end: false) { events.put($0) }
        _ = try #require(waiting.take())
        sleep(ms: 100)  // the handler is in receive()
        plain.cancel()
        #expect(seen.take()?.cancellation?.code == .cancelled)
        #expect(events.take()?.cancellation?.code == .cancelled)  // the local sink hears of it too
        #expect(!plain.isOpen)

        let reason = BerthError(.deadlineExceeded, "the client gave up after 5 s")
        let withReason = try pair.client.openStream(.importImage(name: "b"), end: false)
        _ = try #require(waiting.take())
        sleep(ms: 100)
        withReason.cancel(reason)
        #expect(seen.take()?.cancellation == reason)
        #expect(withReason.receive().cancellation != nil)
        #expect(throws: BerthError.self) { try withReason.sendData(Chunk(channel: .payload, data: [1])) }

        sleep(ms: 100)
        #expect(pair.server.state.withLock { $0.streams.count } == 0)
        #expect(pair.client.state.withLock { $0.streams.count } == 0)
        #expect(!pair.client.isClosed)
    }

    @Test("a server cancel reaches the client's sink as .cancelled with its reason", .timeLimit(.minutes(1)))
    func serverCancel() throws {
        let reason = BerthError(.aborted, "the handler gave up")
        let sendAfter = Mailbox<BerthError?>()
        let pair = Pair { stream, request in
            guard case .run = request else { return standardHandler(stream, request) }
            stream.cancel(reason)
            do throws(BerthError) {
                try stream.send(.run(.exit(ExitStatus(exitCode: 0))), end: true)
                sendAfter.put(nil)
            } catch {
                sendAfter.put(error)
            }
        }
        defer { pair.close() }
        let events = Mailbox<StreamEvent>()
        let stream = try pair.client.openStream(.run(ContainerSpec())) { events.put($0) }
        let got = try #require(events.wait(count: 1))
        #expect(got.first?.cancellation == reason)
        #expect(sendAfter.take()??.code == .cancelled)
        sleep(ms: 100)
        #expect(events.all.count == 1)
        #expect(!stream.isOpen)
        #expect(try pair.client.openStream(.info).receive().response == .info(sampleInfo))
    }

    @Test("a client cancel fails the server's blocked sendData and later sends with CANCELLED",
          .timeLimit(.minutes(1)))
    func cancelWhileSending() throws {
        let outcome = Mailbox<BerthError?>()
        let pair = Pair { stream, request in
            guard case .run = request else { return standardHandler(stream, request) }
            do throws(BerthError) {
                try stream.sendData(Chunk(channel: .stdout, data: Array(repeating: 1, count: 3 << 20)))
                outcome.put(nil)
            } catch {
                outcome.put(error)
            }
            do throws(BerthError) {
                try stream.send(.run(.exit(ExitStatus(exitCode: 0))), end: true)
                outcome.put(nil)
            } catch {
                outcome.put(error)
            }
        }
        defer { pair.close() }
        let events = Mailbox<StreamEvent>()
        let stream = try pair.client.openStream(.run(ContainerSpec())) { events.put($0) }
        _ = try #require(events.wait(count: 1))
        sleep(ms: 200)  // the handler is blocked on the window
        #expect(outcome.all.isEmpty)
        stream.cancel()
        let results = try #require(outcome.wait(count: 2))
        #expect(results[0]?.code == .cancelled, "sendData: \(String(describing: results[0]))")
        #expect(results[1]?.code == .cancelled, "send: \(String(describing: results[1]))")
    }

    @Test("a handler that only watches isOpen learns of a client cancel", .timeLimit(.minutes(1)))
    func cancelSeenByIsOpen() throws {
        let noticed = Mailbox<Bool>()
        let pair = Pair { stream, request in
            guard case .wait = request else { return standardHandler(stream, request) }
            // Like the agent's Wait: it never receives, it checks isOpen now and then.
            let start = Host.monotonicNanos
            while stream.isOpen && elapsedSeconds(since: start) < 5 { sleep(ms: 20) }
            noticed.put(!stream.isOpen)
        }
        defer { pair.close() }
        let stream = try pair.client.openStream(.wait("forever"))
        sleep(ms: 200)
        stream.cancel()
        #expect(noticed.take() == true)
        sleep(ms: 100)
        #expect(pair.server.state.withLock { $0.streams.count } == 0)
    }

    @Test("closing the connection cancels every open stream once and calls onClose once",
          .timeLimit(.minutes(1)))
    func closeCancelsEverything() throws {
        let serverSaw = Mailbox<StreamEvent>()
        let waiting = Mailbox<UInt32>()
        let pair = Pair { stream, _ in
            waiting.put(stream.id)
            serverSaw.put(stream.receive())
        }
        let boxes = (0..<5).map { _ in Mailbox<StreamEvent>() }
        for box in boxes { _ = try pair.client.openStream(.importImage(name: "x"), end: false) { box.put($0) } }
        let plain = try pair.client.openStream(.importImage(name: "y"), end: false)
        _ = try #require(waiting.wait(count: 6))
        sleep(ms: 100)

        pair.client.close()
        for box in boxes {
            let events = try #require(box.wait(count: 1))
            #expect(events.first?.cancellation?.code == .unavailable)
        }
        #expect(plain.receive().cancellation?.code == .unavailable)
        let serverEvents = try #require(serverSaw.wait(count: 6))
        #expect(serverEvents.allSatisfy { $0.cancellation?.code == .unavailable })
        #expect(pair.clientClosed.wait(count: 1) == [nil])
        #expect(pair.serverClosed.wait(count: 1) == [nil])

        pair.client.close()
        pair.client.close(BerthError(.internal, "again"))
        sleep(ms: 200)
        #expect(pair.clientClosed.all.count == 1)
        #expect(pair.serverClosed.all.count == 1)
        #expect(boxes.allSatisfy { $0.all.count == 1 })
        #expect(serverSaw.all.count == 6)
        #expect(throws: BerthError.self) { try pair.client.openStream(.info) }
        do { _ = try pair.client.openStream(.info) } catch { #expect(error.code == .unavailable) }
        #expect(pair.client.state.withLock { $0.streams.count } == 0)
        #expect(pair.server.state.withLock { $0.streams.count } == 0)
    }

    @Test("close() after the connection is gone does not touch the descriptor number", .timeLimit(.minutes(1)))
    func closeTwiceLeavesReusedDescriptorAlone() throws {
        let (a, b) = socketPair()
        defer { b.close() }
        let (x, y) = socketPair()
        defer { x.close(); y.close() }
        let closed = Mailbox<BerthError?>()
        let connection = Connection(fd: a, role: .client, label: "twice")
        connection.start(onClose: { closed.put($0) })
        connection.close()
        #expect(closed.wait(count: 1) != nil)
        // Wait for the reader to release the descriptor, then put another socket on its number.
        let start = Host.monotonicNanos
        while fcntl(a.rawValue, F_GETFD) != -1 && elapsedSeconds(since: start) < 10 { sleep(ms: 10) }
        let reused = fcntl(x.rawValue, F_DUPFD_CLOEXEC, a.rawValue)
        #expect(reused == a.rawValue)
        let other = FileDescriptor(rawValue: reused)
        defer { other.close() }

        connection.close()  // e.g. BerthClient.close() and then its deinit
        try sendAll(y, [1, 2, 3])
        #expect(try other.read(upTo: 16) == [1, 2, 3])
        try sendAll(other, [4, 5])
        #expect(try y.read(upTo: 16) == [4, 5])
    }

    @Test("a peer that stops reading fails the write without SIGPIPE", .timeLimit(.minutes(1)))
    func writeToDeadPeer() throws {
        let (a, b) = socketPair()
        defer { b.close() }
        let closed = Mailbox<BerthError?>()
        let connection = Connection(fd: a, role: .client, label: "dead-peer")
        connection.start(onClose: { closed.put($0) })
        let events = Mailbox<StreamEvent>()
        _ = shutdown(b.rawValue, Int32(SHUT_RD))  // our writes now meet EPIPE
        _ = try connection.openStream(.info) { events.put($0) }
        let reported = try #require(closed.wait(count: 1), "onClose was not called")
        #expect(reported.first??.code == .unavailable)
        #expect(events.wait(count: 1)?.first?.cancellation?.code == .unavailable)
        #expect(connection.isClosed)
    }
}

/// The GOAWAY among `frames`, decoded.
private func goAwayError(_ frames: [Frame]?) -> BerthError? {
    guard let frame = frames?.first(where: { $0.frameType == .goAway }) else { return nil }
    return (try? GoAway(wire: frame.payload))?.error
}

@Suite("Connection limits", .serialized)
struct ConnectionLimitTests {
    @Test("no handshake in time: GOAWAY DEADLINE_EXCEEDED and close, even while PINGs arrive", .timeLimit(.minutes(1)))
    func handshakeTimeout() throws {
        var options = ConnectionOptions()
        options.handshakeTimeoutSeconds = 1
        // Silent peer.
        do {
            let (_, peer, closed) = rawSetup(options: options)
            defer { peer.close() }
            let error = goAwayError(try peer.framesUntilEOF(seconds: 5))
            #expect(error?.code == .deadlineExceeded)
            #expect(error?.message.contains("Hello") == true)
            #expect(closed.wait(count: 1)?.first??.code == .deadlineExceeded)
        }
        // A peer that keeps the connection busy with PINGs but never completes Hello.
        do {
            let (_, peer, closed) = rawSetup(options: options)
            defer { peer.close() }
            let start = Host.monotonicNanos
            var sawGoAway = false, reset = false
            while elapsedSeconds(since: start) < 5 && !peer.eof && !reset && !sawGoAway {
                try? peer.send(Frame(streamID: 0, type: .ping, payload: Ping(nonce: 1).wireEncoded()))
                do {
                    if let f = try peer.next(seconds: 0.2, skipping: [.pong]), f.frameType == .goAway {
                        sawGoAway = (try? GoAway(wire: f.payload))?.error.code == .deadlineExceeded
                    }
                } catch {
                    // A reset: the server closed with our PINGs unread, and the kernel
                    // dropped its GOAWAY with it (what the lingering close prevents).
                    reset = true
                }
            }
            #expect(sawGoAway)
            #expect(!reset)
            #expect(closed.wait(count: 1)?.first??.code == .deadlineExceeded)
        }
    }

    @Test("after handshakeCompleted the handshake deadline no longer applies", .timeLimit(.minutes(1)))
    func handshakeDone() throws {
        var options = ConnectionOptions()
        options.handshakeTimeoutSeconds = 1
        let (connection, peer, closed) = rawSetup(options: options)
        defer { finish(connection, peer, closed) }
        connection.handshakeCompleted()
        sleep(ms: 2200)
        try peer.send(requestFrame(1, .info))
        #expect(try expectFinalResponse(peer.next(), on: 1) == .info(sampleInfo))
        #expect(!connection.isClosed)
    }

    @Test("a frame that stops arriving part-way (slow loris) closes the connection", .timeLimit(.minutes(1)))
    func stalledFrame() throws {
        var options = ConnectionOptions()
        options.frameTimeoutSeconds = 1
        // 5 bytes of a header, then nothing.
        do {
            let (_, peer, closed) = rawSetup(options: options)
            defer { peer.close() }
            try peer.send(bytes: Array(requestFrame(1, .info).encoded().prefix(5)))
            let error = goAwayError(try peer.framesUntilEOF(seconds: 5))
            #expect(error?.code == .deadlineExceeded)
            #expect(error?.message.contains("5 bytes") == true)
            #expect(closed.wait(count: 1)?.first??.code == .deadlineExceeded)
        }
        // The header and part of the payload.
        do {
            let (_, peer, closed) = rawSetup(options: options)
            defer { peer.close() }
            let frame = requestFrame(1, .importImage(name: "a-longish-name"), end: false).encoded()
            try peer.send(bytes: Array(frame.prefix(FrameHeader.size + 3)))
            #expect(goAwayError(try peer.framesUntilEOF(seconds: 5))?.code == .deadlineExceeded)
            #expect(closed.wait(count: 1) != nil)
        }
        // Silence at a frame boundary is not a stall.
        do {
            let (connection, peer, closed) = rawSetup(options: options)
            defer { finish(connection, peer, closed) }
            try peer.send(requestFrame(1, .info))
            #expect(try expectFinalResponse(peer.next(), on: 1) == .info(sampleInfo))
            sleep(ms: 2200)
            try peer.send(requestFrame(3, .info))
            #expect(try expectFinalResponse(peer.next(), on: 3) == .info(sampleInfo))
        }
    }

    @Test("idle: closed only once no stream is open and no stream frame came for the timeout; PINGs do not count",
          .timeLimit(.minutes(1)))
    func idleTimeout() throws {
        var options = ConnectionOptions()
        options.idleTimeoutSeconds = 1
        let (connection, peer, closed) = rawSetup(options: options)
        defer { peer.close() }
        // An open upload keeps it alive well past the timeout.
        try peer.send(requestFrame(1, .importImage(name: "a"), end: false))
        sleep(ms: 2500)
        #expect(!connection.isClosed)
        try peer.send(Frame(streamID: 1, type: .data, flags: .endStream, payload: []))
        _ = try expectFinalResponse(peer.next(), on: 1)
        // Then PINGs alone do not: the idle GOAWAY comes within a few seconds.
        let start = Host.monotonicNanos
        var error: BerthError?
        while elapsedSeconds(since: start) < 5 && !peer.eof && error == nil {
            try? peer.send(Frame(streamID: 0, type: .ping, payload: Ping(nonce: 2).wireEncoded()))
            if let f = try peer.next(seconds: 0.3, skipping: [.pong]), f.frameType == .goAway {
                error = (try? GoAway(wire: f.payload))?.error
            }
        }
        #expect(error?.code == .unavailable)
        #expect(error?.message.contains("idle") == true)
        #expect(closed.wait(count: 1) != nil)
    }

    @Test("unconsumed DATA is bounded per connection: the stream that goes over is cancelled, others go on",
          .timeLimit(.minutes(1)))
    func bufferedDataCap() throws {
        var options = ConnectionOptions()
        options.maxBufferedData = 1_500_000
        let go = Mailbox<Bool>()
        let (connection, peer, closed) = rawSetup(options: options) { stream, request in
            guard case .importImage = request else { return standardHandler(stream, request) }
            _ = go.take()  // consume nothing until told
            _ = drain(stream)
            try? stream.send(.importImage(Image(name: "x", id: "sha256:test", sizeBytes: 0, createdUnix: 0)), end: true)
        }
        defer { finish(connection, peer, closed) }
        let piece = Chunk(channel: .payload, data: Array(repeating: 7, count: 900_000)).wireEncoded()
        try peer.send(requestFrame(1, .importImage(name: "a"), end: false))
        try peer.send(requestFrame(3, .importImage(name: "b"), end: false))
        try peer.send(Frame(streamID: 1, type: .data, payload: piece))
        // Within stream 3's window, but 1.8 MB unconsumed on the connection.
        try peer.send(Frame(streamID: 3, type: .data, payload: piece))
        let reason = try expectCancel(peer.next(), on: 3)
        #expect(reason?.code == .resourceExhausted)
        #expect(reason?.message.contains("not yet consumed") == true)
        // Stream 1 is intact.
        go.put(true)
        go.put(true)
        try peer.send(Frame(streamID: 1, type: .data, flags: .endStream, payload: []))
        _ = try expectFinalResponse(peer.next(), on: 1)
        try peer.send(requestFrame(5, .info))
        #expect(try expectFinalResponse(peer.next(), on: 5) == .info(sampleInfo))
    }
}
