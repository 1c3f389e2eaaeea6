import BerthErrors
import BerthWire

extension WireFuzz {
    /// The seed corpus: byte streams of real frames, as a client or the agent sends them, one
    /// per call kind. `berth-fuzz --write-seeds DIR` writes them to files named after `name`
    /// (Fuzz/corpus/ holds the committed copy).
    public static func seeds() -> [(name: String, bytes: [UInt8])] {
        var seeds: [(name: String, bytes: [UInt8])] = []
        func add(_ name: String, _ frames: [Frame]) {
            seeds.append((name, frames.flatMap { $0.encoded() }))
        }
        func request(_ stream: UInt32, _ request: Request, end: Bool = true) -> Frame {
            Frame(streamID: stream, type: .request, flags: end ? .endStream : [], payload: request.wireEncoded())
        }
        func response(_ stream: UInt32, _ response: Response, end: Bool = true) -> Frame {
            Frame(streamID: stream, type: .response, flags: end ? .endStream : [], payload: response.wireEncoded())
        }
        func data(_ stream: UInt32, _ channel: Channel, _ bytes: [UInt8], end: Bool = false) -> Frame {
            Frame(streamID: stream, type: .data, flags: end ? .endStream : [], payload: Chunk(channel: channel, data: bytes).wireEncoded())
        }

        var hello = HelloRequest()
        hello.features = ["exec", "logs", "pods"]
        hello.keepaliveSeconds = 30
        add("hello", [request(1, .hello(hello))])

        var spec = ContainerSpec()
        spec.name = "web-1"
        spec.image = "busybox:latest"
        spec.args = ["/bin/sh", "-c", "echo hi; sleep 1"]
        spec.env = ["FOO=bar", "PATH=/bin"]
        spec.workingDir = "/tmp"
        spec.user = User(uid: 1000, gid: 1000)
        spec.hostname = "web"
        spec.autoRemove = true
        spec.labels = ["app": "web"]  // one entry: a dictionary's order (and so the encoding) varies by process
        spec.restart = RestartPolicy(.onFailure, maxRetries: 3)
        spec.stopSignal = 15
        spec.stopTimeout = 5
        spec.network = "berth0"
        spec.ports = [PortMapping(hostIP: "127.0.0.1", hostPort: 8080, containerPort: 80),
                      PortMapping(hostPort: 5353, containerPort: 53, proto: .udp)]
        spec.dns = ["1.1.1.1", "2606:4700::1111"]
        spec.extraHosts = [HostEntry(name: "db", ip: "10.0.0.2")]
        spec.resources.memoryBytes = 64 << 20
        spec.resources.memorySwapBytes = 128 << 20
        spec.resources.cpuMillis = 500
        spec.resources.cpuShares = 512
        spec.resources.pidsLimit = 100
        spec.resources.cpusetCpus = "0"
        spec.capAdd = ["NET_ADMIN"]
        spec.capDrop = ["MKNOD"]
        spec.seccomp = #"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#
        spec.readOnly = true
        spec.mounts = [Mount(kind: .bind, source: "/tmp", target: "/data", readOnly: true),
                       Mount(kind: .tmpfs, target: "/run", options: "size=64m,mode=1777")]
        add("create-container", [request(1, .createContainer(spec))])

        var runSpec = ContainerSpec()
        runSpec.rootfs = "/var/lib/rootfs"
        runSpec.args = ["true"]
        runSpec.network = "none"
        runSpec.pod = "pod1"
        runSpec.privileged = true
        runSpec.allowNewPrivileges = true
        add("run", [request(3, .run(runSpec))])

        add("info", [request(1, .info)])
        add("import-image", [request(5, .importImage(name: "busybox:latest"), end: false),
                             data(5, .payload, Array("ustar tarball bytes".utf8)), data(5, .payload, [], end: true)])
        add("list-images", [request(1, .listImages)])
        add("start-container", [request(1, .startContainer("web-1"))])
        add("wait", [request(1, .wait("web-1"))])
        add("list-containers", [request(1, .listContainers(all: true, filters: ["status=running", "label=app=web"]))])
        add("remove-container", [request(1, .removeContainer("web-1", force: true))])
        add("stop-container", [request(1, .stopContainer("web-1", timeout: 3))])
        add("kill-container", [request(1, .killContainer("web-1", signal: "SIGTERM"))])
        add("restart-container", [request(1, .restartContainer("web-1", timeout: -1))])
        add("inspect-container", [request(1, .inspectContainer("web-1"))])

        var logs = LogsRequest(container: "web-1")
        logs.follow = true
        logs.tail = 10
        logs.sinceUnixNano = 1_700_000_000_000_000_000
        logs.timestamps = true
        add("logs", [request(7, .logs(logs)), data(7, .stdout, Array("line\n".utf8)), response(7, .logs)])

        var exec = ExecRequest(container: "web-1", args: ["/bin/cat"])
        exec.env = ["TERM=xterm"]
        exec.workingDir = "/"
        exec.user = User(uid: 0, gid: 0)
        exec.tty = true
        exec.stdin = true
        exec.rows = 24
        exec.cols = 80
        add("exec-stdin", [request(9, .exec(exec), end: false),
                           data(9, .stdin, Array("hello\n".utf8)), data(9, .resize, Chunk.resize(rows: 50, cols: 132).data),
                           data(9, .stdin, Array("world\n".utf8), end: true),
                           Frame(streamID: 9, type: .windowUpdate, payload: WindowUpdate(increment: 65536).wireEncoded()),
                           response(9, .exec(.started(pid: 42)), end: false), data(9, .stdout, Array("hello\n".utf8)),
                           data(9, .stderr, [0xff, 0x00, 0x1b]),
                           response(9, .exec(.exit(ExitStatus(exitCode: 0, finishedUnix: 1_700_000_000))))])

        add("create-network", [request(1, .createNetwork(name: "net1", subnet: "10.88.0.0/24"))])
        add("list-networks", [request(1, .listNetworks)])
        add("inspect-network", [request(1, .inspectNetwork("net1"))])
        add("remove-network", [request(1, .removeNetwork("net1"))])

        var pod = PodSpec()
        pod.name = "pod1"
        pod.hostname = "pod1"
        pod.ports = [PortMapping(hostPort: 8081, containerPort: 80)]
        pod.network = "net1"
        pod.share = ["net", "ipc", "uts", "pid"]
        pod.labels = ["team": "a"]
        pod.memoryBytes = 256 << 20
        pod.cpuMillis = 1000
        pod.sysctls = ["net.ipv4.ip_forward": "1"]
        pod.dns = ["8.8.8.8"]
        pod.extraHosts = [HostEntry(name: "gw", ip: "10.88.0.1")]
        add("create-pod", [request(1, .createPod(pod))])
        add("list-pods", [request(1, .listPods)])
        add("inspect-pod", [request(1, .inspectPod("pod1"))])
        add("start-pod", [request(1, .startPod("pod1"))])
        add("stop-pod", [request(1, .stopPod("pod1", timeout: 2))])
        add("remove-pod", [request(1, .removePod("pod1", force: false))])
        add("stats", [request(1, .stats(["web-1", "db"]))])

        // The agent's side and the connection-level frames.
        var helloResponse = HelloResponse()
        helloResponse.nodeName = "node-a"
        helloResponse.features = ["exec"]
        helloResponse.initialWindow = 1 << 20
        helloResponse.maxPayload = FrameHeader.maxPayload
        var container = Container()
        container.id = "0123456789ab"
        container.name = "web-1"
        container.spec = spec
        container.state = .exited
        container.exit = ExitStatus(exitCode: 137, signal: 9, finishedUnix: 1_700_000_100)
        container.network.ip = "10.88.0.5"
        add("responses", [response(1, .hello(helloResponse)),
                          response(3, .run(.started(container)), end: false),
                          response(3, .run(.exit(ExitStatus(exitCode: 1)))),
                          response(5, .inspectContainer(container)),
                          response(7, .error(BerthError(.notFound, "no container \"x\"", reason: "not_found")))])
        add("connection", [Frame(streamID: 0, type: .ping, payload: Ping(nonce: 0xdead_beef).wireEncoded()),
                           Frame(streamID: 0, type: .pong, payload: Ping(nonce: 0xdead_beef).wireEncoded()),
                           Frame(streamID: 11, type: .cancel, payload: Cancel(reason: BerthError(.cancelled, "bye")).wireEncoded()),
                           Frame(streamID: 0, type: .goAway,
                                 payload: GoAway(error: BerthError(.unavailable, "shutting down"), lastStreamID: 11).wireEncoded())])
        return seeds
    }
}
