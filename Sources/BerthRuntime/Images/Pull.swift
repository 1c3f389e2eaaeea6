#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import BerthWire

/// `berth image pull`: manifest (an index picks linux on this architecture), config, then
/// each layer not in the store yet: downloaded into `downloads/<blob-hex>` (appended to
/// on a later pull when a pull was interrupted: HTTP Range), its digest and size checked,
/// unpacked (its diff id checked), the download removed. Two pulls wanting one layer at
/// once download it once: the second waits for the first (`Flights`).
extension ImageStore {
    public func pull(_ request: PullImageRequest, options: RegistryOptions, progress: @escaping (ImageProgress) -> Void) throws -> ImageRecord {
        let ref = try ImageReference.parse(request.reference)
        let client = RegistryClient(ref, options: options, username: request.username, password: request.password)
        progress(ImageProgress(id: "", status: "resolving"))
        var (bytes, contentType, digest) = try client.manifest(ref.reference)
        var manifest: OCIManifest?
        for _ in 0..<4 {
            switch try ManifestDocument.parse(bytes, contentType: contentType, what: "manifest of \(ref.name)") {
            case .manifest(let m): manifest = m
            case .index(let list):
                let picked = try Platform.pick(list, what: "image \(ref.name)")
                (bytes, contentType, digest) = try client.manifest(picked.digest)
            }
            if manifest != nil { break }
        }
        guard let manifest else { throw BerthError(.invalidArgument, "image \(ref.name): indexes nested too deeply") }

        let configBytes = try client.smallBlob(manifest.config, what: "config of \(ref.name)")
        let config = try OCIImageConfig.parse(configBytes)
        if !config.os.isEmpty && config.os != "linux" || !config.architecture.isEmpty && config.architecture != Platform.architecture {
            throw BerthError(.notFound, "image \(ref.name) is for \(config.os)/\(config.architecture), not linux/\(Platform.architecture)", reason: "platform_not_found")
        }
        guard config.diffIDs.count == manifest.layers.count else {
            throw BerthError(.invalidArgument, "image \(ref.name): the manifest has \(manifest.layers.count) layers, the config \(config.diffIDs.count) diff ids", reason: "digest_mismatch")
        }
        let id = "sha256:" + Host.hex(try SHA256.digest(configBytes))
        let pinned = config.diffIDs + manifest.layers.map(\.digest) + [id]
        pin(pinned)
        defer { unpin(pinned) }
        for (i, layer) in manifest.layers.enumerated() {
            let diffID = config.diffIDs[i]
            if hasLayer(diffID) {
                progress(ImageProgress(id: layer.digest, status: "exists", current: layer.size, total: layer.size))
                continue
            }
            progress(ImageProgress(id: layer.digest, status: "waiting", current: 0, total: layer.size))
            try flights.run(diffID) {
                if hasLayer(diffID) {
                    progress(ImageProgress(id: layer.digest, status: "exists", current: layer.size, total: layer.size))
                    return
                }
                let what = "layer \(i + 1) of \(manifest.layers.count) of \(ref.name) (\(layer.digest))"
                let file = try download(layer, client: client, what: what, progress: progress)
                progress(ImageProgress(id: layer.digest, status: "extracting", current: layer.size, total: layer.size))
                try unpackLayer(diffID: diffID, blobDigest: nil, what: what, read: try Self.fileReader(file))
                try? FileTree.remove(file)
                progress(ImageProgress(id: layer.digest, status: "done", current: layer.size, total: layer.size))
            }
        }
        let records = try publishLayered(config: configBytes, parsed: config, digest: digest, names: [ref.name])
        guard let record = records.first else { throw BerthError(.internal, "image \(ref.name) was not published") }
        progress(ImageProgress(id: "", status: "done"))
        return record
    }

    /// Downloads a blob into `downloads/<hex>`, resuming what an earlier pull left there,
    /// and checks its size and digest. A blob that does not match is removed (so the next
    /// pull starts over). Returns the file's path.
    private func download(_ d: Descriptor, client: RegistryClient, what: String, progress: @escaping (ImageProgress) -> Void) throws -> String {
        guard let hex = Self.hex(of: d.digest) else { throw BerthError(.invalidArgument, "\(what): bad digest") }
        let path = "\(downloadsDirectory)/\(hex)"
        let hasher = try SHA256()
        var have: UInt64 = 0
        if Files.exists(path) {
            let read = try Self.fileReader(path)
            while let chunk = try read() { hasher.update(chunk); have += UInt64(chunk.count) }
            if d.size > 0 && have > d.size {
                try FileTree.remove(path)
                return try download(d, client: client, what: what, progress: progress)
            }
        }
        let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_APPEND, mode: 0o600)
        defer { fd.close() }
        var current = have
        var reported: UInt64 = 0
        var first = true
        var restart: SHA256? = nil
        progress(ImageProgress(id: d.digest, status: "downloading", current: current, total: d.size))
        if d.size == 0 || have < d.size {
            let result = try client.get("/blobs/\(d.digest)", resumeFrom: have, what: what) { status, bytes in
                if first {
                    first = false
                    // 200 to a Range request: the registry sends the whole blob again.
                    if status == 200 && have > 0 {
                        guard ftruncate(fd.rawValue, 0) == 0 else { throw Errno.current.error("truncate \(path)") }
                        restart = try SHA256()
                        current = 0
                    }
                }
                if d.size > 0 && current + UInt64(bytes.count) > d.size {
                    throw BerthError(.invalidArgument, "\(what): the registry sent more than the \(d.size) bytes the manifest says", reason: "digest_mismatch")
                }
                (restart ?? hasher).update(bytes)
                try fd.writeAll(bytes)
                current += UInt64(bytes.count)
                if current - reported >= 256 * 1024 {
                    reported = current
                    progress(ImageProgress(id: d.digest, status: "downloading", current: current, total: d.size))
                }
            }
            _ = result
        }
        progress(ImageProgress(id: d.digest, status: "verifying", current: current, total: d.size))
        let got = "sha256:" + Host.hex((restart ?? hasher).finalize())
        if got != d.digest || (d.size > 0 && current != d.size) {
            try? FileTree.remove(path)
            throw BerthError(.invalidArgument, "\(what): digest mismatch: the registry sent \(current) bytes with digest \(got), the manifest says \(d.size) bytes, \(d.digest)", reason: "digest_mismatch")
        }
        return path
    }
}
