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
        @Flag(help: "Follow the alias (or @latest): when it moves, fetch the new version (changed chunks only), start its workers, switch traffic once they are ready and drain the old ones.")
        var follow = false
        @Option(name: .customLong("follow-interval"), help: "Seconds between checks of the remotes with --follow.") var followInterval = 10.0
        @Option(name: .customLong("public-url"), help: "The address clients use, recorded in the store and announced to its daemons (default: http://HOST:PORT of --listen, the host name for 0.0.0.0).")
        var publicURL: String?
        @Flag(name: .customLong("no-announce"), help: "Do not tell the store's daemon remotes where this version is served.")
        var noAnnounce = false
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
            let first = try prepare(store, try Registry(store: store, kind: .model).resolve(model))
            let pool = startPool(first)
            let served = ServedVersion(pool: pool, version: first.version, spec: first.spec)
            var config = ServeConfiguration(name: first.name, version: first.version, spec: first.spec)
            config.host = String(listen[..<colon])
            config.port = port
            var logger = Logger(label: "trove.serve")
            logger.logLevel = .warning
            let host = config.host, quiet = options.quiet, name = first.name, version = first.version
            let (poolWorkers, poolBatch) = (workers, maxBatch)
            let announcer = Locked<ServeAnnouncer?>(nil)
            let announce = announcement(store, name: name, version: version, host: host)
            let app = buildServeApplication(config, served: served, logger: logger) { bound in
                if !quiet { Console.out("trove serve: \(name)@v\(version) on http://\(host):\(bound) (\(poolWorkers) worker(s), batches of up to \(poolBatch))") }
                fflush(stdout)
                let a = announce(bound)
                a.start()
                announcer.set(a)
            }
            if follow { startFollowing(store, served: served, name: name) { v in announcer.get()?.update(version: v) } }
            let stopped = runUntilStopped(app)
            served.now.pool.stop()
            announcer.get()?.stop()
            if let e = stopped { throw StoreError(.io, "trove serve stopped: \(e)", hint: "is \(listen) already in use?") }
        }

        /// Where this server is, once its port is known: recorded in the store and announced to
        /// its daemon remotes (unless --no-announce).
        func announcement(_ store: Store, name: String, version: Int, host: String) -> @Sendable (Int) -> ServeAnnouncer {
            let remotes = noAnnounce ? [] : Remotes.names(store).compactMap { n in Remotes.url(store, n).map { (name: n, url: $0) } }
            let machine = ProcessInfo.processInfo.hostName
            let (publicURL, workers, quiet, root) = (publicURL, workers, options.quiet, store.root)
            return { port in
                let shown = host == "0.0.0.0" || host == "::" || host.isEmpty ? machine : host.contains(":") ? "[\(host)]" : host
                let url = publicURL ?? "http://\(shown):\(port)"
                let record = ServingRecord(name: name, version: version, url: url, host: machine, pid: getpid(), workers: workers,
                                           started: Int64(Date().timeIntervalSince1970))
                let a = ServeAnnouncer(storeRoot: root, remotes: remotes, record: record, environment: ProcessInfo.processInfo.environment)
                if !quiet { a.warn = { Console.err($0) } }
                return a
            }
        }

        struct Prepared {
            var name: String
            var version: Int
            var commit: ObjectID
            var spec: ServingSpec
            var directory: String
        }

        /// A version ready to serve: its chunks fetched (or the files that cannot be had named),
        /// its files written once into STORE/serving/NAME-vN/, its serving.json read.
        func prepare(_ store: Store, _ resolved: (name: String, version: Int, commit: ObjectID)) throws -> Prepared {
            let (name, version, commit) = resolved
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
            let dir = store.root + "/serving/\(name)-v\(version)"
            if (try? FileIO.readText(dir + "/.complete")) != commit.hex {
                FileIO.removeTree(dir)
                try FileIO.mkdirs(dir)
                _ = try Materializer(store: store, root: dir).write(files.map { ($0.key, $0.value) })
                try FileIO.atomicWrite(dir + "/.complete", Array(commit.hex.utf8))
            }
            return Prepared(name: name, version: version, commit: commit, spec: spec, directory: dir)
        }

        func startPool(_ p: Prepared) -> WorkerPool {
            var pc = WorkerPool.Config(command: p.spec.command, directory: p.directory)
            pc.workers = workers
            pc.maxBatch = maxBatch
            pc.maxWait = maxWaitMs / 1000
            pc.queueLimit = queue
            pc.timeout = timeout
            pc.environment = ["TROVE_MODEL_DIR": p.directory, "TROVE_MODEL_NAME": p.name, "TROVE_MODEL_VERSION": "\(p.version)"]
            pc.commit = p.commit
            let pool = WorkerPool(config: pc)
            pool.start()
            return pool
        }

        /// `--follow`: every interval, the name's refs are fetched from the remotes and the
        /// selector resolved again; a new version is prepared and its workers started while the
        /// old ones serve, then traffic switches and the old pool drains.
        func startFollowing(_ store: Store, served: ServedVersion, name: String, switched: @escaping (Int) -> Void) {
            let interval = max(0.2, followInterval)
            onOwnThread { [self] in
                while true {
                    Thread.sleep(forTimeInterval: interval)
                    do {
                        try RegistryRemote.fetch(store, kind: .model, name: name, remote: nil)
                        let resolved = try Registry(store: store, kind: .model).resolve(model)
                        guard resolved.commit != served.now.pool.config.commit else { continue }
                        let next = try prepare(store, resolved)
                        let pool = startPool(next)
                        var waited = 0.0
                        while !pool.ready && waited < 120 { Thread.sleep(forTimeInterval: 0.05); waited += 0.05 }
                        guard pool.ready else { pool.stop(drainFor: 0); continue }
                        let old = served.swap(to: pool, version: next.version, spec: next.spec)
                        if !options.quiet { Console.err("trove serve: now serving \(next.name)@v\(next.version); draining the previous workers") }
                        switched(next.version)
                        old.stop()
                    } catch {
                        if !options.quiet { Console.err("trove serve: following \(model): \(error)") }
                    }
                }
            }
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
