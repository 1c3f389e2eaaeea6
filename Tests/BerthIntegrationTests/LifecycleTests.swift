#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem
import Testing

/// Containers that outlive the agent: detach, stop, kill, restart, logs, exec, restart
/// policies, and the agent restart test.
@Suite("Lifecycle (root, real containers)", .enabled(if: isRoot, "needs root"), .timeLimit(.minutes(4)))
struct LifecycleTests {
    @Test("run -d, stop with the grace period, kill, restart, inspect, ps filters")
    func verbs() async throws {
        try await withAgent { agent in
            let client = try await agent.clientWithImage()
            // A container whose pid 1 ignores SIGTERM (no handler in a pid namespace).
            let d = try agent.cli(["run", "-d", "--name", "stubborn", "-l", "tier=web", "busybox", "sleep", "1000"])
            #expect(d.status == 0, "\(d.stderr)")
            let id = d.stdout.trimmingNewline
            #expect(id.count == 64 && id.allSatisfy { $0.isHexDigit })
            // One that handles SIGTERM.
            _ = try agent.cli(["run", "-d", "--name", "polite", "-l", "tier=db", "busybox", "sh", "-c",
                               "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.1; done"])
            let running = try await client.listContainers(filters: ["label=tier=web"])
            #expect(running.map(\.name) == ["stubborn"])
            #expect(try await client.listContainers(all: true, filters: ["name=pol"]).map(\.name) == ["polite"])
            await expectError(.invalidArgument, contains: "unknown filter") { try await client.listContainers(filters: ["color=red"]) }

            // stop -t 1: SIGTERM ignored, SIGKILL after a second.
            let t0 = Host.monotonicNanos
            let stop = try agent.cli(["stop", "-t", "1", String(id.prefix(10))])
            let took = Double(Host.monotonicNanos - t0) / 1e9
            #expect(stop.status == 0, "\(stop.stderr)")
            #expect(took >= 0.9 && took < 8, "stop took \(took)s")
            let stubborn = try await client.inspectContainer("stubborn")
            #expect(stubborn.state == .exited)
            #expect(stubborn.exit?.exitCode == 137)
            #expect(stubborn.exit?.signal == 9)

            // stop: the trap runs and exits 0 at once.
            try await waitForLog(client, "polite", contains: "ready")
            let s0 = Host.monotonicNanos
            let polite = try await client.stopContainer("polite")
            #expect(Double(Host.monotonicNanos - s0) / 1e9 < 5)
            #expect(polite.exit?.exitCode == 0)
            // Stopping a stopped container is fine; killing one is not.
            _ = try await client.stopContainer("polite")
            await expectError(.failedPrecondition, contains: "not running") { try await client.killContainer("polite") }

            // restart, then kill with a named signal and with a bad one.
            let restarted = try await client.restartContainer("polite", timeout: 5)
            #expect(restarted.state == .running)
            try await waitForLog(client, "polite", contains: "ready", count: 2)
            await expectError(.invalidArgument, contains: "unknown signal") { try await client.killContainer("polite", signal: "SIGBOGUS") }
            await expectError(.invalidArgument, contains: "1 to 64") { try await client.killContainer("polite", signal: "99") }
            let k = try agent.cli(["kill", "-s", "TERM", "polite"])
            #expect(k.status == 0, "\(k.stderr)")
            #expect(try await client.wait("polite").exitCode == 0)

            // inspect as JSON.
            let inspect = try agent.cli(["inspect", "polite"])
            #expect(inspect.status == 0)
            #expect(inspect.stdout.contains("\"Status\":\"exited\""))
            #expect(inspect.stdout.contains("\"RestartCount\":0"))
            #expect(inspect.stdout.contains("\"tier\":\"db\""))
            #expect(inspect.stdout.contains("\"FinishedAt\":\"20"))
            // Ambiguous and unknown references.
            _ = try await client.createContainer(spec(["true"], rm: false, name: "a1"))
            // Sixteen hex digits: among 17 ids two share their first one.
            var ids = try await client.listContainers(all: true).map(\.id)
            var n = 0
            while Set(ids.map { $0.prefix(1) }).count == ids.count {
                ids.append(try await client.createContainer(spec(["true"], rm: false, name: "pad\(n)")).id)
                n += 1
            }
            let shared = String(ids.first { id in ids.filter { $0.prefix(1) == id.prefix(1) }.count > 1 }?.prefix(1) ?? "")
            await expectError(.invalidArgument, contains: "ambiguous") { try await client.stopContainer(shared) }
            await expectError(.invalidArgument, contains: "empty") { try await client.stopContainer("") }
            await expectError(.notFound) { try await client.stopContainer("ghost") }
            await expectError(.notFound) { try await client.killContainer("ghost") }
            _ = try await client.startContainer("a1")
            _ = try await client.wait("a1")
            _ = try await client.createContainer(spec(["sleep", "100"], rm: false, name: "busy"))
            _ = try await client.startContainer("busy")
            await expectError(.failedPrecondition, contains: "running") { try await client.startContainer("busy") }
            await expectError(.failedPrecondition, contains: "running") { try await client.removeContainer("busy") }
        }
    }

    @Test("logs: stdout and stderr apart, --tail, --timestamps, --since, -f until exit")
    func logs() async throws {
        try await withAgent { agent in
            let client = try await agent.clientWithImage()
            _ = try agent.cli(["run", "-d", "--name", "talker", "busybox", "sh", "-c",
                               "for i in 1 2 3 4 5; do echo out-$i; echo err-$i >&2; done; until [ -e /gate ]; do sleep 0.05; done; echo late; exit 0"])
            try await waitForLog(client, "talker", contains: "out-5")
            let all = try agent.cli(["logs", "talker"])
            #expect(all.stdout.hasPrefix("out-1\nout-2\nout-3\nout-4\nout-5\n"))
            #expect(all.stderr == "err-1\nerr-2\nerr-3\nerr-4\nerr-5\n")
            let tail = try agent.cli(["logs", "--tail", "2", "talker"])
            // The last two lines of the log; stdout and stderr come from two pipes, so
            // which of them interleaves last depends on when the monitor read each.
            let tailLines = (tail.stdout + tail.stderr).split(separator: "\n").map(String.init)
            #expect(tailLines.count == 2)
            #expect(Set(tailLines).isSubset(of: ["out-4", "out-5", "err-4", "err-5"]), "\(tailLines)")
            let stamped = try agent.cli(["logs", "-t", "--tail", "1", "talker"])
            let line = stamped.stdout + stamped.stderr
            #expect(line.hasPrefix("20"), "\(line)")
            #expect(line.contains("Z "))
            let future = try agent.cli(["logs", "--since", "2099-01-01T00:00:00Z", "talker"])
            #expect(future.stdout.isEmpty && future.stderr.isEmpty)
            // -f returns when the container exits, with everything it wrote.
            let gate = try agent.cli(["exec", "talker", "touch", "/gate"])
            #expect(gate.status == 0, "\(gate.stderr)")
            let followed = try agent.cli(["logs", "-f", "talker"])
            #expect(followed.status == 0)
            #expect(followed.stdout.hasSuffix("out-5\nlate\n"))
            #expect(try await client.inspectContainer("talker").state == .exited)
            await expectError(.notFound) {
                var it = try await client.logs(LogsRequest(container: "ghost")).makeAsyncIterator()
                return try await it.next()
            }
        }
    }

    @Test("logs -f follows across rotation without losing or repeating a line")
    func logRotation() async throws {
        try await withAgent(extraArgs: ["--log-max-bytes", "4096", "--log-max-files", "2"]) { agent in
            let client = try await agent.clientWithImage()
            _ = try await client.createContainer(spec(["sh", "-c", "i=0; while [ $i -lt 600 ]; do echo line-$i; i=$((i+1)); done; exit 0"], rm: false, name: "rot"))
            var request = LogsRequest(container: "rot")
            request.follow = true
            let started = try await client.startContainer("rot")
            #expect(started.state == .running)
            var text: [UInt8] = []
            for try await chunk in try await client.logs(request) { text += chunk.data }
            let lines = String(decoding: text, as: UTF8.self).split(separator: "\n")
            // The files kept hold the newest lines; following from the start saw all of them in order.
            let numbers = lines.compactMap { Int($0.dropFirst("line-".count)) }
            #expect(numbers.last == 599)
            #expect(numbers == Array((numbers.first ?? 0)...599), "lines lost or repeated")
            let dir = "\(agent.dir.path)/state/containers/\(started.id)"
            #expect(Files.exists(dir + "/console.log.1"))
            #expect(!Files.exists(dir + "/console.log.3"))
        }
    }

    @Test("exec: same namespaces, piped stdin, exit code, errors")
    func exec() async throws {
        try await withAgent { agent in
            let client = try await agent.clientWithImage()
            _ = try agent.cli(["run", "-d", "--name", "box", "--hostname", "boxhost", "busybox", "sh", "-c", "echo made > /tmp/made; sleep 1000"])
            try await waitForLog(client, "box", contains: "")
            let r = try agent.cli(["exec", "box", "sh", "-c", "hostname; cat /tmp/made; echo $$ > /dev/null; readlink /proc/1/exe; exit 5"])
            #expect(r.status == 5)
            #expect(r.stdout.hasPrefix("boxhost\nmade\n"))
            let piped = try agent.cli(["exec", "-i", "box", "sh", "-c", "tr a-z A-Z"], stdin: "hello exec\n")
            #expect(piped.stdout == "HELLO EXEC\n")
            #expect(piped.status == 0)
            // Namespaces: the exec'd process sees the container's pid 1.
            let ps = try agent.cli(["exec", "box", "cat", "/proc/1/cmdline"])
            // busybox sh execs its last command: pid 1 is the sleep.
            #expect(ps.stdout.hasPrefix("sleep"))
            let missing = try agent.cli(["exec", "box", "nosuchcmd"])
            #expect(missing.status == 127)
            #expect(missing.stderr.contains("executable file not found"))
            _ = try await client.stopContainer("box", timeout: 0)
            await expectError(.failedPrecondition, contains: "not running") {
                try await client.exec(ExecRequest(container: "box", args: ["true"]))
            }
        }
    }

    @Test("exec -it drives a shell through a real terminal")
    func execTTY() async throws {
        try await withAgent { agent in
            let client = try await agent.clientWithImage()
            _ = try agent.cli(["run", "-d", "--name", "tty", "busybox", "sleep", "1000"])
            _ = client
            // script(1) gives the CLI a pty as its terminal; the shell answers through ours.
            let cmd = "\(binDir)/berth -H \(agent.address) exec -it tty sh"
            let r = try runProgram(["/usr/bin/script", "-qfec", cmd, "/dev/null"],
                                   stdin: "stty size\necho tty-$((40+2))\ntty\nexit 4\n")
            #expect(r.status == 4, "\(r.stdout) \(r.stderr)")
            #expect(r.stdout.contains("tty-42"))
        }
    }

    @Test("restart policies: on-failure:N counts, always restarts, stop is never undone")
    func restartPolicies() async throws {
        try await withAgent { agent in
            let client = try await agent.clientWithImage()
            var failing = spec(["sh", "-c", "echo try; exit 3"], rm: false, name: "flaky")
            failing.restart = RestartPolicy(.onFailure, maxRetries: 2)
            _ = try await client.createContainer(failing)
            _ = try await client.startContainer("flaky")
            var c = try await client.inspectContainer("flaky")
            for _ in 0..<100 where !(c.restartCount == 2 && c.state == .exited) {
                usleep(100_000)
                c = try await client.inspectContainer("flaky")
            }
            #expect(c.restartCount == 2)
            #expect(c.state == .exited)
            #expect(c.exit?.exitCode == 3)
            try await waitForLog(client, "flaky", contains: "try", count: 3)

            var always = spec(["sh", "-c", "echo up; sleep 0.2"], rm: false, name: "always")
            always.restart = RestartPolicy(.always)
            _ = try await client.createContainer(always)
            _ = try await client.startContainer("always")
            var a = try await client.inspectContainer("always")
            for _ in 0..<100 where a.restartCount < 2 {
                usleep(100_000)
                a = try await client.inspectContainer("always")
            }
            #expect(a.restartCount >= 2)
            _ = try await client.stopContainer("always", timeout: 1)
            let count = try await client.inspectContainer("always").restartCount
            usleep(1_500_000)
            let after = try await client.inspectContainer("always")
            #expect(after.state == .exited)
            #expect(after.restartCount == count, "the policy undid a stop")
        }
    }

    @Test("agent killed with 20 containers running: they keep running, one exits meanwhile, all logs complete")
    func agentRestart() async throws {
        let first = try await TestAgent()
        var handedOver = false
        defer { if !handedOver { first.stop() } }
        let client = try await first.clientWithImage()
        var started: [String: Container] = [:]
        for i in 0..<20 {
            let args = i == 7
                ? ["sh", "-c", "echo hello-\(i); sleep 2; echo done-\(i); exit 7"]
                : ["sh", "-c", "echo hello-\(i); exec sleep 1000"]
            _ = try await client.createContainer(spec(args, rm: false, name: "c\(i)"))
            started["c\(i)"] = try await client.startContainer("c\(i)")
        }
        for i in 0..<20 { try await waitForLog(client, "c\(i)", contains: "hello-\(i)") }
        client.close()
        first.crash()

        // c7 exits while no agent runs: its monitor records it.
        let c7 = "\(first.dir.path)/state/containers/\(started["c7"]?.id ?? "")/exit"
        var exited = false
        for _ in 0..<100 where !exited {
            exited = Files.exists(c7)
            if !exited { usleep(100_000) }
        }
        #expect(exited, "c7's monitor wrote no exit file")

        let second = try await TestAgent(reusing: first.dir)
        handedOver = true
        defer { second.stop() }
        let again = try await second.connect()
        let all = try await again.listContainers(all: true)
        #expect(all.count == 20)
        let running = all.filter { $0.state == .running }
        #expect(running.count == 19)
        let seven = try await again.inspectContainer("c7")
        #expect(seven.state == .exited)
        #expect(seven.exit?.exitCode == 7)
        #expect((seven.exit?.finishedUnix ?? 0) >= (started["c7"]?.startedUnix ?? 0) + 1)
        // Nothing started twice: the same processes.
        for c in running {
            #expect(c.pid == started[c.name]?.pid, "\(c.name) was restarted")
            #expect(c.restartCount == 0)
        }
        // Complete logs, including what c7 wrote while the agent was down.
        for i in 0..<20 {
            var text: [UInt8] = []
            for try await chunk in try await again.logs(LogsRequest(container: "c\(i)")) { text += chunk.data }
            let expected = i == 7 ? "hello-7\ndone-7\n" : "hello-\(i)\n"
            #expect(String(decoding: text, as: UTF8.self) == expected)
        }
        // Controllable: stop, kill, exec, wait.
        let s = try await again.stopContainer("c0", timeout: 1)
        #expect(s.state == .exited)
        try await again.killContainer("c1", signal: "KILL")
        #expect(try await again.wait("c1").exitCode == 137)
        let session = try await again.exec(ExecRequest(container: "c2", args: ["echo", "inside"]))
        var out: [UInt8] = []
        for try await chunk in session.output { out += chunk.data }
        #expect(String(decoding: out, as: UTF8.self) == "inside\n")
        #expect(try await session.exitStatus().exitCode == 0)
        // A follower of a running container ends when it exits.
        var follow = LogsRequest(container: "c3")
        follow.follow = true
        let logs = try await again.logs(follow)
        try await again.killContainer("c3")
        var followed: [UInt8] = []
        for try await chunk in logs { followed += chunk.data }
        #expect(String(decoding: followed, as: UTF8.self) == "hello-3\n")
    }
}

/// Waits until a container's log contains `text` (`count` times).
func waitForLog(_ client: BerthClient, _ ref: String, contains text: String, count: Int = 1,
                sourceLocation: SourceLocation = #_sourceLocation) async throws {
    for _ in 0..<100 {
        var bytes: [UInt8] = []
        for try await chunk in try await client.logs(LogsRequest(container: ref)) { bytes += chunk.data }
        let log = String(decoding: bytes, as: UTF8.self)
        if text.isEmpty || log.components(text) >= count { return }
        usleep(100_000)
    }
    Issue.record("\(ref)'s log never showed \"\(text)\" \(count) times", sourceLocation: sourceLocation)
}

extension String {
    var trimmingNewline: String { hasSuffix("\n") ? String(dropLast()) : self }
    func components(_ s: String) -> Int {
        var n = 0
        var rest = Substring(self)
        while let r = rest.firstRange(of: s) { n += 1; rest = rest[r.upperBound...] }
        return n
    }
}
