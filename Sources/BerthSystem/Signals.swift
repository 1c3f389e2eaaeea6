#if canImport(Glibc)
import Glibc
#endif
import BerthErrors

/// Signal names and numbers, as `kill -s` and docker's `--signal` take them.
public enum Signals {
    static let names: [(String, Int32)] = [
        ("HUP", SIGHUP), ("INT", SIGINT), ("QUIT", SIGQUIT), ("ILL", SIGILL), ("TRAP", SIGTRAP),
        ("ABRT", SIGABRT), ("BUS", SIGBUS), ("FPE", SIGFPE), ("KILL", SIGKILL), ("USR1", SIGUSR1),
        ("SEGV", SIGSEGV), ("USR2", SIGUSR2), ("PIPE", SIGPIPE), ("ALRM", SIGALRM), ("TERM", SIGTERM),
        ("STKFLT", SIGSTKFLT), ("CHLD", SIGCHLD), ("CONT", SIGCONT), ("STOP", SIGSTOP), ("TSTP", SIGTSTP),
        ("TTIN", SIGTTIN), ("TTOU", SIGTTOU), ("URG", SIGURG), ("XCPU", SIGXCPU), ("XFSZ", SIGXFSZ),
        ("VTALRM", SIGVTALRM), ("PROF", SIGPROF), ("WINCH", SIGWINCH), ("IO", SIGIO), ("PWR", SIGPWR),
        ("SYS", SIGSYS),
    ]

    /// Parses "KILL", "SIGKILL", "sigkill", "9" or "RTMIN+3". INVALID_ARGUMENT otherwise.
    public static func parse(_ text: String) throws(BerthError) -> Int32 {
        if let n = Int32(text) {
            guard n >= 1 && n <= 64 else { throw BerthError(.invalidArgument, "invalid signal number \(n): signals are 1 to 64") }
            return n
        }
        var name = text.uppercased()
        if name.hasPrefix("SIG") { name.removeFirst(3) }
        if let n = names.first(where: { $0.0 == name })?.1 { return n }
        if name.hasPrefix("RTMIN+"), let k = Int32(name.dropFirst(6)), k >= 0, 34 + k <= 64 { return 34 + k }
        throw BerthError(.invalidArgument, "unknown signal \"\(text)\": use a name like TERM, SIGKILL or HUP, or a number from 1 to 64")
    }

    /// "SIGTERM" for 15; "SIG42" for a number without a name.
    public static func name(_ n: Int32) -> String {
        "SIG" + (names.first { $0.1 == n }?.0 ?? String(n))
    }
}

