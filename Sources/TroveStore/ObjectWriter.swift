import Dispatch
import TroveCore

/// Receives progress from long operations (bytes done); called from worker threads.
public protocol ProgressSink: AnyObject, Sendable {
    func begin(total: UInt64?, label: String)
    func advance(_ bytes: UInt64)
    func end()
}

/// A write session on a store: new objects go into packs (deduplicated against the index and
/// against this session), and `finish()` makes them durable and indexed. Thread-safe.
public final class ObjectWriter: @unchecked Sendable {
    let store: Store
    private let pack: PackWriter
    private let lock = Mutex()
    private let compressor: Compressor
    private var scratch: [UInt8] = []

    /// Stored bytes and objects written by this session.
    public private(set) var storedBytes: UInt64 = 0
    public private(set) var rawBytes: UInt64 = 0
    public private(set) var objectsWritten = 0

    public init(store: Store) {
        self.store = store
        compressor = Compressor(level: store.compressionLevel)
        let index = store.index
        pack = PackWriter(directory: store.packsDirectory, targetSize: store.packTargetSize) { name, size, records in
            try index.addPack(name: name, size: size, records: records)
        }
    }

    /// True when the object is already stored (index, alternates or this session).
    public func has(_ id: ObjectID) throws -> Bool {
        if lock.withLock({ pack.isPending(id) }) { return true }
        return try store.has(id)
    }

    /// Which of `ids` are stored already (through the caller's own index connection).
    func present(_ ids: [ObjectID], reader: IndexReader) throws -> [Bool] {
        var found = try reader.contains(ids)
        if !store.alternates.isEmpty {
            for i in found.indices where !found[i] { found[i] = try store.locate(ids[i]) != nil }
        }
        return found
    }

    /// Stores a metadata object (segment, blob manifest, tree, commit) or a small chunk.
    @discardableResult
    public func put(_ type: ObjectType, _ bytes: [UInt8], id knownID: ObjectID? = nil) throws -> ObjectID {
        let id = knownID ?? SHA256.hash(bytes)
        if try has(id) { return id }
        try lock.withLock {
            if pack.isPending(id) { return }
            let bound = Compressor.bound(bytes.count)
            if scratch.count < bound { scratch = [UInt8](repeating: 0, count: bound) }
            try bytes.withUnsafeBytes { raw in
                try scratch.withUnsafeMutableBytes { dst in
                    if let n = compressor.compressIfPays(raw, into: dst.baseAddress!, capacity: dst.count) {
                        try appendLocked(type: type, id: id, codec: .zstd, rawLength: raw.count, stored: UnsafeRawBufferPointer(rebasing: dst[..<n]))
                    } else {
                        try appendLocked(type: type, id: id, codec: .raw, rawLength: raw.count, stored: raw)
                    }
                }
            }
        }
        return id
    }

    /// Appends a chunk that the caller hashed (and maybe compressed). Returns false when this
    /// session already wrote it.
    @discardableResult
    func putPrepared(type: ObjectType, id: ObjectID, codec: PackFormat.Codec, rawLength: Int, stored: UnsafeRawBufferPointer) throws -> Bool {
        try lock.withLock {
            if pack.isPending(id) { return false }
            try appendLocked(type: type, id: id, codec: codec, rawLength: rawLength, stored: stored)
            return true
        }
    }

    /// Stores an object received from a peer after checking it against its id (a corrupt or
    /// forged object is an integrity error and is not written). Returns false when the store
    /// already had it.
    @discardableResult
    public func putReceived(_ o: PackedObject) throws -> Bool { try putReceived([o]).objects == 1 }

    /// `putReceived` for many objects, verified on all cores first (all must verify before any
    /// is written). Returns how many were new and their raw bytes.
    public func putReceived(_ objects: [PackedObject]) throws -> (objects: Int, rawBytes: UInt64) {
        if let (i, e) = PackedObject.firstFailure(objects, threads: store.threads) {
            throw StoreError(.integrity, "received object \(objects[i].id.hex) is corrupt or forged: \(e.message)",
                             hint: "nothing of it was stored; the remote's copy may be damaged (run `trove fsck --full` there)", underlying: e)
        }
        var n = 0
        var bytes: UInt64 = 0
        var written: [ObjectID] = []
        // One batched look-up; objects this session already wrote are skipped by putPrepared.
        let stored = try store.contains(objects.map(\.id))
        for (o, present) in zip(objects, stored) where !present {
            if try o.stored.withUnsafeBytes({ try putPrepared(type: o.type, id: o.id, codec: o.codec, rawLength: o.rawLength, stored: $0) }) {
                n += 1
                bytes += UInt64(o.rawLength)
                if o.type == .chunk { written.append(o.id) }
            }
        }
        // Only what this process wrote from verified bytes; copies already on disk are not.
        store.verifiedThisSession.insert(written)
        return (n, bytes)
    }

    private func appendLocked(type: ObjectType, id: ObjectID, codec: PackFormat.Codec, rawLength: Int, stored: UnsafeRawBufferPointer) throws {
        try pack.append(type: type, id: id, codec: codec, rawLength: rawLength, stored: stored)
        storedBytes += UInt64(stored.count)
        rawBytes += UInt64(rawLength)
        objectsWritten += 1
    }

    /// Makes everything written so far durable and indexed.
    public func finish() throws {
        try lock.withLock { try pack.finish() }
    }
}
