import TroveCore
import TroveProtocol
import TroveStore

/// Keeps a shared store (a daemon's project) in step with a peer, unattended: `pull` brings
/// the peer's refs and everything they reach (all history, chunks included); `push` sends
/// local refs the peer can fast-forward to. A ref that diverged is never overwritten: the
/// peer's value is kept as `remotes/NAME/REF` on this side, and the peer keeps its own.
public final class PeerMirror {
    public enum Direction: String, Sendable { case pull, push, both }

    public let name: String
    let local: SyncService
    let remote: Remote
    public let direction: Direction
    /// Most stored bytes per upload into the local store.
    public var uploadBytes = 64 << 20

    public init(name: String, local: SyncService, remote: Remote, direction: Direction) {
        self.name = name
        self.local = local
        self.remote = remote
        self.direction = direction
    }

    public struct Outcome: Sendable, Equatable {
        public var fastForwarded: [String] = []
        public var diverged: [String] = []
        public var pushed: [String] = []
        public var objects = 0
        public init() {}
    }

    /// One round in the configured direction(s).
    public func run() throws -> Outcome {
        var out = Outcome()
        if direction != .push { out = try pull() }
        if direction != .pull { out.pushed = try push() }
        return out
    }

    public func pull() throws -> Outcome {
        var out = Outcome()
        let store = local.store
        let (_, theirs) = try remote.hello()
        try store.refresh()
        let wants = try Array(Set(theirs.map(\.id))).filter { try store.type(of: $0) == nil }
        if !wants.isEmpty {
            let haves = try Array(Set(try store.refs.list().map(\.id))).filter { try store.has($0) }
            // Metadata first (the walk below reads it), then every chunk the new commits need.
            let upload = Uploader(service: local, limit: uploadBytes)
            for start in stride(from: 0, to: wants.count, by: SyncProtocol.maxBatchIDs) {
                try remote.metadata(wants: Array(wants[start..<min(wants.count, start + SyncProtocol.maxBatchIDs)]),
                                    haves: Array(haves.prefix(SyncProtocol.maxBatchIDs))) { try upload.add($0) }
            }
            try upload.finish()
            try store.refresh()
            let known = try Graph.ancestry(of: haves, in: store)
            var collector = ObjectCollector(source: store)
            for (id, commit) in try Graph.newCommits(from: wants, notIn: known, in: store) {
                try collector.add(commit: id, commit, chunksOf: .all)
            }
            let ids = collector.chunks.map(\.0)
            let missing = zip(ids, try store.contains(ids)).filter { !$0.1 }.map(\.0)
            let chunks = Uploader(service: local, limit: uploadBytes)
            for start in stride(from: 0, to: missing.count, by: 4096) {
                try remote.download(Array(missing[start..<min(missing.count, start + 4096)])) { try chunks.add($0) }
            }
            try chunks.finish()
            out.objects = upload.objects + chunks.objects
        }
        for ref in theirs where !ref.name.hasPrefix("remotes/") {
            // Complete before any ref here names it, tracking refs included.
            guard try local.firstMissingObject(reachableFrom: ref.id) == nil else {
                throw SyncError(.integrity, "\(remote.url) sent an incomplete history for \(ref.name)", hint: "run `trove fsck --full` on the peer")
            }
            let tracking = "remotes/\(name)/\(ref.name)"
            let old = try store.refs.read(tracking)
            if old != ref.id { try store.refs.update(tracking, from: old, to: ref.id, message: "mirror from \(remote.url)", force: true) }
            let mine = try store.refs.read(ref.name)
            if mine == ref.id { continue }
            if let mine, try !Graph.isAncestor(mine, of: ref.id, in: store) {
                out.diverged.append(ref.name)
                continue
            }
            try store.refs.update(ref.name, from: mine, to: ref.id, message: "mirror: fast-forward from \(remote.url)")
            out.fastForwarded.append(ref.name)
        }
        return out
    }

    /// Pushes every local ref (not `remotes/`) the peer lacks or can fast-forward to.
    public func push() throws -> [String] {
        let store = local.store
        let theirs = Dictionary(try remote.listRefs().map { ($0.name, $0.id) }, uniquingKeysWith: { a, _ in a })
        var specs: [RefSpec] = []
        for ref in try store.refs.list() where !ref.name.hasPrefix("remotes/") {
            guard let t = theirs[ref.name] else { specs.append(RefSpec(source: ref.name, destination: ref.name)); continue }
            if t != ref.id, try store.has(t), try Graph.isAncestor(t, of: ref.id, in: store) {
                specs.append(RefSpec(source: ref.name, destination: ref.name))
            }
        }
        guard !specs.isEmpty else { return [] }
        let pusher = Pusher(store: store, remote: remote, remoteName: nil)
        pusher.uploadBytes = uploadBytes
        return try pusher.push(specs).updated.map(\.name)
    }

    /// Feeds received objects into the local store in uploads of at most `limit` bytes.
    final class Uploader {
        let service: SyncService
        let limit: Int
        private var batch: [PackedObject] = []
        private var bytes = 0
        private(set) var objects = 0

        init(service: SyncService, limit: Int) {
            self.service = service
            self.limit = limit
        }

        func add(_ o: PackedObject) throws {
            if bytes + o.stored.count > limit { try finish() }
            batch.append(o)
            bytes += o.stored.count
        }

        func finish() throws {
            guard !batch.isEmpty else { return }
            let upload = try service.beginUpload()
            try upload.addAll(batch)
            objects += try upload.finish().stored
            batch = []
            bytes = 0
        }
    }
}
