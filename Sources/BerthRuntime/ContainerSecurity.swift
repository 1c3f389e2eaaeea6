#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import BerthWire
import Synchronization

/// What a container's spec asks of its confinement (docs/security.md): checked at create,
/// turned into the monitor's settings at each start. The defaults are docker's:
/// docker's capability set, a seccomp profile like docker's, the OCI masked and
/// read-only paths; and, beyond docker, no_new_privs on.
enum ContainerSecurity {
    /// The OCI runtime spec's default masked paths (runc, containerd).
    static let maskedPaths = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                              "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                              "/sys/devices/virtual/powercap"]
    /// …and read-only ones.
    static let readonlyPaths = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
    static let maxMounts = 16

    /// Everything that can be wrong, found before the container exists.
    static func validate(_ spec: ContainerSpec) throws(BerthError) {
        let mask = try Capabilities.mask(add: spec.capAdd, drop: spec.capDrop, privileged: spec.privileged)
        if !spec.privileged && spec.seccomp != "unconfined" {
            _ = try seccompFilter(spec, capMask: mask)
        }
        if spec.mounts.count > maxMounts {
            throw BerthError(.invalidArgument, "at most \(maxMounts) mounts (-v, --tmpfs) per container")
        }
        for m in spec.mounts {
            try checkTarget(m.target)
            switch m.kind {
            case .bind:
                guard m.source.hasPrefix("/") else {
                    throw BerthError(.invalidArgument, "bind source \(m.source) must be an absolute path")
                }
                var st = stat()
                guard stat(m.source, &st) == 0 else {
                    throw BerthError(.invalidArgument, "bind source \(m.source) does not exist on the host")
                }
            case .tmpfs:
                for option in m.options.split(separator: ",") {
                    let key = option.split(separator: "=", maxSplits: 1).first.map(String.init) ?? ""
                    guard ["size", "mode", "nr_inodes", "uid", "gid", "ro", "rw", "noexec", "exec", "nosuid", "nodev"].contains(key),
                          option.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "=" || $0 == "_" }) else {
                        throw BerthError(.invalidArgument, "invalid --tmpfs option \"\(option)\" for \(m.target)")
                    }
                }
            }
        }
        let targets = spec.mounts.map(\.target)
        if Set(targets).count != targets.count {
            throw BerthError(.invalidArgument, "two mounts share a target: \(targets.joined(separator: ", "))")
        }
    }

    /// A mount target: absolute, not "/", no "." or ".." parts, no NUL. It is resolved
    /// inside the container's root at mount time in any case (RESOLVE_IN_ROOT).
    private static func checkTarget(_ target: String) throws(BerthError) {
        let parts = target.split(separator: "/")
        guard target.hasPrefix("/"), !parts.isEmpty, !parts.contains(where: { $0 == "." || $0 == ".." }), !target.utf8.contains(0) else {
            throw BerthError(.invalidArgument, "mount target \"\(target)\" must be an absolute path inside the container, not / and without . or ..")
        }
    }

    private static func seccompFilter(_ spec: ContainerSpec, capMask: UInt64) throws(BerthError) -> [UInt8] {
        guard spec.seccomp.isEmpty else { return try SeccompProfile.compile(dockerJSON: Array(spec.seccomp.utf8), capMask: capMask) }
        if let bpf = defaultFilters.withLock({ $0[capMask] }) { return bpf }
        let bpf = try SeccompProfile.compileDefault(capMask: capMask)
        defaultFilters.withLock { $0[capMask] = bpf }
        return bpf
    }

    /// The default profile compiled to BPF, by capability mask (the only input it
    /// depends on): nearly every container has the default profile and capabilities,
    /// and compiling it with libseccomp was 15 % of the agent's CPU per start (bench/results).
    private static let defaultFilters = Mutex<[UInt64: [UInt8]]>([:])

    /// The monitor's settings for a run; the seccomp filter is compiled and written to
    /// `bpfPath` (the monitor reads it before the spawn).
    static func settings(_ spec: ContainerSpec, bpfPath: String) throws -> MonitorSecurity {
        var s = MonitorSecurity()
        s.harden = true
        s.capMask = try Capabilities.mask(add: spec.capAdd, drop: spec.capDrop, privileged: spec.privileged)
        s.readonlyRootfs = spec.readOnly
        s.mounts = spec.mounts.map { m in
            MonitorSecurity.Mount(type: m.kind.rawValue, source: m.kind == .tmpfs ? "tmpfs" : m.source, target: m.target,
                                  options: m.kind == .bind ? (m.readOnly ? "ro" : "rw") : (m.readOnly ? "ro," : "") + m.options)
        }
        if spec.privileged { return s }  // docker --privileged: no seccomp, no masks, new privileges allowed
        s.noNewPrivs = !spec.allowNewPrivileges
        s.maskedPaths = maskedPaths
        s.readonlyPaths = readonlyPaths
        if spec.seccomp != "unconfined" {
            // A container's spec never changes: the filter compiled for its first run
            // serves every later one (restarts, restart policies).
            if !Files.exists(bpfPath) {
                // In the run dir (recompiled after a reboot): no fsync needed.
                try Files.writeAtomically(bpfPath, try seccompFilter(spec, capMask: s.capMask), mode: 0o600, durable: false)
            }
            s.seccompFile = bpfPath
        }
        return s
    }

    /// The same confinement for a process exec'd into a running container: its
    /// capabilities, no_new_privs and the filter its run uses (the file written at start).
    static func exec(_ spec: ContainerSpec, bpfPath: String) throws -> ExecSecurity {
        let mask = try Capabilities.mask(add: spec.capAdd, drop: spec.capDrop, privileged: spec.privileged)
        if spec.privileged { return ExecSecurity(capMask: mask, noNewPrivs: false, seccompBPF: []) }
        let bpf = spec.seccomp == "unconfined" ? [] : try Files.read(bpfPath)
        return ExecSecurity(capMask: mask, noNewPrivs: !spec.allowNewPrivileges, seccompBPF: bpf)
    }
}
