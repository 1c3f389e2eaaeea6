/// RFC 3339 times without Foundation: civil-date arithmetic on the proleptic
/// Gregorian calendar (Howard Hinnant's `days_from_civil` and `civil_from_days`).
public enum RFC3339 {
    /// Unix nanoseconds of an RFC 3339 time (`2026-12-04T20:11:06.123456789Z`, 0–9
    /// fractional digits, `Z` or an offset such as `+02:00`); nil when malformed or
    /// outside what `Int64` nanoseconds hold.
    public static func parse(_ s: ArraySlice<UInt8>) -> Int64? {
        var i = s.startIndex
        func number(_ width: Int) -> Int64? {
            guard s.endIndex - i >= width else { return nil }
            var v: Int64 = 0
            for _ in 0..<width {
                let c = s[i]
                guard c >= 0x30 && c <= 0x39 else { return nil }
                v = v * 10 + Int64(c - 0x30)
                i += 1
            }
            return v
        }
        func skip(_ c: UInt8, or alt: UInt8? = nil) -> Bool {
            guard i < s.endIndex, s[i] == c || s[i] == alt else { return false }
            i += 1
            return true
        }
        guard let year = number(4), skip(UInt8(ascii: "-")),
              let month = number(2), skip(UInt8(ascii: "-")),
              let day = number(2), skip(UInt8(ascii: "T"), or: UInt8(ascii: "t")),
              let hour = number(2), skip(UInt8(ascii: ":")),
              let minute = number(2), skip(UInt8(ascii: ":")),
              let second = number(2) else { return nil }
        var fraction: Int64 = 0
        if skip(UInt8(ascii: ".")) {
            var digits = 0
            while i < s.endIndex, s[i] >= 0x30 && s[i] <= 0x39 {
                digits += 1
                guard digits <= 9 else { return nil }
                fraction = fraction * 10 + Int64(s[i] - 0x30)
                i += 1
            }
            guard digits > 0 else { return nil }
            for _ in digits..<9 { fraction *= 10 }
        }
        var offset: Int64 = 0
        if skip(UInt8(ascii: "Z"), or: UInt8(ascii: "z")) {
            offset = 0
        } else if i < s.endIndex, s[i] == UInt8(ascii: "+") || s[i] == UInt8(ascii: "-") {
            let sign: Int64 = s[i] == UInt8(ascii: "+") ? 1 : -1
            i += 1
            guard let oh = number(2), skip(UInt8(ascii: ":")), let om = number(2),
                  oh <= 23, om <= 59 else { return nil }
            offset = sign * (oh * 3600 + om * 60)
        } else {
            return nil
        }
        guard i == s.endIndex,
              (1...12).contains(month), day >= 1, day <= daysInMonth(year, month),
              hour <= 23, minute <= 59, second <= 60 else { return nil }
        let seconds = daysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset
        let (scaled, o1) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let (nanos, o2) = scaled.addingReportingOverflow(fraction)
        return o1 || o2 ? nil : nanos
    }

    /// Unix nanoseconds as RFC 3339 UTC with nine fractional digits.
    public static func format(_ nanos: Int64) -> [UInt8] {
        // Floor division, so times before 1970 get a positive fraction.
        var seconds = nanos / 1_000_000_000
        var fraction = nanos % 1_000_000_000
        if fraction < 0 { fraction += 1_000_000_000; seconds -= 1 }
        var days = seconds / 86400
        var secondOfDay = seconds % 86400
        if secondOfDay < 0 { secondOfDay += 86400; days -= 1 }
        let (year, month, day) = civilFromDays(days)
        var out: [UInt8] = []
        out.reserveCapacity(30)
        func put(_ v: Int64, _ width: Int) {
            var digits = [UInt8](repeating: UInt8(ascii: "0"), count: width)
            var v = v
            for k in stride(from: width - 1, through: 0, by: -1) {
                digits[k] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
            }
            out.append(contentsOf: digits)
        }
        put(year, 4); out.append(UInt8(ascii: "-"))
        put(month, 2); out.append(UInt8(ascii: "-"))
        put(day, 2); out.append(UInt8(ascii: "T"))
        put(secondOfDay / 3600, 2); out.append(UInt8(ascii: ":"))
        put(secondOfDay / 60 % 60, 2); out.append(UInt8(ascii: ":"))
        put(secondOfDay % 60, 2); out.append(UInt8(ascii: "."))
        put(fraction, 9); out.append(UInt8(ascii: "Z"))
        return out
    }

    static func daysInMonth(_ year: Int64, _ month: Int64) -> Int64 {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    static func daysFromCivil(_ year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    static func civilFromDays(_ days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// `parse` of a string.
    public static func parse(_ text: String) -> Int64? { parse(Array(text.utf8)[...]) }

    /// Unix seconds as RFC 3339 UTC without a fraction: "2026-12-04T20:11:06Z".
    public static func string(unixSeconds: Int64) -> String {
        let full = format(unixSeconds * 1_000_000_000)
        return String(decoding: full.prefix(19), as: UTF8.self) + "Z"
    }
}
