import COpenSSL
import CSHA256
#if canImport(Glibc)
import Glibc
#endif

/// A SHA-256 object name: 32 bytes, printed as 64 lowercase hex digits.
///
/// The one place where ids are parsed and printed. Stored as four big-endian words so that
/// comparing words in order compares the bytes lexicographically.
public struct ObjectID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64

    public static let byteCount = 32
    public static let zero = ObjectID(w0: 0, w1: 0, w2: 0, w3: 0)

    public init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) {
        self.w0 = w0; self.w1 = w1; self.w2 = w2; self.w3 = w3
    }

    /// Reads 32 bytes at `pointer`.
    public init(bytes pointer: UnsafeRawPointer) {
        w0 = UInt64(bigEndian: pointer.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        w1 = UInt64(bigEndian: pointer.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        w2 = UInt64(bigEndian: pointer.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        w3 = UInt64(bigEndian: pointer.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
    }

    public init?<C: Collection>(bytes: C) where C.Element == UInt8 {
        guard bytes.count == 32 else { return nil }
        let array = Array(bytes)
        self = array.withUnsafeBytes { ObjectID(bytes: $0.baseAddress!) }
    }

    /// Writes the 32 bytes to `pointer`.
    public func store(to pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: w0.bigEndian, toByteOffset: 0, as: UInt64.self)
        pointer.storeBytes(of: w1.bigEndian, toByteOffset: 8, as: UInt64.self)
        pointer.storeBytes(of: w2.bigEndian, toByteOffset: 16, as: UInt64.self)
        pointer.storeBytes(of: w3.bigEndian, toByteOffset: 24, as: UInt64.self)
    }

    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBytes { store(to: $0.baseAddress!) }
        return out
    }

    public static func < (a: ObjectID, b: ObjectID) -> Bool {
        if a.w0 != b.w0 { return a.w0 < b.w0 }
        if a.w1 != b.w1 { return a.w1 < b.w1 }
        if a.w2 != b.w2 { return a.w2 < b.w2 }
        return a.w3 < b.w3
    }

    public var hex: String {
        var out = [UInt8](repeating: 0, count: 64)
        var i = 0
        for word in [w0, w1, w2, w3] {
            var shift: UInt64 = 60
            for _ in 0..<16 {
                out[i] = Hex.digits[Int((word >> shift) & 0xF)]
                i += 1
                shift &-= 4
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { hex }

    /// The first `count` hex digits, for display.
    public func short(_ count: Int = 12) -> String { String(hex.prefix(count)) }

    /// Parses exactly 64 hex digits (either case).
    public init?(hex: String) {
        guard let words = ObjectID.parseHexWords(hex), hex.utf8.count == 64 else { return nil }
        self.init(w0: words[0], w1: words[1], w2: words[2], w3: words[3])
    }

    /// True when `text` is 1...64 hex digits: a candidate id prefix.
    public static func isHexPrefix(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 64 && text.utf8.allSatisfy { hexValue($0) != nil }
    }

    /// The id range `[low, high]` whose hex starts with `prefix`, for prefix lookups.
    public static func prefixRange(_ prefix: String) -> (low: ObjectID, high: ObjectID)? {
        guard isHexPrefix(prefix) else { return nil }
        let low = prefix.lowercased() + String(repeating: "0", count: 64 - prefix.utf8.count)
        let high = prefix.lowercased() + String(repeating: "f", count: 64 - prefix.utf8.count)
        guard let l = ObjectID(hex: low), let h = ObjectID(hex: high) else { return nil }
        return (l, h)
    }

    private static func hexValue(_ c: UInt8) -> UInt64? { Hex.value(c).map(UInt64.init) }

    private static func parseHexWords(_ hex: String) -> [UInt64]? {
        let utf8 = Array(hex.utf8)
        guard utf8.count == 64 else { return nil }
        var words = [UInt64](repeating: 0, count: 4)
        for (i, c) in utf8.enumerated() {
            guard let v = hexValue(c) else { return nil }
            words[i / 16] = (words[i / 16] << 4) | v
        }
        return words
    }
}

/// SHA-256 through OpenSSL's EVP interface (SHA-NI where the CPU has it).
public enum SHA256 {
    nonisolated(unsafe) private static let md: OpaquePointer = {
        guard let md = EVP_MD_fetch(nil, "SHA256", nil) else { fatalError("OpenSSL has no SHA256") }
        return md
    }()

    /// The id of `count` bytes at `pointer`.
    public static func hash(_ pointer: UnsafeRawPointer?, count: Int) -> ObjectID {
        var out = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        return withUnsafeMutableBytes(of: &out) { buf -> ObjectID in
            var len: UInt32 = 0
            let source = pointer ?? UnsafeRawPointer(buf.baseAddress!)
            let ok = EVP_Digest(source, count, buf.baseAddress!.assumingMemoryBound(to: UInt8.self), &len, md, nil)
            precondition(ok == 1 && len == 32, "EVP_Digest failed")
            return ObjectID(bytes: buf.baseAddress!)
        }
    }

    public static func hash(_ buffer: UnsafeRawBufferPointer) -> ObjectID {
        hash(buffer.baseAddress, count: buffer.count)
    }

    public static func hash(_ bytes: [UInt8]) -> ObjectID {
        bytes.withUnsafeBytes { hash($0) }
    }

    /// True when `hash(messages:)` hashes 16 messages side by side (AVX-512 on this CPU, and its
    /// known-answer test passed). `TROVE_SHA256_LANES=1` in the environment turns it off.
    public static let hashesSideBySide: Bool = {
        if let v = getenv("TROVE_SHA256_LANES"), String(cString: v) == "1" { return false }
        return trove_sha256_mb_available() == 1
    }()

    /// The ids of many separate messages (the chunks of a batch), in order: 16 at a time side
    /// by side when `hashesSideBySide`, else one by one through OpenSSL. Same ids either way.
    public static func hash(messages: [UnsafeRawBufferPointer]) -> [ObjectID] {
        guard hashesSideBySide, messages.count > 1 else { return messages.map { hash($0) } }
        let pointers = messages.map { $0.baseAddress?.assumingMemoryBound(to: UInt8.self) }
        let lengths = messages.map(\.count)
        var words = [UInt64](repeating: 0, count: 4 * messages.count)
        pointers.withUnsafeBufferPointer { p in
            lengths.withUnsafeBufferPointer { l in
                words.withUnsafeMutableBufferPointer { w in
                    trove_sha256_mb(p.baseAddress, l.baseAddress, messages.count, w.baseAddress)
                }
            }
        }
        return (0..<messages.count).map { i in
            ObjectID(w0: words[4 * i], w1: words[4 * i + 1], w2: words[4 * i + 2], w3: words[4 * i + 3])
        }
    }

    /// Incremental hashing of a stream.
    public final class Hasher {
        private let ctx: OpaquePointer

        public init() {
            ctx = EVP_MD_CTX_new()
            EVP_DigestInit_ex(ctx, SHA256.md, nil)
        }

        deinit { EVP_MD_CTX_free(ctx) }

        public func update(_ pointer: UnsafeRawPointer?, count: Int) {
            guard count > 0, let pointer else { return }
            EVP_DigestUpdate(ctx, pointer, count)
        }

        public func update(_ buffer: UnsafeRawBufferPointer) { update(buffer.baseAddress, count: buffer.count) }

        public func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

        public func finish() -> ObjectID {
            var out = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
            return withUnsafeMutableBytes(of: &out) { buf -> ObjectID in
                var len: UInt32 = 0
                EVP_DigestFinal_ex(ctx, buf.baseAddress!.assumingMemoryBound(to: UInt8.self), &len)
                return ObjectID(bytes: buf.baseAddress!)
            }
        }
    }
}

extension SHA256 {
    /// HMAC-SHA256 of `data` under `key` (AWS Signature V4 derives its keys and signs with it).
    public static func hmac(key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        key.withUnsafeBytes { k in
            data.withUnsafeBytes { d in
                _ = HMAC(md, k.baseAddress, Int32(k.count), d.baseAddress?.assumingMemoryBound(to: UInt8.self), d.count, &out, &len)
            }
        }
        precondition(len == 32, "HMAC-SHA256 failed")
        return out
    }
}

/// MD5, only to compare with S3's ETags of uploaded parts (never as an identity).
public enum MD5 {
    nonisolated(unsafe) private static let md: OpaquePointer = {
        guard let md = EVP_MD_fetch(nil, "MD5", nil) else { fatalError("OpenSSL has no MD5") }
        return md
    }()

    public static func hex(_ buffer: UnsafeRawBufferPointer) -> String {
        var out = [UInt8](repeating: 0, count: 16)
        var len: UInt32 = 0
        _ = EVP_Digest(buffer.baseAddress ?? UnsafeRawPointer(bitPattern: 1), buffer.count, &out, &len, md, nil)
        return Hex.string(out)
    }
}
