#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BerthErrors
import CBerthShim

/// A path inside an image as raw bytes. Tar entry names and `readdir` names are bytes,
/// not necessarily UTF-8; a Swift `String` would repair invalid UTF-8 and so name a
/// different file. Strings are made from these only for messages.
public typealias PathBytes = [UInt8]

extension Array where Element == UInt8 {
    /// A NUL-terminated copy, which Swift passes to a `const char *` parameter.
    public var cPath: [CChar] {
        var c = map { CChar(bitPattern: $0) }
        c.append(0)
        return c
    }

    /// `self + "/" + name`, or just `name` when `self` is empty.
    public func appending(component name: PathBytes) -> PathBytes {
        isEmpty ? name : self + [UInt8(ascii: "/")] + name
    }

    /// The bytes as text for messages, quoted with control characters escaped.
    public var quoted: String { String(decoding: self, as: UTF8.self).debugDescription }
}

/// Walks and removes directory trees relative to a directory file descriptor, never
/// following a symlink and never crossing a mount point. Only one directory is open
/// at a time (the walk keeps relative paths, not descriptors), so a deep tree cannot
/// exhaust the descriptor table; the paths stay short because `TarExtractor` bounds
/// entry paths well below `PATH_MAX`.
public enum FileTree {
    /// Opens `path` beneath `top` as a directory for reading (`openat2` with
    /// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV`): any symlink or mount
    /// point on the way is an error, not something to walk into.
    public static func openDirectory(_ top: Int32, _ path: PathBytes) throws -> Int32 {
        let p = path.isEmpty ? [UInt8(ascii: ".")] : path
        let resolve = UInt64(BERTH_RESOLVE_BENEATH | BERTH_RESOLVE_NO_SYMLINKS | BERTH_RESOLVE_NO_XDEV)
        let fd = berth_openat2(top, p.cPath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0, resolve)
        if fd >= 0 { return fd }
        let e = errno
        if e == EXDEV {
            throw BerthError(.failedPrecondition, "refusing to walk into \(p.quoted): it is a mount point")
        }
        throw Errno(rawValue: e).error("open directory \(p.quoted)")
    }

    /// The names in the open directory `fd`, without "." and "..". `fd` stays open.
    public static func names(in fd: Int32) throws -> [PathBytes] {
        let copy = try sys("dup") { dup(fd) }
        guard let dir = fdopendir(copy) else {
            let e = Errno.current
            Glibc.close(copy)
            throw e.error("fdopendir")
        }
        defer { closedir(dir) }
        var out: [PathBytes] = []
        while true {
            errno = 0
            guard let ent = readdir(dir) else {
                if errno != 0 { throw Errno.current.error("readdir") }
                return out
            }
            let name: PathBytes = withUnsafeBytes(of: ent.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
            if name == [UInt8(ascii: ".")] || name == [UInt8(ascii: "."), UInt8(ascii: ".")] { continue }
            out.append(name)
        }
    }

    /// Removes the directory `path` beneath `top` and everything in it (`rm -rf`).
    /// A missing `path` is not an error.
    public static func removeDirectory(_ top: Int32, _ path: PathBytes) throws {
        // Depth first without recursion holding descriptors: empty each directory of
        // its non-directories, remember its subdirectories, and remove directories
        // in reverse order of discovery (children before parents).
        var pending: [PathBytes] = [path]
        var directories: [PathBytes] = []
        while let dir = pending.popLast() {
            let fd: Int32
            do { fd = try openDirectory(top, dir) } catch let e as BerthError where e.code == .notFound {
                continue
            }
            defer { Glibc.close(fd) }
            directories.append(dir)
            for name in try names(in: fd) {
                if unlinkat(fd, name.cPath, 0) == 0 { continue }
                switch errno {
                case EISDIR: pending.append(dir.appending(component: name))
                case ENOENT: continue
                default: throw Errno.current.error("unlink \(dir.appending(component: name).quoted)")
                }
            }
        }
        for dir in directories.reversed() {
            let p = dir.isEmpty ? [UInt8(ascii: ".")] : dir
            if unlinkat(top, p.cPath, AT_REMOVEDIR) != 0 && errno != ENOENT {
                throw Errno.current.error("rmdir \(p.quoted)")
            }
        }
    }

    /// Removes `path` (a file system path) whether it is a directory tree or not.
    public static func remove(_ path: String) throws {
        if unlink(path) == 0 || errno == ENOENT { return }
        guard errno == EISDIR else { throw Errno.current.error("unlink \(path)") }
        let parent = try FileDescriptor.open(Files.dirname(of: path), O_RDONLY | O_DIRECTORY)
        defer { parent.close() }
        let name = path.split(separator: "/").last.map { Array($0.utf8) } ?? Array(path.utf8)
        try removeDirectory(parent.rawValue, name)
    }

    /// The apparent size of the tree under the directory `top`: the byte sizes of its
    /// regular files (a hard-linked file counted once) and the lengths of its symlinks.
    public static func size(_ top: Int32) throws -> UInt64 {
        struct Inode: Hashable { var dev: UInt64; var ino: UInt64 }
        var seen = Set<Inode>()
        var total: UInt64 = 0
        var pending: [PathBytes] = [[]]
        while let dir = pending.popLast() {
            let fd = try openDirectory(top, dir)
            defer { Glibc.close(fd) }
            for name in try names(in: fd) {
                var st = stat()
                try sys("stat \(dir.appending(component: name).quoted)") {
                    fstatat(fd, name.cPath, &st, AT_SYMLINK_NOFOLLOW)
                }
                switch st.st_mode & S_IFMT {
                case S_IFDIR:
                    pending.append(dir.appending(component: name))
                case S_IFREG:
                    if st.st_nlink > 1 && !seen.insert(Inode(dev: UInt64(st.st_dev), ino: UInt64(st.st_ino))).inserted {
                        continue
                    }
                    total += UInt64(max(st.st_size, 0))
                case S_IFLNK:
                    total += UInt64(max(st.st_size, 0))
                default:
                    continue
                }
            }
        }
        return total
    }
}
