// CBerthNet against the real kernel: pinned namespaces (network, and a pod's IPC, UTS and
// pid ones), sysctls inside them, bridges, veth pairs and nftables.
// They need root; without it the suite is skipped. Every name is unique to the run (btk…
// bridges and tables, vtk… veth host ends, 10.250.X.0/24 subnets, pins under a fresh
// /tmp/btk-… directory), everything created is removed in a `defer`, and traffic only
// goes between namespaces the test made.
#if canImport(Glibc)
import Glibc
#endif
import Testing
import CBerthNet
import CBerthShim

/// A random third octet for the test subnets; each test adds its own offset, so that two
/// tests of one run never put the same subnet on two bridges.
private let netKernelOctet = Int.random(in: 1...200)

/// "btk1a2f"-style names, unique to the run.
private func netKernelName(_ prefix: String) -> String {
    let hex = String(UInt16.random(in: 0...0xffff), radix: 16)
    return prefix + String(repeating: "0", count: 4 - hex.count) + hex
}

private func netMessage(_ err: berth_net_err) -> String {
    withUnsafeBytes(of: err.message) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
}

/// A fresh directory under /tmp for pins; remove it with rmdir once its pins are released.
private func netKernelTempDir() throws -> String {
    var template = Array("/tmp/btk-XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) != nil }
    try #require(made, "mkdtemp: errno \(errno)")
    return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Runs `args` (an absolute path first) with stdin from /dev/null and returns its exit
/// status (128 + signal when killed) and its stdout and stderr together. Killed after 10 s.
private func netRun(_ args: [String]) -> (status: Int32, output: String) {
    var fds: [Int32] = [-1, -1]
    // Close-on-exec, so that no process another test spawns meanwhile holds the write end
    // (and delays our EOF); dup2 onto 1 and 2 clears the flag for our child only.
    guard berth_pipe2(&fds, O_CLOEXEC) == 0 else { return (-1, "pipe2: errno \(errno)") }
    defer { close(fds[0]) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
    posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
    let cArgs = args.map { strdup($0) } + [nil]
    let cEnv: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/sbin:/usr/bin:/sbin:/bin"), nil]
    defer { for p in cArgs + cEnv { free(p) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, args[0], &actions, nil, cArgs, cEnv)
    close(fds[1])
    guard rc == 0 else { return (-1, "posix_spawn \(args[0]): errno \(rc)") }

    var output: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    let deadline = Int(now.tv_sec) * 1000 + now.tv_nsec / 1_000_000 + 10_000
    while true {
        clock_gettime(CLOCK_MONOTONIC, &now)
        let left = deadline - (Int(now.tv_sec) * 1000 + now.tv_nsec / 1_000_000)
        if left <= 0 { kill(pid, SIGKILL); break }
        var pfd = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
        let ready = poll(&pfd, 1, Int32(left))
        if ready < 0 && errno == EINTR { continue }
        if ready <= 0 { continue }
        let n = buffer.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        output += buffer[0..<n]
    }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return (code, String(decoding: output, as: UTF8.self))
}

private func netLines(_ text: String) -> [Substring] {
    text.split(separator: "\n").filter { !$0.allSatisfy { $0 == " " } }
}

/// The flags of `ip -o link` output for one link ("<BROADCAST,MULTICAST,UP,LOWER_UP>").
private func netLinkFlags(_ line: String) -> [Substring] {
    guard let open = line.firstIndex(of: "<"), let close = line[open...].firstIndex(of: ">") else { return [] }
    return line[line.index(after: open)..<close].split(separator: ",")
}

/// Polls `condition` every 20 ms for up to `millis`.
private func netWait(millis: Int, _ condition: () -> Bool) -> Bool {
    for _ in 0..<(millis / 20) {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}

private func netAttach(bridge: String, host: String, pin: String, ifname: String, mac: [UInt8],
                       address: String, gateway: String, _ err: inout berth_net_err) -> Int32 {
    var cfg = berth_veth_config()
    let strings = [bridge, host, pin, ifname, address, gateway].map { (s: String) -> UnsafeMutablePointer<CChar>? in strdup(s) }
    defer { strings.forEach { free($0) } }
    cfg.bridge = UnsafePointer(strings[0])
    cfg.host_name = UnsafePointer(strings[1])
    cfg.netns_path = UnsafePointer(strings[2])
    cfg.ifname = UnsafePointer(strings[3])
    cfg.mac = (mac[0], mac[1], mac[2], mac[3], mac[4], mac[5])
    cfg.address_cidr = UnsafePointer(strings[4])
    cfg.gateway = UnsafePointer(strings[5])
    return berth_veth_attach(&cfg, &err)
}

private func netMacString(_ mac: [UInt8]) -> String {
    mac.map { let h = String($0, radix: 16); return h.count == 1 ? "0" + h : h }.joined(separator: ":")
}

/// Cleanup steps whose failure must not hide the test's own result.
private func netRelease(_ pin: String) { var e = berth_net_err(); _ = berth_netns_release(pin, &e) }
private func nsRelease(_ pin: String) { var e = berth_net_err(); _ = berth_ns_release(pin, &e) }

/// The inode of a file (following symlinks, so /proc/self/ns/ipc names the namespace).
private func netInode(_ path: String) -> UInt64? {
    var st = stat()
    return stat(path, &st) == 0 ? UInt64(st.st_ino) : nil
}

/// A file's contents, for /proc/sys values on the host; nil when unreadable.
private func netReadFile(_ path: String) -> String? {
    let r = netRun(["/bin/cat", path])
    return r.status == 0 ? r.output : nil
}
private func netDelete(_ link: String) { var e = berth_net_err(); _ = berth_link_delete(link, &e) }

@Suite("CBerthNet against the kernel (needs root)", .enabled(if: getuid() == 0, "needs root"), .timeLimit(.minutes(1)))
struct NetKernelTests {
    @Test func pinnedNamespaceLifecycle() throws {
        let dir = try netKernelTempDir()
        defer { rmdir(dir) }
        let pin = dir + "/ns"
        defer { netRelease(pin) }

        var err = berth_net_err()
        try #require(berth_netns_create(pin, &err) == 0, "\(netMessage(err))")
        #expect(err.code == 0 && netMessage(err).isEmpty)
        #expect(berth_netns_is_pinned(pin) == 1)

        let links = netRun(["/usr/bin/nsenter", "--net=" + pin, "/usr/sbin/ip", "-o", "link"])
        #expect(links.status == 0, "\(links.output)")
        let lines = netLines(links.output)
        #expect(lines.count == 1 && lines[0].contains(" lo: "), "\(links.output)")
        #expect(netLinkFlags(links.output).contains("UP"), "\(links.output)")

        var again = berth_net_err()
        #expect(berth_netns_create(pin, &again) == EEXIST)
        #expect(again.code == EEXIST && netMessage(again).contains(pin), "\(netMessage(again))")
        #expect(berth_netns_is_pinned(pin) == 1, "a failed create must not touch the existing pin")

        #expect(berth_netns_release(pin, &err) == 0, "\(netMessage(err))")
        #expect(berth_netns_is_pinned(pin) == 0)
        #expect(access(pin, F_OK) != 0 && errno == ENOENT)
        err.code = -1
        #expect(berth_netns_release(pin, &err) == 0, "\(netMessage(err))")
        #expect(err.code == 0 && netMessage(err).isEmpty)
        #expect(berth_netns_is_pinned(dir) == 0)
    }

    @Test func podIpcAndUtsNamespacesArePinned() throws {
        let dir = try netKernelTempDir()
        defer { rmdir(dir) }
        let ipc = dir + "/ipc", uts = dir + "/uts"
        defer { nsRelease(ipc); nsRelease(uts) }

        var err = berth_net_err()
        try #require(berth_ns_create_ipc_uts(ipc, uts, "podhost", &err) == 0, "\(netMessage(err))")
        #expect(err.code == 0 && netMessage(err).isEmpty)
        #expect(berth_netns_is_pinned(ipc) == 1 && berth_netns_is_pinned(uts) == 1)

        // The UTS namespace has the pod's name; the host keeps its own.
        let name = netRun(["/usr/bin/nsenter", "--uts=" + uts, "/bin/hostname"])
        #expect(name.status == 0 && name.output == "podhost\n", "\(name.output)")
        #expect(netRun(["/bin/hostname"]).output != "podhost\n")
        // New namespaces, not the host's.
        #expect(netInode(ipc) != nil && netInode(ipc) != netInode("/proc/self/ns/ipc"))
        #expect(netInode(uts) != nil && netInode(uts) != netInode("/proc/self/ns/uts"))

        // Existing pins are refused and left alone; so is a half-taken pair, and the
        // free one of its two paths is not left behind.
        var again = berth_net_err()
        #expect(berth_ns_create_ipc_uts(ipc, uts, "other", &again) == EEXIST)
        #expect(again.code == EEXIST && netMessage(again).contains(ipc), "\(netMessage(again))")
        #expect(berth_ns_create_ipc_uts(dir + "/ipc2", uts, "other", &again) == EEXIST)
        #expect(netMessage(again).contains(uts), "\(netMessage(again))")
        #expect(access(dir + "/ipc2", F_OK) != 0 && errno == ENOENT, "a failed create left its ipc pin file")
        #expect(berth_netns_is_pinned(ipc) == 1 && berth_netns_is_pinned(uts) == 1)
        #expect(netRun(["/usr/bin/nsenter", "--uts=" + uts, "/bin/hostname"]).output == "podhost\n")
        // A host name the kernel refuses fails before anything is made.
        let long = String(repeating: "h", count: 65)
        #expect(berth_ns_create_ipc_uts(dir + "/ipc3", dir + "/uts3", long, &again) == EINVAL)
        #expect(access(dir + "/ipc3", F_OK) != 0 && access(dir + "/uts3", F_OK) != 0)

        #expect(berth_ns_release(ipc, &err) == 0, "\(netMessage(err))")
        #expect(berth_ns_release(uts, &err) == 0, "\(netMessage(err))")
        #expect(berth_netns_is_pinned(ipc) == 0 && berth_netns_is_pinned(uts) == 0)
        #expect(access(ipc, F_OK) != 0 && access(uts, F_OK) != 0)
        err.code = -1
        #expect(berth_ns_release(ipc, &err) == 0 && err.code == 0, "\(netMessage(err))")
    }

    @Test func existingNamespaceIsPinned() throws {
        let dir = try netKernelTempDir()
        defer { rmdir(dir) }
        let pin = dir + "/pid"
        defer { nsRelease(pin) }

        var err = berth_net_err()
        try #require(berth_ns_pin("/proc/self/ns/pid", pin, &err) == 0, "\(netMessage(err))")
        #expect(err.code == 0 && netMessage(err).isEmpty)
        #expect(berth_netns_is_pinned(pin) == 1)
        #expect(netInode(pin) != nil && netInode(pin) == netInode("/proc/self/ns/pid"))
        #expect(berth_ns_pin("/proc/self/ns/pid", pin, &err) == EEXIST)
        #expect(netMessage(err).contains(pin), "\(netMessage(err))")

        // A file that is not a namespace pins nothing, and no pin file is left.
        let notNs = dir + "/notns"
        #expect(berth_ns_pin("/proc/self/status", notNs, &err) == EINVAL, "\(netMessage(err))")
        #expect(access(notNs, F_OK) != 0 && errno == ENOENT)
        #expect(berth_ns_pin("/nonexistent/ns", notNs, &err) == ENOENT, "\(netMessage(err))")
        #expect(access(notNs, F_OK) != 0)

        #expect(berth_ns_release(pin, &err) == 0, "\(netMessage(err))")
        #expect(berth_netns_is_pinned(pin) == 0 && access(pin, F_OK) != 0)
    }

    @Test func sysctlsAreWrittenInsideThePinnedNamespace() throws {
        let dir = try netKernelTempDir()
        defer { rmdir(dir) }
        let net = dir + "/net", ipc = dir + "/ipc", uts = dir + "/uts"
        defer { netRelease(net); nsRelease(ipc); nsRelease(uts) }
        var err = berth_net_err()
        try #require(berth_netns_create(net, &err) == 0, "\(netMessage(err))")
        try #require(berth_ns_create_ipc_uts(ipc, uts, "", &err) == 0, "\(netMessage(err))")

        // One sysctl of each kind, each to a value unlike its default; the host's stay as
        // they were.
        let cases: [(pin: String, nstype: Int32, flag: String, key: String, value: String)] = [
            (net, BERTH_NS_TYPE_NET, "--net=", "net.ipv4.ip_unprivileged_port_start", "80"),
            (ipc, BERTH_NS_TYPE_IPC, "--ipc=", "kernel.shmmni", "1000"),
            (uts, BERTH_NS_TYPE_UTS, "--uts=", "kernel.domainname", "pod.test"),
        ]
        for c in cases {
            let file = "/proc/sys/" + c.key.split(separator: ".").joined(separator: "/")
            let hostBefore = netReadFile(file)
            try #require(hostBefore != nil, "cannot read \(file)")
            #expect(hostBefore != c.value + "\n", "the host's \(c.key) is already \(c.value)")
            #expect(berth_sysctl_write_in(c.pin, c.nstype, c.key, c.value, &err) == 0, "\(netMessage(err))")
            #expect(err.code == 0 && netMessage(err).isEmpty)
            let inside = netRun(["/usr/bin/nsenter", c.flag + c.pin, "/bin/cat", file])
            #expect(inside.status == 0 && inside.output == c.value + "\n", "\(c.key): \(inside.output)")
            #expect(netReadFile(file) == hostBefore, "the host's \(c.key) changed")
        }

        // Keys that could name anything outside /proc/sys, or nothing, are refused.
        for bad in ["net/../x", "net..ipv4", "../kernel/x", "", ".net.ipv4", "net.ipv4.", "net.ipv4/x", "Net.ipv4",
                    "net.ipv4.ip_unprivileged_port_start\n"] {
            #expect(berth_sysctl_write_in(net, BERTH_NS_TYPE_NET, bad, "1024", &err) == EINVAL, "\(bad.debugDescription)")
            #expect(netMessage(err).contains("not a sysctl name"), "\(netMessage(err))")
        }
        // A key the namespace does not isolate (it would be the host's), a namespace type
        // with no sysctls, and a pin of another type. None of these keys exists, so that
        // a broken check shows as ENOENT instead of writing anything.
        #expect(berth_sysctl_write_in(net, BERTH_NS_TYPE_NET, "kernel.berth_none", "1", &err) == EINVAL)
        #expect(netMessage(err).contains("not isolated"), "\(netMessage(err))")
        #expect(berth_sysctl_write_in(uts, BERTH_NS_TYPE_UTS, "kernel.berth_none", "1", &err) == EINVAL)
        let cloneNewPid: Int32 = 0x2000_0000
        #expect(berth_sysctl_write_in(net, cloneNewPid, "net.berth_none", "1", &err) == EINVAL)
        #expect(berth_sysctl_write_in(net, BERTH_NS_TYPE_IPC, "kernel.shm_berth_none", "1", &err) == EINVAL)
        #expect(netMessage(err).contains("enter namespace"), "\(netMessage(err))")
        #expect(berth_sysctl_write_in(net, BERTH_NS_TYPE_NET, "net.ipv4.berth_none", "1", &err) == ENOENT)
    }

    @Test func bridgeEnsureIsIdempotent() throws {
        let bridge = netKernelName("btk")
        let cidr = "10.250.\(netKernelOctet).1/24"
        defer { netDelete(bridge) }

        var err = berth_net_err()
        try #require(berth_bridge_ensure(bridge, cidr, &err) == 0, "\(netMessage(err))")
        #expect(err.code == 0 && netMessage(err).isEmpty)
        #expect(berth_bridge_ensure(bridge, cidr, &err) == 0, "\(netMessage(err))")

        let addrs = netRun(["/usr/sbin/ip", "-o", "-4", "addr", "show", "dev", bridge])
        #expect(addrs.status == 0 && netLines(addrs.output).count == 1, "\(addrs.output)")
        #expect(addrs.output.contains("inet \(cidr) "), "\(addrs.output)")
        let link = netRun(["/usr/sbin/ip", "-o", "-d", "link", "show", "dev", bridge])
        #expect(netLinkFlags(link.output).contains("UP") && link.output.contains(" bridge "), "\(link.output)")
        let localnet = netRun(["/bin/cat", "/proc/sys/net/ipv4/conf/\(bridge)/route_localnet"])
        #expect(localnet.status == 0 && localnet.output == "1\n", "\(localnet.output)")
        #expect(berth_bridge_port_count(bridge) == 0)
        #expect(berth_link_exists(bridge) == 1)

        // An existing link that is not a bridge is refused before anything is changed.
        #expect(berth_bridge_ensure("lo", cidr, &err) == EEXIST)
        #expect(err.code == EEXIST && netMessage(err).contains("lo"), "\(netMessage(err))")
        let lo = netRun(["/usr/sbin/ip", "-o", "-4", "addr", "show", "dev", "lo"])
        #expect(!lo.output.contains("10.250."), "\(lo.output)")
        #expect(berth_bridge_ensure(bridge, "10.250.1.1/33", &err) == EINVAL)
        #expect(berth_bridge_ensure("bad/name", cidr, &err) == EINVAL)

        #expect(berth_link_delete(bridge, &err) == 0, "\(netMessage(err))")
        err.code = -1
        #expect(berth_link_delete(bridge, &err) == 0, "\(netMessage(err))")
        #expect(err.code == 0 && netMessage(err).isEmpty)
        #expect(berth_link_exists(bridge) == 0)
        #expect(berth_bridge_port_count(bridge) == -1)
    }

    @Test func vethPairsJoinNamespacesThroughABridge() throws {
        let bridge = netKernelName("btk")
        let host1 = netKernelName("vtk"), host2 = netKernelName("vtk") + "b", host3 = netKernelName("vtk") + "c"
        let net = "10.250.\((netKernelOctet + 1) % 256)"
        let mac1: [UInt8] = [0x02, 0x42, 0x0a, 0xfa, 0x00, 0x02], mac2: [UInt8] = [0x02, 0x42, 0x0a, 0xfa, 0x00, 0x03]
        let dir = try netKernelTempDir()
        defer { rmdir(dir) }
        let pin1 = dir + "/ns1", pin2 = dir + "/ns2"
        defer { netDelete(bridge) }
        defer { netRelease(pin1); netRelease(pin2) }
        defer { netDelete(host1); netDelete(host2); netDelete(host3) }

        var err = berth_net_err()
        try #require(berth_bridge_ensure(bridge, net + ".1/24", &err) == 0, "\(netMessage(err))")
        try #require(berth_netns_create(pin1, &err) == 0, "\(netMessage(err))")
        try #require(berth_netns_create(pin2, &err) == 0, "\(netMessage(err))")
        try #require(netAttach(bridge: bridge, host: host1, pin: pin1, ifname: "eth0", mac: mac1,
                               address: net + ".2/24", gateway: net + ".1", &err) == 0, "\(netMessage(err))")
        #expect(err.code == 0 && netMessage(err).isEmpty)
        try #require(netAttach(bridge: bridge, host: host2, pin: pin2, ifname: "eth0", mac: mac2,
                               address: net + ".3/24", gateway: net + ".1", &err) == 0, "\(netMessage(err))")

        let ping = netRun(["/usr/bin/nsenter", "--net=" + pin1, "/bin/busybox", "ping", "-c1", "-W2", net + ".3"])
        #expect(ping.status == 0, "\(ping.output)")
        let routes = netRun(["/usr/bin/nsenter", "--net=" + pin1, "/usr/sbin/ip", "-o", "-4", "route"])
        #expect(routes.output.contains("default via \(net).1 dev eth0"), "\(routes.output)")
        let inside = netRun(["/usr/bin/nsenter", "--net=" + pin2, "/usr/sbin/ip", "-o", "link", "show", "dev", "eth0"])
        #expect(inside.output.contains("link/ether \(netMacString(mac2)) "), "\(inside.output)")
        #expect(netLinkFlags(inside.output).contains("UP"), "\(inside.output)")
        let hostEnd = netRun(["/usr/sbin/ip", "-o", "link", "show", "dev", host1])
        #expect(hostEnd.output.contains(" master \(bridge) ") && netLinkFlags(hostEnd.output).contains("UP"),
                "\(hostEnd.output)")
        #expect(berth_bridge_port_count(bridge) == 2)

        // Repeating an attach replaces the stale pair.
        #expect(netAttach(bridge: bridge, host: host1, pin: pin1, ifname: "eth0", mac: mac1,
                          address: net + ".2/24", gateway: net + ".1", &err) == 0, "\(netMessage(err))")
        #expect(berth_bridge_port_count(bridge) == 2)
        let again = netRun(["/usr/bin/nsenter", "--net=" + pin1, "/bin/busybox", "ping", "-c1", "-W2", net + ".3"])
        #expect(again.status == 0, "\(again.output)")

        // A failing step (a gateway off the subnet) leaves neither end behind.
        #expect(netAttach(bridge: bridge, host: host3, pin: pin1, ifname: "eth1", mac: mac1,
                          address: "10.251.0.2/24", gateway: "10.252.0.1", &err) != 0)
        #expect(netMessage(err).contains("default route"), "\(netMessage(err))")
        #expect(berth_link_exists(host3) == 0)
        let eth1 = netRun(["/usr/bin/nsenter", "--net=" + pin1, "/usr/sbin/ip", "-o", "link"])
        #expect(!eth1.output.contains("eth1"), "\(eth1.output)")
        // A host name taken by a link that is not a veth is never deleted.
        #expect(netAttach(bridge: bridge, host: bridge, pin: pin1, ifname: "eth2", mac: mac1,
                          address: net + ".4/24", gateway: net + ".1", &err) == EEXIST)
        #expect(berth_link_exists(bridge) == 1)
        #expect(berth_bridge_port_count(bridge) == 2)

        // The namespaces' end takes the host ends with it.
        #expect(berth_netns_release(pin1, &err) == 0, "\(netMessage(err))")
        #expect(berth_netns_release(pin2, &err) == 0, "\(netMessage(err))")
        #expect(netWait(millis: 2000) { berth_link_exists(host1) == 0 && berth_link_exists(host2) == 0 })
        #expect(berth_bridge_port_count(bridge) == 0)
    }

    @Test func nftRunsOneTransaction() throws {
        let table = netKernelName("btk"), other = netKernelName("btk") + "x"
        let net = "10.250.\((netKernelOctet + 2) % 256).0/24"
        defer { var e = berth_net_err(); _ = berth_nft_run("delete table ip \(table)", &e) }

        var err = berth_net_err()
        let add = """
            add table ip \(table)
            add chain ip \(table) c { type nat hook postrouting priority srcnat; policy accept; }
            add rule ip \(table) c ip saddr \(net) masquerade
            """
        try #require(berth_nft_run(add, &err) == 0, "\(netMessage(err))")
        #expect(err.code == 0 && netMessage(err).isEmpty)
        let listed = netRun(["/usr/sbin/nft", "list", "table", "ip", table])
        #expect(listed.status == 0 && listed.output.contains("ip saddr \(net) masquerade"), "\(listed.output)")

        #expect(berth_nft_run("add tabel ip \(table)", &err) != 0)
        #expect(err.code != 0 && netMessage(err).contains("Error"), "\(netMessage(err))")

        // The kernel rejects the last command, and with it the whole batch.
        let partial = "add table ip \(other)\nadd chain ip \(other) c\ndelete table ip \(other)nope"
        #expect(berth_nft_run(partial, &err) != 0)
        #expect(netMessage(err).contains("Error"), "\(netMessage(err))")
        let tables = netRun(["/usr/sbin/nft", "list", "tables"])
        #expect(tables.status == 0 && tables.output.contains("table ip \(table)\n"), "\(tables.output)")
        #expect(!tables.output.contains("table ip \(other)\n"), "\(tables.output)")

        #expect(berth_nft_run("delete table ip \(table)", &err) == 0, "\(netMessage(err))")
        let after = netRun(["/usr/sbin/nft", "list", "tables"])
        #expect(!after.output.contains("table ip \(table)\n"), "\(after.output)")
    }
}
