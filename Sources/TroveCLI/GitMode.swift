import Foundation
import Glibc
import TroveCore
import TroveGit
import TroveStore
import TroveSync

/// The code a run uses: the enclosing git working tree's HEAD and its uncommitted diff
/// (nil, nil outside git). `warn`: say so on stderr when the tree is dirty.
func codeVersion(at cwd: String, warn: Bool) throws -> (commit: String?, diff: [UInt8]?) {
    guard let repo = GitRepository.discover(from: cwd), repo.workTree != nil, let head = repo.resolveCommit("HEAD") else { return (nil, nil) }
    let diff = try repo.workTreeDiff()
    if warn, !diff.isEmpty {
        Console.err("warning: the working tree differs from \(head.hex.prefix(12)); the diff is recorded with the run (code.diff)")
    }
    return (head.hex, diff)
}

/// A git working tree with Trove installed (`trove install`): the repository, read through
/// libgit2, and the store in `.git/trove` (shared by its worktrees). Docs/git.md.
struct GitMode {
    let repo: GitRepository
    let store: Store
    var top: String { repo.workTree ?? repo.commonDirectory }

    static let enabledKey = "git.enabled"

    /// The git repository around `cwd`, when Trove is installed in it.
    static func detect(_ options: StoreOptions) throws -> GitMode? {
        guard ProcessInfo.processInfo.environment["TROVE_DIR"] == nil,
              let repo = GitRepository.discover(from: options.cwd), let top = repo.workTree,
              FileIO.exists(repo.storeRoot + "/config"), !standaloneStore(between: options.cwd, and: top)
        else { return nil }
        let store = try Store.open(root: repo.storeRoot, workTree: top)
        guard store.config[enabledKey] == "true" else { return nil }
        return GitMode(repo: repo, store: store)
    }

    /// `autoInstall`: the filter runs in a clone made with the global config (`trove install
    /// --global`): set up the store and hooks there, as `trove install` would.
    static func require(_ options: StoreOptions, autoInstall: Bool = false) throws -> GitMode {
        if let g = try detect(options) { return g }
        guard let repo = GitRepository.discover(from: options.cwd), let top = repo.workTree else {
            throw StoreError(.notFound, "\(options.cwd) is not in a git working tree", hint: "run this inside a git repository (or `git init` one)")
        }
        if autoInstall, ProcessInfo.processInfo.environment["TROVE_DIR"] == nil {
            let store = FileIO.exists(repo.storeRoot + "/config") ? try Store.open(root: repo.storeRoot, workTree: top)
                : try Store.initialize(root: repo.storeRoot, workTree: top)
            try store.setConfig(enabledKey, "true")
            _ = try GitInstall.install(repo, config: false)
            return GitMode(repo: repo, store: store)
        }
        throw StoreError(.notAStore, "Trove is not installed in the git repository \(repo.workTree!)", hint: "run `trove install` there first")
    }

    /// A `.trove` store between `cwd` and the git top wins over `.git/trove`.
    static func standaloneStore(between cwd: String, and top: String) -> Bool {
        var dir = cwd
        while dir.count >= top.count {
            if FileIO.exists(dir + "/\(Store.directoryName)/config") { return true }
            if dir == top || dir == "/" { break }
            dir = FileIO.dirname(dir)
        }
        return false
    }

    // MARK: remotes

    /// The Trove remote for git remote `name` (default: the current branch's remote, else
    /// origin): `trove remote add NAME URL` wins; else, for a git remote on a path or over
    /// SSH, the store `trove` inside that repository (`repo.git/trove`, `repo/.git/trove`).
    func troveRemote(_ name: String?) throws -> (name: String?, url: String, derived: Bool) {
        let n = name ?? repo.currentBranch().flatMap { repo.config("branch.\($0).remote") } ?? "origin"
        if let u = Remotes.url(store, n) { return (n, u, false) }
        // Committed with the project, as git-lfs's .lfsconfig: every clone finds the remote.
        if FileIO.exists(top + "/.troveconfig"), let u = try GitConfigFile(path: top + "/.troveconfig").get("remote.\(n).url") {
            return (n, u, false)
        }
        let gitURL = repo.remoteURL(n) ?? ((n.contains("/") || n.contains(":")) ? n : nil)
        guard let gitURL else {
            throw StoreError(.notFound, "no Trove remote \(n), and no git remote of that name to derive one from",
                             hint: "add one: `trove remote add \(n) URL` (a daemon https://host/project, a path, or ssh://host/path)")
        }
        guard let derived = GitMode.storeURL(forGitURL: gitURL, base: top) else {
            throw StoreError(.notFound, "git remote \(n) (\(gitURL)) is served over HTTP; Trove cannot guess where its artifacts go",
                             hint: "point it at a Trove daemon or store: `trove remote add \(n) URL`")
        }
        return (repo.remoteURL(n) != nil ? n : nil, derived, true)
    }

    /// Where the Trove store of a git remote is, for path and SSH remotes.
    static func storeURL(forGitURL url: String, base: String) -> String? {
        if url.hasPrefix("http://") || url.hasPrefix("https://") || url.hasPrefix("git://") { return nil }
        var u = url
        while u.hasSuffix("/") { u.removeLast() }
        if u.hasPrefix("file://") { u = String(u.dropFirst(7)) }
        if u.hasPrefix("ssh://") { return u + "/trove" }
        if let colon = u.firstIndex(of: ":"), !u.hasPrefix("/"), !u[..<colon].contains("/") { return u + "/trove" }
        let path = FileIO.absolute(u, base: base)
        if FileIO.isDirectory(path + "/.git") { return path + "/.git/trove" }
        return path + "/trove"
    }

    func openRemote(_ url: String, createIfMissing: Bool) throws -> Remote {
        if createIfMissing, !url.contains("://") || url.hasPrefix("file://"), !FileIO.exists(url + "/config"), url.hasPrefix("/") {
            // A path remote next to a bare git repository: made on first push, like git's.
            _ = try SharedStore.create(root: url, parameters: store.parameters)
        }
        return try Remotes.open(url, store: store)
    }

    // MARK: content

    /// Brings the content of `pointers` from the Trove remote; an error names the files no
    /// remote has.
    func fetch(_ pointers: [(path: String, pointer: LFSPointer)], remote name: String? = nil, progress: ProgressSink?) throws -> TransferStats {
        let wanted = try pointers.filter { try !isComplete($0.pointer) }
        guard !wanted.isEmpty else { return TransferStats() }
        let (rname, url, _) = try troveRemote(name)
        let remote = try openRemote(url, createIfMissing: false)
        defer { remote.close() }
        let fetcher = Fetcher(store: store, remote: remote, remoteName: rname)
        fetcher.progress = progress
        let (stats, absent) = try fetcher.fetchBlobs(wanted.map(\.pointer.oid))
        if !absent.isEmpty {
            let set = Set(absent)
            let paths = wanted.filter { set.contains($0.pointer.oid) }.map(\.path)
            throw SyncError(.notFound, "the Trove remote \(rname ?? url) does not have the content of \(paths.count) file(s): \(paths.prefix(5).joined(separator: ", "))\(paths.count > 5 ? ", ..." : "")",
                            hint: "push it from a clone that has it (`trove push`), or check out with TROVE_SKIP_SMUDGE=1 to keep pointers")
        }
        return stats
    }

    func isComplete(_ p: LFSPointer) throws -> Bool { try store.hasContent(ofBlob: p.oid) }

    /// The tracked files whose working-tree file is still the pointer git holds.
    func pointerFiles(_ pointers: [String: LFSPointer]) -> [String: LFSPointer] {
        pointers.filter { path, p in
            let full = top + "/" + path
            let text = p.encode()
            guard let size = FileIO.fileSize(full), size == UInt64(text.count), size != p.size || p.size == 0 else { return false }
            return (try? FileIO.readFile(full)) == text
        }
    }

    /// Replaces pointer files by their content (the restore pipeline: parallel, verified,
    /// temp file and rename; the executable bit kept), then records their new stat data in the
    /// git index where it still holds the pointer. Returns the files and bytes written.
    @discardableResult
    func materialise(_ files: [String: LFSPointer], progress: ProgressSink?, indexRequired: Bool = true) throws -> (files: Int, bytes: UInt64) {
        var entries: [(String, Tree.Entry)] = []
        for (path, p) in files.sorted(by: { $0.key < $1.key }) where p.size > 0 {
            var st = stat()
            guard lstat(top + "/" + path, &st) == 0 else { continue }
            entries.append((path, Tree.Entry(name: FileIO.basename(path), kind: .file, executable: st.st_mode & 0o111 != 0, id: p.oid, size: p.size)))
        }
        guard !entries.isEmpty else { return (0, 0) }
        let m = Materializer(store: store, root: top)
        m.progress = progress
        progress?.begin(total: entries.reduce(0) { $0 + $1.1.size }, label: "writing")
        _ = try m.write(entries)
        progress?.end()
        // git compares content for a file whose mtime is not older than the index file
        // ("racily clean"): with whole seconds, a file written just before the index is.
        // One second back keeps `git status` and the next checkout from cleaning it again.
        var times = [timespec(tv_sec: time(nil) - 1, tv_nsec: 0), timespec(tv_sec: time(nil) - 1, tv_nsec: 0)]
        for (path, _) in entries { _ = utimensat(AT_FDCWD, top + "/" + path, &times, 0) }
        let expected = Dictionary(uniqueKeysWithValues: entries.map { ($0.0, GitRepository.blobID(of: files[$0.0]!.encode())) })
        do {
            try repo.refreshIndex(entries.map(\.0), expected: expected)
        } catch where !indexRequired {
            Console.err("warning: \(error); `git status` will re-read the files once")
        }
        return (entries.count, entries.reduce(0) { $0 + $1.1.size })
    }

    /// Matches paths against --include (any; none: all) and --exclude (none) patterns.
    static func filter(include: [String], exclude: [String]) -> (String) -> Bool {
        let inc = PathFilter(include), exc = PathFilter(exclude)
        return { path in inc.includes(path) && (exclude.isEmpty || !exc.includes(path)) }
    }

    /// Fetches the content of the tracked files of git revisions (within the patterns).
    func fetchContent(revs: [String], remote: String?, include: [String], exclude: [String], progress: ProgressSink?) throws -> TransferStats {
        let snaps = GitSnapshots(repo: repo, store: store)
        let keep = GitMode.filter(include: include, exclude: exclude)
        var items: [(path: String, pointer: LFSPointer)] = []
        for rev in revs {
            guard let c = repo.resolveCommit(rev) else {
                throw StoreError(.notFound, "\(rev) is not a git revision here", hint: "see `git log` and `git branch -a`")
            }
            items += try snaps.pointers(of: c).filter { keep($0.key) }.map { ($0.key, $0.value) }
        }
        return try fetch(items, remote: remote, progress: progress)
    }

    enum FileState: String { case ok, modified, pointer, deleted, notStored = "not-stored" }

    /// Every path of the git index that Trove tracks, with what differs from the index:
    /// modified in the working tree, still a pointer, deleted, or content not in the store.
    func trackedFileStates() throws -> [(path: String, state: FileState, size: UInt64)] {
        var out: [(path: String, state: FileState, size: UInt64)] = []
        for e in try repo.indexEntries() where repo.isTracked(e.path) {
            guard let bytes = try repo.smallBlob(e.blob), let p = try? LFSPointer.parse(bytes) else {
                out.append((e.path, .modified, UInt64(e.size)))
                continue
            }
            var st = stat()
            let full = top + "/" + e.path
            guard lstat(full, &st) == 0 else { out.append((e.path, .deleted, p.size)); continue }
            let same = UInt32(truncatingIfNeeded: st.st_size) == e.size && Int64(st.st_mtim.tv_sec) == e.mtime
                && UInt32(st.st_mtim.tv_nsec) == e.mtimeNanos
            let text = p.encode()
            if st.st_size == text.count, p.size != UInt64(text.count), (try? FileIO.readFile(full)) == text {
                out.append((e.path, .pointer, p.size))
            } else if !same && (UInt64(st.st_size) != p.size || (try? Worktree.hashFile(full)) != p.oid) {
                out.append((e.path, .modified, UInt64(st.st_size)))
            } else {
                out.append((e.path, try isComplete(p) ? .ok : .notStored, p.size))
            }
        }
        return out
    }

    // MARK: snapshots and push

    /// Whether a snapshot (and so its whole history) has no tracked file.
    func tracksNothing(_ snapshot: ObjectID) throws -> Bool {
        var stack = [snapshot]
        var seen = Set<ObjectID>()
        while let id = stack.popLast() {
            guard seen.insert(id).inserted else { continue }
            let c = try store.commit(id)
            if !(try store.tree(c.tree)).entries.isEmpty { return false }
            stack += c.parents
        }
        return true
    }

    /// The snapshot of a git commit, made (and made durable) when missing.
    func snapshot(of commit: GitOID) throws -> ObjectID {
        let snaps = GitSnapshots(repo: repo, store: store)
        let writer = ObjectWriter(store: store)
        let id = try snaps.snapshot(of: commit, writer: writer)
        try writer.finish()
        for s in snaps.skipped { Console.err("warning: \(s.path) is not a valid pointer, left out of the snapshot: \(s.why)") }
        return id
    }

    /// Pushes the snapshots of git commits to the Trove remote as the refs git pushes them to
    /// (`refs/heads/main` → `heads/main`). An update is forced exactly when git's is.
    func push(_ items: [(local: GitOID, remoteRef: String, remoteOld: GitOID?)], remote name: String?, progress: ProgressSink?) throws -> (Pusher.Result, String) {
        let (rname, url, derived) = try troveRemote(name)
        var specs: [RefSpec] = []
        for item in items {
            let ref = item.remoteRef.hasPrefix("refs/") ? String(item.remoteRef.dropFirst(5)) : item.remoteRef
            try Refs.validate(ref)
            let s = try snapshot(of: item.local)
            var force = false
            if let old = item.remoteOld, !old.isZero {
                if repo.hasObject(old) {
                    // Their snapshot is the one computed here for the same commit.
                    if repo.isAncestor(old, of: item.local) { _ = try snapshot(of: old) } else { force = true }
                } else {
                    force = true
                }
            }
            specs.append(RefSpec(source: "git:\(item.local.hex.prefix(12))", destination: ref, force: force, id: s))
        }
        let remote = try openRemote(url, createIfMissing: derived)
        defer { remote.close() }
        let pusher = Pusher(store: store, remote: remote, remoteName: rname)
        pusher.progress = progress
        return (try pusher.push(specs), rname ?? url)
    }
}
