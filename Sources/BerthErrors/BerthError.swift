/// The one error type of Berth. Every failure inside the agent, the runtime and the
/// client ends up as a `BerthError`, whose `code` maps one-to-one to the wire's
/// `berth.v1.ErrorCode` (numerically identical to gRPC's status codes).
public struct BerthError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is. A struct over a private enum, so codes can be
    /// added without breaking users who switch over them.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        enum Value: Int32, Sendable {
            case cancelled = 1, unknown = 2, invalidArgument = 3, deadlineExceeded = 4
            case notFound = 5, alreadyExists = 6, permissionDenied = 7, resourceExhausted = 8
            case failedPrecondition = 9, aborted = 10, outOfRange = 11, unimplemented = 12
            case `internal` = 13, unavailable = 14, dataLoss = 15, unauthenticated = 16
        }
        let value: Value

        public static let cancelled = Code(value: .cancelled)
        public static let unknown = Code(value: .unknown)
        public static let invalidArgument = Code(value: .invalidArgument)
        public static let deadlineExceeded = Code(value: .deadlineExceeded)
        public static let notFound = Code(value: .notFound)
        public static let alreadyExists = Code(value: .alreadyExists)
        public static let permissionDenied = Code(value: .permissionDenied)
        public static let resourceExhausted = Code(value: .resourceExhausted)
        public static let failedPrecondition = Code(value: .failedPrecondition)
        public static let aborted = Code(value: .aborted)
        public static let outOfRange = Code(value: .outOfRange)
        public static let unimplemented = Code(value: .unimplemented)
        public static let `internal` = Code(value: .internal)
        public static let unavailable = Code(value: .unavailable)
        public static let dataLoss = Code(value: .dataLoss)
        public static let unauthenticated = Code(value: .unauthenticated)

        /// The wire number (`berth.v1.ErrorCode`); unknown numbers become `.unknown`.
        public var rawValue: Int32 { value.rawValue }
        public init(rawValue: Int32) { self.value = Value(rawValue: rawValue) ?? .unknown }
        init(value: Value) { self.value = value }

        /// The gRPC-style name, e.g. `NOT_FOUND`.
        public var description: String {
            switch value {
            case .cancelled: "CANCELLED"
            case .unknown: "UNKNOWN"
            case .invalidArgument: "INVALID_ARGUMENT"
            case .deadlineExceeded: "DEADLINE_EXCEEDED"
            case .notFound: "NOT_FOUND"
            case .alreadyExists: "ALREADY_EXISTS"
            case .permissionDenied: "PERMISSION_DENIED"
            case .resourceExhausted: "RESOURCE_EXHAUSTED"
            case .failedPrecondition: "FAILED_PRECONDITION"
            case .aborted: "ABORTED"
            case .outOfRange: "OUT_OF_RANGE"
            case .unimplemented: "UNIMPLEMENTED"
            case .internal: "INTERNAL"
            case .unavailable: "UNAVAILABLE"
            case .dataLoss: "DATA_LOSS"
            case .unauthenticated: "UNAUTHENTICATED"
            }
        }
    }

    /// Stable, machine-readable refinements of a code, carried as `Error.reason` on the wire.
    public enum Reason {
        /// The container's command was not found in its root filesystem or `$PATH`.
        public static let execNotFound = "exec_not_found"
        /// The container's command exists but could not be executed.
        public static let execPermission = "exec_permission"
        /// The peer broke the framing or flow-control rules.
        public static let protocolViolation = "protocol_violation"
    }

    public var code: Code
    /// A sentence a person can act on: what failed, on which object, and what to do.
    public var message: String
    /// A machine-readable refinement of `code` (see `Reason`); empty when there is none.
    public var reason: String

    public init(_ code: Code, _ message: String, reason: String = "") {
        self.code = code
        self.message = message
        self.reason = reason
    }

    public var description: String { "\(code): \(message)" }

    /// The same error with `context` put in front of the message ("container web: …"),
    /// unless the message already starts with it (errors pass through several layers).
    public func prefixed(_ context: String) -> BerthError {
        message.hasPrefix(context) ? self : BerthError(code, "\(context): \(message)", reason: reason)
    }
}

extension BerthError {
    public static func invalidArgument(_ m: String) -> BerthError { BerthError(.invalidArgument, m) }
    public static func notFound(_ m: String) -> BerthError { BerthError(.notFound, m) }
    public static func alreadyExists(_ m: String) -> BerthError { BerthError(.alreadyExists, m) }
    public static func failedPrecondition(_ m: String) -> BerthError { BerthError(.failedPrecondition, m) }
    public static func `internal`(_ m: String) -> BerthError { BerthError(.internal, m) }
    public static func unavailable(_ m: String) -> BerthError { BerthError(.unavailable, m) }
    public static func resourceExhausted(_ m: String) -> BerthError { BerthError(.resourceExhausted, m) }
    public static func cancelled(_ m: String) -> BerthError { BerthError(.cancelled, m) }
}
