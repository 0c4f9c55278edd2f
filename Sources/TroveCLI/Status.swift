import ArgumentParser
import TroveStore

extension TroveCommand {
    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show staged, unstaged and untracked changes.",
            discussion: "Exit status is 0 whether or not there are changes; use --json to read them.")

        @Flag(help: "Print as JSON.") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
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
