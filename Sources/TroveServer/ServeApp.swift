import Foundation
import Hummingbird
import HTTPTypes
import Logging
import NIOCore
import TroveCore
import TroveRuns
import TroveStore

/// `trove serve`: the Open Inference Protocol v2 over HTTP in front of a `WorkerPool`
/// (Docs/serving.md): health, model metadata and readiness, `infer` with the spec's checks,
/// 503 + Retry-After when the queue is full, Prometheus `/metrics`.
public struct ServeConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    public var name: String
    public var version: Int
    public var spec: ServingSpec
    public init(name: String, version: Int, spec: ServingSpec) {
        self.name = name
        self.version = version
        self.spec = spec
    }
}

/// What is being served now: `--follow` swaps in the next version's pool once its workers are
/// ready, and requests read the holder each time.
public final class ServedVersion: @unchecked Sendable {
    private let lock = Mutex()
    private var current: (pool: WorkerPool, version: Int, spec: ServingSpec)

    public init(pool: WorkerPool, version: Int, spec: ServingSpec) { current = (pool, version, spec) }

    public var now: (pool: WorkerPool, version: Int, spec: ServingSpec) { lock.withLock { current } }

    /// Serves `pool` from now on; returns the one it replaces (for the caller to drain).
    public func swap(to pool: WorkerPool, version: Int, spec: ServingSpec) -> WorkerPool {
        lock.withLock {
            let old = current.pool
            current = (pool, version, spec)
            return old
        }
    }
}

/// Counters and histograms of the serving endpoint.
final class ServeMetrics: @unchecked Sendable {
    static let buckets: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    private let lock = Mutex()
    private var requests: [Int: Int] = [:]
    private var latency = [Int](repeating: 0, count: ServeMetrics.buckets.count + 1)
    private var latencySum = 0.0
    private var latencyCount = 0

    func record(status: Int, seconds: Double) {
        lock.withLock {
            requests[status, default: 0] += 1
            latency[ServeMetrics.buckets.firstIndex { seconds <= $0 } ?? ServeMetrics.buckets.count] += 1
            latencySum += seconds
            latencyCount += 1
        }
    }

    func render(_ pool: WorkerPool, model: String) -> String {
        lock.withLock {
            var out = "# HELP trove_serve_requests_total Inference requests by HTTP status.\n# TYPE trove_serve_requests_total counter\n"
            for (s, n) in requests.sorted(by: { $0.key < $1.key }) { out += "trove_serve_requests_total{model=\"\(model)\",status=\"\(s)\"} \(n)\n" }
            out += "# HELP trove_serve_request_seconds Inference request latency.\n# TYPE trove_serve_request_seconds histogram\n"
            var cumulative = 0
            for (i, b) in ServeMetrics.buckets.enumerated() {
                cumulative += latency[i]
                out += "trove_serve_request_seconds_bucket{model=\"\(model)\",le=\"\(b)\"} \(cumulative)\n"
            }
            out += "trove_serve_request_seconds_bucket{model=\"\(model)\",le=\"+Inf\"} \(latencyCount)\n"
            out += "trove_serve_request_seconds_sum{model=\"\(model)\"} \(latencySum)\ntrove_serve_request_seconds_count{model=\"\(model)\"} \(latencyCount)\n"
            out += "# HELP trove_serve_batch_size Batches sent to workers, by size.\n# TYPE trove_serve_batch_size histogram\n"
            let sizes = pool.batchSizes()
            var c = 0, sum = 0
            for le in [1, 2, 4, 8, 16, 32, 64, 128, 256] {
                c = sizes.filter { $0.key <= le }.reduce(0) { $0 + $1.value }
                out += "trove_serve_batch_size_bucket{model=\"\(model)\",le=\"\(le)\"} \(c)\n"
            }
            let total = sizes.reduce(0) { $0 + $1.value }
            sum = sizes.reduce(0) { $0 + $1.key * $1.value }
            out += "trove_serve_batch_size_bucket{model=\"\(model)\",le=\"+Inf\"} \(total)\ntrove_serve_batch_size_sum{model=\"\(model)\"} \(sum)\ntrove_serve_batch_size_count{model=\"\(model)\"} \(total)\n"
            out += "# HELP trove_serve_queue_depth Requests waiting for a worker.\n# TYPE trove_serve_queue_depth gauge\ntrove_serve_queue_depth{model=\"\(model)\"} \(pool.queueDepth)\n"
            out += "# HELP trove_serve_worker_restarts_total Workers started again after exiting or hanging.\n# TYPE trove_serve_worker_restarts_total counter\ntrove_serve_worker_restarts_total{model=\"\(model)\"} \(pool.restarts)\n"
            return out
        }
    }
}

public func buildServeApplication(_ config: ServeConfiguration, served: ServedVersion, logger: Logger,
                                  onRunning: @escaping @Sendable (Int) -> Void) -> some ApplicationProtocol {
    let router = Router(context: BasicRequestContext.self)
    let metrics = ServeMetrics()
    let name = config.name
    let quotedName = jsonString(name)
    @Sendable func text(_ s: String, _ status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: s)))
    }
    @Sendable func oipError(_ message: String, _ status: HTTPResponse.Status) -> Response { json(["error": message], status: status) }
    router.get("v2/health/live") { _, _ in text("live\n") }
    router.get("v2/health/ready") { _, _ in served.now.pool.ready ? text("ready\n") : text("no worker is ready\n", .serviceUnavailable) }
    router.get("v2") { _, _ in json(["name": "trove", "version": TroveVersion.string, "extensions": [String]()]) }
    @Sendable func tensors(_ list: [ServingSpec.Tensor]) -> [[String: Any]] { list.map { ["name": $0.name, "datatype": $0.datatype, "shape": $0.shape] } }
    let metadata: @Sendable (Request, BasicRequestContext) -> Response = { _, ctx in
        guard ctx.parameters.get("model") == name else { return oipError("no model \(ctx.parameters.get("model") ?? "") here (this endpoint serves \(name))", .notFound) }
        let now = served.now
        return json(["name": name, "versions": ["\(now.version)"], "platform": "trove", "inputs": tensors(now.spec.inputs), "outputs": tensors(now.spec.outputs)])
    }
    router.get("v2/models/{model}", use: metadata)
    router.get("v2/models/{model}/versions/{version}", use: metadata)
    router.get("v2/models/{model}/ready") { _, ctx in
        ctx.parameters.get("model") == name && served.now.pool.ready ? text("ready\n") : text("not ready\n", .serviceUnavailable)
    }
    let infer: @Sendable (Request, BasicRequestContext) async -> Response = { req, ctx in
        let start = DispatchTime.now().uptimeNanoseconds
        let r = await inferResponse(req, ctx)
        metrics.record(status: Int(r.status.code), seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        return r
    }
    @Sendable func inferResponse(_ req: Request, _ ctx: BasicRequestContext) async -> Response {
        guard ctx.parameters.get("model") == name else { return oipError("no model \(ctx.parameters.get("model") ?? "") here (this endpoint serves \(name))", .notFound) }
        let (pool, v, spec) = served.now
        let version = "\(v)"
        if let asked = ctx.parameters.get("version"), asked != version { return oipError("this endpoint serves \(name) version \(version), not \(asked)", .notFound) }
        guard let buf = try? await req.body.collect(upTo: 256 << 20) else { return oipError("the request body is over 256 MiB", .contentTooLarge) }
        let request: InferenceRequest
        do { request = try InferenceRequest(body: Array(buffer: buf)) } catch {
            return oipError((error as? StoreError)?.message ?? "\(error)", .badRequest)
        }
        if let why = spec.mismatch(request) { return oipError(why, .badRequest) }
        let result: Result<InferenceAnswer, WorkerPool.Failure>? = await withCheckedContinuation { cont in
            if !pool.submit(request, done: { cont.resume(returning: $0) }) { cont.resume(returning: nil) }
        }
        switch result {
        case nil:
            var r = oipError("the request queue is full (\(pool.config.queueLimit) waiting); retry shortly", .serviceUnavailable)
            r.headers[.retryAfter] = "1"
            return r
        case .success(let out)?:
            // The worker's outputs and the client's id go back as the bytes they came in.
            var reply = ByteBuffer()
            reply.reserveCapacity(out.line.count + 64)
            reply.writeString(#"{"model_name":"#)
            reply.writeString(quotedName)
            reply.writeString(#","model_version":""#)
            reply.writeString(version)
            reply.writeString(#"","outputs":"#)
            if let o = out.outputs { reply.writeBytes(out.line[o]) } else { reply.writeString("[]") }
            if let p = out.parameters {
                reply.writeString(#","parameters":"#)
                reply.writeBytes(out.line[p])
            }
            if let id = request.id {
                reply.writeString(#","id":"#)
                reply.writeBytes(request.body[id])
            }
            reply.writeString("}")
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: reply))
        case .failure(let f)?:
            switch f {
            case .workerExited(let why): return oipError("the worker failed while handling the request (\(why)); it is being restarted", .internalServerError)
            case .timedOut(let s): return oipError("the worker did not answer within \(Int(s)) s; it is being restarted", .gatewayTimeout)
            case .workerError(let why): return oipError("the worker could not handle the request: \(why)", .internalServerError)
            case .stopped: return oipError("the server is shutting down", .serviceUnavailable)
            }
        }
    }
    router.post("v2/models/{model}/infer", use: infer)
    router.post("v2/models/{model}/versions/{version}/infer", use: infer)
    router.get("metrics") { _, _ in
        Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(string: metrics.render(served.now.pool, model: name))))
    }
    return Application(router: router, configuration: .init(address: .hostname(config.host, port: config.port), serverName: "trove-serve/\(TroveVersion.string)"),
                       onServerRunning: { channel in onRunning(channel.localAddress?.port ?? 0) }, logger: logger)
}
