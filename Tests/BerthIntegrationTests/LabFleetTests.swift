// The client side of fleets on a lab cluster (issue 8): three agents in network
// namespaces over mutual TLS, driven from the hosts file that deploy/lab-cluster.sh wrote.
#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem
import Testing

@Suite("Fleet on a lab cluster (root, network namespaces, mutual TLS)", .serialized, .enabled(if: isRoot, "needs root"),
       .timeLimit(.minutes(5)))
struct LabFleetTests {
    @Test("run on each node, ps --all, a killed agent reported, events from all three resumed across the kill, the scheduler places 6 pods by load")
    func fleetOnLab() async throws {
        let image = try testImage.get()
        try await LabCluster.with(3) { lab in
            func all(_ args: [String]) throws -> ProcessOutput {
                try runProgram([binDir + "/berth", "--hosts", lab.hostsFile] + args)
            }
            let imported = try all(["--all", "image", "import", "busybox", image])
            #expect(imported.status == 0, "\(imported.stdout)\(imported.stderr)")

            // Events from all three, from the start of each journal, through one Fleet.
            let fleet = try Fleet(hostsFile: lab.hostsFile, callTimeout: .seconds(10), backoff: .milliseconds(200))
            defer { fleet.close() }
            let stream = fleet.events(since: ["lab1": 0, "lab2": 0, "lab3": 0])
            // What arrived so far, for the message when something is missing.
            let trace = ConditionLock([String]())
            let collector = Task { () -> [String: [Event]] in
                var byNode: [String: [Event]] = [:]
                var disconnected = false
                for await item in stream {
                    switch item {
                    case .event(let node, let e):
                        byNode[node, default: []].append(e)
                        trace.withLock { $0.append("\(node) #\(e.seq) \(e.type) \(e.action) \(e.name)") }
                    case .disconnected(let node, let e):
                        if node == "lab2" { disconnected = true }
                        trace.withLock { $0.append("\(node) disconnected: \(e.message)") }
                    case .connected(let node): trace.withLock { $0.append("\(node) connected") }
                    case .lost(let node, let n): trace.withLock { $0.append("\(node) lost \(n)") }
                    }
                    // Done: each node's "svc" started, and lab2's gated container died after
                    // its agent came back.
                    let started = ["lab1", "lab2", "lab3"].allSatisfy { n in byNode[n]?.contains { $0.action == "start" && $0.name == "svc" } ?? false }
                    let died = byNode["lab2"]?.contains { $0.action == "die" && $0.name == "gated" } ?? false
                    if started && died && disconnected { break }
                }
                return byNode
            }

            // The streams must be live before anything happens (a loaded machine can be
            // slow to schedule them): then lab2's kill below is seen as a drop.
            for _ in 0..<1200 where trace.withLock({ $0.filter { $0.hasSuffix(" connected") }.count }) < 3 {
                try await Task.sleep(for: .milliseconds(100))
            }

            // A write on every node, then a read with a NODE column.
            let run = try all(["--all", "run", "-d", "--name", "svc", "busybox", "sleep", "600"])
            #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
            let ps = try all(["--all", "ps"])
            #expect(ps.status == 0, "\(ps.stderr)")
            for n in lab.nodes { #expect(ps.stdout.split(separator: "\n").contains { $0.hasPrefix(n + " ") && $0.contains("svc") }, "\(ps.stdout)") }
            let nodes = try all(["node", "ls"])
            #expect(nodes.stdout.split(separator: "\n").filter { $0.contains(" ready ") }.count == 3, "\(nodes.stdout)")

            // lab2 gets a container that waits for a gate; then its agent is killed.
            #expect(try lab.berth("lab2", ["run", "-d", "--name", "gated", "busybox", "sh", "-c",
                                           "until [ -e /gate ]; do sleep 0.05; done; exit 4"]).status == 0)
            #expect(try lab.berth("lab2", ["exec", "gated", "touch", "/gate"]).status == 0)
            lab.stopAgent("lab2", signal: SIGKILL)
            let partial = try all(["--all", "--timeout", "5", "ps"])
            #expect(partial.status == 1)
            #expect(partial.stdout.contains("lab1 ") && partial.stdout.contains("lab3 ") && !partial.stdout.contains("lab2 "), "\(partial.stdout)")
            #expect(partial.stderr.contains("node lab2:"), "\(partial.stderr)")

            // The agent comes back; the container that exited meanwhile gets its die event,
            // and the fleet's stream from lab2 resumes after the last event it delivered.
            try lab.startAgent("lab2")
            let collected = try await withThrowingTaskGroup(of: [String: [Event]]?.self) { group in
                group.addTask { await collector.value }
                // Generous: under the full suite other tests' blocking calls can hold the
                // cooperative pool's two threads for a while.
                group.addTask { try await Task.sleep(for: .seconds(180)); collector.cancel(); return nil }
                defer { group.cancelAll() }
                return try await group.next() ?? nil
            }
            guard let byNode = collected else {
                let sockets = (try? runProgram(["/usr/bin/nsenter", "--net=/run/netns/berth-lab-2", "/usr/bin/ss", "-tnpa"]).stdout) ?? ""
                let mine = (try? runProgram(["/usr/bin/ss", "-tnpa", "dst", "10.240.0.12"]).stdout) ?? ""
                Issue.record("events did not all arrive within 180 s; got:\n\(trace.withLock { $0.joined(separator: "\n") })\nlab2 sockets:\n\(sockets)\nours:\n\(mine)\nlogs:\n\(lab.logs)")
                return
            }
            for n in lab.nodes {
                let seqs = byNode[n]?.map(\.seq) ?? []
                // In order, without gaps or repeats, from the start of the journal.
                #expect(seqs == Array(1...UInt64(max(1, seqs.count))), "\(n): \(seqs)")
            }
            let die = byNode["lab2"]?.first { $0.action == "die" && $0.name == "gated" }
            #expect(die?.exitCode == 4)

            // The scheduler: every node runs one container (lab2 also one exited): 6 pods, 2 each.
            let placed = try runProgram([binDir + "/berth-scheduler", "--hosts", lab.hostsFile, "--pods", "6", "--", "sleep", "600"])
            #expect(placed.status == 0, "\(placed.stdout)\(placed.stderr)")
            #expect(placed.stdout.contains("all 6 pods running: lab1=2 lab2=2 lab3=2"), "\(placed.stdout)")
            let pods = try all(["--all", "pod", "ls"])
            #expect(pods.stdout.split(separator: "\n").filter { $0.contains("sched-") }.count == 6, "\(pods.stdout)")
        }
    }
}
