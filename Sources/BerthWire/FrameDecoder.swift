import BerthErrors

/// Cuts a byte stream into frames, one at a time, in the style of swift-nio's
/// `ByteToMessageDecoder`: `append` what the socket gave, then call `next()` until it
/// returns `nil` (need more bytes); at end of stream call `finish()`.
///
/// A header announcing more than `maxPayload` bytes is rejected as soon as its 10 bytes are
/// in, before anything is buffered for the payload. An unknown frame type is not an error here:
/// the frame keeps its raw type byte and the connection layer rejects it by name.
public struct FrameDecoder: Sendable {
    /// The largest payload accepted, in bytes.
    public let maxPayload: UInt32

    /// Received bytes; those before `readIndex` are already decoded.
    private var buffer: [UInt8] = []
    private var readIndex = 0

    /// Consumed bytes are dropped from the front of the buffer once there are at least this many
    /// and they make up at least half of it, so each byte is moved O(1) times on average.
    private static let compactThreshold = 64 << 10

    /// A decoder that rejects payloads larger than `maxPayload` bytes.
    public init(maxPayload: UInt32 = FrameHeader.maxPayload) {
        self.maxPayload = maxPayload
    }

    /// Bytes received and not yet decoded: the start of a frame, or 0 at a frame boundary.
    public var bufferedBytes: Int { buffer.count - readIndex }

    /// Adds bytes received from the peer.
    public mutating func append(_ bytes: some Collection<UInt8>) {
        if readIndex >= Self.compactThreshold && readIndex * 2 >= buffer.count {
            buffer.removeSubrange(0..<readIndex)
            readIndex = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next complete frame, or `nil` when more bytes are needed. Throws RESOURCE_EXHAUSTED
    /// (reason `protocol_violation`) for a payload length over `maxPayload`; the decoder is then
    /// unusable, as the stream cannot be resynchronised.
    public mutating func next() throws(BerthError) -> Frame? {
        guard buffer.count - readIndex >= FrameHeader.size else { return nil }
        let header = pendingHeader()
        guard header.length <= maxPayload else {
            throw BerthError(
                .resourceExhausted,
                "frame payload of \(header.length) bytes on stream \(header.streamID) exceeds the \(maxPayload)-byte maximum",
                reason: BerthError.Reason.protocolViolation)
        }
        let payloadStart = readIndex + FrameHeader.size
        let payloadEnd = payloadStart + Int(header.length)
        guard payloadEnd <= buffer.count else { return nil }

        let frame = Frame(streamID: header.streamID, rawType: header.type, flags: header.flags,
                          payload: Array(buffer[payloadStart..<payloadEnd]))
        if payloadEnd == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            readIndex = 0
        } else {
            readIndex = payloadEnd
        }
        return frame
    }

    /// Call at end of stream: throws UNAVAILABLE (reason `protocol_violation`) when the peer
    /// closed the connection in the middle of a frame.
    public func finish() throws(BerthError) {
        let leftover = buffer.count - readIndex
        guard leftover > 0 else { return }
        let detail: String
        if leftover < FrameHeader.size {
            detail = "\(leftover) of the \(FrameHeader.size) header bytes"
        } else {
            let header = pendingHeader()
            detail = "\(leftover - FrameHeader.size) of the \(header.length) payload bytes of a frame on stream \(header.streamID)"
        }
        throw BerthError(.unavailable, "connection closed in the middle of a frame: received \(detail)",
                         reason: BerthError.Reason.protocolViolation)
    }

    /// Parses the big-endian header at `readIndex`; the caller checked that all 10 bytes are there.
    private func pendingHeader() -> FrameHeader {
        func u32(_ at: Int) -> UInt32 {
            UInt32(buffer[at]) << 24 | UInt32(buffer[at + 1]) << 16 | UInt32(buffer[at + 2]) << 8 | UInt32(buffer[at + 3])
        }
        return FrameHeader(length: u32(readIndex), streamID: u32(readIndex + 4), type: buffer[readIndex + 8],
                           flags: FrameFlags(rawValue: buffer[readIndex + 9]))
    }
}
