import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOSSL
import Logging
import ServiceLifecycle
import NIOCore
import NIOPosix
import TroveCore
import TroveProtocol
import TroveStore
import TroveSync

/// How `trove daemon` runs (flags of `trove daemon serve`).
public struct DaemonConfiguration: Sendable {
    public var root: String
    public var host = "127.0.0.1"
    /// 0 picks a free port (reported on stdout).
    public var port = 8470
    public var tlsCertificate: String?
    public var tlsKey: String?
    public var maxUploadBytes = SyncProtocol.defaultMaxUploadBytes
    /// Uploads processed at once; more get 503 (the client retries with backoff).
    public var maxConcurrentUploads = 8
    /// Bytes per second per response stream (for tests of multi-peer fetch); nil = unlimited.
    public var limitRate: Int?
    /// Peers kept in sync unattended.
    public var mirrors: [MirrorSpec] = []
    /// Where projects, tokens and refs are (`postgres://…`; nil: files under `root`) and where
    /// packs are (`s3://…`; nil: under `root`): see `DaemonBackends`.
    public var backends: DaemonBackends

    public init(root: String) {
        self.root = root
        backends = DaemonBackends(root: root)
    }
}

/// What the daemon's replicas share (Docs/deploy.md): with `metadata` a PostgreSQL URL, the
/// projects, tokens, settings and refs are rows there; with `objects` an S3 URL too, the packs
/// are in the bucket and `root` holds only this replica's cache.
public struct DaemonBackends: Sendable {
    public var root: String
    public var objects: String?
    public var metadata: String?
    /// Bytes of packs per project kept on this replica's disk when they are in S3.
    public var cacheBytes = 4 << 30
    public var environment = ProcessInfo.processInfo.environment

    public init(root: String, objects: String? = nil, metadata: String? = nil) {
        self.root = root
        self.objects = objects
        self.metadata = metadata
    }

    /// What `open()` makes: the projects, the tokens, and the daemon's small state (durable:
    /// MLflow's experiments; ephemeral: UI sessions, served endpoints).
    public struct Opened {
        public let projects: ProjectRegistry
        public let tokens: TokenStore
        let documents: Documents
        let ephemeral: Documents
    }

    /// Connects to PostgreSQL (bringing its schema up to date first) when there is one.
    public func open() throws -> Opened {
        try validate()
        var database: MetadataDatabase?
        if let metadata {
            let db = try MetadataDatabase(url: metadata, environment: environment)
            try db.migrate()
            database = db
        }
        let projects = ProjectRegistry(root: root, database: database, objects: objects, environment: environment)
        projects.cacheBytes = cacheBytes
        return Opened(projects: projects, tokens: TokenStore(root: root, database: database),
                      documents: Documents(database.map { .postgres($0) } ?? .files(root)),
                      ephemeral: Documents(database.map { .postgres($0) } ?? .memory))
    }

    /// The settings make sense together (checked before anything is contacted).
    public func validate() throws {
        if let objects {
            guard objects.hasPrefix("s3://") else {
                throw ProtocolError(.invalidInput, "--objects takes s3://BUCKET/PREFIX, not \(objects)", hint: "leave it out to keep packs under --root")
            }
            _ = try S3Location.parse(objects)
            guard metadata != nil else {
                throw ProtocolError(.invalidInput, "--objects \(objects) needs --metadata postgres://…",
                                    hint: "the list of packs and the refs live in PostgreSQL, so that replicas agree on them")
            }
        }
    }
}

/// Everything the routes share.
struct DaemonState: Sendable {
    let config: DaemonConfiguration
    let projects: ProjectRegistry
    let tokens: TokenStore
    /// MLflow's experiment lists (files under the root, or PostgreSQL).
    let documents: Documents
    let sessions: SessionStore
    let metrics: DaemonMetrics
    let uploads: Limiter
    let views: ProjectViews
}

/// Builds the daemon: router, TLS when configured, and a callback with the bound port.
public func buildApplication(_ config: DaemonConfiguration, logger: Logger,
                             onRunning: @escaping @Sendable (Int) -> Void) throws -> some ApplicationProtocol {
    try config.backends.validate()
    if let objects = config.backends.objects { try S3Archive.probe(objects: objects, environment: config.backends.environment) }
    let opened = try config.backends.open()
    let projects = opened.projects
    projects.maxUploadBytes = config.maxUploadBytes
    let state = DaemonState(config: config, projects: projects, tokens: opened.tokens, documents: opened.documents,
                            sessions: SessionStore(opened.ephemeral),
                            metrics: DaemonMetrics(), uploads: Limiter(limit: config.maxConcurrentUploads),
                            views: ProjectViews(projects: projects, ephemeral: opened.ephemeral))
    // The runs of every project are read once at start, in the background, so that the first
    // person to open a runs page does not wait for 10,000 commits to be read.
    let views = state.views
    onOwnThread {
        for name in (try? projects.names()) ?? [] { _ = try? views.view(name)?.rows() }
    }
    let router = buildRouter(state)
    var server: HTTPServerBuilder = .http1()
    if let cert = config.tlsCertificate, let key = config.tlsKey {
        let chain = try NIOSSLCertificate.fromPEMFile(cert).map { NIOSSLCertificateSource.certificate($0) }
        let tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
        server = try .tls(.http1(), tlsConfiguration: tls)
    }
    let mirrors: [any Service] = config.mirrors.map { MirrorService(spec: $0, projects: projects, logger: logger) }
    return Application(
        router: router, server: server,
        configuration: .init(address: .hostname(config.host, port: config.port), serverName: "trove/\(TroveVersion.string)"),
        services: mirrors,
        onServerRunning: { channel in onRunning(channel.localAddress?.port ?? 0) },
        logger: logger)
}

func buildRouter(_ state: DaemonState) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    // Readiness: a replica whose PostgreSQL is unreachable cannot answer, so it says so (503)
    // and a load balancer or Kubernetes Service sends its clients to another replica.
    router.get("healthz") { _, _ -> Response in
        var status = HTTPResponse.Status.ok, text = "ok\n"
        if let db = state.projects.database {
            do { try await blocking { try db.query("SELECT 1") } } catch {
                status = .serviceUnavailable
                text = "unavailable: \(ProtocolError.from(error).message)\n"
            }
        }
        state.metrics.request(route: "healthz", status: Int(status.code), seconds: 0)
        return Response(status: status, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
    router.get("metrics") { _, _ -> Response in
        let text = state.metrics.render(projects: (try? state.projects.names().count) ?? 0)
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
    APIController(state: state).addRoutes(to: router)
    RegistryAPI(api: APIController(state: state)).addRoutes(to: router)
    WebController(state: state).addRoutes(to: router)
    MLflowController(state: state).addRoutes(to: router)
    HFController(state: state).addRoutes(to: router)
    SyncController(state: state).addRoutes(to: router)
    return router
}

/// Counts work in progress and refuses what is over the limit.
final class Limiter: @unchecked Sendable {
    let limit: Int
    private var active = 0
    private let lock = Mutex()
    init(limit: Int) { self.limit = limit }
    func enter() -> Bool { lock.withLock { guard active < limit else { return false }; active += 1; return true } }
    func leave() { lock.withLock { active -= 1 } }
}

/// Runs an application (the daemon, `trove serve`) until SIGTERM or SIGINT has let it finish
/// the requests in flight; returns the error that stopped it, if any. For synchronous callers.
public func runUntilStopped(_ app: some ApplicationProtocol & Sendable) -> Error? {
    let done = DispatchSemaphore(value: 0)
    let failure = FailureBox()
    Task {
        do { try await app.runService() } catch { failure.error = error }
        done.signal()
    }
    done.wait()
    return failure.error
}

final class FailureBox: @unchecked Sendable { var error: Error? }
