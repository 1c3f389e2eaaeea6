#if canImport(Glibc)
import Glibc
#endif
import BerthSystem

/// Times as the CLI reads and prints them.
enum Time {
    static var nowNanos: Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// `--since`: RFC 3339 ("2026-12-04T20:00:00Z", "…T20:00:00.5+01:00"), unix seconds
    /// ("1796414805" or with a fraction), or a duration back from now ("10m", "1h30m", "45s").
    static func parseSince(_ text: String, now: Int64) -> Int64? {
        if let d = duration(text) { return now - d }
        if let s = Double(text), !text.contains(":") { return Int64(s * 1_000_000_000) }
        return RFC3339.parse(text)
    }

    /// "1h30m10s" → nanoseconds.
    static func duration(_ text: String) -> Int64? {
        var total: Int64 = 0, number = ""
        var sawUnit = false
        for c in text {
            if c.isNumber || c == "." { number.append(c); continue }
            guard let n = Double(number) else { return nil }
            let unit: Double
            switch c {
            case "h": unit = 3600
            case "m": unit = 60
            case "s": unit = 1
            default: return nil
            }
            total += Int64(n * unit * 1_000_000_000)
            number = ""
            sawUnit = true
        }
        return sawUnit && number.isEmpty ? total : nil
    }

    /// Unix seconds as RFC 3339 UTC ("2026-12-04T20:11:06Z").
    static func format(unix seconds: Int64) -> String {
        RFC3339.string(unixSeconds: seconds)
    }
}
