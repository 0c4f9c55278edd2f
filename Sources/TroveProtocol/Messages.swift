import TroveCore

/// The sync protocol's messages (Docs/protocol.md). Pure values and their one encoding; the
/// transports (stdio/SSH frames, HTTP bodies) carry these bytes unchanged.
public enum SyncProtocol {
    public static let version: UInt32 = 1
    /// The largest frame (message) a peer accepts; pack streams are not framed.
    public static let maxFrameBytes = 16 << 20
    /// Most ids in one `missing`, `download` or `metadata` request.
    public static let maxBatchIDs = 65_536
    /// Most refs in one update or listing.
    public static let maxRefs = 100_000
    /// Largest upload (stored bytes in one pack stream) a server accepts by default.
    public static let defaultMaxUploadBytes = 256 << 20
}

/// The stream transport's frame (also an HTTP body): a u32 little-endian length, then that
/// many bytes of one message.
public enum Frame {
    public static let headerSize = 4

    public static func encode(_ payload: [UInt8]) -> [UInt8] {
        var w = ByteWriter(capacity: payload.count + headerSize)
        w.u32(UInt32(payload.count))
        w.raw(payload)
        return w.bytes
    }

    /// The payload length a 4-byte header announces.
    public static func length<C: Collection>(_ header: C) -> Int where C.Element == UInt8 {
        header.prefix(headerSize).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
    }
}

extension Request {
    public func framed() -> [UInt8] { Frame.encode(encode()) }
}

extension Response {
    public func framed() -> [UInt8] { Frame.encode(encode()) }
}

/// A ref and the commit it names, as listed by a peer.
public struct RefEntry: Hashable, Sendable {
    public var name: String
    public var id: ObjectID
    public init(name: String, id: ObjectID) { self.name = name; self.id = id }
}

/// What a server says about itself in answer to `hello`.
public struct ServerInfo: Sendable, Equatable {
    public var version: UInt32
    public var agent: String
    public var chunker: ChunkerParameters
    public var maxUploadBytes: Int
    public var maxBatchIDs: Int
    public var capabilities: [String]
    /// The ref HEAD names on the server (`heads/main`), if any.
    public var head: String?

    public init(version: UInt32 = SyncProtocol.version, agent: String, chunker: ChunkerParameters, maxUploadBytes: Int = SyncProtocol.defaultMaxUploadBytes,
                maxBatchIDs: Int = SyncProtocol.maxBatchIDs, capabilities: [String] = [], head: String?) {
        self.version = version
        self.agent = agent
        self.chunker = chunker
        self.maxUploadBytes = maxUploadBytes
        self.maxBatchIDs = maxBatchIDs
        self.capabilities = capabilities
        self.head = head
    }
}

/// One requested ref move: compare-and-swap from `old` (nil: must not exist) to `new` (nil: delete).
public struct RefUpdate: Hashable, Sendable {
    public var name: String
    public var old: ObjectID?
    public var new: ObjectID?
    /// Allows a move that is not a fast-forward (`old` is still checked).
    public var force: Bool
    public init(name: String, old: ObjectID?, new: ObjectID?, force: Bool = false) {
        self.name = name; self.old = old; self.new = new; self.force = force
    }
}

/// The outcome for one ref of an update request. Updates are atomic: when one is refused,
/// none is applied, and the others report `.notApplied`.
public struct RefUpdateResult: Hashable, Sendable {
    public enum Status: UInt8, Sendable {
        case ok = 0
        /// The new value does not contain the old one and `force` was not given.
        case nonFastForward = 1
        /// The ref is not at `old` any more (someone else moved it).
        case stale = 2
        /// The new value reaches objects the server does not have.
        case missingObjects = 3
        case invalidName = 4
        /// Another update holds the ref's lock.
        case locked = 5
        /// Refused because another ref of the same request was.
        case notApplied = 6
    }
    public var name: String
    public var status: Status
    public var message: String
    public init(name: String, status: Status, message: String = "") { self.name = name; self.status = status; self.message = message }
}

/// Error codes carried by `error` responses (and as HTTP statuses by the daemon).
public enum ProtocolErrorCode: UInt16, Sendable {
    case general = 1, invalidInput = 2, notFound = 3, integrity = 4, conflict = 5, io = 6
    case unauthorized = 7, forbidden = 8, tooLarge = 9, unsupportedVersion = 10
    /// A service the server needs (its metadata database, its object store) is down: retry.
    case unavailable = 11
}

/// An error a peer reported, or a malformed exchange.
public struct ProtocolError: Error, CustomStringConvertible, Sendable {
    public var code: ProtocolErrorCode
    public var message: String
    public var hint: String?
    public init(_ code: ProtocolErrorCode, _ message: String, hint: String? = nil) { self.code = code; self.message = message; self.hint = hint }
    public var description: String { message }
}

public enum Request: Sendable, Equatable {
    case hello(version: UInt32, agent: String)
    case listRefs
    /// Which of these ids does the server lack?
    case missing([ObjectID])
    /// A pack stream follows the frame.
    case upload
    /// The server answers with a pack stream of those of these objects it has.
    case download([ObjectID])
    /// Commits, trees, manifests and segments reachable from `wants` and not from `haves`.
    case metadata(wants: [ObjectID], haves: [ObjectID])
    case updateRefs([RefUpdate])
    case bye

    var kind: UInt8 {
        switch self {
        case .hello: 0x01
        case .listRefs: 0x02
        case .missing: 0x03
        case .upload: 0x04
        case .download: 0x05
        case .metadata: 0x06
        case .updateRefs: 0x07
        case .bye: 0x08
        }
    }
}

public enum Response: Sendable, Equatable {
    case hello(ServerInfo, refs: [RefEntry])
    case refs([RefEntry])
    /// One flag per requested id, true = the server lacks it.
    case missing([Bool])
    case uploaded(objects: Int, stored: Int, storedBytes: UInt64)
    /// A pack stream follows the frame.
    case stream
    case refsUpdated([RefUpdateResult])
    case error(ProtocolErrorCode, message: String, hint: String?)

    var kind: UInt8 {
        switch self {
        case .hello: 0x81
        case .refs: 0x82
        case .missing: 0x83
        case .uploaded: 0x84
        case .stream: 0x85
        case .refsUpdated: 0x87
        case .error: 0xFF
        }
    }
}

// MARK: encoding

extension ByteWriter {
    mutating func ids(_ ids: [ObjectID]) {
        u32(UInt32(ids.count))
        for i in ids { id(i) }
    }

    mutating func refs(_ refs: [RefEntry]) {
        u32(UInt32(refs.count))
        for r in refs { string(r.name); id(r.id) }
    }

    mutating func optionalString(_ s: String?) {
        u8(s == nil ? 0 : 1)
        if let s { string(s) }
    }
}

extension ByteReader {
    mutating func ids(limit: Int) throws -> [ObjectID] {
        let n = Int(try u32())
        guard n <= limit else { throw CoreError(.malformedObject, "\(n) ids in one request; the limit is \(limit)") }
        return try (0..<n).map { _ in try id() }
    }

    mutating func refs() throws -> [RefEntry] {
        let n = Int(try u32())
        guard n <= SyncProtocol.maxRefs else { throw CoreError(.malformedObject, "\(n) refs; the limit is \(SyncProtocol.maxRefs)") }
        return try (0..<n).map { _ in RefEntry(name: try string(limit: 4096), id: try id()) }
    }

    mutating func optionalString() throws -> String? { try u8() == 0 ? nil : try string(limit: 1 << 16) }
}

extension Request {
    /// The message's bytes: kind, then the payload.
    public func encode() -> [UInt8] {
        var w = ByteWriter()
        w.u8(kind)
        switch self {
        case let .hello(version, agent): w.u32(version); w.string(agent)
        case .listRefs, .upload, .bye: break
        case let .missing(ids), let .download(ids): w.ids(ids)
        case let .metadata(wants, haves): w.ids(wants); w.ids(haves)
        case let .updateRefs(updates):
            w.u32(UInt32(updates.count))
            for u in updates {
                w.string(u.name)
                w.u8((u.old != nil ? 1 : 0) | (u.new != nil ? 2 : 0) | (u.force ? 4 : 0))
                if let o = u.old { w.id(o) }
                if let n = u.new { w.id(n) }
            }
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws -> Request {
        var r = ByteReader(bytes, what: "request")
        let kind = try r.u8()
        let req: Request
        switch kind {
        case 0x01: req = .hello(version: try r.u32(), agent: try r.string(limit: 1024))
        case 0x02: req = .listRefs
        case 0x03: req = .missing(try r.ids(limit: SyncProtocol.maxBatchIDs))
        case 0x04: req = .upload
        case 0x05: req = .download(try r.ids(limit: SyncProtocol.maxBatchIDs))
        case 0x06: req = .metadata(wants: try r.ids(limit: SyncProtocol.maxBatchIDs), haves: try r.ids(limit: SyncProtocol.maxBatchIDs))
        case 0x07:
            let n = Int(try r.u32())
            guard n <= SyncProtocol.maxRefs else { throw CoreError(.malformedObject, "\(n) ref updates; the limit is \(SyncProtocol.maxRefs)") }
            var updates: [RefUpdate] = []
            for _ in 0..<n {
                let name = try r.string(limit: 4096)
                let flags = try r.u8()
                guard flags & ~7 == 0 else { throw CoreError(.malformedObject, "ref update flags \(flags)") }
                let old = flags & 1 != 0 ? try r.id() : nil
                let new = flags & 2 != 0 ? try r.id() : nil
                updates.append(RefUpdate(name: name, old: old, new: new, force: flags & 4 != 0))
            }
            req = .updateRefs(updates)
        case 0x08: req = .bye
        default: throw CoreError(.malformedObject, "unknown request kind \(kind)")
        }
        try r.expectEnd()
        return req
    }
}

extension Response {
    public func encode() -> [UInt8] {
        var w = ByteWriter()
        w.u8(kind)
        switch self {
        case let .hello(info, refs):
            w.u32(info.version); w.string(info.agent)
            w.u32(UInt32(info.chunker.minSize)); w.u32(UInt32(info.chunker.avgSize)); w.u32(UInt32(info.chunker.maxSize))
            w.u64(UInt64(info.maxUploadBytes)); w.u32(UInt32(info.maxBatchIDs))
            w.u32(UInt32(info.capabilities.count))
            for c in info.capabilities { w.string(c) }
            w.optionalString(info.head)
            w.refs(refs)
        case let .refs(refs): w.refs(refs)
        case let .missing(flags):
            w.u32(UInt32(flags.count))
            var byte: UInt8 = 0
            for (i, f) in flags.enumerated() {
                if f { byte |= 1 << UInt8(i % 8) }
                if i % 8 == 7 { w.u8(byte); byte = 0 }
            }
            if flags.count % 8 != 0 { w.u8(byte) }
        case let .uploaded(objects, stored, bytes): w.u32(UInt32(objects)); w.u32(UInt32(stored)); w.u64(bytes)
        case .stream: break
        case let .refsUpdated(results):
            w.u32(UInt32(results.count))
            for x in results { w.string(x.name); w.u8(x.status.rawValue); w.string(x.message) }
        case let .error(code, message, hint): w.u16(code.rawValue); w.string(message); w.optionalString(hint)
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws -> Response {
        var r = ByteReader(bytes, what: "response")
        let kind = try r.u8()
        let resp: Response
        switch kind {
        case 0x81:
            let version = try r.u32(), agent = try r.string(limit: 1024)
            let p = ChunkerParameters(minSize: Int(try r.u32()), avgSize: Int(try r.u32()), maxSize: Int(try r.u32()))
            let maxUpload = Int(clamping: try r.u64()), maxBatch = Int(try r.u32())
            let nc = Int(try r.u32())
            guard nc <= 1024 else { throw CoreError(.malformedObject, "\(nc) capabilities") }
            let caps = try (0..<nc).map { _ in try r.string(limit: 256) }
            let head = try r.optionalString()
            resp = .hello(ServerInfo(version: version, agent: agent, chunker: p, maxUploadBytes: maxUpload, maxBatchIDs: maxBatch,
                                     capabilities: caps, head: head), refs: try r.refs())
        case 0x82: resp = .refs(try r.refs())
        case 0x83:
            let n = Int(try r.u32())
            guard n <= SyncProtocol.maxBatchIDs else { throw CoreError(.malformedObject, "\(n) flags; the limit is \(SyncProtocol.maxBatchIDs)") }
            let packed = Array(try r.raw((n + 7) / 8))
            resp = .missing((0..<n).map { packed[$0 / 8] & (1 << UInt8($0 % 8)) != 0 })
        case 0x84: resp = .uploaded(objects: Int(try r.u32()), stored: Int(try r.u32()), storedBytes: try r.u64())
        case 0x85: resp = .stream
        case 0x87:
            let n = Int(try r.u32())
            guard n <= SyncProtocol.maxRefs else { throw CoreError(.malformedObject, "\(n) ref results") }
            resp = .refsUpdated(try (0..<n).map { _ in
                let name = try r.string(limit: 4096)
                guard let status = RefUpdateResult.Status(rawValue: try r.u8()) else { throw CoreError(.malformedObject, "unknown ref update status") }
                return RefUpdateResult(name: name, status: status, message: try r.string(limit: 1 << 16))
            })
        case 0xFF:
            let raw = try r.u16()
            resp = .error(ProtocolErrorCode(rawValue: raw) ?? .general, message: try r.string(limit: 1 << 16), hint: try r.optionalString())
        default: throw CoreError(.malformedObject, "unknown response kind \(kind)")
        }
        try r.expectEnd()
        return resp
    }
}
