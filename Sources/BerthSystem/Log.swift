#if canImport(Glibc)
import Glibc
#endif

/// The agent's log: one line per event on stderr, with a timestamp, as supervisors
/// (systemd, a terminal) expect. One `write` per line, so threads never interleave.
public enum Log {
    /// Writes `message` as one line: "2026-12-04T20:11:06Z berthd: message".
    public static func write(_ message: String) {
        let stamp = RFC3339.string(unixSeconds: Int64(time(nil)))
        let line = Array("\(stamp) berthd: \(message)\n".utf8)
        line.withUnsafeBytes { _ = Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
