// The CONFIG file: NUL-terminated strings taken in pairs, key then value (docs/monitor.md).
// Parsing is strict: the agent and the monitor ship together, so anything unexpected is
// a bug worth stopping for, not something to guess around.
#define _GNU_SOURCE
#include "monitor.h"
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum key {
    // Keys that must appear exactly once.
    KEY_ID, KEY_ROOTFS, KEY_HOSTNAME, KEY_CWD, KEY_UID, KEY_GID,
    KEY_LOG, KEY_LOG_MAX_BYTES, KEY_LOG_MAX_FILES, KEY_EXIT,
    SINGLE_KEYS,
    // Keys that may appear once.
    KEY_NETNS = SINGLE_KEYS, KEY_IPCNS, KEY_UTSNS, KEY_PIDNS,
    KEY_HARDEN, KEY_CAP_MASK, KEY_NO_NEW_PRIVS, KEY_READONLY_ROOTFS, KEY_SECCOMP,
    OPTIONAL_END,
    // Repeated keys, kept in order.
    KEY_ARG = OPTIONAL_END, KEY_ENV, KEY_BIND_SOURCE, KEY_BIND_TARGET, KEY_CGROUP_PROCS,
    KEY_MASKED_PATH, KEY_READONLY_PATH,
    // A mount: a group of these four, in this order.
    KEY_MOUNT_TYPE, KEY_MOUNT_SOURCE, KEY_MOUNT_TARGET, KEY_MOUNT_OPTIONS,
    KEY_COUNT
};

static const char *const key_names[KEY_COUNT] = {
    "id", "rootfs", "hostname", "cwd", "uid", "gid",
    "log", "log-max-bytes", "log-max-files", "exit",
    "netns", "ipcns", "utsns", "pidns",
    "harden", "cap-mask", "no-new-privs", "readonly-rootfs", "seccomp",
    "arg", "env", "bind-source", "bind-target", "cgroup-procs",
    "masked-path", "readonly-path",
    "mount-type", "mount-source", "mount-target", "mount-options",
};

// The longest host name sethostname(2) accepts (HOST_NAME_MAX).
#define HOSTNAME_MAX 64

__attribute__((format(printf, 5, 6)))
static int fail(int *err, char *detail, size_t cap, int errnum, const char *fmt, ...) {
    *err = errnum;
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(detail, cap, fmt, ap);
    va_end(ap);
    return -1;
}

// A decimal number: digits only (no sign, no spaces), at most `max`.
static int parse_decimal(const char *s, uint64_t max, uint64_t *out) {
    if (*s == '\0') return -1;
    uint64_t v = 0;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') return -1;
        unsigned int digit = (unsigned int)(*s - '0');
        if (v > (max - digit) / 10) return -1;
        v = v * 10 + digit;
    }
    *out = v;
    return 0;
}

static int is_hex_id(const char *s) {
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f'))) return 0;
    }
    return n == 64;
}

// Reads the whole file into a new buffer, with a NUL after its last byte.
static char *read_config(const char *path, size_t *size, int *err, char *detail, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fail(err, detail, cap, errno, "open %s", path);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        fail(err, detail, cap, errno, "stat %s", path);
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > (off_t)MONITOR_CONFIG_MAX) {
        fail(err, detail, cap, EINVAL, S_ISREG(st.st_mode) ? "%s is larger than 8 MiB" : "%s is not a regular file",
             path);
        close(fd);
        return NULL;
    }
    size_t want = (size_t)st.st_size;
    char *buf = malloc(want + 1);
    if (buf == NULL) {
        fail(err, detail, cap, ENOMEM, "read %s", path);
        close(fd);
        return NULL;
    }
    size_t got = 0;
    int read_errno = 0;
    while (got < want) {
        ssize_t n = read(fd, buf + got, want - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) read_errno = errno;
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd);
    if (got != want) {
        // The agent writes CONFIG atomically, so a short read is an I/O error.
        fail(err, detail, cap, read_errno != 0 ? read_errno : EIO, "read %s", path);
        free(buf);
        return NULL;
    }
    buf[want] = '\0';
    *size = want;
    return buf;
}

static enum key lookup(const char *name) {
    for (int k = 0; k < KEY_COUNT; k++) {
        if (strcmp(name, key_names[k]) == 0) return (enum key)k;
    }
    return KEY_COUNT;
}

// Copies an absolute path that must fit `cap` bytes.
static int take_path(const char *value, const char *key, char *out, size_t cap,
                     int *err, char *detail, size_t dcap) {
    if (value[0] != '/') return fail(err, detail, dcap, EINVAL, "%s: \"%.200s\" is not an absolute path", key, value);
    size_t n = strlen(value);
    if (n >= cap) return fail(err, detail, dcap, ENAMETOOLONG, "%s: path longer than %zu bytes", key, cap - 1);
    memcpy(out, value, n + 1);
    return 0;
}

// One key of a mount group (mount-type, -source, -target, -options, in this order) into
// cfg->mounts[cfg->mount_count]; the group is counted once its options arrive.
static int take_mount_key(enum key k, const char *value, struct monitor_config *cfg, enum key *expected,
                          int *err, char *detail, size_t cap) {
    if (k != *expected) {
        return fail(err, detail, cap, EINVAL, "%s where %s was expected (mounts are groups of mount-type, "
                    "mount-source, mount-target, mount-options)", key_names[k], key_names[*expected]);
    }
    if (k == KEY_MOUNT_TYPE && cfg->mount_count == BERTH_SPAWN_MAX_MOUNTS) {
        return fail(err, detail, cap, EINVAL, "more than %d mounts", BERTH_SPAWN_MAX_MOUNTS);
    }
    struct berth_mount *m = &cfg->mounts[cfg->mount_count];
    switch (k) {
    case KEY_MOUNT_TYPE:
        if (strcmp(value, "bind") == 0) m->type = BERTH_MOUNT_BIND;
        else if (strcmp(value, "tmpfs") == 0) m->type = BERTH_MOUNT_TMPFS;
        else return fail(err, detail, cap, EINVAL, "mount-type \"%.32s\" is neither \"bind\" nor \"tmpfs\"", value);
        *expected = KEY_MOUNT_SOURCE;
        break;
    case KEY_MOUNT_SOURCE:
        if (m->type == BERTH_MOUNT_BIND && value[0] != '/') {
            return fail(err, detail, cap, EINVAL, "mount-source: \"%.200s\" is not an absolute path", value);
        }
        if (m->type == BERTH_MOUNT_TMPFS && strcmp(value, "tmpfs") != 0) {
            return fail(err, detail, cap, EINVAL, "mount-source of a tmpfs: \"%.200s\" is not \"tmpfs\"", value);
        }
        m->source = value;
        *expected = KEY_MOUNT_TARGET;
        break;
    case KEY_MOUNT_TARGET:
        if (value[0] != '/') return fail(err, detail, cap, EINVAL, "mount-target: \"%.200s\" is not an absolute path", value);
        m->target = value;
        *expected = KEY_MOUNT_OPTIONS;
        break;
    default: // KEY_MOUNT_OPTIONS
        if (m->type == BERTH_MOUNT_BIND) {
            if (strcmp(value, "ro") != 0 && strcmp(value, "rw") != 0) {
                return fail(err, detail, cap, EINVAL, "mount-options of a bind: \"%.64s\" is neither \"ro\" nor \"rw\"", value);
            }
            m->readonly = value[1] == 'o';
            m->data = NULL;
        } else if (strcmp(value, "ro") == 0) {
            m->readonly = 1;
            m->data = NULL;
        } else if (strncmp(value, "ro,", 3) == 0) {
            m->readonly = 1;
            m->data = value + 3;
        } else {
            m->data = value;
        }
        cfg->mount_count++;
        *expected = KEY_MOUNT_TYPE;
        break;
    }
    return 0;
}

// Reads the `seccomp` file: a raw array of struct sock_filter (8 bytes each), 1 to
// BERTH_SPAWN_MAX_SECCOMP of them. Read before the spawn, so the child gets it in memory.
static int read_seccomp(const char *path, struct monitor_config *cfg, int *err, char *detail, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(err, detail, cap, errno, "seccomp: open %.200s", path);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return fail(err, detail, cap, e, "seccomp: stat %.200s", path);
    }
    if (!S_ISREG(st.st_mode) || st.st_size == 0 || st.st_size % 8 != 0
        || st.st_size > (off_t)BERTH_SPAWN_MAX_SECCOMP * 8) {
        close(fd);
        return fail(err, detail, cap, EINVAL, "seccomp: %.200s is not a filter of 1 to %d instructions of 8 bytes "
                    "(%lld bytes)", path, BERTH_SPAWN_MAX_SECCOMP, (long long)st.st_size);
    }
    size_t want = (size_t)st.st_size;
    cfg->seccomp_bpf = malloc(want);
    if (cfg->seccomp_bpf == NULL) {
        close(fd);
        return fail(err, detail, cap, ENOMEM, "seccomp: read %.200s", path);
    }
    size_t got = 0;
    int read_errno = 0;
    while (got < want) {
        ssize_t n = read(fd, (char *)cfg->seccomp_bpf + got, want - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) read_errno = errno;
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd);
    if (got != want) return fail(err, detail, cap, read_errno != 0 ? read_errno : EIO, "seccomp: read %.200s", path);
    cfg->seccomp_len = (unsigned int)(want / 8);
    return 0;
}

// "1" for the boolean keys; anything else is a mistake.
static int take_flag(const char *value, enum key k, int *out, int *err, char *detail, size_t cap) {
    if (strcmp(value, "1") != 0) return fail(err, detail, cap, EINVAL, "%s \"%.32s\" is not \"1\"", key_names[k], value);
    *out = 1;
    return 0;
}

// Checks the pairs in `buf` and fills `cfg`; everything it allocates hangs off `cfg`.
static int parse(char *buf, size_t size, struct monitor_config *cfg, int *err, char *detail, size_t cap) {
    if (size > 0 && buf[size - 1] != '\0') return fail(err, detail, cap, EINVAL, "the last string is not NUL-terminated");

    // Pass 1: check every key, remember the single ones, count the repeated ones.
    const char *single[OPTIONAL_END] = { NULL };
    size_t nargs = 0, nenv = 0, nsources = 0, ntargets = 0;
    enum key mount_expected = KEY_MOUNT_TYPE;
    const char *hardening_key = NULL; // the first key that needs "harden 1"
    const char *end = buf + size;
    for (const char *p = buf; p < end;) {
        const char *key = p;
        p += strlen(p) + 1;
        if (p >= end) return fail(err, detail, cap, EINVAL, "key \"%.64s\" has no value", key);
        const char *value = p;
        p += strlen(p) + 1;
        enum key k = lookup(key);
        if (k == KEY_COUNT) {
            return fail(err, detail, cap, EINVAL, "unknown key \"%.64s\"", key);
        }
        if (k >= KEY_CAP_MASK && k <= KEY_SECCOMP && hardening_key == NULL) hardening_key = key_names[k];
        if (k >= KEY_MASKED_PATH && hardening_key == NULL) hardening_key = key_names[k];
        if (k == KEY_ARG) {
            nargs++;
        } else if (k == KEY_ENV) {
            const char *eq = strchr(value, '=');
            if (eq == NULL || eq == value) return fail(err, detail, cap, EINVAL, "env \"%.64s\" is not KEY=VALUE", value);
            nenv++;
        } else if (k == KEY_CGROUP_PROCS) {
            if (value[0] != '/') return fail(err, detail, cap, EINVAL, "%s: \"%.200s\" is not an absolute path", key, value);
            if (cfg->cgroup_count == MONITOR_MAX_CGROUPS) return fail(err, detail, cap, EINVAL, "more than %d cgroup-procs keys", MONITOR_MAX_CGROUPS);
            cfg->cgroup_procs[cfg->cgroup_count++] = value;
        } else if (k == KEY_BIND_SOURCE || k == KEY_BIND_TARGET) {
            if (value[0] != '/') return fail(err, detail, cap, EINVAL, "%s: \"%.200s\" is not an absolute path", key, value);
            if (k == KEY_BIND_SOURCE) nsources++; else ntargets++;
        } else if (k == KEY_MASKED_PATH || k == KEY_READONLY_PATH) {
            if (value[0] != '/') return fail(err, detail, cap, EINVAL, "%s: \"%.200s\" is not an absolute path", key, value);
            const char **list = k == KEY_MASKED_PATH ? cfg->masked_paths : cfg->readonly_paths;
            int *count = k == KEY_MASKED_PATH ? &cfg->masked_count : &cfg->readonly_count;
            if (*count == BERTH_SPAWN_MAX_PATHS) return fail(err, detail, cap, EINVAL, "more than %d %s keys", BERTH_SPAWN_MAX_PATHS, key);
            list[(*count)++] = value;
        } else if (k >= KEY_MOUNT_TYPE) {
            if (take_mount_key(k, value, cfg, &mount_expected, err, detail, cap) < 0) return -1;
        } else if (single[k] != NULL) {
            return fail(err, detail, cap, EINVAL, "key \"%s\" given twice", key_names[k]);
        } else {
            single[k] = value;
        }
    }
    for (int k = 0; k < SINGLE_KEYS; k++) {
        if (single[k] == NULL) return fail(err, detail, cap, EINVAL, "missing key \"%s\"", key_names[k]);
    }
    if (nargs == 0) return fail(err, detail, cap, EINVAL, "missing key \"arg\" (the command)");
    if (mount_expected != KEY_MOUNT_TYPE) {
        return fail(err, detail, cap, EINVAL, "the last mount has no %s (mounts are groups of mount-type, "
                    "mount-source, mount-target, mount-options)", key_names[mount_expected]);
    }
    // Hardening: every other hardening key needs "harden 1" (none of it would apply
    // without, and a security setting silently ignored is worse than a refused one).
    if (single[KEY_HARDEN] != NULL && take_flag(single[KEY_HARDEN], KEY_HARDEN, &cfg->harden, err, detail, cap) < 0) return -1;
    if (hardening_key != NULL && !cfg->harden) {
        return fail(err, detail, cap, EINVAL, "key \"%s\" needs \"harden\" 1", hardening_key);
    }
    if (single[KEY_CAP_MASK] != NULL && parse_decimal(single[KEY_CAP_MASK], UINT64_MAX, &cfg->cap_mask) < 0) {
        return fail(err, detail, cap, EINVAL, "cap-mask \"%.32s\" is not a decimal number", single[KEY_CAP_MASK]);
    }
    if (single[KEY_NO_NEW_PRIVS] != NULL
        && take_flag(single[KEY_NO_NEW_PRIVS], KEY_NO_NEW_PRIVS, &cfg->no_new_privs, err, detail, cap) < 0) return -1;
    if (single[KEY_READONLY_ROOTFS] != NULL
        && take_flag(single[KEY_READONLY_ROOTFS], KEY_READONLY_ROOTFS, &cfg->readonly_rootfs, err, detail, cap) < 0) return -1;
    if (single[KEY_SECCOMP] != NULL) {
        if (single[KEY_SECCOMP][0] != '/') {
            return fail(err, detail, cap, EINVAL, "seccomp: \"%.200s\" is not an absolute path", single[KEY_SECCOMP]);
        }
        if (read_seccomp(single[KEY_SECCOMP], cfg, err, detail, cap) < 0) return -1;
    }
    if (nsources != ntargets) return fail(err, detail, cap, EINVAL, "%zu bind-source but %zu bind-target keys", nsources, ntargets);
    if (nsources > BERTH_SPAWN_MAX_BINDS) return fail(err, detail, cap, EINVAL, "more than %d binds", BERTH_SPAWN_MAX_BINDS);
    cfg->bind_count = (int)nsources;
    // netns: absent for a namespace of the container's own, "host", or a path to join.
    cfg->netns = single[KEY_NETNS];
    if (cfg->netns != NULL && strcmp(cfg->netns, "host") != 0 && cfg->netns[0] != '/') {
        return fail(err, detail, cap, EINVAL, "netns: \"%.200s\" is neither \"host\" nor an absolute path", cfg->netns);
    }
    // ipcns, utsns, pidns: absent for a namespace of the container's own, or the path of a
    // pod's namespace to join.
    const char **joined[] = { &cfg->ipcns, &cfg->utsns, &cfg->pidns };
    for (int i = 0; i < 3; i++) {
        const char *path = single[KEY_IPCNS + i];
        if (path != NULL && path[0] != '/') {
            return fail(err, detail, cap, EINVAL, "%s: \"%.200s\" is not an absolute path", key_names[KEY_IPCNS + i], path);
        }
        *joined[i] = path;
    }

    // The values of the single keys.
    if (!is_hex_id(single[KEY_ID])) {
        return fail(err, detail, cap, EINVAL, "id \"%.80s\" is not 64 lowercase hex digits", single[KEY_ID]);
    }
    memcpy(cfg->id, single[KEY_ID], sizeof cfg->id);
    if (single[KEY_ROOTFS][0] != '/') {
        return fail(err, detail, cap, EINVAL, "rootfs: \"%.200s\" is not an absolute path", single[KEY_ROOTFS]);
    }
    cfg->rootfs = single[KEY_ROOTFS];
    if (strlen(single[KEY_HOSTNAME]) > HOSTNAME_MAX) {
        return fail(err, detail, cap, EINVAL, "hostname is longer than %d bytes", HOSTNAME_MAX);
    }
    cfg->hostname = single[KEY_HOSTNAME];
    if (single[KEY_CWD][0] != '/') {
        return fail(err, detail, cap, EINVAL, "cwd: \"%.200s\" is not an absolute path", single[KEY_CWD]);
    }
    cfg->cwd = single[KEY_CWD];
    // (uid_t)-1 is no user: setresuid(-1, ...) means "leave unchanged", which would keep
    // the container running as root.
    uint64_t number;
    if (parse_decimal(single[KEY_UID], UINT32_MAX - 1, &number) < 0) {
        return fail(err, detail, cap, EINVAL, "uid \"%.32s\" is not a decimal number below 4294967295", single[KEY_UID]);
    }
    cfg->uid = (uid_t)number;
    if (parse_decimal(single[KEY_GID], UINT32_MAX - 1, &number) < 0) {
        return fail(err, detail, cap, EINVAL, "gid \"%.32s\" is not a decimal number below 4294967295", single[KEY_GID]);
    }
    cfg->gid = (gid_t)number;
    if (take_path(single[KEY_LOG], "log", cfg->log_path, sizeof cfg->log_path, err, detail, cap) < 0) return -1;
    if (parse_decimal(single[KEY_LOG_MAX_BYTES], INT64_MAX, &cfg->log_max_bytes) < 0) {
        return fail(err, detail, cap, EINVAL, "log-max-bytes \"%.32s\" is not a decimal number",
                    single[KEY_LOG_MAX_BYTES]);
    }
    if (parse_decimal(single[KEY_LOG_MAX_FILES], MONITOR_LOG_MAX_FILES, &number) < 0) {
        return fail(err, detail, cap, EINVAL, "log-max-files \"%.32s\" is not a decimal number up to %d",
                    single[KEY_LOG_MAX_FILES], MONITOR_LOG_MAX_FILES);
    }
    cfg->log_max_files = (unsigned int)number;
    if (take_path(single[KEY_EXIT], "exit", cfg->exit_path, sizeof cfg->exit_path, err, detail, cap) < 0) return -1;
    // The exit file is written as "<name>.tmp" next to it, which must be a valid name too.
    const char *base = strrchr(cfg->exit_path, '/') + 1;
    if (base[0] == '\0' || strlen(base) + 4 > NAME_MAX) {
        return fail(err, detail, cap, EINVAL, "exit: \"%.200s\" does not end in a file name of at most %d bytes",
                    cfg->exit_path, NAME_MAX - 4);
    }

    // Pass 2: argv and envp, in file order.
    cfg->argv = calloc(nargs + 1, sizeof *cfg->argv);
    cfg->envp = calloc(nenv + 1, sizeof *cfg->envp);
    if (cfg->argv == NULL || cfg->envp == NULL) return fail(err, detail, cap, ENOMEM, "argv and environment");
    size_t ia = 0, ie = 0, isrc = 0, itgt = 0;
    for (char *p = buf; p < end;) {
        char *key = p;
        p += strlen(p) + 1;
        char *value = p;
        p += strlen(p) + 1;
        enum key k = lookup(key);
        if (k == KEY_ARG) cfg->argv[ia++] = value;
        if (k == KEY_ENV) cfg->envp[ie++] = value;
        if (k == KEY_BIND_SOURCE) cfg->bind_sources[isrc++] = value;
        if (k == KEY_BIND_TARGET) cfg->bind_targets[itgt++] = value;
    }
    return 0;
}

int config_load(const char *path, struct monitor_config *cfg, int *err, char *detail, size_t cap) {
    memset(cfg, 0, sizeof *cfg);
    size_t size = 0;
    cfg->buffer = read_config(path, &size, err, detail, cap);
    if (cfg->buffer == NULL) return -1;
    if (parse(cfg->buffer, size, cfg, err, detail, cap) < 0) {
        config_release_spawn_data(cfg);
        return -1;
    }
    return 0;
}

void config_release_spawn_data(struct monitor_config *cfg) {
    free(cfg->seccomp_bpf);
    cfg->seccomp_bpf = NULL;
    cfg->seccomp_len = 0;
    cfg->masked_count = cfg->readonly_count = cfg->mount_count = 0;
    free(cfg->argv);
    free(cfg->envp);
    free(cfg->buffer);
    cfg->argv = cfg->envp = NULL;
    cfg->buffer = NULL;
    cfg->rootfs = cfg->hostname = cfg->cwd = cfg->netns = NULL;
    cfg->cgroup_count = 0;
    cfg->ipcns = cfg->utsns = cfg->pidns = NULL;
    cfg->bind_count = 0;
}
