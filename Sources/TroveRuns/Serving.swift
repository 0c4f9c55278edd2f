import Foundation
import Glibc
import TroveCore
import TroveStore

/// How a model version is served (`serving.json` at the top of the version, Docs/serving.md):
/// the worker command and the tensors it takes and gives.
public struct ServingSpec: Sendable {
    public struct Tensor: Sendable {
        public var name: String
        public var datatype: String
        /// -1 for a dimension of any size (the batch one).
        public var shape: [Int]
    }

    public var command: [String]
    public var inputs: [Tensor]
    public var outputs: [Tensor]

    public static let fileName = "serving.json"

    public static func parse(_ bytes: [UInt8]) throws -> ServingSpec {
        guard let o = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw StoreError(.invalidInput, "serving.json is not a JSON object")
        }
        guard let command = o["command"] as? [String], !command.isEmpty else {
            throw StoreError(.invalidInput, "serving.json needs \"command\": [\"python3\", \"worker.py\"]")
        }
        func tensors(_ key: String) throws -> [Tensor] {
            try (o[key] as? [[String: Any]] ?? []).map { t in
                guard let name = t["name"] as? String, let datatype = t["datatype"] as? String, let shape = t["shape"] as? [Int] else {
                    throw StoreError(.invalidInput, "serving.json: every \(key) entry needs name, datatype and shape")
                }
                return Tensor(name: name, datatype: datatype, shape: shape)
            }
        }
        return ServingSpec(command: command, inputs: try tensors("inputs"), outputs: try tensors("outputs"))
    }

    /// Why an inference request's inputs do not fit the spec, or nil.
    public func mismatch(_ request: InferenceRequest) -> String? {
        let text = JSONScanner(request.body)
        var given: [(name: String, members: [String: Range<Int>])] = []
        for range in request.inputs {
            var s = text.at(range)
            guard let members = try? s.object(), let name = text.string(in: members["name"]) else {
                return "every entry of \"inputs\" needs to be an object with a \"name\""
            }
            given.append((name, members))
        }
        guard !self.inputs.isEmpty else { return nil }
        for want in self.inputs {
            guard let got = given.first(where: { $0.name == want.name })?.members else { return "input \(want.name) is missing" }
            guard let dt = text.string(in: got["datatype"]), dt == want.datatype else {
                return "input \(want.name) has datatype \(text.string(in: got["datatype"]) ?? "none"), expected \(want.datatype)"
            }
            var shape: [Int]?
            if let r = got["shape"] {
                var s = text.at(r), dims: [Int] = []
                if (try? s.elements({ dims.append(try $0.int()) })) != nil { shape = dims }
            }
            guard let shape, shape.count == want.shape.count,
                  zip(shape, want.shape).allSatisfy({ $1 == -1 || $0 == $1 }), shape.allSatisfy({ $0 >= 0 }) else {
                return "input \(want.name) has shape \(shape.map { "\($0)" } ?? "none"), expected \(want.shape) (-1: any)"
            }
            let count = shape.reduce(1, *)
            let numeric = want.datatype.hasPrefix("FP") || want.datatype.hasPrefix("INT") || want.datatype.hasPrefix("UINT")
            // Values flat or nested row by row (both are OIP v2 JSON); what counts is how many.
            var values = 0, allNumbers = true
            func leaves(_ s: inout JSONScanner) throws {
                if s.peek == UInt8(ascii: "[") { try s.elements(leaves) } else {
                    if try s.skipValue() != .number { allNumbers = false }
                    values += 1
                }
            }
            guard let r = got["data"], text.bytes[r.lowerBound] == UInt8(ascii: "[") else {
                return "input \(want.name) has no \"data\" list"
            }
            var s = text.at(r)
            try? leaves(&s)
            guard values == count else { return "input \(want.name): data holds \(values) values, shape \(shape) needs \(count)" }
            if numeric && !allNumbers { return "input \(want.name): datatype \(want.datatype) needs numbers" }
        }
        for got in given where !self.inputs.contains(where: { $0.name == got.name }) { return "unknown input \(got.name)" }
        return nil
    }
}

/// An Open Inference Protocol v2 request body as it came: checked, split, and passed on to a
/// worker as the same bytes.
public struct InferenceRequest: Sendable {
    public let body: [UInt8]
    public let inputs: [Range<Int>]
    public let parameters: Range<Int>?
    public let id: Range<Int>?

    public init(body: [UInt8]) throws {
        self.body = body
        let members: [String: Range<Int>]
        do { members = try JSONScanner.topObject(body) } catch let e as StoreError {
            throw StoreError(.invalidInput, "the request body is not a JSON object (\(e.message))")
        }
        guard let r = members["inputs"], body[r.lowerBound] == UInt8(ascii: "[") else {
            throw StoreError(.invalidInput, "the request has no \"inputs\" list")
        }
        var s = JSONScanner(body, at: r.lowerBound)
        inputs = try s.array()
        guard !inputs.isEmpty else { throw StoreError(.invalidInput, "the request has no \"inputs\" list") }
        parameters = members["parameters"]
        id = members["id"]
    }

    /// This request as one item of a worker's batch line: `{"id":"K","inputs":…,"parameters":…}`.
    func appendItem(_ k: Int, to line: inout [UInt8]) {
        line.append(contentsOf: #"{"id":""#.utf8)
        line.append(contentsOf: String(k).utf8)
        line.append(contentsOf: #"","inputs":["#.utf8)
        for (n, r) in inputs.enumerated() {
            if n > 0 { line.append(UInt8(ascii: ",")) }
            line.append(contentsOf: body[r])
        }
        line.append(UInt8(ascii: "]"))
        if let p = parameters {
            line.append(contentsOf: #","parameters":"#.utf8)
            line.append(contentsOf: body[p])
        }
        line.append(UInt8(ascii: "}"))
    }
}

/// A worker's answer to one request: ranges of its line.
public struct InferenceAnswer: Sendable {
    public let line: [UInt8]
    public let outputs: Range<Int>?
    public let parameters: Range<Int>?
}

/// Worker processes behind `trove serve` (Docs/serving.md): each reads one JSON line per batch
/// on stdin, `{"batch": [{"id", "inputs": [...]}, ...]}`, and writes one line back,
/// `{"batch": [{"id", "outputs": [...]} | {"id", "error": "..."}]}`. Requests wait in one
/// bounded queue; a free worker takes up to `maxBatch` of them, waiting at most `maxWait`
/// after the first for more. A worker that exits or overruns `timeout` fails its batch and is
/// started again.
public final class WorkerPool: @unchecked Sendable {
    public struct Config: Sendable {
        public var command: [String]
        public var directory: String
        public var workers = 1
        public var maxBatch = 1
        public var maxWait = 0.0
        public var queueLimit = 256
        public var timeout = 30.0
        public var environment: [String: String] = [:]
        /// The version's commit, to tell whether a newer one is served.
        public var commit: ObjectID?
        public init(command: [String], directory: String) {
            self.command = command
            self.directory = directory
        }
    }

    public enum Failure: Error, Sendable {
        case workerExited(String), timedOut(Double), workerError(String), stopped
    }

    public struct Job {
        public let request: InferenceRequest
        public let done: (Result<InferenceAnswer, Failure>) -> Void
        let arrived: DispatchTime
    }

    public let config: Config
    private let condition = NSCondition()
    private var queue: [Job] = []
    private var stopping = false
    private var readyWorkers = 0
    private var running: [Int: pid_t] = [:]
    private let finished = DispatchGroup()

    // Figures for /metrics.
    public private(set) var batches: [Int: Int] = [:]
    public private(set) var restarts = 0

    public init(config: Config) { self.config = config }

    public var queueDepth: Int { condition.lock(); defer { condition.unlock() }; return queue.count }
    public var ready: Bool { condition.lock(); defer { condition.unlock() }; return readyWorkers > 0 }
    public func batchSizes() -> [Int: Int] { condition.lock(); defer { condition.unlock() }; return batches }

    public func start() {
        for i in 0..<config.workers {
            finished.enter()
            onOwnThread { [self] in
                defer { finished.leave() }
                supervise(i)
            }
        }
    }

    /// Queues a request; false when the queue is full (the caller answers 503).
    public func submit(_ request: InferenceRequest, done: @escaping (Result<InferenceAnswer, Failure>) -> Void) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !stopping, queue.count < config.queueLimit else { return false }
        queue.append(Job(request: request, done: done, arrived: .now()))
        condition.signal()
        return true
    }

    /// Lets queued requests finish, then stops the workers (graceful drain).
    public func stop(drainFor seconds: Double = 30) {
        let deadline = Date().addingTimeInterval(seconds)
        while queueDepth > 0 && Date() < deadline { usleep(20_000) }
        condition.lock()
        stopping = true
        let left = queue
        queue = []
        condition.broadcast()
        let pids = Array(running.values)
        condition.unlock()
        for j in left { j.done(.failure(.stopped)) }
        for p in pids { kill(p, SIGTERM) }
        _ = finished.wait(timeout: .now() + 10)
    }

    /// One worker slot: starts the process, feeds it batches, starts it again when it dies.
    private func supervise(_ slot: Int) {
        var backoff = 0.1
        while !isStopping {
            guard let worker = try? Worker(config: config) else {
                Thread.sleep(forTimeInterval: backoff)
                backoff = min(backoff * 2, 5)
                continue
            }
            condition.lock()
            running[slot] = worker.pid
            readyWorkers += 1
            condition.unlock()
            let healthy = serve(worker)
            condition.lock()
            readyWorkers -= 1
            running[slot] = nil
            if !stopping { restarts += 1 }
            condition.unlock()
            worker.terminate()
            if healthy { backoff = 0.1 } else if !isStopping {
                Thread.sleep(forTimeInterval: backoff)
                backoff = min(backoff * 2, 5)
            }
        }
    }

    private var isStopping: Bool { condition.lock(); defer { condition.unlock() }; return stopping }

    /// Batches to one worker until it fails (false) or the pool stops (true).
    private func serve(_ worker: Worker) -> Bool {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if stopping { condition.unlock(); return true }
            // A batch: what is queued now, then what arrives within maxWait of the first.
            if config.maxBatch > 1, queue.count < config.maxBatch, config.maxWait > 0 {
                let until = Date(timeIntervalSinceNow: max(0, config.maxWait - Double(DispatchTime.now().uptimeNanoseconds - queue[0].arrived.uptimeNanoseconds) / 1e9))
                while queue.count < config.maxBatch && !stopping && condition.wait(until: until) {}
            }
            let n = min(config.maxBatch, queue.count)
            let jobs = Array(queue.prefix(n))
            queue.removeFirst(n)
            batches[jobs.count, default: 0] += 1
            condition.unlock()
            guard !jobs.isEmpty else { continue }
            var line: [UInt8] = Array(#"{"batch":["#.utf8)
            line.reserveCapacity(jobs.reduce(16) { $0 + $1.request.body.count + 16 })
            for (k, j) in jobs.enumerated() {
                if k > 0 { line.append(UInt8(ascii: ",")) }
                j.request.appendItem(k, to: &line)
            }
            line.append(contentsOf: "]}\n".utf8)
            do {
                let reply = try worker.call(line, timeout: config.timeout)
                let results = try Self.answers(reply)
                for (k, j) in jobs.enumerated() {
                    if let r = results.first(where: { $0.id == "\(k)" }) ?? (results.count == jobs.count ? results[k] : nil) {
                        if let e = r.error { j.done(.failure(.workerError(e))) } else { j.done(.success(r.answer)) }
                    } else {
                        j.done(.failure(.workerError("the worker gave no answer for this request")))
                    }
                }
            } catch let f as Failure {
                for j in jobs { j.done(.failure(f)) }
                // A worker error in a well-formed answer leaves the worker up; anything else restarts it.
                if case .workerError = f { continue }
                return false
            } catch {
                for j in jobs { j.done(.failure(.workerExited("\(error)"))) }
                return false
            }
        }
    }
}

extension WorkerPool {
    /// The items of a worker's batch line, checked in full.
    static func answers(_ line: [UInt8]) throws -> [(id: String?, error: String?, answer: InferenceAnswer)] {
        let members: [String: Range<Int>]
        do { members = try JSONScanner.topObject(line) } catch let e as StoreError {
            throw Failure.workerExited("the worker wrote a line that is not a JSON object (\(e.message)): \(String(decoding: line.prefix(200), as: UTF8.self))")
        }
        guard let batch = members["batch"], line[batch.lowerBound] == UInt8(ascii: "[") else {
            throw Failure.workerError("the worker's answer has no \"batch\" list")
        }
        var s = JSONScanner(line, at: batch.lowerBound)
        var out: [(id: String?, error: String?, answer: InferenceAnswer)] = []
        try s.elements { item in
            guard item.peek == UInt8(ascii: "{") else { throw Failure.workerError("an item of the worker's \"batch\" is not an object") }
            let m = try item.object()
            out.append((item.string(in: m["id"]), item.string(in: m["error"]),
                        InferenceAnswer(line: line, outputs: m["outputs"], parameters: m["parameters"])))
        }
        return out
    }
}

/// One worker process and its pipes.
final class Worker {
    let process = Process()
    let input: FileHandle
    let output: Int32
    var pending: [UInt8] = []
    var pid: pid_t { process.processIdentifier }

    init(config: WorkerPool.Config) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = config.command
        process.currentDirectoryURL = URL(fileURLWithPath: config.directory)
        var env = ProcessInfo.processInfo.environment
        for (k, v) in config.environment { env[k] = v }
        process.environment = env
        let inPipe = Pipe(), outPipe = Pipe()
        process.standardInput = inPipe
        process.standardOutput = outPipe
        process.standardError = FileHandle.standardError
        try process.run()
        input = inPipe.fileHandleForWriting
        output = outPipe.fileHandleForReading.fileDescriptor
        _ = fcntl(output, F_SETFL, fcntl(output, F_GETFL) | O_NONBLOCK)
    }

    /// Sends one line (ending in a newline) and reads one line back within `timeout` seconds.
    func call(_ line: [UInt8], timeout: Double) throws -> [UInt8] {
        do { try input.write(contentsOf: line) } catch {
            throw WorkerPool.Failure.workerExited("the worker closed its input: \(exitText)")
        }
        let deadline = Date(timeIntervalSinceNow: timeout)
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            if let nl = pending.firstIndex(of: 10) {
                let text = Array(pending[..<nl])
                pending.removeSubrange(...nl)
                return text
            }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw WorkerPool.Failure.timedOut(timeout) }
            var p = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
            let r = poll(&p, 1, Int32(min(left, 1) * 1000) + 1)
            if r < 0 && errno == EINTR { continue }
            guard r > 0 else { continue }
            let n = buf.withUnsafeMutableBytes { read(output, $0.baseAddress, $0.count) }
            if n > 0 { pending += buf[..<n] } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                throw WorkerPool.Failure.workerExited("the worker exited (\(exitText))")
            }
        }
    }

    var exitText: String {
        usleep(50_000)
        if process.isRunning { return "still running" }
        return process.terminationReason == .uncaughtSignal ? "killed by signal \(process.terminationStatus)" : "exit status \(process.terminationStatus)"
    }

    func terminate() {
        try? input.close()
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            for _ in 0..<50 where process.isRunning { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
    }
}

/// `trove serve --k8s`: a Deployment whose pods fetch the version from a daemon and run the
/// same `trove serve`, and a Service in front of them (Docs/serving.md §Kubernetes).
public struct ServingDeployment: Sendable {
    public var model: String
    public var image: String
    public var storeURL: String
    public var tokenSecret: String?
    public var replicas = 1
    public var namespace: String?
    public var port = 8080
    /// The `trove serve` options after the model (workers, batching, queue, timeout).
    public var serveArguments: [String] = []
    public var cpu: String?
    public var memory: String?
    public var gpus: Int?

    public init(model: String, image: String, storeURL: String) {
        self.model = model
        self.image = image
        self.storeURL = storeURL
    }

    /// A DNS-1123 name for the objects.
    public var objectName: String {
        let base = model.split(separator: "@").map(String.init).joined(separator: "-").lowercased()
            .map { $0.isLetter || $0.isNumber ? $0 : "-" }
        let trimmed = String(String(base).trimmingCharacters(in: CharacterSet(charactersIn: "-")).prefix(50))
        return "trove-serve-" + (trimmed.isEmpty ? "model" : trimmed)
    }

    /// Two documents (Deployment, Service) as JSON, separated by `---`: valid YAML for kubectl.
    public func render() throws -> String {
        let name = objectName
        let labels = ["app.kubernetes.io/name": "trove-serve", "app.kubernetes.io/instance": name]
        // Every pod announces the Service's address as where the version is served (Docs/registry.md).
        let serviceURL = "http://\(name)" + (namespace.map { ".\($0).svc" } ?? "")
        let quoted = ([model] + serveArguments + ["--public-url", serviceURL]).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        let script = "set -e; trove init -q /store; cd /store; trove remote add origin \"$TROVE_URL\"; "
            + "trove model pull '\(model.replacingOccurrences(of: "'", with: ""))'; exec trove serve \(quoted) --listen 0.0.0.0:\(port)"
        var env: [[String: Any]] = [["name": "TROVE_URL", "value": storeURL], ["name": "TROVE_PROGRESS", "value": "0"]]
        if let secret = tokenSecret {
            let parts = secret.split(separator: ":", maxSplits: 1).map(String.init)
            env.append(["name": "TROVE_TOKEN", "valueFrom": ["secretKeyRef": ["name": parts[0], "key": parts.count > 1 ? parts[1] : "token"]]])
        }
        var resources: [String: Any] = [:]
        var requests: [String: String] = [:], limits: [String: String] = [:]
        if let cpu { requests["cpu"] = cpu; limits["cpu"] = cpu }
        if let memory { requests["memory"] = memory; limits["memory"] = memory }
        if let gpus { limits["nvidia.com/gpu"] = "\(gpus)" }
        if !requests.isEmpty { resources["requests"] = requests }
        if !limits.isEmpty { resources["limits"] = limits }
        func probe(_ path: String) -> [String: Any] {
            ["httpGet": ["path": path, "port": port], "periodSeconds": 5, "failureThreshold": 3]
        }
        var container: [String: Any] = [
            "name": "serve", "image": image, "command": ["sh", "-c", script], "env": env,
            "ports": [["name": "http", "containerPort": port]],
            "readinessProbe": probe("/v2/health/ready"), "livenessProbe": probe("/v2/health/live"),
            "volumeMounts": [["name": "store", "mountPath": "/store"]],
        ]
        if !resources.isEmpty { container["resources"] = resources }
        var meta: [String: Any] = ["name": name, "labels": labels]
        if let namespace { meta["namespace"] = namespace }
        let deployment: [String: Any] = [
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": [
                "replicas": replicas, "selector": ["matchLabels": labels],
                "template": [
                    "metadata": ["labels": labels],
                    "spec": ["containers": [container], "volumes": [["name": "store", "emptyDir": [String: Any]()]],
                             // SIGTERM drains the queue: give it the time it may need.
                             "terminationGracePeriodSeconds": 60] as [String: Any],
                ] as [String: Any],
            ] as [String: Any],
        ]
        let service: [String: Any] = [
            "apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": ["selector": labels, "ports": [["name": "http", "port": 80, "targetPort": port]]] as [String: Any],
        ]
        return try [deployment, service].map { String(decoding: try JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]), as: UTF8.self) }
            .joined(separator: "\n---\n") + "\n"
    }
}

/// A `trove serve` running on this machine: `STORE/serving/endpoints/INSTANCE.json`, written
/// when it listens, rewritten when `--follow` switches versions, removed when it stops. A
/// record whose process is gone (killed) is ignored and removed by the next reader.
public struct ServingRecord: Codable, Sendable, Equatable {
    public var name: String
    public var version: Int
    public var url: String
    public var host: String
    public var pid: Int32
    public var workers: Int
    public var started: Int64

    public init(name: String, version: Int, url: String, host: String, pid: Int32, workers: Int, started: Int64) {
        (self.name, self.version, self.url, self.host, self.pid, self.workers, self.started) = (name, version, url, host, pid, workers, started)
    }

    /// `version` and `url` are required; the rest may be left out (an announcement by hand).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decodeIfPresent(String.self, forKey: .name) ?? ""
        version = try c.decode(Int.self, forKey: .version)
        url = try c.decode(String.self, forKey: .url)
        host = try c.decodeIfPresent(String.self, forKey: .host) ?? ""
        pid = try c.decodeIfPresent(Int32.self, forKey: .pid) ?? 0
        workers = try c.decodeIfPresent(Int.self, forKey: .workers) ?? 0
        started = try c.decodeIfPresent(Int64.self, forKey: .started) ?? 0
    }

    /// `HOST-PID-PORT`, the key of this server's record and of its announcements.
    public var instance: String {
        let port = url.split(separator: ":").last.map(String.init) ?? "0"
        return String("\(host)-\(pid)-\(port)".map { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) ? $0 : "-" }.prefix(128))
    }

    static func directory(_ root: String) -> String { root + "/serving/endpoints" }

    public func write(storeRoot: String) throws {
        try FileIO.mkdirs(Self.directory(storeRoot))
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        try FileIO.atomicWrite(Self.directory(storeRoot) + "/\(instance).json", Array(try enc.encode(self)))
    }

    public func remove(storeRoot: String) { unlink(Self.directory(storeRoot) + "/\(instance).json") }

    /// The records of servers still running, oldest first.
    public static func live(storeRoot: String) -> [ServingRecord] {
        let dir = directory(storeRoot)
        let names = (try? FileIO.listDirectory(dir)) ?? []
        return names.filter { $0.hasSuffix(".json") }.compactMap { n -> ServingRecord? in
            guard let bytes = try? FileIO.readFile(dir + "/" + n), let r = try? JSONDecoder().decode(ServingRecord.self, from: Data(bytes)) else { return nil }
            guard LocalProcess(pid: r.pid, started: nil).isRunning else {
                unlink(dir + "/" + n)
                return nil
            }
            return r
        }.sorted { ($0.started, $0.url) < ($1.started, $1.url) }
    }
}
