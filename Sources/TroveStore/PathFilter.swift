import Glibc

/// Path filters for partial clones: `--include` patterns, matched against paths relative to
/// the tree's top. `*` matches within one path component, `**` across components; a pattern
/// naming a folder includes everything below it.
public struct PathFilter: Sendable, Equatable {
    public let patterns: [String]

    /// The sparse patterns of a store (`STORE/sparse`, one per line; none = everything).
    public static func load(store root: String) throws -> PathFilter {
        let path = root + "/sparse"
        guard FileIO.exists(path) else { return .all }
        return PathFilter(try FileIO.readText(path).split(separator: "\n").map { $0.trimmingCharacters(in: " \t\r") }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") })
    }

    /// Writes the patterns as the store's sparse file (removes it for `.all`).
    public func save(store root: String) throws {
        let path = root + "/sparse"
        if isAll { unlink(path); return }
        try FileIO.atomicWrite(path, Array(("# trove sparse patterns: only these paths are materialised\n" + patterns.map { $0 + "\n" }.joined()).utf8))
    }

    public func adding(_ more: [String]) -> PathFilter { isAll ? self : PathFilter(patterns + more.filter { !patterns.contains($0) }) }

    public init(_ patterns: [String]) { self.patterns = patterns.map { $0.hasPrefix("/") ? String($0.dropFirst()) : $0 } }

    public static let all = PathFilter([])
    public var isAll: Bool { patterns.isEmpty }

    public func includes(_ path: String) -> Bool {
        guard !isAll else { return true }
        return patterns.contains { p in
            PathFilter.match(Array(p.utf8)[...], Array(path.utf8)[...])
                || path.hasPrefix(p.hasSuffix("/") ? p : p + "/")
                || PathFilter.matchesFolderPrefix(p, path)
        }
    }

    /// `data/*` includes `data/x/y` too: a pattern that matches a leading folder of the path.
    private static func matchesFolderPrefix(_ pattern: String, _ path: String) -> Bool {
        var prefix = ""
        for comp in path.split(separator: "/").dropLast() {
            prefix = prefix.isEmpty ? String(comp) : prefix + "/" + comp
            if match(Array(pattern.utf8)[...], Array(prefix.utf8)[...]) { return true }
        }
        return false
    }

    static func match(_ p: ArraySlice<UInt8>, _ s: ArraySlice<UInt8>) -> Bool {
        let star = UInt8(ascii: "*"), slash = UInt8(ascii: "/"), question = UInt8(ascii: "?")
        guard let c = p.first else { return s.isEmpty }
        if c == star {
            let double = p.dropFirst().first == star
            var rest = p.dropFirst(double ? 2 : 1)
            if double, rest.first == slash, match(rest.dropFirst(), s) { return true }
            if double { rest = p.dropFirst(2) }
            var i = s.startIndex
            while true {
                if match(rest, s[i...]) { return true }
                if i == s.endIndex || (!double && s[i] == slash) { return false }
                i += 1
            }
        }
        guard let d = s.first else { return false }
        if c == question ? d != slash : c == d { return match(p.dropFirst(), s.dropFirst()) }
        return false
    }
}
