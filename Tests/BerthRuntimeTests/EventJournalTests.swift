#if canImport(Glibc)
import Glibc
#endif
@testable import BerthRuntime
import BerthSystem
import BerthWire
import Testing

@Suite("Event journal")
struct EventJournalTests {
    func tempPath() throws -> (String, String) {
        let dir = "/tmp/berth-journal-test-\(Host.randomHex(bytes: 6))"
        try Files.makeDirectories(dir)
        return (dir, dir + "/events.journal")
    }

    @Test("numbers go on across a reopen; a record cut short is dropped; resume from a number")
    func reopen() throws {
        let (dir, path) = try tempPath()
        defer { try? Files.removeTree(dir) }
        do {
            let j = try EventJournal(path: path)
            for i in 0..<5 { j.record(Event(type: "container", action: "create", id: "id\(i)", name: "c\(i)")) }
            j.close()
        }
        // A crash in the middle of an append: half a record at the end.
        let fd = try FileDescriptor.open(path, O_WRONLY | O_APPEND)
        try fd.writeAll([0, 0, 0, 40, 1, 2, 3])
        fd.close()
        let j = try EventJournal(path: path)
        defer { j.close() }
        #expect(j.lastSeq == 5)
        let e = j.record(Event(type: "pod", action: "create", id: "p", name: "p"))
        #expect(e.seq == 6)
        let after3 = j.events(after: 3)
        #expect(after3.events.map(\.seq) == [4, 5, 6] && after3.lost == 0 && after3.position == 6)
        #expect(j.events(after: 6).events.isEmpty && j.events(after: 6).position == 6)
        #expect(j.cursor(for: EventsRequest()) == 6)
        #expect(j.cursor(for: EventsRequest(fromStart: true)) == 0)
    }

    @Test("retention: the file is compacted, old numbers are reported lost, new ones go on")
    func retention() throws {
        let (dir, path) = try tempPath()
        defer { try? Files.removeTree(dir) }
        let j = try EventJournal(path: path, retention: 10)
        for i in 0..<35 { j.record(Event(type: "container", action: "start", id: "id\(i)", name: "c")) }
        let batch = j.events(after: 0)
        #expect(batch.events.map(\.seq) == Array(26...35))
        #expect(batch.lost == 25 && batch.oldestSeq == 26)
        j.close()
        let again = try EventJournal(path: path, retention: 10)
        defer { again.close() }
        #expect(again.lastSeq == 35)
        // Compacted when it reached 20 records (to 10): never more than 2 × retention on disk.
        var probe = Event(type: "container", action: "start", id: "id34", name: "c")
        probe.seq = 35
        probe.timeUnixNanos = Host.realtimeNanos
        let record = 4 + probe.wireEncoded().count
        #expect(try Files.read(path).count <= 20 * record)
    }

    @Test("a follower wakes for a new event and on close")
    func follow() throws {
        let (dir, path) = try tempPath()
        defer { try? Files.removeTree(dir) }
        let j = try EventJournal(path: path)
        #expect(!j.waitForEvents(after: 0, timeoutNanos: 10_000_000))
        startThread { usleep(50_000); j.record(Event(type: "image", action: "import", id: "sha256:x", name: "x:latest")) }
        #expect(j.waitForEvents(after: 0, timeoutNanos: 10_000_000_000))
        j.close()
        #expect(!j.waitForEvents(after: 1, timeoutNanos: 10_000_000_000))
    }
}
