#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BerthErrors
import BerthSystem
import BerthWire
import Synchronization

/// An image known to the store: a name pointing at an unpacked root filesystem.
public struct ImageRecord: Sendable, Hashable {
    /// The normalized name, always with a tag: `busybox:latest`.
    public var name: String
    /// The content id: `sha256:` + the hex SHA-256 of the uploaded tarball's bytes.
    public var id: String
    /// The apparent size of the unpacked tree: regular files (hard links once) and symlinks.
    public var sizeBytes: UInt64
    /// When this content was first imported, in seconds since the epoch.
    public var createdUnix: Int64
    /// The absolute path of the unpacked root filesystem. Shared by every name and
    /// container using this id: treat it as read-only.
    public var rootfs: String
    /// Loaded and pulled images: the layers' diff ids, bottom first (empty for `image import`,
    /// whose tree is `rootfs`).
    public var layers: [String] = []
    /// Loaded and pulled images: the config's container defaults, platform and manifest digest.
    public var config = ImageConfig()
    public var digest = ""
    public var os = ""
    public var architecture = ""

    /// A record from its parts.
    public init(name: String, id: String, sizeBytes: UInt64, createdUnix: Int64, rootfs: String) {
        self.name = name
        self.id = id
        self.sizeBytes = sizeBytes
        self.createdUnix = createdUnix
        self.rootfs = rootfs
    }
}

/// The agent's images: tarballs unpacked into content-addressed directories, and names
/// pointing at them.
///
/// On disk, under `directory` (see docs/state.md):
/// ```
/// refs                      NAME=ID lines (busybox:latest=sha256:…), replaced atomically
/// by-id/<hex>/rootfs/       the unpacked tree of image sha256:<hex>
/// by-id/<hex>/meta          key=value lines: id, size, created
/// tmp/import-<random>/      an import in progress; removed on failure and at start-up
/// ```
/// An import unpacks into `tmp/`, then publishes in two atomic steps: `rename` of its
/// directory to `by-id/<hex>` (skipped when that content is already there), then a
/// rewrite of `refs`. A crash at any point leaves each name on its old or its new id.
/// An id directory is never removed by a re-import: containers may still use it.
///
/// Safe to use from any thread; imports run in parallel, only the `refs` update is
/// serialized.
public final class ImageStore: Sendable {
    /// The store's directory.
    public let directory: String

    struct Metadata: Sendable, Hashable {
        var sizeBytes: UInt64
        var createdUnix: Int64
        /// Layered images (loaded, pulled): diff ids bottom first; empty for a plain import.
        var layers: [String] = []
        var digest = ""
        var config = ImageConfig()
        var os = ""
        var architecture = ""
    }

    struct State: Sendable {
        /// Name → id.
        var refs: [String: String] = [:]
        /// Id → metadata, for every id some name points at.
        var images: [String: Metadata] = [:]
        /// Layers being unpacked or just unpacked for an image not yet published, and
        /// images being published: prune leaves them alone.
        var busy: [String: Int] = [:]
    }

    let state: Mutex<State>
    /// One download and unpack per layer at a time (concurrent pulls of one layer).
    let flights = Flights()

    private var refsPath: String { "\(directory)/refs" }
    private var temporaryDirectory: String { "\(directory)/tmp" }

    /// Opens the store at `directory`, creating it (mode 0700) if needed, removing
    /// imports a crash interrupted, and loading the existing images.
    public init(directory: String) throws {
        self.directory = directory
        try Files.makeDirectories(directory, mode: 0o700)
        try Files.makeDirectories("\(directory)/by-id", mode: 0o700)
        try Files.makeDirectories("\(directory)/tmp", mode: 0o700)
        for sub in ["layers", "blobs", "blobs/sha256", "downloads"] {
            try Files.makeDirectories("\(directory)/\(sub)", mode: 0o700)
        }
        for name in try Files.list("\(directory)/tmp") {
            try FileTree.remove("\(directory)/tmp/\(name)")
        }
        // Files.writeAtomically's temporary files, if a crash came before the rename.
        for name in try Files.list(directory) where name.hasPrefix("refs.tmp-") {
            try FileTree.remove("\(directory)/\(name)")
        }

        var loaded = State()
        if Files.exists("\(directory)/refs") {
            for (name, id) in Self.decodeRefs(try Files.readString("\(directory)/refs")) {
                guard let hex = Self.hex(of: id) else { continue }
                let meta = Self.readMetadata("\(directory)/by-id/\(hex)/meta")
                // A layered image is its meta (layers) and config; a plain one its rootfs.
                if let meta, !meta.layers.isEmpty {
                    guard meta.layers.allSatisfy({ Self.hex(of: $0).map { Files.isDirectory("\(directory)/layers/\($0)/diff") } ?? false })
                    else { continue }
                } else if !Files.isDirectory("\(directory)/by-id/\(hex)/rootfs") {
                    continue
                }
                loaded.refs[name] = id
                if loaded.images[id] == nil {
                    loaded.images[id] = meta ?? Metadata(sizeBytes: 0, createdUnix: 0)
                }
            }
        }
        state = Mutex(loaded)
    }

    // MARK: - Names

    /// Normalizes an image name the way docker does for local names: lowercase
    /// letters and digits in components joined by `.`, `_`, `__`, `-`… within a path
    /// component and `/` between them, then an optional `:TAG`
    /// (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`); no tag means `:latest`.
    /// `busybox` → `busybox:latest`. Anything else is INVALID_ARGUMENT.
    public static func normalize(_ name: String) throws -> String {
        func invalid(_ why: String) -> BerthError {
            BerthError(.invalidArgument, "invalid image name \(name.debugDescription): \(why); a name is lowercase letters and digits, in parts joined by \".\", \"_\", \"-\" or \"/\" (like busybox or library/my-app), optionally followed by :TAG (up to 128 letters, digits, \"_\", \".\" and \"-\", not starting with \".\" or \"-\")")
        }
        var bytes = Array(name.utf8)
        // `repo@sha256:<hex>`: a name pinned to a manifest digest (pulled by digest); kept as is.
        if let at = bytes.firstIndex(of: UInt8(ascii: "@")) {
            let digest = String(decoding: bytes[(at + 1)...], as: UTF8.self)
            guard hex(of: digest) != nil else { throw invalid("the digest after \"@\" is not sha256: and 64 lowercase hex digits") }
            // Any tag before the digest is dropped, as docker does: the digest decides.
            let repository = try normalize(String(decoding: bytes[..<at], as: UTF8.self))
            return repositoryPart(repository) + "@" + digest
        }
        // A first component with "." or ":" (or localhost) is a registry host[:port].
        var domain = ""
        if let slash = bytes.firstIndex(of: UInt8(ascii: "/")) {
            let first = bytes[..<slash]
            // (One that is not a valid host, like "a_b.c", stays a path component, as before.)
            if (first.contains(UInt8(ascii: ".")) || first.contains(UInt8(ascii: ":")) || first.elementsEqual("localhost".utf8)) && isDomain(first) {
                domain = String(decoding: first, as: UTF8.self) + "/"
                bytes = Array(bytes[(slash + 1)...])
                // Docker Hub's names are shown short, as docker does: docker.io/library/x is x.
                if domain == "docker.io/" || domain == "index.docker.io/" {
                    domain = ""
                    if bytes.starts(with: "library/".utf8) { bytes = Array(bytes.dropFirst("library/".utf8.count)) }
                }
            }
        }
        var repository = bytes[...]
        var tag: ArraySlice<UInt8> = Array("latest".utf8)[...]
        if let colon = bytes.firstIndex(of: UInt8(ascii: ":")) {
            repository = bytes[..<colon]
            tag = bytes[(colon + 1)...]
            guard let first = tag.first else { throw invalid("the tag after \":\" is empty") }
            guard tag.count <= 128 else { throw invalid("the tag is longer than 128 characters") }
            guard isAlphanumeric(first) || first == UInt8(ascii: "_") else {
                throw invalid("the tag must start with a letter, a digit or \"_\"")
            }
            for c in tag where !(isAlphanumeric(c) || c == UInt8(ascii: "_") || c == UInt8(ascii: ".") || c == UInt8(ascii: "-")) {
                throw invalid(c == UInt8(ascii: ":") ? "it has more than one \":\"" : "the tag has a character other than letters, digits, \"_\", \".\" and \"-\"")
            }
        }
        guard !repository.isEmpty else { throw invalid("it is empty") }
        guard repository.count <= 255 else { throw invalid("it is longer than 255 characters") }
        for component in repository.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
            guard isComponent(component) else {
                if component.contains(where: { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) {
                    throw invalid("it has uppercase letters")
                }
                throw invalid("\(String(decoding: component, as: UTF8.self).debugDescription) is not a valid part")
            }
        }
        return domain + String(decoding: repository, as: UTF8.self) + ":" + String(decoding: tag, as: UTF8.self)
    }

    /// `host:5000/a/b` of `host:5000/a/b:tag`: everything before the tag's colon.
    static func repositoryPart(_ normalized: String) -> String {
        let slash = normalized.lastIndex(of: "/") ?? normalized.startIndex
        if let colon = normalized[slash...].lastIndex(of: ":") { return String(normalized[..<colon]) }
        if let at = normalized.firstIndex(of: "@") { return String(normalized[..<at]) }
        return normalized
    }

    /// A registry host: letters, digits, "-" and "." (or an IPv4 address), then an optional ":PORT".
    private static func isDomain(_ s: ArraySlice<UInt8>) -> Bool {
        var host = s
        if let colon = s.firstIndex(of: UInt8(ascii: ":")) {
            host = s[..<colon]
            let port = s[(colon + 1)...]
            guard !port.isEmpty, port.count <= 5, port.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return false }
        }
        guard let first = host.first, isAlphanumeric(first), host.count <= 253 else { return false }
        return host.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }
    }

    private static func isLowerAlphanumeric(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
    }

    private static func isAlphanumeric(_ c: UInt8) -> Bool {
        isLowerAlphanumeric(c) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
    }

    /// docker's path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
    private static func isComponent(_ s: ArraySlice<UInt8>) -> Bool {
        var i = s.startIndex
        func alphanumerics() -> Bool {
            let start = i
            while i < s.endIndex && isLowerAlphanumeric(s[i]) { i += 1 }
            return i > start
        }
        guard alphanumerics() else { return false }
        while i < s.endIndex {
            let start = i
            while i < s.endIndex && !isLowerAlphanumeric(s[i]) { i += 1 }
            let separator = s[start..<i]
            let ok = separator.elementsEqual([UInt8(ascii: ".")]) || separator.elementsEqual([UInt8(ascii: "_")])
                || separator.elementsEqual([UInt8(ascii: "_"), UInt8(ascii: "_")])
                || separator.allSatisfy { $0 == UInt8(ascii: "-") }
            guard ok, alphanumerics() else { return false }
        }
        return true
    }

    // MARK: - Import

    /// Imports a tarball (plain or gzip/bzip2/xz/zstd-compressed) as `name`. `read`
    /// returns the next chunk of the upload, nil at its end; an error it throws
    /// propagates unchanged. The tree is unpacked safely (see `TarExtractor`) into a
    /// temporary directory and published only when complete: on any error nothing is
    /// left behind. Re-importing a name points it at the new content; importing content
    /// that is already in the store reuses its directory.
    public func importImage(name: String, read: () throws -> [UInt8]?) throws -> ImageRecord {
        let name = try Self.normalize(name)
        let work = "import-\(Host.randomHex(bytes: 8))"
        let workPath = "\(temporaryDirectory)/\(work)"
        try sys("image import: mkdir \(workPath)") { mkdir(workPath, 0o700) }

        let id: String
        let hex: String
        var metadata: Metadata
        do {
            try sys("image import: mkdir \(workPath)/rootfs") { mkdir("\(workPath)/rootfs", 0o755) }
            let tree = try TarExtractor.extract(into: "\(workPath)/rootfs", read: read)
            hex = Host.hex(tree.digest)
            id = "sha256:\(hex)"
            metadata = Metadata(sizeBytes: tree.sizeBytes, createdUnix: Host.now)
            try Files.writeAtomically("\(workPath)/meta", Self.encodeMetadata(metadata, id: id), mode: 0o600)

            let published = "\(directory)/by-id/\(hex)"
            if rename(workPath, published) == 0 {
                Self.syncDirectory("\(directory)/by-id")
            } else if errno == EEXIST || errno == ENOTEMPTY {
                // The same bytes were imported before (or just now, by another thread):
                // keep the published tree and its creation time.
                if let existing = state.withLock({ $0.images[id] }) ?? Self.readMetadata("\(published)/meta") {
                    metadata = existing
                }
                try FileTree.remove(workPath)
            } else {
                throw Errno.current.error("image import: rename \(workPath) to \(published)")
            }
        } catch {
            // Best effort: the import's own error matters more than a cleanup failure,
            // and a leftover is removed at the next start.
            try? FileTree.remove(workPath)
            throw error
        }

        let record = ImageRecord(name: name, id: id, sizeBytes: metadata.sizeBytes,
                                 createdUnix: metadata.createdUnix, rootfs: "\(directory)/by-id/\(hex)/rootfs")
        // The file is written with the lock held, so that the file and the memory agree
        // on which of two concurrent imports of one name came last.
        try state.withLock { (s: inout State) throws -> Void in
            var refs = s.refs
            refs[name] = id
            try Files.writeAtomically(refsPath, Self.encodeRefs(refs), mode: 0o600)
            s.refs = refs
            s.images[id] = metadata
        }
        return record
    }

    // MARK: - Queries

    /// Every image, sorted by name.
    public func list() -> [ImageRecord] {
        state.withLock { s in
            s.refs.compactMap { name, id in record(name: name, id: id, s) }
        }.sorted { $0.name < $1.name }
    }

    /// The image called `name` (normalized first, so `busybox` finds `busybox:latest`).
    /// INVALID_ARGUMENT for a malformed name, NOT_FOUND for an unknown one.
    public func resolve(_ name: String) throws -> ImageRecord {
        let name = try Self.normalize(name)
        let found = state.withLock { s in s.refs[name].flatMap { record(name: name, id: $0, s) } }
        guard let found else {
            throw BerthError(.notFound, "image \(name.debugDescription) not found; pull it with: berth image pull \(name), or import it with: berth image import \(name) FILE",
                             reason: "image_not_found")
        }
        return found
    }

    /// The number of image names.
    public var count: Int { state.withLock { $0.refs.count } }

    func record(name: String, id: String, _ s: State) -> ImageRecord? {
        guard let m = s.images[id] else { return nil }
        return record(name: name, id: id, m)
    }

    func record(name: String, id: String, _ m: Metadata) -> ImageRecord? {
        guard let hex = Self.hex(of: id) else { return nil }
        var r = ImageRecord(name: name, id: id, sizeBytes: m.sizeBytes, createdUnix: m.createdUnix,
                            rootfs: m.layers.isEmpty ? "\(directory)/by-id/\(hex)/rootfs" : "")
        r.layers = m.layers
        r.config = m.config
        r.digest = m.digest
        r.os = m.os
        r.architecture = m.architecture
        return r
    }

    // MARK: - Files

    /// The hex digest of a well-formed id (`sha256:` + 64 lowercase hex digits).
    static func hex(of id: String) -> String? {
        guard id.hasPrefix("sha256:") else { return nil }
        let hex = id.dropFirst("sha256:".count)
        guard hex.utf8.count == 64,
              hex.utf8.allSatisfy({ ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "f")) })
        else { return nil }
        return String(hex)
    }

    static func encodeRefs(_ refs: [String: String]) -> [UInt8] {
        var text = "# Berth image names: NAME=ID, one a line. Rewritten atomically; do not edit while berthd runs.\n"
        for (name, id) in refs.sorted(by: { $0.key < $1.key }) { text += "\(name)=\(id)\n" }
        return Array(text.utf8)
    }

    /// The refs file's pairs. Comments, malformed lines, names that are not in normal
    /// form and malformed ids are skipped, not fatal: one bad line must not hide
    /// every image.
    private static func decodeRefs(_ text: String) -> [(String, String)] {
        keyValues(text).filter { name, id in (try? normalize(name)) == name && hex(of: id) != nil }
    }

    static func encodeMetadata(_ m: Metadata, id: String) -> [UInt8] {
        var text = "id=\(id)\nsize=\(m.sizeBytes)\ncreated=\(m.createdUnix)\n"
        if !m.layers.isEmpty { text += "layers=\(m.layers.joined(separator: ","))\n" }
        if !m.digest.isEmpty { text += "digest=\(m.digest)\n" }
        return Array(text.utf8)
    }

    /// An id's metadata; nil when the file is missing. Unknown keys are ignored and
    /// unparsable values read as 0.
    static func readMetadata(_ path: String) -> Metadata? {
        guard let text = try? Files.readString(path) else { return nil }
        var m = Metadata(sizeBytes: 0, createdUnix: 0)
        for (key, value) in keyValues(text) {
            switch key {
            case "size": m.sizeBytes = UInt64(value) ?? 0
            case "created": m.createdUnix = Int64(value) ?? 0
            case "layers": m.layers = value.split(separator: ",").map(String.init)
            case "digest": m.digest = value
            default: continue
            }
        }
        // A layered image's config (defaults, platform) is read from its stored config blob.
        if !m.layers.isEmpty, let config = try? OCIImageConfig.parse(Array(Files.readString(Files.dirname(of: path) + "/config.json").utf8)) {
            m.config = config.config
            m.os = config.os
            m.architecture = config.architecture
        }
        return m
    }

    /// `key=value` lines; blank lines, `#` comments and lines without `=` are skipped.
    private static func keyValues(_ text: String) -> [(String, String)] {
        // Split bytes, not Characters: "\r\n" is one Character and would not split.
        text.utf8.split(separator: UInt8(ascii: "\n")).compactMap { line in
            let line = line.last == UInt8(ascii: "\r") ? line.dropLast() : line
            guard line.first != UInt8(ascii: "#"), let eq = line.firstIndex(of: UInt8(ascii: "=")) else { return nil }
            return (String(decoding: line[..<eq], as: UTF8.self), String(decoding: line[line.index(after: eq)...], as: UTF8.self))
        }
    }

    /// fsync of a directory, making a rename in it durable. Best effort: the rename
    /// has happened either way.
    static func syncDirectory(_ path: String) {
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { _ = fsync(fd); Glibc.close(fd) }
    }
}

extension ImageStore {
    /// The unpacked tree of image `id` ("sha256:<hex>"), whether or not a name still
    /// points at it: a container keeps the image it was created from even after its
    /// name is re-imported. NOT_FOUND when the tree is gone.
    public func rootfs(id: String) throws -> String {
        guard id.hasPrefix("sha256:") else { throw BerthError(.invalidArgument, "invalid image id \(id.debugDescription)") }
        let hex = id.dropFirst("sha256:".count)
        guard hex.utf8.count == 64, hex.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else {
            throw BerthError(.invalidArgument, "invalid image id \(id.debugDescription)")
        }
        let path = "\(directory)/by-id/\(hex)/rootfs"
        guard Files.isDirectory(path) else { throw BerthError(.notFound, "image \(id) is no longer in the store") }
        return path
    }
}
