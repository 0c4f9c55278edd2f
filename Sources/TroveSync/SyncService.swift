import TroveCore
import TroveProtocol
import TroveStore

/// The serving side of the protocol for one store: what `serve-stdio`, the daemon and a path
/// remote run. It holds no state between requests besides the store's pack table, so any
/// number of services may serve one store (and the store's own commands may run meanwhile).
public final class SyncService: @unchecked Sendable {
    public let store: SharedStore
    public let agent: String
    public var maxUploadBytes = SyncProtocol.defaultMaxUploadBytes

    public init(store: SharedStore, agent: String = "trove/\(TroveVersion.string)") {
        self.store = store
        self.agent = agent
    }

    public func hello() throws -> ServerInfo {
        var head: String?
        if case .branch(let b)? = try? store.refs.head() { head = b }
        return ServerInfo(agent: agent, chunker: store.parameters, maxUploadBytes: maxUploadBytes,
                          capabilities: ["missing", "upload", "download", "metadata", "atomic-refs"], head: head)
    }

    public func refs() throws -> [RefEntry] {
        let list = try store.refs.list().filter { !$0.name.hasPrefix("remotes/") }
        guard list.count <= SyncProtocol.maxRefs else {
            throw ProtocolError(.tooLarge, "this store has \(list.count) refs; the protocol lists at most \(SyncProtocol.maxRefs)", hint: "delete old refs (runs/*, tags) on the server")
        }
        return list.map { RefEntry(name: $0.name, id: $0.id) }
    }

    /// One flag per id: true when this store lacks it.
    public func missing(_ ids: [ObjectID]) throws -> [Bool] {
        try checkBatch(ids.count)
        try store.refresh()
        return try store.contains(ids).map { !$0 }
    }

    public func upload(_ next: () throws -> PackedObject?) throws -> SharedStore.Received {
        try store.receive(maxBytes: maxUploadBytes, next)
    }

    /// An upload fed object by object (the daemon parses a request body as it streams in).
    public func beginUpload() throws -> SharedStore.Upload {
        try SharedStore.Upload(store: store, maxBytes: maxUploadBytes)
    }

    /// Sends the stored form of each of `ids` this store has (the receiver verifies); ids it
    /// lacks are left out, and the receiver sees them missing.
    public func download(_ ids: [ObjectID], emit: (PackedObject) throws -> Void) throws {
        try checkBatch(ids.count)
        try store.refresh()
        // Large direct reads, no page-cache fill on the server, in the order asked (a clone asks in
        // file order and writes files as they come, Docs/protocol.md §download). Each id once:
        // repeating an id must not multiply what is read and held.
        var once = Set<ObjectID>()
        let found = try store.locateMany(ids.filter { once.insert($0).inserted }).compactMap { $0 }
        try store.forEachStored(found, askedOrder: true) { i, stored in
            let r = found[i].record
            try emit(PackedObject(type: r.type, codec: r.codec, rawLength: Int(r.rawLength), id: r.id, stored: Array(stored)))
        }
    }

    /// The metadata (commits, trees, blob manifests, segments) reachable from `wants` and not
    /// from `haves`: a commit's trees are sent as their difference from its first parent's.
    public func metadata(wants: [ObjectID], haves: [ObjectID], emit: (PackedObject) throws -> Void) throws {
        try checkBatch(wants.count)
        try checkBatch(haves.count)
        try store.refresh()
        try store.emitMetadata(wants: wants, haves: haves, emit: emit)
    }

    /// Applies ref moves atomically: each must match its expected old value, be a
    /// fast-forward unless forced, and reach only objects this store has.
    public func updateRefs(_ updates: [RefUpdate]) throws -> [RefUpdateResult] {
        guard updates.count <= SyncProtocol.maxRefs else { throw ProtocolError(.tooLarge, "\(updates.count) ref updates; the limit is \(SyncProtocol.maxRefs)") }
        try store.refresh()
        var results: [RefUpdateResult] = []
        var refused = false
        for u in updates {
            let r = try check(u)
            refused = refused || r.status != .ok
            results.append(r)
        }
        if refused {
            return results.map { $0.status == .ok ? RefUpdateResult(name: $0.name, status: .notApplied, message: "not applied: another ref of this update was refused") : $0 }
        }
        // A ref already at its new value is done: a client that lost the answer to an update
        // (a replica killed after committing it) repeats it and is told it worked.
        let moves = updates.enumerated().filter { results[$0.offset].message != SyncService.alreadyThere }.map(\.element)
        do {
            try store.refs.updateAll(moves.map { Refs.Update(ref: $0.name, expected: $0.old, new: $0.new, force: false) }, message: "push")
        } catch let e as StoreError where e.code == .conflict {
            let status: RefUpdateResult.Status = e.message.contains("being updated") ? .locked : .stale
            return updates.map { RefUpdateResult(name: $0.name, status: status, message: e.message) }
        }
        return updates.map { RefUpdateResult(name: $0.name, status: .ok) }
    }

    static let alreadyThere = "the ref is at this value already"

    private func check(_ u: RefUpdate) throws -> RefUpdateResult {
        do { try Refs.validate(u.name) } catch let e as StoreError {
            return RefUpdateResult(name: u.name, status: .invalidName, message: e.message)
        }
        if u.name.hasPrefix("remotes/") {
            return RefUpdateResult(name: u.name, status: .invalidName, message: "remotes/ refs belong to the store that fetched them; push to another namespace")
        }
        let current = try store.refs.read(u.name)
        if let new = u.new, current == new, u.old != new {
            return RefUpdateResult(name: u.name, status: .ok, message: SyncService.alreadyThere)
        }
        guard current == u.old else {
            return RefUpdateResult(name: u.name, status: .stale,
                                   message: "ref \(u.name) is at \(current?.short() ?? "nothing"), not \(u.old?.short() ?? "nothing"): fetch first")
        }
        guard let new = u.new else { return RefUpdateResult(name: u.name, status: .ok) }
        if !store.isBare, case .branch(let b)? = try? store.refs.head(), b == u.name {
            return RefUpdateResult(name: u.name, status: .invalidName,
                                   message: "\(u.name) is checked out in the store's working tree; pushing would leave its files stale (push to a bare store or another branch)")
        }
        if let missing = try firstMissingObject(reachableFrom: new) {
            return RefUpdateResult(name: u.name, status: .missingObjects, message: "\(u.name) would point at a history missing object \(missing.hex); upload it first")
        }
        if let old = current, !u.force, try !Graph.isAncestor(old, of: new, in: store) {
            return RefUpdateResult(name: u.name, status: .nonFastForward,
                                   message: "\(u.name): \(new.short()) does not contain \(old.short()) (non-fast-forward); fetch and merge, or push with --force")
        }
        return RefUpdateResult(name: u.name, status: .ok)
    }

    /// Walks the commits that no ref reaches yet and checks every object they need, chunks
    /// included; returns the first one this store lacks.
    func firstMissingObject(reachableFrom tip: ObjectID, complete given: Set<ObjectID>? = nil) throws -> ObjectID? {
        guard try store.type(of: tip) == .commit else { return tip }
        // What refs reach is complete by this check; `remotes/` refs are set by mirrors, which
        // run this check first, but are not trusted as proof.
        let complete = try given ?? Graph.ancestry(of: try store.refs.list().filter { !$0.name.hasPrefix("remotes/") }.map(\.id), in: store)
        return try store.firstMissingObject(reachableFrom: tip, complete: complete)
    }

    /// `trove fsck --store`: pack trailers, every ref's history complete (chunks included),
    /// and with `full` every object re-read and checked against its id. Problems as text.
    public func check(full: Bool) throws -> (packs: Int, objects: Int, problems: [String]) {
        var problems: [String] = []
        try store.refresh()
        // An archived store is checked in its archive (the packs folder is only a cache of it).
        let names = store.archived?.packNames ?? store.table.packNames
        for (pack, why) in (store.archived?.unreadable.get() ?? [:]).sorted(by: { $0.key < $1.key }) {
            problems.append("pack \(pack): \(why)")
        }
        var objects = 0
        let decompressor = Decompressor()
        for name in names {
            let records: [PackFormat.IndexRecord]
            do {
                records = try store.archived.map { try $0.records(of: name) } ?? Store.packIndex(root: store.root, name: name)
            } catch {
                problems.append("pack \(name): \(error)")
                continue
            }
            objects += records.count
            guard full else { continue }
            for r in records {
                guard let l = try store.locate(r.id) else { continue }
                do {
                    let stored = try store.storedBytes(l)
                    try PackedObject(type: r.type, codec: r.codec, rawLength: Int(r.rawLength), id: r.id, stored: stored).verify(decompressor)
                } catch {
                    problems.append("object \(r.id.hex) in pack \(name): \(error)")
                }
            }
        }
        for ref in try store.refs.list() {
            do {
                if let m = try firstMissingObject(reachableFrom: ref.id, complete: []) {
                    problems.append("ref \(ref.name) (\(ref.id.short())) reaches missing object \(m.hex)")
                }
            } catch {
                problems.append("ref \(ref.name): \(error)")
            }
        }
        return (names.count, objects, problems)
    }

    private func checkBatch(_ n: Int) throws {
        guard n <= SyncProtocol.maxBatchIDs else {
            throw ProtocolError(.tooLarge, "\(n) ids in one request; the limit is \(SyncProtocol.maxBatchIDs)", hint: "send them in batches")
        }
    }
}

extension ObjectSource {
    /// The metadata (commits, trees, blob manifests, segments) reachable from `wants` and not
    /// from `haves`: a commit's trees are sent as their difference from its first parent's.
    public func emitMetadata(wants: [ObjectID], haves: [ObjectID], emit: (PackedObject) throws -> Void) throws {
        for w in wants where try type(of: w) != .commit {
            throw ProtocolError(.notFound, "commit \(w.hex) is not in this store", hint: "list the refs again; it may have been removed")
        }
        let known = try Graph.ancestry(of: haves, in: self)
        var sent = Set<ObjectID>()
        func send(_ id: ObjectID) throws {
            guard sent.insert(id).inserted, let l = try locate(id) else { return }
            try emit(PackedObject(type: l.record.type, codec: l.record.codec, rawLength: Int(l.record.rawLength), id: id,
                                  stored: try storedBytes(l)))
        }
        for (id, commit) in try Graph.newCommits(from: wants, notIn: known, in: self) {
            try send(id)
            let base = try commit.parents.first.flatMap { try type(of: $0) == .commit ? try self.commit($0).tree : nil }
            try Graph.visitDelta(commit.tree, from: base, in: self) { item in
                switch item {
                case .tree(let t): try send(t)
                case .blob(let b, _, _): for m in try manifestObjects(ofBlob: b) { try send(m) }
                }
            }
        }
    }

    /// The first object the history from `tip` needs (chunks included) that this source lacks,
    /// walking only commits not in `complete` (what is known to be whole already).
    public func firstMissingObject(reachableFrom tip: ObjectID, complete: Set<ObjectID>) throws -> ObjectID? {
        guard try type(of: tip) == .commit else { return tip }
        var missing: ObjectID?
        do {
            var stack = [tip]
            var seen = complete
            while let c = stack.popLast() {
                guard seen.insert(c).inserted else { continue }
                guard try type(of: c) == .commit else { missing = c; throw WalkStop() }
                let commit = try self.commit(c)
                stack.append(contentsOf: commit.parents)
                guard try has(commit.tree) else { missing = commit.tree; throw WalkStop() }
                let base = try commit.parents.first.flatMap { try has($0) ? try self.commit($0).tree : nil }
                try Graph.visitDelta(commit.tree, from: base, in: self) { item in
                    guard case .blob(let b, _, _) = item else { return }
                    guard try has(b) else { missing = b; throw WalkStop() }
                    let chunks = try self.chunks(ofBlob: b).map(\.id)
                    for (i, present) in try contains(chunks).enumerated() where !present { missing = chunks[i]; throw WalkStop() }
                }
            }
        } catch is WalkStop {
        } catch let e as StoreError where e.code == .notFound {
            // A tree, manifest or segment the walk needed is absent.
            return missing ?? tip
        }
        return missing
    }
}

/// Ends a walk early (the first missing object is found).
private struct WalkStop: Error {}
