import BerthErrors

/// An IPv4 address as a 32-bit number in host order ("10.217.0.2" is 0x0AD90002).
public struct IPv4Address: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var value: UInt32
    public init(_ value: UInt32) { self.value = value }

    /// Parses dotted-quad notation strictly: four decimal numbers 0-255, no leading zeros
    /// (which some parsers read as octal), nothing else.
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }),
                  !(p.count > 1 && p.first == "0"), let n = UInt32(p), n <= 255 else { return nil }
            v = v << 8 | n
        }
        value = v
    }

    public var description: String {
        "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)"
    }

    public var isLoopback: Bool { value >> 24 == 127 }
    public var isUnspecified: Bool { value == 0 }

    public static func < (a: IPv4Address, b: IPv4Address) -> Bool { a.value < b.value }
}

/// An IPv4 subnet in CIDR notation ("10.217.0.0/16").
public struct IPv4Subnet: Sendable, Hashable, CustomStringConvertible {
    /// The network address (host bits zero).
    public let network: IPv4Address
    public let prefixLength: Int

    public init(network: IPv4Address, prefixLength: Int) {
        self.prefixLength = max(0, min(32, prefixLength))
        self.network = IPv4Address(network.value & IPv4Subnet.mask(self.prefixLength))
    }

    /// Parses "A.B.C.D/N". Host bits must be zero ("10.0.0.1/8" is refused, as docker
    /// does), and N must leave room for a gateway and at least one container (8...30).
    public init(parsing text: String) throws(BerthError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPv4Address(String(parts[0])),
              parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(parts[1]), n <= 32 else {
            throw BerthError(.invalidArgument, "invalid subnet \"\(text)\": expected CIDR notation such as 10.218.0.0/24")
        }
        guard (8...30).contains(n) else {
            throw BerthError(.invalidArgument, "invalid subnet \"\(text)\": the prefix length must be from 8 to 30")
        }
        guard address.value & ~IPv4Subnet.mask(n) == 0 else {
            throw BerthError(.invalidArgument,
                             "invalid subnet \"\(text)\": host bits are set; did you mean \(IPv4Subnet(network: address, prefixLength: n))?")
        }
        self.init(network: address, prefixLength: n)
    }

    static func mask(_ prefixLength: Int) -> UInt32 {
        prefixLength == 0 ? 0 : UInt32.max << UInt32(32 - prefixLength)
    }

    public var mask: UInt32 { IPv4Subnet.mask(prefixLength) }
    public var broadcast: IPv4Address { IPv4Address(network.value | ~mask) }
    /// The first usable address: the bridge's (the gateway).
    public var gateway: IPv4Address { IPv4Address(network.value + 1) }
    /// Addresses containers can get: after the gateway, before the broadcast address.
    public var hostRange: ClosedRange<UInt32> { (network.value + 2)...(broadcast.value - 1) }

    public func contains(_ a: IPv4Address) -> Bool { a.value & mask == network.value }

    public func overlaps(_ other: IPv4Subnet) -> Bool {
        let m = IPv4Subnet.mask(min(prefixLength, other.prefixLength))
        return network.value & m == other.network.value & m
    }

    public var description: String { "\(network)/\(prefixLength)" }
}
