import BerthErrors
import Testing
@testable import BerthWire

/// Feeds `input` to a fresh decoder in the pieces given, draining frames after each piece,
/// then calls `finish()`.
private func decode(_ pieces: some Sequence<ArraySlice<UInt8>>,
                    maxPayload: UInt32 = FrameHeader.maxPayload) throws -> [Frame] {
    var decoder = FrameDecoder(maxPayload: maxPayload)
    var frames: [Frame] = []
    for piece in pieces {
        decoder.append(piece)
        while let frame = try decoder.next() { frames.append(frame) }
    }
    try decoder.finish()
    return frames
}

/// `bytes` cut at random points (pieces of 0 to `maxPiece` bytes), reproducibly from `seed`.
private func randomPieces(_ bytes: [UInt8], seed: UInt64, maxPiece: Int) -> [ArraySlice<UInt8>] {
    var generator = SeededGenerator(seed: seed)
    var pieces: [ArraySlice<UInt8>] = []
    var start = 0
    while start < bytes.count {
        let end = min(bytes.count, start + Int.random(in: 0...maxPiece, using: &generator))
        pieces.append(bytes[start..<end])
        start = end
    }
    return pieces
}

/// The same bytes one at a time.
private func bytewise(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
    bytes.indices.map { bytes[$0...$0] }
}

/// A header announcing `length` payload bytes on `streamID`.
private func header(length: UInt32, streamID: UInt32 = 1, type: UInt8 = FrameType.data.rawValue) -> [UInt8] {
    var out: [UInt8] = []
    FrameHeader(length: length, streamID: streamID, type: type, flags: []).encode(into: &out)
    return out
}

/// Many frames: sizes from 0 to past the decoder's compaction threshold, every known type,
/// an unknown one, and both flag values.
private let sampleFrames: [Frame] = {
    var generator = SeededGenerator(seed: 0xB0A7)
    let sizes = [0, 0, 1, 2, 9, 10, 11, 100, 255, 256, 1000, 4096, 0, 65_535, 65_536, 70_000, 3, 0, 150_000, 7]
    let types: [UInt8] = (1...8).map { $0 } + [0x00, 0xee]
    return sizes.enumerated().map { index, size in
        let payload = (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return Frame(streamID: index == 3 ? UInt32.max : UInt32(index * 2 + 1), rawType: types[index % types.count],
                     flags: index % 3 == 0 ? .endStream : [], payload: payload)
    }
}()

private let sampleBytes: [UInt8] = sampleFrames.flatMap { $0.encoded() }

@Suite("FrameDecoder")
struct FrameDecoderTests {
    @Test("all at once")
    func allAtOnce() throws {
        #expect(try decode([sampleBytes[...]]) == sampleFrames)
    }

    @Test("one byte at a time")
    func oneByteAtATime() throws {
        #expect(try decode(bytewise(sampleBytes)) == sampleFrames)
    }

    @Test("split at random points", arguments: [UInt64(1), 2, 3, 42, 0xdead_beef])
    func randomSplits(seed: UInt64) throws {
        #expect(try decode(randomPieces(sampleBytes, seed: seed, maxPiece: 23)) == sampleFrames)
        #expect(try decode(randomPieces(sampleBytes, seed: seed, maxPiece: 100_000)) == sampleFrames)
    }

    @Test("unknown frame types are kept, not rejected")
    func unknownType() throws {
        let frames = try decode([Frame(streamID: 0, rawType: 0xee, flags: [], payload: [1, 2]).encoded()[...]])
        #expect(frames.count == 1)
        #expect(frames.first?.type == 0xee)
        #expect(frames.first?.frameType == nil)
    }

    @Test("an oversize length is rejected from the header alone")
    func oversizeFromHeader() throws {
        var decoder = FrameDecoder()
        let bytes = header(length: FrameHeader.maxPayload + 1, streamID: 7)
        decoder.append(bytes.prefix(FrameHeader.size - 1))
        #expect(try decoder.next() == nil)
        decoder.append(bytes.suffix(1))
        let expected = BerthError(
            .resourceExhausted, "frame payload of 4194305 bytes on stream 7 exceeds the 4194304-byte maximum",
            reason: BerthError.Reason.protocolViolation)
        #expect(throws: expected) { try decoder.next() }
        // The stream cannot be resynchronised; the decoder keeps refusing.
        #expect(throws: expected) { try decoder.next() }

        var largest = FrameDecoder()
        largest.append(header(length: UInt32.max, streamID: 1))
        #expect(throws: BerthError.self) { try largest.next() }
    }

    @Test("a smaller maximum is honoured")
    func customMaximum() throws {
        let fits = Frame(streamID: 1, type: .data, payload: Array(repeating: 9, count: 16))
        #expect(try decode([fits.encoded()[...]], maxPayload: 16) == [fits])
        var decoder = FrameDecoder(maxPayload: 16)
        decoder.append(header(length: 17, streamID: 3))
        #expect(throws: BerthError(.resourceExhausted, "frame payload of 17 bytes on stream 3 exceeds the 16-byte maximum",
                                   reason: BerthError.Reason.protocolViolation)) {
            try decoder.next()
        }
    }

    @Test("a payload of exactly the maximum is accepted")
    func maximumPayload() throws {
        let payload = (0..<Int(FrameHeader.maxPayload)).map { UInt8(truncatingIfNeeded: $0 >> 8) }
        let frame = Frame(streamID: 5, type: .data, flags: .endStream, payload: payload)
        let bytes = frame.encoded()
        let trailer = Frame(streamID: 5, type: .cancel, payload: [])
        #expect(try decode([bytes[...]]) == [frame])
        #expect(try decode(randomPieces(bytes + trailer.encoded(), seed: 9, maxPiece: 1 << 16)) == [frame, trailer])
    }

    @Test("finish() with a partial frame throws")
    func partialAtEOF() throws {
        let empty = FrameDecoder()
        try empty.finish()

        var partialHeader = FrameDecoder()
        partialHeader.append(header(length: 4).prefix(6))
        #expect(try partialHeader.next() == nil)
        #expect(throws: BerthError(.unavailable, "connection closed in the middle of a frame: received 6 of the 10 header bytes",
                                   reason: BerthError.Reason.protocolViolation)) {
            try partialHeader.finish()
        }

        var partialPayload = FrameDecoder()
        partialPayload.append(Frame(streamID: 1, type: .ping, payload: []).encoded())
        partialPayload.append(header(length: 4, streamID: 9) + [1, 2, 3])
        #expect(try partialPayload.next() != nil)
        #expect(try partialPayload.next() == nil)
        #expect(throws: BerthError(
            .unavailable, "connection closed in the middle of a frame: received 3 of the 4 payload bytes of a frame on stream 9",
            reason: BerthError.Reason.protocolViolation)) {
            try partialPayload.finish()
        }
        partialPayload.append([4])
        #expect(try partialPayload.next()?.payload == [1, 2, 3, 4])
        try partialPayload.finish()
    }

    @Test("a frame carrying an encoded message decodes back to it")
    func framedMessage() throws {
        let request = Request.wait("web")
        let frames = try decode([Frame(streamID: 3, type: .request, payload: request.wireEncoded()).encoded()[...]])
        #expect(frames.first?.frameType == .request)
        #expect(try frames.first.map { try Request(wire: $0.payload) } == request)
    }
}
