#include <seccomp.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

/* seccomp.h's actions are macros (some with an argument), which Swift does not import. */
static inline uint32_t berth_scmp_act_allow(void) { return SCMP_ACT_ALLOW; }
static inline uint32_t berth_scmp_act_errno(uint16_t e) { return SCMP_ACT_ERRNO(e); }
static inline uint32_t berth_scmp_act_trace(uint16_t m) { return SCMP_ACT_TRACE(m); }
static inline uint32_t berth_scmp_act_kill_thread(void) { return SCMP_ACT_KILL_THREAD; }
static inline uint32_t berth_scmp_act_kill_process(void) { return SCMP_ACT_KILL_PROCESS; }
static inline uint32_t berth_scmp_act_trap(void) { return SCMP_ACT_TRAP; }
static inline uint32_t berth_scmp_act_log(void) { return SCMP_ACT_LOG; }

/* memfd_create(2) with MFD_CLOEXEC, for seccomp_export_bpf/pfc (glibc's wrapper is not
   imported into Swift). */
static inline int berth_scmp_memfd(void) {
    return (int)syscall(SYS_memfd_create, "berth-seccomp", 1u /* MFD_CLOEXEC */);
}
