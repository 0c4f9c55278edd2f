import Foundation
import TroveCore
import TroveRuns
import TroveStore
import TroveSync

/// One run as the API lists it, whatever it came from: a recorded run commit, a live run
/// streaming to the daemon, or an MLflow run.
struct RunRow: Sendable, RunFields {
    var id: String
    var name: String?
    var status: String
    var start: String
    var seconds: Double?
    var launcher: String
    var sweep: String?
    var command: String
    var params: [(String, String)]
    var metrics: [(String, Double)]
    var live: Bool
    var source: String
    var commit: ObjectID?
    var experiment: String?

    init(_ r: RunInfo) {
        id = r.id
        name = r.name
        status = r.status
        start = r.start
        seconds = r.seconds
        let m = r.metadata
        func meta(_ k: String) -> String? { m.first { $0.key == k }?.value }
        launcher = meta("run.launcher") ?? (meta("run.source") == "mlflow" ? "mlflow" : "local")
        sweep = meta("run.sweep")
        command = r.command
        params = r.parameters
        metrics = r.metrics.compactMap { k, v in Double(v).map { (k, $0) } }
        live = false
        source = meta("run.source") ?? "run"
        commit = r.commit
        experiment = meta("mlflow.experiment_id")
    }

    init(live s: LiveState, metrics summaries: [String: MetricSummary]) {
        id = s.id
        name = s.name
        status = s.status
        start = s.start
        seconds = s.end == nil ? ISO8601DateFormatter().date(from: s.start).map { Date().timeIntervalSince($0) } : nil
        launcher = s.launcher ?? (s.source == "mlflow" ? "mlflow" : "local")
        sweep = s.sweep
        command = s.command
        let order = s.paramOrder ?? s.params.keys.sorted()
        params = order.compactMap { k in s.params[k].map { (k, $0) } }
        metrics = summaries.sorted { $0.key < $1.key }.map { ($0.key, $0.value.last) }
        live = s.status == "running"
        source = s.source
        experiment = s.experiment
    }

    func field(_ name: String) -> String? {
        if name.hasPrefix("params.") { return params.first { $0.0 == name.dropFirst(7) }?.1 }
        if name.hasPrefix("metrics.") { return metrics.first { $0.0 == name.dropFirst(8) }.map { "\($0.1)" } }
        switch name {
        case "id": return id
        case "name": return self.name
        case "status": return status
        case "start": return start
        case "seconds": return seconds.map { "\($0)" }
        case "launcher": return launcher
        case "sweep": return sweep
        case "command": return command
        case "source": return source
        default: return nil
        }
    }

    func json() -> [String: Any] {
        [
            "id": id, "name": name as Any? ?? NSNull(), "status": status, "start": start,
            "seconds": seconds as Any? ?? NSNull(), "launcher": launcher, "sweep": sweep as Any? ?? NSNull(),
            "command": command, "params": Dictionary(params, uniquingKeysWith: { a, _ in a }),
            "metrics": Dictionary(metrics.map { ($0.0, $0.1.isFinite ? $0.1 as Any : "\($0.1)" as Any) }, uniquingKeysWith: { a, _ in a }),
            "live": live, "source": source,
        ]
    }
}

/// A project as the API and the web UI see it: its store, its runs (recorded and live), its
/// events. Made on first use and kept.
final class ProjectView: @unchecked Sendable {
    let name: String
    let service: SyncService
    let catalog: RunCatalog
    let live: LiveRuns
    let events = EventHub()
    /// Where this project's models are served (announced by `trove serve`).
    let served: ServedEndpoints
    private let lock = Mutex()
    private var rowsCache: (key: String, rows: [RunRow], params: [String], metrics: [String])?
    private var seriesCache: [ObjectID: MetricSeries] = [:]
    private var seriesOrder: [ObjectID] = []
    private var sweepCache: [ObjectID: SweepRecord] = [:]

    var store: SharedStore { service.store }

    init(name: String, service: SyncService, ephemeral: Documents, database: MetadataDatabase?) {
        self.name = name
        self.service = service
        served = ServedEndpoints(project: name, documents: ephemeral)
        catalog = RunCatalog(store: service.store)
        live = LiveRuns(directory: service.store.root + "/live", events: events, shared: database.map { SharedLiveRuns(db: $0, project: name) })
    }

    /// Every run, newest first: recorded ones, then live ones not recorded yet. A live run
    /// whose commit has arrived is forgotten (its folder removed) once it has ended.
    func rows() throws -> (key: String, rows: [RunRow], params: [String], metrics: [String]) {
        let (generation, recorded) = try catalog.runs()
        let liveRuns = live.all()
        let liveKey = liveRuns.map { "\($0.state.id):\($0.state.status):\($0.metrics.values.reduce(0) { $0 + $1.count })" }.sorted().joined(separator: ",")
        let key = "\(generation)|\(liveKey)"
        if let c = lock.withLock({ rowsCache }), c.key == key { return c }
        var rows: [RunRow] = []
        rows.reserveCapacity(recorded.count + liveRuns.count)
        var ids = Set<String>()
        for r in recorded {
            rows.append(RunRow(r))
            ids.insert(r.id)
        }
        for l in liveRuns where !(l.state.deleted ?? false) {
            if ids.contains(l.state.id) {
                live.remove(l.state.id)
                continue
            }
            rows.append(RunRow(live: l.state, metrics: l.metrics))
        }
        rows.sort { ($0.start, $0.id) > ($1.start, $1.id) }
        var p = Set<String>(), m = Set<String>()
        for r in rows {
            for (k, _) in r.params { p.insert(k) }
            for (k, _) in r.metrics { m.insert(k) }
        }
        let out = (key: key, rows: rows, params: p.sorted(), metrics: m.sorted())
        lock.withLock { rowsCache = out }
        return out
    }

    /// A page of runs: filtered, sorted (numbers as numbers; runs without the field last),
    /// from `offset`. The ordered list of the last few queries is kept, so that paging
    /// through one listing, or many readers of the same view, sort once.
    func page(filters: [RunFilter], query: String?, sort: String, offset: Int, limit: Int) throws
        -> (rows: [RunRow], total: Int, params: [String], metrics: [String]) {
        let all = try rows()
        let key = all.key + "|" + filters.map { "\($0.field)\u{1}\($0.op)\u{1}\($0.value)" }.joined(separator: "\u{2}") + "|" + (query ?? "") + "|" + sort
        let listing: Listing
        if let hit = lock.withLock({ listings.first { $0.key == key } }) { listing = hit } else {
            listing = ProjectView.order(all, filters: filters, query: query, sort: sort, key: key)
            lock.withLock {
                listings.insert(listing, at: 0)
                if listings.count > 16 { listings.removeLast() }
            }
        }
        let total = listing.rows.count
        let slice = offset < total ? Array(listing.rows[offset..<min(total, offset + limit)]) : []
        return (slice, total, listing.params, listing.metrics)
    }

    struct Listing {
        var key: String
        var rows: [RunRow]
        var params: [String]
        var metrics: [String]
    }
    private var listings: [Listing] = []

    static func order(_ all: (key: String, rows: [RunRow], params: [String], metrics: [String]), filters: [RunFilter],
                      query: String?, sort: String, key: String) -> Listing {
        var matching = all.rows
        if !filters.isEmpty { matching = matching.filter { r in filters.allSatisfy { $0.matches(r) } } }
        if let q = query?.lowercased(), !q.isEmpty {
            matching = matching.filter { r in r.id.lowercased().contains(q) || (r.name?.lowercased().contains(q) ?? false) || r.command.lowercased().contains(q) }
        }
        // The rows come newest first already.
        if sort != "-start" { matching = RunFilter.sort(matching, by: sort) }
        var params = all.params, metrics = all.metrics
        if matching.count != all.rows.count {
            var p = Set<String>(), m = Set<String>()
            for r in matching {
                for (k, _) in r.params { p.insert(k) }
                for (k, _) in r.metrics { m.insert(k) }
            }
            params = p.sorted()
            metrics = m.sorted()
        }
        return Listing(key: key, rows: matching, params: params, metrics: metrics)
    }

    func row(_ id: String) throws -> RunRow? {
        if let r = try catalog.run(id) {
            if FileIO.exists(live.folder(id)) { live.remove(id) }
            return RunRow(r)
        }
        if let l = live.get(id), !(l.state.deleted ?? false) { return RunRow(live: l.state, metrics: l.metrics) }
        return nil
    }

    /// A recorded run's series for one metric, decoded once and kept (the last 32).
    func series(_ run: RunInfo, metric: String) throws -> MetricSeries {
        let e = try RunList.seriesEntry(store, run: run, metric: metric)
        if let s = lock.withLock({ seriesCache[e.id] }) { return s }
        let s = try MetricSeries.decode(try Materializer.readBlob(store: store, blob: e.id))
        lock.withLock {
            seriesCache[e.id] = s
            seriesOrder.append(e.id)
            if seriesOrder.count > 32 { seriesCache[seriesOrder.removeFirst()] = nil }
        }
        return s
    }

    /// The API's answer for a recorded run's metric at a number of points, made once (the
    /// last 64 kept): readers refreshing a chart of a million points do not downsample again.
    func history(_ run: RunInfo, metric: String, points: Int, _ render: (MetricSeries) -> String) throws -> String {
        let key = "\(run.commit.hex)/\(metric)/\(points)"
        if let hit = lock.withLock({ histories[key] }) { return hit }
        let text = render(try series(run, metric: metric))
        lock.withLock {
            histories[key] = text
            historyOrder.append(key)
            if historyOrder.count > 64 { histories[historyOrder.removeFirst()] = nil }
        }
        return text
    }
    private var histories: [String: String] = [:]
    private var historyOrder: [String] = []

    /// Runs per sweep and status, counted once per change of the runs.
    func sweepCounts() throws -> [String: [String: Int]] {
        let all = try rows()
        if let c = lock.withLock({ countsCache }), c.key == all.key { return c.counts }
        var counts: [String: [String: Int]] = [:]
        for r in all.rows { if let s = r.sweep { counts[s, default: [:]][r.status, default: 0] += 1 } }
        lock.withLock { countsCache = (all.key, counts) }
        return counts
    }
    private var countsCache: (key: String, counts: [String: [String: Int]])?

    func sweep(_ ref: (name: String, id: ObjectID)) throws -> SweepRecord {
        if let s = lock.withLock({ sweepCache[ref.id] }) { return s }
        let s = try SweepRecord.load(store, String(ref.name.dropFirst(7)))
        lock.withLock { sweepCache[ref.id] = s }
        return s
    }
}

/// The projects' views, made on first use.
final class ProjectViews: @unchecked Sendable {
    let projects: ProjectRegistry
    let ephemeral: Documents
    private var views: [String: ProjectView] = [:]
    private let lock = Mutex()

    init(projects: ProjectRegistry, ephemeral: Documents) {
        self.projects = projects
        self.ephemeral = ephemeral
    }

    func view(_ name: String) throws -> ProjectView? {
        if let v = lock.withLock({ views[name] }) { return v }
        guard let svc = try projects.service(name) else { return nil }
        return lock.withLock {
            if let v = views[name] { return v }
            let v = ProjectView(name: name, service: svc, ephemeral: ephemeral, database: projects.database)
            views[name] = v
            return v
        }
    }
}

/// Keeps `points` of a long series: the points are cut into `points/2` buckets by position,
/// and each gives its minimum and maximum in step order, so that spikes survive.
func downsample(_ s: MetricSeries, to points: Int) -> MetricSeries {
    let n = s.steps.count
    guard n > points, points >= 2 else { return s }
    let buckets = points / 2
    var out = MetricSeries(steps: [], values: [])
    out.steps.reserveCapacity(buckets * 2)
    out.values.reserveCapacity(buckets * 2)
    s.values.withUnsafeBufferPointer { v in
        for b in 0..<buckets {
            let lo = b * n / buckets, hi = (b + 1) * n / buckets
            guard lo < hi else { continue }
            var iMin = lo, iMax = lo
            for i in lo..<hi {
                if v[i] < v[iMin] { iMin = i }
                if v[i] > v[iMax] { iMax = i }
            }
            for i in iMin == iMax ? [iMin] : [min(iMin, iMax), max(iMin, iMax)] {
                out.steps.append(s.steps[i])
                out.values.append(v[i])
            }
        }
    }
    return out
}
