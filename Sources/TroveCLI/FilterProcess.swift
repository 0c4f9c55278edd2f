import ArgumentParser
import Foundation
import Glibc
import TroveCore
import TroveGit
import TroveRuns
import TroveStore
import TroveSync

extension TroveCommand {
    struct FilterProcessCmd: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "filter-process",
            abstract: "git's long-running filter (filter.trove.process); git starts it.",
            discussion: """
                Speaks git's filter protocol version 2 on standard input and output (clean, smudge, \
                delay). TROVE_SKIP_SMUDGE=1 checks out pointers instead of content. Content missing \
                from the store is fetched from the Trove remote of the current branch's git remote.
                """,
            shouldDisplay: false)
        @OptionGroup var options: StoreOptions

        func run() throws {
            signal(SIGPIPE, SIG_IGN)
            let git = try GitMode.require(options, autoInstall: true)
            let lock = try git.store.lock()
            defer { _ = lock }
            let progress = TerminalProgress.make(quiet: options.quiet)
            let filter = FilterProcess(store: git.store) { items in
                _ = try git.fetch(items.map { ($0.path, $0.pointer) }, progress: progress)
            }
            let env = ProcessInfo.processInfo.environment
            filter.skipSmudge = ["1", "true", "yes"].contains(env["TROVE_SKIP_SMUDGE"] ?? "")
            filter.sparse = (try? PathFilter.load(store: git.store.root)) ?? .all
            // Small files are stored beside git only where the files stay in the working tree.
            filter.storeInBackground = GitInvocation.keepsWorkTree()
            // Large files are written by Trove itself when git is done, if the git command
            // writes the working tree (Docs/git.md §Large files).
            let configured = git.store.config["git.defer-min"].flatMap { UInt64($0) } ?? (8 << 20)
            let wanted = env["TROVE_DEFER"].map { $0 != "0" } ?? GitInvocation.writesWorkTree()
            if wanted, configured > 0, !filter.skipSmudge {
                filter.deferMinimum = configured
                filter.onFinish = { files in
                    try git.materialise(git.pointerFiles(files), progress: progress, indexRequired: false)
                }
            }
            try filter.run()
        }
    }
}
