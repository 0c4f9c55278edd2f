import TroveCore
import TroveStore

/// JSON checked and split without building Foundation objects. `trove serve` passes a client's
/// tensors to the workers, and their outputs back, as the bytes that came in: decoding them into
/// dictionaries and encoding them again was most of its time per request (Docs/performance.md
/// §Serving). Every text is still validated in full (RFC 8259 grammar, nesting at most
/// `maxDepth`) before any of it is passed on.
public struct JSONScanner {
    public enum Kind: Equatable { case object, array, string, number, bool, null }

    public static let maxDepth = 256

    public let bytes: [UInt8]
    public private(set) var at: Int

    public init(_ bytes: [UInt8], at: Int = 0) {
        self.bytes = bytes
        self.at = at
    }

    /// The members of the object that is all of `bytes` (white space around it allowed), as raw
    /// value ranges; a repeated key keeps its last value, as most parsers do.
    public static func topObject(_ bytes: [UInt8]) throws -> [String: Range<Int>] {
        var s = JSONScanner(bytes)
        s.space()
        guard s.peek == UInt8(ascii: "{") else { throw s.fail("expected a JSON object") }
        let members = try s.object()
        s.space()
        guard s.at == bytes.count else { throw s.fail("unexpected text after the JSON object") }
        return members
    }

    /// The members of the object starting here (after white space), consuming it.
    public mutating func object() throws -> [String: Range<Int>] {
        space()
        try expect(UInt8(ascii: "{"))
        var members: [String: Range<Int>] = [:]
        space()
        if peek == UInt8(ascii: "}") { at += 1; return members }
        while true {
            space()
            guard peek == UInt8(ascii: "\"") else { throw fail("expected a member name") }
            let key = try string()
            space()
            try expect(UInt8(ascii: ":"))
            space()
            let start = at
            _ = try skipValue(depth: 1)
            members[key] = start..<at
            space()
            if peek == UInt8(ascii: ",") { at += 1; continue }
            try expect(UInt8(ascii: "}"))
            return members
        }
    }

    /// The raw ranges of the elements of the array starting here, consuming it.
    public mutating func array() throws -> [Range<Int>] {
        var out: [Range<Int>] = []
        try elements { s in
            let start = s.at
            _ = try s.skipValue(depth: 1)
            out.append(start..<s.at)
        }
        return out
    }

    /// Calls `each` at the start of every element of the array starting here; `each` consumes it.
    public mutating func elements(_ each: (inout JSONScanner) throws -> Void) throws {
        space()
        try expect(UInt8(ascii: "["))
        space()
        if peek == UInt8(ascii: "]") { at += 1; return }
        while true {
            space()
            try each(&self)
            space()
            if peek == UInt8(ascii: ",") { at += 1; continue }
            try expect(UInt8(ascii: "]"))
            return
        }
    }

    /// The kind of the value starting here, consuming and validating it.
    @discardableResult
    public mutating func skipValue(depth: Int = 0) throws -> Kind {
        guard depth <= Self.maxDepth else { throw fail("JSON nested deeper than \(Self.maxDepth) levels") }
        space()
        switch peek {
        case UInt8(ascii: "{"):
            at += 1
            space()
            if peek == UInt8(ascii: "}") { at += 1; return .object }
            while true {
                space()
                guard peek == UInt8(ascii: "\"") else { throw fail("expected a member name") }
                try skipString()
                space()
                try expect(UInt8(ascii: ":"))
                try skipValue(depth: depth + 1)
                space()
                if peek == UInt8(ascii: ",") { at += 1; continue }
                try expect(UInt8(ascii: "}"))
                return .object
            }
        case UInt8(ascii: "["):
            at += 1
            space()
            if peek == UInt8(ascii: "]") { at += 1; return .array }
            while true {
                try skipValue(depth: depth + 1)
                space()
                if peek == UInt8(ascii: ",") { at += 1; continue }
                try expect(UInt8(ascii: "]"))
                return .array
            }
        case UInt8(ascii: "\""): try skipString(); return .string
        case UInt8(ascii: "t"): try literal("true"); return .bool
        case UInt8(ascii: "f"): try literal("false"); return .bool
        case UInt8(ascii: "n"): try literal("null"); return .null
        case nil: throw fail("the JSON text ends early")
        case let c? where c == UInt8(ascii: "-") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c): try number(); return .number
        default: throw fail("unexpected character")
        }
    }

    /// The string starting here, unescaped.
    public mutating func string() throws -> String {
        let start = at + 1
        let plain = try skipString()
        if plain { return String(decoding: bytes[start..<(at - 1)], as: UTF8.self) }
        var out: [UInt8] = []
        var i = start
        while i < at - 1 {
            let c = bytes[i]
            guard c == UInt8(ascii: "\\") else { out.append(c); i += 1; continue }
            let e = bytes[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "b"): out.append(8)
            case UInt8(ascii: "f"): out.append(12)
            case UInt8(ascii: "n"): out.append(10)
            case UInt8(ascii: "r"): out.append(13)
            case UInt8(ascii: "t"): out.append(9)
            case UInt8(ascii: "u"):
                var scalar = hex4(i)
                i += 4
                if (0xD800..<0xDC00).contains(scalar), i + 6 <= at - 1, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") {
                    let low = hex4(i + 2)
                    if (0xDC00..<0xE000).contains(low) {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    }
                }
                out.append(contentsOf: Array(String(Unicode.Scalar(scalar).map(Character.init) ?? "\u{FFFD}").utf8))
            default: out.append(e)  // \" \\ \/
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// An integer value starting here (a JSON number without fraction or exponent).
    public mutating func int() throws -> Int {
        space()
        let start = at
        guard try skipValue() == .number, let v = Int(String(decoding: bytes[start..<at], as: UTF8.self)) else {
            at = start
            throw fail("expected an integer")
        }
        return v
    }

    public var peek: UInt8? { at < bytes.count ? bytes[at] : nil }

    public mutating func space() {
        while at < bytes.count {
            switch bytes[at] {
            case 0x20, 0x0A, 0x0D, 0x09: at += 1
            default: return
            }
        }
    }

    public func fail(_ what: String) -> StoreError {
        StoreError(.invalidInput, "invalid JSON at byte \(at): \(what)")
    }

    // MARK: - Lexing

    private mutating func expect(_ c: UInt8) throws {
        guard peek == c else {
            throw fail(peek == nil ? "the JSON text ends early" : "expected '\(Character(Unicode.Scalar(c)))'")
        }
        at += 1
    }

    private mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        guard at + n <= bytes.count, word.withUTF8Buffer({ w in (0..<n).allSatisfy { bytes[at + $0] == w[$0] } }) else {
            throw fail("unexpected word")
        }
        at += n
    }

    /// Consumes a string; true when it holds no escapes.
    @discardableResult
    private mutating func skipString() throws -> Bool {
        try expect(UInt8(ascii: "\""))
        var plain = true
        while at < bytes.count {
            let c = bytes[at]
            if c == UInt8(ascii: "\"") { at += 1; return plain }
            if c < 0x20 { throw fail("a control character in a string") }
            if c == UInt8(ascii: "\\") {
                plain = false
                guard at + 1 < bytes.count else { break }
                switch bytes[at + 1] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                     UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    at += 2
                case UInt8(ascii: "u"):
                    guard at + 6 <= bytes.count, (at + 2..<at + 6).allSatisfy({ Hex.value(bytes[$0]) != nil }) else {
                        throw fail("a bad \\u escape")
                    }
                    at += 6
                default: throw fail("a bad escape in a string")
                }
                continue
            }
            at += 1
        }
        throw fail("a string is not closed")
    }

    private mutating func number() throws {
        func digits() -> Int {
            let s = at
            while at < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[at]) { at += 1 }
            return at - s
        }
        if peek == UInt8(ascii: "-") { at += 1 }
        if peek == UInt8(ascii: "0") { at += 1 } else if digits() == 0 { throw fail("a bad number") }
        if peek == UInt8(ascii: ".") {
            at += 1
            guard digits() > 0 else { throw fail("a bad number") }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            at += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { at += 1 }
            guard digits() > 0 else { throw fail("a bad number") }
        }
    }

    private func hex4(_ i: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 << 4 | UInt32(Hex.value(bytes[i + $1]) ?? 0) }
    }

}

extension JSONScanner {
    /// A scanner at the start of `range` of the same text.
    public func at(_ range: Range<Int>) -> JSONScanner { JSONScanner(bytes, at: range.lowerBound) }

    /// The string value in `range`, or nil when it is not a string.
    public func string(in range: Range<Int>?) -> String? {
        guard let range, bytes[range.lowerBound] == UInt8(ascii: "\"") else { return nil }
        var s = at(range)
        return try? s.string()
    }
}
