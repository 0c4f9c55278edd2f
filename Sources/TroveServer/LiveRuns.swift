import Foundation
import Glibc
import TroveCore
import TroveRuns
import TroveStore

/// What the daemon knows of a run that has not been recorded yet (a `trove run` streaming to
/// it, or an MLflow run): `state.json` in its folder `PROJECT/live/ID/`.
struct LiveState: Codable, Sendable, Equatable {
    var id: String
    var start: String
    var command = ""
    var params: [String: String] = [:]
    /// Parameter names in the order first given.
    var paramOrder: [String]?
    var sweep: String?
    var host: String?
    var name: String?
    var status = "running"
    var source = "run"
    var launcher: String?
    var user: String?
    var end: String?
    /// MLflow: experiment id, tags, times in ms, lifecycle.
    var experiment: String?
    var tags: [String: String]?
    var startMillis: Int64?
    var endMillis: Int64?
    var deleted: Bool?
}

/// The live runs of one project, on disk under `PROJECT/live/` (so they survive a daemon
/// restart) and summarised in memory. Metric lines are appended with a count, so that a
/// client that sends again what it is not sure arrived never duplicates a point.
///
/// Replicas (`shared`): PostgreSQL holds every live run (`live_runs`, `live_lines`,
/// `live_logs`), written in one transaction per update, and the folder is this replica's
/// copy, brought up to date on each look, so a run streamed to one replica is read, cancelled
/// or ended through any other. What a look brings in is published as events here.
final class LiveRuns: @unchecked Sendable {
    let directory: String
    let events: EventHub
    /// Replicas: the runs in PostgreSQL, of which the folder is this replica's copy.
    let shared: SharedLiveRuns?
    private let lock = Mutex()
    private var runs: [String: Entry] = [:]
    private var loaded = false

    final class Entry: @unchecked Sendable {
        var state: LiveState
        /// Complete metric lines stored.
        var lines: Int
        let reader: MetricsReader
        var cancel: String?
        /// Replicas: the version of each artifact this replica's copy holds.
        var artifacts: [String: Int64] = [:]
        init(state: LiveState, lines: Int, reader: MetricsReader, cancel: String?) {
            self.state = state
            self.lines = lines
            self.reader = reader
            self.cancel = cancel
        }
    }

    /// Events found while the lock was held, published once it is released.
    private struct Pending {
        var states: [(LiveState, [String: MetricSummary])] = []
        var metrics: [(String, [String])] = []
    }

    init(directory: String, events: EventHub, shared: SharedLiveRuns? = nil) {
        self.directory = directory
        self.events = events
        self.shared = shared
        // A replica's copy is rebuilt from PostgreSQL, never trusted across a restart.
        if shared != nil { FileIO.removeTree(directory) }
    }

    func folder(_ id: String) -> String { directory + "/" + id }

    private func loadLocked() {
        guard !loaded else { return }
        loaded = true
        for id in (try? FileIO.listDirectory(directory)) ?? [] where !id.hasPrefix(".") {
            guard let data = try? FileIO.readFile(folder(id) + "/state.json"),
                  let s = try? JSONDecoder().decode(LiveState.self, from: Data(data)) else { continue }
            let path = folder(id) + "/metrics.jsonl"
            let lines = LiveRuns.completeLines(path)
            let reader = MetricsReader(path: path)
            reader.poll()
            runs[id] = Entry(state: s, lines: lines, reader: reader, cancel: try? FileIO.readText(folder(id) + "/cancel"))
        }
    }

    /// The number of complete lines; a torn last line (a crash mid-append) is cut off.
    static func completeLines(_ path: String) -> Int {
        guard let bytes = try? FileIO.readFile(path) else { return 0 }
        let n = bytes.reduce(0) { $0 + ($1 == 10 ? 1 : 0) }
        if let last = bytes.lastIndex(of: 10), last + 1 < bytes.count { truncate(path, off_t(last + 1)) }
        else if !bytes.isEmpty, bytes.last != 10, n == 0 { truncate(path, 0) }
        return n
    }

    /// Runs `body` with the runs up to date (`only`: that run's; `strict`: a database that
    /// cannot be read is an error, not this replica's last copy), then publishes what changed.
    private func looking<T>(_ only: String?, strict: Bool = false, _ body: () throws -> T) throws -> T {
        if shared != nil {
            do { publish(try pull(only)) } catch where !strict {}
        }
        return try lock.withLock {
            loadLocked()
            return try body()
        }
    }

    func all() -> [(state: LiveState, metrics: [String: MetricSummary])] {
        (try? looking(nil) {
            runs.values.map { e in
                e.reader.poll()
                return (e.state, e.reader.summaries)
            }
        }) ?? []
    }

    /// A run as this replica last saw it (reads: a database outage shows the last copy).
    func get(_ id: String) -> (state: LiveState, metrics: [String: MetricSummary], lines: Int)? {
        try? find(id, strict: false)
    }

    /// A run, for a change to it: with replicas, an unreachable database is an error (503), not
    /// "no such run".
    func find(_ id: String, strict: Bool = true) throws -> (state: LiveState, metrics: [String: MetricSummary], lines: Int)? {
        try looking(id, strict: strict) {
            guard let e = runs[id] else { return nil }
            e.reader.poll()
            return (e.state, e.reader.summaries, e.lines)
        }
    }

    private let lastPoll = Locked<(at: UInt64, failed: Bool)>((0, false))

    /// Brings every run up to date and publishes what other replicas wrote (event streams call
    /// it every second): at most once a second whoever asks, every 5 s while the database fails.
    func refresh() {
        guard shared != nil else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        let go = lastPoll.update { last -> Bool in
            guard now - last.at >= (last.failed ? 5_000_000_000 : 900_000_000) else { return false }
            last.at = now
            return true
        }
        guard go else { return }
        do {
            publish(try pull(nil))
            lastPoll.update { $0.failed = false }
        } catch {
            lastPoll.update { $0.failed = true }
        }
    }

    /// Creates a live run (MLflow `runs/create`); false when the id exists.
    func create(_ state: LiveState) throws -> Bool {
        if let shared {
            let made = try shared.create(state)
            _ = get(state.id)
            return made
        }
        return try lock.withLock {
            loadLocked()
            guard runs[state.id] == nil else { return false }
            try FileIO.mkdirs(folder(state.id))
            try writeState(state)
            runs[state.id] = Entry(state: state, lines: 0, reader: MetricsReader(path: folder(state.id) + "/metrics.jsonl"), cancel: nil)
            return true
        }
    }

    /// Changes a run's state (and writes it); nil when there is no such run.
    @discardableResult
    func update(_ id: String, _ change: (inout LiveState) throws -> Void) throws -> LiveState? {
        if let shared {
            let s = try shared.update(id, change)
            _ = get(id)
            return s
        }
        let s: LiveState? = try lock.withLock {
            loadLocked()
            guard let e = runs[id] else { return nil }
            var s = e.state
            try change(&s)
            try writeState(s)
            e.state = s
            return s
        }
        if let s, let e = get(s.id) { publish(Pending(states: [(e.state, e.metrics)])) }
        return s
    }

    private func writeState(_ s: LiveState) throws {
        try FileIO.atomicWrite(folder(s.id) + "/state.json", Array(try LiveRuns.encode(s).utf8))
    }

    static func encode(_ s: LiveState) throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return String(decoding: try enc.encode(s), as: UTF8.self)
    }

    static func decode(_ text: String) throws -> LiveState {
        try JSONDecoder().decode(LiveState.self, from: Data(text.utf8))
    }

    /// A first update's state as stored: its id, empty optional fields as absent.
    static func normalised(_ given: LiveState, id: String) -> LiveState {
        var s = given
        s.id = id
        if s.sweep == "" { s.sweep = nil }
        if s.name == "" { s.name = nil }
        return s
    }

    /// The state after an update: the client's view of it, except that an ended run stays
    /// ended and its source never changes; `ended` ends a running one now.
    static func merged(_ held: LiveState, with given: LiveState?, ended: String?, id: String) -> (state: LiveState, changed: Bool) {
        var out = held
        var changed = false
        if let given {
            var s = normalised(given, id: id)
            s.status = held.status == "running" ? s.status : held.status
            s.source = held.source
            if s.params != held.params || s.name != held.name || s.command != held.command { changed = true }
            out = s
        }
        if let ended, out.status == "running" {
            out.status = ended
            out.end = ISO8601DateFormatter().string(from: Date())
            changed = true
        }
        return (out, changed)
    }

    static func checkLines(_ id: String, from: Int, held: Int, _ lines: [String]) throws -> [String] {
        guard from <= held else {
            throw StoreError(.invalidInput, "live run \(id): lines from \(from) given, but only \(held) are held", hint: "send again from line \(held)")
        }
        let fresh = Array(lines.dropFirst(held - from))
        for l in fresh where l.contains("\n") { throw StoreError(.invalidInput, "a metric line holds a newline") }
        return fresh
    }

    static func unknown(_ id: String) -> StoreError {
        StoreError(.invalidInput, "live run \(id) is not known here: the first update must carry its state")
    }

    /// Appends metric lines given from line `from` on: lines the daemon holds already are
    /// skipped. Returns the count held after, and a pending cancel request.
    func ingest(_ id: String, from: Int, lines: [String], state: LiveState?, logs: [(stream: String, offset: UInt64, bytes: [UInt8])], ended: String?) throws -> (received: Int, cancel: String?) {
        if let shared {
            let result = try shared.ingest(id, from: from, lines: lines, state: state, logs: logs, ended: ended)
            _ = get(id)
            return result
        }
        var pending = Pending()
        let result: (Int, String?) = try lock.withLock {
            loadLocked()
            var e = runs[id]
            if e == nil {
                guard let state else { throw LiveRuns.unknown(id) }
                let s = LiveRuns.normalised(state, id: id)
                try FileIO.mkdirs(folder(id))
                try writeState(s)
                let entry = Entry(state: s, lines: LiveRuns.completeLines(folder(id) + "/metrics.jsonl"),
                                  reader: MetricsReader(path: folder(id) + "/metrics.jsonl"), cancel: nil)
                runs[id] = entry
                e = entry
            }
            let entry = e!
            let fresh = try LiveRuns.checkLines(id, from: from, held: entry.lines, lines)
            if !fresh.isEmpty {
                try LiveRuns.append(folder(id) + "/metrics.jsonl", Array(fresh.map { $0 + "\n" }.joined().utf8))
                entry.lines += fresh.count
                pending.metrics.append((id, fresh))
            }
            for log in logs {
                try LiveRuns.write(folder(id) + "/" + log.stream, at: log.offset, log.bytes)
            }
            let (s, changed) = LiveRuns.merged(entry.state, with: state, ended: ended, id: id)
            entry.state = s
            if changed || state != nil && !FileIO.exists(folder(id) + "/state.json") { try writeState(entry.state) }
            if changed || !fresh.isEmpty {
                entry.reader.poll()
                pending.states.append((entry.state, entry.reader.summaries))
            }
            return (entry.lines, entry.cancel)
        }
        publish(pending)
        return result
    }

    /// MLflow's log calls: lines appended at the end.
    func append(_ id: String, lines: [String]) throws -> Bool {
        if let shared {
            let ok = try shared.append(id, lines: lines)
            _ = get(id)
            return ok
        }
        let ok: Bool = try lock.withLock {
            loadLocked()
            guard let e = runs[id] else { return false }
            try LiveRuns.append(folder(id) + "/metrics.jsonl", Array(lines.map { $0 + "\n" }.joined().utf8))
            e.lines += lines.count
            return true
        }
        if ok { publish(Pending(metrics: [(id, lines)])) }
        return ok
    }

    func requestCancel(_ id: String, reason: String) throws -> Bool {
        if let shared {
            let done = try shared.requestCancel(id, reason: reason)
            _ = get(id)
            return done
        }
        return try lock.withLock {
            loadLocked()
            guard let e = runs[id], e.state.status == "running" else { return false }
            try FileIO.atomicWrite(folder(id) + "/cancel", Array((reason + "\n").utf8))
            e.cancel = reason
            return true
        }
    }

    func remove(_ id: String) {
        if let shared {
            // Gone for every replica; if the database is away, the next look tries again.
            guard (try? shared.delete(id)) != nil else { return }
        }
        lock.withLock {
            runs[id] = nil
            FileIO.removeTree(folder(id))
        }
    }

    /// Every point of one metric, in the order reported.
    func series(_ id: String, metric: String) -> MetricSeries? {
        try? looking(id) {
            guard let e = runs[id] else { return nil }
            e.reader.poll()
            var s = MetricSeries(steps: [], values: [])
            for p in e.reader.points where p.name == metric {
                s.steps.append(p.step)
                s.values.append(p.value)
            }
            return s
        }
    }

    /// A live run's output so far (`stdout` or `stderr`); nil when there is no such run.
    func log(_ id: String, stream: String) -> [UInt8]? {
        try? looking(id) { () -> [UInt8]? in
            guard runs[id] != nil else { return nil }
            let path = folder(id) + "/" + stream
            if let shared {
                for (start, bytes) in (try? shared.logChunks(id, stream: stream, after: FileIO.fileSize(path) ?? 0)) ?? [] {
                    do { try LiveRuns.write(path, at: UInt64(start), bytes) } catch { break }
                }
            }
            return (try? FileIO.readFile(path)) ?? []
        }
    }

    // MARK: replicas

    /// Brings this replica's copy up to date from PostgreSQL (one run, or all of them: then
    /// runs gone from the database, recorded or deleted through another replica, go here too).
    /// The queries run outside the lock; what they found is applied under it, so two looks at
    /// once never append a line twice.
    private func pull(_ only: String?) throws -> Pending {
        guard let shared else { return Pending() }
        let rows = try shared.runs(only)
        let have: [String: Int] = lock.withLock { Dictionary(uniqueKeysWithValues: rows.map { ($0.0, runs[$0.0]?.lines ?? 0) }) }
        var fetched: [String: (from: Int, lines: [String])] = [:]
        for (id, _, held, _) in rows where held > have[id] ?? 0 {
            let from = have[id] ?? 0
            fetched[id] = (from, try shared.lines(id, from: from))
        }
        var pending = Pending()
        try lock.withLock {
            loaded = true
            var seen = Set<String>()
            for (id, text, _, cancel) in rows {
                seen.insert(id)
                guard let state = try? LiveRuns.decode(text) else { continue }
                var changed = false
                let e: Entry
                if let existing = runs[id] { e = existing } else {
                    FileIO.removeTree(folder(id))
                    try FileIO.mkdirs(folder(id))
                    e = Entry(state: state, lines: 0, reader: MetricsReader(path: folder(id) + "/metrics.jsonl"), cancel: nil)
                    runs[id] = e
                    try writeState(state)
                    changed = true
                }
                if e.state != state {
                    e.state = state
                    try writeState(state)
                    changed = true
                }
                e.cancel = cancel
                // Lines another look appended meanwhile are not appended again.
                if let (from, lines) = fetched[id], from <= e.lines, e.lines - from < lines.count {
                    let fresh = Array(lines.dropFirst(e.lines - from))
                    try LiveRuns.append(folder(id) + "/metrics.jsonl", Array(fresh.map { $0 + "\n" }.joined().utf8), durable: false)
                    e.lines += fresh.count
                    pending.metrics.append((id, fresh))
                    changed = true
                }
                if changed {
                    e.reader.poll()
                    pending.states.append((e.state, e.reader.summaries))
                }
            }
            for id in only.map({ [$0] }) ?? Array(runs.keys) where !seen.contains(id) && runs[id] != nil {
                runs[id] = nil
                FileIO.removeTree(folder(id))
            }
        }
        return pending
    }

    // MARK: artifacts (MLflow)

    /// Stores an uploaded artifact (`file`: complete and flushed, in the run's folder) as
    /// `outputs/PATH` of the run. With replicas its bytes also go to PostgreSQL (8 MiB rows) until
    /// the run is recorded, so that the replica that records it has them.
    func putArtifact(_ id: String, path: String, file: String) throws {
        let target = folder(id) + "/outputs/" + path
        if let shared {
            let version = try shared.putArtifact(id, path: path, file: file)
            lock.withLock { runs[id]?.artifacts[path] = version }
        }
        try FileIO.mkdirs(FileIO.dirname(target))
        try FileIO.rename(file, target)
    }

    /// The run's `outputs` folder with every artifact uploaded through any replica in it.
    func outputs(_ id: String) throws -> String {
        let dir = folder(id) + "/outputs"
        guard let shared else { return dir }
        for (path, version) in try shared.artifacts(id) where lock.withLock({ runs[id]?.artifacts[path] }) != version {
            let target = dir + "/" + path
            try FileIO.mkdirs(FileIO.dirname(target))
            let tmp = target + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            let fd = try FileIO.open(tmp, O_WRONLY | O_CREAT | O_TRUNC)
            do {
                try shared.readArtifact(id, path: path, version: version, into: fd, named: tmp)
                close(fd)
                try FileIO.rename(tmp, target)
            } catch {
                close(fd)
                unlink(tmp)
                throw error
            }
            lock.withLock { runs[id]?.artifacts[path] = version }
        }
        return dir
    }

    private func publish(_ p: Pending) {
        for (s, metrics) in p.states { events.publish("run", RunRow(live: s, metrics: metrics).json()) }
        for (id, lines) in p.metrics where !lines.isEmpty { events.publish("metrics", LiveRuns.metricsEvent(id, lines)) }
    }

    static func metricsEvent(_ id: String, _ lines: [String]) -> [String: Any] {
        var points: [[String: Any]] = []
        for l in lines {
            guard let o = try? JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any] else { continue }
            let step = (o["step"] as? NSNumber)?.int64Value
            for (k, v) in o where k != "step" && k != "time" {
                if let n = v as? NSNumber { points.append(["name": k, "step": step as Any? ?? NSNull(), "value": n.doubleValue]) }
            }
        }
        return ["run": id, "points": points]
    }

    /// Appends and (`durable`) flushes to disk before the sender is told it arrived.
    static func append(_ path: String, _ bytes: [UInt8], durable: Bool = true) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StoreError(.io, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try FileIO.writeAll(fd, bytes, path: path)
        guard !durable || fdatasync(fd) == 0 else { throw StoreError(.io, "cannot flush \(path): \(String(cString: strerror(errno)))") }
    }

    /// Log bytes at their offset in the run's output (what arrived before is kept).
    static func write(_ path: String, at offset: UInt64, _ bytes: [UInt8]) throws {
        guard !bytes.isEmpty else { return }
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StoreError(.io, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        // Never leave a hole: bytes beyond the end wait for the ones before them.
        guard offset <= UInt64(st.st_size) else { return }
        let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
        guard n == bytes.count else { throw StoreError(.io, "cannot write \(path)") }
    }
}

/// Server-Sent Events for one project: each subscriber gets every event published after it
/// subscribed; a slow one loses the oldest (bounded buffer), never blocks the publisher.
final class EventHub: @unchecked Sendable {
    private var subscribers: [Int: AsyncStream<String>.Continuation] = [:]
    private var next = 0
    private let lock = Mutex()

    func subscribe() -> (id: Int, stream: AsyncStream<String>) {
        let (stream, continuation) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(256))
        let id = lock.withLock { next += 1; subscribers[next] = continuation; return next }
        return (id, stream)
    }

    func unsubscribe(_ id: Int) {
        lock.withLock { subscribers.removeValue(forKey: id) }?.finish()
    }

    func publish(_ event: String, _ data: [String: Any]) {
        let subs = lock.withLock { Array(subscribers.values) }
        guard !subs.isEmpty, let json = try? JSONSerialization.data(withJSONObject: data, options: [.sortedKeys]) else { return }
        let text = "event: \(event)\ndata: \(String(decoding: json, as: UTF8.self))\n\n"
        for s in subs { s.yield(text) }
    }
}
