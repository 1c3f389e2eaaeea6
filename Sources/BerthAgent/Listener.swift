#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import CBerthShim

/// A listening socket and the thread that accepts on it.
final class Listener: Sendable {
    let fd: FileDescriptor
    let address: SocketAddress

    init(fd: FileDescriptor, address: SocketAddress) {
        self.fd = fd
        self.address = address
    }

    /// Binds and listens. A Unix socket gets mode 0660 and, with `group`, that group; its
    /// directory, when `createDirectory` (it did not exist before the agent started),
    /// is made with mode 0750 and the same group. A stale socket file left by a dead
    /// agent is replaced, a live one is an error. TCP is refused on anything but a
    /// loopback address unless `anyHost` (the agent has mutual TLS, or --insecure-tcp).
    static func open(_ address: SocketAddress, group: gid_t? = nil, createDirectory: Bool = false, anyHost: Bool = false) throws -> Listener {
        switch address {
        case .unix(let path):
            guard path.utf8.count < 108 else { throw BerthError(.invalidArgument, "socket path \(path) is longer than 107 bytes") }
            let dir = Files.dirname(of: path)
            try Files.makeDirectories(dir, mode: 0o750)
            if createDirectory {
                try sys("chmod \(dir)") { chmod(dir, 0o750) }
                if let group { try sys("chown \(dir)") { chown(dir, uid_t.max, group) } }
            }
            if Files.exists(path) {
                if let probe = try? SocketAddress.connect(.unix(path: path)) {
                    probe.close()
                    throw BerthError(.alreadyExists, "another agent is already listening on \(path)")
                }
                _ = unlink(path)
            }
            let fd = FileDescriptor(rawValue: try sys("socket") { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) })
            do {
                _ = try SocketAddress.withSockaddr(.unix(path: path)) { (sa, len) throws(BerthError) in
                    try sys("bind \(path)") { bind(fd.rawValue, sa, len) }
                }
                try sys("chmod \(path)") { chmod(path, 0o660) }
                if let group { try sys("chown \(path)") { chown(path, uid_t.max, group) } }
                try sys("listen \(path)") { listen(fd.rawValue, 128) }
            } catch {
                fd.close()
                throw error
            }
            return Listener(fd: fd, address: address)
        case .tcp(let host, let port):
            let resolved = anyHost ? try SocketAddress.resolveNumeric(host) : try SocketAddress.loopbackOnly(host)
            let family = resolved.contains(":") ? AF_INET6 : AF_INET
            let fd = FileDescriptor(rawValue: try sys("socket") { socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) })
            do {
                var one: Int32 = 1
                _ = setsockopt(fd.rawValue, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
                _ = try SocketAddress.withSockaddr(.tcp(host: resolved, port: port)) { (sa, len) throws(BerthError) in
                    try sys("bind \(address)") { bind(fd.rawValue, sa, len) }
                }
                try sys("listen \(address)") { listen(fd.rawValue, 128) }
            } catch {
                fd.close()
                throw error
            }
            return Listener(fd: fd, address: .tcp(host: resolved, port: SocketAddress.localPort(fd) ?? port))
        }
    }

    /// Accepts until the listener is shut down, handing each connection to `handle`.
    func acceptLoop(_ handle: @escaping @Sendable (FileDescriptor, String) -> Void) {
        startThread("berth-accept") { [self] in
            while true {
                let c = berth_accept(fd.rawValue)
                if c < 0 {
                    if errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE {
                        if errno == EMFILE || errno == ENFILE { usleep(100_000) }
                        continue
                    }
                    return  // shut down
                }
                let label: String
                switch address {
                case .unix: label = "unix"
                case .tcp: label = "tcp \(SocketAddress.peerName(c))"
                }
                handle(FileDescriptor(rawValue: c), label)
            }
        }
    }

    /// Stops accepting; removes the socket file of a Unix listener.
    func close() {
        _ = shutdown(fd.rawValue, Int32(SHUT_RDWR))
        fd.close()
        if case .unix(let path) = address { _ = unlink(path) }
    }
}
