import Dispatch
import Glibc
import TroveCore

/// A store reached as a remote: on a shared file system (`/scratch/p/store`), or served by
/// `trove serve-stdio` and the daemon. It uses only files — packs (each with its own index),
/// ref files moved by lock + rename, the config — never SQLite, whose locking is unsafe on
/// Lustre, GPFS and NFS. Objects are found through the packs' trailers (`PackTable`).
///
/// A working store's folder (`.trove`) can be opened this way too: its SQLite index is
/// ignored here and catches up with new packs the next time the store is opened.
///
/// A daemon's replicas share a project through `archived` (packs in S3) and `refs.database`
/// (PostgreSQL): the folder then holds the config and a bounded cache of packs.
public final class SharedStore: ObjectSource, @unchecked Sendable {
    public let root: String
    public private(set) var config: StoreConfig
    public let parameters: ChunkerParameters
    public let refs: Refs
    public let table: PackTable
    /// True for a store made by `init --bare` / `clone --bare`: no working tree anywhere.
    public let isBare: Bool
    /// The packs every replica shares (nil: the packs folder is the whole store).
    public let archived: ArchivedPacks?
    /// Bytes of packs kept in the packs folder when they are archived (the local cache).
    public let cacheBytes: Int

    public var packsDirectory: String { root + "/packs" }

    public init(root: String, refDatabase: (any RefDatabase)? = nil, archive: (any PackArchive)? = nil,
                cacheBytes: Int = 4 << 30) throws {
        self.root = root
        guard FileIO.exists(root + "/config") else {
            throw StoreError(.notAStore, "\(root) is not a trove store (no config file)",
                             hint: "create it with `trove init --bare \(root)`, or check the remote's URL")
        }
        config = try StoreConfig.parse(try FileIO.readText(root + "/config"), path: root + "/config")
        guard config.values["format.version"] == "1" else {
            throw StoreError(.invalidInput, "store \(root) has format version \(config["format.version"] ?? "?"); this trove reads version 1",
                             hint: "upgrade trove")
        }
        parameters = try config.chunkerParameters()
        refs = Refs(root: root, database: refDatabase)
        table = PackTable(directory: root + "/packs")
        isBare = config.values["core.bare"] == "true"
        self.cacheBytes = cacheBytes
        archived = archive.map { ArchivedPacks(archive: $0, cacheBytes: min(256 << 20, max(16 << 20, cacheBytes / 16))) }
        // Uploads cut short by a crash before they were archived: never acknowledged, never listed.
        if archive != nil { FileIO.removeTree(root + "/incoming") }
    }

    /// Catches up with packs written since by other processes (and, archived, other replicas).
    public func refresh() throws {
        try table.refresh()
        try archived?.refresh()
    }

    /// Keeps the packs folder of an archived store under `cacheBytes`: the oldest packs go
    /// first (they are in the archive; reads of them go there).
    func trimCache() {
        guard archived != nil, let names = try? FileIO.listDirectory(packsDirectory) else { return }
        var packs: [(name: String, size: Int, time: Int)] = []
        for n in names where n.hasSuffix(".pack") && !n.hasPrefix("tmp-") {
            var st = stat()
            guard stat(packsDirectory + "/" + n, &st) == 0 else { continue }
            packs.append((n, Int(st.st_size), Int(st.st_mtim.tv_sec)))
        }
        var total = packs.reduce(0) { $0 + $1.size }
        guard total > cacheBytes else { return }
        var gone: [String] = []
        for p in packs.sorted(by: { $0.time < $1.time }) where total > cacheBytes {
            unlink(packsDirectory + "/" + p.name)
            gone.append(String(p.name.dropLast(5)))
            total -= p.size
        }
        try? table.refresh()
        // Their descriptors close one trim later (a reader may be in the middle of a read now):
        // without this the disk space of every pack ever opened would never come back.
        table.files.retire(gone)
    }

    /// Creates a bare store (no working tree, no SQLite) at `root`.
    @discardableResult
    public static func create(root: String, parameters: ChunkerParameters = .default) throws -> SharedStore {
        try Store.createLayout(root: root, parameters: parameters, extra: ["core.bare": "true"])
        return try SharedStore(root: root)
    }

    /// A free-form setting of the store's config (`project.description`, ...).
    public func setting(_ key: String) -> String? { (try? StoreConfig.parse(try FileIO.readText(root + "/config"), path: root + "/config"))?.values[key] }

    /// Changes a setting that is not part of the format (never the chunker's), atomically.
    public func setSetting(_ key: String, _ value: String?) throws {
        guard !StoreConfig.known.contains(where: { $0.name == key && $0.immutable }), key != "core.bare" else {
            throw StoreError(.invalidInput, "\(key) cannot be changed")
        }
        var c = try StoreConfig.parse(try FileIO.readText(root + "/config"), path: root + "/config")
        c[key] = value
        try FileIO.atomicWrite(root + "/config", Array(c.render().utf8))
        config = c
    }

    public func locate(_ id: ObjectID) throws -> ObjectLocation? {
        if let l = try table.locate(id) { return l }
        return try archived?.locate(id)
    }

    public func locateMany(_ ids: [ObjectID]) throws -> [ObjectLocation?] {
        var out = try table.locateMany(ids)
        guard let archived else { return out }
        let absent = out.indices.filter { out[$0] == nil }
        guard !absent.isEmpty else { return out }
        for (k, l) in try archived.locateMany(absent.map { ids[$0] }).enumerated() { out[absent[k]] = l }
        return out
    }

    /// What one upload stored.
    public struct Received: Sendable {
        /// Objects in the upload.
        public var objects = 0
        /// Objects that were new here (the rest were present already and skipped).
        public var stored = 0
        public var storedBytes: UInt64 = 0
        /// The pack they went into (nil when nothing was new).
        public var pack: String?
    }

    /// Stores one upload, all or nothing: every object is verified against its id and written
    /// to one temporary pack, which becomes durable (fsync, rename, folder fsync) only when
    /// `next` reports the end (nil). Any error — a corrupt object, a stream cut short — removes
    /// the temporary pack and leaves the store as it was.
    public func receive(maxBytes: Int, _ next: () throws -> PackedObject?) throws -> Received {
        let upload = try Upload(store: self, maxBytes: maxBytes)
        while let o = try next() { try upload.add(o) }
        return try upload.finish()
    }

    /// One upload fed object by object (by a stream parser): `finish` makes it durable;
    /// dropping it unfinished discards everything it received. An archived store writes the
    /// pack to `incoming/`, archives it, and only then moves it into the packs folder: no
    /// reader here sees an object another replica could not find.
    public final class Upload {
        let store: SharedStore
        let maxBytes: Int
        private var result = Received()
        private var finished: (String, [PackFormat.IndexRecord])?
        private var writer: PackWriter!
        private var seen = Set<ObjectID>()
        private var total = 0

        public init(store: SharedStore, maxBytes: Int) throws {
            self.store = store
            self.maxBytes = maxBytes
            try store.refresh()
            let directory = store.archived == nil ? store.packsDirectory : store.root + "/incoming"
            if store.archived != nil { try FileIO.mkdirs(directory) }
            writer = PackWriter(directory: directory, targetSize: Int.max) { [unowned self] name, _, records in
                self.finished = (name, records)
            }
        }

        public func add(_ o: PackedObject) throws { try addAll([o]) }

        /// Adds objects in order; they are verified on all cores first.
        public func addAll(_ objects: [PackedObject]) throws {
            for o in objects {
                total += o.stored.count
                guard total <= maxBytes else {
                    throw StoreError(.invalidInput, "upload is larger than the \(maxBytes)-byte limit",
                                     hint: "send the objects in several uploads")
                }
            }
            if let (_, e) = PackedObject.firstFailure(objects, threads: Upload.threads) {
                throw StoreError(.integrity, "upload rejected: \(e.message)", hint: "nothing was stored; send the objects again", underlying: e)
            }
            for o in objects { try append(o) }
        }

        static let threads = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

        private func append(_ o: PackedObject) throws {
            result.objects += 1
            guard seen.insert(o.id).inserted, try store.locate(o.id) == nil else { return }
            try o.stored.withUnsafeBytes {
                try writer.append(type: o.type, id: o.id, codec: o.codec, rawLength: o.rawLength, stored: $0)
            }
            result.stored += 1
            result.storedBytes += UInt64(o.stored.count)
        }

        public func finish() throws -> Received {
            try writer.finish()
            if let (name, records) = finished {
                if let archived = store.archived {
                    let incoming = writer.directory + "/" + name + ".pack"
                    do {
                        try archived.archive.store(pack: name, path: incoming, records: records)
                        try FileIO.rename(incoming, store.packsDirectory + "/" + name + ".pack")
                        try FileIO.fsyncDirectory(store.packsDirectory)
                    } catch {
                        unlink(incoming)
                        throw error
                    }
                    archived.add(pack: name, records: records)
                }
                store.table.add(name: name, records: records)
                result.pack = name
                store.trimCache()
            }
            return result
        }
    }
}
