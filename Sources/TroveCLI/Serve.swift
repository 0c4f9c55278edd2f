import ArgumentParser
import Foundation
import Glibc
import Logging
import TroveCore
import TroveRuns
import TroveServer
import TroveStore
import TroveSync

extension TroveCommand {
    struct Serve: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serve a model version over HTTP (Open Inference Protocol v2) with worker processes.",
            discussion: """
                Materialises the version (fetching only the chunks the store lacks from its remotes), starts the workers \
                its serving.json names and answers /v2/health/live|ready, /v2/models/NAME[/ready], \
                POST /v2/models/NAME/infer and /metrics. Requests are batched (--max-batch, --max-wait-ms) and queued \
                (--queue; 503 with Retry-After when full); a worker that exits or hangs (--timeout) fails its batch \
                and is started again. SIGTERM: stop accepting, finish the queue, stop the workers. See Docs/serving.md.
                """)
        @Argument(help: "NAME, NAME@vN or NAME@ALIAS.") var model: String
        @Option(help: "HOST:PORT to listen on (port 0: any free port, printed).") var listen = "127.0.0.1:8080"
        @Option(help: "Worker processes.") var workers = 1
        @Option(name: .customLong("max-batch"), help: "Requests per batch sent to a worker.") var maxBatch = 1
        @Option(name: .customLong("max-wait-ms"), help: "How long a batch waits to fill after its first request.") var maxWaitMs = 0.0
        @Option(help: "Requests that may wait for a worker; more get 503.") var queue = 256
        @Option(help: "Seconds a worker may take for a batch before it is killed and started again.") var timeout = 30.0
        @Flag(help: "Print a Kubernetes Deployment and Service whose pods run this same trove serve (needs --image and --store-url), and exit.")
        var k8s = false
        @Option(help: "With --k8s: the container image (with trove and the worker's runtime).") var image: String?
        @Option(name: .customLong("store-url"), help: "With --k8s: the daemon URL the pods fetch the model from (http(s)://HOST:PORT/PROJECT).") var storeURL: String?
        @Option(name: .customLong("token-secret"), help: "With --k8s: the Secret holding a read token, NAME[:KEY] (key default: token).") var tokenSecret: String?
        @Option(help: "With --k8s: pods behind the Service.") var replicas = 1
        @Option(help: "With --k8s: the namespace.") var namespace: String?
        @Option(help: "With --k8s: CPU request and limit (e.g. 2).") var cpu: String?
        @Option(help: "With --k8s: memory request and limit (e.g. 4Gi).") var memory: String?
        @Option(help: "With --k8s: GPUs per pod (nvidia.com/gpu).") var gpus: Int?
        @OptionGroup var options: StoreOptions

        func run() throws {
            if k8s { return try printManifests() }
            guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
                throw StoreError(.invalidInput, "--listen takes HOST:PORT, not \(listen)")
            }
            guard workers >= 1, maxBatch >= 1, queue >= 1, timeout > 0, maxWaitMs >= 0 else {
                throw StoreError(.invalidInput, "--workers, --max-batch and --queue must be at least 1, --timeout above 0")
            }
            let store = try options.openStore()
            let (name, version, commit) = try Registry(store: store, kind: .model).resolve(model)
            // Everything the version needs, or which files cannot be had, before listening.
            do { try LazyFetch.ensure(store, commit: commit, filter: .all, progress: options.progress) } catch {
                if !options.quiet { Console.err("trove: fetching \(name)@v\(version)'s missing chunks failed: \(error)") }
            }
            let files = try store.flatten(tree: try store.commit(commit).tree).sorted { $0.key < $1.key }
            let missing = try files.filter { !(try store.hasContent(ofBlob: $0.value.id)) }.map(\.key)
            guard missing.isEmpty else {
                throw StoreError(.notFound, "\(name)@v\(version): \(missing.count) file(s) are neither here nor on any remote: \(missing.prefix(10).joined(separator: ", "))",
                                 hint: "push them from the store that published the version, or add a remote that has them")
            }
            guard let specEntry = files.first(where: { $0.key == ServingSpec.fileName }) else {
                throw StoreError(.invalidInput, "\(name)@v\(version) has no \(ServingSpec.fileName): nothing says how to serve it", hint: "see Docs/serving.md")
            }
            let spec = try ServingSpec.parse(try Materializer.readBlob(store: store, blob: specEntry.value.id))
            // The version's files, written once per version (verified as they are written).
            let dir = store.root + "/serving/\(name)-v\(version)"
            if !FileIO.exists(dir + "/.complete") {
                FileIO.removeTree(dir)
                try FileIO.mkdirs(dir)
                _ = try Materializer(store: store, root: dir).write(files.map { ($0.key, $0.value) })
                try FileIO.atomicWrite(dir + "/.complete", Array(commit.hex.utf8))
            }
            var pc = WorkerPool.Config(command: spec.command, directory: dir)
            pc.workers = workers
            pc.maxBatch = maxBatch
            pc.maxWait = maxWaitMs / 1000
            pc.queueLimit = queue
            pc.timeout = timeout
            pc.environment = ["TROVE_MODEL_DIR": dir, "TROVE_MODEL_NAME": name, "TROVE_MODEL_VERSION": "\(version)"]
            let pool = WorkerPool(config: pc)
            pool.start()
            var config = ServeConfiguration(name: name, version: version, spec: spec)
            config.host = String(listen[..<colon])
            config.port = port
            var logger = Logger(label: "trove.serve")
            logger.logLevel = .warning
            let host = config.host, quiet = options.quiet, (poolWorkers, poolBatch) = (pc.workers, pc.maxBatch)
            let app = buildServeApplication(config, pool: pool, logger: logger) { bound in
                if !quiet { Console.out("trove serve: \(name)@v\(version) on http://\(host):\(bound) (\(poolWorkers) worker(s), batches of up to \(poolBatch))") }
                fflush(stdout)
            }
            let stopped = runUntilStopped(app)
            pool.stop()
            if let e = stopped { throw StoreError(.io, "trove serve stopped: \(e)", hint: "is \(listen) already in use?") }
        }

        func printManifests() throws {
            guard let image, let storeURL else {
                throw StoreError(.invalidInput, "--k8s needs --image IMAGE and --store-url http(s)://HOST:PORT/PROJECT", hint: "the pods fetch the model from that daemon")
            }
            guard storeURL.hasPrefix("http://") || storeURL.hasPrefix("https://") else { throw StoreError(.invalidInput, "--store-url must be a daemon URL, not \(storeURL)") }
            try Registry.validate(name: String(model.split(separator: "@").first ?? ""))
            var d = ServingDeployment(model: model, image: image, storeURL: storeURL)
            d.tokenSecret = tokenSecret
            d.replicas = replicas
            d.namespace = namespace
            d.cpu = cpu
            d.memory = memory
            d.gpus = gpus
            d.serveArguments = ["--workers", "\(workers)", "--max-batch", "\(maxBatch)", "--max-wait-ms", "\(maxWaitMs)", "--queue", "\(queue)", "--timeout", "\(timeout)"]
            FileHandle.standardOutput.write(Data(try d.render().utf8))
        }
    }
}
