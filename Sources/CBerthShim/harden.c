// Mounts inside a container's root file system and the hardening steps of its child
// (masked and read-only paths, read-only rootfs, capabilities, seccomp, the working-dir
// check). spawn.c decides the order; every function here runs in the cloned child and
// follows the rules at the top of child.h: no malloc, plain syscalls, failures reported
// as {step, errno, detail} and _exit.
#define _GNU_SOURCE
#include "CBerthShim.h"
#include "child.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/magic.h>
#include <linux/seccomp.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

// "/proc/self/fd/N" of `fd`: the mount goes onto the very file we opened and checked,
// never onto a path that could be swapped under us. The host's /proc serves "self"
// before pivot_root (we are visible in its pid namespace), ours after.
static void fd_path(char *out, size_t cap, int fd) {
    out[0] = '\0';
    berth_str_append(out, cap, "/proc/self/fd/");
    berth_str_append_uint(out, cap, (unsigned int)fd);
}

// MS_* flags of the mount holding `fd` that a read-only remount must repeat: a remount
// sets the per-mount flags anew, so leaving them out would clear nosuid/nodev/noexec.
static unsigned long kept_flags(int error_fd, int fd, const char *step, const char *shown) {
    struct statfs sfs;
    CHECK(fstatfs(fd, &sfs), step, shown);
    unsigned long flags = 0;
    if (sfs.f_flags & ST_NOSUID) flags |= MS_NOSUID;
    if (sfs.f_flags & ST_NODEV) flags |= MS_NODEV;
    if (sfs.f_flags & ST_NOEXEC) flags |= MS_NOEXEC;
    return flags;
}

// Opens (O_PATH) `rel` (relative to the root, no leading '/') with RESOLVE_IN_ROOT.
static int open_in_root(const char *rel, int flags) {
    return berth_openat2(AT_FDCWD, rel[0] != '\0' ? rel : ".", O_PATH | O_CLOEXEC | flags, 0, BERTH_RESOLVE_IN_ROOT);
}

// mkdir -p of the first `len` bytes of `rel` inside the root. Each component is looked
// up from the root with RESOLVE_IN_ROOT (symlinks of the image resolve inside it) and,
// when missing, made with mkdirat relative to its resolved parent: mkdirat never follows
// a symlink in its last component (EEXIST), so nothing is created outside the root.
static void make_dirs_in_root(int error_fd, const char *step, const char *rel, size_t len) {
    char prefix[4096];
    if (len >= sizeof prefix) berth_child_fail(error_fd, step, ENAMETOOLONG, rel);
    int parent = open_in_root("", O_DIRECTORY);
    CHECK(parent, step, "/");
    size_t start = 0;
    while (start < len) {
        size_t end = start;
        while (end < len && rel[end] != '/') end++;
        if (end > start) {
            prefix[0] = '\0';
            berth_str_append_n(prefix, sizeof prefix, rel, end);
            int d = open_in_root(prefix, O_DIRECTORY);
            if (d < 0 && errno == ENOENT) {
                char name[NAME_MAX + 1];
                if (end - start > NAME_MAX) berth_child_fail(error_fd, step, ENAMETOOLONG, prefix);
                name[0] = '\0';
                berth_str_append_n(name, sizeof name, rel + start, end - start);
                if (mkdirat(parent, name, 0755) < 0 && errno != EEXIST) berth_child_fail(error_fd, step, errno, prefix);
                d = open_in_root(prefix, O_DIRECTORY);
            }
            CHECK(d, step, prefix);
            close(parent);
            parent = d;
        }
        start = end + 1;
    }
    close(parent);
}

void berth_mount_in_root(int error_fd, const char *step, const struct berth_mount *m, const char *shown_target) {
    const char *rel = m->target;
    while (*rel == '/') rel++;
    // The source first: a missing one is the caller's mistake, named as such.
    int source_is_dir = 1;
    if (m->type == BERTH_MOUNT_BIND) {
        struct stat src;
        CHECK(stat(m->source, &src), step, m->source);
        source_is_dir = S_ISDIR(src.st_mode);
    }

    // The target, created when missing: its directories, then itself.
    int target_fd = open_in_root(rel, 0);
    if (target_fd < 0 && errno == ENOENT) {
        if (source_is_dir) {
            make_dirs_in_root(error_fd, step, rel, strlen(rel));
        } else {
            const char *slash = strrchr(rel, '/');
            if (slash != NULL) make_dirs_in_root(error_fd, step, rel, (size_t)(slash - rel));
            int f = berth_openat2(AT_FDCWD, rel, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0644,
                                  BERTH_RESOLVE_IN_ROOT);
            CHECK(f, step, shown_target);
            close(f);
        }
        target_fd = open_in_root(rel, 0);
    }
    CHECK(target_fd, step, shown_target);
    struct stat st;
    CHECK(fstat(target_fd, &st), step, shown_target);
    if (source_is_dir && !S_ISDIR(st.st_mode)) berth_child_fail(error_fd, step, ENOTDIR, shown_target);
    if (!source_is_dir && !S_ISREG(st.st_mode)) {
        berth_child_fail(error_fd, step, S_ISDIR(st.st_mode) ? EISDIR : EINVAL, shown_target);
    }

    char path[64];
    fd_path(path, sizeof path, target_fd);
    if (m->type == BERTH_MOUNT_TMPFS) {
        // As docker's --tmpfs: nosuid, nodev, noexec; read-only from the start if asked.
        unsigned long flags = MS_NOSUID | MS_NODEV | MS_NOEXEC | (m->readonly ? MS_RDONLY : 0);
        const char *data = m->data != NULL && m->data[0] != '\0' ? m->data : NULL;
        CHECK(mount(m->source != NULL && m->source[0] != '\0' ? m->source : "tmpfs", path, "tmpfs", flags, data),
              step, shown_target);
        close(target_fd);
        return;
    }
    CHECK(mount(m->source, path, NULL, MS_BIND | MS_REC, NULL), step, shown_target);
    close(target_fd);
    if (!m->readonly) return;
    // A bind takes the flags of the mount it copies; read-only needs a remount of the new
    // mount. Reopened: the old descriptor names the directory under the new mount.
    int top = open_in_root(rel, 0);
    CHECK(top, step, shown_target);
    fd_path(path, sizeof path, top);
    unsigned long flags = kept_flags(error_fd, top, step, shown_target);
    CHECK(mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | flags, NULL), step, shown_target);
    close(top);
}

// Opens `path` (absolute inside the container) for masking or making read-only: -1 when
// it does not exist (skipped, as runc does), otherwise an O_PATH descriptor of a file
// that is on the file system its place promises. An image could make "proc/sys" a
// symlink to somewhere in its own tree; RESOLVE_IN_ROOT keeps that inside the root, and
// the f_type check makes sure we mount over procfs or sysfs and nothing else (the runc
// CVE-2019-16884 class).
static int open_checked(int error_fd, const char *step, const char *path) {
    const char *rel = path;
    while (*rel == '/') rel++;
    int fd = open_in_root(rel, 0);
    if (fd < 0 && errno == ENOENT) return -1;
    CHECK(fd, step, path);
    long want = 0;
    if (strncmp(rel, "proc", 4) == 0 && (rel[4] == '/' || rel[4] == '\0')) want = PROC_SUPER_MAGIC;
    if (strncmp(rel, "sys", 3) == 0 && (rel[3] == '/' || rel[3] == '\0')) want = SYSFS_MAGIC;
    if (want != 0) {
        struct statfs sfs;
        CHECK(fstatfs(fd, &sfs), step, path);
        if ((long)sfs.f_type != want) berth_child_fail(error_fd, step, EXDEV, path);
    }
    return fd;
}

void berth_readonly_path(int error_fd, const char *path) {
    int fd = open_checked(error_fd, "readonly", path);
    if (fd < 0) return;
    char self[64];
    fd_path(self, sizeof self, fd);
    CHECK(mount(self, self, NULL, MS_BIND | MS_REC, NULL), "readonly", path);
    close(fd);
    // The remount goes to the new bind mount: reopened (and checked again) through it.
    int top = open_checked(error_fd, "readonly", path);
    if (top < 0) berth_child_fail(error_fd, "readonly", ENOENT, path);
    fd_path(self, sizeof self, top);
    unsigned long flags = kept_flags(error_fd, top, "readonly", path);
    CHECK(mount(NULL, self, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | flags, NULL), "readonly", path);
    close(top);
}

void berth_mask_path(int error_fd, const char *path) {
    int fd = open_checked(error_fd, "mask", path);
    if (fd < 0) return;
    struct stat st;
    CHECK(fstat(fd, &st), "mask", path);
    char target[64];
    fd_path(target, sizeof target, fd);
    if (S_ISDIR(st.st_mode)) {
        // Empty and read-only; nr_inodes=1 (its root) as runc's: nothing can be added.
        CHECK(mount("tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,nr_inodes=1"),
              "mask", path);
    } else {
        // The host's /dev/null: still our "/" before pivot_root (the container's own
        // /dev/null is a node on its tmpfs, equally fine, but this one needs no lookup in
        // the image).
        CHECK(mount("/dev/null", target, NULL, MS_BIND, NULL), "mask", path);
    }
    close(fd);
}

void berth_readonly_root(int error_fd) {
    int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    CHECK(fd, "readonly rootfs", "/");
    unsigned long flags = kept_flags(error_fd, fd, "readonly rootfs", "/");
    close(fd);
    CHECK(mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | flags, NULL), "readonly rootfs", "/");
}

void berth_drop_bounding_caps(int error_fd, uint64_t mask) {
    // The kernel's last capability is the first number PR_CAPBSET_DROP refuses with
    // EINVAL: no need to read /proc/sys/kernel/cap_last_cap.
    for (unsigned int cap = 0; cap < 64; cap++) {
        if (mask & ((uint64_t)1 << cap)) continue;
        if (prctl(PR_CAPBSET_DROP, (unsigned long)cap, 0UL, 0UL, 0UL) < 0) {
            if (errno == EINVAL) break;
            char detail[32];
            detail[0] = '\0';
            berth_str_append(detail, sizeof detail, "bounding ");
            berth_str_append_uint(detail, sizeof detail, cap);
            berth_child_fail(error_fd, "capabilities", errno, detail);
        }
    }
    CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0UL, 0UL, 0UL), "capabilities", "ambient");
}

void berth_set_caps(int error_fd, uint64_t mask, uid_t uid) {
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    CHECK(syscall(SYS_capget, &header, data), "capabilities", "capget");
    // Only what we still hold: capset refuses (EPERM) to raise a permitted bit, and a
    // mask from a newer agent may name capabilities this kernel does not have.
    uint64_t permitted = (uint64_t)data[0].permitted | ((uint64_t)data[1].permitted << 32);
    uint64_t keep = uid == 0 ? mask & permitted : 0;
    memset(data, 0, sizeof data);
    for (int i = 0; i < 2; i++) {
        data[i].effective = data[i].permitted = (uint32_t)(keep >> (32 * i));
        // Inheritable stays empty (runc/moby since CVE-2022-24769): with an executable's
        // file-inheritable bits it would grant capabilities to a non-root user.
        data[i].inheritable = 0;
    }
    header.version = _LINUX_CAPABILITY_VERSION_3;
    header.pid = 0;
    CHECK(syscall(SYS_capset, &header, data), "capabilities", "capset");
}

void berth_load_seccomp(int error_fd, const void *bpf, unsigned int len) {
    struct sock_fprog prog = { .len = (unsigned short)len, .filter = (struct sock_filter *)(uintptr_t)bpf };
    CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0UL, 0UL), "seccomp", "");
}

void berth_check_cwd_inside(int error_fd, const char *workdir) {
    // A directory reached through a descriptor or mount of the host (CVE-2024-21626: a
    // leaked fd as working dir) is outside our root: the kernel's getcwd then fails or
    // answers "(unreachable)/...". Raw syscall: glibc's getcwd may allocate.
    char buf[4096];
    long n = syscall(SYS_getcwd, buf, sizeof buf);
    if (n < 0 || buf[0] != '/') berth_child_fail(error_fd, "chdir workdir", EACCES, workdir);
}
