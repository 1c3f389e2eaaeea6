// berthd: the Berth node agent. Parses flags, starts the agent, waits for SIGTERM/SIGINT.
#if canImport(Glibc)
import Glibc
#endif
import BerthAgent
import BerthErrors
import BerthSystem
import BerthWire

let usage = """
Usage: berthd [--socket PATH] [--state-dir DIR] [--run-dir DIR] [--listen tcp://127.0.0.1:PORT]... [--node-name NAME]

The Berth node agent: runs containers for berth clients.

Options:
  --socket PATH        Unix socket to serve (default /run/berth/berth.sock, mode 0660)
  --state-dir DIR      Persistent state: images, container records (default /var/lib/berth)
  --run-dir DIR        Runtime state: mounts, lock (default /run/berth)
  --listen ADDRESS     Also serve plain TCP on a loopback address, e.g. tcp://127.0.0.1:7946
  --insecure-tcp       Allow --listen on a non-loopback address: anyone who can reach
                       it controls this host as root (use mutual TLS: --tls-cert, --tls-key, --tls-ca)
  --socket-group G     Group (name or number) of the Unix socket, and of its directory
                       when berthd creates it (mode 0750); default: berthd's group
  --max-connections N  Connections served at once (default 256)
  --max-streams N      Open streams per connection (default 128)
  --handshake-timeout S  Seconds a connection has to send Hello (default 10; 0: none)
  --idle-timeout S     Close a connection with no open stream and no call for S
                       seconds (default 300; 0: never)
  --frame-timeout S    Close a connection whose partly sent frame gets no byte for S
                       seconds (default 10; 0: never)
  --node-name NAME     Name reported to clients (default: the host name)
  --keepalive SECONDS  Keepalive interval when a client proposes none (default 30)
  --monitor PATH       The berth-monitor executable (default: next to berthd)
  --log-max-bytes N    Rotate a container's log at N bytes (default 10485760)
  --log-max-files N    Rotated logs kept per container (default 3)
  --network-prefix P   Names of what Berth makes on the host: bridge P0, user bridges
                       P-<id>, veths Pv<id>, nftables table "ip P" (default berth)
  --default-subnet CIDR  Subnet of the default network "bridge" (default 10.217.0.0/16)
  --subnet-pool CIDR   User networks without --subnet get a /24 from here
                       (default 10.218.0.0/16)
  --cgroup-parent NAME Berth's cgroup: containers get NAME/<id> (default berth)
  --tls-cert FILE      Mutual TLS on every --listen address: this agent's certificate,
  --tls-key FILE       its key, and the CA clients' certificates must be signed by
  --tls-ca FILE        (deploy/make-certs.sh makes a lab set). With TLS any address may be
                       listened on; a client certificate with OU=viewer may only read
  --default-network N  Network of containers run without --network: bridge, none,
                       host or a user network (default bridge)
  --insecure-registry HOST[:PORT]  Pull from this registry over plain HTTP (repeatable);
                       every other registry is HTTPS, verified
  --registry-ca HOST[:PORT]=FILE   Verify this registry against the CA in FILE (PEM)
                       instead of the system store (repeatable)
  --registry-timeout S A registry that sends nothing for S seconds fails the pull (default 30)
  --registry-max-speed BYTES  Limit each layer download to BYTES per second (default: none)
  --exit-on-stdin-eof  Shut down cleanly when standard input reaches end of file
                       (for supervisors and tests that hand the agent a pipe)
  -h, --help           Show this help
  --version            Show the version

"""

/// A group name or number, as --socket-group takes it.
func groupID(_ text: String) -> gid_t? {
    if let n = gid_t(text) { return n }
    var group = group()
    var result: UnsafeMutablePointer<group>?
    var buf = [CChar](repeating: 0, count: 16384)
    guard getgrnam_r(text, &group, &buf, buf.count, &result) == 0, let found = result else { return nil }
    return found.pointee.gr_gid
}

func fail(_ message: String, code: Int32) -> Never {
    let text = code == 64 ? "Error: \(message)\n\(usage)" : "berthd: \(message)\n"
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(code)
}

var config = AgentConfig()
var exitOnStdinEOF = false
var args = CommandLine.arguments.dropFirst()
while let arg = args.popFirst() {
    func value() -> String {
        guard let v = args.popFirst(), !v.hasPrefix("--") || v == "-" else { fail("\(arg) needs a value", code: 64) }
        return v
    }
    switch arg {
    case "-h", "--help": print(usage, terminator: ""); exit(0)
    case "--version": print("berthd \(berthVersion) (protocol \(berthProtocolVersion))"); exit(0)
    case "--socket": config.socketPath = value()
    case "--state-dir": config.stateDir = value()
    case "--run-dir": config.runDir = value()
    case "--listen": config.listen.append(value())
    case "--node-name": config.nodeName = value()
    case "--exit-on-stdin-eof": exitOnStdinEOF = true
    case "--monitor": config.monitorBinary = value()
    case "--log-max-bytes":
        let v = value()
        guard let n = UInt64(v), n >= 1024 else { fail("--log-max-bytes needs a number of bytes (at least 1024), not \"\(v)\"", code: 64) }
        config.logMaxBytes = n
    case "--log-max-files":
        let v = value()
        guard let n = Int(v), n >= 0, n <= 100 else { fail("--log-max-files needs a number from 0 to 100, not \"\(v)\"", code: 64) }
        config.logMaxFiles = n
    case "--network-prefix": config.network.prefix = value()
    case "--default-subnet": config.network.defaultSubnet = value()
    case "--subnet-pool": config.network.subnetPool = value()
    case "--default-network": config.network.defaultNetwork = value()
    case "--tls-cert": config.tlsCertificate = value()
    case "--tls-key": config.tlsKey = value()
    case "--tls-ca": config.tlsCA = value()
    case "--cgroup-parent":
        let v = value()
        guard !v.isEmpty, !v.hasPrefix("/"), !v.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
            fail("--cgroup-parent needs a relative cgroup path such as berth, not \"\(v)\"", code: 64)
        }
        config.cgroupParent = v
    case "--insecure-tcp": config.insecureTCP = true
    case "--socket-group":
        let v = value()
        guard let gid = groupID(v) else { fail("--socket-group: no such group \"\(v)\" (give a group name from /etc/group or a number)", code: 64) }
        config.socketGroup = gid
    case "--max-connections":
        let v = value()
        guard let n = Int(v), n >= 1, n <= 1_000_000 else { fail("--max-connections needs a number from 1 to 1000000, not \"\(v)\"", code: 64) }
        config.maxConnections = n
    case "--max-streams":
        let v = value()
        guard let n = Int(v), n >= 1, n <= 1_000_000 else { fail("--max-streams needs a number from 1 to 1000000, not \"\(v)\"", code: 64) }
        config.maxStreams = n
    case "--handshake-timeout", "--idle-timeout", "--frame-timeout":
        let v = value()
        guard let n = UInt32(v), n <= 86400 else { fail("\(arg) needs a number of seconds from 0 to 86400, not \"\(v)\"", code: 64) }
        switch arg {
        case "--handshake-timeout": config.handshakeTimeoutSeconds = n
        case "--idle-timeout": config.idleTimeoutSeconds = n
        default: config.frameTimeoutSeconds = n
        }
    case "--insecure-registry": config.registry.insecure.insert(value())
    case "--registry-ca":
        let v = value()
        guard let eq = v.firstIndex(of: "="), eq != v.startIndex else { fail("--registry-ca takes HOST[:PORT]=FILE, not \"\(v)\"", code: 64) }
        config.registry.caFiles[String(v[..<eq])] = String(v[v.index(after: eq)...])
    case "--registry-timeout":
        let v = value()
        guard let n = Int(v), n > 0 else { fail("--registry-timeout needs a positive number of seconds, not \"\(v)\"", code: 64) }
        config.registry.timeoutSeconds = n
    case "--registry-max-speed":
        let v = value()
        guard let n = Int64(v), n >= 0 else { fail("--registry-max-speed needs bytes per second, not \"\(v)\"", code: 64) }
        config.registry.maxBytesPerSecond = n
    case "--keepalive":
        let v = value()
        guard let n = UInt32(v), n > 0 else { fail("--keepalive needs a positive number of seconds, not \"\(v)\"", code: 64) }
        config.keepaliveSeconds = n
    default: fail("unknown option \(arg)", code: 64)
    }
}
for (flag, path) in [("--state-dir", config.stateDir), ("--run-dir", config.runDir), ("--socket", config.socketPath)] where !path.hasPrefix("/") {
    fail("\(flag) needs an absolute path, not \"\(path)\"", code: 64)
}
guard geteuid() == 0 else { fail("must run as root (it creates namespaces and mounts)", code: 1) }

// Block the signals we wait for in every thread (threads inherit the mask), and
// ignore SIGPIPE: a client that goes away must not kill the agent.
signal(SIGPIPE, SIG_IGN)
var waited = sigset_t()
sigemptyset(&waited)
sigaddset(&waited, SIGTERM)
sigaddset(&waited, SIGINT)
pthread_sigmask(SIG_BLOCK, &waited, nil)

let agent: Agent
do {
    agent = try Agent(config: config)
} catch {
    fail(error.berthError("start").message, code: 1)
}
agent.serve()
if exitOnStdinEOF {
    // The supervisor holds the pipe's other end: its death closes it, and the agent
    // goes down cleanly instead of living on as an orphan.
    startThread("berth-stdin") {
        var buf = [UInt8](repeating: 0, count: 256)
        while true {
            let n = buf.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n > 0 || (n < 0 && errno == EINTR) { continue }
            break
        }
        kill(getpid(), SIGTERM)
    }
}
var sig: Int32 = 0
sigwait(&waited, &sig)
agent.shutdown()
exit(0)
