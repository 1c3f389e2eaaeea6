#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem
import Testing

/// A one-connection agent on a Unix socket that answers Hello with `answer`.
private func fakeAgent(_ path: String, _ answer: @escaping @Sendable (HelloRequest) -> Response) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        for (i, b) in path.utf8.enumerated() where i < raw.count - 1 { raw[i] = b }
    }
    let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
    guard bound == 0, listen(fd, 1) == 0 else { throw Errno.current.error("bind \(path)") }
    startThread {
        let c = accept(fd, nil, nil)
        guard c >= 0 else { return }
        let connection = Connection(fd: FileDescriptor(rawValue: c), role: .server, label: "fake")
        connection.start(onRequest: { stream, request in
            if case .hello(let hello) = request { try? stream.send(answer(hello), end: true) }
        })
    }
    return fd
}

@Suite("Protocol versions")
struct VersionTests {
    @Test("an agent of another protocol version: the client says which side speaks which")
    func newerAgent() async throws {
        let dir = try TempDirectory()
        defer { dir.remove() }
        let path = dir.path + "/a.sock"
        let listener = try fakeAgent(path) { _ in
            var h = HelloResponse()
            h.protocolVersion = 2
            h.agentVersion = "9.0.0"
            h.nodeName = "future"
            return .hello(h)
        }
        defer { close(listener) }
        do {
            _ = try await BerthClient.connect(to: "unix://\(path)")
            Issue.record("connected to an agent of protocol 2")
        } catch let e as BerthError {
            #expect(e.code == .failedPrecondition)
            #expect(e.message.contains("speaks Berth protocol version 2") && e.message.contains("this client speaks version 1"), "\(e.message)")
        }
    }

    @Test("an agent that refuses our version: its reason, and ours")
    func olderAgent() async throws {
        let dir = try TempDirectory()
        defer { dir.remove() }
        let path = dir.path + "/a.sock"
        let listener = try fakeAgent(path) { hello in
            .error(BerthError(.failedPrecondition, "unsupported protocol version \(hello.protocolVersion): agent old (berthd 0.0.1) speaks Berth protocol version 0",
                              reason: "protocol_version"))
        }
        defer { close(listener) }
        do {
            _ = try await BerthClient.connect(to: "unix://\(path)")
            Issue.record("connected to an agent that refused the version")
        } catch let e as BerthError {
            #expect(e.code == .failedPrecondition && e.reason == "protocol_version")
            #expect(e.message.contains("speaks Berth protocol version 0") && e.message.contains("this client speaks version 1"), "\(e.message)")
        }
    }
}
