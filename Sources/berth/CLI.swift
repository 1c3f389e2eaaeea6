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
    var host: String = Host.environment("BERTH_HOST") ?? BerthClient.defaultAddress

    func connect() async throws -> BerthClient {
        try await BerthClient.connect(to: host)
    }
}

enum CLI {
    static let mainUsage = "Usage: berth [-H unix://PATH|tcp://HOST:PORT] <command> [options]"

    static let commands: [Command] = [
        Command(name: "info", usage: "berth info", summary: "Show the agent's host, kernel, cgroup layout and counts",
                help: "", run: Commands.info),
        Command(name: "image", usage: "berth image import NAME FILE | berth image ls", summary: "Import or list images",
                help: "  import NAME FILE   Import a root-file-system tarball (plain or gzip; FILE - reads stdin)\n  ls                 List images\n",
                run: Commands.image),
        Command(name: "images", usage: "berth images", summary: "List images (same as image ls)", help: "", run: Commands.images),
        Command(name: "run", usage: "berth run [--rm] [--name N] [--hostname H] [-e K=V]... [-w DIR] [-u UID[:GID]] [--rootfs DIR] IMAGE [CMD...]",
                summary: "Run a command in a new container and stream its output",
                help: Commands.specHelp + "      --rm               Remove the container when it exits\n",
                run: Commands.run),
        Command(name: "create", usage: "berth create [--name N] [--hostname H] [-e K=V]... [-w DIR] [-u UID[:GID]] [--rootfs DIR] IMAGE [CMD...]",
                summary: "Create a container without starting it", help: Commands.specHelp, run: Commands.create),
        Command(name: "start", usage: "berth start NAME|ID...", summary: "Start created containers (detached; output to their log)",
                help: "", run: Commands.start),
        Command(name: "wait", usage: "berth wait NAME|ID...", summary: "Wait for containers to exit and print their exit codes",
                help: "", run: Commands.wait),
        Command(name: "ps", usage: "berth ps [-a] [-q] [--format table|json]", summary: "List containers",
                help: "  -a, --all          Show all containers (default: running only)\n  -q, --quiet        Show only ids\n      --format FMT   table (default) or json (one object per line)\n",
                run: Commands.ps),
        Command(name: "rm", usage: "berth rm [-f] NAME|ID...", summary: "Remove containers",
                help: "  -f, --force        Kill a running container first\n", run: Commands.rm),
        Command(name: "version", usage: "berth version", summary: "Show the client's and the agent's versions",
                help: "", run: Commands.version),
    ]

    static func find(_ name: String) -> Command? { commands.first { $0.name == name } }

    static var mainHelp: String {
        var s = """
        \(mainUsage)

        Control Berth agents: run containers on this host or on remote ones.

        Options:
          -H, --host ADDRESS   Agent to talk to (default $BERTH_HOST or \(BerthClient.defaultAddress))
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
