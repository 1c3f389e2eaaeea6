#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import BerthWire

/// An image config's Entrypoint, Cmd, Env, WorkingDir, User and StopSignal as a
/// container's defaults, the way docker applies them: the run's command replaces Cmd
/// (Entrypoint stays, unless --entrypoint replaces it, which also drops Cmd); the run's
/// -e entries override the image's of the same name; -w, -u and --stop-signal win when
/// given. ExposedPorts are informational (InspectImage), as in docker without -P.
extension ImageStore {
    public func applyDefaults(_ image: ImageRecord, to spec: inout ContainerSpec) throws {
        let config = image.config
        if image.layers.isEmpty && config == ImageConfig() {
            // A plain import has no config: the command must be given (Validate says so).
            if spec.entrypointSet { spec.args = spec.entrypoint + spec.args }
            return
        }
        let entrypoint = spec.entrypointSet ? spec.entrypoint : config.entrypoint
        let cmd = spec.args.isEmpty && !spec.entrypointSet ? config.cmd : spec.args
        spec.args = entrypoint + cmd
        if spec.args.isEmpty {
            throw BerthError(.invalidArgument, "image \(image.name) has no Entrypoint or Cmd: give the command to run after the image name")
        }
        if !config.env.isEmpty {
            let given = Set(spec.env.map { $0.split(separator: "=", maxSplits: 1).first.map(String.init) ?? $0 })
            spec.env = config.env.filter { entry in
                !given.contains(entry.split(separator: "=", maxSplits: 1).first.map(String.init) ?? entry)
            } + spec.env
        }
        if spec.workingDir.isEmpty { spec.workingDir = config.workingDir }
        if !spec.userSet && !config.user.isEmpty {
            spec.user = try resolveUser(config.user, image: image)
        }
        if spec.stopSignal == 0 && !config.stopSignal.isEmpty {
            do { spec.stopSignal = try Signals.parse(config.stopSignal) } catch {
                throw BerthError(.invalidArgument, "image \(image.name): StopSignal \(config.stopSignal.debugDescription) is not a signal")
            }
        }
    }

    /// `uid`, `uid:gid`, `name`, `name:group` (names from the image's /etc/passwd and
    /// /etc/group). A uid alone takes the user's primary group from /etc/passwd, or the uid.
    func resolveUser(_ text: String, image: ImageRecord) throws -> User {
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let passwd = readFile(id: image.id, path: "/etc/passwd").map { String(decoding: $0, as: UTF8.self) } ?? ""
        func entries(_ text: String) -> [[Substring]] {
            text.split(separator: "\n").map { $0.split(separator: ":", omittingEmptySubsequences: false) }
        }
        var uid: UInt32
        var gid: UInt32?
        if let n = UInt32(parts[0]) {
            uid = n
            gid = entries(passwd).first { $0.count > 3 && UInt32($0[2]) == n }.flatMap { UInt32($0[3]) }
        } else {
            guard let e = entries(passwd).first(where: { $0.count > 3 && $0[0] == parts[0] }), let u = UInt32(e[2]) else {
                throw BerthError(.invalidArgument, "image \(image.name): user \(parts[0].debugDescription) (its config's User) is not in its /etc/passwd")
            }
            uid = u
            gid = UInt32(e[3])
        }
        if parts.count == 2 {
            if let n = UInt32(parts[1]) { gid = n } else {
                let group = readFile(id: image.id, path: "/etc/group").map { String(decoding: $0, as: UTF8.self) } ?? ""
                guard let e = entries(group).first(where: { $0.count > 2 && $0[0] == parts[1] }), let g = UInt32(e[2]) else {
                    throw BerthError(.invalidArgument, "image \(image.name): group \(parts[1].debugDescription) (its config's User) is not in its /etc/group")
                }
                gid = g
            }
        }
        return User(uid: uid, gid: gid ?? uid)
    }
}

extension ContainerRuntime {
    /// Image id → the containers created from it (any state).
    public func imageUsers() -> [String: [String]] {
        var out: [String: [String]] = [:]
        for c in list(all: true) where !c.imageID.isEmpty { out[c.imageID, default: []].append(c.id) }
        return out
    }
}

extension ContainerRuntime {
    /// The bytes of every container's upper dir (its changes to the image).
    public func containersDiskUse() -> UInt64 {
        var total: UInt64 = 0
        for c in list(all: true) {
            guard let fd = try? FileDescriptor.open(containerDir(c.id) + "/upper", O_RDONLY | O_DIRECTORY | O_NOFOLLOW) else { continue }
            total += (try? FileTree.size(fd.rawValue)) ?? 0
            fd.close()
        }
        return total
    }
}
