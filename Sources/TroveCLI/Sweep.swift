import ArgumentParser
import Foundation
import Glibc
import TroveCore
import TroveGit
import TroveRuns
import TroveStore
import TroveSync

extension TroveCommand {
    struct Sweep: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a command over a grid of parameters, in parallel, with early stopping.",
            discussion: """
                -p NAME=V1,V2,... gives a parameter's values; the sweep is every combination (the last \
                parameter varies fastest), or --random N of them drawn with --seed. The sweep's spec and \
                variants are recorded on sweeps/ID first; each variant is a run (runs/ID-INDEX, as \
                `trove run` records it, with run.sweep and run.sweep_index). --parallel N runs at most N \
                at once (Slurm's %N, the Job's parallelism). --launcher slurm submits one job array, \
                --launcher k8s one Indexed Job; each task runs `trove run --sweep ID` against a store \
                the nodes reach; `trove runs --sweep ID` shows queued and running members and `trove \
                cancel ID` stops them through the batch system; --dry-run prints the job, --wait waits \
                for every member (Docs/runs.md §Launchers). --early-stop median:METRIC[,min-step=N][,min-runs=N][,mode=min|max] \
                cancels a run whose METRIC at a step ≥ min-step is worse than the median of the other \
                runs at that step (once min-runs others have reached it), on every launcher. \
                Exit status 0 when every run succeeded or was stopped early, 1 otherwise; with a batch \
                launcher and no --wait, 0 once submitted; 6 when the Slurm controller is unreachable or \
                the batch system refuses the job (nothing is recorded then). Docs/runs.md.
                """)

        @Option(name: .customShort("p"), help: ArgumentHelp("A parameter and its values (repeatable).", valueName: "NAME=V1,V2,...")) var parameters: [String] = []
        @Option(help: "Run this many variants drawn at random from the grid.") var random: Int?
        @Option(help: "The seed for --random.") var seed: UInt64 = 0
        @Option(help: "Runs at once (local default 1; slurm/k8s default: as many as the batch system gives).") var parallel: Int?
        @Option(help: "Where the runs go: local (this machine), slurm (a job array) or k8s (an Indexed Job).") var launcher = "local"
        @Option(name: .customLong("early-stop"), help: ArgumentHelp("Stop runs worse than the median.", valueName: "median:METRIC[,min-step=N][,min-runs=N][,mode=min|max]"))
        var earlyStop: String?
        @Option(name: .customLong("output"), help: ArgumentHelp("A folder each run writes (repeatable).", valueName: "DIR")) var outputs: [String] = []
        @Option(name: .customLong("input"), help: ArgumentHelp("Data from the store for every run (repeatable; see trove run).", valueName: "NAME=REV:PATH"))
        var inputs: [String] = []
        @Flag(name: .customLong("pip-freeze"), help: "Record `python3 -m pip freeze` with each run.") var pipFreeze = false
        @Option(name: .customLong("timeout"), help: ArgumentHelp("Stop each run after this many seconds.", valueName: "SECONDS")) var timeLimit: Double?
        @Flag(help: "Record the sweep and run nothing: each member is then `trove run --sweep ID --index N` (a batch system's task).")
        var recordOnly = false
        @Flag(help: "slurm/k8s: print the job script or manifest and submit nothing, record nothing.") var dryRun = false
        @Flag(help: "slurm/k8s: wait until every member is recorded, then report as a local sweep does.") var wait = false
        @OptionGroup(title: "Slurm (--launcher slurm)") var slurm: SlurmOptions
        @OptionGroup(title: "Kubernetes (--launcher k8s)") var k8s: KubernetesOptions
        @Flag(help: "Print the sweep as JSON at the end.") var json = false
        @OptionGroup var options: StoreOptions
        @Argument(help: "A notebook (.ipynb) each run executes, instead of a command after --.") var notebook: String?
        @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.") var command: [String] = []

        func run() throws {
            let command = try Run.command(notebook: notebook, command: self.command, directory: options.cwd, validate: true)
            guard let first = command.first, !first.hasPrefix("-") else {
                throw StoreError(.invalidInput, "no command to run", hint: "trove sweep -p lr=0.1,0.01 --parallel 2 -- python train.py")
            }
            guard ["local", "slurm", "k8s"].contains(launcher) else {
                throw StoreError(.invalidInput, "unknown launcher \(launcher.debugDescription)", hint: "--launcher local, slurm or k8s")
            }
            guard parallel == nil || parallel! >= 1 else { throw StoreError(.invalidInput, "--parallel must be at least 1") }
            let store = try options.openStore()
            let grid: [(name: String, values: [String])] = try parameters.map { p in
                let (n, v) = try RunSpec.parameter(p, form: "NAME=V1,V2,...", example: "-p lr=0.1,0.01")
                return (n, v.split(separator: ",", omittingEmptySubsequences: false).map(String.init))
            }
            if !outputs.isEmpty && ((parallel ?? 1) > 1 || launcher != "local") && !options.quiet {
                Console.err("warning: runs that go at once share the --output folders; a run's own folder is $TROVE_OUTPUT_DIR (recorded as its outputs)")
            }
            var runSpec = RunSpec(command: command, directory: options.cwd)
            runSpec.outputs = outputs
            runSpec.timeLimit = timeLimit
            // Resolved now, so that a missing revision is refused before anything is recorded.
            runSpec.inputs = try inputs.map { try RunInput.resolve($0, in: store) }
            runSpec.pipFreeze = pipFreeze
            runSpec.echo = false
            (runSpec.gitCommit, runSpec.gitDiff) = try codeVersion(at: options.cwd, warn: false)
            var spec = SweepSpec(grid: grid, run: runSpec)
            spec.random = random
            spec.seed = seed
            spec.parallel = parallel ?? 1
            spec.earlyStop = try earlyStop.map(EarlyStop.parse)
            spec.launcher = launcher
            let sweep = try LocalSweep(store: store, spec: spec)
            if launcher != "local" {
                try submit(sweep, store: store, batch: launcher == "slurm" ? slurm.launcher(parallel: parallel) : k8s.launcher(parallel: parallel))
                return
            }
            guard !dryRun && !wait else { throw StoreError(.invalidInput, "--dry-run and --wait go with --launcher slurm or k8s") }
            if recordOnly {
                let record = try sweep.recordSweep(spec.variants())
                if json { try Console.json(["sweep": sweep.id, "commit": record.hex, "size": spec.variants().count] as [String: Any]); return }
                Console.out("sweep \(sweep.id) recorded (\(spec.variants().count) member(s)); run member N with: trove run --sweep \(sweep.id) --index N")
                return
            }
            if !options.quiet && !json { Console.err("trove: sweep \(sweep.id): \(spec.variants().count) run(s), \(spec.parallel) at once") }
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
}
