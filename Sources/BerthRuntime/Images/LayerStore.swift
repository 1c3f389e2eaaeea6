#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import BerthWire
import CArchive
import CBerthShim

/// Layered images in the store (docs/state.md):
/// ```
/// layers/<diff-hex>/diff/      a layer unpacked once, read-only by convention, with
///                              overlayfs whiteouts; shared by every image that has it
/// layers/<diff-hex>/meta       size=…
/// blobs/sha256/<hex>           verified image configs and manifests
/// downloads/<hex>              a layer blob being pulled (kept for resuming)
/// by-id/<config-hex>/config.json, meta   a loaded or pulled image: its config and layers
/// ```
/// Every piece is written under `tmp/` and published by one `rename`; an image is
/// published (its `by-id` dir, then `refs`) only once all its layers are.
extension ImageStore {
    var layersDirectory: String { "\(directory)/layers" }
    var blobsDirectory: String { "\(directory)/blobs/sha256" }
    var downloadsDirectory: String { "\(directory)/downloads" }

    /// The unpacked tree of layer `diffID`.
    func layerPath(_ diffID: String) -> String? {
        Self.hex(of: diffID).map { "\(layersDirectory)/\($0)/diff" }
    }

    func hasLayer(_ diffID: String) -> Bool {
        layerPath(diffID).map(Files.isDirectory) ?? false
    }

    /// Marks ids (layers, images) as in use by a load or pull, so prune leaves them.
    func pin(_ ids: [String]) { state.withLock { s in for id in ids { s.busy[id, default: 0] += 1 } } }
    func unpin(_ ids: [String]) {
        state.withLock { s in
            for id in ids {
                let n = (s.busy[id] ?? 1) - 1
                s.busy[id] = n > 0 ? n : nil
            }
        }
    }

    /// Unpacks a layer blob (plain tar, or gzip/zstd/xz/bzip2-compressed) read from `read`,
    /// checking the SHA-256 of the bytes read against `blobDigest` (when given) and of the
    /// uncompressed tar against `diffID`. Published as `layers/<diff-hex>` only when
    /// both match; on any error nothing is left. A layer already there is not unpacked again.
    /// Returns the layer's size.
    @discardableResult
    func unpackLayer(diffID: String, blobDigest: String?, what: String, read: @escaping () throws -> [UInt8]?) throws -> UInt64 {
        guard let hex = Self.hex(of: diffID) else {
            throw BerthError(.invalidArgument, "\(what): diff id \(diffID.debugDescription) is not a sha256 digest", reason: "bad_digest")
        }
        let published = "\(layersDirectory)/\(hex)"
        if Files.isDirectory(published + "/diff") { return layerSize(diffID) }
        let work = "\(directory)/tmp/layer-\(Host.randomHex(bytes: 8))"
        try sys("mkdir \(work)") { mkdir(work, 0o700) }
        do {
            try sys("mkdir \(work)/diff") { mkdir("\(work)/diff", 0o755) }
            let blobHasher = try SHA256()
            let decompressor = try Decompressor(read: {
                let chunk = try read()
                if let chunk { blobHasher.update(chunk) }
                return chunk
            }, what: what)
            let tree = try TarExtractor.extract(into: "\(work)/diff", layer: true, read: decompressor.next)
            try decompressor.drain()
            if let blobDigest {
                let got = "sha256:" + Host.hex(blobHasher.finalize())
                guard got == blobDigest else {
                    throw BerthError(.invalidArgument, "\(what): digest mismatch: the blob is \(got), the manifest says \(blobDigest)", reason: "digest_mismatch")
                }
            }
            let got = "sha256:" + Host.hex(tree.digest)
            guard got == diffID else {
                throw BerthError(.invalidArgument, "\(what): digest mismatch: the uncompressed layer is \(got), the image config says \(diffID)", reason: "digest_mismatch")
            }
            try Files.writeAtomically("\(work)/meta", Array("size=\(tree.sizeBytes)\n".utf8), mode: 0o600)
            if rename(work, published) == 0 {
                Self.syncDirectory(layersDirectory)
            } else if errno == EEXIST || errno == ENOTEMPTY {
                try FileTree.remove(work)  // unpacked meanwhile by another load or pull
            } else {
                throw Errno.current.error("rename \(work) to \(published)")
            }
            return tree.sizeBytes
        } catch {
            try? FileTree.remove(work)
            throw error
        }
    }

    func layerSize(_ diffID: String) -> UInt64 {
        guard let hex = Self.hex(of: diffID), let text = try? Files.readString("\(layersDirectory)/\(hex)/meta") else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("size=") { return UInt64(line.dropFirst(5)) ?? 0 }
        return 0
    }

    /// Stores a verified blob (a config or a manifest) under `blobs/sha256/<hex>`.
    func storeBlob(_ bytes: [UInt8], digest: String, what: String) throws {
        let got = "sha256:" + Host.hex(try SHA256.digest(bytes))
        guard got == digest, let hex = Self.hex(of: digest) else {
            throw BerthError(.invalidArgument, "\(what): digest mismatch: the content is \(got), expected \(digest)", reason: "digest_mismatch")
        }
        let path = "\(blobsDirectory)/\(hex)"
        if !Files.exists(path) { try Files.writeAtomically(path, bytes, mode: 0o600) }
    }

    /// Publishes a layered image whose layers are all in the store: `by-id/<config-hex>/`
    /// (config.json, meta), then the names in `refs`. Returns one record per name (or
    /// one without a name when `names` is empty).
    func publishLayered(config: [UInt8], parsed: OCIImageConfig, digest: String, names: [String]) throws -> [ImageRecord] {
        let id = "sha256:" + Host.hex(try SHA256.digest(config))
        guard let hex = Self.hex(of: id) else { throw BerthError(.internal, "bad config digest") }
        for d in parsed.diffIDs where !hasLayer(d) {
            throw BerthError(.internal, "image \(id): layer \(d) is missing from the store")
        }
        guard !parsed.diffIDs.isEmpty else {
            throw BerthError(.invalidArgument, "image config \(id) lists no layers (rootfs.diff_ids is empty)")
        }
        let size = parsed.diffIDs.reduce(UInt64(0)) { $0 + layerSize($1) }
        var metadata = Metadata(sizeBytes: size, createdUnix: Host.now)
        metadata.layers = parsed.diffIDs
        metadata.digest = digest
        metadata.config = parsed.config
        metadata.os = parsed.os
        metadata.architecture = parsed.architecture

        let published = "\(directory)/by-id/\(hex)"
        if let existing = Self.readMetadata("\(published)/meta"), existing.layers == metadata.layers {
            metadata.createdUnix = existing.createdUnix
            if metadata.digest.isEmpty { metadata.digest = existing.digest }
        } else {
            let work = "\(directory)/tmp/image-\(Host.randomHex(bytes: 8))"
            try sys("mkdir \(work)") { mkdir(work, 0o700) }
            do {
                try Files.writeAtomically("\(work)/config.json", config, mode: 0o600)
                try Files.writeAtomically("\(work)/meta", Self.encodeMetadata(metadata, id: id), mode: 0o600)
                if rename(work, published) == 0 {
                    Self.syncDirectory("\(directory)/by-id")
                } else if errno == EEXIST || errno == ENOTEMPTY {
                    // A plain import's tree or an earlier copy: replace its meta and config.
                    try FileTree.remove(work)
                    try Files.writeAtomically("\(published)/config.json", config, mode: 0o600)
                    try Files.writeAtomically("\(published)/meta", Self.encodeMetadata(metadata, id: id), mode: 0o600)
                } else {
                    throw Errno.current.error("rename \(work) to \(published)")
                }
            } catch {
                try? FileTree.remove(work)
                throw error
            }
        }
        let normalized = try names.map { try Self.normalize($0) }
        try state.withLock { (s: inout State) throws -> Void in
            var refs = s.refs
            for n in normalized { refs[n] = id }
            try Files.writeAtomically("\(directory)/refs", Self.encodeRefs(refs), mode: 0o600)
            s.refs = refs
            s.images[id] = metadata
        }
        if normalized.isEmpty { return [record(name: "", id: id, metadata)].compactMap { $0 } }
        return normalized.compactMap { record(name: $0, id: id, metadata) }
    }

    /// The overlayfs lower dirs of image `id`, top layer first (overlayfs's order); a
    /// plain import has one, its tree. NOT_FOUND when something is gone.
    public func lowerDirs(id: String) throws -> [String] {
        guard let hex = Self.hex(of: id) else { throw BerthError(.invalidArgument, "invalid image id \(id.debugDescription)") }
        let meta = state.withLock { $0.images[id] } ?? Self.readMetadata("\(directory)/by-id/\(hex)/meta")
        if let meta, !meta.layers.isEmpty {
            return try meta.layers.reversed().map { d in
                guard let p = layerPath(d), Files.isDirectory(p) else {
                    throw BerthError(.notFound, "image \(id): layer \(d) is no longer in the store")
                }
                return p
            }
        }
        return [try rootfs(id: id)]
    }

    /// The image's metadata by id, whether or not a name points at it.
    func metadata(id: String) -> Metadata? {
        guard let hex = Self.hex(of: id) else { return nil }
        return state.withLock { $0.images[id] } ?? Self.readMetadata("\(directory)/by-id/\(hex)/meta")
    }

    /// A file of image `id` as a container would see it (the topmost layer that has it;
    /// a whiteout or opaque dir above is not considered), or nil. Symlinks are not
    /// followed. For /etc/passwd and /etc/group lookups.
    func readFile(id: String, path: String) -> [UInt8]? {
        guard let dirs = try? lowerDirs(id: id) else { return nil }
        for dir in dirs {
            let fd = berth_openat_beneath(dir, path)
            if fd < 0 { continue }
            defer { Glibc.close(fd) }
            var out: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while out.count < 4 << 20 {
                let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                out += buffer[0..<n]
            }
            return out
        }
        return nil
    }

    // MARK: - Names, removal, prune

    /// An image by name, full id, or unique id prefix (hex, with or without `sha256:`).
    public func find(_ ref: String) throws -> ImageRecord {
        let hexPrefix = ref.hasPrefix("sha256:") ? String(ref.dropFirst(7)) : ref
        let looksLikeID = hexPrefix.count >= 4 && hexPrefix.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
        do { return try resolve(ref) } catch where looksLikeID {
            // A name that looks like an id (hex): try the ids below.
        }
        let candidates: [(String, Metadata)] = state.withLock { s in
            guard hexPrefix.count >= 4, hexPrefix.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else { return [] }
            return s.images.filter { $0.key.dropFirst(7).hasPrefix(hexPrefix) }.map { ($0.key, $0.value) }
        }
        if candidates.count > 1 { throw BerthError(.invalidArgument, "image id prefix \(ref) is ambiguous: \(candidates.count) images match") }
        guard let (id, m) = candidates.first else {
            throw BerthError(.notFound, "no such image: \(ref)", reason: "image_not_found")
        }
        let name = state.withLock { s in s.refs.filter { $0.value == id }.map(\.key).sorted().first } ?? ""
        guard let r = record(name: name, id: id, m) else { throw BerthError(.notFound, "no such image: \(ref)") }
        return r
    }

    /// The names pointing at `id`.
    func names(of id: String) -> [String] {
        state.withLock { s in s.refs.filter { $0.value == id }.map(\.key).sorted() }
    }

    /// docker rmi: removes the name (or, for an id, every name) and, when no name and no
    /// container is left on the image, its files; then its layers no other image uses.
    /// `usedBy` lists the containers using each image id; an image in use is refused
    /// (FAILED_PRECONDITION) unless `force`, which removes only the names.
    public func remove(_ ref: String, force: Bool, usedBy: [String: [String]]) throws -> (untagged: [String], deleted: [String]) {
        let image = try find(ref)
        let byName = (try? Self.normalize(ref)) == image.name && !image.name.isEmpty
        let users = usedBy[image.id] ?? []
        // Removing one name of several is harmless; leaving a used image without a name is not.
        let lastName = byName ? names(of: image.id).count <= 1 : true
        if !users.isEmpty && !force && lastName {
            throw BerthError(.failedPrecondition, "image \(image.name.isEmpty ? image.id : image.name) is used by \(users.count) container\(users.count == 1 ? "" : "s") (\(users.prefix(3).map { String($0.prefix(12)) }.joined(separator: ", "))); remove \(users.count == 1 ? "it" : "them") first or use --force", reason: "image_in_use")
        }
        let untagged: [String] = try state.withLock { (s: inout State) throws -> [String] in
            var refs = s.refs
            let removing = byName ? [image.name] : refs.filter { $0.value == image.id }.map(\.key).sorted()
            for n in removing { refs[n] = nil }
            try Files.writeAtomically("\(directory)/refs", Self.encodeRefs(refs), mode: 0o600)
            s.refs = refs
            if !refs.values.contains(image.id) && users.isEmpty { s.images[image.id] = nil }
            return removing
        }
        var deleted: [String] = []
        if users.isEmpty && !state.withLock({ $0.refs.values.contains(image.id) }) {
            deleted = try collect(inUse: Set(usedBy.keys)).deleted
        }
        return (untagged, deleted)
    }

    /// Removes image dirs no name and no container (`inUse`) refers to, layers no
    /// remaining image has, verified blobs of removed images and partial downloads not
    /// being pulled. Returns what went and the bytes reclaimed.
    public func prune(inUse: Set<String>) throws -> (deleted: [String], reclaimedBytes: UInt64) {
        try collect(inUse: inUse, downloads: true)
    }

    private func collect(inUse: Set<String>, downloads: Bool = false) throws -> (deleted: [String], reclaimedBytes: UInt64) {
        var deleted: [String] = []
        var reclaimed: UInt64 = 0
        // Everything is decided under the lock, so a load publishing meanwhile (it pins
        // its layers first) keeps what it needs.
        let (deadImages, deadLayers, busy) = state.withLock { s -> ([String], [String], Set<String>) in
            let named = Set(s.refs.values)
            var keepLayers = Set<String>()
            var dead: [String] = []
            for hex in (try? Files.list("\(directory)/by-id")) ?? [] {
                let id = "sha256:" + hex
                let meta = s.images[id] ?? Self.readMetadata("\(directory)/by-id/\(hex)/meta")
                if named.contains(id) || inUse.contains(id) || s.busy[id] != nil {
                    for l in meta?.layers ?? [] { keepLayers.insert(l) }
                } else {
                    dead.append(id)
                    s.images[id] = nil
                }
            }
            let layers = ((try? Files.list(layersDirectory)) ?? []).map { "sha256:" + $0 }
                .filter { !keepLayers.contains($0) && s.busy[$0] == nil }
            return (dead, layers, Set(s.busy.keys))
        }
        for id in deadImages {
            guard let hex = Self.hex(of: id) else { continue }
            let path = "\(directory)/by-id/\(hex)"
            reclaimed += (try? treeSize(path)) ?? 0
            try FileTree.remove(path)
            deleted.append(id)
        }
        for layer in deadLayers {
            guard let hex = Self.hex(of: layer) else { continue }
            reclaimed += layerSize(layer)
            try FileTree.remove("\(layersDirectory)/\(hex)")
            deleted.append(layer)
        }
        if downloads {
            for name in (try? Files.list(downloadsDirectory)) ?? [] where !busy.contains("sha256:" + name) {
                let path = "\(downloadsDirectory)/\(name)"
                var st = stat()
                if stat(path, &st) == 0 { reclaimed += UInt64(max(st.st_size, 0)) }
                try FileTree.remove(path)
            }
        }
        return (deleted, reclaimed)
    }

    private func treeSize(_ path: String) throws -> UInt64 {
        let fd = try FileDescriptor.open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        defer { fd.close() }
        return try FileTree.size(fd.rawValue)
    }

    /// Disk use for Info: layers (and plain imported trees, counted as layers), their
    /// bytes, stored blobs (configs, manifests), partial downloads.
    public func diskUsage() -> (layers: UInt32, layersBytes: UInt64, blobsBytes: UInt64, downloadsBytes: UInt64) {
        var count: UInt32 = 0
        var bytes: UInt64 = 0
        for hex in (try? Files.list(layersDirectory)) ?? [] {
            count += 1
            bytes += layerSize("sha256:" + hex)
        }
        let imported = state.withLock { s in s.images.filter { $0.value.layers.isEmpty } }
        for (_, m) in imported { count += 1; bytes += m.sizeBytes }
        func filesSize(_ dir: String) -> UInt64 {
            ((try? Files.list(dir)) ?? []).reduce(UInt64(0)) { total, name in
                var st = stat()
                return total + (stat("\(dir)/\(name)", &st) == 0 ? UInt64(max(st.st_size, 0)) : 0)
            }
        }
        var blobs = filesSize(blobsDirectory)
        for hex in (try? Files.list("\(directory)/by-id")) ?? [] {
            var st = stat()
            if stat("\(directory)/by-id/\(hex)/config.json", &st) == 0 { blobs += UInt64(max(st.st_size, 0)) }
        }
        return (count, bytes, blobs, filesSize(downloadsDirectory))
    }
}

/// Opens `path` (relative to the root `dir`, any leading "/" dropped) read-only, never
/// leaving `dir` and following no symlink; -1 when it cannot.
private func berth_openat_beneath(_ dir: String, _ path: String) -> Int32 {
    let root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if root < 0 { return -1 }
    defer { close(root) }
    var relative = Substring(path)
    while relative.hasPrefix("/") { relative = relative.dropFirst() }
    return berth_openat2(root, String(relative), O_RDONLY | O_CLOEXEC, 0,
                         UInt64(BERTH_RESOLVE_BENEATH | BERTH_RESOLVE_NO_SYMLINKS))
}

/// Gives the uncompressed bytes of a blob read from `read`: libarchive's "raw" format
/// behind its gzip, zstd, xz and bzip2 filters (in-process, none that runs a program), so
/// a plain tar comes out as it went in.
final class Decompressor {
    private let archive: OpaquePointer
    private let input: ArchiveInput
    private var ended = false
    private let what: String

    init(read: @escaping () throws -> [UInt8]?, what: String) throws {
        self.what = what
        input = try ArchiveInput(read: read, hashing: false)
        guard let a = archive_read_new() else { throw BerthError(.resourceExhausted, "\(what): archive_read_new failed") }
        archive = a
        for enable in [archive_read_support_filter_gzip, archive_read_support_filter_zstd,
                       archive_read_support_filter_xz, archive_read_support_filter_bzip2, archive_read_support_format_raw] {
            let r = enable(a)
            if r != ARCHIVE_OK && r != ARCHIVE_WARN {
                archive_read_free(a)
                throw BerthError(.internal, "\(what): libarchive setup failed")
            }
        }
        if input.open(a) != ARCHIVE_OK {
            let e = failure()
            archive_read_free(a)
            throw e
        }
        var entry: OpaquePointer?
        let r = archive_read_next_header(a, &entry)
        if r == ARCHIVE_EOF {
            ended = true
        } else if r != ARCHIVE_OK && r != ARCHIVE_WARN {
            let e = failure()
            archive_read_free(a)
            throw e
        }
    }

    deinit { archive_read_free(archive) }

    private func failure() -> any Error {
        input.failure(archive, what: what, whenEmpty: "", reason: "corrupt_layer")
    }

    /// The next uncompressed chunk, nil at the end.
    func next() throws -> [UInt8]? {
        if ended { return nil }
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        let n = buffer.withUnsafeMutableBytes { archive_read_data(archive, $0.baseAddress, $0.count) }
        if n < 0 { throw failure() }
        if n == 0 { ended = true; return nil }
        return Array(buffer[0..<n])
    }

    /// Reads what is left, so the compressed digest covers every byte.
    func drain() throws {
        while try next() != nil {}
        try input.drain()
    }
}

/// One piece of work per key at a time: a second pull of a layer that is being
/// downloaded waits for the first, then finds the layer in the store.
final class Flights: Sendable {
    private let lock = ConditionLock(Set<String>())

    /// Runs `body` once no other thread runs one for `key`; `waiting` is called first if
    /// it has to wait.
    func run<T>(_ key: String, waiting: () -> Void = {}, _ body: () throws -> T) throws -> T {
        let busy = lock.withLock { $0.contains(key) }
        if busy { waiting() }
        _ = lock.wait { s -> Bool? in s.contains(key) ? nil : (s.insert(key).inserted ? true : nil) }
        defer { lock.withLock { _ = $0.remove(key) } }
        return try body()
    }
}
