import Foundation
import GRDB
import TroveCore

/// One path in the stage: what the next commit will record, plus the stat of the working-tree
/// file when it was last known to match (the stat cache).
public struct StageEntry: Hashable, Sendable {
    public var path: String
    public var kind: Tree.Kind
    public var executable: Bool
    public var id: ObjectID
    public var size: UInt64
    /// Nanoseconds; 0 means "unknown: re-hash before trusting".
    public var mtime: Int64
    public var ctime: Int64
    public var inode: UInt64
    public var device: UInt64

    public init(path: String, kind: Tree.Kind, executable: Bool, id: ObjectID, size: UInt64,
                mtime: Int64 = 0, ctime: Int64 = 0, inode: UInt64 = 0, device: UInt64 = 0) {
        self.path = path
        self.kind = kind
        self.executable = executable
        self.id = id
        self.size = size
        self.mtime = mtime
        self.ctime = ctime
        self.inode = inode
        self.device = device
    }
}

extension ObjectIndex {
    public func stage() throws -> [String: StageEntry] {
        try pool.read { db in
            var out: [String: StageEntry] = [:]
            let rows = try Row.fetchCursor(db, sql: "SELECT path, kind, exec, oid, size, mtime, ctime, ino, dev FROM stage")
            while let r = try rows.next() {
                guard let kind = Tree.Kind(rawValue: UInt8(r[1] as Int)), let id = ObjectID(bytes: r[3] as Data) else { continue }
                let e = StageEntry(path: r[0], kind: kind, executable: (r[2] as Int) != 0, id: id, size: UInt64(r[4] as Int64),
                                   mtime: r[5], ctime: r[6], inode: UInt64(bitPattern: r[7]), device: UInt64(bitPattern: r[8]))
                out[e.path] = e
            }
            return out
        }
    }

    /// Inserts or replaces `entries` and deletes `removed`, in one transaction.
    public func updateStage(_ entries: [StageEntry], removing removed: [String] = []) throws {
        try pool.write { db in try ObjectIndex.writeStage(db, entries, removing: removed) }
    }

    /// Replaces the whole stage.
    public func replaceStage(_ entries: [StageEntry]) throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM stage")
            try ObjectIndex.writeStage(db, entries, removing: [])
            try db.execute(sql: "INSERT OR REPLACE INTO meta(key, value) VALUES ('stage.ready', '1')")
        }
    }

    static func writeStage(_ db: Database, _ entries: [StageEntry], removing removed: [String]) throws {
        let del = try db.cachedStatement(sql: "DELETE FROM stage WHERE path = ?")
        for p in removed { try del.execute(arguments: [p]) }
        let ins = try db.cachedStatement(sql: "INSERT OR REPLACE INTO stage(path, kind, exec, oid, size, mtime, ctime, ino, dev) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        for e in entries {
            try ins.execute(arguments: [e.path, Int(e.kind.rawValue), e.executable ? 1 : 0, e.id.data, Int64(e.size),
                                        e.mtime, e.ctime, Int64(bitPattern: e.inode), Int64(bitPattern: e.device)])
        }
    }
}

extension Store {
    /// After the index was lost: the stage becomes HEAD's tree, with no stat cache.
    func resetStageToHead() throws {
        var entries: [StageEntry] = []
        if let head = try Refs(root: root).headCommit(), try has(head) {
            let c = try commit(head)
            for (path, e) in try flatten(tree: c.tree) {
                entries.append(StageEntry(path: path, kind: e.kind, executable: e.executable, id: e.id, size: e.size))
            }
        }
        try index.replaceStage(entries)
    }


    /// Writes the trees for a set of files and returns the root tree's id.
    public func writeTrees(_ files: [String: Tree.Entry], writer: ObjectWriter) throws -> (id: ObjectID, size: UInt64) {
        final class Dir { var files: [Tree.Entry] = []; var dirs: [String: Dir] = [:] }
        let top = Dir()
        for (path, entry) in files {
            var dir = top
            let parts = path.split(separator: "/").map(String.init)
            for name in parts.dropLast() {
                if let d = dir.dirs[name] { dir = d } else { let d = Dir(); dir.dirs[name] = d; dir = d }
            }
            var e = entry
            e.name = parts.last!
            dir.files.append(e)
        }
        func write(_ dir: Dir) throws -> (ObjectID, UInt64) {
            var entries = dir.files
            for (name, sub) in dir.dirs {
                let (id, size) = try write(sub)
                entries.append(Tree.Entry(name: name, kind: .directory, id: id, size: size))
            }
            let tree = try decoding("tree") { try Tree(entries: entries) }
            return (try writer.put(.tree, tree.encode()), tree.size)
        }
        return try write(top)
    }
}

extension ObjectSource {
    /// Every file and symlink under a tree, by slash-separated path.
    public func flatten(tree id: ObjectID, prefix: String = "") throws -> [String: Tree.Entry] {
        var out: [String: Tree.Entry] = [:]
        func walk(_ id: ObjectID, _ prefix: String) throws {
            for e in try tree(id).entries {
                let p = prefix.isEmpty ? e.name : prefix + "/" + e.name
                if e.kind == .directory { try walk(e.id, p) } else { out[p] = e }
            }
        }
        try walk(id, prefix)
        return out
    }
}
