import ArgumentParser
import Foundation
import Glibc
import TroveCore
import TroveGit
import TroveRuns
import TroveStore
import TroveSync

extension TroveCommand {
    struct Runs: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List and inspect recorded runs.",
            subcommands: [List.self, Show.self, Metrics.self],
            defaultSubcommand: List.self)

        struct List: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Recorded runs, newest first: status, start, duration, parameters, last metrics.")
            @Option(help: "Only the runs of this sweep (an id or a unique prefix).") var sweep: String?
            @Option(name: .customLong("where"), help: ArgumentHelp("Only runs where FIELD OP VALUE holds (repeatable: all must).", valueName: "'params.lr<0.01'"))
            var conditions: [String] = []
            @Option(parsing: .unconditional, help: ArgumentHelp("Order by a field, '-' for descending.", valueName: "[-]FIELD")) var sort: String?
            @Flag(help: "Print JSON.") var json = false
            @OptionGroup var options: StoreOptions

            func run() throws {
                let store = try options.openStore()
                var runs = try RunList.all(store)
                var live = RunList.live(store)
                if let sweep {
                    runs = runs.filter { r in r.metadata.contains { $0.key == "run.sweep" && ($0.value == sweep || $0.value.hasPrefix(sweep)) } }
                    live = live.filter { !$0.sweep.isEmpty && ($0.sweep == sweep || $0.sweep.hasPrefix(sweep)) }
                }
                let filters = try conditions.map(RunFilter.parse)
                runs = runs.filter { r in filters.allSatisfy { $0.matches(r) } }
                live = live.filter { r in filters.allSatisfy { $0.matches(r) } }
                if let sort {
                    runs = RunFilter.sort(runs, by: sort)
                    live = RunFilter.sort(live, by: sort)
                }
                if json {
                    try Console.json(live.map { r -> [String: Any] in
                        ["id": r.id, "status": "running", "start": r.start, "command": r.command, "host": r.host,
                         "params": Dictionary(r.parameters, uniquingKeysWith: { a, _ in a }),
                         "metrics": Dictionary(r.metrics.map { ($0.0, Double($0.1) ?? 0) }, uniquingKeysWith: { a, _ in a })]
                    } + runs.map { r -> [String: Any] in
                        ["id": r.id, "commit": r.commit.hex, "status": r.status, "start": r.start, "seconds": r.seconds as Any? ?? NSNull(),
                         "name": r.name as Any? ?? NSNull(), "command": r.command, "git_commit": r.gitCommit,
                         "params": Dictionary(r.parameters, uniquingKeysWith: { a, _ in a }),
                         "metrics": Dictionary(r.metrics.map { ($0.0, Double($0.1) ?? 0) }, uniquingKeysWith: { a, _ in a })]
                    })
                    return
                }
                if runs.isEmpty && live.isEmpty { Console.out("No runs recorded (start one: trove run -- CMD)"); return }
                for r in live {
                    let params = r.parameters.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
                    let metrics = r.metrics.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
                    Console.out("\(r.id)  running   \("-".padding(toLength: 8, withPad: " ", startingAt: 0)) \(params)\(metrics.isEmpty ? "" : "  | " + metrics)")
                }
                for r in runs {
                    let params = r.parameters.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
                    let metrics = r.metrics.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
                    let secs = r.seconds.map { Format.duration($0) } ?? "?"
                    Console.out("\(r.id)  \(r.status.padding(toLength: 9, withPad: " ", startingAt: 0)) \(secs.padding(toLength: 8, withPad: " ", startingAt: 0)) \(params)\(metrics.isEmpty ? "" : "  | " + metrics)")
                }
            }
        }

        struct Metrics: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "One metric's history in a run: `step value` lines.",
                discussion: "--stats prints the number of points, the step range, min, max and last instead; --json {\"run\", \"metric\", \"steps\": [..], \"values\": [..]}.")
            @Argument(help: "The run id (or a unique prefix).") var id: String
            @Argument(help: "The metric.") var metric: String
            @Flag(help: "Only the count, step range, min, max and last.") var stats = false
            @Flag(help: "Print JSON.") var json = false
            @OptionGroup var options: StoreOptions

            func run() throws {
                let store = try options.openStore()
                let r = try Runs.find(store, id)
                let s = try RunList.series(store, run: r, metric: metric)
                if stats {
                    let line = "\(s.steps.count) points, steps \(s.steps.first ?? 0)...\(s.steps.last ?? 0), min \(s.values.min() ?? .nan), max \(s.values.max() ?? .nan), last \(s.values.last ?? .nan)"
                    Console.out(line)
                    return
                }
                if json {
                    try Console.json(["run": r.id, "metric": metric, "steps": s.steps, "values": s.values] as [String: Any])
                    return
                }
                var out = ""
                out.reserveCapacity(s.steps.count * 16)
                for (st, v) in zip(s.steps, s.values) { out += "\(st) \(v)\n" }
                FileHandle.standardOutput.write(out.data(using: .utf8)!)
            }
        }

        /// The one run `id` (or a unique prefix of it) names.
        static func find(_ store: Store, _ id: String) throws -> RunInfo {
            let runs = try RunList.all(store).filter { $0.id == id || $0.id.hasPrefix(id) }
            guard runs.count == 1, let r = runs.first else {
                throw StoreError(runs.isEmpty ? .notFound : .invalidInput, runs.isEmpty ? "no run \(id)" : "\(id) names \(runs.count) runs",
                                 hint: "`trove runs` lists them")
            }
            return r
        }

        struct Show: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "One run: its record and files.")
            @Argument(help: "The run id (or a unique prefix).") var id: String
            @Flag(help: "Print JSON.") var json = false
            @OptionGroup var options: StoreOptions

            func run() throws {
                let store = try options.openStore()
                let r = try Runs.find(store, id)
                let files = try store.flatten(tree: try store.commit(r.commit).tree)
                if json {
                    try Console.json(["id": r.id, "commit": r.commit.hex, "git_commit": r.gitCommit,
                                      "metadata": Dictionary(r.metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a }),
                                      "files": files.keys.sorted().map { ["path": $0, "size": files[$0]!.size, "id": files[$0]!.id.hex] }] as [String: Any])
                    return
                }
                Console.out("run \(r.id)  (\(r.commit.hex))")
                if !r.gitCommit.isEmpty { Console.out("code   git \(r.gitCommit)") }
                for (k, v) in r.metadata { Console.out("\(k) = \(v)") }
                Console.out("files:")
                for p in files.keys.sorted() { Console.out("  \(Format.bytes(files[p]!.size).padding(toLength: 10, withPad: " ", startingAt: 0)) \(p)") }
            }
        }
    }
}
