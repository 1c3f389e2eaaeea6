#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import CSeccomp

/// One libseccomp filter being built (a `scmp_filter_ctx`), exported as raw BPF (an array of
/// `struct sock_filter`, 8 bytes each) or as libseccomp's readable PFC text. Never loaded
/// into this process: the pre-exec path loads the exported BPF in the container's init.
final class SeccompFilter {
    private let ctx: scmp_filter_ctx
    let defaultAction: UInt32

    /// A filter whose action for every syscall no rule matches is `defaultAction`.
    /// `extraArches` are libseccomp architecture names ("x86", "x32"), added beside the
    /// native one so that their syscalls are filtered too rather than killed as a bad arch.
    init(defaultAction: UInt32, extraArches: [String] = []) throws(BerthError) {
        guard let ctx = seccomp_init(defaultAction) else {
            throw BerthError(.internal, "seccomp_init failed (action 0x\(String(defaultAction, radix: 16)))")
        }
        self.ctx = ctx
        self.defaultAction = defaultAction
        for name in extraArches {
            let token = seccomp_arch_resolve_name(name)
            if token == 0 || token == seccomp_arch_native() { continue }
            let rc = seccomp_arch_add(ctx, token)
            if rc != 0 && rc != -EEXIST {
                throw BerthError(.internal, "seccomp_arch_add \(name): \(String(cString: strerror(-rc)))")
            }
        }
    }

    deinit { seccomp_release(ctx) }

    /// The syscall number of `name`, nil when libseccomp does not know it at all.
    /// Names it knows but that the native arch lacks give a negative pseudo number, which
    /// libseccomp accepts in rules (they apply on the arches that have the syscall).
    static func resolve(_ name: String) -> Int32? {
        let nr = seccomp_syscall_resolve_name(name)
        return nr == __NR_SCMP_ERROR ? nil : nr
    }

    /// Adds a rule: `action` for `syscall` when all of `args` hold (none: always).
    func add(_ action: UInt32, _ syscall: Int32, _ args: [scmp_arg_cmp] = [], name: String) throws(BerthError) {
        let rc = args.withUnsafeBufferPointer {
            seccomp_rule_add_array(ctx, action, syscall, UInt32($0.count), $0.baseAddress)
        }
        if rc != 0 {
            throw BerthError(.invalidArgument, "seccomp rule for \(name): \(String(cString: strerror(-rc)))")
        }
    }

    /// The filter as BPF: `struct sock_filter[]`, a multiple of 8 bytes.
    func bpf() throws(BerthError) -> [UInt8] {
        try export("seccomp_export_bpf") { seccomp_export_bpf(ctx, $0) }
    }

    /// The filter as libseccomp's pseudo filter code (text), for tests and debugging.
    func pfc() throws(BerthError) -> String {
        String(decoding: try export("seccomp_export_pfc") { seccomp_export_pfc(ctx, $0) }, as: UTF8.self)
    }

    private func export(_ what: String, _ body: (Int32) -> Int32) throws(BerthError) -> [UInt8] {
        let fd = FileDescriptor(rawValue: try sys("memfd_create for \(what)") { berth_scmp_memfd() })
        defer { fd.close() }
        let rc = body(fd.rawValue)
        if rc != 0 { throw BerthError(.internal, "\(what): \(String(cString: strerror(-rc)))") }
        try sys("lseek for \(what)") { lseek(fd.rawValue, 0, SEEK_SET) }
        do { return try fd.readAll() } catch { throw error.berthError("read \(what) output") }
    }

    /// A condition on syscall argument `index`.
    static func arg(_ index: UInt32, _ op: scmp_compare, _ a: UInt64, _ b: UInt64 = 0) -> scmp_arg_cmp {
        scmp_arg_cmp(arg: index, op: op, datum_a: a, datum_b: b)
    }
}
