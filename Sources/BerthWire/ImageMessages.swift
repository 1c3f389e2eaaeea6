/// `berth.v1.ImageConfig`: the parts of an OCI image config that become a container's
/// defaults (docs/protocol.md, Images).
public struct ImageConfig: Sendable, Hashable {
    public var entrypoint: [String] = []
    public var cmd: [String] = []
    /// "KEY=VALUE".
    public var env: [String] = []
    public var workingDir = ""
    /// "uid[:gid]", "name[:group]", or empty.
    public var user = ""
    /// "80/tcp".
    public var exposedPorts: [String] = []
    /// "SIGQUIT", "15", or empty.
    public var stopSignal = ""
    public var labels: [String: String] = [:]
    public init() {}
}

/// `berth.v1.PullImageRequest`.
public struct PullImageRequest: Sendable, Hashable {
    /// docker-style: `name`, `name:tag`, `host:port/repo/name@sha256:…`.
    public var reference: String
    /// Registry credentials, optional.
    public var username = ""
    public var password = ""
    public init(reference: String, username: String = "", password: String = "") {
        self.reference = reference; self.username = username; self.password = password
    }
}

/// `berth.v1.ImageProgress`: progress of one piece of a pull.
public struct ImageProgress: Sendable, Hashable {
    /// "sha256:…" of the blob; "" for the image as a whole.
    public var id: String
    /// "resolving", "waiting", "downloading", "exists", "verifying", "extracting", "done".
    public var status: String
    public var current: UInt64
    public var total: UInt64
    public init(id: String, status: String, current: UInt64 = 0, total: UInt64 = 0) {
        self.id = id; self.status = status; self.current = current; self.total = total
    }
}

/// `berth.v1.PullImageResponse`: an event on a PullImage stream.
public enum PullEvent: Sendable, Hashable {
    case progress(ImageProgress)
    /// The last frame: the image, stored and named.
    case image(Image)
}
