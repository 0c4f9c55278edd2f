import TroveStore

/// The daemon's counters, shown on `/metrics` in the Prometheus text format (version 0.0.4).
public final class DaemonMetrics: @unchecked Sendable {
    private let lock = Mutex()
    private var requests: [String: [Int: Int]] = [:]
    private var bytesIn: UInt64 = 0
    private var bytesOut: UInt64 = 0
    private var objectsStored: UInt64 = 0
    private var latencies: [String: [Double]] = [:]

    public init() {}

    func request(route: String, status: Int, seconds: Double) {
        lock.withLock {
            requests[route, default: [:]][status, default: 0] += 1
            var l = latencies[route, default: []]
            if l.count >= 4096 { l.removeFirst(l.count - 4095) }
            l.append(seconds)
            latencies[route] = l
        }
    }

    func received(_ bytes: Int) { lock.withLock { bytesIn += UInt64(bytes) } }
    func sent(_ bytes: Int) { lock.withLock { bytesOut += UInt64(bytes) } }
    func stored(_ objects: Int) { lock.withLock { objectsStored += UInt64(objects) } }

    /// The exposition text; `projects` is the number of hosted projects.
    public func render(projects: Int) -> String {
        lock.withLock {
            var out = "# HELP trove_http_requests_total HTTP requests by route and status.\n# TYPE trove_http_requests_total counter\n"
            for route in requests.keys.sorted() {
                for status in requests[route]!.keys.sorted() {
                    out += "trove_http_requests_total{route=\"\(route)\",status=\"\(status)\"} \(requests[route]![status]!)\n"
                }
            }
            out += "# HELP trove_http_request_seconds Request latency quantiles over the last 4096 requests of a route.\n# TYPE trove_http_request_seconds summary\n"
            for route in latencies.keys.sorted() {
                let sorted = latencies[route]!.sorted()
                for q in [0.5, 0.99] {
                    let v = sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))]
                    out += "trove_http_request_seconds{route=\"\(route)\",quantile=\"\(q)\"} \(v)\n"
                }
                out += "trove_http_request_seconds_count{route=\"\(route)\"} \(sorted.count)\n"
            }
            out += "# HELP trove_http_bytes_in_total Request body bytes received.\n# TYPE trove_http_bytes_in_total counter\ntrove_http_bytes_in_total \(bytesIn)\n"
            out += "# HELP trove_http_bytes_out_total Response body bytes sent.\n# TYPE trove_http_bytes_out_total counter\ntrove_http_bytes_out_total \(bytesOut)\n"
            out += "# HELP trove_objects_stored_total Objects stored from uploads.\n# TYPE trove_objects_stored_total counter\ntrove_objects_stored_total \(objectsStored)\n"
            out += "# HELP trove_projects Projects hosted.\n# TYPE trove_projects gauge\ntrove_projects \(projects)\n"
            return out
        }
    }
}
