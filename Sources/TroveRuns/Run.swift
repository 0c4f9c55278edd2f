import Dispatch
import Foundation
import Glibc
import TroveCore
import TroveStore

/// What `trove run` is asked to do.
public struct RunSpec: Sendable {
    public var name: String?
    /// In the order given; names are `[A-Za-z_][A-Za-z0-9_]*`.
    public var parameters: [(name: String, value: String)] = []
    public var command: [String]
    /// Folders (relative to `directory`) recorded as the run's outputs.
    public var outputs: [String] = []
    public var directory: String
    /// Seconds after which the command is stopped (SIGTERM, then SIGKILL 10 s later).
    public var timeLimit: Double?
    /// The code the run used, when known: a git commit, and the working tree's diff to it.
    public var gitCommit: String?
    public var gitDiff: [UInt8]?
    /// Echo the command's output on this process's stdout/stderr as it comes.
    public var echo = true
    /// The sweep this run belongs to, and its index there.
    public var sweep: (String, Int)?
    /// Where the command's stdout is echoed: 1, or 2 when this process's stdout is for JSON.
    public var stdoutEcho: Int32 = 1
    /// Data from the store the command reads, materialised before it starts.
    public var inputs: [RunInput] = []
    /// Record `python3 -m pip freeze` as `env/pip-freeze.txt`.
    public var pipFreeze = false

    public init(command: [String], directory: String) {
        self.command = command
        self.directory = directory
    }

    /// `-p NAME=VALUE` (a sweep's `NAME=V1,V2,...`: `form` names what was expected), the name
    /// checked.
    public static func parameter(_ text: String, form: String = "NAME=VALUE", example: String = "-p lr=0.01") throws -> (name: String, value: String) {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
            throw StoreError(.invalidInput, "parameter \(text.debugDescription) is not \(form)", hint: "e.g. \(example)")
        }
        let name = String(text[..<eq])
        try validate(parameterName: name)
        return (name, String(text[text.index(after: eq)...]))
    }

    public static func validate(parameterName n: String) throws {
        guard let f = n.unicodeScalars.first, f == "_" || (f.isASCII && CharacterSet.letters.contains(f)),
              n.unicodeScalars.allSatisfy({ $0.isASCII && ($0 == "_" || CharacterSet.alphanumerics.contains($0)) }) else {
            throw StoreError(.invalidInput, "parameter name \(n.debugDescription) must be letters, digits and '_' (not starting with a digit)",
                             hint: "it becomes the environment variable TROVE_PARAM_\(n.uppercased())")
        }
    }
}

/// `--input NAME=REV:PATH`: a file or folder of a commit in the store, resolved before the
/// run starts and materialised at `$TROVE_INPUT_<NAME>`.
public struct RunInput: Sendable {
    public var name: String
    /// As given: `REV:PATH`.
    public var source: String
    public var commit: ObjectID
    public var path: String
    public var entry: Tree.Entry

    /// Resolves `NAME=REV:PATH` (PATH may be empty: the whole tree) in the store.
    public static func resolve(_ text: String, in store: Store) throws -> RunInput {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
            throw StoreError(.invalidInput, "input \(text.debugDescription) is not NAME=REV:PATH", hint: "e.g. --input data=datasets/imagenet/v2:train")
        }
        let name = String(text[..<eq]), source = String(text[text.index(after: eq)...])
        try RunSpec.validate(parameterName: name)
        let (rev, path) = Store.splitRevisionPath(source)
        let commit: ObjectID
        do { commit = try store.resolve(rev) } catch let e as StoreError {
            throw StoreError(e.code, "input \(name): \(e.message)", hint: "fetch it first (`trove fetch`), or check `trove log \(rev)`; nothing was run")
        }
        let entry = try store.entry(at: path ?? "", inCommit: commit)
        return RunInput(name: name, source: source, commit: commit, path: path ?? "", entry: entry)
    }
}

/// How a run ended.
public enum RunStatus: String, Sendable {
    case succeeded, failed, killed, timeout, cancelled
}

/// Runs a command and records it as a commit of kind `run` on `runs/ID` (Docs/runs.md).
public final class RunRecorder {
    public let store: Store
    public let spec: RunSpec
    public let id: String
    /// Where the live files are while the run is going: `STORE/runs-live/ID/`.
    public let liveDirectory: String

    /// Metadata added to the run commit (a daemon recording an MLflow run: its tags, user).
    public var extraMetadata: [String: String] = [:]
    /// False when the recording process is not where the run ran (the daemon recording an
    /// MLflow run): this machine's OS, Python and batch facts would be wrong.
    public var recordsEnvironment = true

    public init(store: Store, spec: RunSpec, id: String? = nil, liveDirectory: String? = nil) throws {
        self.store = store
        self.spec = spec
        self.id = id ?? RunRecorder.newID()
        try Refs.validate("runs/" + self.id)
        // Refused before the command runs, not after: a member is recorded once.
        if try store.refs.read("runs/" + self.id) != nil {
            throw StoreError(.conflict, "run \(self.id) is already recorded", hint: "`trove runs show \(self.id)`; a sweep member runs once")
        }
        self.liveDirectory = liveDirectory ?? store.root + "/runs-live/" + self.id
    }

    /// Records a run that ran elsewhere and left its files in `liveDirectory` (`stdout`,
    /// `stderr`, `metrics.jsonl`, `params.json`, `outputs/`): what the daemon does when an MLflow
    /// run ends. The live directory is left in place for the caller.
    public func recordEnded(status: RunStatus, start: Date, end: Date, stoppedBy: String? = nil) throws -> ObjectID {
        let paths = ["stdout", "stderr", "metrics.jsonl", "params.json"].map { liveDirectory + "/" + $0 }
        for p in paths where !FileIO.exists(p) { try FileIO.atomicWrite(p, p.hasSuffix(".json") ? Array("{}".utf8) : [], durable: false) }
        if let stoppedBy { lock.withLock { cancelReason = stoppedBy } }
        let metrics = MetricsReader(path: paths[2])
        metrics.poll(final: true)
        return try record(status: status, exitCode: nil, signal: nil, start: start, end: end, metrics: metrics,
                          stdoutPath: paths[0], stderrPath: paths[1], metricsPath: paths[2], paramsPath: paths[3])
    }

    /// `20261127-173501-3fa2`: sortable by start time, unique enough across hosts writing
    /// into one shared store.
    public static func newID() -> String {
        var t = time(nil)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        let stamp = String(format: "%04d%02d%02d-%02d%02d%02d", tmv.tm_year + 1900, tmv.tm_mon + 1, tmv.tm_mday, tmv.tm_hour, tmv.tm_min, tmv.tm_sec)
        return stamp + "-" + String(format: "%04x", UInt16.random(in: 0...UInt16.max))
    }

    public struct Outcome: Sendable {
        public var commit: ObjectID
        public var status: RunStatus
        public var exitCode: Int32?
        public var signal: Int32?
        public var seconds: Double
        public var metrics: [String: MetricSummary]
    }

    /// Runs the command to its end and records it, whatever the end.
    public func run() throws -> Outcome {
        try FileIO.mkdirs(liveDirectory)
        let stdoutPath = liveDirectory + "/stdout", stderrPath = liveDirectory + "/stderr"
        let metricsPath = liveDirectory + "/metrics.jsonl", paramsPath = liveDirectory + "/params.json"
        for p in [stdoutPath, stderrPath, metricsPath] { FileManager.default.createFile(atPath: p, contents: nil) }
        let params = Dictionary(spec.parameters.map { ($0.name, $0.value) }, uniquingKeysWith: { _, b in b })
        try FileIO.atomicWrite(paramsPath, Array(try JSONSerialization.data(withJSONObject: params, options: [.sortedKeys])))

        var env = ProcessInfo.processInfo.environment
        for (k, v) in spec.parameters { env["TROVE_PARAM_" + k.uppercased()] = v }
        for input in spec.inputs { env["TROVE_INPUT_" + input.name.uppercased()] = try materialise(input) }
        if spec.pipFreeze, let freeze = try? Tool.run(["python3", "-m", "pip", "freeze"], timeout: 120), freeze.ok {
            try FileIO.mkdirs(liveDirectory + "/env")
            try FileIO.atomicWrite(liveDirectory + "/env/pip-freeze.txt", Array(freeze.stdout.utf8), durable: false)
        }
        env["TROVE_PARAMS_FILE"] = paramsPath
        env["TROVE_METRICS_FILE"] = metricsPath
        env["TROVE_RUN_ID"] = id
        // A folder of the run's own: what the command writes there is recorded as its outputs
        // (parallel members of a sweep cannot share a fixed --output folder).
        try FileIO.mkdirs(liveDirectory + "/outputs")
        env["TROVE_OUTPUT_DIR"] = liveDirectory + "/outputs"

        let start = Date()
        let process = Process()
        // Foundation starts it as the leader of its own process group: a time limit or Ctrl-C
        // is sent to the group, so it reaches every process the command started.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        do { process.arguments = try Notebook.isNotebook(spec.command) ? prepareNotebook(paramsPath: paramsPath) : spec.command } catch {
            FileIO.removeTree(liveDirectory)
            throw error
        }
        process.currentDirectoryURL = URL(fileURLWithPath: spec.directory)
        process.environment = env
        let outPipe = Pipe(), errPipe = Pipe()
        process.standardOutput = outPipe
        process.standardError = errPipe
        process.standardInput = FileHandle.nullDevice
        let ended = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in ended.signal() }
        // From here a TERM or Ctrl-C is forwarded, not fatal: one that comes before the group is
        // known (a batch system cancelling a task just started) stops it as soon as it is.
        RunRecorder.installSignalForwarding()
        do { try process.run() } catch {
            FileIO.removeTree(liveDirectory)
            throw StoreError(.notFound, "cannot start \(spec.command.first ?? ""): \(error.localizedDescription)",
                             hint: "check the command and PATH; nothing was recorded")
        }
        RunRecorder.live.withLock { RunRecorder.groups.insert(process.processIdentifier) }
        defer { _ = RunRecorder.live.withLock { RunRecorder.groups.remove(process.processIdentifier) } }
        if lock.withLock({ group = process.processIdentifier; return cancelReason != nil }) || RunRecorder.interrupted {
            kill(-process.processIdentifier, SIGTERM)
        }
        // What `trove runs` and `trove cancel` (another process) need about a live run.
        let recorder = LocalProcess.current
        let state: [String: Any] = [
            "id": id, "pgid": Int(process.processIdentifier), "host": ProcessInfo.processInfo.hostName,
            "recorder_pid": Int(recorder.pid), "recorder_started": recorder.started.map { Int($0) } as Any? ?? NSNull(),
            "start": RunRecorder.iso(start), "command": RunRecorder.shellQuoted(spec.command),
            "params": Dictionary(spec.parameters.map { ($0.name, $0.value) }, uniquingKeysWith: { _, b in b }),
            "sweep": spec.sweep?.0 ?? "", "name": spec.name ?? "",
            "launcher": RunRecorder.batchFacts(ProcessInfo.processInfo.environment)["run.launcher"] ?? "local",
        ]
        try? FileIO.atomicWrite(liveDirectory + "/state.json", Array(try JSONSerialization.data(withJSONObject: state, options: [.sortedKeys])), durable: false)
        // Output is copied to the log files (and echoed) as it comes; metrics are read live.
        let copies = DispatchGroup()
        for (pipe, path, echo) in [(outPipe, stdoutPath, spec.stdoutEcho), (errPipe, stderrPath, Int32(2))] {
            copies.enter()
            onOwnThread { [spec] in
                defer { copies.leave() }
                let log = FileHandle(forWritingAtPath: path)
                let fd = pipe.fileHandleForReading.fileDescriptor
                var buf = [UInt8](repeating: 0, count: 64 << 10)
                while true {
                    let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }
                    log?.write(Data(buf[0..<n]))
                    if spec.echo { _ = buf.withUnsafeBytes { write(echo, $0.baseAddress, n) } }
                }
                try? log?.close()
            }
        }
        let metrics = MetricsReader(path: metricsPath)
        var timedOut = false
        // Woken at the command's end (no polling delay for short runs), else every 100 ms to
        // read new metrics and watch the time limit.
        while ended.wait(timeout: .now() + 0.1) == .timedOut {
            let before = metrics.points.count
            metrics.poll()
            if let observe, metrics.points.count > before { observe(Array(metrics.points[before...])) }
            if let limit = spec.timeLimit, !timedOut, Date().timeIntervalSince(start) > limit {
                timedOut = true
                kill(-process.processIdentifier, SIGTERM)
                DispatchQueue.global().asyncAfter(deadline: .now() + 10) {
                    if process.isRunning { kill(-process.processIdentifier, SIGKILL) }
                }
            }
        }
        process.waitUntilExit()
        // `trove cancel` leaves its reason here before it signals the group.
        if let why = try? FileIO.readText(liveDirectory + "/cancel") {
            lock.withLock { if cancelReason == nil { cancelReason = why.trimmingCharacters(in: .whitespacesAndNewlines) } }
        }
        // A background child that outlives the command may hold the pipes open: its output
        // after a grace period is not waited for.
        _ = copies.wait(timeout: .now() + 2)
        // A notebook that could not be started (not valid nbformat, Jupyter's packages or its
        // kernel missing: the runner's exit 4 or 3 before any cell ran) is refused like a
        // command that cannot start: nothing is recorded.
        if !notebookFiles.isEmpty, process.terminationReason == .exit, [3, 4].contains(process.terminationStatus),
           let executed = notebookFiles.first(where: { $0.key.hasPrefix("outputs/") })?.value, !FileIO.exists(executed) {
            let why = (try? FileIO.readText(stderrPath)) ?? ""
            FileIO.removeTree(liveDirectory)
            throw StoreError(process.terminationStatus == 4 ? .invalidInput : .notFound, Notebook.strip(why),
                             hint: "nothing was run or recorded")
        }
        metrics.poll(final: true)
        let end = Date()
        var status: RunStatus
        var exitCode: Int32?
        var sig: Int32?
        if process.terminationReason == .uncaughtSignal {
            sig = process.terminationStatus
            status = timedOut ? .timeout : (isCancelled ? .cancelled : .killed)
        } else {
            exitCode = process.terminationStatus
            status = exitCode == 0 ? .succeeded : (timedOut ? .timeout : isCancelled ? .cancelled : .failed)
        }
        let commit = try record(status: status, exitCode: exitCode, signal: sig, start: start, end: end, metrics: metrics,
                                stdoutPath: stdoutPath, stderrPath: stderrPath, metricsPath: metricsPath, paramsPath: paramsPath)
        beforeCleanup?(status)
        FileIO.removeTree(liveDirectory)
        return Outcome(commit: commit, status: status, exitCode: exitCode, signal: sig,
                       seconds: end.timeIntervalSince(start), metrics: metrics.summaries)
    }

    /// Files of a notebook run: tree path → live path.
    var notebookFiles: [String: String] = [:]

    /// A notebook run: the exact notebook is copied first (later edits do not change what
    /// ran; it is recorded as `notebook/NAME`) and the embedded runner executes the copy,
    /// writing the executed notebook, recorded as `outputs/NAME`. Returns the command.
    func prepareNotebook(paramsPath: String) throws -> [String] {
        let source = FileIO.absolute(spec.command[0], base: spec.directory)
        let name = FileIO.basename(source)
        let copy = liveDirectory + "/notebook/" + name, executed = liveDirectory + "/executed/" + name
        try FileIO.mkdirs(liveDirectory + "/notebook")
        try FileIO.mkdirs(liveDirectory + "/executed")
        try FileIO.atomicWrite(copy, try FileIO.readFile(source), durable: false)
        notebookFiles = ["notebook/" + name: copy, "outputs/" + name: executed]
        return [Notebook.python, try Notebook.runnerPath(), "run", copy, executed, paramsPath]
    }

    /// Writes an input under the live folder (verified chunk by chunk); returns its path.
    func materialise(_ input: RunInput) throws -> String {
        let root = liveDirectory + "/inputs"
        try FileIO.mkdirs(root)
        var entries: [(String, Tree.Entry)]
        if input.entry.kind == .directory {
            try FileIO.mkdirs(root + "/" + input.name)
            entries = try store.flatten(tree: input.entry.id, prefix: input.name).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        } else {
            entries = [(input.name, input.entry)]
        }
        _ = try Materializer(store: store, root: root).write(entries)
        return root + "/" + input.name
    }

    /// Called once the run is recorded, while its live folder is still there (the live
    /// reporter's last update reads it).
    public var beforeCleanup: ((RunStatus) -> Void)?

    /// Called with new metric points while the run is live (on the recorder's thread).
    public var observe: (([MetricPoint]) -> Void)?
    let lock = Mutex()
    var group: pid_t = 0
    var cancelReason: String?
    var isCancelled: Bool { lock.withLock { cancelReason != nil } || RunRecorder.interrupted }

    /// Stops the command (its whole process group) and records the run as cancelled, with why.
    public func cancel(reason: String) {
        let g: pid_t = lock.withLock {
            if cancelReason == nil { cancelReason = reason }
            return group
        }
        if g > 0 { kill(-g, SIGTERM) }
    }

    /// The process groups of the runs going on in this process, for signal forwarding.
    static let live = Mutex()
    nonisolated(unsafe) static var groups = Set<pid_t>()
    nonisolated(unsafe) public static var interrupted = false
    nonisolated(unsafe) static var forwarding = false

    /// Ctrl-C or a TERM to trove goes to every running command; those runs are recorded as
    /// cancelled.
    static func installSignalForwarding() {
        live.withLock {
            guard !forwarding else { return }
            forwarding = true
            for sig in [SIGINT, SIGTERM] {
                signal(sig) { s in
                    RunRecorder.interrupted = true
                    // Only async-signal-safe work: kill(2) on a snapshot of the set.
                    for g in RunRecorder.groups { kill(-g, s) }
                }
            }
        }
    }

    /// The run commit: outputs, logs, parameters, metrics and code diff as its tree; the
    /// rest as metadata (Docs/runs.md §Record).
    func record(status: RunStatus, exitCode: Int32?, signal: Int32?, start: Date, end: Date, metrics: MetricsReader,
                stdoutPath: String, stderrPath: String, metricsPath: String, paramsPath: String) throws -> ObjectID {
        let writer = ObjectWriter(store: store)
        let ingester = Ingester(store: store, writer: writer)
        var files: [String: String] = ["logs/stdout": stdoutPath, "logs/stderr": stderrPath, "params.json": paramsPath]
        // One series per metric, in the order reported.
        var series: [String: MetricSeries] = [:]
        for p in metrics.points {
            series[p.name, default: MetricSeries(steps: [], values: [])].steps.append(p.step)
            series[p.name]!.values.append(p.value)
        }
        if !series.isEmpty { try FileIO.mkdirs(liveDirectory + "/metrics") }
        for (name, s) in series {
            let file = MetricSeries.fileName(name)
            try FileIO.atomicWrite(liveDirectory + "/metrics/" + file, s.encode(), durable: false)
            files["metrics/" + file] = liveDirectory + "/metrics/" + file
        }
        if FileIO.exists(liveDirectory + "/env/pip-freeze.txt") { files["env/pip-freeze.txt"] = liveDirectory + "/env/pip-freeze.txt" }
        for (k, v) in notebookFiles where FileIO.exists(v) { files[k] = v }
        if let diff = spec.gitDiff, !diff.isEmpty {
            let p = liveDirectory + "/code.diff"
            try FileIO.atomicWrite(p, diff, durable: false)
            files["code.diff"] = p
        }
        var executable = Set<String>()
        /// The regular files under `base`, recorded under `prefix`.
        func collect(_ base: String, as prefix: String) {
            let walker = FileManager.default.enumerator(atPath: base)
            while let rel = walker?.nextObject() as? String {
                var st = stat()
                guard lstat(base + "/" + rel, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
                files[prefix + rel] = base + "/" + rel
                if st.st_mode & 0o111 != 0 { executable.insert(prefix + rel) }
            }
        }
        // $TROVE_OUTPUT_DIR (the run's own folder) first: a --output folder of the same name wins.
        collect(liveDirectory + "/outputs", as: "outputs/")
        for out in spec.outputs {
            let base = FileIO.absolute(out, base: spec.directory)
            let name = out.split(separator: "/").filter { $0 != "." && !$0.isEmpty }.joined(separator: "/")
            guard FileIO.isDirectory(base) else {
                if FileIO.exists(base) { files["outputs/" + name] = base }
                continue  // an output the command never wrote: recorded as absent
            }
            collect(base, as: "outputs/\(name)/")
        }
        let paths = files.keys.sorted()
        let results = try ingester.ingest(paths: paths.map { files[$0]! })
        var entries: [String: Tree.Entry] = [:]
        for (p, r) in zip(paths, results) {
            entries[p] = Tree.Entry(name: FileIO.basename(p), kind: .file, executable: executable.contains(p), id: r.blobID, size: r.size)
        }
        let (tree, _) = try store.writeTrees(entries, writer: writer)

        var meta: [String: String] = [
            "run.id": id, "run.status": status.rawValue, "run.command": RunRecorder.shellQuoted(spec.command),
            "run.start": RunRecorder.iso(start), "run.end": RunRecorder.iso(end),
            "run.seconds": String(format: "%.3f", end.timeIntervalSince(start)),
            "run.host": ProcessInfo.processInfo.hostName, "run.directory": spec.directory,
        ]
        if !recordsEnvironment { meta["run.host"] = nil; meta["run.directory"] = nil }
        if let n = spec.name { meta["run.name"] = n }
        if let c = exitCode { meta["run.exit_code"] = "\(c)" }
        if let why = lock.withLock({ cancelReason }) { meta["run.stopped_by"] = why }
        if let (sweep, index) = spec.sweep { meta["run.sweep"] = sweep; meta["run.sweep_index"] = "\(index)" }
        if let s = signal { meta["run.signal"] = "\(s)" }
        if let u = getpwuid(getuid())?.pointee.pw_name { meta["run.user"] = String(cString: u) }
        if let diff = spec.gitDiff { meta["code.dirty"] = diff.isEmpty ? "false" : "true" }
        for (k, v) in spec.parameters { meta["param." + k] = v }
        for i in spec.inputs {
            meta["input.\(i.name)"] = i.source
            meta["input.\(i.name).commit"] = i.commit.hex
            meta["input.\(i.name).id"] = i.entry.id.hex
        }
        if Notebook.isNotebook(spec.command) { meta["run.notebook"] = spec.command[0] }
        for (name, s) in metrics.summaries {
            meta["metric.\(name).last"] = s.last.metricText
            meta["metric.\(name).min"] = s.min.metricText
            meta["metric.\(name).max"] = s.max.metricText
            meta["metric.\(name).steps"] = "\(s.count)"
        }
        if recordsEnvironment {
            for (k, v) in RunRecorder.environmentFacts() { meta[k] = v }
            for (k, v) in RunRecorder.batchFacts(ProcessInfo.processInfo.environment) { meta[k] = v }
        } else {
            meta["run.user"] = nil
        }
        for (k, v) in extraMetadata { meta[k] = v }
        let author = Worktree.Author.current(config: store.config, environment: ProcessInfo.processInfo.environment)
        let title = spec.name.map { "run \(id) (\($0))" } ?? "run \(id)"
        let c = Commit(tree: tree, parents: [], author: author.name, time: Int64(start.timeIntervalSince1970),
                       timezoneOffset: author.offsetMinutes, kind: .run, gitCommit: spec.gitCommit ?? "",
                       metadata: meta, message: "\(title): \(status.rawValue)\n\n\(RunRecorder.shellQuoted(spec.command))\n")
        let commitID = try writer.put(.commit, c.encode())
        // Everything the commit reaches is durable before the ref names it.
        try writer.finish()
        try store.refs.update("runs/" + id, from: nil, to: commitID, message: "run: \(status.rawValue)")
        return commitID
    }

    static func iso(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: d)
    }

    static func shellQuoted(_ args: [String]) -> String {
        args.map { a in
            a.allSatisfy({ $0.isLetter || $0.isNumber || "-_./=:,+@%".contains($0) }) && !a.isEmpty ? a : "'" + a.replacingOccurrences(of: "'", with: "'\\''") + "'"
        }.joined(separator: " ")
    }

    /// The batch task a run is, when a batch system started it: `run.launcher`, `run.job`.
    static func batchFacts(_ env: [String: String]) -> [String: String] {
        if let job = env["SLURM_ARRAY_JOB_ID"], let task = env["SLURM_ARRAY_TASK_ID"] {
            return ["run.launcher": "slurm", "run.job": "\(job)_\(task)", "run.slurm_job_id": env["SLURM_JOB_ID"] ?? ""].filter { !$0.value.isEmpty }
        }
        if let job = env["SLURM_JOB_ID"] { return ["run.launcher": "slurm", "run.job": job] }
        if let index = env["JOB_COMPLETION_INDEX"] {
            return ["run.launcher": "k8s", "run.job_index": index, "run.pod": env["HOSTNAME"] ?? ""].filter { !$0.value.isEmpty }
        }
        return [:]
    }

    /// Python and CUDA versions when present (cheap probes; missing tools are skipped).
    static func environmentFacts() -> [String: String] {
        var out: [String: String] = [:]
        out["env.os"] = (try? FileIO.readText("/etc/os-release"))?.split(separator: "\n")
            .first { $0.hasPrefix("PRETTY_NAME=") }.map { String($0.dropFirst(12)).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
        if let v = pythonVersion() { out["env.python"] = v }
        if let v = try? FileIO.readText("/proc/driver/nvidia/version"), let line = v.split(separator: "\n").first { out["env.nvidia_driver"] = String(line) }
        // The CUDA toolkit's own record of its version (no process started).
        let cuda = (ProcessInfo.processInfo.environment["CUDA_HOME"] ?? "/usr/local/cuda") + "/version.json"
        if let data = try? FileIO.readFile(cuda), let j = try? JSONSerialization.jsonObject(with: Data(data)) as? [String: Any],
           let v = (j["cuda"] as? [String: Any])?["version"] as? String {
            out["env.cuda"] = v
        }
        return out.compactMapValues { $0 }
    }

    /// The version of the `python3` on PATH, asked once per binary (`python3 --version` costs
    /// ~70 ms) and remembered, keyed by its real path and
    /// modification time, in memory for this process and in `$XDG_CACHE_HOME/trove` (or
    /// `~/.cache/trove`) across runs.
    static func pythonVersion() -> String? {
        let env = ProcessInfo.processInfo.environment
        let candidates: [String] = (env["PATH"] ?? "").split(separator: ":").map { String($0) + "/python3" }
        guard let path = candidates.first(where: { access($0, X_OK) == 0 }), let real = realpath(path, nil) else { return nil }
        defer { free(real) }
        var st = stat()
        guard stat(real, &st) == 0 else { return nil }
        let key = "\(String(cString: real)) \(st.st_mtim.tv_sec)"
        let cacheDir = (env["XDG_CACHE_HOME"] ?? ((env["HOME"] ?? "/tmp") + "/.cache")) + "/trove"
        let cacheFile = cacheDir + "/python-version"
        if let text = try? FileIO.readText(cacheFile), let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key + "\t") }) {
            return String(line.dropFirst(key.count + 1))
        }
        guard let r = try? Tool.run(["python3", "--version"], timeout: 30), r.ok else { return nil }
        let v = (r.stdout.isEmpty ? r.stderr : r.stdout).trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "Python ", with: "")
        try? FileIO.mkdirs(cacheDir)
        try? FileIO.atomicWrite(cacheFile, Array("\(key)\t\(v)\n".utf8), durable: false)
        return v
    }
}
