import ArgumentParser
import Foundation
import Glibc
import TroveCore
import TroveGit
import TroveRuns
import TroveStore
import TroveSync

extension TroveCommand {
    struct LsFiles: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ls-files",
            abstract: "List the files a git revision tracks with Trove.",
            discussion: """
                One line per pointer in REV's tree: whether the content is in the local store \
                (`*` yes, `-` no), whether the working-tree file holds the content or is still a \
                pointer, the size, the id (the LFS oid) and the path.
                """)
        @Argument(help: "A git revision (default: HEAD).") var rev = "HEAD"
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            let git = try GitMode.require(options)
            guard let commit = git.repo.resolveCommit(rev) else {
                throw StoreError(.notFound, "\(rev) is not a git revision here", hint: "see `git log`")
            }
            let pointers = try GitSnapshots(repo: git.repo, store: git.store).pointers(of: commit)
            let stillPointers = git.pointerFiles(pointers)
            var rows: [[String: Any]] = []
            for (path, p) in pointers.sorted(by: { $0.key < $1.key }) {
                let present = try git.isComplete(p)
                let state = stillPointers[path] != nil ? "pointer" : FileIO.exists(git.top + "/" + path) ? "materialised" : "absent"
                rows.append(["path": path, "oid": p.oid.hex, "size": p.size, "present": present, "worktree": state])
            }
            if json { try Console.json(["rev": rev, "commit": commit.hex, "files": rows]); return }
            for r in rows {
                let p = r["present"] as! Bool
                Console.out("\(p ? "*" : "-") \(String(describing: r["worktree"]!).padding(toLength: 12, withPad: " ", startingAt: 0)) \(Format.bytes(r["size"] as! UInt64).padding(toLength: 10, withPad: " ", startingAt: 0)) \(String((r["oid"] as! String).prefix(12)))  \(r["path"]!)")
            }
        }
    }
}
