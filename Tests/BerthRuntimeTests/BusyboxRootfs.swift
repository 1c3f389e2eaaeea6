#if canImport(Glibc)
import Glibc
#endif
import BerthSystem

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
