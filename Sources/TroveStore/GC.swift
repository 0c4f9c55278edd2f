import Glibc
import TroveCore

/// Garbage collection: keeps what refs, HEAD, the stage and reflog entries younger than the
/// grace period reach; rewrites packs that hold unreachable objects or are small, then removes
/// the old packs. Holds the store's exclusive lock, so no writer runs meanwhile.
public struct GarbageCollector {
    public let store: Store
    public var graceSeconds: Int64
    public var progress: ProgressSink?

    public init(store: Store) {
        self.store = store
        graceSeconds = Int64((try? store.config.int("gc.grace-seconds")) ?? nil ?? 14 * 86400)
    }

    public struct Report: Sendable {
        public var packsBefore = 0
        public var packsAfter = 0
        public var bytesBefore: UInt64 = 0
        public var bytesAfter: UInt64 = 0
        public var objectsDropped = 0
        public var objectsKept = 0
        public var packsRewritten = 0
    }

    /// Every object that must survive.
    public func live() throws -> Set<ObjectID> {
        let refs = Refs(root: store.root)
        var roots = try refs.list().map(\.id)
        if let h = try refs.headCommit() { roots.append(h) }
        let cutoff = Int64(time(nil)) - graceSeconds
        for log in try refs.allReflogs() {
            for e in log where e.time >= cutoff {
                if let o = e.old { roots.append(o) }
                if let n = e.new { roots.append(n) }
            }
        }
        var live = Set<ObjectID>()
        var stack = roots.filter { (try? store.has($0)) == true }
        var blobs = Set<ObjectID>()
        func walkTree(_ id: ObjectID) throws {
            guard live.insert(id).inserted else { return }
            for e in try store.tree(id).entries {
                if e.kind == .directory { try walkTree(e.id) } else { blobs.insert(e.id) }
            }
        }
        while let id = stack.popLast() {
            guard live.insert(id).inserted else { continue }
            let c = try store.commit(id)
            stack.append(contentsOf: c.parents)
            try walkTree(c.tree)
        }
        for e in try store.index.stage().values { blobs.insert(e.id) }
        for b in blobs {
            guard try store.has(b) else { continue }
            live.insert(b)
            for m in try store.manifestObjects(ofBlob: b) { live.insert(m) }
            for c in try store.chunks(ofBlob: b) { live.insert(c.id) }
        }
        return live
    }

    public func run() throws -> Report {
        let lock = try store.lock(exclusive: true, wait: false)
        defer { _ = lock }
        _ = Fsck.removeStaleTemporaries(store)
        var report = Report()
        let packs = try store.index.packs()
        report.packsBefore = packs.count
        report.bytesBefore = packs.reduce(0) { $0 + $1.size }
        let live = try live()
        let target = UInt64(store.packTargetSize)
        var rewrite: [String] = []
        var smallPacks: [String] = []
        var recordsByPack: [String: [PackFormat.IndexRecord]] = [:]
        for p in packs {
            let (_, records) = try Store.readPackIndex(path: store.packFiles.path(p.name), name: p.name)
            recordsByPack[p.name] = records
            let dead = records.filter { !live.contains($0.id) }.count
            if dead > 0 { rewrite.append(p.name) } else if p.size < target / 2 { smallPacks.append(p.name) }
        }
        if smallPacks.count > 1 { rewrite.append(contentsOf: smallPacks) }
        guard !rewrite.isEmpty else {
            report.packsAfter = report.packsBefore
            report.bytesAfter = report.bytesBefore
            report.objectsKept = live.count
            return report
        }
        var created: [(name: String, size: UInt64, records: [PackFormat.IndexRecord])] = []
        let writer = PackWriter(directory: store.packsDirectory, targetSize: Int(target)) { name, size, records in
            created.append((name, size, records))
        }
        var copied = Set<ObjectID>()
        let decompressor = Decompressor()
        progress?.begin(total: rewrite.reduce(0) { t, n in t + (recordsByPack[n] ?? []).reduce(0) { $0 + UInt64($1.storedLength) } }, label: "repacking")
        for name in rewrite {
            let fd = try store.packFiles.fd(name)
            for rec in recordsByPack[name]!.sorted(by: { $0.offset < $1.offset }) {
                progress?.advance(UInt64(rec.storedLength))
                guard live.contains(rec.id) else { report.objectsDropped += 1; continue }
                guard copied.insert(rec.id).inserted else { continue }
                // Verify before copying, so that gc never spreads a damaged object.
                _ = try store.readVerified(Store.Located(files: store.packFiles, location: .init(pack: name, record: rec)), decompressor: decompressor)
                let stored = try FileIO.pread(fd, count: Int(rec.storedLength), offset: rec.dataOffset, path: store.packFiles.path(name))
                try stored.withUnsafeBytes {
                    try writer.append(type: rec.type, id: rec.id, codec: rec.codec, rawLength: Int(rec.rawLength), stored: $0)
                }
            }
        }
        try writer.finish()
        progress?.end()
        let newNames = Set(created.map(\.name))
        let removing = rewrite.filter { !newNames.contains($0) }
        // New packs are durable; switch the index in one transaction, then delete the old files.
        try store.index.replacePacks(removing: removing, adding: created)
        for name in removing {
            store.packFiles.forget(name)
            unlink(store.packFiles.path(name))
        }
        try FileIO.fsyncDirectory(store.packsDirectory)
        let after = try store.index.packs()
        report.packsAfter = after.count
        report.bytesAfter = after.reduce(0) { $0 + $1.size }
        report.packsRewritten = removing.count
        report.objectsKept = copied.count
        return report
    }
}
