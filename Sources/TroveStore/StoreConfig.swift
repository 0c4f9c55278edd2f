import TroveCore

/// The store's settings file (`config`): `key = value` lines, `#` comments, keys sorted on write.
///
/// Known keys and defaults are listed in `StoreConfig.known` and Docs/format.md §Config.
public struct StoreConfig: Sendable {
    public private(set) var values: [String: String]

    public struct Key: Sendable {
        public var name: String
        public var defaultValue: String?
        public var help: String
        /// Fixed at `init`; changing it would change every chunk id.
        public var immutable: Bool
    }

    public static let known: [Key] = [
        Key(name: "format.version", defaultValue: "1", help: "store format version", immutable: true),
        Key(name: "chunker.min", defaultValue: "\(ChunkerParameters.default.minSize)", help: "FastCDC minimum chunk size, bytes", immutable: true),
        Key(name: "chunker.avg", defaultValue: "\(ChunkerParameters.default.avgSize)", help: "FastCDC average chunk size, bytes (power of two)", immutable: true),
        Key(name: "chunker.max", defaultValue: "\(ChunkerParameters.default.maxSize)", help: "FastCDC maximum chunk size, bytes", immutable: true),
        Key(name: "pack.size", defaultValue: "\(64 << 20)", help: "target pack size, bytes", immutable: false),
        Key(name: "pack.compression-level", defaultValue: "3", help: "zstd level for chunks that compress (1-19)", immutable: false),
        Key(name: "core.threads", defaultValue: nil, help: "worker threads for hashing and restore (default: the number of cores)", immutable: false),
        Key(name: "gc.grace-seconds", defaultValue: "\(14 * 86400)", help: "reflog entries younger than this keep their objects alive", immutable: false),
        Key(name: "user.name", defaultValue: nil, help: "author name for commits (default: $TROVE_AUTHOR_NAME or the login name)", immutable: false),
        Key(name: "user.email", defaultValue: nil, help: "author email for commits", immutable: false),
        Key(name: "runs.live", defaultValue: "true", help: "stream running runs' status, metrics and logs to a daemon remote", immutable: false),
        Key(name: "runs.live-remote", defaultValue: nil, help: "the remote live runs stream to (default: the first http(s) remote)", immutable: false),
        Key(name: "runs.live-interval", defaultValue: "2", help: "seconds between live updates to the daemon", immutable: false),
    ]

    public init(values: [String: String] = [:]) { self.values = values }

    public static func parse(_ text: String, path: String) throws -> StoreConfig {
        var values: [String: String] = [:]
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let t = line.trimmingCharacters(in: " \t\r")
            if t.isEmpty || t.hasPrefix("#") { continue }
            guard let eq = t.firstIndex(of: "=") else {
                throw StoreError(.integrity, "\(path):\(n + 1): expected `key = value`")
            }
            let key = String(t[..<eq]).trimmingCharacters(in: " \t")
            let value = String(t[t.index(after: eq)...]).trimmingCharacters(in: " \t")
            values[key] = value
        }
        return StoreConfig(values: values)
    }

    public func render() -> String {
        "# trove store configuration; see `trove help config`\n"
            + values.keys.sorted().map { "\($0) = \(values[$0]!)\n" }.joined()
    }

    public subscript(key: String) -> String? {
        get { values[key] ?? StoreConfig.known.first { $0.name == key }?.defaultValue }
        set { values[key] = newValue }
    }

    public func int(_ key: String) throws -> Int? {
        guard let v = self[key] else { return nil }
        guard let i = Int(v) else { throw StoreError(.invalidInput, "config \(key) = \(v) is not a whole number") }
        return i
    }

    /// The config of a new store (format version and chunker), plus `extra`.
    public static func newStore(parameters: ChunkerParameters, extra: [String: String] = [:]) -> StoreConfig {
        var config = StoreConfig(values: extra)
        config["format.version"] = "1"
        config["chunker.min"] = "\(parameters.minSize)"
        config["chunker.avg"] = "\(parameters.avgSize)"
        config["chunker.max"] = "\(parameters.maxSize)"
        return config
    }

    public func chunkerParameters() throws -> ChunkerParameters {
        let p = ChunkerParameters(minSize: try int("chunker.min")!, avgSize: try int("chunker.avg")!, maxSize: try int("chunker.max")!)
        do { try p.validate() } catch let e as CoreError { throw StoreError(.invalidInput, e.message) }
        return p
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        let chars = Set(set)
        var s = Substring(self)
        while let f = s.first, chars.contains(f) { s.removeFirst() }
        while let l = s.last, chars.contains(l) { s.removeLast() }
        return String(s)
    }
}
