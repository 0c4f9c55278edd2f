import TroveCore
import TroveProtocol
import TroveStore
import TroveSync

/// The projects under the daemon's root: `ROOT/projects/NAME`, each a bare store (packs, refs,
/// config; no SQLite). Their services are opened on first use and kept (the pack table is
/// the in-memory index).
public final class ProjectRegistry: @unchecked Sendable {
    public let root: String
    public var maxUploadBytes = SyncProtocol.defaultMaxUploadBytes
    private var open: [String: SyncService] = [:]
    private let lock = Mutex()

    public init(root: String) { self.root = root }

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
        try FileIO.mkdirs(directory)
        try SharedStore.create(root: directory + "/" + name, parameters: parameters)
    }

    public func names() throws -> [String] {
        guard FileIO.exists(directory) else { return [] }
        return try FileIO.listDirectory(directory).filter { FileIO.exists(directory + "/" + $0 + "/config") }.sorted()
    }

    /// The service for a project (the name must be valid); nil when there is no such project.
    public func service(_ name: String) throws -> SyncService? {
        try ProjectRegistry.validate(name)
        if let s = lock.withLock({ open[name] }) { return s }
        let path = directory + "/" + name
        guard FileIO.exists(path + "/config") else { return nil }
        let s = SyncService(store: try SharedStore(root: path))
        s.maxUploadBytes = maxUploadBytes
        return lock.withLock {
            if let existing = open[name] { return existing }
            open[name] = s
            return s
        }
    }
}
