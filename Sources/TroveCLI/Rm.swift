import ArgumentParser
import TroveStore

extension TroveCommand {
    struct Rm: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Unstage files and delete them from the working tree.")

        @Argument(help: "Files or folders.") var paths: [String]
        @Flag(name: .shortAndLong, help: "Remove folders recursively.") var recursive = false
        @Flag(help: "Only unstage; keep the files on disk.") var cached = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            let wt = try options.worktree()
            let specs = try paths.map { try wt.relative($0, cwd: options.cwd) }
            let lock = try wt.store.lock()
            defer { _ = lock }
            for p in try wt.remove(specs, keepFiles: cached, recursive: recursive) where !options.quiet {
                Console.out("rm \(p)")
            }
        }
    }
}
