#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import BerthWire

/// The agent's journal of lifecycle events (docs/events.md): every event gets the next
/// sequence number, is appended to a file, and is kept in memory for readers and
/// followers. A client that lost its stream asks again from the last number it saw and
/// gets everything after it that the journal still holds.
///
/// On disk: `<state-dir>/events.journal`, records of a 4-byte big-endian length and a
/// `berth.v1.Event`. Appends are one write(2) each; a record cut short by a crash is
/// dropped at the next start. When the file holds twice `retention` records it is
/// rewritten with the newest `retention` (temporary file + rename), so the numbers go on
/// across restarts and the file stays bounded.
public final class EventJournal: Sendable {
    public let path: String
    public let retention: Int

    struct State {
        /// The newest events, oldest first; at most `retention`.
        var events: [Event] = []
        var lastSeq: UInt64 = 0
        /// Records in the file (compacted at 2 × retention).
        var fileRecords = 0
        var file: FileDescriptor?
        var closed = false
    }

    let state: ConditionLock<State>

    /// Opens the journal at `path`, reading what a previous agent recorded.
    public init(path: String, retention: Int = 10_000) throws {
        self.path = path
        self.retention = max(1, retention)
        var s = State()
        if Files.exists(path) {
            let bytes = try Files.read(path)
            var offset = 0
            var good = 0
            var all: [Event] = []
            while offset + 4 <= bytes.count {
                let n = Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
                guard n <= 1 << 20, offset + 4 + n <= bytes.count,
                      let event = try? Event(wire: Array(bytes[(offset + 4)..<(offset + 4 + n)])) else { break }
                all.append(event)
                offset += 4 + n
                good = offset
            }
            if good < bytes.count {
                Log.write("event journal \(path): dropping \(bytes.count - good) bytes of a record cut short")
                _ = truncate(path, off_t(good))
            }
            s.lastSeq = all.last?.seq ?? 0
            s.fileRecords = all.count
            s.events = Array(all.suffix(self.retention))
        }
        s.file = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, mode: 0o600)
        state = ConditionLock(s)
    }

    /// Records `event` with the next sequence number and the current time; returns it.
    @discardableResult
    public func record(_ event: Event) -> Event {
        state.withLock { s in
            var e = event
            s.lastSeq += 1
            e.seq = s.lastSeq
            e.timeUnixNanos = Host.realtimeNanos
            s.events.append(e)
            if s.events.count > retention { s.events.removeFirst(s.events.count - retention) }
            append(&s, e)
            return e
        }
    }

    private func append(_ s: inout State, _ e: Event) {
        guard let file = s.file else { return }
        let body = e.wireEncoded()
        let n = UInt32(body.count)
        let record = [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + body
        do { try file.writeAll(record) } catch {
            Log.write("event journal \(path): \(error.berthError("write").message)")
            return
        }
        s.fileRecords += 1
        if s.fileRecords >= 2 * retention { compact(&s) }
    }

    /// Rewrites the file with the events held in memory.
    private func compact(_ s: inout State) {
        var bytes: [UInt8] = []
        for e in s.events {
            let body = e.wireEncoded()
            let n = UInt32(body.count)
            bytes += [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + body
        }
        do {
            try Files.writeAtomically(path, bytes, mode: 0o600)
            s.file?.close()
            s.file = try FileDescriptor.open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
            s.fileRecords = s.events.count
        } catch {
            Log.write("event journal \(path): compaction failed: \(error.berthError("compact").message)")
        }
    }

    /// The number of the newest event (0: none yet).
    public var lastSeq: UInt64 { state.withLock { $0.lastSeq } }

    /// Where a request starts: the sequence number after which its events come.
    public func cursor(for request: EventsRequest) -> UInt64 {
        state.withLock { s in
            if request.fromStart { return 0 }
            if request.sinceSeq > 0 { return min(request.sinceSeq, s.lastSeq) }
            if request.sinceUnixNanos > 0 {
                guard let first = s.events.first(where: { $0.timeUnixNanos >= request.sinceUnixNanos }) else { return s.lastSeq }
                return first.seq - 1
            }
            return s.lastSeq
        }
    }

    /// Up to `limit` events after `cursor`, with how many the journal no longer holds.
    public func events(after cursor: UInt64, limit: Int = 1000) -> EventBatch {
        state.withLock { s in
            let oldest = s.events.first?.seq ?? s.lastSeq + 1
            let lost = oldest > cursor + 1 ? oldest - cursor - 1 : 0
            let start = s.events.firstIndex { $0.seq > cursor } ?? s.events.count
            let slice = s.events[start..<min(s.events.count, start + limit)]
            return EventBatch(events: Array(slice), oldestSeq: s.events.first?.seq ?? 0, lost: lost,
                              position: slice.last?.seq ?? cursor)
        }
    }

    /// Blocks until an event after `cursor` exists, the journal closes, or the time
    /// passes; true when there is something to read.
    public func waitForEvents(after cursor: UInt64, timeoutNanos: UInt64) -> Bool {
        state.wait(timeoutNanos: timeoutNanos) { s in
            if s.closed { return false }
            return s.lastSeq > cursor ? true : nil
        } ?? false
    }

    /// Wakes followers and closes the file (agent shutdown).
    public func close() {
        state.withLock { s in
            s.closed = true
            s.file?.close()
            s.file = nil
        }
    }
}
