import ArgumentParser
import Foundation
import Glibc
import TroveCore
import TroveGit
import TroveRuns
import TroveStore
import TroveSync

extension TroveCommand {
    struct Cancel: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop running runs (a run id, a sweep id for all its running members, or unique prefixes).",
            discussion: """
                Leaves the reason for the recording `trove` and sends SIGTERM to each run's process \
                group; the run is recorded as cancelled (run.stopped_by). Only runs on this machine can \
                be signalled. Exit 3 when nothing named is running.
                """)
        @Argument(help: "Run or sweep ids.") var ids: [String]
        @OptionGroup var options: StoreOptions

        func run() throws {
            let store = try options.openStore()
            let live = RunList.live(store)
            var chosen: [LiveRun] = []
            for id in ids {
                let matches = live.filter { $0.id == id || $0.id.hasPrefix(id) || (!$0.sweep.isEmpty && ($0.sweep == id || $0.sweep.hasPrefix(id))) }
                guard !matches.isEmpty else {
                    throw StoreError(.notFound, "nothing named \(id) is running", hint: "`trove runs` shows what runs (status running)")
                }
                chosen += matches.filter { m in !chosen.contains { $0.id == m.id } }
            }
            let user = ProcessInfo.processInfo.environment["USER"] ?? "someone"
            let done = try RunList.cancel(chosen, reason: "trove cancel by \(user)")
            if !options.quiet { for r in done { Console.out("cancelled \(r.id)") } }
        }
    }
}
