#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem
import Testing

// Pods against the real kernel: two containers sharing the pod's net, ipc and uts
// namespaces (and pid when asked), localhost between them, SysV shared memory, the host
// name, another pod that sees none of it, no pause process unless pid is shared, cleanup
// after pod rm -f, and an agent restart. Serialised: the pause-process count is
// machine-wide.

private let bridgeArgs = ["--default-network", "bridge"]

/// The busybox image plus berth-shm-probe (Debian's busybox has no ipcmk), as
/// "busybox-ipc".
private func importIPCImage(_ client: BerthClient) async throws {
    let dir = try TempDir("berth-ipc-image")
    defer { dir.remove() }
    let root = dir.path + "/root"
    try Files.makeDirectories(root)
    let untar = try runProgram(["/bin/tar", "-xf", try testImage.get(), "-C", root])
    try #require(untar.status == 0, "\(untar.stderr)")
    let copy = try runProgram(["/bin/cp", binDir + "/berth-shm-probe", root + "/bin/shm-probe"])
    try #require(copy.status == 0, "\(copy.stderr)")
    let tar = try runProgram(["/bin/tar", "-cf", dir.path + "/image.tar", "-C", root, "."])
    try #require(tar.status == 0, "\(tar.stderr)")
    _ = try await client.importImage(name: "busybox-ipc", path: dir.path + "/image.tar")
}

private func podContainer(_ client: BerthClient, pod: String, name: String, _ args: [String]) async throws {
    var s = spec(args, image: "busybox-ipc", rm: false, name: name)
    s.pod = pod
    let c = try await client.createContainer(s)
    _ = try await client.startContainer(c.id)
}

private func exec(_ agent: TestAgent, _ container: String, _ script: String) throws -> ProcessOutput {
    try agent.cli(["exec", container, "sh", "-c", script])
}

private func inodes(_ pod: Pod, _ container: String) -> [String: UInt64] {
    var out: [String: UInt64] = [:]
    for n in pod.containers.first(where: { $0.name == container })?.namespaces ?? [] { out[n.type] = n.inode }
    return out
}

/// Processes named berth-pause on the machine.
private func pauseProcesses() -> [pid_t] {
    Processes.all().filter { $0.comm == "berth-pause" }.map(\.pid)
}

@Suite("Pods (root, real namespaces)", .serialized, .enabled(if: isRoot, "needs root"), .timeLimit(.minutes(5)))
struct PodTests {
    @Test("two containers in a pod share net, ipc and uts; localhost, SysV IPC and the host name; another pod sees none of it")
    func sharing() async throws {
        try await withAgent(extraArgs: bridgeArgs) { agent in
            let client = try await agent.clientWithImage()
            try await importIPCImage(client)
            let pausesBefore = pauseProcesses()
            let create = try agent.cli(["pod", "create", "--name", "web", "--hostname", "webpod", "-l", "app=web"])
            #expect(create.status == 0, "\(create.stderr)")
            try await podContainer(client, pod: "web", name: "server", ["sh", "-c", "mkdir -p /www && echo from-server > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"])
            try await podContainer(client, pod: "web", name: "client", ["sleep", "1000"])

            // localhost between them.
            var fetched = ""
            for _ in 0..<50 where fetched.isEmpty {
                let r = try exec(agent, "client", "wget -q -O - http://127.0.0.1:8080/")
                if r.status == 0 { fetched = r.stdout } else { usleep(100_000) }
            }
            #expect(fetched == "from-server\n")
            // The pod's host name in both.
            #expect(try exec(agent, "server", "hostname").stdout == "webpod\n")
            #expect(try exec(agent, "client", "hostname; cat /etc/hostname").stdout == "webpod\nwebpod\n")
            // SysV shared memory made in one is listed in the other.
            let made = try exec(agent, "server", "shm-probe create 424242")
            #expect(made.status == 0, "\(made.stderr)")
            #expect(try exec(agent, "client", "cat /proc/sysvipc/shm").stdout.contains(" 424242 "))

            // Inodes: net, ipc, uts equal; mnt and pid differ.
            let pod = try await client.inspectPod("web")
            let a = inodes(pod, "server"), b = inodes(pod, "client")
            for ns in ["net", "ipc", "uts"] { #expect(a[ns] != nil && a[ns] == b[ns], "\(ns): \(a) vs \(b)") }
            for ns in ["mnt", "pid"] { #expect(a[ns] != nil && a[ns] != b[ns], "\(ns): \(a) vs \(b)") }
            let pinned = Dictionary(uniqueKeysWithValues: pod.namespaces.map { ($0.type, $0.inode) })
            #expect(pinned["net"] == a["net"] && pinned["ipc"] == a["ipc"] && pinned["uts"] == a["uts"])
            #expect(pinned["pid"] == nil)
            #expect(pod.state == "running")
            #expect(pod.pausePid == 0)
            // No pause process for a pod that does not share pid.
            #expect(pauseProcesses() == pausesBefore)
            // ps shows the pod; pod ls and inspect work from the CLI.
            #expect(try agent.cli(["ps"]).stdout.contains("POD"))
            let ls = try agent.cli(["pod", "ls"])
            #expect(ls.stdout.contains("web") && ls.stdout.contains("running") && ls.stdout.contains("net,ipc,uts"))
            let json = try agent.cli(["pod", "inspect", "web"])
            #expect(json.stdout.contains("\"PinnedNamespaces\":{\"net\""), "\(json.stdout)")

            // Another pod sees none of it.
            _ = try await client.createPod({ var s = PodSpec(); s.name = "other"; return s }())
            try await podContainer(client, pod: "other", name: "stranger", ["sleep", "1000"])
            #expect(try exec(agent, "stranger", "hostname").stdout != "webpod\n")
            #expect(!(try exec(agent, "stranger", "cat /proc/sysvipc/shm").stdout.contains(" 424242 ")))
            #expect(try exec(agent, "stranger", "wget -q -O - http://127.0.0.1:8080/").status != 0)
            let c = inodes(try await client.inspectPod("other"), "stranger")
            for ns in ["net", "ipc", "uts"] { #expect(c[ns] != a[ns]) }
            // But it reaches the web pod by its address on the bridge.
            let ip = try await client.inspectPod("web").network.ip
            #expect(!ip.isEmpty)
            #expect(try exec(agent, "stranger", "ping -c1 -W2 \(ip)").status == 0)

            // pod rm -f: containers, pins, mounts, veths and addresses go.
            let podRun = agent.dir.path + "/run/pods/" + pod.id
            #expect(Files.exists(podRun + "/ipc"))
            #expect(try agent.cli(["pod", "rm", "-f", "web", "other"]).status == 0)
            #expect(try await client.listContainers(all: true).isEmpty)
            #expect(try await client.listPods().isEmpty)
            #expect(!Files.exists(podRun))
            #expect(agent.mountsLeft.isEmpty, "\(agent.mountsLeft)")
            #expect(agent.networkLinks.isEmpty, "\(agent.networkLinks)")
            #expect(!agent.nftTableExists)
        }
    }

    @Test("--share net,ipc,uts,pid: one pause process, each container sees the other's processes")
    func sharedPid() async throws {
        try await withAgent(extraArgs: bridgeArgs) { agent in
            let client = try await agent.clientWithImage()
            try await importIPCImage(client)
            let pausesBefore = pauseProcesses()
            var spec = PodSpec()
            spec.name = "pidpod"
            spec.share = ["net,ipc,uts,pid"]
            spec.network = "none"
            let pod = try await client.createPod(spec)
            #expect(pod.pausePid > 0)
            #expect(pauseProcesses().count == pausesBefore.count + 1)
            try await podContainer(client, pod: "pidpod", name: "one", ["sleep", "1001"])
            try await podContainer(client, pod: "pidpod", name: "two", ["sleep", "1002"])
            let ps = try exec(agent, "one", "ps -o pid,args")
            #expect(ps.stdout.contains("sleep 1002"), "\(ps.stdout)")
            let init1 = try exec(agent, "one", "cat /proc/1/comm").stdout
            #expect(init1 == "berth-pause\n", "pid 1 of the pod is \(init1)")
            let inspected = try await client.inspectPod("pidpod")
            let a = inodes(inspected, "one"), b = inodes(inspected, "two")
            #expect(a["pid"] != nil && a["pid"] == b["pid"])
            #expect(a["mnt"] != b["mnt"])
            // --network none: only lo.
            let dev = try exec(agent, "two", "tail -n +3 /proc/net/dev | cut -d: -f1")
            #expect(dev.stdout.split(separator: "\n").map { $0.trimmingSpaces } == ["lo"])
            // pod stop stops the containers and the pause process; pod start brings all back.
            let stopped = try await client.stopPod("pidpod", timeout: 1)
            #expect(stopped.containers.allSatisfy { $0.state == .exited })
            #expect(pauseProcesses() == pausesBefore)
            let started = try await client.startPod("pidpod")
            #expect(started.containers.allSatisfy { $0.state == .running })
            #expect(started.pausePid > 0)
            #expect(try exec(agent, "two", "ps -o args").stdout.contains("sleep 1001"))
            try await client.removePod("pidpod", force: true)
            #expect(pauseProcesses() == pausesBefore)
            #expect(agent.mountsLeft.isEmpty, "\(agent.mountsLeft)")
        }
    }

    @Test("pod bad input: unknown pod, --network or -p on a pod's container, unknown --share, rm without -f, sysctls")
    func badInput() async throws {
        try await withAgent(extraArgs: bridgeArgs) { agent in
            let client = try await agent.clientWithImage()
            var s = spec(["true"], rm: false)
            s.pod = "ghost"
            await expectError(.notFound, contains: "no such pod: ghost") { try await client.createContainer(s) }
            var p = PodSpec()
            p.name = "p1"
            p.ports = [PortMapping(hostPort: UInt32(30000 + Int.random(in: 0..<5000)), containerPort: 80)]
            p.sysctls = ["net.ipv4.ip_unprivileged_port_start": "0"]
            let hostBefore = try Files.readString("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            _ = try await client.createPod(p)
            #expect(try Files.readString("/proc/sys/net/ipv4/ip_unprivileged_port_start") == hostBefore, "the host's sysctl changed")
            s.pod = "p1"
            s.network = "lab"
            await expectError(.invalidArgument, contains: "belong to the pod") { try await client.createContainer(s) }
            s.network = ""
            s.ports = [PortMapping(hostPort: 8080, containerPort: 80)]
            await expectError(.invalidArgument, contains: "belong to the pod") { try await client.createContainer(s) }
            s.ports = []
            s.hostname = "mine"
            await expectError(.invalidArgument, contains: "--hostname belongs to the pod") { try await client.createContainer(s) }
            s.hostname = ""
            var bad = PodSpec()
            bad.share = ["net,cgroupz"]
            await expectError(.invalidArgument, contains: "unknown namespace \"cgroupz\"") { try await client.createPod(bad) }
            bad.share = ["ipc"]
            await expectError(.invalidArgument, contains: "always shares its network") { try await client.createPod(bad) }
            bad.share = []
            for key in ["kernel.hostname", "net/../kernel", "net..ipv4", "vm.swappiness", ""] {
                bad.sysctls = [key: "1"]
                await expectError(.invalidArgument) { try await client.createPod(bad) }
            }
            bad.sysctls = [:]
            bad.network = "host"
            await expectError(.invalidArgument) { try await client.createPod(bad) }
            await expectError(.alreadyExists) { try await client.createPod(p) }

            // The sysctl holds inside the pod.
            s.args = ["sleep", "1000"]
            s.name = "inside"
            _ = try await client.startContainer(try await client.createContainer(s).id)
            #expect(try agent.cli(["exec", "inside", "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"]).stdout == "0\n")
            await expectError(.failedPrecondition, contains: "has running containers (inside)") { try await client.removePod("p1") }
            let rm = try agent.cli(["pod", "rm", "p1"])
            #expect(rm.status != 0 && rm.stderr.contains("pod rm -f"))
            _ = try await client.stopPod("p1", timeout: 0)
            try await client.removePod("p1")
            #expect(try await client.listContainers(all: true).isEmpty, "pod rm removed its stopped container")
            #expect(agent.networkLinks.isEmpty)
        }
    }

    @Test("an agent restart keeps the pod, its containers, its pins and its address")
    func agentRestart() async throws {
        let first = try await TestAgent(extraArgs: bridgeArgs)
        var handedOver = false
        defer { if !handedOver { first.stop() } }
        let client = try await first.clientWithImage()
        try await importIPCImage(client)
        var p = PodSpec()
        p.name = "keep"
        p.share = ["net,ipc,uts,pid"]
        _ = try await client.createPod(p)
        try await podContainer(client, pod: "keep", name: "k1", ["sleep", "1000"])
        let before = try await client.inspectPod("keep")
        client.close()
        first.crash()

        let second = try await TestAgent(extraArgs: bridgeArgs, reusing: first.dir, netOf: first)
        handedOver = true
        defer { second.stop() }
        let again = try await second.connect()
        let after = try await again.inspectPod("keep")
        #expect(after.id == before.id)
        #expect(after.network.ip == before.network.ip)
        #expect(after.namespaces == before.namespaces)
        #expect(after.pausePid == before.pausePid)
        #expect(after.containers.map(\.state) == [.running])
        #expect(inodes(after, "k1") == inodes(before, "k1"))
        // A container added now joins the same namespaces.
        try await podContainer(again, pod: "keep", name: "k2", ["sleep", "1000"])
        let joined = try await again.inspectPod("keep")
        #expect(inodes(joined, "k2")["net"] == inodes(joined, "k1")["net"])
        #expect(inodes(joined, "k2")["pid"] == inodes(joined, "k1")["pid"])
        try await again.removePod("keep", force: true)
        #expect(second.networkLinks.isEmpty)
        #expect(second.mountsLeft.isEmpty, "\(second.mountsLeft)")
    }
}
