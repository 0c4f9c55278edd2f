/// Little-endian writer for the canonical encodings.
public struct ByteWriter {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }
    public mutating func i16(_ v: Int16) { u16(UInt16(bitPattern: v)) }
    public mutating func raw<S: Sequence>(_ s: S) where S.Element == UInt8 { bytes.append(contentsOf: s) }
    public mutating func id(_ id: ObjectID) {
        let start = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: 32))
        bytes.withUnsafeMutableBytes { id.store(to: $0.baseAddress! + start) }
    }
    /// A u32 length and UTF-8 bytes.
    public mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        u32(UInt32(utf8.count))
        raw(utf8)
    }
}

/// Bounds-checked little-endian reader; every read past the end is a malformed-object error.
public struct ByteReader {
    private let bytes: [UInt8]
    public private(set) var offset = 0
    private let what: String

    public init(_ bytes: [UInt8], what: String) {
        self.bytes = bytes
        self.what = what
    }

    public var remaining: Int { bytes.count - offset }
    public var isAtEnd: Bool { offset == bytes.count }

    private mutating func take(_ n: Int) throws -> Range<Int> {
        guard n >= 0, n <= remaining else {
            throw CoreError(.malformedObject, "\(what) is truncated at byte \(offset)")
        }
        defer { offset += n }
        return offset..<(offset + n)
    }

    private mutating func load<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let r = try take(MemoryLayout<T>.size)
        return bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: r.lowerBound, as: T.self)) }
    }

    public mutating func u8() throws -> UInt8 { try load(UInt8.self) }
    public mutating func u16() throws -> UInt16 { try load(UInt16.self) }
    public mutating func u32() throws -> UInt32 { try load(UInt32.self) }
    public mutating func u64() throws -> UInt64 { try load(UInt64.self) }
    public mutating func i64() throws -> Int64 { try load(Int64.self) }
    public mutating func i16() throws -> Int16 { try load(Int16.self) }
    public mutating func raw(_ n: Int) throws -> ArraySlice<UInt8> { bytes[try take(n)] }
    public mutating func id() throws -> ObjectID {
        let r = try take(32)
        return bytes.withUnsafeBytes { ObjectID(bytes: $0.baseAddress! + r.lowerBound) }
    }
    public mutating func string(limit: Int = 1 << 24) throws -> String {
        let n = Int(try u32())
        guard n <= limit else { throw CoreError(.malformedObject, "\(what) has a string of \(n) bytes") }
        guard let s = String(validating: try raw(n), as: UTF8.self) else {
            throw CoreError(.malformedObject, "\(what) has a string that is not UTF-8")
        }
        return s
    }
    public mutating func magic(_ expected: String, version: UInt8) throws {
        let m = try raw(4)
        guard Array(m) == Array(expected.utf8) else {
            throw CoreError(.malformedObject, "\(what) does not start with \(expected)")
        }
        let v = try u8()
        guard v == version else {
            throw CoreError(.unsupportedVersion, "\(what) has format version \(v); this trove reads version \(version)")
        }
    }
    public func expectEnd() throws {
        guard isAtEnd else { throw CoreError(.malformedObject, "\(what) has \(remaining) trailing bytes") }
    }
}

/// Hex digits, parsed and printed in one place (ids use them; so do digests and JSON escapes).
public enum Hex {
    static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    /// The value of one hex digit (either case), or nil.
    public static func value(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Lower-case hex of `bytes`.
    public static func string<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var out: [UInt8] = []
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 0xF)]) }
        return String(decoding: out, as: UTF8.self)
    }
}
