import Dispatch
import Glibc
import TroveCore

/// Where one object is stored: its pack and index record.
public struct ObjectLocation: Sendable {
    let files: PackFiles
    let location: ObjectIndex.Location

    public var record: PackFormat.IndexRecord { location.record }
    public var pack: String { location.pack }
}

/// Anything objects can be read from: a working store (SQLite index) or a shared store (pack
/// trailers in memory). Every read is verified against the id.
public protocol ObjectSource: AnyObject, Sendable {
    func locate(_ id: ObjectID) throws -> ObjectLocation?
    func locateMany(_ ids: [ObjectID]) throws -> [ObjectLocation?]
}

/// A store with refs, of either kind (working or shared): what a push reads from.
public protocol RefStore: ObjectSource {
    /// The store's folder (`.trove`, or the shared store's root).
    var root: String { get }
    var refs: Refs { get }
    var parameters: ChunkerParameters { get }
    /// Up to `limit` ids starting with a hex prefix (for revisions given as a short id).
    func ids(withPrefix prefix: String, type: ObjectType?, limit: Int) throws -> [ObjectID]
}

extension Store: RefStore {
    public func ids(withPrefix prefix: String, type: ObjectType?, limit: Int) throws -> [ObjectID] {
        try index.ids(withPrefix: prefix, type: type, limit: limit)
    }
}

extension SharedStore: RefStore {
    public func ids(withPrefix prefix: String, type: ObjectType?, limit: Int) throws -> [ObjectID] {
        try table.ids(withPrefix: prefix, type: type, limit: limit)
    }
}

extension ObjectSource {
    public func has(_ id: ObjectID) throws -> Bool { try locate(id) != nil }

    /// For each id, whether it is stored.
    public func contains(_ ids: [ObjectID]) throws -> [Bool] { try locateMany(ids).map { $0 != nil } }

    public func type(of id: ObjectID) throws -> ObjectType? { try locate(id)?.record.type }

    /// The bytes as stored (compressed or raw), unverified: for sending to a peer, which
    /// verifies them on receipt.
    public func storedBytes(_ l: ObjectLocation) throws -> [UInt8] {
        if let read = l.files.remote { return try read(l.pack, l.record.dataOffset..<(l.record.dataOffset + UInt64(l.record.storedLength))) }
        let path = l.files.path(l.pack)
        return try FileIO.pread(try l.files.fd(l.pack), count: Int(l.record.storedLength), offset: l.record.dataOffset, path: path)
    }

    /// Reads and decompresses an object's bytes, checking them against the id.
    func readVerified(_ located: ObjectLocation, decompressor: Decompressor? = nil) throws -> [UInt8] {
        let rec = located.record
        let stored = try storedBytes(located)
        do {
            return try stored.withUnsafeBytes { s in
                try PackFormat.verifiedRaw(type: rec.type, codec: rec.codec, rawLength: Int(rec.rawLength), id: rec.id,
                                           stored: s, decompressor: decompressor ?? ThreadDecompressor.current)
            }
        } catch let e as CoreError {
            throw StoreError(.integrity, "\(e.message) (pack \(located.files.path(located.pack)))",
                             hint: "run `trove fsck --full`; restore the pack from another copy (a remote or backup)", underlying: e)
        }
    }

    public func read(_ id: ObjectID) throws -> (ObjectType, [UInt8]) {
        guard let l = try locate(id) else {
            throw StoreError(.notFound, "object \(id.hex) is not in the store",
                             hint: "the store may be incomplete: fetch it from a remote or run `trove fsck`")
        }
        return (l.record.type, try readVerified(l))
    }

    func read(_ id: ObjectID, expecting type: ObjectType) throws -> [UInt8] {
        let (t, bytes) = try read(id)
        guard t == type else { throw StoreError(.invalidInput, "object \(id.short()) is a \(t), not a \(type)") }
        return bytes
    }

    public func tree(_ id: ObjectID) throws -> Tree {
        let bytes = try read(id, expecting: .tree)
        return try decoding("tree \(id.hex)") { try Tree.decode(bytes) }
    }

    public func commit(_ id: ObjectID) throws -> Commit {
        let bytes = try read(id, expecting: .commit)
        return try decoding("commit \(id.hex)") { try Commit.decode(bytes) }
    }

    /// Whether the blob and every chunk of it are here: what writing the file needs.
    public func hasContent(ofBlob id: ObjectID) throws -> Bool {
        guard try has(id) else { return false }
        return try contains(try chunks(ofBlob: id).map(\.id)).allSatisfy { $0 }
    }

    /// Many commits at once: one index look-up for all, then each read and verified.
    public func commits(_ ids: [ObjectID]) throws -> [Commit] {
        let found = try locateMany(ids)
        return try zip(ids, found).map { id, l in
            guard let l else {
                throw StoreError(.notFound, "commit \(id.hex) is not in the store", hint: "the store may be incomplete: fetch it from a remote or run `trove fsck`")
            }
            guard l.record.type == .commit else { throw StoreError(.invalidInput, "object \(id.short()) is a \(l.record.type), not a commit") }
            let bytes = try readVerified(l)
            return try decoding("commit \(id.hex)") { try Commit.decode(bytes) }
        }
    }

    /// The chunks of a blob, in order. A blob of one chunk is that chunk.
    public func chunks(ofBlob id: ObjectID) throws -> [ChunkRef] {
        guard let l = try locate(id) else {
            throw StoreError(.notFound, "blob \(id.hex) is not in the store",
                             hint: "the store may be incomplete: fetch it from a remote or run `trove fsck`")
        }
        switch l.record.type {
        case .chunk:
            return [ChunkRef(id: id, length: UInt64(l.record.rawLength))]
        case .blob:
            let m = try decoding("blob \(id.hex)") { try BlobManifest.decode(try readVerified(l), expectedID: id) }
            switch m.level {
            case .chunks: return m.entries
            case .segments:
                var out: [ChunkRef] = []
                for s in m.entries {
                    let seg = try decoding("segment \(s.id.hex)") { try Segment.decode(try read(s.id, expecting: .segment)) }
                    guard seg.byteCount == s.length else {
                        throw StoreError(.integrity, "segment \(s.id.hex) of blob \(id.hex) has the wrong length")
                    }
                    out.append(contentsOf: seg.chunks)
                }
                return out
            }
        default:
            throw StoreError(.invalidInput, "object \(id.short()) is a \(l.record.type), not a file")
        }
    }

    /// Objects a blob needs besides its chunks (its manifest and segments); none for a blob
    /// that is a single chunk.
    public func manifestObjects(ofBlob id: ObjectID) throws -> [ObjectID] {
        guard let l = try locate(id), l.record.type == .blob else { return [] }
        let m = try decoding("blob \(id.hex)") { try BlobManifest.decode(try readVerified(l), expectedID: id) }
        return [id] + (m.level == .segments ? m.entries.map(\.id) : [])
    }
}

extension ObjectSource {
    /// Reads the stored bytes of many objects in large direct reads (no page-cache copy),
    /// calling `body(i, stored)` for each `locations[i]`: in pack and offset order, or with
    /// `askedOrder` in the order of `locations`, which a `download` owes its client (objects
    /// asked one after another that lie one after another in a pack still share a read). Pack
    /// order would hand a clone's chunks over out of file order — pack names are checksums and
    /// a push interleaves a file over packs — and its streaming checkout would then write the
    /// file through the page cache instead of with direct I/O (Docs/decisions.md §Clone). The
    /// bytes are valid only during the call; unverified.
    public func forEachStored(_ locations: [ObjectLocation], askedOrder: Bool = false, _ body: (Int, UnsafeRawBufferPointer) throws -> Void) throws {
        let order = askedOrder ? Array(locations.indices)
            : locations.indices.sorted { (locations[$0].pack, locations[$0].record.offset) < (locations[$1].pack, locations[$1].record.offset) }
        let sorted = order.map { locations[$0] }
        let reader = Materializer.SpanReader()
        try reader.readStored(sorted, sorted.indices) { k, stored in
            if let stored {
                try body(order[k], stored)
            } else {
                let bytes = try storedBytes(sorted[k])
                try bytes.withUnsafeBytes { try body(order[k], $0) }
            }
        }
    }
}

extension PackedObject {
    /// Verifies `objects` on up to `threads` threads; the first (lowest index) that fails.
    public static func firstFailure(_ objects: [PackedObject], threads: Int) -> (Int, CoreError)? {
        let parts = objects.count < 8 ? 1 : max(1, min(objects.count, threads))
        let lock = Mutex()
        var first: (Int, CoreError)?
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let d = Decompressor()
            var i = part
            while i < objects.count {
                do { try objects[i].verify(d) } catch {
                    let e = error as? CoreError ?? CoreError(.integrity, "\(error)")
                    lock.withLock { if first == nil || i < first!.0 { first = (i, e) } }
                }
                i += parts
            }
        }
        return first
    }
}

/// The objects of a folder of packs, read from the packs' own trailers into memory: no
/// database, so it is safe on shared file systems (Lustre, GPFS, NFS) and for alternates.
/// `refresh()` picks up packs written since (by this or another process).
public final class PackTable: @unchecked Sendable {
    let files: PackFiles
    private var table: [ObjectID: ObjectIndex.Location] = [:]
    private var packs: Set<String> = []
    private var loaded = false
    private let lock = Mutex()

    public init(directory: String) { files = PackFiles(directory: directory) }

    public var directory: String { files.directory }

    /// Reads the trailers of packs not seen yet and forgets packs that are gone (a gc or a
    /// repack by another process).
    public func refresh() throws {
        // Only packs known before the listing can be judged gone: one added meanwhile (an
        // upload finishing) is simply not in this listing yet.
        let knownBefore = lock.withLock { packs }
        let names = Set(try FileIO.listDirectory(files.directory).filter { $0.hasSuffix(".pack") && !$0.hasPrefix("tmp-") }
            .map { String($0.dropLast(5)) })
        let fresh = names.filter { n in lock.withLock { !packs.contains(n) } }
        var read: [(String, [PackFormat.IndexRecord])] = []
        for n in fresh.sorted() { read.append((n, try Store.readPackIndex(path: files.path(n), name: n).1)) }
        lock.withLock {
            let gone = knownBefore.subtracting(names)
            if !gone.isEmpty {
                packs.subtract(gone)
                table = table.filter { !gone.contains($0.value.pack) }
                // Open descriptors stay open: another thread may be reading through one.
            }
            for (n, records) in read { addLocked(name: n, records: records) }
            loaded = true
        }
    }

    /// Records a pack this process has just made durable.
    func add(name: String, records: [PackFormat.IndexRecord]) {
        lock.withLock { addLocked(name: name, records: records) }
    }

    private func addLocked(name: String, records: [PackFormat.IndexRecord]) {
        guard packs.insert(name).inserted else { return }
        for r in records where table[r.id] == nil { table[r.id] = ObjectIndex.Location(pack: name, record: r) }
    }

    public var objectCount: Int { lock.withLock { table.count } }

    /// A scan of the table: fine for the rare short id a person types.
    public func ids(withPrefix prefix: String, type: ObjectType?, limit: Int) throws -> [ObjectID] {
        if !lock.withLock({ loaded }) { try refresh() }
        let p = prefix.lowercased()
        return lock.withLock {
            var out: [ObjectID] = []
            for (id, l) in table where (type == nil || l.record.type == type) && id.hex.hasPrefix(p) {
                out.append(id)
                if out.count >= limit { break }
            }
            return out
        }
    }
    public var packNames: [String] { lock.withLock { packs.sorted() } }

    public func locate(_ id: ObjectID) throws -> ObjectLocation? {
        if !lock.withLock({ loaded }) { try refresh() }
        if let l = lock.withLock({ table[id] }) { return ObjectLocation(files: files, location: l) }
        guard try refreshIfPacksChanged() else { return nil }
        return lock.withLock { table[id].map { ObjectLocation(files: files, location: $0) } }
    }

    public func locateMany(_ ids: [ObjectID]) throws -> [ObjectLocation?] {
        if !lock.withLock({ loaded }) { try refresh() }
        var out = lock.withLock { ids.map { id in table[id].map { ObjectLocation(files: files, location: $0) } } }
        if out.contains(where: { $0 == nil }), try refreshIfPacksChanged() {
            out = lock.withLock { ids.map { id in table[id].map { ObjectLocation(files: files, location: $0) } } }
        }
        return out
    }

    /// A miss may be an object another process (or another handle on this store) has just
    /// written: the packs folder is listed again when it changed since the last listing, or
    /// changed so recently that a coarse clock could hide a second change.
    private var listedStamp: Int64 = -1
    private func refreshIfPacksChanged() throws -> Bool {
        var st = stat()
        guard stat(files.directory, &st) == 0 else { return false }
        let stamp = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        let now = Int64(time(nil)) * 1_000_000_000
        let changed = lock.withLock { stamp != listedStamp || now - stamp < 2_000_000_000 }
        guard changed else { return false }
        try refresh()
        lock.withLock { listedStamp = stamp }
        return true
    }
}

/// One zstd decompression context per thread, reused: creating one costs more than
/// decompressing a commit or a tree (it showed as 11 % of listing 10,000 runs).
enum ThreadDecompressor {
    nonisolated(unsafe) static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k) { p in
            if let p { Unmanaged<Decompressor>.fromOpaque(p).release() }
        }
        return k
    }()

    static var current: Decompressor {
        if let p = pthread_getspecific(key) { return Unmanaged<Decompressor>.fromOpaque(p).takeUnretainedValue() }
        let d = Decompressor()
        pthread_setspecific(key, Unmanaged.passRetained(d).toOpaque())
        return d
    }
}

/// The objects of packs kept elsewhere (an S3 bucket): the packs' indexes in memory, their
/// bytes read through `read(pack, range)`. Every read is verified against the id, as for
/// local packs.
public final class RemotePackTable: ObjectSource, @unchecked Sendable {
    let files: PackFiles
    private var table: [ObjectID: ObjectIndex.Location] = [:]
    private var packs: Set<String> = []
    private let lock = Mutex()

    /// `name` shows in messages (`s3://bucket/prefix/packs`).
    public init(name: String, read: @escaping @Sendable (_ pack: String, _ range: Range<UInt64>) throws -> [UInt8]) {
        files = PackFiles(directory: name, remote: read)
    }

    public func has(pack: String) -> Bool { lock.withLock { packs.contains(pack) } }
    public var packNames: [String] { lock.withLock { packs.sorted() } }
    public var objectCount: Int { lock.withLock { table.count } }

    public func add(pack name: String, records: [PackFormat.IndexRecord]) {
        lock.withLock {
            guard packs.insert(name).inserted else { return }
            for r in records where table[r.id] == nil { table[r.id] = ObjectIndex.Location(pack: name, record: r) }
        }
    }

    public func remove(packs gone: Set<String>) {
        guard !gone.isEmpty else { return }
        lock.withLock {
            packs.subtract(gone)
            table = table.filter { !gone.contains($0.value.pack) }
        }
    }

    public func locate(_ id: ObjectID) throws -> ObjectLocation? {
        lock.withLock { table[id].map { ObjectLocation(files: files, location: $0) } }
    }

    public func locateMany(_ ids: [ObjectID]) throws -> [ObjectLocation?] {
        lock.withLock { ids.map { id in table[id].map { ObjectLocation(files: files, location: $0) } } }
    }
}
