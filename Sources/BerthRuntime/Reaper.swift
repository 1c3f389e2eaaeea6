#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthSystem
import CBerthShim

/// How a process ended, as `waitid` reports it.
public struct ProcessExit: Sendable, Hashable {
    /// The exit status, or 128 + the signal number when killed (the shell's convention).
    public var code: Int32
    /// The signal that killed it, 0 if it exited.
    public var signal: Int32
}

/// Reaps container processes through their pidfds: one thread in `epoll_wait` over
/// every registered pidfd, then `waitid(P_PIDFD)` on the ready ones. Only processes
/// registered here are reaped, never other children of the agent (unlike a
/// `waitpid(-1)` loop, which would steal them).
public final class Reaper: Sendable {
    private let epfd: Int32
    private let pending: ConditionLock<[UInt64: (pidfd: FileDescriptor, onExit: @Sendable (ProcessExit) -> Void)]>
    private let nextToken: ConditionLock<UInt64>

    public init() throws {
        epfd = try sys("epoll_create1") { berth_epoll_create() }
        pending = ConditionLock([:])
        nextToken = ConditionLock(1)
        startThread("berth-reaper") { [self] in loop() }
    }

    /// Calls `onExit` (on the reaper thread) once the process behind `pidfd` has exited
    /// and been reaped. The reaper does not close `pidfd`; the owner does, after `onExit`.
    public func watch(_ pidfd: FileDescriptor, onExit: @escaping @Sendable (ProcessExit) -> Void) throws {
        let token = nextToken.withLock { t -> UInt64 in t += 1; return t }
        pending.withLock { $0[token] = (pidfd, onExit) }
        if berth_epoll_add(epfd, pidfd.rawValue, token) != 0 {
            let e = Errno.current
            pending.withLock { $0[token] = nil }
            throw e.error("epoll_ctl pidfd")
        }
    }

    private func loop() {
        var tokens = [UInt64](repeating: 0, count: 64)
        while true {
            let n = tokens.withUnsafeMutableBufferPointer { berth_epoll_wait(epfd, $0.baseAddress, 64, -1) }
            if n < 0 { if errno == EINTR { continue }; return }
            for token in tokens[0..<Int(n)] {
                guard let entry = pending.withLock({ $0[token] }) else { continue }
                var code: Int32 = 0, signaled: Int32 = 0
                let r = berth_wait_pidfd(entry.pidfd.rawValue, WNOHANG, &code, &signaled)
                if r == 0 { continue }  // readable but not yet reapable: try again on the next wakeup
                _ = berth_epoll_del(epfd, entry.pidfd.rawValue)
                pending.withLock { $0[token] = nil }
                let exit: ProcessExit
                if r < 0 {
                    // ECHILD: somebody else reaped it; the exit status is lost.
                    exit = ProcessExit(code: 255, signal: 0)
                } else if signaled != 0 {
                    exit = ProcessExit(code: 128 + code, signal: code)
                } else {
                    exit = ProcessExit(code: code, signal: 0)
                }
                entry.onExit(exit)
            }
        }
    }
}
