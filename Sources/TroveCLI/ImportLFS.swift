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
            try LFSMigrationOutput.show(r, json: json, quiet: options.quiet, problemsKey: "corrupt", problems: r.corrupt, lines: [
                "Imported \(r.objects) object(s) (\(Format.bytes(r.bytes))) from \(LFSMigration.objectsDirectory(git.repo))",
                "  .gitattributes: \(r.attributeLines) line(s) now filter=trove; commit the change",
            ] + (r.hooks.isEmpty ? [] : ["  git-lfs hooks set aside: \(r.hooks.joined(separator: ", "))"]))
            if !r.corrupt.isEmpty {
                Console.err("trove: \(r.corrupt.count) LFS object(s) do not match their name and were not imported: \(r.corrupt.prefix(5).joined(separator: ", "))")
                throw CommandFailed(code: TroveCLI.ExitStatus.integrity)
            }
        }
    }
}

/// What import-lfs and export-lfs print: the same JSON shape (`corrupt` or `missing` for
/// the objects that could not move), or the given lines.
enum LFSMigrationOutput {
    static func show(_ r: LFSMigration.Report, json: Bool, quiet: Bool, problemsKey: String, problems: [String], lines: [String]) throws {
        if json {
            try Console.json(["objects": r.objects, "bytes": r.bytes, problemsKey: problems, "gitattributes_lines": r.attributeLines, "lfs_hooks": r.hooks])
        } else if !quiet {
            for l in lines { Console.out(l) }
        }
    }
}
