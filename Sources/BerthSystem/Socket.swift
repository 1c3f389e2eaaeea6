#if canImport(Glibc)
import Glibc
#endif
import BerthErrors

/// The address of a Berth endpoint: a Unix socket path or a TCP host and port.
public enum SocketAddress: Sendable, Hashable, CustomStringConvertible {
    case unix(path: String)
    case tcp(host: String, port: UInt16)

    /// Parses `unix:///path`, a bare `/path`, or `tcp://HOST:PORT` (IPv6 as `[::1]`).
    public static func parse(_ text: String) throws(BerthError) -> SocketAddress {
        if text.hasPrefix("/") { return .unix(path: text) }
        if text.hasPrefix("unix://") {
            let path = String(text.dropFirst("unix://".count))
            guard path.hasPrefix("/") else {
                throw BerthError(.invalidArgument, "unix socket address \(text) needs an absolute path, as in unix:///run/berth/berth.sock")
            }
            return .unix(path: path)
        }
        guard text.hasPrefix("tcp://") else {
            throw BerthError(.invalidArgument, "address \(text) must start with unix:// or tcp://")
        }
        let rest = text.dropFirst("tcp://".count)
        let host: Substring, portText: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]"), rest[rest.index(after: close)...].hasPrefix(":") else {
                throw BerthError(.invalidArgument, "address \(text) is not tcp://[IPV6]:PORT")
            }
            host = rest[rest.index(after: rest.startIndex)..<close]
            portText = rest[rest.index(close, offsetBy: 2)...]
        } else {
            guard let colon = rest.lastIndex(of: ":") else {
                throw BerthError(.invalidArgument, "address \(text) has no port, as in tcp://127.0.0.1:7946")
            }
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        }
        guard !host.isEmpty else { throw BerthError(.invalidArgument, "address \(text) has no host") }
        guard let port = UInt16(portText) else { throw BerthError(.invalidArgument, "address \(text) has an invalid port \"\(portText)\"") }
        return .tcp(host: String(host), port: port)
    }

    public var description: String {
        switch self {
        case .unix(let path): "unix://\(path)"
        case .tcp(let host, let port): host.contains(":") ? "tcp://[\(host)]:\(port)" : "tcp://\(host):\(port)"
        }
    }

    /// Connects a stream socket (close-on-exec) to `address`.
    /// With `timeoutMillis` ≥ 0, a TCP connect that has not completed by then fails with
    /// DEADLINE_EXCEEDED (an address that drops SYNs would otherwise block for minutes).
    public static func connect(_ address: SocketAddress, timeoutMillis: Int32 = -1) throws(BerthError) -> FileDescriptor {
        let family: Int32
        var target = address
        switch address {
        case .unix: family = AF_UNIX
        case .tcp(let host, let port):
            let numeric = try resolveNumeric(host)
            target = .tcp(host: numeric, port: port)
            family = numeric.contains(":") ? AF_INET6 : AF_INET
        }
        let fd = FileDescriptor(rawValue: try sys("socket") { socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) })
        do {
            let bounded: Bool
            if case .tcp = address, timeoutMillis >= 0 { bounded = true } else { bounded = false }
            let flags = fcntl(fd.rawValue, F_GETFL)
            if bounded { _ = fcntl(fd.rawValue, F_SETFL, flags | O_NONBLOCK) }
            try withSockaddr(target) { (sa, len) throws(BerthError) in
                if Glibc.connect(fd.rawValue, sa, len) == 0 { return }
                var e = Errno.current
                if bounded && e == .inProgress {
                    var pfd = pollfd(fd: fd.rawValue, events: Int16(POLLOUT), revents: 0)
                    var r: Int32
                    repeat { r = poll(&pfd, 1, timeoutMillis) } while r < 0 && Errno.current == .interrupted
                    if r == 0 { throw BerthError(.deadlineExceeded, "cannot connect to \(address): no answer within \(timeoutMillis) ms") }
                    var soError: Int32 = 0
                    var size = socklen_t(MemoryLayout<Int32>.size)
                    _ = getsockopt(fd.rawValue, SOL_SOCKET, SO_ERROR, &soError, &size)
                    if soError == 0 { return }
                    e = Errno(rawValue: soError)
                }
                throw BerthError(.unavailable, "cannot connect to \(address): \(e)")
            }
            if bounded { _ = fcntl(fd.rawValue, F_SETFL, flags) }
            if case .tcp = address {
                var one: Int32 = 1
                _ = setsockopt(fd.rawValue, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            }
        } catch {
            fd.close()
            throw error
        }
        return fd
    }

    /// `localhost` → 127.0.0.1; numeric addresses as they are. No DNS: the agent
    /// and the CLI must not depend on a resolver for local use.
    public static func resolveNumeric(_ host: String) throws(BerthError) -> String {
        if host == "localhost" { return "127.0.0.1" }
        var a4 = in_addr(), a6 = in6_addr()
        if inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1 { return host }
        throw BerthError(.invalidArgument, "host \(host) is not a numeric IPv4 or IPv6 address (or localhost)")
    }

    /// The numeric form of `host` when it is a loopback address; an error otherwise.
    public static func loopbackOnly(_ host: String) throws(BerthError) -> String {
        let numeric = try resolveNumeric(host)
        var a4 = in_addr()
        if inet_pton(AF_INET, numeric, &a4) == 1, UInt32(bigEndian: a4.s_addr) >> 24 == 127 { return numeric }
        if numeric == "::1" { return numeric }
        throw BerthError(.permissionDenied, "refusing to listen on \(host): plain TCP is allowed only on loopback (127.0.0.0/8 or ::1), as anyone who can reach it controls the host as root; pass --insecure-tcp to allow it anyway (mutual TLS, --tls-cert/--tls-key/--tls-ca, is the proper way)")
    }

    /// Calls `body` with a `sockaddr` for `address` (numeric hosts only).
    public static func withSockaddr<R>(_ address: SocketAddress, _ body: (UnsafePointer<sockaddr>, socklen_t) throws(BerthError) -> R) throws(BerthError) -> R {
        switch address {
        case .unix(let path):
            var sa = sockaddr_un()
            sa.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: sa.sun_path) else {
                throw BerthError(.invalidArgument, "socket path \(path) is too long (at most 107 bytes)")
            }
            withUnsafeMutableBytes(of: &sa.sun_path) { raw in
                for (i, b) in bytes.enumerated() { raw[i] = b }
                raw[bytes.count] = 0
            }
            return try withUnsafePointer(to: &sa) { (p) throws(BerthError) -> R in
                try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { (q) throws(BerthError) -> R in
                    try body(q, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
        case .tcp(let host, let port):
            var a4 = in_addr()
            if inet_pton(AF_INET, host, &a4) == 1 {
                var sa = sockaddr_in()
                sa.sin_family = sa_family_t(AF_INET)
                sa.sin_port = port.bigEndian
                sa.sin_addr = a4
                return try withUnsafePointer(to: &sa) { (p) throws(BerthError) -> R in
                    try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { (q) throws(BerthError) -> R in
                        try body(q, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
            }
            var a6 = in6_addr()
            guard inet_pton(AF_INET6, host, &a6) == 1 else {
                throw BerthError(.invalidArgument, "host \(host) is not a numeric address")
            }
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            sa.sin6_addr = a6
            return try withUnsafePointer(to: &sa) { (p) throws(BerthError) -> R in
                try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { (q) throws(BerthError) -> R in
                    try body(q, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
    }

    /// The local port a TCP socket is bound to (`getsockname`).
    public static func localPort(_ fd: FileDescriptor) -> UInt16? {
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &ss) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd.rawValue, $0, &len) == 0 }
        }
        guard ok else { return nil }
        let family = ss.ss_family
        return withUnsafePointer(to: &ss) { p in
            if family == sa_family_t(AF_INET) {
                return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
            }
            return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
        }
    }

    /// "HOST:PORT" of a connected TCP socket's peer, for logs.
    public static func peerName(_ fd: Int32) -> String {
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &ss) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &len) == 0 }
        }
        guard ok else { return "?" }
        var buf = [CChar](repeating: 0, count: 64)
        let family = ss.ss_family
        return withUnsafePointer(to: &ss) { p -> String in
            if family == sa_family_t(AF_INET) {
                return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { s in
                    var a = s.pointee.sin_addr
                    inet_ntop(AF_INET, &a, &buf, 64)
                    return "\(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)):\(UInt16(bigEndian: s.pointee.sin_port))"
                }
            }
            return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { s in
                var a = s.pointee.sin6_addr
                inet_ntop(AF_INET6, &a, &buf, 64)
                return "[\(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))]:\(UInt16(bigEndian: s.pointee.sin6_port))"
            }
        }
    }
}
