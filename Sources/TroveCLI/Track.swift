import ArgumentParser
import Foundation
import Glibc
import TroveCore
import TroveGit
import TroveRuns
import TroveStore
import TroveSync

extension TroveCommand {
    struct Track: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Route paths through Trove (.gitattributes), or list the patterns.",
            discussion: """
                Adds `PATTERN filter=trove diff=trove merge=trove -text` to .gitattributes at the \
                top of the working tree. Files already committed under a new pattern stay as they \
                are until `git add --renormalize .`. Without PATTERN, lists the tracked patterns.
                """)
        @Argument(help: "gitattributes patterns: '*.safetensors', 'models/**', 'data/*.parquet'.") var patterns: [String] = []
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            let git = try GitMode.require(options)
            if patterns.isEmpty {
                let list = GitAttributes.trackedPatterns(top: git.top)
                if json { try Console.json(["patterns": list]); return }
                Console.out(list.isEmpty ? "No patterns are tracked (add one: trove track '*.bin')" : "Tracked patterns (.gitattributes):")
                for p in list { Console.out("    \(p)") }
                return
            }
            let added = try GitAttributes.track(patterns, top: git.top)
            if json { try Console.json(["added": added]); return }
            if options.quiet { return }
            for p in added { Console.out("Tracking \(p)") }
            for p in patterns where !added.contains(p) && !added.contains(p.replacingOccurrences(of: " ", with: "[[:space:]]")) {
                Console.out("\(p) was already tracked")
            }
            if !added.isEmpty { Console.out("Commit .gitattributes; files committed before under these patterns need `git add --renormalize .`") }
        }
    }
}
