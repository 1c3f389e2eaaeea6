#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem
import Testing

/// A lab cluster made by `deploy/lab-cluster.sh up N --dir <temp>` (docs/deploy.md): N
/// agents, each in a network namespace of its own ("host") on the lab bridge, with mutual
/// TLS and routes between their container subnets. Use it through `LabCluster.with`,
/// which always runs `down` — pass or fail — and checks that down left nothing.
///
/// The lab's names are fixed (bridge berthlab0, namespaces berth-lab-<i>, 10.240.0.0/24),
/// so one lab at a time per machine: `with` serialises every lab of this test process.
final class LabCluster: Sendable {
    /// The lab's directory (`--dir`): state, logs, certificates, the hosts file.
    let dir: String
    /// The hosts file `up` printed as its last line (the format of docs/deploy.md).
    let hostsFile: String
    /// "lab1" … "labN".
    let nodes: [String]

    private init(dir: String, hostsFile: String, count: Int) {
        self.dir = dir
        self.hostsFile = hostsFile
        self.nodes = (1...count).map { "lab\($0)" }
    }

    static let script = repoRoot + "/deploy/lab-cluster.sh"
    /// The script finds berthd, berth and berth-monitor here (the test build's).
    static let env = ["BERTH_BIN=" + binDir]

    /// Runs `body` on a fresh lab of `count` agents, then takes the lab down whatever
    /// happened, and records an issue for anything down left behind.
    static func with<T: Sendable>(_ count: Int = 3, _ body: (LabCluster) async throws -> T) async throws -> T {
        await labTurn.acquire()
        defer { labTurn.release() }
        let temp = try TempDir("berth-lab")
        let up = try runProgram(["/bin/bash", script, "up", String(count), "--dir", temp.path], env: env)
        let last = up.stdout.split(separator: "\n").last.map(String.init) ?? ""
        guard up.status == 0, last.hasSuffix("/hosts.json"), Files.exists(last) else {
            // A failed up takes its own partial lab down; make sure, then say why.
            _ = try? runProgram(["/bin/bash", script, "down", "--dir", temp.path], env: env)
            temp.remove()
            throw BerthError(.unavailable, "lab-cluster.sh up \(count) failed (\(up.status)):\n\(up.stdout)\(up.stderr)")
        }
        let lab = LabCluster(dir: temp.path, hostsFile: last, count: count)
        let result: Result<T, any Error>
        do {
            result = .success(try await body(lab))
        } catch {
            Issue.record("lab logs:\n\(lab.logs)")
            result = .failure(error)
        }
        // The agents were started by the script, which has exited: when this process is
        // their subreaper, it must reap them once down has stopped them.
        let agents = lab.nodes.compactMap { pid_t(((try? Files.readString("\(temp.path)/\($0)/berthd.pid")) ?? "").filter { $0.isNumber }) }
        let down = try runProgram(["/bin/bash", script, "down", "--dir", temp.path], env: env)
        for pid in agents {
            var status: Int32 = 0
            _ = waitpid(pid, &status, WNOHANG)
        }
        Processes.reapOrphanedMonitors()
        #expect(down.status == 0, "lab-cluster.sh down: \(down.stdout)\(down.stderr)")
        let left = LabCluster.leftovers(dir: temp.path, count: count)
        #expect(left.isEmpty, "left after down: \(left)")
        temp.remove()
        return try result.get()
    }

    /// Node `name`'s endpoint ("lab3" → tcp://10.240.0.13:7443).
    func endpoint(_ node: String) -> String {
        "tcp://10.240.0.\(10 + (Int(node.dropFirst(3)) ?? 0)):7443"
    }

    /// The client's TLS options (the lab's CA and its admin client certificate).
    var tlsArgs: [String] {
        ["--tls-ca", dir + "/certs/ca.pem", "--tls-cert", dir + "/certs/client.pem", "--tls-key", dir + "/certs/client-key.pem"]
    }

    /// The berth CLI against `node`, with its endpoint and the lab's TLS files.
    func berth(_ node: String, _ args: [String], stdin: String? = nil) throws -> ProcessOutput {
        try runProgram([binDir + "/berth", "-H", endpoint(node)] + tlsArgs + args, stdin: stdin)
    }

    /// The pid of `node`'s berthd (from DIR/<node>/berthd.pid), nil when it has none.
    func agentPID(_ node: String) -> pid_t? {
        pid_t(((try? Files.readString("\(dir)/\(node)/berthd.pid")) ?? "").filter { $0.isNumber })
    }

    /// Stops `node`'s berthd with `signal` (SIGTERM: a clean shutdown; SIGKILL: a crash)
    /// and waits until it is gone. Its containers keep running under their monitors.
    func stopAgent(_ node: String, signal: Int32 = SIGTERM) {
        guard let pid = agentPID(node) else { return }
        kill(pid, signal)
        for _ in 0..<400 {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid { break }
            // Not our child (the script started it): gone, or a zombie someone else reaps.
            let state = ((try? Files.readString("/proc/\(pid)/stat")) ?? "").split(separator: ")").last?.split(separator: " ").first
            if state == nil || state == "Z" { break }
            usleep(50_000)
        }
    }

    /// Starts `node`'s berthd again with the command line `up` gave it (DIR/<node>/
    /// berthd.cmdline), in its namespace, and waits until it answers.
    func startAgent(_ node: String) throws {
        let d = "\(dir)/\(node)"
        let cmdline = try Files.readString(d + "/berthd.cmdline")
        let ns = "/run/netns/berth-lab-\(node.dropFirst(3))"
        let start = try runProgram(["/bin/bash", "-c",
                                    "setsid nsenter --net=\(ns) -- \(cmdline) </dev/null >>\(d)/berthd.log 2>&1 & echo $! > \(d)/berthd.pid"])
        guard start.status == 0 else { throw BerthError(.internal, "start \(node): \(start.stderr)") }
        for _ in 0..<600 {
            if try berth(node, ["info"]).status == 0 { return }
            usleep(50_000)
        }
        throw BerthError(.unavailable, "\(node) did not answer after a restart: \(logs)")
    }

    /// Every agent's log, for a failing test.
    var logs: String {
        nodes.map { "--- \($0):\n" + ((try? Files.readString("\(dir)/\($0)/berthd.log")) ?? "(none)") }.joined(separator: "\n")
    }

    /// What a lab in `dir` could leave behind: cgroups, links, namespaces, mounts,
    /// processes, the directory, the marker of a lab being up.
    static func leftovers(dir: String, count: Int) -> [String] {
        var left: [String] = []
        for i in 1...count {
            for root in ["/sys/fs/cgroup"] + ((try? Files.list("/sys/fs/cgroup")) ?? []).map({ "/sys/fs/cgroup/" + $0 }) {
                if Files.isDirectory("\(root)/berth-lab\(i)") { left.append("cgroup \(root)/berth-lab\(i)") }
            }
            if Files.exists("/run/netns/berth-lab-\(i)") { left.append("namespace berth-lab-\(i)") }
        }
        let links = (try? runProgram(["/usr/sbin/ip", "-o", "link"]).stdout) ?? ""
        left += links.split(separator: "\n").filter { $0.contains("berthlab") }.map { "link \($0.prefix(60))" }
        let mounts = (try? Files.readString("/proc/self/mountinfo")) ?? ""
        left += mounts.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            return f.count > 4 && f[4].hasPrefix(dir + "/") ? "mount \(f[4])" : nil
        }
        left += Processes.all().filter { $0.cmdline.contains(dir + "/") }.map { "process \($0.pid) \($0.cmdline.prefix(80))" }
        if Files.exists(dir + "/lab.env") { left.append("directory \(dir)") }
        if Files.exists("/run/berth-lab.dir") { left.append("/run/berth-lab.dir") }
        return left
    }
}

/// One lab at a time in this process: suites run in parallel, and the lab's names are fixed.
private let labTurn = AsyncTurn()

/// A FIFO lock for async code (a waiter suspends, it does not block a thread).
final class AsyncTurn: Sendable {
    private struct State {
        var busy = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = ConditionLock(State())

    func acquire() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.busy { s.waiters.append(c); return false }
                s.busy = true
                return true
            }
            if now { c.resume() }
        }
    }

    func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty { s.busy = false; return nil }
            return s.waiters.removeFirst()
        }
        next?.resume()
    }
}
