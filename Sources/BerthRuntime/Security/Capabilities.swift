#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import CCap

/// Linux capabilities by name, and the capability set of a container as a bit mask
/// (bit n = capability n), with docker's `--cap-add`/`--cap-drop`/`--privileged` semantics.
/// Names go through libcap's `cap_from_name`, so capabilities newer than this code are known.
enum Capabilities {
    /// Docker's default capability set (moby `oci/caps/defaults.go`).
    static let dockerDefault: [String] = [
        "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
        "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
    ]

    // Numbers the seccomp policy gates on (linux/capability.h; fixed by the kernel ABI).
    static let dacReadSearch = 2
    static let sysModule = 16
    static let sysRawio = 17
    static let sysPtrace = 19
    static let sysPacct = 20
    static let sysAdmin = 21
    static let sysBoot = 22
    static let sysNice = 23
    static let sysTime = 25
    static let perfmon = 38
    static let bpf = 39

    /// The number of a capability: "CAP_NET_ADMIN", "NET_ADMIN" and "net_admin" are all 12.
    static func number(_ name: String) throws(BerthError) -> Int {
        var bare = name.lowercased()
        if bare.hasPrefix("cap_") { bare.removeFirst(4) }
        // cap_from_name also takes plain numbers ("12"); docker does not, and neither do we.
        let wellFormed = !bare.isEmpty && bare.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || $0 == 0x5f || ($0 >= 0x30 && $0 <= 0x39) }
            && !(bare.utf8.first! >= 0x30 && bare.utf8.first! <= 0x39)
        var value: cap_value_t = 0
        guard wellFormed, cap_from_name("cap_" + bare, &value) == 0, value >= 0, value < 64 else {
            throw BerthError(.invalidArgument, "unknown capability \"\(name)\": give a name such as NET_ADMIN or CAP_NET_ADMIN (see capabilities(7)), or ALL")
        }
        return Int(value)
    }

    /// The highest capability number the running kernel knows
    /// (/proc/sys/kernel/cap_last_cap, else libcap's `cap_max_bits() - 1`).
    static var lastCap: Int {
        if let text = try? Files.readString("/proc/sys/kernel/cap_last_cap"),
           let n = Int(text.filter { $0 != "\n" && $0 != " " }), n >= 0, n < 64 {
            return n
        }
        return min(Int(cap_max_bits()) - 1, 63)
    }

    /// Every capability up to `lastCap`.
    static var allMask: UInt64 {
        let last = lastCap
        return last >= 63 ? UInt64.max : (UInt64(1) << UInt64(last + 1)) - 1
    }

    /// The mask of a list of names (no "ALL").
    static func mask(of names: [String]) throws(BerthError) -> UInt64 {
        var m: UInt64 = 0
        for n in names { m |= UInt64(1) << UInt64(try number(n)) }
        return m
    }

    /// The effective capability set of a container, docker-style: the default set, minus
    /// `drop`, plus `add`. "ALL" in `drop` starts from nothing (then `add` applies, even
    /// for capabilities also named in `drop`); "ALL" in `add` means every capability the
    /// kernel knows; otherwise a capability both added and dropped is dropped.
    /// `privileged` gives every capability (the names are still checked).
    static func mask(add: [String], drop: [String], privileged: Bool) throws(BerthError) -> UInt64 {
        func isAll(_ s: String) -> Bool { s.uppercased() == "ALL" || s.uppercased() == "CAP_ALL" }
        let addAll = add.contains(where: isAll)
        let dropAll = drop.contains(where: isAll)
        let addBits = try mask(of: add.filter { !isAll($0) })
        let dropBits = try mask(of: drop.filter { !isAll($0) })
        let all = allMask
        let unsupported = addBits & ~all
        if unsupported != 0 {
            throw BerthError(.invalidArgument, "capability \(names(unsupported).joined(separator: ", ")) is not supported by this kernel (its last capability is \(lastCap))")
        }
        if privileged { return all }
        let added = addAll ? all : addBits
        if dropAll { return added }
        return (try mask(of: dockerDefault) | added) & ~dropBits
    }

    /// The names of the capabilities in `mask`, upper case without "CAP_" ("NET_ADMIN"),
    /// in number order; numbers libcap has no name for appear as digits.
    static func names(_ mask: UInt64) -> [String] {
        var out: [String] = []
        for bit in 0..<64 where mask & (UInt64(1) << UInt64(bit)) != 0 {
            guard let c = cap_to_name(cap_value_t(bit)) else { out.append(String(bit)); continue }
            var name = String(cString: c).uppercased()
            cap_free(c)
            if name.hasPrefix("CAP_") { name.removeFirst(4) }
            out.append(name)
        }
        return out
    }
}
