import CBerthShim
import Synchronization

/// PR_SET_CHILD_SUBREAPER for the length of `body`, one caller at a time. Every test
/// target runs in one process, so the flag is shared: windows must not overlap (one
/// test switching it off inside another's window would send that test's orphans to an
/// init that, on some machines, never reaps them).
private let subreaperWindow = Mutex(())

func withSubreaper<R>(_ body: () throws -> R) rethrows -> R {
    try subreaperWindow.withLock { _ in
        _ = berth_set_child_subreaper(1)
        defer { _ = berth_set_child_subreaper(0) }
        return try body()
    }
}
