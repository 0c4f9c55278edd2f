import ArgumentParser
import TroveCore
import TroveStore

extension TroveCommand {
    struct Log: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the commit history, newest first.")

        @Argument(help: "Where to start (default HEAD).") var revision = "HEAD"
        @Option(name: [.customShort("n"), .long], help: "Show at most N commits.") var maxCount: Int?
        @Flag(help: "One line per commit.") var oneline = false
        @Flag(help: "Follow only first parents.") var firstParent = false
        @Flag(help: "Print as JSON.") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            let store = try options.openStore()
            let commits = try store.log(from: try store.resolve(revision), limit: maxCount, firstParent: firstParent)
            if json {
                try Console.json(commits.map { CommitJSON.object($0.id, $0.commit) })
                return
            }
            for (id, c) in commits {
                if oneline {
                    Console.out("\(id.short()) \(c.message.split(separator: "\n").first ?? "")")
                    continue
                }
                Console.out("commit \(id.hex)\(c.kind == .snapshot ? "" : " (\(c.kind))")")
                if c.parents.count > 1 { Console.out("Merge:  " + c.parents.map { $0.short() }.joined(separator: " ")) }
                if !c.gitCommit.isEmpty { Console.out("Git:    \(c.gitCommit)") }
                Console.out("Author: \(c.author)")
                Console.out("Date:   \(Format.date(c.time, offsetMinutes: c.timezoneOffset))")
                for (k, v) in c.metadata { Console.out("Meta:   \(k)=\(v)") }
                Console.out("")
                for line in c.message.split(separator: "\n", omittingEmptySubsequences: false) { Console.out("    \(line)") }
                Console.out("")
            }
        }
    }
}

enum CommitJSON {
    static func object(_ id: ObjectID, _ c: TroveCore.Commit) -> [String: Any] {
        [
            "id": id.hex, "tree": c.tree.hex, "parents": c.parents.map(\.hex), "author": c.author,
            "time": c.time, "date": Format.iso(c.time, offsetMinutes: c.timezoneOffset), "kind": c.kind.description,
            "git_commit": c.gitCommit, "metadata": Dictionary(uniqueKeysWithValues: c.metadata.map { ($0.key, $0.value) }),
            "message": c.message,
        ]
    }
}
