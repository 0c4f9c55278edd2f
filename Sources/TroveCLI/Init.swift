import ArgumentParser
import Foundation
import TroveCore
import TroveGit
import TroveStore
import TroveSync

extension TroveCommand {
    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a store.",
            discussion: """
                Inside a git repository the store is .git/trove (shared by its worktrees); elsewhere \
                it is .trove at the top of DIR. The chunker settings are fixed for the life of the store. \
                With --bare, DIR itself becomes a store to use as a remote (packs, refs and config \
                files only: safe on Lustre, GPFS and NFS).
                """)

        @Argument(help: "The working tree's top (default: the current folder, or the enclosing git repository).")
        var path: String?

        @Option(help: "Minimum chunk size in bytes.") var chunkMin = ChunkerParameters.default.minSize
        @Option(help: "Average chunk size in bytes (a power of two).") var chunkAvg = ChunkerParameters.default.avgSize
        @Option(help: "Maximum chunk size in bytes.") var chunkMax = ChunkerParameters.default.maxSize
        @Flag(help: "Create .trove even inside a git repository.") var standalone = false
        @Flag(help: "Make DIR itself a store without a working tree or SQLite index, to push to and fetch from (a shared file system's remote).")
        var bare = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            let dir = FileIO.absolute(path ?? ".", base: options.cwd)
            try FileIO.mkdirs(dir)
            let params = ChunkerParameters(minSize: chunkMin, avgSize: chunkAvg, maxSize: chunkMax)
            if bare {
                let store = try SharedStore.create(root: dir, parameters: params)
                if !options.quiet { Console.out("Initialized empty bare trove store in \(store.root) (chunks \(params))") }
                return
            }
            var root = dir + "/" + Store.directoryName
            var top = dir
            if !standalone, path == nil, let git = GitRepository.discover(from: dir), let work = git.workTree {
                root = git.gitDirectory + "/trove"
                top = work
            }
            let store = try Store.initialize(root: root, workTree: top, parameters: params)
            if !options.quiet { Console.out("Initialized empty trove store in \(store.root) (chunks \(params))") }
        }
    }
}
