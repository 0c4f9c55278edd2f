import Glibc
import PostgresNIO
import TroveCore
import TroveStore

/// What a token may do in its project; each role includes the ones before it.
public enum Role: Int, Comparable, Sendable, CaseIterable, CustomStringConvertible {
    case read = 1, write = 2, admin = 3

    public init?(name: String) {
        switch name {
        case "read": self = .read
        case "write": self = .write
        case "admin": self = .admin
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .read: "read"
        case .write: "write"
        case .admin: "admin"
        }
    }

    public static func < (a: Role, b: Role) -> Bool { a.rawValue < b.rawValue }
}

/// The daemon's tokens, in `ROOT/tokens`: one line per token with its id, the SHA-256 of the
/// token (never the token), project, role, expiry and creation time (Unix seconds; expiry 0 =
/// never). Written by `trove daemon token ...` with lock + rename; the daemon re-reads the
/// file when it changes, so a revoked token stops working at once.
///
/// With `--metadata postgres://…` the same entries are rows of the `tokens` table, read on
/// every request, so a token revoked through one replica stops working on all of them at once.
public final class TokenStore: @unchecked Sendable {
    public struct Entry: Sendable, Equatable {
        public var id: String
        public var hash: String
        public var project: String
        public var role: Role
        public var expires: Int64
        public var created: Int64
    }

    public let path: String
    private let lock = Mutex()
    private var entries: [String: Entry] = [:]
    private var loadedStamp: (Int, Int)?

    let database: MetadataDatabase?

    public init(root: String, database: MetadataDatabase? = nil) {
        path = root + "/tokens"
        self.database = database
    }

    public static let prefix = "trv_"

    public static func hash(_ token: String) -> String { SHA256.hash(Array(token.utf8)).hex }

    /// The entry for a presented token, if it exists and has not expired.
    public func verify(_ token: String, now: Int64 = Int64(time(nil))) throws -> Entry? {
        try verify(hash: TokenStore.hash(token), now: now)
    }

    /// The entry for a token's hash (what a login session keeps), if it exists and has not expired.
    public func verify(hash h: String, now: Int64 = Int64(time(nil))) throws -> Entry? {
        if let database {
            return try database.query("SELECT id, hash, project, role, expires, created FROM tokens WHERE hash = $1 AND (expires = 0 OR expires > $2)",
                                      [h, Int(now)]).first.map(TokenStore.entry)
        }
        return try lock.withLock {
            try reloadIfChanged()
            guard let e = entries[h], e.expires == 0 || e.expires > now else { return nil }
            return e
        }
    }

    public func list() throws -> [Entry] {
        if let database {
            return try database.query("SELECT id, hash, project, role, expires, created FROM tokens ORDER BY project, id").map(TokenStore.entry)
        }
        return try lock.withLock {
            try reloadIfChanged()
            return entries.values.sorted { ($0.project, $0.id) < ($1.project, $1.id) }
        }
    }

    /// Creates a token; returns it (shown once) and its entry.
    public func create(project: String, role: Role, expiresIn seconds: Int64?) throws -> (token: String, entry: Entry) {
        var rng = SystemRandomNumberGenerator()
        let token = TokenStore.prefix + (0..<32).map { _ in String(format2: UInt8.random(in: 0...255, using: &rng)) }.joined()
        let id = (0..<4).map { _ in String(format2: UInt8.random(in: 0...255, using: &rng)) }.joined()
        let now = Int64(time(nil))
        let entry = Entry(id: id, hash: TokenStore.hash(token), project: project, role: role,
                          expires: seconds.map { now + $0 } ?? 0, created: now)
        if let database {
            try database.query("INSERT INTO tokens (id, hash, project, role, expires, created) VALUES ($1, $2, $3, $4, $5, $6)",
                               [entry.id, entry.hash, entry.project, entry.role.description, Int(entry.expires), Int(entry.created)])
            return (token, entry)
        }
        try rewrite { $0.append(entry) }
        return (token, entry)
    }

    /// Removes the token with this id (or this token value); false when there is none.
    public func revoke(_ idOrToken: String) throws -> Bool {
        var found = false
        let h = TokenStore.hash(idOrToken)
        if let database {
            return !(try database.query("DELETE FROM tokens WHERE id = $1 OR hash = $2 RETURNING id", [idOrToken, h]).isEmpty)
        }
        try rewrite { list in
            let before = list.count
            list.removeAll { $0.id == idOrToken || $0.hash == h }
            found = list.count < before
        }
        return found
    }

    private func rewrite(_ change: (inout [Entry]) -> Void) throws {
        let lockPath = path + ".lock"
        let fd = open(lockPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw StoreError(.conflict, "\(path) is being changed by another command (\(lockPath) exists)", hint: "retry; remove \(lockPath) if no trove command runs")
        }
        defer { close(fd); unlink(lockPath) }
        var list = try FileIO.exists(path) ? TokenStore.parse(try FileIO.readText(path)) : []
        change(&list)
        let text = "# trove daemon tokens: id sha256(token) project role expires created (Unix seconds; expires 0 = never)\n"
            + list.map { "\($0.id) \($0.hash) \($0.project) \($0.role) \($0.expires) \($0.created)\n" }.joined()
        try FileIO.atomicWrite(path, Array(text.utf8), mode: 0o600)
    }

    private func reloadIfChanged() throws {
        var st = stat()
        guard stat(path, &st) == 0 else { entries = [:]; loadedStamp = nil; return }
        let stamp = (Int(st.st_mtim.tv_sec) * 1_000_000_000 + Int(st.st_mtim.tv_nsec), Int(st.st_ino))
        if let loadedStamp, loadedStamp == stamp { return }
        entries = Dictionary(try TokenStore.parse(try FileIO.readText(path)).map { ($0.hash, $0) }, uniquingKeysWith: { a, _ in a })
        loadedStamp = stamp
    }

    static func entry(_ row: PostgresRow) throws -> Entry {
        let (id, hash, project, role, expires, created) = try row.decode((String, String, String, String, Int, Int).self)
        guard let r = Role(name: role) else { throw StoreError(.integrity, "token \(id) has an unknown role \(role)") }
        return Entry(id: id, hash: hash, project: project, role: r, expires: Int64(expires), created: Int64(created))
    }

    static func parse(_ text: String) throws -> [Entry] {
        try text.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.isEmpty }.map { line in
            let f = line.split(separator: " ").map(String.init)
            guard f.count == 6, let role = Role(name: f[3]), let exp = Int64(f[4]), let created = Int64(f[5]) else {
                throw StoreError(.integrity, "malformed line in the tokens file: \(line)")
            }
            return Entry(id: f[0], hash: f[1], project: f[2], role: role, expires: exp, created: created)
        }
    }
}

extension String {
    init(format2 byte: UInt8) {
        let digits = Array("0123456789abcdef")
        self = String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
    }
}

/// Parses `30d`, `12h`, `45m`, `90s` or a number of seconds.
public func parseDuration(_ text: String) -> Int64? {
    guard let last = text.last else { return nil }
    let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400]
    if let u = units[last], let n = Int64(text.dropLast()), n > 0 { return n * u }
    if let n = Int64(text), n > 0 { return n }
    return nil
}
