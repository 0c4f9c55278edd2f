import ArgumentParser
import Foundation
import Glibc
import TroveCore
import TroveGit
import TroveRuns
import TroveStore
import TroveSync

extension TroveCommand {
    struct Untrack: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop routing patterns through Trove (.gitattributes).")
        @Argument(help: "Patterns as `trove track` lists them.") var patterns: [String]
        @OptionGroup var options: StoreOptions

        func run() throws {
            let git = try GitMode.require(options)
            let removed = try GitAttributes.untrack(patterns, top: git.top)
            if options.quiet { return }
            for p in removed { Console.out("Untracking \(p)") }
            for p in patterns where !removed.contains(p) && !removed.contains(p.replacingOccurrences(of: " ", with: "[[:space:]]")) {
                Console.err("trove: \(p) was not tracked")
            }
        }
    }
}
