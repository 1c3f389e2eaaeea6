// Security policy: capability masks (docker semantics, libcap names) and seccomp profiles
// compiled to BPF with libseccomp (checked through libseccomp's PFC text; nothing is loaded
// into the test process, where a filter would stay for good).
#if canImport(Glibc)
import Glibc
#endif
import Testing
import BerthErrors
import BerthSystem
@testable import BerthRuntime

private func kernelLastCap() throws -> Int {
    let text = try Files.readString("/proc/sys/kernel/cap_last_cap")
    return Int(text.filter { $0 != "\n" })!
}

private func invalidArgument(_ body: () throws(BerthError) -> Void) -> BerthError? {
    do { try body() } catch {
        #expect(error.code == .invalidArgument, "\(error)")
        return error
    }
    Issue.record("expected INVALID_ARGUMENT")
    return nil
}

private func json(_ s: String) -> [UInt8] { Array(s.utf8) }

/// The lines of a PFC dump that follow `# filter for syscall "name"` up to the next filter.
private func pfcRule(_ pfc: String, _ name: String) -> [String] {
    var out: [String] = []
    var inside = false
    for line in pfc.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
        if line.contains("# filter for syscall ") { inside = line.contains("\"\(name)\"") }
        if inside { out.append(line) }
    }
    return out
}

@Suite("Security capabilities")
struct SecurityCapabilityTests {
    @Test func defaultMask() throws {
        #expect(try Capabilities.mask(of: Capabilities.dockerDefault) == 0xa80425fb)
        #expect(try Capabilities.mask(add: [], drop: [], privileged: false) == 0xa80425fb)
    }

    @Test func numberSpellings() throws {
        #expect(try Capabilities.number("CAP_NET_ADMIN") == 12)
        #expect(try Capabilities.number("NET_ADMIN") == 12)
        #expect(try Capabilities.number("net_admin") == 12)
        #expect(try Capabilities.number("Cap_Sys_Admin") == 21)
        #expect(try Capabilities.number("CHOWN") == 0)
    }

    @Test func addAndDrop() throws {
        let added = try Capabilities.mask(add: ["NET_ADMIN"], drop: [], privileged: false)
        #expect(added & (1 << 12) != 0)
        #expect(added == 0xa80425fb | (1 << 12))
        #expect(try Capabilities.mask(add: ["CHOWN"], drop: ["ALL"], privileged: false) == 1)
        #expect(try Capabilities.mask(add: [], drop: ["all"], privileged: false) == 0)
        #expect(try Capabilities.mask(add: [], drop: ["NET_RAW", "cap_mknod"], privileged: false) == 0xa80425fb & ~(UInt64(1) << 13) & ~(UInt64(1) << 27))
        // Added and dropped: drop wins, unless the drop is ALL.
        #expect(try Capabilities.mask(add: ["NET_ADMIN"], drop: ["NET_ADMIN"], privileged: false) == 0xa80425fb)
        #expect(try Capabilities.mask(add: ["NET_ADMIN"], drop: ["ALL", "NET_ADMIN"], privileged: false) == 1 << 12)
    }

    @Test func allAndPrivileged() throws {
        let last = try kernelLastCap()
        let all: UInt64 = last >= 63 ? .max : (UInt64(1) << UInt64(last + 1)) - 1
        #expect(Capabilities.lastCap == last)
        #expect(try Capabilities.mask(add: [], drop: [], privileged: true) == all)
        #expect(try Capabilities.mask(add: [], drop: ["ALL"], privileged: true) == all)
        #expect(try Capabilities.mask(add: ["ALL"], drop: [], privileged: false) == all)
        #expect(try Capabilities.mask(add: ["ALL"], drop: ["SYS_ADMIN"], privileged: false) == all & ~(UInt64(1) << 21))
    }

    @Test func unknownNames() {
        for bad in ["NET_ADMINS", "", "CAP_", "12", "ALL_THE_THINGS", "net admin"] {
            let e = invalidArgument { () throws(BerthError) in _ = try Capabilities.number(bad) }
            #expect(e?.message.contains("unknown capability \"\(bad)\"") == true, "\(String(describing: e))")
        }
        _ = invalidArgument { () throws(BerthError) in _ = try Capabilities.mask(add: ["BOGUS"], drop: [], privileged: false) }
        _ = invalidArgument { () throws(BerthError) in _ = try Capabilities.mask(add: [], drop: ["BOGUS"], privileged: true) }
    }

    @Test func namesRoundTrip() throws {
        #expect(Capabilities.names(0) == [])
        #expect(Capabilities.names(1 << 12) == ["NET_ADMIN"])
        let names = Capabilities.names(0xa80425fb)
        #expect(names.count == 14)
        #expect(Set(names) == Set(Capabilities.dockerDefault))
        #expect(try Capabilities.mask(of: names) == 0xa80425fb)
        let all = Capabilities.allMask
        #expect(try Capabilities.mask(of: Capabilities.names(all)) == all)
    }
}

@Suite("Security seccomp")
struct SecuritySeccompTests {
    @Test func defaultCompiles() throws {
        let bpf = try SeccompProfile.compileDefault(capMask: 0xa80425fb)
        #expect(!bpf.isEmpty)
        #expect(bpf.count % 8 == 0)
        // A privileged container's filter is smaller (the capability-gated rules go).
        let privileged = try SeccompProfile.compileDefault(capMask: Capabilities.allMask)
        #expect(privileged.count % 8 == 0 && privileged.count < bpf.count)
    }

    @Test func defaultPFC() throws {
        let pfc = try SeccompProfile.defaultFilter(capMask: 0xa80425fb).pfc()
        let kexec = pfcRule(pfc, "kexec_load")
        #expect(kexec.contains { $0.contains("ERRNO(1)") }, "\(pfc)")
        for blocked in ["mount", "ptrace", "unshare", "setns", "bpf", "perf_event_open", "reboot", "init_module", "open_by_handle_at"] {
            #expect(pfcRule(pfc, blocked).contains { $0.contains("ERRNO(1)") }, "\(blocked)")
        }
        // clone: EPERM only with namespace flags; clone3: ENOSYS.
        let clone = pfcRule(pfc, "clone")
        #expect(clone.contains { $0.contains("ERRNO(1)") })
        #expect(clone.contains { $0.contains("& 0x") || $0.contains("0x40000000") || $0.contains("0x10000000") }, "\(clone)")
        #expect(pfcRule(pfc, "clone3").contains { $0.contains("ERRNO(\(ENOSYS))") })
        // Nothing exec and ordinary programs need is filtered; the default is ALLOW.
        for free in ["read", "write", "execve", "execveat", "mmap", "openat", "exit_group", "personality"] {
            #expect(pfcRule(pfc, free).isEmpty, "\(free) is filtered")
        }
        #expect(pfc.contains("action ALLOW;"))

        // With the capabilities, the gated syscalls are allowed.
        let admin = try SeccompProfile.defaultFilter(capMask: 0xa80425fb | 1 << 21 | 1 << 19).pfc()
        for allowed in ["mount", "unshare", "setns", "ptrace", "process_vm_readv", "clone", "clone3"] {
            #expect(pfcRule(admin, allowed).isEmpty, "\(allowed) still filtered with SYS_ADMIN/SYS_PTRACE")
        }
        #expect(!pfcRule(admin, "kexec_load").isEmpty)
        #expect(!pfcRule(admin, "reboot").isEmpty)
        // bpf and perf_event_open also come with CAP_BPF and CAP_PERFMON (docker does the same).
        let bpf = try SeccompProfile.defaultFilter(capMask: 0xa80425fb | 1 << 39).pfc()
        #expect(pfcRule(bpf, "bpf").isEmpty)
        #expect(!pfcRule(bpf, "perf_event_open").isEmpty)
    }

    @Test func jsonProfileCompiles() throws {
        let profile = json("""
        {
          "defaultAction": "SCMP_ACT_ALLOW",
          "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
          "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["no_such_syscall_at_all"], "action": "SCMP_ACT_ERRNO"}
          ]
        }
        """)
        let bpf = try SeccompProfile.compile(dockerJSON: profile, capMask: 0xa80425fb)
        #expect(!bpf.isEmpty && bpf.count % 8 == 0)
        let pfc = try SeccompProfile.filter(dockerJSON: profile, capMask: 0xa80425fb).pfc()
        #expect(pfcRule(pfc, "mkdir").contains { $0.contains("ERRNO(1)") })
        #expect(pfcRule(pfc, "mkdirat").contains { $0.contains("ERRNO(1)") })
        #expect(pfcRule(pfc, "rmdir").isEmpty)
    }

    @Test func jsonProfileFeatures() throws {
        let profile = json("""
        {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
         "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                     {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
                     {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null}],
         "syscalls": [
           {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
           {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
           {"name": "personality", "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                     {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
           {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
            "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
           {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
           {"names": ["iopl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["s390x"]}},
           {"names": ["modify_ldt"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "arm64"]}},
           {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
           {"names": ["getpid"], "action": "SCMP_ACT_KILL_PROCESS", "comment": "x"}
         ]}
        """)
        let pfc = try SeccompProfile.filter(dockerJSON: profile, capMask: 0xa80425fb).pfc()
        #expect(pfc.contains("ERRNO(38)"), "\(pfc)")
        #expect(pfcRule(pfc, "read").contains { $0.contains("ALLOW") })
        #expect(pfcRule(pfc, "personality").count > 2)
        #expect(pfcRule(pfc, "clone").contains { $0.contains("ALLOW") })
        #expect(pfcRule(pfc, "mount").isEmpty)
        #expect(pfcRule(pfc, "ptrace").contains { $0.contains("ALLOW") })
        #expect(pfcRule(pfc, "iopl").isEmpty)
        #expect(pfcRule(pfc, "modify_ldt").contains { $0.contains("ALLOW") })
        // The sub-architectures of the native one are in the filter (x86_64 hosts).
        if SeccompProfile.nativeArchNames.contains("amd64") { #expect(pfc.contains("filter for arch x86 ")) }
        #expect(pfcRule(pfc, "kill").contains { $0.contains("ERRNO(1)") })
        #expect(pfcRule(pfc, "getpid").contains { $0.contains("KILL_PROCESS") })

        let admin = try SeccompProfile.filter(dockerJSON: profile, capMask: 0xa80425fb | 1 << 21).pfc()
        #expect(pfcRule(admin, "mount").contains { $0.contains("ALLOW") })
        #expect(pfcRule(admin, "clone").isEmpty)
    }

    @Test func malformedJSON() {
        let cases: [(String, String)] = [
            ("{\"defaultAction\": \"SCMP_ACT_ALLOW\",\n \"syscalls\": [\n  {\"names\": [\"mkdir\"] \"action\": \"SCMP_ACT_ERRNO\"}]}", "line 3:"),
            ("{\"defaultAction\": \"SCMP_ACT_ALLOW\"", "line 1:"),
            ("{\n\"defaultAction\": 'SCMP_ACT_ALLOW'}", "line 2:"),
            ("{\"defaultAction\": \"SCMP_ACT_ALLOW\"} x", "line 1:"),
            ("{\"defaultAction\": \"SCMP_ACT_ALLOW\",}", "line 1:"),
            ("{\"defaultAction\": \"SCMP\\qACT\"}", "line 1:"),
            ("{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"defaultErrnoRet\": 1.5}", "line 1:"),
            ("{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"defaultErrnoRet\": 18446744073709551616}", "line 1:"),
            ("", "line 1:"),
            ("[]", "line 1:"),
            ("{}", "line 1:"),
        ]
        for (text, position) in cases {
            let e = invalidArgument { () throws(BerthError) in _ = try SeccompProfile.compile(dockerJSON: json(text), capMask: 0) }
            #expect(e?.message.hasPrefix("seccomp profile: \(position)") == true, "\(text): \(String(describing: e))")
        }
    }

    @Test func semanticErrors() {
        let cases: [(String, String)] = [
            ("{\"defaultAction\": \"SCMP_ACT_ALLOW\",\n\"syscalls\": [{\"names\": [\"mkdir\"],\n \"action\": \"SCMP_ACT_EXPLODE\"}]}", "line 3: unknown action \"SCMP_ACT_EXPLODE\""),
            ("{\"defaultAction\": \"SCMP_ACT_NOPE\"}", "line 1: unknown action \"SCMP_ACT_NOPE\""),
            ("{\"defaultAction\": \"SCMP_ACT_ALLOW\",\n\"syscalls\": [{\"names\": [\"mkdir\"], \"action\": \"SCMP_ACT_ERRNO\",\n \"args\": [{\"index\": 6, \"value\": 1, \"op\": \"SCMP_CMP_EQ\"}]}]}", "line 3:"),
            ("{\"defaultAction\": \"SCMP_ACT_ALLOW\",\n\"syscalls\": [{\"names\": [\"mkdir\"], \"action\": \"SCMP_ACT_ERRNO\",\n \"args\": [{\"index\": 0, \"value\": 1, \"op\": \"SCMP_CMP_ABOUT\"}]}]}", "line 3: unknown operator"),
            ("{\"defaultAction\": \"SCMP_ACT_ALLOW\",\n\"syscalls\": [{\"action\": \"SCMP_ACT_ERRNO\"}]}", "line 2: syscall rule without \"names\""),
            ("{\"defaultAction\": \"SCMP_ACT_ALLOW\",\n\"syscalls\": [{\"names\": [\"mkdir\"], \"action\": \"SCMP_ACT_ERRNO\",\n \"includes\": {\"caps\": [\"CAP_BOGUS\"]}}]}", "line 3: unknown capability"),
        ]
        for (text, expected) in cases {
            let e = invalidArgument { () throws(BerthError) in _ = try SeccompProfile.compile(dockerJSON: json(text), capMask: 0) }
            #expect(e?.message.hasPrefix("seccomp profile: \(expected)") == true, "\(String(describing: e))")
        }
    }

    @Test func jsonStrings() throws {
        let doc = try JSON.parse(json(#"{"a": "x\"\\\/\n\u00e9\ud83d\ude00", "b": [true, false, null, -3, 18446744073709551615]}"#), what: "t")
        guard case .string(let s) = doc["a"]?.value else { Issue.record("a"); return }
        #expect(s == "x\"\\/\n\u{e9}\u{1F600}")
        guard case .array(let items) = doc["b"]?.value, items.count == 5 else { Issue.record("b"); return }
        guard case .integer(true, 3) = items[3].value, case .integer(false, UInt64.max) = items[4].value else {
            Issue.record("numbers"); return
        }
        _ = invalidArgument { () throws(BerthError) in _ = try JSON.parse(json(#"["\ud83d"]"#), what: "t") }
        _ = invalidArgument { () throws(BerthError) in _ = try JSON.parse(json("[01]"), what: "t") }
        _ = invalidArgument { () throws(BerthError) in _ = try JSON.parse(json("[tru]"), what: "t") }
        _ = invalidArgument { () throws(BerthError) in _ = try JSON.parse(json("[\"a\nb\"]"), what: "t") }
    }

    @Test func loadFile() throws {
        var template = Array("/tmp/berth-seccomp-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw Errno.current.error("mkdtemp") }
        let dir = String(cString: made)
        defer { try? Files.removeTree(dir) }
        let missing = invalidArgument { () throws(BerthError) in _ = try SeccompProfile.load("\(dir)/nope.json") }
        #expect(missing?.message.hasPrefix("seccomp profile \(dir)/nope.json:") == true, "\(String(describing: missing))")
        let isDir = invalidArgument { () throws(BerthError) in _ = try SeccompProfile.load(dir) }
        #expect(isDir?.message.contains("directory") == true)
        let text = json(#"{"defaultAction": "SCMP_ACT_ALLOW"}"#)
        try Files.writeAtomically("\(dir)/p.json", text)
        #expect(try SeccompProfile.load("\(dir)/p.json") == text)
        #expect(try SeccompProfile.compile(dockerJSON: SeccompProfile.load("\(dir)/p.json"), capMask: 0).count % 8 == 0)
    }
}
