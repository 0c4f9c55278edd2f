import Glibc
import TroveCore
import TroveProtocol
import TroveStore

/// A peer seen from the client: the protocol's requests as calls. Path, stdio/SSH (and, with
/// the daemon, HTTP) remotes implement it; the sync engine uses nothing else.
public protocol Remote: AnyObject {
    /// Where it is, as the user wrote it.
    var url: String { get }
    func hello() throws -> (ServerInfo, [RefEntry])
    func listRefs() throws -> [RefEntry]
    /// One flag per id: true when the remote lacks it.
    func missing(_ ids: [ObjectID]) throws -> [Bool]
    /// Sends one upload (all or nothing on the remote).
    func upload(_ objects: [PackedObject]) throws -> (objects: Int, stored: Int, storedBytes: UInt64)
    /// Receives the objects of `ids` the remote has, unverified (the caller verifies).
    func download(_ ids: [ObjectID], receive: (PackedObject) throws -> Void) throws
    func metadata(wants: [ObjectID], haves: [ObjectID], receive: (PackedObject) throws -> Void) throws
    func updateRefs(_ updates: [RefUpdate]) throws -> [RefUpdateResult]
    func close()
    /// Uploads that may run at once from several threads (1: calls must not overlap).
    var maxConcurrentUploads: Int { get }
}

/// Errors of the sync layer, with the remote they concern.
public struct SyncError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case invalidInput = "invalid-input"
        case notFound = "not-found"
        case integrity = "integrity"
        /// A ref moved, a non-fast-forward, a lock held by another push.
        case conflict = "conflict"
        case io = "io"
        /// The remote could not be reached or the connection broke.
        case transport = "transport"
        case unauthorized = "unauthorized"
        case forbidden = "forbidden"
    }
    public var code: Code
    public var message: String
    public var hint: String?

    public init(_ code: Code, _ message: String, hint: String? = nil) {
        self.code = code
        self.message = message
        self.hint = hint
    }

    public var description: String { message }

    /// Turns a peer's error into one for the user, naming the remote.
    public static func from(_ e: ProtocolError, remote: String) -> SyncError {
        let code: Code
        switch e.code {
        case .invalidInput, .tooLarge, .unsupportedVersion: code = .invalidInput
        case .notFound: code = .notFound
        case .integrity: code = .integrity
        case .conflict: code = .conflict
        case .io, .general: code = .io
        case .unauthorized: code = .unauthorized
        case .forbidden: code = .forbidden
        case .unavailable: code = .transport
        }
        return SyncError(code, "\(remote): \(e.message)", hint: e.hint)
    }
}

/// A store on a path this machine can open (a shared file system, a local folder, `file://`):
/// the serving side runs in this process on the files directly. No daemon, no SQLite there.
public final class PathRemote: Remote {
    public let url: String
    public let service: SyncService

    public init(url: String, path: String) throws {
        self.url = url
        service = SyncService(store: try SharedStore(root: PathRemote.storeRoot(path)))
    }

    /// A store this process serves already (a daemon's project, whatever its backends).
    public init(url: String, service: SyncService) {
        self.url = url
        self.service = service
    }

    /// A path may name the store itself or a working tree that holds `.trove` / `.git/trove`.
    public static func storeRoot(_ path: String) -> String {
        for candidate in [path, path + "/.trove", path + "/.git/trove"] where FileIO.exists(candidate + "/config") { return candidate }
        return path
    }

    public func hello() throws -> (ServerInfo, [RefEntry]) { try call { (try service.hello(), try service.refs()) } }
    public func listRefs() throws -> [RefEntry] { try call { try service.refs() } }
    public func missing(_ ids: [ObjectID]) throws -> [Bool] { try call { try service.missing(ids) } }

    public func upload(_ objects: [PackedObject]) throws -> (objects: Int, stored: Int, storedBytes: UInt64) {
        try call {
            let upload = try service.beginUpload()
            try upload.addAll(objects)
            let r = try upload.finish()
            return (r.objects, r.stored, r.storedBytes)
        }
    }

    public func download(_ ids: [ObjectID], receive: (PackedObject) throws -> Void) throws {
        try call { try service.download(ids, emit: receive) }
    }

    public func metadata(wants: [ObjectID], haves: [ObjectID], receive: (PackedObject) throws -> Void) throws {
        try call { try service.metadata(wants: wants, haves: haves, emit: receive) }
    }

    public func updateRefs(_ updates: [RefUpdate]) throws -> [RefUpdateResult] { try call { try service.updateRefs(updates) } }
    public func close() {}
    public var maxConcurrentUploads: Int { 2 }

    private func call<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as SyncError { throw e } catch { throw SyncError.from(ProtocolError.from(error), remote: url) }
    }
}
