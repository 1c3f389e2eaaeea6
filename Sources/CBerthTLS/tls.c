#include <stdlib.h>
// Mutual TLS through libssl, and the pump that bridges a TLS socket to a plain one.
#define _GNU_SOURCE
#include "CBerthTLS.h"
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct berth_tls_ctx { SSL_CTX *ctx; int server; };

static void fail(struct berth_tls_err *err, int code, const char *fmt, ...) {
    if (err == NULL) return;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    unsigned long e = ERR_get_error();
    if (e != 0 && n >= 0 && (size_t)n < sizeof err->message) {
        char reason[256];
        ERR_error_string_n(e, reason, sizeof reason);
        snprintf(err->message + n, sizeof err->message - (size_t)n, ": %s", reason);
    }
    ERR_clear_error();
}

struct berth_tls_ctx *berth_tls_ctx_new(int server, const char *cert, const char *key, const char *ca,
                                        struct berth_tls_err *err) {
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (ctx == NULL) { fail(err, ENOMEM, "TLS context"); return NULL; }
    // TLS 1.2 at least; 1.3 is negotiated whenever both sides have it.
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) { fail(err, EINVAL, "certificate %s", cert); goto bad; }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) { fail(err, EINVAL, "private key %s", key); goto bad; }
    if (SSL_CTX_check_private_key(ctx) != 1) { fail(err, EINVAL, "private key %s does not match certificate %s", key, cert); goto bad; }
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) { fail(err, EINVAL, "CA %s", ca); goto bad; }
    // Mutual: a server demands a client certificate and refuses a connection without one.
    SSL_CTX_set_verify(ctx, server ? (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT) : SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    struct berth_tls_ctx *out = calloc(1, sizeof *out);
    if (out == NULL) { fail(err, ENOMEM, "TLS context"); goto bad; }
    out->ctx = ctx;
    out->server = server;
    return out;
bad:
    SSL_CTX_free(ctx);
    return NULL;
}

void berth_tls_ctx_free(struct berth_tls_ctx *ctx) {
    if (ctx == NULL) return;
    SSL_CTX_free(ctx->ctx);
    free(ctx);
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// Waits for what OpenSSL asked for (WANT_READ / WANT_WRITE) until `deadline`.
static int wait_for(int fd, int want, long long deadline) {
    long long left = deadline - now_ms();
    if (left <= 0) return 0;
    struct pollfd p = { .fd = fd, .events = (short)(want == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN), .revents = 0 };
    int r;
    do { r = poll(&p, 1, (int)left); } while (r < 0 && errno == EINTR);
    return r > 0;
}

void *berth_tls_handshake(struct berth_tls_ctx *ctx, int fd, const char *expected_host, int timeout_ms,
                          struct berth_tls_peer *peer, struct berth_tls_err *err) {
    memset(peer, 0, sizeof *peer);
    SSL *ssl = SSL_new(ctx->ctx);
    if (ssl == NULL) { fail(err, ENOMEM, "TLS session"); return NULL; }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) { fail(err, errno, "non-blocking socket"); SSL_free(ssl); return NULL; }
    SSL_set_fd(ssl, fd);
    if (!ctx->server && expected_host != NULL && expected_host[0] != '\0') {
        // The server's certificate must name the host or IP we dialled (like --tlsverify).
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        if (X509_VERIFY_PARAM_set1_ip_asc(param, expected_host) != 1) {
            X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if (X509_VERIFY_PARAM_set1_host(param, expected_host, 0) != 1) { fail(err, EINVAL, "host name %s", expected_host); SSL_free(ssl); return NULL; }
            SSL_set_tlsext_host_name(ssl, expected_host);
        }
    }
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        int r = ctx->server ? SSL_accept(ssl) : SSL_connect(ssl);
        if (r == 1) break;
        int e = SSL_get_error(ssl, r);
        if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && wait_for(fd, e, deadline)) continue;
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) { fail(err, ETIMEDOUT, "TLS handshake timed out after %d ms", timeout_ms); SSL_free(ssl); return NULL; }
        long v = SSL_get_verify_result(ssl);
        if (v != X509_V_OK) fail(err, EACCES, "TLS handshake: the peer's certificate: %s", X509_verify_cert_error_string(v));
        else fail(err, EPROTO, "TLS handshake failed");
        SSL_free(ssl);
        return NULL;
    }
    X509 *cert = SSL_get1_peer_certificate(ssl);
    if (cert == NULL || SSL_get_verify_result(ssl) != X509_V_OK) {
        if (cert != NULL) X509_free(cert);
        fail(err, EACCES, "the peer presented no valid certificate");
        SSL_free(ssl);
        return NULL;
    }
    X509_NAME *subject = X509_get_subject_name(cert);
    X509_NAME_get_text_by_NID(subject, NID_commonName, peer->cn, (int)sizeof peer->cn);
    X509_NAME_get_text_by_NID(subject, NID_organizationalUnitName, peer->ou, (int)sizeof peer->ou);
    X509_free(cert);
    return ssl;
}

void berth_tls_free(void *ssl) { SSL_free((SSL *)ssl); }

// The pump: the only user of `ssl`. Both sockets are non-blocking; poll decides what to
// do next. Bytes read from one side wait in a buffer until the other side takes them
// (bounded: 16 KiB each way, so a slow side slows the other instead of growing memory).
void berth_tls_pump(void *handle, int fd, int plain) {
    SSL *ssl = (SSL *)handle;
    int pf = fcntl(plain, F_GETFL);
    if (pf >= 0) (void)fcntl(plain, F_SETFL, pf | O_NONBLOCK);
    char up[16384], down[16384];   // up: plain → TLS; down: TLS → plain
    size_t up_len = 0, up_off = 0, down_len = 0, down_off = 0;
    int tls_open = 1, plain_open = 1, want_write_for_read = 0;
    while (tls_open || down_len > down_off) {
        // TLS → plain.
        if (tls_open && down_len == down_off) {
            int r = SSL_read(ssl, down, (int)sizeof down);
            if (r > 0) { down_len = (size_t)r; down_off = 0; want_write_for_read = 0; }
            else {
                int e = SSL_get_error(ssl, r);
                if (e == SSL_ERROR_WANT_WRITE) want_write_for_read = 1;
                else if (e != SSL_ERROR_WANT_READ) tls_open = 0;
            }
        }
        if (down_len > down_off) {
            ssize_t w = write(plain, down + down_off, down_len - down_off);
            if (w > 0) down_off += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR) break;
            if (down_off == down_len) down_len = down_off = 0;
        }
        // plain → TLS.
        if (plain_open && up_len == up_off) {
            ssize_t r = read(plain, up, sizeof up);
            if (r > 0) { up_len = (size_t)r; up_off = 0; }
            else if (r == 0 || (errno != EAGAIN && errno != EINTR)) plain_open = 0;
        }
        if (up_len > up_off && tls_open) {
            int w = SSL_write(ssl, up + up_off, (int)(up_len - up_off));
            if (w > 0) { up_off += (size_t)w; if (up_off == up_len) up_len = up_off = 0; }
            else {
                int e = SSL_get_error(ssl, w);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) tls_open = 0;
            }
        }
        if (!plain_open && up_len == up_off) break;  // the Connection above closed
        // Sleep until something can move.
        struct pollfd p[2] = {
            { .fd = fd, .events = (short)((tls_open && down_len == down_off ? POLLIN : 0)
                                          | (want_write_for_read || up_len > up_off ? POLLOUT : 0)), .revents = 0 },
            { .fd = plain, .events = (short)((plain_open && up_len == up_off ? POLLIN : 0) | (down_len > down_off ? POLLOUT : 0)), .revents = 0 },
        };
        if (SSL_pending(ssl) > 0 && down_len == down_off) continue;
        int r;
        do { r = poll(p, 2, 1000); } while (r < 0 && errno == EINTR);
        if (r < 0) break;
        if ((p[0].revents & (POLLERR | POLLNVAL)) != 0) tls_open = 0;
    }
    (void)SSL_shutdown(ssl);
    SSL_free(ssl);
    close(plain);
}
