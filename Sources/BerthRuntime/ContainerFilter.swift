#if canImport(Glibc)
import Glibc
#endif
import BerthErrors
import BerthWire

/// A `ps --filter`: each one must match.
public enum ContainerFilter: Sendable, Hashable {
    case status(ContainerState)
    /// Docker matches names by substring.
    case name(String)
    case label(key: String, value: String?)
    case id(prefix: String)

    /// Parses "status=running", "name=web", "label=tier" or "label=tier=web", "id=3f2a".
    public static func parse(_ filters: [String]) throws(BerthError) -> [ContainerFilter] {
        var out: [ContainerFilter] = []
        for f in filters {
            guard let eq = f.firstIndex(of: "=") else {
                throw BerthError(.invalidArgument, "filter \"\(f)\" is not KEY=VALUE (status, name, label, id)")
            }
            let key = String(f[..<eq]), value = String(f[f.index(after: eq)...])
            switch key {
            case "status":
                guard let state = [ContainerState.created, .running, .exited].first(where: { $0.description == value }) else {
                    throw BerthError(.invalidArgument, "invalid status filter \"\(value)\": use created, running or exited")
                }
                out.append(.status(state))
            case "name": out.append(.name(value))
            case "id": out.append(.id(prefix: value))
            case "label":
                if let eq2 = value.firstIndex(of: "=") {
                    out.append(.label(key: String(value[..<eq2]), value: String(value[value.index(after: eq2)...])))
                } else {
                    out.append(.label(key: value, value: nil))
                }
            default:
                throw BerthError(.invalidArgument, "unknown filter \"\(key)\": use status, name, label or id")
            }
        }
        return out
    }

    func matches(_ c: Container) -> Bool {
        switch self {
        case .status(let s): c.state == s
        case .name(let n): c.name.contains(n)
        case .id(let p): c.id.hasPrefix(p)
        case .label(let k, let v): v == nil ? c.spec.labels[k] != nil : c.spec.labels[k] == v
        }
    }
}
