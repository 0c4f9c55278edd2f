import Glibc
import TroveCore
import TroveStore

/// `trove import-lfs` / `export-lfs` (Docs/git.md §Moving between Git LFS and Trove). Pointers
/// are the same bytes in both tools, so no commit changes: only where the content lives
/// (`.git/lfs/objects/aa/bb/OID` or the Trove store) and which filter `.gitattributes` names.
public enum LFSMigration {
    public struct Report: Sendable {
        public var objects = 0
        public var bytes: UInt64 = 0
        /// Objects whose bytes do not hash to their name (left where they are).
        public var corrupt: [String] = []
        /// Pointers whose content this side does not have.
        public var missing: [String] = []
        public var attributeLines = 0
        public var hooks: [String] = []
    }

    public static func objectsDirectory(_ repo: GitRepository) -> String { repo.commonDirectory + "/lfs/objects" }

    /// Stores every object of `.git/lfs/objects` in the Trove store, checking each against its
    /// name; switches `.gitattributes` from lfs to trove and takes over git-lfs's hooks.
    public static func importLFS(repo: GitRepository, store: Store, progress: ProgressSink?) throws -> Report {
        var report = Report()
        var paths: [(String, String)] = []
        let root = objectsDirectory(repo)
        for a in (try? FileIO.listDirectory(root)) ?? [] where a.count == 2 {
            for b in (try? FileIO.listDirectory(root + "/" + a)) ?? [] where b.count == 2 {
                for name in (try? FileIO.listDirectory(root + "/\(a)/\(b)")) ?? [] where name.count == 64 && ObjectID(hex: name) != nil {
                    paths.append((root + "/\(a)/\(b)/\(name)", name))
                }
            }
        }
        let writer = ObjectWriter(store: store)
        let ingester = Ingester(store: store, writer: writer)
        ingester.progress = progress
        progress?.begin(total: paths.reduce(0) { $0 + (FileIO.fileSize($1.0) ?? 0) }, label: "importing")
        for start in stride(from: 0, to: paths.count, by: 256) {
            let batch = Array(paths[start..<min(paths.count, start + 256)])
            let results = try ingester.ingest(paths: batch.map(\.0))
            for ((_, name), r) in zip(batch, results) {
                if r.blobID.hex != name { report.corrupt.append(name); continue }
                report.objects += 1
                report.bytes += r.size
            }
        }
        try writer.finish()
        progress?.end()
        if let top = repo.workTree { report.attributeLines = try GitAttributes.switchFilter(from: "lfs", to: "trove", top: top) }
        report.hooks = try takeOverLFSHooks(repo, store: store)
        try aliasLFSFilter(repo, store: store)
        return report
    }

    /// Writes the content of every pointer in the history of the local branches and tags
    /// into `.git/lfs/objects` (temp file, rename), switches `.gitattributes` back to lfs and
    /// puts back the git-lfs hooks import took over.
    public static func exportLFS(repo: GitRepository, store: Store, progress: ProgressSink?) throws -> Report {
        var report = Report()
        let snaps = GitSnapshots(repo: repo, store: store)
        var pointers: [ObjectID: LFSPointer] = [:]
        var seenTrees = Set<GitOID>()
        for c in try repo.reachableCommits(from: []) {
            let tree = try repo.commit(c).tree
            guard seenTrees.insert(tree).inserted else { continue }
            for (_, p) in try snaps.pointers(of: c) { pointers[p.oid] = p }
        }
        let root = objectsDirectory(repo)
        progress?.begin(total: pointers.values.reduce(0) { $0 + $1.size }, label: "exporting")
        defer { progress?.end() }
        for (oid, p) in pointers.sorted(by: { $0.key < $1.key }) where p.size > 0 {
            let hex = oid.hex
            let dir = "\(root)/\(hex.prefix(2))/\(hex.dropFirst(2).prefix(2))"
            let path = dir + "/" + hex
            if FileIO.fileSize(path) == p.size { continue }
            guard try store.hasContent(ofBlob: oid) else {
                report.missing.append(hex)
                continue
            }
            try FileIO.mkdirs(dir)
            try Materializer.writeFile(store: store, blob: oid, to: path, durable: true, progress: progress)
            report.objects += 1
            report.bytes += p.size
        }
        if let top = repo.workTree { report.attributeLines = try GitAttributes.switchFilter(from: "trove", to: "lfs", top: top) }
        report.hooks = try restoreLFSHooks(repo, store: store)
        try unaliasLFSFilter(repo, store: store)
        return report
    }

    /// The `filter=lfs` of commits made before the import (history is not rewritten) goes
    /// through Trove too: same pointers, content now in the Trove store. The repository's own
    /// earlier values are kept in the store config for export.
    static let aliasKeys = ["filter.lfs.process", "filter.lfs.required"]

    static func aliasLFSFilter(_ repo: GitRepository, store: Store) throws {
        let file = try GitConfigFile.repository(repo)
        let values = ["trove filter-process", "true"]
        for (key, value) in zip(aliasKeys, values) where file.get(key) != value {
            try store.setConfig("git.lfs-previous." + key.replacingOccurrences(of: ".", with: "-"), file.get(key) ?? "")
            try file.set(key, value)
        }
    }

    static func unaliasLFSFilter(_ repo: GitRepository, store: Store) throws {
        let file = try GitConfigFile.repository(repo)
        for key in aliasKeys {
            let saved = "git.lfs-previous." + key.replacingOccurrences(of: ".", with: "-")
            guard let previous = store.config[saved] else { continue }
            if previous.isEmpty { try file.remove(key) } else { try file.set(key, previous) }
            try store.setConfig(saved, nil)
        }
        try GitInstall.removeEmptySections(file.path, sections: ["[filter \"lfs\"]"])
    }

    /// git-lfs's own hooks call `git lfs HOOK`: after import they would push to an LFS server
    /// that no longer gets the content. They are kept in `STORE/lfs-hooks/` for export.
    static func takeOverLFSHooks(_ repo: GitRepository, store: Store) throws -> [String] {
        let dir = GitInstall.hooksDirectory(repo)
        let keep = store.root + "/lfs-hooks"
        var moved: [String] = []
        for name in HookScripts.names {
            for candidate in [dir + "/\(name).trove-chained", dir + "/" + name] {
                guard let bytes = try? FileIO.readFile(candidate), isLFSHook(bytes, name: name) else { continue }
                try FileIO.mkdirs(keep)
                try FileIO.atomicWrite(keep + "/" + name, bytes, mode: 0o755)
                guard unlink(candidate) == 0 else { throw FileIO.ioError("remove", candidate) }
                moved.append(name)
            }
        }
        return moved
    }

    static func restoreLFSHooks(_ repo: GitRepository, store: Store) throws -> [String] {
        let dir = GitInstall.hooksDirectory(repo)
        let keep = store.root + "/lfs-hooks"
        var restored: [String] = []
        for name in HookScripts.names {
            guard let bytes = try? FileIO.readFile(keep + "/" + name) else { continue }
            let target = FileIO.exists(dir + "/" + name) ? dir + "/\(name).trove-chained" : dir + "/" + name
            guard !FileIO.exists(target) else {
                throw StoreError(.conflict, "cannot put git-lfs's \(name) hook back: \(target) is taken (the hook is kept in \(keep)/\(name))",
                                 hint: "move \(target) aside and run `trove export-lfs` again")
            }
            try FileIO.atomicWrite(target, bytes, mode: 0o755)
            unlink(keep + "/" + name)
            restored.append(name)
        }
        return restored
    }

    static func isLFSHook(_ bytes: [UInt8], name: String) -> Bool {
        let text = String(decoding: bytes.prefix(2000), as: UTF8.self)
        return text.contains("git lfs \(name)") && !text.contains(HookScripts.marker)
    }
}

extension GitAttributes {
    /// Rewrites `filter=A diff=A merge=A` as B on the lines that name filter A; returns how
    /// many lines changed.
    public static func switchFilter(from a: String, to b: String, top: String) throws -> Int {
        var changed = 0
        let out = lines(top).map { line -> String in
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let first = fields.first, !first.hasPrefix("#"), fields.contains("filter=\(a)") else { return line }
            changed += 1
            return ([first] + fields.dropFirst().map { f in
                for key in ["filter", "diff", "merge"] where f == "\(key)=\(a)" { return "\(key)=\(b)" }
                return f
            }).joined(separator: " ")
        }
        if changed > 0 { try FileIO.atomicWrite(top + "/.gitattributes", Array((out.joined(separator: "\n") + "\n").utf8)) }
        return changed
    }
}
