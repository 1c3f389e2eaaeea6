#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BerthErrors
import CBerthShim

/// A file descriptor: a small value over `CInt`, closed explicitly.
public struct FileDescriptor: Sendable, Hashable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// `open(2)` with `O_CLOEXEC` always added.
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws -> FileDescriptor {
        FileDescriptor(rawValue: try sys("open \(path)") { Glibc.open(path, flags | O_CLOEXEC, mode) })
    }

    /// `close(2)`. EINTR is ignored: on Linux the descriptor is released even then,
    /// and retrying could close a descriptor another thread just opened.
    public func close() {
        _ = Glibc.close(rawValue)
    }

    /// `read(2)` into `buffer`; returns the byte count, 0 at end of file.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try syscall { Glibc.read(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Reads up to `count` bytes; an empty array means end of file.
    public func read(upTo count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let n = try out.withUnsafeMutableBytes { (b) -> Int in try read(into: b) }
        out.removeSubrange(n...)
        return out
    }

    /// `write(2)` until every byte is written.
    public func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        var off = 0
        while off < bytes.count {
            let n = try syscall { Glibc.write(rawValue, bytes.baseAddress! + off, bytes.count - off) }
            off += n
        }
    }

    /// `send(2)` with `MSG_NOSIGNAL` until every byte is written: on a socket whose
    /// peer is gone this fails with EPIPE instead of killing the process with SIGPIPE
    /// (a library must not depend on the program ignoring SIGPIPE).
    public func sendAll(_ bytes: UnsafeRawBufferPointer) throws {
        var off = 0
        while off < bytes.count {
            let n = try syscall { Glibc.send(rawValue, bytes.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            off += n
        }
    }

    public func writeAll(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try writeAll($0) }
    }

    public func writeAll(_ string: String) throws {
        try writeAll(Array(string.utf8))
    }

    /// Reads to end of file.
    public func readAll() throws -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = try buf.withUnsafeMutableBytes { (b) -> Int in try read(into: b) }
            if n == 0 { return out }
            out.append(contentsOf: buf[0..<n])
        }
    }

    /// `pipe2(2)` with `O_CLOEXEC`: (read end, write end).
    public static func pipe() throws -> (read: FileDescriptor, write: FileDescriptor) {
        var fds: [Int32] = [0, 0]
        try sys("pipe2") { berth_pipe2(&fds, O_CLOEXEC) }
        return (FileDescriptor(rawValue: fds[0]), FileDescriptor(rawValue: fds[1]))
    }
}
