import Dispatch
import Foundation
import Glibc
import TroveCore
import TroveStore

/// A batch system a sweep can be handed to (`trove sweep --launcher slurm|k8s`). Each member
/// of the sweep becomes one task that runs `trove run --sweep ID --index N` against a store it
/// can reach; the launcher only submits, watches and stops those tasks (Docs/runs.md §Launchers).
public protocol BatchLauncher {
    /// `slurm`, `k8s`.
    var name: String { get }
    /// Refuses, with the reason, when the batch system cannot take a job now (before anything is
    /// recorded).
    func preflight() throws
    /// The job text (an sbatch script, a Job manifest) for a recorded sweep.
    func jobText(sweep: String, size: Int, store: Store, directory: String) throws -> String
    /// Submits the job text; returns the batch system's handle for it.
    func submit(_ text: String, sweep: String, store: Store) throws -> String
    /// What a later `trove runs`/`trove cancel` needs to reach the job (namespace, context).
    var settings: [String: String] { get }
    /// The state of each task the batch system still knows, by member index (`PENDING`,
    /// `RUNNING`, `COMPLETED`, ...). A member it does not list has ended or never started.
    func states(job: String) throws -> [Int: String]
    /// Stops the tasks of `indices` (all of the job when nil).
    func cancel(job: String, indices: [Int]?) throws
}

/// How a sweep was handed to a batch system: `launch.json` in the sweep's second commit.
public struct SweepLaunch: Sendable, Codable, Equatable {
    public var launcher: String
    /// The batch system's handle: a Slurm array job id, a Kubernetes Job name.
    public var job: String
    public var submitted: String
    /// Launcher settings a later `trove runs`/`trove cancel` needs (namespace, context).
    public var settings: [String: String]

    public init(launcher: String, job: String, submitted: String, settings: [String: String] = [:]) {
        self.launcher = launcher
        self.job = job
        self.submitted = submitted
        self.settings = settings
    }
}

/// Runs a batch system's command-line tool and returns what it printed.
public enum Tool {
    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        public var timedOut: Bool
        public var ok: Bool { status == 0 && !timedOut }
        /// stderr, else stdout, trimmed: what to quote in an error.
        public var message: String {
            let e = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            return e.isEmpty ? stdout.trimmingCharacters(in: .whitespacesAndNewlines) : e
        }
    }

    /// `args[0]` is looked up on PATH. Throws only when the tool is missing.
    public static func run(_ args: [String], input: String? = nil, environment: [String: String]? = nil, timeout: Double = 60) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        if let environment { p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, b in b } }
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = input == nil ? FileHandle.nullDevice : inp
        guard Tool.onPath(args[0]) else {
            throw StoreError(.notFound, "\(args[0]) is not installed (not on PATH)", hint: "install it, or run where it is")
        }
        try p.run()
        if let input {
            let h = inp.fileHandleForWriting
            onOwnThread { h.write(Data(input.utf8)); try? h.close() }
        }
        // Both pipes drain at once (a full stderr pipe must not stall the tool).
        final class Sink: @unchecked Sendable { var data = Data() }
        let o = Sink(), e = Sink()
        let g = DispatchGroup()
        // Drained on threads of their own: the dispatch pool may be busy with blocked work.
        for (sink, pipe) in [(o, out), (e, err)] {
            g.enter()
            onOwnThread { sink.data = pipe.fileHandleForReading.readDataToEndOfFile(); g.leave() }
        }
        var timedOut = false
        if g.wait(timeout: .now() + timeout) == .timedOut {
            timedOut = true
            p.terminate()
            _ = g.wait(timeout: .now() + 2)
        }
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: o.data, as: UTF8.self), stderr: String(decoding: e.data, as: UTF8.self), timedOut: timedOut)
    }

    public static func onPath(_ name: String) -> Bool {
        if name.contains("/") { return access(name, X_OK) == 0 }
        return (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").contains { access("\($0)/\(name)", X_OK) == 0 }
    }
}

extension SweepRecord {
    /// Records how the sweep was submitted: a second commit on `sweeps/ID` whose tree adds
    /// `launch.json` and the job text, so that anyone with the store can watch and stop it.
    public static func recordLaunch(_ store: Store, sweep: String, launch: SweepLaunch, jobText: String, jobFile: String) throws {
        let ref = "sweeps/" + sweep
        guard let tip = try store.refs.read(ref) else { throw StoreError(.notFound, "no sweep \(sweep)") }
        let base = try store.commit(tip)
        var files = try store.flatten(tree: base.tree)
        let writer = ObjectWriter(store: store)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        for (name, bytes) in [("launch.json", Array(try encoder.encode(launch))), (jobFile, Array(jobText.utf8))] {
            files[name] = try writer.smallFile(name, bytes)
        }
        let (tree, _) = try store.writeTrees(files, writer: writer)
        var meta = Dictionary(base.metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        meta["sweep.job"] = launch.job
        meta["sweep.launcher"] = launch.launcher
        let c = Commit(tree: tree, parents: [tip], author: base.author, time: Int64(Date().timeIntervalSince1970), timezoneOffset: base.timezoneOffset,
                       kind: .run, gitCommit: base.gitCommit, metadata: meta,
                       message: "sweep \(sweep): submitted to \(launch.launcher) as \(launch.job)\n")
        let id = try writer.put(.commit, c.encode())
        try writer.finish()
        try store.refs.update(ref, from: tip, to: id, message: "sweep: submitted")
    }

    /// Removes a sweep whose submission failed, so nothing half-recorded stays.
    public static func discard(_ store: Store, sweep: String) throws {
        let ref = "sweeps/" + sweep
        if let tip = try store.refs.read(ref) { try store.refs.update(ref, from: tip, to: nil, message: "sweep: submission failed") }
    }
}

extension RunRecorder {
    /// Records a sweep member that never started (stopped while queued): a run commit with its
    /// parameters, the status and why, and no logs. Nil when the member is already recorded
    /// (it started after all and recorded itself).
    public static func recordNotStarted(store: Store, sweep: SweepRecord, index: Int, status: RunStatus, reason: String) throws -> ObjectID? {
        let id = "\(sweep.id)-\(index)"
        guard try store.refs.read("runs/" + id) == nil else { return nil }
        let writer = ObjectWriter(store: store)
        let params = Dictionary(sweep.variants[index].map { ($0.name, $0.value) }, uniquingKeysWith: { _, b in b })
        let bytes = Array(try JSONSerialization.data(withJSONObject: params, options: [.sortedKeys]))
        let (tree, _) = try store.writeTrees(["params.json": try writer.smallFile("params.json", bytes)], writer: writer)
        let now = Date()
        var meta: [String: String] = [
            "run.id": id, "run.status": status.rawValue, "run.command": shellQuoted(sweep.command), "run.start": iso(now), "run.end": iso(now),
            "run.seconds": "0.000", "run.started": "false", "run.stopped_by": reason, "run.sweep": sweep.id, "run.sweep_index": "\(index)",
        ]
        if let l = sweep.launch { meta["run.launcher"] = l.launcher; meta["run.job"] = l.job }
        for (k, v) in sweep.variants[index] { meta["param." + k] = v }
        let author = Worktree.Author.current(config: store.config, environment: ProcessInfo.processInfo.environment)
        let c = Commit(tree: tree, parents: [], author: author.name, time: Int64(now.timeIntervalSince1970), timezoneOffset: author.offsetMinutes,
                       kind: .run, metadata: meta, message: "run \(id): \(status.rawValue) before it started\n\n\(reason)\n")
        let commit = try writer.put(.commit, c.encode())
        try writer.finish()
        do { try store.refs.update("runs/" + id, from: nil, to: commit, message: "run: \(status.rawValue) before it started") } catch let e as StoreError where e.code == .conflict {
            return nil
        }
        return commit
    }
}

/// A member of a submitted sweep that has no record yet and is not running under `trove run`:
/// queued, starting, or lost (its task ended without recording).
public struct QueuedMember: Sendable, ListedRun {
    public var id: String
    public var sweep: String
    public var index: Int
    public var parameters: [(String, String)]
    /// `pending`, `starting`, `lost` or `unknown` (the batch system forgot the task).
    public var status: String
    /// The batch system's word for it (`PENDING`, `RUNNING`, `FAILED`...), and where.
    public var launcherState: String?
    public var launcher: String
    public var job: String

    public var metrics: [(String, String)] { [] }
    public var statusText: String { status }
    public func ownField(_ name: String) -> String? { nil }
}

public enum BatchSweeps {
    /// The launcher that submitted a sweep, set up to watch and stop it.
    public static func launcher(for launch: SweepLaunch) throws -> BatchLauncher {
        switch launch.launcher {
        case "slurm": return SlurmLauncher(trove: "trove")
        case "k8s":
            var k = KubernetesLauncher(image: "")
            k.namespace = launch.settings["namespace"] ?? "default"
            k.context = launch.settings["context"]
            return k
        default: throw StoreError(.invalidInput, "sweep job \(launch.job) was submitted to an unknown launcher \(launch.launcher)")
        }
    }

    /// The submitted sweeps (matching `sweep`, an id or prefix, when given), each with its
    /// record. With `recorded` (run ids known to be recorded), sweeps whose every member is
    /// among them are left out without reading their records.
    public static func submitted(_ store: Store, matching sweep: String? = nil, recorded: Set<String>? = nil) throws -> [SweepRecord] {
        var out: [SweepRecord] = []
        var done: [Substring: Int] = [:]
        for id in recorded ?? [] {
            if let dash = id.lastIndex(of: "-"), Int(id[id.index(after: dash)...]) != nil { done[id[..<dash], default: 0] += 1 }
        }
        let refs = try store.refs.list(prefix: "sweeps/").filter { r in sweep.map { r.name.hasPrefix("sweeps/" + $0) } ?? true }
        for (r, c) in zip(refs, try store.commits(refs.map(\.id))) where c.metadata.contains(where: { $0.key == "sweep.job" }) {
            let id = r.name.dropFirst(7)
            if recorded != nil, let size = c.metadata.first(where: { $0.key == "sweep.size" }).flatMap({ Int($0.value) }),
               done[id, default: 0] >= size { continue }
            out.append(try SweepRecord.load(store, String(id)))
        }
        return out
    }

    /// Members of submitted sweeps without a record and not live, with what their batch
    /// system says. `recorded` and `live`: run ids already known. Sweeps whose members are all
    /// accounted for cost no batch-system query.
    public static func queued(_ store: Store, sweeps: [SweepRecord], recorded: Set<String>, live: Set<String>) -> [QueuedMember] {
        var out: [QueuedMember] = []
        for s in sweeps {
            guard let launch = s.launch else { continue }
            let missing = s.variants.indices.filter { i in !recorded.contains("\(s.id)-\(i)") && !live.contains("\(s.id)-\(i)") }
            guard !missing.isEmpty else { continue }
            // A batch system that cannot be asked leaves its members `unknown`, not the listing failed.
            let states = (try? launcher(for: launch).states(job: launch.job)) ?? [:]
            for i in missing {
                let state = states[i]
                let status: String
                switch state {
                case "PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "SUSPENDED": status = "pending"
                case "RUNNING", "COMPLETING": status = "starting"
                case "CANCELLED": status = "cancelled"
                case "TIMEOUT", "DEADLINE": status = "timeout"
                case nil: status = "unknown"
                default: status = "lost"
                }
                out.append(QueuedMember(id: "\(s.id)-\(i)", sweep: s.id, index: i, parameters: s.variants[i], status: status,
                                        launcherState: state, launcher: launch.launcher, job: launch.job))
            }
        }
        return out
    }
}

extension ObjectWriter {
    /// A small file of a record's tree (a sweep's spec, a launch, parameters): one chunk.
    func smallFile(_ name: String, _ bytes: [UInt8]) throws -> Tree.Entry {
        Tree.Entry(name: name, kind: .file, id: try put(.chunk, bytes), size: UInt64(bytes.count))
    }
}
