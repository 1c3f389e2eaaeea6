import BerthClient
import BerthSystem
import Testing

@Suite("Hosts file")
struct HostsFileTests {
    func parse(_ text: String) throws(BerthError) -> HostsFile {
        try HostsFile.parse(Array(text.utf8), path: "/etc/berth/hosts.json")
    }

    @Test("nodes with endpoints, TLS files (relative to the file) and labels")
    func good() throws {
        let f = try parse("""
            {"nodes": [
              {"name": "lab1", "endpoint": "tcp://10.240.0.11:7443",
               "tls": {"ca": "ca.pem", "cert": "/abs/client.pem", "key": "client-key.pem"}, "labels": {"zone": "a"}},
              {"name": "local", "endpoint": "unix:///run/berth/berth.sock"}
            ]}
            """)
        #expect(f.nodes.map(\.name) == ["lab1", "local"])
        #expect(f.nodes[0].tls == BerthClient.TLSOptions(ca: "/etc/berth/ca.pem", certificate: "/abs/client.pem", key: "/etc/berth/client-key.pem"))
        #expect(f.nodes[0].labels == ["zone": "a"])
        #expect(f.nodes[1].tls == nil)
        #expect(try f.node("local").endpoint == "unix:///run/berth/berth.sock")
        #expect(throws: BerthError.self) { try f.node("lab9") }
    }

    @Test("each mistake names its line and what is wrong", arguments: [
        ("{\"nodes\": [\n{\"name\": \"a\" \"endpoint\": \"unix:///x\"}]}", "line 2"),
        ("{\"nodes\": [\n{\"name\": \"a\", \"endpoint\": \"unix:///x\"},\n{\"name\": \"a\", \"endpoint\": \"unix:///y\"}]}", "line 3: node \"a\" is named twice (first on line 2)"),
        ("{\"nodes\": [{\"name\": \"a\"}]}", "\"endpoint\" is missing"),
        ("{\"nodes\": [{\"name\": \"-a\", \"endpoint\": \"unix:///x\"}]}", "node name \"-a\""),
        ("{\"nodes\": [{\"name\": \"a\", \"endpoint\": \"ftp://x\"}]}", "endpoint \"ftp://x\""),
        ("{\"nodes\": [{\"name\": \"a\", \"endpoint\": \"unix:///x\", \"tls\": {\"ca\": \"c\", \"cert\": \"c\", \"key\": \"k\"}}]}", "needs a tcp:// endpoint"),
        ("{\"nodes\": [{\"name\": \"a\", \"endpoint\": \"tcp://1.2.3.4:1\", \"tls\": {\"ca\": \"c\"}}]}", "tls \"cert\" is missing"),
        ("{\"nodes\": [{\"name\": \"a\", \"endpoint\": \"unix:///x\", \"labels\": {\"k\": 1}}]}", "label \"k\" must be a string"),
        ("{\"hosts\": []}", "unknown key \"hosts\""),
        ("[]", "must be an object"),
    ])
    func bad(_ text: String, _ expected: String) {
        do {
            _ = try parse(text)
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.code == .invalidArgument)
            #expect(error.message.contains("hosts file /etc/berth/hosts.json"), "\(error.message)")
            #expect(error.message.contains(expected), "\(error.message)")
        }
    }

    @Test("a missing file is NOT_FOUND naming it")
    func missing() {
        #expect(throws: BerthError.self) { try HostsFile.load("/nonexistent/hosts.json") }
    }
}

@Suite("Fleet without agents")
struct FleetUnitTests {
    @Test("an unreachable node fails with its reason, the others answer, and a second call within the backoff fails at once")
    func unreachable() async throws {
        let dir = try TempDirectory()
        defer { dir.remove() }
        let fleet = Fleet(nodes: [Node(name: "gone", endpoint: "unix://\(dir.path)/none.sock")], callTimeout: .seconds(2), backoff: .seconds(60))
        defer { fleet.close() }
        let first = await fleet.info()
        #expect(first.count == 1 && first[0].node == "gone")
        #expect(first[0].error?.code == .unavailable, "\(String(describing: first[0].error))")
        let second = await fleet.info()
        #expect(second[0].error?.message.contains("next try in") == true, "\(String(describing: second[0].error))")
        await #expect(throws: BerthError.self) { try await fleet.client("nobody") }
    }
}

/// A temporary directory, removed by `remove()`.
struct TempDirectory {
    let path: String
    init() throws {
        path = "/tmp/berth-client-test-\(Host.randomHex(bytes: 6))"
        try Files.makeDirectories(path)
    }
    func remove() { try? Files.removeTree(path) }
}
