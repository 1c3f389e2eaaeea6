import BerthErrors
import BerthSystem
import BerthWire

/// The JSON documents of OCI images and docker's v2 schema 2 (image-spec, distribution-spec):
/// descriptors, manifests, indexes (manifest lists), image configs and docker-archive's
/// `manifest.json`. Only the fields Berth uses are read; unknown ones are ignored.
enum MediaType {
    static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
    static let ociIndex = "application/vnd.oci.image.index.v1+json"
    static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    static let dockerList = "application/vnd.docker.distribution.manifest.list.v2+json"
    static let dockerSchema1 = "application/vnd.docker.distribution.manifest.v1+json"
    static let dockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
    /// What a manifest request accepts, best first.
    static let accept = [ociIndex, dockerList, ociManifest, dockerManifest]
}

/// A content descriptor: what a blob is, its digest and size.
struct Descriptor: Sendable, Hashable {
    var mediaType = ""
    var digest = ""
    var size: UInt64 = 0
    var os = ""
    var architecture = ""
    var variant = ""
    var annotations: [String: String] = [:]
}

/// A manifest (OCI or docker v2 schema 2): the config and the layers, bottom first.
struct OCIManifest: Sendable {
    var config: Descriptor
    var layers: [Descriptor]
}

/// A manifest, or an index (manifest list) of manifests for several platforms.
enum ManifestDocument: Sendable {
    case manifest(OCIManifest)
    case index([Descriptor])

    /// Parses `bytes`; `contentType` (from the registry, may be empty) and the
    /// document's own `mediaType` tell which it is. Schema 1 and unknown types are
    /// INVALID_ARGUMENT.
    static func parse(_ bytes: [UInt8], contentType: String = "", what: String) throws -> ManifestDocument {
        let json = try JSON.parse(bytes, what: what, fractions: true)
        guard case .object = json.value else { throw BerthError(.invalidArgument, "\(what) is not a JSON object") }
        var type = json.string("mediaType")
        if type.isEmpty { type = contentType.split(separator: ";").first.map { String($0).trimmed } ?? "" }
        if type == MediaType.dockerSchema1 || type == MediaType.dockerSchema1Signed || json.integer("schemaVersion") == 1 {
            throw BerthError(.invalidArgument, "\(what) is a docker v2 schema 1 manifest, which Berth does not read; push the image again with a current tool (schema 2 or OCI)", reason: "unsupported_manifest")
        }
        if json["manifests"] != nil || type == MediaType.ociIndex || type == MediaType.dockerList {
            let list = try json.array("manifests", what).map { try Descriptor($0, what: "\(what): manifests") }
            return .index(list)
        }
        guard let config = json["config"] else {
            throw BerthError(.invalidArgument, "\(what) has neither \"config\" nor \"manifests\" (media type \(type.isEmpty ? "none" : type))", reason: "unsupported_manifest")
        }
        let layers = try json.array("layers", what).map { try Descriptor($0, what: "\(what): layers") }
        return .manifest(OCIManifest(config: try Descriptor(config, what: "\(what): config"), layers: layers))
    }
}

extension Descriptor {
    init(_ j: JSON, what: String) throws {
        guard case .object = j.value else { throw BerthError(.invalidArgument, "\(what): a descriptor is not an object") }
        mediaType = j.string("mediaType")
        digest = j.string("digest")
        guard ImageStore.hex(of: digest) != nil else {
            throw BerthError(.invalidArgument, "\(what): digest \(digest.debugDescription) is not sha256: and 64 lowercase hex digits", reason: "bad_digest")
        }
        size = j.integer("size").map { UInt64(max(0, $0)) } ?? 0
        if let p = j["platform"] {
            os = p.string("os")
            architecture = p.string("architecture")
            variant = p.string("variant")
        }
        if let a = j["annotations"], case .object(let members) = a.value {
            for (k, v) in members { if case .string(let s) = v.value { annotations[k] = s } }
        }
    }
}

/// An image config: the container defaults, the platform and the layers' diff ids.
struct OCIImageConfig: Sendable {
    var config = ImageConfig()
    var os = ""
    var architecture = ""
    var diffIDs: [String] = []

    static func parse(_ bytes: [UInt8]) throws -> OCIImageConfig {
        let what = "image config"
        let json = try JSON.parse(bytes, what: what, fractions: true)
        guard case .object = json.value else { throw BerthError(.invalidArgument, "\(what) is not a JSON object") }
        var c = OCIImageConfig()
        c.os = json.string("os")
        c.architecture = json.string("architecture")
        if let rootfs = json["rootfs"] {
            c.diffIDs = try rootfs.strings("diff_ids", what)
            for d in c.diffIDs where ImageStore.hex(of: d) == nil {
                throw BerthError(.invalidArgument, "\(what): diff id \(d.debugDescription) is not sha256: and 64 lowercase hex digits", reason: "bad_digest")
            }
        }
        if let k = json["config"], case .object = k.value {
            c.config.entrypoint = try k.strings("Entrypoint", what)
            c.config.cmd = try k.strings("Cmd", what)
            c.config.env = try k.strings("Env", what)
            c.config.workingDir = k.string("WorkingDir")
            c.config.user = k.string("User")
            c.config.stopSignal = k.string("StopSignal")
            if let ports = k["ExposedPorts"], case .object(let members) = ports.value {
                c.config.exposedPorts = members.map(\.key).sorted()
            }
            if let labels = k["Labels"], case .object(let members) = labels.value {
                for (key, v) in members { if case .string(let s) = v.value { c.config.labels[key] = s } }
            }
        }
        return c
    }
}

/// One image of a docker-archive's `manifest.json`.
struct DockerArchiveEntry: Sendable {
    var config: String
    var repoTags: [String]
    var layers: [String]

    static func parse(_ bytes: [UInt8]) throws -> [DockerArchiveEntry] {
        let what = "docker-archive manifest.json"
        let json = try JSON.parse(bytes, what: what, fractions: true)
        guard case .array(let items) = json.value else { throw BerthError(.invalidArgument, "\(what) is not a JSON array") }
        return try items.map { item in
            DockerArchiveEntry(config: item.string("Config"), repoTags: try item.strings("RepoTags", what),
                               layers: try item.strings("Layers", what))
        }
    }
}

extension JSON {
    /// The string member `key`, "" when absent or not a string.
    func string(_ key: String) -> String {
        if case .string(let s)? = self[key]?.value { return s }
        return ""
    }

    /// The integer member `key`, nil when absent or not a number.
    func integer(_ key: String) -> Int64? {
        guard case .integer(let negative, let magnitude)? = self[key]?.value else { return nil }
        let m = Int64(clamping: magnitude)
        return negative ? -m : m
    }

    /// The array member `key` ([] when absent or null).
    func array(_ key: String, _ what: String) throws -> [JSON] {
        switch self[key]?.value {
        case nil, .null?: return []
        case .array(let items)?: return items
        default: throw BerthError(.invalidArgument, "\(what): \"\(key)\" is not an array")
        }
    }

    /// The array of strings `key` ([] when absent or null).
    func strings(_ key: String, _ what: String) throws -> [String] {
        try array(key, what).map { item in
            guard case .string(let s) = item.value else { throw BerthError(.invalidArgument, "\(what): \"\(key)\" holds \(item.kind), not a string") }
            return s
        }
    }
}

extension String {
    var trimmed: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\r" || f == "\n" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" || l == "\n" { s = s.dropLast() }
        return String(s)
    }
}

/// The platform Berth runs images for: linux on this machine's architecture, in the
/// OCI's names (amd64, arm64).
enum Platform {
    static var architecture: String {
        #if arch(x86_64)
        return "amd64"
        #elseif arch(arm64)
        return "arm64"
        #else
        return "unknown"
        #endif
    }

    /// The entry of an index for linux on this architecture; NOT_FOUND when there is none.
    static func pick(_ manifests: [Descriptor], what: String) throws -> Descriptor {
        let candidates = manifests.filter { $0.os == "linux" && $0.architecture == architecture }
        // arm64 images may say variant v8 or nothing; amd64 has none. Any match will do.
        if let m = candidates.first { return m }
        let offered = manifests.map { "\($0.os)/\($0.architecture)\($0.variant.isEmpty ? "" : "/" + $0.variant)" }
        throw BerthError(.notFound, "\(what) has no image for linux/\(architecture), only for \(offered.isEmpty ? "no platform" : offered.joined(separator: ", "))", reason: "platform_not_found")
    }
}
