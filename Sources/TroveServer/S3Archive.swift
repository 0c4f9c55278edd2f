import Foundation
import PostgresNIO
import TroveCore
import TroveProtocol
import TroveStore
import TroveSync

/// A project's packs in S3 (`--objects s3://BUCKET/PREFIX`: the project's packs under
/// `PREFIX/PROJECT/packs/`, the layout of an S3 remote) with their list in PostgreSQL, so
/// that every replica finds every pack as soon as the upload that made it is acknowledged.
final class S3Archive: PackArchive, @unchecked Sendable {
    let remote: S3Remote
    let db: MetadataDatabase
    let project: String
    let name: String

    init(objects: String, project: String, db: MetadataDatabase, environment: [String: String]) throws {
        // The project's folder goes into the path, before any ?endpoint=…&region=….
        let query = objects.firstIndex(of: "?").map { String(objects[$0...]) } ?? ""
        var base = String(objects.dropLast(query.count))
        if base.hasSuffix("/") { base.removeLast() }
        remote = try S3Remote(url: base + "/" + project + query, environment: environment)
        self.db = db
        self.project = project
        name = "s3://\(remote.s3.location.bucket)/\(remote.s3.location.key("packs"))"
    }

    /// Checks, before a replica serves anything, that its credentials may write and delete in
    /// the bucket under the prefix (a probe object, removed at once): a wrong bucket, another
    /// project's bucket or a wrong key stops the daemon with S3's reason, not a push later.
    static func probe(objects: String, environment: [String: String]) throws {
        let s3 = try S3Client(location: try S3Location.parse(objects), environment: environment)
        let key = ".trove-probe-\(ProcessInfo.processInfo.hostName)-\(getpid())"
        do {
            _ = try s3.put(key, Array("probe\n".utf8))
            try s3.delete(key)
        } catch let e as SyncError {
            throw ProtocolError(.invalidInput, "the daemon cannot use its object store: \(e.message)",
                                hint: (e.hint.map { $0 + "; " } ?? "") + "check --objects and the AWS credentials the daemon runs with")
        }
    }

    /// Packs listed after `cursor` (a `packs.seq`). Sequence numbers are taken before their
    /// transaction commits, so a lower one can appear after a higher one: the cursor stays
    /// behind every row younger than 30 s, which are read again (and skipped when known).
    func packs(after cursor: Int64) throws -> (names: [String], cursor: Int64, total: Int) {
        var next = cursor
        var names: [String] = []
        let rows = try db.query("""
            SELECT seq, name, created < extract(epoch from now())::bigint - 30, (SELECT count(*) FROM packs WHERE project = $1) FROM packs
            WHERE project = $1 AND seq > $2 ORDER BY seq
            """, [project, Int(cursor)])
        var total = 0
        var settled = true
        for row in rows {
            let (seq, pack, old, count) = try row.decode((Int, String, Bool, Int).self)
            names.append(pack)
            settled = settled && old
            if settled { next = Int64(seq) }
            total = count
        }
        if rows.isEmpty {
            total = try db.query("SELECT count(*) FROM packs WHERE project = $1", [project]).first.map { try $0.decode(Int.self) } ?? 0
        }
        return (names, next, total)
    }

    /// S3 unreachable or failing for a moment: 503, which clients retry; not a 500.
    private func retryable<T>(_ what: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as SyncError where e.code == .transport || e.code == .io {
            throw ProtocolError(.unavailable, "the object store \(name) failed \(what): \(e.message)", hint: "retry shortly")
        }
    }

    /// A missing or damaged index is a `StoreError(.integrity)`: the store skips that pack and
    /// fsck names it, rather than every push of the project failing on it.
    func index(of pack: String) throws -> [PackFormat.IndexRecord] {
        guard let trailer = try retryable("to send the index of pack \(pack)", { try remote.s3.get("packs/\(pack).idx") }) else {
            throw StoreError(.integrity, "\(name)/\(pack).idx is missing but \(db.display) lists the pack",
                             hint: "restore the object from a backup of the bucket; `trove daemon fsck` names what it holds")
        }
        do { return try remote.indexRecords(trailer, pack: pack) } catch let e as SyncError where e.code == .integrity {
            throw StoreError(.integrity, e.message, hint: e.hint)
        }
    }

    func read(pack: String, range: Range<UInt64>) throws -> [UInt8] {
        guard let bytes = try retryable("to send bytes of pack \(pack)", { try remote.s3.get("packs/\(pack).pack", range: range) }) else {
            throw ProtocolError(.integrity, "\(name)/\(pack).pack is missing but its index is there",
                                hint: "restore the object from a backup of the bucket")
        }
        return bytes
    }

    func store(pack: String, path: String, records: [PackFormat.IndexRecord]) throws {
        let bytes = try FileIO.readFile(path)
        let tail = Array(bytes.suffix(PackFormat.footerSize))
        let indexOffset = tail.withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        guard indexOffset > 0, indexOffset < bytes.count else { throw StoreError(.integrity, "pack \(path) has a malformed footer") }
        try retryable("to take pack \(pack)") {
            try remote.putLarge("packs/\(pack).pack", bytes)
            // The index after the pack, and the listing after both: a listed pack is whole.
            _ = try remote.s3.put("packs/\(pack).idx", Array(bytes[indexOffset...]))
        }
        try db.query("""
            INSERT INTO packs (project, name, bytes, objects, created) VALUES ($1, $2, $3, $4, extract(epoch from now())::bigint)
            ON CONFLICT (project, name) DO NOTHING
            """, [project, pack, bytes.count, records.count])
    }
}
