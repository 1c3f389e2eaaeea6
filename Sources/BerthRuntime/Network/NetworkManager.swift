#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import BerthWire

/// What `--network` asks for.
enum NetworkMode: Sendable, Hashable {
    /// A bridge network; "" is the agent's default.
    case bridge(String)
    /// A network namespace of the container's own with only a loopback.
    case none
    /// The host's network namespace.
    case host
    /// Another container's network namespace.
    case container(String)

    init(_ text: String) {
        switch text {
        case "none": self = .none
        case "host": self = .host
        default:
            if text.hasPrefix("container:") { self = .container(String(text.dropFirst("container:".count))) } else { self = .bridge(text) }
        }
    }
}

/// Tunables of the network layer (berthd flags, docs/network.md).
public struct NetworkOptions: Sendable {
    /// Names everything Berth makes on the host: the default bridge "<prefix>0", user
    /// bridges "<prefix>-<8 hex>", veth host ends "<prefix>v<hex>", and the nftables table
    /// "ip <prefix>". At most 6 characters, so every name fits the kernel's 15.
    public var prefix = "berth"
    /// The default network's subnet.
    public var defaultSubnet = "10.217.0.0/16"
    /// User networks without --subnet get the first free /24 of this pool.
    public var subnetPool = "10.218.0.0/16"
    /// What `--network` means when empty: "bridge" (the default network), "none", "host"
    /// or a user network's name.
    public var defaultNetwork = "bridge"
    /// Routes to other hosts' container subnets (`--route CIDR=GATEWAY`), installed at
    /// start; their traffic is forwarded without masquerade (Routes.swift).
    public var routes: [HostRoute] = []
    public init() {}

    /// The default network's name, as in docker.
    public static let defaultNetworkName = "bridge"

    func validate() throws(BerthError) {
        let ok = !prefix.isEmpty && prefix.utf8.count <= 6
            && prefix.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) }
        if !ok { throw BerthError(.invalidArgument, "invalid network prefix \"\(prefix)\": 1 to 6 lowercase letters or digits") }
        _ = try IPv4Subnet(parsing: defaultSubnet)
        switch NetworkMode(defaultNetwork) {
        case .bridge(let name) where !name.isEmpty && name != NetworkOptions.defaultNetworkName:
            try Validate.name(name, kind: "network")
        case .container:
            throw BerthError(.invalidArgument, "invalid default network \"\(defaultNetwork)\": use bridge, none, host or a network's name")
        default: break
        }
        let pool = try IPv4Subnet(parsing: subnetPool)
        if pool.prefixLength > 24 {
            throw BerthError(.invalidArgument, "invalid subnet pool \(subnetPool): it must hold at least one /24")
        }
        try validateRoutes()
    }
}

/// A container's place on the network as the manager keeps it.
struct Endpoint: Sendable, Hashable {
    var containerID: String
    var name: String
    var hostname: String
    var mode: NetworkMode
    /// Bridge networks only.
    var attachment: NetworkAttachment
    var ports: [PortMapping]
    var dns: [String]
    var extraHosts: [HostEntry]
    /// Where its hosts, hostname and resolv.conf live.
    var filesDir: String
}

/// Bridge networks, IPAM, pinned network namespaces, published ports and the nftables
/// table of one agent (docs/network.md). Thread-safe: one lock serialises every change,
/// including the kernel work, so the kernel always matches the state.
///
/// Where the truth lives: networks in `<state>/networks/<name>.pb`; a container's
/// address, MAC, veth and namespace in its own record (`NetworkAttachment`), so IPAM is
/// rebuilt from the containers on start-up and no address is handed out twice; the
/// kernel's bridges, veths and rules are derived state, re-applied on start-up.
public final class NetworkManager: Sendable {
    struct State {
        var networks: [String: Network] = [:]
        var endpoints: [String: Endpoint] = [:]
    }

    let options: NetworkOptions
    let kernel: any NetworkKernel
    let stateDir: String
    let netnsDir: String
    private let state = ConditionLock(State())

    /// The default network's bridge.
    var defaultBridge: String { options.prefix + "0" }
    var forwardMarker: String { stateDir + "/ip_forward.berth" }

    init(stateDir: String, runDir: String, options: NetworkOptions, kernel: any NetworkKernel) throws {
        try options.validate()
        self.options = options
        self.kernel = kernel
        self.stateDir = stateDir
        self.netnsDir = runDir
        try Files.makeDirectories(stateDir, mode: 0o700)
        try Files.makeDirectories(runDir, mode: 0o700)
        var networks: [String: Network] = [:]
        for file in try Files.list(stateDir) where file.hasSuffix(".pb") {
            let path = "\(stateDir)/\(file)"
            guard let n = try? Network(wire: Files.read(path)), !n.name.isEmpty else {
                Log.write("ignoring unreadable network record \(path)")
                continue
            }
            networks[n.name] = n
        }
        state.withLock { $0.networks = networks }
        try installRoutes()
    }

    public convenience init(stateDir: String, runDir: String, options: NetworkOptions) throws {
        try self.init(stateDir: stateDir, runDir: runDir, options: options, kernel: KernelNetwork())
    }

    func pinPath(_ containerID: String) -> String { "\(netnsDir)/\(containerID)" }

    // MARK: - Networks

    /// `network create`: a new bridge network, its bridge made at once.
    public func create(name: String, subnet text: String) throws(BerthError) -> Network {
        try Validate.name(name, kind: "network")
        if ["none", "host", NetworkOptions.defaultNetworkName].contains(name) {
            throw BerthError(.invalidArgument, "network name \"\(name)\" is reserved: choose another")
        }
        return try state.withLock { (s) throws(BerthError) -> Network in
            if s.networks[name] != nil { throw BerthError(.alreadyExists, "network \(name) already exists") }
            let subnet: IPv4Subnet
            if text.isEmpty {
                subnet = try freeSubnet(s)
            } else {
                subnet = try IPv4Subnet(parsing: text)
                try checkClashes(subnet, forName: name, s)
            }
            var n = Network()
            n.name = name
            n.id = Host.randomHex(bytes: 32)
            n.subnet = subnet.description
            n.gateway = subnet.gateway.description
            n.bridge = "\(options.prefix)-\(n.id.prefix(8))"
            n.createdUnix = Host.now
            s.networks[name] = n
            do {
                try kernel.ensureBridge(n.bridge, gateway: subnet.gateway, prefixLength: subnet.prefixLength)
                try applyRules(s)
                try Files.writeAtomically(recordPath(name), n.wireEncoded(), mode: 0o600)
            } catch {
                s.networks[name] = nil
                try? kernel.deleteLink(n.bridge)
                try? applyRules(s)
                throw error.berthError("create network \(name)").prefixed("network \(name)")
            }
            Log.write("network \(name) created: \(n.subnet) on bridge \(n.bridge)")
            return n
        }
    }

    public func list() -> [Network] {
        state.withLock { s in s.networks.values.sorted { $0.name < $1.name }.map { withEndpoints($0, s) } }
    }

    public func inspect(_ ref: String) throws(BerthError) -> Network {
        try state.withLock { (s) throws(BerthError) -> Network in withEndpoints(try resolve(ref, s), s) }
    }

    /// `network rm`: refused while containers are attached.
    public func remove(_ ref: String) throws(BerthError) -> String {
        try state.withLock { (s) throws(BerthError) -> String in
            let n = try resolve(ref, s)
            let users = s.endpoints.values.filter { $0.attachment.network == n.name }.map(\.name).sorted()
            if !users.isEmpty {
                throw BerthError(.failedPrecondition, "network \(n.name) has containers attached (\(users.joined(separator: ", "))): remove them first")
            }
            try dropNetwork(n, &s)
            return n.name
        }
    }

    private func dropNetwork(_ n: Network, _ s: inout State) throws(BerthError) {
        s.networks[n.name] = nil
        do throws(BerthError) {
            try applyRules(s)
            try kernel.deleteLink(n.bridge)
            if unlink(recordPath(n.name)) != 0 && errno != ENOENT { throw Errno.current.error("remove \(recordPath(n.name))") }
        } catch {
            s.networks[n.name] = n
            throw error.prefixed("remove network \(n.name)")
        }
        Log.write("network \(n.name) removed")
    }

    private func recordPath(_ name: String) -> String { "\(stateDir)/\(name).pb" }

    private func withEndpoints(_ n: Network, _ s: State) -> Network {
        var n = n
        n.endpoints = s.endpoints.values.filter { $0.attachment.network == n.name }
            .sorted { (IPv4Address($0.attachment.ip)?.value ?? 0) < (IPv4Address($1.attachment.ip)?.value ?? 0) }
            .map { NetworkEndpoint(containerID: $0.containerID, name: $0.name, ip: $0.attachment.ip, mac: $0.attachment.mac) }
        return n
    }

    private func resolve(_ ref: String, _ s: State) throws(BerthError) -> Network {
        if ref.isEmpty { throw BerthError(.invalidArgument, "network name is empty") }
        if let n = s.networks[ref] { return n }
        let matches = s.networks.values.filter { $0.id.hasPrefix(ref) }
        if matches.count == 1, let n = matches.first { return n }
        if matches.count > 1 {
            throw BerthError(.invalidArgument, "network id prefix \(ref) is ambiguous: it matches \(matches.count) networks; give more characters")
        }
        if ref == NetworkOptions.defaultNetworkName {
            throw BerthError(.notFound, "network bridge (the default) does not exist yet: it is made when the first container uses it")
        }
        throw BerthError(.notFound, "no such network: \(ref)")
    }

    /// An explicit subnet must not overlap another Berth network or any route of the host.
    private func checkClashes(_ subnet: IPv4Subnet, forName name: String, _ s: State) throws(BerthError) {
        for other in s.networks.values where other.name != name {
            if let o = try? IPv4Subnet(parsing: other.subnet), o.overlaps(subnet) {
                throw BerthError(.alreadyExists, "subnet \(subnet) overlaps network \(other.name) (\(other.subnet))")
            }
        }
        let ours = Set(s.networks.values.map(\.bridge))
        for route in kernel.hostRoutes() where !ours.contains(route.device) && route.subnet.overlaps(subnet) {
            throw BerthError(.alreadyExists, "subnet \(subnet) overlaps the host's network \(route.subnet) on \(route.device): choose another with --subnet")
        }
    }

    /// The first /24 of the pool that clashes with nothing.
    private func freeSubnet(_ s: State) throws(BerthError) -> IPv4Subnet {
        let pool = try IPv4Subnet(parsing: options.subnetPool)
        let count = 1 << (24 - pool.prefixLength)
        for i in 0..<count {
            let candidate = IPv4Subnet(network: IPv4Address(pool.network.value + UInt32(i) << 8), prefixLength: 24)
            if (try? checkClashes(candidate, forName: "", s)) != nil { return candidate }
        }
        throw BerthError(.resourceExhausted, "no free /24 left in the subnet pool \(pool): remove a network or give --subnet")
    }

    /// The default network, made on first use.
    private func defaultNetwork(_ s: inout State) throws(BerthError) -> Network {
        let name = NetworkOptions.defaultNetworkName
        if let n = s.networks[name] { return n }
        let subnet = try IPv4Subnet(parsing: options.defaultSubnet)
        do {
            try checkClashes(subnet, forName: name, s)
        } catch {
            throw BerthError(error.code, "the default network's subnet \(subnet) cannot be used: \(error.message.split(separator: ":").first ?? ""); start berthd with another --default-subnet")
        }
        var n = Network()
        n.name = name
        n.id = Host.randomHex(bytes: 32)
        n.subnet = subnet.description
        n.gateway = subnet.gateway.description
        n.bridge = defaultBridge
        n.createdUnix = Host.now
        n.isDefault = true
        do {
            try Files.writeAtomically(recordPath(name), n.wireEncoded(), mode: 0o600)
        } catch {
            throw error.berthError("create the default network")
        }
        s.networks[name] = n
        Log.write("default network created: \(n.subnet) on bridge \(n.bridge)")
        return n
    }

    // MARK: - Rules

    /// Replaces Berth's nftables table with one made from the state, and keeps
    /// net.ipv4.ip_forward on while there is a network (restoring it when the last goes,
    /// if Berth was the one that turned it on).
    private func applyRules(_ s: State) throws(BerthError) {
        let bridges = s.networks.values.sorted { $0.name < $1.name }.compactMap { n -> Ruleset.Bridge? in
            guard let subnet = try? IPv4Subnet(parsing: n.subnet) else { return nil }
            return Ruleset.Bridge(name: n.bridge, subnet: subnet)
        }
        var published: [Ruleset.Published] = []
        for e in s.endpoints.values {
            guard let ip = IPv4Address(e.attachment.ip) else { continue }
            for p in e.ports {
                published.append(Ruleset.Published(hostIP: IPv4Address(p.hostIP), hostPort: p.hostPort, udp: p.proto == .udp,
                                                   containerIP: ip, containerPort: p.containerPort))
            }
        }
        let rules = Ruleset(table: options.prefix, bridges: bridges, published: published, remote: options.routes.map(\.subnet))
        if !bridges.isEmpty && !kernel.ipForward() {
            try kernel.setIPForward(true)
            do {
                try Files.writeAtomically(forwardMarker, Array("1\n".utf8), mode: 0o600)
            } catch {
                try? kernel.setIPForward(false)
                throw error.berthError("record that Berth turned on ip_forward")
            }
            Log.write("net.ipv4.ip_forward turned on (it is turned off again when the last network is removed)")
        }
        try kernel.nft(rules.commands)
        if bridges.isEmpty && Files.exists(forwardMarker) {
            try? kernel.setIPForward(false)
            _ = unlink(forwardMarker)
        }
    }

    // MARK: - Endpoints

    struct ConnectRequest: Sendable {
        var containerID: String
        var name: String
        var hostname: String
        var spec: ContainerSpec
        var filesDir: String
    }

    /// Puts a new container on the network its spec names: for a bridge network, an
    /// address, a pinned namespace with a veth on the bridge, and its published ports.
    /// Writes its hosts, hostname and resolv.conf. All or nothing.
    func connect(_ r: ConnectRequest) throws(BerthError) -> NetworkAttachment {
        var mode = NetworkMode(r.spec.network)
        if case .bridge(let name) = mode, name.isEmpty { mode = NetworkMode(options.defaultNetwork) }
        if case .bridge(let name) = mode, name.isEmpty { mode = .bridge(NetworkOptions.defaultNetworkName) }
        var e = Endpoint(containerID: r.containerID, name: r.name, hostname: r.hostname, mode: mode, attachment: NetworkAttachment(),
                         ports: r.spec.ports, dns: r.spec.dns, extraHosts: r.spec.extraHosts, filesDir: r.filesDir)
        return try state.withLock { (s) throws(BerthError) -> NetworkAttachment in
            if !e.ports.isEmpty, case .bridge = mode {} else if !e.ports.isEmpty {
                throw BerthError(.invalidArgument, "published ports (-p) need a bridge network; this agent's default network is \(options.defaultNetwork): give --network")
            }
            switch mode {
            case .none: e.attachment.network = "none"
            case .host: e.attachment.network = "host"
            case .container: e.attachment.network = r.spec.network
            case .bridge(let name):
                if !e.ports.isEmpty { try checkPorts(e.ports, s) }
                let createdDefault = name == NetworkOptions.defaultNetworkName && s.networks[name] == nil
                let n: Network
                if name == NetworkOptions.defaultNetworkName {
                    n = try defaultNetwork(&s)
                } else {
                    guard let found = s.networks[name] else {
                        throw BerthError(.notFound, "no such network: \(name); create it with `berth network create \(name)`")
                    }
                    n = found
                }
                do throws(BerthError) {
                    e.attachment = try allocate(n, r.containerID, s)
                    s.endpoints[r.containerID] = e
                    try plumb(n, e.attachment)
                    try applyRules(s)
                } catch {
                    s.endpoints[r.containerID] = nil
                    try? kernel.releaseNetns(pinPath(r.containerID))
                    if createdDefault, let d = s.networks[name] { try? dropNetwork(d, &s) } else { try? applyRules(s) }
                    throw error
                }
            }
            s.endpoints[r.containerID] = e
            do {
                try writeFiles(e, s)
                try refreshPeers(of: e, s)
            } catch {
                _ = try? disconnectLocked(r.containerID, &s)
                throw error.berthError("write /etc files")
            }
            return e.attachment
        }
    }

    /// Published ports: no other container may hold the same host port, and nothing on
    /// the host may be bound to it (a DNAT rule would silently shadow that program).
    private func checkPorts(_ ports: [PortMapping], _ s: State) throws(BerthError) {
        for p in ports {
            for other in s.endpoints.values {
                for q in other.ports where q.hostPort == p.hostPort && q.proto == p.proto
                    && (q.hostIP.isEmpty || p.hostIP.isEmpty || q.hostIP == p.hostIP) {
                    throw BerthError(.alreadyExists, "port \(p.hostPort)/\(p.proto.rawValue) is already published by container \(other.name)")
                }
            }
            let ip = IPv4Address(p.hostIP)
            switch kernel.portCheck(ip, UInt16(p.hostPort), udp: p.proto == .udp) {
            case 0: break
            case EADDRINUSE:
                throw BerthError(.alreadyExists, "port \(p.hostPort)/\(p.proto.rawValue) is already in use on the host\(p.hostIP.isEmpty ? "" : " at \(p.hostIP)")")
            case EADDRNOTAVAIL:
                throw BerthError(.invalidArgument, "cannot publish on \(p.hostIP): it is not an address of this host")
            case let err:
                throw Errno(rawValue: err).error("check host port \(p.hostPort)")
            }
        }
    }

    /// The lowest free address of the network (after the gateway), with a MAC made from
    /// it, a veth name made from the container id, and the namespace's pin path.
    private func allocate(_ n: Network, _ id: String, _ s: State) throws(BerthError) -> NetworkAttachment {
        guard let subnet = try? IPv4Subnet(parsing: n.subnet) else {
            throw BerthError(.internal, "network \(n.name) has an unreadable subnet \(n.subnet)")
        }
        let members = s.endpoints.values.filter { $0.attachment.network == n.name }
        // A Linux bridge has 1024 port numbers (BR_MAX_PORTS) and never uses 0: the
        // kernel would fail the 1024th veth with EXFULL, less clearly.
        if members.count >= 1023 {
            throw BerthError(.resourceExhausted, "network \(n.name) is full: a Linux bridge takes at most 1023 ports; create another network")
        }
        let used = Set(members.compactMap { IPv4Address($0.attachment.ip)?.value })
        guard let free = subnet.hostRange.first(where: { !used.contains($0) }) else {
            throw BerthError(.resourceExhausted, "network \(n.name) has no free address left in \(n.subnet)")
        }
        let ip = IPv4Address(free)
        var a = NetworkAttachment()
        a.network = n.name
        a.ip = ip.description
        a.prefixLength = UInt32(subnet.prefixLength)
        a.gateway = n.gateway
        a.mac = NetworkManager.mac(for: ip)
        a.bridge = n.bridge
        let vethPrefix = options.prefix + "v"
        a.hostVeth = vethPrefix + String(id.prefix(15 - vethPrefix.utf8.count))
        a.netns = pinPath(id)
        return a
    }

    /// 02:b3 followed by the address: locally administered, unicast, and the same for the
    /// same address, so a reused address never meets a stale ARP entry with another MAC.
    static func mac(for ip: IPv4Address) -> String {
        let bytes = [0x02, 0xb3, UInt8(ip.value >> 24), UInt8(ip.value >> 16 & 0xff), UInt8(ip.value >> 8 & 0xff), UInt8(ip.value & 0xff)]
        return bytes.map { b in
            let h = String(b, radix: 16)
            return h.count == 1 ? "0" + h : h
        }.joined(separator: ":")
    }

    static func macBytes(_ text: String) -> [UInt8] {
        text.split(separator: ":").compactMap { UInt8($0, radix: 16) }
    }

    /// The kernel side of one endpoint: bridge, pinned namespace, veth.
    private func plumb(_ n: Network, _ a: NetworkAttachment, keepNamespace: Bool = false) throws(BerthError) {
        guard let subnet = try? IPv4Subnet(parsing: n.subnet), let ip = IPv4Address(a.ip), let gw = IPv4Address(a.gateway) else {
            throw BerthError(.internal, "network \(n.name): unreadable addresses")
        }
        try kernel.ensureBridge(n.bridge, gateway: subnet.gateway, prefixLength: subnet.prefixLength)
        if !keepNamespace {
            // A pin left by a crashed agent, or an empty file from a create cut short.
            try kernel.releaseNetns(a.netns)
            try kernel.createNetns(a.netns)
        }
        do {
            try kernel.attachVeth(VethConfig(bridge: n.bridge, hostName: a.hostVeth, netnsPath: a.netns, mac: NetworkManager.macBytes(a.mac),
                                             address: ip, prefixLength: Int(a.prefixLength), gateway: gw))
        } catch {
            if !keepNamespace { try? kernel.releaseNetns(a.netns) }
            throw error
        }
    }

    /// Before a start: the container's namespace and veth exist again after a reboot
    /// (the pins live on a tmpfs), with the same address.
    func ensure(_ containerID: String) throws(BerthError) {
        try state.withLock { (s) throws(BerthError) in
            guard let e = s.endpoints[containerID], case .bridge = e.mode else { return }
            let pinned = kernel.isPinned(e.attachment.netns)
            if pinned && kernel.linkExists(e.attachment.hostVeth) { return }
            guard let n = s.networks[e.attachment.network] else {
                throw BerthError(.failedPrecondition, "network \(e.attachment.network) of container \(e.name) no longer exists")
            }
            // A namespace that is still pinned is kept (containers sharing it stay with
            // it); only its veth is made again.
            try plumb(n, e.attachment, keepNamespace: pinned)
            try applyRules(s)
        }
    }

    /// Takes a removed container off its network: unpins its namespace (the kernel then
    /// deletes its veth), frees its address and ports, and rewrites its peers' hosts
    /// files. The default network goes with its last container.
    func disconnect(_ containerID: String) throws(BerthError) {
        try state.withLock { (s) throws(BerthError) in try disconnectLocked(containerID, &s) }
    }

    private func disconnectLocked(_ containerID: String, _ s: inout State) throws(BerthError) {
        guard let e = s.endpoints[containerID] else { return }
        if case .bridge = e.mode {
            try kernel.releaseNetns(e.attachment.netns)
            // The kernel deletes the veth with the namespace, but not at once when a
            // process still holds it: delete the host end so the bridge port is free now.
            try? kernel.deleteLink(e.attachment.hostVeth)
        }
        s.endpoints[containerID] = nil
        if case .bridge = e.mode {
            let network = e.attachment.network
            if let n = s.networks[network], n.isDefault, !s.endpoints.values.contains(where: { $0.attachment.network == network }) {
                try dropNetwork(n, &s)
            } else {
                try applyRules(s)
            }
            try? refreshPeers(of: e, s)
        }
    }

    /// Containers that share `containerID`'s network namespace must be gone before it.
    func users(of containerID: String) -> [String] {
        state.withLock { s in
            s.endpoints.values.filter { if case .container(let ref) = $0.mode { ref == containerID } else { false } }.map(\.name).sorted()
        }
    }

    /// Start-up: the endpoints of the containers on disk, before `reconcile`.
    func restore(containerID: String, name: String, hostname: String, spec: ContainerSpec, attachment: NetworkAttachment, filesDir: String) {
        var mode = NetworkMode(attachment.network)
        if attachment.network.isEmpty { mode = .none }
        let e = Endpoint(containerID: containerID, name: name, hostname: hostname, mode: mode, attachment: attachment,
                         ports: spec.ports, dns: spec.dns, extraHosts: spec.extraHosts, filesDir: filesDir)
        state.withLock { $0.endpoints[containerID] = e }
    }

    /// Start-up, after `restore`: bridges exist, the table matches the state (one copy,
    /// however often the agent restarts), and pins that no container owns (an agent that
    /// died mid-create) are released.
    func reconcile() {
        state.withLock { s in
            for n in s.networks.values {
                guard let subnet = try? IPv4Subnet(parsing: n.subnet) else { continue }
                do { try kernel.ensureBridge(n.bridge, gateway: subnet.gateway, prefixLength: subnet.prefixLength) } catch {
                    Log.write("network \(n.name): \(error)")
                }
            }
            do { try applyRules(s) } catch { Log.write("network rules: \(error)") }
            let owned = Set(s.endpoints.keys)
            for pin in (try? Files.list(netnsDir)) ?? [] where !owned.contains(pin) {
                Log.write("releasing the network namespace of a container that does not exist: \(pin)")
                try? kernel.releaseNetns("\(netnsDir)/\(pin)")
            }
        }
    }

    // MARK: - /etc files

    /// Writes the container's hosts, hostname and resolv.conf into `filesDir`, in place
    /// (the files are bind-mounted into a running container, so a rename would not reach it).
    private func writeFiles(_ e: Endpoint, _ s: State) throws {
        try Files.makeDirectories(e.filesDir, mode: 0o700)
        try writeInPlace(e.filesDir + "/hostname", e.hostname + "\n")
        try writeInPlace(e.filesDir + "/hosts", hostsFile(e, s))
        let hostResolv = (try? Files.readString("/etc/resolv.conf")) ?? ""
        let fallback = try? Files.readString("/run/systemd/resolve/resolv.conf")
        var keepLoopback = false
        if case .host = e.mode { keepLoopback = true }
        try writeInPlace(e.filesDir + "/resolv.conf",
                         EtcFiles.resolvConf(host: hostResolv, fallback: fallback, dns: e.dns, keepLoopback: keepLoopback))
    }

    private func hostsFile(_ e: Endpoint, _ s: State) -> String {
        var own: EtcFiles.HostLine?
        var peers: [EtcFiles.HostLine] = []
        switch e.mode {
        case .bridge:
            own = EtcFiles.HostLine(ip: e.attachment.ip, names: [e.hostname, e.name])
            // Name resolution between containers on user networks, as docker's embedded
            // DNS gives; the default network has none (as docker's default bridge).
            if s.networks[e.attachment.network]?.isDefault == false {
                peers = s.endpoints.values
                    .filter { $0.containerID != e.containerID && $0.attachment.network == e.attachment.network }
                    .map { EtcFiles.HostLine(ip: $0.attachment.ip, names: [$0.name, $0.hostname]) }
            }
        case .host, .none, .container:
            own = EtcFiles.HostLine(ip: "127.0.1.1", names: [e.hostname, e.name])
        }
        return EtcFiles.hosts(own: own, extra: e.extraHosts, peers: peers)
    }

    /// Rewrites the hosts file of every other container on `e`'s user network.
    private func refreshPeers(of e: Endpoint, _ s: State) throws {
        guard case .bridge = e.mode, s.networks[e.attachment.network]?.isDefault == false else { return }
        for peer in s.endpoints.values where peer.containerID != e.containerID && peer.attachment.network == e.attachment.network {
            try writeInPlace(peer.filesDir + "/hosts", hostsFile(peer, s))
        }
    }

    private func writeInPlace(_ path: String, _ text: String) throws {
        let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode: 0o644)
        defer { fd.close() }
        try fd.writeAll(text)
    }

    /// What a container's monitor needs: the namespace to join ("host", a pin, or nil for
    /// one of its own) — except for `container:` mode, which the runtime resolves.
    func endpoint(_ containerID: String) -> Endpoint? {
        state.withLock { $0.endpoints[containerID] }
    }
}
