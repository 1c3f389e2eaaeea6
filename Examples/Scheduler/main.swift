// A small scheduler on BerthClient's Fleet: it reads every agent's numbers (what
// `berth node ls` shows), places N pods on the least-loaded agents, starts them, and
// watches the agents' events until every pod's container runs.
//
//   berth-scheduler --hosts FILE --pods N [--image IMAGE] [--prefix NAME] [-- CMD...]
//
// Load is the number of running containers per CPU; ties go to the agent with more
// memory available. Each pod holds one container running CMD (default: sleep 3600).
// Output: one line per placement, then "all N pods running: node=count …".
#if canImport(Glibc)
import Glibc
#endif
import BerthClient

struct Options {
    var hosts = HostsFile.defaultPath
    var pods = 0
    var image = "busybox"
    var prefix = "sched"
    var command = ["sleep", "3600"]
}

func fail(_ message: String) -> Never {
    var text = Array("berth-scheduler: \(message)\n".utf8)
    _ = text.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    exit(1)
}

func parse(_ argv: [String]) -> Options {
    var o = Options()
    var i = 1
    func value() -> String {
        i += 1
        guard i < argv.count else { fail("\(argv[i - 1]) needs a value") }
        return argv[i]
    }
    while i < argv.count {
        switch argv[i] {
        case "--hosts": o.hosts = value()
        case "--pods": guard let n = Int(value()), n > 0 else { fail("--pods needs a positive number") }; o.pods = n
        case "--image": o.image = value()
        case "--prefix": o.prefix = value()
        case "--": o.command = Array(argv[(i + 1)...]); i = argv.count; continue
        default: fail("unknown argument \(argv[i]); usage: berth-scheduler --hosts FILE --pods N [--image I] [--prefix P] [-- CMD...]")
        }
        i += 1
    }
    if o.pods == 0 { fail("--pods N is required") }
    return o
}

/// What a node looks like to the scheduler.
struct Candidate {
    let node: String
    let cpus: Double
    var running: Int
    let available: UInt64
    var load: Double { Double(running) / max(1, cpus) }
}

/// Greedy least-loaded placement: each pod goes where load is lowest now, counting the
/// pods already placed in this round.
func place(_ count: Int, on candidates: [Candidate]) -> [String] {
    var c = candidates
    var placement: [String] = []
    for _ in 0..<count {
        guard let best = c.indices.min(by: { a, b in
            c[a].load != c[b].load ? c[a].load < c[b].load : c[a].available > c[b].available
        }) else { break }
        placement.append(c[best].node)
        c[best].running += 1
    }
    return placement
}

let options = parse(CommandLine.arguments)
let fleet: Fleet
do { fleet = try Fleet(hostsFile: options.hosts, callTimeout: .seconds(15)) } catch { fail("\(error)") }

// 1. The numbers.
var candidates: [Candidate] = []
for r in await fleet.info() {
    guard let info = r.value else {
        print("skipping \(r.node): \(r.error?.message ?? "no answer")")
        continue
    }
    candidates.append(Candidate(node: r.node, cpus: Double(info.cpus), running: Int(info.containersRunning), available: info.memoryAvailableBytes))
}
if candidates.isEmpty { fail("no agent answered") }

// 2. Where each pod goes.
let placement = place(options.pods, on: candidates)

// 3. Watch events from now on, then create the pods and their containers.
// (An Events call without follow, from "now", answers at once with the journal's position.)
let positions = await fleet.forEach(candidates.map(\.node)) { client -> UInt64 in
    let now = try client.events(EventsRequest())
    for try await _ in now {}
    return now.position ?? 0
}
var since: [String: UInt64] = [:]
for p in positions { since[p.node] = (try? p.result.get()) ?? nil }
let events = fleet.events(candidates.map(\.node), since: since)

var wanted: [String: String] = [:]  // container id → node
for (i, node) in placement.enumerated() {
    let name = "\(options.prefix)-\(i + 1)"
    do {
        let client = try await fleet.client(node)
        var podSpec = PodSpec()
        podSpec.name = name
        _ = try await client.createPod(podSpec)
        var spec = ContainerSpec()
        spec.name = name + "-main"
        spec.image = options.image
        spec.args = options.command
        spec.pod = name
        let c = try await client.createContainer(spec)
        wanted[c.id] = node
        print("placed pod \(name) on \(node)")
    } catch {
        fail("placing pod \(name) on \(node): \(error)")
    }
}
// Start them all at once; the events say when each runs.
let toStart = wanted
await withTaskGroup(of: Void.self) { group in
    for (id, node) in toStart {
        group.addTask {
            do { _ = try await fleet.client(node).startContainer(id) } catch { print("starting \(id.prefix(12)) on \(node): \(error)") }
        }
    }
}

// 4. Until every container has started.
var running: Set<String> = []
for await item in events {
    if case .event(_, let e) = item, e.type == "container", e.action == "start", wanted[e.id] != nil {
        running.insert(e.id)
        if running.count == wanted.count { break }
    }
}
var perNode: [String: Int] = [:]
for node in placement { perNode[node, default: 0] += 1 }
print("all \(wanted.count) pods running: " + candidates.map { "\($0.node)=\(perNode[$0.node] ?? 0)" }.joined(separator: " "))
fleet.close()
