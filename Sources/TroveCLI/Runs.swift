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
            @Flag(help: "Print JSON.") var json = false
            @OptionGroup var options: StoreOptions

            func run() throws {
                let runs = try RunList.all(try options.openStore())
                if json {
                    try Console.json(runs.map { r -> [String: Any] in
                        ["id": r.id, "commit": r.commit.hex, "status": r.status, "start": r.start, "seconds": r.seconds as Any? ?? NSNull(),
                         "name": r.name as Any? ?? NSNull(), "command": r.command, "git_commit": r.gitCommit,
                         "params": Dictionary(r.parameters, uniquingKeysWith: { a, _ in a }),
                         "metrics": Dictionary(r.metrics.map { ($0.0, Double($0.1) ?? 0) }, uniquingKeysWith: { a, _ in a })]
                    })
                    return
                }
                if runs.isEmpty { Console.out("No runs recorded (start one: trove run -- CMD)"); return }
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
