#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem
import CBerthShim
import Synchronization

/// The subcommands' bodies.
enum Commands {
    static let specHelp = """
          --name NAME        Name the container (default: a generated one)
          --hostname NAME    Host name inside the container (default: the short id)
      -e, --env KEY=VALUE    Set an environment variable (repeatable)
      -w, --workdir DIR      Working directory inside the container (created if missing)
      -u, --user UID[:GID]   Numeric user and group to run as
          --rootfs DIR       Use a host directory as the root file system instead of an image
          --entrypoint CMD   Replace the image's Entrypoint (and drop its Cmd)
          --pull POLICY      missing (default: pull the image when it is not there), always or never
          --restart POLICY   no, on-failure[:N] or always (exponential backoff)
      -l, --label K=V        Metadata for filtering (repeatable)
          --stop-signal SIG  Signal for stop (default TERM)
          --stop-timeout S   Seconds stop waits before SIGKILL (default 10)
          --network NET      bridge (default), none, host, container:NAME or a user network
      -p, --publish P        Publish a port: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]
          --dns IP           Nameserver for /etc/resolv.conf (repeatable; default: the host's)
          --add-host NAME:IP Add a line to /etc/hosts (repeatable)
          --pod POD          Join a pod: its network, IPC and host name (pod create)
      -m, --memory SIZE      Memory limit (64m, 1g; at least 6m)
          --memory-swap SIZE Memory plus swap (-1: unlimited; default twice --memory)
          --cpus N           CPU limit (0.5: half a CPU)
          --cpu-shares N     Relative CPU weight (2-262144; default 1024)
          --pids-limit N     Most processes (-1: no limit)
          --cpuset-cpus L    CPUs it may run on (0-1,3)
      -v, --volume H:C[:ro]  Bind-mount a host path (repeatable)
          --tmpfs C[:OPTS]   Mount a tmpfs (size=64m,mode=1777) (repeatable)
          --read-only        Mount the root file system read-only
          --cap-add CAP      Add a capability to docker's default set (ALL: every one)
          --cap-drop CAP     Drop a capability (ALL: every one)
          --privileged       Every capability, no seccomp filter, no masked paths
          --security-opt O   seccomp=unconfined | seccomp=PROFILE.json | no-new-privileges=false

    """

    static func info(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        try noMoreArguments(&args, "info")
        let client = try await g.connect()
        out(infoText(try await client.info()))
        return ExitCode.ok
    }

    /// What `info` prints for one agent (also per node with --node/--all).
    static func infoText(_ i: InfoResponse) -> String {
        var s = """
        Node:               \(i.nodeName)
        Hostname:           \(i.hostname)
        Agent version:      \(i.agentVersion) (protocol \(i.protocolVersion))
        Kernel:             \(i.kernel)
        Operating system:   \(i.os)
        Architecture:       \(i.architecture)
        Cgroup layout:      \(i.cgroupLayout)
        CPUs:               \(i.cpus)
        Total memory:       \(Format.bytesIEC(i.memoryBytes))
        Available memory:   \(Format.bytesIEC(i.memoryAvailableBytes))
        Load average:       \(FleetCommands.fixed2(i.load1)) \(FleetCommands.fixed2(i.load5)) \(FleetCommands.fixed2(i.load15))
        Containers:         \(i.containers) (running \(i.containersRunning), stopped \(i.containersStopped))
        Pods:               \(i.pods)
        Images:             \(i.images) (\(i.imageLayers) layer\(i.imageLayers == 1 ? "" : "s"), \(Format.bytesIEC(i.imageLayersBytes)); blobs \(Format.bytesIEC(i.imageBlobsBytes)), partial downloads \(Format.bytesIEC(i.imageDownloadsBytes)))
        Containers' changes: \(Format.bytesIEC(i.containersBytes))
        State dir:          \(i.stateDir)
        Run dir:            \(i.runDir)
        Networks:           \(i.networks.isEmpty ? "none yet" : "")

        """
        for n in i.networks {
            s += "  \(n.name): \(n.subnet) on \(n.bridge), \(n.endpoints.count) container\(n.endpoints.count == 1 ? "" : "s")\n"
        }
        if !i.warnings.isEmpty {
            s += "Warnings:\n"
            for w in i.warnings { s += "  \(w)\n" }
        }
        return s
    }

    static func image(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        args.command = CLI.find("image")
        guard let sub = args.next() else { throw UsageError(message: "image needs a subcommand: import, load, pull, ls, inspect, rm or prune", command: args.command) }
        switch sub {
        case "import":
            guard let name = args.next(), let file = args.next() else {
                throw UsageError(message: "image import needs NAME and FILE", command: args.command)
            }
            try noMoreArguments(&args, "image import")
            let client = try await g.connect()
            let image = try await client.importImage(name: name, path: file)
            out("\(image.name) \(image.id)\n")
            return ExitCode.ok
        case "ls", "list":
            return try await images(&args, g)
        // Images (issue 9): ImageCommands.swift.
        case "load": return try await ImageCommands.load(&args, g)
        case "pull": return try await ImageCommands.pull(&args, g)
        case "inspect": return try await ImageCommands.inspect(&args, g)
        case "rm", "remove", "rmi": return try await ImageCommands.remove(&args, g)
        case "prune": return try await ImageCommands.prune(&args, g)
        default:
            throw UsageError(message: "unknown image subcommand \"\(sub)\"", command: args.command)
        }
    }

    static func images(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        try noMoreArguments(&args, "image ls")
        let client = try await g.connect()
        let images = try await client.listImages()
        var rows = [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]]
        let now = Host.now
        for i in images {
            let (repo, tag) = splitTag(i.name)
            let shortID = String(i.id.split(separator: ":").last?.prefix(12) ?? "")
            rows.append([repo, tag, shortID, Format.ago(now - i.createdUnix), Format.bytesSI(i.sizeBytes)])
        }
        out(Format.table(rows))
        return ExitCode.ok
    }

    static func run(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        args.command = CLI.find("run")
        var detach = false
        let spec = try parseSpec(&args, allowRm: true, detach: &detach)
        if detach {
            // create + start; the id on stdout, as docker prints it.
            do {
                let client = try await g.connect()
                let created = try await ImageCommands.pullingIfMissing(client, spec.image, policy: args.pull) { try await client.createContainer(spec) }
                _ = try await client.startContainer(created.id)
                out(created.id + "\n")
                return ExitCode.ok
            } catch {
                let e = error.berthError("run")
                err("Error: \(e.message)\n")
                switch e.reason {
                case BerthError.Reason.execNotFound: return ExitCode.notFound
                case BerthError.Reason.execPermission: return ExitCode.cannotExecute
                default: return ExitCode.runFailed
                }
            }
        }
        let client: BerthClient
        let run: ContainerRun
        do {
            client = try await g.connect()
            run = try await ImageCommands.pullingIfMissing(client, spec.image, policy: args.pull) { try await client.run(spec) }
        } catch {
            let e = error.berthError("run")
            err("Error: \(e.message)\n")
            switch e.reason {
            case BerthError.Reason.execNotFound: return ExitCode.notFound
            case BerthError.Reason.execPermission: return ExitCode.cannotExecute
            default: return ExitCode.runFailed
            }
        }
        // Ctrl-C or SIGTERM cancels the run: the agent kills the container.
        let interrupted = Atomic<Int32>(0)
        SignalForwarder.install { sig in
            interrupted.store(sig, ordering: .relaxed)
            run.cancel()
        }
        do {
            for try await chunk in run.output {
                let fd: Int32 = chunk.channel == .stderr ? 2 : 1
                try chunk.data.withUnsafeBytes { try FileDescriptor(rawValue: fd).writeAll($0) }
            }
            let status = try await run.exitStatus()
            _ = client
            return status.exitCode
        } catch {
            // Interrupted: the agent killed the container; exit as a shell reports the signal.
            let sig = interrupted.load(ordering: .relaxed)
            if sig != 0 { return 128 + sig }
            err("Error: \(error.berthError("run").message)\n")
            return ExitCode.runFailed
        }
    }

    static func create(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        args.command = CLI.find("create")
        let spec = try parseSpec(&args, allowRm: false)
        let client = try await g.connect()
        let c = try await ImageCommands.pullingIfMissing(client, spec.image, policy: args.pull) { try await client.createContainer(spec) }
        out(c.id + "\n")
        return ExitCode.ok
    }

    static func start(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        try await eachRef(&args, g, "start") { client, ref in
            let c = try await client.startContainer(ref)
            out(c.name + "\n")
        }
    }

    static func wait(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        try await eachRef(&args, g, "wait") { client, ref in
            let s = try await client.wait(ref)
            out("\(s.exitCode)\n")
        }
    }

    static func rm(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        args.command = CLI.find("rm")
        var force = false
        while let a = args.peek(), a.hasPrefix("-") {
            _ = args.next()
            switch a {
            case "-f", "--force": force = true
            default: throw UsageError(message: "unknown option \(a)", command: args.command)
            }
        }
        return try await eachRef(&args, g, "rm") { client, ref in
            try await client.removeContainer(ref, force: force)
            out(ref + "\n")
        }
    }

    static func ps(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        args.command = CLI.find("ps")
        let (all, quiet, json, filters) = try psOptions(&args)
        let client = try await g.connect()
        let list = try await client.listContainers(all: all, filters: filters)
        if quiet {
            out(list.map { String($0.id.prefix(12)) + "\n" }.joined())
        } else if json {
            out(list.map { JSON.container($0) + "\n" }.joined())
        } else {
            let now = Host.now
            // A POD column as soon as one container is in a pod (podman ps --pod).
            let withPods = list.contains { !$0.podName.isEmpty }
            var rows = [["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"] + (withPods ? ["POD"] : [])]
            for c in list {
                rows.append([String(c.id.prefix(12)), c.image, Format.command(c.spec.args),
                             Format.ago(now - c.createdUnix), Format.status(c, now: now), Format.ports(c.spec.ports), c.name]
                            + (withPods ? [c.podName] : []))
            }
            out(Format.table(rows))
        }
        return ExitCode.ok
    }

    /// ps's options: -a, -q, -f K=V…, --format table|json.
    static func psOptions(_ args: inout Arguments) throws -> (all: Bool, quiet: Bool, json: Bool, filters: [String]) {
        var all = false, quiet = false, json = false
        var filters: [String] = []
        while let a = args.next() {
            let (flag, inline) = Arguments.split(a)
            switch flag {
            case "-f", "--filter": filters.append(try args.value(for: flag, inline))
            case "-a", "--all": all = true
            case "-q", "--quiet": quiet = true
            case "-aq", "-qa": all = true; quiet = true
            case "--format":
                json = try args.jsonFormat(for: flag, inline)
            default: throw UsageError(message: "unexpected argument \(a)", command: args.command)
            }
        }
        return (all, quiet, json, filters)
    }

    static func network(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        args.command = CLI.find("network")
        guard let sub = args.next() else {
            throw UsageError(message: "network needs a subcommand: create, ls, inspect or rm", command: args.command)
        }
        switch sub {
        case "create":
            var subnet = ""
            var name: String?
            while let a = args.next() {
                let (flag, inline) = Arguments.split(a)
                switch flag {
                case "--subnet": subnet = try args.value(for: flag, inline)
                default:
                    if a.hasPrefix("-") || name != nil { throw UsageError(message: "unexpected argument \(a)", command: args.command) }
                    name = a
                }
            }
            guard let name else { throw UsageError(message: "network create needs a NAME", command: args.command) }
            let client = try await g.connect()
            let n = try await client.createNetwork(name: name, subnet: subnet)
            out(n.id + "\n")
            return ExitCode.ok
        case "ls", "list":
            var quiet = false
            while let a = args.next() {
                guard a == "-q" || a == "--quiet" else { throw UsageError(message: "unexpected argument \(a)", command: args.command) }
                quiet = true
            }
            let client = try await g.connect()
            let networks = try await client.listNetworks()
            if quiet {
                out(networks.map { $0.name + "\n" }.joined())
            } else {
                var rows = [["NETWORK ID", "NAME", "SUBNET", "GATEWAY", "BRIDGE", "CONTAINERS"]]
                for n in networks {
                    rows.append([String(n.id.prefix(12)), n.name, n.subnet, n.gateway, n.bridge, String(n.endpoints.count)])
                }
                out(Format.table(rows))
            }
            return ExitCode.ok
        case "inspect":
            return try await inspectAll(&args, g, "network inspect", noun: "network name") { client, ref in
                JSON.network(try await client.inspectNetwork(ref))
            }
        case "rm", "remove":
            return try await eachRef(&args, g, "network rm", noun: "network name") { client, ref in
                out(try await client.removeNetwork(ref) + "\n")
            }
        default:
            throw UsageError(message: "unknown network subcommand \"\(sub)\"", command: args.command)
        }
    }

    static func pod(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        args.command = CLI.find("pod")
        guard let sub = args.next() else {
            throw UsageError(message: "pod needs a subcommand: create, ls, inspect, start, stop or rm", command: args.command)
        }
        switch sub {
        case "create":
            var spec = PodSpec()
            while let a = args.next() {
                let (flag, inline) = Arguments.split(a)
                switch flag {
                case "--name": spec.name = try args.value(for: flag, inline)
                case "--hostname", "-h": spec.hostname = try args.value(for: flag, inline)
                case "--network", "--net": spec.network = try args.value(for: flag, inline)
                case "-p", "--publish":
                    let v = try args.value(for: flag, inline)
                    do { spec.ports.append(try PortMapping(parsing: v)) } catch { throw UsageError(message: error.message, command: args.command) }
                case "--share": spec.share.append(try args.value(for: flag, inline))
                case "-l", "--label":
                    let v = try args.value(for: flag, inline)
                    let kv = v.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                    guard let key = kv.first, !key.isEmpty else { throw UsageError(message: "--label takes KEY=VALUE, not \"\(v)\"", command: args.command) }
                    spec.labels[String(key)] = kv.count > 1 ? String(kv[1]) : ""
                case "--sysctl":
                    let v = try args.value(for: flag, inline)
                    let kv = v.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                    guard kv.count == 2, !kv[0].isEmpty else { throw UsageError(message: "--sysctl takes KEY=VALUE, not \"\(v)\"", command: args.command) }
                    spec.sysctls[String(kv[0])] = String(kv[1])
                case "--memory", "-m":
                    let v = try args.value(for: flag, inline)
                    guard let n = Format.parseBytes(v) else { throw UsageError(message: "--memory takes a size such as 64m or 1g, not \"\(v)\"", command: args.command) }
                    spec.memoryBytes = n
                case "--cpus":
                    let v = try args.value(for: flag, inline)
                    guard let n = Format.parseMillis(v), n > 0 else { throw UsageError(message: "--cpus takes a positive number such as 0.5, not \"\(v)\"", command: args.command) }
                    spec.cpuMillis = n
                case "--dns": spec.dns.append(try args.value(for: flag, inline))
                case "--add-host":
                    let v = try args.value(for: flag, inline)
                    do { spec.extraHosts.append(try HostEntry(parsing: v)) } catch { throw UsageError(message: error.message, command: args.command) }
                default: throw UsageError(message: "unknown option \(a)", command: args.command)
                }
            }
            let client = try await g.connect()
            let pod = try await client.createPod(spec)
            out(pod.id + "\n")
            return ExitCode.ok
        case "ls", "list", "ps":
            var quiet = false
            while let a = args.next() {
                guard a == "-q" || a == "--quiet" else { throw UsageError(message: "unexpected argument \(a)", command: args.command) }
                quiet = true
            }
            let client = try await g.connect()
            let pods = try await client.listPods()
            if quiet {
                out(pods.map { String($0.id.prefix(12)) + "\n" }.joined())
            } else {
                var rows = [["POD ID", "NAME", "STATUS", "CREATED", "IP", "SHARED", "# OF CONTAINERS"]]
                let now = Host.now
                for p in pods {
                    rows.append([String(p.id.prefix(12)), p.name, p.state, Format.ago(now - p.createdUnix), p.network.ip.isEmpty ? "-" : p.network.ip,
                                 p.spec.share.joined(separator: ","), String(p.containers.count)])
                }
                out(Format.table(rows))
            }
            return ExitCode.ok
        case "inspect":
            return try await inspectAll(&args, g, "pod inspect", noun: "pod name or id") { client, ref in
                JSON.pod(try await client.inspectPod(ref))
            }
        case "start", "stop", "rm", "remove":
            var force = false
            var timeout: Int32?
            var refs: [String] = []
            while let a = args.next() {
                let (flag, inline) = Arguments.split(a)
                switch flag {
                case "-f" where sub == "rm" || sub == "remove", "--force" where sub == "rm" || sub == "remove": force = true
                case "-t" where sub == "stop", "--time" where sub == "stop":
                    let v = try args.value(for: flag, inline)
                    guard let n = Int32(v), n >= 0 else { throw UsageError(message: "--time takes seconds, not \"\(v)\"", command: args.command) }
                    timeout = n
                default:
                    if a.hasPrefix("-") { throw UsageError(message: "unknown option \(a)", command: args.command) }
                    refs.append(a)
                }
            }
            var rest = Arguments(refs)
            rest.command = args.command
            return try await eachRef(&rest, g, "pod \(sub)", noun: "pod name or id") { client, ref in
                switch sub {
                case "start": out((try await client.startPod(ref)).name + "\n")
                case "stop": out((try await client.stopPod(ref, timeout: timeout)).name + "\n")
                default: out(String((try await client.removePod(ref, force: force)).prefix(12)) + "\n")
                }
            }
        default:
            throw UsageError(message: "unknown pod subcommand \"\(sub)\"", command: args.command)
        }
    }

    /// `berth stats`: CPU %, memory and pids per container, refreshed every second
    /// (`--no-stream`: one table). CPU % is the CPU time used between two samples over
    /// the wall time between them, as docker computes it (100% is one CPU).
    static func stats(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        args.command = CLI.find("stats")
        var stream = true
        var refs: [String] = []
        while let a = args.next() {
            switch a {
            case "--no-stream": stream = false
            default:
                if a.hasPrefix("-") { throw UsageError(message: "unknown option \(a)", command: args.command) }
                refs.append(a)
            }
        }
        let client = try await g.connect()
        var previous = try await client.stats(refs)
        repeat {
            try await Task.sleep(nanoseconds: stream ? 1_000_000_000 : 500_000_000)
            let current = try await client.stats(refs)
            let rows = [["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"]] + statsRows(previous, current)
            if stream { out("\u{1b}[2J\u{1b}[H") }
            out(Format.table(rows))
            previous = current
        } while stream
        return ExitCode.ok
    }

    /// One row per container of `current`: CPU % over the time since `previous`.
    static func statsRows(_ previous: [ContainerStats], _ current: [ContainerStats]) -> [[String]] {
        current.map { s in
            var cpu = 0.0
            if let p = previous.first(where: { $0.id == s.id }), s.readUnixNano > p.readUnixNano, s.cpuUsageNanos >= p.cpuUsageNanos {
                cpu = Double(s.cpuUsageNanos - p.cpuUsageNanos) / Double(s.readUnixNano - p.readUnixNano) * 100
            }
            let limit = s.memoryLimitBytes
            let mem = limit > 0 ? Double(s.memoryUsageBytes) / Double(limit) * 100 : 0
            return [String(s.id.prefix(12)), s.name, Format.percent(cpu),
                    "\(Format.bytesIEC(s.memoryUsageBytes)) / \(limit > 0 ? Format.bytesIEC(limit) : "--")",
                    limit > 0 ? Format.percent(mem) : "--", String(s.pids)]
        }
    }

    static func version(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        try noMoreArguments(&args, "version")
        out("Client: berth \(berthVersion) (protocol \(berthProtocolVersion))\n")
        let client = try await g.connect()
        out("Agent:  berthd \(client.hello.agentVersion) (protocol \(client.hello.protocolVersion)) on \(client.hello.nodeName)\n")
        return ExitCode.ok
    }

    // MARK: - Helpers

    /// Parses the run/create options and `IMAGE [CMD...]`.
    static func parseSpec(_ args: inout Arguments, allowRm: Bool) throws -> ContainerSpec {
        var detach = false
        return try parseSpec(&args, allowRm: allowRm, detach: &detach)
    }

    static func parseSpec(_ args: inout Arguments, allowRm: Bool, detach: inout Bool) throws -> ContainerSpec {
        var spec = ContainerSpec()
        while let a = args.peek(), a.hasPrefix("-"), a != "-" {
            _ = args.next()
            if a == "--" { break }
            let (flag, inline) = Arguments.split(a)
            switch flag {
            case "--rm" where allowRm: spec.autoRemove = true
            case "--name": spec.name = try args.value(for: flag, inline)
            case "--hostname", "-h": spec.hostname = try args.value(for: flag, inline)
            case "-e", "--env":
                let v = try args.value(for: flag, inline)
                if v.contains("=") { spec.env.append(v) } else if let host = Host.environment(v) {
                    spec.env.append("\(v)=\(host)")  // docker: -e KEY passes the caller's value
                }
            case "-w", "--workdir": spec.workingDir = try args.value(for: flag, inline)
            case "-u", "--user":
                spec.user = try parseUser(try args.value(for: flag, inline), args.command)
                spec.userSet = true
            case "--pull":
                let v = try args.value(for: flag, inline)
                guard ["missing", "always", "never"].contains(v) else {
                    throw UsageError(message: "--pull takes missing, always or never, not \"\(v)\"", command: args.command)
                }
                args.pull = v
            case "--entrypoint":
                // docker: one executable (an empty string clears the image's entrypoint).
                let v = try args.value(for: flag, inline)
                spec.entrypoint = v.isEmpty ? [] : [v]
                spec.entrypointSet = true
            case "--rootfs": spec.rootfs = try args.value(for: flag, inline)
            case "-d" where allowRm, "--detach" where allowRm: detach = true
            case "--restart":
                let v = try args.value(for: flag, inline)
                guard let policy = RestartPolicy(parsing: v) else {
                    throw UsageError(message: "--restart takes no, always, on-failure or on-failure:N, not \"\(v)\"", command: args.command)
                }
                spec.restart = policy
            case "-l", "--label":
                let v = try args.value(for: flag, inline)
                let kv = v.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard let key = kv.first, !key.isEmpty else { throw UsageError(message: "--label takes KEY=VALUE, not \"\(v)\"", command: args.command) }
                spec.labels[String(key)] = kv.count > 1 ? String(kv[1]) : ""
            case "--stop-signal":
                let v = try args.value(for: flag, inline)
                guard let n = try? Signals.parse(v) else { throw UsageError(message: "unknown signal \"\(v)\"", command: args.command) }
                spec.stopSignal = n
            case "--network", "--net": spec.network = try args.value(for: flag, inline)
            case "-p", "--publish":
                let v = try args.value(for: flag, inline)
                do { spec.ports.append(try PortMapping(parsing: v)) } catch { throw UsageError(message: error.message, command: args.command) }
            case "--dns": spec.dns.append(try args.value(for: flag, inline))
            case "--pod": spec.pod = try args.value(for: flag, inline)
            case "-m", "--memory":
                let v = try args.value(for: flag, inline)
                guard let n = Format.parseBytes(v) else { throw UsageError(message: "--memory takes a size such as 64m or 1g, not \"\(v)\"", command: args.command) }
                spec.resources.memoryBytes = n
            case "--memory-swap":
                let v = try args.value(for: flag, inline)
                if v == "-1" { spec.resources.memorySwapBytes = -1 } else {
                    guard let n = Format.parseBytes(v), n <= UInt64(Int64.max) else { throw UsageError(message: "--memory-swap takes a size or -1, not \"\(v)\"", command: args.command) }
                    spec.resources.memorySwapBytes = Int64(n)
                }
            case "--cpus":
                let v = try args.value(for: flag, inline)
                guard let n = Format.parseMillis(v), n > 0 else { throw UsageError(message: "--cpus takes a positive number such as 0.5, not \"\(v)\"", command: args.command) }
                spec.resources.cpuMillis = n
            case "--cpu-shares", "-c":
                let v = try args.value(for: flag, inline)
                guard let n = UInt32(v) else { throw UsageError(message: "--cpu-shares takes a number, not \"\(v)\"", command: args.command) }
                spec.resources.cpuShares = n
            case "--pids-limit":
                let v = try args.value(for: flag, inline)
                guard let n = Int64(v), n >= -1, n != 0 else { throw UsageError(message: "--pids-limit takes a positive number or -1, not \"\(v)\"", command: args.command) }
                spec.resources.pidsLimit = n
            case "--cpuset-cpus": spec.resources.cpusetCpus = try args.value(for: flag, inline)
            case "-v", "--volume":
                let v = try args.value(for: flag, inline)
                do {
                    var mount = try Mount(volume: v)
                    // docker resolves a relative host path against the caller's directory.
                    if !mount.source.hasPrefix("/") { mount.source = currentDirectory() + "/" + mount.source }
                    spec.mounts.append(mount)
                } catch { throw UsageError(message: error.message, command: args.command) }
            case "--tmpfs":
                let v = try args.value(for: flag, inline)
                do { spec.mounts.append(try Mount(tmpfs: v)) } catch { throw UsageError(message: error.message, command: args.command) }
            case "--read-only": spec.readOnly = true
            case "--cap-add": spec.capAdd.append(try args.value(for: flag, inline))
            case "--cap-drop": spec.capDrop.append(try args.value(for: flag, inline))
            case "--privileged": spec.privileged = true
            case "--security-opt":
                let v = try args.value(for: flag, inline)
                if v == "seccomp=unconfined" || v == "seccomp:unconfined" {
                    spec.seccomp = "unconfined"
                } else if v.hasPrefix("seccomp=") || v.hasPrefix("seccomp:") {
                    // Like docker, the client reads the profile and sends its text.
                    let path = String(v.dropFirst("seccomp=".count))
                    guard let text = try? Files.readString(path) else {
                        throw UsageError(message: "cannot read the seccomp profile \(path)", command: args.command)
                    }
                    spec.seccomp = text
                } else if v == "no-new-privileges" || v == "no-new-privileges=true" || v == "no-new-privileges:true" {
                    spec.allowNewPrivileges = false
                } else if v == "no-new-privileges=false" || v == "no-new-privileges:false" {
                    spec.allowNewPrivileges = true
                } else {
                    throw UsageError(message: "unknown --security-opt \"\(v)\": use seccomp=unconfined, seccomp=PROFILE or no-new-privileges=false", command: args.command)
                }
            case "--add-host":
                let v = try args.value(for: flag, inline)
                do { spec.extraHosts.append(try HostEntry(parsing: v)) } catch { throw UsageError(message: error.message, command: args.command) }
            case "--stop-timeout":
                let v = try args.value(for: flag, inline)
                guard let n = Int32(v), n >= 0 else { throw UsageError(message: "--stop-timeout takes seconds, not \"\(v)\"", command: args.command) }
                spec.stopTimeout = n
            default: throw UsageError(message: "unknown option \(a)", command: args.command)
            }
        }
        if spec.rootfs.isEmpty {
            guard let image = args.next() else { throw UsageError(message: "an IMAGE is required", command: args.command) }
            spec.image = image
        } else if !spec.rootfs.hasPrefix("/") {
            spec.rootfs = currentDirectory() + "/" + spec.rootfs
        }
        spec.args = args.consumeAll()
        // No command: the image's Entrypoint/Cmd (the agent refuses when it has neither).
        return spec
    }

    static func parseUser(_ s: String, _ command: Command?) throws -> User {
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 2, let uid = UInt32(parts[0]) else {
            throw UsageError(message: "--user takes a numeric UID[:GID], not \"\(s)\"", command: command)
        }
        if parts.count == 2 {
            guard let gid = UInt32(parts[1]) else { throw UsageError(message: "--user takes a numeric UID[:GID], not \"\(s)\"", command: command) }
            return User(uid: uid, gid: gid)
        }
        return User(uid: uid, gid: uid)
    }

    static func noMoreArguments(_ args: inout Arguments, _ name: String) throws {
        if let extra = args.next() { throw UsageError(message: "unexpected argument \"\(extra)\" for \(name)", command: CLI.find(name.split(separator: " ").first.map(String.init) ?? name)) }
    }

    /// Runs `body` for every NAME|ID argument; reports each failure and goes on, like docker.
    static func eachRef(_ args: inout Arguments, _ g: Globals, _ name: String, noun: String = "container name or id",
                        _ body: (BerthClient, String) async throws -> Void) async throws -> Int32 {
        args.command = args.command ?? CLI.find(name)
        let refs = args.consumeAll()
        if refs.isEmpty { throw UsageError(message: "\(name) needs at least one \(noun)", command: args.command) }
        let client = try await g.connect()
        var code = ExitCode.ok
        for ref in refs {
            do { try await body(client, ref) } catch {
                err("Error: \(error.berthError(name).message)\n")
                code = ExitCode.failure
            }
        }
        return code
    }

    /// `… inspect NAME…`: a JSON array of what `render` makes of each; failures are
    /// reported and skipped, like docker.
    static func inspectAll(_ args: inout Arguments, _ g: Globals, _ name: String, noun: String,
                           _ render: (BerthClient, String) async throws -> String) async throws -> Int32 {
        var items: [String] = []
        let code = try await eachRef(&args, g, name, noun: noun) { client, ref in items.append(try await render(client, ref)) }
        out("[\n" + items.joined(separator: ",\n") + "\n]\n")
        return code
    }

    static func splitTag(_ name: String) -> (String, String) {
        guard let colon = name.lastIndex(of: ":"), !name[colon...].contains("/") else { return (name, "latest") }
        return (String(name[..<colon]), String(name[name.index(after: colon)...]))
    }

    static func currentDirectory() -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        guard getcwd(&buf, buf.count) != nil else { return "." }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// SIGINT, SIGTERM and SIGWINCH go, through a handler and a pipe (CBerthShim), to one
/// thread that acts on them: SIGINT/SIGTERM by default exit 130/143 as a shell would
/// report, or, during `run`/`exec`/`logs`, call the installed action once (a second
/// signal then exits); SIGWINCH calls the resize action, if any. A signal mask would
/// not do: the async main's threads do not all keep the mask the main thread had.
enum SignalForwarder {
    static let action = Mutex<(@Sendable (Int32) -> Void)?>(nil)
    static let resize = Mutex<(@Sendable () -> Void)?>(nil)

    /// Installs the handlers and starts the thread that reads the pipe.
    static func start() {
        let signals: [Int32] = [SIGINT, SIGTERM, SIGWINCH]
        let fd = signals.withUnsafeBufferPointer { berth_signal_pipe($0.baseAddress, Int32($0.count)) }
        guard fd >= 0 else { return }
        startThread("berth-signals") {
            var byte: UInt8 = 0
            while true {
                let n = read(fd, &byte, 1)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                let sig = Int32(byte)
                if sig == SIGWINCH {
                    resize.withLock { $0 }?()
                    continue
                }
                let current = action.withLock { a -> (@Sendable (Int32) -> Void)? in
                    let current = a
                    a = nil
                    return current
                }
                if let current { current(sig) } else { exit(128 + sig) }
            }
        }
    }

    /// Runs `body` with the signal number on the next SIGINT/SIGTERM instead of exiting.
    static func install(_ body: @escaping @Sendable (Int32) -> Void) {
        action.withLock { $0 = body }
    }

    /// Runs `body` on every SIGWINCH.
    static func onResize(_ body: @escaping @Sendable () -> Void) {
        resize.withLock { $0 = body }
    }
}
