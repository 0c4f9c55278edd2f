import Foundation
import Glibc
import Hummingbird
import NIOCore
import TroveCore
import TroveProtocol
import TroveRuns
import TroveStore
import TroveSync

/// The subset of MLflow's tracking REST API that the `mlflow` client's fluent API uses
/// (Docs/api.md §MLflow), at `/PROJECT/api/2.0/mlflow/...`: an experiment is a group of the
/// project's runs; an MLflow run is a live run of the daemon until it ends, when it is recorded
/// as a Trove run commit on `runs/ID` (params, metrics as series, tags, artifacts as outputs).
struct MLflowController: Sendable {
    let state: DaemonState

    func addRoutes(to router: Router<BasicRequestContext>) {
        let ml = router.group("{project}/api/2.0/mlflow")
        ml.get("experiments/get-by-name") { req, ctx in
            await call(req, ctx, .read) { p, a in
                let name = try a.string("experiment_name")
                guard let e = try experiments(p).first(where: { $0.name == name && $0.stage == "active" }) else {
                    throw MLError.notFound("Could not find experiment with name '\(name)'")
                }
                return ["experiment": e.json()]
            }
        }
        ml.get("experiments/get") { req, ctx in
            await call(req, ctx, .read) { p, a in
                let id = try a.string("experiment_id")
                guard let e = try experiments(p).first(where: { $0.id == id }) else { throw MLError.notFound("No experiment with id \(id)") }
                return ["experiment": e.json()]
            }
        }
        ml.post("experiments/create") { req, ctx in
            await call(req, ctx, .write) { p, a in
                let name = try a.string("name")
                guard !name.isEmpty, name.count <= 500 else { throw MLError.invalid("experiment name must be 1-500 characters") }
                let id: String = try state.documents.update(p.name, Self.experimentsKey) { old in
                    var list = Self.experiments(old)
                    guard !list.contains(where: { $0.name == name }) else { throw MLError.exists("Experiment '\(name)' already exists.") }
                    let id = "\((list.compactMap { Int($0.id) }.max() ?? 0) + 1)"
                    let now = Int64(Date().timeIntervalSince1970 * 1000)
                    var tags: [String: String] = [:]
                    for t in a.list("tags") { if let k = t["key"] as? String { tags[k] = t["value"] as? String ?? "" } }
                    list.append(Experiment(id: id, name: name, stage: "active", created: now, tags: tags))
                    return (Array(try JSONEncoder().encode(list)), id)
                }
                return ["experiment_id": id]
            }
        }
        ml.post("runs/create") { req, ctx in
            await call(req, ctx, .write) { p, a in try createRun(p, a) }
        }
        ml.post("runs/update") { req, ctx in
            await call(req, ctx, .write) { p, a in try await updateRun(p, a) }
        }
        ml.get("runs/get") { req, ctx in
            await call(req, ctx, .read) { p, a in ["run": try mlRun(p, try a.runID()).json()] }
        }
        ml.post("runs/search") { req, ctx in
            await call(req, ctx, .read) { p, a in try search(p, a) }
        }
        ml.post("runs/log-metric") { req, ctx in
            await call(req, ctx, .write) { p, a in
                try logBatch(p, try a.runID(), metrics: [a.values], params: [], tags: [])
                return [:]
            }
        }
        ml.post("runs/log-parameter") { req, ctx in
            await call(req, ctx, .write) { p, a in
                try logBatch(p, try a.runID(), metrics: [], params: [a.values], tags: [])
                return [:]
            }
        }
        ml.post("runs/set-tag") { req, ctx in
            await call(req, ctx, .write) { p, a in
                try logBatch(p, try a.runID(), metrics: [], params: [], tags: [a.values])
                return [:]
            }
        }
        ml.post("runs/log-batch") { req, ctx in
            await call(req, ctx, .write) { p, a in
                let (m, pa, t) = (a.list("metrics"), a.list("params"), a.list("tags"))
                guard m.count <= 1000, pa.count <= 100, t.count <= 100, m.count + pa.count + t.count <= 1000 else {
                    throw MLError.invalid("A batch logging request can contain at most 1000 metrics, 100 params and 100 tags (1000 items in total)")
                }
                try logBatch(p, try a.runID(), metrics: m, params: pa, tags: t)
                return [:]
            }
        }
        ml.post("runs/delete") { req, ctx in
            await call(req, ctx, .write) { p, a in
                let id = try a.runID()
                _ = try mlRun(p, id)
                if try p.live.update(id, { $0.deleted = true }) == nil {
                    try state.documents.update(p.name, Self.deletedKey) { old in
                        var d = Self.deletedRuns(old)
                        d.insert(id)
                        return (Array(try JSONSerialization.data(withJSONObject: d.sorted())), ())
                    }
                }
                return [:]
            }
        }
        ml.get("metrics/get-history") { req, ctx in
            await call(req, ctx, .read) { p, a in
                let id = try a.runID()
                let key = try a.string("metric_key")
                let r = try mlRun(p, id)
                let series: MetricSeries
                if let info = try p.catalog.run(id) {
                    series = (try? p.series(info, metric: key)) ?? MetricSeries(steps: [], values: [])
                } else {
                    series = p.live.series(id, metric: key) ?? MetricSeries(steps: [], values: [])
                }
                let times = p.live.get(id) != nil ? liveTimes(p, id, key) : []
                let metrics = series.steps.indices.map { i -> [String: Any] in
                    ["key": key, "value": mlValue(series.values[i]), "step": series.steps[i], "timestamp": i < times.count ? times[i] : r.start]
                }
                return ["metrics": metrics]
            }
        }
        let art = router.group("{project}/api/2.0/mlflow-artifacts/artifacts")
        art.get { req, ctx in await artifactList(req, ctx) }
        art.put("**") { req, ctx in await artifactPut(req, ctx) }
        art.get("**") { req, ctx in await artifactGet(req, ctx) }
    }

    // MARK: plumbing

    enum MLError: Error {
        case notFound(String), invalid(String), exists(String)
    }

    /// Request fields: the query for GET, the JSON body for POST.
    struct Args: @unchecked Sendable {
        var values: [String: Any]
        func string(_ k: String) throws -> String {
            if let s = values[k] as? String { return s }
            if let n = values[k] as? NSNumber { return n.stringValue }
            throw MLError.invalid("Missing value for required parameter '\(k)'.")
        }
        func runID() throws -> String {
            let id = (values["run_id"] as? String) ?? (values["run_uuid"] as? String) ?? ""
            guard !id.isEmpty, id.count <= 64, id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
                throw MLError.invalid("Missing or invalid value for required parameter 'run_id'.")
            }
            return id
        }
        func list(_ k: String) -> [[String: Any]] { values[k] as? [[String: Any]] ?? [] }
    }

    func call(_ req: Request, _ ctx: BasicRequestContext, _ role: Role,
              _ body: @escaping @Sendable (ProjectView, Args) async throws -> [String: Any]) async -> Response {
        let start = DispatchTime.now().uptimeNanoseconds
        var response: Response
        do {
            let p = try authorized(req, ctx, role)
            var values: [String: Any] = [:]
            if req.method == .get {
                // Form encoding, as the client's `requests` sends it: '+' is a space.
                for pair in (req.uri.query ?? "").split(separator: "&") {
                    let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                    func decode(_ s: Substring) -> String {
                        let t = s.replacingOccurrences(of: "+", with: " ")
                        return t.removingPercentEncoding ?? t
                    }
                    let key = decode(kv[0]), value = kv.count > 1 ? decode(kv[1]) : ""
                    if let existing = values[key] {
                        values[key] = ((existing as? [String]) ?? [existing as? String ?? ""]) + [value]
                    } else { values[key] = value }
                }
            } else {
                let buf = try await req.body.collect(upTo: 1 << 20)
                if buf.readableBytes > 0 {
                    guard let obj = try? JSONSerialization.jsonObject(with: Data(buffer: buf)) as? [String: Any] else {
                        throw MLError.invalid("the request body is not a JSON object")
                    }
                    values = obj
                }
            }
            let out = try await body(p, Args(values: values))
            response = json(out)
        } catch {
            response = MLflowController.errorResponse(error)
        }
        state.metrics.request(route: "mlflow", status: Int(response.status.code), seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        return response
    }

    /// The project, for a bearer token of it with the role (MLFLOW_TRACKING_TOKEN).
    func authorized(_ req: Request, _ ctx: BasicRequestContext, _ role: Role) throws -> ProjectView {
        let name = ctx.parameters.get("project") ?? ""
        _ = try state.caller(req, project: name, role: role)
        guard let p = try state.views.view(name) else { throw APIController.noProject(name) }
        return p
    }

    static func errorResponse(_ error: Error) -> Response {
        let (status, code, message): (HTTPResponse.Status, String, String)
        switch error {
        case MLError.notFound(let m): (status, code, message) = (.notFound, "RESOURCE_DOES_NOT_EXIST", m)
        case MLError.invalid(let m): (status, code, message) = (.badRequest, "INVALID_PARAMETER_VALUE", m)
        case MLError.exists(let m): (status, code, message) = (.badRequest, "RESOURCE_ALREADY_EXISTS", m)
        default:
            let e = (error as? ProtocolError) ?? ProtocolError.from(error)
            switch e.code {
            case .unauthorized: (status, code, message) = (.unauthorized, "UNAUTHENTICATED", e.message)
            case .forbidden: (status, code, message) = (.forbidden, "PERMISSION_DENIED", e.message)
            case .notFound: (status, code, message) = (.notFound, "RESOURCE_DOES_NOT_EXIST", e.message)
            case .invalidInput: (status, code, message) = (.badRequest, "INVALID_PARAMETER_VALUE", e.message)
            // MLflow's client retries a 503 (the metadata database of replicas away for a moment).
            case .unavailable: (status, code, message) = (.serviceUnavailable, "TEMPORARILY_UNAVAILABLE", e.message)
            default: (status, code, message) = (.internalServerError, "INTERNAL_ERROR", e.message)
            }
        }
        var r = json(["error_code": code, "message": message], status: status)
        if status == .unauthorized { r.headers[.wwwAuthenticate] = "Bearer realm=\"trove\"" }
        return r
    }

    // MARK: experiments

    struct Experiment: Codable, Sendable {
        var id: String
        var name: String
        var stage: String
        var created: Int64
        var tags: [String: String]

        func json() -> [String: Any] {
            ["experiment_id": id, "name": name, "artifact_location": "mlflow-artifacts:/\(id)", "lifecycle_stage": stage,
             "creation_time": created, "last_update_time": created, "tags": tags.sorted { $0.key < $1.key }.map { ["key": $0.key, "value": $0.value] }]
        }
    }

    /// Under the project (files: `PROJECT/mlflow/…`; replicas: PostgreSQL's `documents`).
    static let experimentsKey = "mlflow/experiments.json", deletedKey = "mlflow/deleted.json"

    /// The experiment list; experiment 0 ("Default") always exists.
    func experiments(_ p: ProjectView) throws -> [Experiment] { Self.experiments(try state.documents.get(p.name, Self.experimentsKey)) }

    static func experiments(_ stored: [UInt8]?) -> [Experiment] {
        var list = stored.flatMap { try? JSONDecoder().decode([Experiment].self, from: Data($0)) } ?? []
        if !list.contains(where: { $0.id == "0" }) { list.insert(Experiment(id: "0", name: "Default", stage: "active", created: 0, tags: [:]), at: 0) }
        return list
    }

    func deletedRuns(_ p: ProjectView) throws -> Set<String> { Self.deletedRuns(try state.documents.get(p.name, Self.deletedKey)) }

    static func deletedRuns(_ stored: [UInt8]?) -> Set<String> {
        Set(stored.flatMap { try? JSONSerialization.jsonObject(with: Data($0)) as? [String] } ?? [])
    }

    // MARK: runs

    /// An MLflow run read from a live run or a recorded run commit.
    struct MLRun {
        var id: String
        var name: String
        var experiment: String
        var user: String
        var status: String
        var start: Int64
        var end: Int64?
        var params: [(String, String)]
        var metrics: [(String, Double, Int64)]
        var tags: [String: String]
        var deleted: Bool

        func info() -> [String: Any] {
            var i: [String: Any] = ["run_id": id, "run_uuid": id, "run_name": name, "experiment_id": experiment, "user_id": user,
                                    "status": status, "start_time": start, "artifact_uri": "mlflow-artifacts:/\(experiment)/\(id)/artifacts",
                                    "lifecycle_stage": deleted ? "deleted" : "active"]
            if let end { i["end_time"] = end }
            return i
        }

        func json() -> [String: Any] {
            ["info": info(), "data": [
                "metrics": metrics.map { ["key": $0.0, "value": mlValue($0.1), "step": $0.2, "timestamp": end ?? start] },
                "params": params.map { ["key": $0.0, "value": $0.1] },
                "tags": tags.sorted { $0.key < $1.key }.map { ["key": $0.key, "value": $0.value] },
            ] as [String: Any], "inputs": [:] as [String: Any]]
        }

        func field(_ f: String) -> String? {
            if f.hasPrefix("params.") { return params.first { $0.0 == f.dropFirst(7) }?.1 }
            if f.hasPrefix("metrics.") { return metrics.first { $0.0 == f.dropFirst(8) }.map { "\($0.1)" } }
            if f.hasPrefix("tags.") { return tags[String(f.dropFirst(5))] }
            switch f {
            case "attributes.status", "status": return status
            case "attributes.run_name", "run_name", "attributes.run_id", "run_id": return f.hasSuffix("run_name") ? name : id
            case "attributes.start_time", "start_time": return "\(start)"
            case "attributes.end_time", "end_time": return end.map { "\($0)" }
            case "attributes.user_id", "user_id": return user
            default: return nil
            }
        }
    }

    static func mlStatus(_ trove: String) -> String {
        switch trove {
        case "running": "RUNNING"
        case "succeeded": "FINISHED"
        case "failed": "FAILED"
        default: "KILLED"
        }
    }

    func mlRun(_ p: ProjectView, _ id: String) throws -> MLRun {
        if let l = try p.live.find(id) {
            let s = l.state
            var tags = s.tags ?? [:]
            tags["mlflow.runName"] = s.name ?? id
            let order = s.paramOrder ?? s.params.keys.sorted()
            return MLRun(id: id, name: s.name ?? id, experiment: s.experiment ?? "0", user: s.user ?? "", status: MLflowController.mlStatus(s.status),
                         start: s.startMillis ?? 0, end: s.endMillis, params: order.compactMap { k in s.params[k].map { (k, $0) } },
                         metrics: l.metrics.sorted { $0.key < $1.key }.map { ($0.key, $0.value.last, $0.value.lastStep) }, tags: tags,
                         deleted: s.deleted ?? false)
        }
        guard let r = try p.catalog.run(id) else { throw MLError.notFound("Run '\(id)' not found") }
        return MLflowController.mlRun(r, deleted: try deletedRuns(p).contains(id))
    }

    static func mlRun(_ r: RunInfo, deleted: Bool) -> MLRun {
        let m = Dictionary(r.metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        let iso = ISO8601DateFormatter()
        let start = m["mlflow.start_ms"].flatMap { Int64($0) } ?? iso.date(from: r.start).map { Int64($0.timeIntervalSince1970 * 1000) } ?? 0
        let end = m["mlflow.end_ms"].flatMap { Int64($0) } ?? (m["run.end"].flatMap { iso.date(from: $0) }.map { Int64($0.timeIntervalSince1970 * 1000) })
        var tags = Dictionary(m.filter { $0.key.hasPrefix("tag.") }.map { (String($0.key.dropFirst(4)), $0.value) }, uniquingKeysWith: { a, _ in a })
        tags["mlflow.runName"] = r.name ?? r.id
        let metrics = r.metrics.compactMap { k, v in Double(v).map { (k, $0, m["metric.\(k).steps"].flatMap { Int64($0) }.map { $0 - 1 } ?? 0) } }
        return MLRun(id: r.id, name: r.name ?? r.id, experiment: m["mlflow.experiment_id"] ?? "0", user: m["mlflow.user"] ?? m["run.user"] ?? "",
                     status: mlStatus(r.status), start: start, end: end, params: r.parameters, metrics: metrics, tags: tags, deleted: deleted)
    }

    func createRun(_ p: ProjectView, _ a: Args) throws -> [String: Any] {
        let experiment = (try? a.string("experiment_id")) ?? "0"
        guard try experiments(p).contains(where: { $0.id == experiment && $0.stage == "active" }) else {
            throw MLError.notFound("No experiment with id \(experiment)")
        }
        var tags: [String: String] = [:]
        for t in a.list("tags") { if let k = t["key"] as? String { tags[k] = t["value"] as? String ?? "" } }
        var name = (a.values["run_name"] as? String) ?? ""
        if let tagged = tags["mlflow.runName"] {
            if name.isEmpty { name = tagged } else if name != tagged {
                throw MLError.invalid("Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different values")
            }
        }
        let id = UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        if name.isEmpty { name = "run-" + id.prefix(8) }
        tags["mlflow.runName"] = name
        let startMs = (a.values["start_time"] as? NSNumber)?.int64Value ?? Int64(Date().timeIntervalSince1970 * 1000)
        let s = LiveState(id: id, start: ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(startMs) / 1000)),
                          command: tags["mlflow.source.name"] ?? "", params: [:], paramOrder: [], host: nil, name: name, status: "running",
                          source: "mlflow", launcher: "mlflow", user: (a.values["user_id"] as? String) ?? tags["mlflow.user"],
                          experiment: experiment, tags: tags, startMillis: startMs)
        _ = try p.live.create(s)
        return ["run": try mlRun(p, id).json()]
    }

    func logBatch(_ p: ProjectView, _ id: String, metrics: [[String: Any]], params: [[String: Any]], tags: [[String: Any]]) throws {
        guard let l = try p.live.find(id) else {
            if try p.catalog.run(id) != nil { throw MLError.invalid("The run \(id) has ended and is recorded; it cannot be changed") }
            throw MLError.notFound("Run '\(id)' not found")
        }
        guard l.state.status == "running" || metrics.isEmpty else { throw MLError.invalid("The run \(id) must be active to log metrics") }
        func keyOK(_ k: String) throws {
            guard !k.isEmpty, k.count <= 250, !k.contains("\n") else { throw MLError.invalid("Invalid key \(k.debugDescription): 1-250 characters, no newline") }
        }
        if !params.isEmpty || !tags.isEmpty {
            try p.live.update(id) { s in
                for pr in params {
                    guard let k = pr["key"] as? String else { throw MLError.invalid("a param needs a key") }
                    try keyOK(k)
                    let v = pr["value"] as? String ?? (pr["value"] as? NSNumber)?.stringValue ?? ""
                    if let old = s.params[k], old != v {
                        throw MLError.invalid("Changing param values is not allowed. Param with key='\(k)' was already logged with value='\(old)' for run ID='\(id)'. Attempted logging new value '\(v)'.")
                    }
                    if s.params[k] == nil { s.paramOrder = (s.paramOrder ?? []) + [k] }
                    s.params[k] = v
                }
                for t in tags {
                    guard let k = t["key"] as? String else { throw MLError.invalid("a tag needs a key") }
                    try keyOK(k)
                    let v = t["value"] as? String ?? ""
                    s.tags = (s.tags ?? [:]).merging([k: v]) { _, b in b }
                    if k == "mlflow.runName" { s.name = v }
                }
            }
        }
        guard !metrics.isEmpty else { return }
        var lines: [String] = []
        for m in metrics {
            guard let k = m["key"] as? String else { throw MLError.invalid("a metric needs a key") }
            try keyOK(k)
            guard k != "step" && k != "time" else { throw MLError.invalid("metric names 'step' and 'time' are reserved in Trove") }
            let value: Double
            if let n = m["value"] as? NSNumber { value = n.doubleValue } else if let t = m["value"] as? String, let d = Double(t.replacingOccurrences(of: "Infinity", with: "inf")) { value = d } else {
                throw MLError.invalid("metric \(k) has no numeric value")
            }
            // JSON has no NaN or infinity: such points are kept out of the series.
            guard value.isFinite else { continue }
            let step = (m["step"] as? NSNumber)?.int64Value ?? Int64((m["step"] as? String) ?? "") ?? 0
            let ts = (m["timestamp"] as? NSNumber)?.int64Value ?? Int64((m["timestamp"] as? String) ?? "") ?? Int64(Date().timeIntervalSince1970 * 1000)
            lines.append("{\"step\":\(step),\"time\":\(ts),\(jsonString(k)):\(value)}")
        }
        if !lines.isEmpty { _ = try p.live.append(id, lines: lines) }
    }

    /// The timestamps of one metric's points of a live run, in order.
    func liveTimes(_ p: ProjectView, _ id: String, _ key: String) -> [Int64] {
        guard let bytes = try? FileIO.readFile(p.live.folder(id) + "/metrics.jsonl") else { return [] }
        var out: [Int64] = []
        for line in bytes.split(separator: 10) {
            guard let o = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any], o[key] != nil else { continue }
            out.append((o["time"] as? NSNumber)?.int64Value ?? 0)
        }
        return out
    }

    /// `runs/update`: a terminal status records the run into the project's store.
    func updateRun(_ p: ProjectView, _ a: Args) async throws -> [String: Any] {
        let id = try a.runID()
        let status = (a.values["status"] as? String) ?? "RUNNING"
        let endMs = (a.values["end_time"] as? NSNumber)?.int64Value
        let name = a.values["run_name"] as? String
        guard try p.live.find(id) != nil else {
            let r = try mlRun(p, id)
            return ["run_info": r.info()]
        }
        let trove: String? = ["FINISHED": "succeeded", "FAILED": "failed", "KILLED": "cancelled"][status]
        try p.live.update(id) { s in
            if let name, !name.isEmpty { s.name = name; s.tags = (s.tags ?? [:]).merging(["mlflow.runName": name]) { _, b in b } }
            if let trove {
                s.status = trove
                s.endMillis = endMs ?? Int64(Date().timeIntervalSince1970 * 1000)
                s.end = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(s.endMillis!) / 1000))
            }
        }
        if trove != nil { try await blocking { try self.record(p, id) } }
        return ["run_info": try mlRun(p, id).info()]
    }

    /// Records an ended MLflow run as a Trove run commit: written in a scratch store whose
    /// alternate is the project (so stored chunks are not written again), then pushed to the
    /// project like any run. The live folder goes once the ref is there.
    func record(_ p: ProjectView, _ id: String) throws {
        guard let l = try p.live.find(id) else { return }
        _ = try p.live.outputs(id)
        let s = l.state
        let scratch = state.config.root + "/tmp/record-" + id
        FileIO.removeTree(scratch)
        defer { FileIO.removeTree(scratch) }
        _ = try Store.initialize(root: scratch, workTree: nil, parameters: p.store.parameters)
        try Store.open(root: scratch, workTree: nil).setAlternates([p.store.root])
        let store = try Store.open(root: scratch, workTree: nil)
        var spec = RunSpec(command: ["mlflow", s.command].filter { !$0.isEmpty }, directory: "")
        spec.name = s.name
        spec.parameters = (s.paramOrder ?? s.params.keys.sorted()).compactMap { k in s.params[k].map { (k, $0) } }
        let folder = p.live.folder(id)
        let params = Dictionary(spec.parameters.map { ($0.name, $0.value) }, uniquingKeysWith: { _, b in b })
        try FileIO.atomicWrite(folder + "/params.json", Array(try JSONSerialization.data(withJSONObject: params, options: [.sortedKeys])), durable: false)
        let recorder = try RunRecorder(store: store, spec: spec, id: id, liveDirectory: folder)
        recorder.recordsEnvironment = false
        var meta: [String: String] = ["run.source": "mlflow", "run.launcher": "mlflow", "mlflow.experiment_id": s.experiment ?? "0"]
        if let u = s.user { meta["mlflow.user"] = u }
        if let ms = s.startMillis { meta["mlflow.start_ms"] = "\(ms)" }
        if let ms = s.endMillis { meta["mlflow.end_ms"] = "\(ms)" }
        for (k, v) in s.tags ?? [:] { meta["tag." + k] = v }
        recorder.extraMetadata = meta
        let start = s.startMillis.map { Date(timeIntervalSince1970: Double($0) / 1000) } ?? Date()
        let end = s.endMillis.map { Date(timeIntervalSince1970: Double($0) / 1000) } ?? Date()
        _ = try recorder.recordEnded(status: RunStatus(rawValue: s.status) ?? .succeeded, start: start, end: end)
        // Through the project's own service: with replicas, its refs and packs are shared.
        let remote = PathRemote(url: "project \(p.name)", service: p.service)
        _ = try Pusher(store: store, remote: remote, remoteName: nil).push([RefSpec(source: "runs/" + id, destination: "runs/" + id)])
        p.live.remove(id)
    }

    func search(_ p: ProjectView, _ a: Args) throws -> [String: Any] {
        let exps = Set((a.values["experiment_ids"] as? [Any] ?? []).map { "\($0)" })
        let filter = try MLFilter.parse(a.values["filter"] as? String ?? "")
        let viewType = a.values["run_view_type"] as? String ?? "ACTIVE_ONLY"
        let max = Swift.min(Swift.max((a.values["max_results"] as? NSNumber)?.intValue ?? 1000, 1), 50000)
        let offset = Int((a.values["page_token"] as? String) ?? "") ?? 0
        let deleted = try deletedRuns(p)
        var runs: [MLRun] = []
        for row in try p.rows().rows {
            let exp = row.experiment ?? "0"
            guard exps.isEmpty || exps.contains(exp) else { continue }
            let r: MLRun
            if row.live { r = try mlRun(p, row.id) } else if let info = try p.catalog.run(row.id) {
                r = MLflowController.mlRun(info, deleted: deleted.contains(row.id))
            } else { r = try mlRun(p, row.id) }
            if viewType == "ACTIVE_ONLY" && r.deleted || viewType == "DELETED_ONLY" && !r.deleted { continue }
            if filter.allSatisfy({ $0.matches(r) }) { runs.append(r) }
        }
        for clause in (a.values["order_by"] as? [String] ?? []).reversed() {
            let parts = clause.split(separator: " ").map(String.init)
            guard let f = parts.first else { continue }
            let field = MLFilter.field(f)
            let desc = parts.count > 1 && parts[1].uppercased() == "DESC"
            runs = RunFilter.sort(runs.map(MLSortable.init), by: (desc ? "-" : "") + field).map(\.run)
        }
        let page = Array(runs.dropFirst(offset).prefix(max))
        var out: [String: Any] = ["runs": page.map { $0.json() }]
        if offset + max < runs.count { out["next_page_token"] = "\(offset + max)" }
        return out
    }

    // MARK: artifacts

    /// `EXP/RUN/artifacts/PATH` from the catch-all, checked; nil path for the run's root.
    func artifactTarget(_ parts: [Substring]) throws -> (run: String, path: String) {
        let text = parts.map { String($0).removingPercentEncoding ?? String($0) }.joined(separator: "/")
        let comps = text.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false).map(String.init)
        guard comps.count >= 3, comps[2] == "artifacts" else {
            throw MLError.invalid("artifact paths are EXPERIMENT/RUN/artifacts/PATH, not \(text.debugDescription)")
        }
        return (comps[1], try APIController.cleanPath(comps.count > 3 ? comps[3] : ""))
    }

    func artifactResponse(_ req: Request, _ ctx: BasicRequestContext, _ role: Role, _ body: (ProjectView) async throws -> Response) async -> Response {
        do { return try await body(try authorized(req, ctx, role)) } catch { return MLflowController.errorResponse(error) }
    }

    func artifactPut(_ req: Request, _ ctx: BasicRequestContext) async -> Response {
        await artifactResponse(req, ctx, .write) { p in
            let (run, path) = try artifactTarget(ctx.parameters.getCatchAll())
            guard !path.isEmpty else { throw MLError.invalid("an artifact needs a file name") }
            guard let l = try p.live.find(run), l.state.source == "mlflow", l.state.status == "running" else {
                throw MLError.invalid("run \(run) is not an active MLflow run of this project")
            }
            let target = p.live.folder(run) + "/outputs/" + path
            try FileIO.mkdirs(FileIO.dirname(target))
            let tmp = target + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            let fd = try FileIO.open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC)
            do {
                for try await buffer in req.body {
                    try buffer.withUnsafeReadableBytes { raw in try FileIO.writeAll(fd, raw.baseAddress!, raw.count, path: tmp) }
                }
                try FileIO.fsync(fd, path: tmp)
                close(fd)
                try await blocking { try p.live.putArtifact(run, path: path, file: tmp) }
            } catch {
                close(fd)
                unlink(tmp)
                throw error
            }
            return json([:])
        }
    }

    func artifactGet(_ req: Request, _ ctx: BasicRequestContext) async -> Response {
        await artifactResponse(req, ctx, .read) { p in
            let (run, path) = try artifactTarget(ctx.parameters.getCatchAll())
            if let info = try p.catalog.run(run) {
                guard let e = try p.store.flatten(tree: try p.store.commit(info.commit).tree)["outputs/" + path] else {
                    throw MLError.notFound("no artifact \(path) in run \(run)")
                }
                return try BlobResponse.make(p.store, e, range: req.headers[.range], headers: [:], head: false)
            }
            guard try p.live.find(run) != nil else { throw MLError.notFound("no artifact \(path) in run \(run)") }
            let file = try p.live.outputs(run) + "/" + path
            guard !FileIO.isDirectory(file), let bytes = try? FileIO.readFile(file) else {
                throw MLError.notFound("no artifact \(path) in run \(run)")
            }
            return Response(status: .ok, headers: [.contentType: "application/octet-stream"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
    }

    func artifactList(_ req: Request, _ ctx: BasicRequestContext) async -> Response {
        await artifactResponse(req, ctx, .read) { p in
            let given = req.uri.queryParameters["path"].map(String.init) ?? ""
            let (run, path) = try artifactTarget(given.split(separator: "/", omittingEmptySubsequences: false))
            var files: [[String: Any]] = []
            let prefix = path.isEmpty ? "" : path + "/"
            if let info = try p.catalog.run(run) {
                var dirs = Set<String>()
                for (k, e) in try p.store.flatten(tree: try p.store.commit(info.commit).tree) where k.hasPrefix("outputs/" + prefix) {
                    let rest = k.dropFirst(8 + prefix.count)
                    if let slash = rest.firstIndex(of: "/") { dirs.insert(String(rest[..<slash])) } else {
                        files.append(["path": prefix + rest, "is_dir": false, "file_size": e.size])
                    }
                }
                files += dirs.sorted().map { ["path": prefix + $0, "is_dir": true] }
            } else if try p.live.find(run) != nil {
                let dir = try p.live.outputs(run) + "/" + path
                for e in (try? FileIO.listDirectoryEntries(dir)) ?? [] where !e.name.contains(".tmp-") {
                    var item: [String: Any] = ["path": prefix + e.name, "is_dir": e.isDirectory]
                    if !e.isDirectory { item["file_size"] = FileIO.fileSize(dir + "/" + e.name) ?? 0 }
                    files.append(item)
                }
            } else {
                throw MLError.notFound("Run '\(run)' not found")
            }
            return json(["files": files])
        }
    }
}

func mlValue(_ v: Double) -> Any {
    if v.isNaN { return "NaN" }
    if v.isInfinite { return v > 0 ? "Infinity" : "-Infinity" }
    return v
}

/// A sortable view of an MLflow run for `order_by`.
struct MLSortable: RunFields {
    let run: MLflowController.MLRun
    init(_ r: MLflowController.MLRun) { run = r }
    func field(_ name: String) -> String? { run.field(name) }
}

/// MLflow's search filter: clauses joined by AND, each `FIELD OP VALUE` with FIELD
/// `metrics.x`, `params.x`, `tags.x`, `attributes.x` (backquotes allowed) and VALUE a number or
/// a quoted string; OP one of `=`, `!=`, `<`, `<=`, `>`, `>=`, `LIKE`, `ILIKE`.
struct MLFilter {
    var field: String
    var op: String
    var value: String

    static func field(_ raw: String) -> String {
        var f = raw.replacingOccurrences(of: "`", with: "").replacingOccurrences(of: "\"", with: "")
        for (a, b) in [("metric.", "metrics."), ("param.", "params."), ("tag.", "tags."), ("attribute.", "attributes.")] where f.hasPrefix(a) {
            f = b + f.dropFirst(a.count)
        }
        return f
    }

    static func parse(_ text: String) throws -> [MLFilter] {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else { return [] }
        var out: [MLFilter] = []
        for clause in trimmed.components(separatedBy: " and ").flatMap({ $0.components(separatedBy: " AND ") }) {
            let c = clause.trimmingCharacters(in: .whitespaces)
            var matched = false
            for op in [" ILIKE ", " LIKE ", "!=", "<=", ">=", "=", "<", ">"] {
                guard let r = c.range(of: op) else { continue }
                var v = c[r.upperBound...].trimmingCharacters(in: .whitespaces)
                if v.count >= 2, let f = v.first, (f == "'" || f == "\""), v.last == f { v = String(v.dropFirst().dropLast()) }
                out.append(MLFilter(field: field(c[..<r.lowerBound].trimmingCharacters(in: .whitespaces)), op: op.trimmingCharacters(in: .whitespaces), value: v))
                matched = true
                break
            }
            if !matched { throw MLflowController.MLError.invalid("Invalid filter '\(c)'") }
        }
        return out
    }

    func matches(_ r: MLflowController.MLRun) -> Bool {
        guard let have = r.field(field) else { return false }
        switch op {
        case "LIKE", "ILIKE":
            let pattern = "^" + NSRegularExpression.escapedPattern(for: value).replacingOccurrences(of: "%", with: ".*").replacingOccurrences(of: "_", with: ".") + "$"
            return have.range(of: pattern, options: op == "ILIKE" ? [.regularExpression, .caseInsensitive] : .regularExpression) != nil
        default:
            return RunFilter(field: field, op: op, value: value).matches(MLSortable(r))
        }
    }
}
