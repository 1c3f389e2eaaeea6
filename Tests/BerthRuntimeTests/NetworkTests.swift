// Unit tests of the network layer without root: addresses and subnets, -p parsing, the
// nftables ruleset, the /etc files, and NetworkManager (IPAM, networks, ports, rules)
// against a recording fake of the kernel.
#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
@testable import BerthRuntime
import BerthSystem
import BerthWire
import Synchronization
import Testing

// MARK: - Fake kernel

/// Records what the manager asks of the kernel and answers from its own little model.
final class FakeKernel: NetworkKernel, Sendable {
    struct State {
        var pins: Set<String> = []
        var links: Set<String> = []
        var bridges: [String: String] = [:]  // name → gateway/prefix
        var veths: [String: VethConfig] = [:]
        var nftRuns: [String] = []
        var forward = false
        var routes: [(IPv4Subnet, String)] = []
        var busyPorts: Set<UInt16> = []
        var failVeth = false
        var installed: [HostRoute] = []
        var failRoute = false
        var failDelete = false
    }
    let state = Mutex(State())

    func createNetns(_ pin: String) throws(BerthError) {
        try state.withLock { (s) throws(BerthError) in
            if s.pins.contains(pin) { throw BerthError(.alreadyExists, "pinned") }
            s.pins.insert(pin)
        }
    }
    func isPinned(_ pin: String) -> Bool { state.withLock { $0.pins.contains(pin) } }
    func releaseNetns(_ pin: String) throws(BerthError) {
        state.withLock { s in
            s.pins.remove(pin)
            // The kernel drops the veth with its namespace.
            for (name, v) in s.veths where v.netnsPath == pin { s.veths[name] = nil; s.links.remove(name) }
        }
    }
    func ensureBridge(_ name: String, gateway: IPv4Address, prefixLength: Int) throws(BerthError) {
        state.withLock { s in
            s.links.insert(name)
            s.bridges[name] = "\(gateway)/\(prefixLength)"
        }
    }
    func deleteLink(_ name: String) throws(BerthError) {
        state.withLock { s in
            s.links.remove(name)
            s.bridges[name] = nil
            s.veths[name] = nil
        }
    }
    func linkExists(_ name: String) -> Bool { state.withLock { $0.links.contains(name) } }
    func attachVeth(_ config: VethConfig) throws(BerthError) {
        try state.withLock { (s) throws(BerthError) in
            if s.failVeth { throw BerthError(.internal, "veth: injected failure") }
            s.veths[config.hostName] = config
            s.links.insert(config.hostName)
        }
    }
    func nft(_ commands: String) throws(BerthError) { state.withLock { $0.nftRuns.append(commands) } }
    func createIPCUTS(ipcPin: String, utsPin: String, hostname: String) throws(BerthError) {
        try createNetns(ipcPin)
        try createNetns(utsPin)
    }
    func pin(source: String, pin: String) throws(BerthError) { try createNetns(pin) }
    func writeSysctl(pin: String, namespace: PodNamespace, key: String, value: String) throws(BerthError) {}
    func replaceRoute(_ route: HostRoute) throws(BerthError) {
        try state.withLock { (s) throws(BerthError) in
            if s.failRoute { throw BerthError(.internal, "Network is unreachable") }
            s.installed.removeAll { $0.subnet == route.subnet }
            s.installed.append(route)
        }
    }
    func deleteRoute(_ route: HostRoute) throws(BerthError) {
        try state.withLock { (s) throws(BerthError) in
            if s.failDelete { throw BerthError(.internal, "injected failure") }
            s.installed.removeAll { $0 == route }
        }
    }
    func ipForward() -> Bool { state.withLock { $0.forward } }
    func setIPForward(_ on: Bool) throws(BerthError) { state.withLock { $0.forward = on } }
    func hostRoutes() -> [(subnet: IPv4Subnet, device: String)] { state.withLock { $0.routes.map { ($0.0, $0.1) } } }
    func portCheck(_ hostIP: IPv4Address?, _ port: UInt16, udp: Bool) -> Int32 {
        if let hostIP, hostIP.value != 0x7f00_0001 && hostIP.value != 0xc000_0202 { return EADDRNOTAVAIL }
        return state.withLock { $0.busyPorts.contains(port) } ? EADDRINUSE : 0
    }

    var lastRules: String { state.withLock { $0.nftRuns.last ?? "" } }
}

private func temporaryDir() throws -> String {
    var template = Array("/tmp/berth-nettest-XXXXXX".utf8CString)
    guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { throw Errno.current.error("mkdtemp") }
    return String(cString: p)
}

private func withManager(_ body: (NetworkManager, FakeKernel, String) throws -> Void) throws {
    let dir = try temporaryDir()
    defer { try? Files.removeTree(dir) }
    let kernel = FakeKernel()
    kernel.state.withLock { $0.routes = [(try! IPv4Subnet(parsing: "192.0.2.0/24"), "eth0")] }
    var options = NetworkOptions()
    options.prefix = "tst"
    let manager = try NetworkManager(stateDir: dir + "/state", runDir: dir + "/netns", options: options, kernel: kernel)
    try body(manager, kernel, dir)
}

private func request(_ id: String, network: String = "", ports: [PortMapping] = [], dir: String) -> NetworkManager.ConnectRequest {
    var spec = ContainerSpec()
    spec.network = network
    spec.ports = ports
    let files = dir + "/files/" + id
    return NetworkManager.ConnectRequest(containerID: id, name: "c-" + id, hostname: "h" + id, spec: spec, filesDir: files)
}

private func id(_ n: Int) -> String {
    let hex = String(n, radix: 16)
    return String(repeating: "0", count: 64 - hex.count) + hex
}

// MARK: - Addresses

@Suite struct AddressTests {
    @Test func parsesAddresses() {
        #expect(IPv4Address("10.217.0.2")?.value == 0x0AD9_0002)
        #expect(IPv4Address("10.217.0.2")?.description == "10.217.0.2")
        for bad in ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.-4", "a.b.c.d", "1..2.3"] {
            #expect(IPv4Address(bad) == nil, "\(bad)")
        }
    }

    @Test func parsesSubnets() throws {
        let s = try IPv4Subnet(parsing: "10.217.0.0/16")
        #expect(s.gateway.description == "10.217.0.1")
        #expect(s.broadcast.description == "10.217.255.255")
        #expect(s.hostRange.lowerBound == IPv4Address("10.217.0.2")?.value)
        #expect(s.contains(IPv4Address("10.217.9.9")!))
        #expect(!s.contains(IPv4Address("10.218.0.1")!))
        #expect(s.overlaps(try IPv4Subnet(parsing: "10.217.5.0/24")))
        #expect(try IPv4Subnet(parsing: "10.0.0.0/8").overlaps(s))
        #expect(!s.overlaps(try IPv4Subnet(parsing: "10.218.0.0/16")))
        for bad in ["10.217.0.0", "10.217.0.1/16", "10.217.0.0/33", "10.217.0.0/31", "10.0.0.0/7", "x/24", "10.217.0.0/-1", "10.217.0.0/"] {
            #expect(throws: BerthError.self, "\(bad)") { try IPv4Subnet(parsing: bad) }
        }
        let e = #expect(throws: BerthError.self) { try IPv4Subnet(parsing: "10.0.0.1/8") }
        #expect(e?.message.contains("did you mean 10.0.0.0/8") == true)
    }

    @Test func parsesPortMappings() throws {
        #expect(try PortMapping(parsing: "8080:80") == PortMapping(hostPort: 8080, containerPort: 80))
        #expect(try PortMapping(parsing: "127.0.0.1:53:5353/udp") == PortMapping(hostIP: "127.0.0.1", hostPort: 53, containerPort: 5353, proto: .udp))
        #expect(try PortMapping(parsing: "1:65535/TCP").proto == .tcp)
        for bad in ["80", "0:80", "70000:80", "80:0", "80:70000", "80:80/sctp", "x:80:80", "1.2.3.4:80", "a:b", "::80:80", "-1:80", "8080:80/"] {
            let e = #expect(throws: BerthError.self, "\(bad)") { try PortMapping(parsing: bad) }
            #expect(e?.code == .invalidArgument)
        }
    }

    @Test func macIsMadeFromTheAddress() {
        #expect(NetworkManager.mac(for: IPv4Address("10.217.0.2")!) == "02:b3:0a:d9:00:02")
        #expect(NetworkManager.macBytes("02:b3:0a:d9:00:02") == [2, 0xb3, 10, 0xd9, 0, 2])
    }
}

// MARK: - Ruleset and /etc files

@Suite struct RulesetTests {
    @Test func noBridgesOnlyDeletesTheTable() {
        let r = Ruleset(table: "berth", bridges: [], published: [])
        #expect(r.commands == "add table ip berth\ndelete table ip berth\n")
    }

    @Test func oneBridgeWithPorts() throws {
        let b = Ruleset.Bridge(name: "berth0", subnet: try IPv4Subnet(parsing: "10.217.0.0/16"))
        let p1 = Ruleset.Published(hostIP: nil, hostPort: 8080, udp: false, containerIP: IPv4Address("10.217.0.2")!, containerPort: 80)
        let p2 = Ruleset.Published(hostIP: IPv4Address("127.0.0.1"), hostPort: 53, udp: true, containerIP: IPv4Address("10.217.0.3")!, containerPort: 5353)
        let text = Ruleset(table: "berth", bridges: [b], published: [p1, p2]).commands
        #expect(text.hasPrefix("add table ip berth\ndelete table ip berth\ntable ip berth {\n"))
        #expect(text.contains("tcp dport 8080 dnat to 10.217.0.2:80\n"))
        #expect(text.contains("ip daddr 127.0.0.1 udp dport 53 dnat to 10.217.0.3:5353\n"))
        #expect(text.contains("ip saddr 10.217.0.0/16 oifname != \"berth0\" masquerade"))
        #expect(text.contains("fib daddr type local jump published"))
        #expect(text.contains("iifname { \"berth0\" } ip daddr 127.0.0.0/8 drop"), "no way into the host's loopback")
        #expect(!text.contains("oifname { "), "one network has nothing to isolate")
    }

    @Test func networksAreIsolated() throws {
        let a = Ruleset.Bridge(name: "b-a", subnet: try IPv4Subnet(parsing: "10.1.0.0/24"))
        let b = Ruleset.Bridge(name: "b-b", subnet: try IPv4Subnet(parsing: "10.2.0.0/24"))
        let text = Ruleset(table: "t", bridges: [a, b], published: []).commands
        #expect(text.contains("iifname \"b-a\" oifname { \"b-b\" } drop"))
        #expect(text.contains("iifname \"b-b\" oifname { \"b-a\" } drop"))
    }

    @Test func resolvConfDropsLoopbackServers() {
        let host = "# comment\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example.test\n"
        let fallback = "nameserver 192.0.2.53\nnameserver 127.0.0.1\n"
        let made = EtcFiles.resolvConf(host: host, fallback: fallback, dns: [], keepLoopback: false)
        #expect(made.contains("nameserver 192.0.2.53\n"))
        #expect(!made.contains("127.0.0"))
        #expect(made.contains("search example.test\n"))
        #expect(made.contains("options edns0 trust-ad\n"))
        let none = EtcFiles.resolvConf(host: host, fallback: nil, dns: [], keepLoopback: false)
        #expect(!none.contains("nameserver"))
        let mixed = EtcFiles.resolvConf(host: "nameserver 127.0.0.1\nnameserver 198.51.100.1\n", fallback: fallback, dns: [], keepLoopback: false)
        #expect(mixed.contains("nameserver 198.51.100.1") && !mixed.contains("192.0.2.53") && !mixed.contains("127.0.0.1"))
        let dns = EtcFiles.resolvConf(host: host, fallback: fallback, dns: ["203.0.113.9"], keepLoopback: false)
        #expect(dns.contains("nameserver 203.0.113.9\n") && !dns.contains("192.0.2.53"))
        let hostNet = EtcFiles.resolvConf(host: host, fallback: fallback, dns: [], keepLoopback: true)
        #expect(hostNet.contains("nameserver 127.0.0.53\n"))
    }

    @Test func hostsFile() {
        let text = EtcFiles.hosts(own: .init(ip: "10.1.0.2", names: ["web", "web"]), extra: [HostEntry(name: "db", ip: "10.9.9.9")],
                                  peers: [.init(ip: "10.1.0.3", names: ["api", "abc123"])])
        #expect(text.hasPrefix("127.0.0.1\tlocalhost\n"))
        #expect(text.contains("10.9.9.9\tdb\n"))
        #expect(text.contains("10.1.0.2\tweb\n"))
        #expect(text.contains("10.1.0.3\tapi abc123\n"))
    }
}

// MARK: - NetworkManager

@Suite struct NetworkManagerTests {
    @Test func defaultNetworkIsMadeOnFirstUseAndGoesWithItsLastContainer() throws {
        try withManager { m, k, dir in
            #expect(m.list().isEmpty)
            let a = try m.connect(request(id(1), dir: dir))
            #expect(a.network == "bridge")
            #expect(a.ip == "10.217.0.2")
            #expect(a.gateway == "10.217.0.1")
            #expect(a.bridge == "tst0")
            #expect(a.hostVeth.hasPrefix("tstv") && a.hostVeth.utf8.count <= 15)
            #expect(k.isPinned(a.netns))
            #expect(k.state.withLock { $0.veths[a.hostVeth]?.address.description } == "10.217.0.2")
            #expect(k.ipForward())
            #expect(k.lastRules.contains("ip saddr 10.217.0.0/16 oifname != \"tst0\" masquerade"))
            #expect(m.list().map(\.name) == ["bridge"])
            #expect(m.list().first?.endpoints.count == 1)
            let hosts = try Files.readString(dir + "/files/" + id(1) + "/hosts")
            #expect(hosts.contains("10.217.0.2\th\(id(1)) c-\(id(1))"))

            try m.disconnect(id(1))
            #expect(m.list().isEmpty)
            #expect(!k.isPinned(a.netns))
            #expect(!k.linkExists("tst0"))
            #expect(k.lastRules == "add table ip tst\ndelete table ip tst\n")
            #expect(!k.ipForward(), "ip_forward goes back off: Berth turned it on")
        }
    }

    @Test func hundredContainersGetDistinctAddresses() throws {
        try withManager { m, _, dir in
            var seen: Set<String> = []
            for n in 1...100 { seen.insert(try m.connect(request(id(n), dir: dir)).ip) }
            #expect(seen.count == 100)
            // A freed address is reused; the others are not.
            try m.disconnect(id(50))
            let again = try m.connect(request(id(101), dir: dir))
            #expect(again.ip == "10.217.0.51")
        }
    }

    @Test func addressesSurviveARestart() throws {
        let dir = try temporaryDir()
        defer { try? Files.removeTree(dir) }
        let kernel = FakeKernel()
        var options = NetworkOptions()
        options.prefix = "tst"
        var attachments: [String: NetworkAttachment] = [:]
        do {
            let m = try NetworkManager(stateDir: dir + "/state", runDir: dir + "/netns", options: options, kernel: kernel)
            for n in 1...3 { attachments[id(n)] = try m.connect(request(id(n), dir: dir)) }
        }
        let runs = kernel.state.withLock { $0.nftRuns.count }
        let m = try NetworkManager(stateDir: dir + "/state", runDir: dir + "/netns", options: options, kernel: kernel)
        for (cid, a) in attachments {
            m.restore(containerID: cid, name: "c", hostname: "h", spec: ContainerSpec(), attachment: a, filesDir: dir + "/files/" + cid)
        }
        m.reconcile()
        #expect(kernel.state.withLock { $0.nftRuns.count } == runs + 1)
        #expect(kernel.lastRules.components(separatedByChar: "table ip tst {") == 1)
        let next = try m.connect(request(id(4), dir: dir))
        #expect(!attachments.values.map(\.ip).contains(next.ip))
        #expect(next.ip == "10.217.0.5")
    }

    @Test func strayPinsAreReleasedOnStartUp() throws {
        try withManager { m, k, dir in
            try Files.makeDirectories(dir + "/netns")
            try Files.writeAtomically(dir + "/netns/" + id(9), [])
            try k.createNetns(dir + "/netns/" + id(9))
            m.reconcile()
            #expect(!k.isPinned(dir + "/netns/" + id(9)))
        }
    }

    @Test func userNetworks() throws {
        try withManager { m, k, dir in
            let a = try m.create(name: "front", subnet: "")
            #expect(a.subnet == "10.218.0.0/24")
            #expect(a.bridge.hasPrefix("tst-") && a.bridge.utf8.count <= 15)
            #expect(k.linkExists(a.bridge))
            let b = try m.create(name: "back", subnet: "10.99.0.0/24")
            #expect(b.gateway == "10.99.0.1")
            let c = try m.create(name: "third", subnet: "")
            #expect(c.subnet == "10.218.1.0/24")
            #expect(k.lastRules.contains("oifname { "))

            // Bad input, each with a clear error and nothing half made.
            let before = m.list()
            #expect((#expect(throws: BerthError.self) { try m.create(name: "front", subnet: "") })?.code == .alreadyExists)
            #expect((#expect(throws: BerthError.self) { try m.create(name: "x", subnet: "10.99.0.128/25") })?.message.contains("overlaps network back") == true)
            #expect((#expect(throws: BerthError.self) { try m.create(name: "x", subnet: "192.0.2.0/25") })?.message.contains("overlaps the host's network 192.0.2.0/24 on eth0") == true)
            #expect((#expect(throws: BerthError.self) { try m.create(name: "x", subnet: "10.1.2.3") })?.code == .invalidArgument)
            #expect((#expect(throws: BerthError.self) { try m.create(name: "host", subnet: "") })?.message.contains("reserved") == true)
            #expect((#expect(throws: BerthError.self) { try m.create(name: "bad name", subnet: "") })?.code == .invalidArgument)
            #expect(m.list() == before)

            // Containers on a user network see each other by name.
            let x = try m.connect(request(id(1), network: "front", dir: dir))
            let y = try m.connect(request(id(2), network: "front", dir: dir))
            #expect(x.ip == "10.218.0.2" && y.ip == "10.218.0.3")
            let hostsX = try Files.readString(dir + "/files/" + id(1) + "/hosts")
            #expect(hostsX.contains("10.218.0.3\tc-\(id(2))"), "the first container learns of the second")
            #expect((#expect(throws: BerthError.self) { try m.connect(request(id(3), network: "nope", dir: dir)) })?.code == .notFound)
            let busy = #expect(throws: BerthError.self) { try m.remove("front") }
            #expect(busy?.code == .failedPrecondition)
            #expect(busy?.message.contains("c-\(id(1))") == true)
            try m.disconnect(id(2))
            #expect(!(try Files.readString(dir + "/files/" + id(1) + "/hosts")).contains("10.218.0.3"))
            try m.disconnect(id(1))
            #expect(try m.remove("front") == "front")
            #expect(!k.linkExists(a.bridge))
            #expect((#expect(throws: BerthError.self) { try m.inspect("front") })?.code == .notFound)
            _ = try m.remove("back")
            _ = try m.remove(String(c.id.prefix(12)))
            #expect(k.lastRules == "add table ip tst\ndelete table ip tst\n")
        }
    }

    @Test func publishedPorts() throws {
        try withManager { m, k, dir in
            k.state.withLock { $0.busyPorts = [2222] }
            _ = try m.connect(request(id(1), ports: [PortMapping(hostPort: 8080, containerPort: 80)], dir: dir))
            #expect(k.lastRules.contains("tcp dport 8080 dnat to 10.217.0.2:80"))
            let taken = #expect(throws: BerthError.self) {
                try m.connect(request(id(2), ports: [PortMapping(hostIP: "127.0.0.1", hostPort: 8080, containerPort: 81)], dir: dir))
            }
            #expect(taken?.code == .alreadyExists)
            #expect(taken?.message.contains("already published by container c-\(id(1))") == true)
            let busy = #expect(throws: BerthError.self) {
                try m.connect(request(id(3), ports: [PortMapping(hostPort: 2222, containerPort: 22)], dir: dir))
            }
            #expect(busy?.message.contains("already in use on the host") == true)
            let foreign = #expect(throws: BerthError.self) {
                try m.connect(request(id(4), ports: [PortMapping(hostIP: "198.51.100.7", hostPort: 9000, containerPort: 22)], dir: dir))
            }
            #expect(foreign?.message.contains("not an address of this host") == true)
            // UDP on the same number is another port.
            _ = try m.connect(request(id(5), ports: [PortMapping(hostPort: 8080, containerPort: 53, proto: .udp)], dir: dir))
            #expect(m.list().first?.endpoints.count == 2, "failed connects left nothing")
            try m.disconnect(id(1))
            #expect(!k.lastRules.contains("tcp dport 8080"))
        }
    }

    @Test func portsNeedABridgeEvenByDefault() throws {
        let dir = try temporaryDir()
        defer { try? Files.removeTree(dir) }
        var options = NetworkOptions()
        options.defaultNetwork = "none"
        let m = try NetworkManager(stateDir: dir + "/state", runDir: dir + "/netns", options: options, kernel: FakeKernel())
        let e = #expect(throws: BerthError.self) { try m.connect(request(id(1), ports: [PortMapping(hostPort: 80, containerPort: 80)], dir: dir)) }
        #expect(e?.message.contains("need a bridge network") == true)
        options.defaultNetwork = "container:x"
        #expect(throws: BerthError.self) { try NetworkManager(stateDir: dir + "/state", runDir: dir + "/netns", options: options, kernel: FakeKernel()) }
    }

    @Test func aFailedVethLeavesNothing() throws {
        try withManager { m, k, dir in
            k.state.withLock { $0.failVeth = true }
            #expect(throws: BerthError.self) { try m.connect(request(id(1), dir: dir)) }
            #expect(m.list().isEmpty)
            #expect(k.state.withLock { $0.pins.isEmpty })
            #expect(!k.linkExists("tst0"))
            #expect(!k.ipForward())
        }
    }

    @Test func noneAndHostModes() throws {
        try withManager { m, k, dir in
            let none = try m.connect(request(id(1), network: "none", dir: dir))
            #expect(none.network == "none" && none.ip.isEmpty)
            let host = try m.connect(request(id(2), network: "host", dir: dir))
            #expect(host.network == "host")
            #expect(m.list().isEmpty)
            #expect(k.state.withLock { $0.nftRuns.isEmpty })
            #expect(Files.exists(dir + "/files/" + id(1) + "/resolv.conf"))
            #expect(try Files.readString(dir + "/files/" + id(2) + "/hostname") == "h\(id(2))\n")
        }
    }
}

extension String {
    func components(separatedByChar needle: String) -> Int {
        var count = 0
        var rest = Substring(self)
        while let r = rest.range(of: needle) { count += 1; rest = rest[r.upperBound...] }
        return count
    }
}

extension Substring {
    func range(of needle: String) -> Range<Substring.Index>? {
        guard !needle.isEmpty else { return nil }
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(needle) { return i..<index(i, offsetBy: needle.count) }
            i = index(after: i)
        }
        return nil
    }
}

// MARK: - Pod specs

@Suite struct PodSpecTests {
    @Test func shareDefaultsAndNormalises() throws {
        var s = PodSpec()
        try Validate.podSpec(&s)
        #expect(s.share == ["net", "ipc", "uts"])
        s.share = ["pid,net", "ipc"]
        try Validate.podSpec(&s)
        #expect(s.share == ["net", "ipc", "pid"])
        s.share = ["net,mnt"]
        #expect((#expect(throws: BerthError.self) { try Validate.podSpec(&s) })?.message.contains("unknown namespace \"mnt\"") == true)
        s.share = ["uts"]
        #expect((#expect(throws: BerthError.self) { try Validate.podSpec(&s) })?.message.contains("always shares its network") == true)
    }

    @Test func sysctlsMustBeNamespaced() throws {
        #expect(try Validate.sysctlNamespace("net.ipv4.ip_forward") == .net)
        #expect(try Validate.sysctlNamespace("kernel.shmmax") == .ipc)
        #expect(try Validate.sysctlNamespace("fs.mqueue.msg_max") == .ipc)
        for bad in ["kernel.hostname", "vm.swappiness", "net", "net..ipv4", "net/ipv4/x", "../net.x", "Net.ipv4.x", "net.ipv4.", ""] {
            #expect(throws: BerthError.self, "\(bad)") { try Validate.sysctlNamespace(bad) }
        }
        var s = PodSpec()
        s.share = ["net"]
        s.sysctls = ["kernel.shmmax": "1"]
        #expect((#expect(throws: BerthError.self) { try Validate.podSpec(&s) })?.message.contains("does not share") == true)
        s.sysctls = ["net.core.somaxconn": "1\n2"]
        #expect(throws: BerthError.self) { try Validate.podSpec(&s) }
    }

    @Test func podNetworkRules() throws {
        var s = PodSpec()
        for bad in ["host", "container:x"] {
            s.network = bad
            #expect(throws: BerthError.self, "\(bad)") { try Validate.podSpec(&s) }
        }
        s.network = "none"
        s.ports = [PortMapping(hostPort: 80, containerPort: 80)]
        #expect(throws: BerthError.self) { try Validate.podSpec(&s) }
    }
}

// MARK: - Routes between hosts (--route)

@Suite struct HostRouteTests {
    @Test func parsesAndRefuses() throws {
        let r = try HostRoute(parsing: "10.241.3.0/24=10.240.0.13")
        #expect(r.subnet.description == "10.241.3.0/24" && r.gateway.description == "10.240.0.13")
        #expect(r.description == "10.241.3.0/24=10.240.0.13")
        let bad: [(String, String)] = [
            ("10.241.3.0/24", "expected CIDR=GATEWAY"),
            ("10.241.3.0/24=10.240.0.13=x", "expected CIDR=GATEWAY"),
            ("10.241.3.1/24=10.240.0.13", "host bits are set"),
            ("10.241.3.0=10.240.0.13", "expected CIDR notation"),
            ("10.241.3.0/24=10.240.0", "gateway \"10.240.0\" is not an IPv4 address"),
            ("10.241.3.0/24=fe80::1", "is not an IPv4 address"),
            ("10.241.3.0/24=127.0.0.1", "not a unicast address of another host"),
            ("10.241.3.0/24=10.241.3.7", "inside the subnet it leads to"),
        ]
        for (text, message) in bad {
            #expect(throws: BerthError.self, "\(text)") { try HostRoute(parsing: text) }
            do { _ = try HostRoute(parsing: text) } catch { #expect(error.message.contains(message), "\(text): \(error.message)") }
        }
    }

    @Test func mustNotLeadToOwnSubnetsOrOverlap() throws {
        var o = NetworkOptions()
        o.defaultSubnet = "10.241.1.0/24"
        o.subnetPool = "10.101.0.0/16"
        o.routes = [try HostRoute(parsing: "10.241.0.0/16=10.240.0.12")]
        do { try o.validate(); Issue.record("accepted") } catch { #expect(error.message.contains("overlaps this agent's --default-subnet")) }
        o.routes = [try HostRoute(parsing: "10.241.2.0/24=10.241.1.9")]
        do { try o.validate(); Issue.record("accepted") } catch { #expect(error.message.contains("gateway 10.241.1.9 lies inside")) }
        o.routes = [try HostRoute(parsing: "10.241.2.0/24=10.240.0.12"), try HostRoute(parsing: "10.241.2.128/25=10.240.0.13")]
        do { try o.validate(); Issue.record("accepted") } catch { #expect(error.message.contains("overlapping")) }
        o.routes = [try HostRoute(parsing: "10.241.2.0/24=10.240.0.12"), try HostRoute(parsing: "10.102.0.0/16=10.240.0.12")]
        try o.validate()
    }

    @Test func rulesetForwardsAndExemptsRemoteSubnets() throws {
        let b = Ruleset.Bridge(name: "lab10", subnet: try IPv4Subnet(parsing: "10.241.1.0/24"))
        let remote = [try IPv4Subnet(parsing: "10.241.2.0/24"), try IPv4Subnet(parsing: "10.241.3.0/24")]
        let text = Ruleset(table: "lab1", bridges: [b], published: [], remote: remote).commands
        let exempt = "ip saddr { 10.241.1.0/24 } ip daddr { 10.241.2.0/24, 10.241.3.0/24 } accept\n"
        #expect(text.contains("\t\t" + exempt + "\t\tip saddr 10.241.1.0/24 oifname != \"lab10\" masquerade"),
                "the exemption comes before the masquerade: \(text)")
        #expect(text.contains("chain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\t" + exempt))
        #expect(text.contains("ip saddr { 10.241.2.0/24, 10.241.3.0/24 } ip daddr { 10.241.1.0/24 } accept\n"))
        let none = Ruleset(table: "lab1", bridges: [b], published: []).commands
        #expect(!none.contains(" accept\n"), "no routes, no exemption")
    }

    @Test func installedAtStartReplacedOnRestartStaleOnesRemoved() throws {
        var template = Array("/tmp/berth-routetest-XXXXXX".utf8CString)
        let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        defer { try? Files.removeTree(dir) }
        let kernel = FakeKernel()
        var o = NetworkOptions()
        o.prefix = "tst"
        o.routes = [try HostRoute(parsing: "10.241.2.0/24=10.240.0.12"), try HostRoute(parsing: "10.241.3.0/24=10.240.0.13")]
        _ = try NetworkManager(stateDir: dir + "/state", runDir: dir + "/netns", options: o, kernel: kernel)
        #expect(kernel.state.withLock { $0.installed } == o.routes)
        // A restart with the same configuration: the same routes, once each.
        let again = try NetworkManager(stateDir: dir + "/state", runDir: dir + "/netns", options: o, kernel: kernel)
        #expect(kernel.state.withLock { $0.installed } == o.routes)
        // The table carries them once there is a bridge.
        _ = try again.create(name: "n1", subnet: "10.77.0.0/24")
        #expect(kernel.lastRules.contains("ip daddr { 10.241.2.0/24, 10.241.3.0/24 } accept"))
        // host 3 leaves the configuration: its route goes at the next start; one that was
        // never Berth's (not in the record) is never touched.
        let foreign = try HostRoute(parsing: "10.99.0.0/16=10.240.0.1")
        kernel.state.withLock { $0.installed.append(foreign) }
        o.routes = [try HostRoute(parsing: "10.241.2.0/24=10.240.0.12")]
        _ = try NetworkManager(stateDir: dir + "/state", runDir: dir + "/netns", options: o, kernel: kernel)
        #expect(Set(kernel.state.withLock { $0.installed }) == [o.routes[0], foreign])
        // A stale route whose deletion fails stays recorded, and goes at a later start.
        let stale = o.routes[0]
        o.routes = []
        kernel.state.withLock { $0.failDelete = true }
        _ = try NetworkManager(stateDir: dir + "/state", runDir: dir + "/netns", options: o, kernel: kernel)
        #expect(kernel.state.withLock { $0.installed.contains(stale) })
        #expect(try Files.readString(dir + "/state/routes.berth") == "\(stale)\n")
        kernel.state.withLock { $0.failDelete = false }
        _ = try NetworkManager(stateDir: dir + "/state", runDir: dir + "/netns", options: o, kernel: kernel)
        #expect(!kernel.state.withLock { $0.installed.contains(stale) })
        #expect(!Files.exists(dir + "/state/routes.berth"))
        o.routes = [stale]
        // The kernel refusing one fails the start, naming it.
        kernel.state.withLock { $0.failRoute = true }
        do {
            _ = try NetworkManager(stateDir: dir + "/state", runDir: dir + "/netns", options: o, kernel: kernel)
            Issue.record("started")
        } catch {
            #expect("\(error)".contains("route 10.241.2.0/24=10.240.0.12: Network is unreachable"), "\(error)")
        }
    }
}
