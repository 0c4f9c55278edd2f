import Foundation

/// Metrics a run reports as JSON lines in `$TROVE_METRICS_FILE` (Docs/runs.md §Metrics):
/// `{"step": 10, "loss": 0.31, "val_acc": 0.82}`. Every number other than `step` and `time`
/// is a metric; `step` defaults to the metric's previous step + 1.
public struct MetricPoint: Sendable, Equatable {
    public var name: String
    public var step: Int64
    public var value: Double
}

public struct MetricSummary: Sendable, Equatable {
    public var last: Double
    public var lastStep: Int64
    public var min: Double
    public var max: Double
    public var count: Int
}

/// Reads a metrics file incrementally (while the run is live) and keeps the summaries.
public final class MetricsReader {
    public let path: String
    private var offset: UInt64 = 0
    private var partial: [UInt8] = []
    public private(set) var points: [MetricPoint] = []
    public private(set) var summaries: [String: MetricSummary] = [:]
    /// Lines that were not a JSON object of numbers (reported, skipped).
    public private(set) var badLines = 0

    public init(path: String) { self.path = path }

    /// Reads what was appended since the last call. A last line without its newline waits
    /// for the next call (the writer may be in the middle of it), unless `final`.
    public func poll(final: Bool = false) {
        guard let h = FileHandle(forReadingAtPath: path) else { return }
        defer { try? h.close() }
        try? h.seek(toOffset: offset)
        let data = (try? h.readToEnd()) ?? Data()
        offset += UInt64(data.count)
        partial += data
        var lines = partial.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        partial = Array(lines.removeLast())
        if final, !partial.isEmpty { lines.append(partial[...]); partial = [] }
        for line in lines where !line.allSatisfy({ $0 == 32 || $0 == 9 || $0 == 13 }) { parse(Data(line)) }
    }

    func parse(_ line: Data) {
        guard let obj = try? JSONSerialization.jsonObject(with: line) as? [String: Any] else { badLines += 1; return }
        let explicitStep = (obj["step"] as? NSNumber).map { $0.int64Value }
        for (name, v) in obj.sorted(by: { $0.key < $1.key }) where name != "step" && name != "time" {
            guard let n = v as? NSNumber else { continue }  // true/false count as 1/0
            let value = n.doubleValue
            let step = explicitStep ?? ((summaries[name]?.lastStep).map { $0 + 1 } ?? 0)
            points.append(MetricPoint(name: name, step: step, value: value))
            if var s = summaries[name] {
                s.last = value
                s.lastStep = step
                s.min = Swift.min(s.min, value)
                s.max = Swift.max(s.max, value)
                s.count += 1
                summaries[name] = s
            } else {
                summaries[name] = MetricSummary(last: value, lastStep: step, min: value, max: value, count: 1)
            }
        }
    }
}

extension Double {
    /// Shortest text that reads back as the same double (`0.1`, not `0.10000000000000001`).
    var metricText: String {
        if self == rounded(), abs(self) < 1e15 { return String(Int64(self)) }
        return "\(self)"
    }
}
