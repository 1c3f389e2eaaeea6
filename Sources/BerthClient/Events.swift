import BerthSystem
import Synchronization

extension BerthClient {
    /// The agent's lifecycle events (docs/events.md) after `request`'s starting point,
    /// in sequence order. With `request.follow` the sequence goes on until cancelled
    /// (or the connection drops: it then throws, and a caller resumes with
    /// `sinceSeq` = the last `seq` it saw, as `Fleet.events` does); otherwise it ends
    /// after the events the journal holds.
    public func events(_ request: EventsRequest = EventsRequest()) throws -> EventSubscription {
        let (sequence, continuation) = AsyncThrowingStream<Event, any Error>.makeStream()
        let info = EventSubscription.Info()
        let stream = try connection.openStream(.events(request), end: true) { event in
            switch event {
            case .response(.events(let batch), let end):
                info.note(batch)
                for e in batch.events { continuation.yield(e) }
                if end { continuation.finish() }
            case .response(.error(let error), _), .cancelled(let error):
                continuation.finish(throwing: error)
            case .response(let r, _):
                continuation.finish(throwing: BerthClient.unexpected(r, "Events"))
            case .data:
                break
            }
        }
        continuation.onTermination = { termination in
            if case .cancelled = termination { stream.cancel(BerthError(.cancelled, "events cancelled by the client")) }
        }
        return EventSubscription(events: sequence, info: info, stream: stream)
    }
}

/// A stream of events from one agent. Iterate it once; `cancel()` (or cancelling the
/// iterating task) ends it.
public struct EventSubscription: AsyncSequence, Sendable {
    public typealias Element = Event
    let events: AsyncThrowingStream<Event, any Error>
    let info: Info
    let stream: Stream

    final class Info: Sendable {
        let state = Mutex((lost: UInt64(0), position: UInt64?.none))
        func note(_ batch: EventBatch) {
            state.withLock { $0.lost += batch.lost; $0.position = batch.position }
        }
    }

    /// Every event up to this sequence number has arrived (nil before the agent's first
    /// answer): resume a broken stream with `EventsRequest(sinceSeq: position)`.
    public var position: UInt64? { info.state.withLock { $0.position } }

    /// Events asked for that the agent's journal no longer held (its retention passed).
    public var lost: UInt64 { info.state.withLock { $0.lost } }

    public func makeAsyncIterator() -> AsyncThrowingStream<Event, any Error>.AsyncIterator { events.makeAsyncIterator() }

    /// Stops the stream on the agent.
    public func cancel() { stream.cancel(BerthError(.cancelled, "events cancelled by the client")) }
}
