// Tests of the image store and its tar extraction. They create files owned by other
// users, device nodes and setuid files, so they run as root (as the agent does); the
// tests that need root say so with `.enabled(if: isRoot)`.
#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
@testable import BerthRuntime
import BerthSystem
import Testing

private let isRoot = geteuid() == 0

// MARK: - Fixtures

/// A ustar writer, so that tests can craft entries `tar` refuses to write
/// (`../../x`, absolute names, hard links out of the tree).
struct TarBuilder {
    private(set) var bytes: [UInt8] = []

    struct Meta {
        var mode = 0o644
        var uid = 0
        var gid = 0
        var mtime = 1_600_000_000
    }

    mutating func file(_ name: String, _ content: String, _ meta: Meta = Meta()) {
        file(name, Array(content.utf8), meta)
    }

    mutating func file(_ name: String, _ content: [UInt8], _ meta: Meta = Meta()) {
        file(bytes: Array(name.utf8), content, meta)
    }

    /// A file whose name is raw bytes, not necessarily UTF-8.
    mutating func file(bytes name: [UInt8], _ content: [UInt8], _ meta: Meta = Meta()) {
        header(name, type: "0", size: content.count, meta)
        bytes += content
        bytes += [UInt8](repeating: 0, count: (512 - content.count % 512) % 512)
    }

    mutating func directory(_ name: String, _ meta: Meta = Meta(mode: 0o755)) {
        header(name, type: "5", meta)
    }

    mutating func symlink(_ name: String, to target: String, _ meta: Meta = Meta(mode: 0o777)) {
        header(name, type: "2", link: target, meta)
    }

    mutating func hardlink(_ name: String, to target: String) {
        header(name, type: "1", link: target, Meta())
    }

    mutating func device(_ name: String, block: Bool, major: Int, minor: Int, _ meta: Meta = Meta(mode: 0o666)) {
        header(name, type: block ? "4" : "3", major: major, minor: minor, meta)
    }

    mutating func fifo(_ name: String, _ meta: Meta = Meta()) {
        header(name, type: "6", meta)
    }

    /// The archive with its two zero end blocks.
    var archive: [UInt8] { bytes + [UInt8](repeating: 0, count: 1024) }

    private mutating func header(_ name: String, type: Character, size: Int = 0, link: String = "",
                                 major: Int = 0, minor: Int = 0, _ meta: Meta) {
        header(Array(name.utf8), type: type, size: size, link: link, major: major, minor: minor, meta)
    }

    private mutating func header(_ name: [UInt8], type: Character, size: Int = 0, link: String = "",
                                 major: Int = 0, minor: Int = 0, _ meta: Meta) {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: [UInt8], _ offset: Int, _ length: Int) {
            precondition(s.count <= length, "tar field too long: \(s.count) > \(length)")
            h.replaceSubrange(offset..<(offset + s.count), with: s)
        }
        func octal(_ v: Int, _ offset: Int, _ length: Int) {
            let digits = String(v, radix: 8)
            put(Array((String(repeating: "0", count: length - 1 - digits.count) + digits).utf8), offset, length - 1)
        }
        put(name, 0, 100)
        octal(meta.mode, 100, 8)
        octal(meta.uid, 108, 8)
        octal(meta.gid, 116, 8)
        octal(size, 124, 12)
        octal(meta.mtime, 136, 12)
        put([UInt8](repeating: UInt8(ascii: " "), count: 8), 148, 8)
        h[156] = UInt8(ascii: type.unicodeScalars.first ?? "0")
        put(Array(link.utf8), 157, 100)
        put(Array("ustar\0".utf8), 257, 6)
        put(Array("00".utf8), 263, 2)
        octal(major, 329, 8)
        octal(minor, 337, 8)
        let sum = h.reduce(0) { $0 + Int($1) }
        octal(sum, 148, 7)  // six digits and a NUL; the eighth byte stays a space
        bytes += h
    }
}

/// Feeds bytes in chunks of varying sizes, as an upload would.
final class ChunkReader {
    private let data: [UInt8]
    private var offset = 0
    private var turn = 0
    private let sizes: [Int]
    private(set) var calls = 0
    /// After this many chunks, throw instead of returning more.
    var failAfter: Int?

    init(_ data: [UInt8], sizes: [Int] = [7, 1000, 512, 4096, 65536, 1]) {
        self.data = data
        self.sizes = sizes
    }

    func next() throws -> [UInt8]? {
        calls += 1
        if let failAfter, calls > failAfter { throw UploadCancelled() }
        guard offset < data.count else { return nil }
        let n = min(sizes[turn % sizes.count], data.count - offset)
        turn += 1
        defer { offset += n }
        return Array(data[offset..<(offset + n)])
    }
}

struct UploadCancelled: Error, Equatable {}

/// A fresh directory under /tmp, removed after `body` whether it passes or fails (with
/// `FileTree`, which handles names that are not UTF-8, unlike `Files.removeTree`).
func makeTemporaryDirectory() throws -> String {
    var template = Array("/tmp/berth-images-XXXXXX".utf8CString)
    guard mkdtemp(&template) != nil else { throw Errno.current.error("mkdtemp") }
    return String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func withTemporaryDirectory(_ body: (String) throws -> Void) throws {
    let dir = try makeTemporaryDirectory()
    defer { try? FileTree.remove(dir) }
    try body(dir)
}

func withTemporaryDirectory(_ body: (String) async throws -> Void) async throws {
    let dir = try makeTemporaryDirectory()
    defer { try? FileTree.remove(dir) }
    try await body(dir)
}

/// Runs a program (posix_spawn) and returns its exit status.
@discardableResult
func run(_ argv: [String]) throws -> Int32 {
    var pid: pid_t = 0
    var args: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    var env: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), nil]
    defer { for p in args + env { free(p) } }
    // stdout to /dev/null (make-test-image.sh prints its output path); stderr stays.
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    let rc = posix_spawn(&pid, argv[0], &actions, nil, &args, &env)
    guard rc == 0 else { throw Errno(rawValue: rc).error("posix_spawn \(argv[0])") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
}

func lstatOf(_ path: String) -> stat? {
    var st = stat()
    return lstat(path, &st) == 0 ? st : nil
}

/// The permission bits (with setuid, setgid and sticky) of `path`, not following a symlink.
func modeOf(_ path: String) -> mode_t? {
    lstatOf(path).map { $0.st_mode & 0o7777 }
}

func readLink(_ path: String) -> String? {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink(path, &buf, buf.count - 1)
    guard n >= 0 else { return nil }
    return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func importBytes(_ store: ImageStore, _ name: String, _ bytes: [UInt8]) throws -> ImageRecord {
    let reader = ChunkReader(bytes)
    return try store.importImage(name: name, read: reader.next)
}

func idOf(_ bytes: [UInt8]) throws -> String {
    "sha256:" + Host.hex(try SHA256.digest(bytes))
}

/// The store's directory holds its skeleton and nothing from a failed import.
func expectPristine(_ store: ImageStore, sourceLocation: SourceLocation = #_sourceLocation) throws {
    #expect(store.count == 0, sourceLocation: sourceLocation)
    #expect(try Files.list(store.directory).sorted() == ["blobs", "by-id", "downloads", "layers", "tmp"], sourceLocation: sourceLocation)
    #expect(try Files.list("\(store.directory)/layers") == [], sourceLocation: sourceLocation)
    #expect(try Files.list("\(store.directory)/by-id") == [], sourceLocation: sourceLocation)
    #expect(try Files.list("\(store.directory)/tmp") == [], sourceLocation: sourceLocation)
}

func expectError(_ code: BerthError.Code, containing fragment: String, sourceLocation: SourceLocation = #_sourceLocation,
                 _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected \(code) containing \(fragment.debugDescription), but nothing was thrown", sourceLocation: sourceLocation)
    } catch let e as BerthError {
        #expect(e.code == code, "\(e)", sourceLocation: sourceLocation)
        #expect(e.message.contains(fragment), "\(e.message)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected a BerthError, got \(error)", sourceLocation: sourceLocation)
    }
}

// MARK: - Tests

@Suite struct ImageStoreTests {
    @Test func sha256KnownAnswer() throws {
        #expect(Host.hex(try SHA256.digest(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Host.hex(try SHA256.digest([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func normalizesNames() throws {
        #expect(try ImageStore.normalize("busybox") == "busybox:latest")
        #expect(try ImageStore.normalize("busybox:1.36") == "busybox:1.36")
        #expect(try ImageStore.normalize("library/my-app:V1_x.2-rc") == "library/my-app:V1_x.2-rc")
        #expect(try ImageStore.normalize("a.b_c__d-e---f/g0") == "a.b_c__d-e---f/g0:latest")
        #expect(try ImageStore.normalize("x:_t") == "x:_t")
        #expect(try ImageStore.normalize("x:" + String(repeating: "t", count: 128)) == "x:" + String(repeating: "t", count: 128))

        let bad = ["Bad Name", "Busybox", "", ":tag", "a:", "a::b", "a:b:c", "-a", "a-", "a..b", "a___b", "a/", "/a",
                   "a//b", "a:.x", "a:-x", "a:b c", "a@sha256:00", "x:" + String(repeating: "t", count: 129),
                   String(repeating: "a", count: 256), "café"]
        for name in bad {
            expectError(.invalidArgument, containing: "invalid image name \(name.debugDescription): ") {
                _ = try ImageStore.normalize(name)
            }
        }
        expectError(.invalidArgument, containing: "lowercase letters and digits") { _ = try ImageStore.normalize("Bad Name") }
    }

    @Test(.enabled(if: isRoot, "creates files owned by other users and device nodes"))
    func importKeepsEntriesAndAttributes() throws {
        try withTemporaryDirectory { tmp in
            var tar = TarBuilder()
            tar.directory("./", .init(mode: 0o755, mtime: 1_500_000_000))
            tar.directory("./bin/", .init(mode: 0o755, mtime: 1_400_000_000))
            tar.file("./bin/tool", "hello", .init(mode: 0o4755, uid: 1234, gid: 5678, mtime: 1_000_000_000))
            tar.symlink("bin/link", to: "tool", .init(mode: 0o777, uid: 1234, gid: 5678, mtime: 1_100_000_000))
            tar.symlink("bin/sh", to: "/bin/busybox")
            tar.hardlink("bin/hard", to: "./bin/tool")
            tar.directory("shared/", .init(mode: 0o1777, mtime: 1_200_000_000))
            tar.directory("private/", .init(mode: 0o700, uid: 1234, gid: 5678, mtime: 1_300_000_000))
            tar.file("private/secret", "s3cret", .init(mode: 0o600, uid: 1234, gid: 5678))
            tar.directory("ro/", .init(mode: 0o555, mtime: 1_250_000_000))
            tar.file("ro/file", "x", .init(mode: 0o444))
            tar.file("implicit/parent/file", "i", .init(mode: 0o2750, uid: 0, gid: 5678))
            tar.device("dev/null", block: false, major: 1, minor: 3)
            tar.device("dev/sda", block: true, major: 8, minor: 0, .init(mode: 0o660, gid: 6))
            tar.fifo("run/fifo", .init(mode: 0o620))
            let bytes = tar.archive

            let store = try ImageStore(directory: "\(tmp)/store")
            let image = try importBytes(store, "test", bytes)
            #expect(image.name == "test:latest")
            #expect(image.id == (try idOf(bytes)))
            #expect(image.rootfs == "\(tmp)/store/by-id/\(image.id.dropFirst(7))/rootfs")
            // tool (5, its hard link counted once) + secret 6 + ro/file 1 + implicit 1 + symlinks 4 + 12.
            #expect(image.sizeBytes == 29)
            #expect(image.createdUnix > 1_700_000_000)
            let r = image.rootfs

            let root = try #require(lstatOf(r))
            #expect(root.st_mode & 0o7777 == 0o755)
            #expect(root.st_mtim.tv_sec == 1_500_000_000)
            #expect(lstatOf("\(r)/bin")?.st_mtim.tv_sec == 1_400_000_000)

            let tool = try #require(lstatOf("\(r)/bin/tool"))
            #expect(tool.st_mode & S_IFMT == S_IFREG)
            #expect(tool.st_mode & 0o7777 == 0o4755)
            #expect(tool.st_uid == 1234 && tool.st_gid == 5678)
            #expect(tool.st_mtim.tv_sec == 1_000_000_000)
            #expect(tool.st_nlink == 2)
            #expect(try Files.readString("\(r)/bin/tool") == "hello")
            let hard = try #require(lstatOf("\(r)/bin/hard"))
            #expect(hard.st_ino == tool.st_ino)

            let link = try #require(lstatOf("\(r)/bin/link"))
            #expect(link.st_mode & S_IFMT == S_IFLNK)
            #expect(link.st_uid == 1234 && link.st_gid == 5678)
            #expect(link.st_mtim.tv_sec == 1_100_000_000)
            #expect(readLink("\(r)/bin/link") == "tool")
            #expect(readLink("\(r)/bin/sh") == "/bin/busybox")

            let shared = try #require(lstatOf("\(r)/shared"))
            #expect(shared.st_mode & S_IFMT == S_IFDIR && shared.st_mode & 0o7777 == 0o1777)
            #expect(shared.st_mtim.tv_sec == 1_200_000_000)
            let priv = try #require(lstatOf("\(r)/private"))
            #expect(priv.st_mode & 0o7777 == 0o700 && priv.st_uid == 1234 && priv.st_gid == 5678)
            #expect(priv.st_mtim.tv_sec == 1_300_000_000, "set after its child was created")
            #expect(try Files.readString("\(r)/private/secret") == "s3cret")
            #expect(modeOf("\(r)/ro") == 0o555)
            #expect(lstatOf("\(r)/ro")?.st_mtim.tv_sec == 1_250_000_000)
            #expect(try Files.readString("\(r)/ro/file") == "x")

            let implicit = try #require(lstatOf("\(r)/implicit/parent"))
            #expect(implicit.st_mode & 0o7777 == 0o755 && implicit.st_uid == 0)
            let setgid = try #require(lstatOf("\(r)/implicit/parent/file"))
            #expect(setgid.st_mode & 0o7777 == 0o2750 && setgid.st_gid == 5678)

            let null = try #require(lstatOf("\(r)/dev/null"))
            #expect(null.st_mode & S_IFMT == S_IFCHR && null.st_rdev == 0x103 && null.st_mode & 0o7777 == 0o666)
            let sda = try #require(lstatOf("\(r)/dev/sda"))
            #expect(sda.st_mode & S_IFMT == S_IFBLK && sda.st_rdev == 0x800 && sda.st_gid == 6 && sda.st_mode & 0o7777 == 0o660)
            let fifo = try #require(lstatOf("\(r)/run/fifo"))
            #expect(fifo.st_mode & S_IFMT == S_IFIFO && fifo.st_mode & 0o7777 == 0o620)

            #expect(try Files.list("\(tmp)/store/tmp") == [])
            #expect(try Files.list("\(tmp)/store/by-id/\(image.id.dropFirst(7))") == ["meta", "rootfs"])
        }
    }

    @Test func namesAreBytesNotStrings() throws {
        try withTemporaryDirectory { tmp in
            let latin1: [UInt8] = Array("caf".utf8) + [0xE9]  // "café" in Latin-1: not UTF-8
            var tar = TarBuilder()
            tar.file(bytes: latin1, Array("latin1".utf8))
            tar.file("ünïcode", "utf8")
            let store = try ImageStore(directory: "\(tmp)/store")
            let image = try importBytes(store, "bytes", tar.archive)
            let fd = try FileDescriptor.open(image.rootfs, O_RDONLY | O_DIRECTORY)
            defer { fd.close() }
            #expect(Set(try FileTree.names(in: fd.rawValue)) == [latin1, Array("ünïcode".utf8)])
            #expect(image.sizeBytes == 10)
        }
    }

    @Test func laterEntriesWinWithoutWritingThroughLinks() throws {
        try withTemporaryDirectory { tmp in
            let outside = "\(tmp)/outside"
            try sys("mkdir") { mkdir(outside, 0o751) }
            try Files.writeAtomically("\(outside)/file", Array("host".utf8))

            var tar = TarBuilder()
            tar.file("a", "1")
            tar.file("a", "2")
            tar.file("b", "file")
            tar.directory("b/")
            tar.file("b/child", "c")
            tar.directory("c/")
            tar.file("c/child", "c")
            tar.file("c", "now a file")
            tar.file("x", "old")
            tar.hardlink("h", to: "x")
            tar.file("x", "new")
            // A directory later replaced by a symlink out of the root: its deferred
            // mode must not be applied through the symlink.
            tar.directory("d/", .init(mode: 0o700, uid: 1234))
            tar.symlink("d", to: outside)
            // A symlink out of the root replaced by a file: the host file is untouched.
            tar.symlink("s", to: "\(outside)/file")
            tar.file("s", "inside")

            let store = try ImageStore(directory: "\(tmp)/store")
            let r = try importBytes(store, "later", tar.archive).rootfs
            #expect(try Files.readString("\(r)/a") == "2")
            #expect(try Files.readString("\(r)/b/child") == "c")
            #expect(try Files.readString("\(r)/c") == "now a file")
            #expect(try Files.readString("\(r)/x") == "new")
            #expect(try Files.readString("\(r)/h") == "old")
            #expect(readLink("\(r)/d") == outside)
            #expect(try Files.readString("\(r)/s") == "inside")
            #expect(modeOf(outside) == 0o751)
            #expect(lstatOf(outside)?.st_uid == geteuid())
            #expect(try Files.readString("\(outside)/file") == "host")
            #expect(try Files.list(outside) == ["file"])
        }
    }

    /// Tarballs that try to write outside the image root.
    enum Malicious: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case dotDot, absolute, absoluteSymlinkParent, relativeSymlinkParent, nestedSymlinkParent
        case directoryUnderSymlink, hardLinkDotDot, hardLinkAbsolute, hardLinkThroughSymlink

        var testDescription: String { rawValue }

        /// The tarball, for a store at `<tmp>/store` and a host directory `<tmp>/outside`.
        /// The image root is `<tmp>/store/tmp/import-*/rootfs`: four ".." reach `<tmp>`.
        func tarball(_ tmp: String) -> (bytes: [UInt8], message: String) {
            var t = TarBuilder()
            t.file("ok", "fine")
            let message: String
            switch self {
            case .dotDot:
                t.file("../../../../outside/x", "evil")
                message = #"tar entry "../../../../outside/x" escapes the image root"#
            case .absolute:
                t.file("\(tmp)/outside/abs", "evil")
                message = #"tar entry "\#(tmp)/outside/abs" is an absolute path"#
            case .absoluteSymlinkParent:
                t.symlink("link", to: "\(tmp)/outside")
                t.file("link/passwd", "evil")
                message = #"tar entry "link/passwd" resolves through a symlink outside the image root"#
            case .relativeSymlinkParent:
                t.symlink("link", to: "../../../../outside")
                t.file("link/x", "evil")
                message = #"tar entry "link/x" resolves through a symlink outside the image root"#
            case .nestedSymlinkParent:
                t.directory("a/")
                t.symlink("a/up", to: "../../../../../outside")
                t.file("a/up/x", "evil")
                message = #"tar entry "a/up/x" resolves through a symlink outside the image root"#
            case .directoryUnderSymlink:
                t.symlink("link", to: "\(tmp)/outside")
                t.directory("link/newdir/")
                message = #"tar entry "link/newdir/" resolves through a symlink outside the image root"#
            case .hardLinkDotDot:
                t.hardlink("h", to: "../../../../outside/secret")
                message = #"tar entry "h" is a hard link to "../../../../outside/secret", which escapes the image root"#
            case .hardLinkAbsolute:
                t.hardlink("h", to: "\(tmp)/outside/secret")
                message = #"tar entry "h" is a hard link to "\#(tmp)/outside/secret", which escapes the image root"#
            case .hardLinkThroughSymlink:
                t.symlink("link", to: "\(tmp)/outside")
                t.hardlink("h", to: "link/secret")
                message = #"tar entry "h" is a hard link to "link/secret", which resolves through a symlink outside the image root"#
            }
            t.file("after", "never reached")
            return (t.archive, message)
        }
    }

    @Test(arguments: Malicious.allCases)
    func rejectsEntriesEscapingTheRoot(_ attack: Malicious) throws {
        try withTemporaryDirectory { tmp in
            let outside = "\(tmp)/outside"
            try sys("mkdir") { mkdir(outside, 0o755) }
            try Files.writeAtomically("\(outside)/secret", Array("host secret".utf8))
            let store = try ImageStore(directory: "\(tmp)/store")
            let (bytes, message) = attack.tarball(tmp)

            expectError(.invalidArgument, containing: message) { _ = try importBytes(store, "evil", bytes) }

            #expect(try Files.list(outside) == ["secret"])
            #expect(lstatOf("\(outside)/secret")?.st_nlink == 1)
            #expect(try Files.readString("\(outside)/secret") == "host secret")
            #expect(try Files.list(tmp) == ["outside", "store"])
            try expectPristine(store)
            expectError(.notFound, containing: "image \"evil:latest\" not found") { _ = try store.resolve("evil") }
        }
    }

    @Test func rejectsTruncatedAndCorruptTarballs() throws {
        try withTemporaryDirectory { tmp in
            var tar = TarBuilder()
            tar.directory("d/")
            tar.file("d/big", [UInt8](repeating: 0x41, count: 10_000))
            tar.file("d/after", "x")
            let whole = tar.archive
            try Files.writeAtomically("\(tmp)/t.tar", whole)
            #expect(try run(["/usr/bin/gzip", "-n", "\(tmp)/t.tar"]) == 0)
            let gz = try Files.read("\(tmp)/t.tar.gz")

            let store = try ImageStore(directory: "\(tmp)/store")
            let cases: [(String, [UInt8], String)] = [
                ("cut in a file's data", Array(whole[0..<(1024 + 5000)]), "image tarball is truncated or corrupt: "),
                ("cut in a header", Array(whole[0..<(512 + 200)]), "image tarball is truncated or corrupt: "),
                ("cut gzip", Array(gz[0..<(gz.count / 2)]), "image tarball is truncated or corrupt: "),
                ("gzip with a bad byte", gz.enumerated().map { $0.offset == 20 ? $0.element ^ 0xff : $0.element },
                 "image tarball is truncated or corrupt: "),
                ("not a tarball", Array(String(repeating: "this is not a tar file\n", count: 100).utf8),
                 "image tarball is truncated or corrupt: "),
                ("no entries", [UInt8](repeating: 0, count: 10240), "image tarball has no entries"),
                ("empty upload", [], "image tarball"),
            ]
            for (what, bytes, fragment) in cases {
                expectError(.invalidArgument, containing: fragment) {
                    _ = try importBytes(store, "broken", bytes)
                }
                try expectPristine(store)
                _ = what
            }
        }
    }

    @Test(arguments: [1, 3])
    func readErrorPropagatesAndLeavesNothing(failAfter: Int) throws {
        try withTemporaryDirectory { tmp in
            var tar = TarBuilder()
            tar.directory("d/")
            tar.file("d/big", [UInt8](repeating: 0x42, count: 100_000))
            let store = try ImageStore(directory: "\(tmp)/store")
            let reader = ChunkReader(tar.archive, sizes: [4096])
            reader.failAfter = failAfter
            #expect(throws: UploadCancelled()) { _ = try store.importImage(name: "cancelled", read: reader.next) }
            try expectPristine(store)
        }
    }

    /// libarchive stops reading at the end blocks; the rest of the upload is still read
    /// (it is part of the id), and an error there fails the import too.
    @Test func readErrorAfterTheEndBlocksPropagates() throws {
        try withTemporaryDirectory { tmp in
            var tar = TarBuilder()
            tar.file("f", "x")
            let bytes = tar.archive
            let store = try ImageStore(directory: "\(tmp)/store")
            let reader = ChunkReader(bytes + [UInt8](repeating: 0, count: 10_240), sizes: [bytes.count + 512, 512])
            reader.failAfter = 3
            #expect(throws: UploadCancelled()) { _ = try store.importImage(name: "cancelled", read: reader.next) }
            try expectPristine(store)

            // The same padded upload, read to its end, imports; its id covers the padding.
            let padded = bytes + [UInt8](repeating: 0, count: 10_240)
            let image = try store.importImage(name: "padded", read: ChunkReader(padded, sizes: [bytes.count + 512, 512]).next)
            #expect(image.id == (try idOf(padded)))
        }
    }

    @Test func reimportMovesTheNameAndKeepsOldContent() throws {
        try withTemporaryDirectory { tmp in
            var a = TarBuilder(), b = TarBuilder()
            a.file("version", "1")
            b.file("version", "2")
            let store = try ImageStore(directory: "\(tmp)/store")
            let first = try importBytes(store, "app", a.archive)
            let second = try importBytes(store, "app:latest", b.archive)
            #expect(first.id != second.id)
            #expect(try store.resolve("app") == second)
            #expect(try Files.readString("\(store.resolve("app").rootfs)/version") == "2")
            #expect(try Files.readString("\(first.rootfs)/version") == "1", "the old id stays for containers using it")
            #expect(store.count == 1)

            // The same bytes under another name share the id and its directory.
            let again = try importBytes(store, "app:v1", a.archive)
            #expect(again.id == first.id && again.rootfs == first.rootfs && again.createdUnix == first.createdUnix)
            #expect(try Files.list("\(tmp)/store/by-id").count == 2)
            #expect(try Files.list("\(tmp)/store/tmp") == [])
            #expect(store.list().map(\.name) == ["app:latest", "app:v1"])
        }
    }

    @Test func importsGzipTarballs() throws {
        try withTemporaryDirectory { tmp in
            var tar = TarBuilder()
            tar.directory("etc/")
            tar.file("etc/hostname", "gz\n")
            try Files.writeAtomically("\(tmp)/image.tar", tar.archive)
            #expect(try run(["/usr/bin/gzip", "-n", "\(tmp)/image.tar"]) == 0)
            let gz = try Files.read("\(tmp)/image.tar.gz")

            let store = try ImageStore(directory: "\(tmp)/store")
            let image = try importBytes(store, "zipped", gz)
            #expect(image.id == (try idOf(gz)), "the id covers the bytes as uploaded")
            #expect(try Files.readString("\(image.rootfs)/etc/hostname") == "gz\n")
        }
    }

    @Test func listAndResolve() throws {
        try withTemporaryDirectory { tmp in
            let store = try ImageStore(directory: "\(tmp)/store")
            #expect(store.list() == [])
            #expect(store.count == 0)
            do {
                _ = try store.resolve("busybox")
                Issue.record("resolved a missing image")
            } catch let e as BerthError {
                #expect(e.code == .notFound)
                #expect(e.message == #"image "busybox:latest" not found; pull it with: berth image pull busybox:latest, or import it with: berth image import busybox:latest FILE"#)
            }
            expectError(.invalidArgument, containing: "invalid image name \"Bad Name\"") { _ = try store.resolve("Bad Name") }

            for (i, name) in ["zeta", "alpha:v1", "alpha", "library/mid"].enumerated() {
                var t = TarBuilder()
                t.file("n", "\(i)")
                _ = try importBytes(store, name, t.archive)
            }
            #expect(store.list().map(\.name) == ["alpha:latest", "alpha:v1", "library/mid:latest", "zeta:latest"])
            #expect(store.count == 4)
            let alpha = try store.resolve("alpha")
            #expect(alpha.name == "alpha:latest")
            #expect(try Files.readString("\(alpha.rootfs)/n") == "2")
            #expect(try store.resolve("alpha:v1").id != alpha.id)
        }
    }

    @Test func reopeningLoadsImagesAndCleansUp() throws {
        try withTemporaryDirectory { tmp in
            let dir = "\(tmp)/store"
            var t = TarBuilder()
            t.file("f", "persisted")
            let image = try importBytes(try ImageStore(directory: dir), "kept:1", t.archive)

            // What a crash can leave behind, and lines a person may have mangled.
            try Files.makeDirectories("\(dir)/tmp/import-deadbeef/rootfs/a/b")
            try Files.writeAtomically("\(dir)/tmp/import-deadbeef/rootfs/a/b/c", [1, 2, 3])
            try sys("chmod") { chmod("\(dir)/tmp/import-deadbeef/rootfs/a", 0o500) }
            try Files.writeAtomically("\(dir)/refs.tmp-1-2", Array("half".utf8))
            let missing = String(repeating: "0", count: 64)
            var refs = try Files.readString("\(dir)/refs")
            refs += "garbage\n\nBad Name=\(image.id)\nshort:latest=sha256:abc\ngone:latest=sha256:\(missing)\nalias:latest=\(image.id)\r\n"
            try Files.writeAtomically("\(dir)/refs", Array(refs.utf8))

            let reopened = try ImageStore(directory: dir)
            #expect(reopened.list() == [
                ImageRecord(name: "alias:latest", id: image.id, sizeBytes: image.sizeBytes, createdUnix: image.createdUnix, rootfs: image.rootfs),
                image,
            ])
            #expect(try Files.list("\(dir)/tmp") == [])
            #expect(try Files.list(dir).sorted() == ["blobs", "by-id", "downloads", "layers", "refs", "tmp"])

            // A damaged meta file costs the size and time, not the image.
            try Files.writeAtomically("\(dir)/by-id/\(image.id.dropFirst(7))/meta", Array("size=lots\ncreated".utf8))
            let damaged = try ImageStore(directory: dir).resolve("kept:1")
            #expect(damaged.id == image.id && damaged.sizeBytes == 0 && damaged.createdUnix == 0)
        }
    }

    @Test func concurrentImports() async throws {
        try await withTemporaryDirectory { tmp in
            let store = try ImageStore(directory: "\(tmp)/store")
            var same = TarBuilder()
            same.file("same", "content")
            let sameBytes = same.archive
            try await withThrowingTaskGroup(of: ImageRecord.self) { group in
                for i in 0..<8 {
                    group.addTask {
                        var t = TarBuilder()
                        t.file("i", "\(i)")
                        t.file("pad", [UInt8](repeating: UInt8(i), count: 50_000))
                        return try importBytes(store, "distinct\(i)", t.archive)
                    }
                    group.addTask { try importBytes(store, "same\(i)", sameBytes) }
                }
                for try await _ in group {}
            }
            #expect(store.count == 16)
            #expect(Set(store.list().filter { $0.name.hasPrefix("same") }.map(\.id)) == [try idOf(sameBytes)])
            #expect(try Files.list("\(tmp)/store/by-id").count == 9)
            #expect(try Files.list("\(tmp)/store/tmp") == [])
            #expect(try ImageStore(directory: "\(tmp)/store").list() == store.list())
        }
    }

    @Test(.enabled(if: isRoot, "may apt-get install busybox-static"))
    func testImageScriptOutputImports() throws {
        try withTemporaryDirectory { tmp in
            let repo = String(#filePath).split(separator: "/", omittingEmptySubsequences: false).dropLast(3).joined(separator: "/")
            #expect(try run(["/bin/bash", "\(repo)/deploy/make-test-image.sh", "\(tmp)/busybox.tar"]) == 0)
            let store = try ImageStore(directory: "\(tmp)/store")
            let bytes = try Files.read("\(tmp)/busybox.tar")
            let image = try store.importImage(name: "busybox", read: ChunkReader(bytes, sizes: [65536]).next)
            let r = image.rootfs
            #expect(readLink("\(r)/bin/sh") == "busybox")
            #expect(readLink("\(r)/bin/ls") == "busybox")
            let busybox = try #require(lstatOf("\(r)/bin/busybox"))
            #expect(busybox.st_mode & S_IFMT == S_IFREG && busybox.st_mode & 0o7777 == 0o755 && busybox.st_uid == 0)
            #expect(modeOf("\(r)/tmp") == 0o1777)
            #expect(modeOf("\(r)/root") == 0o700)
            #expect(lstatOf("\(r)/bin/busybox")?.st_mtim.tv_sec == 0)
            #expect(try Files.readString("\(r)/etc/passwd").hasPrefix("root:x:0:0:root:/root:/bin/sh\n"))
            for dir in ["proc", "sys", "dev", "var", "etc"] { #expect(Files.isDirectory("\(r)/\(dir)"), "\(dir)") }
            #expect(image.sizeBytes > 1_000_000)
        }
    }
}
