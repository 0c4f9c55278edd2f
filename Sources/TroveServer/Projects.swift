import Foundation
import TroveCore
import TroveProtocol
import TroveStore
import TroveSync

/// The projects under the daemon's root: `ROOT/projects/NAME`, each a bare store (packs, refs,
/// config; no SQLite). Their services are opened on first use and kept (the pack table is
/// the in-memory index).
///
/// Replicas (`--metadata postgres://…`, `--objects s3://…`): the list of projects, their
/// settings and refs are in PostgreSQL, their packs in S3; `ROOT/projects/NAME` is then this
/// replica's cache, which another replica never needs.
public final class ProjectRegistry: @unchecked Sendable {
    public let root: String
    public var maxUploadBytes = SyncProtocol.defaultMaxUploadBytes
    public let database: MetadataDatabase?
    /// `s3://BUCKET/PREFIX` holding every project's packs (with `database` only).
    public let objects: String?
    /// Bytes of packs each project keeps on this replica's disk when they are in S3.
    public var cacheBytes = 4 << 30
    let environment: [String: String]
    private var open: [String: SyncService] = [:]
    private let lock = Mutex()

    public init(root: String, database: MetadataDatabase? = nil, objects: String? = nil,
                environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.root = root
        self.database = database
        self.objects = objects
        self.environment = environment
    }

    public var directory: String { root + "/projects" }

    /// Names the daemon's own routes use (`/api/v1`, `/ui/`, `/hf/`, `/healthz`, `/metrics`).
    public static let reserved: Set<String> = ["api", "ui", "healthz", "metrics", "login", "hf"]

    /// Project names: 1–64 of lowercase letters, digits, '.', '_', '-', starting with a letter or digit.
    public static func validate(_ name: String) throws {
        func lowerOrDigit(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) }
        let bytes = Array(name.utf8)
        guard let first = bytes.first, lowerOrDigit(first), bytes.count <= 64,
              bytes.allSatisfy({ lowerOrDigit($0) || $0 == 0x2e || $0 == 0x5f || $0 == 0x2d }) else {
            throw ProtocolError(.invalidInput, "\(name.debugDescription) is not a valid project name",
                                hint: "use 1-64 lowercase letters, digits, '.', '_' and '-', starting with a letter or digit")
        }
        guard !reserved.contains(name) else {
            throw ProtocolError(.invalidInput, "\(name) cannot be a project name: the daemon serves its own routes there", hint: "pick another name")
        }
    }

    public func create(_ name: String, parameters: ChunkerParameters = .default) throws {
        try ProjectRegistry.validate(name)
        if let database {
            do {
                try database.query("INSERT INTO projects (name, chunker, created) VALUES ($1, $2, extract(epoch from now())::bigint)",
                                   [name, StoreConfig.newStore(parameters: parameters, extra: ["core.bare": "true"]).render()])
            } catch where MetadataDatabase.isUniqueViolation(error) {
                throw ProtocolError(.conflict, "project \(name) exists already in \(database.display)")
            }
            return
        }
        try FileIO.mkdirs(directory)
        try SharedStore.create(root: directory + "/" + name, parameters: parameters)
    }

    public func names() throws -> [String] {
        if let database { return try database.query("SELECT name FROM projects ORDER BY name").map { try $0.decode(String.self) } }
        guard FileIO.exists(directory) else { return [] }
        return try FileIO.listDirectory(directory).filter { FileIO.exists(directory + "/" + $0 + "/config") }.sorted()
    }

    /// A project's free-form setting (`project.description`).
    public func setting(_ name: String, _ key: String) throws -> String? {
        guard let database else { return try service(name)?.store.setting(key) }
        guard key == "project.description" else { return nil }
        return try database.query("SELECT description FROM projects WHERE name = $1", [name]).first.map { try $0.decode(String.self) }
    }

    public func setSetting(_ name: String, _ key: String, _ value: String) throws {
        guard let database else { try service(name)?.store.setSetting(key, value); return }
        guard key == "project.description" else { throw ProtocolError(.invalidInput, "\(key) cannot be set") }
        try database.query("UPDATE projects SET description = $2 WHERE name = $1", [name, value])
    }

    /// The service for a project (the name must be valid); nil when there is no such project.
    public func service(_ name: String) throws -> SyncService? {
        try ProjectRegistry.validate(name)
        if let s = lock.withLock({ open[name] }) { return s }
        let path = directory + "/" + name
        let store: SharedStore
        if let database {
            // The project's row is the truth; the folder is this replica's cache of it.
            guard let chunker = try database.query("SELECT chunker FROM projects WHERE name = $1", [name]).first.map({ try $0.decode(String.self) }) else {
                return nil
            }
            if !FileIO.exists(path + "/config") {
                try FileIO.mkdirs(path + "/packs")
                try FileIO.mkdirs(path + "/refs")
                try FileIO.atomicWrite(path + "/config", Array(chunker.utf8))
            }
            let archive = try objects.map { try S3Archive(objects: $0, project: name, db: database, environment: environment) }
            store = try SharedStore(root: path, refDatabase: PostgresRefs(db: database, project: name), archive: archive, cacheBytes: cacheBytes)
        } else {
            guard FileIO.exists(path + "/config") else { return nil }
            store = try SharedStore(root: path)
        }
        let s = SyncService(store: store)
        s.maxUploadBytes = maxUploadBytes
        return lock.withLock {
            if let existing = open[name] { return existing }
            open[name] = s
            return s
        }
    }
}
