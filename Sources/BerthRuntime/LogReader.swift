// Reading a container's log as berth-monitor writes it (docs/monitor.md, "Log (CRI
// format)" and "Rotation"): records parsed line by line, rotated files read oldest
// first, `--since`/`--tail`/`-t` applied, and in follow mode new data and rotations
// picked up as they happen.
//
// This file deliberately does not use BerthWire: the agent maps `LogStream` and the
// output chunks to wire messages itself.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BerthErrors
import BerthSystem

// MARK: - Records

/// Which output stream of the container a log record came from.
public enum LogStream: Sendable, Hashable {
    /// The container's standard output.
    case stdout
    /// The container's standard error.
    case stderr
}

/// One record of a CRI-format log: `<time> <stream> <F|P> <content>\n`.
public struct LogRecord: Sendable, Hashable {
    /// When the monitor read the output, in nanoseconds since the Unix epoch (UTC).
    public var timeNanos: Int64
    /// The stream the output came from.
    public var stream: LogStream
    /// `true` for a `P` record: more of the same line follows in later records of this
    /// stream (or the stream ended without a newline). `false` for `F`: the line ends here.
    public var partial: Bool
    /// The bytes as written, without the line's newline.
    public var content: [UInt8]

    /// A record from its parts.
    public init(timeNanos: Int64, stream: LogStream, partial: Bool, content: [UInt8]) {
        self.timeNanos = timeNanos
        self.stream = stream
        self.partial = partial
        self.content = content
    }

    /// Parses one line of the log, without its trailing newline. Returns nil for anything
    /// that is not a well-formed record (a torn line, a bad time, an unknown stream or
    /// tag), which readers skip.
    ///
    /// Strict in the fields, lenient where the format allows it: the time may have 0–9
    /// fractional digits and a numeric offset instead of `Z`; a record with empty
    /// content may omit the space after the tag.
    public init?(line: ArraySlice<UInt8>) {
        guard let space = line.firstIndex(of: UInt8(ascii: " ")),
              let time = RFC3339.parse(line[line.startIndex..<space]) else { return nil }
        var i = space + 1
        let stream: LogStream
        if LogRecord.matches(line, at: i, "stdout") {
            stream = .stdout
        } else if LogRecord.matches(line, at: i, "stderr") {
            stream = .stderr
        } else {
            return nil
        }
        i += 6
        guard i + 1 < line.endIndex, line[i] == UInt8(ascii: " ") else { return nil }
        let partial: Bool
        switch line[i + 1] {
        case UInt8(ascii: "F"): partial = false
        case UInt8(ascii: "P"): partial = true
        default: return nil
        }
        i += 2
        if i == line.endIndex {
            self.init(timeNanos: time, stream: stream, partial: partial, content: [])
            return
        }
        guard line[i] == UInt8(ascii: " ") else { return nil }
        self.init(timeNanos: time, stream: stream, partial: partial, content: Array(line[(i + 1)...]))
    }

    /// Parses one line of the log, without its trailing newline (see `init?(line:)`).
    public init?(line: [UInt8]) {
        self.init(line: line[...])
    }

    /// The record as the monitor writes it, with its newline.
    public var line: [UInt8] {
        var out = RFC3339.format(timeNanos)
        out.append(contentsOf: (stream == .stdout ? " stdout " : " stderr ").utf8)
        out.append(partial ? UInt8(ascii: "P") : UInt8(ascii: "F"))
        out.append(UInt8(ascii: " "))
        out.append(contentsOf: content)
        out.append(UInt8(ascii: "\n"))
        return out
    }

    /// Parses an RFC 3339 time (`2026-12-04T20:11:06.123456789Z`, 0–9 fractional
    /// digits, `Z` or a numeric offset such as `+02:00`) into Unix nanoseconds; nil
    /// when malformed or outside what `Int64` nanoseconds can hold (years 1678–2261).
    public static func parseTime(_ text: String) -> Int64? {
        RFC3339.parse(Array(text.utf8)[...])
    }

    /// Formats Unix nanoseconds as RFC 3339 UTC with nine fractional digits,
    /// `2026-12-04T20:11:06.123456789Z` (the log's format, and `docker logs -t`'s).
    public static func formatTime(_ nanos: Int64) -> String {
        String(decoding: RFC3339.format(nanos), as: UTF8.self)
    }

    private static func matches(_ line: ArraySlice<UInt8>, at i: Int, _ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard line.endIndex - i >= count else { return false }
        return word.withUTF8Buffer { w in
            for k in 0..<count where line[i + k] != w[k] { return false }
            return true
        }
    }
}


// MARK: - Reader

/// What to read from a log, as `docker logs` takes it.
public struct LogOptions: Sendable {
    /// Only the last `tail` lines, counted across all files; a run of `P` records ended
    /// by an `F` is one line. nil (or negative) means everything; 0 means nothing of
    /// what is already there (useful with `follow`).
    public var tail: Int?
    /// Skip lines whose first record is older than this (Unix nanoseconds).
    public var sinceNanos: Int64?
    /// After reading what is there, keep reading what is appended, across rotations.
    public var follow: Bool
    /// Prefix each output line with its time (RFC 3339, nine fractional digits) and a
    /// space, as `docker logs -t` does.
    public var timestamps: Bool

    /// Options; the defaults read the whole log once, without timestamps.
    public init(tail: Int? = nil, sinceNanos: Int64? = nil, follow: Bool = false, timestamps: Bool = false) {
        self.tail = tail
        self.sinceNanos = sinceNanos
        self.follow = follow
        self.timestamps = timestamps
    }
}

/// Reads a container's log (`…/console.log` and its rotated files `console.log.1` …
/// `console.log.N`) and turns the records back into the container's output.
///
/// Output comes as chunks `(stream, bytes)`: the contents of consecutive records of a
/// stream joined, with the newline an `F` record stands for put back, so concatenating
/// the chunks of a stream gives the bytes the container wrote (a final `P` record adds
/// no newline). Chunks are at most about 64 KiB.
///
/// Follow mode waits for new data with inotify on the log's directory (falling back to
/// a 100 ms poll when inotify is unavailable) and follows rotation by inode: when the
/// path names a new file, the old one is read to its end through the descriptor held,
/// then its successor is opened from the start, so no record is lost or repeated.
///
/// `run` blocks; call it on a thread of its own.
public final class LogReader: Sendable {
    /// The live log file, `…/console.log`.
    public let path: String
    /// What to read.
    public let options: LogOptions

    /// A reader of the log at `path` (the live file; rotated files are found next to it).
    public init(path: String, options: LogOptions) {
        self.path = path
        self.options = options
    }

    /// Reads the log, calling `emit` with each chunk of output in order.
    ///
    /// Without `follow`, returns once the live file is read to its end. With `follow`,
    /// keeps waiting for more and returns once `isDone()` has returned true *and*
    /// everything written before that has been read: `isDone` is checked before each
    /// pass over the files, so a caller whose `isDone` means "the writer has finished"
    /// gets every record. A missing file (the container has not started yet) is waited
    /// for. `emit` may block (back-pressure); an error it throws stops the reader and is
    /// rethrown. A torn last line (being written, or left by a crash) is not emitted.
    public func run(emit: (LogStream, [UInt8]) throws -> Void, isDone: () -> Bool) throws {
        var chain = LogChain(path: path)
        // Armed before the first read, so that nothing written after it goes unnoticed.
        let watcher = options.follow ? DirectoryWatcher(directory: chain.directory) : nil
        var filter = LineFilter(since: options.sinceNanos)
        if let tail = options.tail, tail >= 0 {
            filter = try chain.seek(toTail: tail, since: options.sinceNanos)
        }
        var output = OutputBuffer(timestamps: options.timestamps)
        while true {
            // Sampled before reading: everything written before `isDone` turned true is
            // in the files by now and is read by this pass.
            let done = !options.follow || isDone()
            try chain.pump { _, _, record in
                let verdict = filter.admit(record)
                if verdict.keep { try output.append(record, lineStart: verdict.lineStart, emit) }
            }
            try output.flush(emit)
            if done { return }
            watcher?.wait(nanos: 100_000_000)
        }
    }
}

/// Decides, line by line and per stream, which records to show: a line is kept or
/// skipped as a whole, by the time of its first record.
struct LineFilter {
    struct State {
        var inLine = false
        var keeping = true
    }
    let since: Int64?
    var stdout = State()
    var stderr = State()

    init(since: Int64?) { self.since = since }

    /// Whether to show `record`, and whether it starts a line.
    mutating func admit(_ record: LogRecord) -> (keep: Bool, lineStart: Bool) {
        var s = record.stream == .stdout ? stdout : stderr
        let lineStart = !s.inLine
        if lineStart { s.keeping = since.map { record.timeNanos >= $0 } ?? true }
        s.inLine = record.partial
        if record.stream == .stdout { stdout = s } else { stderr = s }
        return (s.keeping, lineStart)
    }

    func inLine(_ stream: LogStream) -> Bool {
        stream == .stdout ? stdout.inLine : stderr.inLine
    }

    /// Hides the rest of the line `stream` is in the middle of.
    mutating func skipRestOfLine(_ stream: LogStream) {
        let s = State(inLine: true, keeping: false)
        if stream == .stdout { stdout = s } else { stderr = s }
    }
}

/// Joins output into chunks: one stream per chunk, flushed when the stream changes,
/// when it reaches 64 KiB, and after each pass over the files.
struct OutputBuffer {
    static let limit = 65536
    let timestamps: Bool
    var stream = LogStream.stdout
    var bytes: [UInt8] = []

    init(timestamps: Bool) { self.timestamps = timestamps }

    mutating func append(_ record: LogRecord, lineStart: Bool, _ emit: (LogStream, [UInt8]) throws -> Void) throws {
        if record.stream != stream && !bytes.isEmpty { try flush(emit) }
        stream = record.stream
        if timestamps && lineStart {
            bytes.append(contentsOf: RFC3339.format(record.timeNanos))
            bytes.append(UInt8(ascii: " "))
        }
        bytes.append(contentsOf: record.content)
        if !record.partial { bytes.append(UInt8(ascii: "\n")) }
        if bytes.count >= Self.limit { try flush(emit) }
    }

    mutating func flush(_ emit: (LogStream, [UInt8]) throws -> Void) throws {
        guard !bytes.isEmpty else { return }
        let chunk = bytes
        bytes.removeAll(keepingCapacity: true)
        try emit(stream, chunk)
    }
}

// MARK: - Files

/// A file's identity: what stays the same across renames.
struct FileID: Equatable {
    var device: UInt64
    var inode: UInt64
}

/// One file of the log, open for reading. Reads with `pread` at its own offset, so a
/// file can be re-read from a remembered position (tail) while others stay open.
final class LogFile {
    /// A record is at most 16 KiB of content plus a header; a "line" far longer than
    /// that is not a record. Its bytes are dropped up to the next newline, so a corrupt
    /// file cannot make the reader hold it all in memory.
    static let maxLine = 1 << 20

    let fd: FileDescriptor
    let id: FileID
    /// The path it was opened by (for messages; it may have been renamed since).
    let name: String
    /// Offset of the next byte to read.
    var readOffset: Int64 = 0
    /// Bytes after the last newline read: the start of a line not yet complete.
    var carry: [UInt8] = []
    /// A line outgrew `maxLine`: its bytes are being dropped up to its newline.
    var discarding = false

    init(fd: FileDescriptor, id: FileID, name: String) {
        self.fd = fd
        self.id = id
        self.name = name
    }

    deinit { fd.close() }

    /// Opens `path` read-only; nil when it does not exist.
    static func open(_ path: String) throws -> LogFile? {
        let raw: Int32
        do {
            raw = try syscall { Glibc.open(path, O_RDONLY | O_CLOEXEC) }
        } catch {
            if error == .noEntry || error.rawValue == ENOTDIR { return nil }
            throw error.error("open \(path)")
        }
        let fd = FileDescriptor(rawValue: raw)
        var st = stat()
        guard fstat(raw, &st) == 0 else {
            let e = Errno.current
            fd.close()
            throw e.error("fstat \(path)")
        }
        return LogFile(fd: fd, id: FileID(device: UInt64(st.st_dev), inode: UInt64(st.st_ino)), name: path)
    }

    /// The file's size and link count (`fstat(2)`).
    func status() throws -> (size: Int64, links: UInt64) {
        var st = stat()
        try sys("fstat \(name)") { fstat(fd.rawValue, &st) }
        return (Int64(st.st_size), UInt64(st.st_nlink))
    }

    /// Continues reading at `offset`, a line start.
    func reset(to offset: Int64) {
        readOffset = offset
        carry.removeAll()
        discarding = false
    }

    /// Reads the file to its current end, calling `line` with each complete line
    /// (without its newline) and the offset where it starts.
    func readToEnd(_ buffer: inout [UInt8], _ line: (Int64, ArraySlice<UInt8>) throws -> Void) throws {
        while true {
            let start = readOffset
            let n: Int
            do {
                n = try buffer.withUnsafeMutableBytes { b in
                    try syscall { pread(fd.rawValue, b.baseAddress, b.count, off_t(start)) }
                }
            } catch {
                throw error.berthError("read \(name)")
            }
            if n == 0 { return }
            readOffset += Int64(n)
            var lineStart = 0
            while let newline = buffer[lineStart..<n].firstIndex(of: UInt8(ascii: "\n")) {
                if discarding {
                    discarding = false
                } else if carry.isEmpty {
                    try line(start + Int64(lineStart), buffer[lineStart..<newline])
                } else {
                    let carryStart = start - Int64(carry.count)
                    carry.append(contentsOf: buffer[lineStart..<newline])
                    try line(carryStart, carry[...])
                    carry.removeAll(keepingCapacity: true)
                }
                lineStart = newline + 1
            }
            if !discarding && lineStart < n {
                carry.append(contentsOf: buffer[lineStart..<n])
                if carry.count > Self.maxLine {
                    carry.removeAll()
                    discarding = true
                }
            }
        }
    }
}

/// The chain of log files, oldest first: `console.log.N` … `console.log.1`,
/// `console.log`. Walks it by file identity, never by name alone, because the monitor
/// may rename everything between two looks.
struct LogChain {
    let path: String
    let directory: String
    let baseName: String
    /// The file being read; nil until one exists.
    var current: LogFile?
    /// Files known to follow `current`, in order (set up by `seek(toTail:)`).
    var pending: [LogFile] = []
    /// When set, files left behind are kept here (in order) instead of being closed.
    var retained: [LogFile]?
    /// How many files were left behind before `current`: its index in `retained`.
    var serial = 0
    var buffer = [UInt8](repeating: 0, count: 65536)

    init(path: String) {
        self.path = path
        directory = Files.dirname(of: path)
        if let slash = path.lastIndex(of: "/") {
            baseName = String(path[path.index(after: slash)...])
        } else {
            baseName = path
        }
    }

    func rotatedPath(_ n: Int) -> String { "\(path).\(n)" }

    /// The numbers of the rotated files present, ascending.
    func rotatedNumbers() throws -> [Int] {
        let names: [String]
        do {
            names = try Files.list(directory)
        } catch let error as BerthError where error.code == .notFound {
            return []
        }
        let prefix = baseName + "."
        var numbers: [Int] = []
        for name in names where name.hasPrefix(prefix) {
            let suffix = name.dropFirst(prefix.count)
            guard !suffix.isEmpty, suffix.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  let n = Int(suffix), n > 0 else { continue }
            numbers.append(n)
        }
        return numbers.sorted()
    }

    /// The identity of whatever `path` names now; nil when nothing does.
    func identity(_ path: String) throws -> FileID? {
        var st = stat()
        if stat(path, &st) == 0 { return FileID(device: UInt64(st.st_dev), inode: UInt64(st.st_ino)) }
        let e = Errno.current
        if e == .noEntry || e.rawValue == ENOTDIR { return nil }
        throw e.error("stat \(path)")
    }

    /// The oldest file there is: the highest-numbered rotated file, else the live one;
    /// nil when there is none yet.
    func openFirst() throws -> LogFile? {
        for _ in 0..<100 {
            let oldest = try rotatedNumbers().last
            guard let file = try LogFile.open(oldest.map(rotatedPath) ?? path) else {
                if oldest == nil { return nil }
                continue  // renamed between listing and opening
            }
            // A rotation between listing and opening may have put an older file before
            // the one opened (the live file we opened is new; the old one is now .1).
            if try isOldest(file) { return file }
        }
        return nil
    }

    /// Whether no file older than `file` exists. A rotation moves the oldest file first,
    /// so finding `file` under the highest number listed proves nothing came before it.
    func isOldest(_ file: LogFile) throws -> Bool {
        if let oldest = try rotatedNumbers().last { return try identity(rotatedPath(oldest)) == file.id }
        return try identity(path) == file.id
    }

    /// The file that came after `file` (which is no longer the live one); nil when it
    /// does not exist yet (the monitor renamed the live file and has not created the new
    /// one) or could not be pinned down this time (names kept moving; try again later).
    func successor(of file: LogFile) throws -> LogFile? {
        for _ in 0..<100 {
            if try file.status().links == 0 {
                // Dropped by rotation (the reader fell more than log-max-files behind) or
                // deleted: every file still there is newer.
                return try openFirst()
            }
            var found: Int?
            for n in try rotatedNumbers() {
                if try identity(rotatedPath(n)) == file.id {
                    found = n
                    break
                }
            }
            // Not found although it still exists: it was being renamed while we looked.
            guard let k = found else { continue }
            guard let next = try LogFile.open(k == 1 ? path : rotatedPath(k - 1)) else {
                if k == 1 { return nil }
                continue
            }
            // If `file` is still at .k, nothing was renamed since we found it, so `next`
            // is the file after it. Otherwise look again (`next` closes on release).
            if try identity(rotatedPath(k)) == file.id { return next }
        }
        return nil
    }

    mutating func advance(to next: LogFile) {
        if let current {
            if retained != nil { retained?.append(current) }
        }
        current = next
        serial += 1
    }

    private mutating func read(_ file: LogFile, _ onRecord: (Int, Int64, LogRecord) throws -> Void) throws {
        let serial = self.serial
        try file.readToEnd(&buffer) { offset, line in
            // A malformed line (torn, bad time, unknown stream) is skipped, never fatal.
            if let record = LogRecord(line: line) { try onRecord(serial, offset, record) }
        }
    }

    /// Reads everything there is now, from the current file on through its successors,
    /// calling `onRecord` with the file's serial, the record's offset and the record.
    /// Returns when the live file is read to its end, or the next file is not there yet.
    mutating func pump(_ onRecord: (Int, Int64, LogRecord) throws -> Void) throws {
        while true {
            guard let file = current else {
                guard let first = try openFirst() else { return }
                current = first
                continue
            }
            try read(file, onRecord)
            if !pending.isEmpty {
                advance(to: pending.removeFirst())
                continue
            }
            if try identity(path) == file.id {
                // Still the live file: caught up, unless it was truncated in place (not
                // what berth-monitor does, but a reader must not stall on it).
                if try file.status().size < file.readOffset {
                    file.reset(to: 0)
                    continue
                }
                return
            }
            // `file` was rotated away. The monitor renames before switching files, so all
            // it ever wrote to `file` is there now: read it through the descriptor held.
            try read(file, onRecord)
            file.carry.removeAll()  // a line torn off by a crash, never completed
            guard let next = try successor(of: file) else { return }
            advance(to: next)
        }
    }

    /// Reads what is there now and positions the chain at the start of the last `tail`
    /// lines (counted after the `since` filter, across streams). Returns the filter to
    /// read on with: a line of the other stream that started before that point is
    /// skipped rather than shown from its middle.
    mutating func seek(toTail tail: Int, since: Int64?) throws -> LineFilter {
        struct Mark {
            var serial: Int
            var offset: Int64
            var openOther: LogStream?
        }
        retained = []
        var counter = LineFilter(since: since)
        var ring: [Mark] = []
        var head = 0
        try pump { serial, offset, record in
            let other: LogStream = record.stream == .stdout ? .stderr : .stdout
            let openOther = counter.inLine(other) ? other : nil
            let verdict = counter.admit(record)
            guard verdict.keep && verdict.lineStart && tail > 0 else { return }
            let mark = Mark(serial: serial, offset: offset, openOther: openOther)
            if ring.count < tail {
                ring.append(mark)
            } else {
                ring[head] = mark
                head = (head + 1) % tail
            }
        }
        var files = retained ?? []
        retained = nil
        guard let current else { return LineFilter(since: since) }
        files.append(current)
        if tail == 0 {
            // Show only what comes next; lines in progress stay hidden to their end.
            var filter = counter
            for stream in [LogStream.stdout, .stderr] where counter.inLine(stream) {
                filter.skipRestOfLine(stream)
            }
            return filter
        }
        var filter = LineFilter(since: since)
        var start = (serial: 0, offset: Int64(0))
        if ring.count == tail {
            let mark = ring[head]
            start = (mark.serial, mark.offset)
            if let other = mark.openOther { filter.skipRestOfLine(other) }
        }
        files[start.serial].reset(to: start.offset)
        for file in files[(start.serial + 1)...] { file.reset(to: 0) }
        self.current = files[start.serial]
        pending = Array(files[(start.serial + 1)...])
        serial = 0
        return filter
    }
}

// MARK: - Waiting

/// Sleeps until something changes in the log's directory (inotify: a write, a create,
/// a rename), or 100 ms pass. The timeout is needed anyway, to ask the caller whether
/// to stop. Without inotify (no instances left, or the directory does not exist yet)
/// it just sleeps, and the next pass polls size and inode.
final class DirectoryWatcher {
    let directory: String
    let fd: Int32
    var watching = false

    init(directory: String) {
        self.directory = directory
        fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        arm()
    }

    deinit {
        // Closing an inotify instance that has had a watch waits for an SRCU grace
        // period in the kernel (fsnotify's group teardown): 5–15 ms here, measured. A
        // `run` would wait that long between the container's exit and its answer
        // (bench/results), so the close happens on a thread of its own.
        guard fd >= 0 else { return }
        let fd = self.fd
        startThread("berth-inotify") { _ = Glibc.close(fd) }
    }

    private func arm() {
        guard fd >= 0, !watching else { return }
        let mask = UInt32(IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CLOSE_WRITE)
        watching = inotify_add_watch(fd, directory, mask) >= 0
    }

    func wait(nanos: Int64) {
        arm()
        guard watching else {
            var request = timespec(tv_sec: Int(nanos / 1_000_000_000), tv_nsec: Int(nanos % 1_000_000_000))
            var remaining = timespec()
            while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
            return
        }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        _ = poll(&p, 1, Int32(nanos / 1_000_000))
        // Empty the queue: the events only say "look again"; the reader looks at the
        // files themselves. IN_IGNORED means the directory is gone: watch it again
        // once it is back.
        var events = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = events.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            var at = 0
            while at + 16 <= n {
                let mask = events.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at + 4, as: UInt32.self) }
                let length = events.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at + 12, as: UInt32.self) }
                if mask & UInt32(IN_IGNORED) != 0 { watching = false }
                at += 16 + Int(length)
            }
        }
    }
}
