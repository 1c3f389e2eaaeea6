// The container's log in the CRI format: "<time> <stream> <F|P> <content>\n" per record,
// rotated by size (docs/monitor.md, "Log" and "Rotation").
#define _GNU_SOURCE
#include "monitor.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

// O_APPEND: every record lands at the end even if someone else appends too (a reader
// never sees a record overwritten). Mode 0640: logs may hold secrets a container
// printed; the monitor's umask is 0, so this is the mode the file gets.
static int open_live(const char *path, uint64_t *size) {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    *size = (uint64_t)st.st_size;
    return fd;
}

int log_open(struct log_file *lf, const char *path, uint64_t max_bytes, unsigned int max_files) {
    memset(lf, 0, sizeof *lf);
    lf->path = path;
    lf->max_bytes = max_bytes;
    lf->max_files = max_files;
    lf->fd = open_live(path, &lf->size);
    return lf->fd < 0 ? -1 : 0;
}

void log_close(struct log_file *lf) {
    if (lf->fd >= 0) close(lf->fd);
    lf->fd = -1;
}

// Reports a failed rotation step, once until a rotation succeeds again.
static void rotation_failed(struct log_file *lf, const char *step, const char *from, const char *to) {
    if (!lf->rotate_failing) {
        diag("rotate log: %s %s%s%s: %s", step, from, to != NULL ? " to " : "", to != NULL ? to : "", errno_text(errno));
    }
    lf->rotate_failing = 1;
}

// console.log.(N-1) → .N, …, console.log → .1, then a new console.log. rename(2)
// replaces the target, which drops the oldest file. A failure is reported and the
// monitor goes on writing to the file it has: losing output would be worse than a log
// that grows past its limit. The next record tries again.
static void rotate(struct log_file *lf) {
    char from[PATH_MAX], to[PATH_MAX];
    if (lf->max_files == 0) {
        if (unlink(lf->path) < 0 && errno != ENOENT) {
            rotation_failed(lf, "unlink", lf->path, NULL);
            return;
        }
    } else {
        for (unsigned int i = lf->max_files - 1; i >= 1; i--) {
            (void)snprintf(from, sizeof from, "%s.%u", lf->path, i);
            (void)snprintf(to, sizeof to, "%s.%u", lf->path, i + 1);
            if (rename(from, to) < 0 && errno != ENOENT) {
                rotation_failed(lf, "rename", from, to);
                return;
            }
        }
        (void)snprintf(to, sizeof to, "%s.1", lf->path);
        if (rename(lf->path, to) < 0 && errno != ENOENT) {
            rotation_failed(lf, "rename", lf->path, to);
            return;
        }
    }
    uint64_t size = 0;
    int fd = open_live(lf->path, &size);
    // Until it opens, records go on into the renamed file.
    if (fd < 0) {
        rotation_failed(lf, "open", lf->path, NULL);
        return;
    }
    close(lf->fd);
    lf->fd = fd;
    lf->size = size;
    lf->rotate_failing = 0;
}

// One record with one writev(2), so that a reader sees it whole (O_APPEND writes to a
// regular file are not interleaved with other writers).
static void write_record(struct log_file *lf, const char *stream, char tag, const char *content, size_t len,
                         int64_t ns) {
    // Timestamps never go back, even when the wall clock does (an NTP step): readers
    // merge and resume by time.
    if (ns < lf->last_ns) ns = lf->last_ns;
    lf->last_ns = ns;

    char header[RFC3339_NANO_LEN + 16];
    format_rfc3339_nano(ns, header);
    size_t hlen = RFC3339_NANO_LEN;
    header[hlen++] = ' ';
    size_t slen = strlen(stream);
    memcpy(header + hlen, stream, slen);
    hlen += slen;
    header[hlen++] = ' ';
    header[hlen++] = tag;
    header[hlen++] = ' ';

    uint64_t total = hlen + len + 1;
    // An empty file takes any record, so one larger than the limit gets a file of its own.
    if (lf->max_bytes > 0 && lf->size > 0 && lf->size + total > lf->max_bytes) rotate(lf);

    struct iovec iov[3] = {
        { .iov_base = header, .iov_len = hlen },
        { .iov_base = (void *)content, .iov_len = len },
        { .iov_base = "\n", .iov_len = 1 },
    };
    struct iovec *next = iov;
    int count = 3;
    while (count > 0) {
        ssize_t n = writev(lf->fd, next, count);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            // ENOSPC, EIO, ...: the record is lost, the container goes on. Reported once
            // until a write succeeds again, so a full disk does not also fill the
            // diagnostics file.
            if (!lf->write_failing) diag("write log %s: %s", lf->path, errno_text(n < 0 ? errno : EIO));
            lf->write_failing = 1;
            return;
        }
        lf->size += (uint64_t)n;
        // A short write (a regular file nearly full): go on after what was written.
        size_t done = (size_t)n;
        while (count > 0 && done >= next->iov_len) {
            done -= next->iov_len;
            next++;
            count--;
        }
        if (count > 0) {
            next->iov_base = (char *)next->iov_base + done;
            next->iov_len -= done;
        }
    }
    lf->write_failing = 0;
}

void log_input(struct log_file *lf, struct log_stream *s, const char *data, size_t n, int64_t now) {
    const char *p = data;
    const char *end = data + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t seg = (size_t)((nl != NULL ? nl : end) - p);
        if (s->len == 0 && nl != NULL && seg <= LOG_LINE_MAX) {
            // The common case, a whole line in this read: straight from the read buffer.
            write_record(lf, s->name, 'F', p, seg, now);
            p = nl + 1;
            continue;
        }
        while (seg > 0) {
            // A full buffer becomes a P record only once more of the line arrives: a line
            // of exactly LOG_LINE_MAX bytes is one F record.
            if (s->len == LOG_LINE_MAX) {
                write_record(lf, s->name, 'P', s->line, s->len, now);
                s->len = 0;
            }
            size_t take = LOG_LINE_MAX - s->len;
            if (take > seg) take = seg;
            memcpy(s->line + s->len, p, take);
            s->len += take;
            p += take;
            seg -= take;
        }
        if (nl != NULL) {
            write_record(lf, s->name, 'F', s->line, s->len, now);
            s->len = 0;
            p = nl + 1;
        }
    }
}

void log_end(struct log_file *lf, struct log_stream *s, int64_t now) {
    if (s->len > 0) write_record(lf, s->name, 'P', s->line, s->len, now);
    s->len = 0;
}
