import Foundation
import Glibc
import TroveCore
import TroveStore

/// A recorded run as `trove runs` shows it: from the run commit's metadata.
public struct RunInfo: Sendable {
    public var id: String
    public var commit: ObjectID
    public var status: String
    public var start: String
    public var seconds: Double?
    public var name: String?
    public var command: String
    public var gitCommit: String
    public var parameters: [(String, String)]
    public var metrics: [(String, String)]
    public var metadata: [(key: String, value: String)]
    /// Where it is: `runs/ID`, or `remotes/NAME/runs/ID` for a run only fetched.
    public var ref: String

    public init(id: String, commit: ObjectID, _ c: Commit, ref: String? = nil) {
        self.id = id
        self.commit = commit
        self.ref = ref ?? "runs/" + id
        let m = Dictionary(c.metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        status = m["run.status"] ?? "unknown"
        start = m["run.start"] ?? ""
        seconds = m["run.seconds"].flatMap(Double.init)
        name = m["run.name"]
        command = m["run.command"] ?? ""
        gitCommit = c.gitCommit
        parameters = c.metadata.filter { $0.key.hasPrefix("param.") }.map { (String($0.key.dropFirst(6)), $0.value) }
        metrics = c.metadata.filter { $0.key.hasPrefix("metric.") && $0.key.hasSuffix(".last") }
            .map { (String($0.key.dropFirst(7).dropLast(5)), $0.value) }
        metadata = c.metadata
    }
}

public enum RunList {
    /// Every run on `runs/*`, and on `remotes/NAME/runs/*` (fetched from a cluster's store)
    /// when there is no local ref of that id; newest first.
    ///
    /// The run commits come from a derived table in the index (Docs/format.md §run_list):
    /// when the refs folders are as they were (same modification times), the refs are not even
    /// read; otherwise only commits not in the table are read from the packs (one pack per
    /// run in a store that was never gc'd).
    public static func all(_ store: Store) throws -> [RunInfo] {
        let key = refsKey(store)
        let cached = try? store.index.runList()
        var named: [(ref: String, id: ObjectID, body: [UInt8])] = []
        // Commits just read from the packs: not decoded a second time from their encoding.
        var decoded: [ObjectID: Commit] = [:]
        if let cached, let key, cached.key == key {
            named = cached.rows.map { ($0.key, $0.value.id, $0.value.body) }
        } else {
            var refs = try store.refs.list(prefix: "runs/")
            var seen = Set(refs.map { $0.name.dropFirst(5) })
            for r in try store.refs.list(prefix: "remotes/") {
                guard let range = r.name.range(of: "/runs/") else { continue }
                if seen.insert(r.name[range.upperBound...]).inserted { refs.append(r) }
            }
            let rows = cached?.rows ?? [:]
            let missing = refs.filter { rows[$0.name]?.id != $0.id }
            let read = Dictionary(zip(missing.map(\.id), try store.commits(missing.map(\.id))), uniquingKeysWith: { a, _ in a })
            decoded = read
            named = refs.map { r in (r.name, r.id, (rows[r.name]?.id == r.id ? rows[r.name]?.body : nil) ?? read[r.id]!.encode()) }
            // The key is kept only when the folders have been still for 2 s: a change in the
            // same clock tick as the listing must not be hidden (coarse mtimes on NFS).
            try? store.index.replaceRunList(key: key.flatMap { refsKeyIsSettled(store) ? $0 : nil }, rows: named)
        }
        var out: [RunInfo] = []
        out.reserveCapacity(named.count)
        for r in named {
            let c = try decoded[r.id] ?? Commit.decode(r.body)
            guard c.kind == .run else { continue }
            let id = r.ref.range(of: "runs/").map { String(r.ref[$0.upperBound...]) } ?? r.ref
            out.append(RunInfo(id: id, commit: r.id, c, ref: r.ref))
        }
        return out.sorted { ($0.start, $0.id) > ($1.start, $1.id) }
    }

    /// The folders run refs live in, with their modification times: any ref added, moved or
    /// removed there changes its folder's time.
    static func refsFolders(_ store: some RefStore) -> [(path: String, mtime: Int64)] {
        var dirs = [store.root + "/refs/runs"]
        for remote in ((try? FileIO.listDirectory(store.root + "/refs/remotes")) ?? []).sorted() {
            dirs.append(store.root + "/refs/remotes/" + remote + "/runs")
        }
        return dirs.map { d in
            var st = stat()
            return (d, stat(d, &st) == 0 ? Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec) : -1)
        }
    }

    static func refsKey(_ store: some RefStore) -> String? {
        // Refs in a database have no folder times: listed each time (one query).
        if store.refs.database != nil { return nil }
        let f = refsFolders(store)
        return f.map { "\($0.path)@\($0.mtime)" }.joined(separator: "|")
    }

    static func refsKeyIsSettled(_ store: some RefStore) -> Bool {
        let now = Int64(Date().timeIntervalSince1970 * 1e9)
        return refsFolders(store).allSatisfy { now - $0.mtime > 2_000_000_000 }
    }
}

/// The runs of a store kept in memory by a long-lived reader (the daemon, whose projects are
/// shared stores without an index): the run refs are listed again only when their folders
/// changed (or changed less than 2 s ago), and only commits not seen before are read.
public final class RunCatalog: @unchecked Sendable {
    public let store: any RefStore
    private let lock = Mutex()
    private var key: String?
    private var listed = Date.distantPast
    private var byRef: [String: RunInfo] = [:]
    private var generation = 0
    private var cached: (generation: Int, runs: [RunInfo])?

    public init(store: any RefStore) { self.store = store }

    /// Every run on `runs/*`, newest first, and a number that changes whenever the list does.
    public func runs() throws -> (generation: Int, runs: [RunInfo]) {
        try lock.withLock {
            let now = RunList.refsKey(store)
            // A folder changed within the last 2 s may change again in the same clock tick
            // (coarse mtimes on NFS): listed again then, but at most twice a second.
            let unsettled = !RunList.refsKeyIsSettled(store) && Date().timeIntervalSince(listed) > 0.5
            if now == nil || now != key || unsettled {
                listed = Date()
                let refs = try store.refs.list(prefix: "runs/")
                let missing = refs.filter { byRef[$0.name]?.commit != $0.id }
                let commits = try store.commits(missing.map(\.id))
                var next: [String: RunInfo] = [:]
                next.reserveCapacity(refs.count)
                let read = Dictionary(zip(missing.map(\.name), zip(missing, commits)).map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
                for r in refs {
                    if let known = byRef[r.name], known.commit == r.id { next[r.name] = known; continue }
                    guard let (ref, c) = read[r.name], c.kind == .run, c.metadata.contains(where: { $0.key == "run.id" }) else { continue }
                    next[r.name] = RunInfo(id: String(r.name.dropFirst(5)), commit: ref.id, c, ref: r.name)
                }
                if next.count != byRef.count || !missing.isEmpty || refs.count != byRef.count { generation += 1 }
                byRef = next
                key = now
            }
            if let cached, cached.generation == generation { return cached }
            let sorted = byRef.values.sorted { ($0.start, $0.id) > ($1.start, $1.id) }
            cached = (generation, sorted)
            return (generation, sorted)
        }
    }

    public func run(_ id: String) throws -> RunInfo? {
        _ = try runs()
        return lock.withLock { byRef["runs/" + id] }
    }
}

extension RunList {
    /// A run's series for one metric.
    public static func series(_ store: some ObjectSource, run: RunInfo, metric: String) throws -> MetricSeries {
        try MetricSeries.decode(try Materializer.readBlob(store: store, blob: try seriesEntry(store, run: run, metric: metric).id))
    }

    /// The file of a run's series for one metric (its id keys a cache of decoded series).
    public static func seriesEntry(_ store: some ObjectSource, run: RunInfo, metric: String) throws -> Tree.Entry {
        let files = try store.flatten(tree: try store.commit(run.commit).tree)
        guard let e = files["metrics/" + MetricSeries.fileName(metric)] else {
            let names = files.keys.filter { $0.hasPrefix("metrics/") }.map { String($0.dropFirst(8)).removingPercentEncoding ?? "" }.sorted()
            throw StoreError(.notFound, "run \(run.id) has no metric \(metric)", hint: names.isEmpty ? "it reported no metrics" : "it has: \(names.joined(separator: ", "))")
        }
        return e
    }
}

/// A run going on now (its files under `STORE/runs-live/ID/`), as another process sees it.
public struct LiveRun: Sendable {
    public var id: String
    public var pgid: Int32
    public var host: String
    public var start: String
    public var command: String
    public var sweep: String
    public var parameters: [(String, String)]
    public var metrics: [(String, String)]
    public var directory: String
    /// The `trove` recording it (absent in state files written before 2026-11-28).
    public var recorder: LocalProcess?

    /// Whether it is still being recorded (on this host; elsewhere: assumed so). The recorder
    /// is what counts: once it is gone the run will not be recorded by it, whatever its command
    /// left behind (an orphan, or a zombie its parent never reaps, as with some container
    /// inits). Older state files: whether the command's process group exists.
    public var alive: Bool {
        guard host == ProcessInfo.processInfo.hostName else { return true }
        if let recorder { return recorder.isRunning }
        return pgid > 0 && (kill(-pgid, 0) == 0 || errno == EPERM)
    }
}

extension RunList {
    /// The runs being recorded right now, with their latest metrics.
    public static func live(_ store: Store) -> [LiveRun] {
        let root = store.root + "/runs-live"
        var out: [LiveRun] = []
        for name in ((try? FileIO.listDirectory(root)) ?? []).sorted() {
            let dir = root + "/" + name
            guard let data = try? FileIO.readFile(dir + "/state.json"),
                  let s = try? JSONSerialization.jsonObject(with: Data(data)) as? [String: Any] else { continue }
            let metrics = MetricsReader(path: dir + "/metrics.jsonl")
            metrics.poll()
            let params = (s["params"] as? [String: String] ?? [:]).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            out.append(LiveRun(id: name, pgid: Int32((s["pgid"] as? Int) ?? 0), host: s["host"] as? String ?? "",
                               start: s["start"] as? String ?? "", command: s["command"] as? String ?? "", sweep: s["sweep"] as? String ?? "",
                               parameters: params, metrics: metrics.summaries.sorted { $0.key < $1.key }.map { ($0.key, $0.value.last.metricText) },
                               directory: dir,
                               recorder: (s["recorder_pid"] as? Int).map { LocalProcess(pid: Int32($0), started: (s["recorder_started"] as? Int).map { UInt64($0) }) }))
        }
        return out.filter(\.alive)
    }

    /// Asks live runs to stop: leaves the reason for the recorder, then SIGTERM to each
    /// process group on this host. Returns the runs signalled.
    public static func cancel(_ runs: [LiveRun], reason: String) throws -> [LiveRun] {
        var done: [LiveRun] = []
        for r in runs {
            try FileIO.atomicWrite(r.directory + "/cancel", Array((reason + "\n").utf8), durable: false)
            guard r.host == ProcessInfo.processInfo.hostName else {
                throw StoreError(.invalidInput, "run \(r.id) runs on \(r.host), not here: it cannot be signalled from this machine",
                                 hint: "run `trove cancel \(r.id)` on \(r.host)")
            }
            if kill(-r.pgid, SIGTERM) == 0 { done.append(r) }
        }
        return done
    }
}

/// A value of a run that `--where` and `--sort` name: `params.NAME`, `metrics.NAME` (the last
/// value), `status`, `id`, and what a kind of run adds (`name`, `start`, `seconds`).
public protocol RunFields {
    func field(_ name: String) -> String?
}

/// A kind of run listed by `trove runs` (recorded, live, queued): the common fields come from
/// these, the rest from `ownField`.
public protocol ListedRun: RunFields {
    var id: String { get }
    var parameters: [(String, String)] { get }
    /// The last value of each metric, as text.
    var metrics: [(String, String)] { get }
    var statusText: String { get }
    /// The fields beyond the common ones.
    func ownField(_ name: String) -> String?
}

extension ListedRun {
    public func field(_ name: String) -> String? {
        if name.hasPrefix("params.") { return parameters.first { $0.0 == name.dropFirst(7) }?.1 }
        if name.hasPrefix("metrics.") { return metrics.first { $0.0 == name.dropFirst(8) }?.1 }
        switch name {
        case "status": return statusText
        case "id": return id
        default: return ownField(name)
        }
    }
}

extension RunInfo: ListedRun {
    public var statusText: String { status }
    public func ownField(_ name: String) -> String? {
        switch name {
        case "name": return self.name
        case "start": return start
        case "seconds": return seconds.map { "\($0)" }
        default: return nil
        }
    }
}

extension LiveRun: ListedRun {
    public var statusText: String { "running" }
    public func ownField(_ name: String) -> String? { name == "start" ? start : nil }
}

/// `--where 'params.lr<0.01'`: FIELD OP VALUE with OP one of `<=`, `>=`, `!=`, `==`, `<`, `>`, `=`.
/// Numbers compare as numbers when both sides are numbers, else as text. A run without the
/// field does not match.
public struct RunFilter: Sendable {
    public var field: String
    public var op: String
    public var value: String

    public init(field: String, op: String, value: String) {
        self.field = field
        self.op = op
        self.value = value
    }

    public static func parse(_ text: String) throws -> RunFilter {
        // The first operator in the text (the longer one where two start at the same place):
        // a value may itself hold '<' or '='.
        var best: (Range<String.Index>, String)?
        for op in ["<=", ">=", "!=", "==", "<", ">", "="] {
            guard let r = text.range(of: op) else { continue }
            if best == nil || r.lowerBound < best!.0.lowerBound { best = (r, op) }
        }
        if let (r, op) = best {
            let f = text[..<r.lowerBound].trimmingCharacters(in: .whitespaces)
            let v = text[r.upperBound...].trimmingCharacters(in: .whitespaces)
            if !f.isEmpty { return RunFilter(field: f, op: op == "==" ? "=" : op, value: v) }
        }
        throw StoreError(.invalidInput, "--where \(text.debugDescription) is not FIELD OP VALUE",
                         hint: "e.g. --where 'params.lr<0.01' --where status=succeeded (fields: params.NAME, metrics.NAME, status, name, id, start, seconds)")
    }

    public func matches(_ run: RunFields) -> Bool {
        guard let have = run.field(field) else { return false }
        let c = RunFilter.compare(have, value)
        switch op {
        case "<": return c < 0
        case "<=": return c <= 0
        case ">": return c > 0
        case ">=": return c >= 0
        case "!=": return c != 0
        default: return c == 0
        }
    }

    /// -1, 0, 1: as numbers when both are, else as text.
    public static func compare(_ a: String, _ b: String) -> Int {
        if let x = Double(a), let y = Double(b) { return x < y ? -1 : x > y ? 1 : 0 }
        return a < b ? -1 : a > b ? 1 : 0
    }

    /// Sorts by `key` (`-metrics.val_acc`: descending); runs without the field go last.
    public static func sort<T: RunFields>(_ runs: [T], by key: String) -> [T] {
        let descending = key.hasPrefix("-")
        let field = descending ? String(key.dropFirst()) : key
        // Each run's value read and parsed once, not at every comparison (10,000 runs: ~140,000).
        let keys = runs.map { $0.field(field) }
        let numbers = keys.map { $0.flatMap(Double.init) }
        return runs.indices.sorted { a, b in
            switch (keys[a], keys[b]) {
            case (nil, nil): return a < b
            case (nil, _): return false
            case (_, nil): return true
            case let (x?, y?):
                let c: Int
                if let u = numbers[a], let v = numbers[b] { c = u < v ? -1 : u > v ? 1 : 0 } else { c = x < y ? -1 : x > y ? 1 : 0 }
                return c == 0 ? a < b : (descending ? c > 0 : c < 0)
            }
        }.map { runs[$0] }
    }
}
