/// Kinds of stored objects; the number is written in packs.
public enum ObjectType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case chunk = 1
    case segment = 2
    case blob = 3
    case tree = 4
    case commit = 5

    public var description: String {
        switch self {
        case .chunk: "chunk"
        case .segment: "segment"
        case .blob: "blob"
        case .tree: "tree"
        case .commit: "commit"
        }
    }
}

/// One chunk (or one segment) of a blob: its id and how many content bytes it covers.
public struct ChunkRef: Hashable, Sendable {
    public var id: ObjectID
    public var length: UInt64
    public init(id: ObjectID, length: UInt64) {
        self.id = id
        self.length = length
    }
}

/// A run of a large blob's chunk list, split at content-defined points so that a new version
/// of a file rewrites only the segments around its edits. Id: SHA-256 of the encoding.
public struct Segment: Hashable, Sendable {
    public var chunks: [ChunkRef]
    public init(chunks: [ChunkRef]) { self.chunks = chunks }

    public var byteCount: UInt64 { chunks.reduce(0) { $0 + $1.length } }

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 9 + chunks.count * 36)
        w.raw("TRVS".utf8); w.u8(1)
        w.u32(UInt32(chunks.count))
        for c in chunks { w.id(c.id); w.u32(UInt32(c.length)) }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws -> Segment {
        var r = ByteReader(bytes, what: "segment")
        try r.magic("TRVS", version: 1)
        let n = Int(try r.u32())
        guard n <= r.remaining / 36 else { throw CoreError(.malformedObject, "segment claims \(n) chunks") }
        var chunks: [ChunkRef] = []
        chunks.reserveCapacity(n)
        for _ in 0..<n { chunks.append(ChunkRef(id: try r.id(), length: UInt64(try r.u32()))) }
        try r.expectEnd()
        return Segment(chunks: chunks)
    }

    /// Content-defined grouping of a chunk list: a segment ends after a chunk whose id's first
    /// word is ≡ 0 mod 64 (at least 16, at most 256 chunks a segment; see Docs/format.md).
    public static func split(_ chunks: [ChunkRef]) -> [[ChunkRef]] {
        var builder = SegmentBuilder()
        var out: [[ChunkRef]] = []
        for c in chunks { if let s = builder.append(c) { out.append(s) } }
        if let s = builder.finish() { out.append(s) }
        return out
    }
}

/// The segment rule applied as chunks arrive, so that a file of any size can be described
/// while it streams, with only the open segment in memory.
public struct SegmentBuilder: Sendable {
    private var current: [ChunkRef] = []

    public init() {}

    /// Adds a chunk; returns a segment when this chunk completes one.
    public mutating func append(_ c: ChunkRef) -> [ChunkRef]? {
        current.append(c)
        guard (current.count >= 16 && c.id.w0 % 64 == 0) || current.count == 256 else { return nil }
        defer { current = [] }
        return current
    }

    /// The last, open segment (nil when empty).
    public mutating func finish() -> [ChunkRef]? {
        defer { current = [] }
        return current.isEmpty ? nil : current
    }
}

/// The recipe of a file of more than one chunk, stored under the blob id (SHA-256 of the
/// whole content). A blob of one chunk has no manifest: its blob id is its chunk id.
public struct BlobManifest: Hashable, Sendable {
    public enum Level: UInt8, Sendable { case chunks = 0, segments = 1 }

    public var blobID: ObjectID
    public var size: UInt64
    public var level: Level
    /// Chunks (level 0) or segments (level 1), in content order.
    public var entries: [ChunkRef]

    /// Blobs of more chunks than this list segments instead of chunks.
    public static let directChunkLimit = 64

    public init(blobID: ObjectID, size: UInt64, level: Level, entries: [ChunkRef]) {
        self.blobID = blobID
        self.size = size
        self.level = level
        self.entries = entries
    }

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 82 + entries.count * 40 + 32)
        w.raw("TRVB".utf8); w.u8(1)
        w.id(blobID)
        w.u64(size)
        w.u8(level.rawValue)
        w.u32(UInt32(entries.count))
        for e in entries { w.id(e.id); w.u64(e.length) }
        let check = SHA256.hash(w.bytes)
        w.id(check)
        return w.bytes
    }

    /// Decodes and checks the trailing self-checksum, the sizes and (given) the expected id.
    public static func decode(_ bytes: [UInt8], expectedID: ObjectID? = nil) throws -> BlobManifest {
        guard bytes.count >= 32 else { throw CoreError(.malformedObject, "blob manifest is truncated") }
        let body = bytes[..<(bytes.count - 32)]
        let check = bytes.withUnsafeBytes { ObjectID(bytes: $0.baseAddress! + bytes.count - 32) }
        guard SHA256.hash(Array(body)) == check else {
            throw CoreError(.integrity, "blob manifest \(expectedID?.short() ?? "") fails its checksum")
        }
        var r = ByteReader(Array(body), what: "blob manifest")
        try r.magic("TRVB", version: 1)
        let blobID = try r.id()
        let size = try r.u64()
        guard let level = Level(rawValue: try r.u8()) else { throw CoreError(.malformedObject, "blob manifest has an unknown level") }
        let n = Int(try r.u32())
        guard n <= r.remaining / 40 else { throw CoreError(.malformedObject, "blob manifest claims \(n) entries") }
        var entries: [ChunkRef] = []
        entries.reserveCapacity(n)
        for _ in 0..<n { entries.append(ChunkRef(id: try r.id(), length: try r.u64())) }
        try r.expectEnd()
        guard entries.reduce(0, { $0 + $1.length }) == size else {
            throw CoreError(.malformedObject, "blob manifest \(blobID.short()) lengths do not add up to its size")
        }
        if let expectedID, expectedID != blobID {
            throw CoreError(.integrity, "blob manifest stored as \(expectedID.short()) describes \(blobID.short())")
        }
        return BlobManifest(blobID: blobID, size: size, level: level, entries: entries)
    }

    /// Builds the manifest (and the segments it needs) for a chunk list.
    public static func make(blobID: ObjectID, size: UInt64, chunks: [ChunkRef]) -> (BlobManifest, [(ObjectID, [UInt8])]) {
        if chunks.count <= directChunkLimit {
            return (BlobManifest(blobID: blobID, size: size, level: .chunks, entries: chunks), [])
        }
        var segments: [(ObjectID, [UInt8])] = []
        var entries: [ChunkRef] = []
        for group in Segment.split(chunks) {
            let seg = Segment(chunks: group)
            let bytes = seg.encode()
            let id = SHA256.hash(bytes)
            segments.append((id, bytes))
            entries.append(ChunkRef(id: id, length: seg.byteCount))
        }
        return (BlobManifest(blobID: blobID, size: size, level: .segments, entries: entries), segments)
    }
}
