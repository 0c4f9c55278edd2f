/// The pack file format (Docs/format.md §Packs): a header, entries, a trailing sorted index
/// and a footer whose checksum covers the index. Entry data is verified through its id.
public enum PackFormat {
    public static let magic: [UInt8] = Array("TRVPACK\0".utf8)
    public static let endMagic: [UInt8] = Array("TRVPKEND".utf8)
    public static let version: UInt32 = 1
    public static let headerSize = 16
    public static let entryHeaderSize = 44
    public static let indexRecordSize = 50
    public static let footerSize = 56

    public enum Codec: UInt8, Sendable { case raw = 0, zstd = 1 }

    /// Where an object sits in a pack.
    public struct IndexRecord: Hashable, Sendable {
        public var id: ObjectID
        public var type: ObjectType
        public var codec: Codec
        /// Offset of the entry header from the start of the pack.
        public var offset: UInt64
        public var rawLength: UInt32
        public var storedLength: UInt32

        public init(id: ObjectID, type: ObjectType, codec: Codec, offset: UInt64, rawLength: UInt32, storedLength: UInt32) {
            self.id = id
            self.type = type
            self.codec = codec
            self.offset = offset
            self.rawLength = rawLength
            self.storedLength = storedLength
        }

        /// Offset of the entry's data.
        public var dataOffset: UInt64 { offset + UInt64(PackFormat.entryHeaderSize) }
    }

    public static func header() -> [UInt8] {
        var w = ByteWriter(capacity: headerSize)
        w.raw(magic); w.u32(version); w.u32(0)
        return w.bytes
    }

    public static func checkHeader(_ bytes: [UInt8], pack: String) throws {
        var r = ByteReader(bytes, what: "pack \(pack) header")
        guard Array(try r.raw(8)) == magic else { throw CoreError(.malformedObject, "\(pack) is not a trove pack (bad magic)") }
        let v = try r.u32()
        guard v == version else { throw CoreError(.unsupportedVersion, "pack \(pack) has format version \(v); this trove reads \(version)") }
    }

    public static func entryHeader(type: ObjectType, codec: Codec, rawLength: Int, storedLength: Int, id: ObjectID) -> [UInt8] {
        var w = ByteWriter(capacity: entryHeaderSize)
        w.u8(type.rawValue); w.u8(codec.rawValue); w.u16(0)
        w.u32(UInt32(rawLength)); w.u32(UInt32(storedLength))
        w.id(id)
        return w.bytes
    }

    public static func parseEntryHeader(_ bytes: [UInt8], at offset: UInt64, pack: String) throws -> IndexRecord {
        var r = ByteReader(bytes, what: "entry header at \(offset) of pack \(pack)")
        guard let type = ObjectType(rawValue: try r.u8()), let codec = Codec(rawValue: try r.u8()) else {
            throw CoreError(.malformedObject, "pack \(pack) has an entry of unknown type or codec at offset \(offset)")
        }
        _ = try r.u16()
        let raw = try r.u32(), stored = try r.u32()
        let id = try r.id()
        return IndexRecord(id: id, type: type, codec: codec, offset: offset, rawLength: raw, storedLength: stored)
    }

    /// Index and footer for `records` (any order); `indexOffset` is where the index starts.
    /// Returns the bytes to append and the checksum that names the pack.
    public static func trailer(records: [IndexRecord], indexOffset: UInt64) -> (bytes: [UInt8], checksum: ObjectID) {
        var w = ByteWriter(capacity: 8 + records.count * indexRecordSize + footerSize)
        w.raw("TRVI".utf8); w.u32(UInt32(records.count))
        for rec in records.sorted(by: { $0.id < $1.id }) {
            w.id(rec.id); w.u8(rec.type.rawValue); w.u8(rec.codec.rawValue)
            w.u64(rec.offset); w.u32(rec.rawLength); w.u32(rec.storedLength)
        }
        w.u64(indexOffset); w.u32(UInt32(records.count)); w.u32(version)
        let checksum = SHA256.hash(w.bytes)
        w.id(checksum)
        w.raw(endMagic)
        return (w.bytes, checksum)
    }

    public struct Footer: Sendable {
        public var indexOffset: UInt64
        public var count: Int
        public var checksum: ObjectID
        /// Bytes from the index start to the end of the file.
        public func trailerLength(fileSize: UInt64) -> Int { Int(fileSize - indexOffset) }
    }

    public static func parseFooter(_ bytes: [UInt8], fileSize: UInt64, pack: String) throws -> Footer {
        guard bytes.count == footerSize else { throw CoreError(.malformedObject, "pack \(pack) is too short for a footer") }
        var r = ByteReader(bytes, what: "pack \(pack) footer")
        let offset = try r.u64()
        let count = Int(try r.u32())
        let v = try r.u32()
        let checksum = try r.id()
        guard Array(try r.raw(8)) == endMagic else {
            throw CoreError(.malformedObject, "pack \(pack) has no footer (truncated or not finished)")
        }
        guard v == version else { throw CoreError(.unsupportedVersion, "pack \(pack) footer has version \(v)") }
        // A hostile footer may hold any offset: no arithmetic here may trap.
        let (expectedEnd, overflow) = offset.addingReportingOverflow(8 + UInt64(count) * UInt64(indexRecordSize) + UInt64(footerSize))
        guard !overflow, offset >= UInt64(headerSize), expectedEnd == fileSize else {
            throw CoreError(.malformedObject, "pack \(pack) footer does not match its size")
        }
        return Footer(indexOffset: offset, count: count, checksum: checksum)
    }

    /// Parses and checks the trailer (index + footer) read from `indexOffset` to the end.
    public static func parseIndex(_ trailer: [UInt8], footer: Footer, pack: String) throws -> [IndexRecord] {
        let checked = Array(trailer[..<(trailer.count - 40)])
        guard SHA256.hash(checked) == footer.checksum else {
            throw CoreError(.integrity, "pack \(pack): its index fails its checksum")
        }
        var r = ByteReader(checked, what: "pack \(pack) index")
        guard Array(try r.raw(4)) == Array("TRVI".utf8), Int(try r.u32()) == footer.count else {
            throw CoreError(.malformedObject, "pack \(pack) index header is wrong")
        }
        var out: [IndexRecord] = []
        out.reserveCapacity(footer.count)
        for _ in 0..<footer.count {
            let id = try r.id()
            guard let type = ObjectType(rawValue: try r.u8()), let codec = Codec(rawValue: try r.u8()) else {
                throw CoreError(.malformedObject, "pack \(pack) index has an unknown type or codec")
            }
            let rec = IndexRecord(id: id, type: type, codec: codec, offset: try r.u64(), rawLength: try r.u32(), storedLength: try r.u32())
            guard rec.offset <= footer.indexOffset, footer.indexOffset - rec.offset >= UInt64(entryHeaderSize) + UInt64(rec.storedLength) else {
                throw CoreError(.malformedObject, "pack \(pack) index points past its data")
            }
            if let last = out.last, !(last.id < rec.id) {
                throw CoreError(.malformedObject, "pack \(pack) index is not sorted by id")
            }
            out.append(rec)
        }
        return out
    }
}

extension PackFormat {
    /// The raw bytes of a stored object, checked against its id: a chunk, segment, tree or
    /// commit must hash to it; a blob manifest must carry it and pass its own checksum (a
    /// manifest is named by its file's content, which only the chunks can prove).
    public static func verifiedRaw(type: ObjectType, codec: Codec, rawLength: Int, id: ObjectID,
                                   stored: UnsafeRawBufferPointer, decompressor: Decompressor) throws -> [UInt8] {
        var raw: [UInt8]
        switch codec {
        case .raw:
            guard stored.count == rawLength else {
                throw CoreError(.integrity, "object \(id.hex) has \(stored.count) bytes, its header says \(rawLength)")
            }
            raw = Array(stored)
        case .zstd:
            raw = [UInt8](repeating: 0, count: rawLength)
            try raw.withUnsafeMutableBytes { dst in
                try decompressor.decompress(stored, into: dst.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 1)!, rawLength: rawLength)
            }
        }
        if type == .blob {
            _ = try BlobManifest.decode(raw, expectedID: id)
        } else {
            let actual = SHA256.hash(raw)
            guard actual == id else {
                throw CoreError(.integrity, "object \(id.hex) is corrupt: its bytes hash to \(actual.hex)")
            }
        }
        return raw
    }
}

/// One object as a pack holds it (and as the sync protocol carries it): header fields and
/// the stored bytes (zstd-compressed when `codec` says so).
public struct PackedObject: Sendable {
    public var type: ObjectType
    public var codec: PackFormat.Codec
    public var rawLength: Int
    public var id: ObjectID
    public var stored: [UInt8]

    public init(type: ObjectType, codec: PackFormat.Codec, rawLength: Int, id: ObjectID, stored: [UInt8]) {
        self.type = type
        self.codec = codec
        self.rawLength = rawLength
        self.id = id
        self.stored = stored
    }

    /// Checks the bytes against the id (as `PackFormat.verifiedRaw` does) without copying them:
    /// raw chunks are hashed where they are, compressed ones in the decompressor's buffer.
    public func verify(_ decompressor: Decompressor) throws {
        if type == .blob {
            _ = try stored.withUnsafeBytes {
                try PackFormat.verifiedRaw(type: type, codec: codec, rawLength: rawLength, id: id, stored: $0, decompressor: decompressor)
            }
            return
        }
        let actual: ObjectID = try stored.withUnsafeBytes { s in
            switch codec {
            case .raw:
                guard s.count == rawLength else {
                    throw CoreError(.integrity, "object \(id.hex) has \(s.count) bytes, its header says \(rawLength)")
                }
                return SHA256.hash(s.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, count: s.count)
            case .zstd:
                let raw = try decompressor.decompressToScratch(s, rawLength: rawLength)
                return SHA256.hash(raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, count: raw.count)
            }
        }
        guard actual == id else { throw CoreError(.integrity, "object \(id.hex) is corrupt: its bytes hash to \(actual.hex)") }
        // A segment, tree or commit must also be one: an id is no proof of the type it is sent as.
        if type == .segment || type == .tree || type == .commit {
            let raw = try stored.withUnsafeBytes { s -> [UInt8] in
                codec == .raw ? Array(s) : Array(try decompressor.decompressToScratch(s, rawLength: rawLength))
            }
            do {
                switch type {
                case .segment: _ = try Segment.decode(raw)
                case .tree: _ = try Tree.decode(raw)
                default: _ = try Commit.decode(raw)
                }
            } catch let e as CoreError {
                throw CoreError(.integrity, "object \(id.hex) is not a valid \(type): \(e.message)")
            }
        }
    }
}
