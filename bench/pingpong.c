// The floor for Berth's request round trip: a raw C ping-pong over the same socket kind
// (Unix stream, loopback TCP, loopback TCP with mutual TLS), with frames the size of an
// Info call on the wire (a 10-byte header plus payload each way). No framing library,
// no threads, no allocation on the hot path: what the kernel (and OpenSSL) cost alone.
//
//   pingpong unix|tcp|tls ROUNDS [CERTDIR]      one JSON object on stdout:
//     {"kind":…, "rtt_us":[…ROUNDS samples…], "pipelined_rps":N}
//
// The server is a forked child on a socket of its own; the client times each round trip
// with CLOCK_MONOTONIC, then keeps 64 requests in flight for one second (the same depth
// berth-bench uses for BerthClient) and counts answers. CERTDIR (for tls) holds ca.pem,
// agent.pem/agent-key.pem (server) and client.pem/client-key.pem, from deploy/make-certs.sh.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// Info on the wire here: the request is a header and a 2-byte Request; the response a
// header and a ~300-byte InfoResponse. Close enough to stand for it.
enum { REQ = 12, RESP = 310, DEPTH = 64 };

static void die(const char *what) { perror(what); exit(1); }

typedef struct { int fd; SSL *ssl; } conn;

static ssize_t conn_read(conn *c, void *buf, size_t n) {
    if (c->ssl) { int r = SSL_read(c->ssl, buf, (int)n); return r > 0 ? r : -1; }
    ssize_t r;
    do { r = read(c->fd, buf, n); } while (r < 0 && errno == EINTR);
    return r;
}

static int conn_write(conn *c, const void *buf, size_t n) {
    if (c->ssl) return SSL_write(c->ssl, buf, (int)n) == (int)n ? 0 : -1;
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(c->fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w; n -= (size_t)w;
    }
    return 0;
}

static int read_full(conn *c, char *buf, size_t n) {
    while (n > 0) {
        ssize_t r = conn_read(c, buf, n);
        if (r <= 0) return -1;
        buf += r; n -= (size_t)r;
    }
    return 0;
}

static SSL_CTX *tls_ctx(int server, const char *dir) {
    char cert[4096], key[4096], ca[4096];
    snprintf(cert, sizeof cert, "%s/%s.pem", dir, server ? "agent" : "client");
    snprintf(key, sizeof key, "%s/%s-key.pem", dir, server ? "agent" : "client");
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        ERR_print_errors_fp(stderr);
        exit(1);
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return ctx;
}

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: pingpong unix|tcp|tls ROUNDS [CERTDIR]\n"); return 64; }
    const char *kind = argv[1];
    int rounds = atoi(argv[2]);
    int tls = strcmp(kind, "tls") == 0, unixsock = strcmp(kind, "unix") == 0;
    if (tls && argc < 4) { fprintf(stderr, "pingpong tls needs CERTDIR\n"); return 64; }
    signal(SIGPIPE, SIG_IGN);

    int lfd;
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    char dir[] = "/tmp/pingpong-XXXXXX";
    if (unixsock) {
        if (!mkdtemp(dir)) die("mkdtemp");
        snprintf(sun.sun_path, sizeof sun.sun_path, "%s/s", dir);
        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&sun, sizeof sun) < 0) die("bind unix");
    } else {
        lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        socklen_t len = sizeof sin;
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof sin) < 0 ||
            getsockname(lfd, (struct sockaddr *)&sin, &len) < 0) die("bind tcp");
    }
    if (listen(lfd, 1) < 0) die("listen");

    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {   // the server: answer every request with a response-sized frame
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) die("accept");
        int one = 1;
        if (!unixsock) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn c = { fd, NULL };
        if (tls) {
            c.ssl = SSL_new(tls_ctx(1, argv[3]));
            SSL_set_fd(c.ssl, fd);
            if (SSL_accept(c.ssl) != 1) { ERR_print_errors_fp(stderr); _exit(1); }
        }
        char req[REQ], resp[RESP];
        memset(resp, 'r', sizeof resp);
        while (read_full(&c, req, REQ) == 0)
            if (conn_write(&c, resp, RESP) < 0) break;
        _exit(0);
    }
    close(lfd);

    int fd = socket(unixsock ? AF_UNIX : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (unixsock ? connect(fd, (struct sockaddr *)&sun, sizeof sun) : connect(fd, (struct sockaddr *)&sin, sizeof sin)) die("connect");
    int one = 1;
    if (!unixsock) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn c = { fd, NULL };
    if (tls) {
        c.ssl = SSL_new(tls_ctx(0, argv[3]));
        SSL_set_fd(c.ssl, fd);
        if (SSL_connect(c.ssl) != 1) { ERR_print_errors_fp(stderr); return 1; }
    }

    char req[REQ], resp[RESP * DEPTH];
    memset(req, 'q', sizeof req);
    double *rtt = calloc((size_t)rounds, sizeof *rtt);
    for (int i = 0; i < 200; i++)   // warm-up
        if (conn_write(&c, req, REQ) < 0 || read_full(&c, resp, RESP) < 0) die("warm-up");
    for (int i = 0; i < rounds; i++) {
        double t0 = now_us();
        if (conn_write(&c, req, REQ) < 0 || read_full(&c, resp, RESP) < 0) die("round trip");
        rtt[i] = now_us() - t0;
    }

    // Pipelined: DEPTH requests in flight; each answer read lets one more go.
    long done = 0;
    for (int i = 0; i < DEPTH; i++) if (conn_write(&c, req, REQ) < 0) die("pipeline");
    double t0 = now_us(), end = t0 + 1e6;
    while (now_us() < end) {
        if (read_full(&c, resp, RESP) < 0 || conn_write(&c, req, REQ) < 0) die("pipeline");
        done++;
    }
    double secs = (now_us() - t0) / 1e6;
    for (int i = 0; i < DEPTH; i++) if (read_full(&c, resp, RESP) < 0) die("drain");

    printf("{\"kind\":\"%s\",\"rtt_us\":[", kind);
    for (int i = 0; i < rounds; i++) printf("%s%.2f", i ? "," : "", rtt[i]);
    printf("],\"pipelined_rps\":%.0f}\n", (double)done / secs);

    if (c.ssl) SSL_shutdown(c.ssl);
    close(fd);
    int status;
    waitpid(child, &status, 0);
    if (unixsock) { unlink(sun.sun_path); rmdir(dir); }
    return 0;
}
