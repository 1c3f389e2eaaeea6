import BerthTLS
import BerthWire

/// What a connection may do (docs/security.md). Local connections (the Unix socket, and
/// plain TCP, which only loopback allows) are admins; a TLS client's role comes from its
/// certificate: OU "viewer" makes a viewer, anything else an admin.
enum Role: String, Sendable {
    case admin, viewer

    init(_ peer: TLSPeer) {
        self = peer.organizationalUnit.lowercased() == "viewer" ? .viewer : .admin
    }
}

extension Request {
    /// Calls that change nothing and reveal no more than `ps`, `inspect` and `logs`:
    /// what a viewer may make.
    var isReadOnly: Bool {
        switch self {
        case .hello, .info, .listImages, .wait, .listContainers, .inspectContainer, .logs,
             .listNetworks, .inspectNetwork, .listPods, .inspectPod, .stats, .events, .inspectImage:
            return true
        case .loadImage, .pullImage, .removeImage, .pruneImages:
            return false
        case .importImage, .createContainer, .startContainer, .run, .removeContainer, .stopContainer,
             .killContainer, .restartContainer, .exec, .createNetwork, .removeNetwork, .createPod,
             .startPod, .stopPod, .removePod:
            return false
        }
    }

    /// Calls answered with one RESPONSE from what the agent holds in memory (and a few
    /// /proc or cgroup reads), never waiting on a container, a stream or the network:
    /// safe to run on the connection's reader thread.
    var answersAtOnce: Bool {
        switch self {
        case .hello, .info, .listImages, .listContainers, .inspectContainer, .listNetworks, .inspectNetwork,
             .listPods, .inspectPod:
            return true
        default:
            return false
        }
    }

    /// The call's name, for logs and refusals.
    var callName: String {
        switch self {
        case .hello: "Hello"
        case .info: "Info"
        case .importImage: "ImportImage"
        case .listImages: "ListImages"
        case .createContainer: "CreateContainer"
        case .startContainer: "StartContainer"
        case .run: "Run"
        case .wait: "Wait"
        case .listContainers: "ListContainers"
        case .removeContainer: "RemoveContainer"
        case .stopContainer: "StopContainer"
        case .killContainer: "KillContainer"
        case .restartContainer: "RestartContainer"
        case .inspectContainer: "InspectContainer"
        case .logs: "Logs"
        case .exec: "Exec"
        case .createNetwork: "CreateNetwork"
        case .listNetworks: "ListNetworks"
        case .inspectNetwork: "InspectNetwork"
        case .removeNetwork: "RemoveNetwork"
        case .createPod: "CreatePod"
        case .listPods: "ListPods"
        case .inspectPod: "InspectPod"
        case .startPod: "StartPod"
        case .stopPod: "StopPod"
        case .removePod: "RemovePod"
        case .stats: "Stats"
        case .loadImage: "LoadImage"
        case .pullImage: "PullImage"
        case .inspectImage: "InspectImage"
        case .removeImage: "RemoveImage"
        case .pruneImages: "PruneImages"
        case .events: "Events"
        }
    }
}

/// What a viewer sees: the same answers without host paths (a host path appears only in
/// an explicit bind mount or --rootfs, and the state and run dirs, pins and cgroups say
/// where things are on the host); an admin sees everything.
extension Response {
    func redactedForViewer() -> Response {
        switch self {
        case .info(var i):
            i.stateDir = ""
            i.runDir = ""
            return .info(i)
        case .listContainers(let list): return .listContainers(list.map { $0.redactedForViewer() })
        case .inspectContainer(let c): return .inspectContainer(c.redactedForViewer())
        case .listPods(let list): return .listPods(list.map { $0.redactedForViewer() })
        case .inspectPod(let p): return .inspectPod(p.redactedForViewer())
        case .events(var batch):
            // A container of a host directory (--rootfs) has that path as its image.
            batch.events = batch.events.map { e in
                var e = e
                if e.attributes["image"]?.hasPrefix("/") == true { e.attributes["image"] = hidden }
                return e
            }
            return .events(batch)
        default: return self
        }
    }
}

private let hidden = "(host path hidden)"

extension Container {
    func redactedForViewer() -> Container {
        var c = self
        if !c.spec.rootfs.isEmpty { c.spec.rootfs = hidden; c.image = hidden }
        c.spec.mounts = c.spec.mounts.map { m in
            var m = m
            if m.kind == .bind { m.source = hidden }
            return m
        }
        c.network.netns = ""
        c.cgroup = ""
        c.spec.seccomp = c.spec.seccomp.isEmpty || c.spec.seccomp == "unconfined" ? c.spec.seccomp : "(custom profile)"
        return c
    }
}

extension Pod {
    func redactedForViewer() -> Pod {
        var p = self
        p.network.netns = ""
        p.namespaces = p.namespaces.map { NamespaceInfo(type: $0.type, path: "", inode: $0.inode) }
        return p
    }
}
