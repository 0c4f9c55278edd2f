import CGit2
import Glibc
import TroveCore
import TroveStore

/// A git object id (SHA-1 repositories: 20 bytes; printed as 40 hex digits).
public struct GitOID: Hashable, Sendable, CustomStringConvertible {
    public var raw: git_oid

    public init(_ raw: git_oid) { self.raw = raw }

    public init?(hex: String) {
        var oid = git_oid()
        guard hex.utf8.count == 40, git_oid_fromstr(&oid, hex) == 0 else { return nil }
        raw = oid
    }

    public var hex: String {
        var r = raw
        var buf = [CChar](repeating: 0, count: 41)
        git_oid_tostr(&buf, 41, &r)
        return String(cString: buf)
    }

    public var isZero: Bool {
        var r = raw
        return git_oid_is_zero(&r) == 1
    }

    public var description: String { hex }

    public static func == (a: GitOID, b: GitOID) -> Bool {
        var x = a.raw, y = b.raw
        return git_oid_cmp(&x, &y) == 0
    }

    public func hash(into h: inout Hasher) { withUnsafeBytes(of: raw) { h.combine(bytes: $0) } }
}

/// What Trove reads of a git commit.
public struct GitCommitInfo: Sendable {
    public var id: GitOID
    public var tree: GitOID
    public var parents: [GitOID]
    public var author: String
    public var time: Int64
    public var offsetMinutes: Int16
    public var message: String
}

public enum GitEntryKind: Sendable { case tree, file, executable, other }

/// A file of a git tree.
public struct GitTreeFile: Sendable {
    public var path: String
    public var blob: GitOID
    public var executable: Bool
}

/// The git repository around a path, read in-process with libgit2. The `git` binary is only
/// what people (and tests) drive.
public final class GitRepository: @unchecked Sendable {
    /// The `.git` directory of this working tree (for a linked worktree, its own folder
    /// under the main repository's `.git/worktrees/`).
    public let gitDirectory: String
    /// The folder shared by all worktrees (`.git` of the main working tree): where the store lives.
    public let commonDirectory: String
    /// The working tree's top; nil for a bare repository.
    public let workTree: String?
    let handle: OpaquePointer

    static let initialized: Void = { git_libgit2_init(); return () }()

    private init(handle: OpaquePointer) {
        self.handle = handle
        func trim(_ s: String) -> String { s.count > 1 && s.hasSuffix("/") ? String(s.dropLast()) : s }
        gitDirectory = trim(String(cString: git_repository_path(handle)))
        commonDirectory = trim(String(cString: git_repository_commondir(handle)))
        workTree = git_repository_workdir(handle).map { trim(String(cString: $0)) }
    }

    deinit { git_repository_free(handle) }

    /// The repository containing `path`, or nil when there is none.
    public static func discover(from path: String) -> GitRepository? {
        _ = initialized
        // Hooks and filters run with GIT_DIR (and GIT_WORK_TREE) set by git: those win.
        if getenv("GIT_DIR") != nil {
            var repo: OpaquePointer?
            if git_repository_open_ext(&repo, nil, UInt32(GIT_REPOSITORY_OPEN_FROM_ENV.rawValue), nil) == 0, let repo {
                return GitRepository(handle: repo)
            }
        }
        var buf = git_buf()
        defer { git_buf_dispose(&buf) }
        guard git_repository_discover(&buf, path, 0, nil) == 0, let ptr = buf.ptr else { return nil }
        var repo: OpaquePointer?
        guard git_repository_open(&repo, ptr) == 0, let repo else { return nil }
        return GitRepository(handle: repo)
    }

    /// Where Trove keeps its store inside this repository (shared by all its worktrees).
    public var storeRoot: String { commonDirectory + "/trove" }

    static func lastError(_ what: String) -> String {
        guard let e = git_error_last(), let m = e.pointee.message else { return what }
        return "\(what): \(String(cString: m))"
    }

    // MARK: refs and commits

    /// The branch HEAD names (`main`), nil when detached or unborn-detached.
    public func currentBranch() -> String? {
        var ref: OpaquePointer?
        guard git_reference_lookup(&ref, handle, "HEAD") == 0, let ref else { return nil }
        defer { git_reference_free(ref) }
        guard git_reference_type(ref) == GIT_REFERENCE_SYMBOLIC, let target = git_reference_symbolic_target(ref) else { return nil }
        let name = String(cString: target)
        return name.hasPrefix("refs/heads/") ? String(name.dropFirst(11)) : nil
    }

    /// The commit a revision (`HEAD`, `main`, `v1~2`, a hex id) names, or nil.
    public func resolveCommit(_ rev: String) -> GitOID? {
        var obj: OpaquePointer?
        guard git_revparse_single(&obj, handle, rev) == 0, let obj else { return nil }
        defer { git_object_free(obj) }
        var peeled: OpaquePointer?
        guard git_object_peel(&peeled, obj, GIT_OBJECT_COMMIT) == 0, let peeled else { return nil }
        defer { git_object_free(peeled) }
        return GitOID(git_object_id(peeled).pointee)
    }

    public func hasObject(_ id: GitOID) -> Bool {
        var odb: OpaquePointer?
        guard git_repository_odb(&odb, handle) == 0, let odb else { return false }
        defer { git_odb_free(odb) }
        var raw = id.raw
        return git_odb_exists(odb, &raw) == 1
    }

    public func commit(_ id: GitOID) throws -> GitCommitInfo {
        var raw = id.raw
        var c: OpaquePointer?
        guard git_commit_lookup(&c, handle, &raw) == 0, let c else {
            throw StoreError(.notFound, GitRepository.lastError("git commit \(id.hex) is not in \(gitDirectory)"))
        }
        defer { git_commit_free(c) }
        let sig = git_commit_author(c)!.pointee
        let parents = (0..<git_commit_parentcount(c)).map { GitOID(git_commit_parent_id(c, $0).pointee) }
        return GitCommitInfo(
            id: id, tree: GitOID(git_commit_tree_id(c).pointee), parents: parents,
            author: "\(String(cString: sig.name)) <\(String(cString: sig.email))>",
            time: Int64(sig.when.time), offsetMinutes: Int16(sig.when.offset),
            message: git_commit_message(c).map { String(cString: $0) } ?? "")
    }

    /// Whether `ancestor` is `descendant` or one of its ancestors.
    public func isAncestor(_ ancestor: GitOID, of descendant: GitOID) -> Bool {
        if ancestor == descendant { return true }
        var a = ancestor.raw, d = descendant.raw
        return git_graph_descendant_of(handle, &d, &a) == 1
    }

    // MARK: trees and blobs

    /// Every file (blob entry, not submodules or symlinks) of a tree, with its full path.
    public func files(ofTree tree: GitOID) throws -> [GitTreeFile] {
        var out: [GitTreeFile] = []
        func walk(_ tree: GitOID, _ prefix: String) throws {
            for e in try entries(ofTree: tree) {
                switch e.kind {
                case .tree: try walk(e.id, prefix + e.name + "/")
                case .file, .executable: out.append(GitTreeFile(path: prefix + e.name, blob: e.id, executable: e.kind == .executable))
                case .other: continue
                }
            }
        }
        try walk(tree, "")
        return out
    }

    /// The entries of one tree: name, object, and whether it is a tree, a file, an executable file.
    public func entries(ofTree tree: GitOID) throws -> [(name: String, id: GitOID, kind: GitEntryKind)] {
        var raw = tree.raw
        var t: OpaquePointer?
        guard git_tree_lookup(&t, handle, &raw) == 0, let t else {
            throw StoreError(.notFound, GitRepository.lastError("git tree \(tree.hex)"))
        }
        defer { git_tree_free(t) }
        return (0..<git_tree_entrycount(t)).compactMap { i in
            guard let e = git_tree_entry_byindex(t, i) else { return nil }
            let kind: GitEntryKind
            switch git_tree_entry_filemode(e) {
            case GIT_FILEMODE_TREE: kind = .tree
            case GIT_FILEMODE_BLOB: kind = .file
            case GIT_FILEMODE_BLOB_EXECUTABLE: kind = .executable
            default: kind = .other
            }
            return (String(cString: git_tree_entry_name(e)), GitOID(git_tree_entry_id(e).pointee), kind)
        }
    }

    /// A blob's bytes when it is at most `limit` bytes long (pointers are < 1024), else nil.
    public func smallBlob(_ id: GitOID, limit: Int = 1024) throws -> [UInt8]? {
        var raw = id.raw
        // The size from the object header first: a large blob is never inflated to learn it.
        var odb: OpaquePointer?
        if git_repository_odb(&odb, handle) == 0, let odb {
            defer { git_odb_free(odb) }
            var length = 0
            var type = GIT_OBJECT_ANY
            let rc = git_odb_read_header(&length, &type, odb, &raw)
            if rc == GIT_ENOTFOUND.rawValue { return nil }  // a partial clone's missing blob: not a pointer here
            if rc == 0, length > limit { return nil }
        }
        var b: OpaquePointer?
        guard git_blob_lookup(&b, handle, &raw) == 0, let b else {
            throw StoreError(.notFound, GitRepository.lastError("git blob \(id.hex)"))
        }
        defer { git_blob_free(b) }
        let size = Int(git_blob_rawsize(b))
        guard size <= limit else { return nil }
        guard size > 0, let p = git_blob_rawcontent(b) else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: size))
    }

    // MARK: attributes, config, index

    /// The value of attribute `name` for `path` (repository-relative): "set", "unset", a value, or nil.
    public func attribute(_ name: String, path: String) -> String? {
        var value: UnsafePointer<CChar>?
        guard git_attr_get(&value, handle, UInt32(GIT_ATTR_CHECK_FILE_THEN_INDEX), path, name) == 0 else { return nil }
        switch git_attr_value(value) {
        case GIT_ATTR_VALUE_TRUE: return "set"
        case GIT_ATTR_VALUE_FALSE: return "unset"
        case GIT_ATTR_VALUE_STRING: return value.map { String(cString: $0) }
        default: return nil
        }
    }

    /// Whether `path` goes through the Trove filter (`filter=trove` in .gitattributes).
    public func isTracked(_ path: String) -> Bool { attribute("filter", path: path) == "trove" }

    /// A config value as git sees it (repository, global and system files).
    public func config(_ key: String) -> String? {
        var cfg: OpaquePointer?
        guard git_repository_config_snapshot(&cfg, handle) == 0, let cfg else { return nil }
        return GitConfigFile.string(key, snapshot: cfg)
    }

    /// The URL of git remote `name`.
    public func remoteURL(_ name: String) -> String? { config("remote.\(name).url") }

    /// Entries of the git index: path and the blob staged for it.
    public func indexEntries() throws -> [(path: String, blob: GitOID, size: UInt32, mtime: Int64, mtimeNanos: UInt32)] {
        var idx: OpaquePointer?
        guard git_repository_index(&idx, handle) == 0, let idx else {
            throw StoreError(.io, GitRepository.lastError("reading the git index of \(gitDirectory)"))
        }
        defer { git_index_free(idx) }
        var out: [(path: String, blob: GitOID, size: UInt32, mtime: Int64, mtimeNanos: UInt32)] = []
        for i in 0..<git_index_entrycount(idx) {
            guard let e = git_index_get_byindex(idx, i)?.pointee else { continue }
            guard (e.flags >> 12) & 3 == 0 else { continue } // conflict stages
            out.append((String(cString: e.path), GitOID(e.id), e.file_size, Int64(e.mtime.seconds), e.mtime.nanoseconds))
        }
        return out
    }
}

extension GitRepository {
    /// Records the current stat data of `paths` (repository-relative, unchanged content as git
    /// sees it: files Trove replaced a pointer with its content) in the git index, so that
    /// `git status` does not clean them again. Paths not in the index are skipped.
    /// `expected`: refresh a path only when its index entry holds this blob.
    public func refreshIndex(_ paths: [String], expected: [String: GitOID] = [:]) throws {
        guard let top = workTree, !paths.isEmpty else { return }
        // libgit2 1.5 does not write split indexes; git re-reads those files once instead.
        if config("core.splitIndex") == "true" { return }
        var idx: OpaquePointer?
        guard git_repository_index(&idx, handle) == 0, let idx else {
            throw StoreError(.io, GitRepository.lastError("reading the git index of \(gitDirectory)"))
        }
        defer { git_index_free(idx) }
        // The repository caches its index: read what git wrote since.
        guard git_index_read(idx, 0) == 0 else {
            throw StoreError(.io, GitRepository.lastError("reading the git index of \(gitDirectory)"))
        }
        var changed = false
        for path in paths {
            guard var e = git_index_get_bypath(idx, path, 0)?.pointee else { continue }
            if let want = expected[path], GitOID(e.id) != want { continue }
            var st = stat()
            guard lstat(top + "/" + path, &st) == 0 else { continue }
            e.ctime.seconds = Int32(truncatingIfNeeded: st.st_ctim.tv_sec)
            e.ctime.nanoseconds = UInt32(st.st_ctim.tv_nsec)
            e.mtime.seconds = Int32(truncatingIfNeeded: st.st_mtim.tv_sec)
            e.mtime.nanoseconds = UInt32(st.st_mtim.tv_nsec)
            e.dev = UInt32(truncatingIfNeeded: st.st_dev)
            e.ino = UInt32(truncatingIfNeeded: st.st_ino)
            e.uid = st.st_uid
            e.gid = st.st_gid
            e.file_size = UInt32(truncatingIfNeeded: st.st_size)
            guard git_index_add(idx, &e) == 0 else {
                throw StoreError(.io, GitRepository.lastError("updating \(path) in the git index"))
            }
            changed = true
        }
        if changed, git_index_write(idx) != 0 {
            throw StoreError(.io, GitRepository.lastError("writing the git index of \(gitDirectory)"),
                             hint: "if another git command is running, wait for it; `git status` still works, only slower")
        }
    }

    /// The working tree's changes to HEAD as a patch (index and unstaged changes of files git
    /// tracks; files routed through Trove's filter are left out: their content is in the
    /// store, not in a patch). Empty when the tree is clean.
    public func workTreeDiff() throws -> [UInt8] {
        var opts = git_status_options()
        git_status_options_init(&opts, UInt32(GIT_STATUS_OPTIONS_VERSION))
        opts.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR
        opts.flags = 0
        var list: OpaquePointer?
        guard git_status_list_new(&list, handle, &opts) == 0, let list else {
            throw StoreError(.io, GitRepository.lastError("reading the status of \(workTree ?? gitDirectory)"))
        }
        defer { git_status_list_free(list) }
        var paths: [String] = []
        for i in 0..<git_status_list_entrycount(list) {
            guard let e = git_status_byindex(list, i)?.pointee else { continue }
            let delta = e.head_to_index ?? e.index_to_workdir
            guard let d = delta?.pointee else { continue }
            let path = String(cString: (d.new_file.path ?? d.old_file.path)!)
            if !isTracked(path) { paths.append(path) }
        }
        guard !paths.isEmpty else { return [] }
        var head: OpaquePointer?
        var tree: OpaquePointer?
        if git_revparse_single(&head, handle, "HEAD^{tree}") == 0, let head { tree = head }
        defer { if let tree { git_object_free(tree) } }
        var dopts = git_diff_options()
        git_diff_options_init(&dopts, UInt32(GIT_DIFF_OPTIONS_VERSION))
        dopts.flags = GIT_DIFF_SHOW_BINARY.rawValue
        var cstrings = paths.map { strdup($0) }
        defer { for c in cstrings { free(c) } }
        var diff: OpaquePointer?
        let rc = cstrings.withUnsafeMutableBufferPointer { buf -> Int32 in
            dopts.pathspec = git_strarray(strings: buf.baseAddress, count: buf.count)
            dopts.flags |= GIT_DIFF_DISABLE_PATHSPEC_MATCH.rawValue
            return git_diff_tree_to_workdir_with_index(&diff, handle, tree, &dopts)
        }
        guard rc == 0, let diff else { throw StoreError(.io, GitRepository.lastError("diffing \(workTree ?? gitDirectory)")) }
        defer { git_diff_free(diff) }
        var out = git_buf()
        defer { git_buf_dispose(&out) }
        guard git_diff_to_buf(&out, diff, GIT_DIFF_FORMAT_PATCH) == 0, let p = out.ptr else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: out.size))
    }

    /// The id git gives a blob of these bytes.
    public static func blobID(of bytes: [UInt8]) -> GitOID {
        _ = initialized
        var oid = git_oid()
        _ = bytes.withUnsafeBytes { git_odb_hash(&oid, $0.baseAddress, $0.count, GIT_OBJECT_BLOB) }
        return GitOID(oid)
    }

    /// Commits reachable from `tips` (all local branches and tags when empty), newest first.
    public func reachableCommits(from tips: [GitOID]) throws -> [GitOID] {
        var walk: OpaquePointer?
        guard git_revwalk_new(&walk, handle) == 0, let walk else { throw StoreError(.io, GitRepository.lastError("walking history")) }
        defer { git_revwalk_free(walk) }
        if tips.isEmpty {
            _ = git_revwalk_push_glob(walk, "refs/heads")
            _ = git_revwalk_push_glob(walk, "refs/tags")
            _ = git_revwalk_push_head(walk)
        }
        for t in tips {
            var raw = t.raw
            _ = git_revwalk_push(walk, &raw)
        }
        var out: [GitOID] = []
        var oid = git_oid()
        while git_revwalk_next(&oid, walk) == 0 { out.append(GitOID(oid)) }
        return out
    }
}

/// A git config file to edit: the repository's (`.git/config`) or the user's (`~/.gitconfig`).
public final class GitConfigFile {
    let handle: OpaquePointer
    public let path: String

    public static func repository(_ repo: GitRepository) throws -> GitConfigFile {
        try GitConfigFile(path: repo.commonDirectory + "/config")
    }

    /// The user's global file, as `git config --global` picks it.
    public static func global() throws -> GitConfigFile {
        // git (2.32+) honours GIT_CONFIG_GLOBAL; libgit2 1.5 does not look at it.
        if let p = getenv("GIT_CONFIG_GLOBAL").map({ String(cString: $0) }), !p.isEmpty { return try GitConfigFile(path: p) }
        var buf = git_buf()
        defer { git_buf_dispose(&buf) }
        if git_config_find_global(&buf) == 0, let p = buf.ptr { return try GitConfigFile(path: String(cString: p)) }
        guard let home = getenv("HOME").map({ String(cString: $0) }) else {
            throw StoreError(.notFound, "no global git config: HOME is not set", hint: "set HOME, or install per repository without --global")
        }
        return try GitConfigFile(path: home + "/.gitconfig")
    }

    public init(path: String) throws {
        _ = GitRepository.initialized
        var cfg: OpaquePointer?
        guard git_config_open_ondisk(&cfg, path) == 0, let cfg else {
            throw StoreError(.io, GitRepository.lastError("opening git config \(path)"))
        }
        handle = cfg
        self.path = path
    }

    deinit { git_config_free(handle) }

    public func get(_ key: String) -> String? {
        var snap: OpaquePointer?
        guard git_config_snapshot(&snap, handle) == 0, let snap else { return nil }
        return GitConfigFile.string(key, snapshot: snap)
    }

    /// A string from a config snapshot (read-only: strings stay valid while it lives), which
    /// it then frees.
    static func string(_ key: String, snapshot: OpaquePointer) -> String? {
        defer { git_config_free(snapshot) }
        var out: UnsafePointer<CChar>?
        guard git_config_get_string(&out, snapshot, key) == 0, let out else { return nil }
        return String(cString: out)
    }

    public func set(_ key: String, _ value: String) throws {
        guard git_config_set_string(handle, key, value) == 0 else {
            throw StoreError(.io, GitRepository.lastError("setting \(key) in \(path)"))
        }
    }

    public func remove(_ key: String) throws {
        let rc = git_config_delete_entry(handle, key)
        guard rc == 0 || rc == GIT_ENOTFOUND.rawValue else {
            throw StoreError(.io, GitRepository.lastError("removing \(key) from \(path)"))
        }
    }
}
