#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem
import Testing

/// End-to-end: real berthd processes, real containers, BerthClient and the berth CLI.
@Suite("Agent (root, real containers)", .enabled(if: isRoot, "needs root"), .timeLimit(.minutes(3)))
struct AgentTests {
    @Test("berth run prints hostname and pid 1, and exits with the container's code")
    func runThroughCLI() async throws {
        try await withAgent { agent in
            let imported = try agent.cli(["image", "import", "busybox", try testImage.get()])
            #expect(imported.status == 0, "\(imported.stderr)")
            #expect(imported.stdout.hasPrefix("busybox:latest sha256:"))

            let r = try agent.cli(["run", "--rm", "--hostname", "box", "busybox", "sh", "-c", "hostname; echo $$; echo oops >&2; exit 3"])
            #expect(r.stdout == "box\n1\n")
            #expect(r.stderr == "oops\n")
            #expect(r.status == 3)

            // --rm removed it; ps -a shows nothing.
            let ps = try agent.cli(["ps", "-a", "-q"])
            #expect(ps.status == 0)
            #expect(ps.stdout == "")
        }
    }

    @Test("a container has its own ipc, net, mnt, pid and uts namespaces")
    func namespacesDiffer() async throws {
        try await withAgent { agent in
            let client = try await agent.clientWithImage()
            let run = try await client.run(spec(["sh", "-c", "for n in ipc net mnt pid uts; do readlink /proc/self/ns/$n; done"]))
            let (out, _, status) = try await collect(run)
            #expect(status.exitCode == 0)
            let inside = out.split(separator: "\n").map(String.init)
            let host = hostNamespaces()
            #expect(inside.count == 5)
            for (i, h) in host.enumerated() where i < inside.count {
                #expect(inside[i] != h, "namespace \(h) is shared with the host")
                #expect(inside[i].hasPrefix(String(h.prefix(while: { $0 != ":" }))))
            }
        }
    }

    @Test("the container's root, /proc, /dev, /sys, env, working dir and user are set up")
    func containerEnvironment() async throws {
        try await withAgent { agent in
            let client = try await agent.clientWithImage()
            var s = spec(["sh", "-c", "echo $FOO; pwd; id -u; id -g; echo /proc/[0-9]*; test -c /dev/null && echo devnull; touch /sys/x 2>/dev/null || echo sysro; ls /"])
            s.env = ["FOO=bar baz"]
            s.workingDir = "/work/dir"
            s.user = User(uid: 1000, gid: 2000)
            let (out, err, status) = try await collect(try await client.run(s))
            #expect(status.exitCode == 0, "\(err)")
            let lines = out.split(separator: "\n").map(String.init)
            #expect(Array(lines.prefix(7)) == ["bar baz", "/work/dir", "1000", "2000", "/proc/1", "devnull", "sysro"])
            // The image's root, not the host's.
            #expect(lines.contains("bin"))
            #expect(!lines.contains("work") || lines.contains("proc"))
        }
    }

    @Test("many runs at once on one connection each get their own output and exit code")
    func concurrentRunsOnOneConnection() async throws {
        try await withAgent { agent in
            let client = try await agent.clientWithImage()
            let results = try await withThrowingTaskGroup(of: (Int, String, Int32).self) { group in
                for i in 0..<8 {
                    group.addTask {
                        let run = try await client.run(spec(["sh", "-c", "echo run-\(i); exit \(i)"]))
                        let (out, _, status) = try await collect(run)
                        return (i, out, status.exitCode)
                    }
                }
                var all: [(Int, String, Int32)] = []
                for try await r in group { all.append(r) }
                return all
            }
            #expect(results.count == 8)
            for (i, out, code) in results {
                #expect(out == "run-\(i)\n")
                #expect(code == Int32(i))
            }
        }
    }

    @Test("large output arrives complete and in order through flow control")
    func largeOutput() async throws {
        try await withAgent { agent in
            let client = try await agent.clientWithImage()
            // 3 MiB: three times the stream window.
            let run = try await client.run(spec(["sh", "-c", "head -c 3145728 /dev/zero | tr '\\0' 'x'"]))
            var total = 0
            var allX = true
            for try await chunk in run.output {
                total += chunk.data.count
                if allX && chunk.data.contains(where: { $0 != UInt8(ascii: "x") }) { allX = false }
            }
            #expect(try await run.exitStatus().exitCode == 0)
            #expect(total == 3 << 20)
            #expect(allX)
        }
    }

    @Test("create, start, wait, ps and rm work as docker's do")
    func lifecycle() async throws {
        // The container runs until the test opens its gate (no timing: a loaded machine can take
        // seconds between two calls), then exits 7; each run consumes the gate.
        let gated = "echo to-log; until [ -e /gate ]; do sleep 0.05; done; rm /gate; exit 7"
        try await withAgent { agent in
            let client = try await agent.clientWithImage()
            let created = try await client.createContainer(spec(["sh", "-c", gated], rm: false, name: "web"))
            #expect(created.state == .created)
            #expect(created.name == "web")
            #expect(created.spec.hostname == String(created.id.prefix(12)))

            let started = try await client.startContainer("web")
            #expect(started.state == .running)
            #expect(started.pid > 0)

            // Running: rm without force is refused, ps shows it.
            await expectError(.failedPrecondition, contains: "running") { try await client.removeContainer("web") }
            let running = try await client.listContainers()
            #expect(running.map(\.name) == ["web"])
            let ps = try agent.cli(["ps"])
            #expect(ps.stdout.contains("web"))
            #expect(ps.stdout.contains("Up "))
            let open = try agent.cli(["exec", "web", "touch", "/gate"])
            #expect(open.status == 0, "\(open.stderr)")

            // Wait by id prefix.
            let status = try await client.wait(String(created.id.prefix(8)))
            #expect(status.exitCode == 7)
            let all = try await client.listContainers(all: true)
            #expect(all.first?.state == .exited)
            #expect(all.first?.exit?.exitCode == 7)
            #expect(try await client.listContainers().isEmpty)
            let psA = try agent.cli(["ps", "-a"])
            #expect(psA.stdout.contains("Exited (7)"))
            let json = try agent.cli(["ps", "-a", "--format", "json"])
            #expect(json.stdout.contains("\"Name\":\"web\""))
            #expect(json.stdout.contains("\"ExitCode\":7"))
            // Output of a detached container goes to its log.
            var log: [UInt8] = []
            for try await chunk in try await client.logs(LogsRequest(container: "web")) { log += chunk.data }
            #expect(String(decoding: log, as: UTF8.self) == "to-log\n")

            // Exited containers can be started again.
            _ = try await client.startContainer("web")
            let reopen = try agent.cli(["exec", "web", "touch", "/gate"])
            #expect(reopen.status == 0, "\(reopen.stderr)")
            #expect(try await client.wait("web").exitCode == 7)

            let rm = try agent.cli(["rm", "web"])
            #expect(rm.status == 0, "\(rm.stderr)")
            #expect(try await client.listContainers(all: true).isEmpty)
            #expect(!Files.exists("\(agent.dir.path)/state/containers/\(created.id)"))
            #expect(agent.mountsLeft.isEmpty)
        }
    }

    @Test("rm -f kills a running container and removes it")
    func forceRemove() async throws {
        try await withAgent { agent in
            let client = try await agent.clientWithImage()
            _ = try await client.createContainer(spec(["sleep", "1000"], rm: false, name: "sleeper"))
            _ = try await client.startContainer("sleeper")
            let r = try agent.cli(["rm", "-f", "sleeper"])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(try await client.listContainers(all: true).isEmpty)
            #expect(agent.mountsLeft.isEmpty)
        }
    }

    @Test("cancelling a run kills its container, and --rm removes it")
    func cancelKills() async throws {
        try await withAgent { agent in
            let client = try await agent.clientWithImage()
            let run = try await client.run(spec(["sh", "-c", "echo ready; exec sleep 1000"]))
            let pid = run.container.pid
            var iterator = run.output.makeAsyncIterator()
            let first = try await iterator.next()
            #expect(first.map { String(decoding: $0.data, as: UTF8.self) } == "ready\n")
            run.cancel()
            await expectError(.cancelled) { try await run.exitStatus() }
            var gone = false
            for _ in 0..<100 {
                if try await client.listContainers(all: true).isEmpty && kill(pid, 0) != 0 { gone = true; break }
                usleep(50_000)
            }
            #expect(gone, "the cancelled container is still there")
            #expect(agent.mountsLeft.isEmpty)
            // The CLI on SIGTERM: exits 143, container gone.
            let cli = try runProgram(["/bin/sh", "-c", "\(binDir)/berth -H \(agent.address) run --rm busybox sh -c 'echo up; sleep 1000' & p=$!; sleep 1; kill -TERM $p; wait $p"])
            #expect(cli.status == 143)
            #expect(cli.stdout == "up\n")
        }
    }

    @Test("--rootfs runs a host directory as it is, and BERTH_HOST picks the agent")
    func hostRootfs() async throws {
        try await withAgent { agent in
            let dir = try TempDir("berth-rootfs")
            defer { dir.remove() }
            // Unpack the test image by hand into a plain directory.
            let untar = try runProgram(["/bin/tar", "-xf", try testImage.get(), "-C", dir.path])
            #expect(untar.status == 0, "\(untar.stderr)")
            let r = try runProgram([binDir + "/berth", "run", "--rm", "--rootfs", dir.path, "sh", "-c", "echo made-here > /tmp/marker; cat /tmp/marker"],
                                   env: ["BERTH_HOST=\(agent.address)"])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout == "made-here\n")
            // Used as is: the write landed in the host directory, and nothing stays mounted.
            #expect(try Files.readString(dir.path + "/tmp/marker") == "made-here\n")
            #expect(agent.mountsLeft.isEmpty)
            #expect(!Rootfs.isMounted(under: dir.path))
        }
    }

    @Test("info reports the host and counts")
    func info() async throws {
        try await withAgent { agent in
            let client = try await agent.clientWithImage()
            _ = try await client.createContainer(spec(["true"], rm: false))
            let info = try await client.info()
            #expect(info.nodeName == "test-node")
            #expect(info.hostname == Host.hostname)
            #expect(info.cpus == UInt32(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
            #expect(info.memoryBytes > 0)
            #expect(["v1", "hybrid", "v2"].contains(info.cgroupLayout))
            #expect(info.containers == 1)
            #expect(info.containersStopped == 1)
            #expect(info.images == 1)
            var u = utsname()
            uname(&u)
            let release = withUnsafeBytes(of: u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            #expect(info.kernel == release)
            let cli = try agent.cli(["info"])
            #expect(cli.status == 0)
            #expect(cli.stdout.contains("Node:               test-node"))
            #expect(cli.stdout.contains("Containers:         1"))
            let images = try agent.cli(["image", "ls"])
            #expect(images.stdout.contains("busybox"))
            #expect(images.stdout.contains("latest"))
        }
    }

    @Test("the agent serves over loopback TCP too")
    func tcpListener() async throws {
        try await withAgent(tcpPort: 0) { agent in
            let port = try #require(agent.tcpPort)
            _ = try await agent.clientWithImage()
            let client = try await BerthClient.connect(to: "tcp://127.0.0.1:\(port)")
            #expect(client.hello.nodeName == "test-node")
            let (out, _, status) = try await collect(try await client.run(spec(["echo", "over tcp"])))
            #expect(out == "over tcp\n")
            #expect(status.exitCode == 0)
        }
    }

    @Test("SIGTERM stops the agent cleanly; its containers keep running and the next agent adopts them")
    func cleanShutdown() async throws {
        let agent = try await TestAgent()
        var adopted = false
        defer { if !adopted { agent.stop() } }
        let client = try await agent.clientWithImage()
        _ = try await client.createContainer(spec(["sleep", "1000"], rm: false, name: "long"))
        let started = try await client.startContainer("long")
        client.close()
        kill(agent.pid, SIGTERM)
        var status: Int32 = 0
        for _ in 0..<200 {
            if waitpid(agent.pid, &status, WNOHANG) == agent.pid { break }
            usleep(50_000)
        }
        #expect((status >> 8) & 0xff == 0, "berthd exit status \(status)")
        #expect(!Files.exists(agent.socket))
        #expect(kill(started.pid, 0) == 0, "the container died with the agent")

        let next = try await TestAgent(reusing: agent.dir)
        adopted = true
        defer { next.stop() }
        let again = try await next.connect()
        let c = try await again.inspectContainer("long")
        #expect(c.state == .running)
        #expect(c.pid == started.pid)
        let stopped = try await again.stopContainer("long", timeout: 1)
        #expect(stopped.state == .exited)
        #expect(kill(started.pid, 0) != 0)
    }

    @Test("a second agent on the same run dir is refused; agents with their own dirs run side by side")
    func agentIsolation() async throws {
        try await withAgent { a in
            try await withAgent { b in
                let ca = try await a.clientWithImage()
                let cb = try await b.clientWithImage()
                _ = try await ca.createContainer(spec(["true"], rm: false, name: "same"))
                _ = try await cb.createContainer(spec(["true"], rm: false, name: "same"))
                #expect(try await ca.listContainers(all: true).count == 1)
                #expect(try await cb.listContainers(all: true).count == 1)
            }
            let r = try runProgram([binDir + "/berthd", "--socket", a.dir.path + "/other.sock",
                                    "--state-dir", a.dir.path + "/state2", "--run-dir", a.dir.path + "/run"])
            #expect(r.status == 1)
            #expect(r.stderr.contains("another berthd is using run dir"))
        }
    }
}
