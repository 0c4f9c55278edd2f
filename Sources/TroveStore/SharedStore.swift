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
public final class SharedStore: ObjectSource, @unchecked Sendable {
    public let root: String
    public private(set) var config: StoreConfig
    public let parameters: ChunkerParameters
    public let refs: Refs
    public let table: PackTable
    /// True for a store made by `init --bare` / `clone --bare`: no working tree anywhere.
    public let isBare: Bool

    public var packsDirectory: String { root + "/packs" }

    public init(root: String) throws {
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
        refs = Refs(root: root)
        table = PackTable(directory: root + "/packs")
        isBare = config.values["core.bare"] == "true"
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

    public func locate(_ id: ObjectID) throws -> ObjectLocation? { try table.locate(id) }
    public func locateMany(_ ids: [ObjectID]) throws -> [ObjectLocation?] { try table.locateMany(ids) }

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
    /// dropping it unfinished discards everything it received.
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
            try store.table.refresh()
            writer = PackWriter(directory: store.packsDirectory, targetSize: Int.max) { [unowned self] name, _, records in
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
            guard seen.insert(o.id).inserted, try store.table.locate(o.id) == nil else { return }
            try o.stored.withUnsafeBytes {
                try writer.append(type: o.type, id: o.id, codec: o.codec, rawLength: o.rawLength, stored: $0)
            }
            result.stored += 1
            result.storedBytes += UInt64(o.stored.count)
        }

        public func finish() throws -> Received {
            try writer.finish()
            if let (name, records) = finished {
                store.table.add(name: name, records: records)
                result.pack = name
            }
            return result
        }
    }
}
