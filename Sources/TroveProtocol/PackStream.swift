import TroveCore

/// The pack stream (Docs/protocol.md §Pack stream): how objects cross the wire in uploads,
/// downloads and metadata fetches. It is a pack without the trailing index: the 16-byte pack
/// header, then entries (44-byte entry header + stored bytes, as in a pack file), then an end
/// record: `TRVPKEND` and the entry count (u64). A stream without its end record is truncated.
public enum PackStream {
    public static let endMagic: [UInt8] = PackFormat.endMagic
    public static let endRecordSize = 16
    /// The largest stored object a stream may carry (a chunk is at most 16 MiB by the format;
    /// manifests and trees of huge folders stay far below this).
    public static let maxObjectBytes = 64 << 20

    public static func header() -> [UInt8] { PackFormat.header() }

    public static func entry(_ o: PackedObject) -> [UInt8] {
        PackFormat.entryHeader(type: o.type, codec: o.codec, rawLength: o.rawLength, storedLength: o.stored.count, id: o.id) + o.stored
    }

    public static func end(count: Int) -> [UInt8] {
        var w = ByteWriter(capacity: endRecordSize)
        w.raw(endMagic)
        w.u64(UInt64(count))
        return w.bytes
    }

    /// Encodes a whole stream (small streams and tests; big ones are written entry by entry).
    public static func encode(_ objects: [PackedObject]) -> [UInt8] {
        var out = header()
        for o in objects { out += entry(o) }
        return out + end(count: objects.count)
    }
}

/// Parses a pack stream fed in pieces of any size, without I/O. `consume` takes bytes and
/// reports how many it used: it stops right after the end record, so that a transport can
/// hand what follows to the next message.
public struct PackStreamParser: Sendable {
    public enum Event: Sendable {
        case object(PackedObject)
        /// The end record: the stream is complete and carried `count` objects.
        case end(count: Int)
    }

    private enum State: Sendable {
        case header
        case entryHeader
        case data(PackFormat.IndexRecord)
        case endRecord
        case done
    }

    private var state = State.header
    private var pending: [UInt8] = []
    private var objects = 0
    public let maxObjectBytes: Int

    public init(maxObjectBytes: Int = PackStream.maxObjectBytes) { self.maxObjectBytes = maxObjectBytes }

    public var isDone: Bool { if case .done = state { return true } else { return false } }

    /// How many bytes the parser wants before it can say more (for transports that read exactly).
    public var wanted: Int {
        switch state {
        case .header: return PackFormat.headerSize - pending.count
        case .entryHeader: return max(1, (pending.isEmpty ? 1 : PackFormat.entryHeaderSize) - pending.count)
        case .data(let r): return Int(r.storedLength) - pending.count
        case .endRecord: return PackStream.endRecordSize - pending.count
        case .done: return 0
        }
    }

    public mutating func consume(_ input: UnsafeRawBufferPointer) throws -> (consumed: Int, events: [Event]) {
        var events: [Event] = []
        var at = 0
        while at < input.count {
            switch state {
            case .done:
                return (at, events)
            case .header:
                at += take(input, from: at, upTo: PackFormat.headerSize)
                if pending.count == PackFormat.headerSize {
                    try PackFormat.checkHeader(pending, pack: "pack stream")
                    pending.removeAll(keepingCapacity: true)
                    state = .entryHeader
                }
            case .entryHeader:
                // The first byte tells an entry (an object type, 1...5) from the end record ('T').
                if pending.isEmpty && input[at] == PackStream.endMagic[0] {
                    state = .endRecord
                    continue
                }
                at += take(input, from: at, upTo: PackFormat.entryHeaderSize)
                if pending.count == PackFormat.entryHeaderSize {
                    let r = try PackFormat.parseEntryHeader(pending, at: UInt64(objects), pack: "pack stream")
                    guard Int(r.storedLength) <= maxObjectBytes, Int(r.rawLength) <= maxObjectBytes else {
                        throw CoreError(.malformedObject, "pack stream object \(r.id.hex) is larger than the \(maxObjectBytes)-byte limit")
                    }
                    pending.removeAll(keepingCapacity: true)
                    state = .data(r)
                    if r.storedLength == 0 { events.append(finishObject(r)) }
                }
            case .data(let r):
                at += take(input, from: at, upTo: Int(r.storedLength))
                if pending.count == Int(r.storedLength) { events.append(finishObject(r)) }
            case .endRecord:
                at += take(input, from: at, upTo: PackStream.endRecordSize)
                if pending.count == PackStream.endRecordSize {
                    var reader = ByteReader(pending, what: "pack stream end")
                    guard Array(try reader.raw(8)) == PackStream.endMagic else {
                        throw CoreError(.malformedObject, "pack stream: expected an entry or the end record after \(objects) objects")
                    }
                    let raw = try reader.u64()
                    guard let count = Int(exactly: raw), count == objects else {
                        throw CoreError(.malformedObject, "pack stream: the end record counts \(raw) objects, \(objects) arrived")
                    }
                    pending = []
                    state = .done
                    events.append(.end(count: count))
                }
            }
        }
        return (at, events)
    }

    private mutating func take(_ input: UnsafeRawBufferPointer, from at: Int, upTo size: Int) -> Int {
        let n = min(size - pending.count, input.count - at)
        pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[at..<(at + n)]))
        return n
    }

    private mutating func finishObject(_ r: PackFormat.IndexRecord) -> Event {
        let o = PackedObject(type: r.type, codec: r.codec, rawLength: Int(r.rawLength), id: r.id, stored: pending)
        pending = []
        objects += 1
        state = .entryHeader
        return .object(o)
    }
}
