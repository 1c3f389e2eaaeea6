// The deploy side of fleets (issue 8): a lab cluster of three agents in network
// namespaces whose containers reach each other through the agents' host-gw routes;
// berthd's sd_notify readiness; berthd --config.
#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem
import Testing

@Suite("Lab cluster (root, three agents in network namespaces)", .serialized, .enabled(if: isRoot, "needs root"),
       .timeLimit(.minutes(5)))
struct LabClusterTests {
    @Test("a container on host 1 reaches a container on host 3 by its own address, unmasqueraded; down leaves nothing")
    func crossHost() async throws {
        let image = try testImage.get()
        try await LabCluster.with(3) { lab in
            #expect(lab.nodes == ["lab1", "lab2", "lab3"])
            let hosts = try Files.readString(lab.hostsFile)
            #expect(hosts.contains("\"name\": \"lab3\", \"endpoint\": \"tcp://10.240.0.13:7443\""))
            for node in ["lab1", "lab3"] {
                let r = try lab.berth(node, ["image", "import", "busybox", image])
                #expect(r.status == 0, "\(node): \(r.stderr)")
            }
            // Host 3: a server that answers each connection with the connections it sees,
            // so the client's address as host 3 sees it comes back.
            let server = try lab.berth("lab3", ["run", "-d", "--name", "srv", "busybox", "sh", "-c",
                                                "while true; do nc -l -p 8080 -e netstat -tn; done"])
            #expect(server.status == 0, "\(server.stderr)")
            let client = try lab.berth("lab1", ["run", "-d", "--name", "cli", "busybox", "sleep", "1000"])
            #expect(client.status == 0, "\(client.stderr)")
            let serverIP = try ip(lab, "lab3", "srv"), clientIP = try ip(lab, "lab1", "cli")
            #expect(serverIP.hasPrefix("10.241.3."), "\(serverIP)")
            #expect(clientIP.hasPrefix("10.241.1."), "\(clientIP)")

            var seen = ""
            for _ in 0..<100 {
                let r = try lab.berth("lab1", ["exec", "cli", "sh", "-c", "timeout 5 nc \(serverIP) 8080 </dev/null"])
                seen = r.stdout
                if r.stdout.contains("ESTABLISHED") || r.stdout.contains("CLOSE_WAIT") { break }
                usleep(100_000)
            }
            #expect(seen.contains("\(serverIP):8080"), "answer: \(seen)")
            // Host 3 saw host 1's container itself, not host 1's lab address.
            #expect(seen.contains(clientIP + ":"), "answer: \(seen)")
            #expect(!seen.contains("10.240.0.11"), "masqueraded: \(seen)")

            // The routes are the agents' own (protocol 217), one per other host's subnets.
            let routes = try runProgram(["/usr/sbin/ip", "-n", "berth-lab-1", "-4", "route", "show", "proto", "217"]).stdout
            #expect(routes.contains("10.241.2.0/24 via 10.240.0.12") && routes.contains("10.241.3.0/24 via 10.240.0.13"), "\(routes)")

            // Host 1's agent restarted (an upgrade): the same routes, once each, and the
            // containers still reach each other. Meanwhile two routes appear in its record
            // that its configuration no longer has: one of Berth's (protocol 217), which
            // goes, and one someone else made to the same kind of place, which stays.
            lab.stopAgent("lab1")
            let ip = "/usr/sbin/ip"
            #expect(try runProgram([ip, "-n", "berth-lab-1", "route", "add", "10.98.0.0/16", "via", "10.240.0.12", "proto", "217"]).status == 0)
            #expect(try runProgram([ip, "-n", "berth-lab-1", "route", "add", "10.99.0.0/16", "via", "10.240.0.12"]).status == 0)
            let record = lab.dir + "/lab1/state/networks/routes.berth"
            let recorded = try Files.readString(record)
            try Files.writeAtomically(record, Array((recorded + "10.98.0.0/16=10.240.0.12\n10.99.0.0/16=10.240.0.12\n").utf8))
            try lab.startAgent("lab1")
            let after = try runProgram([ip, "-n", "berth-lab-1", "-4", "route", "show", "proto", "217"]).stdout
            #expect(after == routes, "before:\n\(routes)after:\n\(after)")
            let foreign = try runProgram([ip, "-n", "berth-lab-1", "-4", "route", "show", "10.99.0.0/16"]).stdout
            #expect(foreign.contains("10.99.0.0/16 via 10.240.0.12"), "someone else's route was removed")
            #expect(try Files.readString(record) == recorded, "the record lists the configured routes again")
            var again = ""
            for _ in 0..<100 {
                again = try lab.berth("lab1", ["exec", "cli", "sh", "-c", "timeout 5 nc \(serverIP) 8080 </dev/null"]).stdout
                if again.contains(clientIP + ":") { break }
                usleep(100_000)
            }
            #expect(again.contains(clientIP + ":"), "after the restart: \(again)")
        }
    }

    @Test("down cleans up after an agent that was killed with containers, a pod and a user network still there")
    func downAfterAKilledAgent() async throws {
        let image = try testImage.get()
        try await LabCluster.with(2) { lab in
            #expect(try lab.berth("lab2", ["image", "import", "busybox", image]).status == 0)
            #expect(try lab.berth("lab2", ["network", "create", "net2"]).status == 0)
            #expect(try lab.berth("lab2", ["run", "-d", "--network", "net2", "busybox", "sleep", "1000"]).status == 0)
            #expect(try lab.berth("lab2", ["pod", "create", "--name", "p2"]).status == 0)
            let inPod = try lab.berth("lab2", ["run", "-d", "--pod", "p2", "busybox", "sleep", "1000"])
            #expect(inPod.status == 0, "\(inPod.stderr)")
            lab.stopAgent("lab2", signal: SIGKILL)
            #expect(try lab.berth("lab2", ["info"]).status != 0)
            // LabCluster.with runs down and checks that nothing is left.
        }
    }

    @Test("up while a lab is up is refused and names it; down where there is none does nothing")
    func upTwiceDownNone() async throws {
        try await LabCluster.with(1) { lab in
            let other = try TempDir("berth-lab2")
            defer { other.remove() }
            let again = try runProgram(["/bin/bash", LabCluster.script, "up", "1", "--dir", other.path], env: LabCluster.env)
            #expect(again.status != 0)
            #expect(again.stderr.contains("already up") && again.stderr.contains(lab.dir), "\(again.stderr)")
            let none = try runProgram(["/bin/bash", LabCluster.script, "down", "--dir", other.path], env: LabCluster.env)
            #expect(none.status == 0, "\(none.stderr)")
            #expect(try lab.berth("lab1", ["info"]).status == 0, "the lab that is up must survive both")
        }
    }
}

/// The address of `name` on `node`, from `berth inspect`.
private func ip(_ lab: LabCluster, _ node: String, _ name: String) throws -> String {
    let out = try lab.berth(node, ["inspect", name]).stdout
    let parts = out.split(separator: "\"IPAddress\":\"", maxSplits: 1, omittingEmptySubsequences: false)
    guard parts.count == 2 else { return "" }
    return String(parts[1].prefix { $0 != "\"" })
}

// MARK: - sd_notify

/// An agent started with NOTIFY_SOCKET pointing at `address` ("/path" or "@abstract"),
/// in dirs of its own; `stop()` ends it.
private struct NotifiedAgent {
    let dir: TempDir
    let pid: pid_t
    let lifeline: FileDescriptor
    let prefix: String
    var socket: String { dir.path + "/berth.sock" }

    init(notify address: String) throws {
        dir = try TempDir("berth-notify")
        prefix = "bn" + Host.randomHex(bytes: 2)
        let argv = [binDir + "/berthd", "--socket", dir.path + "/berth.sock", "--state-dir", dir.path + "/state",
                    "--run-dir", dir.path + "/run", "--exit-on-stdin-eof", "--network-prefix", prefix,
                    "--default-network", "none", "--cgroup-parent", "berth-test-\(prefix)"]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        let pipe = try FileDescriptor.pipe()
        lifeline = pipe.write
        posix_spawn_file_actions_adddup2(&actions, pipe.read.rawValue, 0)
        posix_spawn_file_actions_addopen(&actions, 1, dir.path + "/berthd.log", O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, dir.path + "/berthd.log", O_WRONLY | O_CREAT | O_APPEND, 0o600)
        var env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "NOTIFY_SOCKET=" + address]
        pid = try spawn(argv, &env, &actions)
        pipe.read.close()
    }

    /// SIGTERM, wait, clean up.
    func stop() -> Int32 {
        kill(pid, SIGTERM)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        lifeline.close()
        rmdir("/sys/fs/cgroup/berth-test-\(prefix)")
        dir.remove()
        return status
    }

    var log: String { (try? Files.readString(dir.path + "/berthd.log")) ?? "" }
}

/// A bound AF_UNIX datagram socket: a path, or an abstract name (leading NUL).
private func bindDatagram(_ address: [UInt8]) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw Errno.current.error("socket") }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in address.enumerated() { p[i] = b } }
    let length = socklen_t(2 + address.count + (address.first == 0 ? 0 : 1))
    let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    guard rc == 0 else {
        let e = Errno.current
        close(fd)
        throw e.error("bind notify socket")
    }
    return fd
}

/// The next datagram, waiting at most `seconds`; nil on timeout.
private func receive(_ fd: Int32, seconds: Int32) -> String? {
    var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    guard poll(&p, 1, seconds * 1000) == 1 else { return nil }
    var buf = [UInt8](repeating: 0, count: 4096)
    let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
    return n >= 0 ? String(decoding: buf[0..<n], as: UTF8.self) : nil
}

@Suite("Notify: berthd speaks sd_notify (root, real agent)", .serialized, .enabled(if: isRoot, "needs root"),
       .timeLimit(.minutes(2)))
struct NotifyTests {
    @Test("READY=1 with MAINPID arrives once the socket answers, STOPPING=1 at SIGTERM; a path and an abstract socket",
          arguments: ["path", "abstract"])
    func readyAndStopping(kind: String) async throws {
        let temp = try TempDir("berth-notify-sock")
        defer { temp.remove() }
        let name = kind == "path" ? temp.path + "/notify" : "@berth-test-notify-\(getpid())-\(Host.randomHex(bytes: 4))"
        var address = Array(name.utf8)
        if kind == "abstract" { address[0] = 0 }
        let fd = try bindDatagram(address)
        defer { close(fd) }
        let agent = try NotifiedAgent(notify: name)
        var stopped = false
        defer { if !stopped { _ = agent.stop() } }

        let ready = receive(fd, seconds: 60)
        #expect(ready?.split(separator: "\n").contains("READY=1") == true, "got \(ready ?? "nothing"); log: \(agent.log)")
        #expect(ready?.split(separator: "\n").contains("MAINPID=\(agent.pid)") == true, "got \(ready ?? "nothing")")
        // No retry: at READY=1 the socket must already answer.
        let client = try await BerthClient.connect(to: "unix://" + agent.socket)
        #expect(try await client.info().containers == 0)
        client.close()

        kill(agent.pid, SIGTERM)
        let stopping = receive(fd, seconds: 60)
        #expect(stopping?.split(separator: "\n").contains("STOPPING=1") == true, "got \(stopping ?? "nothing")")
        stopped = true
        let status = agent.stop()
        #expect(status == 0, "berthd exit status \(status); log: \(agent.log)")
    }
}

// MARK: - berthd --config

@Suite("Config: berthd --config FILE", .enabled(if: isRoot, "needs root"), .timeLimit(.minutes(2)))
struct ConfigFileTests {
    private func berthd(_ args: [String]) throws -> ProcessOutput {
        try runProgram([binDir + "/berthd"] + args)
    }

    @Test("a broken file stops berthd with exit 78, naming the file, the line and the reason", arguments: [
        ("listen = tcp://127.0.0.1:1\n# comment\n\nlsiten = x\n", ":4: unknown key \"lsiten\""),
        ("node-name\n", ":1: expected key = value, not \"node-name\""),
        ("  --socket = /x\n", ":1: unknown key \"--socket\" (write keys without the leading --)"),
        ("node-name = a\nnode-name = b\n", ":2: node-name is already set on line 1"),
        ("insecure-tcp = yes\n", ":1: insecure-tcp takes true or false, not \"yes\""),
        ("log-max-files = many\n", ":1: log-max-files needs a number from 0 to 100, not \"many\""),
        ("route = 10.1.2.3/24=10.0.0.1\n", ":1: route: invalid route \"10.1.2.3/24=10.0.0.1\": invalid subnet \"10.1.2.3/24\": host bits are set"),
        ("route = 10.1.2.0/24=10.0.0.x\n", ":1: route: invalid route \"10.1.2.0/24=10.0.0.x\": gateway \"10.0.0.x\" is not an IPv4 address"),
        ("route = 10.1.2.0/24\n", ":1: route: invalid route \"10.1.2.0/24\": expected CIDR=GATEWAY"),
        ("socket =\n", ":1: socket needs a value"),
        ("state-dir = var/lib/berth\n", ":1: state-dir needs an absolute path, not \"var/lib/berth\""),
        ("config = /etc/other.conf\n", ":1: a configuration file cannot include another"),
    ])
    func errors(text: String, expected: String) throws {
        let dir = try TempDir("berth-config")
        defer { dir.remove() }
        let path = dir.path + "/berthd.conf"
        try Files.writeAtomically(path, Array(text.utf8))
        let r = try berthd(["--config", path])
        #expect(r.status == 78, "\(r.stderr)")
        #expect(r.stderr.hasPrefix("berthd: \(path)\(expected)"), "\(r.stderr)")
    }

    @Test("a missing file is exit 78; a bad --route on the command line is a usage error (64)")
    func missingFileAndBadFlag() throws {
        let missing = try berthd(["--config", "/nonexistent/berthd.conf"])
        #expect(missing.status == 78 && missing.stderr.contains("/nonexistent/berthd.conf"), "\(missing.stderr)")
        let bad = try berthd(["--route", "10.9.0.0/16=300.1.1.1"])
        #expect(bad.status == 64 && bad.stderr.hasPrefix("Error: --route: invalid route"), "\(bad.stderr)")
    }

    @Test("options after --config override the file, options before it are overridden; the agent serves")
    func overrides() async throws {
        let dir = try TempDir("berth-config")
        defer { dir.remove() }
        let prefix = "bc" + Host.randomHex(bytes: 2)
        let conf = """
            # a test agent
            socket = \(dir.path)/berth.sock
            state-dir = \(dir.path)/state
            run-dir = \(dir.path)/run
            node-name = from-file
            default-network = none
            network-prefix = \(prefix)
            cgroup-parent = berth-test-\(prefix)
            exit-on-stdin-eof = true

            """
        try Files.writeAtomically(dir.path + "/berthd.conf", Array(conf.utf8))
        for (args, expected) in [(["--node-name", "before", "--config", dir.path + "/berthd.conf"], "from-file"),
                                 (["--config", dir.path + "/berthd.conf", "--node-name", "after"], "after")] {
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            let pipe = try FileDescriptor.pipe()
            posix_spawn_file_actions_adddup2(&actions, pipe.read.rawValue, 0)
            posix_spawn_file_actions_addopen(&actions, 2, dir.path + "/berthd.log", O_WRONLY | O_CREAT | O_APPEND, 0o600)
            var env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
            let pid = try spawn([binDir + "/berthd"] + args, &env, &actions)
            pipe.read.close()
            var name = ""
            for _ in 0..<300 {
                if let c = try? await BerthClient.connect(to: "unix://\(dir.path)/berth.sock") {
                    name = (try? await c.info().nodeName) ?? ""
                    c.close()
                    break
                }
                usleep(50_000)
            }
            // EOF on stdin (exit-on-stdin-eof from the file) shuts it down.
            pipe.write.close()
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            #expect(name == expected, "log: \((try? Files.readString(dir.path + "/berthd.log")) ?? "")")
            #expect(status == 0)
        }
        rmdir("/sys/fs/cgroup/berth-test-\(prefix)")
    }
}
