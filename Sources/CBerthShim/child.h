#ifndef BERTH_CHILD_H
#define BERTH_CHILD_H
// Private to CBerthShim (not under include/, so Swift never sees it): the pieces shared by
// the two pre-exec paths, spawn.c (a container's first process) and exec.c (a process
// joining a running container).
//
// Rules for everything that runs in a cloned child (from clone3 to execve or _exit):
//   * No malloc and no stdio: another thread of the agent may have held the malloc or
//     stdio lock at the moment of the clone, and the child would wait for it forever.
//     For the same reason no glibc fork(): its atfork handlers take the malloc locks.
//   * Only plain syscall wrappers, plus string formatting into fixed buffers.
//   * Not even glibc's setuid/setgid/setgroups: in a multi-threaded process they
//     broadcast the change to every thread glibc knows of (SIGSETXID, under a lock).
//     After a raw clone3 glibc still believes those threads exist (it only resets its
//     thread list in fork()), so the child calls the syscalls directly.
//   * Every failure is reported as {step, errno, detail} over the error pipe, then
//     _exit(127). The pipe is O_CLOEXEC: EOF without a record means execve succeeded.
#include "berth_spawn.h"
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BERTH_HIDDEN __attribute__((visibility("hidden")))

/// Appends `src` to the NUL-terminated string in `dst`, truncating to `cap` - 1 bytes.
BERTH_HIDDEN void berth_str_append(char *dst, size_t cap, const char *src);
/// Appends at most `n` bytes of `src`.
BERTH_HIDDEN void berth_str_append_n(char *dst, size_t cap, const char *src, size_t n);
/// Appends the decimal digits of `v`.
BERTH_HIDDEN void berth_str_append_uint(char *dst, size_t cap, unsigned int v);

/// Writes the error record {step, err, detail} to `error_fd` with one write(2) and
/// `_exit(127)`s.
BERTH_HIDDEN __attribute__((noreturn))
void berth_child_fail(int error_fd, const char *step, int err, const char *detail);

/// Reports the current errno for `step` when `rc` is negative. Needs `error_fd` in scope.
#define CHECK(rc, step, detail) \
    do { if ((rc) < 0) berth_child_fail(error_fd, (step), errno, (detail)); } while (0)

/// Most descriptors berth_close_all_but keeps.
#define BERTH_CHILD_MAX_KEEP 16

/// Closes every descriptor >= `from` except the (at most BERTH_CHILD_MAX_KEEP) in `keep`;
/// negative entries are ignored.
BERTH_HIDDEN void berth_close_all_but(unsigned int from, const int *keep, int n);

/// Sets every signal's disposition to SIG_DFL (the mask is left alone): an ignored
/// signal would stay ignored across execve, and one of the agent's handlers (Swift
/// code, touching the agent's state in a copy of it) must never run in a child.
BERTH_HIDDEN void berth_child_default_signals(void);

/// Puts `fds` (stdin, stdout, stderr; any numbers, even 0-2 in another order) onto
/// 0, 1 and 2 without FD_CLOEXEC; reports step "stdio" on failure.
BERTH_HIDDEN void berth_child_stdio(int error_fd, const int fds[3]);

/// Resolves argv[0] like execvp(3), but with PATH from `envp` (the agent's PATH says
/// nothing about the image), and execs it. Returns only by reporting step "exec".
BERTH_HIDDEN __attribute__((noreturn))
void berth_child_exec(int error_fd, char *const *argv, char *const *envp);

/// pipe2(O_CLOEXEC) whose ends are both >= 3, so that a child's dup2 onto 0/1/2 can never
/// clobber them even when the process runs with one of its stdio slots closed.
BERTH_HIDDEN int berth_pipe_above_stdio(int fds[2]);

/// Closes `*fd` when it is open and sets it to -1.
BERTH_HIDDEN void berth_close_fd(int *fd);

/// Fills `err` with {step, errnum, detail}.
BERTH_HIDDEN void berth_fill_error(struct berth_spawn_error *err, const char *step, int errnum, const char *detail);

/// Writes the go byte to `*sync_write` and closes both sync ends; then reads the error
/// pipe to EOF (closing it). Returns 0 when EOF came without a record (the child exec'd,
/// or died without a word), -1 with `err` filled otherwise.
BERTH_HIDDEN int berth_go_and_collect(int *sync_read, int *sync_write, int *error_read,
                                      struct berth_spawn_error *err);

/// What a cloned child runs: it gets the sync pipe's ends and the error pipe's write end
/// and never returns.
typedef void (*berth_child_body)(const void *cfg, int sync_read, int sync_write, int error_fd);

/// The shared start of spawn and exec: a sync pipe and a close-on-exec error pipe, all
/// signals blocked across a fork-like `clone3(flags | CLONE_PIDFD, SIGCHLD)` (the child
/// must not run one of the parent's handlers before it resets them), then `body` in the
/// child. Fills the four out-parameters; 0, or -1 with errno and nothing left behind.
BERTH_HIDDEN int berth_clone_child(uint64_t flags, berth_child_body body, const void *cfg, pid_t *pid,
                                   int *pidfd, int *sync_read, int *sync_write, int *error_read);

/// Abort of a started child: SIGKILL and reap it through `*pidfd`, close all four
/// descriptors (each set to -1).
BERTH_HIDDEN void berth_abort_child(int *pidfd, int *sync_read, int *sync_write, int *error_read);

/// SIGKILL through `pidfd` and reap through it (never through the pid, which could have
/// been reaped and reused already); ECHILD (a P_ALL reaper got there first) is fine.
BERTH_HIDDEN void berth_kill_and_reap(int pidfd);

// ---------------------------------------------------------------------------------------
// harden.c: mounts inside the root file system and the hardening steps of spawn.c. Each
// runs in the child, reports its own step on failure and never returns an error.

/// Mounts `m` on `m->target` inside the root file system (the working directory, not yet
/// pivoted into): the target is resolved with RESOLVE_IN_ROOT and created when missing
/// (directories with mkdirat relative to their resolved parent, an empty file with
/// openat2(RESOLVE_IN_ROOT, O_CREAT|O_EXCL)), so no symlink of the image can point the
/// mount at the host; the mount goes onto /proc/self/fd/N of the opened target. A
/// directory source needs a directory target (ENOTDIR), a file source a regular file
/// (EISDIR for a directory, EINVAL otherwise). Failures are reported as `step`, detail the
/// source (missing: ENOENT) or `shown_target`.
BERTH_HIDDEN void berth_mount_in_root(int error_fd, const char *step, const struct berth_mount *m,
                                      const char *shown_target);
/// OCI readonlyPaths: `path` bound onto itself and remounted read-only. Step "readonly".
BERTH_HIDDEN void berth_readonly_path(int error_fd, const char *path);
/// OCI maskedPaths: an empty read-only tmpfs over a directory, /dev/null over a file.
/// Step "mask".
BERTH_HIDDEN void berth_mask_path(int error_fd, const char *path);
/// "/" remounted read-only (after pivot_root), keeping nosuid/nodev/noexec. Step
/// "readonly rootfs".
BERTH_HIDDEN void berth_readonly_root(int error_fd);
/// Every capability not in `mask` dropped from the bounding set, the ambient set cleared.
/// Needs CAP_SETPCAP: before the uid switch. Step "capabilities".
BERTH_HIDDEN void berth_drop_bounding_caps(int error_fd, uint64_t mask);
/// After the uid switch: effective and permitted = `mask` (as far as still permitted)
/// for uid 0, empty for another uid; inheritable empty. Step "capabilities".
BERTH_HIDDEN void berth_set_caps(int error_fd, uint64_t mask, uid_t uid);
/// prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER) of `len` sock_filter instructions. Step
/// "seccomp".
BERTH_HIDDEN void berth_load_seccomp(int error_fd, const void *bpf, unsigned int len);
/// The CVE-2024-21626 check after chdir: getcwd(2) must succeed and name a path inside
/// our root (not "(unreachable)/..."); step "chdir workdir", EACCES, otherwise.
BERTH_HIDDEN void berth_check_cwd_inside(int error_fd, const char *workdir);

#endif
