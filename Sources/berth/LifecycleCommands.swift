#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem
import CBerthShim

/// stop, kill, restart, inspect, logs, exec.
extension Commands {
    static func stop(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        args.command = CLI.find("stop")
        let timeout = try parseTimeout(&args)
        return try await eachRef(&args, g, "stop") { client, ref in
            try await client.stopContainer(ref, timeout: timeout)
            out(ref + "\n")
        }
    }

    static func restart(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        args.command = CLI.find("restart")
        let timeout = try parseTimeout(&args)
        return try await eachRef(&args, g, "restart") { client, ref in
            try await client.restartContainer(ref, timeout: timeout)
            out(ref + "\n")
        }
    }

    static func kill(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        args.command = CLI.find("kill")
        var signal = ""
        while let a = args.peek(), a.hasPrefix("-") {
            _ = args.next()
            let (flag, inline) = Arguments.split(a)
            switch flag {
            case "-s", "--signal": signal = try args.value(for: flag, inline)
            default: throw UsageError(message: "unknown option \(a)", command: args.command)
            }
        }
        return try await eachRef(&args, g, "kill") { client, ref in
            try await client.killContainer(ref, signal: signal)
            out(ref + "\n")
        }
    }

    static func inspect(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        args.command = CLI.find("inspect")
        return try await inspectAll(&args, g, "inspect", noun: "container name or id") { client, ref in
            JSON.inspect(try await client.inspectContainer(ref))
        }
    }

    static func logs(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        args.command = CLI.find("logs")
        var request = LogsRequest(container: "")
        while let a = args.peek(), a.hasPrefix("-") {
            _ = args.next()
            let (flag, inline) = Arguments.split(a)
            switch flag {
            case "-f", "--follow": request.follow = true
            case "-t", "--timestamps": request.timestamps = true
            case "-n", "--tail":
                let v = try args.value(for: flag, inline)
                if v != "all" {
                    guard let n = Int32(v), n >= 0 else { throw UsageError(message: "--tail takes a number of lines or all, not \"\(v)\"", command: args.command) }
                    request.tail = n
                }
            case "--since":
                let v = try args.value(for: flag, inline)
                guard let t = Time.parseSince(v, now: Time.nowNanos) else {
                    throw UsageError(message: "--since takes RFC 3339 time (2026-12-04T20:00:00Z), unix seconds or a duration (10m), not \"\(v)\"", command: args.command)
                }
                request.sinceUnixNano = t
            default: throw UsageError(message: "unknown option \(a)", command: args.command)
            }
        }
        guard let ref = args.next() else { throw UsageError(message: "logs needs a container name or id", command: args.command) }
        try noMoreArguments(&args, "logs")
        request.container = ref
        let client = try await g.connect()
        let output = try await client.logs(request)
        let interrupted = SignalFlag()
        SignalForwarder.install { sig in interrupted.set(sig) ; output.cancel() }
        do {
            for try await chunk in output {
                try chunk.data.withUnsafeBytes { try FileDescriptor(rawValue: chunk.channel == .stderr ? 2 : 1).writeAll($0) }
            }
        } catch {
            if interrupted.value != 0 { return 128 + interrupted.value }
            throw error
        }
        return ExitCode.ok
    }

    static func exec(_ args: inout Arguments, _ g: Globals) async throws -> Int32 {
        args.command = CLI.find("exec")
        var interactive = false, tty = false
        var request = ExecRequest(container: "", args: [])
        while let a = args.peek(), a.hasPrefix("-") {
            _ = args.next()
            let (flag, inline) = Arguments.split(a)
            switch flag {
            case "-i", "--interactive": interactive = true
            case "-t", "--tty": tty = true
            case "-it", "-ti": interactive = true; tty = true
            case "-e", "--env":
                let v = try args.value(for: flag, inline)
                if v.contains("=") { request.env.append(v) } else if let host = Host.environment(v) { request.env.append("\(v)=\(host)") }
            case "-w", "--workdir": request.workingDir = try args.value(for: flag, inline)
            case "-u", "--user": request.user = try parseUser(try args.value(for: flag, inline), args.command)
            default: throw UsageError(message: "unknown option \(a)", command: args.command)
            }
        }
        guard let ref = args.next() else { throw UsageError(message: "exec needs a container and a command", command: args.command) }
        request.container = ref
        request.args = args.consumeAll()
        if request.args.isEmpty { throw UsageError(message: "exec needs a command to run", command: args.command) }
        request.tty = tty
        request.stdin = interactive
        let terminal = tty ? Terminal.current() : nil
        if let size = terminal?.size {
            request.rows = UInt32(size.rows)
            request.cols = UInt32(size.cols)
        }

        let client: BerthClient
        let session: ExecSession
        do {
            client = try await g.connect()
            session = try await client.exec(request)
        } catch {
            let e = error.berthError("exec")
            err("Error: \(e.message)\n")
            switch e.reason {
            case BerthError.Reason.execNotFound: return ExitCode.notFound
            case BerthError.Reason.execPermission: return ExitCode.cannotExecute
            default: return ExitCode.runFailed
            }
        }
        // With a tty, this terminal goes raw (Ctrl-C travels as a byte to the container's
        // terminal) and is restored however we leave.
        let raw = tty && interactive ? terminal?.makeRaw() : nil
        defer { raw?.restore() }
        let interrupted = SignalFlag()
        SignalForwarder.install { sig in interrupted.set(sig); session.cancel() }
        if tty, terminal != nil {
            SignalForwarder.onResize {
                if let size = Terminal.current()?.size {
                    Task { try? await session.resize(rows: size.rows, cols: size.cols) }
                }
            }
        }
        if interactive {
            startThread("berth-stdin") {
                var buf = [UInt8](repeating: 0, count: 32 << 10)
                while true {
                    let n = buf.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
                    if n < 0 && errno == EINTR { continue }
                    let data = n > 0 ? Array(buf[0..<n]) : []
                    let done = BlockingTask.run {
                        if n > 0 { try await session.write(data) } else { try await session.closeStdin() }
                    }
                    if n <= 0 || !done { return }
                }
            }
        }
        do {
            for try await chunk in session.output {
                try chunk.data.withUnsafeBytes { try FileDescriptor(rawValue: chunk.channel == .stderr ? 2 : 1).writeAll($0) }
            }
            let status = try await session.exitStatus()
            _ = client
            return status.exitCode
        } catch {
            if interrupted.value != 0 { return 128 + interrupted.value }
            raw?.restore()
            err("Error: \(error.berthError("exec").message)\n")
            return ExitCode.runFailed
        }
    }

    static func parseTimeout(_ args: inout Arguments) throws -> Int32? {
        var timeout: Int32?
        while let a = args.peek(), a.hasPrefix("-") {
            _ = args.next()
            let (flag, inline) = Arguments.split(a)
            switch flag {
            case "-t", "--time", "--timeout":
                let v = try args.value(for: flag, inline)
                guard let n = Int32(v), n >= 0 else { throw UsageError(message: "\(flag) takes seconds, not \"\(v)\"", command: args.command) }
                timeout = n
            default: throw UsageError(message: "unknown option \(a)", command: args.command)
            }
        }
        return timeout
    }
}

/// Runs async work from a plain thread and waits for it; false when it threw.
enum BlockingTask {
    static func run(_ body: @escaping @Sendable () async throws -> Void) -> Bool {
        let done = ConditionLock<Bool?>(nil)
        Task {
            do { try await body(); done.withLock { $0 = true } } catch { done.withLock { $0 = false } }
        }
        return done.wait { $0 } ?? false
    }
}

/// The signal that interrupted a command, 0 if none.
final class SignalFlag: Sendable {
    let state = ConditionLock<Int32>(0)
    func set(_ sig: Int32) { state.withLock { $0 = sig } }
    var value: Int32 { state.withLock { $0 } }
}
