#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem
import Testing

// Hardening by default, against real containers: capabilities, no_new_privs, seccomp,
// masked and read-only paths, --read-only, -v and --tmpfs (with a symlink escape
// attempt), the descriptors a container gets, and bad input.

private func sh(_ agent: TestAgent, _ flags: [String], _ script: String) throws -> ProcessOutput {
    try agent.cli(["run", "--rm"] + flags + ["busybox", "sh", "-c", script])
}

extension String {
    /// Without surrounding spaces and newlines.
    var trimmedLine: String { Substring(self).trimmingSpaces.split(separator: "\n").first.map(String.init) ?? "" }
}

private func field(_ status: String, _ name: String) -> String {
    for line in status.split(separator: "\n") where line.hasPrefix(name + ":") {
        return String(line.dropFirst(name.count + 1).filter { $0 != " " && $0 != "\t" })
    }
    return ""
}

@Suite("Security (root, real containers)", .enabled(if: isRoot, "needs root"), .timeLimit(.minutes(4)))
struct SecurityIntegrationTests {
    @Test("capabilities: docker's default set, --cap-add, --cap-drop ALL, --privileged; no_new_privs; seccomp on")
    func capabilities() async throws {
        try await withAgent { agent in
            _ = try await agent.clientWithImage()
            let status = try sh(agent, [], "cat /proc/self/status").stdout
            #expect(field(status, "CapEff") == "00000000a80425fb", "\(status)")
            #expect(field(status, "CapBnd") == "00000000a80425fb")
            #expect(field(status, "NoNewPrivs") == "1")
            #expect(field(status, "Seccomp") == "2")
            let added = try sh(agent, ["--cap-add", "NET_ADMIN"], "cat /proc/self/status").stdout
            #expect(field(added, "CapEff") == "00000000a80435fb")
            let none = try sh(agent, ["--cap-drop", "ALL", "--cap-add", "chown"], "cat /proc/self/status").stdout
            #expect(field(none, "CapEff") == "0000000000000001")
            let user = try sh(agent, ["-u", "1000"], "cat /proc/self/status").stdout
            #expect(field(user, "CapEff") == "0000000000000000")
            // Every capability the agent itself holds (root here lacks CAP_SYS_RESOURCE).
            let mine = field((try? Files.readString("/proc/self/status")) ?? "", "CapBnd")
            let privileged = try sh(agent, ["--privileged"], "cat /proc/self/status").stdout
            #expect(field(privileged, "CapEff") == mine)
            #expect(field(privileged, "Seccomp") == "0")
            #expect(field(privileged, "NoNewPrivs") == "0")
            let nnp = try sh(agent, ["--security-opt", "no-new-privileges=false"], "cat /proc/self/status").stdout
            #expect(field(nnp, "NoNewPrivs") == "0")
            // An exec'd process gets the container's confinement, not the agent's.
            #expect(try agent.cli(["run", "-d", "--name", "confined", "--cap-add", "NET_ADMIN", "busybox", "sleep", "1000"]).status == 0)
            let exec = try agent.cli(["exec", "confined", "cat", "/proc/self/status"]).stdout
            #expect(field(exec, "CapEff") == "00000000a80435fb", "\(exec)")
            #expect(field(exec, "CapBnd") == "00000000a80435fb")
            #expect(field(exec, "Seccomp") == "2")
            #expect(field(exec, "NoNewPrivs") == "1")
            #expect(try agent.cli(["rm", "-f", "confined"]).status == 0)
            // Without CAP_NET_ADMIN, no interface can be changed; with it, it can.
            #expect(try sh(agent, [], "ip link set lo down").status != 0)
            #expect(try sh(agent, ["--cap-add", "NET_ADMIN"], "ip link set lo down").status == 0)
        }
    }

    @Test("seccomp: a blocked syscall fails with EPERM, and works with seccomp=unconfined; a user profile")
    func seccomp() async throws {
        try await withAgent { agent in
            _ = try await agent.clientWithImage()
            // unshare is blocked by the default profile (and needs CAP_SYS_ADMIN anyway):
            // with the capability it is allowed, as docker does.
            let blocked = try sh(agent, [], "unshare -u true")
            #expect(blocked.status != 0)
            #expect(blocked.stderr.contains("Operation not permitted"), "\(blocked.stderr)")
            #expect(try sh(agent, ["--cap-add", "SYS_ADMIN"], "unshare -u true").status == 0)
            // A profile that blocks mkdir.
            let dir = try TempDir("berth-seccomp")
            defer { dir.remove() }
            let profile = dir.path + "/profile.json"
            try Files.writeAtomically(profile, Array("""
            {"defaultAction": "SCMP_ACT_ALLOW",
             "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
            """.utf8))
            let denied = try sh(agent, ["--security-opt", "seccomp=\(profile)"], "mkdir /made")
            #expect(denied.status != 0)
            #expect(denied.stderr.contains("Operation not permitted"), "\(denied.stderr)")
            #expect(try sh(agent, ["--security-opt", "seccomp=unconfined"], "mkdir /made").status == 0)
            // Bad profiles.
            try Files.writeAtomically(profile, Array("{\"defaultAction\": \"SCMP_ACT_NOPE\"}".utf8))
            let bad = try sh(agent, ["--security-opt", "seccomp=\(profile)"], "true")
            #expect(bad.status != 0 && bad.stderr.contains("seccomp"), "\(bad.stderr)")
            let missing = try sh(agent, ["--security-opt", "seccomp=\(dir.path)/none.json"], "true")
            #expect(missing.status == 64 && missing.stderr.contains("cannot read the seccomp profile"))
        }
    }

    @Test("masked and read-only paths, --read-only, only fds 0-2, -v rw/ro and --tmpfs, no symlink escape")
    func filesystem() async throws {
        try await withAgent { agent in
            let client = try await agent.clientWithImage()
            // A masked file the host has (this kernel may lack /proc/kcore) reads as empty.
            let maskedFile = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug"].first { Files.exists($0) } ?? "/proc/keys"
            let masked = try sh(agent, [], "wc -c < \(maskedFile)")
            #expect(masked.stdout.trimmedLine == "0", "\(maskedFile): \(masked)")
            let sys = try sh(agent, [], "echo 1 > /proc/sys/vm/drop_caches")
            #expect(sys.status != 0 && sys.stderr.contains("Read-only file system"), "\(sys.stderr)")
            #expect(try sh(agent, [], "ls /sys/firmware | wc -l").stdout.trimmedLine == "0")
            #expect(try sh(agent, [], "ls /proc/self/fd").stdout == "0\n1\n2\n3\n")
            let ro = try sh(agent, ["--read-only"], "touch /x")
            #expect(ro.status != 0 && ro.stderr.contains("Read-only file system"))
            #expect(try sh(agent, ["--read-only"], "touch /dev/shm/x").status == 0)

            let host = try TempDir("berth-volume")
            defer { host.remove() }
            try Files.writeAtomically(host.path + "/hello", Array("from-host\n".utf8))
            let rw = try sh(agent, ["-v", "\(host.path):/data"], "cat /data/hello; echo from-container > /data/back")
            #expect(rw.stdout == "from-host\n", "\(rw.stderr)")
            #expect(try Files.readString(host.path + "/back") == "from-container\n")
            let readOnly = try sh(agent, ["-v", "\(host.path):/data:ro"], "echo x > /data/back")
            #expect(readOnly.status != 0 && readOnly.stderr.contains("Read-only file system"))
            let tmpfs = try sh(agent, ["--tmpfs", "/scratch:size=1m"], "df -k /scratch | tail -1")
            #expect(tmpfs.stdout.contains("1024"), "\(tmpfs.stdout)")

            // An image whose /evil points at the host's /tmp: the mount lands inside the rootfs.
            let root = try TempDir("berth-escape")
            defer { root.remove() }
            let untar = try runProgram(["/bin/tar", "-xf", try testImage.get(), "-C", root.path])
            try #require(untar.status == 0)
            let outside = try TempDir("berth-outside")
            defer { outside.remove() }
            let link = symlink("/../../../..\(outside.path)", root.path + "/evil")
            try #require(link == 0)
            // The symlink's target inside the rootfs exists too: the mount must go there.
            try Files.makeDirectories(root.path + outside.path)
            let escape = try agent.cli(["run", "--rm", "--rootfs", root.path, "-v", "\(host.path):/evil/mnt", "ls", "/evil/mnt"])
            #expect(escape.status == 0, "\(escape.stderr)")
            #expect(!Files.exists(outside.path + "/mnt"), "the mount escaped the rootfs")
            #expect(Files.exists(root.path + outside.path + "/mnt"))

            // Bad input: unknown capability, missing bind source, bad targets.
            for (flags, text) in [(["--cap-add", "NOT_A_CAP"], "unknown capability"), (["-v", "/nonexistent-berth:/x"], "does not exist"),
                                  (["-v", "\(host.path):/a/../b"], "mount target"), (["--tmpfs", "/t:size=1m;rm"], "invalid --tmpfs")] {
                let r = try sh(agent, flags, "true")
                #expect(r.status != 0 && r.stderr.contains(text), "\(flags): \(r.stderr)")
            }
            #expect(try await client.listContainers(all: true).isEmpty)
            #expect(agent.mountsLeft.isEmpty, "\(agent.mountsLeft)")
        }
    }
}
