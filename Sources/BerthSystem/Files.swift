#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BerthErrors
import CBerthShim

/// File-system helpers over plain syscalls (no Foundation: the CLI's start-up is a budget).
public enum Files {
    /// Reads a whole file.
    public static func read(_ path: String) throws -> [UInt8] {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        defer { fd.close() }
        do { return try fd.readAll() } catch { throw error.berthError("read \(path)") }
    }

    /// Reads a whole file as UTF-8 text.
    public static func readString(_ path: String) throws -> String {
        String(decoding: try read(path), as: UTF8.self)
    }

    /// Writes `bytes` to `path` atomically: a temporary file in the same directory,
    /// fsync, rename over `path`, fsync of the directory. A crash leaves the old or
    /// the new content, never half of either.
    ///
    /// `durable: false` leaves out both fsyncs: the rename still makes the change atomic
    /// for every process and across a crash of the writer, but a power loss may lose it.
    /// For files that do not outlive the boot anyway (the run dir, a tmpfs `/run` on
    /// most hosts): there the two fsyncs cost milliseconds on each container start.
    public static func writeAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644, durable: Bool = true) throws {
        let tmp = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = try FileDescriptor.open(tmp, O_WRONLY | O_CREAT | O_EXCL, mode: mode)
        do {
            do { try fd.writeAll(bytes) } catch { throw error.berthError("write \(tmp)") }
            if durable { try sys("fsync \(tmp)") { fsync(fd.rawValue) } }
            fd.close()
            try sys("rename \(tmp) to \(path)") { rename(tmp, path) }
        } catch {
            fd.close()
            unlink(tmp)
            throw error
        }
        guard durable else { return }
        let dir = FileDescriptor(rawValue: Glibc.open(dirname(of: path), O_RDONLY | O_DIRECTORY | O_CLOEXEC))
        if dir.rawValue >= 0 { _ = fsync(dir.rawValue); dir.close() }
    }

    /// The directory part of a path ("/a/b" → "/a", "b" → ".").
    public static func dirname(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    /// Whether something exists at `path` (without following a final symlink).
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// Whether `path` is a directory (following symlinks).
    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// `mkdir -p`.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws {
        if isDirectory(path) { return }
        let parent = dirname(of: path)
        if parent != path && parent != "." && parent != "/" { try makeDirectories(parent, mode: mode) }
        if mkdir(path, mode) != 0 && errno != EEXIST { throw Errno.current.error("mkdir \(path)") }
    }

    /// The names in a directory, without "." and "..".
    public static func list(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw Errno.current.error("opendir \(path)") }
        defer { closedir(dir) }
        var names: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// `rm -rf` that never crosses into another file system (a mount left inside the
    /// tree is an error, not something to delete through), never follows symlinks and
    /// handles names that are not UTF-8 (see `FileTree`).
    public static func removeTree(_ path: String) throws {
        try FileTree.remove(path)
    }
}

/// Process environment and identity helpers.
public enum Host {
    /// `gethostname(2)`.
    public static var hostname: String {
        var buf = [UInt8](repeating: 0, count: 256)
        buf.withUnsafeMutableBytes { _ = gethostname($0.baseAddress!.assumingMemoryBound(to: CChar.self), 255) }
        return String(decoding: buf.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// `getenv(3)`.
    public static func environment(_ name: String) -> String? {
        guard let v = getenv(name) else { return nil }
        return String(cString: v)
    }

    /// Seconds since the epoch.
    public static var now: Int64 { Int64(time(nil)) }

    /// The wall clock in nanoseconds since the epoch.
    public static var realtimeNanos: Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// A monotonic clock in nanoseconds.
    public static var monotonicNanos: UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// `n` random bytes from the kernel (`getrandom(2)`), as lowercase hex.
    public static func randomHex(bytes n: Int) -> String {
        var buf = [UInt8](repeating: 0, count: n)
        var got = 0
        while got < n {
            let r = buf.withUnsafeMutableBytes { berth_getrandom($0.baseAddress! + got, n - got) }
            if r > 0 { got += r }
        }
        return hex(buf)
    }

    /// Lowercase hex of `bytes`.
    public static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }
}
