import Glibc
import TroveCore

extension ObjectSource {
    /// Commits reachable from `start`, newest first (by time, then id), up to `limit`.
    public func log(from start: ObjectID, limit: Int? = nil, firstParent: Bool = false) throws -> [(id: ObjectID, commit: Commit)] {
        var out: [(ObjectID, Commit)] = []
        var seen = Set<ObjectID>()
        var frontier: [(ObjectID, Commit)] = [(start, try commit(start))]
        seen.insert(start)
        while !frontier.isEmpty {
            if let limit, out.count >= limit { break }
            frontier.sort { $0.1.time != $1.1.time ? $0.1.time < $1.1.time : $0.0 < $1.0 }
            let (id, c) = frontier.removeLast()
            out.append((id, c))
            for p in (firstParent ? Array(c.parents.prefix(1)) : c.parents) where seen.insert(p).inserted {
                frontier.append((p, try commit(p)))
            }
        }
        return out
    }

}

/// Read-only views of history: diff, disk usage.
extension Store {
    public struct FileChange: Sendable {
        public enum Kind: String, Sendable { case added, removed, changed }
        public var path: String
        public var kind: Kind
        public var oldSize: UInt64?
        public var newSize: UInt64?
        public var oldID: ObjectID?
        public var newID: ObjectID?
        /// Bytes of the new version found in chunks of the old version.
        public var reusedBytes: UInt64 = 0
        public var reusedShare: Double? {
            guard kind == .changed, let n = newSize, n > 0 else { return nil }
            return Double(reusedBytes) / Double(n)
        }
    }

    /// Per-file differences between two file maps; `chunksOf` gives a side's chunk list.
    public func diff(old: [String: Tree.Entry], new: [String: Tree.Entry],
                     chunksOf: (ObjectID) throws -> [ChunkRef]) throws -> [FileChange] {
        var out: [FileChange] = []
        for (path, n) in new {
            if let o = old[path] {
                guard o.id != n.id || o.executable != n.executable || o.kind != n.kind else { continue }
                var change = FileChange(path: path, kind: .changed, oldSize: o.size, newSize: n.size, oldID: o.id, newID: n.id)
                if o.id != n.id, o.kind == .file, n.kind == .file {
                    let before = Set(try chunksOf(o.id).map(\.id))
                    change.reusedBytes = try chunksOf(n.id).filter { before.contains($0.id) }.reduce(0) { $0 + $1.length }
                } else if o.id == n.id {
                    change.reusedBytes = n.size
                }
                out.append(change)
            } else {
                out.append(FileChange(path: path, kind: .added, newSize: n.size, newID: n.id))
            }
        }
        for (path, o) in old where new[path] == nil {
            out.append(FileChange(path: path, kind: .removed, oldSize: o.size, oldID: o.id))
        }
        return out.sorted { $0.path < $1.path }
    }

    public struct Usage: Sendable {
        /// Sum over every commit reachable from refs of the bytes in its tree: what storing
        /// each version whole would take.
        public var logicalBytes: UInt64 = 0
        /// Distinct file contents reachable from refs.
        public var uniqueBlobBytes: UInt64 = 0
        /// Bytes of all pack files.
        public var storedBytes: UInt64 = 0
        public var commits = 0
        public var packs = 0
        public var objects: [ObjectType: (count: Int, raw: UInt64, stored: UInt64)] = [:]
        public var dedupRatio: Double { storedBytes == 0 ? 0 : Double(logicalBytes) / Double(storedBytes) }
    }

    public func usage() throws -> Usage {
        var u = Usage()
        let packs = try index.packs()
        u.packs = packs.count
        u.storedBytes = packs.reduce(0) { $0 + $1.size }
        u.objects = try index.objectCounts()
        let refs = Refs(root: root)
        var stack = try refs.list().map(\.id)
        if let h = try refs.headCommit() { stack.append(h) }
        var seen = Set<ObjectID>()
        var blobSizes: [ObjectID: UInt64] = [:]
        var treeFiles: [ObjectID: [(ObjectID, UInt64)]] = [:]
        func files(_ tree: ObjectID) throws -> [(ObjectID, UInt64)] {
            if let f = treeFiles[tree] { return f }
            var out: [(ObjectID, UInt64)] = []
            for e in try self.tree(tree).entries {
                if e.kind == .directory { out.append(contentsOf: try files(e.id)) } else { out.append((e.id, e.size)) }
            }
            treeFiles[tree] = out
            return out
        }
        while let id = stack.popLast() {
            guard seen.insert(id).inserted, try has(id) else { continue }
            let c = try commit(id)
            u.commits += 1
            stack.append(contentsOf: c.parents)
            for (b, s) in try files(c.tree) {
                u.logicalBytes += s
                blobSizes[b] = s
            }
        }
        u.uniqueBlobBytes = blobSizes.values.reduce(0, +)
        return u
    }
}

extension Ingester {
    /// Chunks and hashes a file without storing anything (for diffs against the working tree).
    public static func chunkList(path: String, parameters: ChunkerParameters) throws -> (ObjectID, [ChunkRef]) {
        let fd = try FileIO.open(path, O_RDONLY)
        defer { close(fd) }
        let chunker = StreamingChunker(parameters: parameters)
        let whole = SHA256.Hasher()
        var chunks: [ChunkRef] = []
        let size = 1 << 20
        let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        defer { buf.deallocate() }
        let emit: (UnsafeRawBufferPointer) -> Void = { c in
            chunks.append(ChunkRef(id: SHA256.hash(c), length: UInt64(c.count)))
        }
        while true {
            let n = try FileIO.readUpTo(fd, buf, size, path: path)
            let slice = UnsafeRawBufferPointer(start: buf, count: n)
            whole.update(slice)
            chunker.feed(slice, emit: emit)
            if n < size { break }
        }
        chunker.finish(emit: emit)
        if chunks.isEmpty { chunks = [ChunkRef(id: SHA256.hash([]), length: 0)] }
        return (whole.finish(), chunks)
    }
}
