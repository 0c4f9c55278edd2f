import Foundation
import GRDB
import TroveCore

/// The SQLite index of a store (GRDB, WAL): where each object sits, plus the stage.
///
/// Derived from the pack files: `rebuild()` recreates the object rows from the packs' own
/// trailing indexes. It must live on a local disk (SQLite locking is unsafe on NFS/Lustre).
public final class ObjectIndex: @unchecked Sendable {
    public struct Location: Sendable {
        public var pack: String
        public var record: PackFormat.IndexRecord
    }

    let pool: DatabasePool
    public let path: String

    public init(path: String) throws {
        self.path = path
        var config = Configuration()
        config.busyMode = .timeout(30)
        config.foreignKeysEnabled = true
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        do {
            pool = try DatabasePool(path: path, configuration: config)
            try ObjectIndex.migrator.migrate(pool)
        } catch {
            throw StoreError(.integrity, "cannot open the store index \(path): \(error)",
                             hint: "run `trove fsck --rebuild-index` to recreate it from the packs", underlying: error)
        }
    }

    /// Append-only, named migrations; never reference app types.
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1-objects") { db in
            try db.execute(sql: """
                CREATE TABLE pack(
                    id INTEGER PRIMARY KEY,
                    name TEXT NOT NULL UNIQUE,
                    size INTEGER NOT NULL CHECK (size > 0),
                    objects INTEGER NOT NULL CHECK (objects >= 0));
                CREATE TABLE object(
                    oid BLOB PRIMARY KEY CHECK (length(oid) = 32),
                    type INTEGER NOT NULL CHECK (type BETWEEN 1 AND 5),
                    codec INTEGER NOT NULL CHECK (codec IN (0, 1)),
                    pack INTEGER NOT NULL REFERENCES pack(id) ON DELETE CASCADE,
                    offset INTEGER NOT NULL,
                    raw INTEGER NOT NULL,
                    stored INTEGER NOT NULL) WITHOUT ROWID;
                CREATE INDEX object_pack ON object(pack);
                """)
        }
        m.registerMigration("v1-stage") { db in
            try db.execute(sql: """
                CREATE TABLE stage(
                    path TEXT PRIMARY KEY NOT NULL,
                    kind INTEGER NOT NULL CHECK (kind BETWEEN 1 AND 3),
                    exec INTEGER NOT NULL DEFAULT 0,
                    oid BLOB NOT NULL CHECK (length(oid) = 32),
                    size INTEGER NOT NULL,
                    mtime INTEGER NOT NULL DEFAULT 0,
                    ctime INTEGER NOT NULL DEFAULT 0,
                    ino INTEGER NOT NULL DEFAULT 0,
                    dev INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
                CREATE TABLE meta(key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
                """)
        }
        // Derived: the run commits `trove runs` lists, so that listing does not open one
        // pack per run. `key` names the state of the refs folders it was read from.
        m.registerMigration("v2-run-list") { db in
            try db.execute(sql: """
                CREATE TABLE run_list(
                    ref TEXT PRIMARY KEY NOT NULL,
                    oid BLOB NOT NULL CHECK (length(oid) = 32),
                    body BLOB NOT NULL) WITHOUT ROWID;
                CREATE TABLE run_list_key(id INTEGER PRIMARY KEY CHECK (id = 1), key TEXT NOT NULL);
                """)
        }
        return m
    }

    // MARK: derived run list

    /// The cached run commits by ref (id and encoded commit), and the key they were stored under.
    public func runList() throws -> (key: String?, rows: [String: (id: ObjectID, body: [UInt8])]) {
        try pool.read { db in
            let key = try String.fetchOne(db, sql: "SELECT key FROM run_list_key WHERE id = 1")
            var rows: [String: (id: ObjectID, body: [UInt8])] = [:]
            let cursor = try Row.fetchCursor(db, sql: "SELECT ref, oid, body FROM run_list")
            while let row = try cursor.next() {
                let oid: Data = row[1], body: Data = row[2]
                guard let id = ObjectID(bytes: oid) else { continue }
                rows[row[0]] = (id, [UInt8](body))
            }
            return (key, rows)
        }
    }

    /// Replaces the cached run list (`key` nil: the rows may be used, the key not trusted).
    public func replaceRunList(key: String?, rows: [(ref: String, id: ObjectID, body: [UInt8])]) throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM run_list")
            try db.execute(sql: "DELETE FROM run_list_key")
            let insert = try db.makeStatement(sql: "INSERT INTO run_list(ref, oid, body) VALUES (?, ?, ?)")
            for r in rows { try insert.execute(arguments: [r.ref, r.id.data, Data(r.body)]) }
            if let key { try db.execute(sql: "INSERT INTO run_list_key(id, key) VALUES (1, ?)", arguments: [key]) }
        }
    }

    // MARK: objects

    private static let locateSQL = """
        SELECT o.type, o.codec, o.offset, o.raw, o.stored, p.name FROM object o JOIN pack p ON p.id = o.pack WHERE o.oid = ?
        """

    static func location(from row: Row, id: ObjectID) -> Location? {
        guard let type = ObjectType(rawValue: UInt8(row[0] as Int)),
              let codec = PackFormat.Codec(rawValue: UInt8(row[1] as Int)) else { return nil }
        let rec = PackFormat.IndexRecord(id: id, type: type, codec: codec, offset: UInt64(row[2] as Int64),
                                         rawLength: UInt32(row[3] as Int64), storedLength: UInt32(row[4] as Int64))
        return Location(pack: row[5], record: rec)
    }

    public func locate(_ id: ObjectID) throws -> Location? {
        try locate([id])[0]
    }

    /// Looks up many ids in one read transaction.
    public func locate(_ ids: [ObjectID]) throws -> [Location?] {
        try pool.read { db in
            let stmt = try db.cachedStatement(sql: ObjectIndex.locateSQL)
            return try ids.map { id in
                guard let row = try Row.fetchOne(stmt, arguments: [id.data]) else { return nil }
                return ObjectIndex.location(from: row, id: id)
            }
        }
    }

    /// Ids of `type` (any type when nil) whose hex starts with `prefix`.
    public func ids(withPrefix prefix: String, type: ObjectType? = nil, limit: Int = 2) throws -> [ObjectID] {
        guard let range = ObjectID.prefixRange(prefix) else { return [] }
        return try pool.read { db in
            var sql = "SELECT oid FROM object WHERE oid BETWEEN ? AND ?"
            var args: [DatabaseValueConvertible] = [range.low.data, range.high.data]
            if let type { sql += " AND type = ?"; args.append(Int(type.rawValue)) }
            sql += " LIMIT \(limit)"
            return try Data.fetchAll(db, sql: sql, arguments: StatementArguments(args)).compactMap { ObjectID(bytes: $0) }
        }
    }

    /// Records a finished pack and its objects (an object already indexed elsewhere keeps its place).
    public func addPack(name: String, size: UInt64, records: [PackFormat.IndexRecord]) throws {
        try pool.write { db in try ObjectIndex.insertPack(db, name: name, size: size, records: records) }
    }

    static func insertPack(_ db: Database, name: String, size: UInt64, records: [PackFormat.IndexRecord]) throws {
        try db.execute(sql: "INSERT OR IGNORE INTO pack(name, size, objects) VALUES (?, ?, ?)",
                       arguments: [name, Int64(size), records.count])
        guard let packID = try Int64.fetchOne(db, sql: "SELECT id FROM pack WHERE name = ?", arguments: [name]) else { return }
        let stmt = try db.cachedStatement(sql: "INSERT OR IGNORE INTO object(oid, type, codec, pack, offset, raw, stored) VALUES (?, ?, ?, ?, ?, ?, ?)")
        for r in records {
            try stmt.execute(arguments: [r.id.data, Int(r.type.rawValue), Int(r.codec.rawValue), packID,
                                         Int64(r.offset), Int64(r.rawLength), Int64(r.storedLength)])
        }
    }

    /// Replaces `oldPacks` by `newPacks` in one transaction (gc's repack).
    public func replacePacks(removing oldPacks: [String], adding newPacks: [(name: String, size: UInt64, records: [PackFormat.IndexRecord])]) throws {
        try pool.write { db in
            for name in oldPacks { try db.execute(sql: "DELETE FROM pack WHERE name = ?", arguments: [name]) }
            for p in newPacks { try ObjectIndex.insertPack(db, name: p.name, size: p.size, records: p.records) }
        }
    }

    public struct PackRow: Sendable {
        public var name: String
        public var size: UInt64
        public var objects: Int
    }

    public func packs() throws -> [PackRow] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT name, size, objects FROM pack ORDER BY name").map {
                PackRow(name: $0[0], size: UInt64($0[1] as Int64), objects: $0[2])
            }
        }
    }

    public func removePacks(_ names: [String]) throws {
        try pool.write { db in
            for n in names { try db.execute(sql: "DELETE FROM pack WHERE name = ?", arguments: [n]) }
        }
    }

    public func objectCounts() throws -> [ObjectType: (count: Int, raw: UInt64, stored: UInt64)] {
        try pool.read { db in
            var out: [ObjectType: (count: Int, raw: UInt64, stored: UInt64)] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT type, count(*), sum(raw), sum(stored) FROM object GROUP BY type") {
                if let t = ObjectType(rawValue: UInt8(row[0] as Int)) {
                    out[t] = (row[1], UInt64(row[2] as Int64), UInt64(row[3] as Int64))
                }
            }
            return out
        }
    }

    /// Drops every object and pack row (the stage is kept).
    public func clearObjects() throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM object")
            try db.execute(sql: "DELETE FROM pack")
        }
    }

    // MARK: meta

    public func meta(_ key: String) throws -> String? {
        try pool.read { db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = ?", arguments: [key]) }
    }
}

extension ObjectID {
    var data: Data { Data(bytes) }
}

/// A private read-only connection for one thread's hot lookups (no pool, no transaction per
/// call): "which of these chunk ids do we have?" at ingest.
public final class IndexReader: @unchecked Sendable {
    private let queue: DatabaseQueue

    init(path: String) throws {
        var config = Configuration()
        config.readonly = true
        config.busyMode = .timeout(30)
        queue = try DatabaseQueue(path: path, configuration: config)
    }

    public func contains(_ ids: [ObjectID]) throws -> [Bool] {
        try queue.inDatabase { db in
            let stmt = try db.cachedStatement(sql: "SELECT 1 FROM object WHERE oid = ?")
            return try ids.map { try Row.fetchOne(stmt, arguments: [$0.data]) != nil }
        }
    }
}

extension ObjectIndex {
    public func makeReader() throws -> IndexReader {
        do { return try IndexReader(path: path) } catch {
            throw StoreError(.io, "cannot open the store index \(path) for reading: \(error)", underlying: error)
        }
    }
}
