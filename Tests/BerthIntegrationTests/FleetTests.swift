#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem
import Testing

// Several agents behind one hosts file (Unix sockets here; the lab cluster suite does
// the same over mutual TLS between network namespaces): fan-out with a NODE column,
// per-node failures, node ls, and the event journal with resume.

/// Writes a hosts file naming `agents` as n1, n2, … and returns its path.
private func hostsFile(_ dir: TempDir, _ agents: [TestAgent]) throws -> String {
    let nodes = agents.enumerated().map { i, a in
        "    {\"name\": \"n\(i + 1)\", \"endpoint\": \"unix://\(a.socket)\", \"labels\": {\"rack\": \"r\(i % 2)\"}}"
    }
    let path = dir.path + "/hosts.json"
    try Files.writeAtomically(path, Array("{\n  \"nodes\": [\n\(nodes.joined(separator: ",\n"))\n  ]\n}\n".utf8))
    return path
}

private func berth(_ hosts: String, _ args: [String]) throws -> ProcessOutput {
    try runProgram([binDir + "/berth", "--hosts", hosts] + args)
}

@Suite("Fleet: many agents from one client (root)", .enabled(if: isRoot, "needs root"), .serialized, .timeLimit(.minutes(3)))
struct FleetTests {
    @Test("--all fans reads out with a NODE column and writes per node; a dead node is reported, the others still shown")
    func fanOut() async throws {
        let a = try await TestAgent(), b = try await TestAgent(), c = try await TestAgent()
        var agents = [a, b, c]
        defer { for x in agents { x.stop() } }
        for x in agents { _ = try await x.clientWithImage() }
        let dir = try TempDir("berth-hosts")
        defer { dir.remove() }
        let hosts = try hostsFile(dir, agents)

        // A write on every node: each runs its own container.
        let run = try berth(hosts, ["--all", "run", "-d", "--name", "web", "busybox", "sleep", "300"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.split(separator: "\n").filter { $0.hasPrefix("n1 ") || $0.hasPrefix("n2 ") || $0.hasPrefix("n3 ") }.count == 3, "\(run.stdout)")
        let ps = try berth(hosts, ["--all", "ps"])
        #expect(ps.status == 0, "\(ps.stderr)")
        let lines = ps.stdout.split(separator: "\n")
        #expect(lines.first?.hasPrefix("NODE") == true, "\(ps.stdout)")
        for n in ["n1", "n2", "n3"] { #expect(lines.contains { $0.hasPrefix(n + " ") && $0.contains("web") }, "\(ps.stdout)") }
        // --node picks some; -H NAME one (no NODE column, like docker -H).
        let two = try berth(hosts, ["--node", "n1,n3", "ps", "-q"])
        #expect(two.stdout.split(separator: "\n").count == 2)
        let one = try berth(hosts, ["-H", "n2", "ps"])
        #expect(one.status == 0 && one.stdout.hasPrefix("CONTAINER ID") && one.stdout.contains("web"), "\(one.stdout)\(one.stderr)")

        // node ls: every node ready, with the numbers a scheduler needs.
        let nodes = try berth(hosts, ["node", "ls"])
        #expect(nodes.status == 0, "\(nodes.stderr)")
        #expect(nodes.stdout.split(separator: "\n").filter { $0.contains(" ready ") && $0.contains("1/1") }.count == 3, "\(nodes.stdout)")

        // One node dies: the others are still listed, the dead one reported, exit 1.
        b.crash()
        let partial = try berth(hosts, ["--all", "--timeout", "5", "ps"])
        #expect(partial.status == 1)
        #expect(partial.stdout.contains("n1 ") && partial.stdout.contains("n3 ") && !partial.stdout.contains("n2 "), "\(partial.stdout)")
        #expect(partial.stderr.contains("node n2:") && partial.stderr.contains("cannot connect"), "\(partial.stderr)")
        let down = try berth(hosts, ["node", "ls"])
        #expect(down.status == 1 && down.stdout.contains("unreachable"), "\(down.stdout)")
        let again = try await TestAgent(reusing: b.dir, netOf: b)
        agents[1] = again
        let rm = try berth(hosts, ["--all", "rm", "-f", "web"])
        #expect(rm.status == 0, "\(rm.stdout)\(rm.stderr)")
        #expect(try berth(hosts, ["--all", "ps", "-aq"]).stdout.isEmpty)
    }

    @Test("hosts file and target errors: syntax with its line, duplicate and unknown names, -H with --all")
    func badInput() throws {
        let dir = try TempDir("berth-hosts")
        defer { dir.remove() }
        let path = dir.path + "/hosts.json"
        func check(_ text: String, _ args: [String], _ expected: String, line: Int? = nil) throws {
            try Files.writeAtomically(path, Array(text.utf8))
            let r = try berth(path, args)
            #expect(r.status != 0, "\(args) succeeded")
            #expect(r.stderr.contains(expected), "\(r.stderr)")
            if let line { #expect(r.stderr.contains("line \(line)"), "\(r.stderr)") }
        }
        try check("{\n  \"nodes\": [\n    {\"name\": \"a\", \"endpoint\": \"unix:///x\"},\n    {\"name\": \"b\" \"endpoint\": \"unix:///y\"}\n  ]\n}\n",
                  ["--all", "ps"], "hosts file", line: 4)
        try check("{\"nodes\": [\n{\"name\": \"a\", \"endpoint\": \"unix:///x\"},\n{\"name\": \"a\", \"endpoint\": \"unix:///y\"}]}\n",
                  ["--all", "ps"], "named twice (first on line 2)", line: 3)
        try check("{\"nodes\": [{\"name\": \"a\", \"endpoint\": \"unix:///x\", \"tsl\": {}}]}", ["--all", "ps"], "unknown key \"tsl\"")
        try check("{\"nodes\": [{\"name\": \"a\", \"endpoint\": \"http://x\"}]}", ["--all", "ps"], "endpoint")
        try check("{\"nodes\": [{\"name\": \"a\", \"endpoint\": \"unix:///x\"}]}", ["--node", "zz", "ps"], "no node \"zz\"")
        try check("{\"nodes\": [{\"name\": \"a\", \"endpoint\": \"unix:///x\"}]}", ["-H", "zz", "ps"], "(it names: a)")
        let both = try berth(path, ["-H", "a", "--all", "ps"])
        #expect(both.status == 64 && both.stderr.contains("two ways"), "\(both.stderr)")
        let missing = try runProgram([binDir + "/berth", "--hosts", dir.path + "/nope.json", "--all", "ps"])
        #expect(missing.status == 1 && missing.stderr.contains("nope.json"), "\(missing.stderr)")
    }

    @Test("events: numbered, kept across an agent restart; a dropped follow resumes without losing what happened meanwhile")
    func events() async throws {
        let first = try await TestAgent()
        var handedOver = false
        defer { if !handedOver { first.stop() } }
        let client = try await first.clientWithImage()
        // The gate is a host directory, so the test opens it while no agent runs.
        let gate = try TempDir("berth-gate")
        defer { gate.remove() }
        var job = spec(["sh", "-c", "until [ -e /g/open ]; do sleep 0.05; done; exit 3"], rm: false, name: "job")
        job.mounts = [Mount(kind: .bind, source: gate.path, target: "/g")]
        _ = try await client.createContainer(job)
        _ = try await client.startContainer("job")
        var seen: [Event] = []
        for try await e in try client.events(EventsRequest(fromStart: true)) { seen.append(e) }
        #expect(seen.map(\.action) == ["import", "create", "start"], "\(seen)")
        #expect(seen.map(\.seq) == [1, 2, 3])
        #expect(seen.last?.name == "job" && seen.last?.attributes["image"] == "busybox:latest")

        // Follow through a Fleet; then the agent goes away; the container exits while it is
        // down; the next agent records the exit at start-up, and the stream resumes after
        // the last event it delivered, so the die event arrives, once.
        let dir = try TempDir("berth-hosts")
        defer { dir.remove() }
        let fleet = Fleet(nodes: [Node(name: "solo", endpoint: "unix://\(first.socket)")], callTimeout: .seconds(5))
        defer { fleet.close() }
        let stream = fleet.events(since: ["solo": 3])
        var iterator = stream.makeAsyncIterator()
        guard case .connected? = await iterator.next() else { Issue.record("no connected event"); return }
        client.close()
        first.crash()
        try Files.writeAtomically(gate.path + "/open", [])
        // The monitor records the exit while no agent runs.
        var exited = false
        for _ in 0..<200 where !exited {
            exited = (try? Files.list(first.dir.path + "/state/containers"))?.contains { Files.exists(first.dir.path + "/state/containers/\($0)/exit") } ?? false
            if !exited { usleep(50_000) }
        }
        #expect(exited)
        let second = try await TestAgent(reusing: first.dir, netOf: first)
        handedOver = true
        defer { second.stop() }
        var got: [Event] = []
        var disconnects = 0
        while got.isEmpty, let item = await iterator.next() {
            switch item {
            case .event(_, let e): got.append(e)
            case .disconnected: disconnects += 1
            case .connected, .lost: break
            }
        }
        #expect(disconnects >= 1)
        #expect(got.first?.action == "die" && got.first?.exitCode == 3 && got.first?.seq == 4, "\(got)")

        // The CLI: the journal, since a number, and as JSON.
        let all = try second.cli(["events"])
        #expect(all.stdout.split(separator: "\n").count == 4, "\(all.stdout)")
        #expect(all.stdout.contains("container die") && all.stdout.contains("exitCode=3"), "\(all.stdout)")
        let since = try second.cli(["events", "--since", "3", "--format", "json"])
        #expect(since.stdout.split(separator: "\n").count == 1 && since.stdout.contains("\"Seq\":4"), "\(since.stdout)")
        _ = try second.cli(["rm", "job"])
        let after = try await second.connect()
        var tail: [Event] = []
        for try await e in try after.events(EventsRequest(sinceSeq: 4)) { tail.append(e) }
        #expect(tail.map(\.action) == ["remove"] && tail.first?.seq == 5, "\(tail)")
    }
}

@Suite("Example scheduler (root)", .enabled(if: isRoot, "needs root"), .serialized, .timeLimit(.minutes(3)))
struct SchedulerExampleTests {
    @Test("Examples/Scheduler places 6 pods on 3 nodes by load and reports when all run")
    func placesByLoad() async throws {
        let agents = [try await TestAgent(), try await TestAgent(), try await TestAgent()]
        defer { for a in agents { a.stop() } }
        for a in agents { _ = try await a.clientWithImage() }
        // n1 is busy already: three running containers.
        let busy = try await agents[0].connect()
        for i in 0..<3 { _ = try await busy.startContainer(try await busy.createContainer(spec(["sleep", "300"], rm: false, name: "load\(i)")).id) }
        let dir = try TempDir("berth-hosts")
        defer { dir.remove() }
        let nodes = agents.enumerated().map { i, a in "{\"name\": \"n\(i + 1)\", \"endpoint\": \"unix://\(a.socket)\"}" }
        let hosts = dir.path + "/hosts.json"
        try Files.writeAtomically(hosts, Array("{\"nodes\": [\(nodes.joined(separator: ", "))]}".utf8))

        let r = try runProgram([binDir + "/berth-scheduler", "--hosts", hosts, "--pods", "6", "--", "sleep", "300"])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        // 3 + 6 containers on 3 nodes of equal size: 3 each, so n1 gets none.
        #expect(r.stdout.contains("all 6 pods running: n1=0 n2=3 n3=3"), "\(r.stdout)")
        for (i, a) in agents.enumerated() {
            let client = try await a.connect()
            let pods = try await client.listPods()
            #expect(pods.count == (i == 0 ? 0 : 3))
            #expect(try await client.listContainers().filter { !$0.podName.isEmpty }.allSatisfy { $0.state == .running })
            for p in pods { _ = try await client.removePod(p.id, force: true) }
        }
    }
}
