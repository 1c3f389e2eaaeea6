#ifndef BERTH_MONITOR_H
#define BERTH_MONITOR_H
// berth-monitor's private interfaces; the contract with the agent is docs/monitor.md.
//
//   main.c      start-up, spawn, ready line, the poll loop
//   pause.c     --pause: the parent of a pod's pause process
//   config.c    the CONFIG file (NUL-separated key/value pairs)
//   log.c       CRI log records and rotation
//   exitfile.c  the atomic exit file
//   diag.c      diagnostics on stderr, time helpers
//   noswift.c   keeps the Swift runtime out of this binary
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "CBerthShim.h"

/// Longest `log` and `exit` path accepted: PATH_MAX less room for a rotation suffix
/// (".1000") and the exit file's ".tmp".
#define MONITOR_PATH_MAX (PATH_MAX - 16)
/// Most rotated log files kept (`log-max-files`): each rotation renames all of them.
#define MONITOR_LOG_MAX_FILES 1000
/// Largest CONFIG accepted. The kernel caps argv + environment at a quarter of the
/// stack limit (2 MiB by default), so a bigger file cannot be a working container.
#define MONITOR_CONFIG_MAX (8u << 20)
/// Most cgroup.procs files (one per v1 controller Berth uses).
#define MONITOR_MAX_CGROUPS 8
/// Longest detail of an error line (the same limit as struct berth_spawn_error).
#define MONITOR_DETAIL_MAX 256

// ---------------------------------------------------------------------------------------
// main.c: the ready pipe and process helpers, shared with pause.c

/// Writes the ready line to the ready pipe (fd 3) and closes it; once only, later calls
/// do nothing.
void ready_send(const char *line, size_t len);
/// "error <step>\t<errno>\t<detail>\n" on the ready pipe, the same on stderr, exit 1.
__attribute__((noreturn))
void fail_ready(const char *step, int err, const char *detail);
/// Field 22 of /proc/PID/stat, the start time in clock ticks after boot: with the pid it
/// names the process for good (a pid alone may be reused). -1 with errno on failure,
/// with the path read in `path`.
int proc_start_time(pid_t pid, unsigned long long *out, char *path, size_t cap);

// ---------------------------------------------------------------------------------------
// pause.c

/// `berth-monitor --pause`, after main's start-up (descriptors, session, signals): makes
/// a pid namespace whose pid 1 is a pause process, writes the ready line and returns
/// (the exit status) once that process has exited.
int pause_main(void);

// ---------------------------------------------------------------------------------------
// config.c

struct monitor_config {
    /// Copied out of the file: they outlive config_release_spawn_data.
    char id[65];
    char log_path[MONITOR_PATH_MAX];
    char exit_path[MONITOR_PATH_MAX];
    uint64_t log_max_bytes;
    unsigned int log_max_files;
    /// Only needed to spawn; they point into `buffer` (see config_release_spawn_data).
    const char *rootfs;
    const char *hostname;
    const char *cwd;
    uid_t uid;
    gid_t gid;
    char **argv; // NULL-terminated
    char **envp; // NULL-terminated
    /// NULL: a network namespace of the container's own; "host"; or a namespace to join.
    const char *netns;
    /// NULL: a namespace of the container's own; otherwise the path of one to join (a
    /// pod's pinned IPC or UTS namespace, its pause process's pid namespace).
    const char *ipcns;
    const char *utsns;
    const char *pidns;
    /// Host files bind-mounted on paths inside the container.
    const char *bind_sources[BERTH_SPAWN_MAX_BINDS];
    const char *bind_targets[BERTH_SPAWN_MAX_BINDS];
    int bind_count;
    /// cgroup.procs files the container's init is written to before it runs its command.
    const char *cgroup_procs[MONITOR_MAX_CGROUPS];
    int cgroup_count;
    /// Hardening (docs/monitor.md, "Hardening"); all zero without `harden 1`. The paths
    /// and the mounts' strings point into `buffer`.
    int harden;
    uint64_t cap_mask;
    int no_new_privs;
    int readonly_rootfs;
    const char *masked_paths[BERTH_SPAWN_MAX_PATHS];
    int masked_count;
    const char *readonly_paths[BERTH_SPAWN_MAX_PATHS];
    int readonly_count;
    struct berth_mount mounts[BERTH_SPAWN_MAX_MOUNTS];
    int mount_count;
    /// The `seccomp` file's sock_filter array (malloc'd), and its instruction count.
    void *seccomp_bpf;
    unsigned int seccomp_len;
    char *buffer; // the file's bytes
};

/// Reads and checks the CONFIG file at `path`. On failure returns -1 with `*err` set to
/// an errno value (EINVAL for content errors) and a message in `detail`.
int config_load(const char *path, struct monitor_config *cfg, int *err, char *detail, size_t cap);

/// Frees what only the spawn needed (the file's bytes, argv, envp, the seccomp filter): the container's
/// child has its own copy once berth_spawn_start returns, and the monitor lives as long
/// as the container, so its memory should not.
void config_release_spawn_data(struct monitor_config *cfg);

// ---------------------------------------------------------------------------------------
// log.c

/// A line longer than this is split into P records of this size (the CRI limit).
#define LOG_LINE_MAX 16384

/// The unfinished line of one output stream.
struct log_stream {
    const char *name; // "stdout" or "stderr"
    size_t len;
    char line[LOG_LINE_MAX];
};

/// The live log file and its rotation settings.
struct log_file {
    const char *path;
    int fd;
    uint64_t size; // bytes in the live file, as far as we wrote them
    uint64_t max_bytes; // 0: never rotate
    unsigned int max_files;
    int64_t last_ns; // the latest timestamp written: records never go back in time
    // A write or a rotation failed and was reported; cleared by the next success, so a
    // full disk is reported once, not once per record.
    int write_failing;
    int rotate_failing;
};

/// Opens (creates, mode 0640) the log for appending. -1 with errno on failure.
int log_open(struct log_file *lf, const char *path, uint64_t max_bytes, unsigned int max_files);
/// Takes `n` bytes read from stream `s` at time `now_ns`: writes an F record for each
/// finished line and keeps the unfinished rest (P records of LOG_LINE_MAX when it grows
/// past that).
void log_input(struct log_file *lf, struct log_stream *s, const char *data, size_t n, int64_t now_ns);
/// The stream reached EOF: writes a leftover unfinished line as a P record.
void log_end(struct log_file *lf, struct log_stream *s, int64_t now_ns);
void log_close(struct log_file *lf);

// ---------------------------------------------------------------------------------------
// exitfile.c

struct exit_file {
    int dirfd; // the directory the file goes in, for openat/renameat/fsync
    char name[NAME_MAX + 1];
    char tmp[NAME_MAX + 1];
};

/// Opens the directory of `path` and removes a stale exit file of an earlier run, so
/// that the file's presence always describes this one. -1 with errno on failure.
int exit_file_prepare(struct exit_file *ef, const char *path);
/// Writes exit_code, signal and finished_ns atomically: temp file, fsync, rename, fsync
/// of the directory. -1 with errno on failure (the temp file is removed).
int exit_file_write(struct exit_file *ef, int exit_code, int signal, int64_t finished_ns);

// ---------------------------------------------------------------------------------------
// diag.c

/// Puts the container id into the prefix of later messages.
void diag_set_id(const char *id);
/// One line on stderr, "berth-monitor <id>: <message>", with a single write(2).
void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/// strerrordesc_np: a constant string, no locale lookup, no allocation.
const char *errno_text(int err);
/// CLOCK_REALTIME in nanoseconds.
int64_t now_ns(void);
/// Formats `ns` (unix time) as RFC 3339 UTC with nanoseconds into `out`, which must hold
/// RFC3339_NANO_LEN + 1 bytes: "2026-12-04T20:11:06.123456789Z".
#define RFC3339_NANO_LEN 30
void format_rfc3339_nano(int64_t ns, char *out);

#endif
