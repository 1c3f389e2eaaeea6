#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem
import Synchronization

/// `berth image load|pull|inspect|rm|prune`, and pulling a missing image for run/create.
enum ImageCommands {
    static func load(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        var name = ""
        var file: String?
        while let a = args.next() {
            let (flag, inline) = Arguments.split(a)
            switch flag {
            case "-t", "--name", "--tag": name = try args.value(for: flag, inline)
            case "-i", "--input": file = try args.value(for: flag, inline)
            default:
                if a.hasPrefix("-") && a != "-" { throw UsageError(message: "unknown option \(a)", command: args.command) }
                guard file == nil else { throw UsageError(message: "unexpected argument \"\(a)\" for image load", command: args.command) }
                file = a
            }
        }
        guard let file else { throw UsageError(message: "image load needs a FILE (an OCI layout or docker-archive tar; - for stdin)", command: args.command) }
        let client = try await g.connect()
        for image in try await client.loadImage(path: file, name: name) {
            out("Loaded image: \(image.name.isEmpty ? "(no name)" : image.name) \(image.id)\n")
        }
        return ExitCode.ok
    }

    static func pull(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        var request = PullImageRequest(reference: "")
        var quiet = false
        while let a = args.next() {
            let (flag, inline) = Arguments.split(a)
            switch flag {
            case "-q", "--quiet": quiet = true
            case "--username": request.username = try args.value(for: flag, inline)
            case "--password": request.password = try args.value(for: flag, inline)
            case "--password-stdin":
                var bytes: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = buffer.withUnsafeMutableBytes { Glibc.read(0, $0.baseAddress, $0.count) }
                    if n <= 0 { break }
                    bytes += buffer[0..<n]
                }
                request.password = String(decoding: bytes, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
            default:
                if a.hasPrefix("-") { throw UsageError(message: "unknown option \(a)", command: args.command) }
                guard request.reference.isEmpty else { throw UsageError(message: "unexpected argument \"\(a)\" for image pull", command: args.command) }
                request.reference = a
            }
        }
        if request.reference.isEmpty { throw UsageError(message: "image pull needs an image reference (name[:tag] or name@sha256:…)", command: args.command) }
        if request.username.isEmpty { request.username = Host.environment("BERTH_REGISTRY_USERNAME") ?? "" }
        if request.password.isEmpty { request.password = Host.environment("BERTH_REGISTRY_PASSWORD") ?? "" }
        let client = try await g.connect()
        let image = try await pull(client, request, fd: quiet ? -1 : 1)
        out("\(image.name) \(image.id)\n")
        return ExitCode.ok
    }

    /// Pulls with progress on `fd` (-1: none): a bar per layer on a terminal, else a
    /// line per change of a layer's status.
    static func pull(_ client: BerthClient, _ request: PullImageRequest, fd: Int32) async throws -> Image {
        let display = ProgressDisplay(fd: fd, tty: fd >= 0 && isatty(fd) == 1)
        let image = try await client.pullImage(request) { p in display.update(p) }
        display.finish()
        if image.digest.isEmpty == false && fd >= 0 { write(fd, "Digest: \(image.digest)\n") }
        return image
    }

    /// For run and create: when the agent says the image is not there, pull it (progress
    /// on stderr, as docker does) and try once more.
    /// `policy` is docker's --pull: missing (pull when not there), always, never.
    static func pullingIfMissing<T>(_ client: BerthClient, _ image: String, policy: String, _ body: () async throws -> T) async throws -> T {
        let request = PullImageRequest(reference: image, username: Host.environment("BERTH_REGISTRY_USERNAME") ?? "",
                                       password: Host.environment("BERTH_REGISTRY_PASSWORD") ?? "")
        if policy == "always" && !image.isEmpty { _ = try await pull(client, request, fd: 2) }
        do {
            return try await body()
        } catch let e as BerthError where e.reason == "image_not_found" && !image.isEmpty && policy == "missing" {
            err("Unable to find image '\(image)' locally\n")
            _ = try await pull(client, request, fd: 2)
            return try await body()
        }
    }

    static func inspect(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        try await Commands.eachRef(&args, g, "image inspect", noun: "image name or id") { client, ref in
            let i = try await client.inspectImage(ref)
            out(Self.json(i) + "\n")
        }
    }

    static func remove(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        var force = false
        var refs: [String] = []
        while let a = args.next() {
            switch a {
            case "-f", "--force": force = true
            default:
                if a.hasPrefix("-") { throw UsageError(message: "unknown option \(a)", command: args.command) }
                refs.append(a)
            }
        }
        if refs.isEmpty { throw UsageError(message: "image rm needs at least one image name or id", command: args.command) }
        let client = try await g.connect()
        var code = ExitCode.ok
        for ref in refs {
            do {
                let (untagged, deleted) = try await client.removeImage(ref, force: force)
                for u in untagged { out("Untagged: \(u)\n") }
                for d in deleted { out("Deleted: \(d)\n") }
            } catch {
                err("Error: \(error.berthError("image rm").message)\n")
                code = ExitCode.failure
            }
        }
        return code
    }

    static func prune(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        while let a = args.next() {
            // -a and -f are accepted for docker habits: prune never asks and removes only
            // what nothing uses.
            guard a == "-f" || a == "--force" || a == "-a" || a == "--all" else {
                throw UsageError(message: "unknown option \(a)", command: args.command)
            }
        }
        let client = try await g.connect()
        let (deleted, bytes) = try await client.pruneImages()
        for d in deleted { out("Deleted: \(d)\n") }
        out("Total reclaimed space: \(Format.bytesSI(bytes))\n")
        return ExitCode.ok
    }

    static func json(_ i: Image) -> String {
        func s(_ x: String) -> String { JSON.string(x) }
        func a(_ xs: [String]) -> String { "[" + xs.map(s).joined(separator: ",") + "]" }
        let labels = "{" + i.config.labels.sorted { $0.key < $1.key }.map { "\(s($0.key)):\(s($0.value))" }.joined(separator: ",") + "}"
        return """
        {"Name":\(s(i.name)),"Id":\(s(i.id)),"Digest":\(s(i.digest)),"Size":\(i.sizeBytes),"Created":\(i.createdUnix),\
        "Os":\(s(i.os)),"Architecture":\(s(i.architecture)),"Layers":\(a(i.layers)),"Containers":\(a(i.containers)),\
        "Config":{"Entrypoint":\(a(i.config.entrypoint)),"Cmd":\(a(i.config.cmd)),"Env":\(a(i.config.env)),\
        "WorkingDir":\(s(i.config.workingDir)),"User":\(s(i.config.user)),"ExposedPorts":\(a(i.config.exposedPorts)),\
        "StopSignal":\(s(i.config.stopSignal)),"Labels":\(labels)}}
        """
    }
}

/// Pull progress: on a terminal one line per layer, redrawn in place (ANSI cursor up);
/// otherwise one plain line each time a layer's status changes.
final class ProgressDisplay: Sendable {
    struct State {
        var order: [String] = []
        var latest: [String: ImageProgress] = [:]
        var drawn = 0
    }
    let fd: Int32
    let tty: Bool
    let state = Mutex(State())

    init(fd: Int32, tty: Bool) { self.fd = fd; self.tty = tty }

    func update(_ p: ImageProgress) {
        guard fd >= 0 else { return }
        let text: String? = state.withLock { s in
            if p.id.isEmpty {
                return tty ? nil : (p.status == "resolving" ? "Resolving\n" : nil)
            }
            let previous = s.latest[p.id]
            if previous == nil { s.order.append(p.id) }
            s.latest[p.id] = p
            if !tty {
                return previous?.status == p.status ? nil : "\(short(p.id)): \(p.status)\(p.total > 0 ? " (\(Format.bytesSI(p.total)))" : "")\n"
            }
            var out = s.drawn > 0 ? "\u{1b}[\(s.drawn)A" : ""
            for id in s.order {
                guard let q = s.latest[id] else { continue }
                out += "\u{1b}[2K\(short(id)): \(bar(q))\n"
            }
            s.drawn = s.order.count
            return out
        }
        if let text { write(fd, text) }
    }

    func finish() {}

    private func short(_ id: String) -> String { String(id.split(separator: ":").last?.prefix(12) ?? "") }

    private func bar(_ p: ImageProgress) -> String {
        guard p.status == "downloading", p.total > 0 else {
            return p.status.prefix(1).uppercased() + p.status.dropFirst()
        }
        let width = 30
        let filled = Int(min(p.current, p.total) * UInt64(width) / p.total)
        return "Downloading [" + String(repeating: "=", count: filled) + (filled < width ? ">" : "")
            + String(repeating: " ", count: max(0, width - filled - 1)) + "] \(Format.bytesSI(p.current))/\(Format.bytesSI(p.total))"
    }
}

