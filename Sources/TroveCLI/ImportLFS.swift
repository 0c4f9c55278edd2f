import ArgumentParser
import Foundation
import Glibc
import TroveCore
import TroveGit
import TroveRuns
import TroveStore
import TroveSync

extension TroveCommand {
    struct ImportLFS: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import-lfs",
            abstract: "Move a Git LFS repository's content into Trove, without rewriting history.",
            discussion: """
                Stores every object of .git/lfs/objects in the Trove store (each checked against its \
                SHA-256 name; a damaged one is reported and left alone), switches .gitattributes \
                lines from filter=lfs to filter=trove (commit that change), and keeps git-lfs's own \
                hooks aside (export-lfs puts them back). Pointers are the same bytes in both tools, \
                so no commit changes. .git/lfs/objects is left in place: delete it once pushed.
                """)
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            let git = try GitMode.require(options)
            let r = try LFSMigration.importLFS(repo: git.repo, store: git.store, progress: options.progress)
            if json {
                try Console.json(["objects": r.objects, "bytes": r.bytes, "corrupt": r.corrupt, "gitattributes_lines": r.attributeLines, "lfs_hooks": r.hooks])
            } else if !options.quiet {
                Console.out("Imported \(r.objects) object(s) (\(Format.bytes(r.bytes))) from \(LFSMigration.objectsDirectory(git.repo))")
                Console.out("  .gitattributes: \(r.attributeLines) line(s) now filter=trove; commit the change")
                if !r.hooks.isEmpty { Console.out("  git-lfs hooks set aside: \(r.hooks.joined(separator: ", "))") }
            }
            if !r.corrupt.isEmpty {
                Console.err("trove: \(r.corrupt.count) LFS object(s) do not match their name and were not imported: \(r.corrupt.prefix(5).joined(separator: ", "))")
                throw CommandFailed(code: TroveCLI.ExitStatus.integrity)
            }
        }
    }
}
