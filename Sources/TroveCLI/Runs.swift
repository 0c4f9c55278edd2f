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
            subcommands: [List.self, Show.self, Metrics.self, Compare.self],
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
                // Members of sweeps submitted to a batch system that are not running yet.
                var queued = BatchSweeps.queued(store, sweeps: try BatchSweeps.submitted(store, matching: sweep, recorded: Set(runs.map(\.id))),
                                                recorded: Set(runs.map(\.id)), live: Set(live.map(\.id)))
                if let sweep {
                    runs = runs.filter { r in r.metadata.contains { $0.key == "run.sweep" && ($0.value == sweep || $0.value.hasPrefix(sweep)) } }
                    live = live.filter { !$0.sweep.isEmpty && ($0.sweep == sweep || $0.sweep.hasPrefix(sweep)) }
                }
                let filters = try conditions.map(RunFilter.parse)
                runs = runs.filter { r in filters.allSatisfy { $0.matches(r) } }
                live = live.filter { r in filters.allSatisfy { $0.matches(r) } }
                queued = queued.filter { r in filters.allSatisfy { $0.matches(r) } }
                if let sort {
                    runs = RunFilter.sort(runs, by: sort)
                    live = RunFilter.sort(live, by: sort)
                    queued = RunFilter.sort(queued, by: sort)
                }
                if json {
                    Console.jsonLarge(queued.map { r -> [String: Any] in
                        ["id": r.id, "status": r.status, "sweep": r.sweep, "index": r.index, "launcher": r.launcher, "job": r.job,
                         "launcher_state": r.launcherState as Any? ?? NSNull(), "params": Dictionary(r.parameters, uniquingKeysWith: { a, _ in a }),
                         "metrics": [String: Double]()]
                    } + live.map { r -> [String: Any] in
                        ["id": r.id, "status": "running", "start": r.start, "command": r.command, "host": r.host,
                         "params": Dictionary(r.parameters, uniquingKeysWith: { a, _ in a }),
                         "metrics": Dictionary(r.metrics.map { ($0.0, Double($0.1) ?? 0) }, uniquingKeysWith: { a, _ in a })]
                    } + runs.map { r -> [String: Any] in
                        ["id": r.id, "commit": r.commit.hex, "status": r.status, "start": r.start, "seconds": r.seconds as Any? ?? NSNull(),
                         "name": r.name as Any? ?? NSNull(), "command": r.command, "git_commit": r.gitCommit, "ref": r.ref,
                         "params": Dictionary(r.parameters, uniquingKeysWith: { a, _ in a }),
                         "metrics": Dictionary(r.metrics.map { ($0.0, Double($0.1) ?? 0) }, uniquingKeysWith: { a, _ in a })]
                    })
                    return
                }
                if runs.isEmpty && live.isEmpty && queued.isEmpty { Console.out("No runs recorded (start one: trove run -- CMD)"); return }
                // One line per run, written at once (10,000 runs: one write, not 10,000).
                var text = ""
                text.reserveCapacity((queued.count + live.count + runs.count) * 96)
                func line(_ r: ListedRun, duration: String, suffix: String = "") {
                    let params = r.parameters.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
                    let metrics = r.metrics.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
                    text += "\(r.id)  \(Format.column(r.statusText, 9)) \(Format.column(duration, 8)) \(params)\(metrics.isEmpty ? "" : "  | " + metrics)\(suffix)\n"
                }
                for r in queued { line(r, duration: "-", suffix: "  (\(r.launcher) \(r.job)" + (r.launcherState.map { " " + $0 } ?? "") + ")") }
                for r in live { line(r, duration: "-") }
                for r in runs { line(r, duration: r.seconds.map { Format.duration($0) } ?? "?") }
                FileHandle.standardOutput.write(Data(text.utf8))
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

        struct Compare: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Runs side by side: the parameters that differ, final metrics, inputs that differ, code.",
                discussion: "Rows marked * differ between the runs. --all shows equal parameters too. --json {\"runs\", \"params\", \"metrics\", \"inputs\", \"code\"}, each a map of name to one value per run (null when a run lacks it).")
            @Argument(help: "Two or more run ids (or unique prefixes).") var ids: [String]
            @Flag(help: "Show parameters and inputs that are equal too.") var all = false
            @Flag(help: "Print JSON.") var json = false
            @OptionGroup var options: StoreOptions

            func run() throws {
                guard ids.count >= 2 else { throw StoreError(.invalidInput, "compare needs two or more runs", hint: "trove runs compare ID1 ID2") }
                let store = try options.openStore()
                let runs = try ids.map { try Runs.find(store, $0) }
                func table(_ values: (RunInfo) -> [(String, String)]) -> [(name: String, values: [String?], differs: Bool)] {
                    let maps = runs.map { Dictionary(values($0), uniquingKeysWith: { a, _ in a }) }
                    let names = Set(maps.flatMap(\.keys)).sorted()
                    return names.map { n in
                        let v = maps.map { $0[n] }
                        return (n, v, Set(v.map { $0 ?? "\u{0}" }).count > 1)
                    }
                }
                let params = table(\.parameters)
                let metrics = table(\.metrics)
                let inputs = table { r in r.metadata.filter { $0.key.hasPrefix("input.") && !$0.key.hasSuffix(".commit") }.map { (String($0.key.dropFirst(6)), $0.key.hasSuffix(".id") ? String($0.value.prefix(12)) : $0.value) } }
                let code = table { r in
                    [("git", r.gitCommit.isEmpty ? nil : String(r.gitCommit.prefix(12))),
                     ("dirty", r.metadata.first { $0.key == "code.dirty" }?.value),
                     ("status", r.status)].compactMap { k, v in v.map { (k, $0) } }
                }
                if json {
                    func obj(_ t: [(name: String, values: [String?], differs: Bool)]) -> [String: Any] {
                        Dictionary(t.map { ($0.name, $0.values.map { $0 as Any? ?? NSNull() }) }, uniquingKeysWith: { a, _ in a })
                    }
                    try Console.json(["runs": runs.map(\.id), "params": obj(params), "metrics": obj(metrics), "inputs": obj(inputs), "code": obj(code)] as [String: Any])
                    return
                }
                let width = max(12, (params + metrics + inputs + code).map { $0.name.count }.max() ?? 0) + 2
                let col = max(12, runs.map { $0.id.count }.max() ?? 0) + 2
                func line(_ mark: String, _ name: String, _ values: [String?]) {
                    Console.out(mark + " " + name.padding(toLength: width, withPad: " ", startingAt: 0)
                                + values.map { ($0 ?? "-").padding(toLength: col, withPad: " ", startingAt: 0) }.joined())
                }
                line(" ", "", runs.map(\.id))
                for (title, rows, always) in [("params", params, false), ("metrics (last)", metrics, true), ("inputs", inputs, false), ("code", code, true)] {
                    let shown = rows.filter { all || always || $0.differs }
                    guard !shown.isEmpty else { continue }
                    Console.out(title + ":")
                    for r in shown { line(r.differs ? "*" : " ", "  " + r.name, r.values) }
                }
                let same = params.filter { !$0.differs }.count
                if !all && same > 0 { Console.out("(\(same) equal parameter(s) not shown: --all)") }
            }
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
