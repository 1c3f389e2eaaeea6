#if canImport(Glibc)
import Glibc
#endif
import BerthSystem
import Testing

/// Fills `root` with a minimal root file system for tests: /bin/busybox (Debian's
/// busybox-static) and a link per applet. `root` is made 0755: it becomes the
/// container's "/", which a non-root user must be able to search (mkdtemp makes 0700).
func makeBusyboxRootfs(at root: String, applets: [String]) throws {
    try sys("chmod \(root)") { chmod(root, 0o755) }
    try Files.makeDirectories("\(root)/bin")
    let bytes = try Files.read("/bin/busybox")
    let fd = try FileDescriptor.open("\(root)/bin/busybox", O_WRONLY | O_CREAT | O_EXCL, mode: 0o755)
    defer { fd.close() }
    try fd.writeAll(bytes)
    for applet in applets {
        try sys("symlink \(applet)") { symlink("busybox", "\(root)/bin/\(applet)") }
    }
}

/// A throwaway root file system: busybox and applet links in a temp dir.
/// `remove()` deletes it and checks that no mount of it is visible on the host.
struct TestRootfs {
    let path: String

    init(prefix: String, applets: [String]) throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw Errno.current.error("mkdtemp") }
        path = String(cString: made)
        do {
            try makeBusyboxRootfs(at: path, applets: applets)
        } catch {
            try? Files.removeTree(path)
            throw error
        }
    }

    static func copy(_ from: String, to: String, mode: mode_t) throws {
        let bytes = try Files.read(from)
        let fd = try FileDescriptor.open(to, O_WRONLY | O_CREAT | O_EXCL, mode: mode)
        defer { fd.close() }
        try fd.writeAll(bytes)
    }

    /// rm -rf; it must work because every mount was made in the container's own mount
    /// namespace, which is gone once its last process is.
    func remove() {
        #expect(throws: Never.self) { try Files.removeTree(path) }
        #expect(!Files.exists(path), "\(path) left behind")
        let mounts = (try? Files.readString("/proc/self/mounts")) ?? ""
        #expect(!mounts.contains(path), "a mount of \(path) is visible on the host")
    }
}
