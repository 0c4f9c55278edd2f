import TroveCore
import TroveStore

/// A Git LFS v1 pointer (Docs/git.md): what git stores in place of a tracked file. Its `oid`
/// is the SHA-256 of the whole content, which is also the file's Trove blob id, so a pointer
/// written by git-lfs and one written by Trove are the same bytes.
public struct LFSPointer: Hashable, Sendable {
    public var oid: ObjectID
    public var size: UInt64

    public init(oid: ObjectID, size: UInt64) {
        self.oid = oid
        self.size = size
    }

    public static let version = "https://git-lfs.github.com/spec/v1"
    /// Older version strings git-lfs still reads.
    static let legacyVersions = ["https://hawser.github.com/spec/v1", "http://git-media.io/v/2"]
    /// Blobs of this size or more are never pointers.
    public static let sizeLimit = 1024

    /// The one canonical encoding.
    public func encode() -> [UInt8] {
        Array("version \(LFSPointer.version)\noid sha256:\(oid.hex)\nsize \(size)\n".utf8)
    }

    /// Whether `bytes` look like an attempt at a pointer (start with `version `): such input
    /// that does not parse is an error, not a file to pass through.
    /// A `VERSION` file holding `version 2` is content, not a broken pointer.
    public static func looksLikePointer(_ bytes: [UInt8]) -> Bool {
        guard bytes.count < sizeLimit else { return false }
        return ["version https://git-lfs.github.com/spec/", "version https://hawser.github.com/spec/", "version http://git-media.io/"]
            .contains { bytes.starts(with: Array($0.utf8)) }
    }

    /// Parses a pointer. Returns nil for content that is not one (binary data, a file of 1024
    /// bytes or more); throws for text that starts like a pointer and is malformed.
    public static func parse(_ bytes: [UInt8]) throws -> LFSPointer? {
        guard looksLikePointer(bytes) else { return nil }
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw StoreError(.invalidInput, "malformed pointer: not UTF-8 text")
        }
        // Split on bytes: as Characters, "\r\n" is one and would not split on "\n".
        var lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { line in
            String(decoding: line.last == UInt8(ascii: "\r") ? line.dropLast() : line[...], as: UTF8.self)
        }
        if lines.last == "" { lines.removeLast() }
        func fail(_ why: String) -> StoreError { StoreError(.invalidInput, "malformed pointer: \(why)") }
        guard let first = lines.first, first.hasPrefix("version ") else { throw fail("the first line is not `version ...`") }
        let version = String(first.dropFirst(8))
        guard version == LFSPointer.version || legacyVersions.contains(version) else {
            throw fail("unknown version \(version.debugDescription)")
        }
        var oid: ObjectID?
        var size: UInt64?
        var extensions = 0
        for line in lines.dropFirst() {
            guard let space = line.firstIndex(of: " ") else { throw fail("line \(line.debugDescription) has no value") }
            let key = String(line[..<space]), value = String(line[line.index(after: space)...])
            switch key {
            case "oid":
                guard oid == nil, size == nil else { throw fail("`oid` must come once, before `size`") }
                guard value.hasPrefix("sha256:"), value.utf8.count == 71,
                      value.dropFirst(7).allSatisfy({ ("0"..."9").contains($0) || ("a"..."f").contains($0) }),
                      let id = ObjectID(hex: String(value.dropFirst(7))) else {
                    throw fail("oid \(value.debugDescription) is not sha256: and 64 lowercase hex digits")
                }
                oid = id
            case "size":
                guard oid != nil, size == nil else { throw fail("`size` must come once, after `oid`") }
                guard let n = UInt64(value), n <= UInt64(Int64.max), value == String(n) else {
                    throw fail("size \(value.debugDescription) is not a non-negative whole number")
                }
                size = n
            default:
                guard key.hasPrefix("ext-"), oid == nil else { throw fail("unknown key \(key.debugDescription)") }
                extensions += 1
            }
        }
        guard let oid, let size else { throw fail(oid == nil ? "no oid line" : "no size line") }
        guard extensions == 0 else {
            throw fail("pointer extensions (ext-N-name lines) are not supported")
        }
        return LFSPointer(oid: oid, size: size)
    }
}
