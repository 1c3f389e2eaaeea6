// berthd's options: one table, read from the command line (`--name VALUE`) and from a
// configuration file (`name = value` lines, `--config FILE`), so the two can never
// disagree on what an option means or how its value is checked (docs/deploy.md).
#if canImport(Glibc)
import Glibc
#endif
import BerthAgent
import BerthErrors
import BerthRuntime
import BerthSystem

/// Everything berthd's options set.
struct Settings {
    var config = AgentConfig()
    var exitOnStdinEOF = false
}

/// A value an option refused: the reason, without the option's name (the caller adds it
/// the way its source spells it: `--listen` on the command line, `listen` in a file).
struct OptionError: Error {
    var reason: String
}

/// One option of berthd.
struct AgentOption: Sendable {
    enum Kind: Sendable {
        /// Takes a value; given again, the last one wins.
        case value
        /// Takes a value each time; every one counts (`--listen`, `--route`).
        case repeatable
        /// A switch: `--insecure-tcp` on the command line, `insecure-tcp = true|false` in a file.
        case flag
    }
    /// The long name without `--`; also the key in a configuration file.
    var name: String
    var kind: Kind
    var apply: @Sendable (inout Settings, String) throws(OptionError) -> Void
}

private func number<T: FixedWidthInteger>(_ text: String, _ range: ClosedRange<T>, _ what: String) throws(OptionError) -> T {
    guard let n = T(text), range.contains(n) else { throw OptionError(reason: "needs \(what), not \"\(text)\"") }
    return n
}

/// Paths the agent keeps for its whole life must not depend on the directory it was started in.
private func absolute(_ path: String) throws(OptionError) -> String {
    guard path.hasPrefix("/") else { throw OptionError(reason: "needs an absolute path, not \"\(path)\"") }
    return path
}

/// A group name or number, as --socket-group takes it.
func groupID(_ text: String) -> gid_t? {
    if let n = gid_t(text) { return n }
    var group = group()
    var result: UnsafeMutablePointer<group>?
    var buf = [CChar](repeating: 0, count: 16384)
    guard getgrnam_r(text, &group, &buf, buf.count, &result) == 0, let found = result else { return nil }
    return found.pointee.gr_gid
}

/// Every option but --config, --help and --version, which only the command line takes.
let agentOptions: [AgentOption] = [
    AgentOption(name: "socket", kind: .value) { (s, v) throws(OptionError) in s.config.socketPath = try absolute(v) },
    AgentOption(name: "state-dir", kind: .value) { (s, v) throws(OptionError) in s.config.stateDir = try absolute(v) },
    AgentOption(name: "run-dir", kind: .value) { (s, v) throws(OptionError) in s.config.runDir = try absolute(v) },
    AgentOption(name: "listen", kind: .repeatable) { $0.config.listen.append($1) },
    AgentOption(name: "node-name", kind: .value) { $0.config.nodeName = $1 },
    AgentOption(name: "exit-on-stdin-eof", kind: .flag) { s, v in s.exitOnStdinEOF = v == "true" },
    AgentOption(name: "monitor", kind: .value) { $0.config.monitorBinary = $1 },
    AgentOption(name: "log-max-bytes", kind: .value) { (s, v) throws(OptionError) in
        s.config.logMaxBytes = try number(v, 1024...UInt64.max, "a number of bytes (at least 1024)")
    },
    AgentOption(name: "log-max-files", kind: .value) { (s, v) throws(OptionError) in
        s.config.logMaxFiles = try number(v, 0...100, "a number from 0 to 100")
    },
    AgentOption(name: "network-prefix", kind: .value) { $0.config.network.prefix = $1 },
    AgentOption(name: "default-subnet", kind: .value) { $0.config.network.defaultSubnet = $1 },
    AgentOption(name: "subnet-pool", kind: .value) { $0.config.network.subnetPool = $1 },
    AgentOption(name: "default-network", kind: .value) { $0.config.network.defaultNetwork = $1 },
    AgentOption(name: "route", kind: .repeatable) { (s, v) throws(OptionError) in
        do throws(BerthError) {
            s.config.network.routes.append(try HostRoute(parsing: v))
        } catch {
            throw OptionError(reason: error.message)
        }
    },
    AgentOption(name: "tls-cert", kind: .value) { $0.config.tlsCertificate = $1 },
    AgentOption(name: "tls-key", kind: .value) { $0.config.tlsKey = $1 },
    AgentOption(name: "tls-ca", kind: .value) { $0.config.tlsCA = $1 },
    AgentOption(name: "cgroup-parent", kind: .value) { (s, v) throws(OptionError) in
        guard !v.isEmpty, !v.hasPrefix("/"),
              !v.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
            throw OptionError(reason: "needs a relative cgroup path such as berth, not \"\(v)\"")
        }
        s.config.cgroupParent = v
    },
    AgentOption(name: "insecure-tcp", kind: .flag) { s, v in s.config.insecureTCP = v == "true" },
    AgentOption(name: "socket-group", kind: .value) { (s, v) throws(OptionError) in
        guard let gid = groupID(v) else {
            throw OptionError(reason: "no such group \"\(v)\" (give a group name from /etc/group or a number)")
        }
        s.config.socketGroup = gid
    },
    AgentOption(name: "max-connections", kind: .value) { (s, v) throws(OptionError) in
        s.config.maxConnections = try number(v, 1...1_000_000, "a number from 1 to 1000000")
    },
    AgentOption(name: "max-streams", kind: .value) { (s, v) throws(OptionError) in
        s.config.maxStreams = try number(v, 1...1_000_000, "a number from 1 to 1000000")
    },
    AgentOption(name: "handshake-timeout", kind: .value) { (s, v) throws(OptionError) in
        s.config.handshakeTimeoutSeconds = try number(v, 0...86400, "a number of seconds from 0 to 86400")
    },
    AgentOption(name: "idle-timeout", kind: .value) { (s, v) throws(OptionError) in
        s.config.idleTimeoutSeconds = try number(v, 0...86400, "a number of seconds from 0 to 86400")
    },
    AgentOption(name: "frame-timeout", kind: .value) { (s, v) throws(OptionError) in
        s.config.frameTimeoutSeconds = try number(v, 0...86400, "a number of seconds from 0 to 86400")
    },
    AgentOption(name: "keepalive", kind: .value) { (s, v) throws(OptionError) in
        s.config.keepaliveSeconds = try number(v, 1...UInt32.max, "a positive number of seconds")
    },
    AgentOption(name: "insecure-registry", kind: .repeatable) { $0.config.registry.insecure.insert($1) },
    AgentOption(name: "registry-ca", kind: .repeatable) { (s, v) throws(OptionError) in
        guard let eq = v.firstIndex(of: "="), eq != v.startIndex, v.index(after: eq) != v.endIndex else {
            throw OptionError(reason: "takes HOST[:PORT]=FILE, not \"\(v)\"")
        }
        s.config.registry.caFiles[String(v[..<eq])] = String(v[v.index(after: eq)...])
    },
    AgentOption(name: "registry-timeout", kind: .value) { (s, v) throws(OptionError) in
        s.config.registry.timeoutSeconds = try number(v, 1...86400, "a number of seconds from 1 to 86400")
    },
    AgentOption(name: "registry-max-speed", kind: .value) { (s, v) throws(OptionError) in
        s.config.registry.maxBytesPerSecond = try number(v, 0...Int64.max, "a number of bytes per second")
    },
]

private let optionsByName: [String: AgentOption] = Dictionary(uniqueKeysWithValues: agentOptions.map { ($0.name, $0) })

/// A problem with the options: on the command line (a usage error, exit 64) or in a
/// configuration file (exit 78, EX_CONFIG: systemd's RestartPreventExitStatus keeps a
/// unit with a broken file from restarting in a loop).
enum OptionsFailure: Error {
    case usage(String)
    case config(String)
}

/// What the command line asks for.
enum Invocation {
    case run(Settings)
    case help
    case version
}

/// Parses berthd's command line, left to right: `--config FILE` applies the file's
/// lines where it stands, so options after it override it (or, for --listen and
/// --route, add to it) and options before it are overridden.
func parseCommandLine(_ arguments: [String]) throws(OptionsFailure) -> Invocation {
    var settings = Settings()
    var args = arguments[...]
    while let arg = args.popFirst() {
        func value() throws(OptionsFailure) -> String {
            guard let v = args.popFirst(), !v.hasPrefix("--") || v == "-" else { throw .usage("\(arg) needs a value") }
            return v
        }
        switch arg {
        case "-h", "--help": return .help
        case "--version": return .version
        case "--config":
            let path = try value()
            let text: String
            do {
                text = try Files.readString(path)
            } catch {
                throw .config("cannot read the configuration file: \(error.berthError("read \(path)").message)")
            }
            try applyConfigFile(text, path: path, to: &settings)
            continue
        default: break
        }
        guard arg.hasPrefix("--"), let option = optionsByName[String(arg.dropFirst(2))] else { throw .usage("unknown option \(arg)") }
        let v = option.kind == .flag ? "true" : try value()
        do {
            try option.apply(&settings, v)
        } catch {
            throw .usage(error.reason.hasPrefix("needs") ? "\(arg) \(error.reason)" : "\(arg): \(error.reason)")
        }
    }
    return .run(settings)
}

/// Applies a configuration file: `key = value` lines, the keys being the long option
/// names without `--`; a switch takes `true` or `false`; --listen and --route may be
/// given on several lines; `#` starts a comment line; blank lines are skipped. Errors
/// name the file and the line: "/etc/berth/berthd.conf:7: unknown key "lsiten"".
func applyConfigFile(_ text: String, path: String, to settings: inout Settings) throws(OptionsFailure) {
    var seen: [String: Int] = [:]
    for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        let lineNumber = index + 1
        func fail(_ reason: String) -> OptionsFailure { .config("\(path):\(lineNumber): \(reason)") }
        let line = raw.trimmingSpaces
        if line.isEmpty || line.hasPrefix("#") { continue }
        guard let eq = line.firstIndex(of: "=") else {
            throw fail("expected key = value, not \"\(line)\"")
        }
        let key = line[..<eq].trimmingSpaces, value = line[line.index(after: eq)...].trimmingSpaces
        guard !key.isEmpty else { throw fail("a key is missing before \"=\"") }
        guard let option = optionsByName[key] else {
            if key == "config" { throw fail("a configuration file cannot include another (key \"config\")") }
            throw fail("unknown key \"\(key)\"\(key.hasPrefix("-") ? " (write keys without the leading --)" : "")")
        }
        guard !value.isEmpty else { throw fail("\(key) needs a value") }
        if option.kind != .repeatable, let first = seen[key] {
            throw fail("\(key) is already set on line \(first) (only listen and route may be given more than once)")
        }
        seen[key] = lineNumber
        var v = value
        if option.kind == .flag {
            guard value == "true" || value == "false" else { throw fail("\(key) takes true or false, not \"\(value)\"") }
            v = value
        }
        do {
            try option.apply(&settings, v)
        } catch {
            throw fail(error.reason.hasPrefix("needs") ? "\(key) \(error.reason)" : "\(key): \(error.reason)")
        }
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs (and a CR, for files edited on Windows).
    var trimmingSpaces: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" }
        guard let start = firstIndex(where: { !isSpace($0) }), let end = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[start...end])
    }
}
