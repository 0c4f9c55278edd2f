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

    /// Patterns without wildcards (most of them: listed paths), trailing `/` removed: a set lookup.
    private let literals: Set<String>
    /// The others, as bytes.
    private let globs: [[UInt8]]

    public init(_ patterns: [String]) {
        self.patterns = patterns.map { $0.hasPrefix("/") ? String($0.dropFirst()) : $0 }
        var literals = Set<String>(), globs: [[UInt8]] = []
        for p in self.patterns {
            if p.contains("*") || p.contains("?") { globs.append(Array(p.utf8)) } else {
                var l = Substring(p)
                while l.hasSuffix("/") { l = l.dropLast() }
                literals.insert(String(l))
            }
        }
        self.literals = literals
        self.globs = globs
    }

    public static let all = PathFilter([])
    public var isAll: Bool { patterns.isEmpty }

    /// Whether a pattern names the path, or one of its leading folders (a folder includes
    /// everything below it; `data/*` includes `data/x/y`).
    public func includes(_ path: String) -> Bool {
        guard !isAll else { return true }
        let bytes = Array(path.utf8)
        // The path itself, then each leading folder.
        var ends = [bytes.count]
        for (i, b) in bytes.enumerated().reversed() where b == UInt8(ascii: "/") { ends.append(i) }
        for end in ends {
            let candidate = bytes[..<end]
            if !literals.isEmpty, literals.contains(String(decoding: candidate, as: UTF8.self)) { return true }
            for g in globs where PathFilter.match(g[...], candidate) { return true }
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
