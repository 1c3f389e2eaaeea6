import BerthErrors
import CBerthProto
import CProtobufC

// The mapping between the Swift message types (Messages.swift) and the protobuf-c structs
// generated from proto/berth/v1/berth.proto. This is the only file that touches those structs.
//
// Decoding: `berth__v1__*__unpack` builds a C tree that is read into Swift values and freed
// with `*__free_unpacked` before returning. proto3 semantics apply: an absent sub-message reads
// as its default value, except where the Swift type says otherwise (`Container.exit`,
// `Cancel.reason` are optional; a Request, Response or RunResponse must have its oneof set).
//
// Encoding: the C tree is built in an `Arena` that owns every string, array and struct it hands
// out, packed with `*__get_packed_size` + `*__pack`, and freed in one go.

// MARK: - WireMessage conformances

extension Request: WireMessage {
    /// Decodes a `berth.v1.Request`; a payload with no call set is malformed.
    public init(wire: [UInt8]) throws(BerthError) {
        self = try unpacked(wire, "Request", berth__v1__request__unpack, berth__v1__request__free_unpacked) {
            Request($0)
        }
    }

    /// The `berth.v1.Request` encoding.
    public func wireEncoded() -> [UInt8] {
        withArena { arena in
            packed(arena.request(self), berth__v1__request__get_packed_size, berth__v1__request__pack)
        }
    }
}

extension Response: WireMessage {
    /// Decodes a `berth.v1.Response`; a payload with no result set is malformed.
    public init(wire: [UInt8]) throws(BerthError) {
        self = try unpacked(wire, "Response", berth__v1__response__unpack, berth__v1__response__free_unpacked) {
            Response($0)
        }
    }

    /// The `berth.v1.Response` encoding.
    public func wireEncoded() -> [UInt8] {
        withArena { arena in
            packed(arena.response(self), berth__v1__response__get_packed_size, berth__v1__response__pack)
        }
    }
}

extension Chunk: WireMessage {
    /// Decodes a `berth.v1.Chunk`; an unknown channel number is INVALID_ARGUMENT.
    public init(wire: [UInt8]) throws(BerthError) {
        self = try unpacked(wire, "Chunk", berth__v1__chunk__unpack, berth__v1__chunk__free_unpacked) {
            (c: Berth__V1__Chunk) throws(BerthError) -> Chunk in
            Chunk(channel: try Channel(c.channel), data: bytes(c.data))
        }
    }

    /// The `berth.v1.Chunk` encoding.
    public func wireEncoded() -> [UInt8] {
        // The data is lent to protobuf-c for the duration of the pack instead of being copied.
        data.withUnsafeBufferPointer { data in
            var c = Berth__V1__Chunk()
            berth__v1__chunk__init(&c)
            c.channel = Berth__V1__Channel(rawValue: UInt32(bitPattern: channel.rawValue))
            c.data = ProtobufCBinaryData(len: data.count, data: UnsafeMutablePointer(mutating: data.baseAddress))
            return withUnsafePointer(to: c) {
                packed($0, berth__v1__chunk__get_packed_size, berth__v1__chunk__pack)
            }
        }
    }
}

extension WindowUpdate: WireMessage {
    /// Decodes a `berth.v1.WindowUpdate`.
    public init(wire: [UInt8]) throws(BerthError) {
        self = try unpacked(wire, "WindowUpdate", berth__v1__window_update__unpack,
                            berth__v1__window_update__free_unpacked) {
            WindowUpdate(increment: $0.increment)
        }
    }

    /// The `berth.v1.WindowUpdate` encoding.
    public func wireEncoded() -> [UInt8] {
        var c = Berth__V1__WindowUpdate()
        berth__v1__window_update__init(&c)
        c.increment = increment
        return withUnsafePointer(to: c) {
            packed($0, berth__v1__window_update__get_packed_size, berth__v1__window_update__pack)
        }
    }
}

extension Ping: WireMessage {
    /// Decodes a `berth.v1.Ping`.
    public init(wire: [UInt8]) throws(BerthError) {
        self = try unpacked(wire, "Ping", berth__v1__ping__unpack, berth__v1__ping__free_unpacked) {
            Ping(nonce: $0.nonce)
        }
    }

    /// The `berth.v1.Ping` encoding.
    public func wireEncoded() -> [UInt8] {
        var c = Berth__V1__Ping()
        berth__v1__ping__init(&c)
        c.nonce = nonce
        return withUnsafePointer(to: c) { packed($0, berth__v1__ping__get_packed_size, berth__v1__ping__pack) }
    }
}

extension Cancel: WireMessage {
    /// Decodes a `berth.v1.Cancel`; an absent `reason` reads as `nil`.
    public init(wire: [UInt8]) throws(BerthError) {
        self = try unpacked(wire, "Cancel", berth__v1__cancel__unpack, berth__v1__cancel__free_unpacked) {
            Cancel(reason: $0.reason.map { BerthError($0.pointee) })
        }
    }

    /// The `berth.v1.Cancel` encoding; a `nil` reason is left out.
    public func wireEncoded() -> [UInt8] {
        withArena { arena in
            let c: UnsafeMutablePointer<Berth__V1__Cancel> = arena.message(berth__v1__cancel__init)
            c.pointee.reason = reason.map(arena.error)
            return packed(c, berth__v1__cancel__get_packed_size, berth__v1__cancel__pack)
        }
    }
}

extension GoAway: WireMessage {
    /// Decodes a `berth.v1.GoAway`; an absent `error` reads as code UNKNOWN with an empty message.
    public init(wire: [UInt8]) throws(BerthError) {
        self = try unpacked(wire, "GoAway", berth__v1__go_away__unpack, berth__v1__go_away__free_unpacked) {
            GoAway(error: BerthError($0.error), lastStreamID: $0.last_stream_id)
        }
    }

    /// The `berth.v1.GoAway` encoding.
    public func wireEncoded() -> [UInt8] {
        withArena { arena in
            let c: UnsafeMutablePointer<Berth__V1__GoAway> = arena.message(berth__v1__go_away__init)
            c.pointee.error = arena.error(error)
            c.pointee.last_stream_id = lastStreamID
            return packed(c, berth__v1__go_away__get_packed_size, berth__v1__go_away__pack)
        }
    }
}

extension Container: WireMessage {
    /// Decodes a `berth.v1.Container`; an unknown state number reads as `.unknown`.
    public init(wire: [UInt8]) throws(BerthError) {
        self = try unpacked(wire, "Container", berth__v1__container__unpack, berth__v1__container__free_unpacked) {
            Container($0)
        }
    }

    /// The `berth.v1.Container` encoding.
    public func wireEncoded() -> [UInt8] {
        withArena { arena in
            packed(arena.container(self), berth__v1__container__get_packed_size, berth__v1__container__pack)
        }
    }
}

extension Image: WireMessage {
    /// Decodes a `berth.v1.Image`.
    public init(wire: [UInt8]) throws(BerthError) {
        self = try unpacked(wire, "Image", berth__v1__image__unpack, berth__v1__image__free_unpacked) {
            Image($0)
        }
    }

    /// The `berth.v1.Image` encoding.
    public func wireEncoded() -> [UInt8] {
        withArena { arena in
            packed(arena.image(self), berth__v1__image__get_packed_size, berth__v1__image__pack)
        }
    }
}

// MARK: - Unpacking and packing

/// The error for a payload protobuf-c cannot parse, or one that parses to no valid message.
private func malformed(_ name: String, _ count: Int) -> BerthError {
    BerthError(.invalidArgument, "malformed \(name) payload (\(count) bytes)",
               reason: BerthError.Reason.protocolViolation)
}

/// Unpacks `wire` with a generated `unpack`, reads the C message with `read` (nil: malformed)
/// and frees it with the matching `freeUnpacked`.
private func unpacked<M, R>(
    _ wire: [UInt8], _ name: String,
    _ unpack: (UnsafeMutablePointer<ProtobufCAllocator>?, Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<M>?,
    _ freeUnpacked: (UnsafeMutablePointer<M>?, UnsafeMutablePointer<ProtobufCAllocator>?) -> Void,
    _ read: (M) throws(BerthError) -> R?
) throws(BerthError) -> R {
    let message = wire.withUnsafeBufferPointer { unpack(nil, $0.count, $0.baseAddress) }
    guard let message else { throw malformed(name, wire.count) }
    defer { freeUnpacked(message, nil) }
    guard let value = try read(message.pointee) else { throw malformed(name, wire.count) }
    return value
}

/// Packs a C message with its generated `getPackedSize` and `pack` into a new array.
private func packed<M>(
    _ message: UnsafePointer<M>,
    _ getPackedSize: (UnsafePointer<M>?) -> Int,
    _ pack: (UnsafePointer<M>?, UnsafeMutablePointer<UInt8>?) -> Int
) -> [UInt8] {
    let size = getPackedSize(message)
    guard size > 0 else { return [] }
    return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
        count = pack(message, buffer.baseAddress)
    }
}

/// Runs `body` with a fresh arena and frees everything it allocated afterwards.
private func withArena<R>(_ body: (Arena) -> R) -> R {
    let arena = Arena()
    defer { arena.freeAll() }
    return body(arena)
}

/// Owns the C memory (structs, strings, pointer arrays) of one message tree while it is packed.
private final class Arena {
    private var allocations: [UnsafeMutableRawPointer] = []

    /// Frees every allocation; called once, by `withArena`.
    func freeAll() {
        for allocation in allocations { allocation.deallocate() }
        allocations = []
    }

    private func allocate<T>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        let pointer = UnsafeMutablePointer<T>.allocate(capacity: count)
        allocations.append(UnsafeMutableRawPointer(pointer))
        return pointer
    }

    /// A C message initialised by its generated `*__init` (defaults, descriptor).
    func message<M>(_ initialize: (UnsafeMutablePointer<M>?) -> Void) -> UnsafeMutablePointer<M> {
        let pointer = allocate(M.self, count: 1)
        initialize(pointer)
        return pointer
    }

    /// A NUL-terminated copy of `string` (an embedded NUL ends it, as in any C string).
    func cString(_ string: String) -> UnsafeMutablePointer<CChar> {
        let utf8 = string.utf8
        let pointer = allocate(CChar.self, count: utf8.count + 1)
        var index = 0
        for byte in utf8 {
            pointer[index] = CChar(bitPattern: byte)
            index += 1
        }
        pointer[index] = 0
        return pointer
    }

    /// A C array of `elements` converted by `convert`, with its count; `nil` when empty.
    func cArray<E, C>(_ elements: [E], _ convert: (E) -> C) -> (Int, UnsafeMutablePointer<C?>?) {
        guard !elements.isEmpty else { return (0, nil) }
        let pointer = allocate(C?.self, count: elements.count)
        for (index, element) in elements.enumerated() {
            (pointer + index).initialize(to: convert(element))
        }
        return (elements.count, pointer)
    }

    /// A C string array, with its count.
    func cStrings(_ strings: [String]) -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) {
        cArray(strings, cString)
    }
}

// MARK: - Scalars

/// Reads a C string field; protobuf-c never leaves one NULL, but an absent one reads as "".
private func string(_ pointer: UnsafePointer<CChar>?) -> String {
    pointer.map { String(cString: $0) } ?? ""
}

/// Reads a repeated string field.
private func strings(_ count: Int, _ pointer: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> [String] {
    guard let pointer else { return [] }
    return (0..<count).map { string(pointer[$0]) }
}

/// Reads a repeated message field, skipping NULL entries (protobuf-c never writes any).
private func messages<M, R>(_ count: Int, _ pointer: UnsafeMutablePointer<UnsafeMutablePointer<M>?>?,
                            _ read: (M) -> R) -> [R] {
    guard let pointer else { return [] }
    return (0..<count).compactMap { pointer[$0].map { read($0.pointee) } }
}

/// Reads a bytes field.
private func bytes(_ data: ProtobufCBinaryData) -> [UInt8] {
    guard let base = data.data, data.len > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: base, count: data.len))
}

extension Channel {
    /// Reads a `berth.v1.Channel`; numbers this version does not know are INVALID_ARGUMENT.
    fileprivate init(_ c: Berth__V1__Channel) throws(BerthError) {
        let number = Int32(bitPattern: c.rawValue)
        guard let channel = Channel(rawValue: number) else {
            throw BerthError(.invalidArgument, "unknown channel \(number) in Chunk payload",
                             reason: BerthError.Reason.protocolViolation)
        }
        self = channel
    }
}

// MARK: - Errors

extension BerthError {
    /// Reads a `berth.v1.Error`; code numbers this version does not know become UNKNOWN.
    fileprivate init(_ c: Berth__V1__Error) {
        self.init(Code(rawValue: Int32(bitPattern: c.code.rawValue)), string(c.message), reason: string(c.reason))
    }

    /// Reads an optional `berth.v1.Error` field; an absent one is UNKNOWN with an empty message.
    fileprivate init(_ c: UnsafeMutablePointer<Berth__V1__Error>?) {
        self = c.map { BerthError($0.pointee) } ?? BerthError(.unknown, "")
    }
}

extension Arena {
    func error(_ error: BerthError) -> UnsafeMutablePointer<Berth__V1__Error> {
        let c: UnsafeMutablePointer<Berth__V1__Error> = message(berth__v1__error__init)
        c.pointee.code = Berth__V1__ErrorCode(rawValue: UInt32(bitPattern: error.code.rawValue))
        c.pointee.message = cString(error.message)
        c.pointee.reason = cString(error.reason)
        return c
    }
}

// MARK: - Images

extension Image {
    fileprivate init(_ c: Berth__V1__Image) {
        self.init(name: string(c.name), id: string(c.id), sizeBytes: c.size_bytes, createdUnix: c.created_unix)
        if let k = c.config?.pointee { config = ImageConfig(k) }
        layers = strings(c.n_layers, c.layers)
        digest = string(c.digest)
        os = string(c.os)
        architecture = string(c.architecture)
        containers = strings(c.n_containers, c.containers)
    }

    fileprivate init(_ c: UnsafeMutablePointer<Berth__V1__Image>?) {
        self = c.map { Image($0.pointee) } ?? Image(name: "", id: "", sizeBytes: 0, createdUnix: 0)
    }
}

extension Arena {
    func image(_ image: Image) -> UnsafeMutablePointer<Berth__V1__Image> {
        let c: UnsafeMutablePointer<Berth__V1__Image> = message(berth__v1__image__init)
        c.pointee.name = cString(image.name)
        c.pointee.id = cString(image.id)
        c.pointee.size_bytes = image.sizeBytes
        c.pointee.created_unix = image.createdUnix
        if image.config != ImageConfig() { c.pointee.config = imageConfig(image.config) }
        (c.pointee.n_layers, c.pointee.layers) = cStrings(image.layers)
        c.pointee.digest = cString(image.digest)
        c.pointee.os = cString(image.os)
        c.pointee.architecture = cString(image.architecture)
        (c.pointee.n_containers, c.pointee.containers) = cStrings(image.containers)
        return c
    }

    func imageConfig(_ k: ImageConfig) -> UnsafeMutablePointer<Berth__V1__ImageConfig> {
        let c: UnsafeMutablePointer<Berth__V1__ImageConfig> = message(berth__v1__image_config__init)
        (c.pointee.n_entrypoint, c.pointee.entrypoint) = cStrings(k.entrypoint)
        (c.pointee.n_cmd, c.pointee.cmd) = cStrings(k.cmd)
        (c.pointee.n_env, c.pointee.env) = cStrings(k.env)
        c.pointee.working_dir = cString(k.workingDir)
        c.pointee.user = cString(k.user)
        (c.pointee.n_exposed_ports, c.pointee.exposed_ports) = cStrings(k.exposedPorts)
        c.pointee.stop_signal = cString(k.stopSignal)
        (c.pointee.n_labels, c.pointee.labels) = cArray(k.labels.sorted { $0.key < $1.key }, label)
        return c
    }

    func imageProgress(_ p: ImageProgress) -> UnsafeMutablePointer<Berth__V1__ImageProgress> {
        let c: UnsafeMutablePointer<Berth__V1__ImageProgress> = message(berth__v1__image_progress__init)
        c.pointee.id = cString(p.id)
        c.pointee.status = cString(p.status)
        c.pointee.current = p.current
        c.pointee.total = p.total
        return c
    }
}

extension ImageConfig {
    fileprivate init(_ c: Berth__V1__ImageConfig) {
        self.init()
        entrypoint = strings(c.n_entrypoint, c.entrypoint)
        cmd = strings(c.n_cmd, c.cmd)
        env = strings(c.n_env, c.env)
        workingDir = string(c.working_dir)
        user = string(c.user)
        exposedPorts = strings(c.n_exposed_ports, c.exposed_ports)
        stopSignal = string(c.stop_signal)
        labels = labelMap(c.n_labels, c.labels)
    }
}

// MARK: - Containers

extension User {
    fileprivate init(_ c: UnsafeMutablePointer<Berth__V1__User>?) {
        self = c.map { User(uid: $0.pointee.uid, gid: $0.pointee.gid) } ?? User()
    }
}

extension ContainerSpec {
    fileprivate init(_ c: Berth__V1__ContainerSpec) {
        self.init()
        name = string(c.name)
        image = string(c.image)
        rootfs = string(c.rootfs)
        args = strings(c.n_args, c.args)
        env = strings(c.n_env, c.env)
        workingDir = string(c.working_dir)
        user = User(c.user)
        hostname = string(c.hostname)
        autoRemove = c.auto_remove != 0
        for label in messages(c.n_labels, c.labels, { (l: Berth__V1__Label) in (string(l.key), string(l.value)) }) {
            labels[label.0] = label.1
        }
        if let r = c.restart?.pointee {
            restart = RestartPolicy(RestartPolicy.Kind(rawValue: string(r.name)) ?? .no, maxRetries: r.max_retries)
        }
        stopSignal = c.stop_signal
        stopTimeout = c.stop_timeout
        network = string(c.network)
        ports = messages(c.n_ports, c.ports) { (p: Berth__V1__PortMapping) in
            PortMapping(hostIP: string(p.host_ip), hostPort: p.host_port, containerPort: p.container_port,
                        proto: PortMapping.Proto(rawValue: string(p.protocol)) ?? .tcp)
        }
        dns = strings(c.n_dns, c.dns)
        extraHosts = messages(c.n_extra_hosts, c.extra_hosts) { (h: Berth__V1__HostEntry) in
            HostEntry(name: string(h.name), ip: string(h.ip))
        }
        pod = string(c.pod)
        if let r = c.resources?.pointee {
            resources.memoryBytes = r.memory_bytes
            resources.memorySwapBytes = r.memory_swap_bytes
            resources.cpuMillis = r.cpu_millis
            resources.cpuShares = r.cpu_shares
            resources.pidsLimit = r.pids_limit
            resources.cpusetCpus = string(r.cpuset_cpus)
        }
        capAdd = strings(c.n_cap_add, c.cap_add)
        capDrop = strings(c.n_cap_drop, c.cap_drop)
        privileged = c.privileged != 0
        seccomp = string(c.seccomp)
        allowNewPrivileges = c.allow_new_privileges != 0
        readOnly = c.read_only != 0
        mounts = messages(c.n_mounts, c.mounts) { (m: Berth__V1__Mount) in
            Mount(kind: Mount.Kind(rawValue: string(m.type)) ?? .bind, source: string(m.source), target: string(m.target),
                  readOnly: m.read_only != 0, options: string(m.options))
        }
        userSet = c.user_set != 0
        entrypoint = strings(c.n_entrypoint, c.entrypoint)
        entrypointSet = c.entrypoint_set != 0
    }

    fileprivate init(_ c: UnsafeMutablePointer<Berth__V1__ContainerSpec>?) {
        self = c.map { ContainerSpec($0.pointee) } ?? ContainerSpec()
    }
}

extension ExitStatus {
    fileprivate init(_ c: Berth__V1__ExitStatus) {
        self.init(exitCode: c.exit_code, signal: c.signal, finishedUnix: c.finished_unix)
    }

    fileprivate init(_ c: UnsafeMutablePointer<Berth__V1__ExitStatus>?) {
        self = c.map { ExitStatus($0.pointee) } ?? ExitStatus(exitCode: 0)
    }
}

extension Container {
    fileprivate init(_ c: Berth__V1__Container) {
        self.init()
        id = string(c.id)
        name = string(c.name)
        image = string(c.image)
        spec = ContainerSpec(c.spec)
        state = ContainerState(rawValue: Int32(bitPattern: c.state.rawValue)) ?? .unknown
        pid = c.pid
        createdUnix = c.created_unix
        startedUnix = c.started_unix
        exit = c.exit.map { ExitStatus($0.pointee) }
        imageID = string(c.image_id)
        pidStartTime = c.pid_start_time
        restartCount = c.restart_count
        oomKilled = c.oom_killed != 0
        monitorPid = c.monitor_pid
        monitorStartTime = c.monitor_start_time
        stoppedByUser = c.stopped_by_user != 0
        network = NetworkAttachment(c.network)
        podID = string(c.pod_id)
        podName = string(c.pod_name)
        cgroup = string(c.cgroup)
    }

    fileprivate init(_ c: UnsafeMutablePointer<Berth__V1__Container>?) {
        self = c.map { Container($0.pointee) } ?? Container()
    }
}

extension Arena {
    func user(_ user: User) -> UnsafeMutablePointer<Berth__V1__User> {
        let c: UnsafeMutablePointer<Berth__V1__User> = message(berth__v1__user__init)
        c.pointee.uid = user.uid
        c.pointee.gid = user.gid
        return c
    }

    func spec(_ spec: ContainerSpec) -> UnsafeMutablePointer<Berth__V1__ContainerSpec> {
        let c: UnsafeMutablePointer<Berth__V1__ContainerSpec> = message(berth__v1__container_spec__init)
        c.pointee.name = cString(spec.name)
        c.pointee.image = cString(spec.image)
        c.pointee.rootfs = cString(spec.rootfs)
        (c.pointee.n_args, c.pointee.args) = cStrings(spec.args)
        (c.pointee.n_env, c.pointee.env) = cStrings(spec.env)
        c.pointee.working_dir = cString(spec.workingDir)
        c.pointee.user = user(spec.user)
        c.pointee.hostname = cString(spec.hostname)
        c.pointee.auto_remove = spec.autoRemove ? 1 : 0
        (c.pointee.n_labels, c.pointee.labels) = cArray(spec.labels.sorted { $0.key < $1.key }) { label in
            let l: UnsafeMutablePointer<Berth__V1__Label> = message(berth__v1__label__init)
            l.pointee.key = cString(label.key)
            l.pointee.value = cString(label.value)
            return l
        }
        if spec.restart != RestartPolicy() {
            let r: UnsafeMutablePointer<Berth__V1__RestartPolicy> = message(berth__v1__restart_policy__init)
            r.pointee.name = cString(spec.restart.kind.rawValue)
            r.pointee.max_retries = spec.restart.maxRetries
            c.pointee.restart = r
        }
        c.pointee.stop_signal = spec.stopSignal
        c.pointee.stop_timeout = spec.stopTimeout
        c.pointee.network = cString(spec.network)
        (c.pointee.n_ports, c.pointee.ports) = cArray(spec.ports) { port in
            let m: UnsafeMutablePointer<Berth__V1__PortMapping> = message(berth__v1__port_mapping__init)
            m.pointee.host_ip = cString(port.hostIP)
            m.pointee.host_port = port.hostPort
            m.pointee.container_port = port.containerPort
            m.pointee.protocol = cString(port.proto.rawValue)
            return m
        }
        (c.pointee.n_dns, c.pointee.dns) = cStrings(spec.dns)
        (c.pointee.n_extra_hosts, c.pointee.extra_hosts) = cArray(spec.extraHosts) { entry in
            let m: UnsafeMutablePointer<Berth__V1__HostEntry> = message(berth__v1__host_entry__init)
            m.pointee.name = cString(entry.name)
            m.pointee.ip = cString(entry.ip)
            return m
        }
        c.pointee.pod = cString(spec.pod)
        if spec.resources != Resources() {
            let r: UnsafeMutablePointer<Berth__V1__Resources> = message(berth__v1__resources__init)
            r.pointee.memory_bytes = spec.resources.memoryBytes
            r.pointee.memory_swap_bytes = spec.resources.memorySwapBytes
            r.pointee.cpu_millis = spec.resources.cpuMillis
            r.pointee.cpu_shares = spec.resources.cpuShares
            r.pointee.pids_limit = spec.resources.pidsLimit
            r.pointee.cpuset_cpus = cString(spec.resources.cpusetCpus)
            c.pointee.resources = r
        }
        (c.pointee.n_cap_add, c.pointee.cap_add) = cStrings(spec.capAdd)
        (c.pointee.n_cap_drop, c.pointee.cap_drop) = cStrings(spec.capDrop)
        c.pointee.privileged = spec.privileged ? 1 : 0
        c.pointee.seccomp = cString(spec.seccomp)
        c.pointee.allow_new_privileges = spec.allowNewPrivileges ? 1 : 0
        c.pointee.read_only = spec.readOnly ? 1 : 0
        (c.pointee.n_mounts, c.pointee.mounts) = cArray(spec.mounts) { mount in
            let m: UnsafeMutablePointer<Berth__V1__Mount> = message(berth__v1__mount__init)
            m.pointee.type = cString(mount.kind.rawValue)
            m.pointee.source = cString(mount.source)
            m.pointee.target = cString(mount.target)
            m.pointee.read_only = mount.readOnly ? 1 : 0
            m.pointee.options = cString(mount.options)
            return m
        }
        c.pointee.user_set = spec.userSet ? 1 : 0
        (c.pointee.n_entrypoint, c.pointee.entrypoint) = cStrings(spec.entrypoint)
        c.pointee.entrypoint_set = spec.entrypointSet ? 1 : 0
        return c
    }

    func exitStatus(_ exit: ExitStatus) -> UnsafeMutablePointer<Berth__V1__ExitStatus> {
        let c: UnsafeMutablePointer<Berth__V1__ExitStatus> = message(berth__v1__exit_status__init)
        c.pointee.exit_code = exit.exitCode
        c.pointee.signal = exit.signal
        c.pointee.finished_unix = exit.finishedUnix
        return c
    }

    func container(_ container: Container) -> UnsafeMutablePointer<Berth__V1__Container> {
        let c: UnsafeMutablePointer<Berth__V1__Container> = message(berth__v1__container__init)
        c.pointee.id = cString(container.id)
        c.pointee.name = cString(container.name)
        c.pointee.image = cString(container.image)
        c.pointee.spec = spec(container.spec)
        c.pointee.state = Berth__V1__ContainerState(rawValue: UInt32(bitPattern: container.state.rawValue))
        c.pointee.pid = container.pid
        c.pointee.created_unix = container.createdUnix
        c.pointee.started_unix = container.startedUnix
        c.pointee.exit = container.exit.map(exitStatus)
        c.pointee.image_id = cString(container.imageID)
        c.pointee.pid_start_time = container.pidStartTime
        c.pointee.restart_count = container.restartCount
        c.pointee.oom_killed = container.oomKilled ? 1 : 0
        c.pointee.monitor_pid = container.monitorPid
        c.pointee.monitor_start_time = container.monitorStartTime
        c.pointee.stopped_by_user = container.stoppedByUser ? 1 : 0
        if container.network != NetworkAttachment() { c.pointee.network = networkAttachment(container.network) }
        c.pointee.pod_id = cString(container.podID)
        c.pointee.pod_name = cString(container.podName)
        c.pointee.cgroup = cString(container.cgroup)
        return c
    }
}

// MARK: - Networks

extension NetworkAttachment {
    fileprivate init(_ c: UnsafeMutablePointer<Berth__V1__NetworkAttachment>?) {
        self.init()
        guard let c = c?.pointee else { return }
        network = string(c.network)
        ip = string(c.ip)
        prefixLength = c.prefix_length
        gateway = string(c.gateway)
        mac = string(c.mac)
        bridge = string(c.bridge)
        hostVeth = string(c.host_veth)
        netns = string(c.netns)
    }
}

extension Network {
    fileprivate init(_ c: Berth__V1__Network) {
        self.init()
        name = string(c.name)
        id = string(c.id)
        subnet = string(c.subnet)
        gateway = string(c.gateway)
        bridge = string(c.bridge)
        createdUnix = c.created_unix
        isDefault = c.is_default != 0
        endpoints = messages(c.n_endpoints, c.endpoints) { (e: Berth__V1__NetworkEndpoint) in
            NetworkEndpoint(containerID: string(e.container_id), name: string(e.name), ip: string(e.ip), mac: string(e.mac))
        }
    }

    fileprivate init(_ c: UnsafeMutablePointer<Berth__V1__Network>?) {
        self = c.map { Network($0.pointee) } ?? Network()
    }
}

extension Network: WireMessage {
    /// Decodes a `berth.v1.Network`.
    public init(wire: [UInt8]) throws(BerthError) {
        self = try unpacked(wire, "Network", berth__v1__network__unpack, berth__v1__network__free_unpacked) {
            Network($0)
        }
    }

    /// The `berth.v1.Network` encoding.
    public func wireEncoded() -> [UInt8] {
        withArena { arena in
            packed(arena.network(self), berth__v1__network__get_packed_size, berth__v1__network__pack)
        }
    }
}

extension Arena {
    func networkAttachment(_ a: NetworkAttachment) -> UnsafeMutablePointer<Berth__V1__NetworkAttachment> {
        let c: UnsafeMutablePointer<Berth__V1__NetworkAttachment> = message(berth__v1__network_attachment__init)
        c.pointee.network = cString(a.network)
        c.pointee.ip = cString(a.ip)
        c.pointee.prefix_length = a.prefixLength
        c.pointee.gateway = cString(a.gateway)
        c.pointee.mac = cString(a.mac)
        c.pointee.bridge = cString(a.bridge)
        c.pointee.host_veth = cString(a.hostVeth)
        c.pointee.netns = cString(a.netns)
        return c
    }

    func network(_ n: Network) -> UnsafeMutablePointer<Berth__V1__Network> {
        let c: UnsafeMutablePointer<Berth__V1__Network> = message(berth__v1__network__init)
        c.pointee.name = cString(n.name)
        c.pointee.id = cString(n.id)
        c.pointee.subnet = cString(n.subnet)
        c.pointee.gateway = cString(n.gateway)
        c.pointee.bridge = cString(n.bridge)
        c.pointee.created_unix = n.createdUnix
        c.pointee.is_default = n.isDefault ? 1 : 0
        (c.pointee.n_endpoints, c.pointee.endpoints) = cArray(n.endpoints) { e in
            let m: UnsafeMutablePointer<Berth__V1__NetworkEndpoint> = message(berth__v1__network_endpoint__init)
            m.pointee.container_id = cString(e.containerID)
            m.pointee.name = cString(e.name)
            m.pointee.ip = cString(e.ip)
            m.pointee.mac = cString(e.mac)
            return m
        }
        return c
    }
}

// MARK: - Pods

private func portMappings(_ n: Int, _ p: UnsafeMutablePointer<UnsafeMutablePointer<Berth__V1__PortMapping>?>?) -> [PortMapping] {
    messages(n, p) { (m: Berth__V1__PortMapping) in
        PortMapping(hostIP: string(m.host_ip), hostPort: m.host_port, containerPort: m.container_port,
                    proto: PortMapping.Proto(rawValue: string(m.protocol)) ?? .tcp)
    }
}

private func labelMap(_ n: Int, _ p: UnsafeMutablePointer<UnsafeMutablePointer<Berth__V1__Label>?>?) -> [String: String] {
    var out: [String: String] = [:]
    for (k, v) in messages(n, p, { (l: Berth__V1__Label) in (string(l.key), string(l.value)) }) { out[k] = v }
    return out
}

private func namespaceInfos(_ n: Int, _ p: UnsafeMutablePointer<UnsafeMutablePointer<Berth__V1__NamespaceInfo>?>?) -> [NamespaceInfo] {
    messages(n, p) { (m: Berth__V1__NamespaceInfo) in NamespaceInfo(type: string(m.type), path: string(m.path), inode: m.inode) }
}

extension PodSpec {
    fileprivate init(_ c: UnsafeMutablePointer<Berth__V1__PodSpec>?) {
        self.init()
        guard let c = c?.pointee else { return }
        name = string(c.name)
        hostname = string(c.hostname)
        ports = portMappings(c.n_ports, c.ports)
        network = string(c.network)
        share = strings(c.n_share, c.share)
        labels = labelMap(c.n_labels, c.labels)
        memoryBytes = c.memory_bytes
        cpuMillis = c.cpu_millis
        sysctls = labelMap(c.n_sysctls, c.sysctls)
        dns = strings(c.n_dns, c.dns)
        extraHosts = messages(c.n_extra_hosts, c.extra_hosts) { (h: Berth__V1__HostEntry) in HostEntry(name: string(h.name), ip: string(h.ip)) }
    }
}

extension Pod {
    fileprivate init(_ c: Berth__V1__Pod) {
        self.init()
        id = string(c.id)
        name = string(c.name)
        spec = PodSpec(c.spec)
        createdUnix = c.created_unix
        network = NetworkAttachment(c.network)
        namespaces = namespaceInfos(c.n_namespaces, c.namespaces)
        pausePid = c.pause_pid
        pauseStartTime = c.pause_start_time
        pauseMonitorPid = c.pause_monitor_pid
        pauseMonitorStartTime = c.pause_monitor_start_time
        containers = messages(c.n_containers, c.containers) { (m: Berth__V1__PodContainer) in
            PodContainer(id: string(m.id), name: string(m.name),
                         state: ContainerState(rawValue: Int32(bitPattern: m.state.rawValue)) ?? .unknown,
                         namespaces: namespaceInfos(m.n_namespaces, m.namespaces))
        }
        state = string(c.state)
    }

    fileprivate init(_ c: UnsafeMutablePointer<Berth__V1__Pod>?) {
        self = c.map { Pod($0.pointee) } ?? Pod()
    }
}

extension Pod: WireMessage {
    /// Decodes a `berth.v1.Pod`.
    public init(wire: [UInt8]) throws(BerthError) {
        self = try unpacked(wire, "Pod", berth__v1__pod__unpack, berth__v1__pod__free_unpacked) { Pod($0) }
    }

    /// The `berth.v1.Pod` encoding.
    public func wireEncoded() -> [UInt8] {
        withArena { arena in packed(arena.pod(self), berth__v1__pod__get_packed_size, berth__v1__pod__pack) }
    }
}

extension Arena {
    func portMapping(_ port: PortMapping) -> UnsafeMutablePointer<Berth__V1__PortMapping> {
        let m: UnsafeMutablePointer<Berth__V1__PortMapping> = message(berth__v1__port_mapping__init)
        m.pointee.host_ip = cString(port.hostIP)
        m.pointee.host_port = port.hostPort
        m.pointee.container_port = port.containerPort
        m.pointee.protocol = cString(port.proto.rawValue)
        return m
    }

    func label(_ kv: (key: String, value: String)) -> UnsafeMutablePointer<Berth__V1__Label> {
        let l: UnsafeMutablePointer<Berth__V1__Label> = message(berth__v1__label__init)
        l.pointee.key = cString(kv.key)
        l.pointee.value = cString(kv.value)
        return l
    }

    func hostEntry(_ entry: HostEntry) -> UnsafeMutablePointer<Berth__V1__HostEntry> {
        let m: UnsafeMutablePointer<Berth__V1__HostEntry> = message(berth__v1__host_entry__init)
        m.pointee.name = cString(entry.name)
        m.pointee.ip = cString(entry.ip)
        return m
    }

    func namespaceInfo(_ n: NamespaceInfo) -> UnsafeMutablePointer<Berth__V1__NamespaceInfo> {
        let m: UnsafeMutablePointer<Berth__V1__NamespaceInfo> = message(berth__v1__namespace_info__init)
        m.pointee.type = cString(n.type)
        m.pointee.path = cString(n.path)
        m.pointee.inode = n.inode
        return m
    }

    func podSpec(_ spec: PodSpec) -> UnsafeMutablePointer<Berth__V1__PodSpec> {
        let c: UnsafeMutablePointer<Berth__V1__PodSpec> = message(berth__v1__pod_spec__init)
        c.pointee.name = cString(spec.name)
        c.pointee.hostname = cString(spec.hostname)
        (c.pointee.n_ports, c.pointee.ports) = cArray(spec.ports, portMapping)
        c.pointee.network = cString(spec.network)
        (c.pointee.n_share, c.pointee.share) = cStrings(spec.share)
        (c.pointee.n_labels, c.pointee.labels) = cArray(spec.labels.sorted { $0.key < $1.key }, label)
        c.pointee.memory_bytes = spec.memoryBytes
        c.pointee.cpu_millis = spec.cpuMillis
        (c.pointee.n_sysctls, c.pointee.sysctls) = cArray(spec.sysctls.sorted { $0.key < $1.key }, label)
        (c.pointee.n_dns, c.pointee.dns) = cStrings(spec.dns)
        (c.pointee.n_extra_hosts, c.pointee.extra_hosts) = cArray(spec.extraHosts, hostEntry)
        return c
    }

    func pod(_ pod: Pod) -> UnsafeMutablePointer<Berth__V1__Pod> {
        let c: UnsafeMutablePointer<Berth__V1__Pod> = message(berth__v1__pod__init)
        c.pointee.id = cString(pod.id)
        c.pointee.name = cString(pod.name)
        c.pointee.spec = podSpec(pod.spec)
        c.pointee.created_unix = pod.createdUnix
        if pod.network != NetworkAttachment() { c.pointee.network = networkAttachment(pod.network) }
        (c.pointee.n_namespaces, c.pointee.namespaces) = cArray(pod.namespaces, namespaceInfo)
        c.pointee.pause_pid = pod.pausePid
        c.pointee.pause_start_time = pod.pauseStartTime
        c.pointee.pause_monitor_pid = pod.pauseMonitorPid
        c.pointee.pause_monitor_start_time = pod.pauseMonitorStartTime
        (c.pointee.n_containers, c.pointee.containers) = cArray(pod.containers) { pc in
            let m: UnsafeMutablePointer<Berth__V1__PodContainer> = message(berth__v1__pod_container__init)
            m.pointee.id = cString(pc.id)
            m.pointee.name = cString(pc.name)
            m.pointee.state = Berth__V1__ContainerState(rawValue: UInt32(bitPattern: pc.state.rawValue))
            (m.pointee.n_namespaces, m.pointee.namespaces) = cArray(pc.namespaces, namespaceInfo)
            return m
        }
        c.pointee.state = cString(pod.state)
        return c
    }
}

// MARK: - Hello and Info

extension HelloRequest {
    fileprivate init(_ c: Berth__V1__HelloRequest) {
        self.init()
        protocolVersion = c.protocol_version
        clientVersion = string(c.client_version)
        features = strings(c.n_features, c.features)
        keepaliveSeconds = c.keepalive_seconds
    }
}

extension HelloResponse {
    fileprivate init(_ c: Berth__V1__HelloResponse) {
        self.init()
        protocolVersion = c.protocol_version
        agentVersion = string(c.agent_version)
        nodeName = string(c.node_name)
        features = strings(c.n_features, c.features)
        keepaliveSeconds = c.keepalive_seconds
        initialWindow = c.initial_window
        maxPayload = c.max_payload
    }
}

extension InfoResponse {
    fileprivate init(_ c: Berth__V1__InfoResponse) {
        self.init()
        hostname = string(c.hostname)
        nodeName = string(c.node_name)
        agentVersion = string(c.agent_version)
        kernel = string(c.kernel)
        os = string(c.os)
        architecture = string(c.architecture)
        cgroupLayout = string(c.cgroup_layout)
        cpus = c.cpus
        memoryBytes = c.memory_bytes
        containers = c.containers
        containersRunning = c.containers_running
        containersStopped = c.containers_stopped
        images = c.images
        stateDir = string(c.state_dir)
        runDir = string(c.run_dir)
        networks = messages(c.n_networks, c.networks, Network.init)
        warnings = strings(c.n_warnings, c.warnings)
        imageLayers = c.image_layers
        imageLayersBytes = c.image_layers_bytes
        imageBlobsBytes = c.image_blobs_bytes
        imageDownloadsBytes = c.image_downloads_bytes
        containersBytes = c.containers_bytes
        memoryAvailableBytes = c.memory_available_bytes
        load1 = c.load1
        load5 = c.load5
        load15 = c.load15
        pods = c.pods
        uptimeSeconds = c.uptime_seconds
        protocolVersion = c.protocol_version
    }
}

extension Arena {
    func helloRequest(_ hello: HelloRequest) -> UnsafeMutablePointer<Berth__V1__HelloRequest> {
        let c: UnsafeMutablePointer<Berth__V1__HelloRequest> = message(berth__v1__hello_request__init)
        c.pointee.protocol_version = hello.protocolVersion
        c.pointee.client_version = cString(hello.clientVersion)
        (c.pointee.n_features, c.pointee.features) = cStrings(hello.features)
        c.pointee.keepalive_seconds = hello.keepaliveSeconds
        return c
    }

    func helloResponse(_ hello: HelloResponse) -> UnsafeMutablePointer<Berth__V1__HelloResponse> {
        let c: UnsafeMutablePointer<Berth__V1__HelloResponse> = message(berth__v1__hello_response__init)
        c.pointee.protocol_version = hello.protocolVersion
        c.pointee.agent_version = cString(hello.agentVersion)
        c.pointee.node_name = cString(hello.nodeName)
        (c.pointee.n_features, c.pointee.features) = cStrings(hello.features)
        c.pointee.keepalive_seconds = hello.keepaliveSeconds
        c.pointee.initial_window = hello.initialWindow
        c.pointee.max_payload = hello.maxPayload
        return c
    }

    func infoResponse(_ info: InfoResponse) -> UnsafeMutablePointer<Berth__V1__InfoResponse> {
        let c: UnsafeMutablePointer<Berth__V1__InfoResponse> = message(berth__v1__info_response__init)
        c.pointee.hostname = cString(info.hostname)
        c.pointee.node_name = cString(info.nodeName)
        c.pointee.agent_version = cString(info.agentVersion)
        c.pointee.kernel = cString(info.kernel)
        c.pointee.os = cString(info.os)
        c.pointee.architecture = cString(info.architecture)
        c.pointee.cgroup_layout = cString(info.cgroupLayout)
        c.pointee.cpus = info.cpus
        c.pointee.memory_bytes = info.memoryBytes
        c.pointee.containers = info.containers
        c.pointee.containers_running = info.containersRunning
        c.pointee.containers_stopped = info.containersStopped
        c.pointee.images = info.images
        c.pointee.state_dir = cString(info.stateDir)
        c.pointee.run_dir = cString(info.runDir)
        (c.pointee.n_networks, c.pointee.networks) = cArray(info.networks, network)
        (c.pointee.n_warnings, c.pointee.warnings) = cStrings(info.warnings)
        c.pointee.image_layers = info.imageLayers
        c.pointee.image_layers_bytes = info.imageLayersBytes
        c.pointee.image_blobs_bytes = info.imageBlobsBytes
        c.pointee.image_downloads_bytes = info.imageDownloadsBytes
        c.pointee.containers_bytes = info.containersBytes
        c.pointee.memory_available_bytes = info.memoryAvailableBytes
        c.pointee.load1 = info.load1
        c.pointee.load5 = info.load5
        c.pointee.load15 = info.load15
        c.pointee.pods = info.pods
        c.pointee.uptime_seconds = info.uptimeSeconds
        c.pointee.protocol_version = info.protocolVersion
        return c
    }
}

// MARK: - Request

extension Request {
    /// Reads the call; `nil` when none is set.
    fileprivate init?(_ c: Berth__V1__Request) {
        switch c.call_case {
        case BERTH__V1__REQUEST__CALL_HELLO:
            guard let hello = c.hello else { return nil }
            self = .hello(HelloRequest(hello.pointee))
        case BERTH__V1__REQUEST__CALL_INFO:
            self = .info
        case BERTH__V1__REQUEST__CALL_IMPORT_IMAGE:
            self = .importImage(name: string(c.import_image?.pointee.name))
        case BERTH__V1__REQUEST__CALL_LIST_IMAGES:
            self = .listImages
        case BERTH__V1__REQUEST__CALL_CREATE_CONTAINER:
            self = .createContainer(ContainerSpec(c.create_container?.pointee.spec))
        case BERTH__V1__REQUEST__CALL_START_CONTAINER:
            self = .startContainer(string(c.start_container?.pointee.container))
        case BERTH__V1__REQUEST__CALL_RUN:
            self = .run(ContainerSpec(c.run?.pointee.spec))
        case BERTH__V1__REQUEST__CALL_WAIT:
            self = .wait(string(c.wait?.pointee.container))
        case BERTH__V1__REQUEST__CALL_LIST_CONTAINERS:
            let list = c.list_containers?.pointee
            self = .listContainers(all: (list?.all ?? 0) != 0, filters: strings(list?.n_filters ?? 0, list?.filters))
        case BERTH__V1__REQUEST__CALL_REMOVE_CONTAINER:
            let remove = c.remove_container?.pointee
            self = .removeContainer(string(remove?.container), force: (remove?.force ?? 0) != 0)
        case BERTH__V1__REQUEST__CALL_STOP_CONTAINER:
            let stop = c.stop_container?.pointee
            self = .stopContainer(string(stop?.container), timeout: stop?.timeout_seconds ?? -1)
        case BERTH__V1__REQUEST__CALL_KILL_CONTAINER:
            let kill = c.kill_container?.pointee
            self = .killContainer(string(kill?.container), signal: string(kill?.signal))
        case BERTH__V1__REQUEST__CALL_RESTART_CONTAINER:
            let restart = c.restart_container?.pointee
            self = .restartContainer(string(restart?.container), timeout: restart?.timeout_seconds ?? -1)
        case BERTH__V1__REQUEST__CALL_INSPECT_CONTAINER:
            self = .inspectContainer(string(c.inspect_container?.pointee.container))
        case BERTH__V1__REQUEST__CALL_LOGS:
            guard let l = c.logs?.pointee else { return nil }
            var logs = LogsRequest(container: string(l.container))
            logs.follow = l.follow != 0
            logs.tail = l.tail < 0 ? nil : l.tail
            logs.sinceUnixNano = l.since_unix_nano
            logs.timestamps = l.timestamps != 0
            self = .logs(logs)
        case BERTH__V1__REQUEST__CALL_EXEC:
            guard let e = c.exec?.pointee else { return nil }
            var exec = ExecRequest(container: string(e.container), args: strings(e.n_args, e.args))
            exec.env = strings(e.n_env, e.env)
            exec.workingDir = string(e.working_dir)
            exec.user = e.has_user != 0 ? User(e.user) : nil
            exec.tty = e.tty != 0
            exec.stdin = e.stdin != 0
            exec.rows = e.rows
            exec.cols = e.cols
            self = .exec(exec)
        case BERTH__V1__REQUEST__CALL_CREATE_NETWORK:
            let m = c.create_network?.pointee
            self = .createNetwork(name: string(m?.name), subnet: string(m?.subnet))
        case BERTH__V1__REQUEST__CALL_LIST_NETWORKS:
            self = .listNetworks
        case BERTH__V1__REQUEST__CALL_INSPECT_NETWORK:
            self = .inspectNetwork(string(c.inspect_network?.pointee.network))
        case BERTH__V1__REQUEST__CALL_REMOVE_NETWORK:
            self = .removeNetwork(string(c.remove_network?.pointee.network))
        case BERTH__V1__REQUEST__CALL_CREATE_POD:
            self = .createPod(PodSpec(c.create_pod?.pointee.spec))
        case BERTH__V1__REQUEST__CALL_LIST_PODS:
            self = .listPods
        case BERTH__V1__REQUEST__CALL_INSPECT_POD:
            self = .inspectPod(string(c.inspect_pod?.pointee.pod))
        case BERTH__V1__REQUEST__CALL_START_POD:
            self = .startPod(string(c.start_pod?.pointee.pod))
        case BERTH__V1__REQUEST__CALL_STOP_POD:
            let m = c.stop_pod?.pointee
            self = .stopPod(string(m?.pod), timeout: m?.timeout_seconds ?? -1)
        case BERTH__V1__REQUEST__CALL_REMOVE_POD:
            let m = c.remove_pod?.pointee
            self = .removePod(string(m?.pod), force: (m?.force ?? 0) != 0)
        case BERTH__V1__REQUEST__CALL_STATS:
            self = .stats(strings(c.stats?.pointee.n_containers ?? 0, c.stats?.pointee.containers))
        // Images (issue 9)
        case BERTH__V1__REQUEST__CALL_LOAD_IMAGE:
            self = .loadImage(name: string(c.load_image?.pointee.name))
        case BERTH__V1__REQUEST__CALL_PULL_IMAGE:
            let m = c.pull_image?.pointee
            self = .pullImage(PullImageRequest(reference: string(m?.reference), username: string(m?.username),
                                               password: string(m?.password)))
        case BERTH__V1__REQUEST__CALL_INSPECT_IMAGE:
            self = .inspectImage(string(c.inspect_image?.pointee.image))
        case BERTH__V1__REQUEST__CALL_REMOVE_IMAGE:
            let m = c.remove_image?.pointee
            self = .removeImage(string(m?.image), force: (m?.force ?? 0) != 0)
        case BERTH__V1__REQUEST__CALL_PRUNE_IMAGES:
            self = .pruneImages
        case BERTH__V1__REQUEST__CALL_EVENTS:
            let m = c.events?.pointee
            self = .events(EventsRequest(sinceSeq: m?.since_seq ?? 0, sinceUnixNanos: m?.since_unix_nanos ?? 0,
                                         follow: (m?.follow ?? 0) != 0, fromStart: (m?.from_start ?? 0) != 0))
        default:
            return nil
        }
    }
}

extension Arena {
    func request(_ request: Request) -> UnsafeMutablePointer<Berth__V1__Request> {
        let c: UnsafeMutablePointer<Berth__V1__Request> = message(berth__v1__request__init)
        switch request {
        case .hello(let hello):
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_HELLO
            c.pointee.hello = helloRequest(hello)
        case .info:
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_INFO
            c.pointee.info = message(berth__v1__info_request__init)
        case .importImage(let name):
            let m: UnsafeMutablePointer<Berth__V1__ImportImageRequest> = message(berth__v1__import_image_request__init)
            m.pointee.name = cString(name)
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_IMPORT_IMAGE
            c.pointee.import_image = m
        case .listImages:
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_LIST_IMAGES
            c.pointee.list_images = message(berth__v1__list_images_request__init)
        case .createContainer(let spec):
            let m: UnsafeMutablePointer<Berth__V1__CreateContainerRequest> =
                message(berth__v1__create_container_request__init)
            m.pointee.spec = self.spec(spec)
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_CREATE_CONTAINER
            c.pointee.create_container = m
        case .startContainer(let container):
            let m: UnsafeMutablePointer<Berth__V1__StartContainerRequest> =
                message(berth__v1__start_container_request__init)
            m.pointee.container = cString(container)
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_START_CONTAINER
            c.pointee.start_container = m
        case .run(let spec):
            let m: UnsafeMutablePointer<Berth__V1__RunRequest> = message(berth__v1__run_request__init)
            m.pointee.spec = self.spec(spec)
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_RUN
            c.pointee.run = m
        case .wait(let container):
            let m: UnsafeMutablePointer<Berth__V1__WaitRequest> = message(berth__v1__wait_request__init)
            m.pointee.container = cString(container)
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_WAIT
            c.pointee.wait = m
        case .listContainers(let all, let filters):
            let m: UnsafeMutablePointer<Berth__V1__ListContainersRequest> =
                message(berth__v1__list_containers_request__init)
            m.pointee.all = all ? 1 : 0
            (m.pointee.n_filters, m.pointee.filters) = cStrings(filters)
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_LIST_CONTAINERS
            c.pointee.list_containers = m
        case .removeContainer(let container, let force):
            let m: UnsafeMutablePointer<Berth__V1__RemoveContainerRequest> =
                message(berth__v1__remove_container_request__init)
            m.pointee.container = cString(container)
            m.pointee.force = force ? 1 : 0
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_REMOVE_CONTAINER
            c.pointee.remove_container = m
        case .stopContainer(let container, let timeout):
            let m: UnsafeMutablePointer<Berth__V1__StopContainerRequest> = message(berth__v1__stop_container_request__init)
            m.pointee.container = cString(container)
            m.pointee.timeout_seconds = timeout
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_STOP_CONTAINER
            c.pointee.stop_container = m
        case .killContainer(let container, let signal):
            let m: UnsafeMutablePointer<Berth__V1__KillContainerRequest> = message(berth__v1__kill_container_request__init)
            m.pointee.container = cString(container)
            m.pointee.signal = cString(signal)
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_KILL_CONTAINER
            c.pointee.kill_container = m
        case .restartContainer(let container, let timeout):
            let m: UnsafeMutablePointer<Berth__V1__RestartContainerRequest> =
                message(berth__v1__restart_container_request__init)
            m.pointee.container = cString(container)
            m.pointee.timeout_seconds = timeout
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_RESTART_CONTAINER
            c.pointee.restart_container = m
        case .inspectContainer(let container):
            let m: UnsafeMutablePointer<Berth__V1__InspectContainerRequest> =
                message(berth__v1__inspect_container_request__init)
            m.pointee.container = cString(container)
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_INSPECT_CONTAINER
            c.pointee.inspect_container = m
        case .logs(let logs):
            let m: UnsafeMutablePointer<Berth__V1__LogsRequest> = message(berth__v1__logs_request__init)
            m.pointee.container = cString(logs.container)
            m.pointee.follow = logs.follow ? 1 : 0
            m.pointee.tail = logs.tail ?? -1
            m.pointee.since_unix_nano = logs.sinceUnixNano
            m.pointee.timestamps = logs.timestamps ? 1 : 0
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_LOGS
            c.pointee.logs = m
        case .exec(let exec):
            let m: UnsafeMutablePointer<Berth__V1__ExecRequest> = message(berth__v1__exec_request__init)
            m.pointee.container = cString(exec.container)
            (m.pointee.n_args, m.pointee.args) = cStrings(exec.args)
            (m.pointee.n_env, m.pointee.env) = cStrings(exec.env)
            m.pointee.working_dir = cString(exec.workingDir)
            if let u = exec.user {
                m.pointee.user = user(u)
                m.pointee.has_user = 1
            }
            m.pointee.tty = exec.tty ? 1 : 0
            m.pointee.stdin = exec.stdin ? 1 : 0
            m.pointee.rows = exec.rows
            m.pointee.cols = exec.cols
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_EXEC
            c.pointee.exec = m
        case .createNetwork(let name, let subnet):
            let m: UnsafeMutablePointer<Berth__V1__CreateNetworkRequest> = message(berth__v1__create_network_request__init)
            m.pointee.name = cString(name)
            m.pointee.subnet = cString(subnet)
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_CREATE_NETWORK
            c.pointee.create_network = m
        case .listNetworks:
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_LIST_NETWORKS
            c.pointee.list_networks = message(berth__v1__list_networks_request__init)
        case .inspectNetwork(let network):
            let m: UnsafeMutablePointer<Berth__V1__InspectNetworkRequest> = message(berth__v1__inspect_network_request__init)
            m.pointee.network = cString(network)
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_INSPECT_NETWORK
            c.pointee.inspect_network = m
        case .removeNetwork(let network):
            let m: UnsafeMutablePointer<Berth__V1__RemoveNetworkRequest> = message(berth__v1__remove_network_request__init)
            m.pointee.network = cString(network)
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_REMOVE_NETWORK
            c.pointee.remove_network = m
        case .createPod(let spec):
            let m: UnsafeMutablePointer<Berth__V1__CreatePodRequest> = message(berth__v1__create_pod_request__init)
            m.pointee.spec = podSpec(spec)
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_CREATE_POD
            c.pointee.create_pod = m
        case .listPods:
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_LIST_PODS
            c.pointee.list_pods = message(berth__v1__list_pods_request__init)
        case .inspectPod(let pod):
            let m: UnsafeMutablePointer<Berth__V1__InspectPodRequest> = message(berth__v1__inspect_pod_request__init)
            m.pointee.pod = cString(pod)
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_INSPECT_POD
            c.pointee.inspect_pod = m
        case .startPod(let pod):
            let m: UnsafeMutablePointer<Berth__V1__StartPodRequest> = message(berth__v1__start_pod_request__init)
            m.pointee.pod = cString(pod)
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_START_POD
            c.pointee.start_pod = m
        case .stopPod(let pod, let timeout):
            let m: UnsafeMutablePointer<Berth__V1__StopPodRequest> = message(berth__v1__stop_pod_request__init)
            m.pointee.pod = cString(pod)
            m.pointee.timeout_seconds = timeout
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_STOP_POD
            c.pointee.stop_pod = m
        case .removePod(let pod, let force):
            let m: UnsafeMutablePointer<Berth__V1__RemovePodRequest> = message(berth__v1__remove_pod_request__init)
            m.pointee.pod = cString(pod)
            m.pointee.force = force ? 1 : 0
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_REMOVE_POD
            c.pointee.remove_pod = m
        case .stats(let refs):
            let m: UnsafeMutablePointer<Berth__V1__StatsRequest> = message(berth__v1__stats_request__init)
            (m.pointee.n_containers, m.pointee.containers) = cStrings(refs)
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_STATS
            c.pointee.stats = m
        // Images (issue 9)
        case .loadImage(let name):
            let m: UnsafeMutablePointer<Berth__V1__LoadImageRequest> = message(berth__v1__load_image_request__init)
            m.pointee.name = cString(name)
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_LOAD_IMAGE
            c.pointee.load_image = m
        case .pullImage(let pull):
            let m: UnsafeMutablePointer<Berth__V1__PullImageRequest> = message(berth__v1__pull_image_request__init)
            m.pointee.reference = cString(pull.reference)
            m.pointee.username = cString(pull.username)
            m.pointee.password = cString(pull.password)
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_PULL_IMAGE
            c.pointee.pull_image = m
        case .inspectImage(let ref):
            let m: UnsafeMutablePointer<Berth__V1__InspectImageRequest> = message(berth__v1__inspect_image_request__init)
            m.pointee.image = cString(ref)
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_INSPECT_IMAGE
            c.pointee.inspect_image = m
        case .removeImage(let ref, let force):
            let m: UnsafeMutablePointer<Berth__V1__RemoveImageRequest> = message(berth__v1__remove_image_request__init)
            m.pointee.image = cString(ref)
            m.pointee.force = force ? 1 : 0
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_REMOVE_IMAGE
            c.pointee.remove_image = m
        case .pruneImages:
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_PRUNE_IMAGES
            c.pointee.prune_images = message(berth__v1__prune_images_request__init)
        case .events(let r):
            let m: UnsafeMutablePointer<Berth__V1__EventsRequest> = message(berth__v1__events_request__init)
            m.pointee.since_seq = r.sinceSeq
            m.pointee.since_unix_nanos = r.sinceUnixNanos
            m.pointee.follow = r.follow ? 1 : 0
            m.pointee.from_start = r.fromStart ? 1 : 0
            c.pointee.call_case = BERTH__V1__REQUEST__CALL_EVENTS
            c.pointee.events = m
        }
        return c
    }
}

// MARK: - Response

extension RunEvent {
    /// Reads the event; `nil` when none is set.
    fileprivate init?(_ c: Berth__V1__RunResponse) {
        switch c.event_case {
        case BERTH__V1__RUN_RESPONSE__EVENT_STARTED: self = .started(Container(c.started))
        case BERTH__V1__RUN_RESPONSE__EVENT_EXIT: self = .exit(ExitStatus(c.exit))
        default: return nil
        }
    }
}

extension Response {
    /// Reads the result; `nil` when none is set (or a Run result has no event).
    fileprivate init?(_ c: Berth__V1__Response) {
        switch c.result_case {
        case BERTH__V1__RESPONSE__RESULT_ERROR:
            self = .error(BerthError(c.error))
        case BERTH__V1__RESPONSE__RESULT_HELLO:
            guard let hello = c.hello else { return nil }
            self = .hello(HelloResponse(hello.pointee))
        case BERTH__V1__RESPONSE__RESULT_INFO:
            guard let info = c.info else { return nil }
            self = .info(InfoResponse(info.pointee))
        case BERTH__V1__RESPONSE__RESULT_IMPORT_IMAGE:
            self = .importImage(Image(c.import_image?.pointee.image))
        case BERTH__V1__RESPONSE__RESULT_LIST_IMAGES:
            let list = c.list_images?.pointee
            self = .listImages(messages(list?.n_images ?? 0, list?.images, Image.init))
        case BERTH__V1__RESPONSE__RESULT_CREATE_CONTAINER:
            self = .createContainer(Container(c.create_container?.pointee.container))
        case BERTH__V1__RESPONSE__RESULT_START_CONTAINER:
            self = .startContainer(Container(c.start_container?.pointee.container))
        case BERTH__V1__RESPONSE__RESULT_RUN:
            guard let run = c.run, let event = RunEvent(run.pointee) else { return nil }
            self = .run(event)
        case BERTH__V1__RESPONSE__RESULT_WAIT:
            self = .wait(ExitStatus(c.wait?.pointee.exit))
        case BERTH__V1__RESPONSE__RESULT_LIST_CONTAINERS:
            let list = c.list_containers?.pointee
            self = .listContainers(messages(list?.n_containers ?? 0, list?.containers, Container.init))
        case BERTH__V1__RESPONSE__RESULT_REMOVE_CONTAINER:
            self = .removeContainer(id: string(c.remove_container?.pointee.id))
        case BERTH__V1__RESPONSE__RESULT_STOP_CONTAINER:
            self = .stopContainer(Container(c.stop_container?.pointee.container))
        case BERTH__V1__RESPONSE__RESULT_KILL_CONTAINER:
            self = .killContainer
        case BERTH__V1__RESPONSE__RESULT_RESTART_CONTAINER:
            self = .restartContainer(Container(c.restart_container?.pointee.container))
        case BERTH__V1__RESPONSE__RESULT_INSPECT_CONTAINER:
            self = .inspectContainer(Container(c.inspect_container?.pointee.container))
        case BERTH__V1__RESPONSE__RESULT_LOGS:
            self = .logs
        case BERTH__V1__RESPONSE__RESULT_EXEC:
            guard let e = c.exec?.pointee else { return nil }
            switch e.event_case {
            case BERTH__V1__EXEC_RESPONSE__EVENT_STARTED: self = .exec(.started(pid: e.started?.pointee.pid ?? 0))
            case BERTH__V1__EXEC_RESPONSE__EVENT_EXIT: self = .exec(.exit(ExitStatus(e.exit)))
            default: return nil
            }
        case BERTH__V1__RESPONSE__RESULT_CREATE_NETWORK:
            self = .createNetwork(Network(c.create_network?.pointee.network))
        case BERTH__V1__RESPONSE__RESULT_LIST_NETWORKS:
            let list = c.list_networks?.pointee
            self = .listNetworks(messages(list?.n_networks ?? 0, list?.networks, Network.init))
        case BERTH__V1__RESPONSE__RESULT_INSPECT_NETWORK:
            self = .inspectNetwork(Network(c.inspect_network?.pointee.network))
        case BERTH__V1__RESPONSE__RESULT_REMOVE_NETWORK:
            self = .removeNetwork(name: string(c.remove_network?.pointee.name))
        case BERTH__V1__RESPONSE__RESULT_CREATE_POD:
            self = .createPod(Pod(c.create_pod?.pointee.pod))
        case BERTH__V1__RESPONSE__RESULT_LIST_PODS:
            let list = c.list_pods?.pointee
            self = .listPods(messages(list?.n_pods ?? 0, list?.pods, Pod.init))
        case BERTH__V1__RESPONSE__RESULT_INSPECT_POD:
            self = .inspectPod(Pod(c.inspect_pod?.pointee.pod))
        case BERTH__V1__RESPONSE__RESULT_START_POD:
            self = .startPod(Pod(c.start_pod?.pointee.pod))
        case BERTH__V1__RESPONSE__RESULT_STOP_POD:
            self = .stopPod(Pod(c.stop_pod?.pointee.pod))
        case BERTH__V1__RESPONSE__RESULT_REMOVE_POD:
            self = .removePod(id: string(c.remove_pod?.pointee.id))
        // Images (issue 9)
        case BERTH__V1__RESPONSE__RESULT_LOAD_IMAGE:
            let list = c.load_image?.pointee
            self = .loadImage(messages(list?.n_images ?? 0, list?.images, Image.init))
        case BERTH__V1__RESPONSE__RESULT_PULL_IMAGE:
            guard let pull = c.pull_image?.pointee else { return nil }
            switch pull.event_case {
            case BERTH__V1__PULL_IMAGE_RESPONSE__EVENT_PROGRESS:
                let p = pull.progress?.pointee
                self = .pullImage(.progress(ImageProgress(id: string(p?.id), status: string(p?.status),
                                                          current: p?.current ?? 0, total: p?.total ?? 0)))
            case BERTH__V1__PULL_IMAGE_RESPONSE__EVENT_IMAGE:
                self = .pullImage(.image(Image(pull.image)))
            default:
                return nil
            }
        case BERTH__V1__RESPONSE__RESULT_INSPECT_IMAGE:
            self = .inspectImage(Image(c.inspect_image?.pointee.image))
        case BERTH__V1__RESPONSE__RESULT_REMOVE_IMAGE:
            let m = c.remove_image?.pointee
            self = .removeImage(untagged: strings(m?.n_untagged ?? 0, m?.untagged), deleted: strings(m?.n_deleted ?? 0, m?.deleted))
        case BERTH__V1__RESPONSE__RESULT_PRUNE_IMAGES:
            let m = c.prune_images?.pointee
            self = .pruneImages(deleted: strings(m?.n_deleted ?? 0, m?.deleted), reclaimedBytes: m?.reclaimed_bytes ?? 0)
        case BERTH__V1__RESPONSE__RESULT_EVENTS:
            let m = c.events?.pointee
            self = .events(EventBatch(events: messages(m?.n_events ?? 0, m?.events, Event.init),
                                      oldestSeq: m?.oldest_seq ?? 0, lost: m?.lost ?? 0, position: m?.position ?? 0))
        case BERTH__V1__RESPONSE__RESULT_STATS:
            let list = c.stats?.pointee
            self = .stats(messages(list?.n_stats ?? 0, list?.stats) { (m: Berth__V1__ContainerStats) in
                var s = ContainerStats()
                s.id = string(m.id)
                s.name = string(m.name)
                s.cpuUsageNanos = m.cpu_usage_nanos
                s.memoryUsageBytes = m.memory_usage_bytes
                s.memoryLimitBytes = m.memory_limit_bytes
                s.pids = m.pids
                s.pidsLimit = m.pids_limit
                s.readUnixNano = m.read_unix_nano
                s.oomKills = m.oom_kills
                return s
            })
        default:
            return nil
        }
    }
}

extension Arena {
    func runResponse(_ event: RunEvent) -> UnsafeMutablePointer<Berth__V1__RunResponse> {
        let c: UnsafeMutablePointer<Berth__V1__RunResponse> = message(berth__v1__run_response__init)
        switch event {
        case .started(let container):
            c.pointee.event_case = BERTH__V1__RUN_RESPONSE__EVENT_STARTED
            c.pointee.started = self.container(container)
        case .exit(let exit):
            c.pointee.event_case = BERTH__V1__RUN_RESPONSE__EVENT_EXIT
            c.pointee.exit = exitStatus(exit)
        }
        return c
    }

    func response(_ response: Response) -> UnsafeMutablePointer<Berth__V1__Response> {
        let c: UnsafeMutablePointer<Berth__V1__Response> = message(berth__v1__response__init)
        switch response {
        case .error(let error):
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_ERROR
            c.pointee.error = self.error(error)
        case .hello(let hello):
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_HELLO
            c.pointee.hello = helloResponse(hello)
        case .info(let info):
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_INFO
            c.pointee.info = infoResponse(info)
        case .importImage(let image):
            let m: UnsafeMutablePointer<Berth__V1__ImportImageResponse> =
                message(berth__v1__import_image_response__init)
            m.pointee.image = self.image(image)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_IMPORT_IMAGE
            c.pointee.import_image = m
        case .listImages(let images):
            let m: UnsafeMutablePointer<Berth__V1__ListImagesResponse> = message(berth__v1__list_images_response__init)
            (m.pointee.n_images, m.pointee.images) = cArray(images, image)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_LIST_IMAGES
            c.pointee.list_images = m
        case .createContainer(let container):
            let m: UnsafeMutablePointer<Berth__V1__CreateContainerResponse> =
                message(berth__v1__create_container_response__init)
            m.pointee.container = self.container(container)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_CREATE_CONTAINER
            c.pointee.create_container = m
        case .startContainer(let container):
            let m: UnsafeMutablePointer<Berth__V1__StartContainerResponse> =
                message(berth__v1__start_container_response__init)
            m.pointee.container = self.container(container)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_START_CONTAINER
            c.pointee.start_container = m
        case .run(let event):
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_RUN
            c.pointee.run = runResponse(event)
        case .wait(let exit):
            let m: UnsafeMutablePointer<Berth__V1__WaitResponse> = message(berth__v1__wait_response__init)
            m.pointee.exit = exitStatus(exit)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_WAIT
            c.pointee.wait = m
        case .listContainers(let containers):
            let m: UnsafeMutablePointer<Berth__V1__ListContainersResponse> =
                message(berth__v1__list_containers_response__init)
            (m.pointee.n_containers, m.pointee.containers) = cArray(containers, self.container)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_LIST_CONTAINERS
            c.pointee.list_containers = m
        case .removeContainer(let id):
            let m: UnsafeMutablePointer<Berth__V1__RemoveContainerResponse> =
                message(berth__v1__remove_container_response__init)
            m.pointee.id = cString(id)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_REMOVE_CONTAINER
            c.pointee.remove_container = m
        case .stopContainer(let container):
            let m: UnsafeMutablePointer<Berth__V1__StopContainerResponse> = message(berth__v1__stop_container_response__init)
            m.pointee.container = self.container(container)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_STOP_CONTAINER
            c.pointee.stop_container = m
        case .killContainer:
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_KILL_CONTAINER
            c.pointee.kill_container = message(berth__v1__kill_container_response__init)
        case .restartContainer(let container):
            let m: UnsafeMutablePointer<Berth__V1__RestartContainerResponse> =
                message(berth__v1__restart_container_response__init)
            m.pointee.container = self.container(container)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_RESTART_CONTAINER
            c.pointee.restart_container = m
        case .inspectContainer(let container):
            let m: UnsafeMutablePointer<Berth__V1__InspectContainerResponse> =
                message(berth__v1__inspect_container_response__init)
            m.pointee.container = self.container(container)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_INSPECT_CONTAINER
            c.pointee.inspect_container = m
        case .logs:
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_LOGS
            c.pointee.logs = message(berth__v1__logs_response__init)
        case .exec(let event):
            let m: UnsafeMutablePointer<Berth__V1__ExecResponse> = message(berth__v1__exec_response__init)
            switch event {
            case .started(let pid):
                let started: UnsafeMutablePointer<Berth__V1__ExecStarted> = message(berth__v1__exec_started__init)
                started.pointee.pid = pid
                m.pointee.event_case = BERTH__V1__EXEC_RESPONSE__EVENT_STARTED
                m.pointee.started = started
            case .exit(let exit):
                m.pointee.event_case = BERTH__V1__EXEC_RESPONSE__EVENT_EXIT
                m.pointee.exit = exitStatus(exit)
            }
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_EXEC
            c.pointee.exec = m
        case .createNetwork(let n):
            let m: UnsafeMutablePointer<Berth__V1__CreateNetworkResponse> = message(berth__v1__create_network_response__init)
            m.pointee.network = network(n)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_CREATE_NETWORK
            c.pointee.create_network = m
        case .listNetworks(let networks):
            let m: UnsafeMutablePointer<Berth__V1__ListNetworksResponse> = message(berth__v1__list_networks_response__init)
            (m.pointee.n_networks, m.pointee.networks) = cArray(networks, network)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_LIST_NETWORKS
            c.pointee.list_networks = m
        case .inspectNetwork(let n):
            let m: UnsafeMutablePointer<Berth__V1__InspectNetworkResponse> = message(berth__v1__inspect_network_response__init)
            m.pointee.network = network(n)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_INSPECT_NETWORK
            c.pointee.inspect_network = m
        case .removeNetwork(let name):
            let m: UnsafeMutablePointer<Berth__V1__RemoveNetworkResponse> = message(berth__v1__remove_network_response__init)
            m.pointee.name = cString(name)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_REMOVE_NETWORK
            c.pointee.remove_network = m
        case .createPod(let p):
            let m: UnsafeMutablePointer<Berth__V1__CreatePodResponse> = message(berth__v1__create_pod_response__init)
            m.pointee.pod = pod(p)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_CREATE_POD
            c.pointee.create_pod = m
        case .listPods(let pods):
            let m: UnsafeMutablePointer<Berth__V1__ListPodsResponse> = message(berth__v1__list_pods_response__init)
            (m.pointee.n_pods, m.pointee.pods) = cArray(pods, pod)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_LIST_PODS
            c.pointee.list_pods = m
        case .inspectPod(let p):
            let m: UnsafeMutablePointer<Berth__V1__InspectPodResponse> = message(berth__v1__inspect_pod_response__init)
            m.pointee.pod = pod(p)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_INSPECT_POD
            c.pointee.inspect_pod = m
        case .startPod(let p):
            let m: UnsafeMutablePointer<Berth__V1__StartPodResponse> = message(berth__v1__start_pod_response__init)
            m.pointee.pod = pod(p)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_START_POD
            c.pointee.start_pod = m
        case .stopPod(let p):
            let m: UnsafeMutablePointer<Berth__V1__StopPodResponse> = message(berth__v1__stop_pod_response__init)
            m.pointee.pod = pod(p)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_STOP_POD
            c.pointee.stop_pod = m
        case .removePod(let id):
            let m: UnsafeMutablePointer<Berth__V1__RemovePodResponse> = message(berth__v1__remove_pod_response__init)
            m.pointee.id = cString(id)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_REMOVE_POD
            c.pointee.remove_pod = m
        case .stats(let stats):
            let m: UnsafeMutablePointer<Berth__V1__StatsResponse> = message(berth__v1__stats_response__init)
            (m.pointee.n_stats, m.pointee.stats) = cArray(stats) { s in
                let e: UnsafeMutablePointer<Berth__V1__ContainerStats> = message(berth__v1__container_stats__init)
                e.pointee.id = cString(s.id)
                e.pointee.name = cString(s.name)
                e.pointee.cpu_usage_nanos = s.cpuUsageNanos
                e.pointee.memory_usage_bytes = s.memoryUsageBytes
                e.pointee.memory_limit_bytes = s.memoryLimitBytes
                e.pointee.pids = s.pids
                e.pointee.pids_limit = s.pidsLimit
                e.pointee.read_unix_nano = s.readUnixNano
                e.pointee.oom_kills = s.oomKills
                return e
            }
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_STATS
            c.pointee.stats = m
        // Images (issue 9)
        case .loadImage(let images):
            let m: UnsafeMutablePointer<Berth__V1__LoadImageResponse> = message(berth__v1__load_image_response__init)
            (m.pointee.n_images, m.pointee.images) = cArray(images, image)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_LOAD_IMAGE
            c.pointee.load_image = m
        case .pullImage(let event):
            let m: UnsafeMutablePointer<Berth__V1__PullImageResponse> = message(berth__v1__pull_image_response__init)
            switch event {
            case .progress(let p):
                m.pointee.event_case = BERTH__V1__PULL_IMAGE_RESPONSE__EVENT_PROGRESS
                m.pointee.progress = imageProgress(p)
            case .image(let i):
                m.pointee.event_case = BERTH__V1__PULL_IMAGE_RESPONSE__EVENT_IMAGE
                m.pointee.image = image(i)
            }
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_PULL_IMAGE
            c.pointee.pull_image = m
        case .inspectImage(let i):
            let m: UnsafeMutablePointer<Berth__V1__InspectImageResponse> = message(berth__v1__inspect_image_response__init)
            m.pointee.image = image(i)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_INSPECT_IMAGE
            c.pointee.inspect_image = m
        case .removeImage(let untagged, let deleted):
            let m: UnsafeMutablePointer<Berth__V1__RemoveImageResponse> = message(berth__v1__remove_image_response__init)
            (m.pointee.n_untagged, m.pointee.untagged) = cStrings(untagged)
            (m.pointee.n_deleted, m.pointee.deleted) = cStrings(deleted)
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_REMOVE_IMAGE
            c.pointee.remove_image = m
        case .pruneImages(let deleted, let reclaimed):
            let m: UnsafeMutablePointer<Berth__V1__PruneImagesResponse> = message(berth__v1__prune_images_response__init)
            (m.pointee.n_deleted, m.pointee.deleted) = cStrings(deleted)
            m.pointee.reclaimed_bytes = reclaimed
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_PRUNE_IMAGES
            c.pointee.prune_images = m
        case .events(let batch):
            let m: UnsafeMutablePointer<Berth__V1__EventsResponse> = message(berth__v1__events_response__init)
            (m.pointee.n_events, m.pointee.events) = cArray(batch.events, event)
            m.pointee.oldest_seq = batch.oldestSeq
            m.pointee.lost = batch.lost
            m.pointee.position = batch.position
            c.pointee.result_case = BERTH__V1__RESPONSE__RESULT_EVENTS
            c.pointee.events = m
        }
        return c
    }
}

// MARK: - Events

extension Event {
    fileprivate init(_ c: Berth__V1__Event) {
        self.init()
        seq = c.seq
        timeUnixNanos = c.time_unix_nanos
        type = string(c.type)
        action = string(c.action)
        id = string(c.id)
        name = string(c.name)
        exitCode = c.exit_code
        attributes = labelMap(c.n_attributes, c.attributes)
    }
}

extension Arena {
    func event(_ e: Event) -> UnsafeMutablePointer<Berth__V1__Event> {
        let c: UnsafeMutablePointer<Berth__V1__Event> = message(berth__v1__event__init)
        c.pointee.seq = e.seq
        c.pointee.time_unix_nanos = e.timeUnixNanos
        c.pointee.type = cString(e.type)
        c.pointee.action = cString(e.action)
        c.pointee.id = cString(e.id)
        c.pointee.name = cString(e.name)
        c.pointee.exit_code = e.exitCode
        (c.pointee.n_attributes, c.pointee.attributes) = cArray(e.attributes.sorted { $0.key < $1.key }, label)
        return c
    }
}

extension Event: WireMessage {
    /// Decodes a `berth.v1.Event` (a record of the agent's journal file).
    public init(wire: [UInt8]) throws(BerthError) {
        self = try unpacked(wire, "Event", berth__v1__event__unpack, berth__v1__event__free_unpacked) { Event($0) }
    }

    /// The `berth.v1.Event` encoding.
    public func wireEncoded() -> [UInt8] {
        withArena { arena in packed(arena.event(self), berth__v1__event__get_packed_size, berth__v1__event__pack) }
    }
}
