import ArgumentParser
import Foundation
import Glibc
import TroveCore
import TroveGit
import TroveRuns
import TroveStore
import TroveSync

extension TroveCommand {
    struct ExportLFS: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "export-lfs",
            abstract: "Hand a repository back to Git LFS: content into .git/lfs/objects.",
            discussion: """
                Writes the content of every pointer in the history of the local branches and tags \
                into .git/lfs/objects (what the store has; missing content is listed), switches \
                .gitattributes back to filter=lfs and restores the git-lfs hooks import-lfs set \
                aside. Run `trove install --uninstall` afterwards to drop Trove's hooks.
                """)
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            let git = try GitMode.require(options)
            let r = try LFSMigration.exportLFS(repo: git.repo, store: git.store, progress: options.progress)
            try LFSMigrationOutput.show(r, json: json, quiet: options.quiet, problemsKey: "missing", problems: r.missing, lines: [
                "Exported \(r.objects) object(s) (\(Format.bytes(r.bytes))) to \(LFSMigration.objectsDirectory(git.repo))",
                "  .gitattributes: \(r.attributeLines) line(s) now filter=lfs; commit the change",
            ] + (r.hooks.isEmpty ? [] : ["  git-lfs hooks restored: \(r.hooks.joined(separator: ", "))"]))
            if !r.missing.isEmpty {
                Console.err("trove: the store lacks the content of \(r.missing.count) pointer(s): \(r.missing.prefix(5).joined(separator: ", "))")
                Console.err("hint: fetch the content of older revisions first: `trove fetch origin REV...`")
                throw CommandFailed(code: TroveCLI.ExitStatus.notFound)
            }
        }
    }
}
