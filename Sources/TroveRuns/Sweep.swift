import Dispatch
import Foundation
import Glibc
import TroveCore
import TroveStore

/// `--early-stop median:METRIC[,min-step=N][,min-runs=N][,mode=min|max]` (Docs/runs.md §Early stopping).
public struct EarlyStop: Sendable, Equatable {
    public init(metric: String, minStep: Int64 = 0, lowerIsBetter: Bool = true) {
        self.metric = metric
        self.minStep = minStep
        self.lowerIsBetter = lowerIsBetter
    }

    public var metric: String
    public var minStep: Int64 = 0
    /// Judge a run at a step only when at least this many other runs have reached it (batch
    /// tasks start at different times).
    public var minRuns = 1
    /// True: lower is better (a loss).
    public var lowerIsBetter = true

    public static func parse(_ text: String) throws -> EarlyStop {
        func bad(_ why: String) -> StoreError {
            StoreError(.invalidInput, "--early-stop \(text.debugDescription): \(why)", hint: "e.g. --early-stop median:val_loss,min-step=5,min-runs=3,mode=min")
        }
        let parts = text.split(separator: ",").map(String.init)
        guard let first = parts.first, first.hasPrefix("median:"), first.count > 7 else { throw bad("the rule must be median:METRIC") }
        var e = EarlyStop(metric: String(first.dropFirst(7)))
        for p in parts.dropFirst() {
            let kv = p.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw bad("\(p) is not KEY=VALUE") }
            switch kv[0] {
            case "min-step": guard let n = Int64(kv[1]), n >= 0 else { throw bad("min-step must be a whole number") }; e.minStep = n
            case "min-runs": guard let n = Int(kv[1]), n >= 1 else { throw bad("min-runs must be 1 or more") }; e.minRuns = n
            case "mode":
                guard kv[1] == "min" || kv[1] == "max" else { throw bad("mode is min or max") }
                e.lowerIsBetter = kv[1] == "min"
            default: throw bad("unknown option \(kv[0])")
            }
        }
        return e
    }

    /// Whether `value` at a step is worse than the median of `others` at that step.
    /// Why a run whose points so far are `mine` (by step) should stop, or nil: at its latest
    /// step (of the last 64) that at least `minRuns` peers have reached, it is worse than their
    /// median. A run ahead of its peers is judged at the steps they have reached.
    public func verdict(mine: [Int64: Double], peers: (Int64) -> [Double]) -> String? {
        for step in mine.keys.sorted(by: >).prefix(64) where step >= minStep {
            let others = peers(step)
            guard others.count >= minRuns else { continue }
            let value = mine[step]!
            guard worse(value, than: others) else { return nil }
            return "early-stop median:\(metric) at step \(step): \(value) against the median of \(others.count) other run(s)"
        }
        return nil
    }

    public func worse(_ value: Double, than others: [Double]) -> Bool {
        guard !others.isEmpty, others.count >= minRuns else { return false }
        let s = others.sorted()
        let median = s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        return lowerIsBetter ? value > median : value < median
    }
}

/// A parameter sweep: the grid (or a seeded random sample of it) expanded into runs.
public struct SweepSpec: Sendable {
    public var grid: [(name: String, values: [String])]
    public var random: Int?
    public var seed: UInt64 = 0
    public var run: RunSpec
    public var parallel = 1
    public var earlyStop: EarlyStop?
    /// `local`, or the batch system the members are handed to.
    public var launcher = "local"

    public init(grid: [(name: String, values: [String])], run: RunSpec) {
        self.grid = grid
        self.run = run
    }

    /// The variants, in grid order (the last parameter varies fastest); with `random`, that
    /// many distinct ones drawn with `seed` (all of them when the grid is smaller).
    public func variants() -> [[(name: String, value: String)]] {
        var all: [[(name: String, value: String)]] = [[]]
        for (name, values) in grid {
            all = all.flatMap { prefix in values.map { prefix + [(name, $0)] } }
        }
        guard let n = random, n < all.count else { return all }
        var state = seed
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        var indices = Array(all.indices)
        for i in 0..<n { indices.swapAt(i, i + Int(next() % UInt64(indices.count - i))) }
        return indices.prefix(n).sorted().map { all[$0] }
    }
}

/// Runs a sweep on this machine: a bounded pool of runs in this process, watched for early
/// stopping. The sweep's spec and variants are recorded first, on `sweeps/ID`.
public final class LocalSweep {
    public let store: Store
    public let spec: SweepSpec
    public let id: String

    public init(store: Store, spec: SweepSpec) throws {
        self.store = store
        self.spec = spec
        id = RunRecorder.newID()
        try Refs.validate("sweeps/" + id)
    }

    public struct Member: Sendable {
        public var index: Int
        public var runID: String
        public var outcome: RunRecorder.Outcome?
        public var error: String?
    }

    public func run(progress: ((Member) -> Void)? = nil) throws -> (record: ObjectID, members: [Member]) {
        let variants = spec.variants()
        let record = try recordSweep(variants)
        var members = variants.indices.map { Member(index: $0, runID: "", outcome: nil, error: nil) }
        let lock = Mutex()
        // Early stopping: every live run's points of the watched metric, by step.
        var seen: [Int: [Int64: Double]] = [:]
        var recorders: [Int: RunRecorder] = [:]
        var next = 0
        let rule = spec.earlyStop
        func consider(_ index: Int, _ points: [MetricPoint]) {
            guard let rule else { return }
            var stop: (RunRecorder, String)?
            lock.withLock {
                for p in points where p.name == rule.metric { seen[index, default: [:]][p.step] = p.value }
                guard points.contains(where: { $0.name == rule.metric }), let r = recorders[index], let mine = seen[index] else { return }
                let why = rule.verdict(mine: mine) { step in seen.filter { $0.key != index }.compactMap { $0.value[step] } }
                if let why { stop = (r, why) }
            }
            if let (r, why) = stop { r.cancel(reason: why) }
        }
        let workers = max(1, min(spec.parallel, variants.count))
        // Each worker waits for its runs' commands: threads of their own, not the dispatch
        // pool (as wide as the cores, it would run `--parallel 8` two at a time on 2 cores).
        onOwnThreads(workers) { [self] _ in
            while true {
                let i: Int? = lock.withLock {
                    guard next < variants.count else { return nil }
                    defer { next += 1 }
                    return next
                }
                guard let i else { return }
                var runSpec = spec.run
                runSpec.parameters = variants[i]
                runSpec.sweep = (id, i)
                do {
                    let recorder = try RunRecorder(store: store, spec: runSpec, id: "\(id)-\(i)")
                    recorder.observe = { consider(i, $0) }
                    lock.withLock {
                        recorders[i] = recorder
                        members[i].runID = recorder.id
                    }
                    let o = try recorder.run()
                    lock.withLock { members[i].outcome = o }
                } catch {
                    lock.withLock { members[i].error = "\(error)" }
                }
                let m = lock.withLock { members[i] }
                progress?(m)
            }
        }
        return (record, members)
    }

    /// The sweep commit: its spec and variants as files, so that a node can resolve a member's
    /// parameters from the store alone.
    public func recordSweep(_ variants: [[(name: String, value: String)]]) throws -> ObjectID {
        let writer = ObjectWriter(store: store)
        let specJSON: [String: Any] = [
            "command": spec.run.command, "grid": spec.grid.map { ["name": $0.name, "values": $0.values] },
            "random": spec.random as Any? ?? NSNull(), "seed": spec.seed, "parallel": spec.parallel,
            "early_stop": spec.earlyStop.map { "median:\($0.metric),min-step=\($0.minStep),min-runs=\($0.minRuns),mode=\($0.lowerIsBetter ? "min" : "max")" } as Any? ?? NSNull(),
            "outputs": spec.run.outputs, "inputs": spec.run.inputs.map { "\($0.name)=\($0.commit.hex):\($0.path)" }, "pip_freeze": spec.run.pipFreeze, "launcher": spec.launcher, "timeout": spec.run.timeLimit as Any? ?? NSNull(),
        ]
        let variantsJSON = variants.map { Dictionary($0.map { ($0.name, $0.value) }, uniquingKeysWith: { _, b in b }) }
        var files: [String: Tree.Entry] = [:]
        for (name, obj) in [("spec.json", specJSON as Any), ("variants.json", variantsJSON as Any)] {
            files[name] = try writer.smallFile(name, Array(try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .prettyPrinted])))
        }
        let (tree, _) = try store.writeTrees(files, writer: writer)
        let author = Worktree.Author.current(config: store.config, environment: ProcessInfo.processInfo.environment)
        let c = Commit(tree: tree, parents: [], author: author.name, time: author.time, timezoneOffset: author.offsetMinutes,
                       kind: .run, gitCommit: spec.run.gitCommit ?? "",
                       metadata: ["sweep.id": id, "sweep.size": "\(variants.count)", "sweep.launcher": spec.launcher],
                       message: "sweep \(id): \(variants.count) run(s)\n\n\(RunRecorder.shellQuoted(spec.run.command))\n")
        let commit = try writer.put(.commit, c.encode())
        try writer.finish()
        try store.refs.update("sweeps/" + id, from: nil, to: commit, message: "sweep")
        return commit
    }
}

/// A recorded sweep read back: what a batch task needs to run its member from the store
/// alone (`trove run --sweep ID --index N`).
public struct SweepRecord: Sendable {
    public var id: String
    public var command: [String]
    public var outputs: [String]
    /// `NAME=COMMIT:PATH`: resolved when the sweep was recorded, so every member reads the
    /// same data.
    public var inputs: [String]
    public var pipFreeze: Bool
    public var variants: [[(name: String, value: String)]]
    public var launcher: String
    public var earlyStop: EarlyStop?
    public var timeLimit: Double?
    /// How it was submitted, when it went to a batch system.
    public var launch: SweepLaunch?

    /// The sweep `id` names (or a unique prefix of it), from `sweeps/ID`.
    public static func load(_ store: some RefStore, _ id: String) throws -> SweepRecord {
        var all = try store.refs.list(prefix: "sweeps/").filter { $0.name.hasPrefix("sweeps/" + id) }
        if all.isEmpty {
            // Fetched from a remote (a pod's own store fetched it from the daemon).
            all = try store.refs.list(prefix: "remotes/").filter { $0.name.contains("/sweeps/" + id) }
                .map { (name: String($0.name[$0.name.range(of: "sweeps/")!.lowerBound...]), id: $0.id) }
        }
        guard all.count == 1, let ref = all.first else {
            throw StoreError(all.isEmpty ? .notFound : .invalidInput, all.isEmpty ? "no sweep \(id) in \(store.root)" : "\(id) names \(all.count) sweeps",
                             hint: "the task must see the store the sweep was recorded in (a shared path, or fetch it first)")
        }
        let files = try store.flatten(tree: try store.commit(ref.id).tree)
        func json(_ name: String) throws -> Any {
            guard let e = files[name] else { throw StoreError(.integrity, "sweep \(ref.name) has no \(name)") }
            return try JSONSerialization.jsonObject(with: Data(try Materializer.readBlob(store: store, blob: e.id)))
        }
        guard let spec = try json("spec.json") as? [String: Any], let command = spec["command"] as? [String],
              let variants = try json("variants.json") as? [[String: String]] else {
            throw StoreError(.integrity, "sweep \(ref.name): spec.json or variants.json is not what trove writes")
        }
        // Parameter order: the grid's.
        let order = (spec["grid"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        let launch = try files["launch.json"].map { try JSONDecoder().decode(SweepLaunch.self, from: Data(try Materializer.readBlob(store: store, blob: $0.id))) }
        return SweepRecord(id: String(ref.name.dropFirst(7)), command: command, outputs: spec["outputs"] as? [String] ?? [],
                           inputs: spec["inputs"] as? [String] ?? [], pipFreeze: spec["pip_freeze"] as? Bool ?? false,
                           variants: variants.map { v in order.compactMap { n in v[n].map { (n, $0) } } },
                           launcher: spec["launcher"] as? String ?? "local",
                           earlyStop: try (spec["early_stop"] as? String).map(EarlyStop.parse),
                           timeLimit: spec["timeout"] as? Double, launch: launch)
    }
}

/// Early stopping for a member that a batch task runs (`trove run --sweep`): with no sweep
/// process watching, each member compares itself with the other members' points of the
/// metric, read from the store they all record into: the live files of running members and the
/// recorded series of finished ones (read once each).
public final class SweepPeers {
    let store: Store
    let sweep: String
    let me: String
    public let rule: EarlyStop
    var finished: [String: [Int64: Double]] = [:]
    var live: [String: (reader: MetricsReader, seen: Int, values: [Int64: Double])] = [:]

    public init(store: Store, sweep: String, index: Int, rule: EarlyStop) {
        self.store = store
        self.sweep = sweep
        me = "\(sweep)-\(index)"
        self.rule = rule
    }

    /// This member's points of the metric so far, by step.
    var mine: [Int64: Double] = [:]
    var lastRefresh = Date.distantPast

    /// The reason to stop, given this member's new `points`: at its latest step that at least
    /// `min-runs` other members have also reached (a member that started late catches up),
    /// it is worse than their median.
    public func verdict(_ points: [MetricPoint]) -> String? {
        for p in points where p.name == rule.metric { mine[p.step] = p.value }
        // The peers' files are read at most twice a second, not at every poll of this run.
        let now = Date()
        if now.timeIntervalSince(lastRefresh) >= 0.5 {
            lastRefresh = now
            refresh()
        }
        return rule.verdict(mine: mine, peers: values(at:))
    }

    func values(at step: Int64) -> [Double] {
        finished.values.compactMap { $0[step] } + live.values.compactMap { $0.values[step] }
    }

    /// Reads what the other members reported since the last call.
    func refresh() {
        let prefix = sweep + "-"
        for r in (try? store.refs.list(prefix: "runs/" + prefix)) ?? [] {
            let id = String(r.name.dropFirst(5))
            guard id != me, finished[id] == nil else { continue }
            var m: [Int64: Double] = [:]
            if let info = try? RunInfo(id: id, commit: r.id, store.commit(r.id)),
               let s = try? RunList.series(store, run: info, metric: rule.metric) {
                for (st, v) in zip(s.steps, s.values) { m[st] = v }
            }
            finished[id] = m
            live[id] = nil
        }
        let root = store.root + "/runs-live"
        for name in (try? FileIO.listDirectory(root)) ?? [] where name.hasPrefix(prefix) && name != me && finished[name] == nil {
            var entry = live[name] ?? (MetricsReader(path: root + "/" + name + "/metrics.jsonl"), 0, [:])
            entry.reader.poll()
            for p in entry.reader.points[entry.seen...] where p.name == rule.metric { entry.values[p.step] = p.value }
            entry.seen = entry.reader.points.count
            live[name] = entry
        }
    }
}
