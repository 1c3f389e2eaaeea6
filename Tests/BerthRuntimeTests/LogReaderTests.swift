// Tests of LogReader: CRI log records as berth-monitor writes them (docs/monitor.md),
// read back whole, filtered, tailed and followed across rotation. Fixture files are
// written in a temp dir in the exact on-disk format; no root needed.
#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
@testable import BerthRuntime
import BerthSystem
import Testing

// MARK: - Fixtures

/// 2026-12-04T20:11:06Z.
private let t0: Int64 = 1_796_415_066 * 1_000_000_000

/// A fresh temp dir, removed afterwards pass or fail.
private func withTempDir<R>(_ body: (String) throws -> R) throws -> R {
    var template = Array("/tmp/berth-logs-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw Errno.current.error("mkdtemp") }
    let dir = String(cString: made)
    defer {
        #expect(throws: Never.self) { try Files.removeTree(dir) }
    }
    return try body(dir)
}

/// One record line, exactly as the monitor writes it.
private func line(_ nanos: Int64, _ stream: String, _ tag: String, _ content: String) -> String {
    "\(LogRecord.formatTime(nanos)) \(stream) \(tag) \(content)\n"
}

private func write(_ path: String, _ text: String) throws {
    try write(path, Array(text.utf8))
}

private func write(_ path: String, _ bytes: [UInt8]) throws {
    let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC)
    defer { fd.close() }
    try fd.writeAll(bytes)
}

/// Everything a reader emitted: per stream, and the chunks in order.
private struct Collected {
    var stdout: [UInt8] = []
    var stderr: [UInt8] = []
    var chunks: [(LogStream, [UInt8])] = []

    var out: String { String(decoding: stdout, as: UTF8.self) }
    var err: String { String(decoding: stderr, as: UTF8.self) }

    mutating func add(_ stream: LogStream, _ bytes: [UInt8]) {
        chunks.append((stream, bytes))
        if stream == .stdout { stdout += bytes } else { stderr += bytes }
    }
}

/// Reads the log at `path` without following.
private func read(_ path: String, _ options: LogOptions = LogOptions()) throws -> Collected {
    var c = Collected()
    try LogReader(path: path, options: options).run(emit: { c.add($0, $1) }, isDone: { true })
    return c
}

private struct TestError: Error, Equatable {}

/// Plays berth-monitor's part: appends records to console.log and rotates it exactly as
/// docs/monitor.md says (rename .(N-1) → .N … console.log → .1, then a new console.log).
/// Used by one thread at a time: set up by the test, then handed to the writer thread.
private final class MonitorSim: @unchecked Sendable {
    let path: String
    let maxFiles: Int
    private var fd: FileDescriptor?

    init(path: String, maxFiles: Int) {
        self.path = path
        self.maxFiles = maxFiles
    }

    deinit { fd?.close() }

    func append(_ text: String) throws {
        if fd == nil { fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_APPEND) }
        try fd?.writeAll(text)
    }

    /// Rotates; with `gapNanos`, sleeps between renaming the live file away and creating
    /// the new one, so readers see the moment when console.log does not exist.
    func rotate(gapNanos: UInt64 = 0) throws {
        fd?.close()
        fd = nil
        for n in stride(from: maxFiles - 1, through: 1, by: -1) where Files.exists("\(path).\(n)") {
            try sys("rename") { rename("\(path).\(n)", "\(path).\(n + 1)") }
        }
        try sys("rename") { rename(path, "\(path).1") }
        if gapNanos > 0 { sleepNanos(gapNanos) }
        fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_APPEND)
    }
}

private func sleepNanos(_ nanos: UInt64) {
    var ts = timespec(tv_sec: Int(nanos / 1_000_000_000), tv_nsec: Int(nanos % 1_000_000_000))
    var rem = timespec()
    while nanosleep(&ts, &rem) != 0 && errno == EINTR { ts = rem }
}

/// The writer side of a follow test, on its own thread.
private struct WriterState {
    /// Set when the reader first asks whether to stop: it has read what was there.
    var readerStarted = false
    var done = false
    var failure: String?
}

/// Starts `body` on a thread; `done` becomes true when it returns (or fails).
private func startWriter(_ state: ConditionLock<WriterState>, _ body: @escaping @Sendable () throws -> Void) {
    startThread("log-writer") {
        do { try body() } catch { state.withLock { $0.failure = "\(error)" } }
        state.withLock { $0.done = true }
    }
}

/// Follows the log at `path` until the writer is done and everything is read, or 30 s
/// pass (so a bug fails the test instead of hanging it).
private func follow(_ path: String, _ state: ConditionLock<WriterState>, options: LogOptions = LogOptions(follow: true),
                    onChunk: (LogStream, [UInt8]) throws -> Void = { _, _ in }) throws -> (Collected, timedOut: Bool) {
    var c = Collected()
    let deadline = Host.monotonicNanos + 30_000_000_000
    var timedOut = false
    try LogReader(path: path, options: options).run(
        emit: { stream, bytes in
            c.add(stream, bytes)
            try onChunk(stream, bytes)
        },
        isDone: {
            if state.withLock({ s in s.readerStarted = true; return s.done }) { return true }
            if Host.monotonicNanos > deadline { timedOut = true; return true }
            return false
        })
    if let failure = state.withLock({ $0.failure }) { Issue.record("writer failed: \(failure)") }
    return (c, timedOut)
}

// MARK: - Parsing

@Suite("LogReader")
struct LogReaderTests {
    @Test func parsesRecords() throws {
        let r = try #require(LogRecord(line: Array("2026-12-04T20:11:06.123456789Z stdout F hello world".utf8)))
        #expect(r.timeNanos == t0 + 123_456_789)
        #expect(r.stream == .stdout)
        #expect(!r.partial)
        #expect(r.content == Array("hello world".utf8))

        let p = try #require(LogRecord(line: Array("2026-12-04T20:11:06Z stderr P  two  spaces ".utf8)))
        #expect(p.stream == .stderr && p.partial && p.timeNanos == t0)
        #expect(p.content == Array(" two  spaces ".utf8))

        // Empty content, with and without the space after the tag.
        #expect(LogRecord(line: Array("2026-12-04T20:11:06Z stdout F ".utf8))?.content == [])
        #expect(LogRecord(line: Array("2026-12-04T20:11:06Z stdout F".utf8))?.content == [])

        // Content is bytes, not necessarily UTF-8.
        let raw = Array("2026-12-04T20:11:06Z stdout F ".utf8) + [0xff, 0x00, 0x0d]
        #expect(LogRecord(line: raw)?.content == [0xff, 0x00, 0x0d])

        // The encoder writes what the parser reads.
        let record = LogRecord(timeNanos: t0 + 5, stream: .stderr, partial: true, content: Array("x y".utf8))
        #expect(String(decoding: record.line, as: UTF8.self) == "2026-12-04T20:11:06.000000005Z stderr P x y\n")
        #expect(LogRecord(line: record.line.dropLast()) == record)
    }

    @Test(arguments: [
        "",
        "garbage",
        "2026-12-04T20:11:06Z",
        "2026-12-04T20:11:06Z stdout",
        "2026-12-04T20:11:06Z stdout ",
        "2026-12-04T20:11:06Z stdin F x",
        "2026-12-04T20:11:06Z stdout X x",
        "2026-12-04T20:11:06Z stdout FF x",
        "2026-12-04T20:11:06Z stdoutF x",
        "2026-12-04T20:11:06Z  stdout F x",
        "2026-12-04 20:11:06Z stdout F x",
        "2026-13-04T20:11:06Z stdout F x",
        "2026-02-29T20:11:06Z stdout F x",
        "2026-12-04T24:11:06Z stdout F x",
        "2026-12-04T20:11:06 stdout F x",
        "2026-12-04T20:11:06.Z stdout F x",
        "2026-12-04T20:11:06.1234567890Z stdout F x",
        "2026-12-04T20:11:06+0200 stdout F x",
        "2026-12-04T20:11:0Z stdout F x",
        "9999-12-04T20:11:06Z stdout F x",
        "2026-12-04T20:1",
    ])
    func rejectsMalformedLines(_ text: String) {
        #expect(LogRecord(line: Array(text.utf8)) == nil)
    }

    @Test func parsesAndFormatsTimes() {
        #expect(LogRecord.parseTime("1970-01-01T00:00:00Z") == 0)
        #expect(LogRecord.parseTime("2026-12-04T20:11:06Z") == t0)
        #expect(LogRecord.parseTime("2026-12-04t20:11:06z") == t0)
        #expect(LogRecord.parseTime("2026-12-04T20:11:06.1Z") == t0 + 100_000_000)
        #expect(LogRecord.parseTime("2026-12-04T20:11:06.000000001Z") == t0 + 1)
        #expect(LogRecord.parseTime("2026-12-04T22:11:06+02:00") == t0)
        #expect(LogRecord.parseTime("2026-12-04T18:41:06.5-01:30") == t0 + 500_000_000)
        let leapDay: Int64 = 1_709_164_800 * 1_000_000_000
        #expect(LogRecord.parseTime("2024-02-29T00:00:00Z") == leapDay)
        #expect(LogRecord.parseTime("1969-12-31T23:59:59.5Z") == -500_000_000)
        #expect(LogRecord.formatTime(-500_000_000) == "1969-12-31T23:59:59.500000000Z")
        #expect(LogRecord.formatTime(0) == "1970-01-01T00:00:00.000000000Z")
        #expect(LogRecord.formatTime(t0 + 123_456_789) == "2026-12-04T20:11:06.123456789Z")
        #expect(LogRecord.formatTime(1_709_164_800 * 1_000_000_000) == "2024-02-29T00:00:00.000000000Z")
        // Round trip over a spread of instants, including month and leap-year edges.
        var t: Int64 = -2_000_000_000_000_000_000
        while t < 7_000_000_000_000_000_000 {
            #expect(LogRecord.parseTime(LogRecord.formatTime(t)) == t)
            t += 863_999_999_999_377
        }
    }

    // MARK: - Reading

    @Test func plainReadReconstructsStreams() throws {
        try withTempDir { dir in
            let path = "\(dir)/console.log"
            try write(path,
                line(t0, "stdout", "F", "hello") +
                line(t0 + 1, "stderr", "F", "oops") +
                line(t0 + 2, "stdout", "P", "par") +
                line(t0 + 3, "stderr", "P", "err-") +     // interleaved partial of the other stream
                line(t0 + 4, "stdout", "P", "t 1") +
                line(t0 + 5, "stdout", "F", "-end") +
                line(t0 + 6, "stderr", "F", "done") +
                "2026-12-04T20:11:06.000000007Z stdout F\n" +  // an empty line, no space after the tag
                line(t0 + 8, "stdout", "F", "") +
                line(t0 + 9, "stdout", "P", "no newline"))
            let c = try read(path)
            #expect(c.out == "hello\npart 1-end\n\n\nno newline")
            #expect(c.err == "oops\nerr-done\n")
            // Consecutive records of one stream come joined; a chunk holds one stream only.
            #expect(c.chunks.count == 7)
        }
    }

    @Test func readsAcrossBlocksAndLongLines() throws {
        try withTempDir { dir in
            let path = "\(dir)/console.log"
            var text = ""
            var expected = ""
            for i in 0..<3000 {
                let content = String(repeating: "abcdefghij", count: i % 37) + "#\(i)"
                text += line(t0 + Int64(i), "stdout", "F", content)
                expected += content + "\n"
            }
            // A 40 KiB line, split as the monitor splits it: 16 KiB P records and an F.
            let long = String(repeating: "x", count: 40 * 1024)
            let chars = Array(long.utf8)
            text += line(t0 + 5000, "stdout", "P", String(decoding: chars[0..<16384], as: UTF8.self))
            text += line(t0 + 5001, "stdout", "P", String(decoding: chars[16384..<32768], as: UTF8.self))
            text += line(t0 + 5002, "stdout", "F", String(decoding: chars[32768...], as: UTF8.self))
            expected += long + "\n"
            try write(path, text)
            let c = try read(path)
            #expect(c.out == expected)
            #expect(c.chunks.allSatisfy { $0.1.count <= 65536 + 16384 + 64 })
        }
    }

    @Test func timestampsPrefixEachLine() throws {
        try withTempDir { dir in
            let path = "\(dir)/console.log"
            try write(path,
                "2026-12-04T20:11:06.123456789Z stdout F one\n" +
                "2026-12-04T20:11:07Z stdout P tw\n" +
                "2026-12-04T20:11:08Z stdout F o\n" +
                "2026-12-04T20:11:09.5Z stderr F err\n")
            let c = try read(path, LogOptions(timestamps: true))
            #expect(c.out == "2026-12-04T20:11:06.123456789Z one\n2026-12-04T20:11:07.000000000Z two\n")
            #expect(c.err == "2026-12-04T20:11:09.500000000Z err\n")
        }
    }

    @Test func sinceSkipsOlderLines() throws {
        try withTempDir { dir in
            let path = "\(dir)/console.log"
            try write(path,
                line(t0, "stdout", "F", "old") +
                line(t0 + 10, "stdout", "P", "old-start ") +
                line(t0 + 30, "stdout", "F", "of an old line") +
                line(t0 + 20, "stderr", "F", "exactly since") +
                line(t0 + 40, "stdout", "F", "new"))
            let c = try read(path, LogOptions(sinceNanos: t0 + 20))
            // A line counts by its first record: the old line is skipped whole.
            #expect(c.out == "new\n")
            #expect(c.err == "exactly since\n")
        }
    }

    /// console.log.2 (oldest) … console.log: lines "L0" … "L9", one P-run among them.
    private func writeRotated(_ dir: String) throws -> String {
        let path = "\(dir)/console.log"
        try write("\(path).2", line(t0, "stdout", "F", "L0") + line(t0 + 1, "stdout", "F", "L1") + line(t0 + 2, "stdout", "F", "L2"))
        try write("\(path).1", line(t0 + 3, "stdout", "F", "L3") + line(t0 + 4, "stderr", "F", "L4") +
                  line(t0 + 5, "stdout", "P", "L5-") + line(t0 + 6, "stdout", "P", "cont-"))
        // The P-run of L5 crosses into the live file.
        try write(path, line(t0 + 7, "stdout", "F", "end") + line(t0 + 8, "stdout", "F", "L6") +
                  line(t0 + 9, "stderr", "F", "L7") + line(t0 + 10, "stdout", "F", "L8") + line(t0 + 11, "stdout", "F", "L9"))
        return path
    }

    @Test func readsRotatedFilesOldestFirst() throws {
        try withTempDir { dir in
            let c = try read(try writeRotated(dir))
            #expect(c.out == "L0\nL1\nL2\nL3\nL5-cont-end\nL6\nL8\nL9\n")
            #expect(c.err == "L4\nL7\n")
        }
    }

    @Test func tailCountsLinesAcrossRotatedFiles() throws {
        try withTempDir { dir in
            let path = try writeRotated(dir)
            // 5 lines: L5's P-run (which starts in console.log.1) counts as one.
            var c = try read(path, LogOptions(tail: 5))
            #expect(c.out == "L5-cont-end\nL6\nL8\nL9\n")
            #expect(c.err == "L7\n")
            c = try read(path, LogOptions(tail: 6))
            #expect(c.out == "L5-cont-end\nL6\nL8\nL9\n")
            #expect(c.err == "L4\nL7\n")
            c = try read(path, LogOptions(tail: 8))
            #expect(c.out == "L2\nL3\nL5-cont-end\nL6\nL8\nL9\n")
            #expect(c.err == "L4\nL7\n")
            c = try read(path, LogOptions(tail: 2))
            #expect(c.out == "L8\nL9\n")
            #expect(c.err == "")
            c = try read(path, LogOptions(tail: 100))
            #expect(c.out == "L0\nL1\nL2\nL3\nL5-cont-end\nL6\nL8\nL9\n")
            c = try read(path, LogOptions(tail: 0))
            #expect(c.stdout.isEmpty && c.stderr.isEmpty)
            c = try read(path, LogOptions(tail: -1))
            #expect(c.out == "L0\nL1\nL2\nL3\nL5-cont-end\nL6\nL8\nL9\n")
            // tail applies to what since lets through.
            c = try read(path, LogOptions(tail: 3, sinceNanos: t0 + 9, timestamps: true))
            #expect(c.out == "\(LogRecord.formatTime(t0 + 10)) L8\n\(LogRecord.formatTime(t0 + 11)) L9\n")
            #expect(c.err == "\(LogRecord.formatTime(t0 + 9)) L7\n")
        }
    }

    @Test func tailDoesNotShowHalfALineOfTheOtherStream() throws {
        try withTempDir { dir in
            let path = "\(dir)/console.log"
            try write(path,
                line(t0, "stderr", "P", "begun before the tail, ") +
                line(t0 + 1, "stdout", "F", "a") +
                line(t0 + 2, "stderr", "F", "ended after it") +
                line(t0 + 3, "stdout", "F", "b"))
            let c = try read(path, LogOptions(tail: 2))
            #expect(c.out == "a\nb\n")
            #expect(c.err == "")
        }
    }

    @Test func malformedAndTornLinesAreSkipped() throws {
        try withTempDir { dir in
            let path = "\(dir)/console.log"
            var bytes = Array((
                line(t0, "stdout", "F", "one") +
                "not a record\n" +
                "2026-13-01T00:00:00Z stdout F bad month\n" +
                "2026-12-04T20:11:06Z stdin F bad stream\n" +
                "\n" +
                line(t0 + 1, "stdout", "F", "two")).utf8)
            // A line far longer than any record, then a good one.
            bytes += [UInt8](repeating: UInt8(ascii: "z"), count: 3 << 20) + [UInt8(ascii: "\n")]
            bytes += Array(line(t0 + 2, "stderr", "F", "three").utf8)
            // The torn start of a record still being written.
            bytes += Array("2026-12-04T20:11:06.000000003Z stdout F fou".utf8)
            try write(path, bytes)
            let c = try read(path)
            #expect(c.out == "one\ntwo\n")
            #expect(c.err == "three\n")
        }
    }

    @Test func missingLogWithoutFollowReadsNothing() throws {
        try withTempDir { dir in
            let c = try read("\(dir)/console.log")
            #expect(c.chunks.isEmpty)
            let d = try read("\(dir)/no-such-dir/console.log", LogOptions(tail: 3))
            #expect(d.chunks.isEmpty)
        }
    }

    // MARK: - Following

    /// The follow contract: a writer appends with pauses and rotates mid-way (sometimes
    /// leaving a moment with no console.log); every record arrives exactly once, in
    /// order, including what was written just before `isDone` turned true.
    @Test(arguments: [false, true])
    func followAcrossRotations(slowReader: Bool) throws {
        try withTempDir { dir in
            let path = "\(dir)/console.log"
            let sim = MonitorSim(path: path, maxFiles: 50)
            // Some history before the reader starts, including a rotated file.
            for i in 0..<5 { try sim.append(line(t0 + Int64(i), "stdout", "F", "line \(i)")) }
            try sim.rotate()
            for i in 5..<10 { try sim.append(line(t0 + Int64(i), "stdout", "F", "line \(i)")) }
            let state = ConditionLock(WriterState())
            let count = 400
            startWriter(state) { [sim] in
                for i in 10..<count {
                    let stream = i % 7 == 0 ? "stderr" : "stdout"
                    if i % 5 == 0 {
                        try sim.append(line(t0 + Int64(i), stream, "P", "line "))
                        try sim.append(line(t0 + Int64(i), stream, "F", "\(i)"))
                    } else {
                        try sim.append(line(t0 + Int64(i), stream, "F", "line \(i)"))
                    }
                    if i % 37 == 0 { try sim.rotate(gapNanos: i % 74 == 0 ? 20_000_000 : 0) }
                    if i % 10 == 0 { sleepNanos(3_000_000) }
                }
            }
            let (c, timedOut) = try follow(path, state) { _, _ in
                // A reader slower than the writer falls behind by several rotations.
                if slowReader { sleepNanos(15_000_000) }
            }
            #expect(!timedOut)
            let onStderr = { (i: Int) in i >= 10 && i % 7 == 0 }
            let expectedOut = (0..<count).filter { !onStderr($0) }.map { "line \($0)\n" }.joined()
            let expectedErr = (0..<count).filter(onStderr).map { "line \($0)\n" }.joined()
            #expect(c.out == expectedOut)
            #expect(c.err == expectedErr)
            _ = sim
        }
    }

    /// Many rotations with no pauses: races between reading, stat and rename.
    @Test func followUnderFastRotation() throws {
        try withTempDir { dir in
            let path = "\(dir)/console.log"
            let state = ConditionLock(WriterState())
            let count = 20_000
            startWriter(state) {
                let sim = MonitorSim(path: path, maxFiles: 1000)
                for i in 0..<count {
                    try sim.append(line(t0 + Int64(i), "stdout", "F", "\(i)"))
                    if i % 97 == 0 { try sim.rotate() }
                }
            }
            let (c, timedOut) = try follow(path, state)
            #expect(!timedOut)
            let got = c.out.split(separator: "\n", omittingEmptySubsequences: false)
            #expect(got.count == count + 1)
            var mismatches = 0
            for (i, value) in got.dropLast().enumerated() where value != "\(i)" { mismatches += 1 }
            #expect(mismatches == 0)
        }
    }

    /// A reader more than log-max-files behind loses the files rotation dropped (they
    /// are gone), but never repeats or reorders a record, and reads the rest to the end.
    @Test func followBehindDroppedFilesNeverRepeats() throws {
        try withTempDir { dir in
            let path = "\(dir)/console.log"
            let state = ConditionLock(WriterState())
            let count = 600
            startWriter(state) {
                let sim = MonitorSim(path: path, maxFiles: 2)
                for i in 0..<count {
                    try sim.append(line(t0 + Int64(i), "stdout", "F", "\(i)"))
                    if i % 10 == 9 && i < count - 1 { try sim.rotate() }
                    if i % 20 == 0 { sleepNanos(2_000_000) }
                }
            }
            let (c, timedOut) = try follow(path, state) { _, _ in sleepNanos(20_000_000) }
            #expect(!timedOut)
            let got = c.out.split(separator: "\n").compactMap { Int($0) }
            #expect(got.count == c.out.split(separator: "\n").count)
            #expect(zip(got, got.dropFirst()).allSatisfy { $0 < $1 }, "records repeated or out of order")
            #expect(got.suffix(10) == Array(count - 10..<count))
        }
    }

    @Test func followEndsOnceDoneAndEverythingIsRead() throws {
        try withTempDir { dir in
            let path = "\(dir)/console.log"
            let state = ConditionLock(WriterState())
            let start = Host.monotonicNanos
            startWriter(state) {
                let sim = MonitorSim(path: path, maxFiles: 5)
                try sim.append(line(t0, "stdout", "F", "first"))
                sleepNanos(300_000_000)
                // The last records land right before the writer reports done.
                try sim.append(line(t0 + 1, "stdout", "P", "last "))
                try sim.append(line(t0 + 2, "stdout", "P", "words"))
            }
            let (c, timedOut) = try follow(path, state)
            #expect(!timedOut)
            #expect(c.out == "first\nlast words")
            #expect(Host.monotonicNanos - start < 5_000_000_000)
        }
    }

    @Test func followWithTailZeroShowsOnlyNewLines() throws {
        try withTempDir { dir in
            let path = "\(dir)/console.log"
            try write(path, line(t0, "stdout", "F", "old") + line(t0 + 1, "stdout", "P", "old partial "))
            let state = ConditionLock(WriterState())
            startWriter(state) {
                // Only what is written after the reader took its tail counts as new.
                _ = state.wait { $0.readerStarted ? true : nil }
                let sim = MonitorSim(path: path, maxFiles: 5)
                try sim.append(line(t0 + 2, "stdout", "F", "finished"))
                try sim.append(line(t0 + 3, "stdout", "F", "new"))
            }
            let (c, _) = try follow(path, state, options: LogOptions(tail: 0, follow: true))
            #expect(c.out == "new\n")
        }
    }

    @Test func emitErrorStopsTheReader() throws {
        try withTempDir { dir in
            let path = "\(dir)/console.log"
            try write(path, line(t0, "stdout", "F", "one") + line(t0 + 1, "stderr", "F", "two"))
            var calls = 0
            #expect(throws: TestError()) {
                try LogReader(path: path, options: LogOptions(follow: true)).run(
                    emit: { _, _ in
                        calls += 1
                        throw TestError()
                    },
                    isDone: { false })
            }
            #expect(calls == 1)
        }
    }

    /// The container has not started: no console.log yet (nor, in one case, its
    /// directory). The reader waits and then reads it from its start.
    @Test(arguments: [false, true])
    func followWaitsForAMissingLog(directoryMissing: Bool) throws {
        try withTempDir { dir in
            let containerDir = directoryMissing ? "\(dir)/container" : dir
            let path = "\(containerDir)/console.log"
            let state = ConditionLock(WriterState())
            startWriter(state) {
                sleepNanos(250_000_000)
                try Files.makeDirectories(containerDir)
                let sim = MonitorSim(path: path, maxFiles: 5)
                try sim.append(line(t0, "stdout", "F", "hello"))
                sleepNanos(100_000_000)
                try sim.append(line(t0 + 1, "stderr", "F", "world"))
            }
            let (c, timedOut) = try follow(path, state)
            #expect(!timedOut)
            #expect(c.out == "hello\n")
            #expect(c.err == "world\n")
        }
    }
}
