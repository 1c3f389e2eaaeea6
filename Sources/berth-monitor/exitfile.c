// The exit file: how the container ended, written atomically so that whoever reads it
// (the agent now, or one started later) sees all of it or nothing.
#define _GNU_SOURCE
#include "monitor.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int exit_file_prepare(struct exit_file *ef, const char *path) {
    // config.c checked that the path is absolute and ends in a short enough name.
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash == path ? 1 : (size_t)(slash - path);
    char dir[PATH_MAX];
    memcpy(dir, path, dirlen);
    dir[dirlen] = '\0';
    (void)snprintf(ef->name, sizeof ef->name, "%s", slash + 1);
    (void)snprintf(ef->tmp, sizeof ef->tmp, "%s.tmp", slash + 1);

    // The directory stays open: the file is created, renamed and made durable relative
    // to it, and a missing or unusable directory shows up now, in the ready line, not
    // when the container has finished and there is nobody left to tell.
    ef->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (ef->dirfd < 0) return -1;
    if (unlinkat(ef->dirfd, ef->name, 0) < 0 && errno != ENOENT) {
        int saved = errno;
        close(ef->dirfd);
        ef->dirfd = -1;
        errno = saved;
        return -1;
    }
    // A temp file of a monitor that died while writing; harmless if it stays.
    (void)unlinkat(ef->dirfd, ef->tmp, 0);
    return 0;
}

int exit_file_write(struct exit_file *ef, int exit_code, int signal, int64_t finished_ns) {
    char text[128];
    int len = snprintf(text, sizeof text, "exit_code=%d\nsignal=%d\nfinished_ns=%" PRId64 "\n",
                       exit_code, signal, finished_ns);
    // O_NOFOLLOW: never write through a symlink someone left at the temp name.
    int fd = openat(ef->dirfd, ef->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    size_t done = 0;
    while (done < (size_t)len) {
        ssize_t n = write(fd, text + done, (size_t)len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = EIO;
            goto failed;
        }
        done += (size_t)n;
    }
    // fsync before rename: otherwise a crash can leave the new name on an empty file.
    if (fsync(fd) < 0) goto failed;
    if (close(fd) < 0) {
        fd = -1;
        goto failed;
    }
    fd = -1;
    if (renameat(ef->dirfd, ef->tmp, ef->dirfd, ef->name) < 0) goto failed;
    // And the directory, so that the rename itself survives a crash.
    if (fsync(ef->dirfd) < 0) return -1;
    return 0;

failed:;
    int saved = errno;
    if (fd >= 0) close(fd);
    (void)unlinkat(ef->dirfd, ef->tmp, 0);
    errno = saved;
    return -1;
}
