#if canImport(Glibc)
import Glibc
#endif

/// The agent's log: one line per event on stderr, with a timestamp, as supervisors
/// (systemd, a terminal) expect. One `write` per line, so threads never interleave.
public enum Log {
    /// Writes `message` as one line: "2026-12-04T20:11:06Z berthd: message".
    public static func write(_ message: String) {
        var now = time(nil)
        var tm = tm()
        gmtime_r(&now, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let stamp = "\(tm.tm_year + 1900)-\(two(tm.tm_mon + 1))-\(two(tm.tm_mday))T\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec))Z"
        let line = Array("\(stamp) berthd: \(message)\n".utf8)
        line.withUnsafeBytes { _ = Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
