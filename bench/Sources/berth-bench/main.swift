// berth-bench: the in-process measurements of bench/run.sh, through BerthClient alone
// (no CLI start-up in the numbers). Each command prints one JSON object on stdout;
// bench/report.py turns them into the results table. Not a product: see bench/README.md.
//
//   berth-bench run ADDRESS N            run-to-exit of /bin/true (--rm), ms per run
//   berth-bench create-start ADDRESS N   detached create + start of /bin/true, ms (removed untimed)
//   berth-bench info ADDRESS N [TLSDIR]  Info round trip µs, then Info/s with 64 in flight for 2 s
//   berth-bench pods ADDRESS N           pod + 2 running sleepers up, ms; then pod rm -f, ms
//   berth-bench scale ADDRESS N          N sleepers created and started at once: wall ms, failures
//   berth-bench ps ADDRESS N             ListContainers round trips, ms
//   berth-bench monitors ADDRESS         the monitor pids of the running containers
//   berth-bench rm-all ADDRESS           rm -f of every container and pod, concurrently
#if canImport(Glibc)
import Glibc
#endif
import BerthClient

/// Fails the benchmark with a message on stderr (exit 1).
func fail(_ message: String) -> Never {
    warn(message)
    exit(1)
}

/// A line on stderr (fd 2 directly: C's `stderr` is shared mutable state to Swift 6).
func warn(_ message: String) {
    let line = Array("berth-bench: \(message)\n".utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

/// Milliseconds (or microseconds) of a Duration, as a Double.
extension Duration {
    var ms: Double { Double(components.seconds) * 1e3 + Double(components.attoseconds) / 1e15 }
    var us: Double { ms * 1e3 }
}

func json(_ values: [Double]) -> String {
    "[" + values.map { String(format2($0)) }.joined(separator: ",") + "]"
}

/// Three decimals, without Foundation.
func format2(_ v: Double) -> String {
    let scaled = (v * 1000).rounded()
    let whole = Int(scaled / 1000), frac = Int(abs(scaled).truncatingRemainder(dividingBy: 1000))
    let f = String(frac)
    return (v < 0 && whole == 0 ? "-" : "") + "\(whole)." + String(repeating: "0", count: 3 - f.count) + f
}

func sleeper(_ label: String) -> ContainerSpec {
    var spec = ContainerSpec()
    spec.image = "busybox"
    spec.args = ["sleep", "100000"]
    spec.labels = ["berth-bench": label]
    return spec
}

let clock = ContinuousClock()
let args = CommandLine.arguments
guard args.count >= 3 else { fail("usage: berth-bench run|create-start|info|pods|scale|ps|monitors|rm-all ADDRESS [N] [TLSDIR]") }
let command = args[1], address = args[2]
let count = args.count > 3 ? Int(args[3]) ?? 0 : 0

func connect(tlsDir: String? = nil) async -> BerthClient {
    do {
        let tls = tlsDir.map { BerthClient.TLSOptions(ca: $0 + "/ca.pem", certificate: $0 + "/client.pem", key: $0 + "/client-key.pem") }
        return try await BerthClient.connect(to: address, tls: tls)
    } catch { fail("connect \(address): \(error)") }
}

switch command {
case "run":
    let client = await connect()
    var spec = ContainerSpec()
    spec.image = "busybox"
    spec.args = ["/bin/true"]
    spec.autoRemove = true
    var samples: [Double] = []
    for i in 0..<(count + 2) {
        let t0 = clock.now
        do {
            let run = try await client.run(spec)
            for try await _ in run.output {}
            let status = try await run.exitStatus()
            if status.exitCode != 0 { fail("run: exit \(status.exitCode)") }
        } catch { fail("run: \(error)") }
        if i >= 2 { samples.append((clock.now - t0).ms) }   // two warm-up runs
    }
    print("{\"ms\":\(json(samples))}")

case "create-start":
    let client = await connect()
    var spec = ContainerSpec()
    spec.image = "busybox"
    spec.args = ["/bin/true"]
    var samples: [Double] = []
    var rmRetries = 0
    for i in 0..<(count + 2) {
        do {
            let t0 = clock.now
            let c = try await client.createContainer(spec)
            _ = try await client.startContainer(c.id)
            let elapsed = (clock.now - t0).ms
            _ = try await client.wait(c.id)
            // Wait can answer before the agent has finished recording the exit (it
            // unmounts and persists after marking the container exited), and a remove
            // racing with that fails "Directory not empty": retried, and counted.
            for attempt in 1...50 {
                do { try await client.removeContainer(c.id, force: true); break } catch let e as BerthError where e.code == .failedPrecondition && attempt < 50 {
                    rmRetries += 1
                    try await Task.sleep(for: .milliseconds(10))
                }
            }
            if i >= 2 { samples.append(elapsed) }
        } catch { fail("create-start: \(error)") }
    }
    print("{\"ms\":\(json(samples)),\"rm_retries\":\(rmRetries)}")

case "info":
    let client = await connect(tlsDir: args.count > 4 ? args[4] : nil)
    do {
        for _ in 0..<200 { _ = try await client.info() }     // warm-up
        var samples: [Double] = []
        samples.reserveCapacity(count)
        for _ in 0..<count {
            let t0 = clock.now
            _ = try await client.info()
            samples.append((clock.now - t0).us)
        }
        // Many in flight on one connection: 64 tasks, each calling in a loop for 2 s.
        let end = clock.now + .seconds(2)
        let start = clock.now
        let done = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<64 {
                group.addTask {
                    var n = 0
                    while clock.now < end { _ = try await client.info(); n += 1 }
                    return n
                }
            }
            var total = 0
            for try await n in group { total += n }
            return total
        }
        let rps = Double(done) / (clock.now - start).ms * 1e3
        print("{\"us\":\(json(samples)),\"rps\":\(format2(rps))}")
    } catch { fail("info: \(error)") }

case "pods":
    let client = await connect()
    var up: [Double] = [], down: [Double] = []
    for i in 0..<(count + 1) {
        do {
            var pod = PodSpec()
            pod.network = "none"
            pod.name = "bench-pod-\(i)"
            let t0 = clock.now
            let p = try await client.createPod(pod)
            // The two containers are created and started at once, as a client would.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<2 {
                    group.addTask {
                        var spec = sleeper("pod")
                        spec.pod = p.id
                        let c = try await client.createContainer(spec)
                        let s = try await client.startContainer(c.id)
                        if s.state != .running { throw BerthError(.internal, "pod container is \(s.state)") }
                    }
                }
                try await group.waitForAll()
            }
            let t1 = clock.now
            try await client.removePod(p.id, force: true)
            let t2 = clock.now
            if i >= 1 { up.append((t1 - t0).ms); down.append((t2 - t1).ms) }
        } catch { fail("pods: \(error)") }
    }
    print("{\"up_ms\":\(json(up)),\"rm_ms\":\(json(down))}")

case "scale":
    // The agent allows 128 streams per connection: 100 calls per connection.
    var clients: [BerthClient] = []
    for _ in 0..<max(1, (count + 99) / 100) { clients.append(await connect()) }
    let pool = clients
    let t0 = clock.now
    let failures = await withTaskGroup(of: String?.self) { group in
        for i in 0..<count {
            group.addTask {
                let client = pool[i % pool.count]
                do {
                    let c = try await client.createContainer(sleeper("scale"))
                    let s = try await client.startContainer(c.id)
                    return s.state == .running ? nil : "\(c.id): \(s.state)"
                } catch { return "\(error)" }
            }
        }
        var failed: [String] = []
        for await r in group { if let r { failed.append(r) } }
        return failed
    }
    let wall = (clock.now - t0).ms
    for f in failures.prefix(5) { warn("scale: \(f)") }
    let running = (try? await pool[0].listContainers().count) ?? -1
    print("{\"n\":\(count),\"wall_ms\":\(format2(wall)),\"failures\":\(failures.count),\"running\":\(running)}")

case "ps":
    let client = await connect()
    var samples: [Double] = []
    var listed = 0
    do {
        for i in 0..<(count + 3) {
            let t0 = clock.now
            listed = try await client.listContainers(all: true).count
            if i >= 3 { samples.append((clock.now - t0).ms) }
        }
    } catch { fail("ps: \(error)") }
    print("{\"ms\":\(json(samples)),\"listed\":\(listed)}")

case "monitors":
    // The berth-monitor pids of the running containers, one per line (for smaps_rollup).
    let client = await connect()
    do {
        for c in try await client.listContainers() where c.monitorPid > 0 { print(c.monitorPid) }
    } catch { fail("monitors: \(error)") }

case "rm-all":
    var clients: [BerthClient] = []
    for _ in 0..<5 { clients.append(await connect()) }
    let pool = clients
    do {
        let ids = try await pool[0].listContainers(all: true).map(\.id)
        let failed = await withTaskGroup(of: Int.self) { group in
            for (i, id) in ids.enumerated() {
                group.addTask { (try? await pool[i % pool.count].removeContainer(id, force: true)) == nil ? 1 : 0 }
            }
            var total = 0
            for await n in group { total += n }
            return total
        }
        for p in try await pool[0].listPods() { try await pool[0].removePod(p.id, force: true) }
        print("{\"removed\":\(ids.count - failed),\"failed\":\(failed)}")
    } catch { fail("rm-all: \(error)") }

default:
    fail("unknown command \(command)")
}
