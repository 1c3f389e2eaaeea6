#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem

/// A container's root file system: a copy-on-write overlay over an image, or a host
/// directory used as it is (`--rootfs`).
enum Rootfs {
    /// Mounts `overlay` at `target` with the image's `lower` dir and the container's
    /// `upper` and `work` dirs (created here when missing).
    static func mountOverlay(lower: String, upper: String, work: String, target: String) throws {
        try mountOverlay(lowers: [lower], upper: upper, work: work, target: target)
    }

    /// The same over several lower dirs, top first: an image's layers.
    static func mountOverlay(lowers: [String], upper: String, work: String, target: String) throws {
        for path in lowers + [upper, work, target] where path.contains(where: { $0 == "," || $0 == ":" || $0 == "\\" }) {
            // overlayfs splits its options on these characters.
            throw BerthError(.invalidArgument, "path \(path) contains a character overlayfs cannot take (, : \\)")
        }
        try Files.makeDirectories(upper)
        try Files.makeDirectories(work)
        try Files.makeDirectories(target)
        if isMountPoint(target) { return }
        let options = "lowerdir=\(lowers.joined(separator: ":")),upperdir=\(upper),workdir=\(work)"
        // mount(2) takes one page of options: about 40 layers under /var/lib/berth.
        guard options.utf8.count < 4000 else {
            throw BerthError(.invalidArgument, "the image has \(lowers.count) layers, more than one overlayfs mount takes with these paths; flatten the image (fewer layers)")
        }
        try sys("mount overlay at \(target)") { mount("overlay", target, "overlay", UInt(MS_NODEV), options) }
    }

    /// Unmounts `target` (lazily, so a process still holding it does not block us) and
    /// removes the mount point.
    static func unmount(_ target: String) {
        while isMountPoint(target) {
            if umount2(target, Int32(MNT_DETACH)) != 0 { break }
        }
        _ = rmdir(target)
    }

    /// Whether `path` is the root of a mount (its device differs from its parent's, or
    /// it appears in /proc/self/mountinfo for bind mounts on the same device).
    static func isMountPoint(_ path: String) -> Bool {
        guard let text = try? Files.readString("/proc/self/mountinfo") else { return false }
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 5)
            if fields.count > 4 && unescapeMountPath(fields[4]) == path { return true }
        }
        return false
    }

    /// mountinfo escapes space, tab, newline and backslash as octal (\040 …).
    static func unescapeMountPath(_ s: Substring) -> String {
        guard s.contains("\\") else { return String(s) }
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "\\"), i + 3 < b.count,
               let v = UInt8(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(v); i += 4
            } else {
                out.append(b[i]); i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
