#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem
import Testing

// Resource limits on this machine's real cgroups (hybrid layout: the v1 controllers):
// memory → OOM kill, pids limit → fork fails, CPU quota in the files and in usage,
// stats, pods nesting, exec joining the container's cgroup, and nothing left after rm.

private func cgroupFile(_ agent: TestAgent, _ controller: String, _ rest: String) -> String {
    "/sys/fs/cgroup/\(controller)/berth-test-\(agent.netPrefix)/\(rest)"
}

@Suite("Cgroups (root, real v1 controllers)", .serialized, .enabled(if: isRoot && Files.exists("/sys/fs/cgroup/memory"), "needs root and cgroup v1 controllers"),
       .timeLimit(.minutes(4)))
struct CgroupIntegrationTests {
    @Test("--memory: the container is OOM-killed and inspect says so; the limit is in the cgroup")
    func memoryLimit() async throws {
        try await withAgent { agent in
            _ = try await agent.clientWithImage()
            // A shell that doubles a string until it no longer fits in 16 MiB.
            let r = try agent.cli(["run", "--name", "hog", "-m", "16m", "--memory-swap", "16m", "busybox", "sh", "-c",
                                   "x=0123456789abcdef; while true; do x=$x$x; done"])
            #expect(r.status == 137, "\(r.stdout) \(r.stderr)")
            let inspect = try agent.cli(["inspect", "hog"])
            #expect(inspect.stdout.contains("\"OOMKilled\":true"), "\(inspect.stdout)")
            #expect(inspect.stdout.contains("\"ExitCode\":137"))
            #expect(agent.log.contains("OOM event"))
            let id = inspect.stdout.split(separator: "\"").dropFirst(3).first.map(String.init) ?? ""
            #expect(try Files.readString(cgroupFile(agent, "memory", "\(id)/memory.limit_in_bytes")) == "16777216\n")
            #expect(try agent.cli(["rm", "hog"]).status == 0)
            #expect(agent.cgroupsLeft.isEmpty, "\(agent.cgroupsLeft)")
            // Berth's parent cgroup went with its last container.
            #expect(agent.cgroupDirs.isEmpty, "\(agent.cgroupDirs)")
        }
    }

    @Test("--pids-limit: fork fails inside; --cpus is in cpu.cfs_quota_us and in a busy loop's usage; stats")
    func pidsAndCPU() async throws {
        try await withAgent { agent in
            let client = try await agent.clientWithImage()
            let limited = try agent.cli(["run", "-d", "--name", "limited", "--pids-limit", "5", "busybox", "sleep", "1000"])
            #expect(limited.status == 0, "\(limited.stderr)")
            let fork = try agent.cli(["exec", "limited", "sh", "-c", "for i in 1 2 3 4 5 6 7; do sleep 30 >/dev/null 2>&1 & done; echo spawned"])
            #expect(fork.stderr.contains("can't fork") || fork.stderr.contains("Resource temporarily unavailable"), "\(fork.stdout) \(fork.stderr)")

            let busy = try agent.cli(["run", "-d", "--name", "busy", "--cpus", "0.5", "--cpu-shares", "512", "busybox", "sh", "-c", "while true; do :; done"])
            #expect(busy.status == 0, "\(busy.stderr)")
            let id = busy.stdout.trimmingNewline
            #expect(try Files.readString(cgroupFile(agent, "cpu", "\(id)/cpu.cfs_quota_us")) == "50000\n")
            #expect(try Files.readString(cgroupFile(agent, "cpu", "\(id)/cpu.shares")) == "512\n")
            let a = try await client.stats(["busy"])
            usleep(1_000_000)
            let b = try await client.stats(["busy"])
            let used = Double((b.first?.cpuUsageNanos ?? 0) - (a.first?.cpuUsageNanos ?? 0))
            let wall = Double((b.first?.readUnixNano ?? 0) - (a.first?.readUnixNano ?? 0))
            let percent = used / wall * 100
            #expect(percent > 20 && percent < 65, "a busy loop under --cpus 0.5 used \(percent)% of a CPU")
            #expect((b.first?.pids ?? 0) >= 1)
            #expect((b.first?.memoryUsageBytes ?? 0) > 0)
            let table = try agent.cli(["stats", "--no-stream", "busy", "limited"])
            #expect(table.status == 0, "\(table.stderr)")
            #expect(table.stdout.contains("CPU %") && table.stdout.contains("busy") && table.stdout.contains("limited"))
            // An exec'd process is counted in the container's cgroup.
            let procs = try Files.readString(cgroupFile(agent, "pids", "\(id)/cgroup.procs"))
            #expect(!procs.isEmpty)
            _ = try await client.removeContainer("busy", force: true)
            _ = try await client.removeContainer("limited", force: true)
            #expect(agent.cgroupsLeft.isEmpty, "\(agent.cgroupsLeft)")
        }
    }

    @Test("bad limits are refused before anything is created")
    func badLimits() async throws {
        try await withAgent { agent in
            let client = try await agent.clientWithImage()
            for (args, text) in [(["-m", "10k"], "below the minimum of 6 MiB"), (["--cpus", "999"], "more than the"),
                                 (["--cpuset-cpus", "0-99"], "--cpuset-cpus"), (["--cpu-shares", "1"], "outside 2-262144"),
                                 (["-m", "64m", "--memory-swap", "32m"], "must be at least --memory")] {
                let r = try agent.cli(["run", "--rm"] + args + ["busybox", "true"])
                #expect(r.status != 0, "\(args)")
                #expect(r.stderr.contains(text), "\(args): \(r.stderr)")
            }
            let neg = try agent.cli(["run", "--rm", "--cpus", "-1", "busybox", "true"])
            #expect(neg.status == 64)
            #expect(try await client.listContainers(all: true).isEmpty)
            #expect(agent.cgroupsLeft.isEmpty)
        }
    }

    @Test("a pod's cgroup holds its limits; its containers' cgroups nest in it; pod rm leaves none")
    func podNesting() async throws {
        try await withAgent { agent in
            let client = try await agent.clientWithImage()
            var p = PodSpec()
            p.name = "limited"
            p.memoryBytes = 64 << 20
            p.cpuMillis = 500
            p.network = "none"
            let pod = try await client.createPod(p)
            let podDir = "pod-\(pod.id)"
            #expect(try Files.readString(cgroupFile(agent, "memory", "\(podDir)/memory.limit_in_bytes")) == "\(64 << 20)\n")
            #expect(try Files.readString(cgroupFile(agent, "cpu", "\(podDir)/cpu.cfs_quota_us")) == "50000\n")
            var s = spec(["sleep", "1000"], rm: false, name: "inpod")
            s.pod = "limited"
            let c = try await client.createContainer(s)
            _ = try await client.startContainer(c.id)
            let own = try Files.readString("/proc/\(try await client.inspectContainer("inpod").pid)/cgroup")
            #expect(own.contains("memory:/berth-test-\(agent.netPrefix)/\(podDir)/\(c.id)"), "\(own)")
            try await client.removePod("limited", force: true)
            #expect(agent.cgroupsLeft.isEmpty, "\(agent.cgroupsLeft)")
            #expect(agent.cgroupDirs.isEmpty, "\(agent.cgroupDirs)")
        }
    }
}
