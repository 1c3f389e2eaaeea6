#if canImport(Glibc)
import Glibc
#endif
import BerthSystem
import CBerthShim

/// This process's controlling terminal on stdin, for `exec -it`.
struct Terminal {
    /// The terminal on fd 0, or nil when stdin is not a terminal.
    static func current() -> Terminal? {
        isatty(0) == 1 ? Terminal() : nil
    }

    /// Rows and columns (ioctl TIOCGWINSZ on stdout, else stdin).
    var size: (rows: UInt16, cols: UInt16)? {
        var rows: UInt16 = 0, cols: UInt16 = 0
        if berth_get_winsize(1, &rows, &cols) == 0 || berth_get_winsize(0, &rows, &cols) == 0, rows > 0, cols > 0 {
            return (rows, cols)
        }
        return nil
    }

    /// Puts the terminal in raw mode (no echo, no line editing, no signals from keys:
    /// Ctrl-C travels to the container's terminal as a byte). Restore it with the
    /// returned value; `restore` is idempotent.
    func makeRaw() -> RawMode? {
        var saved = termios()
        guard tcgetattr(0, &saved) == 0 else { return nil }
        var raw = saved
        cfmakeraw(&raw)
        guard tcsetattr(0, TCSANOW, &raw) == 0 else { return nil }
        return RawMode(saved: saved)
    }
}

/// A terminal in raw mode, and the settings to go back to.
final class RawMode: @unchecked Sendable {
    private var saved: termios
    private var restored = false

    init(saved: termios) { self.saved = saved }

    /// Restores the saved settings (once).
    func restore() {
        guard !restored else { return }
        restored = true
        _ = tcsetattr(0, TCSANOW, &saved)
    }
}
