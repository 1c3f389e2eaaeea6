#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BerthErrors
import BerthSystem
import CBerthShim

/// Pseudo-terminals for `exec -t` (`berth_openpty` / `berth_set_winsize` in CBerthShim's
/// exec.c).
///
/// The pty is allocated in the agent's (host's) devpts and its slave handed to the
/// container's process as stdio. Inside the container it works as a terminal in every
/// way a program uses one through its descriptors (it is the controlling terminal, ^C is
/// SIGINT, `stty size` reads the window size), but it has no name there: the container's
/// `/dev/pts` is its own devpts instance, so `tty` and ttyname(3) find nothing. runc
/// allocates inside the container instead (a console socket); this is simpler.
public enum Pty {
    /// Opens a new pty (`posix_openpt`, `unlockpt`, the slave via `TIOCGPTPEER`) with the
    /// given window size. Both ends are close-on-exec; the caller closes both, and its copy
    /// of the slave as soon as the process using it has started, or reading the master
    /// never reports the end (EIO) after the process exits.
    public static func open(rows: UInt16, cols: UInt16) throws -> (master: FileDescriptor, slave: FileDescriptor) {
        var master: Int32 = -1
        var slave: Int32 = -1
        try sys("open pseudo-terminal") { berth_openpty(&master, &slave, rows, cols) }
        return (FileDescriptor(rawValue: master), FileDescriptor(rawValue: slave))
    }

    /// Sets the window size of the terminal `fd` (either end of a pty; `TIOCSWINSZ`). The
    /// kernel sends SIGWINCH to the terminal's foreground process group.
    public static func resize(_ fd: FileDescriptor, rows: UInt16, cols: UInt16) throws {
        try sys("resize terminal") { berth_set_winsize(fd.rawValue, rows, cols) }
    }
}
