import ArgumentParser
import Foundation
import TroveStore

extension TroveCommand {
    struct Commit: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Record the stage as a new commit and move the current branch to it.",
            discussion: "Author: $TROVE_AUTHOR_NAME/$TROVE_AUTHOR_EMAIL, else config user.name/user.email, else $USER.")

        @Option(name: .shortAndLong, help: "The commit message.") var message: String
        @Option(name: .customLong("meta"), help: ArgumentHelp("Metadata to record (repeatable).", valueName: "KEY=VALUE"))
        var metadata: [String] = []
        @Flag(help: "Commit even when nothing changed.") var allowEmpty = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            let wt = try options.worktree()
            var meta: [String: String] = [:]
            for m in metadata {
                guard let eq = m.firstIndex(of: "="), eq != m.startIndex else {
                    throw StoreError(.invalidInput, "--meta \(m) is not KEY=VALUE")
                }
                meta[String(m[..<eq])] = String(m[m.index(after: eq)...])
            }
            let lock = try wt.store.lock()
            defer { _ = lock }
            let author = Worktree.Author.current(config: wt.store.config, environment: ProcessInfo.processInfo.environment)
            let id = try wt.commit(message: message, author: author, allowEmpty: allowEmpty, metadata: meta,
                                   writer: ObjectWriter(store: wt.store))
            if !options.quiet { Console.out("[\(try wt.refs.branchName() ?? "detached HEAD") \(id.short())] \(message.split(separator: "\n").first ?? "")") }
        }
    }
}
