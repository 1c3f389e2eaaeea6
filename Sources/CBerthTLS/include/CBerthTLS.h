#ifndef CBERTH_TLS_H
#define CBERTH_TLS_H
// Mutual TLS for Berth's TCP connections, through OpenSSL's libssl (tls.c).
//
// A TLS connection is bridged to a plain socketpair: one thread per connection runs
// berth_tls_pump, which alone touches the SSL object (OpenSSL objects must not be used
// from two threads at once), moving bytes between the TLS socket and the plain end. The
// Connection layer above reads and writes the other plain end as it does a Unix socket.
#include <stddef.h>

struct berth_tls_ctx;

struct berth_tls_err {
    int code;            /// an errno-like value; 0 on success
    char message[512];   /// what failed, with OpenSSL's reason
};

/// A TLS 1.3 (1.2 allowed) context that presents `cert`/`key` and requires the peer to
/// present a certificate signed by `ca` (both sides: mutual TLS). NULL on failure.
struct berth_tls_ctx *berth_tls_ctx_new(int server, const char *cert, const char *key, const char *ca,
                                        struct berth_tls_err *err);
void berth_tls_ctx_free(struct berth_tls_ctx *ctx);

/// The peer's identity from its verified certificate.
struct berth_tls_peer {
    char cn[256];
    char ou[256];
};

/// Runs the handshake on the connected socket `fd` within `timeout_ms`. A client checks
/// the server's certificate against `expected_host` (a DNS name or an IP address, matched
/// against its SANs). Returns an opaque SSL handle for berth_tls_pump, or NULL with `err`.
/// The socket stays owned by the caller.
void *berth_tls_handshake(struct berth_tls_ctx *ctx, int fd, const char *expected_host, int timeout_ms,
                          struct berth_tls_peer *peer, struct berth_tls_err *err);

/// Moves bytes both ways between the TLS connection on `fd` and the plain socket `plain`
/// until either side closes or fails; then shuts TLS down, frees `ssl` and closes `plain`
/// (not `fd`). Blocks: run it on a thread of its own.
void berth_tls_pump(void *ssl, int fd, int plain);

/// Frees a handshake's SSL handle that will not be pumped.
void berth_tls_free(void *ssl);

#endif
