import BerthSystem

/// One agent of a fleet, as the hosts file names it.
public struct Node: Sendable, Hashable {
    /// The name used with `-H NAME` and `--node`, and shown in the NODE column.
    public var name: String
    /// `tcp://IP:PORT` or `unix:///path`.
    public var endpoint: String
    /// Mutual TLS files, for a TCP endpoint.
    public var tls: BerthClient.TLSOptions?
    public var labels: [String: String]

    public init(name: String, endpoint: String, tls: BerthClient.TLSOptions? = nil, labels: [String: String] = [:]) {
        self.name = name; self.endpoint = endpoint; self.tls = tls; self.labels = labels
    }
}

/// The fleet's hosts file (docs/fleet.md): the agents a client knows by name.
///
/// ```json
/// { "nodes": [
///     { "name": "lab1", "endpoint": "tcp://10.240.0.11:7443",
///       "tls": { "ca": "ca.pem", "cert": "client.pem", "key": "client-key.pem" },
///       "labels": { "zone": "a" } } ] }
/// ```
/// Relative TLS paths are relative to the file's directory. Unknown keys, duplicate
/// names and malformed endpoints are errors that name the line.
public struct HostsFile: Sendable {
    public var path: String
    public var nodes: [Node]

    public init(path: String, nodes: [Node]) { self.path = path; self.nodes = nodes }

    /// `$BERTH_HOSTS`, else `$XDG_CONFIG_HOME/berth/hosts.json`, else `~/.config/berth/hosts.json`.
    public static var defaultPath: String {
        if let p = Host.environment("BERTH_HOSTS"), !p.isEmpty { return p }
        if let x = Host.environment("XDG_CONFIG_HOME"), !x.isEmpty { return x + "/berth/hosts.json" }
        return (Host.environment("HOME") ?? "/root") + "/.config/berth/hosts.json"
    }

    /// Reads and checks the file at `path`.
    public static func load(_ path: String) throws(BerthError) -> HostsFile {
        let bytes: [UInt8]
        do { bytes = try Files.read(path) } catch {
            let e = error.berthError("read hosts file")
            throw BerthError(e.code == .notFound ? .notFound : e.code, "hosts file \(path): \(e.message)")
        }
        return try parse(bytes, path: path)
    }

    /// Parses a hosts file's text; errors say the file, the line and what is wrong.
    public static func parse(_ bytes: [UInt8], path: String) throws(BerthError) -> HostsFile {
        let what = "hosts file \(path)"
        let doc = try JSON.parse(bytes, what: what)
        func fail(_ j: JSON, _ message: String) -> BerthError {
            BerthError(.invalidArgument, "\(what): line \(j.line): \(message)")
        }
        func members(_ j: JSON, _ context: String, allowed: Set<String>) throws(BerthError) -> [(key: String, value: JSON)] {
            guard case .object(let m) = j.value else { throw fail(j, "\(context) must be an object, not \(j.kind)") }
            for (k, v) in m where !allowed.contains(k) {
                throw fail(v, "unknown key \"\(k)\" in \(context) (known: \(allowed.sorted().joined(separator: ", ")))")
            }
            return m
        }
        func string(_ j: JSON?, _ context: String, in parent: JSON) throws(BerthError) -> String {
            guard let j else { throw fail(parent, "\(context) is missing") }
            guard case .string(let s) = j.value else { throw fail(j, "\(context) must be a string, not \(j.kind)") }
            return s
        }
        _ = try members(doc, "the document", allowed: ["nodes"])
        guard let list = doc["nodes"] else { throw fail(doc, "\"nodes\" is missing: the file is {\"nodes\": [ … ]}") }
        guard case .array(let items) = list.value else { throw fail(list, "\"nodes\" must be an array, not \(list.kind)") }
        let base = Files.dirname(of: path)
        func absolute(_ p: String) -> String { p.hasPrefix("/") ? p : base + "/" + p }
        var nodes: [Node] = []
        var seen: [String: Int] = [:]
        for item in items {
            _ = try members(item, "a node", allowed: ["name", "endpoint", "tls", "labels"])
            let name = try string(item["name"], "the node's \"name\"", in: item)
            guard Node.isValidName(name) else {
                throw fail(item, "node name \"\(name)\" must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit")
            }
            if let first = seen[name] { throw fail(item, "node \"\(name)\" is named twice (first on line \(first))") }
            seen[name] = item.line
            let endpoint = try string(item["endpoint"], "node \(name): \"endpoint\"", in: item)
            do { _ = try SocketAddress.parse(endpoint) } catch {
                throw fail(item["endpoint"] ?? item, "node \(name): endpoint \"\(endpoint)\": \(error.message)")
            }
            var node = Node(name: name, endpoint: endpoint)
            if let tls = item["tls"] {
                _ = try members(tls, "node \(name): \"tls\"", allowed: ["ca", "cert", "key"])
                node.tls = BerthClient.TLSOptions(ca: absolute(try string(tls["ca"], "node \(name): tls \"ca\"", in: tls)),
                                                  certificate: absolute(try string(tls["cert"], "node \(name): tls \"cert\"", in: tls)),
                                                  key: absolute(try string(tls["key"], "node \(name): tls \"key\"", in: tls)))
                guard endpoint.hasPrefix("tcp://") else { throw fail(tls, "node \(name): \"tls\" needs a tcp:// endpoint") }
            }
            if let labels = item["labels"] {
                guard case .object(let kv) = labels.value else { throw fail(labels, "node \(name): \"labels\" must be an object, not \(labels.kind)") }
                for (k, v) in kv {
                    guard case .string(let s) = v.value else { throw fail(v, "node \(name): label \"\(k)\" must be a string, not \(v.kind)") }
                    node.labels[k] = s
                }
            }
            nodes.append(node)
        }
        return HostsFile(path: path, nodes: nodes)
    }

    /// The node called `name`; NOT_FOUND naming the known ones otherwise.
    public func node(_ name: String) throws(BerthError) -> Node {
        guard let n = nodes.first(where: { $0.name == name }) else {
            let known = nodes.map(\.name).joined(separator: ", ")
            throw BerthError(.notFound, "no node \"\(name)\" in hosts file \(path)" + (known.isEmpty ? " (it names none)" : " (it names: \(known))"))
        }
        return n
    }
}

extension Node {
    /// 1–63 of [A-Za-z0-9._-], starting with a letter or digit.
    public static func isValidName(_ name: String) -> Bool {
        let b = Array(name.utf8)
        guard !b.isEmpty, b.count <= 63 else { return false }
        func ok(_ c: UInt8, first: Bool) -> Bool {
            switch c {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): return true
            case UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"): return !first
            default: return false
            }
        }
        return b.enumerated().allSatisfy { ok($0.element, first: $0.offset == 0) }
    }
}
