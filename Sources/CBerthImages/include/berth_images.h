// HTTP(S) GETs for the registry client (libcurl), and extended attributes for layer
// extraction. Swift cannot call libcurl's variadic curl_easy_setopt, so the whole request
// is set up here from one options struct.
#ifndef BERTH_IMAGES_H
#define BERTH_IMAGES_H
#include <stddef.h>
#include <sys/types.h>

struct berth_http_options {
    const char *url;
    const char *const *headers;   // "Accept: …", "Authorization: …"
    size_t n_headers;
    const char *ca_file;          // NULL or "": the system CA store
    int allow_http;               // plain http:// (and redirects to it) allowed
    long connect_timeout_seconds;
    long low_speed_seconds;       // abort when under 1 byte/s for this long (a hung server)
    long long max_recv_speed;     // bytes/s, 0: unlimited
    long long resume_from;        // > 0: Range: bytes=N-
    const char *userpwd;          // "user:password" for basic auth, or NULL
};

// `data` gets the body with the response's status; returning non-zero aborts the transfer.
typedef int (*berth_http_data_cb)(void *ctx, long status, const char *data, size_t len);
// `header` gets every header line (of redirects too; a new "HTTP/" line starts a response).
typedef void (*berth_http_header_cb)(void *ctx, const char *line, size_t len);

// Performs the GET, following redirects (at most 10; https only unless allow_http).
// Returns the CURLcode (0 = a response was received, whatever its status); `status`
// gets the final HTTP status; `error` a message on failure.
int berth_http_get(const struct berth_http_options *options, berth_http_data_cb data,
                   berth_http_header_cb header, void *ctx, long *status, char *error, size_t error_len);

// setxattr(2)/fsetxattr(2), which Swift's Glibc module does not export.
int berth_setxattr(const char *path, const char *name, const void *value, size_t size);
int berth_fsetxattr(int fd, const char *name, const void *value, size_t size);
ssize_t berth_fgetxattr(int fd, const char *name, void *value, size_t size);
#endif
