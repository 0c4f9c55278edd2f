import CGit2

/// The git repository around a path, read in-process with libgit2.
public struct GitRepository: Sendable {
    /// The `.git` directory.
    public var gitDirectory: String
    /// The working tree's top; nil for a bare repository.
    public var workTree: String?

    /// Finds the repository containing `path`, or nil when there is none.
    public static func discover(from path: String) -> GitRepository? {
        git_libgit2_init()
        defer { git_libgit2_shutdown() }
        var buf = git_buf()
        defer { git_buf_dispose(&buf) }
        guard git_repository_discover(&buf, path, 0, nil) == 0, let ptr = buf.ptr else { return nil }
        let gitDir = String(cString: ptr)
        var repo: OpaquePointer?
        guard git_repository_open(&repo, gitDir) == 0, let repo else { return nil }
        defer { git_repository_free(repo) }
        let work = git_repository_workdir(repo).map { String(cString: $0) }
        func trim(_ s: String) -> String { s.count > 1 && s.hasSuffix("/") ? String(s.dropLast()) : s }
        return GitRepository(gitDirectory: trim(gitDir), workTree: work.map(trim))
    }
}
