#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import BerthWire

/// Images beyond `importImage`: load an OCI layout or docker-archive, pull from a
/// registry (with progress), inspect, remove, prune.
extension BerthClient {
    /// Loads the images of an OCI image layout or docker-archive tar (plain or gzip)
    /// at `path` ("-" for stdin). `name` names an archive's only image.
    public func loadImage(path: String, name: String = "") async throws -> [Image] {
        let fd: FileDescriptor
        if path == "-" {
            fd = FileDescriptor(rawValue: 0)
        } else {
            do { fd = try FileDescriptor.open(path, O_RDONLY) } catch {
                throw BerthError(.notFound, "cannot read image archive \(path): \(error.berthError("open").message)")
            }
        }
        defer { if path != "-" { fd.close() } }
        let r = try await upload(.loadImage(name: name), from: fd, what: "image archive")
        guard case .loadImage(let images) = r else { throw Self.unexpected(r, "LoadImage") }
        return images
    }

    /// Pulls an image from its registry; `progress` is called for each progress event
    /// (per layer: waiting, downloading with bytes, verifying, extracting, done or exists).
    public func pullImage(_ request: PullImageRequest, progress: @Sendable (ImageProgress) -> Void = { _ in }) async throws -> Image {
        let events = EventQueue()
        let stream = try connection.openStream(.pullImage(request), end: true) { event in events.push(event) }
        return try await withTaskCancellationHandler {
            while true {
                switch await events.next() {
                case .response(.pullImage(.progress(let p)), _)?:
                    progress(p)
                case .response(.pullImage(.image(let image)), _)?:
                    return image
                case .response(let r, _)?:
                    throw Self.unexpected(r, "PullImage")
                case .cancelled(let error)?:
                    throw error
                case .data?:
                    continue
                case nil:
                    throw BerthError(.unavailable, "the pull stream ended without an answer")
                }
            }
        } onCancel: {
            stream.cancel(BerthError(.cancelled, "pull cancelled by the client"))
        }
    }

    /// An image by name or id (prefix), with its config, layers and the containers using it.
    public func inspectImage(_ ref: String) async throws -> Image {
        let r = try await call(.inspectImage(ref))
        guard case .inspectImage(let image) = r else { throw Self.unexpected(r, "InspectImage") }
        return image
    }

    /// docker rmi: removes a name (an id: all its names), and the image's files when
    /// nothing uses it any more. An image a container uses needs `force`.
    public func removeImage(_ ref: String, force: Bool = false) async throws -> (untagged: [String], deleted: [String]) {
        let r = try await call(.removeImage(ref, force: force))
        guard case .removeImage(let untagged, let deleted) = r else { throw Self.unexpected(r, "RemoveImage") }
        return (untagged, deleted)
    }

    /// Removes images without names or containers, unused layers and partial downloads.
    public func pruneImages() async throws -> (deleted: [String], reclaimedBytes: UInt64) {
        let r = try await call(.pruneImages)
        guard case .pruneImages(let deleted, let bytes) = r else { throw Self.unexpected(r, "PruneImages") }
        return (deleted, bytes)
    }

    /// Opens a stream with `request`, sends `fd`'s bytes as DATA (PAYLOAD) under flow
    /// control, and returns the agent's one answer (image import and load). The upload
    /// runs on a thread of its own: reading the file and waiting for window both block;
    /// it stops early when the agent has already answered (an error).
    func upload(_ request: Request, from fd: FileDescriptor, what: String) async throws -> Response {
        let result = ResultBox<Response>()
        let stream = try connection.openStream(request, end: false) { event in
            switch event {
            case .response(let r, _): result.set(.success(r))
            case .cancelled(let e): result.set(.failure(e))
            case .data: break
            }
        }
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Void, any Error>) in
            startThread("berth-upload") {
                do {
                    var buffer = [UInt8](repeating: 0, count: ConnectionOptions.maxChunk)
                    while true {
                        let n = try buffer.withUnsafeMutableBytes { try fd.read(into: $0) }
                        if n == 0 { break }
                        if result.isSet { break }
                        try stream.sendData(Chunk(channel: .payload, data: Array(buffer[0..<n])))
                    }
                    if !result.isSet { try stream.end() }
                    cont.resume()
                } catch let error as Errno {
                    stream.cancel(BerthError(.cancelled, "upload aborted: reading the \(what) failed"))
                    cont.resume(throwing: error.error("read \(what)"))
                } catch {
                    cont.resume()
                }
            }
        }
        return try await result.value()
    }
}
