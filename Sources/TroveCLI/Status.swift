import ArgumentParser
import TroveStore

extension TroveCommand {
    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show staged, unstaged and untracked changes.",
            discussion: """
                Exit status is 0 whether or not there are changes; use --json to read them. In a \
                git repository with Trove installed: each tracked file of the git index as ok, \
                modified, pointer (content not checked out), deleted or not-stored (Docs/git.md).
                """)

        @Flag(help: "Print as JSON.") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            if let git = try GitMode.detect(options) { return try gitStatus(git) }
            let s = try options.worktree().status()
            if json {
                try Console.json([
                    "branch": s.branch as Any? ?? NSNullValue.null,
                    "head": s.head?.hex as Any? ?? NSNullValue.null,
                    "staged": s.staged.map { ["path": $0.path, "change": $0.change.rawValue] },
                    "unstaged": s.unstaged.map { ["path": $0.path, "change": $0.change.rawValue] },
                    "untracked": s.untracked,
                    "clean": s.isClean,
                ])
                return
            }
            Console.out(s.branch.map { "On branch \($0)" } ?? "HEAD detached at \(s.head?.short() ?? "?")")
            if s.head == nil { Console.out("No commits yet") }
            if s.isClean { Console.out("nothing to commit, working tree clean"); return }
            if !s.staged.isEmpty {
                Console.out("Changes to be committed:")
                for c in s.staged { Console.out("  \(c.change.rawValue.padding(toLength: 13, withPad: " ", startingAt: 0)) \(c.path)") }
            }
            if !s.unstaged.isEmpty {
                Console.out("Changes not staged (use `trove add`):")
                for c in s.unstaged { Console.out("  \(c.change.rawValue.padding(toLength: 13, withPad: " ", startingAt: 0)) \(c.path)") }
            }
            if !s.untracked.isEmpty {
                Console.out("Untracked files (use `trove add`):")
                for p in s.untracked.prefix(200) { Console.out("  \(p)") }
                if s.untracked.count > 200 { Console.out("  … and \(s.untracked.count - 200) more") }
            }
        }
    }
}

/// JSON null for heterogeneous dictionaries.
enum NSNullValue {
    static var null: Any { Foundation.NSNull() }
}

import Foundation

extension TroveCommand.Status {
    /// Git mode: what `git status` cannot tell about the tracked files.
    func gitStatus(_ git: GitMode) throws {
        let report = try git.trackedFileStates()
        if json {
            try Console.json(["branch": git.repo.currentBranch() as Any? ?? NSNullValue.null,
                              "files": report.map { ["path": $0.path, "state": $0.state.rawValue, "size": $0.size] as [String: Any] }])
            return
        }
        Console.out(git.repo.currentBranch().map { "On branch \($0) (git)" } ?? "HEAD detached (git)")
        let notable = report.filter { $0.state != .ok }
        if notable.isEmpty {
            Console.out("\(report.count) tracked file(s): content stored and checked out")
            return
        }
        for f in notable { Console.out("  \(f.state.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0)) \(f.path)") }
        Console.out("\(report.count) tracked file(s), \(notable.count) to look at (modified: `git add`; pointer: `trove pull`; not-stored: `trove fetch`)")
    }
}
