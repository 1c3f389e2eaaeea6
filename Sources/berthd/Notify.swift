// The systemd readiness protocol (sd_notify(3)), without libsystemd: datagrams of
// newline-separated assignments ("READY=1\nMAINPID=1234") sent to the AF_UNIX socket
// named by $NOTIFY_SOCKET — a path, or "@name" for an abstract socket.
#if canImport(Glibc)
import Glibc
#endif

/// Where to tell the service manager about this process's state; nil when nobody asked.
struct ServiceNotifier: Sendable {
    /// The socket address: a path, or a leading NUL byte and a name for an abstract socket.
    let address: [UInt8]

    /// Reads $NOTIFY_SOCKET and removes it from the environment, so that nothing the
    /// agent starts (monitors, containers, exec'd processes) can inherit it and speak for
    /// the agent. nil when unset, empty, or neither an absolute path nor "@name".
    static func fromEnvironment() -> ServiceNotifier? {
        guard let raw = getenv("NOTIFY_SOCKET") else { return nil }
        let value = String(cString: raw)
        unsetenv("NOTIFY_SOCKET")
        var bytes = Array(value.utf8)
        switch bytes.first {
        case UInt8(ascii: "/"): break
        case UInt8(ascii: "@"): bytes[0] = 0
        default: return nil
        }
        // sun_path holds 108 bytes; a path needs its terminating NUL, an abstract name not.
        guard bytes.count > 1, bytes.count < 108 + (bytes[0] == 0 ? 1 : 0) else { return nil }
        return ServiceNotifier(address: bytes)
    }

    /// Sends one datagram; failures are returned as an errno (the agent logs them: a
    /// service manager that went away must not stop the agent).
    @discardableResult
    func send(_ message: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { path in
            for (i, b) in address.enumerated() where i < path.count { path[i] = b }
        }
        // An abstract name's length is exact (no NUL terminator counts); a path's includes it.
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path) ?? 2
        let length = socklen_t(pathOffset + address.count + (address.first == 0 ? 0 : 1))
        let bytes = Array(message.utf8)
        let rc = withUnsafePointer(to: &addr) { a in
            a.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, length) }
            }
        }
        return rc < 0 ? errno : 0
    }
}
