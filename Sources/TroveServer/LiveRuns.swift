import Foundation
import Glibc
import TroveCore
import TroveRuns
import TroveStore

/// What the daemon knows of a run that has not been recorded yet (a `trove run` streaming to
/// it, or an MLflow run): `state.json` in its folder `PROJECT/live/ID/`.
struct LiveState: Codable, Sendable {
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
final class LiveRuns: @unchecked Sendable {
    let directory: String
    let events: EventHub
    private let lock = Mutex()
    private var runs: [String: Entry] = [:]
    private var loaded = false

    final class Entry: @unchecked Sendable {
        var state: LiveState
        /// Complete metric lines stored.
        var lines: Int
        let reader: MetricsReader
        var cancel: String?
        init(state: LiveState, lines: Int, reader: MetricsReader, cancel: String?) {
            self.state = state
            self.lines = lines
            self.reader = reader
            self.cancel = cancel
        }
    }

    init(directory: String, events: EventHub) {
        self.directory = directory
        self.events = events
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

    func all() -> [(state: LiveState, metrics: [String: MetricSummary])] {
        lock.withLock {
            loadLocked()
            return runs.values.map { e in
                e.reader.poll()
                return (e.state, e.reader.summaries)
            }
        }
    }

    func get(_ id: String) -> (state: LiveState, metrics: [String: MetricSummary], lines: Int)? {
        lock.withLock {
            loadLocked()
            guard let e = runs[id] else { return nil }
            e.reader.poll()
            return (e.state, e.reader.summaries, e.lines)
        }
    }

    /// Creates a live run (MLflow `runs/create`); false when the id exists.
    func create(_ state: LiveState) throws -> Bool {
        try lock.withLock {
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
        let s: LiveState? = try lock.withLock {
            loadLocked()
            guard let e = runs[id] else { return nil }
            var s = e.state
            try change(&s)
            try writeState(s)
            e.state = s
            return s
        }
        if let s { publish(s) }
        return s
    }

    private func writeState(_ s: LiveState) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        try FileIO.atomicWrite(folder(s.id) + "/state.json", Array(try enc.encode(s)))
    }

    /// Appends metric lines given from line `from` on: lines the daemon holds already are
    /// skipped. Returns the count held after, and a pending cancel request.
    func ingest(_ id: String, from: Int, lines: [String], state: LiveState?, logs: [(stream: String, offset: UInt64, bytes: [UInt8])], ended: String?) throws -> (received: Int, cancel: String?) {
        var added: [String] = []
        var summary: LiveState?
        let result: (Int, String?) = try lock.withLock {
            loadLocked()
            var e = runs[id]
            if e == nil {
                guard var s = state else {
                    throw StoreError(.invalidInput, "live run \(id) is not known here: the first update must carry its state")
                }
                s.id = id
                if s.sweep == "" { s.sweep = nil }
                if s.name == "" { s.name = nil }
                try FileIO.mkdirs(folder(id))
                try writeState(s)
                let entry = Entry(state: s, lines: LiveRuns.completeLines(folder(id) + "/metrics.jsonl"),
                                  reader: MetricsReader(path: folder(id) + "/metrics.jsonl"), cancel: nil)
                runs[id] = entry
                e = entry
            }
            let entry = e!
            guard from <= entry.lines else {
                throw StoreError(.invalidInput, "live run \(id): lines from \(from) given, but only \(entry.lines) are held", hint: "send again from line \(entry.lines)")
            }
            let fresh = Array(lines.dropFirst(entry.lines - from))
            if !fresh.isEmpty {
                for l in fresh where l.contains("\n") { throw StoreError(.invalidInput, "a metric line holds a newline") }
                try LiveRuns.append(folder(id) + "/metrics.jsonl", Array(fresh.map { $0 + "\n" }.joined().utf8))
                entry.lines += fresh.count
                added = fresh
            }
            for log in logs {
                try LiveRuns.write(folder(id) + "/" + log.stream, at: log.offset, log.bytes)
            }
            var changed = false
            if var s = state {
                s.id = id
                if s.sweep == "" { s.sweep = nil }
                if s.name == "" { s.name = nil }
                s.status = entry.state.status == "running" ? s.status : entry.state.status
                s.source = entry.state.source
                if s.params != entry.state.params || s.name != entry.state.name || s.command != entry.state.command { changed = true }
                entry.state = s
            }
            if let ended, entry.state.status == "running" {
                entry.state.status = ended
                entry.state.end = ISO8601DateFormatter().string(from: Date())
                changed = true
            }
            if changed || state != nil && !FileIO.exists(folder(id) + "/state.json") { try writeState(entry.state) }
            if changed || !fresh.isEmpty { summary = entry.state }
            return (entry.lines, entry.cancel)
        }
        if let summary { publish(summary) }
        if !added.isEmpty { events.publish("metrics", LiveRuns.metricsEvent(id, added)) }
        return result
    }

    /// MLflow's log calls: lines appended at the end.
    func append(_ id: String, lines: [String]) throws -> Bool {
        let ok: Bool = try lock.withLock {
            loadLocked()
            guard let e = runs[id] else { return false }
            try LiveRuns.append(folder(id) + "/metrics.jsonl", Array(lines.map { $0 + "\n" }.joined().utf8))
            e.lines += lines.count
            return true
        }
        if ok { events.publish("metrics", LiveRuns.metricsEvent(id, lines)) }
        return ok
    }

    func requestCancel(_ id: String, reason: String) throws -> Bool {
        try lock.withLock {
            loadLocked()
            guard let e = runs[id], e.state.status == "running" else { return false }
            try FileIO.atomicWrite(folder(id) + "/cancel", Array((reason + "\n").utf8))
            e.cancel = reason
            return true
        }
    }

    func remove(_ id: String) {
        lock.withLock {
            runs[id] = nil
            FileIO.removeTree(folder(id))
        }
    }

    /// Every point of one metric, in the order reported.
    func series(_ id: String, metric: String) -> MetricSeries? {
        lock.withLock {
            loadLocked()
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

    func publish(_ s: LiveState) {
        if let e = get(s.id) {
            events.publish("run", RunRow(live: e.state, metrics: e.metrics).json())
        }
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

    /// Appends and flushes to disk before the sender is told it arrived.
    static func append(_ path: String, _ bytes: [UInt8]) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StoreError(.io, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try FileIO.writeAll(fd, bytes, path: path)
        guard fdatasync(fd) == 0 else { throw StoreError(.io, "cannot flush \(path): \(String(cString: strerror(errno)))") }
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
