import Dispatch
import Glibc
import TroveCore

/// Where a daemon's packs are kept when its replicas share them (an S3 bucket, with the list of
/// packs in PostgreSQL): the daemon's own packs folder is then a bounded cache of it.
public protocol PackArchive: AnyObject, Sendable {
    /// Shown in messages (`s3://bucket/prefix/PROJECT/packs`).
    var name: String { get }
    /// Packs archived after `cursor` (0: all), the cursor to ask from next time, and how many
    /// packs the archive lists in all (fewer than known: some were removed, by a gc).
    func packs(after cursor: Int64) throws -> (names: [String], cursor: Int64, total: Int)
    /// A pack's index records, checked against the pack's name.
    func index(of pack: String) throws -> [PackFormat.IndexRecord]
    /// Bytes of an archived pack; the caller verifies every object it reads from them.
    func read(pack: String, range: Range<UInt64>) throws -> [UInt8]
    /// Makes a finished local pack durable in the archive (its bytes, its index, then its
    /// listing), before the upload that made it is acknowledged.
    func store(pack: String, path: String, records: [PackFormat.IndexRecord]) throws
}

/// The objects of an archive's packs: their indexes in memory, caught up with the archive's
/// listing on a miss (at most every 20 ms), and a bounded cache of the objects read lately
/// (commits, trees and the chunks many readers want), so that hot reads do not go to S3.
public final class ArchivedPacks: @unchecked Sendable {
    public let archive: any PackArchive
    let table: RemotePackTable
    private let cursor = Locked<Int64>(0)
    private let refreshed = Locked<UInt64>(0)
    private let refreshing = Mutex()
    /// Listed packs whose index could not be read (name → why), for fsck.
    public let unreadable = Locked<[String: String]>([:])
    let cache: ByteCache

    public init(archive: any PackArchive, cacheBytes: Int) {
        self.archive = archive
        let cache = ByteCache(capacity: cacheBytes)
        self.cache = cache
        table = RemotePackTable(name: archive.name) { [archive] pack, range in
            let key = "\(pack)@\(range.lowerBound)"
            if let hit = cache.get(key), hit.count == range.count { return hit }
            let bytes = try archive.read(pack: pack, range: range)
            // Spans read for a download pass through once; single objects are kept.
            if range.count <= 1 << 20 { cache.put(key, bytes) }
            return bytes
        }
    }

    public var packNames: [String] { table.packNames }
    public var objectCount: Int { table.objectCount }

    /// Reads the indexes of packs archived since the last call.
    public func refresh() throws {
        try refreshing.withLock {
            let (names, next, total) = try archive.packs(after: cursor.get())
            add(names)
            cursor.set(next)
            if total != table.packNames.count + unreadable.get().count {
                // Packs were removed (a gc), or one committed long after its number was taken and the
                // cursor passed it: read the whole list and make the table match it.
                let all = try archive.packs(after: 0)
                table.remove(packs: Set(table.packNames).subtracting(all.names))
                unreadable.update { $0 = $0.filter { all.names.contains($0.key) } }
                add(all.names)
            }
            refreshed.set(DispatchTime.now().uptimeNanoseconds)
        }
    }

    /// Reads the indexes of packs not in the table. One damaged index must not stop every push
    /// to the project: that pack is skipped and named by fsck.
    private func add(_ names: [String]) {
        for n in names where !table.has(pack: n) && unreadable.get()[n] == nil {
            do { table.add(pack: n, records: try archive.index(of: n)) } catch let e as StoreError where e.code == .integrity {
                unreadable.update { $0[n] = e.message }
            } catch {
                // Unreachable for now (S3 down): tried again at the next look.
            }
        }
    }

    /// Records a pack this replica has just archived.
    func add(pack: String, records: [PackFormat.IndexRecord]) { table.add(pack: pack, records: records) }

    private func refreshAfterMiss() throws -> Bool {
        guard DispatchTime.now().uptimeNanoseconds - refreshed.get() > 20_000_000 else { return false }
        try refresh()
        return true
    }

    public func locate(_ id: ObjectID) throws -> ObjectLocation? {
        if let l = try table.locate(id) { return l }
        return try refreshAfterMiss() ? try table.locate(id) : nil
    }

    public func locateMany(_ ids: [ObjectID]) throws -> [ObjectLocation?] {
        let out = try table.locateMany(ids)
        guard out.contains(where: { $0 == nil }), try refreshAfterMiss() else { return out }
        return try table.locateMany(ids)
    }

    /// The records of every archived pack (for fsck).
    public func records(of pack: String) throws -> [PackFormat.IndexRecord] { try archive.index(of: pack) }
}

/// A least-recently-used map of byte arrays with a bound on their total size.
final class ByteCache: @unchecked Sendable {
    let capacity: Int
    private var entries: [String: (bytes: [UInt8], used: UInt64)] = [:]
    private var total = 0
    private var clock: UInt64 = 0
    private let lock = Mutex()

    init(capacity: Int) { self.capacity = capacity }

    func get(_ key: String) -> [UInt8]? {
        lock.withLock {
            guard var e = entries[key] else { return nil }
            clock += 1
            e.used = clock
            entries[key] = e
            return e.bytes
        }
    }

    func put(_ key: String, _ bytes: [UInt8]) {
        guard bytes.count <= capacity / 4 else { return }
        lock.withLock {
            clock += 1
            if let old = entries.updateValue((bytes, clock), forKey: key) { total -= old.bytes.count }
            total += bytes.count
            guard total > capacity else { return }
            // Evict the oldest quarter at once: a sort per eviction, not per insert.
            for (k, e) in entries.sorted(by: { $0.value.used < $1.value.used }) {
                guard total > capacity * 3 / 4 else { break }
                entries[k] = nil
                total -= e.bytes.count
            }
        }
    }

    var bytes: Int { lock.withLock { total } }
}
