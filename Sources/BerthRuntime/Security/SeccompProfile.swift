#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import CSeccomp

/// Seccomp profiles compiled to raw BPF (`struct sock_filter[]`, 8 bytes per instruction)
/// with libseccomp: docker's default profile (in spirit: a deny list on an allow default),
/// or a user profile in docker's JSON format. The capability set decides, as in docker,
/// which capability-gated syscalls are allowed.
enum SeccompProfile {
    /// Syscalls the default profile answers with EPERM unless the container holds one of
    /// `caps` (none: always). Names libseccomp does not know are skipped.
    static let defaultDenied: [(caps: [Int], names: [String])] = [
        ([], ["add_key", "keyctl", "request_key",
               "create_module", "get_kernel_syms", "query_module",
               "kexec_file_load", "kexec_load", "nfsservctl", "move_pages",
               "swapon", "swapoff", "sysfs", "_sysctl", "uselib", "userfaultfd", "ustat",
               "vm86", "vm86old"]),
        ([Capabilities.sysAdmin], ["mount", "umount", "umount2", "unshare", "setns", "pivot_root",
                                 "lookup_dcookie", "quotactl", "quotactl_fd",
                                 "name_to_handle_at",
                                 // The new mount API reaches what mount(2) does.
                                 "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
                                 "mount_setattr"]),
        ([Capabilities.sysAdmin, Capabilities.bpf], ["bpf"]),
        ([Capabilities.sysAdmin, Capabilities.perfmon], ["perf_event_open"]),
        ([Capabilities.dacReadSearch], ["open_by_handle_at"]),
        ([Capabilities.sysPtrace], ["ptrace", "process_vm_readv", "process_vm_writev", "kcmp"]),
        ([Capabilities.sysBoot], ["reboot"]),
        ([Capabilities.sysModule], ["init_module", "finit_module", "delete_module"]),
        ([Capabilities.sysTime], ["clock_settime", "clock_settime64", "settimeofday", "stime", "clock_adjtime",
                                "clock_adjtime64"]),
        ([Capabilities.sysRawio], ["iopl", "ioperm"]),
        ([Capabilities.sysPacct], ["acct"]),
        ([Capabilities.sysNice], ["get_mempolicy", "set_mempolicy", "mbind"]),
    ]

    /// clone(2) flags that make new namespaces (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
    /// NEWUSER, NEWPID, NEWNET): refused without CAP_SYS_ADMIN, like docker.
    static let cloneNamespaceFlags: UInt64 = 0x7E02_0000

    /// 32-bit ABIs the native architecture also runs, added to filters so that their
    /// syscalls are filtered like the native ones (docker does the same).
    static var companionArches: [String] {
        switch seccomp_arch_native() {
        case seccomp_arch_resolve_name("x86_64"): ["x86", "x32"]
        case seccomp_arch_resolve_name("aarch64"): ["arm"]
        default: []
        }
    }

    // MARK: - The default profile

    /// The default profile as a libseccomp filter (the BPF is `compileDefault`).
    static func defaultFilter(capMask: UInt64) throws(BerthError) -> SeccompFilter {
        let filter = try SeccompFilter(defaultAction: berth_scmp_act_allow(), extraArches: companionArches)
        let eperm = berth_scmp_act_errno(UInt16(EPERM))
        func has(_ cap: Int) -> Bool { capMask & (UInt64(1) << UInt64(cap)) != 0 }
        for group in defaultDenied {
            if group.caps.contains(where: has) { continue }
            for name in group.names {
                guard let nr = SeccompFilter.resolve(name) else { continue }
                try filter.add(eperm, nr, name: name)
            }
        }
        if !has(Capabilities.sysAdmin) {
            // clone: EPERM when any namespace flag is set (one rule per flag: libseccomp
            // compares "arg & mask == value", so "any of" takes one comparison each).
            if let clone = SeccompFilter.resolve("clone") {
                var bit: UInt64 = 1
                while bit != 0 {
                    if cloneNamespaceFlags & bit != 0 {
                        try filter.add(eperm, clone, [SeccompFilter.arg(0, SCMP_CMP_MASKED_EQ, bit, bit)], name: "clone")
                    }
                    bit <<= 1
                }
            }
            // clone3 passes its flags in memory, which seccomp cannot read: ENOSYS makes
            // glibc fall back to clone, where the rule above applies.
            if let clone3 = SeccompFilter.resolve("clone3") {
                try filter.add(berth_scmp_act_errno(UInt16(ENOSYS)), clone3, name: "clone3")
            }
        }
        return filter
    }

    /// Docker's default profile in spirit: everything is allowed except the syscalls in
    /// `defaultDenied` (EPERM), capability-gated ones allowed when `capMask` has the
    /// capability, and namespace-creating clone/clone3 without CAP_SYS_ADMIN.
    static func compileDefault(capMask: UInt64) throws(BerthError) -> [UInt8] {
        try defaultFilter(capMask: capMask).bpf()
    }

    // MARK: - Docker JSON profiles

    private static func fail(_ line: Int, _ message: String) -> BerthError {
        BerthError(.invalidArgument, "seccomp profile: line \(line): \(message)")
    }

    private static func integer(_ j: JSON, _ field: String, max: UInt64) throws(BerthError) -> UInt64 {
        guard case .integer(let negative, let magnitude) = j.value, !negative, magnitude <= max else {
            throw fail(j.line, "\"\(field)\" must be an integer from 0 to \(max), not \(j.kind)")
        }
        return magnitude
    }

    private static func string(_ j: JSON, _ field: String) throws(BerthError) -> String {
        guard case .string(let s) = j.value else { throw fail(j.line, "\"\(field)\" must be a string, not \(j.kind)") }
        return s
    }

    private static func strings(_ j: JSON, _ field: String) throws(BerthError) -> [String] {
        if case .null = j.value { return [] }
        guard case .array(let items) = j.value else { throw fail(j.line, "\"\(field)\" must be an array of strings, not \(j.kind)") }
        var out: [String] = []
        for item in items { out.append(try string(item, field)) }
        return out
    }

    private static func object(_ j: JSON, _ field: String) throws(BerthError) -> JSON? {
        switch j.value {
        case .null: return nil
        case .object: return j
        default: throw fail(j.line, "\"\(field)\" must be an object, not \(j.kind)")
        }
    }

    /// A docker action name with its errno (for SCMP_ACT_ERRNO) or trace message number.
    private static func action(_ j: JSON, errnoRet: UInt16) throws(BerthError) -> UInt32 {
        let name = try string(j, "action")
        switch name {
        case "SCMP_ACT_ALLOW": return berth_scmp_act_allow()
        case "SCMP_ACT_ERRNO": return berth_scmp_act_errno(errnoRet)
        case "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD": return berth_scmp_act_kill_thread()
        case "SCMP_ACT_KILL_PROCESS": return berth_scmp_act_kill_process()
        case "SCMP_ACT_TRAP": return berth_scmp_act_trap()
        case "SCMP_ACT_LOG": return berth_scmp_act_log()
        case "SCMP_ACT_TRACE": return berth_scmp_act_trace(errnoRet)
        case "SCMP_ACT_NOTIFY":
            throw fail(j.line, "action SCMP_ACT_NOTIFY needs a seccomp agent, which Berth does not support")
        default:
            throw fail(j.line, "unknown action \"\(name)\": use SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, SCMP_ACT_KILL_THREAD, SCMP_ACT_KILL_PROCESS, SCMP_ACT_TRAP, SCMP_ACT_TRACE or SCMP_ACT_LOG")
        }
    }

    private static let operators: [String: scmp_compare] = [
        "SCMP_CMP_NE": SCMP_CMP_NE, "SCMP_CMP_LT": SCMP_CMP_LT, "SCMP_CMP_LE": SCMP_CMP_LE,
        "SCMP_CMP_EQ": SCMP_CMP_EQ, "SCMP_CMP_GE": SCMP_CMP_GE, "SCMP_CMP_GT": SCMP_CMP_GT,
        "SCMP_CMP_MASKED_EQ": SCMP_CMP_MASKED_EQ,
    ]

    /// Docker's names for the native architecture ("amd64" and "x86_64" on x86_64), for
    /// `includes`/`excludes` `arches`.
    static var nativeArchNames: [String] {
        var u = utsname()
        guard uname(&u) == 0 else { return [] }
        let machine = withUnsafeBytes(of: &u.machine) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        switch machine {
        case "x86_64": return ["amd64", "x86_64"]
        case "aarch64": return ["arm64", "aarch64"]
        case "ppc64le": return ["ppc64le"]
        case "s390x": return ["s390x"]
        case "riscv64": return ["riscv64"]
        default: return [machine]
        }
    }

    /// Whether a rule's `includes`/`excludes` let it apply: every capability in
    /// includes.caps held and none in excludes.caps; the native arch in includes.arches
    /// (when given) and not in excludes.arches. `minKernel` is accepted and ignored.
    private static func applies(_ rule: JSON, capMask: UInt64) throws(BerthError) -> Bool {
        let arch = nativeArchNames
        func capsMask(_ j: JSON) throws(BerthError) -> UInt64 {
            var m: UInt64 = 0
            for name in try strings(j, "caps") {
                do { m |= UInt64(1) << UInt64(try Capabilities.number(name)) } catch {
                    throw fail(j.line, error.message)
                }
            }
            return m
        }
        if let inc = rule["includes"], let inc = try object(inc, "includes") {
            if let c = inc["caps"] {
                let need = try capsMask(c)
                if capMask & need != need { return false }
            }
            if let a = inc["arches"] {
                let list = try strings(a, "arches")
                if !list.isEmpty && !list.contains(where: arch.contains) { return false }
            }
        }
        if let exc = rule["excludes"], let exc = try object(exc, "excludes") {
            if let c = exc["caps"], capMask & (try capsMask(c)) != 0 { return false }
            if let a = exc["arches"], try strings(a, "arches").contains(where: arch.contains) { return false }
        }
        return true
    }

    /// The conditions of a rule's `args`: one set (all must hold), or, when an argument
    /// index repeats, one set per condition (any may hold), as runc does.
    private static func conditions(_ j: JSON) throws(BerthError) -> [[scmp_arg_cmp]] {
        if case .null = j.value { return [[]] }
        guard case .array(let items) = j.value else { throw fail(j.line, "\"args\" must be an array, not \(j.kind)") }
        var conds: [scmp_arg_cmp] = []
        for item in items {
            guard case .object = item.value else { throw fail(item.line, "each of \"args\" must be an object, not \(item.kind)") }
            guard let index = item["index"] else { throw fail(item.line, "argument condition without \"index\"") }
            guard let opJSON = item["op"] else { throw fail(item.line, "argument condition without \"op\"") }
            let opName = try string(opJSON, "op")
            guard let op = operators[opName] else {
                throw fail(opJSON.line, "unknown operator \"\(opName)\": use SCMP_CMP_EQ, SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_GT, SCMP_CMP_GE or SCMP_CMP_MASKED_EQ")
            }
            let value = try item["value"].map { (v) throws(BerthError) in try integer(v, "value", max: .max) } ?? 0
            let valueTwo = try item["valueTwo"].map { (v) throws(BerthError) in try integer(v, "valueTwo", max: .max) } ?? 0
            conds.append(SeccompFilter.arg(UInt32(try integer(index, "index", max: 5)), op, value, valueTwo))
        }
        var seen = Set<UInt32>()
        let repeats = conds.contains { !seen.insert($0.arg).inserted }
        return repeats ? conds.map { [$0] } : [conds]
    }

    /// A user profile in docker's JSON format compiled to BPF. Rules whose includes/excludes
    /// do not hold for `capMask` are left out; syscall names libseccomp does not know are
    /// skipped (as docker does); rules whose action is the default action are redundant and
    /// left out. `architectures` adds those arches to the filter (unknown ones are ignored).
    static func compile(dockerJSON: [UInt8], capMask: UInt64) throws(BerthError) -> [UInt8] {
        try filter(dockerJSON: dockerJSON, capMask: capMask).bpf()
    }

    /// The libseccomp filter of a docker JSON profile (see `compile`).
    static func filter(dockerJSON: [UInt8], capMask: UInt64) throws(BerthError) -> SeccompFilter {
        let doc = try JSON.parse(dockerJSON, what: "seccomp profile")
        guard case .object = doc.value else { throw fail(doc.line, "the profile must be a JSON object, not \(doc.kind)") }
        guard let defaultJSON = doc["defaultAction"] else { throw fail(doc.line, "no \"defaultAction\"") }
        let defaultErrno = try doc["defaultErrnoRet"].map { (v) throws(BerthError) in UInt16(try integer(v, "defaultErrnoRet", max: 0xffff)) } ?? UInt16(EPERM)
        let defaultAction = try action(defaultJSON, errnoRet: defaultErrno)

        var arches: [String] = []
        if let a = doc["architectures"] {
            for name in try strings(a, "architectures") {
                var n = name.lowercased()
                if n.hasPrefix("scmp_arch_") { n.removeFirst(10) }
                arches.append(n)
            }
        }
        // archMap (docker's newer form): the entry for the native arch names its sub-arches.
        if let m = doc["archMap"] {
            if case .null = m.value {} else {
                guard case .array(let entries) = m.value else { throw fail(m.line, "\"archMap\" must be an array, not \(m.kind)") }
                for entry in entries {
                    guard case .object = entry.value else { throw fail(entry.line, "each of \"archMap\" must be an object, not \(entry.kind)") }
                    guard let a = entry["architecture"] else { continue }
                    var n = try string(a, "architecture").lowercased()
                    if n.hasPrefix("scmp_arch_") { n.removeFirst(10) }
                    guard seccomp_arch_resolve_name(n) == seccomp_arch_native() else { continue }
                    if let subs = entry["subArchitectures"] {
                        for sub in try strings(subs, "subArchitectures") {
                            var n = sub.lowercased()
                            if n.hasPrefix("scmp_arch_") { n.removeFirst(10) }
                            arches.append(n)
                        }
                    }
                }
            }
        }
        let filter = try SeccompFilter(defaultAction: defaultAction, extraArches: arches)

        guard let syscalls = doc["syscalls"] else { return filter }
        if case .null = syscalls.value { return filter }
        guard case .array(let rules) = syscalls.value else { throw fail(syscalls.line, "\"syscalls\" must be an array, not \(syscalls.kind)") }
        for rule in rules {
            guard case .object = rule.value else { throw fail(rule.line, "each of \"syscalls\" must be an object, not \(rule.kind)") }
            var names: [String] = []
            if let n = rule["names"] { names += try strings(n, "names") }
            if let n = rule["name"] { names.append(try string(n, "name")) }
            if names.isEmpty { throw fail(rule.line, "syscall rule without \"names\"") }
            guard let actionJSON = rule["action"] else { throw fail(rule.line, "syscall rule without \"action\"") }
            let errnoRet = try rule["errnoRet"].map { (v) throws(BerthError) in UInt16(try integer(v, "errnoRet", max: 0xffff)) } ?? UInt16(EPERM)
            let act = try action(actionJSON, errnoRet: errnoRet)
            let condSets = try rule["args"].map { (v) throws(BerthError) in try conditions(v) } ?? [[]]
            guard try applies(rule, capMask: capMask), act != defaultAction else { continue }
            for name in names {
                guard let nr = SeccompFilter.resolve(name) else { continue }
                for conds in condSets {
                    do { try filter.add(act, nr, conds, name: name) } catch {
                        throw fail(rule.line, error.message)
                    }
                }
            }
        }
        return filter
    }

    /// Reads a user's profile file; a missing, unreadable or oversized file is
    /// INVALID_ARGUMENT naming the path.
    static func load(_ path: String) throws(BerthError) -> [UInt8] {
        if path.isEmpty { throw BerthError(.invalidArgument, "seccomp profile: empty path") }
        if Files.isDirectory(path) { throw BerthError(.invalidArgument, "seccomp profile \(path): is a directory, not a JSON file") }
        let bytes: [UInt8]
        do { bytes = try Files.read(path) } catch {
            let why: String
            if let e = error as? BerthError { why = e.message } else if let e = error as? Errno { why = e.description } else { why = "\(error)" }
            throw BerthError(.invalidArgument, "seccomp profile \(path): cannot read it: \(why)")
        }
        if bytes.count > 4 << 20 { throw BerthError(.invalidArgument, "seccomp profile \(path): larger than 4 MiB") }
        return bytes
    }
}
