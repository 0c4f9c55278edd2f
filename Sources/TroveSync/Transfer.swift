import Glibc
import Dispatch
import TroveCore
import TroveProtocol
import TroveStore

/// `SRC[:DST]`, with a leading `+` to allow a non-fast-forward. Names are refs without
/// `refs/` (`heads/main`, `tags/v1`, `runs/r1`); a bare name is a branch, or a tag when only
/// a tag has it.
public struct RefSpec: Equatable, Sendable {
    public var source: String
    public var destination: String
    public var force: Bool
    /// The commit to push when it is not a local ref's (git mode pushes the snapshot of a git
    /// commit); `source` then only names it in messages.
    public var id: ObjectID?

    public init(source: String, destination: String, force: Bool = false, id: ObjectID? = nil) {
        self.source = source
        self.destination = destination
        self.force = force
        self.id = id
    }

    public static func parse(_ text: String, refs: Refs) throws -> RefSpec {
        var t = Substring(text)
        let force = t.hasPrefix("+")
        if force { t = t.dropFirst() }
        let parts = t.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let src = try qualify(parts[0], refs: refs)
        let dst = parts.count > 1 ? try qualify(parts[1], refs: refs, like: src) : src
        return RefSpec(source: src, destination: dst, force: force)
    }

    static func qualify(_ name: String, refs: Refs, like other: String? = nil) throws -> String {
        var n = name.hasPrefix("refs/") ? String(name.dropFirst(5)) : name
        if !n.contains("/") {
            if let other, let slash = other.lastIndex(of: "/") { n = other[..<slash] + "/" + n }
            else if try refs.read("heads/\(n)") == nil, try refs.read("tags/\(n)") != nil { n = "tags/" + n }
            else { n = "heads/" + n }
        }
        try Refs.validate(n)
        return n
    }
}

/// Byte counts of a transfer.
public struct TransferStats: Sendable {
    public var objects = 0
    public var bytes: UInt64 = 0
    public var uploads = 0
    public init() {}
}

/// The objects a set of commits needs that a peer may lack: each new commit, its tree's
/// difference from its first parent's tree, and for every changed file its manifest,
/// segments and chunks. `include` limits which files' chunks are listed.
struct ObjectCollector {
    let source: ObjectSource
    var metadata: [ObjectID] = []
    var chunks: [(ObjectID, UInt64)] = []
    private var seen = Set<ObjectID>()

    init(source: ObjectSource) { self.source = source }

    mutating func add(commit id: ObjectID, _ commit: Commit, chunksOf include: PathFilter?) throws {
        if seen.insert(id).inserted { metadata.append(id) }
        let base = try commit.parents.first.flatMap { try source.type(of: $0) == .commit ? try source.commit($0).tree : nil }
        try addTree(commit.tree, from: base, chunksOf: include)
    }

    mutating func addTree(_ tree: ObjectID, from base: ObjectID?, chunksOf include: PathFilter?) throws {
        var found: [Graph.Item] = []
        try Graph.visitDelta(tree, from: base, in: source) { found.append($0) }
        // One batched look-up tells manifests (type blob) from one-chunk files.
        let blobIDs = found.compactMap { item -> ObjectID? in if case let .blob(b, _, _) = item { return b } else { return nil } }
        let types = Dictionary(zip(blobIDs, try source.locateMany(blobIDs).map { $0?.record.type }), uniquingKeysWith: { a, _ in a })
        for item in found {
            switch item {
            case .tree(let t):
                if seen.insert(t).inserted { metadata.append(t) }
            case let .blob(b, path, size):
                // A file of one chunk has no manifest: its blob id is the chunk's id.
                let manifest = types[b] == .blob
                if manifest {
                    for m in try source.manifestObjects(ofBlob: b) where seen.insert(m).inserted { metadata.append(m) }
                }
                guard let include, include.includes(path) else { continue }
                let parts = manifest ? try source.chunks(ofBlob: b) : [ChunkRef(id: b, length: size)]
                for c in parts where seen.insert(c.id).inserted { chunks.append((c.id, c.length)) }
            }
        }
    }
}

/// Sends local commits and everything they need to a remote, then moves the remote's refs.
public final class Pusher {
    let store: RefStore
    let remote: Remote
    let remoteName: String?
    public var progress: ProgressSink?
    /// Most stored bytes in one upload: a push interrupted at any point re-sends at most this.
    public var uploadBytes = 64 << 20

    public init(store: RefStore, remote: Remote, remoteName: String?) {
        self.store = store
        self.remote = remote
        self.remoteName = remoteName
    }

    public struct Result: Sendable {
        public var updated: [RefUpdate] = []
        public var upToDate: [String] = []
        public var sent = TransferStats()
    }

    public func push(_ specs: [RefSpec]) throws -> Result {
        let (info, remoteRefs) = try remote.hello()
        if info.chunker != store.parameters {
            // Objects are objects: a push works, but chunks made with other settings do not dedup there.
            fputs("warning: \(remote.url) chunks with \(info.chunker), this store with \(store.parameters): new data will not deduplicate against it\n", stderr)
        }
        let theirs = Dictionary(remoteRefs.map { ($0.name, $0.id) }, uniquingKeysWith: { a, _ in a })
        var result = Result()
        var updates: [RefUpdate] = []
        for spec in specs {
            guard let new = try spec.id ?? store.refs.read(spec.source) else {
                throw SyncError(.notFound, "no local ref \(spec.source) to push", hint: "see `trove branch` and `trove tag` for what exists")
            }
            let old = theirs[spec.destination]
            if old == new { result.upToDate.append(spec.destination); continue }
            if let old, !spec.force {
                guard try store.has(old), try Graph.isAncestor(old, of: new, in: store) else {
                    throw SyncError(.conflict, "\(remote.url) \(spec.destination) is at \(old.short()), which \(spec.source) (\(new.short())) does not contain (non-fast-forward)",
                                    hint: "fetch and merge first (`trove pull`), or push with --force to overwrite it")
                }
            }
            updates.append(RefUpdate(name: spec.destination, old: old, new: new, force: spec.force))
        }
        if !updates.isEmpty {
            result.sent = try sendObjects(for: updates.compactMap(\.new), theirTips: Array(theirs.values), server: info)
            let results = try remote.updateRefs(updates)
            guard results.map(\.name) == updates.map(\.name) else {
                throw SyncError(.transport, "\(remote.url) answered the ref update for \(results.map(\.name)) instead of \(updates.map(\.name))",
                                hint: "the remote did not confirm the push; fetch to see where its refs are")
            }
            let refused = results.filter { $0.status != .ok }
            if !refused.isEmpty {
                let lines = refused.map { "  \($0.name): \($0.message)" }.joined(separator: "\n")
                let code: SyncError.Code = refused.contains { $0.status == .missingObjects } ? .integrity
                    : refused.contains { $0.status == .invalidName } ? .invalidInput : .conflict
                throw SyncError(code, "\(remote.url) refused the push:\n\(lines)",
                                hint: code == .conflict ? "fetch, merge and push again (or --force)" : nil)
            }
            result.updated = updates
        }
        if let remoteName {
            for u in updates { try store.refs.update("remotes/\(remoteName)/\(u.name)", from: try store.refs.read("remotes/\(remoteName)/\(u.name)"), to: u.new, message: "push", force: true) }
        }
        return result
    }

    /// Uploads what the remote lacks among the objects `tips` need, in uploads of at most
    /// `uploadBytes`: chunks first, commits last.
    func sendObjects(for tips: [ObjectID], theirTips: [ObjectID], server: ServerInfo) throws -> TransferStats {
        // What the server accepts bounds what we send at once.
        let uploadLimit = max(1, min(uploadBytes, server.maxUploadBytes))
        let batchIDs = max(1, min(SyncProtocol.maxBatchIDs, server.maxBatchIDs))
        let known = try Graph.ancestry(of: theirTips.filter { try store.has($0) }, in: store)
        var collector = ObjectCollector(source: store)
        for (id, commit) in try Graph.newCommits(from: tips, notIn: known, in: store) {
            try collector.add(commit: id, commit, chunksOf: .all)
        }
        // Metadata goes children-first into `collector.metadata`; send it parents-first.
        let candidates = collector.chunks.map(\.0) + collector.metadata.reversed()
        var wanted: [ObjectID] = []
        for start in stride(from: 0, to: candidates.count, by: batchIDs) {
            let batch = Array(candidates[start..<min(candidates.count, start + batchIDs)])
            for (id, lacks) in zip(batch, try remote.missing(batch)) where lacks { wanted.append(id) }
        }
        var stats = TransferStats()
        let locations = try store.locateMany(wanted)
        let total = locations.reduce(UInt64(0)) { $0 + UInt64($1?.record.storedLength ?? 0) }
        progress?.begin(total: total, label: "pushing")
        defer { progress?.end() }
        // Uploads overlap (reading and sending the next while the remote verifies and writes
        // one) where the transport allows; `uploadLimit` bounds the bytes in flight together,
        // so that an interrupted push re-sends at most that much.
        let lanes = max(1, remote.maxConcurrentUploads)
        let perUpload = max(1, uploadLimit / lanes)
        let lanesFree = DispatchSemaphore(value: lanes)
        let running = DispatchGroup()
        let failure = Mutex()
        var uploadError: Error?
        var batch: [PackedObject] = []
        var batchBytes = 0
        let remote = self.remote, progress = self.progress
        // Every upload started has ended before this function returns, whatever happens.
        defer { running.wait() }
        func flush() throws {
            if let e = failure.withLock({ uploadError }) { throw e }
            guard !batch.isEmpty else { return }
            let (objects, bytes) = (batch, batchBytes)
            batch = []
            batchBytes = 0
            stats.uploads += 1
            lanesFree.wait()
            if let e = failure.withLock({ uploadError }) {
                lanesFree.signal()
                throw e
            }
            running.enter()
            onOwnThread {
                defer { lanesFree.signal(); running.leave() }
                do {
                    _ = try remote.upload(objects)
                    progress?.advance(UInt64(bytes))
                } catch {
                    failure.withLock { if uploadError == nil { uploadError = error } }
                }
            }
        }
        var found: [ObjectLocation] = []
        for (id, l) in zip(wanted, locations) {
            guard let l else { throw SyncError(.notFound, "object \(id.hex) is not in the local store", hint: "run `trove fsck`") }
            found.append(l)
        }
        // Pack order, large direct reads (in the order asked, a push of C's 20,000 files read in
        // small pieces: 1.85–1.95 → 2.21–2.39 s); the receiver verifies every object.
        try store.forEachStored(found) { i, stored in
            if batchBytes + stored.count > perUpload { try flush() }
            let r = found[i].record
            batch.append(PackedObject(type: r.type, codec: r.codec, rawLength: Int(r.rawLength), id: r.id, stored: Array(stored)))
            batchBytes += stored.count
            stats.objects += 1
            stats.bytes += UInt64(stored.count)
        }
        try flush()
        running.wait()
        if let e = failure.withLock({ uploadError }) { throw e }
        return stats
    }
}

/// Brings a remote's refs and the objects they need into the local store.
public final class Fetcher {
    let store: Store
    let remote: Remote
    /// Other peers that may hold chunks; a fetch draws each chunk from whichever has it.
    let extraPeers: [Remote]
    let remoteName: String?
    public var progress: ProgressSink?
    /// Which files' chunks to fetch (metadata is always fetched whole): the store's sparse
    /// patterns unless set.
    public var filter: PathFilter
    /// Metadata only: no chunks.
    public var metadataOnly = false
    /// Chunks only for the remote HEAD's branch (what a clone checks out).
    public var chunksForHeadOnly = false
    /// Called with the commits whose chunks are about to be fetched (their metadata is here).
    public var beforeChunks: ((_ commits: [ObjectID]) throws -> Void)?
    /// Called with each group of chunks once verified and stored (a clone writes its files from them).
    public var received: (([PackedObject]) throws -> Void)?

    public init(store: Store, remote: Remote, remoteName: String?, extraPeers: [Remote] = []) {
        self.store = store
        self.remote = remote
        self.remoteName = remoteName
        self.extraPeers = extraPeers
        filter = (try? PathFilter.load(store: store.root)) ?? .all
    }

    public struct Result: Sendable {
        /// Remote ref name → (old tracking value, new value).
        public var refs: [(name: String, old: ObjectID?, new: ObjectID)] = []
        public var head: String?
        public var metadata = TransferStats()
        public var chunks = TransferStats()
    }

    /// Fetches `names` (remote ref names; nil: all of them).
    public func fetch(_ names: [String]? = nil) throws -> Result {
        let (info, remoteRefs) = try remote.hello()
        var result = Result()
        result.head = info.head
        var selected = remoteRefs
        if let names {
            selected = try names.map { n in
                guard let r = remoteRefs.first(where: { $0.name == n }) ?? remoteRefs.first(where: { $0.name == "heads/\(n)" || $0.name == "tags/\(n)" }) else {
                    throw SyncError(.notFound, "\(remote.url) has no ref \(n)", hint: "`trove remote show` lists what it has")
                }
                return r
            }
        }
        let writer = ObjectWriter(store: store)
        // A tip is wanted unless a local ref already reaches it: an earlier fetch that was
        // killed may have stored the tip commit (its pack finished) but not its history.
        let complete = try Graph.ancestry(of: try store.refs.list().map(\.id), in: store)
        let wants = Array(Set(selected.map(\.id))).filter { !complete.contains($0) }
        if !wants.isEmpty {
            let haves = try Array(Set(try store.refs.list().map(\.id))).filter { try store.has($0) }.suffix(SyncProtocol.maxBatchIDs)
            let perRequest = max(1, min(SyncProtocol.maxBatchIDs, info.maxBatchIDs))
            for start in stride(from: 0, to: wants.count, by: perRequest) {
                try remote.metadata(wants: Array(wants[start..<min(wants.count, start + perRequest)]), haves: Array(haves)) { o in
                    if try writer.putReceived(o) {
                        result.metadata.objects += 1
                        result.metadata.bytes += UInt64(o.stored.count)
                    }
                }
            }
            try writer.finish()
            for w in wants where try store.type(of: w) != .commit {
                throw SyncError(.integrity, "\(remote.url) did not send commit \(w.hex) it advertised", hint: "try again; run `trove fsck --full` on the remote")
            }
        }
        if !metadataOnly {
            let tips = chunksForHeadOnly ? selected.filter { $0.name == info.head } : selected
            try beforeChunks?(tips.map(\.id))
            result.chunks = try fetchChunks(forCommits: tips.map(\.id), writer: writer)
        }
        if let remoteName {
            for r in selected {
                let tracking = "remotes/\(remoteName)/\(r.name)"
                let old = try store.refs.read(tracking)
                if old != r.id { try store.refs.update(tracking, from: old, to: r.id, message: "fetch from \(remote.url)", force: true) }
                result.refs.append((r.name, old, r.id))
            }
        } else {
            result.refs = selected.map { ($0.name, nil, $0.id) }
        }
        return result
    }

    /// Fetches the chunks the trees of `commits` need (within `filter`) that the store lacks.
    public func fetchChunks(forCommits commits: [ObjectID], writer: ObjectWriter? = nil) throws -> TransferStats {
        try fetchChunks(try Fetcher.missingChunks(in: store, commits: commits, filter: filter), writer: writer ?? ObjectWriter(store: store))
    }

    /// The chunks (id, length) that the files of `commits` (within `filter`) need and the
    /// store lacks: what a checkout would fail on.
    public static func missingChunks(in store: Store, commits: [ObjectID], filter: PathFilter = .all) throws -> [(ObjectID, UInt64)] {
        var collector = ObjectCollector(source: store)
        for c in Set(commits) { try collector.addTree(try store.commit(c).tree, from: nil, chunksOf: filter) }
        let present = try store.contains(collector.chunks.map(\.0))
        return zip(collector.chunks, present).filter { !$0.1 }.map(\.0)
    }

    /// Fetches whole files by blob id (git mode: the content of LFS pointers): their manifests
    /// and segments, then the chunks the store lacks. Returns the blobs the remote does not
    /// have (nothing fetched for those).
    public func fetchBlobs(_ blobs: [ObjectID]) throws -> (stats: TransferStats, absent: [ObjectID]) {
        let writer = ObjectWriter(store: store)
        let ids = Array(Set(blobs))
        var metadata = TransferStats()
        func download(_ wanted: [ObjectID]) throws {
            for start in stride(from: 0, to: wanted.count, by: SyncProtocol.maxBatchIDs) {
                let batch = Array(wanted[start..<min(wanted.count, start + SyncProtocol.maxBatchIDs)])
                var group: [PackedObject] = []
                try remote.download(batch) { group.append($0) }
                let (n, bytes) = try writer.putReceived(group)
                metadata.objects += n
                metadata.bytes += bytes
            }
            try writer.finish()
        }
        // The blob objects: a manifest, or the one chunk of a small file.
        try download(zip(ids, try store.contains(ids)).filter { !$0.1 }.map(\.0))
        let have = try store.contains(ids)
        let absent = zip(ids, have).filter { !$0.1 }.map(\.0)
        let found = zip(ids, have).filter { $0.1 }.map(\.0)
        // Segments of large files' manifests.
        var segments: [ObjectID] = []
        for id in found { segments += try store.manifestObjects(ofBlob: id).dropFirst() }
        try download(zip(segments, try store.contains(segments)).filter { !$0.1 }.map(\.0))
        var needed: [(ObjectID, UInt64)] = []
        var seen = Set<ObjectID>()
        for id in found {
            for c in try store.chunks(ofBlob: id) where seen.insert(c.id).inserted { needed.append((c.id, c.length)) }
        }
        let present = try store.contains(needed.map(\.0))
        var stats = try fetchChunks(zip(needed, present).filter { !$0.1 }.map(\.0), writer: writer)
        stats.objects += metadata.objects
        stats.bytes += metadata.bytes
        return (stats, absent)
    }

    /// Received groups (about 4 MiB each) that may wait to be verified and stored.
    static let groupsQueued = 2

    public func fetchChunks(_ needed: [(ObjectID, UInt64)], writer: ObjectWriter) throws -> TransferStats {
        guard !needed.isEmpty else { return TransferStats() }
        let stats = Locked(TransferStats())
        progress?.begin(total: needed.reduce(0) { $0 + $1.1 }, label: "fetching")
        defer { progress?.end() }
        // Which peer gets which chunk: spread by bytes over the peers that have it.
        let peers = [remote] + extraPeers
        var plan = [[ObjectID]](repeating: [], count: peers.count)
        if peers.count == 1 {
            plan[0] = needed.map(\.0)
        } else {
            var has = [[Bool]](repeating: [], count: peers.count)
            for (k, p) in peers.enumerated() {
                for start in stride(from: 0, to: needed.count, by: SyncProtocol.maxBatchIDs) {
                    let batch = needed[start..<min(needed.count, start + SyncProtocol.maxBatchIDs)].map(\.0)
                    has[k] += try p.missing(batch).map { !$0 }
                }
            }
            var load = [UInt64](repeating: 0, count: peers.count)
            for (i, (id, len)) in needed.enumerated() {
                guard let k = peers.indices.filter({ has[$0][i] }).min(by: { load[$0] < load[$1] }) else {
                    throw SyncError(.notFound, "no peer has chunk \(id.hex)", hint: "the remotes are incomplete; run `trove fsck --full` on them")
                }
                plan[k].append(id)
                load[k] += len
            }
        }
        let failure = Locked<Error?>(nil)
        onOwnThreads(peers.count) { k in
            guard !plan[k].isEmpty else { return }
            // Objects are verified in groups of about 4 MiB on all cores, then written, on a
            // queue of their own and in order, while the next group is received (at most
            // `Fetcher.groupsQueued` wait: memory stays bounded).
            let storing = DispatchQueue(label: "trove.fetch.store")
            let slots = DispatchSemaphore(value: Fetcher.groupsQueued)
            let storeError = Locked<Error?>(nil)
            var group: [PackedObject] = []
            var groupBytes = 0
            func store() throws {
                if let e = storeError.get() { throw e }
                let received = group
                group = []
                groupBytes = 0
                slots.wait()
                storing.async {
                    defer { slots.signal() }
                    guard storeError.get() == nil else { return }
                    do {
                        let (n, bytes) = try writer.putReceived(received)
                        try self.received?(received)
                        stats.update { $0.objects += n; $0.bytes += bytes }
                        self.progress?.advance(received.reduce(0) { $0 + UInt64($1.rawLength) })
                    } catch {
                        storeError.set(error)
                    }
                }
            }
            var receiveError: Error?
            do {
                for start in stride(from: 0, to: plan[k].count, by: 4096) {
                    let batch = Array(plan[k][start..<min(plan[k].count, start + 4096)])
                    try peers[k].download(batch) { o in
                        group.append(o)
                        groupBytes += o.stored.count
                        if groupBytes >= 4 << 20 { try store() }
                    }
                }
                try store()
            } catch {
                receiveError = error
            }
            // What was queued is stored (or refused) before this peer is done; a group's own
            // error comes before the receiving error it caused.
            storing.sync {}
            if let e = storeError.get() ?? receiveError { failure.update { if $0 == nil { $0 = e } } }
        }
        // What arrived is kept (and indexed) even when a peer failed: the next fetch asks only for the rest.
        try writer.finish()
        if let e = failure.get() { throw e }
        let still = try store.contains(needed.map(\.0)).filter { !$0 }.count
        if still > 0 {
            throw SyncError(.notFound, "\(remote.url): \(still) chunk(s) were not sent", hint: "the remote is incomplete; run `trove fsck --full` there")
        }
        return stats.get()
    }
}
