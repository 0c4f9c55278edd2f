import Glibc
import TroveStore

/// The git command a filter process serves, read from /proc: the nearest `git` ancestor's
/// arguments. Used only to decide whether smudge answers land in the working tree (then
/// large files may be written by Trove directly); unknown means no.
public enum GitInvocation {
    /// Subcommands whose smudged output git writes into working-tree files.
    static let writingWorkTree: Set<String> = [
        "checkout", "switch", "clone", "reset", "stash", "merge", "pull", "rebase", "restore",
        "worktree", "cherry-pick", "revert",
    ]

    /// Subcommands that clean files and leave them in place: the working tree still holds the
    /// content while the filter makes its objects durable.
    static let keepingWorkTree: Set<String> = ["add", "commit", "status", "diff", "diff-files", "diff-index", "update-index", "mv", "rm"]

    /// The subcommands of the git ancestors, nearest first (`checkout` for
    /// `git -c x=y checkout main`; an empty string for a git whose subcommand is not seen).
    public static func subcommands(from pid: pid_t = getppid()) -> [String] {
        var out: [String] = []
        var p = pid
        for _ in 0..<8 where p > 1 {
            let args = arguments(of: p)
            if let first = args.first, FileIO.basename(first) == "git" || FileIO.basename(first).hasPrefix("git-") {
                out.append(subcommand(args))
            }
            p = parent(of: p)
        }
        return out
    }

    public static func subcommand(_ args: [String]) -> String {
        let program = FileIO.basename(args[0])
        if program.hasPrefix("git-") { return String(program.dropFirst(4)) }
        var i = 1
        while i < args.count {
            let a = args[i]
            if ["-c", "-C", "--exec-path", "--namespace", "--git-dir", "--work-tree", "--config-env"].contains(a) { i += 2; continue }
            if a.hasPrefix("-") { i += 1; continue }
            return a
        }
        return ""
    }

    /// Whether the serving git command writes smudged content into the working tree.
    public static func writesWorkTree() -> Bool {
        subcommands().first.map { writingWorkTree.contains($0) } ?? false
    }

    /// Whether every git command up the chain leaves cleaned files in place (not `stash`,
    /// which cleans and then resets the working tree, nor anything unknown).
    public static func keepsWorkTree() -> Bool {
        let all = subcommands()
        return !all.isEmpty && all.allSatisfy { keepingWorkTree.contains($0) }
    }

    static func arguments(of pid: pid_t) -> [String] {
        guard let bytes = try? FileIO.readFile("/proc/\(pid)/cmdline") else { return [] }
        return bytes.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
    }

    static func parent(of pid: pid_t) -> pid_t {
        guard let text = try? FileIO.readText("/proc/\(pid)/status") else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("PPid:") {
            return pid_t(line.dropFirst(5).trimmingCharacters(in: .whitespaces)) ?? 0
        }
        return 0
    }
}
