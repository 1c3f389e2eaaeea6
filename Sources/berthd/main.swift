// berthd: the Berth node agent. Parses flags, starts the agent, waits for SIGTERM/SIGINT.
#if canImport(Glibc)
import Glibc
#endif
import BerthAgent
import BerthErrors
import BerthSystem
import BerthWire

let usage = """
Usage: berthd [--config FILE] [--socket PATH] [--state-dir DIR] [--run-dir DIR] [--listen tcp://127.0.0.1:PORT]... [--node-name NAME]

The Berth node agent: runs containers for berth clients.

Options:
  --config FILE        Read options from FILE: "name = value" lines, the long option
                       names without "--" (insecure-tcp = true for a switch; listen and
                       route on several lines; # comments). Options after --config
                       override it (listen and route add to it). See deploy/berthd.conf
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
  --route CIDR=GATEWAY Route another host's container subnet via that host (repeatable;
                       host-gw: containers reach each other by their own addresses,
                       forwarded without masquerade), e.g. 10.241.3.0/24=10.240.0.13
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

func fail(_ message: String, code: Int32) -> Never {
    let text = code == 64 ? "Error: \(message)\n\(usage)" : "berthd: \(message)\n"
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(code)
}

let settings: Settings
do {
    switch try parseCommandLine(Array(CommandLine.arguments.dropFirst())) {
    case .help: print(usage, terminator: ""); exit(0)
    case .version: print("berthd \(berthVersion) (protocol \(berthProtocolVersion))"); exit(0)
    case .run(let s): settings = s
    }
} catch {
    switch error {
    case .usage(let message): fail(message, code: 64)
    case .config(let message): fail(message, code: 78)
    }
}
let config = settings.config
let exitOnStdinEOF = settings.exitOnStdinEOF
// Read (and removed from the environment) before any thread or child exists.
let notifier = ServiceNotifier.fromEnvironment()
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
// Every listener is listening (bound in Agent.init, accepting from here): systemd's
// Type=notify unit becomes active now, and units ordered after it may connect.
if let notifier {
    let rc = notifier.send("READY=1\nMAINPID=\(getpid())\nSTATUS=serving\n")
    if rc != 0 { Log.write("sd_notify READY=1: \(Errno(rawValue: rc))") }
}
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
notifier?.send("STOPPING=1\n")
agent.shutdown()
exit(0)
