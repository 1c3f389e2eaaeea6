#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import BerthWire
import CBerthImages

/// How the agent reaches registries (`berthd --insecure-registry`, `--registry-ca`, …).
public struct RegistryOptions: Sendable {
    /// `host[:port]` of registries reached over plain HTTP. Every other is HTTPS, verified.
    public var insecure: Set<String> = []
    /// `host[:port]` → a PEM CA file that replaces the system store for that registry.
    public var caFiles: [String: String] = [:]
    /// A registry (or its token server) that sends nothing for this long fails the pull
    /// (DEADLINE_EXCEEDED); also the connect timeout.
    public var timeoutSeconds = 30
    /// Bytes per second a download may take; 0: no limit.
    public var maxBytesPerSecond: Int64 = 0
    public init() {}
}

/// A docker-style image reference: `name`, `name:tag`, `host:port/repo/name@sha256:…`.
struct ImageReference: Sendable, Hashable {
    /// The host[:port] as written ("docker.io" for names without one).
    var host: String
    /// Where the distribution API is: Docker Hub's is registry-1.docker.io.
    var endpoint: String
    /// The repository within the registry: "library/busybox", "test/img".
    var repository: String
    /// A tag or a "sha256:…" digest.
    var reference: String
    /// The local name the image gets: normalised, short for Docker Hub.
    var name: String

    static func parse(_ text: String) throws -> ImageReference {
        let name = try ImageStore.normalize(text)
        let repo: String
        let reference: String
        if let at = name.firstIndex(of: "@") {
            repo = String(name[..<at])
            reference = String(name[name.index(after: at)...])
        } else {
            repo = ImageStore.repositoryPart(name)
            reference = String(name.dropFirst(repo.count + 1))
        }
        var parts = repo.split(separator: "/").map(String.init)
        var host = "docker.io"
        if parts.count > 1, let first = parts.first, first.contains(".") || first.contains(":") || first == "localhost" {
            host = first
            parts.removeFirst()
        }
        if host == "docker.io" && parts.count == 1 { parts.insert("library", at: 0) }
        return ImageReference(host: host, endpoint: host == "docker.io" ? "registry-1.docker.io" : host,
                              repository: parts.joined(separator: "/"), reference: reference, name: name)
    }
}

/// One HTTP GET over libcurl (CBerthImages' `berth_http_get`).
struct HTTPResult {
    var status: Int
    /// Lower-cased header names of the final response.
    var headers: [String: String]
}

private final class HTTPContext {
    var headers: [String: String] = [:]
    var body: (Int, UnsafeRawBufferPointer) throws -> Void
    var thrown: (any Error)?
    init(body: @escaping (Int, UnsafeRawBufferPointer) throws -> Void) { self.body = body }
}

enum HTTP {
    static func get(_ url: String, headers: [String], caFile: String?, allowHTTP: Bool, options: RegistryOptions,
                    resumeFrom: UInt64 = 0, userpwd: String? = nil, what: String,
                    body: @escaping (Int, UnsafeRawBufferPointer) throws -> Void) throws -> HTTPResult {
        let context = HTTPContext(body: body)
        var status = 0
        var errorBuffer = [CChar](repeating: 0, count: 512)
        let code: Int32 = withCStrings(headers) { headerPointers in
            headerPointers.withUnsafeBufferPointer { hp in
                url.withCString { cURL in
                    (caFile ?? "").withCString { cCA in
                        (userpwd ?? "").withCString { cUser in
                            var o = berth_http_options()
                            o.url = cURL
                            o.headers = hp.baseAddress
                            o.n_headers = hp.count
                            o.ca_file = caFile == nil ? nil : cCA
                            o.allow_http = allowHTTP ? 1 : 0
                            o.connect_timeout_seconds = options.timeoutSeconds
                            o.low_speed_seconds = options.timeoutSeconds
                            o.max_recv_speed = options.maxBytesPerSecond
                            o.resume_from = Int64(resumeFrom)
                            o.userpwd = userpwd == nil ? nil : cUser
                            let ctx = Unmanaged.passUnretained(context).toOpaque()
                            var s: Int = 0
                            let r = berth_http_get(&o, { ctx, status, data, len in
                                guard let ctx else { return 1 }
                                let c = Unmanaged<HTTPContext>.fromOpaque(ctx).takeUnretainedValue()
                                do {
                                    try c.body(Int(status), UnsafeRawBufferPointer(start: data, count: len))
                                    return 0
                                } catch {
                                    c.thrown = error
                                    return 1
                                }
                            }, { ctx, line, len in
                                guard let ctx, let line else { return }
                                let c = Unmanaged<HTTPContext>.fromOpaque(ctx).takeUnretainedValue()
                                let text = String(decoding: UnsafeRawBufferPointer(start: line, count: len), as: UTF8.self)
                                if text.hasPrefix("HTTP/") { c.headers = [:]; return }
                                guard let colon = text.firstIndex(of: ":") else { return }
                                c.headers[text[..<colon].lowercased()] = String(text[text.index(after: colon)...]).trimmed
                            }, ctx, &s, &errorBuffer, errorBuffer.count)
                            status = s
                            return r
                        }
                    }
                }
            }
        }
        if let thrown = context.thrown { throw thrown }
        if code != 0 {
            let message = String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw curlError(code, message, what: what)
        }
        return HTTPResult(status: status, headers: context.headers)
    }

    private static func withCStrings<R>(_ strings: [String], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
        let copies = strings.map { strdup($0) }
        defer { for c in copies { free(c) } }
        return body(copies.map { UnsafePointer($0) })
    }

    /// libcurl's CURLcode as a BerthError.
    static func curlError(_ code: Int32, _ message: String, what: String) -> BerthError {
        switch code {
        case 28:  // CURLE_OPERATION_TIMEDOUT
            return BerthError(.deadlineExceeded, "\(what): the registry stopped answering (\(message))", reason: "registry_timeout")
        case 35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91:  // TLS handshake and verification
            return BerthError(.unavailable, "\(what): TLS with the registry failed: \(message); if it uses a private CA, give it to berthd with --registry-ca HOST[:PORT]=FILE", reason: "registry_tls")
        case 1:  // CURLE_UNSUPPORTED_PROTOCOL: plain http where only https is allowed
            return BerthError(.permissionDenied, "\(what): \(message); plain HTTP is used only for registries named with berthd --insecure-registry", reason: "registry_insecure")
        default:
            return BerthError(.unavailable, "\(what): \(message)", reason: "registry_unavailable")
        }
    }
}

/// A client of one repository on one registry (OCI distribution API): manifests and
/// blobs, with bearer-token or basic authentication as the registry asks.
final class RegistryClient {
    let ref: ImageReference
    let options: RegistryOptions
    let username: String
    let password: String
    private var authorization: String?

    init(_ ref: ImageReference, options: RegistryOptions, username: String, password: String) {
        self.ref = ref
        self.options = options
        self.username = username
        self.password = password
    }

    private var insecure: Bool { options.insecure.contains(ref.host) || options.insecure.contains(ref.endpoint) }
    private var base: String { "\(insecure ? "http" : "https")://\(ref.endpoint)/v2/\(ref.repository)" }
    private var caFile: String? { options.caFiles[ref.host] ?? options.caFiles[ref.endpoint] }

    /// A GET of `path` under the repository. A 401 is answered once by authenticating as
    /// the registry's WWW-Authenticate says, then the request is made again. The body of
    /// a 2xx (or 206) response goes to `sink`; any other status is an error.
    func get(_ path: String, accept: [String] = [], resumeFrom: UInt64 = 0, what: String,
             sink: @escaping (Int, UnsafeRawBufferPointer) throws -> Void) throws -> HTTPResult {
        var attempt = 0
        while true {
            attempt += 1
            var headers = accept.isEmpty ? [] : ["Accept: " + accept.joined(separator: ", ")]
            if let authorization { headers.append("Authorization: " + authorization) }
            var errorBody: [UInt8] = []
            let result = try HTTP.get(base + path, headers: headers, caFile: caFile, allowHTTP: insecure, options: options,
                                      resumeFrom: resumeFrom, what: what) { status, bytes in
                if (200..<300).contains(status) { try sink(status, bytes) }
                else if errorBody.count < 65536 { errorBody += bytes.prefix(65536 - errorBody.count) }
            }
            if result.status == 401 && attempt == 1, let challenge = result.headers["www-authenticate"] {
                try authenticate(challenge, what: what)
                continue
            }
            if (200..<300).contains(result.status) || (result.status == 416 && resumeFrom > 0) { return result }
            throw statusError(result.status, errorBody, what: what)
        }
    }

    private func statusError(_ status: Int, _ body: [UInt8], what: String) -> BerthError {
        var detail = ""
        if let json = try? JSON.parse(body, what: "registry error", fractions: true),
           let first = try? json.array("errors", "registry error").first {
            detail = [first.string("code"), first.string("message")].filter { !$0.isEmpty }.joined(separator: ": ")
        }
        let said = detail.isEmpty ? "" : " (\(detail))"
        let at = "\(ref.host)/\(ref.repository)"
        switch status {
        case 401: return BerthError(.unauthenticated, "\(what): registry \(ref.host) refused the credentials (401)\(said); pull with --username and --password", reason: "registry_unauthorized")
        case 403: return BerthError(.permissionDenied, "\(what): registry \(ref.host) forbids access to \(ref.repository) (403)\(said)", reason: "registry_forbidden")
        case 404: return BerthError(.notFound, "\(what): not found on \(at) (404)\(said)", reason: "image_not_found")
        case 429: return BerthError(.resourceExhausted, "\(what): registry \(ref.host) is rate-limiting (429)\(said); try again later", reason: "registry_rate_limited")
        case 500...599: return BerthError(.unavailable, "\(what): registry \(ref.host) failed (\(status))\(said); try again later", reason: "registry_unavailable")
        default: return BerthError(.unavailable, "\(what): registry \(ref.host) answered \(status)\(said)", reason: "registry_unavailable")
        }
    }

    /// `Bearer realm="…",service="…",scope="…"`: a token from the realm (with basic
    /// credentials if given); `Basic realm="…"`: the credentials themselves.
    private func authenticate(_ challenge: String, what: String) throws {
        let lower = challenge.lowercased()
        if lower.hasPrefix("basic") {
            guard !username.isEmpty else {
                throw BerthError(.unauthenticated, "\(what): registry \(ref.host) needs credentials; pull with --username and --password", reason: "registry_unauthorized")
            }
            authorization = "Basic " + Base64.encode(Array("\(username):\(password)".utf8))
            return
        }
        guard lower.hasPrefix("bearer") else {
            throw BerthError(.unauthenticated, "\(what): registry \(ref.host) asks for an authentication Berth does not speak: \(challenge)", reason: "registry_unauthorized")
        }
        let params = Self.challengeParameters(String(challenge.dropFirst("bearer".count)))
        guard let realm = params["realm"], realm.hasPrefix("https://") || realm.hasPrefix("http://") else {
            throw BerthError(.unauthenticated, "\(what): registry \(ref.host) gave no usable token realm", reason: "registry_unauthorized")
        }
        var query: [String] = []
        if let service = params["service"] { query.append("service=" + Self.percentEncode(service)) }
        query.append("scope=" + Self.percentEncode(params["scope"] ?? "repository:\(ref.repository):pull"))
        let url = realm + (realm.contains("?") ? "&" : "?") + query.joined(separator: "&")
        let realmHost = realm.split(separator: "/").dropFirst(1).first.map(String.init) ?? ""
        var body: [UInt8] = []
        let result = try HTTP.get(url, headers: [], caFile: options.caFiles[realmHost] ?? caFile,
                                  allowHTTP: options.insecure.contains(realmHost), options: options,
                                  userpwd: username.isEmpty ? nil : "\(username):\(password)", what: "\(what): token") { _, bytes in
            guard body.count + bytes.count <= 1 << 20 else {
                throw BerthError(.invalidArgument, "\(what): the token server's answer is larger than 1 MiB")
            }
            body += bytes
        }
        guard result.status == 200 else {
            throw BerthError(.unauthenticated, "\(what): the token server \(realmHost) answered \(result.status)\(username.isEmpty ? "; the image may need credentials (--username, --password)" : "")", reason: "registry_unauthorized")
        }
        let json = try JSON.parse(body, what: "token answer", fractions: true)
        let token = json.string("token").isEmpty ? json.string("access_token") : json.string("token")
        guard !token.isEmpty else { throw BerthError(.unauthenticated, "\(what): the token server gave no token", reason: "registry_unauthorized") }
        authorization = "Bearer " + token
    }

    /// `key="value", key=value` pairs of a WWW-Authenticate challenge.
    static func challengeParameters(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        var chars = Substring(text)
        while !chars.isEmpty {
            chars = chars.drop { $0 == " " || $0 == "," }
            guard let eq = chars.firstIndex(of: "=") else { break }
            let key = chars[..<eq].trimmingSpaces.lowercased()
            chars = chars[chars.index(after: eq)...]
            var value = ""
            if chars.first == "\"" {
                chars = chars.dropFirst()
                while let c = chars.first, c != "\"" {
                    if c == "\\" { chars = chars.dropFirst() }
                    if let c2 = chars.first { value.append(c2) }
                    chars = chars.dropFirst()
                }
                chars = chars.dropFirst()
            } else {
                let end = chars.firstIndex(of: ",") ?? chars.endIndex
                value = String(chars[..<end]).trimmed
                chars = chars[end...]
            }
            out[key] = value
        }
        return out
    }

    static func percentEncode(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            if (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b == 0x2d || b == 0x2e || b == 0x5f || b == 0x7e {
                out.append(Character(Unicode.Scalar(b)))
            } else {
                out += "%" + String(b, radix: 16, uppercase: true).leftPadded(2)
            }
        }
        return out
    }

    /// A manifest (or index) by tag or digest, at most 4 MiB: its bytes, content type and digest.
    func manifest(_ reference: String) throws -> (bytes: [UInt8], contentType: String, digest: String) {
        var bytes: [UInt8] = []
        let what = "manifest \(ref.host)/\(ref.repository):\(reference)"
        let result = try get("/manifests/\(reference)", accept: MediaType.accept, what: what) { _, chunk in
            guard bytes.count + chunk.count <= 4 << 20 else { throw BerthError(.invalidArgument, "\(what) is larger than 4 MiB") }
            bytes += chunk
        }
        let digest = "sha256:" + Host.hex(try SHA256.digest(bytes))
        if reference.hasPrefix("sha256:") && digest != reference {
            throw BerthError(.invalidArgument, "\(what): digest mismatch: the registry sent \(digest)", reason: "digest_mismatch")
        }
        return (bytes, result.headers["content-type"] ?? "", digest)
    }

    /// A small blob (a config) into memory, verified.
    func smallBlob(_ d: Descriptor, what: String) throws -> [UInt8] {
        var bytes: [UInt8] = []
        _ = try get("/blobs/\(d.digest)", what: what) { _, chunk in
            guard bytes.count + chunk.count <= 16 << 20 else { throw BerthError(.invalidArgument, "\(what) is larger than 16 MiB") }
            bytes += chunk
        }
        let got = "sha256:" + Host.hex(try SHA256.digest(bytes))
        guard got == d.digest else {
            throw BerthError(.invalidArgument, "\(what): digest mismatch: the registry sent \(got), expected \(d.digest)", reason: "digest_mismatch")
        }
        return bytes
    }
}

extension Substring {
    var trimmingSpaces: String { String(self).trimmed }
}

extension String {
    func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

/// RFC 4648 base64, for basic authentication.
enum Base64 {
    static func encode(_ bytes: [UInt8]) -> String {
        let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            let b0 = bytes[i], b1 = i + 1 < bytes.count ? bytes[i + 1] : 0, b2 = i + 2 < bytes.count ? bytes[i + 2] : 0
            out.append(table[Int(b0 >> 2)])
            out.append(table[Int((b0 & 3) << 4 | b1 >> 4)])
            out.append(i + 1 < bytes.count ? table[Int((b1 & 15) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            out.append(i + 2 < bytes.count ? table[Int(b2 & 63)] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}
