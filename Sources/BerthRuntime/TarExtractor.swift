#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BerthErrors
import BerthSystem
import CArchive
import CBerthImages
import CBerthShim

/// What `TarExtractor.extract` produced.
struct ExtractedTree {
    /// SHA-256 of every byte the `read` closure returned, compressed or not.
    var digest: [UInt8]
    /// `FileTree.size` of the extracted tree.
    var sizeBytes: UInt64
}

/// Unpacks a tar stream (plain, gzip, bzip2, xz or zstd) into a directory, safely.
///
/// libarchive only parses; every file is created here, relative to a descriptor of the
/// root, because `archive_write_disk` works with paths relative to the process's
/// working directory (and changes it), which a multithreaded agent cannot allow.
///
/// The rules, after the container runtimes that got them wrong once (CVE-2018-15664,
/// CVE-2019-14271 and friends):
/// - An entry path is made relative by dropping "." and empty components. A ".."
///   component or an absolute path is rejected outright. (docker strips a leading "/";
///   Berth rejects it: an image tarball is made with `tar -C ROOTFS -c .`, and a
///   leading "/" more likely means the wrong directory was packed.)
/// - The entry's parent directory is opened with `openat2(RESOLVE_BENEATH |
///   RESOLVE_NO_MAGICLINKS)`: a symlink in the parent path that leads out of the root
///   (absolute, or with enough "..") fails with EXDEV and the tarball is rejected.
///   Symlinks inside the root (usr/lib64 → lib) are followed.
/// - The entry itself is then created with the *at calls relative to that parent
///   descriptor, never following a final symlink (O_CREAT|O_EXCL|O_NOFOLLOW,
///   AT_SYMLINK_NOFOLLOW). Symlink entries may point anywhere: they are data, never
///   followed while extracting.
/// - A hard link's target is resolved the same way (its parent beneath the root, the
///   last component not followed), so it cannot link a host file into the image.
/// - Ownership, then mode (chown clears setuid/setgid), then times. Directories get
///   theirs after all entries, deepest first, so a read-only directory does not block
///   its children and creating children does not disturb its mtime.
final class TarExtractor {
    /// Entry paths longer than this are rejected, so that every path under the root
    /// stays below `PATH_MAX` even with the store's prefix when walked relative to the
    /// store's temp directory (see `FileTree`).
    static let maxPathBytes = Int(PATH_MAX) - 256

    private let root: Int32
    private let isRoot = geteuid() == 0
    private var directories: [PathBytes: Attributes] = [:]
    /// An image layer (OCI/docker): `.wh.NAME` entries become overlayfs whiteouts (a 0/0
    /// character device), `.wh..wh..opq` marks its directory opaque
    /// (`trusted.overlay.opaque=y`), and an archive with no entries is a valid empty layer.
    private var layer = false

    /// Ownership, permission bits and mtime of one entry.
    private struct Attributes {
        var uid: uid_t
        var gid: gid_t
        var mode: mode_t
        var mtime: timespec?
    }

    private init(root: Int32) { self.root = root }

    /// Reads a tar stream chunk by chunk from `read` and unpacks it into the existing,
    /// empty directory `rootPath`. Errors thrown by `read` propagate unchanged; a
    /// malformed, truncated or unsafe tarball is INVALID_ARGUMENT. On error the tree is
    /// left half-written: the caller removes it.
    static func extract(into rootPath: String, layer: Bool = false, read: () throws -> [UInt8]?) throws -> ExtractedTree {
        let rootFd = try FileDescriptor.open(rootPath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        defer { rootFd.close() }
        let extractor = TarExtractor(root: rootFd.rawValue)
        extractor.layer = layer
        return try withoutActuallyEscaping(read) { read in
            let input = try ArchiveInput(read: read, hashing: true)
            guard let archive = archive_read_new() else {
                throw BerthError(.resourceExhausted, "image import: archive_read_new failed")
            }
            defer { archive_read_free(archive) }
            try configure(archive)

            // The read callback hands libarchive a pointer into `input`'s own buffer,
            // which stays valid until the next callback, as libarchive requires.
            if input.open(archive) != ARCHIVE_OK { throw input.failure(archive) }

            var entries = 0
            while true {
                var entry: OpaquePointer?
                let r = archive_read_next_header(archive, &entry)
                if r == ARCHIVE_EOF { break }
                // ARCHIVE_WARN is a usable header with a remark (e.g. a name that is
                // not valid in the current locale); RETRY/FAILED/FATAL are corruption.
                guard r == ARCHIVE_OK || r == ARCHIVE_WARN, let entry else { throw input.failure(archive) }
                try extractor.unpack(entry, archive, input)
                entries += 1
            }
            guard entries > 0 || layer else {
                throw BerthError(.invalidArgument, "image tarball has no entries; create it with: tar -C ROOTFS -cf IMAGE.tar .")
            }
            try extractor.applyDirectoryAttributes()
            // libarchive stops at the end-of-archive blocks; the id covers every byte
            // uploaded, so hash the rest (tar record padding, gzip trailer) as well.
            try input.drain()
            let size = try FileTree.size(rootFd.rawValue)
            // The tree is about to be published by a rename; make its contents durable
            // first, so a crash cannot leave a published image with empty files.
            try sys("syncfs \(rootPath)") { berth_syncfs(rootFd.rawValue) }
            return ExtractedTree(digest: input.hasher?.finalize() ?? [], sizeBytes: size)
        }
    }

    /// Enables the tar formats (ustar, pax, GNU, v7) and in-process decompressors.
    /// Not `archive_read_support_format_all`: it includes mtree, whose entries name
    /// files on the host that libarchive then reads — a host-file disclosure. Not
    /// `archive_read_support_filter_all`: it includes filters that run external
    /// programs (lrzip, lzop, grzip), i.e. fork+exec inside a multithreaded agent.
    private static func configure(_ archive: OpaquePointer) throws {
        let steps: [(String, (OpaquePointer) -> Int32)] = [
            ("tar", archive_read_support_format_tar),
            ("gzip", archive_read_support_filter_gzip),
            ("bzip2", archive_read_support_filter_bzip2),
            ("xz", archive_read_support_filter_xz),
            ("zstd", archive_read_support_filter_zstd),
        ]
        for (name, enable) in steps {
            // ARCHIVE_WARN: this libarchive lacks the library and would run an external
            // program for that compression. Debian 12's links zlib, bzip2, liblzma and
            // libzstd, so it does not happen there; elsewhere it beats not reading it.
            let r = enable(archive)
            if r != ARCHIVE_OK && r != ARCHIVE_WARN {
                throw BerthError(.internal, "image import: libarchive cannot read \(name): \(message(archive))")
            }
        }
    }

    private static func message(_ archive: OpaquePointer) -> String {
        archive_error_string(archive).map { String(cString: $0) } ?? "unknown libarchive error"
    }

    // MARK: - One entry

    private enum Kind {
        case directory, regular, symlink(PathBytes), hardlink(PathBytes), device(mode_t, dev_t), fifo
    }

    private func unpack(_ entry: OpaquePointer, _ archive: OpaquePointer, _ input: ArchiveInput) throws {
        guard let raw = Self.bytes(archive_entry_pathname(entry)) ?? Self.bytes(archive_entry_pathname_utf8(entry)) else {
            throw BerthError(.invalidArgument, "image tarball has an entry without a name")
        }
        let shown = raw.quoted
        let components = try Self.components(raw, entry: shown)

        let kind: Kind
        if let target = Self.bytes(archive_entry_hardlink(entry)) ?? Self.bytes(archive_entry_hardlink_utf8(entry)) {
            kind = .hardlink(target)
        } else {
            switch archive_entry_filetype(entry) & S_IFMT {
            case S_IFDIR: kind = .directory
            case S_IFREG: kind = .regular
            case S_IFLNK:
                guard let target = Self.bytes(archive_entry_symlink(entry)) ?? Self.bytes(archive_entry_symlink_utf8(entry)),
                      !target.isEmpty else {
                    throw BerthError(.invalidArgument, "tar entry \(shown) is a symlink without a target")
                }
                kind = .symlink(target)
            case S_IFCHR: kind = .device(S_IFCHR, archive_entry_rdev(entry))
            case S_IFBLK: kind = .device(S_IFBLK, archive_entry_rdev(entry))
            case S_IFIFO: kind = .fifo
            default:
                throw BerthError(.invalidArgument, "tar entry \(shown) has an unsupported file type (only files, directories, symlinks, hard links, devices and fifos)")
            }
        }
        let attributes = try Self.attributes(entry, shown)

        guard let name = components.last else {
            // "./" or "/": the root itself. Only its attributes can be set.
            guard case .directory = kind else {
                throw BerthError(.invalidArgument, "tar entry \(shown) would replace the image root with a non-directory")
            }
            directories[[]] = attributes
            return
        }
        let parent = try openParent(components.dropLast(), entry: shown, escape: "tar entry \(shown) resolves through a symlink outside the image root")
        defer { Glibc.close(parent) }
        if layer, name.starts(with: Self.whiteoutPrefix) {
            try whiteout(name, parent: parent, directory: Array(components.dropLast().joined(separator: [UInt8(ascii: "/")])), shown)
            return
        }
        let cName = name.cPath

        // Later entries win: an existing non-directory (or a directory that is to become
        // something else) is removed first. Writing into it instead would write through
        // a hard link or a symlink that an earlier entry planted.
        var st = stat()
        var keepDirectory = false
        if fstatat(parent, cName, &st, AT_SYMLINK_NOFOLLOW) == 0 {
            let isDirectory = (st.st_mode & S_IFMT) == S_IFDIR
            if case .directory = kind, isDirectory {
                keepDirectory = true  // and its children; only the attributes change
            } else if isDirectory {
                try FileTree.removeDirectory(parent, name)
            } else {
                try check(shown, "remove the existing entry") { unlinkat(parent, cName, 0) }
            }
        } else if errno != ENOENT {
            throw entryError(errno, shown, "stat")
        }

        switch kind {
        case .directory:
            if !keepDirectory { try check(shown, "mkdir") { mkdirat(parent, cName, 0o700) } }
            directories[Array(components.joined(separator: [UInt8(ascii: "/")]))] = attributes
            if layer && archive_entry_xattr_count(entry) > 0 {
                let fd = openat(parent, cName, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if fd >= 0 { applyXattrs(entry, fd: fd, shown); Glibc.close(fd) }
            }

        case .regular:
            let fd = berth_openat2(parent, cName, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600, 0)
            if fd < 0 { throw entryError(errno, shown, "create") }
            defer { Glibc.close(fd) }
            try writeData(archive, to: fd, entry: entry, shown, input)
            try apply(attributes, fd: fd, shown)
            // After chown, which would clear security.capability.
            if layer { applyXattrs(entry, fd: fd, shown) }

        case .symlink(let target):
            try check(shown, "symlink") { symlinkat(target.cPath, parent, cName) }
            try apply(attributes, parent: parent, name: cName, isSymlink: true, shown)

        case .hardlink(let target):
            let dotDot: PathBytes = [UInt8(ascii: "."), UInt8(ascii: ".")]
            if target.first == UInt8(ascii: "/") || target.split(separator: UInt8(ascii: "/")).contains(where: { $0.elementsEqual(dotDot) }) {
                throw BerthError(.invalidArgument, "tar entry \(shown) is a hard link to \(target.quoted), which escapes the image root")
            }
            let targetComponents = try Self.components(target, entry: "\(shown) (hard link target \(target.quoted))")
            guard let targetName = targetComponents.last else {
                throw BerthError(.invalidArgument, "tar entry \(shown) is a hard link to the image root")
            }
            let targetParent = try openParent(targetComponents.dropLast(), entry: shown, create: false,
                escape: "tar entry \(shown) is a hard link to \(target.quoted), which resolves through a symlink outside the image root")
            defer { Glibc.close(targetParent) }
            // Flags 0: a symlink target is linked itself, not followed. The link shares
            // the target's inode, so the entry's own attributes are not applied (they
            // would change the target's).
            try check(shown, "hard link to \(target.quoted)") { linkat(targetParent, targetName.cPath, parent, cName, 0) }

        case .device(let type, let rdev):
            try check(shown, "mknod") { mknodat(parent, cName, type | 0o600, rdev) }
            try apply(attributes, parent: parent, name: cName, isSymlink: false, shown)

        case .fifo:
            try check(shown, "mkfifo") { mknodat(parent, cName, S_IFIFO | 0o600, 0) }
            try apply(attributes, parent: parent, name: cName, isSymlink: false, shown)
        }
    }

    static let whiteoutPrefix = Array(".wh.".utf8)
    static let opaqueMarker = Array(".wh..wh..opq".utf8)

    /// A whiteout entry of a layer, in overlayfs's format: `.wh..wh..opq` makes the
    /// directory opaque (what lower layers have there is hidden), `.wh.NAME` hides NAME
    /// of the lower layers with a 0/0 character device.
    private func whiteout(_ name: PathBytes, parent: Int32, directory: PathBytes, _ shown: String) throws {
        if name == Self.opaqueMarker {
            // `parent` is an O_PATH descriptor, which fsetxattr refuses; its /proc link
            // names the very directory (no path lookup an entry could redirect).
            let value: [UInt8] = [UInt8(ascii: "y")]
            let r = berth_setxattr("/proc/self/fd/\(parent)", "trusted.overlay.opaque", value, 1)
            if r != 0 { throw entryError(errno, shown, "mark \(directory.quoted) opaque (trusted.overlay.opaque)") }
            return
        }
        let target = Array(name.dropFirst(Self.whiteoutPrefix.count))
        if target.isEmpty || target == [UInt8(ascii: ".")] || target == [UInt8(ascii: "."), UInt8(ascii: ".")] || target.starts(with: Self.whiteoutPrefix) {
            throw BerthError(.invalidArgument, "tar entry \(shown) is a whiteout of nothing valid")
        }
        let cTarget = target.cPath
        var st = stat()
        if fstatat(parent, cTarget, &st, AT_SYMLINK_NOFOLLOW) == 0 {
            if (st.st_mode & S_IFMT) == S_IFDIR { try FileTree.removeDirectory(parent, target) }
            else { try check(shown, "remove the entry it whites out") { unlinkat(parent, cTarget, 0) } }
        }
        try check(shown, "mknod whiteout") { mknodat(parent, cTarget, S_IFCHR, 0) }
    }

    /// The entry's extended attributes, where allowed: `user.*` and `security.capability`
    /// (file capabilities). Others are skipped: `trusted.overlay.*` would let a layer
    /// steer overlayfs (redirects, opaque dirs it did not declare), and `security.selinux`
    /// labels belong to the host's policy. A file system that takes none is not an error.
    private func applyXattrs(_ entry: OpaquePointer, fd: Int32, _ shown: String) {
        guard archive_entry_xattr_reset(entry) > 0 else { return }
        var name: UnsafePointer<CChar>?
        var value: UnsafeRawPointer?
        var size = 0
        while archive_entry_xattr_next(entry, &name, &value, &size) == ARCHIVE_OK {
            guard let name else { continue }
            let key = String(cString: name)
            guard key.hasPrefix("user.") || key == "security.capability" else { continue }
            _ = berth_fsetxattr(fd, name, value, size)
        }
    }

    /// Copies the entry's data blocks into `fd`, honouring their offsets (sparse files).
    private func writeData(_ archive: OpaquePointer, to fd: Int32, entry: OpaquePointer, _ shown: String, _ input: ArchiveInput) throws {
        var end: Int64 = 0
        while true {
            var block: UnsafeRawPointer?
            var size = 0
            var offset: Int64 = 0
            let r = archive_read_data_block(archive, &block, &size, &offset)
            if r == ARCHIVE_EOF { break }
            guard r == ARCHIVE_OK || r == ARCHIVE_WARN else { throw input.failure(archive) }
            guard let block, size > 0 else { continue }
            var done = 0
            while done < size {
                let n = try check(shown, "write") { pwrite(fd, block + done, size - done, off_t(offset) + off_t(done)) }
                done += n
            }
            end = max(end, offset + Int64(size))
        }
        // A sparse file may end in a hole, which has no data block.
        if archive_entry_size_is_set(entry) != 0 && archive_entry_size(entry) > end {
            try check(shown, "truncate") { ftruncate(fd, off_t(archive_entry_size(entry))) }
        }
    }

    // MARK: - Attributes

    private static func attributes(_ entry: OpaquePointer, _ shown: String) throws -> Attributes {
        let uid = archive_entry_uid(entry), gid = archive_entry_gid(entry)
        // (uid_t)-1 means "leave unchanged" to chown; anything beyond is not an id.
        guard (0..<Int64(UInt32.max)).contains(uid), (0..<Int64(UInt32.max)).contains(gid) else {
            throw BerthError(.invalidArgument, "tar entry \(shown) has an invalid owner \(uid):\(gid)")
        }
        var mtime: timespec?
        if archive_entry_mtime_is_set(entry) != 0 {
            mtime = timespec(tv_sec: time_t(archive_entry_mtime(entry)), tv_nsec: Int(archive_entry_mtime_nsec(entry)))
        }
        return Attributes(uid: uid_t(uid), gid: gid_t(gid), mode: archive_entry_perm(entry) & 0o7777, mtime: mtime)
    }

    /// Owner, then mode, then times, on an open regular file.
    private func apply(_ a: Attributes, fd: Int32, _ shown: String) throws {
        if isRoot { try check(shown, "chown") { fchown(fd, a.uid, a.gid) } }
        try check(shown, "chmod") { fchmod(fd, a.mode) }
        if let t = a.mtime {
            var times = [t, t]
            try check(shown, "set times") { futimens(fd, &times) }
        }
    }

    /// Owner, then mode (not for symlinks, whose mode means nothing on Linux), then
    /// times, on `name` in `parent`, never following a symlink.
    private func apply(_ a: Attributes, parent: Int32, name: [CChar], isSymlink: Bool, _ shown: String) throws {
        if isRoot { try check(shown, "chown") { fchownat(parent, name, a.uid, a.gid, AT_SYMLINK_NOFOLLOW) } }
        // fchmodat cannot refuse to follow a symlink (before Linux 6.6's fchmodat2);
        // `name` was just created as a device or fifo by this thread, so it is not one.
        if !isSymlink { try check(shown, "chmod") { fchmodat(parent, name, a.mode, 0) } }
        if let t = a.mtime {
            var times = [t, t]
            try check(shown, "set times") { utimensat(parent, name, &times, AT_SYMLINK_NOFOLLOW) }
        }
    }

    /// Gives every directory entry its owner, mode and mtime, deepest first. A
    /// directory that a later entry replaced (by a file or a symlink) is skipped:
    /// opening it with `RESOLVE_NO_SYMLINKS` and `O_NOFOLLOW` fails rather than
    /// reaching whatever the symlink points at.
    private func applyDirectoryAttributes() throws {
        func depth(_ path: PathBytes) -> Int { path.isEmpty ? 0 : 1 + path.count(where: { $0 == UInt8(ascii: "/") }) }
        let ordered = directories.sorted { depth($0.key) > depth($1.key) }
        for (path, a) in ordered {
            let p = path.isEmpty ? [UInt8(ascii: ".")] : path
            let resolve = UInt64(BERTH_RESOLVE_BENEATH | BERTH_RESOLVE_NO_SYMLINKS)
            let fd = berth_openat2(root, p.cPath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0, resolve)
            if fd < 0 {
                switch errno {
                case ENOENT, ENOTDIR, ELOOP, EXDEV: continue
                default: throw entryError(errno, path.quoted, "open directory")
                }
            }
            defer { Glibc.close(fd) }
            let shown = path.quoted
            if isRoot { try check(shown, "chown") { fchown(fd, a.uid, a.gid) } }
            try check(shown, "chmod") { fchmod(fd, a.mode) }
            if let t = a.mtime {
                var times = [t, t]
                try check(shown, "set times") { futimens(fd, &times) }
            }
        }
    }

    // MARK: - Paths

    /// The components of an entry path: "." and empty ones dropped; ".." and absolute
    /// paths rejected (see the type's comment).
    private static func components(_ path: PathBytes, entry shown: String) throws -> [PathBytes] {
        if path.first == UInt8(ascii: "/") {
            throw BerthError(.invalidArgument, "tar entry \(shown) is an absolute path; an image tarball holds paths relative to its root (create it with: tar -C ROOTFS -cf IMAGE.tar .)")
        }
        var out: [PathBytes] = []
        for part in path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            if part.elementsEqual([UInt8(ascii: ".")]) { continue }
            if part.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) {
                throw BerthError(.invalidArgument, "tar entry \(shown) escapes the image root")
            }
            if part.count > Int(NAME_MAX) {
                throw BerthError(.invalidArgument, "tar entry \(shown) has a name longer than \(NAME_MAX) bytes")
            }
            out.append(Array(part))
        }
        if out.reduce(0, { $0 + $1.count + 1 }) > maxPathBytes {
            throw BerthError(.invalidArgument, "tar entry \(shown) has a path longer than \(maxPathBytes) bytes")
        }
        return out
    }

    /// Opens the directory `components` beneath the root as an `O_PATH` descriptor
    /// (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`). Missing directories
    /// are created (0755, root-owned, as docker does) when `create` is set; a symlink
    /// leading out of the root throws INVALID_ARGUMENT with `escape`.
    private func openParent(_ components: ArraySlice<PathBytes>, entry shown: String, create: Bool = true, escape: String) throws -> Int32 {
        let resolve = UInt64(BERTH_RESOLVE_BENEATH | BERTH_RESOLVE_NO_MAGICLINKS)
        func open(_ path: PathBytes) -> Int32 {
            berth_openat2(root, (path.isEmpty ? [UInt8(ascii: ".")] : path).cPath, BERTH_O_PATH | O_DIRECTORY | O_CLOEXEC, 0, resolve)
        }
        func failure(_ e: Int32, _ path: PathBytes) -> BerthError {
            switch e {
            case EXDEV: BerthError(.invalidArgument, escape)
            case ENOTDIR: BerthError(.invalidArgument, "tar entry \(shown): \(path.quoted) is not a directory")
            case ENOENT: BerthError(.invalidArgument, "tar entry \(shown): directory \(path.quoted) does not exist")
            case ELOOP: BerthError(.invalidArgument, "tar entry \(shown): too many levels of symbolic links in \(path.quoted)")
            default: entryError(e, shown, "open directory \(path.quoted)")
            }
        }
        let whole = Array(components.joined(separator: [UInt8(ascii: "/")]))
        let fd = open(whole)
        if fd >= 0 { return fd }
        guard errno == ENOENT, create else { throw failure(errno, whole) }

        // Some directory on the way is missing: walk down, creating what is missing.
        var current = open([])
        if current < 0 { throw failure(errno, []) }
        var path: PathBytes = []
        for name in components {
            path = path.appending(component: name)
            var next = open(path)
            if next < 0 && errno == ENOENT {
                if mkdirat(current, name.cPath, 0o755) == 0 {
                    _ = fchmodat(current, name.cPath, 0o755, 0)  // whatever the umask
                } else if errno != EEXIST {
                    let e = errno
                    Glibc.close(current)
                    throw entryError(e, shown, "mkdir \(path.quoted)")
                }
                next = open(path)
            }
            let e = errno
            Glibc.close(current)
            if next < 0 { throw failure(e, path) }
            current = next
        }
        return current
    }

    private static func bytes(_ p: UnsafePointer<CChar>?) -> PathBytes? {
        guard let p else { return nil }
        return Array(UnsafeRawBufferPointer(start: p, count: strlen(p)))
    }

    // MARK: - Errors

    /// Runs a syscall for an entry, retrying EINTR; a failure names the entry.
    @discardableResult
    private func check<T: FixedWidthInteger>(_ shown: String, _ what: String, _ body: () -> T) throws -> T {
        do { return try syscall(body) } catch { throw entryError(error.rawValue, shown, what) }
    }
}

/// A failure on one tar entry. Running out of space or descriptors keeps its own code;
/// anything else is the tarball's fault (a link to a missing file, a device under a
/// fifo…) and is INVALID_ARGUMENT.
private func entryError(_ e: Int32, _ shown: String, _ what: String) -> BerthError {
    let context = "tar entry \(shown): \(what)"
    switch e {
    case ENOSPC, EDQUOT, ENOMEM, EMFILE, ENFILE, EIO, EROFS: return Errno(rawValue: e).error(context)
    default: return BerthError(.invalidArgument, "\(context): \(Errno(rawValue: e))")
    }
}

/// The pump between a caller's `read` closure and libarchive's read callback, shared by
/// the tarball extractor and the layer decompressor. It hashes every byte when asked
/// (`hashing`), and keeps the error `read` threw so that it can be rethrown unchanged
/// instead of libarchive's generic "read error".
final class ArchiveInput {
    let read: () throws -> [UInt8]?
    let hasher: SHA256?
    private(set) var total: UInt64 = 0
    private(set) var thrown: (any Error)?
    private(set) var finished = false
    // The block last handed to libarchive. libarchive may use it until it calls the
    // read callback again, so it lives here, not in a Swift array that could move.
    private var buffer: UnsafeMutableRawPointer?
    private var capacity = 0

    init(read: @escaping () throws -> [UInt8]?, hashing: Bool) throws {
        self.read = read
        self.hasher = hashing ? try SHA256() : nil
    }

    deinit { buffer?.deallocate() }

    /// Opens `archive` on this input (libarchive's read callback calls `next`).
    func open(_ archive: OpaquePointer) -> Int32 {
        let client = Unmanaged.passUnretained(self).toOpaque()
        return archive_read_open(archive, client, nil, { _, client, out in
            guard let client, let out else { return -1 }
            return Unmanaged<ArchiveInput>.fromOpaque(client).takeUnretainedValue().next(out)
        }, nil)
    }

    /// The read callback: the next non-empty chunk, 0 at the end, -1 if `read` threw.
    func next(_ out: UnsafeMutablePointer<UnsafeRawPointer?>) -> Int {
        if thrown != nil { return -1 }
        if finished { return 0 }
        do {
            while true {
                guard let chunk = try read() else {
                    finished = true
                    return 0
                }
                if chunk.isEmpty { continue }  // 0 would mean end of input to libarchive
                hasher?.update(chunk)
                total += UInt64(chunk.count)
                if chunk.count > capacity {
                    buffer?.deallocate()
                    capacity = max(chunk.count, 64 * 1024)
                    buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
                }
                guard let buffer else { return -1 }
                chunk.withUnsafeBytes { UnsafeMutableRawBufferPointer(start: buffer, count: capacity).copyMemory(from: $0) }
                out.pointee = UnsafeRawPointer(buffer)
                return chunk.count
            }
        } catch {
            thrown = error
            return -1
        }
    }

    /// Reads (and hashes) what libarchive left unread.
    func drain() throws {
        if let thrown { throw thrown }
        while !finished {
            guard let chunk = try read() else { finished = true; return }
            hasher?.update(chunk)
            total += UInt64(chunk.count)
        }
    }

    /// The error for a failed libarchive call: what `read` threw, if it did, else the
    /// tarball is broken.
    func failure(_ archive: OpaquePointer, what: String = "image tarball", whenEmpty: String = " (0 bytes were uploaded)",
                 reason: String = "") -> any Error {
        if let thrown { return thrown }
        if total == 0 { return BerthError(.invalidArgument, "\(what) is empty\(whenEmpty)") }
        let message = archive_error_string(archive).map { String(cString: $0) } ?? "unexpected end of data"
        return BerthError(.invalidArgument, "\(what) is truncated or corrupt: \(message)", reason: reason)
    }
}
