import ArgumentParser
import Foundation
import TroveCore
import TroveGit
import TroveRuns
import TroveStore

extension TroveCommand {
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a command and record it: parameters, code, logs, metrics, outputs.",
            discussion: """
                Records the run as a commit of kind `run` on runs/ID (Docs/runs.md): the git commit of \
                the code and, when the working tree differs from it, the diff (a warning is printed); \
                the parameters; host, user, start and end, exit status; stdout and stderr (also shown \
                as they come); metrics; and each --output folder as the run's outputs. The command \
                gets TROVE_PARAM_<NAME> for each -p, TROVE_PARAMS_FILE (the parameters as JSON), \
                TROVE_METRICS_FILE (append JSON lines {"step": 1, "loss": 0.3}) and TROVE_RUN_ID. A \
                run that fails, is killed, times out or is interrupted (Ctrl-C is passed on) is \
                recorded too, with its status. Exit status: the command's (128+N for signal N); 2 \
                when the command could not be started.
                """)

        @Option(name: .customShort("p"), help: ArgumentHelp("A parameter (repeatable).", valueName: "NAME=VALUE")) var parameters: [String] = []
        @Option(name: .customLong("output"), help: ArgumentHelp("A folder the command writes, recorded as an output (repeatable).", valueName: "DIR"))
        var outputs: [String] = []
        @Option(help: "A name for the run.") var name: String?
        @Option(name: .customLong("timeout"), help: ArgumentHelp("Stop the command after this many seconds.", valueName: "SECONDS")) var timeLimit: Double?
        @Flag(help: "Print the record as JSON when the run ends (the command's output still goes to stderr).") var json = false
        @OptionGroup var options: StoreOptions
        @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.") var command: [String] = []

        func run() throws {
            guard let first = command.first, !first.hasPrefix("-") else {
                throw StoreError(.invalidInput, "no command to run", hint: "trove run -p lr=0.1 -- python train.py")
            }
            let store = try options.openStore()
            var spec = RunSpec(command: command, directory: options.cwd)
            for p in parameters {
                guard let eq = p.firstIndex(of: "=") else {
                    throw StoreError(.invalidInput, "parameter \(p.debugDescription) is not NAME=VALUE", hint: "e.g. -p lr=0.01")
                }
                let n = String(p[..<eq])
                try RunSpec.validate(parameterName: n)
                spec.parameters.append((n, String(p[p.index(after: eq)...])))
            }
            spec.outputs = outputs
            spec.name = name
            spec.timeLimit = timeLimit
            spec.stdoutEcho = json ? 2 : 1
            if let repo = GitRepository.discover(from: options.cwd), repo.workTree != nil, let head = repo.resolveCommit("HEAD") {
                spec.gitCommit = head.hex
                let diff = try repo.workTreeDiff()
                spec.gitDiff = diff
                if !diff.isEmpty, !options.quiet {
                    Console.err("warning: the working tree differs from \(head.hex.prefix(12)); the diff is recorded with the run (code.diff)")
                }
            }
            let recorder = try RunRecorder(store: store, spec: spec)
            if !options.quiet && !json { Console.err("trove: run \(recorder.id) started") }
            let o = try recorder.run()
            if json {
                try Console.json([
                    "id": recorder.id, "commit": o.commit.hex, "status": o.status.rawValue, "exit_code": o.exitCode.map { $0 as Any } ?? NSNull(),
                    "signal": o.signal.map { $0 as Any } ?? NSNull(), "seconds": o.seconds,
                    "metrics": o.metrics.mapValues { ["last": $0.last, "min": $0.min, "max": $0.max, "steps": $0.count] as [String: Any] },
                ] as [String: Any])
            } else if !options.quiet {
                let m = o.metrics.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.last.description)" }.joined(separator: " ")
                Console.err("trove: run \(recorder.id) \(o.status.rawValue) in \(Format.duration(o.seconds))\(m.isEmpty ? "" : ", " + m) (runs/\(recorder.id), \(o.commit.short()))")
            }
            if o.status != .succeeded { throw CommandFailed(code: o.exitCode ?? (128 + (o.signal ?? 0))) }
        }
    }

    struct Sweep: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a command over a grid of parameters, in parallel, with early stopping.",
            discussion: """
                -p NAME=V1,V2,... gives a parameter's values; the sweep is every combination (the last \
                parameter varies fastest), or --random N of them drawn with --seed. The sweep's spec and \
                variants are recorded on sweeps/ID first; each variant is a run (runs/ID-INDEX, as \
                `trove run` records it, with run.sweep and run.sweep_index). --parallel N runs at most N \
                at once on this machine. --early-stop median:METRIC[,min-step=N][,mode=min|max] cancels \
                a run whose METRIC at a step is worse than the median of the other runs at that step. \
                Exit status 0 when every run succeeded or was stopped early, 1 otherwise. Docs/runs.md.
                """)

        @Option(name: .customShort("p"), help: ArgumentHelp("A parameter and its values (repeatable).", valueName: "NAME=V1,V2,...")) var parameters: [String] = []
        @Option(help: "Run this many variants drawn at random from the grid.") var random: Int?
        @Option(help: "The seed for --random.") var seed: UInt64 = 0
        @Option(help: "Runs at once.") var parallel = 1
        @Option(help: "Where the runs go: local (slurm and k8s are not built yet).") var launcher = "local"
        @Option(name: .customLong("early-stop"), help: ArgumentHelp("Stop runs worse than the median.", valueName: "median:METRIC[,min-step=N][,mode=min|max]"))
        var earlyStop: String?
        @Option(name: .customLong("output"), help: ArgumentHelp("A folder each run writes (repeatable).", valueName: "DIR")) var outputs: [String] = []
        @Option(name: .customLong("timeout"), help: ArgumentHelp("Stop each run after this many seconds.", valueName: "SECONDS")) var timeLimit: Double?
        @Flag(help: "Print the sweep as JSON at the end.") var json = false
        @OptionGroup var options: StoreOptions
        @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.") var command: [String] = []

        func run() throws {
            guard let first = command.first, !first.hasPrefix("-") else {
                throw StoreError(.invalidInput, "no command to run", hint: "trove sweep -p lr=0.1,0.01 --parallel 2 -- python train.py")
            }
            guard launcher == "local" else {
                throw StoreError(.invalidInput, "launcher \(launcher) is not built yet; only local runs here", hint: "use --launcher local")
            }
            guard parallel >= 1 else { throw StoreError(.invalidInput, "--parallel must be at least 1") }
            let store = try options.openStore()
            var grid: [(name: String, values: [String])] = []
            for p in parameters {
                guard let eq = p.firstIndex(of: "="), eq != p.startIndex else {
                    throw StoreError(.invalidInput, "parameter \(p.debugDescription) is not NAME=V1,V2,...", hint: "e.g. -p lr=0.1,0.01")
                }
                let n = String(p[..<eq])
                try RunSpec.validate(parameterName: n)
                grid.append((n, p[p.index(after: eq)...].split(separator: ",", omittingEmptySubsequences: false).map(String.init)))
            }
            var runSpec = RunSpec(command: command, directory: options.cwd)
            runSpec.outputs = outputs
            runSpec.timeLimit = timeLimit
            runSpec.echo = false
            if let repo = GitRepository.discover(from: options.cwd), repo.workTree != nil, let head = repo.resolveCommit("HEAD") {
                runSpec.gitCommit = head.hex
                runSpec.gitDiff = try repo.workTreeDiff()
            }
            var spec = SweepSpec(grid: grid, run: runSpec)
            spec.random = random
            spec.seed = seed
            spec.parallel = parallel
            spec.earlyStop = try earlyStop.map(EarlyStop.parse)
            let sweep = try LocalSweep(store: store, spec: spec)
            if !options.quiet && !json { Console.err("trove: sweep \(sweep.id): \(spec.variants().count) run(s), \(parallel) at once") }
            let quiet = options.quiet || json
            let (record, members) = try sweep.run { m in
                guard !quiet else { return }
                let params = spec.variants()[m.index].map { "\($0.name)=\($0.value)" }.joined(separator: " ")
                let status = m.outcome?.status.rawValue ?? "error: \(m.error ?? "?")"
                Console.err("  \(m.runID)  \(status.padding(toLength: 9, withPad: " ", startingAt: 0)) \(params)")
            }
            let bad = members.filter { m in
                guard let o = m.outcome else { return true }
                return o.status != .succeeded && !(o.status == .cancelled && spec.earlyStop != nil && !RunRecorder.interrupted)
            }
            if json {
                try Console.json(["sweep": sweep.id, "commit": record.hex, "runs": members.map { m -> [String: Any] in
                    ["index": m.index, "id": m.runID, "status": m.outcome?.status.rawValue ?? "error", "error": m.error as Any? ?? NSNull()]
                }] as [String: Any])
            } else if !options.quiet {
                let counts = Dictionary(grouping: members, by: { $0.outcome?.status.rawValue ?? "error" }).mapValues(\.count)
                Console.err("trove: sweep \(sweep.id) done: " + counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
            }
            if !bad.isEmpty { throw CommandFailed(code: TroveCLI.ExitStatus.failure) }
        }
    }

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

    struct LogMetric: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "log-metric",
            abstract: "Report a metric from inside `trove run` (for shell scripts).",
            discussion: "Appends {\"step\": STEP, \"NAME\": VALUE} to $TROVE_METRICS_FILE; without --step, the metric's next step.")
        @Argument(help: "The metric's name.") var name: String
        @Argument(help: "Its value.") var value: Double
        @Option(help: "The step (default: the metric's previous step + 1).") var step: Int64?

        func run() throws {
            guard let path = ProcessInfo.processInfo.environment["TROVE_METRICS_FILE"], !path.isEmpty else {
                throw StoreError(.invalidInput, "TROVE_METRICS_FILE is not set: log-metric reports to the run that started this process",
                                 hint: "run the script under `trove run -- ...`")
            }
            guard value.isFinite else { throw StoreError(.invalidInput, "metric \(name) must be a finite number, not \(value)") }
            var obj: [String: Any] = [name: value]
            if let step { obj["step"] = step }
            var line = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
            line.append(0x0A)
            // One write of a whole line with O_APPEND: lines from several writers never interleave.
            let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw FileIO.ioError("open", path) }
            defer { close(fd) }
            try line.withUnsafeBytes { try FileIO.writeAll(fd, $0.baseAddress!, $0.count, path: path) }
        }
    }

    struct Runs: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List and inspect recorded runs.",
            subcommands: [List.self, Show.self, Metrics.self],
            defaultSubcommand: List.self)

        struct List: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Recorded runs, newest first: status, start, duration, parameters, last metrics.")
            @Option(help: "Only the runs of this sweep (an id or a unique prefix).") var sweep: String?
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
