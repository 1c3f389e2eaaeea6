import BerthErrors
import BerthSystem

// Swift value types for the messages of proto/berth/v1/berth.proto. Only this module
// touches the generated protobuf-c structs (see Codec.swift); everything else uses these.

/// Version of the wire protocol this code speaks (HelloRequest/HelloResponse.protocol_version).
public let berthProtocolVersion: UInt32 = 1
/// Version of the Berth software.
public let berthVersion = "0.1.0"

/// `berth.v1.Channel`: which byte stream a DATA chunk belongs to.
public enum Channel: Int32, Sendable, Hashable {
    /// Opaque bytes of an upload (an image tarball).
    case payload = 0
    case stdin = 1, stdout = 2, stderr = 3
    /// A terminal size change for an exec with a tty: rows and columns as two
    /// big-endian `UInt16` (see `Chunk.resize(rows:cols:)`).
    case resize = 4
}

/// `berth.v1.Chunk`: the payload of a DATA frame.
public struct Chunk: Sendable, Hashable {
    public var channel: Channel
    public var data: [UInt8]
    public init(channel: Channel, data: [UInt8]) { self.channel = channel; self.data = data }

    /// A RESIZE chunk carrying a terminal size.
    public static func resize(rows: UInt16, cols: UInt16) -> Chunk {
        Chunk(channel: .resize, data: [UInt8(rows >> 8), UInt8(rows & 0xff), UInt8(cols >> 8), UInt8(cols & 0xff)])
    }

    /// The terminal size of a RESIZE chunk; nil when the data is not 4 bytes.
    public var terminalSize: (rows: UInt16, cols: UInt16)? {
        guard channel == .resize, data.count == 4 else { return nil }
        return (UInt16(data[0]) << 8 | UInt16(data[1]), UInt16(data[2]) << 8 | UInt16(data[3]))
    }
}

public struct HelloRequest: Sendable, Hashable {
    public var protocolVersion: UInt32 = berthProtocolVersion
    public var clientVersion: String = berthVersion
    public var features: [String] = []
    public var keepaliveSeconds: UInt32 = 0
    public init() {}
}

public struct HelloResponse: Sendable, Hashable {
    public var protocolVersion: UInt32 = berthProtocolVersion
    public var agentVersion: String = berthVersion
    public var nodeName: String = ""
    public var features: [String] = []
    public var keepaliveSeconds: UInt32 = 0
    public var initialWindow: UInt32 = 0
    public var maxPayload: UInt32 = 0
    public init() {}
}

public struct InfoResponse: Sendable, Hashable {
    public var hostname = ""
    public var nodeName = ""
    public var agentVersion = ""
    public var kernel = ""
    public var os = ""
    public var architecture = ""
    /// "v1", "hybrid" or "v2".
    public var cgroupLayout = ""
    public var cpus: UInt32 = 0
    public var memoryBytes: UInt64 = 0
    public var containers: UInt32 = 0
    public var containersRunning: UInt32 = 0
    public var containersStopped: UInt32 = 0
    public var images: UInt32 = 0
    public var stateDir = ""
    public var runDir = ""
    public var networks: [Network] = []
    /// How the agent is set up unsafely, one sentence each (plain TCP off loopback).
    public var warnings: [String] = []
    /// Disk use of the image store and of the containers' upper dirs (fields 30-34).
    public var imageLayers: UInt32 = 0
    public var imageLayersBytes: UInt64 = 0
    public var imageBlobsBytes: UInt64 = 0
    public var imageDownloadsBytes: UInt64 = 0
    public var containersBytes: UInt64 = 0
    /// MemAvailable: what the kernel can give without swapping.
    public var memoryAvailableBytes: UInt64 = 0
    public var load1 = 0.0
    public var load5 = 0.0
    public var load15 = 0.0
    public var pods: UInt32 = 0
    public var uptimeSeconds: UInt64 = 0
    public var protocolVersion: UInt32 = 0
    public init() {}
}

/// `berth.v1.Image`.
public struct Image: Sendable, Hashable {
    /// Normalised name with tag, e.g. "busybox:latest".
    public var name: String
    /// "sha256:<hex>" of the imported tarball.
    public var id: String
    public var sizeBytes: UInt64
    public var createdUnix: Int64
    /// Loaded and pulled images: the defaults a container takes (empty for `image import`).
    public var config = ImageConfig()
    /// Loaded and pulled images: the layers' diff ids, bottom first.
    public var layers: [String] = []
    /// The manifest digest it was pulled by; empty otherwise.
    public var digest = ""
    public var os = ""
    public var architecture = ""
    /// InspectImage only: the containers using it.
    public var containers: [String] = []
    public init(name: String, id: String, sizeBytes: UInt64, createdUnix: Int64) {
        self.name = name; self.id = id; self.sizeBytes = sizeBytes; self.createdUnix = createdUnix
    }
}

/// `berth.v1.User`.
public struct User: Sendable, Hashable {
    public var uid: UInt32
    public var gid: UInt32
    public init(uid: UInt32 = 0, gid: UInt32 = 0) { self.uid = uid; self.gid = gid }
}

/// `berth.v1.RestartPolicy`: what happens when a container's init exits.
public struct RestartPolicy: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        case no, onFailure = "on-failure", always
    }
    public var kind: Kind
    /// For `.onFailure`: give up after this many restarts; 0 means no limit.
    public var maxRetries: UInt32
    public init(_ kind: Kind = .no, maxRetries: UInt32 = 0) { self.kind = kind; self.maxRetries = maxRetries }

    /// Parses docker's syntax: `no`, `always`, `on-failure`, `on-failure:N`.
    public init?(parsing text: String) {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        guard let first = parts.first, let kind = Kind(rawValue: first) else {
            if text.isEmpty { self.init(); return }
            return nil
        }
        if parts.count == 2 {
            guard kind == .onFailure, let n = UInt32(parts[1]) else { return nil }
            self.init(kind, maxRetries: n)
        } else {
            self.init(kind)
        }
    }

    public var description: String {
        kind == .onFailure && maxRetries > 0 ? "on-failure:\(maxRetries)" : kind.rawValue
    }
}

/// `berth.v1.ContainerSpec`: what to run.
public struct ContainerSpec: Sendable, Hashable {
    public var name = ""
    public var image = ""
    public var rootfs = ""
    public var args: [String] = []
    public var env: [String] = []
    public var workingDir = ""
    public var user = User()
    public var hostname = ""
    public var autoRemove = false
    /// Free-form key/value metadata (`--label`), for filtering.
    public var labels: [String: String] = [:]
    public var restart = RestartPolicy()
    /// The signal `stop` sends first; 0 means SIGTERM.
    public var stopSignal: Int32 = 0
    /// Seconds `stop` waits before SIGKILL; 0 means 10.
    public var stopTimeout: Int32 = 0
    /// Empty: the agent's default network; "none", "host", "container:<name|id>", or a
    /// bridge network's name.
    public var network = ""
    /// Published ports (`-p`).
    public var ports: [PortMapping] = []
    /// Nameservers for /etc/resolv.conf (`--dns`); empty: the host's.
    public var dns: [String] = []
    /// Extra /etc/hosts lines (`--add-host name:ip`).
    public var extraHosts: [HostEntry] = []
    /// The pod to join (name or id); network, ports and DNS then belong to the pod.
    public var pod = ""
    /// Cgroup limits.
    public var resources = Resources()
    /// Capabilities on top of / off docker's default set ("ALL" works in both).
    public var capAdd: [String] = []
    public var capDrop: [String] = []
    /// Every capability, no seccomp filter, no masked paths.
    public var privileged = false
    /// "": the default profile; "unconfined"; or a profile in docker's JSON format.
    public var seccomp = ""
    /// no_new_privs is on unless this is set.
    public var allowNewPrivileges = false
    /// The root file system read-only (`--read-only`).
    public var readOnly = false
    /// `-v` and `--tmpfs`.
    public var mounts: [Mount] = []
    /// `user` was given (-u): it overrides the image's User even when it is 0:0.
    public var userSet = false
    /// --entrypoint: replaces the image's Entrypoint (and its Cmd) when `entrypointSet`.
    public var entrypoint: [String] = []
    public var entrypointSet = false
    public init() {}
}

/// `berth.v1.Mount`: `-v SOURCE:TARGET[:ro]` or `--tmpfs TARGET[:OPTIONS]`.
public struct Mount: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable { case bind, tmpfs }
    public var kind: Kind
    public var source: String
    public var target: String
    public var readOnly: Bool
    public var options: String
    public init(kind: Kind, source: String = "", target: String, readOnly: Bool = false, options: String = "") {
        self.kind = kind; self.source = source; self.target = target; self.readOnly = readOnly; self.options = options
    }

    /// `-v /host:/ctr[:ro|:rw]`.
    public init(volume text: String) throws(BerthError) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2 || parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw BerthError(.invalidArgument, "invalid -v \"\(text)\": expected /HOST/PATH:/CONTAINER/PATH[:ro]")
        }
        var readOnly = false
        if parts.count == 3 {
            guard parts[2] == "ro" || parts[2] == "rw" else {
                throw BerthError(.invalidArgument, "invalid -v \"\(text)\": the mode must be ro or rw")
            }
            readOnly = parts[2] == "ro"
        }
        self.init(kind: .bind, source: parts[0], target: parts[1], readOnly: readOnly)
    }

    /// `--tmpfs /path[:size=64m,mode=1777]`.
    public init(tmpfs text: String) throws(BerthError) {
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard !parts[0].isEmpty else { throw BerthError(.invalidArgument, "invalid --tmpfs \"\(text)\": expected /PATH[:OPTIONS]") }
        self.init(kind: .tmpfs, target: parts[0], options: parts.count == 2 ? parts[1] : "")
    }
}

/// `berth.v1.Resources`: cgroup limits; 0 / empty means none.
public struct Resources: Sendable, Hashable {
    public var memoryBytes: UInt64 = 0
    /// memory + swap; 0: twice `memoryBytes`; -1: unlimited.
    public var memorySwapBytes: Int64 = 0
    /// `--cpus 0.5` is 500.
    public var cpuMillis: UInt32 = 0
    public var cpuShares: UInt32 = 0
    public var pidsLimit: Int64 = 0
    public var cpusetCpus = ""
    public init() {}
}

/// `berth.v1.ContainerStats`: one sample of a container's cgroup.
public struct ContainerStats: Sendable, Hashable {
    public var id = ""
    public var name = ""
    public var cpuUsageNanos: UInt64 = 0
    public var memoryUsageBytes: UInt64 = 0
    /// 0: no limit.
    public var memoryLimitBytes: UInt64 = 0
    public var pids: UInt64 = 0
    public var pidsLimit: UInt64 = 0
    public var readUnixNano: Int64 = 0
    public var oomKills: UInt64 = 0
    public init() {}
}

/// `berth.v1.PodSpec`.
public struct PodSpec: Sendable, Hashable {
    public var name = ""
    public var hostname = ""
    public var ports: [PortMapping] = []
    /// Empty: the agent's default network; "none" or a bridge network's name.
    public var network = ""
    /// Of "net", "ipc", "uts", "pid"; empty: net, ipc and uts.
    public var share: [String] = []
    public var labels: [String: String] = [:]
    /// Pod-level limits: recorded, enforced once cgroups land.
    public var memoryBytes: UInt64 = 0
    public var cpuMillis: UInt32 = 0
    public var sysctls: [String: String] = [:]
    public var dns: [String] = []
    public var extraHosts: [HostEntry] = []
    public init() {}
}

/// `berth.v1.NamespaceInfo`.
public struct NamespaceInfo: Sendable, Hashable {
    public var type: String
    public var path: String
    public var inode: UInt64
    public init(type: String, path: String, inode: UInt64) { self.type = type; self.path = path; self.inode = inode }
}

/// `berth.v1.PodContainer`.
public struct PodContainer: Sendable, Hashable {
    public var id: String
    public var name: String
    public var state: ContainerState
    public var namespaces: [NamespaceInfo]
    public init(id: String, name: String, state: ContainerState, namespaces: [NamespaceInfo]) {
        self.id = id; self.name = name; self.state = state; self.namespaces = namespaces
    }
}

/// `berth.v1.Pod`.
public struct Pod: Sendable, Hashable {
    public var id = ""
    public var name = ""
    public var spec = PodSpec()
    public var createdUnix: Int64 = 0
    public var network = NetworkAttachment()
    /// The pinned namespaces.
    public var namespaces: [NamespaceInfo] = []
    /// The pause process (shared pid namespace only) and its monitor.
    public var pausePid: Int32 = 0
    public var pauseStartTime: UInt64 = 0
    public var pauseMonitorPid: Int32 = 0
    public var pauseMonitorStartTime: UInt64 = 0
    /// Filled in answers only.
    public var containers: [PodContainer] = []
    /// In answers: "created", "running" or "exited".
    public var state = ""
    public init() {}
}

/// `berth.v1.PortMapping`: `-p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTOCOL]`.
public struct PortMapping: Sendable, Hashable, CustomStringConvertible {
    public enum Proto: String, Sendable, Hashable { case tcp, udp }
    /// Empty: every host address.
    public var hostIP: String
    public var hostPort: UInt32
    public var containerPort: UInt32
    public var proto: Proto
    public init(hostIP: String = "", hostPort: UInt32, containerPort: UInt32, proto: Proto = .tcp) {
        self.hostIP = hostIP; self.hostPort = hostPort; self.containerPort = containerPort; self.proto = proto
    }

    /// Parses docker's `-p` syntax: `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]`. Ports
    /// are checked to be 1-65535 and the host IP to be an IPv4 address.
    public init(parsing text: String) throws(BerthError) {
        func bad(_ why: String) -> BerthError {
            BerthError(.invalidArgument, "invalid port mapping \"\(text)\": \(why); expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]")
        }
        var body = Substring(text)
        var proto = Proto.tcp
        if let slash = body.lastIndex(of: "/") {
            guard let p = Proto(rawValue: String(body[body.index(after: slash)...]).lowercased()) else {
                throw bad("the protocol must be tcp or udp")
            }
            proto = p
            body = body[..<slash]
        }
        let parts = body.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2 || parts.count == 3 else { throw bad("wrong number of ':'") }
        func port(_ s: String, _ what: String) throws(BerthError) -> UInt32 {
            guard !s.isEmpty, s.allSatisfy({ $0.isASCII && $0.isNumber }), let n = UInt32(s), n >= 1, n <= 65535 else {
                throw bad("\(what) \"\(s)\" is not a port number from 1 to 65535")
            }
            return n
        }
        let hostIP = parts.count == 3 ? parts[0] : ""
        if !hostIP.isEmpty && IPv4Address(hostIP) == nil { throw bad("host IP \"\(hostIP)\" is not an IPv4 address") }
        self.init(hostIP: hostIP, hostPort: try port(parts[parts.count - 2], "host port"),
                  containerPort: try port(parts[parts.count - 1], "container port"), proto: proto)
    }

    public var description: String {
        (hostIP.isEmpty ? "" : hostIP + ":") + "\(hostPort):\(containerPort)/\(proto.rawValue)"
    }
}

/// `berth.v1.HostEntry`: a line of /etc/hosts.
public struct HostEntry: Sendable, Hashable {
    public var name: String
    public var ip: String
    public init(name: String, ip: String) { self.name = name; self.ip = ip }

    /// Parses `--add-host name:ip`.
    public init(parsing text: String) throws(BerthError) {
        guard let colon = text.firstIndex(of: ":") else {
            throw BerthError(.invalidArgument, "invalid --add-host \"\(text)\": expected NAME:IP")
        }
        self.init(name: String(text[..<colon]), ip: String(text[text.index(after: colon)...]))
    }
}

/// `berth.v1.NetworkAttachment`: where a container is on the network.
public struct NetworkAttachment: Sendable, Hashable {
    /// A bridge network's name, or "none", "host", "container:<id>".
    public var network = ""
    public var ip = ""
    public var prefixLength: UInt32 = 0
    public var gateway = ""
    public var mac = ""
    public var bridge = ""
    public var hostVeth = ""
    /// The pinned network namespace (bridge networks).
    public var netns = ""
    public init() {}
}

/// `berth.v1.NetworkEndpoint`: a container on a network.
public struct NetworkEndpoint: Sendable, Hashable {
    public var containerID: String
    public var name: String
    public var ip: String
    public var mac: String
    public init(containerID: String, name: String, ip: String, mac: String) {
        self.containerID = containerID; self.name = name; self.ip = ip; self.mac = mac
    }
}

/// `berth.v1.Network`: a bridge network.
public struct Network: Sendable, Hashable {
    public var name = ""
    public var id = ""
    /// "10.217.0.0/16".
    public var subnet = ""
    public var gateway = ""
    public var bridge = ""
    public var createdUnix: Int64 = 0
    public var isDefault = false
    /// Filled in answers only.
    public var endpoints: [NetworkEndpoint] = []
    public init() {}
}

/// `berth.v1.ContainerState`.
public enum ContainerState: Int32, Sendable, Hashable, CustomStringConvertible {
    case unknown = 0, created = 1, running = 2, exited = 3
    public var description: String {
        switch self {
        case .unknown: "unknown"
        case .created: "created"
        case .running: "running"
        case .exited: "exited"
        }
    }
}

/// `berth.v1.ExitStatus`.
public struct ExitStatus: Sendable, Hashable {
    /// The exit code; 128+signal when the process was killed by a signal.
    public var exitCode: Int32
    /// The signal that killed the process, 0 if it exited.
    public var signal: Int32
    public var finishedUnix: Int64
    public init(exitCode: Int32, signal: Int32 = 0, finishedUnix: Int64 = 0) {
        self.exitCode = exitCode; self.signal = signal; self.finishedUnix = finishedUnix
    }
}

/// `berth.v1.Container`.
public struct Container: Sendable, Hashable {
    public var id = ""
    public var name = ""
    public var image = ""
    public var spec = ContainerSpec()
    public var state = ContainerState.unknown
    public var pid: Int32 = 0
    public var createdUnix: Int64 = 0
    public var startedUnix: Int64 = 0
    public var exit: ExitStatus? = nil
    /// The image's id ("sha256:…") at creation; re-importing the name does not change it.
    public var imageID = ""
    /// The init process's start time (field 22 of /proc/PID/stat), to tell it from a
    /// later process that reuses the pid.
    public var pidStartTime: UInt64 = 0
    /// Restarts made by the restart policy.
    public var restartCount: UInt32 = 0
    /// Whether the last exit was the kernel's OOM killer.
    public var oomKilled = false
    /// The berth-monitor of the current run and its start time (docs/monitor.md).
    public var monitorPid: Int32 = 0
    public var monitorStartTime: UInt64 = 0
    /// Stopped or killed by a user: the restart policy does not bring it back.
    public var stoppedByUser = false
    public var network = NetworkAttachment()
    /// The pod this container belongs to, if any.
    public var podID = ""
    public var podName = ""
    /// The cgroup of the current or last run, relative to the hierarchy's root.
    public var cgroup = ""
    public init() {}
}

/// `berth.v1.RunResponse`: an event on a Run stream.
public enum RunEvent: Sendable, Hashable {
    case started(Container)
    case exit(ExitStatus)
}

/// `berth.v1.LogsRequest`.
public struct LogsRequest: Sendable, Hashable {
    public var container: String
    public var follow = false
    /// Only the last `tail` lines; nil for all.
    public var tail: Int32? = nil
    /// Only lines written at or after this time (unix nanoseconds); 0 for all.
    public var sinceUnixNano: Int64 = 0
    public var timestamps = false
    public init(container: String) { self.container = container }
}

/// `berth.v1.ExecRequest`.
public struct ExecRequest: Sendable, Hashable {
    public var container: String
    public var args: [String]
    public var env: [String] = []
    /// Empty: the container's working directory.
    public var workingDir = ""
    /// nil: the container's user.
    public var user: User? = nil
    public var tty = false
    /// The client streams stdin (CHANNEL_STDIN DATA, END_STREAM closes it).
    public var stdin = false
    public var rows: UInt32 = 0
    public var cols: UInt32 = 0
    public init(container: String, args: [String]) { self.container = container; self.args = args }
}

/// `berth.v1.ExecResponse`: an event on an Exec stream.
public enum ExecEvent: Sendable, Hashable {
    case started(pid: Int32)
    case exit(ExitStatus)
}

/// `berth.v1.Request`: the payload of a REQUEST frame, exactly one call.
public enum Request: Sendable, Hashable {
    case hello(HelloRequest)
    case info
    /// Followed by DATA frames (channel `.payload`) with the tarball.
    case importImage(name: String)
    case listImages
    case createContainer(ContainerSpec)
    case startContainer(String)
    case run(ContainerSpec)
    case wait(String)
    /// `filters`: "status=running", "name=web", "label=k" or "label=k=v", "id=prefix".
    case listContainers(all: Bool, filters: [String])
    case removeContainer(String, force: Bool)
    /// `timeout`: seconds before SIGKILL; -1 for the container's own.
    case stopContainer(String, timeout: Int32)
    /// `signal`: a name ("TERM", "SIGTERM") or number; empty for SIGKILL.
    case killContainer(String, signal: String)
    case restartContainer(String, timeout: Int32)
    case inspectContainer(String)
    case logs(LogsRequest)
    case exec(ExecRequest)
    /// `subnet`: empty for a free /24 the agent picks.
    case createNetwork(name: String, subnet: String)
    case listNetworks
    case inspectNetwork(String)
    case removeNetwork(String)
    case createPod(PodSpec)
    case listPods
    case inspectPod(String)
    case startPod(String)
    /// `timeout`: seconds before SIGKILL; -1 for each container's own.
    case stopPod(String, timeout: Int32)
    case removePod(String, force: Bool)
    /// Empty: every running container.
    case stats([String])
    /// Followed by DATA frames (channel `.payload`) with an OCI layout or docker-archive tar.
    /// `name`: for an archive whose only image has no name.
    case loadImage(name: String)
    case pullImage(PullImageRequest)
    case inspectImage(String)
    case removeImage(String, force: Bool)
    case pruneImages
    case events(EventsRequest)
}

/// `berth.v1.Response`: the payload of a RESPONSE frame, a result or an error.
public enum Response: Sendable, Hashable {
    case error(BerthError)
    case hello(HelloResponse)
    case info(InfoResponse)
    case importImage(Image)
    case listImages([Image])
    case createContainer(Container)
    case startContainer(Container)
    case run(RunEvent)
    case wait(ExitStatus)
    case listContainers([Container])
    case removeContainer(id: String)
    case stopContainer(Container)
    case killContainer
    case restartContainer(Container)
    case inspectContainer(Container)
    /// The end of a Logs stream.
    case logs
    case exec(ExecEvent)
    case createNetwork(Network)
    case listNetworks([Network])
    case inspectNetwork(Network)
    case removeNetwork(name: String)
    case createPod(Pod)
    case listPods([Pod])
    case inspectPod(Pod)
    case startPod(Pod)
    case stopPod(Pod)
    case removePod(id: String)
    case stats([ContainerStats])
    case loadImage([Image])
    case pullImage(PullEvent)
    case inspectImage(Image)
    case removeImage(untagged: [String], deleted: [String])
    case pruneImages(deleted: [String], reclaimedBytes: UInt64)
    case events(EventBatch)
}

/// `berth.v1.GoAway`: the sender closes the connection.
public struct GoAway: Sendable, Hashable {
    public var error: BerthError
    public var lastStreamID: UInt32
    public init(error: BerthError, lastStreamID: UInt32) { self.error = error; self.lastStreamID = lastStreamID }
}

/// `berth.v1.WindowUpdate`: the peer may send `increment` more DATA payload bytes on the stream.
public struct WindowUpdate: Sendable, Hashable {
    public var increment: UInt32
    public init(increment: UInt32) { self.increment = increment }
}

/// `berth.v1.Ping`: the payload of PING and PONG frames.
public struct Ping: Sendable, Hashable {
    public var nonce: UInt64
    public init(nonce: UInt64) { self.nonce = nonce }
}

/// `berth.v1.Cancel`: the sender abandons the stream, optionally saying why.
public struct Cancel: Sendable, Hashable {
    public var reason: BerthError?
    public init(reason: BerthError?) { self.reason = reason }
}

/// A message that maps to and from its protobuf-c encoding (see Codec.swift).
public protocol WireMessage: Sendable {
    /// Decodes the protobuf encoding; a malformed payload throws INVALID_ARGUMENT.
    init(wire: [UInt8]) throws(BerthError)
    /// The protobuf encoding.
    func wireEncoded() -> [UInt8]
}
