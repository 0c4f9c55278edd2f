import Foundation
import Glibc
import NIOCore
import PostgresNIO
import TroveStore

/// What replicas share of one project's live runs, in PostgreSQL (schema v3–v4, Docs/deploy.md):
/// `live_runs` (state, metric lines held, cancel request), `live_lines`, `live_logs`,
/// `live_artifacts`. Every change is one transaction that locks the run's row. `LiveRuns`
/// keeps the replica's copy of it.
struct SharedLiveRuns: Sendable {
    let db: MetadataDatabase
    let project: String

    /// Inserts a run; false when the id exists.
    func create(_ state: LiveState) throws -> Bool {
        !(try db.query("INSERT INTO live_runs (project, id, state) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING id",
                       [project, state.id, try LiveRuns.encode(state)])).isEmpty
    }

    func update(_ id: String, _ change: (inout LiveState) throws -> Void) throws -> LiveState? {
        try db.transaction { tx in
            guard let row = try tx.query("SELECT state FROM live_runs WHERE project = $1 AND id = $2 FOR UPDATE", [project, id]).first else { return nil }
            var s = try LiveRuns.decode(try row.decode(String.self))
            try change(&s)
            try tx.query("UPDATE live_runs SET state = $3 WHERE project = $1 AND id = $2", [project, id, try LiveRuns.encode(s)])
            return s
        }
    }

    /// `LiveRuns.ingest` in one transaction: the count held and the cancel request after it.
    func ingest(_ id: String, from: Int, lines: [String], state: LiveState?, logs: [(stream: String, offset: UInt64, bytes: [UInt8])], ended: String?) throws -> (received: Int, cancel: String?) {
        try db.transaction { tx in
            if let state {
                try tx.query("INSERT INTO live_runs (project, id, state) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                             [project, id, try LiveRuns.encode(LiveRuns.normalised(state, id: id))])
            }
            guard let row = try tx.query("SELECT state, lines, cancel FROM live_runs WHERE project = $1 AND id = $2 FOR UPDATE", [project, id]).first else {
                throw LiveRuns.unknown(id)
            }
            let (text, held, cancel) = try row.decode((String, Int, String?).self)
            let fresh = try LiveRuns.checkLines(id, from: from, held: held, lines)
            try insertLines(tx, id, at: held, fresh)
            for log in logs where !log.bytes.isEmpty {
                // Chunks follow each other: bytes already held are not stored again, bytes
                // beyond the end wait for the ones before them.
                let end = try tx.query("SELECT coalesce(max(start + length(bytes)), 0)::bigint FROM live_logs WHERE project = $1 AND id = $2 AND stream = $3",
                                       [project, id, log.stream]).first.map { try $0.decode(Int64.self) } ?? 0
                let offset = Int64(log.offset)
                guard offset <= end, offset + Int64(log.bytes.count) > end else { continue }
                try tx.query("INSERT INTO live_logs (project, id, stream, start, bytes) VALUES ($1, $2, $3, $4, $5)",
                             [project, id, log.stream, end, ByteBuffer(bytes: log.bytes[Int(end - offset)...])])
            }
            let (s, changed) = LiveRuns.merged(try LiveRuns.decode(text), with: state, ended: ended, id: id)
            try tx.query("UPDATE live_runs SET lines = lines + $3\(changed || state != nil ? ", state = $4" : "") WHERE project = $1 AND id = $2",
                         changed || state != nil ? [project, id, fresh.count, try LiveRuns.encode(s)] : [project, id, fresh.count])
            return (held + fresh.count, cancel)
        }
    }

    /// MLflow's log calls: lines after those held; false when there is no such run.
    func append(_ id: String, lines: [String]) throws -> Bool {
        try db.transaction { tx in
            guard let held = try tx.query("SELECT lines FROM live_runs WHERE project = $1 AND id = $2 FOR UPDATE", [project, id]).first.map({ try $0.decode(Int.self) }) else {
                return false
            }
            let fresh = try LiveRuns.checkLines(id, from: held, held: held, lines)
            try insertLines(tx, id, at: held, fresh)
            try tx.query("UPDATE live_runs SET lines = lines + $3 WHERE project = $1 AND id = $2", [project, id, fresh.count])
            return true
        }
    }

    /// Lines numbered from `at` on, in one statement.
    private func insertLines(_ tx: MetadataDatabase.Transaction, _ id: String, at: Int, _ lines: [String]) throws {
        guard !lines.isEmpty else { return }
        try tx.query("""
            INSERT INTO live_lines (project, id, n, line)
            SELECT $1, $2, $3 + t.i - 1, t.line FROM unnest($4::text[]) WITH ORDINALITY AS t(line, i)
            """, [project, id, at, lines])
    }

    /// Sets the cancel request of a running run; false when there is no such running run.
    func requestCancel(_ id: String, reason: String) throws -> Bool {
        !(try db.query("UPDATE live_runs SET cancel = $3 WHERE project = $1 AND id = $2 AND (state::jsonb ->> 'status') = 'running' RETURNING id",
                       [project, id, reason])).isEmpty
    }

    /// The run's row and everything under it.
    func delete(_ id: String) throws {
        try db.query("DELETE FROM live_runs WHERE project = $1 AND id = $2", [project, id])
    }

    /// The runs (one, or all): id, state as stored, metric lines held, cancel request.
    func runs(_ only: String?) throws -> [(id: String, state: String, lines: Int, cancel: String?)] {
        try (only.map { try db.query("SELECT id, state, lines, cancel FROM live_runs WHERE project = $1 AND id = $2", [project, $0]) }
            ?? db.query("SELECT id, state, lines, cancel FROM live_runs WHERE project = $1", [project]))
            .map { try $0.decode((String, String, Int, String?).self) }
    }

    /// Metric lines from number `from` on.
    func lines(_ id: String, from: Int) throws -> [String] {
        try db.query("SELECT line FROM live_lines WHERE project = $1 AND id = $2 AND n >= $3 ORDER BY n", [project, id, from])
            .map { try $0.decode(String.self) }
    }

    /// Log chunks that reach past `size` bytes of a stream, in order.
    func logChunks(_ id: String, stream: String, after size: UInt64) throws -> [(start: Int64, bytes: [UInt8])] {
        try db.query("SELECT start, bytes FROM live_logs WHERE project = $1 AND id = $2 AND stream = $3 AND start + length(bytes) > $4 ORDER BY start",
                     [project, id, stream, Int64(size)]).map { row in
            let (start, bytes) = try row.decode((Int64, ByteBuffer).self)
            return (start, Array(buffer: bytes))
        }
    }

    static let artifactPiece = 8 << 20

    /// Stores a complete file as artifact `path` (replacing an earlier upload); its version.
    func putArtifact(_ id: String, path: String, file: String) throws -> Int64 {
        let version = Int64.random(in: 1...Int64.max)
        let fd = try FileIO.open(file, O_RDONLY)
        defer { close(fd) }
        try db.transaction { tx in
            try tx.query("DELETE FROM live_artifacts WHERE project = $1 AND id = $2 AND path = $3", [project, id, path])
            var start: Int64 = 0
            var buffer = [UInt8](repeating: 0, count: SharedLiveRuns.artifactPiece)
            while true {
                let n = try buffer.withUnsafeMutableBytes { try FileIO.preadUpTo(fd, $0.baseAddress!, $0.count, offset: UInt64(start), path: file) }
                try tx.query("INSERT INTO live_artifacts (project, id, path, version, start, bytes) VALUES ($1, $2, $3, $4, $5, $6)",
                             [project, id, path, version, start, ByteBuffer(bytes: buffer[0..<n])])
                start += Int64(n)
                if n < buffer.count { break }
            }
        }
        return version
    }

    /// Each artifact of the run and the version stored.
    func artifacts(_ id: String) throws -> [(path: String, version: Int64)] {
        try db.query("SELECT DISTINCT path, version FROM live_artifacts WHERE project = $1 AND id = $2", [project, id])
            .map { try $0.decode((String, Int64).self) }
    }

    /// Writes one version of an artifact to `fd` (the pieces one at a time: an artifact may be large).
    func readArtifact(_ id: String, path: String, version: Int64, into fd: Int32, named: String) throws {
        var start: Int64 = 0
        while let row = try db.query("SELECT start, bytes FROM live_artifacts WHERE project = $1 AND id = $2 AND path = $3 AND version = $4 AND start >= $5 ORDER BY start LIMIT 1",
                                     [project, id, path, version, start]).first {
            let (at, bytes) = try row.decode((Int64, ByteBuffer).self)
            let piece = Array(buffer: bytes)
            try FileIO.pwriteAll(fd, piece, piece.count, offset: Int(at), path: named)
            start = at + 1
        }
    }
}
