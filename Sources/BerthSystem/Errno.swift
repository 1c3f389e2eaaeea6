#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BerthErrors

/// An `errno` value as a Swift error, with a readable description (`strerror`).
public struct Errno: Error, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's current `errno`.
    public static var current: Errno { Errno(rawValue: errno) }

    public static let noEntry = Errno(rawValue: ENOENT)
    public static let interrupted = Errno(rawValue: EINTR)
    public static let again = Errno(rawValue: EAGAIN)
    public static let exists = Errno(rawValue: EEXIST)
    public static let permission = Errno(rawValue: EPERM)
    public static let accessDenied = Errno(rawValue: EACCES)
    public static let noChild = Errno(rawValue: ECHILD)
    public static let noProcess = Errno(rawValue: ESRCH)
    public static let brokenPipe = Errno(rawValue: EPIPE)
    public static let notEmpty = Errno(rawValue: ENOTEMPTY)
    public static let busy = Errno(rawValue: EBUSY)
    public static let crossDevice = Errno(rawValue: EXDEV)
    public static let invalid = Errno(rawValue: EINVAL)
    public static let inProgress = Errno(rawValue: EINPROGRESS)

    /// `strerror(3)`: "No such file or directory".
    public var description: String { String(cString: strerror(rawValue)) }

    /// This errno as a `BerthError`, with `what` ("open /var/lib/berth/x") in front.
    public func error(_ what: String) -> BerthError {
        let code: BerthError.Code
        switch rawValue {
        case ENOENT: code = .notFound
        case EEXIST: code = .alreadyExists
        case EPERM, EACCES: code = .permissionDenied
        case ENOSPC, EMFILE, ENFILE, ENOMEM, EDQUOT: code = .resourceExhausted
        case EINVAL, ENAMETOOLONG, ENOTDIR, EISDIR, ELOOP, EXDEV: code = .invalidArgument
        case EBUSY, ENOTEMPTY: code = .failedPrecondition
        default: code = .internal
        }
        return BerthError(code, "\(what): \(description)")
    }
}

/// Calls `body` (a C call that returns -1 and sets `errno` on failure), retrying on
/// EINTR, and throws `Errno` on any other failure. The one way Berth calls the kernel.
@discardableResult
@inlinable
public func syscall<T: FixedWidthInteger>(_ body: () -> T) throws(Errno) -> T {
    while true {
        let r = body()
        if r != -1 { return r }
        let e = errno
        if e == EINTR { continue }
        throw Errno(rawValue: e)
    }
}

/// Like `syscall`, but turns the failure into a `BerthError` naming `what`.
@discardableResult
@inlinable
public func sys<T: FixedWidthInteger>(_ what: @autoclosure () -> String, _ body: () -> T) throws(BerthError) -> T {
    do { return try syscall(body) } catch { throw error.error(what()) }
}

extension Error {
    /// Any error as a `BerthError`: a `BerthError` as it is, an `Errno` mapped by
    /// `Errno.error(_:)` with `what` in front, anything else as INTERNAL.
    public func berthError(_ what: String) -> BerthError {
        if let e = self as? BerthError { return e }
        if let e = self as? Errno { return e.error(what) }
        return BerthError(.internal, "\(what): \(self)")
    }
}
