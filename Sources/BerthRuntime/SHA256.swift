import BerthErrors
import CCrypto

/// An incremental SHA-256 over OpenSSL's EVP digest API (`EVP_DigestInit_ex`,
/// `EVP_DigestUpdate`, `EVP_DigestFinal_ex`). Used for content-addressed image ids.
/// Not thread-safe: one hasher per stream.
final class SHA256 {
    private let context: OpaquePointer

    /// `EVP_MD_CTX_new` + `EVP_DigestInit_ex(…, EVP_sha256(), nil)`.
    init() throws {
        guard let context = EVP_MD_CTX_new() else {
            throw BerthError(.resourceExhausted, "sha256: EVP_MD_CTX_new failed")
        }
        self.context = context
        guard EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1 else {
            EVP_MD_CTX_free(context)
            throw BerthError(.internal, "sha256: EVP_DigestInit_ex failed")
        }
    }

    deinit { EVP_MD_CTX_free(context) }

    /// `EVP_DigestUpdate`. It cannot fail for SHA-256 with a valid context, so a
    /// failure is a bug, not an error to handle.
    func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        let ok = EVP_DigestUpdate(context, base, bytes.count)
        precondition(ok == 1, "EVP_DigestUpdate failed")
    }

    /// Hashes more bytes.
    func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// `EVP_DigestFinal_ex`: the 32-byte digest. The hasher must not be used afterwards.
    func finalize() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let ok = out.withUnsafeMutableBufferPointer { EVP_DigestFinal_ex(context, $0.baseAddress, &length) }
        precondition(ok == 1 && length == 32, "EVP_DigestFinal_ex failed")
        return Array(out.prefix(Int(length)))
    }

    /// The SHA-256 of `bytes` in one call.
    static func digest(_ bytes: [UInt8]) throws -> [UInt8] {
        let h = try SHA256()
        h.update(bytes)
        return h.finalize()
    }
}
