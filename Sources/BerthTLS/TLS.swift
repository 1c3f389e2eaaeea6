#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import CBerthTLS

/// A TLS configuration: this side's certificate and key, and the CA the peer's
/// certificate must be signed by (mutual TLS, docs/security.md).
public final class TLSContext: @unchecked Sendable {
    // Only read after init; OpenSSL's SSL_CTX may be shared by threads once configured.
    let ctx: OpaquePointer
    public let isServer: Bool

    public init(server: Bool, certificate: String, key: String, ca: String) throws(BerthError) {
        var err = berth_tls_err()
        guard let c = berth_tls_ctx_new(server ? 1 : 0, certificate, key, ca, &err) else {
            throw BerthError(.invalidArgument, "TLS: \(TLS.message(&err))")
        }
        ctx = c
        isServer = server
    }

    deinit { berth_tls_ctx_free(ctx) }
}

/// Who the peer is, from its verified certificate.
public struct TLSPeer: Sendable, Hashable {
    public var commonName: String
    public var organizationalUnit: String
}

public enum TLS {
    static func message(_ err: inout berth_tls_err) -> String {
        withUnsafeBytes(of: &err.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// Runs the handshake on a connected socket and, once the peer is verified, bridges
    /// it to a socketpair: the returned descriptor carries the plain bytes (give it to a
    /// Connection); a thread of its own runs the TLS side and closes `fd` when either
    /// side ends. A client checks the server's certificate against `expectedHost`. On
    /// failure `fd` is closed and the error is UNAUTHENTICATED (a certificate refused)
    /// or UNAVAILABLE.
    public static func wrap(_ fd: FileDescriptor, context: TLSContext, expectedHost: String? = nil,
                            timeoutMillis: Int32 = 10_000) throws(BerthError) -> (FileDescriptor, TLSPeer) {
        var err = berth_tls_err()
        var peer = berth_tls_peer()
        guard let ssl = berth_tls_handshake(context.ctx, fd.rawValue, expectedHost, timeoutMillis, &peer, &err) else {
            fd.close()
            let text = message(&err)
            throw BerthError(err.code == EACCES ? .unauthenticated : .unavailable, text)
        }
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            let e = Errno.current
            berth_tls_free(ssl)
            fd.close()
            throw e.error("TLS socketpair")
        }
        let cn = withUnsafeBytes(of: &peer.cn) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let ou = withUnsafeBytes(of: &peer.ou) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let tlsFD = fd.rawValue, plain = pair[1]
        let handle = UInt(bitPattern: ssl)
        startThread("berth-tls") {
            berth_tls_pump(UnsafeMutableRawPointer(bitPattern: handle), tlsFD, plain)
            close(tlsFD)
        }
        return (FileDescriptor(rawValue: pair[0]), TLSPeer(commonName: cn, organizationalUnit: ou))
    }
}
