import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO
import TroveCore
import TroveProtocol
import TroveStore

/// The daemon's PostgreSQL (`--metadata postgres://USER[:PASSWORD]@HOST[:PORT]/DB`): projects,
/// tokens, refs and their reflog, and the list of each project's packs, shared by every replica
/// (Docs/deploy.md). Store code is synchronous and runs on the NIO thread pool, so each call
/// takes a pooled connection and waits for its answer; the connections run on an event loop
/// group of their own, never on the one serving HTTP.
public final class MetadataDatabase: @unchecked Sendable {
    /// The URL without its password, for messages.
    public let display: String
    let configuration: PostgresConnection.Configuration
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let logger = Logger(label: "trove.postgres")
    private var idle: [PostgresConnection] = []
    private let lock = Mutex()
    private let permits: DispatchSemaphore
    private let nextID = Locked(0)

    /// `maxConnections` per process; callers beyond it wait for one to come back.
    public init(url: String, maxConnections: Int = 8, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        // The URL is never repeated in a message: it may hold the password.
        guard let u = URLComponents(string: url), u.scheme == "postgres" || u.scheme == "postgresql", let host = u.host, !host.isEmpty else {
            throw ProtocolError(.invalidInput, "the --metadata URL is not a PostgreSQL URL",
                                hint: "use postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=require] (percent-encode the password, or put it in PGPASSWORD)")
        }
        let database = u.path.hasPrefix("/") && u.path.count > 1 ? String(u.path.dropFirst()) : nil
        let user = u.user ?? environment["PGUSER"] ?? "postgres"
        display = "postgres://\(user)@\(host):\(u.port ?? 5432)/\(database ?? "")"
        // sslmode=require or verify-full: TLS with the system's CAs (verify-full also checks the host name).
        let sslmode = u.queryItems?.first { $0.name == "sslmode" }?.value ?? environment["PGSSLMODE"] ?? "disable"
        var tls = PostgresConnection.Configuration.TLS.disable
        if sslmode == "require" || sslmode == "verify-ca" || sslmode == "verify-full" {
            var t = TLSConfiguration.makeClientConfiguration()
            if sslmode == "require" { t.certificateVerification = .none } else if sslmode == "verify-ca" { t.certificateVerification = .noHostnameVerification }
            tls = .require(try NIOSSLContext(configuration: t))
        } else if sslmode != "disable" && sslmode != "prefer" && sslmode != "allow" {
            throw ProtocolError(.invalidInput, "sslmode=\(sslmode) is not one of disable, require, verify-ca, verify-full")
        }
        var c = PostgresConnection.Configuration(host: host, port: u.port ?? 5432, username: user,
                                                 password: u.password ?? environment["PGPASSWORD"], database: database, tls: tls)
        c.options.connectTimeout = .seconds(5)
        configuration = c
        permits = DispatchSemaphore(value: maxConnections)
    }

    deinit {
        for c in idle { try? (c.close() as EventLoopFuture<Void>).wait() }
        try? group.syncShutdownGracefully()
    }

    /// A connection for the duration of `body`: an idle one, or a new one. A connection that
    /// failed (the server went away) is closed instead of going back to the pool.
    func withConnection<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        guard permits.wait(timeout: .now() + .seconds(Self.timeout)) == .success else {
            throw ProtocolError(.unavailable, "the metadata database \(display) did not free a connection in \(Self.timeout) s", hint: "retry shortly")
        }
        defer { permits.signal() }
        var connection = lock.withLock { idle.popLast() }
        if let c = connection, c.isClosed { connection = nil }
        let c = try connection ?? connect()
        do {
            let result = try body(c)
            lock.withLock { idle.append(c) }
            return result
        } catch where !MetadataDatabase.brokeConnection(error) {
            // An SQL error (a constraint) or one of ours (a ref that moved): the connection is fine.
            lock.withLock { idle.append(c) }
            throw error
        } catch {
            // Closed before it is released: PostgresNIO insists.
            try? (c.close() as EventLoopFuture<Void>).wait()
            throw unavailable(error)
        }
    }

    /// Whether an error left the connection unusable (the server went away, the socket broke).
    static func brokeConnection(_ error: Error) -> Bool {
        if let e = error as? PSQLError {
            guard e.code == .server else { return true }
            // Reported by the server, but about the server: connection failures (08), shutdown
            // or restart (57P), out of resources (53), a standby promoted or not yet (25006).
            let state = e.serverInfo?[.sqlState] ?? ""
            return state.hasPrefix("08") || state.hasPrefix("57P") || state.hasPrefix("53") || state == "25006"
        }
        return error is ChannelError || error is IOError
    }

    private func connect() throws -> PostgresConnection {
        let id = nextID.update { $0 += 1; return $0 }
        do {
            return try PostgresConnection.connect(on: group.next(), configuration: configuration, id: id, logger: logger).wait()
        } catch {
            throw unavailable(error)
        }
    }

    private func unavailable(_ error: Error) -> Error {
        if error is ProtocolError || error is StoreError { return error }
        return ProtocolError(.unavailable, "the metadata database \(display) is unreachable (\(String(reflecting: error).prefix(200)))",
                             hint: "retry shortly; check that PostgreSQL runs and that the daemon's --metadata URL is right")
    }

    /// Runs one statement and returns its rows.
    @discardableResult
    public func query(_ sql: String, _ binds: [any PostgresThrowingDynamicTypeEncodable & Sendable] = []) throws -> [PostgresRow] {
        try withConnection { try Self.run($0, sql, binds) }
    }

    /// Seconds a statement (or a wait for a pooled connection) may take before the server is
    /// taken for gone: a server that stops answering without closing the socket (a network
    /// partition) must not hold request threads until TCP gives up. `TROVE_METADATA_TIMEOUT`.
    static let timeout = ProcessInfo.processInfo.environment["TROVE_METADATA_TIMEOUT"].flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil } ?? 20

    static func run(_ c: PostgresConnection, _ sql: String, _ binds: [any PostgresThrowingDynamicTypeEncodable & Sendable]) throws -> [PostgresRow] {
        var b = PostgresBindings(capacity: binds.count)
        for v in binds { try b.append(v) }
        let future = c.query(PostgresQuery(unsafeSQL: sql, binds: b), logger: Logger(label: "trove.postgres"))
        // Closing the connection fails the query; the pool then drops the connection.
        let guardTask = c.eventLoop.scheduleTask(in: .seconds(Int64(timeout))) { _ = c.close() as EventLoopFuture<Void> }
        defer { guardTask.cancel() }
        return try future.wait().rows
    }

    /// A transaction on one connection: committed when `body` returns, rolled back when it throws.
    public func transaction<T>(_ body: (Transaction) throws -> T) throws -> T {
        try withConnection { try Self.inTransaction($0, body) }
    }

    /// BEGIN, `body`, COMMIT on a connection already held; ROLLBACK when `body` throws.
    static func inTransaction<T>(_ c: PostgresConnection, _ body: (Transaction) throws -> T) throws -> T {
        _ = try run(c, "BEGIN", [])
        do {
            let result = try body(Transaction(connection: c))
            _ = try run(c, "COMMIT", [])
            return result
        } catch {
            _ = try? run(c, "ROLLBACK", [])
            throw error
        }
    }

    public struct Transaction {
        let connection: PostgresConnection
        @discardableResult
        public func query(_ sql: String, _ binds: [any PostgresThrowingDynamicTypeEncodable & Sendable] = []) throws -> [PostgresRow] {
            try MetadataDatabase.run(connection, sql, binds)
        }
    }

    // MARK: - Schema

    /// The schema, one entry per version; a new version is appended, never edited.
    static let migrations: [String] = [
        """
        CREATE TABLE projects (name text PRIMARY KEY, chunker text NOT NULL, description text NOT NULL DEFAULT '', created bigint NOT NULL);
        CREATE TABLE refs (project text NOT NULL REFERENCES projects (name) ON DELETE CASCADE, name text NOT NULL, id text NOT NULL,
                           PRIMARY KEY (project, name));
        CREATE TABLE reflog (seq bigserial PRIMARY KEY, project text NOT NULL, name text NOT NULL, old text NOT NULL, new text NOT NULL,
                             time bigint NOT NULL, message text NOT NULL);
        CREATE INDEX reflog_by_ref ON reflog (project, name, seq);
        CREATE TABLE packs (seq bigserial PRIMARY KEY, project text NOT NULL, name text NOT NULL, bytes bigint NOT NULL,
                            objects integer NOT NULL, created bigint NOT NULL, UNIQUE (project, name));
        CREATE TABLE tokens (id text PRIMARY KEY, hash text NOT NULL UNIQUE, project text NOT NULL, role text NOT NULL,
                             expires bigint NOT NULL, created bigint NOT NULL);
        """,
        """
        CREATE TABLE documents (project text NOT NULL, key text NOT NULL, value bytea NOT NULL, expires bigint NOT NULL DEFAULT 0,
                                PRIMARY KEY (project, key));
        """,
        """
        CREATE TABLE live_runs (project text NOT NULL REFERENCES projects (name) ON DELETE CASCADE, id text NOT NULL, state text NOT NULL,
                                lines integer NOT NULL DEFAULT 0, cancel text, PRIMARY KEY (project, id));
        CREATE TABLE live_lines (project text NOT NULL, id text NOT NULL, n integer NOT NULL, line text NOT NULL, PRIMARY KEY (project, id, n),
                                 FOREIGN KEY (project, id) REFERENCES live_runs (project, id) ON DELETE CASCADE);
        CREATE TABLE live_logs (project text NOT NULL, id text NOT NULL, stream text NOT NULL, start bigint NOT NULL, bytes bytea NOT NULL,
                                PRIMARY KEY (project, id, stream, start), FOREIGN KEY (project, id) REFERENCES live_runs (project, id) ON DELETE CASCADE);
        """,
        """
        CREATE TABLE live_artifacts (project text NOT NULL, id text NOT NULL, path text NOT NULL, version bigint NOT NULL, start bigint NOT NULL,
                                     bytes bytea NOT NULL, PRIMARY KEY (project, id, path, start),
                                     FOREIGN KEY (project, id) REFERENCES live_runs (project, id) ON DELETE CASCADE);
        """,
    ]

    /// Brings the schema up to date. Replicas starting together serialise on an advisory lock;
    /// each version is applied in its own transaction and recorded in `schema_migrations`.
    /// Returns the versions applied now (empty when the schema was current).
    @discardableResult
    public func migrate() throws -> [Int] {
        try withConnection { c in
            _ = try Self.run(c, "SELECT pg_advisory_lock(\(Self.migrationLock))", [])
            defer { _ = try? Self.run(c, "SELECT pg_advisory_unlock(\(Self.migrationLock))", []) }
            _ = try Self.run(c, "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied bigint NOT NULL)", [])
            let current = try Self.run(c, "SELECT coalesce(max(version), 0) FROM schema_migrations", []).first.map { try $0.decode(Int.self) } ?? 0
            guard current <= Self.migrations.count else {
                throw ProtocolError(.invalidInput, "the metadata database \(display) has schema version \(current); this trove knows up to \(Self.migrations.count)",
                                    hint: "upgrade trove on this replica")
            }
            var applied: [Int] = []
            for version in (current + 1)..<(Self.migrations.count + 1) {
                try Self.inTransaction(c) { tx in
                    for statement in Self.migrations[version - 1].split(separator: ";") where !statement.allSatisfy(\.isWhitespace) {
                        try tx.query(String(statement))
                    }
                    try tx.query("INSERT INTO schema_migrations (version, applied) VALUES ($1, extract(epoch from now())::bigint)", [version])
                }
                applied.append(version)
            }
            return applied
        }
    }

    /// The key of the advisory lock migrations hold ("trove" in ASCII).
    static let migrationLock = 0x74726f7665

    /// A unique-constraint violation (SQLSTATE 23505): someone else inserted the row first.
    static func isUniqueViolation(_ error: Error) -> Bool {
        (error as? PSQLError)?.serverInfo?[.sqlState] == "23505"
    }
}

/// A project's refs in PostgreSQL: each update one transaction that locks the rows it moves.
final class PostgresRefs: RefDatabase {
    let db: MetadataDatabase
    let project: String
    let head = "heads/main"

    init(db: MetadataDatabase, project: String) {
        self.db = db
        self.project = project
    }

    func read(_ ref: String) throws -> ObjectID? {
        try db.query("SELECT id FROM refs WHERE project = $1 AND name = $2", [project, ref]).first.map { try id(try $0.decode(String.self), ref) }
    }

    func list(prefix: String) throws -> [(name: String, id: ObjectID)] {
        try db.query("SELECT name, id FROM refs WHERE project = $1 AND name LIKE $2 ORDER BY name COLLATE \"C\"", [project, Self.likePrefix(prefix)]).map { row in
            let (name, hex) = try row.decode((String, String).self)
            return (name, try id(hex, name))
        }
    }

    /// A LIKE pattern matching names that start with `prefix` (its wildcards escaped).
    static func likePrefix(_ prefix: String) -> String {
        prefix.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "_", with: "\\_") + "%"
    }

    private func id(_ hex: String, _ ref: String) throws -> ObjectID {
        guard let id = ObjectID(hex: hex) else { throw StoreError(.integrity, "ref \(ref) of project \(project) is malformed in \(db.display)") }
        return id
    }

    func updateAll(_ updates: [Refs.Update], message: String, check: (String, ObjectID?) throws -> Void) throws {
        let sorted = updates.sorted { $0.ref < $1.ref }
        do {
            try db.transaction { (tx: MetadataDatabase.Transaction) -> Void in
                var olds: [ObjectID?] = []
                for u in sorted {
                    let rows = try tx.query("SELECT id FROM refs WHERE project = $1 AND name = $2 FOR UPDATE", [project, u.ref])
                    let current: ObjectID? = try rows.first.map { row in try self.id(try row.decode(String.self), u.ref) }
                    if let new = u.new, current == new, u.expected != new {
                        // A repeated update whose first attempt committed meanwhile: done.
                        olds.append(current)
                        continue
                    }
                    if !u.force && current != u.expected {
                        throw StoreError(.conflict, "ref \(u.ref) moved (now \(current?.short() ?? "absent"), expected \(u.expected?.short() ?? "absent")), retry",
                                         hint: "another command changed it at the same time; run the command again")
                    }
                    try check(u.ref, current)
                    olds.append(current)
                }
                let now = Int(time(nil))
                for (k, u) in sorted.enumerated() {
                    let old = olds[k]
                    if let new = u.new, old == new { continue }
                    if let new = u.new {
                        if old == nil {
                            try tx.query("INSERT INTO refs (project, name, id) VALUES ($1, $2, $3)", [project, u.ref, new.hex])
                        } else {
                            try tx.query("UPDATE refs SET id = $3 WHERE project = $1 AND name = $2", [project, u.ref, new.hex])
                        }
                    } else if old != nil {
                        try tx.query("DELETE FROM refs WHERE project = $1 AND name = $2", [project, u.ref])
                    } else {
                        continue
                    }
                    // An absent side is the empty string (never a valid id).
                    try tx.query("INSERT INTO reflog (project, name, old, new, time, message) VALUES ($1, $2, $3, $4, $5, $6)",
                                 [project, u.ref, old?.hex ?? "", u.new?.hex ?? "", now, message])
                }
            }
        } catch where MetadataDatabase.isUniqueViolation(error) {
            // Two creators of one ref: the row did not exist to lock, and the second insert lost.
            throw StoreError(.conflict, "a ref of this update was created by another writer at the same time, retry",
                             hint: "fetch, then push again")
        }
    }

    func reflog(_ ref: String) throws -> [Refs.ReflogEntry] {
        try db.query("SELECT old, new, time, message FROM reflog WHERE project = $1 AND name = $2 ORDER BY seq", [project, ref]).map(entry)
    }

    func allReflogs() throws -> [[Refs.ReflogEntry]] {
        var byRef: [String: [Refs.ReflogEntry]] = [:]
        for row in try db.query("SELECT name, old, new, time, message FROM reflog WHERE project = $1 ORDER BY seq", [project]) {
            let (name, old, new, time, message) = try row.decode((String, String, String, Int, String).self)
            byRef[name, default: []].append(.init(old: ObjectID(hex: old), new: ObjectID(hex: new), time: Int64(time), message: message))
        }
        return byRef.keys.sorted().map { byRef[$0]! }
    }

    private func entry(_ row: PostgresRow) throws -> Refs.ReflogEntry {
        let (old, new, time, message) = try row.decode((String, String, Int, String).self)
        return .init(old: ObjectID(hex: old), new: ObjectID(hex: new), time: Int64(time), message: message)
    }
}
