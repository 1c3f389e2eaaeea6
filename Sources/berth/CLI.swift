#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem

/// Exit codes, after swift-argument-parser and docker: 64 for usage errors, 1 for
/// other failures; `run` uses 125 when the agent fails it, 126 when the command
/// cannot be executed, 127 when it is not found, else the container's own code.
enum ExitCode {
    static let ok: Int32 = 0
    static let failure: Int32 = 1
    static let usage: Int32 = 64
    static let runFailed: Int32 = 125
    static let cannotExecute: Int32 = 126
    static let notFound: Int32 = 127
}

/// A usage error: printed as `Error: …` plus the command's usage line, exit 64.
struct UsageError: Error {
    let message: String
    let command: Command?
}

/// One subcommand: its usage line, help text and the code that runs it.
struct Command: Sendable {
    let name: String
    let usage: String
    let summary: String
    let help: String
    let run: @Sendable (inout Arguments, Globals) async throws -> Int32
}

/// Options that apply to every command.
struct Globals: Sendable {
    /// `-H`: an address (`unix://…`, `tcp://…`) or a node name of the hosts file.
    var host: String = Host.environment("BERTH_HOST") ?? ""
    /// Mutual TLS files (`--tls-ca/--tls-cert/--tls-key`, or BERTH_TLS_CA/_CERT/_KEY).
    var tlsCA = Host.environment("BERTH_TLS_CA") ?? ""
    var tlsCert = Host.environment("BERTH_TLS_CERT") ?? ""
    var tlsKey = Host.environment("BERTH_TLS_KEY") ?? ""
    /// `--hosts FILE` (default HostsFile.defaultPath).
    var hostsPath = ""
    /// `--node a,b`.
    var nodeNames: [String] = []
    /// `--all`: every node of the hosts file.
    var allNodes = false
    /// `--timeout SECS`: per node, for commands on several nodes.
    var timeoutSeconds = 10

    /// Whether the command goes to nodes picked from the hosts file (--node, --all):
    /// output then has a NODE column and each node succeeds or fails on its own.
    var isFleet: Bool { allNodes || !nodeNames.isEmpty }

    func hostsFile() throws -> HostsFile {
        try HostsFile.load(hostsPath.isEmpty ? HostsFile.defaultPath : hostsPath)
    }

    /// The nodes --node/--all pick, in the hosts file's order (--node: as given).
    func nodes() throws -> [Node] {
        let file = try hostsFile()
        if allNodes {
            guard !file.nodes.isEmpty else { throw BerthError(.notFound, "hosts file \(file.path) names no node") }
            return file.nodes
        }
        var picked: [Node] = []
        for name in nodeNames where !picked.contains(where: { $0.name == name }) { picked.append(try file.node(name)) }
        return picked
    }

    /// The TLS files given on the command line or in the environment: all or none.
    func explicitTLS() throws -> BerthClient.TLSOptions? {
        let given = [tlsCA, tlsCert, tlsKey].filter { !$0.isEmpty }.count
        if given != 0 && given != 3 {
            throw UsageError(message: "mutual TLS needs all of --tls-ca, --tls-cert and --tls-key", command: nil)
        }
        return given == 3 ? BerthClient.TLSOptions(ca: tlsCA, certificate: tlsCert, key: tlsKey) : nil
    }

    /// The one agent a command talks to: -H ADDRESS, -H NODE (from the hosts file),
    /// the only node --node picked, or the default socket.
    func target() throws -> (address: String, tls: BerthClient.TLSOptions?) {
        let tls = try explicitTLS()
        if isFleet {
            let picked = try nodes()
            guard picked.count == 1, let node = picked.first else {
                throw UsageError(message: "this command takes one agent; \(picked.count) nodes were picked", command: nil)
            }
            return (node.endpoint, tls ?? node.tls)
        }
        if host.isEmpty { return (BerthClient.defaultAddress, tls) }
        if host.contains("://") { return (host, tls) }
        let node = try hostsFile().node(host)
        return (node.endpoint, tls ?? node.tls)
    }

    func connect() async throws -> BerthClient {
        let (address, tls) = try target()
        return try await BerthClient.connect(to: address, tls: tls)
    }
}

enum CLI {
    static let mainUsage = "Usage: berth [-H unix://PATH|tcp://HOST:PORT|NODE] [--tls-ca F --tls-cert F --tls-key F] [--hosts FILE] [--node N,…|--all] [--timeout S] <command> [options]"

    static let commands: [Command] = [
        Command(name: "info", usage: "berth info", summary: "Show the agent's host, kernel, cgroup layout and counts",
                help: "", run: Commands.info),
        Command(name: "image", usage: "berth image import NAME FILE | load [-t NAME] FILE | pull [-q] REF | ls | inspect IMAGE... | rm [-f] IMAGE... | prune",
                summary: "Import, load, pull, list, inspect and remove images",
                help: "  import NAME FILE   Import a root-file-system tarball (plain or gzip; FILE - reads stdin)\n  load [-t NAME] FILE  Load an OCI image layout or docker-archive tar (docker save); -t names an unnamed image\n  pull [-q] [--username U --password P|--password-stdin] REF\n                     Pull name[:tag] or host[:port]/repo/name@sha256:... from its registry\n  ls                 List images\n  inspect IMAGE...   Config, layers and users of images, as JSON\n  rm [-f] IMAGE...   Remove names (an id: all of them) and unused files; -f even if containers use it\n  prune              Remove images without a name or a container, unused layers and partial downloads\n",
                run: Commands.image),
        Command(name: "images", usage: "berth images", summary: "List images (same as image ls)", help: "", run: Commands.images),
        Command(name: "run", usage: "berth run [-d] [--rm] [--name N] [--hostname H] [-e K=V]... [-w DIR] [-u UID[:GID]] [--restart POLICY] [-l K=V]... [--network NET] [-p PORTS]... [--dns IP]... [--add-host N:IP]... [--pod P] [--rootfs DIR] IMAGE [CMD...]",
                summary: "Run a command in a new container and stream its output",
                help: Commands.specHelp + "  -d, --detach           Run in the background and print the container id\n      --rm               Remove the container when it exits\n",
                run: Commands.run),
        Command(name: "create", usage: "berth create [--name N] [--hostname H] [-e K=V]... [-w DIR] [-u UID[:GID]] [--restart POLICY] [-l K=V]... [--network NET] [-p PORTS]... [--dns IP]... [--add-host N:IP]... [--pod P] [--rootfs DIR] IMAGE [CMD...]",
                summary: "Create a container without starting it", help: Commands.specHelp, run: Commands.create),
        Command(name: "start", usage: "berth start NAME|ID...", summary: "Start created containers (detached; output to their log)",
                help: "", run: Commands.start),
        Command(name: "wait", usage: "berth wait NAME|ID...", summary: "Wait for containers to exit and print their exit codes",
                help: "", run: Commands.wait),
        Command(name: "ps", usage: "berth ps [-a] [-q] [-f KEY=VALUE]... [--format table|json]", summary: "List containers",
                help: "  -a, --all             Show all containers (default: running only)\n  -q, --quiet           Show only ids\n  -f, --filter K=V      status=created|running|exited, name=N, label=K[=V], id=PREFIX (repeatable)\n      --format FMT      table (default) or json (one object per line)\n",
                run: Commands.ps),
        Command(name: "stop", usage: "berth stop [-t SECS] NAME|ID...", summary: "Stop containers: the stop signal, then SIGKILL after the grace period",
                help: "  -t, --time SECS    Seconds to wait before SIGKILL (default: the container's, 10)\n", run: Commands.stop),
        Command(name: "kill", usage: "berth kill [-s SIGNAL] NAME|ID...", summary: "Send a signal to containers (default SIGKILL)",
                help: "  -s, --signal SIG   A name (TERM, SIGHUP) or number\n", run: Commands.kill),
        Command(name: "restart", usage: "berth restart [-t SECS] NAME|ID...", summary: "Stop and start containers",
                help: "  -t, --time SECS    Seconds to wait before SIGKILL\n", run: Commands.restart),
        Command(name: "inspect", usage: "berth inspect NAME|ID...", summary: "Show containers' full records as JSON",
                help: "", run: Commands.inspect),
        Command(name: "logs", usage: "berth logs [-f] [--tail N] [--since TIME] [-t] NAME|ID", summary: "Show a container's output",
                help: "  -f, --follow       Keep following until the container exits\n      --tail N       Only the last N lines\n      --since TIME   Only lines since TIME: RFC 3339 (2026-12-04T20:00:00Z), unix seconds, or a duration (10m, 1h30m)\n  -t, --timestamps   Prefix each line with its time\n",
                run: Commands.logs),
        Command(name: "exec", usage: "berth exec [-i] [-t] [-e K=V]... [-w DIR] [-u UID[:GID]] NAME|ID CMD...",
                summary: "Run a command in a running container",
                help: "  -i, --interactive  Send this terminal's stdin to the process\n  -t, --tty          Allocate a terminal (raw mode here, resizes follow)\n  -e, --env K=V      Set an environment variable (repeatable)\n  -w, --workdir DIR  Working directory\n  -u, --user U[:G]   Numeric user and group\n",
                run: Commands.exec),
        Command(name: "rm", usage: "berth rm [-f] NAME|ID...", summary: "Remove containers",
                help: "  -f, --force        Kill a running container first\n", run: Commands.rm),
        Command(name: "network", usage: "berth network create [--subnet CIDR] NAME | ls [-q] | inspect NAME... | rm NAME...",
                summary: "Manage bridge networks",
                help: "  create [--subnet CIDR] NAME  Create a bridge network (default: a free /24 from the agent's pool)\n  ls [-q]                      List networks\n  inspect NAME...              Show networks and their containers as JSON\n  rm NAME...                   Remove networks no container uses\n",
                run: Commands.network),
        Command(name: "pod", usage: "berth pod create [--name P] [--hostname H] [-p PORTS]... [--network NET] [--share net,ipc,uts[,pid]] [--sysctl K=V]... [--memory M] [--cpus N] [-l K=V]... | ls | inspect P... | start P... | stop [-t S] P... | rm [-f] P...",
                summary: "Manage pods: containers sharing network, IPC and host name",
                help: "  create             Create a pod (its namespaces pinned; no process runs unless pid is shared)\n  ls                 List pods\n  inspect P...       Show pods, their pinned namespaces and their containers' namespaces as JSON\n  start P...         Start the pod's containers\n  stop [-t S] P...   Stop the pod's containers\n  rm [-f] P...       Remove pods and their containers (-f: running ones too)\n  Add containers with: berth run --pod P ...\n",
                run: Commands.pod),
        Command(name: "stats", usage: "berth stats [--no-stream] [NAME|ID...]",
                summary: "Show containers' CPU, memory and pids, refreshed every second",
                help: "      --no-stream    Print one table and exit\n", run: Commands.stats),
        Command(name: "events", usage: "berth events [-f] [--since SEQ|TIME] [--all] [--format table|json]",
                summary: "Show the agents' lifecycle events (container, pod, image)",
                help: "  -f, --follow       Keep streaming new events (a dropped stream resumes where it stopped)\n      --since X      After sequence number X, or since a time: RFC 3339, unix seconds, or a duration (10m)\n      --all          From every node of the hosts file\n      --format FMT   table (default) or json (one object per line)\n",
                run: { args, g in try await FleetCommands.events(&args, g) }),
        Command(name: "node", usage: "berth node ls [--format table|json]",
                summary: "Show each agent: reachable, version, kernel, cgroups, CPUs, memory, containers, pods, load",
                help: "  ls   One line per node of the hosts file (or --node/--all, or the -H agent)\n", run: { args, g in try await FleetCommands.node(&args, g) }),
        Command(name: "version", usage: "berth version", summary: "Show the client's and the agent's versions",
                help: "", run: Commands.version),
    ]

    static func find(_ name: String) -> Command? { commands.first { $0.name == name } }

    static var mainHelp: String {
        var s = """
        \(mainUsage)

        Control Berth agents: run containers on this host or on remote ones.

        Options:
          -H, --host ADDRESS   Agent to talk to: unix://PATH, tcp://IP:PORT or a node of the hosts
                               file (default $BERTH_HOST or \(BerthClient.defaultAddress))
              --tls-ca/--tls-cert/--tls-key FILE
                               Mutual TLS to a tcp:// agent ($BERTH_TLS_CA/_CERT/_KEY)
              --hosts FILE     The hosts file (default $BERTH_HOSTS or ~/.config/berth/hosts.json)
              --node N[,N…]    Run on these nodes of the hosts file (NODE column, per-node errors)
              --all            Run on every node of the hosts file
              --timeout SECS   Per node, with --node/--all (default 10)
          -h, --help           Show help
              --version        Show the version

        Commands:

        """
        for c in commands { s += "  " + c.name.padding(to: 10) + c.summary + "\n" }
        s += "\nRun 'berth help COMMAND' or 'berth COMMAND --help' for a command's options.\n"
        return s
    }

    static func help(for c: Command) -> String {
        "Usage: \(c.usage)\n\n\(c.summary).\n" + (c.help.isEmpty ? "" : "\nOptions:\n\(c.help)")
    }

    static func main(_ argv: [String]) async -> Int32 {
        var args = Arguments(argv)
        var globals = Globals()
        var command: Command?
        do {
            // Global options come before the command.
            while let arg = args.peek(), arg.hasPrefix("-") {
                _ = args.next()
                switch arg {
                case "-h", "--help": out(mainHelp); return ExitCode.ok
                case "--version": out("berth \(berthVersion) (protocol \(berthProtocolVersion))\n"); return ExitCode.ok
                case "-H", "--host": globals.host = try args.value(for: arg, nil)
                case "--tls-ca": globals.tlsCA = try args.value(for: arg, nil)
                case "--tls-cert": globals.tlsCert = try args.value(for: arg, nil)
                case "--tls-key": globals.tlsKey = try args.value(for: arg, nil)
                case "--hosts": globals.hostsPath = try args.value(for: arg, nil)
                case "--node", "--nodes":
                    let list = try args.value(for: arg, nil).split(separator: ",").map { String($0.filter { $0 != " " }) }.filter { !$0.isEmpty }
                    guard !list.isEmpty else { throw UsageError(message: "\(arg) needs node names: --node a,b", command: nil) }
                    globals.nodeNames += list
                case "--all": globals.allNodes = true
                case "--timeout":
                    let v = try args.value(for: arg, nil)
                    guard let n = Int(v), n > 0, n <= 3600 else { throw UsageError(message: "--timeout must be 1 to 3600 seconds, not \"\(v)\"", command: nil) }
                    globals.timeoutSeconds = n
                default:
                    if arg.hasPrefix("--host=") { globals.host = String(arg.dropFirst(7)) } else {
                        throw UsageError(message: "unknown option \(arg)", command: nil)
                    }
                }
            }
            guard let name = args.next() else { throw UsageError(message: "no command given", command: nil) }
            if name == "help" {
                if let topic = args.next() {
                    guard let c = find(topic) else { throw UsageError(message: "unknown command \"\(topic)\"", command: nil) }
                    out(help(for: c))
                } else {
                    out(mainHelp)
                }
                return ExitCode.ok
            }
            guard let c = find(name) else { throw UsageError(message: "unknown command \"\(name)\"; see 'berth --help'", command: nil) }
            command = c
            // For run and create, -h is --hostname as in docker; only --help asks for help.
            if args.contains(helpFlag: true, shortFlag: c.name != "run" && c.name != "create") {
                out(help(for: c))
                return ExitCode.ok
            }
            if !globals.host.isEmpty && globals.isFleet {
                throw UsageError(message: "-H and --node/--all pick agents in two ways: give one of them", command: nil)
            }
            // On nodes picked from the hosts file: reads fan out with a NODE column,
            // anything else runs on each node in turn of its own (FleetCommands).
            if globals.isFleet || c.name == "node" { return try await FleetCommands.run(c, &args, globals) }
            return try await c.run(&args, globals)
        } catch let e as UsageError {
            err("Error: \(e.message)\n\(e.command.map { "Usage: \($0.usage)" } ?? mainUsage)\n")
            return ExitCode.usage
        } catch {
            let e = error.berthError(command?.name ?? "berth")
            err("Error: \(e.message)\n")
            return ExitCode.failure
        }
    }
}

/// The command line after the global options, consumed left to right.
struct Arguments {
    private var items: [String]
    private var index = 0
    /// The command whose arguments these are, for usage errors.
    var command: Command?
    /// run/create --pull: missing (default), always or never (ImageCommands.swift).
    var pull = "missing"

    init(_ items: [String]) { self.items = items }

    func peek() -> String? { index < items.count ? items[index] : nil }
    mutating func next() -> String? {
        guard index < items.count else { return nil }
        defer { index += 1 }
        return items[index]
    }
    var rest: [String] { Array(items[index...]) }
    mutating func consumeAll() -> [String] { defer { index = items.count }; return rest }

    /// Whether `-h`/`--help` is among the options (before any positional argument).
    func contains(helpFlag: Bool, shortFlag: Bool) -> Bool {
        for item in items[index...] {
            if item == "--help" || (shortFlag && item == "-h") { return true }
            if !item.hasPrefix("-") { return false }
        }
        return false
    }

    /// The value of option `flag`: the next argument, or the part after `=`.
    mutating func value(for flag: String, _ inline: String?) throws -> String {
        if let inline { return inline }
        guard let v = next() else { throw UsageError(message: "option \(flag) needs a value", command: command) }
        return v
    }

    /// The value of `--format`: true for json, false for table; anything else is a usage error.
    mutating func jsonFormat(for flag: String, _ inline: String?) throws -> Bool {
        let f = try value(for: flag, inline)
        guard f == "json" || f == "table" else { throw UsageError(message: "--format must be table or json, not \"\(f)\"", command: command) }
        return f == "json"
    }

    /// Splits `--name=value` into ("--name", "value").
    static func split(_ arg: String) -> (String, String?) {
        guard arg.hasPrefix("--"), let eq = arg.firstIndex(of: "=") else { return (arg, nil) }
        return (String(arg[..<eq]), String(arg[arg.index(after: eq)...]))
    }
}

func out(_ s: String) { write(1, s) }
func err(_ s: String) { write(2, s) }
func write(_ fd: Int32, _ s: String) {
    var bytes = Array(s.utf8)
    _ = bytes.withUnsafeMutableBytes { try? FileDescriptor(rawValue: fd).writeAll(UnsafeRawBufferPointer($0)) }
}

extension String {
    func padding(to width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
}
