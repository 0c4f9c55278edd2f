import ArgumentParser
import Foundation
import Glibc
import TroveCore
import TroveGit
import TroveRuns
import TroveStore
import TroveSync

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
                TROVE_METRICS_FILE (append JSON lines {"step": 1, "loss": 0.3}), TROVE_OUTPUT_DIR (a \
                folder of its own, recorded as outputs), TROVE_INPUT_<NAME> for each --input (data \
                from the store, materialised first) and TROVE_RUN_ID. `trove run NOTEBOOK.ipynb -p ...` \
                executes a notebook top to bottom in a fresh kernel with the parameters injected as \
                papermill does, and records the notebook and its executed copy. A \
                run that fails, is killed, times out or is interrupted (Ctrl-C is passed on) is \
                recorded too, with its status. Exit status: the command's (128+N for signal N); 2 \
                when the command could not be started or the notebook is not valid; 3 when an input \
                revision or Jupyter's packages are missing (nothing is recorded then).
                """)

        @Option(name: .customShort("p"), help: ArgumentHelp("A parameter (repeatable).", valueName: "NAME=VALUE")) var parameters: [String] = []
        @Option(name: .customLong("output"), help: ArgumentHelp("A folder the command writes, recorded as an output (repeatable).", valueName: "DIR"))
        var outputs: [String] = []
        @Option(name: .customLong("input"), help: ArgumentHelp("Data from the store, materialised at $TROVE_INPUT_<NAME> before the command starts (repeatable).", valueName: "NAME=REV:PATH"))
        var inputs: [String] = []
        @Flag(name: .customLong("pip-freeze"), help: "Record `python3 -m pip freeze` with the run (env/pip-freeze.txt).") var pipFreeze = false
        @Option(help: "A name for the run.") var name: String?
        @Option(name: .customLong("timeout"), help: ArgumentHelp("Stop the command after this many seconds.", valueName: "SECONDS")) var timeLimit: Double?
        @Flag(help: "Print the record as JSON when the run ends (the command's output still goes to stderr).") var json = false
        @Option(help: "Run member --index of this recorded sweep (what a batch task runs): its parameters, command and outputs come from sweeps/ID.")
        var sweep: String?
        @Option(help: "The member of --sweep to run (default: $SLURM_ARRAY_TASK_ID, else $JOB_COMPLETION_INDEX).") var index: Int?
        @OptionGroup var options: StoreOptions
        @Argument(help: "A notebook (.ipynb) to execute serially in a fresh kernel, with the -p parameters injected as papermill does.")
        var notebook: String?
        @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.") var command: [String] = []

        func run() throws {
            let store = try options.openStore()
            var record: SweepRecord?
            var index = self.index
            if let sweep {
                let r = try SweepRecord.load(store, sweep)
                // A batch task's member: Slurm's array index, or a Kubernetes Indexed Job's.
                let env = ProcessInfo.processInfo.environment
                index = index ?? (env["SLURM_ARRAY_TASK_ID"] ?? env["JOB_COMPLETION_INDEX"]).flatMap { Int($0) }
                guard let index, r.variants.indices.contains(index) else {
                    throw StoreError(.invalidInput, "--sweep needs --index 0...\(r.variants.count - 1) (or SLURM_ARRAY_TASK_ID / JOB_COMPLETION_INDEX)",
                                     hint: "e.g. --index $SLURM_ARRAY_TASK_ID")
                }
                record = r
            } else if index != nil {
                throw StoreError(.invalidInput, "--index goes with --sweep")
            }
            let cmd = try Run.command(notebook: notebook, command: command.isEmpty ? (record?.command ?? []) : command, directory: options.cwd, validate: false)
            guard let first = cmd.first, !first.hasPrefix("-") else {
                throw StoreError(.invalidInput, "no command to run", hint: "trove run -p lr=0.1 -- python train.py")
            }
            var spec = RunSpec(command: cmd, directory: options.cwd)
            if let record, let index {
                spec.parameters = record.variants[index]
                spec.sweep = (record.id, index)
            }
            spec.parameters += try parameters.map { try RunSpec.parameter($0) }
            spec.outputs = outputs.isEmpty ? (record?.outputs ?? []) : outputs
            spec.inputs = try (inputs.isEmpty ? (record?.inputs ?? []) : inputs).map { try RunInput.resolve($0, in: store) }
            spec.pipFreeze = pipFreeze || record?.pipFreeze == true
            spec.name = name
            spec.timeLimit = timeLimit ?? record?.timeLimit
            spec.stdoutEcho = json ? 2 : 1
            (spec.gitCommit, spec.gitDiff) = try codeVersion(at: options.cwd, warn: !options.quiet)
            let recorder = try RunRecorder(store: store, spec: spec, id: record.map { "\($0.id)-\(index!)" })
            if let record, let index, let rule = record.earlyStop {
                let peers = SweepPeers(store: store, sweep: record.id, index: index, rule: rule)
                recorder.observe = { [weak recorder] points in
                    if let why = peers.verdict(points) { recorder?.cancel(reason: why) }
                }
            }
            let reporter = liveReporter(store, runID: recorder.id, directory: recorder.liveDirectory)
            reporter?.onCancel = { [weak recorder] why in recorder?.cancel(reason: why) }
            if !options.quiet && !json {
                Console.err("trove: run \(recorder.id) started" + (reporter.map { " (live at \($0.endpoint.replacingOccurrences(of: "/live", with: "")))" } ?? ""))
            }
            reporter?.start()
            recorder.beforeCleanup = { status in reporter?.stop(ended: status.rawValue) }
            let o: RunRecorder.Outcome
            do { o = try recorder.run() } catch {
                reporter?.stop(ended: "failed")
                throw error
            }
            if let r = reporter, r.failures > 0, !options.quiet {
                Console.err("trove: \(r.failures) live update(s) to the daemon failed (last: \(r.lastError ?? "?")); the run is recorded here, `trove push` sends it")
            }
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

        /// The daemon a run streams to while it runs (Docs/api.md §Live runs): the remote named
        /// by `runs.live-remote`, else the first http(s) remote; none with `runs.live=false`.
        func liveReporter(_ store: Store, runID: String, directory: String) -> LiveReporter? {
            let env = ProcessInfo.processInfo.environment
            let config = store.config.values
            guard config["runs.live"] != "false", env["TROVE_LIVE"] != "0" else { return nil }
            let remotes = config.keys.filter { $0.hasPrefix("remote.") && $0.hasSuffix(".url") }.sorted()
            let url: String?
            if let name = config["runs.live-remote"] { url = config["remote.\(name).url"] } else {
                url = remotes.map { config[$0]! }.first { $0.hasPrefix("http://") || $0.hasPrefix("https://") }
            }
            guard let url else { return nil }
            let interval = config["runs.live-interval"].flatMap(Double.init) ?? 2
            return try? LiveReporter(remoteURL: url, runID: runID, directory: directory, interval: max(0.2, interval), environment: env)
        }

        /// The command to run: the one after --, or a notebook, checked to be valid nbformat
        /// (and runnable here) before anything is recorded.
        /// `validate: false` for `trove run`: its runner validates first and nothing is recorded
        /// when it refuses (one Python start less); a sweep validates before it records.
        static func command(notebook: String?, command: [String], directory: String, validate: Bool) throws -> [String] {
            if let notebook {
                guard command.isEmpty else { throw StoreError(.invalidInput, "give a notebook or a command after --, not both") }
                guard notebook.hasSuffix(".ipynb") else {
                    throw StoreError(.invalidInput, "\(notebook) is not a notebook (.ipynb)", hint: "put a command after --: trove run -- \(notebook)")
                }
            }
            let cmd = notebook.map { [$0] } ?? command
            if Notebook.isNotebook(cmd), validate { try Notebook.validate(FileIO.absolute(cmd[0], base: directory)) }
            return cmd
        }
    }
}
