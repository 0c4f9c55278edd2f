import TroveCore
import TroveStore

/// One metric's history in a run, stored as `metrics/<NAME>` in the run's tree
/// (Docs/runs.md §Series format): steps as zig-zag varint deltas, values as the XOR of each
/// IEEE 754 pattern with the previous one, byte planes one after another (all lowest bytes,
/// then the next...), so that the store's zstd finds the runs of equal high bytes. Values
/// that are all exactly float32 keep 4 planes of their float32 patterns instead of 8.
public struct MetricSeries: Equatable, Sendable {
    public var steps: [Int64]
    public var values: [Double]

    public init(steps: [Int64], values: [Double]) {
        precondition(steps.count == values.count)
        self.steps = steps
        self.values = values
    }

    static let magic = Array("TRMS".utf8)

    public func encode() -> [UInt8] {
        let n = steps.count
        let single = values.allSatisfy { Double(Float($0)).bitPattern == $0.bitPattern }
        var out = MetricSeries.magic
        out.append(1)  // version
        out.append(single ? 4 : 8)
        appendVarint(&out, UInt64(n))
        out.reserveCapacity(out.count + n * (single ? 5 : 9))
        var previous: Int64 = 0
        for s in steps {
            let d = s &- previous
            appendVarint(&out, UInt64(bitPattern: (d << 1) ^ (d >> 63)))
            previous = s
        }
        let width = single ? 4 : 8
        let base = out.count
        out.append(contentsOf: [UInt8](repeating: 0, count: n * width))
        out.withUnsafeMutableBufferPointer { buf in
            var prev: UInt64 = 0
            for i in 0..<n {
                let bits = single ? UInt64(Float(values[i]).bitPattern) : values[i].bitPattern
                let x = bits ^ prev
                prev = bits
                for k in 0..<width { buf[base + k * n + i] = UInt8(truncatingIfNeeded: x >> (8 * k)) }
            }
        }
        return out
    }

    public static func decode(_ bytes: [UInt8]) throws -> MetricSeries {
        func bad(_ why: String) -> StoreError { StoreError(.integrity, "metric series: \(why)") }
        guard bytes.count >= 6, Array(bytes[0..<4]) == magic else { throw bad("no TRMS header") }
        guard bytes[4] == 1 else { throw bad("version \(bytes[4]); this trove reads version 1") }
        let width = Int(bytes[5])
        guard width == 4 || width == 8 else { throw bad("value width \(width)") }
        var pos = 6
        let n = Int(try readVarint(bytes, &pos))
        guard n <= (bytes.count - pos) else { throw bad("\(n) points cannot fit in \(bytes.count) bytes") }
        var steps = [Int64](repeating: 0, count: n)
        var previous: Int64 = 0
        for i in 0..<n {
            let z = try readVarint(bytes, &pos)
            previous = previous &+ (Int64(bitPattern: z >> 1) ^ -Int64(bitPattern: z & 1))
            steps[i] = previous
        }
        guard bytes.count - pos == n * width else { throw bad("\(bytes.count - pos) value bytes for \(n) points of \(width)") }
        var values = [Double](repeating: 0, count: n)
        bytes.withUnsafeBufferPointer { buf in
            var prev: UInt64 = 0
            for i in 0..<n {
                var x: UInt64 = 0
                for k in 0..<width { x |= UInt64(buf[pos + k * n + i]) << (8 * k) }
                prev ^= x
                values[i] = width == 4 ? Double(Float(bitPattern: UInt32(truncatingIfNeeded: prev))) : Double(bitPattern: prev)
            }
        }
        return MetricSeries(steps: steps, values: values)
    }

    /// The file name of a metric in the run tree: letters, digits, `.`, `_`, `-` as they are,
    /// every other byte as `%XX` (so `val/acc` is `val%2Facc`).
    public static func fileName(_ metric: String) -> String {
        var out = ""
        for b in metric.utf8 {
            let c = Character(Unicode.Scalar(b))
            if b < 0x80, c.isLetter || c.isNumber || c == "_" || c == "-" || (c == "." && !out.isEmpty) { out.append(c) }
            else { out += "%" + String(b, radix: 16, uppercase: true).leftPadded(2) }
        }
        return out
    }
}

func appendVarint(_ out: inout [UInt8], _ v: UInt64) {
    var v = v
    while v >= 0x80 {
        out.append(UInt8(truncatingIfNeeded: v) | 0x80)
        v >>= 7
    }
    out.append(UInt8(v))
}

func readVarint(_ bytes: [UInt8], _ pos: inout Int) throws -> UInt64 {
    var v: UInt64 = 0
    var shift: UInt64 = 0
    while pos < bytes.count, shift < 64 {
        let b = bytes[pos]
        pos += 1
        v |= UInt64(b & 0x7F) << shift
        if b < 0x80 { return v }
        shift += 7
    }
    throw StoreError(.integrity, "metric series: truncated number")
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
