import BerthErrors

/// A JSON value with the line it starts on (for error messages that point at it): a
/// small strict parser (RFC 8259, no Foundation, so the CLI starts fast) for seccomp
/// profiles and the fleet's hosts file. Objects, arrays, strings with every escape,
/// integers (up to UInt64, or down to Int64.min), true, false, null. Numbers with a
/// fraction or an exponent are rejected: nothing Berth reads needs them.
public struct JSON: Sendable {
    public enum Value: Sendable {
        case object([(key: String, value: JSON)])
        case array([JSON])
        case string(String)
        /// An integer: its magnitude and sign.
        case integer(negative: Bool, magnitude: UInt64)
        case bool(Bool)
        case null
    }
    public var value: Value
    public var line: Int

    /// "an object", "a string"…: for "expected X, found Y" messages.
    public var kind: String {
        switch value {
        case .object: "an object"
        case .array: "an array"
        case .string: "a string"
        case .integer: "a number"
        case .bool: "a boolean"
        case .null: "null"
        }
    }

    /// The member `key` of an object (the last one when repeated), nil if absent or not an object.
    public subscript(key: String) -> JSON? {
        guard case .object(let members) = value else { return nil }
        return members.last(where: { $0.key == key })?.value
    }

    /// Parses a whole document; `what` prefixes error messages ("seccomp profile").
    /// `fractions`: numbers with a fraction or exponent are accepted and read as their
    /// integer part (image configs and manifests may hold them; Berth reads none).
    public static func parse(_ bytes: [UInt8], what: String, fractions: Bool = false) throws(BerthError) -> JSON {
        var p = Parser(bytes: bytes, what: what)
        p.fractions = fractions
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        if p.pos < bytes.count { throw p.fail("unexpected \(p.describeHere()) after the end of the document") }
        return v
    }

    private struct Parser {
        let bytes: [UInt8]
        let what: String
        var pos = 0
        var line = 1
        var lineStart = 0
        var fractions = false

        init(bytes: [UInt8], what: String) { self.bytes = bytes; self.what = what }

        func fail(_ message: String) -> BerthError {
            BerthError(.invalidArgument, "\(what): line \(line): \(message) (column \(pos - lineStart + 1))")
        }

        func describeHere() -> String {
            guard pos < bytes.count else { return "end of input" }
            let b = bytes[pos]
            if b >= 0x21 && b < 0x7f { return "'\(Character(Unicode.Scalar(b)))'" }
            return "byte 0x\(String(b, radix: 16))"
        }

        mutating func skipSpace() {
            while pos < bytes.count {
                switch bytes[pos] {
                case 0x20, 0x09, 0x0d: pos += 1
                case 0x0a: pos += 1; line += 1; lineStart = pos
                default: return
                }
            }
        }

        mutating func expect(_ c: UInt8, _ context: String) throws(BerthError) {
            skipSpace()
            guard pos < bytes.count, bytes[pos] == c else {
                throw fail("expected '\(Character(Unicode.Scalar(c)))' \(context), found \(describeHere())")
            }
            pos += 1
        }

        mutating func value(depth: Int) throws(BerthError) -> JSON {
            skipSpace()
            if depth > 64 { throw fail("nested too deeply") }
            guard pos < bytes.count else { throw fail("expected a value, found end of input") }
            let startLine = line
            switch bytes[pos] {
            case UInt8(ascii: "{"):
                pos += 1
                var members: [(key: String, value: JSON)] = []
                skipSpace()
                if pos < bytes.count && bytes[pos] == UInt8(ascii: "}") { pos += 1; return JSON(value: .object(members), line: startLine) }
                while true {
                    skipSpace()
                    guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else {
                        throw fail("expected a member name in double quotes, found \(describeHere())")
                    }
                    let key = try string()
                    try expect(UInt8(ascii: ":"), "after member name \"\(key)\"")
                    members.append((key, try value(depth: depth + 1)))
                    skipSpace()
                    guard pos < bytes.count else { throw fail("unterminated object: expected ',' or '}', found end of input") }
                    if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                    if bytes[pos] == UInt8(ascii: "}") { pos += 1; break }
                    throw fail("expected ',' or '}' after an object member, found \(describeHere())")
                }
                return JSON(value: .object(members), line: startLine)
            case UInt8(ascii: "["):
                pos += 1
                var items: [JSON] = []
                skipSpace()
                if pos < bytes.count && bytes[pos] == UInt8(ascii: "]") { pos += 1; return JSON(value: .array(items), line: startLine) }
                while true {
                    items.append(try value(depth: depth + 1))
                    skipSpace()
                    guard pos < bytes.count else { throw fail("unterminated array: expected ',' or ']', found end of input") }
                    if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                    if bytes[pos] == UInt8(ascii: "]") { pos += 1; break }
                    throw fail("expected ',' or ']' after an array element, found \(describeHere())")
                }
                return JSON(value: .array(items), line: startLine)
            case UInt8(ascii: "\""):
                return JSON(value: .string(try string()), line: startLine)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                return JSON(value: try number(), line: startLine)
            default:
                for (word, v) in [("true", Value.bool(true)), ("false", .bool(false)), ("null", .null)] {
                    let w = Array(word.utf8)
                    if bytes.count - pos >= w.count && Array(bytes[pos..<pos + w.count]) == w {
                        let end = pos + w.count
                        if end == bytes.count || !isWordByte(bytes[end]) {
                            pos = end
                            return JSON(value: v, line: startLine)
                        }
                    }
                }
                throw fail("expected a value, found \(describeHere())")
            }
        }

        func isWordByte(_ b: UInt8) -> Bool {
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b == 0x5f
        }

        mutating func number() throws(BerthError) -> Value {
            var negative = false
            if bytes[pos] == UInt8(ascii: "-") { negative = true; pos += 1 }
            guard pos < bytes.count, bytes[pos] >= 0x30 && bytes[pos] <= 0x39 else {
                throw fail("expected a digit, found \(describeHere())")
            }
            if bytes[pos] == 0x30, pos + 1 < bytes.count, bytes[pos + 1] >= 0x30 && bytes[pos + 1] <= 0x39 {
                throw fail("numbers must not have leading zeros")
            }
            var magnitude: UInt64 = 0
            while pos < bytes.count, bytes[pos] >= 0x30 && bytes[pos] <= 0x39 {
                let (m, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (s, o2) = m.addingReportingOverflow(UInt64(bytes[pos] - 0x30))
                if o1 || o2 { throw fail("number too large (the largest is \(UInt64.max))") }
                magnitude = s
                pos += 1
            }
            if fractions {
                while pos < bytes.count, bytes[pos] == UInt8(ascii: ".") || bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E")
                        || bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") || (bytes[pos] >= 0x30 && bytes[pos] <= 0x39) {
                    pos += 1
                }
            }
            if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") || bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E") {
                throw fail("only integers are allowed here (no fraction or exponent)")
            }
            if negative && magnitude > UInt64(Int64.max) + 1 { throw fail("number too small (the smallest is \(Int64.min))") }
            if pos < bytes.count, isWordByte(bytes[pos]) { throw fail("unexpected \(describeHere()) in a number") }
            return .integer(negative: negative && magnitude != 0, magnitude: magnitude)
        }

        mutating func hex4() throws(BerthError) -> UInt32 {
            guard bytes.count - pos >= 4 else { throw fail("\\u needs four hex digits") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let b = bytes[pos]
                let d: UInt32
                switch b {
                case 0x30...0x39: d = UInt32(b - 0x30)
                case 0x41...0x46: d = UInt32(b - 0x41 + 10)
                case 0x61...0x66: d = UInt32(b - 0x61 + 10)
                default: throw fail("\\u needs four hex digits, found \(describeHere())")
                }
                v = v * 16 + d
                pos += 1
            }
            return v
        }

        /// A string; `pos` is at the opening quote.
        mutating func string() throws(BerthError) -> String {
            pos += 1
            var out: [UInt8] = []
            while true {
                guard pos < bytes.count else { throw fail("unterminated string") }
                let b = bytes[pos]
                switch b {
                case UInt8(ascii: "\""):
                    pos += 1
                    // Invalid UTF-8 is rejected rather than repaired.
                    guard let s = String(validating: out, as: UTF8.self) else { throw fail("string is not valid UTF-8") }
                    return s
                case UInt8(ascii: "\\"):
                    pos += 1
                    guard pos < bytes.count else { throw fail("unterminated string") }
                    let e = bytes[pos]
                    pos += 1
                    switch e {
                    case UInt8(ascii: "\""): out.append(0x22)
                    case UInt8(ascii: "\\"): out.append(0x5c)
                    case UInt8(ascii: "/"): out.append(0x2f)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0c)
                    case UInt8(ascii: "n"): out.append(0x0a)
                    case UInt8(ascii: "r"): out.append(0x0d)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "u"):
                        var scalar = try hex4()
                        if scalar >= 0xd800 && scalar < 0xdc00 {
                            guard bytes.count - pos >= 2, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else {
                                throw fail("unpaired surrogate \\u\(String(scalar, radix: 16))")
                            }
                            pos += 2
                            let low = try hex4()
                            guard low >= 0xdc00 && low < 0xe000 else { throw fail("unpaired surrogate \\u\(String(scalar, radix: 16))") }
                            scalar = 0x10000 + ((scalar - 0xd800) << 10) + (low - 0xdc00)
                        } else if scalar >= 0xdc00 && scalar < 0xe000 {
                            throw fail("unpaired surrogate \\u\(String(scalar, radix: 16))")
                        }
                        out.append(contentsOf: Array(String(Character(Unicode.Scalar(scalar)!)).utf8))
                    default:
                        pos -= 1
                        throw fail("invalid escape \\\(describeHere())")
                    }
                case 0x0a:
                    throw fail("unterminated string (a raw newline inside a string)")
                case 0..<0x20:
                    throw fail("control character 0x\(String(b, radix: 16)) inside a string: escape it")
                default:
                    out.append(b)
                    pos += 1
                }
            }
        }
    }
}
