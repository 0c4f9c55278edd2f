/// One directory level. Entries are sorted by the bytes of their names; names are validated
/// on encode and decode so that no tree can name a path outside the working tree.
public struct Tree: Hashable, Sendable {
    public enum Kind: UInt8, Sendable, CustomStringConvertible {
        case file = 1, directory = 2, symlink = 3
        public var description: String {
            switch self {
            case .file: "file"
            case .directory: "dir"
            case .symlink: "symlink"
            }
        }
    }

    public struct Entry: Hashable, Sendable {
        public var name: String
        public var kind: Kind
        public var executable: Bool
        /// Blob id (file, symlink target text) or tree id (directory).
        public var id: ObjectID
        /// Content bytes; for a directory, the sum of everything below it.
        public var size: UInt64

        public init(name: String, kind: Kind, executable: Bool = false, id: ObjectID, size: UInt64) {
            self.name = name
            self.kind = kind
            self.executable = executable
            self.id = id
            self.size = size
        }
    }

    public private(set) var entries: [Entry]

    /// Sorts and validates; duplicate or invalid names are an error.
    public init(entries: [Entry]) throws {
        let sorted = entries.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
        for (i, e) in sorted.enumerated() {
            try Tree.validate(name: e.name)
            if i > 0, Array(sorted[i - 1].name.utf8) == Array(e.name.utf8) {
                throw CoreError(.invalidName, "tree has two entries named \(e.name)")
            }
        }
        self.entries = sorted
    }

    public static let empty = try! Tree(entries: [])

    public subscript(name: String) -> Entry? { entries.first { $0.name == name } }

    public var size: UInt64 { entries.reduce(0) { $0 + $1.size } }

    /// Rejects names that could escape or shadow the working tree or the store.
    public static func validate(name: String) throws {
        let bad: String?
        if name.isEmpty { bad = "an empty name" }
        else if name == "." || name == ".." { bad = "the name \(name)" }
        else if name.utf8.contains(0) { bad = "a NUL byte in a name" }
        else if name.contains("/") { bad = "a '/' in the name \(name.debugDescription)" }
        else if name.contains("\\") { bad = "a '\\' in the name \(name.debugDescription)" }
        else if [".git", ".trove"].contains(name.lowercased()) { bad = "the reserved name \(name)" }
        else if name.utf8.count > 4095 { bad = "a name of \(name.utf8.count) bytes" }
        else { bad = nil }
        if let bad { throw CoreError(.invalidName, "unsafe tree entry: \(bad)") }
    }

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 9 + entries.count * 64)
        w.raw("TRVT".utf8); w.u8(1)
        w.u32(UInt32(entries.count))
        for e in entries {
            w.u8(e.kind.rawValue)
            w.u8(e.executable ? 1 : 0)
            let name = Array(e.name.utf8)
            w.u16(UInt16(name.count))
            w.raw(name)
            w.id(e.id)
            w.u64(e.size)
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws -> Tree {
        var r = ByteReader(bytes, what: "tree")
        try r.magic("TRVT", version: 1)
        let n = Int(try r.u32())
        guard n <= r.remaining / 44 else { throw CoreError(.malformedObject, "tree claims \(n) entries") }
        var entries: [Entry] = []
        entries.reserveCapacity(n)
        var previous: [UInt8]? = nil
        for _ in 0..<n {
            guard let kind = Kind(rawValue: try r.u8()) else { throw CoreError(.malformedObject, "tree entry has an unknown kind") }
            let flags = try r.u8()
            guard flags <= 1 else { throw CoreError(.malformedObject, "tree entry has unknown flags \(flags)") }
            let nameBytes = Array(try r.raw(Int(try r.u16())))
            guard let name = String(validating: nameBytes, as: UTF8.self) else {
                throw CoreError(.invalidName, "unsafe tree entry: a name that is not UTF-8")
            }
            try validate(name: name)
            if let previous, !previous.lexicographicallyPrecedes(nameBytes) {
                throw CoreError(.malformedObject, "tree entries are not sorted or repeat at \(name.debugDescription)")
            }
            previous = nameBytes
            entries.append(Entry(name: name, kind: kind, executable: flags == 1, id: try r.id(), size: try r.u64()))
        }
        try r.expectEnd()
        var tree = Tree.empty
        tree.entries = entries
        return tree
    }

    /// Builds a tree without validation: only for tests that craft hostile trees.
    public static func unchecked(entries: [Entry]) -> Tree {
        var tree = Tree.empty
        tree.entries = entries
        return tree
    }
}

/// A commit of Trove's graph.
public struct Commit: Hashable, Sendable {
    public enum Kind: UInt8, Sendable, CustomStringConvertible {
        case snapshot = 1, run = 2, model = 3, dataset = 4
        public var description: String {
            switch self {
            case .snapshot: "snapshot"
            case .run: "run"
            case .model: "model"
            case .dataset: "dataset"
            }
        }
    }

    public var tree: ObjectID
    public var parents: [ObjectID]
    public var author: String
    /// Seconds since the Unix epoch.
    public var time: Int64
    /// Minutes east of UTC.
    public var timezoneOffset: Int16
    public var kind: Kind
    /// The git commit this belongs to, as hex; empty when none.
    public var gitCommit: String
    /// Sorted by key, unique keys.
    public var metadata: [(key: String, value: String)]
    public var message: String

    public init(tree: ObjectID, parents: [ObjectID], author: String, time: Int64, timezoneOffset: Int16,
                kind: Kind = .snapshot, gitCommit: String = "", metadata: [String: String] = [:], message: String) {
        self.tree = tree
        self.parents = parents
        self.author = author
        self.time = time
        self.timezoneOffset = timezoneOffset
        self.kind = kind
        self.gitCommit = gitCommit
        // Byte order of the UTF-8 keys: one rule, whatever the platform's string ordering.
        self.metadata = metadata.sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
            .map { (key: $0.key, value: $0.value) }
        self.message = message
    }

    public static func == (a: Commit, b: Commit) -> Bool { a.encode() == b.encode() }
    public func hash(into h: inout Hasher) { h.combine(encode()) }

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 256 + message.utf8.count)
        w.raw("TRVC".utf8); w.u8(1)
        w.id(tree)
        w.u16(UInt16(parents.count))
        for p in parents { w.id(p) }
        w.u8(kind.rawValue)
        w.i64(time)
        w.i16(timezoneOffset)
        w.string(author)
        w.string(gitCommit)
        w.u32(UInt32(metadata.count))
        for (k, v) in metadata { w.string(k); w.string(v) }
        w.string(message)
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws -> Commit {
        var r = ByteReader(bytes, what: "commit")
        try r.magic("TRVC", version: 1)
        let tree = try r.id()
        let np = Int(try r.u16())
        var parents: [ObjectID] = []
        for _ in 0..<np { parents.append(try r.id()) }
        guard let kind = Kind(rawValue: try r.u8()) else { throw CoreError(.malformedObject, "commit has an unknown kind") }
        let time = try r.i64()
        let tz = try r.i16()
        let author = try r.string()
        let git = try r.string()
        let nm = Int(try r.u32())
        var meta: [(key: String, value: String)] = []
        for _ in 0..<nm {
            let k = try r.string(), v = try r.string()
            if let last = meta.last, !Array(last.key.utf8).lexicographicallyPrecedes(Array(k.utf8)) {
                throw CoreError(.malformedObject, "commit metadata keys are not sorted or repeat at \(k)")
            }
            meta.append((k, v))
        }
        let message = try r.string()
        try r.expectEnd()
        var c = Commit(tree: tree, parents: parents, author: author, time: time, timezoneOffset: tz,
                       kind: kind, gitCommit: git, message: message)
        c.metadata = meta
        return c
    }
}
