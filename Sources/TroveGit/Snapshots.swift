import Glibc
import TroveCore
import TroveStore

/// Trove snapshot commits for git commits (Docs/git.md §Snapshots).
///
/// The snapshot of git commit G has the tracked files (the pointers) of G's tree as its tree,
/// the snapshots of G's parents as parents, G's author, time and message, kind `snapshot`
/// and `git` = G. Nothing else goes in, so every clone computes the same snapshot ids for the
/// same history: pushing a branch's snapshot anchors every artifact version its history
/// references on the Trove remote, and fast-forwards there exactly when they do in git.
///
/// Made snapshots (and converted git trees) are remembered in `STORE/git/map/` (one small
/// file per git object id), so each git commit and tree is converted once.
public final class GitSnapshots {
    let repo: GitRepository
    let store: Store
    let mapDirectory: String
    /// Malformed pointers met while converting (path, why), reported by the caller.
    public private(set) var skipped: [(path: String, why: String)] = []

    public init(repo: GitRepository, store: Store) {
        self.repo = repo
        self.store = store
        mapDirectory = store.root + "/git/map"
    }

    func mapPath(_ id: GitOID) -> String {
        let h = id.hex
        return "\(mapDirectory)/\(h.prefix(2))/\(h.dropFirst(2))"
    }

    /// A remembered conversion: `(tree or commit id, size)`, or `(nil, 0)` for a git tree
    /// without tracked files.
    func remembered(_ id: GitOID) -> (ObjectID?, UInt64)? {
        guard let text = try? FileIO.readText(mapPath(id)) else { return nil }
        let parts = text.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        guard parts.count == 2, let size = UInt64(parts[1]) else { return nil }
        if parts[0] == "-" { return (nil, size) }
        guard let t = ObjectID(hex: parts[0]) else { return nil }
        return (t, size)
    }

    func remember(_ id: GitOID, _ value: ObjectID?, size: UInt64) throws {
        let path = mapPath(id)
        try FileIO.mkdirs(FileIO.dirname(path))
        try FileIO.atomicWrite(path, Array("\(value?.hex ?? "-") \(size)\n".utf8), durable: false)
    }

    /// The snapshot already made for `commit`, if any (and still in the store).
    public func existing(_ commit: GitOID, writer: ObjectWriter? = nil) -> ObjectID? {
        guard let (id, _) = remembered(commit), let id, (try? writer?.has(id) ?? store.has(id)) == true else { return nil }
        return id
    }

    /// The snapshot of `commit`, made (with those of its ancestors) when missing. Objects go
    /// through `writer`; the caller finishes it before the ids are used elsewhere.
    public func snapshot(of commit: GitOID, writer: ObjectWriter) throws -> ObjectID {
        if let s = existing(commit, writer: writer) { return s }
        // Parents first, without recursion: history can be long.
        var made: [GitOID: ObjectID] = [:]
        var stack: [(GitOID, Bool)] = [(commit, false)]
        while let (g, expanded) = stack.popLast() {
            if made[g] != nil { continue }
            if let s = existing(g, writer: writer) { made[g] = s; continue }
            let info = try repo.commit(g)
            if !expanded {
                stack.append((g, true))
                for p in info.parents where made[p] == nil { stack.append((p, false)) }
                continue
            }
            let (tree, _) = try convert(tree: info.tree, prefix: "", writer: writer)
            let parents = info.parents.compactMap { made[$0] }
            let treeID = try tree ?? writer.put(.tree, Tree.empty.encode())
            let c = Commit(tree: treeID, parents: parents,
                           author: info.author, time: info.time, timezoneOffset: info.offsetMinutes,
                           kind: .snapshot, gitCommit: g.hex, message: info.message)
            let id = try writer.put(.commit, c.encode())
            made[g] = id
            try remember(g, id, size: 0)
        }
        return made[commit]!
    }

    /// The Trove tree of a git tree's pointer files (nil when it has none), with total size.
    func convert(tree: GitOID, prefix: String, writer: ObjectWriter) throws -> (ObjectID?, UInt64) {
        if let r = remembered(tree), r.0.map({ (try? writer.has($0)) == true }) ?? true { return r }
        var entries: [Tree.Entry] = []
        for e in try repo.entries(ofTree: tree) {
            let path = prefix + e.name
            switch e.kind {
            case .tree:
                let (sub, size) = try convert(tree: e.id, prefix: path + "/", writer: writer)
                if let sub { entries.append(Tree.Entry(name: e.name, kind: .directory, id: sub, size: size)) }
            case .file, .executable:
                guard let bytes = try repo.smallBlob(e.id) else { continue }
                do {
                    guard let p = try LFSPointer.parse(bytes) else { continue }
                    try Tree.validate(name: e.name)
                    entries.append(Tree.Entry(name: e.name, kind: .file, executable: e.kind == .executable, id: p.oid, size: p.size))
                } catch let err as StoreError {
                    skipped.append((path, err.message))
                } catch let err as CoreError {
                    skipped.append((path, err.message))
                }
            case .other:
                continue
            }
        }
        var result: (ObjectID?, UInt64) = (nil, 0)
        if !entries.isEmpty {
            let t = try Tree(entries: entries)
            result = (try writer.put(.tree, t.encode()), t.size)
        }
        try remember(tree, result.0, size: result.1)
        return result
    }

    /// The tracked files (pointers) of a git commit: path → pointer.
    public func pointers(of commit: GitOID) throws -> [String: LFSPointer] {
        let info = try repo.commit(commit)
        var out: [String: LFSPointer] = [:]
        for f in try repo.files(ofTree: info.tree) {
            guard let bytes = try repo.smallBlob(f.blob), let p = try? LFSPointer.parse(bytes) else { continue }
            out[f.path] = p
        }
        return out
    }
}
