#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem
import Testing

// Bridge networking against the real kernel: the default bridge, published ports,
// outbound NAT to an "upstream" namespace the test builds, user networks, DNS files,
// 100 containers, cleanup, and an agent restart. Traffic goes only to loopback, to the
// host's own address, and to namespaces these tests made. The suite is serialised:
// ip_forward and host ports are machine-wide.

private let bridgeArgs = ["--default-network", "bridge"]

/// busybox wget on the host (-T crashes Debian's busybox 1.35; `timeout` bounds it).
private func fetch(_ url: String) throws -> ProcessOutput {
    try runProgram(["/usr/bin/timeout", "5", "/bin/busybox", "wget", "-q", "-O", "-", url])
}

/// An IPv4 address of the host on an interface that is up and not one of Berth's.
private func hostAddress() throws -> String {
    let r = try runProgram(["/usr/sbin/ip", "-o", "-4", "addr", "show", "up"])
    for line in r.stdout.split(separator: "\n") {
        let f = line.split(separator: " ")
        guard f.count > 3, f[1] != "lo", !f[1].hasPrefix("bt"), f[2] == "inet" else { continue }
        return String(f[3].split(separator: "/")[0])
    }
    throw BerthError(.failedPrecondition, "the host has no IPv4 address besides loopback")
}

/// A TCP port nothing on the host uses now.
private func freePort() -> UInt32 {
    while true {
        let port = UInt16(20000 + (Int(Host.randomHex(bytes: 2), radix: 16) ?? 0) % 20000)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        close(fd)
        if rc == 0 { return UInt32(port) }
    }
}

/// create + start, like `run -d`.
private func detached(_ client: BerthClient, _ s: ContainerSpec) async throws {
    let c = try await client.createContainer(s)
    _ = try await client.startContainer(c.id)
}

private func ipOf(_ client: BerthClient, _ ref: String) async throws -> String {
    try await client.inspectContainer(ref).network.ip
}

/// Runs a --rm container to its end and waits until the agent has removed it.
private func sh(_ client: BerthClient, _ script: String, network: String = "", name: String = "") async throws -> (stdout: String, code: Int32) {
    var s = spec(["sh", "-c", script], name: name)
    s.network = network
    let run = try await client.run(s)
    let r = try await collect(run)
    for _ in 0..<100 {
        if try await client.listContainers(all: true).allSatisfy({ $0.id != run.container.id }) { break }
        usleep(20_000)
    }
    return (r.stdout + r.stderr, r.status.exitCode)
}

/// Waits until `url` answers (a server in a detached container needs a moment).
private func waitForServer(_ url: String) throws -> String {
    for _ in 0..<50 {
        let r = try fetch(url)
        if r.status == 0 { return r.stdout }
        usleep(100_000)
    }
    return ""
}

private let httpd = "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"

@Suite("Networks (root, real bridges and nftables)", .serialized, .enabled(if: isRoot, "needs root"), .timeLimit(.minutes(5)))
struct NetworkTests {
    @Test("two containers on the default bridge ping each other; inspect and info show the network; rm leaves nothing")
    func defaultBridge() async throws {
        try await withAgent(extraArgs: bridgeArgs) { agent in
            let client = try await agent.clientWithImage()
            var a = spec(["sleep", "1000"], rm: false, name: "a")
            a.hostname = "alpha"
            _ = try await client.createContainer(a)
            _ = try await client.startContainer("a")
            let ipA = try await ipOf(client, "a")
            #expect(ipA.hasPrefix(String(agent.defaultSubnet.dropLast(4))), "\(ipA) in \(agent.defaultSubnet)")
            let out = try await sh(client, "ping -c1 -W2 \(ipA) && ip -4 -o addr show eth0 && ip route && cat /etc/hostname /etc/hosts")
            #expect(out.code == 0, "\(out.stdout)")
            #expect(out.stdout.contains("1 packets received"))
            #expect(out.stdout.contains("default via"))
            // b, the pinger, pings a back: both directions work.
            try await detached(client, spec(["sleep", "1000"], rm: false, name: "b"))
            let ipB = try await ipOf(client, "b")
            let back = try agent.cli(["exec", "a", "ping", "-c1", "-W2", ipB])
            #expect(back.status == 0, "\(back.stdout)\(back.stderr)")
            #expect(ipA != ipB)

            // inspect and info.
            let c = try await client.inspectContainer("a")
            #expect(c.network.network == "bridge")
            #expect(c.network.gateway.hasSuffix(".1"))
            #expect(c.network.mac.hasPrefix("02:b3:"))
            #expect(c.network.bridge == agent.netPrefix + "0")
            let json = try agent.cli(["inspect", "a"])
            #expect(json.stdout.contains("\"IPAddress\":\"\(ipA)\""))
            #expect(json.stdout.contains("\"MacAddress\":\"\(c.network.mac)\""))
            let hosts = try agent.cli(["exec", "a", "cat", "/etc/hosts", "/etc/hostname"])
            #expect(hosts.stdout.contains("\(ipA)\talpha a\n"), "\(hosts.stdout)")
            #expect(hosts.stdout.hasSuffix("alpha\n"))
            let info = try await client.info()
            #expect(info.networks.map(\.name) == ["bridge"])
            #expect(info.networks.first?.endpoints.count == 2)
            let infoText = try agent.cli(["info"])
            #expect(infoText.stdout.contains("bridge: \(agent.defaultSubnet) on \(agent.netPrefix)0, 2 containers"))
            #expect(agent.networkLinks.count == 3, "\(agent.networkLinks)")  // bridge + two veths

            try await client.removeContainer("a", force: true)
            try await client.removeContainer("b", force: true)
            // The default network went with its last container: no bridge, veth or table.
            #expect(agent.networkLinks.isEmpty, "\(agent.networkLinks)")
            #expect(!agent.nftTableExists)
            #expect(try await client.listNetworks().isEmpty)
            #expect(try runProgram(["/usr/sbin/ip", "-o", "-4", "addr"]).stdout.contains(agent.netPrefix) == false)
        }
    }

    @Test("published ports: from the host IP, from 127.0.0.1, from another container; bad ports are refused before start")
    func publishedPorts() async throws {
        try await withAgent(extraArgs: bridgeArgs) { agent in
            let client = try await agent.clientWithImage()
            let host = try hostAddress()
            let p1 = freePort(), p2 = freePort()
            let run = try agent.cli(["run", "-d", "--name", "web", "--hostname", "web1", "-p", "\(p1):80", "-p", "127.0.0.1:\(p2):80",
                                     "busybox", "sh", "-c", httpd])
            #expect(run.status == 0, "\(run.stderr)")
            #expect(try waitForServer("http://127.0.0.1:\(p1)/") == "hello-from-web1\n")
            #expect(try fetch("http://\(host):\(p1)/").stdout == "hello-from-web1\n")
            #expect(try fetch("http://127.0.0.1:\(p2)/").stdout == "hello-from-web1\n")
            #expect(try fetch("http://\(host):\(p2)/").status != 0, "published on 127.0.0.1 only")
            // Another container reaches it through the host's address (hairpin NAT).
            let hairpin = try await sh(client, "wget -q -O - http://\(host):\(p1)/")
            #expect(hairpin.stdout == "hello-from-web1\n", "\(hairpin)")
            let ps = try agent.cli(["ps"])
            #expect(ps.stdout.contains("0.0.0.0:\(p1)->80/tcp, 127.0.0.1:\(p2)->80/tcp"))
            let inspect = try agent.cli(["inspect", "web"])
            #expect(inspect.stdout.contains("\"HostPort\":\(p1)"))

            // A port published already, one held by a host program, ports 0 and 70000,
            // -p without a bridge network: each an error, and no container is left.
            let before = try await client.listContainers(all: true).count
            let again = try agent.cli(["run", "-d", "-p", "\(p1):80", "busybox", "true"])
            #expect(again.status != 0)
            #expect(again.stderr.contains("already published by container web"), "\(again.stderr)")
            let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(listener) }
            let p3 = freePort()
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = UInt16(p3).bigEndian
            _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            listen(listener, 1)
            let busy = try agent.cli(["run", "-d", "-p", "\(p3):80", "busybox", "true"])
            #expect(busy.status != 0)
            #expect(busy.stderr.contains("port \(p3)/tcp is already in use on the host"), "\(busy.stderr)")
            for bad in ["0:80", "70000:80", "80:0", "8080:80/sctp"] {
                let r = try agent.cli(["run", "-d", "-p", bad, "busybox", "true"])
                #expect(r.status == 64, "\(bad): \(r.stderr)")
                #expect(r.stderr.contains("invalid port mapping"))
            }
            var zero = spec(["true"])
            zero.ports = [PortMapping(hostPort: 0, containerPort: 80)]
            await expectError(.invalidArgument, contains: "1 to 65535") { try await client.createContainer(zero) }
            zero.ports = [PortMapping(hostPort: 70000, containerPort: 80)]
            await expectError(.invalidArgument, contains: "1 to 65535") { try await client.createContainer(zero) }
            zero.ports = [PortMapping(hostPort: 8080, containerPort: 80)]
            zero.network = "none"
            await expectError(.invalidArgument, contains: "need a bridge network") { try await client.createContainer(zero) }
            let after = try await client.listContainers(all: true)
            #expect(after.count == before, "\(after.map { ($0.name, $0.state) })")

            // Removal takes the rules with it.
            try await client.removeContainer("web", force: true)
            #expect(!agent.nftTableExists)
            #expect(try fetch("http://127.0.0.1:\(p1)/").status != 0)
        }
    }

    @Test("outbound NAT: an upstream host (a namespace behind a second bridge) sees the host's address")
    func outboundNAT() async throws {
        try await withAgent(extraArgs: bridgeArgs) { agent in
            let client = try await agent.clientWithImage()
            // The upstream: namespace "btup…" with 10.233.N.2, behind bridge "btub…"
            // (10.233.N.1 on the host), serving a CGI that prints the caller's address.
            let tag = Host.randomHex(bytes: 2)
            let ns = "btup\(tag)", br = "btub\(tag)", vh = "btuh\(tag)", vn = "btun\(tag)"
            let net = "10.233.\(Int(Host.randomHex(bytes: 1), radix: 16) ?? 7)"
            let www = try TempDir("berth-upstream")
            var httpdPid: pid_t = 0
            defer {
                if httpdPid > 0 { kill(httpdPid, SIGKILL); var st: Int32 = 0; waitpid(httpdPid, &st, 0) }
                _ = try? runProgram(["/usr/sbin/ip", "netns", "del", ns])
                _ = try? runProgram(["/usr/sbin/ip", "link", "del", vh])
                _ = try? runProgram(["/usr/sbin/ip", "link", "del", br])
                www.remove()
            }
            let ip = "/usr/sbin/ip"
            for cmd in [[ip, "netns", "add", ns], [ip, "link", "add", br, "type", "bridge"], [ip, "addr", "add", "\(net).1/24", "dev", br],
                        [ip, "link", "set", br, "up"], [ip, "link", "add", vh, "type", "veth", "peer", "name", vn],
                        [ip, "link", "set", vh, "master", br, "up"], [ip, "link", "set", vn, "netns", ns],
                        [ip, "-n", ns, "addr", "add", "\(net).2/24", "dev", vn], [ip, "-n", ns, "link", "set", vn, "up"],
                        [ip, "-n", ns, "link", "set", "lo", "up"]] {
                let r = try runProgram(cmd)
                try #require(r.status == 0, "\(cmd): \(r.stderr)")
            }
            try Files.makeDirectories(www.path + "/cgi-bin")
            try Files.writeAtomically(www.path + "/cgi-bin/ip", Array("#!/bin/busybox sh\necho Content-Type: text/plain\necho\necho $REMOTE_ADDR\n".utf8), mode: 0o755)
            var env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            httpdPid = try spawn([ip, "netns", "exec", ns, "/bin/busybox", "httpd", "-f", "-p", "\(net).2:80", "-h", www.path], &env, &actions)
            usleep(300_000)

            let r = try await sh(client, "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://\(net).2/cgi-bin/ip && exit 0; sleep 0.3; done; exit 1")
            #expect(r.code == 0, "\(r.stdout)")
            #expect(r.stdout == "\(net).1\n", "the upstream saw \(r.stdout), not the host's address")

            // The other direction: the upstream host reaches a published port through the
            // host's address on its network.
            let port = freePort()
            let web = try agent.cli(["run", "-d", "--hostname", "web2", "-p", "\(port):80", "busybox", "sh", "-c", httpd])
            #expect(web.status == 0, "\(web.stderr)")
            var got = ""
            for _ in 0..<50 where got.isEmpty {
                let f = try runProgram(["/usr/bin/timeout", "5", ip, "netns", "exec", ns, "/bin/busybox", "wget", "-q", "-O", "-", "http://\(net).1:\(port)/"])
                if f.status == 0 { got = f.stdout } else { usleep(100_000) }
            }
            #expect(got == "hello-from-web2\n", "from the upstream namespace: \(got)")
        }
    }

    @Test("user networks: isolated from each other, names resolve; none, host and container: modes; bad input")
    func userNetworks() async throws {
        try await withAgent(extraArgs: bridgeArgs) { agent in
            let client = try await agent.clientWithImage()
            let third = Int(Host.randomHex(bytes: 1), radix: 16) ?? 9
            let red = try await client.createNetwork(name: "red", subnet: "10.234.\(third).0/24")
            #expect(red.gateway == "10.234.\(third).1")
            let blue = try agent.cli(["network", "create", "blue"])
            #expect(blue.status == 0, "\(blue.stderr)")
            let ls = try agent.cli(["network", "ls"])
            #expect(ls.stdout.contains("red") && ls.stdout.contains("blue"))

            var web = spec(["sleep", "1000"], rm: false, name: "web")
            web.network = "red"
            try await detached(client, web)
            var other = spec(["sleep", "1000"], rm: false, name: "other")
            other.network = "blue"
            try await detached(client, other)
            let webIP = try await ipOf(client, "web")
            #expect(webIP == "10.234.\(third).2")
            // Same network: by name. Other network: nothing gets through.
            let same = try await sh(client, "ping -c1 -W2 web && cat /etc/hosts", network: "red", name: "peer")
            #expect(same.code == 0, "\(same.stdout)")
            #expect(same.stdout.contains("\(webIP)\tweb"))
            let hostsOfWeb = try agent.cli(["exec", "web", "cat", "/etc/hosts"])
            #expect(!hostsOfWeb.stdout.contains("peer"), "the peer (--rm) is gone from web's hosts file")
            let across = try await sh(client, "ping -c1 -W1 \(webIP)", network: "blue")
            #expect(across.code != 0, "blue reached red: \(across.stdout)")
            let acrossName = try await sh(client, "ping -c1 -W1 web", network: "blue")
            #expect(acrossName.code != 0)
            let inspect = try agent.cli(["network", "inspect", "red"])
            #expect(inspect.stdout.contains("\"Name\":\"web\""))

            // --network none: only lo. host: the host's interfaces. container:web: web's address.
            let none = try await sh(client, "cat /proc/net/dev | tail -n +3 | cut -d: -f1", network: "none")
            #expect(none.stdout.split(separator: "\n").map { $0.trimmingSpaces } == ["lo"], "\(none.stdout)")
            let host = try await sh(client, "cat /proc/net/dev", network: "host")
            #expect(host.stdout.contains(agent.netPrefix + "-"), "\(host.stdout)")
            let shared = try await sh(client, "ip -4 -o addr show eth0", network: "container:web")
            #expect(shared.stdout.contains(webIP), "\(shared.stdout)")
            var sharer = spec(["sleep", "1000"], rm: false, name: "sharer")
            sharer.network = "container:web"
            try await detached(client, sharer)
            await expectError(.failedPrecondition, contains: "shares its network namespace with sharer") {
                try await client.removeContainer("web", force: true)
            }
            try await client.removeContainer("sharer", force: true)

            // Bad input.
            await expectError(.alreadyExists, contains: "overlaps network red") {
                try await client.createNetwork(name: "x", subnet: "10.234.\(third).128/25")
            }
            await expectError(.invalidArgument, contains: "invalid subnet") { try await client.createNetwork(name: "x", subnet: "10.300.0.0/16") }
            await expectError(.invalidArgument, contains: "invalid subnet") { try await client.createNetwork(name: "x", subnet: "10.235.0.0") }
            await expectError(.alreadyExists) { try await client.createNetwork(name: "red", subnet: "") }
            await expectError(.failedPrecondition, contains: "has containers attached (web)") { try await client.removeNetwork("red") }
            var lost = spec(["true"])
            lost.network = "green"
            await expectError(.notFound, contains: "no such network: green") { try await client.createContainer(lost) }
            await expectError(.notFound) { try await client.removeNetwork("green") }
            let badNet = try agent.cli(["run", "--rm", "--network", "green", "busybox", "true"])
            #expect(badNet.status != 0 && badNet.stderr.contains("no such network"))

            try await client.removeContainer("web", force: true)
            try await client.removeContainer("other", force: true)
            #expect(try agent.cli(["network", "rm", "red", "blue"]).status == 0)
            #expect(agent.networkLinks.isEmpty, "\(agent.networkLinks)")
            #expect(!agent.nftTableExists)
        }
    }

    @Test("--dns and --add-host write resolv.conf and hosts; loopback nameservers never reach a container")
    func dnsFiles() async throws {
        try await withAgent(extraArgs: bridgeArgs) { agent in
            let client = try await agent.clientWithImage()
            let r = try agent.cli(["run", "--rm", "--dns", "192.0.2.53", "--add-host", "db.internal:10.9.8.7", "busybox",
                                   "sh", "-c", "cat /etc/resolv.conf /etc/hosts"])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("nameserver 192.0.2.53\n"))
            #expect(r.stdout.contains("10.9.8.7\tdb.internal\n"))
            let plain = try await sh(client, "cat /etc/resolv.conf")
            #expect(!plain.stdout.contains("nameserver 127."), "\(plain.stdout)")
            let bad = try agent.cli(["run", "--rm", "--dns", "not-an-ip", "busybox", "true"])
            #expect(bad.status != 0 && bad.stderr.contains("invalid --dns"))
            let badHost = try agent.cli(["run", "--rm", "--add-host", "nocolon", "busybox", "true"])
            #expect(badHost.status != 0)
        }
    }

    @Test("100 containers get 100 distinct addresses; removing them leaves no veth, rule or address")
    func hundredContainers() async throws {
        try await withAgent(extraArgs: bridgeArgs + ["--default-subnet", "10.236.\(Int(Host.randomHex(bytes: 1), radix: 16) ?? 3).0/24"]) { agent in
            let client = try await agent.clientWithImage()
            var ips: Set<String> = []
            var ids: [String] = []
            for i in 0..<100 {
                let c = try await client.createContainer(spec(["true"], rm: false, name: "n\(i)"))
                ips.insert(c.network.ip)
                ids.append(c.id)
            }
            #expect(ips.count == 100)
            #expect(agent.networkLinks.count == 101)
            for id in ids { try await client.removeContainer(id) }
            #expect(agent.networkLinks.isEmpty)
            #expect(!agent.nftTableExists)
            let pins = (try? Files.list(agent.dir.path + "/run/netns")) ?? []
            #expect(pins.isEmpty, "\(pins)")
        }
    }

    @Test("an agent restart keeps addresses and rules, without duplicates")
    func agentRestart() async throws {
        let first = try await TestAgent(extraArgs: bridgeArgs)
        var handedOver = false
        defer { if !handedOver { first.stop() } }
        let client = try await first.clientWithImage()
        _ = try await client.createNetwork(name: "lab", subnet: "")
        let port = freePort()
        let r = try first.cli(["run", "-d", "--name", "web", "--hostname", "web1", "--network", "lab", "-p", "\(port):80", "busybox", "sh", "-c", httpd])
        #expect(r.status == 0, "\(r.stderr)")
        try await detached(client, spec(["sleep", "1000"], rm: false, name: "idle"))
        let before = try await client.listContainers().map { ($0.name, $0.network.ip) }.sorted { $0.0 < $1.0 }
        #expect(try waitForServer("http://127.0.0.1:\(port)/") == "hello-from-web1\n")
        let rulesBefore = try runProgram(["/usr/sbin/nft", "list", "table", "ip", first.netPrefix]).stdout
        client.close()
        first.crash()

        let second = try await TestAgent(extraArgs: bridgeArgs, reusing: first.dir, netOf: first)
        handedOver = true
        defer { second.stop() }
        let again = try await second.connect()
        let after = try await again.listContainers().map { ($0.name, $0.network.ip) }.sorted { $0.0 < $1.0 }
        #expect(after.map(\.0) == before.map(\.0) && after.map(\.1) == before.map(\.1))
        let rulesAfter = try runProgram(["/usr/sbin/nft", "list", "table", "ip", second.netPrefix]).stdout
        #expect(rulesAfter == rulesBefore)
        #expect(rulesAfter.components(separatedByNeedle: "dnat to") == 1)
        #expect(try runProgram(["/usr/sbin/nft", "list", "tables"]).stdout.components(separatedByNeedle: "table ip \(second.netPrefix)\n") == 1)
        #expect(try fetch("http://127.0.0.1:\(port)/").stdout == "hello-from-web1\n")
        // A new container does not get an address already in use.
        let fresh = try await again.createContainer(spec(["true"], rm: false, name: "fresh"))
        #expect(!before.map(\.1).contains(fresh.network.ip))
        // Remove everything through the agent: nothing is left on the host.
        for c in try await again.listContainers(all: true) { try await again.removeContainer(c.id, force: true) }
        try await again.removeNetwork("lab")
        #expect(second.networkLinks.isEmpty, "\(second.networkLinks)")
        #expect(!second.nftTableExists)
    }
}

extension String {
    func components(separatedByNeedle needle: String) -> Int {
        var count = 0
        var i = startIndex
        while let r = self[i...].firstRange(of: needle) { count += 1; i = r.upperBound }
        return count
    }
}

extension Substring {
    var trimmingSpaces: String {
        var s = self
        while let f = s.first, f == " " { s = s.dropFirst() }
        while let l = s.last, l == " " { s = s.dropLast() }
        return String(s)
    }
}
