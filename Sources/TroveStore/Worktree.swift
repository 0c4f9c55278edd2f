import Glibc
import TroveCore

/// Operations on a store's working tree: add, rm, status, commit, checkout.
public struct Worktree {
    public let store: Store
    public let top: String
    public var refs: Refs { Refs(root: store.root) }
    /// The paths this working tree materialises (a partial clone's `--include`); tracked files
    /// outside it stay in the stage and in commits without being written, and their absence
    /// is not a change.
    public let sparse: PathFilter

    public init(store: Store) throws {
        guard let top = store.workTree else {
            throw StoreError(.invalidInput, "the store \(store.root) has no working tree", hint: "run this inside a working tree, or set TROVE_WORK_TREE")
        }
        self.store = store
        self.top = top
        sparse = try PathFilter.load(store: store.root)
    }

    /// A tracked path that is outside the sparse patterns and not on disk: not a deletion.
    func isSparseAbsent(_ path: String, _ files: [String: FileStat]) -> Bool {
        !sparse.isAll && files[path] == nil && !sparse.includes(path)
    }

    // MARK: paths

    /// A command-line path, relative to `cwd`, as a slash path relative to the top ("" = top).
    public func relative(_ path: String, cwd: String) throws -> String {
        let abs = FileIO.absolute(path, base: cwd)
        if abs == top { return "" }
        guard abs.hasPrefix(top + "/") else {
            throw StoreError(.invalidInput, "\(path) is outside the working tree \(top)")
        }
        let rel = String(abs.dropFirst(top.count + 1))
        if rel.split(separator: "/").contains(where: { $0 == ".trove" || $0 == ".git" }) {
            throw StoreError(.invalidInput, "\(path) is inside a store folder")
        }
        return rel
    }

    static func within(_ path: String, _ spec: String) -> Bool {
        spec.isEmpty || path == spec || path.hasPrefix(spec + "/")
    }

    // MARK: scanning

    public struct FileStat: Sendable {
        public var kind: Tree.Kind
        public var executable: Bool
        public var size: UInt64
        public var mtime: Int64, ctime: Int64
        public var inode: UInt64, device: UInt64
    }

    static func fileStat(_ st: stat) -> FileStat? {
        let type = st.st_mode & S_IFMT
        let kind: Tree.Kind
        if type == S_IFREG { kind = .file } else if type == S_IFLNK { kind = .symlink } else { return nil }
        return FileStat(kind: kind, executable: kind == .file && (st.st_mode & S_IXUSR) != 0, size: UInt64(st.st_size),
                        mtime: Materializer.nanos(st.st_mtim), ctime: Materializer.nanos(st.st_ctim),
                        inode: UInt64(st.st_ino), device: UInt64(st.st_dev))
    }

    public func stat(_ rel: String) -> FileStat? {
        var st = Glibc.stat()
        guard lstat(top + "/" + rel, &st) == 0 else { return nil }
        return Worktree.fileStat(st)
    }

    /// Files and symlinks below `spec` (relative), skipping store folders, Trove's own temporary
    /// files and ignored paths — except paths in `tracked`, which stay tracked as in git.
    public func scan(_ spec: String = "", tracked: @autoclosure () -> Set<String> = []) throws -> [String: FileStat] {
        let ignore = try IgnoreRules.load(top: top)
        // Tracked paths (and their folders) are needed only when an ignore rule matches.
        var trackedPaths: Set<String>?
        var trackedDirs = Set<String>()
        func isTracked(_ r: String, isDirectory: Bool) -> Bool {
            if trackedPaths == nil {
                let t = tracked()
                trackedPaths = t
                for p in t {
                    var d = FileIO.dirname(p)
                    while d != "." && !d.isEmpty && trackedDirs.insert(d).inserted { d = FileIO.dirname(d) }
                }
            }
            return isDirectory ? trackedDirs.contains(r) : trackedPaths!.contains(r)
        }
        var out: [String: FileStat] = [:]
        func walk(_ rel: String) throws {
            let dir = rel.isEmpty ? top : top + "/" + rel
            // fstatat against the open folder: no path walk per file.
            let dirFD = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard dirFD >= 0 else { throw FileIO.ioError("open folder", dir) }
            defer { close(dirFD) }
            for name in try FileIO.listDirectory(dir) {
                if name == ".trove" || name == ".git" || name.hasPrefix(".trove-tmp-") { continue }
                let r = rel.isEmpty ? name : rel + "/" + name
                var st = Glibc.stat()
                guard fstatat(dirFD, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
                let isDir = (st.st_mode & S_IFMT) == S_IFDIR
                if !ignore.isEmpty && ignore.ignores(r, isDirectory: isDir) && !isTracked(r, isDirectory: isDir) { continue }
                if isDir { try walk(r) } else if let fs = Worktree.fileStat(st) { out[r] = fs }
            }
        }
        let full = spec.isEmpty ? top : top + "/" + spec
        var st = Glibc.stat()
        if lstat(full, &st) == 0 {
            if (st.st_mode & S_IFMT) == S_IFDIR { try walk(spec) } else if let fs = Worktree.fileStat(st) { out[spec] = fs }
        }
        return out
    }

    /// The stat cache says the file is unchanged (a zero mtime means "not trusted").
    public static func matches(_ entry: StageEntry, _ fs: FileStat) -> Bool {
        entry.mtime != 0 && entry.kind == fs.kind && entry.size == fs.size && entry.mtime == fs.mtime
            && entry.ctime == fs.ctime && entry.inode == fs.inode && entry.device == fs.device && entry.executable == fs.executable
    }

    /// A stat taken within this many nanoseconds of now may miss a same-tick write: not trusted.
    static let racyWindow: Int64 = 2_000_000_000

    static func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Materializer.nanos(ts)
    }

    func entry(_ rel: String, _ fs: FileStat, id: ObjectID, now: Int64) -> StageEntry {
        let racy = fs.mtime >= now - Worktree.racyWindow
        return StageEntry(path: rel, kind: fs.kind, executable: fs.executable, id: id, size: fs.size,
                          mtime: racy ? 0 : fs.mtime, ctime: fs.ctime, inode: fs.inode, device: fs.device)
    }

    // MARK: add / rm

    public struct AddSummary: Sendable {
        public var added: [String] = []
        public var modified: [String] = []
        public var removed: [String] = []
        public var unchanged = 0
        public var bytesRead: UInt64 = 0
        public var newBytes: UInt64 = 0
        public var newChunks = 0
        public var chunks = 0
    }

    /// Stores files under `specs` and stages them; staged files under `specs` that are gone are
    /// unstaged (like `git add -A PATH`).
    public func add(_ specs: [String], writer: ObjectWriter, progress: ProgressSink?) throws -> AddSummary {
        var summary = AddSummary()
        let staged = try store.index.stage()
        var found: [String: FileStat] = [:]
        let trackedPaths = Set(staged.keys)
        for spec in specs {
            let files = try scan(spec, tracked: trackedPaths)
            if files.isEmpty && !staged.keys.contains(where: { Worktree.within($0, spec) }) {
                throw StoreError(.notFound, "pathspec \(spec.isEmpty ? "." : spec) did not match any file")
            }
            found.merge(files) { a, _ in a }
        }
        var toHash: [String] = []
        var symlinks: [String] = []
        for (path, fs) in found {
            if let e = staged[path], Worktree.matches(e, fs) { summary.unchanged += 1; continue }
            if fs.kind == .symlink { symlinks.append(path) } else { toHash.append(path) }
        }
        toHash.sort()
        let total = toHash.reduce(UInt64(0)) { $0 + found[$1]!.size }
        progress?.begin(total: total, label: "adding")
        let ingester = Ingester(store: store, writer: writer)
        ingester.progress = progress
        let results = try ingester.ingest(paths: toHash.map { top + "/" + $0 }, sizes: toHash.map { found[$0]!.size })
        progress?.end()
        let now = Worktree.now()
        var updates: [StageEntry] = []
        for (path, r) in zip(toHash, results) {
            let e = entry(path, found[path]!, id: r.blobID, now: now)
            updates.append(e)
            summary.bytesRead += r.size
            summary.newBytes += r.newBytes
            summary.newChunks += r.newChunks
            summary.chunks += r.chunkCount
            if let old = staged[path] {
                if old.id != e.id || old.executable != e.executable || old.kind != e.kind { summary.modified.append(path) } else { summary.unchanged += 1 }
            } else {
                summary.added.append(path)
            }
        }
        for path in symlinks {
            var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(top + "/" + path, &buf, buf.count - 1)
            guard n >= 0 else { throw FileIO.ioError("read symlink", top + "/" + path) }
            let target = Array(buf[0..<n].map { UInt8(bitPattern: $0) })
            let id = try writer.put(.chunk, target)
            let e = entry(path, found[path]!, id: id, now: now)
            updates.append(e)
            if let old = staged[path] { if old.id != id { summary.modified.append(path) } } else { summary.added.append(path) }
        }
        let removed = staged.keys.filter { p in specs.contains { Worktree.within(p, $0) } && found[p] == nil && !isSparseAbsent(p, found) }.sorted()
        summary.removed = removed
        // Objects first, then the stage that names them.
        try writer.finish()
        try store.index.updateStage(updates, removing: removed)
        summary.added.sort(); summary.modified.sort()
        return summary
    }

    /// Unstages paths (and deletes the files unless `keepFiles`).
    public func remove(_ specs: [String], keepFiles: Bool, recursive: Bool) throws -> [String] {
        let staged = try store.index.stage()
        var gone: [String] = []
        for spec in specs {
            let hits = staged.keys.filter { Worktree.within($0, spec) }
            if hits.isEmpty { throw StoreError(.notFound, "pathspec \(spec) did not match any tracked file") }
            if !recursive && !(hits.count == 1 && hits[0] == spec) {
                throw StoreError(.invalidInput, "\(spec) is a directory", hint: "use `trove rm -r \(spec)` to remove everything in it")
            }
            gone.append(contentsOf: hits)
        }
        gone = Array(Set(gone)).sorted()
        try store.index.updateStage([], removing: gone)
        if !keepFiles {
            for p in gone {
                unlink(top + "/" + p)
                pruneEmptyDirectories(above: p)
            }
        }
        return gone
    }

    func pruneEmptyDirectories(above rel: String) {
        var dir = FileIO.dirname(rel)
        while dir != "." && !dir.isEmpty && dir != "/" {
            if rmdir(top + "/" + dir) != 0 { break }
            dir = FileIO.dirname(dir)
        }
    }

    // MARK: status

    public struct Status: Sendable {
        public enum Change: String, Sendable { case added, modified, deleted, typeChanged = "type-changed" }
        public var branch: String?
        public var head: ObjectID?
        public var staged: [(path: String, change: Change)] = []
        public var unstaged: [(path: String, change: Change)] = []
        public var untracked: [String] = []
        public var isClean: Bool { staged.isEmpty && unstaged.isEmpty && untracked.isEmpty }
    }

    public func headFiles() throws -> [String: Tree.Entry] {
        guard let head = try refs.headCommit() else { return [:] }
        return try store.flatten(tree: try store.commit(head).tree)
    }

    public func status() throws -> Status {
        var s = Status()
        switch try refs.head() {
        case .branch(let b): s.branch = b.hasPrefix("heads/") ? String(b.dropFirst(6)) : b
        case .detached: s.branch = nil
        }
        s.head = try refs.headCommit()
        let headFiles = try headFiles()
        let staged = try store.index.stage()
        for (path, e) in staged {
            if let h = headFiles[path] {
                if h.id != e.id || h.executable != e.executable || h.kind != e.kind { s.staged.append((path, .modified)) }
            } else {
                s.staged.append((path, .added))
            }
        }
        for path in headFiles.keys where staged[path] == nil { s.staged.append((path, .deleted)) }

        let files = try scan(tracked: Set(staged.keys))
        var refreshed: [StageEntry] = []
        var toHash: [String] = []
        for (path, e) in staged {
            guard let fs = files[path] else {
                if !isSparseAbsent(path, files) { s.unstaged.append((path, .deleted)) }
                continue
            }
            if Worktree.matches(e, fs) { continue }
            if fs.kind != e.kind { s.unstaged.append((path, .typeChanged)); continue }
            if fs.size != e.size || fs.executable != e.executable { s.unstaged.append((path, .modified)); continue }
            toHash.append(path)
        }
        if !toHash.isEmpty {
            // Same size, different stat: hash to be sure (without storing anything), and refresh the cache.
            let now = Worktree.now()
            for path in toHash {
                let fs = files[path]!
                let id: ObjectID
                if fs.kind == .symlink {
                    var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                    let n = readlink(top + "/" + path, &buf, buf.count - 1)
                    id = SHA256.hash(Array(buf[0..<max(n, 0)].map { UInt8(bitPattern: $0) }))
                } else {
                    id = try Worktree.hashFile(top + "/" + path)
                }
                if id == staged[path]!.id { refreshed.append(entry(path, fs, id: id, now: now)) } else { s.unstaged.append((path, .modified)) }
            }
        }
        if !refreshed.isEmpty { try? store.index.updateStage(refreshed) }
        s.untracked = files.keys.filter { staged[$0] == nil }.sorted()
        s.staged.sort { $0.path < $1.path }
        s.unstaged.sort { $0.path < $1.path }
        return s
    }

    public static func hashFile(_ path: String) throws -> ObjectID {
        let fd = try FileIO.open(path, O_RDONLY)
        defer { close(fd) }
        let h = SHA256.Hasher()
        let size = 1 << 20
        let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        defer { buf.deallocate() }
        while true {
            let n = try FileIO.readUpTo(fd, buf, size, path: path)
            h.update(buf, count: n)
            if n < size { break }
        }
        return h.finish()
    }

    // MARK: commit

    public struct Author: Sendable {
        public var name: String
        public var time: Int64
        public var offsetMinutes: Int16

        public init(name: String, time: Int64, offsetMinutes: Int16) {
            self.name = name
            self.time = time
            self.offsetMinutes = offsetMinutes
        }

        public static func current(config: StoreConfig, environment: [String: String]) -> Author {
            let login = getpwuid(getuid()).flatMap { $0.pointee.pw_name.map { String(cString: $0) } }
            var name = environment["TROVE_AUTHOR_NAME"] ?? config["user.name"] ?? environment["USER"] ?? login ?? "unknown"
            if let email = environment["TROVE_AUTHOR_EMAIL"] ?? config["user.email"] { name += " <\(email)>" }
            var t = Glibc.time(nil)
            if let fixed = environment["TROVE_COMMIT_TIME"], let v = Int(fixed) { t = v }
            var tmv = tm()
            localtime_r(&t, &tmv)
            return Author(name: name, time: Int64(t), offsetMinutes: Int16(tmv.tm_gmtoff / 60))
        }
    }

    /// Commits the stage. Returns the new commit id.
    public func commit(message: String, author: Author, allowEmpty: Bool, metadata: [String: String] = [:],
                       kind: Commit.Kind = .snapshot, writer: ObjectWriter) throws -> ObjectID {
        let head = try refs.head()
        let parent = try refs.headCommit()
        let staged = try store.index.stage()
        var files: [String: Tree.Entry] = [:]
        for (p, e) in staged {
            files[p] = Tree.Entry(name: FileIO.basename(p), kind: e.kind, executable: e.executable, id: e.id, size: e.size)
        }
        let (treeID, _) = try store.writeTrees(files, writer: writer)
        if let parent, !allowEmpty, try store.commit(parent).tree == treeID {
            throw StoreError(.invalidInput, "nothing to commit: the stage matches HEAD", hint: "use `trove add PATH` first, or --allow-empty")
        }
        let c = Commit(tree: treeID, parents: parent.map { [$0] } ?? [], author: author.name, time: author.time,
                       timezoneOffset: author.offsetMinutes, kind: kind, metadata: metadata, message: message)
        let id = try writer.put(.commit, c.encode())
        // Everything the commit reaches is durable before the ref moves.
        try writer.finish()
        let summary = "commit: " + (message.split(separator: "\n").first.map(String.init) ?? "")
        switch head {
        case .branch(let b): try refs.update(b, from: parent, to: id, message: summary)
        case .detached(let old): try refs.setHead(.detached(id), expected: .detached(old), message: summary)
        }
        return id
    }

    // MARK: checkout

    public struct CheckoutSummary: Sendable {
        public var written = 0
        public var removed = 0
        public var bytes: UInt64 = 0
    }

    /// Moves the working tree, stage and HEAD to `target`. Refuses when local changes would be
    /// lost, unless `force`.
    public func checkout(_ target: ObjectID, newHead: Refs.Head, force: Bool, progress: ProgressSink?,
                         prepared: [String: (id: ObjectID, file: Materializer.Prepared)] = [:],
                         beforeMovingHead: () throws -> Void = {}) throws -> CheckoutSummary {
        let targetFiles = try store.flatten(tree: try store.commit(target).tree)
        let staged = try store.index.stage()
        // Local changes to files that HEAD and the target have alike are carried over, as git
        // does: neither the file nor its stage entry is touched.
        var carried = Set<String>()
        if !force {
            let st = try status()
            let dirty = Set(st.staged.map(\.path) + st.unstaged.map(\.path))
            let headFiles = try headFiles()
            carried = dirty.filter { p in headFiles[p] != nil && headFiles[p]?.id == targetFiles[p]?.id
                && headFiles[p]?.kind == targetFiles[p]?.kind && headFiles[p]?.executable == targetFiles[p]?.executable }
            let inTheWay = dirty.filter { p in headFiles[p]?.id != targetFiles[p]?.id || headFiles[p] == nil }
                + st.untracked.filter { targetFiles[$0] != nil }
            if !inTheWay.isEmpty {
                let list = inTheWay.sorted().prefix(10).joined(separator: "\n  ")
                throw StoreError(.conflict, "checkout would overwrite local changes in \(inTheWay.count) path(s):\n  \(list)",
                                 hint: "commit them (`trove add` + `trove commit`), or use --force to discard them")
            }
        }
        var summary = CheckoutSummary()
        let toRemove = staged.keys.filter { targetFiles[$0] == nil }.sorted()
        for p in toRemove {
            unlink(top + "/" + p)
            pruneEmptyDirectories(above: p)
        }
        summary.removed = toRemove.count
        var toWrite: [(String, Tree.Entry)] = []
        var keep: [StageEntry] = []
        for (p, e) in targetFiles.sorted(by: { $0.key < $1.key }) {
            if carried.contains(p), let s = staged[p] {
                keep.append(s)
                continue
            }
            if let s = staged[p], s.id == e.id, s.executable == e.executable, s.kind == e.kind, !force,
               let fs = stat(p), Worktree.matches(s, fs) {
                keep.append(s)
                continue
            }
            if !sparse.isAll && !sparse.includes(p) {
                // Outside the sparse patterns: tracked, not written (and an old copy goes).
                if stat(p) != nil { unlink(top + "/" + p) }
                keep.append(StageEntry(path: p, kind: e.kind, executable: e.executable, id: e.id, size: e.size))
                continue
            }
            toWrite.append((p, e))
        }
        let total = toWrite.reduce(UInt64(0)) { $0 + $1.1.size }
        progress?.begin(total: total, label: "checking out")
        let m = Materializer(store: store, root: top)
        m.progress = progress
        m.prepared = prepared
        let written = try m.write(toWrite)
        progress?.end()
        let now = Worktree.now()
        var entries = keep
        for ((p, e), w) in zip(toWrite, written) {
            let racy = w.mtime >= now - Worktree.racyWindow
            entries.append(StageEntry(path: p, kind: e.kind, executable: e.executable, id: e.id, size: e.size,
                                      mtime: racy ? 0 : w.mtime, ctime: w.ctime, inode: w.inode, device: w.device))
        }
        try store.index.replaceStage(entries)
        try beforeMovingHead()
        try refs.setHead(newHead, message: "checkout: moving to \(target.short())")
        summary.written = toWrite.count
        summary.bytes = total
        return summary
    }

    /// Writes the files of `paths` (relative specs) from `tree` into the working tree and stages
    /// them; HEAD does not move.
    public func checkoutPaths(_ specs: [String], from treeID: ObjectID, progress: ProgressSink?) throws -> Int {
        let files = try store.flatten(tree: treeID)
        var toWrite: [(String, Tree.Entry)] = []
        for spec in specs {
            let hits = files.filter { Worktree.within($0.key, spec) }
            if hits.isEmpty { throw StoreError(.notFound, "pathspec \(spec) did not match any file in that commit") }
            toWrite.append(contentsOf: hits.map { ($0.key, $0.value) })
        }
        toWrite.sort { $0.0 < $1.0 }
        let m = Materializer(store: store, root: top)
        m.progress = progress
        progress?.begin(total: toWrite.reduce(0) { $0 + $1.1.size }, label: "checking out")
        let written = try m.write(toWrite)
        // Paths checked out by name join a sparse tree's patterns.
        if !sparse.isAll { try sparse.adding(specs.map { $0.isEmpty ? "**" : $0 }).save(store: store.root) }
        progress?.end()
        let now = Worktree.now()
        let entries = zip(toWrite, written).map { item, w in
            StageEntry(path: item.0, kind: item.1.kind, executable: item.1.executable, id: item.1.id, size: item.1.size,
                       mtime: w.mtime >= now - Worktree.racyWindow ? 0 : w.mtime, ctime: w.ctime, inode: w.inode, device: w.device)
        }
        try store.index.updateStage(entries)
        return toWrite.count
    }
}

/// `.troveignore` at the top of the working tree: one glob a line; `#` comments; a pattern
/// with no `/` matches a name at any depth; a leading `/` anchors it to the top; a trailing
/// `/` matches only folders; `!` re-includes.
public struct IgnoreRules: Sendable {
    struct Rule: Sendable { var pattern: String; var anchored: Bool; var directoryOnly: Bool; var negated: Bool }
    var rules: [Rule] = []

    public static func load(top: String) throws -> IgnoreRules {
        let path = top + "/.troveignore"
        guard FileIO.exists(path) else { return IgnoreRules() }
        var r = IgnoreRules()
        for line in try FileIO.readText(path).split(separator: "\n") {
            var p = line.trimmingCharacters(in: " \t\r")
            if p.isEmpty || p.hasPrefix("#") { continue }
            let negated = p.hasPrefix("!")
            if negated { p.removeFirst() }
            let dirOnly = p.hasSuffix("/")
            if dirOnly { p.removeLast() }
            let anchored = p.contains("/")
            if p.hasPrefix("/") { p.removeFirst() }
            r.rules.append(Rule(pattern: p, anchored: anchored, directoryOnly: dirOnly, negated: negated))
        }
        return r
    }

    public var isEmpty: Bool { rules.isEmpty }

    public func ignores(_ rel: String, isDirectory: Bool) -> Bool {
        var ignored = false
        let name = FileIO.basename(rel)
        for rule in rules where !rule.directoryOnly || isDirectory {
            let subject = rule.anchored ? rel : name
            if fnmatch(rule.pattern, subject, rule.anchored ? FNM_PATHNAME : 0) == 0 { ignored = !rule.negated }
        }
        return ignored
    }
}
