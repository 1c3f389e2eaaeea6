import BerthErrors

/// The kind of a frame (byte 8 of the header). See docs/protocol.md.
public enum FrameType: UInt8, Sendable, Hashable {
    /// Opens a stream; payload `Request`. Sent by the side that owns the stream id.
    case request = 0x01
    /// A result or an error on a stream; payload `Response`.
    case response = 0x02
    /// Stream bytes (output, an upload); payload `Chunk`; counted by flow control.
    case data = 0x03
    /// Grants the peer more DATA bytes on a stream; payload `WindowUpdate`.
    case windowUpdate = 0x04
    /// Abandons a stream, either direction; payload `Cancel`.
    case cancel = 0x05
    /// Keepalive probe on stream 0; payload `Ping`.
    case ping = 0x06
    /// Keepalive answer on stream 0, echoing the nonce; payload `Ping`.
    case pong = 0x07
    /// The sender closes the connection; stream 0; payload `GoAway`.
    case goAway = 0x08
}

/// Frame flags (byte 9 of the header).
public struct FrameFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// The sender sends nothing more on this stream.
    public static let endStream = FrameFlags(rawValue: 0x01)
}

/// The fixed 10-byte frame header, big-endian:
/// payload length (u32), stream id (u32), type (u8), flags (u8).
public struct FrameHeader: Sendable, Hashable {
    public static let size = 10
    /// The largest payload either side accepts (4 MiB).
    public static let maxPayload: UInt32 = 4 << 20

    public var length: UInt32
    public var streamID: UInt32
    /// The raw type byte; unknown types are kept so the receiver can reject them by name.
    public var type: UInt8
    public var flags: FrameFlags

    public init(length: UInt32, streamID: UInt32, type: UInt8, flags: FrameFlags) {
        self.length = length; self.streamID = streamID; self.type = type; self.flags = flags
    }

    /// Appends the 10 header bytes to `out`.
    public func encode(into out: inout [UInt8]) {
        out.append(UInt8(truncatingIfNeeded: length >> 24))
        out.append(UInt8(truncatingIfNeeded: length >> 16))
        out.append(UInt8(truncatingIfNeeded: length >> 8))
        out.append(UInt8(truncatingIfNeeded: length))
        out.append(UInt8(truncatingIfNeeded: streamID >> 24))
        out.append(UInt8(truncatingIfNeeded: streamID >> 16))
        out.append(UInt8(truncatingIfNeeded: streamID >> 8))
        out.append(UInt8(truncatingIfNeeded: streamID))
        out.append(type)
        out.append(flags.rawValue)
    }
}

/// One frame: a header and its (still encoded) protobuf payload.
public struct Frame: Sendable, Hashable {
    public var streamID: UInt32
    public var type: UInt8
    public var flags: FrameFlags
    public var payload: [UInt8]

    public init(streamID: UInt32, type: FrameType, flags: FrameFlags = [], payload: [UInt8]) {
        self.streamID = streamID; self.type = type.rawValue; self.flags = flags; self.payload = payload
    }

    public init(streamID: UInt32, rawType: UInt8, flags: FrameFlags, payload: [UInt8]) {
        self.streamID = streamID; self.type = rawType; self.flags = flags; self.payload = payload
    }

    public var frameType: FrameType? { FrameType(rawValue: type) }

    /// Header and payload, ready for the socket.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(FrameHeader.size + payload.count)
        FrameHeader(length: UInt32(payload.count), streamID: streamID, type: type, flags: flags).encode(into: &out)
        out.append(contentsOf: payload)
        return out
    }
}
