#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem
import BerthWire
import Testing

/// Every bad input gets a clear error code and message, and the agent keeps serving.
@Suite("Bad input (root, real agent)", .enabled(if: isRoot, "needs root"), .timeLimit(.minutes(3)))
struct BadInputTests {
    @Test("bad container requests answer with the right codes and the agent keeps serving")
    func badRequests() async throws {
        try await withAgent { agent in
            let client = try await agent.clientWithImage()
            await expectError(.notFound, contains: "nosuchimage") { try await client.run(spec(["true"], image: "nosuchimage")) }
            await expectError(.invalidArgument, contains: "empty command") { try await client.run(spec([])) }
            await expectError(.notFound, reason: BerthError.Reason.execNotFound, contains: "nosuchcmd") {
                try await client.run(spec(["nosuchcmd"]))
            }
            await expectError(.invalidArgument, contains: "invalid image name") { try await client.run(spec(["true"], image: "Bad Name")) }
            await expectError(.invalidArgument, contains: "invalid container name") { try await client.createContainer(spec(["true"], name: "-bad/name")) }
            await expectError(.invalidArgument, contains: "hostname") { try await client.createContainer(spec(["true"], hostname: "bad_host!")) }
            _ = try await client.createContainer(spec(["true"], rm: false, name: "dup"))
            await expectError(.alreadyExists, contains: "dup") { try await client.createContainer(spec(["true"], rm: false, name: "dup")) }
            await expectError(.notFound, contains: "ghost") { try await client.removeContainer("ghost") }
            await expectError(.notFound, contains: "ghost") { try await client.wait("ghost") }
            await expectError(.notFound, contains: "ghost") { try await client.startContainer("ghost") }
            var relative = spec(["true"])
            relative.workingDir = "relative/dir"
            await expectError(.invalidArgument, contains: "absolute") { try await client.run(relative) }
            var badEnv = spec(["true"])
            badEnv.env = ["=nokey"]
            await expectError(.invalidArgument, contains: "KEY=VALUE") { try await client.run(badEnv) }

            // A failed run leaves nothing behind (no record, no mount).
            #expect(try await client.listContainers(all: true).map(\.name) == ["dup"])
            #expect(agent.mountsLeft.isEmpty)
            // Still serving.
            let (out, _, status) = try await collect(try await client.run(spec(["echo", "still here"])))
            #expect(out == "still here\n")
            #expect(status.exitCode == 0)
        }
    }

    @Test("the CLI maps errors to docker's exit codes and usage errors to 64")
    func cliExitCodes() async throws {
        try await withAgent { agent in
            _ = try await agent.clientWithImage()
            let notFound = try agent.cli(["run", "--rm", "busybox", "nosuchcmd"])
            #expect(notFound.status == 127)
            #expect(notFound.stderr.contains("executable file not found"))
            // --pull never: a missing image would otherwise be pulled from Docker Hub, and
            // tests reach nothing but loopback.
            let noImage = try agent.cli(["run", "--rm", "--pull", "never", "ghostimage", "true"])
            #expect(noImage.status == 125)
            #expect(noImage.stderr.contains("not found"))
            let usage = try agent.cli(["run", "--bogus", "busybox"])
            #expect(usage.status == 64)
            #expect(usage.stderr.hasPrefix("Error: unknown option --bogus\nUsage: berth run"))
            let unknown = try agent.cli(["frobnicate"])
            #expect(unknown.status == 64)
            let help = try agent.cli(["run", "--help"])
            #expect(help.status == 0)
            #expect(help.stdout.hasPrefix("Usage: berth run"))
            let helpTopic = try agent.cli(["help", "ps"])
            #expect(helpTopic.stdout.hasPrefix("Usage: berth ps"))
            let rmMissing = try agent.cli(["rm", "ghost"])
            #expect(rmMissing.status == 1)
            #expect(rmMissing.stderr.contains("no such container: ghost"))
            let noAgent = try runProgram([binDir + "/berth", "-H", "unix:///nonexistent/berth.sock", "ps"])
            #expect(noAgent.status == 1)
            #expect(noAgent.stderr.contains("cannot connect"))
        }
    }

    @Test("malicious or broken tarballs are refused and nothing escapes the store")
    func badTarballs() async throws {
        try await withAgent { agent in
            let client = try await agent.connect()
            let dir = try TempDir("berth-tar")
            defer { dir.remove() }
            let outside = dir.path + "/outside"

            // ../ traversal aimed at a path of our own.
            var traversal = TarWriter()
            traversal.directory("rootfs/")
            traversal.file("../../../../../../../../..\(outside)/x", contents: "pwned")
            try await expectImportFails(client, dir, "traversal", traversal, contains: "escapes")

            // An absolute symlink, then a file through it.
            var symlink = TarWriter()
            symlink.symlink("link", target: dir.path)
            symlink.file("link/escaped", contents: "pwned")
            try await expectImportFails(client, dir, "symlink", symlink, contains: "link/escaped")
            #expect(!Files.exists(dir.path + "/escaped"))

            // A tarball cut in the middle of a file.
            var big = TarWriter()
            big.file("bin/big", contents: String(repeating: "z", count: 20000))
            var truncated = big.finish()
            truncated.removeLast(truncated.count - 5000)
            try Files.writeAtomically(dir.path + "/truncated.tar", truncated)
            await expectError(.invalidArgument, contains: "truncated") {
                try await client.importImage(name: "truncated", path: dir.path + "/truncated.tar")
            }

            // Not a tarball at all, and an empty upload.
            try Files.writeAtomically(dir.path + "/garbage.tar", Array(repeating: 0x41, count: 3000))
            await expectError(.invalidArgument) { try await client.importImage(name: "garbage", path: dir.path + "/garbage.tar") }
            try Files.writeAtomically(dir.path + "/empty.tar", [])
            await expectError(.invalidArgument) { try await client.importImage(name: "empty", path: dir.path + "/empty.tar") }

            // An upload refused before it is read (a bad name) ends at once, larger than a window or not.
            await expectError(.invalidArgument, contains: "invalid image name") {
                try await client.importImage(name: "Bad Name", path: try testImage.get())
            }

            #expect(!Files.exists(outside))
            #expect(try await client.listImages().isEmpty)
            // Still serving: a good image imports.
            let image = try await client.importImage(name: "busybox:1", path: try testImage.get())
            #expect(image.name == "busybox:1")
            #expect(image.id.hasPrefix("sha256:"))
            #expect(try await client.listImages().map(\.name) == ["busybox:1"])
        }
    }

    private func expectImportFails(_ client: BerthClient, _ dir: TempDir, _ name: String, _ tar: TarWriter,
                                   contains: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        var tar = tar
        let path = "\(dir.path)/\(name).tar"
        try Files.writeAtomically(path, tar.finish())
        await expectError(.invalidArgument, contains: contains, sourceLocation: sourceLocation) {
            try await client.importImage(name: name, path: path)
        }
    }

    @Test("malformed and oversized frames: an error on the stream, GOAWAY for a bad header; others unaffected")
    func badFrames() async throws {
        try await withAgent { agent in
            let good = try await agent.connect()
            let raw = try RawConnection(agent.socket)
            defer { raw.close() }

            // A call before Hello.
            try raw.send(Frame(streamID: 1, type: .request, flags: .endStream, payload: Request.info.wireEncoded()))
            let early = try raw.receive()
            #expect(early.streamID == 1)
            if case .error(let e) = try Response(wire: early.payload) {
                #expect(e.code == .failedPrecondition)
            } else { Issue.record("expected an error before Hello") }

            try raw.send(Frame(streamID: 3, type: .request, flags: .endStream, payload: Request.hello(HelloRequest()).wireEncoded()))
            let hello = try raw.receive()
            guard case .hello(let h) = try Response(wire: hello.payload) else { Issue.record("no hello"); return }
            #expect(h.maxPayload == 4 << 20)

            // A payload that is not a Request.
            try raw.send(Frame(streamID: 5, type: .request, flags: .endStream, payload: [0xff, 0xff, 0xff]))
            let malformed = try raw.receive()
            #expect(malformed.streamID == 5)
            #expect(malformed.flags.contains(.endStream))
            if case .error(let e) = try Response(wire: malformed.payload) {
                #expect(e.code == .invalidArgument)
                #expect(e.reason == BerthError.Reason.protocolViolation)
            } else { Issue.record("expected an error response") }

            // The same connection still works.
            try raw.send(Frame(streamID: 7, type: .request, flags: .endStream, payload: Request.info.wireEncoded()))
            let info = try raw.receive()
            if case .info(let i) = try Response(wire: info.payload) { #expect(i.nodeName == "test-node") } else { Issue.record("no info") }

            // A header announcing more than 4 MiB: GOAWAY, then the agent closes.
            var header: [UInt8] = []
            FrameHeader(length: (4 << 20) + 1, streamID: 9, type: FrameType.request.rawValue, flags: []).encode(into: &header)
            try raw.sendRaw(header)
            let goAway = try raw.receive()
            #expect(goAway.frameType == .goAway)
            let g = try GoAway(wire: goAway.payload)
            #expect(g.error.code == .resourceExhausted)
            #expect(g.error.message.contains("4194304"))
            #expect(raw.atEOF())

            // Other clients never noticed.
            #expect(try await good.info().nodeName == "test-node")
            let fresh = try await agent.connect()
            #expect(try await fresh.listContainers(all: true).isEmpty)
        }
    }

    @Test("an unsupported protocol version is refused")
    func badVersion() async throws {
        try await withAgent { agent in
            let raw = try RawConnection(agent.socket)
            defer { raw.close() }
            var hello = HelloRequest()
            hello.protocolVersion = 99
            try raw.send(Frame(streamID: 1, type: .request, flags: .endStream, payload: Request.hello(hello).wireEncoded()))
            let reply = try raw.receive()
            if case .error(let e) = try Response(wire: reply.payload) {
                #expect(e.code == .failedPrecondition)
                #expect(e.message.contains("99"))
            } else { Issue.record("expected an error") }
        }
    }

    @Test("berthd refuses plain TCP on a non-loopback address and bad flags")
    func badAgentFlags() throws {
        let dir = try TempDir("berth-flags")
        defer { dir.remove() }
        let base = [binDir + "/berthd", "--socket", dir.path + "/s.sock", "--state-dir", dir.path + "/state", "--run-dir", dir.path + "/run"]
        let r = try runProgram(base + ["--listen", "tcp://0.0.0.0:7946"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("loopback"))
        let u = try runProgram(base + ["--bogus"])
        #expect(u.status == 64)
        #expect(u.stderr.contains("Usage: berthd"))
    }
}

/// A connection driven frame by frame, to send what a well-behaved client never would.
final class RawConnection {
    let fd: FileDescriptor
    var decoder = FrameDecoder()

    init(_ socket: String) throws {
        fd = try SocketAddress.connect(.unix(path: socket))
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd.rawValue, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ frame: Frame) throws { try sendRaw(frame.encoded()) }
    func sendRaw(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try fd.sendAll($0) } }

    /// The next frame that is not a PING/PONG/WINDOW_UPDATE.
    func receive() throws -> Frame {
        while true {
            if let f = try decoder.next() {
                if f.frameType == .ping || f.frameType == .pong || f.frameType == .windowUpdate { continue }
                return f
            }
            let bytes = try fd.read(upTo: 65536)
            if bytes.isEmpty { throw BerthError(.unavailable, "connection closed") }
            decoder.append(bytes)
        }
    }

    func atEOF() -> Bool { ((try? fd.read(upTo: 65536)) ?? []).isEmpty }
    func close() { fd.close() }
}

/// Writes ustar archives byte by byte, so tests can craft entries `tar` would refuse.
struct TarWriter {
    var bytes: [UInt8] = []

    mutating func file(_ name: String, contents: String, mode: Int = 0o644) {
        let data = Array(contents.utf8)
        header(name, type: "0", size: data.count, mode: mode)
        bytes += data
        bytes += [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
    }

    mutating func directory(_ name: String) { header(name, type: "5", size: 0, mode: 0o755) }
    mutating func symlink(_ name: String, target: String) { header(name, type: "2", size: 0, mode: 0o777, link: target) }

    mutating func finish() -> [UInt8] { bytes + [UInt8](repeating: 0, count: 1024) }

    private mutating func header(_ name: String, type: Character, size: Int, mode: Int, link: String = "") {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, _ offset: Int, _ len: Int) {
            for (i, b) in s.utf8.prefix(len).enumerated() { h[offset + i] = b }
        }
        func octal(_ v: Int, _ offset: Int, _ len: Int) {
            let s = String(v, radix: 8)
            put(String(repeating: "0", count: len - 1 - s.count) + s, offset, len - 1)
        }
        // Long names go into the ustar prefix field (155 bytes) at a '/'.
        if name.utf8.count > 100, let slash = name.utf8.prefix(155).lastIndex(of: UInt8(ascii: "/")) {
            let cut = name.utf8.distance(from: name.utf8.startIndex, to: slash)
            put(String(name.utf8.prefix(cut)) ?? "", 345, 155)
            put(String(name.utf8.dropFirst(cut + 1)) ?? "", 0, 100)
        } else {
            put(name, 0, 100)
        }
        octal(mode, 100, 8)
        octal(0, 108, 8)
        octal(0, 116, 8)
        octal(size, 124, 12)
        octal(0, 136, 12)
        put("        ", 148, 8)
        h[156] = UInt8(ascii: type.unicodeScalars.first ?? "0")
        put(link, 157, 100)
        put("ustar", 257, 6)
        put("00", 263, 2)
        let sum = h.reduce(0) { $0 + Int($1) }
        let s = String(sum, radix: 8)
        put(String(repeating: "0", count: 6 - s.count) + s, 148, 6)
        h[154] = 0
        h[155] = UInt8(ascii: " ")
        bytes += h
    }
}
