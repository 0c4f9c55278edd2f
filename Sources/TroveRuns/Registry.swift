import Foundation
import Glibc
import TroveCore
import TroveStore

/// Versioned models and datasets on the commit graph (Docs/registry.md): version N of NAME is a
/// commit of kind `model` (or `dataset`) on `models/NAME/vN`, whose parent is version N-1;
/// an alias is a moving ref `models/NAME/alias/A` (its reflog is its history); a deprecation is
/// a small commit on `models/NAME/deprecated/vN` whose parent is the version.
public struct Registry {
    public enum Kind: String, Sendable, CaseIterable {
        case model, dataset
        public var root: String { self == .model ? "models" : "datasets" }
        var commitKind: Commit.Kind { self == .model ? .model : .dataset }
    }

    /// Reads work on any store (the daemon's shared ones too); publishing needs a working store.
    public let store: any RefStore
    public let kind: Kind

    public init(store: any RefStore, kind: Kind) {
        self.store = store
        self.kind = kind
    }

    var writable: Store {
        get throws {
            guard let s = store as? Store else { throw StoreError(.invalidInput, "\(store.root) is a shared store: publish from a working store and push") }
            return s
        }
    }

    /// 1–64 of letters, digits, `.`, `_`, `-`, starting with a letter or digit.
    public static func validate(name: String) throws {
        let ok = name.utf8.count <= 64 && name.first.map { $0.isASCII && ($0.isLetter || $0.isNumber) } == true
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "_" || $0 == "-") }
        guard ok, !name.contains("..") else {
            throw StoreError(.invalidInput, "\(name.debugDescription) is not a valid name", hint: "use 1-64 letters, digits, '.', '_' and '-', starting with a letter or digit")
        }
    }

    public static func validate(alias: String) throws {
        guard !alias.isEmpty, alias.count <= 64, alias.first?.isLetter == true,
              alias.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }),
              !(alias.first == "v" && Int(alias.dropFirst()) != nil), alias != "latest" else {
            throw StoreError(.invalidInput, "\(alias.debugDescription) is not a valid alias",
                             hint: "letters, digits, '_' and '-', starting with a letter; not vN or latest (they name versions)")
        }
    }

    func versionRef(_ name: String, _ n: Int) -> String { "\(kind.root)/\(name)/v\(n)" }
    func aliasRef(_ name: String, _ alias: String) -> String { "\(kind.root)/\(name)/alias/\(alias)" }
    func deprecatedRef(_ name: String, _ n: Int) -> String { "\(kind.root)/\(name)/deprecated/v\(n)" }

    /// Every name with at least one version.
    public func names() throws -> [String] {
        var refs = try store.refs.list(prefix: kind.root + "/").map(\.name)
        for remote in ((try? FileIO.listDirectory(store.root + "/refs/remotes")) ?? []) {
            refs += try store.refs.list(prefix: "remotes/\(remote)/\(kind.root)/").map { String($0.name.dropFirst(9 + remote.count)) }
        }
        return Set(refs.compactMap { r -> String? in
            let parts = r.split(separator: "/")
            return parts.count == 3 && parts[2].hasPrefix("v") ? String(parts[1]) : nil
        }).sorted()
    }

    /// NAME's refs below `sub` (`""`, `alias/`, `deprecated/`), by the part after it: the local
    /// ones, then those fetched from remotes (`remotes/R/models/NAME/...`) that are not local —
    /// a clone or a fetch makes a model's versions usable without copying refs.
    func refs(_ name: String, _ sub: String) throws -> [(key: String, id: ObjectID)] {
        var out: [String: ObjectID] = [:]
        let local = "\(kind.root)/\(name)/\(sub)"
        for r in try store.refs.list(prefix: local) { out[String(r.name.dropFirst(local.count))] = r.id }
        for remote in ((try? FileIO.listDirectory(store.root + "/refs/remotes")) ?? []).sorted() {
            let prefix = "remotes/\(remote)/" + local
            for r in try store.refs.list(prefix: prefix) where out[String(r.name.dropFirst(prefix.count))] == nil {
                out[String(r.name.dropFirst(prefix.count))] = r.id
            }
        }
        return out.map { ($0.key, $0.value) }
    }

    /// Versions of NAME, oldest first.
    public func versions(_ name: String) throws -> [(version: Int, commit: ObjectID)] {
        try refs(name, "").compactMap { r -> (Int, ObjectID)? in
            guard r.key.hasPrefix("v"), let n = Int(r.key.dropFirst()) else { return nil }
            return (n, r.id)
        }.sorted { $0.0 < $1.0 }
    }

    public func aliases(_ name: String) throws -> [(alias: String, commit: ObjectID)] {
        try refs(name, "alias/").map { ($0.key, $0.id) }.sorted { $0.0 < $1.0 }
    }

    /// Deprecated versions and why.
    public func deprecations(_ name: String) throws -> [Int: String] {
        var out: [Int: String] = [:]
        for r in try refs(name, "deprecated/").map({ (name: "x/" + $0.key, id: $0.id) }) {
            guard let n = Int(r.name.split(separator: "/").last!.dropFirst()) else { continue }
            out[n] = try store.commit(r.id).metadata.first { $0.key == "registry.deprecated" }?.value ?? ""
        }
        return out
    }

    /// `NAME`, `NAME@vN`, `NAME@latest` or `NAME@ALIAS` → the version and its commit.
    public func resolve(_ text: String) throws -> (name: String, version: Int, commit: ObjectID) {
        let (name, selector) = text.firstIndex(of: "@").map { (String(text[..<$0]), String(text[text.index(after: $0)...])) } ?? (text, "latest")
        try Registry.validate(name: name)
        let versions = try versions(name)
        guard let last = versions.last else {
            throw StoreError(.notFound, "no \(kind) \(name) in this store", hint: "`trove \(kind) list` shows what there is; `trove fetch` brings a remote's")
        }
        if selector == "latest" { return (name, last.version, last.commit) }
        if selector.hasPrefix("v"), let n = Int(selector.dropFirst()) {
            guard let v = versions.first(where: { $0.version == n }) else {
                throw StoreError(.notFound, "\(kind) \(name) has no version \(n)", hint: "versions: " + versions.map { "v\($0.version)" }.joined(separator: ", "))
            }
            return (name, n, v.commit)
        }
        guard let id = try aliases(name).first(where: { $0.alias == selector })?.commit else {
            let known = try aliases(name).map(\.alias)
            throw StoreError(.notFound, "\(kind) \(name) has no alias \(selector)", hint: known.isEmpty ? "it has no aliases; `trove \(kind) promote \(name)@vN \(selector)` makes one" : "aliases: " + known.joined(separator: ", "))
        }
        guard let v = versions.first(where: { $0.commit == id }) else {
            throw StoreError(.integrity, "alias \(name)@\(selector) points at \(id.short()), which is no version of \(name)")
        }
        return (name, v.version, id)
    }

    public struct Publication {
        public var name: String
        /// Files and folders to record (folders keep their name as the top folder).
        public var paths: [String] = []
        /// A run whose outputs are the version when `paths` is empty; always its provenance.
        public var run: RunInfo?
        public var card: String?
        public var metadata: [String: String] = [:]
        public var alias: String?
        /// An explicit version number (refused when it exists); nil = the next one.
        public var version: Int?
        public var message: String?
        /// Folders give their contents at the top of the version (an imported Hugging Face
        /// snapshot), not a folder of their name; `.cache` and `.git` inside are left out.
        public var contents = false

        public init(name: String) { self.name = name }
    }

    /// Records a new version; returns its number and commit.
    public func publish(_ p: Publication) throws -> (version: Int, commit: ObjectID) {
        try Registry.validate(name: p.name)
        if let a = p.alias { try Registry.validate(alias: a) }
        for k in p.metadata.keys {
            guard !k.isEmpty, k.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) else {
                throw StoreError(.invalidInput, "metadata key \(k.debugDescription) must be letters, digits, '.', '_' and '-'")
            }
        }
        let existing = try versions(p.name)
        if let n = p.version, existing.contains(where: { $0.version == n }) {
            throw StoreError(.conflict, "\(kind) \(p.name) v\(n) exists already: a version is never replaced",
                             hint: "publish without --version to make v\((existing.last?.version ?? 0) + 1)")
        }
        if let n = p.version, n < 1 { throw StoreError(.invalidInput, "versions start at 1") }
        let store = try writable
        let writer = ObjectWriter(store: store)
        var entries: [String: Tree.Entry] = [:]
        if p.paths.isEmpty {
            guard let run = p.run else { throw StoreError(.invalidInput, "nothing to publish", hint: "give files or folders, or --from-run RUN to publish its outputs") }
            let files = try store.flatten(tree: try store.commit(run.commit).tree).filter { $0.key.hasPrefix("outputs/") }
            guard !files.isEmpty else { throw StoreError(.notFound, "run \(run.id) recorded no outputs", hint: "give the files to publish") }
            for (k, e) in files { entries[String(k.dropFirst(8))] = e }
        } else {
            var sources: [String: String] = [:]
            var executable = Set<String>()
            for path in p.paths {
                let base = FileIO.basename(path.hasSuffix("/") ? String(path.dropLast()) : path)
                var st = stat()
                guard lstat(path, &st) == 0 else { throw StoreError(.notFound, "\(path) does not exist") }
                if (st.st_mode & S_IFMT) == S_IFDIR {
                    let top = p.contents ? "" : base + "/"
                    let walker = FileManager.default.enumerator(atPath: path)
                    while let rel = walker?.nextObject() as? String {
                        if p.contents, rel == ".cache" || rel == ".git" || rel.hasPrefix(".cache/") || rel.hasPrefix(".git/") { continue }
                        var fst = stat()
                        guard lstat(path + "/" + rel, &fst) == 0, (fst.st_mode & S_IFMT) == S_IFREG else { continue }
                        sources[top + rel] = path + "/" + rel
                        if fst.st_mode & 0o111 != 0 { executable.insert(top + rel) }
                    }
                } else if (st.st_mode & S_IFMT) == S_IFREG {
                    sources[base] = path
                } else {
                    throw StoreError(.invalidInput, "\(path) is neither a file nor a folder")
                }
            }
            if let card = p.card { sources["README.md"] = card }
            let keys = sources.keys.sorted()
            let results = try Ingester(store: store, writer: writer).ingest(paths: keys.map { sources[$0]! })
            for (k, r) in zip(keys, results) {
                entries[k] = Tree.Entry(name: FileIO.basename(k), kind: .file, executable: executable.contains(k), id: r.blobID, size: r.size)
            }
        }
        if p.paths.isEmpty, let card = p.card {
            let r = try Ingester(store: store, writer: writer).ingest(paths: [card])
            entries["README.md"] = Tree.Entry(name: "README.md", kind: .file, id: r[0].blobID, size: r[0].size)
        }
        let (tree, size) = try store.writeTrees(entries, writer: writer)
        var meta: [String: String] = ["registry.name": p.name, "registry.kind": kind.rawValue, "registry.files": "\(entries.count)", "registry.bytes": "\(size)"]
        if entries["README.md"] != nil { meta["registry.card"] = "README.md" }
        for (k, v) in p.metadata { meta["meta." + k] = v }
        if let run = p.run {
            meta["registry.run"] = run.id
            meta["registry.run_commit"] = run.commit.hex
        }
        let author = Worktree.Author.current(config: store.config, environment: ProcessInfo.processInfo.environment)
        // The version number is taken by creating its ref (compare-and-swap on "absent"):
        // two publishers at once get different numbers, or one is told to retry.
        var n = p.version ?? ((existing.last?.version ?? 0) + 1)
        var parent = existing.last(where: { $0.version < n })?.commit
        for attempt in 0..<8 {
            meta["registry.version"] = "\(n)"
            let c = Commit(tree: tree, parents: parent.map { [$0] } ?? [], author: author.name, time: author.time, timezoneOffset: author.offsetMinutes,
                           kind: kind.commitKind, gitCommit: p.run?.gitCommit ?? "", metadata: meta,
                           message: "\(kind) \(p.name) v\(n)\(p.message.map { ": " + $0 } ?? "")\n")
            let id = try writer.put(.commit, c.encode())
            try writer.finish()
            do {
                try store.refs.update(versionRef(p.name, n), from: nil, to: id, message: "publish")
            } catch let e as StoreError where e.code == .conflict && p.version == nil && attempt < 7 {
                let now = try versions(p.name)
                n = (now.last?.version ?? n) + 1
                parent = now.last?.commit
                continue
            }
            if let alias = p.alias { try promote(p.name, version: n, alias: alias) }
            return (n, id)
        }
        throw StoreError(.conflict, "could not take a version number for \(p.name): others are publishing at the same time", hint: "retry")
    }

    /// Points ALIAS at version N, by compare-and-swap: `expected` is the version the alias must
    /// point at now (nil: whatever it is, read just before). A deprecated version is refused.
    @discardableResult
    public func promote(_ name: String, version n: Int, alias: String, expected: Int? = nil) throws -> (old: Int?, new: Int) {
        try Registry.validate(alias: alias)
        let versions = try versions(name)
        guard let v = versions.first(where: { $0.version == n }) else { throw StoreError(.notFound, "\(kind) \(name) has no version \(n)") }
        if let why = try deprecations(name)[n] {
            throw StoreError(.conflict, "\(name)@v\(n) is deprecated (\(why.isEmpty ? "no reason given" : why)): it cannot be promoted", hint: "promote another version")
        }
        let ref = aliasRef(name, alias)
        let current = try store.refs.read(ref)
        let currentVersion = current.flatMap { c in versions.first { $0.commit == c }?.version }
        if let expected, expected != currentVersion {
            throw StoreError(.conflict, "alias \(name)@\(alias) is at \(currentVersion.map { "v\($0)" } ?? "nothing"), not v\(expected): someone moved it",
                             hint: "look with `trove \(kind) show \(name)` and promote again")
        }
        try store.refs.update(ref, from: current, to: v.commit, message: "promote v\(n)")
        return (currentVersion, n)
    }

    public func deprecate(_ name: String, version n: Int, reason: String) throws {
        guard let v = try versions(name).first(where: { $0.version == n }) else { throw StoreError(.notFound, "\(kind) \(name) has no version \(n)") }
        if try deprecations(name)[n] != nil { throw StoreError(.conflict, "\(name)@v\(n) is deprecated already") }
        let store = try writable
        let writer = ObjectWriter(store: store)
        let (tree, _) = try store.writeTrees([:], writer: writer)
        let author = Worktree.Author.current(config: store.config, environment: ProcessInfo.processInfo.environment)
        let c = Commit(tree: tree, parents: [v.commit], author: author.name, time: author.time, timezoneOffset: author.offsetMinutes, kind: kind.commitKind,
                       metadata: ["registry.name": name, "registry.kind": kind.rawValue, "registry.version": "\(n)", "registry.deprecated": reason],
                       message: "deprecate \(kind) \(name) v\(n): \(reason)\n")
        let id = try writer.put(.commit, c.encode())
        try writer.finish()
        try store.refs.update(deprecatedRef(name, n), from: nil, to: id, message: "deprecate")
    }

    /// One link of a version's provenance.
    public struct Link: Sendable {
        public var kind: String
        public var label: String
        public var commit: ObjectID?
        public var detail: [String: String]
        public var depth: Int

        /// `{kind, label, commit, detail, depth}`, as `lineage --json` and the API print it.
        public var json: [String: Any] {
            ["kind": kind, "label": label, "commit": commit?.hex as Any? ?? NSNull(), "detail": detail, "depth": depth]
        }
    }

    /// The chain behind a version: the version, the run that made it (code, parameters), the
    /// data it read (registry versions named where the data commit is one), recursively.
    public func lineage(_ text: String) throws -> [Link] {
        let (name, n, commit) = try resolve(text)
        var out: [Link] = []
        var seen = Set<ObjectID>()
        func describe(_ id: ObjectID, label: String, depth: Int) throws {
            guard seen.insert(id).inserted, depth < 16 else { return }
            let c = try store.commit(id)
            let m = Dictionary(c.metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            switch c.kind {
            case .model, .dataset:
                var detail: [String: String] = ["published": iso(c.time)]
                for (k, v) in m where k.hasPrefix("meta.") { detail[k] = v }
                out.append(Link(kind: "\(c.kind)", label: label, commit: id, detail: detail, depth: depth))
                if let run = m["registry.run_commit"].flatMap(ObjectID.init(hex:)) {
                    try describe(run, label: "run " + (m["registry.run"] ?? run.short()), depth: depth + 1)
                }
            case .run:
                var detail: [String: String] = ["status": m["run.status"] ?? "", "command": m["run.command"] ?? ""]
                if !c.gitCommit.isEmpty { detail["code"] = "git " + c.gitCommit + (m["code.dirty"] == "true" ? " (with uncommitted changes, recorded)" : "") }
                let params = c.metadata.filter { $0.key.hasPrefix("param.") }.map { "\($0.key.dropFirst(6))=\($0.value)" }
                if !params.isEmpty { detail["params"] = params.joined(separator: " ") }
                out.append(Link(kind: "run", label: label, commit: id, detail: detail, depth: depth))
                for key in m.keys.filter({ $0.hasPrefix("input.") && $0.split(separator: ".").count == 2 }).sorted() {
                    guard let data = m[key + ".commit"].flatMap(ObjectID.init(hex:)) else { continue }
                    try describe(data, label: "input \(key.dropFirst(6)): " + (m[key] ?? "") + (registryName(of: data).map { " = " + $0 } ?? ""), depth: depth + 1)
                }
            case .snapshot:
                out.append(Link(kind: "snapshot", label: label, commit: id, detail: ["message": c.message.split(separator: "\n").first.map(String.init) ?? ""], depth: depth))
            }
        }
        try describe(commit, label: "\(kind) \(name)@v\(n)", depth: 0)
        return out
    }

    /// Where a version is served by `trove serve` processes of this store, as links after the
    /// version (depth -1: data → run → version → endpoint).
    public func served(_ text: String) throws -> [Link] {
        guard kind == .model else { return [] }
        let (name, n, _) = try resolve(text)
        return ServingRecord.live(storeRoot: store.root).filter { $0.name == name && $0.version == n }.map { r in
            Link(kind: "served", label: "served at \(r.url)", commit: nil,
                 detail: ["host": r.host, "pid": "\(r.pid)", "workers": "\(r.workers)", "since": iso(r.started)], depth: -1)
        }
    }

    /// `datasets/NAME@vN` (or a model) when `commit` is a registry version.
    func registryName(of commit: ObjectID) throws -> String? {
        for kind in Kind.allCases {
            for r in try store.refs.list(prefix: kind.root + "/") where r.id == commit {
                let parts = r.name.split(separator: "/")
                if parts.count == 3, parts[2].hasPrefix("v") { return "\(kind) \(parts[1])@\(parts[2])" }
            }
        }
        return nil
    }

    func iso(_ t: Int64) -> String {
        ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(t)))
    }
}
