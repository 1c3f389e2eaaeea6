#include "berth_images.h"
// The variadic functions are called through pointers: no type-checking macros.
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>

// libcurl is loaded on the first pull, not linked: with its TLS, HTTP/2, LDAP and
// Kerberos libraries it is about 4 MiB of the agent's resident memory, which an agent
// that never pulls should not carry (bench/results: idle RSS).
static struct {
    CURLcode (*global_init)(long);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    CURLcode (*easy_perform)(CURL *);
    void (*easy_cleanup)(CURL *);
    const char *(*easy_strerror)(CURLcode);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
} api;
static char load_error[256];

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void global_init(void) {
    void *lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        snprintf(load_error, sizeof load_error, "libcurl is not available (%s): apt-get install -y libcurl4", dlerror());
        return;
    }
#define LOAD(field, symbol) \
    if ((*(void **)&api.field = dlsym(lib, symbol)) == NULL) { \
        snprintf(load_error, sizeof load_error, "libcurl.so.4 has no %s", symbol); \
        return; \
    }
    LOAD(global_init, "curl_global_init")
    LOAD(easy_init, "curl_easy_init")
    LOAD(easy_setopt, "curl_easy_setopt")
    LOAD(easy_getinfo, "curl_easy_getinfo")
    LOAD(easy_perform, "curl_easy_perform")
    LOAD(easy_cleanup, "curl_easy_cleanup")
    LOAD(easy_strerror, "curl_easy_strerror")
    LOAD(slist_append, "curl_slist_append")
    LOAD(slist_free_all, "curl_slist_free_all")
#undef LOAD
    api.global_init(CURL_GLOBAL_DEFAULT);
}

#undef curl_easy_setopt
#undef curl_easy_getinfo
#define curl_easy_init api.easy_init
#define curl_easy_setopt api.easy_setopt
#define curl_easy_getinfo api.easy_getinfo
#define curl_easy_perform api.easy_perform
#define curl_easy_cleanup api.easy_cleanup
#define curl_easy_strerror api.easy_strerror
#define curl_slist_append api.slist_append
#define curl_slist_free_all api.slist_free_all

struct context {
    CURL *curl;
    berth_http_data_cb data;
    berth_http_header_cb header;
    void *ctx;
};

static size_t on_data(char *ptr, size_t size, size_t n, void *userdata) {
    struct context *c = userdata;
    long status = 0;
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    if (c->data(c->ctx, status, ptr, size * n) != 0) return 0;  // CURLE_WRITE_ERROR
    return size * n;
}

static size_t on_header(char *ptr, size_t size, size_t n, void *userdata) {
    struct context *c = userdata;
    c->header(c->ctx, ptr, size * n);
    return size * n;
}

int berth_http_get(const struct berth_http_options *o, berth_http_data_cb data,
                   berth_http_header_cb header, void *ctx, long *status, char *error, size_t error_len) {
    pthread_once(&once, global_init);
    *status = 0;
    if (error_len) error[0] = 0;
    if (load_error[0]) {
        snprintf(error, error_len, "%s", load_error);
        return CURLE_FAILED_INIT;
    }
    CURL *curl = curl_easy_init();
    if (!curl) {
        snprintf(error, error_len, "curl_easy_init failed");
        return CURLE_FAILED_INIT;
    }
    struct context c = {curl, data, header, ctx};
    struct curl_slist *list = NULL;
    for (size_t i = 0; i < o->n_headers; i++) list = curl_slist_append(list, o->headers[i]);
    char errbuf[CURL_ERROR_SIZE] = {0};
    const char *protocols = o->allow_http ? "http,https" : "https";

    curl_easy_setopt(curl, CURLOPT_URL, o->url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, protocols);
    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, protocols);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &c);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &c);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);  // a multithreaded agent: no SIGALRM
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "berthd");
    if (o->ca_file && o->ca_file[0]) curl_easy_setopt(curl, CURLOPT_CAINFO, o->ca_file);
    if (o->connect_timeout_seconds > 0) curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, o->connect_timeout_seconds);
    if (o->low_speed_seconds > 0) {
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, o->low_speed_seconds);
    }
    if (o->max_recv_speed > 0) curl_easy_setopt(curl, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)o->max_recv_speed);
    if (o->resume_from > 0) curl_easy_setopt(curl, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)o->resume_from);
    if (o->userpwd) {
        curl_easy_setopt(curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(curl, CURLOPT_USERPWD, o->userpwd);
    }
    CURLcode r = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
    if (r != CURLE_OK) snprintf(error, error_len, "%s", errbuf[0] ? errbuf : curl_easy_strerror(r));
    curl_slist_free_all(list);
    curl_easy_cleanup(curl);
    return (int)r;
}

int berth_setxattr(const char *path, const char *name, const void *value, size_t size) {
    return setxattr(path, name, value, size, 0);
}

int berth_fsetxattr(int fd, const char *name, const void *value, size_t size) {
    return fsetxattr(fd, name, value, size, 0);
}

ssize_t berth_fgetxattr(int fd, const char *name, void *value, size_t size) {
    return fgetxattr(fd, name, value, size);
}
