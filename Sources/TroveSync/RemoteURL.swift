import TroveCore
import TroveStore

/// Where a remote is and how to reach it (Docs/protocol.md §URLs).
public enum RemoteURL: Equatable, Sendable {
    /// A store on a path this machine can open: `/scratch/p/store`, `../other`, `file:///x`.
    case path(String)
    /// `ssh://[user@]host[:port]/path` or `[user@]host:path`.
    case ssh(user: String?, host: String, port: Int?, path: String)
    /// `http(s)://host:port/PROJECT` (the daemon).
    case http(String)
    /// `s3://BUCKET/PREFIX[?endpoint=URL&region=R]` (a bucket, no server of Trove's own).
    case s3(String)

    public static func parse(_ text: String, relativeTo base: String? = nil) throws -> RemoteURL {
        if text.hasPrefix("file://") {
            let p = String(text.dropFirst("file://".count))
            guard p.hasPrefix("/") else { throw SyncError(.invalidInput, "\(text): a file:// URL needs an absolute path (file:///scratch/store)") }
            return .path(p)
        }
        if text.hasPrefix("http://") || text.hasPrefix("https://") { return .http(text) }
        if text.hasPrefix("s3://") { _ = try S3Location.parse(text); return .s3(text) }
        if text.hasPrefix("ssh://") {
            var rest = Substring(text.dropFirst("ssh://".count))
            guard let slash = rest.firstIndex(of: "/") else {
                throw SyncError(.invalidInput, "\(text): an ssh:// URL needs a path (ssh://host/path/to/store)")
            }
            var authority = rest[..<slash]
            rest = rest[slash...]
            var user: String?
            if let at = authority.lastIndex(of: "@") {
                user = String(authority[..<at])
                authority = authority[authority.index(after: at)...]
            }
            var port: Int?
            if let colon = authority.lastIndex(of: ":") {
                guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else {
                    throw SyncError(.invalidInput, "\(text): the port is not a number in 1...65535")
                }
                port = p
                authority = authority[..<colon]
            }
            guard !authority.isEmpty else { throw SyncError(.invalidInput, "\(text): no host") }
            // ssh://host/~/x names a path in the remote home, as git does.
            let path = rest.hasPrefix("/~") ? String(rest.dropFirst()) : String(rest)
            return .ssh(user: user, host: String(authority), port: port, path: path)
        }
        if text.contains("://") { throw SyncError(.invalidInput, "\(text): unknown URL scheme (use a path, file://, ssh://, http(s):// or s3://)") }
        // scp-like host:path, when a colon comes before any slash (as git decides).
        if let colon = text.firstIndex(of: ":"), !text[..<colon].contains("/"), colon != text.startIndex {
            var host = Substring(text[..<colon])
            var user: String?
            if let at = host.lastIndex(of: "@") { user = String(host[..<at]); host = host[host.index(after: at)...] }
            let path = String(text[text.index(after: colon)...])
            guard !path.isEmpty else { throw SyncError(.invalidInput, "\(text): no path after the host") }
            return .ssh(user: user, host: String(host), port: nil, path: path)
        }
        return .path(FileIO.absolute(text, base: base))
    }
}

/// Opens the right transport for a URL.
public enum RemoteOpener {
    /// The ssh command and its options: `TROVE_SSH` (split on spaces), else `ssh`.
    public static func sshCommand(environment: [String: String]) -> [String] {
        if let s = environment["TROVE_SSH"], !s.isEmpty { return s.split(separator: " ").map(String.init) }
        return ["ssh"]
    }

    public static func open(_ text: String, environment: [String: String], base: String? = nil) throws -> Remote {
        switch try RemoteURL.parse(text, relativeTo: base) {
        case .path(let p):
            return try PathRemote(url: text, path: p)
        case let .ssh(user, host, port, path):
            // A host or user that looks like an option would be read by ssh as one.
            guard !host.hasPrefix("-"), !(user ?? "").hasPrefix("-"), !host.contains(" "), !(user ?? "").contains(" ") else {
                throw SyncError(.invalidInput, "\(text): the host or user starts with '-' or holds a space", hint: "check the URL")
            }
            var cmd = sshCommand(environment: environment)
            if let port { cmd += ["-p", "\(port)"] }
            cmd.append("--")
            cmd.append(user.map { "\($0)@\(host)" } ?? host)
            let trove = environment["TROVE_REMOTE_TROVE"] ?? "trove"
            // The remote shell parses this line: quote the path.
            // `~/x` must stay unquoted for the remote shell to expand it.
            let remotePath = path.hasPrefix("~/") ? "~/" + shellQuote(String(path.dropFirst(2))) : shellQuote(path)
            cmd.append("\(shellQuote(trove)) serve-stdio \(remotePath)")
            return try StreamRemote(url: text, command: cmd)
        case .http(let u):
            return try HTTPRemote(url: u, token: try Credentials.token(for: u, environment: environment), caFile: environment["TROVE_CA_FILE"],
                                  attempts: environment["TROVE_HTTP_ATTEMPTS"].flatMap { Int($0) } ?? 5)
        case .s3(let u):
            return try S3Remote(url: u, environment: environment)
        }
    }

    static func shellQuote(_ s: String) -> String {
        if s.allSatisfy({ $0.isLetter || $0.isNumber || "/._-+=:,@".contains($0) }) { return s }
        return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
