// Layers, references and registry details of the image store (issue 9). The layer
// tests make whiteouts (device nodes) and trusted.* xattrs, so they need root.
#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
@testable import BerthRuntime
import BerthSystem
import BerthWire
import CBerthImages
import Testing

private let isRoot = geteuid() == 0

@Suite struct ImageLayerTests {
    @Test func parsesReferences() throws {
        let hub = try ImageReference.parse("busybox")
        #expect(hub.endpoint == "registry-1.docker.io" && hub.repository == "library/busybox" && hub.reference == "latest" && hub.name == "busybox:latest")
        let hubFull = try ImageReference.parse("docker.io/library/busybox:1.36")
        #expect(hubFull.name == "busybox:1.36" && hubFull.repository == "library/busybox")
        let local = try ImageReference.parse("127.0.0.1:5000/team/app:v2")
        #expect(local.host == "127.0.0.1:5000" && local.repository == "team/app" && local.reference == "v2")
        let digest = "sha256:" + String(repeating: "ab", count: 32)
        let pinned = try ImageReference.parse("localhost:5000/repo/name:tag@\(digest)")
        #expect(pinned.reference == digest && pinned.name == "localhost:5000/repo/name@\(digest)" && pinned.repository == "repo/name")
        let user = try ImageReference.parse("someone/tool")
        #expect(user.repository == "someone/tool" && user.host == "docker.io")
        for bad in ["Bad", "host:99999999/x", "x@sha256:12", "a/b:c:d"] {
            #expect(throws: BerthError.self) { try ImageReference.parse(bad) }
        }
    }

    @Test func parsesAuthenticationChallenges() {
        let p = RegistryClient.challengeParameters(#" realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#)
        #expect(p["realm"] == "https://auth.example/token" && p["service"] == "registry.example" && p["scope"] == "repository:a/b:pull")
        #expect(RegistryClient.percentEncode("repository:a/b:pull") == "repository%3Aa%2Fb%3Apull")
        #expect(Base64.encode(Array("user:pass".utf8)) == "dXNlcjpwYXNz")
        #expect(Base64.encode(Array("ab".utf8)) == "YWI=")
    }

    @Test func readsManifestsAndIndexes() throws {
        let d = "sha256:" + String(repeating: "0", count: 64)
        let index = #"{"schemaVersion":2,"manifests":[{"digest":"\#(d)","size":1,"platform":{"os":"linux","architecture":"arm64"}}]}"#
        guard case .index(let list) = try ManifestDocument.parse(Array(index.utf8), what: "t") else { Issue.record("not an index"); return }
        #expect(throws: BerthError.self) { try Platform.pick(list, what: "t") }
        let schema1 = #"{"schemaVersion":1,"fsLayers":[]}"#
        #expect(throws: BerthError.self) { try ManifestDocument.parse(Array(schema1.utf8), what: "t") }
        let config = #"{"os":"linux","architecture":"amd64","config":{"Cmd":["sh"],"Healthcheck":{"Interval":1.5e9}},"rootfs":{"diff_ids":["\#(d)"]}}"#
        let c = try OCIImageConfig.parse(Array(config.utf8))
        #expect(c.config.cmd == ["sh"] && c.diffIDs == [d])
    }

    @Test(.enabled(if: isRoot, "whiteouts are device nodes; opaque dirs trusted.* xattrs"))
    func unpacksWhiteoutsAndOpaqueDirectories() throws {
        try withTemporaryDirectory { tmp in
            let store = try ImageStore(directory: tmp + "/images")
            var t = TarBuilder()
            t.directory("data")
            t.file("data/.wh.gone", "")
            t.directory("data/opaque")
            t.file("data/opaque/.wh..wh..opq", "")
            t.file("data/opaque/kept", "k")
            let diffID = try idOf(t.archive)
            try store.unpackLayer(diffID: diffID, blobDigest: nil, what: "layer", read: ChunkReader(t.archive).next)
            let root = try #require(store.layerPath(diffID))
            let wh = try #require(lstatOf(root + "/data/gone"))
            #expect(wh.st_mode & S_IFMT == S_IFCHR && wh.st_rdev == 0)
            var value = [UInt8](repeating: 0, count: 8)
            let n = getxattrValue(root + "/data/opaque", "trusted.overlay.opaque", &value)
            #expect(n == 1 && value[0] == UInt8(ascii: "y"))
            #expect(!Files.exists(root + "/data/opaque/.wh..wh..opq"))
            // A second unpack of the same layer is a no-op; a wrong diff id publishes nothing.
            try store.unpackLayer(diffID: diffID, blobDigest: nil, what: "layer", read: ChunkReader(t.archive).next)
            expectError(.invalidArgument, containing: "digest mismatch") {
                try store.unpackLayer(diffID: "sha256:" + String(repeating: "1", count: 64), blobDigest: nil, what: "layer", read: ChunkReader(t.archive).next)
            }
            #expect(try Files.list(tmp + "/images/layers") == [String(diffID.dropFirst(7))])
            #expect(try Files.list(tmp + "/images/tmp") == [])
        }
    }
}

private func getxattrValue(_ path: String, _ name: String, _ value: inout [UInt8]) -> Int {
    let fd = open(path, O_RDONLY | O_DIRECTORY)
    guard fd >= 0 else { return -1 }
    defer { close(fd) }
    return value.withUnsafeMutableBytes { berth_fgetxattr(fd, name, $0.baseAddress, $0.count) }
}
