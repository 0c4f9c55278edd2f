import Foundation
import Glibc

/// A real Ceph radosgw (one mon, one memstore OSD; it checks SigV4 signatures) started by
/// `scripts/radosgw.sh`, once per test process, stopped at exit. Access key `test`, secret
/// `testsecret`.
public final class RadosGateway: @unchecked Sendable {
    public let directory: String
    public let endpoint: String

    nonisolated(unsafe) static var started: Result<RadosGateway, BatchSystemError>?
    nonisolated(unsafe) static var stopDirectory: String?

    public static func shared() throws -> RadosGateway {
        if let started { return try started.get() }
        let r: Result<RadosGateway, BatchSystemError>
        do { r = .success(try RadosGateway()) } catch { r = .failure(error as? BatchSystemError ?? BatchSystemError("\(error)")) }
        started = r
        if case .success(let g) = r {
            stopDirectory = g.directory
            atexit {
                guard let d = RadosGateway.stopDirectory else { return }
                _ = Runner.run("/bin/bash", ["-c", "exec bash \"$0\" stop \"$1\" >/dev/null 2>&1 </dev/null", projectRoot + "/scripts/radosgw.sh", d],
                               cwd: "/", environment: ProcessInfo.processInfo.environment)
            }
        }
        return try r.get()
    }

    init() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/radosgw") else {
            throw BatchSystemError("radosgw is not installed: run `bash scripts/deps.sh` (radosgw, ceph-mon, ceph-osd)")
        }
        directory = (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/trove-test-rgw"
        let port = 17480 + Int(getpid() % 500)
        let output = directory + ".start.log"
        let r = Runner.run("/bin/bash", ["-c", "exec bash \"$0\" start \"$1\" \"$2\" >\"$3\" 2>&1 </dev/null", projectRoot + "/scripts/radosgw.sh", directory, "\(port)", output],
                           cwd: "/", environment: ProcessInfo.processInfo.environment)
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        guard r.status == 0, let last = text.split(separator: "\n").last, last.hasPrefix("http://") else {
            throw BatchSystemError("scripts/radosgw.sh failed (\(r.status)): \(text.suffix(2000))")
        }
        endpoint = String(last)
    }

    /// The environment of a client with the gateway's credentials.
    public var environment: [String: String] {
        ["AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "testsecret", "AWS_DEFAULT_REGION": "us-east-1"]
    }

    /// Creates a bucket (with curl's own SigV4 signer: independent of Trove's), owned by `user`.
    public func createBucket(_ name: String, user: (String, String) = ("test", "testsecret")) throws {
        let r = Runner.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "\(user.0):\(user.1)",
                                              "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-X", "PUT", "\(endpoint)/\(name)"],
                           cwd: "/", environment: ProcessInfo.processInfo.environment)
        guard r.stdout == "200" else { throw BatchSystemError("creating bucket \(name) on \(endpoint): HTTP \(r.stdout) \(r.stderr)") }
    }

    /// Another S3 user of this gateway (its own keys, its own buckets).
    public func createUser(_ name: String, secret: String) throws {
        let r = Runner.run("/usr/bin/radosgw-admin", ["-c", directory + "/ceph.conf", "user", "create", "--uid=\(name)", "--display-name=\(name)",
                                                      "--access-key=\(name)", "--secret-key=\(secret)"],
                           cwd: "/", environment: ProcessInfo.processInfo.environment)
        guard r.status == 0 || r.stderr.contains("exists") else { throw BatchSystemError("radosgw-admin user create \(name): \(r.stderr)") }
    }

    /// `s3://BUCKET/PREFIX?endpoint=...` of this gateway.
    public func url(bucket: String, prefix: String) -> String {
        "s3://\(bucket)/\(prefix)?endpoint=" + (endpoint.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? endpoint)
    }
}

/// A real PostgreSQL server (`scripts/postgres.sh`, recipe §6) on 127.0.0.1: one shared per
/// test process (stopped at exit), or one of a test's own that it may kill and restart. Each
/// test takes a database of its own with `newDatabase()`.
public final class PostgresServer: @unchecked Sendable {
    public let directory: String
    public let port: Int
    nonisolated(unsafe) static var started: Result<PostgresServer, BatchSystemError>?
    nonisolated(unsafe) static var stopDirectories: [String] = []

    public static func shared() throws -> PostgresServer {
        if let started { return try started.get() }
        let r: Result<PostgresServer, BatchSystemError>
        do {
            r = .success(try PostgresServer(directory: (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/trove-test-pg",
                                            port: 16432 + Int(getpid() % 500)))
        } catch { r = .failure(error as? BatchSystemError ?? BatchSystemError("\(error)")) }
        started = r
        return try r.get()
    }

    /// Starts a server of its own in `directory` (removed first).
    public init(directory: String, port: Int) throws {
        guard FileManager.default.fileExists(atPath: "/usr/lib/postgresql") else {
            throw BatchSystemError("PostgreSQL is not installed: run `bash scripts/deps.sh` (postgresql)")
        }
        self.directory = directory
        self.port = port
        try script("start", port: "\(port)")
        if PostgresServer.stopDirectories.isEmpty {
            atexit {
                for d in PostgresServer.stopDirectories {
                    _ = Runner.run("/bin/bash", ["-c", "exec bash \"$0\" stop \"$1\" >/dev/null 2>&1 </dev/null", projectRoot + "/scripts/postgres.sh", d],
                                   cwd: "/", environment: ProcessInfo.processInfo.environment)
                }
            }
        }
        PostgresServer.stopDirectories.append(directory)
    }

    @discardableResult
    func script(_ command: String, port: String = "") throws -> String {
        let output = directory + ".\(command).log"
        let r = Runner.run("/bin/bash", ["-c", "exec bash \"$0\" \"$1\" \"$2\" \"$3\" >\"$4\" 2>&1 </dev/null", projectRoot + "/scripts/postgres.sh",
                                         command, directory, port, output],
                           cwd: "/", environment: ProcessInfo.processInfo.environment)
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        guard r.status == 0 else { throw BatchSystemError("scripts/postgres.sh \(command) failed (\(r.status)): \(text.suffix(2000))") }
        return text
    }

    /// SIGKILL to the server and its backends, as a crash or a node lost.
    public func kill() throws { try script("kill") }
    /// SIGSTOP (`true`) or SIGCONT to the server and its backends: a server that stops answering
    /// without closing its connections, as in a network partition.
    public func freeze(_ stopped: Bool) throws {
        let pid = try String(contentsOfFile: directory + "/data/postmaster.pid", encoding: .utf8).split(separator: "\n").first.map(String.init) ?? ""
        let sig = stopped ? "STOP" : "CONT"
        _ = Runner.run("/bin/sh", ["-c", "pkill -\(sig) -P \(pid); kill -\(sig) \(pid)"], cwd: "/", environment: ProcessInfo.processInfo.environment)
    }

    /// Starts it again on the same data and port.
    public func restart() throws { try script("restart") }
    /// A fast shutdown.
    public func stop() throws { try script("stop") }

    public func url(_ database: String) -> String { "postgres://postgres@127.0.0.1:\(port)/\(database)" }

    /// A new, empty database; its URL.
    public func newDatabase(_ label: String = "t") throws -> String {
        let name = label.lowercased().filter { $0.isLetter || $0.isNumber } + "_" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        try psql(url("trove"), "CREATE DATABASE \(name)")
        return url(name)
    }

    /// Runs SQL with the real `psql`; its output (unaligned, tuples only).
    @discardableResult
    public func psql(_ url: String, _ sql: String) throws -> String {
        let r = Runner.run("/usr/bin/psql", [url, "-qAtc", sql], cwd: "/", environment: ProcessInfo.processInfo.environment)
        guard r.status == 0 else { throw BatchSystemError("psql \(sql): \(r.stderr)") }
        return r.stdout
    }
}
