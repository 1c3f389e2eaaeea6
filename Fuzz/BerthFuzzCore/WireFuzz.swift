import BerthErrors
import BerthWire
// Spec validation (Validate.spec, Validate.podSpec) is internal to BerthRuntime. It is
// reached with @testable, which needs BerthRuntime compiled with -enable-testing: SwiftPM
// does that in debug builds (swift build, swift test), and deploy/fuzz.sh passes
// -enable-testing with -D BERTH_FUZZ. A plain release build compiles without it.
// See docs/fuzzing.md ("Spec validation").
#if DEBUG || BERTH_FUZZ
@testable import BerthRuntime
#endif

/// The checks the fuzz target (Fuzz/berth-fuzz) and the regression tests
/// (Tests/BerthWireTests/FuzzRegressionTests.swift) run on one input: the bytes a peer
/// could send on a connection. A check that does not hold is returned as a message; a
/// trap anywhere (overflow, out-of-bounds index, failed precondition) is a crash.
public enum WireFuzz {
    /// Whether spec validation is compiled in (see the import above).
    public static var validatesSpecs: Bool {
        #if DEBUG || BERTH_FUZZ
        return true
        #else
        return false
        #endif
    }

    /// Runs every check on `bytes`; returns the failures (empty: all held).
    public static func check(_ bytes: [UInt8]) -> [String] {
        var failures: [String] = []

        // (a) The frame decoder, fed in several chunkings, must agree with itself.
        let whole = decode(bytes, chunks: [bytes.count])
        let single = decode(bytes, chunks: Array(repeating: 1, count: bytes.count))
        let cut = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
        let split = decode(bytes, chunks: [cut, bytes.count - cut])
        if single != whole { failures.append("decoder: one byte at a time gives \(single), the whole buffer \(whole)") }
        if split != whole { failures.append("decoder: split at \(cut) gives \(split), the whole buffer \(whole)") }

        // (b) Every payload through every message decoder; what decodes must round-trip.
        for frame in whole.frames {
            failures += checkPayload(frame)
        }
        return failures
    }

    /// What a decoder made of a byte stream: the frames, then how it ended.
    struct Outcome: Equatable, CustomStringConvertible {
        var frames: [Frame] = []
        /// The error `next()` threw (the stream is then dead), if any.
        var error: BerthError?
        /// Whether `finish()` threw (the stream ended inside a frame).
        var truncated = false

        var description: String {
            "\(frames.count) frames" + (error.map { ", error \($0)" } ?? "") + (truncated ? ", truncated" : "")
        }
    }

    /// Feeds `bytes` to a fresh decoder in chunks of the given sizes, draining it after each.
    static func decode(_ bytes: [UInt8], chunks: [Int]) -> Outcome {
        var decoder = FrameDecoder()
        var outcome = Outcome()
        var start = 0
        for size in chunks {
            decoder.append(bytes[start..<start + size])
            start += size
            do {
                while let frame = try decoder.next() { outcome.frames.append(frame) }
            } catch {
                outcome.error = error
                return outcome
            }
        }
        do { try decoder.finish() } catch { outcome.truncated = true }
        return outcome
    }

    /// Decodes a payload as each message type; each one that decodes must re-encode to bytes
    /// that decode to an equal value.
    static func checkPayload(_ frame: Frame) -> [String] {
        var failures: [String] = []
        let payload = frame.payload
        if let request = try? Request(wire: payload) {
            failures += roundTrip(request)
            validate(request)
        }
        if let response = try? Response(wire: payload) { failures += roundTrip(response) }
        // The stream-level payloads, whatever the frame type says (the connection layer
        // picks by type; here every decoder sees every payload).
        if let chunk = try? Chunk(wire: payload) {
            failures += roundTrip(chunk)
            _ = chunk.terminalSize
        }
        if let update = try? WindowUpdate(wire: payload) { failures += roundTrip(update) }
        if let ping = try? Ping(wire: payload) { failures += roundTrip(ping) }
        if let cancel = try? Cancel(wire: payload) { failures += roundTrip(cancel) }
        if let goAway = try? GoAway(wire: payload) { failures += roundTrip(goAway) }
        _ = frame.frameType
        return failures
    }

    /// `message` encoded and decoded again must be equal to itself.
    static func roundTrip<M: WireMessage & Equatable>(_ message: M) -> [String] {
        let encoded = message.wireEncoded()
        do {
            let again = try M(wire: encoded)
            if again != message {
                return ["round trip: \(M.self) \(message) re-encoded (\(encoded.count) bytes) decodes to \(again)"]
            }
        } catch {
            return ["round trip: \(M.self) \(message) re-encoded (\(encoded.count) bytes) does not decode: \(error)"]
        }
        return []
    }

    /// (c) Runs the agent's spec validation on the specs a request carries. Validation may
    /// refuse anything; it must not trap.
    static func validate(_ request: Request) {
        #if DEBUG || BERTH_FUZZ
        switch request {
        case .createContainer(let spec), .run(let spec):
            var spec = spec
            _ = try? Validate.spec(&spec)
            _ = Validate.environment(spec)
        case .createPod(let spec):
            var spec = spec
            _ = try? Validate.podSpec(&spec)
        default:
            break
        }
        #endif
    }
}
