#if canImport(Glibc)
import Glibc
import CBerthShim
#elseif canImport(Musl)
import Musl
#endif

/// A mutex with a condition variable (`pthread_mutex_t` + `pthread_cond_t`), for the
/// blocking threads of connections and handlers. `Synchronization.Mutex` has no
/// condition variable, and those threads must sleep until something changes.
public final class ConditionLock<State>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    // Only touched with `mutex` held.
    private var state: State

    public init(_ state: State) {
        self.state = state
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        cond.deallocate()
    }

    /// Runs `body` with the lock held and wakes every waiter afterwards.
    @discardableResult
    public func withLock<R, E: Error>(_ body: (inout State) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer {
            pthread_cond_broadcast(cond)
            pthread_mutex_unlock(mutex)
        }
        return try body(&state)
    }

    /// Waits, with the lock held, until `ready` returns a value, then returns it.
    /// With a `timeoutNanos`, returns nil when the time passes first.
    public func wait<R>(timeoutNanos: UInt64? = nil, until ready: (inout State) -> R?) -> R? {
        pthread_mutex_lock(mutex)
        defer {
            pthread_cond_broadcast(cond)
            pthread_mutex_unlock(mutex)
        }
        let deadline = timeoutNanos.map { Host.monotonicNanos + $0 }
        while true {
            if let r = ready(&state) { return r }
            if let deadline {
                let now = Host.monotonicNanos
                if now >= deadline { return nil }
                var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
                pthread_cond_timedwait(cond, mutex, &ts)
            } else {
                pthread_cond_wait(cond, mutex)
            }
        }
    }
}

/// Starts a detached OS thread running `body`. Berth's blocking work (socket readers
/// and writers, per-stream handlers, the reaper) runs on such threads, never on the
/// Swift concurrency pool, which has one thread per core here.
public func startThread(_ name: String = "", _ body: @escaping @Sendable () -> Void) {
    final class Box: @unchecked Sendable {
        let body: @Sendable () -> Void
        let name: String
        init(_ body: @escaping @Sendable () -> Void, _ name: String) { self.body = body; self.name = name }
    }
    let box = Unmanaged.passRetained(Box(body, name)).toOpaque()
    var tid = pthread_t()
    var attr = pthread_attr_t()
    pthread_attr_init(&attr)
    pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
    let rc = pthread_create(&tid, &attr, { arg in
        let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
        if !box.name.isEmpty { berth_set_thread_name(String(box.name.prefix(15))) }
        box.body()
        return nil
    }, box)
    pthread_attr_destroy(&attr)
    precondition(rc == 0, "pthread_create failed: \(rc)")
}
