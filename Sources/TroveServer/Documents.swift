import Foundation
import NIOCore
import PostgresNIO
import TroveCore
import TroveStore

/// Small state of the daemon that is not in the commit graph: MLflow's experiment list, the
/// web UI's login sessions, the endpoints `trove serve` announces. One daemon keeps it in
/// files under its root (durable) or in memory (ephemeral); replicas keep all of it in
/// PostgreSQL's `documents` table, so that any replica answers for any other.
final class Documents: @unchecked Sendable {
    enum Backend {
        /// `ROOT/projects/PROJECT/KEY` (a project of "" is `ROOT/KEY`), written atomically.
        case files(String)
        case memory
        case postgres(MetadataDatabase)
    }

    let backend: Backend
    private let lock = Mutex()
    private var memory: [String: (value: [UInt8], expires: Double)] = [:]

    init(_ backend: Backend) { self.backend = backend }

    private func path(_ root: String, _ project: String, _ key: String) -> String {
        project.isEmpty ? root + "/" + key : root + "/projects/" + project + "/" + key
    }

    private static func now() -> Double { Date().timeIntervalSince1970 }

    /// The value, if set and not expired.
    func get(_ project: String, _ key: String) throws -> [UInt8]? {
        switch backend {
        case .files(let root): return try? FileIO.readFile(path(root, project, key))
        case .memory: return lock.withLock { memory[project + "\u{0}" + key].flatMap { $0.expires == 0 || $0.expires > Self.now() ? $0.value : nil } }
        case .postgres(let db):
            return try db.query("SELECT value FROM documents WHERE project = $1 AND key = $2 AND (expires = 0 OR expires > extract(epoch from now()))",
                                [project, key]).first.map { Array(buffer: try $0.decode(ByteBuffer.self)) }
        }
    }

    /// Sets a value; with `ttl`, it is gone after that many seconds.
    func put(_ project: String, _ key: String, _ value: [UInt8], ttl: Double? = nil) throws {
        switch backend {
        case .files(let root):
            try FileIO.mkdirs(FileIO.dirname(path(root, project, key)))
            try FileIO.atomicWrite(path(root, project, key), value)
        case .memory:
            lock.withLock {
                let now = Self.now()
                memory = memory.filter { $0.value.expires == 0 || $0.value.expires > now }
                memory[project + "\u{0}" + key] = (value, ttl.map { now + $0 } ?? 0)
            }
        case .postgres(let db):
            try db.query("""
                INSERT INTO documents (project, key, value, expires) VALUES ($1, $2, $3, $4)
                ON CONFLICT (project, key) DO UPDATE SET value = excluded.value, expires = excluded.expires
                """, [project, key, ByteBuffer(bytes: value), ttl.map { Int(Self.now() + $0) } ?? 0])
            // Expired rows (old sessions, stale announcements) go now and then, not on every write.
            if ttl != nil, Int.random(in: 0..<100) == 0 {
                try db.query("DELETE FROM documents WHERE expires > 0 AND expires < extract(epoch from now())")
            }
        }
    }

    /// Reads, changes and writes a value as one step, whichever replica runs it; `change` may
    /// throw to leave it as it was, and returns what the caller wants back.
    func update<T>(_ project: String, _ key: String, _ change: ([UInt8]?) throws -> (value: [UInt8], result: T)) throws -> T {
        switch backend {
        case .files, .memory:
            return try lock.withLock {
                let (value, result) = try change(try get(project, key))
                try put(project, key, value)
                return result
            }
        case .postgres(let db):
            return try db.transaction { tx in
                // The row exists before it is locked, so that two first writers queue on it too.
                try tx.query("INSERT INTO documents (project, key, value, expires) VALUES ($1, $2, '', 0) ON CONFLICT DO NOTHING", [project, key])
                let old = try tx.query("SELECT value FROM documents WHERE project = $1 AND key = $2 FOR UPDATE", [project, key])
                    .first.map { Array(buffer: try $0.decode(ByteBuffer.self)) }
                let (value, result) = try change(old.flatMap { $0.isEmpty ? nil : $0 })
                try tx.query("UPDATE documents SET value = $3, expires = 0 WHERE project = $1 AND key = $2", [project, key, ByteBuffer(bytes: value)])
                return result
            }
        }
    }

    func delete(_ project: String, _ key: String) throws {
        switch backend {
        case .files(let root): unlink(path(root, project, key))
        case .memory: _ = lock.withLock { memory.removeValue(forKey: project + "\u{0}" + key) }
        case .postgres(let db): try db.query("DELETE FROM documents WHERE project = $1 AND key = $2", [project, key])
        }
    }

    /// Unexpired values whose key starts with `prefix` (ephemeral backends only: memory, PostgreSQL).
    func list(_ project: String, prefix: String) throws -> [(key: String, value: [UInt8])] {
        switch backend {
        case .files: return []
        case .memory:
            let now = Self.now(), head = project + "\u{0}" + prefix
            return lock.withLock {
                memory.filter { $0.key.hasPrefix(head) && ($0.value.expires == 0 || $0.value.expires > now) }
                    .map { (String($0.key.dropFirst(project.count + 1)), $0.value.value) }
            }
        case .postgres(let db):
            let pattern = PostgresRefs.likePrefix(prefix)
            return try db.query("""
                SELECT key, value FROM documents WHERE project = $1 AND key LIKE $2 AND (expires = 0 OR expires > extract(epoch from now()))
                """, [project, pattern]).map { row in
                let (key, value) = try row.decode((String, ByteBuffer).self)
                return (key, Array(buffer: value))
            }
        }
    }

    /// How many unexpired values start with `prefix`.
    func count(_ project: String, prefix: String) throws -> Int { try list(project, prefix: prefix).count }
}
