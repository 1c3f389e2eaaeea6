#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import BerthTLS
import Testing

// Mutual TLS over loopback with lab certificates from deploy/make-certs.sh: bytes cross
// both ways; a client without the CA's certificate, a client from another CA and a
// server whose certificate does not name the dialled address are refused.

private let repo: String = {
    var parts = "\(#filePath)".split(separator: "/").map(String.init)
    parts.removeLast(3)
    return "/" + parts.joined(separator: "/")
}()

private func run(_ argv: [String]) -> Int32 {
    var pid: pid_t = 0
    var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    defer { for p in cArgs { free(p) } }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    guard posix_spawn(&pid, argv[0], &actions, nil, &cArgs, environ) == 0 else { return -1 }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    return (status >> 8) & 0xff
}

private final class Certs: Sendable {
    let dir: String
    init() throws {
        var template = Array("/tmp/berth-tls-XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { throw Errno.current.error("mkdtemp") }
        dir = String(cString: p)
        let script = repo + "/deploy/make-certs.sh"
        for args in [["ca"], ["agent", "agent", "127.0.0.1"], ["client", "alice"], ["client", "bob", "viewer"]] {
            guard run(["/bin/bash", script, dir] + args) == 0 else { throw BerthError(.internal, "make-certs.sh \(args) failed") }
        }
        try Files.makeDirectories(dir + "/other")
        for args in [["ca"], ["client", "mallory"]] {
            guard run(["/bin/bash", script, dir + "/other"] + args) == 0 else { throw BerthError(.internal, "make-certs.sh other \(args) failed") }
        }
    }
    func remove() { try? Files.removeTree(dir) }
}

/// A loopback listener; `pair()` returns a connected (client, server) pair of sockets.
private func tcpPair() throws -> (FileDescriptor, FileDescriptor) {
    let l = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(l) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(l, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    listen(l, 1)
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(l, $0, &len) } }
    let c = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(c, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    let s = accept(l, nil, nil)
    return (FileDescriptor(rawValue: c), FileDescriptor(rawValue: s))
}

/// Both handshakes at once (each side waits for the other): the server's on a thread.
private func handshake(server: TLSContext, client: TLSContext, host: String = "127.0.0.1")
    -> (Result<(FileDescriptor, TLSPeer), BerthError>, Result<(FileDescriptor, TLSPeer), BerthError>) {
    guard let (c, s) = try? tcpPair() else { return (.failure(BerthError(.internal, "pair")), .failure(BerthError(.internal, "pair"))) }
    let serverResult = ConditionLock<Result<(FileDescriptor, TLSPeer), BerthError>?>(nil)
    startThread("tls-test-server") {
        let r: Result<(FileDescriptor, TLSPeer), BerthError>
        do throws(BerthError) { r = .success(try TLS.wrap(s, context: server, timeoutMillis: 5000)) } catch { r = .failure(error) }
        serverResult.withLock { $0 = r }
    }
    let clientResult: Result<(FileDescriptor, TLSPeer), BerthError>
    do throws(BerthError) { clientResult = .success(try TLS.wrap(c, context: client, expectedHost: host, timeoutMillis: 5000)) } catch { clientResult = .failure(error) }
    let sr = serverResult.wait(timeoutNanos: 10_000_000_000) { $0 } ?? .failure(BerthError(.deadlineExceeded, "server"))
    return (clientResult, sr)
}

@Suite("Mutual TLS", .enabled(if: Files.exists("/usr/bin/openssl"), "needs openssl"))
struct TLSTests {
    @Test func bytesCrossBothWaysAndPeersAreKnown() throws {
        let certs = try Certs()
        defer { certs.remove() }
        let d = certs.dir
        let server = try TLSContext(server: true, certificate: d + "/agent.pem", key: d + "/agent-key.pem", ca: d + "/ca.pem")
        let client = try TLSContext(server: false, certificate: d + "/bob.pem", key: d + "/bob-key.pem", ca: d + "/ca.pem")
        let (c, s) = handshake(server: server, client: client)
        let (cfd, serverPeer) = try c.get()
        let (sfd, clientPeer) = try s.get()
        defer { cfd.close(); sfd.close() }
        #expect(clientPeer.commonName == "bob" && clientPeer.organizationalUnit == "viewer")
        #expect(serverPeer.commonName == "agent")
        try cfd.writeAll("ping")
        var buf = [UInt8](repeating: 0, count: 16)
        let n = buf.withUnsafeMutableBytes { read(sfd.rawValue, $0.baseAddress, 16) }
        #expect(String(decoding: buf[0..<max(0, n)], as: UTF8.self) == "ping")
        // 1 MiB the other way, through the 16 KiB pump buffers.
        let big = [UInt8](repeating: 0x61, count: 1 << 20)
        startThread("tls-test-writer") { try? sfd.writeAll(big) }
        var got = 0
        while got < big.count {
            let r = buf.withUnsafeMutableBytes { read(cfd.rawValue, $0.baseAddress, 16) }
            if r <= 0 { break }
            got += r
        }
        #expect(got == big.count)
    }

    @Test func refusals() throws {
        let certs = try Certs()
        defer { certs.remove() }
        let d = certs.dir
        let server = try TLSContext(server: true, certificate: d + "/agent.pem", key: d + "/agent-key.pem", ca: d + "/ca.pem")
        // A client whose certificate another CA signed.
        let stranger = try TLSContext(server: false, certificate: d + "/other/mallory.pem", key: d + "/other/mallory-key.pem", ca: d + "/ca.pem")
        let (_, s1) = handshake(server: server, client: stranger)
        if case .success = s1 { Issue.record("a client of another CA was let in") }
        // A server certificate that does not name the dialled host.
        let alice = try TLSContext(server: false, certificate: d + "/alice.pem", key: d + "/alice-key.pem", ca: d + "/ca.pem")
        let (c2, _) = handshake(server: server, client: alice, host: "agent.elsewhere.test")
        if case .failure(let e) = c2 { #expect(e.code == .unauthenticated, "\(e)") } else { Issue.record("a server with the wrong name was accepted") }
        // A plain client: the handshake times out or fails, the server refuses.
        let (pc, ps) = try tcpPair()
        try pc.writeAll("GET / HTTP/1.0\r\n\r\n")
        #expect(throws: BerthError.self) { try TLS.wrap(ps, context: server, timeoutMillis: 2000) }
        pc.close()
        // Bad files.
        #expect(throws: BerthError.self) { try TLSContext(server: true, certificate: d + "/nope.pem", key: d + "/agent-key.pem", ca: d + "/ca.pem") }
        #expect(throws: BerthError.self) { try TLSContext(server: true, certificate: d + "/agent.pem", key: d + "/alice-key.pem", ca: d + "/ca.pem") }
    }
}
