// nftables through libnftables: the nft(8) language, run as one transaction.
#define _GNU_SOURCE
#include "netpriv.h"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <nftables/libnftables.h>

// nft_ctx_new runs a one-time, unsynchronised global initialisation (the GMP allocator
// hooks, xtables), and the agent runs nft rarely, so calls are simply serialised.
static pthread_mutex_t nft_lock = PTHREAD_MUTEX_INITIALIZER;

/// Copies `text` into the message without surrounding whitespace (libnftables ends its
/// error output with newlines).
static void copy_trimmed(struct berth_net_err *err, const char *text) {
    if (err == NULL) return;
    while (*text == ' ' || *text == '\n' || *text == '\t') text++;
    size_t len = strlen(text);
    while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\n' || text[len - 1] == '\t')) len--;
    if (len >= sizeof err->message) len = sizeof err->message - 1;
    memcpy(err->message, text, len);
    err->message[len] = '\0';
}

int berth_nft_run(const char *commands, struct berth_net_err *err) {
    if (commands == NULL) return berth_net_fail(err, EINVAL, "nft: no commands");
    pthread_mutex_lock(&nft_lock);
    int rc;
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    if (ctx == NULL) {
        rc = berth_net_fail(err, ENOMEM, "nft: create context: out of memory");
        goto out;
    }
    // Both buffered: errors become the message, and output (of a `list` command) must
    // not land on the agent's stdout.
    if (nft_ctx_buffer_error(ctx) != 0 || nft_ctx_buffer_output(ctx) != 0) {
        rc = berth_net_fail(err, ENOMEM, "nft: buffer output: out of memory");
        goto out;
    }
    // One buffer is one batch: the kernel applies all of it or none of it.
    if (nft_run_cmd_from_buffer(ctx, commands) != 0) {
        const char *text = nft_ctx_get_error_buffer(ctx);
        if (text == NULL || text[0] == '\0') text = "nft: the commands failed (no error output)";
        copy_trimmed(err, text);
        if (err != NULL) err->code = EIO;
        rc = EIO;
        goto out;
    }
    rc = berth_net_ok(err);
out:
    if (ctx != NULL) nft_ctx_free(ctx);
    pthread_mutex_unlock(&nft_lock);
    return rc;
}
