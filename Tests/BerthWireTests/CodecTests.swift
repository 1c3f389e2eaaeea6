import BerthErrors
import Testing
@testable import BerthWire

/// Encodes `message` and decodes the bytes again.
private func roundTrip<M: WireMessage>(_ message: M) throws -> M {
    try M(wire: message.wireEncoded())
}

/// The error every type throws for a payload protobuf-c cannot parse.
private func malformed(_ name: String, _ count: Int) -> BerthError {
    BerthError(.invalidArgument, "malformed \(name) payload (\(count) bytes)", reason: BerthError.Reason.protocolViolation)
}

// MARK: - Fixtures with every field set

private let fullSpec: ContainerSpec = {
    var spec = ContainerSpec()
    spec.name = "web"
    spec.image = "busybox:latest"
    spec.rootfs = "/srv/rootfs/web"
    spec.args = ["sh", "-c", "echo 'héllo wörld' && sleep 1", ""]
    spec.env = ["PATH=/usr/bin:/bin", "EMOJI=🚢", "EMPTY="]
    spec.workingDir = "/var/www"
    spec.user = User(uid: 1000, gid: UInt32.max)
    spec.userSet = true
    spec.entrypoint = ["/bin/tini", "--"]
    spec.entrypointSet = true
    spec.hostname = "web-host"
    spec.autoRemove = true
    spec.labels = ["tier": "web", "owner": "ops team", "empty": ""]
    spec.restart = RestartPolicy(.onFailure, maxRetries: 5)
    spec.stopSignal = 3
    spec.stopTimeout = 30
    return spec
}()

private let fullContainer: Container = {
    var container = Container()
    container.id = "0123456789abcdef0123456789abcdef"
    container.name = "web"
    container.image = "busybox:latest"
    container.spec = fullSpec
    container.state = .exited
    container.pid = -42
    container.createdUnix = Int64.min
    container.startedUnix = Int64.max
    container.imageID = "sha256:" + String(repeating: "ab", count: 32)
    container.pidStartTime = 123_456_789
    container.restartCount = 4
    container.oomKilled = true
    container.monitorPid = 777
    container.monitorStartTime = 888
    container.stoppedByUser = true
    container.exit = ExitStatus(exitCode: 137, signal: 9, finishedUnix: 1_700_000_000)
    return container
}()

private let fullImage = Image(name: "busybox:latest", id: "sha256:" + String(repeating: "ab", count: 32),
                              sizeBytes: UInt64.max, createdUnix: -1)

private let fullHelloRequest: HelloRequest = {
    var hello = HelloRequest()
    hello.protocolVersion = 7
    hello.clientVersion = "9.9.9-test"
    hello.features = ["flow-control", "keepalive"]
    hello.keepaliveSeconds = 30
    return hello
}()

private let fullHelloResponse: HelloResponse = {
    var hello = HelloResponse()
    hello.protocolVersion = 7
    hello.agentVersion = "9.9.9-agent"
    hello.nodeName = "node-1"
    hello.features = ["flow-control"]
    hello.keepaliveSeconds = 15
    hello.initialWindow = 1 << 20
    hello.maxPayload = FrameHeader.maxPayload
    return hello
}()

private let fullInfo: InfoResponse = {
    var info = InfoResponse()
    info.hostname = "host"
    info.nodeName = "node-1"
    info.agentVersion = "0.1.0"
    info.imageLayers = 7
    info.imageLayersBytes = 1 << 33
    info.imageBlobsBytes = 12
    info.imageDownloadsBytes = 13
    info.containersBytes = 14
    info.kernel = "6.1.0-18-amd64"
    info.os = "Debian GNU/Linux 12 (bookworm)"
    info.architecture = "x86_64"
    info.cgroupLayout = "v2"
    info.cpus = 8
    info.memoryBytes = 16 << 30
    info.containers = 5
    info.containersRunning = 2
    info.containersStopped = 3
    info.images = 4
    info.stateDir = "/var/lib/berth"
    info.runDir = "/run/berth"
    return info
}()

let fullLogs: LogsRequest = {
    var logs = LogsRequest(container: "web")
    logs.follow = true
    logs.tail = 10
    logs.sinceUnixNano = 1_700_000_000_123_456_789
    logs.timestamps = true
    return logs
}()

let fullExec: ExecRequest = {
    var exec = ExecRequest(container: "web", args: ["sh", "-c", "echo hi"])
    exec.env = ["A=1", "B=two words"]
    exec.workingDir = "/tmp"
    exec.user = User(uid: 0, gid: 0)
    exec.tty = true
    exec.stdin = true
    exec.rows = 40
    exec.cols = 120
    return exec
}()

@Suite("Codec round trips")
struct CodecRoundTripTests {
    static let requests: [Request] = [
        .hello(fullHelloRequest), .hello(HelloRequest()),
        .info,
        .importImage(name: "busybox:latest"), .importImage(name: ""),
        .listImages,
        .createContainer(fullSpec), .createContainer(ContainerSpec()),
        .startContainer("web"), .startContainer(""),
        .run(fullSpec), .run(ContainerSpec()),
        .wait("0123abcd"), .wait(""),
        .listContainers(all: true, filters: ["status=running", "label=a=b"]), .listContainers(all: false, filters: []),
        .removeContainer("web", force: true), .removeContainer("", force: false),
        .stopContainer("web", timeout: 3), .stopContainer("", timeout: -1),
        .killContainer("web", signal: "SIGHUP"), .killContainer("", signal: ""),
        .restartContainer("web", timeout: 0), .restartContainer("web", timeout: -1),
        .inspectContainer("web"), .inspectContainer(""),
        .logs(fullLogs), .logs(LogsRequest(container: "")),
        .exec(fullExec), .exec(ExecRequest(container: "", args: [])),
        .loadImage(name: "team/app:v1"), .loadImage(name: ""),
        .pullImage(PullImageRequest(reference: "127.0.0.1:5000/a/b@sha256:00", username: "u", password: "p")),
        .pullImage(PullImageRequest(reference: "")),
        .inspectImage("busybox"), .removeImage("busybox", force: true), .removeImage("", force: false), .pruneImages,
    ]

    @Test("Request", arguments: requests)
    func request(_ request: Request) throws {
        #expect(try roundTrip(request) == request)
    }

    static let responses: [Response] = [
        .error(BerthError(.notFound, "container web not found", reason: "no_such_container")),
        .error(BerthError(.internal, "")),
        .hello(fullHelloResponse), .hello(HelloResponse()),
        .info(fullInfo), .info(InfoResponse()),
        .importImage(fullImage), .importImage(Image(name: "", id: "", sizeBytes: 0, createdUnix: 0)),
        .listImages([fullImage, Image(name: "alpine:3", id: "sha256:00", sizeBytes: 1, createdUnix: 2)]),
        .listImages([]),
        .createContainer(fullContainer), .createContainer(Container()),
        .startContainer(fullContainer), .startContainer(Container()),
        .run(.started(fullContainer)), .run(.started(Container())),
        .run(.exit(ExitStatus(exitCode: 1, signal: 0, finishedUnix: 5))), .run(.exit(ExitStatus(exitCode: 0))),
        .wait(ExitStatus(exitCode: -1, signal: 15, finishedUnix: Int64.max)), .wait(ExitStatus(exitCode: 0)),
        .listContainers([fullContainer, Container(), fullContainer]), .listContainers([]),
        .removeContainer(id: "0123456789abcdef"), .removeContainer(id: ""),
        .stopContainer(fullContainer), .restartContainer(fullContainer), .inspectContainer(fullContainer),
        .inspectContainer(Container()), .killContainer, .logs,
        .exec(.started(pid: 4242)), .exec(.started(pid: 0)), .exec(.exit(ExitStatus(exitCode: 130, signal: 2, finishedUnix: 9))),
        .loadImage([layeredImage, fullImage]), .loadImage([]),
        .pullImage(.progress(ImageProgress(id: "sha256:ab", status: "downloading", current: 5, total: 9))),
        .pullImage(.progress(ImageProgress(id: "", status: ""))), .pullImage(.image(layeredImage)),
        .inspectImage(layeredImage), .removeImage(untagged: ["a:b"], deleted: ["sha256:1", "sha256:2"]),
        .removeImage(untagged: [], deleted: []), .pruneImages(deleted: ["sha256:1"], reclaimedBytes: 1 << 40),
        .pruneImages(deleted: [], reclaimedBytes: 0),
    ]

    static let layeredImage: Image = {
        var i = Image(name: "127.0.0.1:5000/team/app:v1", id: "sha256:82", sizeBytes: 3, createdUnix: 4)
        i.config.entrypoint = ["/bin/sh", "-c"]
        i.config.cmd = ["echo hi"]
        i.config.env = ["PATH=/bin"]
        i.config.workingDir = "/work"
        i.config.user = "app:app"
        i.config.exposedPorts = ["80/tcp", "53/udp"]
        i.config.stopSignal = "SIGQUIT"
        i.config.labels = ["a": "b", "c": ""]
        i.layers = ["sha256:1", "sha256:2"]
        i.digest = "sha256:6f"
        i.os = "linux"
        i.architecture = "amd64"
        i.containers = ["0123"]
        return i
    }()

    @Test("Response", arguments: responses)
    func response(_ response: Response) throws {
        #expect(try roundTrip(response) == response)
    }

    @Test("every error code survives a Response")
    func errorCodes() throws {
        for number in Int32(1)...16 {
            let error = BerthError(BerthError.Code(rawValue: number), "code \(number)", reason: "r\(number)")
            let decoded = try roundTrip(Response.error(error))
            #expect(decoded == .error(error))
            guard case .error(let e) = decoded else { continue }
            #expect(e.code.rawValue == number)
        }
    }

    @Test("Chunk on every channel, empty and large")
    func chunk() throws {
        let large = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        for channel in [Channel.payload, .stdin, .stdout, .stderr] {
            for data in [[], [0], [0xff, 0x00, 0x7f], large] {
                let chunk = Chunk(channel: channel, data: data)
                #expect(try roundTrip(chunk) == chunk)
            }
        }
    }

    @Test("control frames: WindowUpdate, Ping, Cancel, GoAway")
    func controlFrames() throws {
        for increment in [UInt32(0), 1, 65_535, UInt32.max] {
            #expect(try roundTrip(WindowUpdate(increment: increment)) == WindowUpdate(increment: increment))
        }
        for nonce in [UInt64(0), 1, 0xdead_beef_cafe_f00d, UInt64.max] {
            #expect(try roundTrip(Ping(nonce: nonce)) == Ping(nonce: nonce))
        }
        let reason = BerthError(.cancelled, "the client went away", reason: "client_cancel")
        #expect(try roundTrip(Cancel(reason: reason)) == Cancel(reason: reason))
        #expect(try roundTrip(Cancel(reason: nil)) == Cancel(reason: nil))
        // An error with only defaults is still present on the wire, so it is not confused with nil.
        let empty = BerthError(.unknown, "")
        #expect(try roundTrip(Cancel(reason: empty)) == Cancel(reason: empty))
        let goAway = GoAway(error: BerthError(.unavailable, "agent shutting down", reason: "shutdown"),
                            lastStreamID: UInt32.max)
        #expect(try roundTrip(goAway) == goAway)
        let plainGoAway = GoAway(error: BerthError(.unknown, ""), lastStreamID: 0)
        #expect(try roundTrip(plainGoAway) == plainGoAway)
    }

    @Test("Container and Image, full and default")
    func containerAndImage() throws {
        #expect(try roundTrip(fullContainer) == fullContainer)
        #expect(try roundTrip(Container()) == Container())
        var exitedCleanly = Container()
        exitedCleanly.exit = ExitStatus(exitCode: 0)  // all-default, but present: must not read back as nil
        #expect(try roundTrip(exitedCleanly).exit == ExitStatus(exitCode: 0))
        for state in [ContainerState.unknown, .created, .running, .exited] {
            var container = Container()
            container.state = state
            #expect(try roundTrip(container).state == state)
        }
        #expect(try roundTrip(fullImage) == fullImage)
        let empty = Image(name: "", id: "", sizeBytes: 0, createdUnix: 0)
        #expect(try roundTrip(empty) == empty)
    }
}

@Suite("Codec wire format and bad input")
struct CodecWireTests {
    @Test("encodings match the protobuf wire format")
    func knownBytes() throws {
        #expect(Ping(nonce: 1).wireEncoded() == [0x08, 0x01])
        #expect(WindowUpdate(increment: 300).wireEncoded() == [0x08, 0xac, 0x02])
        #expect(Chunk(channel: .stdout, data: [0x61]).wireEncoded() == [0x08, 0x02, 0x12, 0x01, 0x61])
        #expect(Cancel(reason: nil).wireEncoded() == [])
        #expect(Request.info.wireEncoded() == [0x12, 0x00])
        #expect(Request.listContainers(all: true, filters: []).wireEncoded() == [0x4a, 0x02, 0x08, 0x01])
        // Defaults are left out; an empty payload is the default message.
        #expect(Ping(nonce: 0).wireEncoded() == [])
        #expect(try Ping(wire: []) == Ping(nonce: 0))
        #expect(try Chunk(wire: []) == Chunk(channel: .payload, data: []))
    }

    @Test("unknown fields are skipped")
    func unknownFields() throws {
        // Ping{nonce: 5} followed by field 15 (varint 1) and field 14 (bytes "hi").
        #expect(try Ping(wire: [0x08, 0x05, 0x78, 0x01, 0x72, 0x02, 0x68, 0x69]) == Ping(nonce: 5))
    }

    @Test("malformed bytes are INVALID_ARGUMENT for every message type")
    func malformedBytes() {
        let bytes: [UInt8] = [0xff, 0xff, 0xff]
        #expect(throws: malformed("Request", 3)) { try Request(wire: bytes) }
        #expect(throws: malformed("Response", 3)) { try Response(wire: bytes) }
        #expect(throws: malformed("Chunk", 3)) { try Chunk(wire: bytes) }
        #expect(throws: malformed("WindowUpdate", 3)) { try WindowUpdate(wire: bytes) }
        #expect(throws: malformed("Ping", 3)) { try Ping(wire: bytes) }
        #expect(throws: malformed("Cancel", 3)) { try Cancel(wire: bytes) }
        #expect(throws: malformed("GoAway", 3)) { try GoAway(wire: bytes) }
        #expect(throws: malformed("Container", 3)) { try Container(wire: bytes) }
        #expect(throws: malformed("Image", 3)) { try Image(wire: bytes) }
    }

    @Test("truncated encodings are malformed")
    func truncated() {
        let encoded = Response.listContainers([fullContainer]).wireEncoded()
        for length in [1, encoded.count / 2, encoded.count - 1] {
            let prefix = Array(encoded.prefix(length))
            #expect(throws: malformed("Response", length)) { try Response(wire: prefix) }
        }
        // A length-delimited field claiming more bytes than there are.
        #expect(throws: malformed("Chunk", 3)) { try Chunk(wire: [0x12, 0x05, 0x61]) }
    }

    @Test("a Request or Response with no oneof set is malformed")
    func emptyOneof() {
        #expect(throws: malformed("Request", 0)) { try Request(wire: []) }
        #expect(throws: malformed("Response", 0)) { try Response(wire: []) }
        // Only an unknown field: still no call.
        #expect(throws: malformed("Request", 2)) { try Request(wire: [0x78, 0x01]) }
        // Response{run: RunResponse{}}: a Run result without an event.
        #expect(throws: malformed("Response", 2)) { try Response(wire: [0x42, 0x00]) }
    }

    @Test("absent sub-messages read as defaults")
    func absentSubmessages() throws {
        // Request{create_container: {}} (no spec)
        #expect(try Request(wire: [0x2a, 0x00]) == .createContainer(ContainerSpec()))
        // Response{wait: {}} (no exit)
        #expect(try Response(wire: [0x4a, 0x00]) == .wait(ExitStatus(exitCode: 0)))
        // Response{error: {}}: code 0 (OK) is not an error code; it reads as UNKNOWN.
        #expect(try Response(wire: [0x0a, 0x00]) == .error(BerthError(.unknown, "")))
        // GoAway{last_stream_id: 3} without an error.
        #expect(try GoAway(wire: [0x10, 0x03]) == GoAway(error: BerthError(.unknown, ""), lastStreamID: 3))
    }

    @Test("unknown enum numbers")
    func unknownEnums() throws {
        // Chunk{channel: 7}
        #expect(throws: BerthError(.invalidArgument, "unknown channel 7 in Chunk payload",
                                   reason: BerthError.Reason.protocolViolation)) {
            try Chunk(wire: [0x08, 0x07])
        }
        // Container{state: 9}
        #expect(try Container(wire: [0x28, 0x09]).state == .unknown)
        // Response{error: {code: 99, message: "x"}}
        #expect(try Response(wire: [0x0a, 0x05, 0x08, 0x63, 0x12, 0x01, 0x78]) == .error(BerthError(.unknown, "x")))
    }
}
