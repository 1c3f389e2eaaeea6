#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem

/// Commands on nodes picked from the hosts file (`--node`, `--all`) and the fleet's own
/// commands (`node ls`). Reads (ps, images, pod ls, info, stats --no-stream, events) run
/// on every node at once and print one table with a NODE column; any other command runs
/// as `berth -H NODE …` for each node at once, its output lines prefixed with the node.
/// An unreachable node is reported on stderr with its reason and makes the exit status
/// 1, while the other nodes' results are still printed.
enum FleetCommands {
    static func run(_ c: Command, _ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        args.command = c
        switch c.name {
        case "node": return try await node(&args, g)
        case "events": return try await events(&args, g)
        default: break
        }
        let nodes = try g.nodes()
        let fleet = Fleet(nodes: nodes, callTimeout: .seconds(g.timeoutSeconds))
        defer { fleet.close() }
        switch c.name {
        case "ps": return try await ps(&args, fleet)
        case "images": return try await images(&args, fleet)
        case "image" where ["ls", "list"].contains(args.peek() ?? ""):
            _ = args.next()
            return try await images(&args, fleet)
        case "pod" where ["ls", "list", "ps"].contains(args.peek() ?? ""):
            _ = args.next()
            return try await pods(&args, fleet)
        case "info": return try await info(&args, fleet)
        case "stats": return try await stats(&args, fleet)
        default: return try await perNode(c, &args, g, nodes)
        }
    }

    /// Prints each failed node's reason on stderr; 1 if any failed.
    static func report<T>(_ results: [NodeResult<T>]) -> Int32 {
        var status = ExitCode.ok
        for r in results {
            if let e = r.error {
                err("Error: node \(r.node): \(e.message.hasPrefix("node \(r.node): ") ? String(e.message.dropFirst("node \(r.node): ".count)) : e.message)\n")
                status = ExitCode.failure
            }
        }
        return status
    }

    // MARK: - Reads

    static func ps(_ args: inout Arguments, _ fleet: Fleet) async throws -> Int32 {
        let (all, quiet, json, filters) = try Commands.psOptions(&args)
        let results = await fleet.listContainers(all: all, filters: filters)
        let now = Host.now
        let withPods = results.contains { $0.value?.contains { !$0.podName.isEmpty } ?? false }
        var rows = [["NODE", "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"] + (withPods ? ["POD"] : [])]
        for r in results {
            for c in r.value ?? [] {
                if quiet {
                    out(String(c.id.prefix(12)) + "\n")
                } else if json {
                    out("{\"Node\":\(JSON.string(r.node))," + JSON.container(c).dropFirst() + "\n")
                } else {
                    rows.append([r.node, String(c.id.prefix(12)), c.image, Format.command(c.spec.args),
                                 Format.ago(now - c.createdUnix), Format.status(c, now: now), Format.ports(c.spec.ports), c.name]
                                + (withPods ? [c.podName] : []))
                }
            }
        }
        if !quiet && !json { out(Format.table(rows)) }
        return report(results)
    }

    static func images(_ args: inout Arguments, _ fleet: Fleet) async throws -> Int32 {
        try Commands.noMoreArguments(&args, "images")
        let results = await fleet.forEach { try await $0.listImages() }
        var rows = [["NODE", "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]]
        let now = Host.now
        for r in results {
            for i in r.value ?? [] {
                let (repo, tag) = Commands.splitTag(i.name)
                rows.append([r.node, repo, tag, String(i.id.split(separator: ":").last?.prefix(12) ?? ""), Format.ago(now - i.createdUnix), Format.bytesSI(i.sizeBytes)])
            }
        }
        out(Format.table(rows))
        return report(results)
    }

    static func pods(_ args: inout Arguments, _ fleet: Fleet) async throws -> Int32 {
        var quiet = false
        while let a = args.next() {
            guard a == "-q" || a == "--quiet" else { throw UsageError(message: "unexpected argument \(a)", command: args.command) }
            quiet = true
        }
        let results = await fleet.listPods()
        var rows = [["NODE", "POD ID", "NAME", "STATUS", "CREATED", "IP", "SHARED", "# OF CONTAINERS"]]
        let now = Host.now
        for r in results {
            for p in r.value ?? [] {
                if quiet { out(String(p.id.prefix(12)) + "\n"); continue }
                rows.append([r.node, String(p.id.prefix(12)), p.name, p.state, Format.ago(now - p.createdUnix),
                             p.network.ip.isEmpty ? "-" : p.network.ip, p.spec.share.joined(separator: ","), String(p.containers.count)])
            }
        }
        if !quiet { out(Format.table(rows)) }
        return report(results)
    }

    static func info(_ args: inout Arguments, _ fleet: Fleet) async throws -> Int32 {
        try Commands.noMoreArguments(&args, "info")
        let results = await fleet.info()
        var first = true
        for r in results {
            guard let i = r.value else { continue }
            if !first { out("\n") }
            first = false
            out(Commands.infoText(i))
        }
        return report(results)
    }

    static func stats(_ args: inout Arguments, _ fleet: Fleet) async throws -> Int32 {
        var stream = true
        var refs: [String] = []
        while let a = args.next() {
            if a == "--no-stream" { stream = false; continue }
            if a.hasPrefix("-") { throw UsageError(message: "unknown option \(a)", command: args.command) }
            refs.append(a)
        }
        guard !stream else { throw UsageError(message: "stats on nodes of the hosts file prints one table: add --no-stream", command: args.command) }
        let refList = refs
        let results = await fleet.forEach { client -> ([ContainerStats], [ContainerStats]) in
            let before = try await client.stats(refList)
            try await Task.sleep(nanoseconds: 500_000_000)
            return (before, try await client.stats(refList))
        }
        var rows = [["NODE", "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"]]
        for r in results {
            guard let (before, after) = r.value else { continue }
            for row in Commands.statsRows(before, after) { rows.append([r.node] + row) }
        }
        out(Format.table(rows))
        return report(results)
    }

    // MARK: - node ls

    /// `berth node ls`: per agent, whether it answers and the numbers a scheduler
    /// weighs. Without --node/--all: every node of the hosts file, or the one agent of
    /// -H (or the default socket) when there is no hosts file.
    static func node(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        guard let sub = args.next() else { throw UsageError(message: "node needs a subcommand: ls", command: args.command) }
        guard sub == "ls" || sub == "list" else { throw UsageError(message: "unknown node subcommand \"\(sub)\"", command: args.command) }
        var json = false
        while let a = args.next() {
            let (flag, inline) = Arguments.split(a)
            guard flag == "--format" else { throw UsageError(message: "unexpected argument \(a)", command: args.command) }
            json = try args.jsonFormat(for: flag, inline)
        }
        let nodes: [Node]
        if g.isFleet {
            nodes = try g.nodes()
        } else if g.host.isEmpty, let file = try? g.hostsFile(), !file.nodes.isEmpty {
            nodes = file.nodes
        } else {
            let (address, tls) = try g.target()
            nodes = [Node(name: g.host.isEmpty || g.host.contains("://") ? "local" : g.host, endpoint: address, tls: tls)]
        }
        let fleet = Fleet(nodes: nodes, callTimeout: .seconds(g.timeoutSeconds))
        defer { fleet.close() }
        let results = await fleet.info()
        var rows = [["NODE", "STATUS", "VERSION", "KERNEL", "CGROUP", "CPUS", "MEMORY", "AVAILABLE", "CONTAINERS", "PODS", "LOAD"]]
        for r in results {
            if json {
                if let i = r.value {
                    out("{\"Node\":\(JSON.string(r.node)),\"Reachable\":true,\"Version\":\(JSON.string(i.agentVersion)),\"Protocol\":\(i.protocolVersion),"
                        + "\"Kernel\":\(JSON.string(i.kernel)),\"CgroupLayout\":\(JSON.string(i.cgroupLayout)),\"CPUs\":\(i.cpus),"
                        + "\"MemoryBytes\":\(i.memoryBytes),\"MemoryAvailableBytes\":\(i.memoryAvailableBytes),\"Containers\":\(i.containers),"
                        + "\"ContainersRunning\":\(i.containersRunning),\"Pods\":\(i.pods),\"Load1\":\(i.load1),\"Load5\":\(i.load5),\"Load15\":\(i.load15)}\n")
                } else {
                    out("{\"Node\":\(JSON.string(r.node)),\"Reachable\":false,\"Error\":\(JSON.string(r.error?.message ?? ""))}\n")
                }
                continue
            }
            guard let i = r.value else {
                rows.append([r.node, "unreachable", "-", "-", "-", "-", "-", "-", "-", "-", "-"])
                continue
            }
            rows.append([r.node, "ready", i.agentVersion, i.kernel, i.cgroupLayout, String(i.cpus), Format.bytesIEC(i.memoryBytes),
                         Format.bytesIEC(i.memoryAvailableBytes), "\(i.containersRunning)/\(i.containers)", String(i.pods),
                         "\(fixed2(i.load1)) \(fixed2(i.load5)) \(fixed2(i.load15))"])
        }
        if !json { out(Format.table(rows)) }
        return report(results)
    }

    static func fixed2(_ v: Double) -> String {
        let hundredths = Int((v * 100).rounded())
        let frac = hundredths % 100
        return "\(hundredths / 100).\(frac < 10 ? "0" : "")\(frac)"
    }

    // MARK: - events

    /// `berth events [-f] [--since SEQ|TIME] [--all]`: the journal's events (all it
    /// holds, or from --since); with -f, new ones as they happen until interrupted.
    /// On several nodes each line starts with the node; a dropped stream is resumed
    /// after its last event.
    static func events(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        args.command = args.command ?? CLI.find("events")
        var follow = false
        var since: String?
        var json = false
        var g = g
        while let a = args.next() {
            let (flag, inline) = Arguments.split(a)
            switch flag {
            case "-f", "--follow": follow = true
            case "--since": since = try args.value(for: flag, inline)
            case "--all": g.allNodes = true
            case "--format":
                json = try args.jsonFormat(for: flag, inline)
            default: throw UsageError(message: "unexpected argument \(a)", command: args.command)
            }
        }
        if !g.host.isEmpty && g.isFleet { throw UsageError(message: "-H and --node/--all pick agents in two ways: give one of them", command: args.command) }
        var request = EventsRequest(follow: follow)
        if let since {
            if let seq = UInt64(since), !since.contains(":") && since.count < 10 {
                request.sinceSeq = seq
                request.fromStart = seq == 0
            } else if let t = Time.parseSince(since, now: Host.now) {
                request.sinceUnixNanos = max(1, t) * 1_000_000_000
            } else {
                throw UsageError(message: "--since takes a sequence number, an RFC 3339 time, unix seconds or a duration (10m), not \"\(since)\"", command: args.command)
            }
        } else if !follow {
            request.fromStart = true
        }
        let multi = g.isFleet
        let nodes: [Node]
        if multi {
            nodes = try g.nodes()
        } else {
            let (address, tls) = try g.target()
            nodes = [Node(name: "", endpoint: address, tls: tls)]
        }
        func line(_ node: String, _ e: Event) -> String {
            if json {
                var attrs = e.attributes.sorted { $0.key < $1.key }.map { "\(JSON.string($0.key)):\(JSON.string($0.value))" }
                if e.action == "die" { attrs.append("\"exitCode\":\(JSON.string(String(e.exitCode)))") }
                return "{" + (multi ? "\"Node\":\(JSON.string(node))," : "") + "\"Seq\":\(e.seq),\"TimeNano\":\(e.timeUnixNanos),\"Type\":\(JSON.string(e.type)),"
                    + "\"Action\":\(JSON.string(e.action)),\"ID\":\(JSON.string(e.id)),\"Name\":\(JSON.string(e.name)),\"Attributes\":{\(attrs.joined(separator: ","))}}\n"
            }
            var attrs = e.attributes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            if e.action == "die" { attrs.insert("exitCode=\(e.exitCode)", at: 0) }
            attrs.append("name=\(e.name)")
            let when = String(decoding: RFC3339.format(e.timeUnixNanos), as: UTF8.self)
            return (multi ? "\(node) " : "") + "\(when) #\(e.seq) \(e.type) \(e.action) \(e.id) (\(attrs.joined(separator: ", ")))\n"
        }
        if !follow {
            let request = request
            let fleet = Fleet(nodes: nodes, callTimeout: .seconds(g.timeoutSeconds))
            defer { fleet.close() }
            let results = await fleet.forEach { client -> [Event] in
                var all: [Event] = []
                for try await e in try client.events(request) { all.append(e) }
                return all
            }
            var merged: [(String, Event)] = []
            for r in results { for e in r.value ?? [] { merged.append((r.node, e)) } }
            merged.sort { $0.1.timeUnixNanos < $1.1.timeUnixNanos }
            for (n, e) in merged { out(line(n, e)) }
            if !multi, let e = results.first?.error { throw e }
            return report(results)
        }
        // Follow: the fleet resumes each dropped stream after its last event.
        let fleet = Fleet(nodes: nodes, callTimeout: .seconds(g.timeoutSeconds))
        defer { fleet.close() }
        var from: [String: UInt64] = [:]
        if request.sinceSeq > 0 || request.fromStart { for n in nodes { from[n.name] = request.sinceSeq } }
        var status = ExitCode.ok
        var seen: Set<String> = []
        for await item in fleet.events(since: from) {
            switch item {
            case .event(let node, let e):
                if request.sinceUnixNanos > 0 && e.timeUnixNanos < request.sinceUnixNanos { continue }
                out(line(node, e))
            case .disconnected(let node, let e):
                err("Error: \(multi ? "node \(node): " : "")\(e.message) (reconnecting)\n")
                status = ExitCode.failure
            case .connected(let node):
                if seen.contains(node) { err("\(multi ? "node \(node): " : "")events resumed\n") }
                seen.insert(node)
            case .lost(let node, let count):
                err("Warning: \(multi ? "node \(node): " : "")\(count) event\(count == 1 ? "" : "s") no longer in the agent's journal\n")
            }
        }
        return status
    }

    // MARK: - Anything else: per node

    /// Runs the command as `berth -H ENDPOINT … COMMAND ARGS` for each node at once and
    /// prints each line of its output as "NODE  line" as it comes.
    static func perNode(_ c: Command, _ args: inout Arguments, _ g: Globals, _ nodes: [Node]) async throws -> Int32 {
        let rest = [c.name] + args.consumeAll()
        let explicit = try g.explicitTLS()
        var path = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &path, path.count - 1)
        let exe = n > 0 ? String(decoding: path[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
        let width = nodes.map(\.name.count).max() ?? 0
        let outLock = ConditionLock(())
        let statuses = ConditionLock([String: Int32]())
        for node in nodes {
            var argv = [exe, "-H", node.endpoint]
            if let tls = explicit ?? node.tls { argv += ["--tls-ca", tls.ca, "--tls-cert", tls.certificate, "--tls-key", tls.key] }
            argv += rest
            let command = argv
            let prefix = node.name.padding(to: width) + " "
            startThread("berth-node") {
                let status = Subprocess.run(command) { fd, line in
                    outLock.withLock { _ in write(fd, prefix + line) }
                }
                statuses.withLock { $0[node.name] = status }
            }
        }
        let done = statuses.wait { s in s.count == nodes.count ? s : nil } ?? [:]
        var status = ExitCode.ok
        for node in nodes where done[node.name] != 0 {
            err("Error: node \(node.name): \(c.name) exited with status \(done[node.name] ?? -1)\n")
            status = ExitCode.failure
        }
        return status
    }
}

/// A child process whose stdout and stderr are read line by line.
enum Subprocess {
    /// Runs `argv` (stdin from /dev/null), calls `line` with (1 or 2, text ending in a
    /// newline) for each line it writes, and returns its exit status (128+N if killed).
    static func run(_ argv: [String], line: (Int32, String) -> Void) -> Int32 {
        guard let o = try? FileDescriptor.pipe(), let e = try? FileDescriptor.pipe() else { return 127 }
        let outPipe = [o.read.rawValue, o.write.rawValue], errPipe = [e.read.rawValue, e.write.rawValue]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        var cArgs = argv.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cArgs, environ)
        close(outPipe[1]); close(errPipe[1])
        guard rc == 0 else {
            close(outPipe[0]); close(errPipe[0])
            line(2, "cannot run \(argv[0]): \(Errno(rawValue: rc))\n")
            return 127
        }
        var fds = [pollfd(fd: outPipe[0], events: Int16(POLLIN), revents: 0), pollfd(fd: errPipe[0], events: Int16(POLLIN), revents: 0)]
        var pending: [[UInt8]] = [[], []]
        var open = 2
        var buffer = [UInt8](repeating: 0, count: 16 << 10)
        while open > 0 {
            if poll(&fds, 2, -1) < 0 { if errno == EINTR { continue }; break }
            for i in 0..<2 where fds[i].fd >= 0 && fds[i].revents != 0 {
                let n = buffer.withUnsafeMutableBytes { read(fds[i].fd, $0.baseAddress, $0.count) }
                if n <= 0 {
                    if n < 0 && errno == EINTR { continue }
                    if !pending[i].isEmpty { line(Int32(i + 1), String(decoding: pending[i], as: UTF8.self) + "\n") }
                    close(fds[i].fd)
                    fds[i].fd = -1
                    open -= 1
                    continue
                }
                pending[i] += buffer[0..<n]
                while let nl = pending[i].firstIndex(of: 0x0a) {
                    line(Int32(i + 1), String(decoding: pending[i][...nl], as: UTF8.self))
                    pending[i].removeSubrange(...nl)
                }
            }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        if status & 0x7f == 0 { return (status >> 8) & 0xff }
        return 128 + (status & 0x7f)
    }
}
