#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import BerthWire
import CArchive

/// `berth image load`: an OCI image layout or a docker-archive (`docker save`) as a tar
/// stream (plain or gzip).
///
/// The stream is read once. Its files cannot be used as they arrive (the index or
/// manifest.json may come last), so every regular file is spooled into
/// `tmp/load-<random>/` under a number, hashed on the way; the archive's own paths never
/// reach the file system. Then the index or manifest.json is read, every blob checked
/// against its digest and size, each layer unpacked into the store (checked against the
/// config's diff id), and the images published. On any error the spool and any half
/// layer are removed; layers already published stay, unused, until `image prune`.
extension ImageStore {
    private struct Spooled {
        var file: String
        var size: UInt64
        var digest: String
    }

    private struct Spool {
        var files: [String: Spooled] = [:]
        var links: [String: String] = [:]

        /// The spooled file at archive path `path`, following the archive's symlinks
        /// (docker 25's `<id>/layer.tar` → `../blobs/sha256/…`).
        func file(_ path: String) -> Spooled? {
            var p = ImageStore.cleanArchivePath(path)
            for _ in 0..<8 {
                if let f = files[p] { return f }
                guard let target = links[p] else { return nil }
                let base = p.split(separator: "/").dropLast().joined(separator: "/")
                p = ImageStore.cleanArchivePath(target.hasPrefix("/") ? target : (base.isEmpty ? target : base + "/" + target))
            }
            return nil
        }
    }

    /// "./a//b/../c" → "a/c"; a path leaving the archive's root keeps a leading "../".
    static func cleanArchivePath(_ path: String) -> String {
        var out: [Substring] = []
        for part in path.split(separator: "/") {
            if part == "." { continue }
            if part == "..", let last = out.last, last != ".." { out.removeLast(); continue }
            out.append(part)
        }
        return out.joined(separator: "/")
    }

    /// Loads every image of the archive read from `read`. `name` names the image when the
    /// archive holds exactly one and gives it no name of its own (or overrides it).
    public func load(name: String, read: @escaping () throws -> [UInt8]?) throws -> [ImageRecord] {
        let override = name.isEmpty ? nil : try Self.normalize(name)
        let work = "\(directory)/tmp/load-\(Host.randomHex(bytes: 8))"
        try sys("mkdir \(work)") { mkdir(work, 0o700) }
        defer { try? FileTree.remove(work) }
        let spool = try spoolArchive(into: work, read: read)
        if spool.file("index.json") != nil && spool.file("oci-layout") != nil {
            return try loadOCILayout(spool, name: override)
        }
        if spool.file("manifest.json") != nil {
            return try loadDockerArchive(spool, name: override)
        }
        throw BerthError(.invalidArgument, "the archive is neither an OCI image layout (oci-layout, index.json) nor a docker-archive (manifest.json); for a root file system tarball use: berth image import NAME FILE", reason: "unknown_archive")
    }

    private func spoolArchive(into work: String, read: @escaping () throws -> [UInt8]?) throws -> Spool {
        guard let archive = archive_read_new() else { throw BerthError(.resourceExhausted, "image load: archive_read_new failed") }
        defer { archive_read_free(archive) }
        for enable in [archive_read_support_format_tar, archive_read_support_filter_gzip, archive_read_support_filter_zstd] {
            let r = enable(archive)
            if r != ARCHIVE_OK && r != ARCHIVE_WARN { throw BerthError(.internal, "image load: libarchive setup failed") }
        }
        let input = try ArchiveInput(read: read, hashing: false)
        func failure() -> any Error { input.failure(archive, what: "image archive", reason: "corrupt_archive") }
        if input.open(archive) != ARCHIVE_OK { throw failure() }

        var spool = Spool()
        var count = 0
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        while true {
            var entry: OpaquePointer?
            let r = archive_read_next_header(archive, &entry)
            if r == ARCHIVE_EOF { break }
            guard r == ARCHIVE_OK || r == ARCHIVE_WARN, let entry else { throw failure() }
            count += 1
            if count > 100_000 { throw BerthError(.invalidArgument, "image archive has more than 100000 entries") }
            guard let raw = archive_entry_pathname(entry) else { continue }
            let path = Self.cleanArchivePath(String(cString: raw))
            switch archive_entry_filetype(entry) & S_IFMT {
            case S_IFREG:
                let file = "\(work)/\(count)"
                let fd = try FileDescriptor.open(file, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
                defer { fd.close() }
                let hasher = try SHA256()
                var size: UInt64 = 0
                while true {
                    let n = buffer.withUnsafeMutableBytes { archive_read_data(archive, $0.baseAddress, $0.count) }
                    if n < 0 { throw failure() }
                    if n == 0 { break }
                    try buffer.withUnsafeBytes { b in
                        let slice = UnsafeRawBufferPointer(rebasing: b[0..<n])
                        hasher.update(slice)
                        try fd.writeAll(slice)
                    }
                    size += UInt64(n)
                }
                spool.files[path] = Spooled(file: file, size: size, digest: "sha256:" + Host.hex(hasher.finalize()))
            case S_IFLNK:
                if let target = archive_entry_symlink(entry) { spool.links[path] = String(cString: target) }
            default:
                continue
            }
        }
        return spool
    }

    private func readSpooled(_ spool: Spool, _ path: String, what: String, digest: String? = nil, size: UInt64? = nil,
                             contents: Bool = true) throws -> (Spooled, [UInt8]?) {
        guard let f = spool.file(path) else {
            throw BerthError(.invalidArgument, "image archive: \(what) (\(path)) is missing", reason: "missing_blob")
        }
        if let digest, f.digest != digest {
            throw BerthError(.invalidArgument, "image archive: \(what): digest mismatch: \(path) is \(f.digest), expected \(digest)", reason: "digest_mismatch")
        }
        if let size, size > 0, f.size != size {
            throw BerthError(.invalidArgument, "image archive: \(what): \(path) has \(f.size) bytes, the descriptor says \(size)", reason: "digest_mismatch")
        }
        return (f, contents && f.size <= 16 << 20 ? try Files.read(f.file) : nil)
    }

    private func json(_ spool: Spool, _ path: String, what: String, digest: String? = nil, size: UInt64? = nil) throws -> [UInt8] {
        let (_, bytes) = try readSpooled(spool, path, what: what, digest: digest, size: size)
        guard let bytes else { throw BerthError(.invalidArgument, "image archive: \(what) (\(path)) is larger than 16 MiB") }
        return bytes
    }

    static func blobPath(_ digest: String) -> String {
        "blobs/" + digest.replacingFirstColon()
    }

    private func loadOCILayout(_ spool: Spool, name: String?) throws -> [ImageRecord] {
        guard case .index(let entries) = try ManifestDocument.parse(try json(spool, "index.json", what: "index.json"), what: "index.json") else {
            throw BerthError(.invalidArgument, "image archive: index.json is not an image index")
        }
        guard !entries.isEmpty else { throw BerthError(.invalidArgument, "image archive: index.json lists no image") }
        if name != nil && entries.count > 1 {
            throw BerthError(.invalidArgument, "image archive holds \(entries.count) images; a --name applies to an archive of one")
        }
        var records: [ImageRecord] = []
        for entry in entries {
            var descriptor = entry
            var manifest: OCIManifest?
            for _ in 0..<4 {
                let bytes = try json(spool, Self.blobPath(descriptor.digest), what: "manifest \(descriptor.digest)", digest: descriptor.digest, size: descriptor.size)
                switch try ManifestDocument.parse(bytes, contentType: descriptor.mediaType, what: "manifest \(descriptor.digest)") {
                case .manifest(let m): manifest = m
                case .index(let list): descriptor = try Platform.pick(list, what: "image index \(descriptor.digest)")
                }
                if manifest != nil { break }
            }
            guard let manifest else { throw BerthError(.invalidArgument, "image archive: indexes nested too deeply") }
            var names: [String] = []
            if let name { names = [name] } else {
                for key in ["io.containerd.image.name", "org.opencontainers.image.ref.name"] {
                    if let ref = entry.annotations[key], ref.contains("/") || ref.contains(":"), let n = try? Self.normalize(ref) {
                        names = [n]
                        break
                    }
                }
            }
            records += try loadImage(spool, manifest: manifest, digest: entry.digest, names: names) { d in
                (Self.blobPath(d.digest), d.digest, d.size)
            }
        }
        return records
    }

    private func loadDockerArchive(_ spool: Spool, name: String?) throws -> [ImageRecord] {
        let entries = try DockerArchiveEntry.parse(try json(spool, "manifest.json", what: "manifest.json"))
        guard !entries.isEmpty else { throw BerthError(.invalidArgument, "image archive: manifest.json lists no image") }
        if name != nil && entries.count > 1 {
            throw BerthError(.invalidArgument, "image archive holds \(entries.count) images; a --name applies to an archive of one")
        }
        var records: [ImageRecord] = []
        for entry in entries {
            let names = try name.map { [$0] } ?? entry.repoTags.map { try Self.normalize($0) }
            let config = Descriptor(mediaType: "", digest: spool.file(entry.config)?.digest ?? "", size: 0)
            let manifest = OCIManifest(config: config, layers: entry.layers.map { Descriptor(mediaType: "", digest: $0, size: 0) })
            records += try loadImage(spool, manifest: manifest, digest: "", names: names, configPath: entry.config) { d in
                (d.digest, nil, nil)  // docker-archive layers are named by path; the diff id checks them
            }
        }
        return records
    }

    /// Verifies the config, unpacks the layers and publishes one image. `locate` maps a
    /// layer descriptor to its archive path and the digest and size to check, if any.
    private func loadImage(_ spool: Spool, manifest: OCIManifest, digest: String, names: [String], configPath: String? = nil,
                           locate: (Descriptor) -> (String, String?, UInt64?)) throws -> [ImageRecord] {
        let configBytes = try json(spool, configPath ?? Self.blobPath(manifest.config.digest), what: "image config",
                                   digest: configPath == nil ? manifest.config.digest : nil,
                                   size: configPath == nil ? manifest.config.size : nil)
        let config = try OCIImageConfig.parse(configBytes)
        if !config.os.isEmpty && config.os != "linux" {
            throw BerthError(.invalidArgument, "image archive: the image is for \(config.os)/\(config.architecture), not linux", reason: "platform_not_found")
        }
        guard config.diffIDs.count == manifest.layers.count else {
            throw BerthError(.invalidArgument, "image archive: the manifest has \(manifest.layers.count) layers, the config \(config.diffIDs.count) diff ids", reason: "digest_mismatch")
        }
        let id = "sha256:" + Host.hex(try SHA256.digest(configBytes))
        pin(config.diffIDs + [id])
        defer { unpin(config.diffIDs + [id]) }
        for (i, layer) in manifest.layers.enumerated() {
            let diffID = config.diffIDs[i]
            if hasLayer(diffID) { continue }
            let (path, blobDigest, size) = locate(layer)
            let what = "layer \(i + 1) of \(manifest.layers.count) (\(path))"
            let (f, _) = try readSpooled(spool, path, what: what, digest: blobDigest, size: size, contents: false)
            _ = try flights.run(diffID) {
                try unpackLayer(diffID: diffID, blobDigest: nil, what: what, read: try Self.fileReader(f.file))
            }
        }
        return try publishLayered(config: configBytes, parsed: config, digest: digest, names: names)
    }

    /// A `read` closure over a file, 256 KiB at a time; the descriptor closes at the end.
    static func fileReader(_ path: String, from offset: UInt64 = 0) throws -> () throws -> [UInt8]? {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        if offset > 0 { _ = lseek(fd.rawValue, off_t(offset), SEEK_SET) }
        final class Reader {
            var fd: FileDescriptor?
            init(_ fd: FileDescriptor) { self.fd = fd }
            deinit { fd?.close() }
        }
        let reader = Reader(fd)
        return {
            guard let fd = reader.fd else { return nil }
            var buffer = [UInt8](repeating: 0, count: 256 * 1024)
            let n = try buffer.withUnsafeMutableBytes { try fd.read(into: $0) }
            if n == 0 { fd.close(); reader.fd = nil; return nil }
            return Array(buffer[0..<n])
        }
    }
}

extension String {
    /// "sha256:abc" → "sha256/abc".
    func replacingFirstColon() -> String {
        guard let i = firstIndex(of: ":") else { return self }
        return String(self[..<i]) + "/" + String(self[index(after: i)...])
    }
}
