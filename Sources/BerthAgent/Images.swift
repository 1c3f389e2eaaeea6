#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthRuntime
import BerthSystem
import BerthWire

/// The image calls of issue 9: LoadImage (an upload, like ImportImage), PullImage
/// (progress events, then the image), InspectImage, RemoveImage, PruneImages; and the
/// disk use that Info shows.
extension Agent {
    func images(_ stream: Stream, _ request: Request) throws {
        switch request {
        case .loadImage(let name):
            let images = try runtime.images.load(name: name, read: uploadReader(stream))
            for image in images {
                runtime.events.record(Event(type: "image", action: "load", id: image.id, name: image.name))
            }
            try stream.send(.loadImage(images.map(\.wire)), end: true)
        case .pullImage(let pull):
            let image = try runtime.images.pull(pull, options: config.registry) { progress in
                // Progress is advisory: a client gone away shows up as a failed send, and the
                // pull goes on to finish the layer (the next pull finds it).
                try? stream.send(.pullImage(.progress(progress)), end: false)
            }
            Log.write("pulled \(image.name) \(image.id)")
            runtime.events.record(Event(type: "image", action: "pull", id: image.id, name: image.name))
            try stream.send(.pullImage(.image(image.wire)), end: true)
        case .inspectImage(let ref):
            let image = try runtime.images.find(ref)
            var wire = image.wire
            wire.containers = runtime.imageUsers()[image.id] ?? []
            try stream.send(.inspectImage(wire), end: true)
        case .removeImage(let ref, let force):
            let (untagged, deleted) = try runtime.images.remove(ref, force: force, usedBy: runtime.imageUsers())
            for name in untagged { runtime.events.record(Event(type: "image", action: "untag", id: "", name: name)) }
            for id in deleted { runtime.events.record(Event(type: "image", action: "delete", id: id, name: "")) }
            try stream.send(.removeImage(untagged: untagged, deleted: deleted), end: true)
        case .pruneImages:
            let (deleted, bytes) = try runtime.images.prune(inUse: Set(runtime.imageUsers().keys))
            for id in deleted { runtime.events.record(Event(type: "image", action: "delete", id: id, name: "")) }
            try stream.send(.pruneImages(deleted: deleted, reclaimedBytes: bytes), end: true)
        default:
            throw BerthError(.internal, "not an image call")
        }
    }

    func addDiskUse(_ info: inout InfoResponse) {
        let use = runtime.images.diskUsage()
        info.imageLayers = use.layers
        info.imageLayersBytes = use.layersBytes
        info.imageBlobsBytes = use.blobsBytes
        info.imageDownloadsBytes = use.downloadsBytes
        info.containersBytes = runtime.containersDiskUse()
    }
}
