/// `berth.v1.Event`: one entry of an agent's event journal (docs/events.md).
public struct Event: Sendable, Hashable {
    /// 1, 2, 3, … per agent; never reused, also across agent restarts.
    public var seq: UInt64 = 0
    public var timeUnixNanos: Int64 = 0
    /// "container", "pod" or "image".
    public var type = ""
    /// container: create, start, die, oom, remove; pod: create, remove; image: import.
    public var action = ""
    public var id = ""
    public var name = ""
    /// For `die`: the exit code (128+N for signal N).
    public var exitCode: Int32 = 0
    /// More about the event: "image", "pod", "signal", …
    public var attributes: [String: String] = [:]
    public init() {}
    public init(type: String, action: String, id: String, name: String, exitCode: Int32 = 0, attributes: [String: String] = [:]) {
        self.type = type; self.action = action; self.id = id; self.name = name
        self.exitCode = exitCode; self.attributes = attributes
    }
}

/// `berth.v1.EventsRequest`: which events to send, and whether to follow.
public struct EventsRequest: Sendable, Hashable {
    /// Events after this sequence number (a client resuming passes the last it saw).
    public var sinceSeq: UInt64 = 0
    /// With `sinceSeq` 0: the journal's events from this time on.
    public var sinceUnixNanos: Int64 = 0
    /// Keep the stream open for new events.
    public var follow = false
    /// Every event the journal still holds.
    public var fromStart = false
    public init(sinceSeq: UInt64 = 0, sinceUnixNanos: Int64 = 0, follow: Bool = false, fromStart: Bool = false) {
        self.sinceSeq = sinceSeq; self.sinceUnixNanos = sinceUnixNanos; self.follow = follow; self.fromStart = fromStart
    }
}

/// `berth.v1.EventsResponse`: a batch of events, in sequence order.
public struct EventBatch: Sendable, Hashable {
    public var events: [Event] = []
    /// The oldest event the journal still holds (0: it is empty).
    public var oldestSeq: UInt64 = 0
    /// Events the caller asked for that the journal no longer holds (retention).
    public var lost: UInt64 = 0
    /// Every event up to this number has been sent: where a client resumes.
    public var position: UInt64 = 0
    public init(events: [Event] = [], oldestSeq: UInt64 = 0, lost: UInt64 = 0, position: UInt64 = 0) {
        self.events = events; self.oldestSeq = oldestSeq; self.lost = lost; self.position = position
    }
}
