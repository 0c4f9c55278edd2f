import Glibc
import TroveCore

/// Consistency checks. Quick: packs' trailers, index against packs, every object that refs,
/// reflogs and the stage reach is present. Full: also reads every object of every pack and
/// checks it against its id, and rebuilds every reachable blob to check its whole-file id.
public struct Fsck {
    public let store: Store
    public var progress: ProgressSink?

    public init(store: Store) { self.store = store }

    public struct Problem: Sendable, CustomStringConvertible {
        public var object: ObjectID?
        public var pack: String?
        public var message: String
        public var description: String {
            var s = message
            if let object { s += " [object \(object.hex)]" }
            if let pack { s += " [pack \(pack)]" }
            return s
        }
    }

    public struct Report: Sendable {
        public var packs = 0
        public var objects = 0
        public var reachableCommits = 0
        public var checkedBytes: UInt64 = 0
        public var removedTemporaryFiles: [String] = []
        public var problems: [Problem] = []
        /// Chunks a store with remotes has not fetched (history, or paths outside a partial
        /// clone): fetched on demand, so not a problem.
        public var notFetched = 0
        public var isClean: Bool { problems.isEmpty }
    }

    /// Removes temporary pack files whose writer process is gone.
    static func removeStaleTemporaries(_ store: Store) -> [String] {
        var removed: [String] = []
        for name in (try? FileIO.listDirectory(store.packsDirectory)) ?? [] where name.hasPrefix("tmp-") {
            let parts = name.split(separator: "-")
            if parts.count >= 4, parts[1] == PackWriter.hostName, let pid = Int32(parts[2]), !LocalProcess(pid: pid, started: nil).isRunning {
                unlink(store.packsDirectory + "/" + name)
                removed.append(name)
            }
        }
        return removed
    }

    public func run(full: Bool) throws -> Report {
        var report = Report()
        report.removedTemporaryFiles = Fsck.removeStaleTemporaries(store)
        let indexed = Dictionary(uniqueKeysWithValues: try store.index.packs().map { ($0.name, $0) })
        var packRecords: [String: [PackFormat.IndexRecord]] = [:]
        for name in try FileIO.listDirectory(store.packsDirectory).sorted() where name.hasSuffix(".pack") && !name.hasPrefix("tmp-") {
            let n = String(name.dropLast(5))
            report.packs += 1
            do {
                let (size, records) = try Store.readPackIndex(path: store.packFiles.path(n), name: n)
                packRecords[n] = records
                report.objects += records.count
                if indexed[n] == nil { report.problems.append(Problem(pack: n, message: "pack is not in the index (run `trove fsck --rebuild-index`)")) }
                if let row = indexed[n], row.size != size {
                    report.problems.append(Problem(pack: n, message: "pack size \(size) differs from the indexed \(row.size)"))
                }
            } catch let e as StoreError {
                report.problems.append(Problem(pack: n, message: e.message))
            }
        }
        for name in indexed.keys where packRecords[name] == nil && !FileIO.exists(store.packFiles.path(name)) {
            report.problems.append(Problem(pack: name, message: "the index names a pack that is missing"))
        }

        if full {
            let total = packRecords.values.reduce(UInt64(0)) { $0 + $1.reduce(0) { $0 + UInt64($1.rawLength) } }
            progress?.begin(total: total, label: "verifying")
            let decompressor = Decompressor()
            for (name, records) in packRecords.sorted(by: { $0.key < $1.key }) {
                for rec in records.sorted(by: { $0.offset < $1.offset }) {
                    do {
                        let header = try FileIO.pread(try store.packFiles.fd(name), count: PackFormat.entryHeaderSize, offset: rec.offset,
                                                      path: store.packFiles.path(name))
                        let h = try decoding("pack \(name)") { try PackFormat.parseEntryHeader(header, at: rec.offset, pack: name) }
                        guard h.id == rec.id, h.type == rec.type, h.codec == rec.codec, h.rawLength == rec.rawLength,
                              h.storedLength == rec.storedLength else {
                            throw StoreError(.integrity, "entry header does not match the pack index")
                        }
                        _ = try store.readVerified(Store.Located(files: store.packFiles, location: .init(pack: name, record: rec)),
                                                   decompressor: decompressor)
                    } catch let e as StoreError {
                        report.problems.append(Problem(object: rec.id, pack: name, message: "corrupt object: \(e.message)"))
                    }
                    report.checkedBytes += UInt64(rec.rawLength)
                    progress?.advance(UInt64(rec.rawLength))
                }
            }
            progress?.end()
        }

        // Reachability.
        let refs = Refs(root: store.root)
        var roots: [(String, ObjectID)] = try refs.list().map { ("ref \($0.name)", $0.id) }
        // Reflog entries are not required: gc may drop them (`gc --grace 0`).
        if case .detached(let id) = try refs.head() { roots.append(("HEAD", id)) }
        var seen = Set<ObjectID>()
        var blobs: [ObjectID: String] = [:]
        var stack = roots
        while let (from, id) = stack.popLast() {
            guard seen.insert(id).inserted else { continue }
            do {
                let c = try store.commit(id)
                report.reachableCommits += 1
                for p in c.parents { stack.append(("parent of \(id.short())", p)) }
                try walkTree(c.tree, path: "", seen: &seen, blobs: &blobs)
            } catch let e as StoreError {
                report.problems.append(Problem(object: id, message: "\(from): \(e.message)"))
            }
        }
        for (_, e) in try store.index.stage() where blobs[e.id] == nil { blobs[e.id] = "staged " + e.path }
        // A store with remotes fetches chunks on demand: their absence is not damage.
        // So does a store inside git (its remote follows git's): a clone fetches what it checks out.
        let lazy = store.config.values.keys.contains { $0.hasPrefix("remote.") && $0.hasSuffix(".url") }
            || store.config["git.enabled"] == "true"
        for (blob, path) in blobs.sorted(by: { $0.key < $1.key }) {
            do {
                if lazy, try store.type(of: blob) == nil {
                    report.notFetched += 1
                    continue
                }
                let chunks = try store.chunks(ofBlob: blob)
                let found = try store.locateMany(chunks.map(\.id))
                for (c, l) in zip(chunks, found) where l == nil {
                    if lazy { report.notFetched += 1; continue }
                    report.problems.append(Problem(object: c.id, message: "missing chunk of \(path)"))
                }
                for (c, l) in zip(chunks, found) {
                    if let l, UInt64(l.location.record.rawLength) != c.length {
                        report.problems.append(Problem(object: c.id, pack: l.location.pack, message: "\(path): chunk length differs from the manifest"))
                    }
                }
                if full && found.allSatisfy({ $0 != nil }) && chunks.count > 1
                    && zip(chunks, found).allSatisfy({ UInt64($1!.location.record.rawLength) == $0.length }) {
                    let h = SHA256.Hasher()
                    let reader = Materializer.ChunkReader()
                    let buf = UnsafeMutableRawPointer.allocate(byteCount: Int(chunks.map(\.length).max() ?? 1), alignment: 64)
                    defer { buf.deallocate() }
                    for l in found {
                        try reader.read(l!, into: buf)
                        h.update(buf, count: Int(l!.location.record.rawLength))
                    }
                    if h.finish() != blob {
                        report.problems.append(Problem(object: blob, message: "\(path): the chunks do not rebuild the file (whole-file hash differs)"))
                    }
                }
            } catch let e as StoreError {
                report.problems.append(Problem(object: blob, message: "\(path): \(e.message)"))
            }
        }
        return report
    }

    private func walkTree(_ id: ObjectID, path: String, seen: inout Set<ObjectID>, blobs: inout [ObjectID: String]) throws {
        guard seen.insert(id).inserted else { return }
        for e in try store.tree(id).entries {
            let p = path.isEmpty ? e.name : path + "/" + e.name
            if e.kind == .directory { try walkTree(e.id, path: p, seen: &seen, blobs: &blobs) } else if blobs[e.id] == nil { blobs[e.id] = p }
        }
    }
}
