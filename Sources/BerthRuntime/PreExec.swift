#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BerthErrors
import BerthSystem
import CBerthShim

// What the Swift sides of the two C pre-exec paths (Spawner for spawn.c, Execer for
// exec.c) share: the C strings a child reads, and the meaning of its error record.

extension berth_spawn_error {
    /// The step that failed: "mount", "setns", "exec", ...
    var stepName: String { withUnsafeBytes(of: step) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) } }

    /// The child's error record as a `BerthError`.
    var berthError: BerthError {
        let detail = withUnsafeBytes(of: self.detail) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return PreExecError.map(step: stepName, errno: err, detail: detail)
    }
}

/// The meaning of a failed pre-exec step, wherever it is reported from: spawn.c and
/// exec.c directly, or berth-monitor's ready line.
enum PreExecError {
    static func map(step: String, errno code: Int32, detail: String) -> BerthError {
        let errno = Errno(rawValue: code)
        if step == "exec" {
            // The child phrased the whole message ("exec \"x\": ...").
            switch errno {
            case .noEntry: return BerthError(.notFound, detail, reason: BerthError.Reason.execNotFound)
            case .accessDenied: return BerthError(.permissionDenied, detail, reason: BerthError.Reason.execPermission)
            default: return BerthError(errno.error("exec").code, detail)
            }
        }
        let what = detail.isEmpty ? step : "\(step) \(detail)"
        // A missing or unusable working directory comes from the user's config or image;
        // every other step failing is the agent's (or the host's) problem.
        if step.hasSuffix("workdir") { return errno.error(what) }
        return BerthError(.internal, "\(what): \(errno)")
    }
}

/// NUL-terminated copies of strings plus a trailing NULL, for `char *const *`.
/// Freed explicitly with `free()`.
struct CStrings {
    let pointers: [UnsafeMutablePointer<CChar>?]

    init(_ strings: [String]) {
        pointers = strings.map { s in
            let utf8 = Array(s.utf8)
            let p = UnsafeMutablePointer<CChar>.allocate(capacity: utf8.count + 1)
            for (i, b) in utf8.enumerated() { p[i] = CChar(bitPattern: b) }
            p[utf8.count] = 0
            return p
        } + [nil]
    }

    func free() {
        for p in pointers { p?.deallocate() }
    }
}
