#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem
import BerthWire
import Testing

/// The agent's network limits (docs/protocol.md, "Limits"): each one stops a peer that
/// would otherwise hold the agent's resources, and never disturbs the other clients.
@Suite("Limits (root, real agent)", .enabled(if: isRoot, "needs root"), .timeLimit(.minutes(3)))
struct LimitsTests {
    @Test("--max-connections: the connection beyond the limit gets GOAWAY RESOURCE_EXHAUSTED; the others work; a freed slot is reused")
    func maxConnections() async throws {
        try await withAgent(extraArgs: ["--max-connections", "3"]) { agent in
            // Let the agent see the start-up probe's connection go.
            usleep(300_000)
            var clients: [BerthClient] = []
            for _ in 0..<3 { clients.append(try await agent.connect()) }
            await expectError(.resourceExhausted, contains: "has 3 connections, the most it takes") { try await agent.connect() }
            // A raw connection is refused the same way, before it says anything.
            let raw = try RawConnection(agent.socket)
            defer { raw.close() }
            let goAway = try raw.receive()
            #expect(goAway.frameType == .goAway)
            #expect(try GoAway(wire: goAway.payload).error.code == .resourceExhausted)
            #expect(raw.atEOF())
            for c in clients { #expect(try await c.info().nodeName == "test-node") }
            clients.removeFirst().close()
            var again: BerthClient?
            for _ in 0..<50 where again == nil {
                again = try? await agent.connect()
                if again == nil { usleep(100_000) }
            }
            let reconnected = try #require(again, "no slot after closing a connection")
            #expect(try await reconnected.info().nodeName == "test-node")
            reconnected.close()
            for c in clients { c.close() }
            #expect(agent.log.contains("refused: 3 connections already"))
        }
    }

    @Test("--max-streams: the REQUEST beyond the limit gets RESOURCE_EXHAUSTED on its stream; the connection stays usable")
    func maxStreams() async throws {
        try await withAgent(extraArgs: ["--max-streams", "2"]) { agent in
            let raw = try RawConnection(agent.socket)
            defer { raw.close() }
            try hello(raw)
            // Two uploads that wait for their tarballs hold two streams open.
            try raw.send(request(3, .importImage(name: "a"), end: false))
            try raw.send(request(5, .importImage(name: "b"), end: false))
            try raw.send(request(7, .info))
            let refused = try raw.receive()
            #expect(refused.streamID == 7)
            guard case .error(let e) = try Response(wire: refused.payload) else { Issue.record("not an error"); return }
            #expect(e.code == .resourceExhausted)
            #expect(e.message.contains("too many open streams"))
            // Ending one upload (an empty tarball is refused) frees a slot.
            try raw.send(Frame(streamID: 3, type: .data, flags: .endStream, payload: []))
            var ended = false
            while !ended {
                let f = try raw.receive()
                if f.streamID == 3 && f.flags.contains(.endStream) { ended = true }
            }
            try raw.send(request(9, .info))
            var answer = try raw.receive()
            while answer.streamID != 9 { answer = try raw.receive() }
            guard case .info(let info) = try Response(wire: answer.payload) else { Issue.record("not info"); return }
            #expect(info.nodeName == "test-node")
        }
    }

    @Test("handshake and stalled-frame timeouts close only the offending connection")
    func handshakeAndFrameTimeouts() async throws {
        try await withAgent(extraArgs: ["--handshake-timeout", "1", "--frame-timeout", "1", "--idle-timeout", "0"]) { agent in
            let client = try await agent.connect()
            defer { client.close() }
            // A client that keeps calling is served throughout.
            // It stops when told, after the call it is making (never cut short).
            let stop = ConditionLock(false)
            let busy = Task {
                var calls = 0
                repeat {
                    _ = try await client.info()
                    calls += 1
                    try? await Task.sleep(nanoseconds: 200_000_000)
                } while !stop.withLock({ $0 })
                return calls
            }
            // Connects and says nothing.
            let silent = try RawConnection(agent.socket)
            defer { silent.close() }
            // Hello, then 5 bytes of a header.
            let loris = try RawConnection(agent.socket)
            defer { loris.close() }
            try hello(loris)
            try loris.sendRaw(Array(request(3, .info).encoded().prefix(5)))

            let start = Host.monotonicNanos
            let silentError = try await goAwayThenEOF(silent)
            #expect(silentError?.code == .deadlineExceeded)
            #expect(silentError?.message.contains("Hello") == true)
            let lorisError = try await goAwayThenEOF(loris)
            #expect(lorisError?.code == .deadlineExceeded)
            #expect(lorisError?.message.contains("stalled") == true)
            #expect(Host.monotonicNanos - start < 9_000_000_000, "not closed within 9 s (the default timeouts are 10 s: the flags were not taken)")

            stop.withLock { $0 = true }
            #expect(try await busy.value >= 1)
            #expect(try await client.info().nodeName == "test-node")
            #expect(agent.log.contains("no handshake (Hello) within 1 s"))
        }
    }

    @Test("an idle connection (no stream, no call) is closed with GOAWAY; one with a call open is not")
    func idleTimeout() async throws {
        try await withAgent(extraArgs: ["--idle-timeout", "6"]) { agent in
            let setup = try await agent.clientWithImage()
            _ = try await setup.startContainer(try await setup.createContainer(spec(["sleep", "100"], rm: false, name: "sleeper")).id)
            setup.close()
            let idle = try RawConnection(agent.socket)
            defer { idle.close() }
            try hello(idle)
            // A Wait on a running container keeps its connection busy however long it takes.
            let open = try RawConnection(agent.socket)
            defer { open.close() }
            try hello(open)
            try open.send(request(3, .wait("sleeper")))

            let start = Host.monotonicNanos
            let idleError = try await goAwayThenEOF(idle)
            #expect(idleError?.code == .unavailable)
            #expect(idleError?.message.contains("idle for 6 s") == true)
            #expect(Host.monotonicNanos - start < 30_000_000_000, "not closed within 30 s (the default idle timeout is 300 s: the flag was not taken)")
            // The one with an open stream is still there, and is served.
            try open.send(request(5, .info))
            var answer = try open.receive()
            while answer.streamID != 5 { answer = try open.receive() }
            guard case .info = try Response(wire: answer.payload) else { Issue.record("not info"); return }
            // A new client is served too.
            let client = try await agent.connect()
            #expect(try await client.info().nodeName == "test-node")
            try? await client.killContainer("sleeper")
            client.close()
        }
    }

    @Test("plain TCP off loopback is refused without --insecure-tcp, and loudly allowed with it")
    func insecureTCP() async throws {
        // Below the kernel's ephemeral range (32768–60999), where other tests' client
        // connections take their ports.
        let port = UInt16(20000 + (Int(Host.randomHex(bytes: 2), radix: 16) ?? 0) % 12000)
        do {
            _ = try await TestAgent(extraArgs: ["--listen", "tcp://0.0.0.0:\(port)"])
            Issue.record("berthd started with plain TCP on 0.0.0.0")
        } catch let e as BerthError {
            #expect(e.message.contains("--insecure-tcp"), "\(e.message)")
            #expect(e.message.contains("mutual TLS"), "\(e.message)")
        }
        try await withAgent(extraArgs: ["--listen", "tcp://0.0.0.0:\(port)", "--insecure-tcp"]) { agent in
            #expect(agent.log.contains("WARNING: plain TCP on tcp://0.0.0.0:\(port): anyone who can reach it controls this host as root"))
            let client = try await BerthClient.connect(to: "tcp://127.0.0.1:\(port)")
            defer { client.close() }
            let info = try await client.info()
            #expect(info.warnings == ["plain TCP on tcp://0.0.0.0:\(port): anyone who can reach it controls this host as root"])
            let cli = try runProgram([binDir + "/berth", "-H", "tcp://127.0.0.1:\(port)", "info"])
            #expect(cli.status == 0)
            #expect(cli.stdout.contains("Warnings:\n  plain TCP on tcp://0.0.0.0:\(port)"))
        }
        // Loopback needs no flag and gives no warning.
        try await withAgent(tcpPort: port) { agent in
            let client = try await BerthClient.connect(to: "tcp://127.0.0.1:\(port)")
            defer { client.close() }
            #expect(try await client.info().warnings.isEmpty)
            #expect(!agent.log.contains("WARNING"))
        }
    }

    @Test("--socket-group: the socket is 0660 in that group; an existing directory is left alone, a new one is 0750")
    func socketPermissions() async throws {
        try await withAgent(extraArgs: ["--socket-group", "0"]) { agent in
            var st = stat()
            #expect(stat(agent.socket, &st) == 0)
            #expect(st.st_mode & 0o7777 == 0o660)
            #expect(st.st_gid == 0)
            // The test's own directory existed before the agent: untouched (mkdtemp's 0700).
            #expect(stat(agent.dir.path, &st) == 0)
            #expect(st.st_mode & 0o7777 == 0o700)
        }
        // A directory the agent creates: 0750, in the socket's group.
        let dir = try TempDir("berth-sock")
        defer { dir.remove() }
        let socket = dir.path + "/sub/berth.sock"
        let prefix = "bt" + Host.randomHex(bytes: 2)
        let lifeline = try FileDescriptor.pipe()
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, lifeline.read.rawValue, 0)
        posix_spawn_file_actions_addopen(&actions, 1, dir.path + "/berthd.log", O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, dir.path + "/berthd.log", O_WRONLY | O_CREAT | O_APPEND, 0o600)
        var env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
        let pid = try spawn([binDir + "/berthd", "--socket", socket, "--socket-group", "1", "--state-dir", dir.path + "/state",
                             "--run-dir", dir.path + "/run", "--exit-on-stdin-eof", "--network-prefix", prefix,
                             "--default-network", "none", "--cgroup-parent", "berth-test-\(prefix)"], &env, &actions)
        lifeline.read.close()
        var connected = false
        for _ in 0..<100 where !connected {
            if let c = try? await BerthClient.connect(to: "unix://" + socket) { c.close(); connected = true } else { usleep(100_000) }
        }
        var st = stat()
        #expect(connected, "\((try? Files.readString(dir.path + "/berthd.log")) ?? "")")
        #expect(stat(dir.path + "/sub", &st) == 0)
        #expect(st.st_mode & 0o7777 == 0o750)
        #expect(st.st_gid == 1)
        #expect(stat(socket, &st) == 0)
        #expect(st.st_mode & 0o7777 == 0o660)
        #expect(st.st_gid == 1)
        kill(pid, SIGTERM)
        lifeline.write.close()
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        rmdir("/sys/fs/cgroup/berth-test-\(prefix)")

        // An unknown group is a usage error.
        let bad = try runProgram([binDir + "/berthd", "--socket-group", "no-such-group-berth"])
        #expect(bad.status == 64)
        #expect(bad.stderr.contains("no such group \"no-such-group-berth\""))
    }

    @Test("received DATA is bounded: beyond a stream's window it is cancelled, beyond 16 MiB a connection's, and the agent does not grow")
    func boundedReceive() async throws {
        try await withAgent { agent in
            let client = try await agent.clientWithImage()
            defer { client.close() }
            _ = try await client.createContainer(spec(["sleep", "120"], rm: false, name: "sleeper"))
            _ = try await client.startContainer("sleeper")
            let rssBefore = vmRSS(agent.pid)

            let raw = try RawConnection(agent.socket)
            defer { raw.close() }
            try hello(raw)
            // Wait never reads its stream's DATA: 1 MiB fills the window, the next byte is a violation.
            try raw.send(request(3, .wait("sleeper"), end: false))
            let mib = Chunk(channel: .payload, data: Array(repeating: 1, count: (1 << 20) - 8)).wireEncoded()
            try raw.send(Frame(streamID: 3, type: .data, payload: mib))
            let more = Chunk(channel: .payload, data: Array(repeating: 2, count: 1000)).wireEncoded()
            try raw.send(Frame(streamID: 3, type: .data, payload: more))
            let cancel = try raw.receive()
            #expect(cancel.streamID == 3 && cancel.frameType == .cancel)
            #expect(try Cancel(wire: cancel.payload).reason?.code == .resourceExhausted)
            // DATA for the cancelled stream is dropped unread: 64 MiB more does not grow the agent.
            let big = Chunk(channel: .payload, data: Array(repeating: 3, count: 1 << 20)).wireEncoded()
            for _ in 0..<64 { try raw.send(Frame(streamID: 3, type: .data, payload: big)) }

            // 24 streams that each fill their window: the connection holds at most 16 MiB.
            var id: UInt32 = 5
            for _ in 0..<24 {
                try raw.send(request(id, .wait("sleeper"), end: false))
                try raw.send(Frame(streamID: id, type: .data, payload: mib))
                id += 2
            }
            try raw.send(request(id, .info))
            var cancelled = 0
            while true {
                let f = try raw.receive()
                if f.frameType == .cancel, let reason = try Cancel(wire: f.payload).reason {
                    #expect(reason.code == .resourceExhausted)
                    #expect(reason.message.contains("not yet consumed"))
                    cancelled += 1
                }
                if f.streamID == id { break }
            }
            #expect(cancelled >= 8, "\(cancelled) streams cancelled")
            let rssAfter = vmRSS(agent.pid)
            // 64 + 24 MiB went in; without the bounds the agent would hold all 88 MiB of it,
            // with them at most 16 MiB plus the allocator's slack.
            #expect(rssAfter - rssBefore < 48 << 10, "VmRSS grew from \(rssBefore) to \(rssAfter) kB")
            try? await client.killContainer("sleeper")
        }
    }

    @Test("10 000 malformed frames: the agent keeps serving everyone else and does not grow")
    func malformedFrames() async throws {
        try await withAgent { agent in
            let bystander = try await agent.connect()
            defer { bystander.close() }
            let rssBefore = vmRSS(agent.pid)
            // 9 000 REQUEST frames whose payload is random bytes, on 9 connections: each
            // gets one answer (mostly INVALID_ARGUMENT), and the connection stays usable.
            for _ in 0..<9 {
                let raw = try RawConnection(agent.socket)
                defer { raw.close() }
                try hello(raw)
                var id: UInt32 = 3
                for _ in 0..<1000 {
                    let junk = (0..<Int.random(in: 0..<48)).map { _ in UInt8.random(in: 0...255) }
                    try raw.send(Frame(streamID: id, type: .request, flags: .endStream, payload: junk))
                    id += 2
                }
                var answered = Set<UInt32>()
                while answered.count < 1000 {
                    let f = try raw.receive()
                    if f.frameType == .response && f.flags.contains(.endStream) { answered.insert(f.streamID) }
                }
                try raw.send(request(id, .info))
                var f = try raw.receive()
                while f.streamID != id { f = try raw.receive() }
                guard case .info = try Response(wire: f.payload) else { Issue.record("the connection stopped serving"); return }
            }
            // 1 000 connections whose framing is broken: a huge length, an unknown type, a
            // truncated frame, random bytes. Each is closed; nothing else is.
            for i in 0..<1000 {
                let raw = try RawConnection(agent.socket)
                var bytes: [UInt8] = []
                switch i % 4 {
                case 0: FrameHeader(length: UInt32.max, streamID: 1, type: 1, flags: []).encode(into: &bytes)
                case 1:
                    FrameHeader(length: 3, streamID: 1, type: 0x7f, flags: []).encode(into: &bytes)
                    bytes += [1, 2, 3]
                case 2:
                    FrameHeader(length: 100, streamID: 1, type: 1, flags: []).encode(into: &bytes)
                    bytes += [1, 2, 3]
                default: bytes = (0..<32).map { _ in UInt8.random(in: 0...255) }
                }
                try? raw.sendRaw(bytes)
                raw.close()
            }
            #expect(try await bystander.info().nodeName == "test-node")
            let fresh = try await agent.connect()
            #expect(try await fresh.info().nodeName == "test-node")
            fresh.close()
            let rssAfter = vmRSS(agent.pid)
            #expect(rssAfter - rssBefore < 32 << 10, "VmRSS grew from \(rssBefore) to \(rssAfter) kB")
        }
    }

    @Test("500 idle connections: those over --max-connections are refused cleanly; all are released")
    func manyIdleConnections() async throws {
        try await withAgent(extraArgs: ["--max-connections", "200"]) { agent in
            var open: [RawConnection] = []
            defer { for c in open { c.close() } }
            var refused = 0
            for _ in 0..<500 {
                let raw = try RawConnection(agent.socket)
                open.append(raw)
            }
            // Each of them either completes Hello or is told why it is refused.
            for raw in open {
                var h = HelloRequest()
                h.protocolVersion = berthProtocolVersion
                try? raw.send(request(1, .hello(h)))
            }
            var served = 0
            for raw in open {
                guard let f = try? raw.receive() else { continue }
                if f.frameType == .goAway, let g = try? GoAway(wire: f.payload), g.error.code == .resourceExhausted {
                    refused += 1
                } else if f.frameType == .response {
                    served += 1
                }
            }
            #expect(served == 200, "\(served) served")
            #expect(refused >= 250, "\(refused) refused with RESOURCE_EXHAUSTED")
            for c in open { c.close() }
            open = []
            // All released: a new client is served.
            var client: BerthClient?
            for _ in 0..<100 where client == nil {
                client = try? await agent.connect()
                if client == nil { usleep(50_000) }
            }
            #expect(try await client?.info().nodeName == "test-node")
            client?.close()
        }
    }
}

/// Sends Hello on stream 1 and reads its answer.
private func hello(_ raw: RawConnection) throws {
    var h = HelloRequest()
    h.protocolVersion = berthProtocolVersion
    try raw.send(request(1, .hello(h)))
    let answer = try raw.receive()
    guard answer.streamID == 1, case .hello = try Response(wire: answer.payload) else {
        throw BerthError(.internal, "no Hello answer")
    }
}

private func request(_ id: UInt32, _ r: Request, end: Bool = true) -> Frame {
    Frame(streamID: id, type: .request, flags: end ? .endStream : [], payload: r.wireEncoded())
}

/// The GOAWAY's error, after checking the connection then ends. Waits (up to 10 s) without
/// blocking a thread of the concurrency pool, which the test's busy client needs.
private func goAwayThenEOF(_ raw: RawConnection) async throws -> BerthError? {
    let deadline = Host.monotonicNanos + 10_000_000_000
    while true {
        var pfd = pollfd(fd: raw.fd.rawValue, events: Int16(POLLIN), revents: 0)
        if poll(&pfd, 1, 0) == 0 {
            if Host.monotonicNanos > deadline { return nil }
            try await Task.sleep(nanoseconds: 50_000_000)
            continue
        }
        let f: Frame
        do { f = try raw.receive() } catch { return nil }
        if f.frameType == .goAway {
            let error = try GoAway(wire: f.payload).error
            #expect(raw.atEOF())
            return error
        }
    }
}

/// VmRSS of a process, in kB.
private func vmRSS(_ pid: pid_t) -> Int {
    let status = (try? Files.readString("/proc/\(pid)/status")) ?? ""
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }
    return 0
}
