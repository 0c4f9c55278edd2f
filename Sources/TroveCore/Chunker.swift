import CFastCDC

/// FastCDC content-defined chunking with normalised chunking (Xia et al., 2016/2020).
///
/// The gear table, the mask layout and the cut rule are part of the store format
/// (Docs/format.md §Chunking): changing any of them changes every chunk id.
public struct ChunkerParameters: Hashable, Codable, Sendable, CustomStringConvertible {
    /// Smallest chunk in bytes (except a file's last chunk).
    public var minSize: Int
    /// Target average; a power of two.
    public var avgSize: Int
    /// Largest chunk in bytes.
    public var maxSize: Int

    public static let `default` = ChunkerParameters(minSize: 16 << 10, avgSize: 64 << 10, maxSize: 256 << 10)

    public init(minSize: Int, avgSize: Int, maxSize: Int) {
        self.minSize = minSize
        self.avgSize = avgSize
        self.maxSize = maxSize
    }

    /// Checks the bounds the format allows: 64 B ≤ min < avg < max ≤ 16 MiB, avg a power of two.
    public func validate() throws {
        guard minSize >= 64, minSize < avgSize, avgSize < maxSize, maxSize <= 16 << 20,
              avgSize & (avgSize - 1) == 0
        else {
            throw CoreError(.invalidArgument,
                            "invalid chunker parameters \(self): need 64 ≤ min < avg < max ≤ 16 MiB and avg a power of two")
        }
    }

    public var description: String { "min=\(minSize) avg=\(avgSize) max=\(maxSize)" }

    var bits: Int { avgSize.trailingZeroBitCount }
    /// Stricter mask before the average size: log2(avg)+2 high bits (normalisation level 2).
    var maskSmall: UInt64 { Chunker.highMask(bits + 2) }
    /// Looser mask after it: log2(avg)−2 high bits.
    var maskLarge: UInt64 { Chunker.highMask(bits - 2) }
}

public enum Chunker {
    /// The gear table: 256 words from SplitMix64 seeded with 0x54524F5645474541 ("TROVEGEA").
    public static let gear: [UInt64] = {
        var state: UInt64 = 0x5452_4F56_4547_4541
        return (0..<256).map { _ in
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }()

    static func highMask(_ bits: Int) -> UInt64 {
        bits <= 0 ? 0 : ~UInt64(0) << UInt64(64 - bits)
    }

    /// Length of the chunk that starts at `base`, given `count` available bytes.
    ///
    /// When `isFinal` is false the caller must supply at least `maxSize` bytes (or all that is
    /// left); the cut depends only on the bytes of the chunk itself, so any feeding pattern
    /// gives the same chunks.
    @inline(__always)
    public static func cut(_ base: UnsafePointer<UInt8>, count: Int, parameters p: ChunkerParameters) -> Int {
        if count <= p.minSize { return count }
        return Int(trove_fastcdc_cut(base, count, p.minSize, p.avgSize, p.maxSize, p.maskSmall, p.maskLarge, gearTable))
    }

    /// The gear table as a stable C array for the C loop.
    nonisolated(unsafe) static let gearTable: UnsafeMutablePointer<UInt64> = {
        let t = UnsafeMutablePointer<UInt64>.allocate(capacity: 256)
        for (i, g) in gear.enumerated() { t[i] = g }
        return t
    }()

    /// The reference loop, one byte a step; the C loop must give the same cuts (tested).
    public static func referenceCut(_ base: UnsafePointer<UInt8>, count: Int, parameters p: ChunkerParameters) -> Int {
        if count <= p.minSize { return count }
        let n = min(count, p.maxSize)
        let normal = min(p.avgSize, n)
        let maskS = p.maskSmall, maskL = p.maskLarge
        return gear.withUnsafeBufferPointer { table -> Int in
            let g = table.baseAddress!
            var h: UInt64 = 0
            var i = p.minSize
            while i < normal {
                h = (h << 1) &+ g[Int(base[i])]
                if h & maskS == 0 { return i + 1 }
                i += 1
            }
            while i < n {
                h = (h << 1) &+ g[Int(base[i])]
                if h & maskL == 0 { return i + 1 }
                i += 1
            }
            return n
        }
    }

    /// All chunk lengths of a complete buffer (for tests and small inputs).
    public static func chunkLengths(_ buffer: UnsafeRawBufferPointer, parameters: ChunkerParameters) -> [Int] {
        guard let base = buffer.baseAddress?.assumingMemoryBound(to: UInt8.self), buffer.count > 0 else { return [] }
        var lengths: [Int] = []
        var offset = 0
        while offset < buffer.count {
            let length = cut(base + offset, count: buffer.count - offset, parameters: parameters)
            lengths.append(length)
            offset += length
        }
        return lengths
    }

    public static func chunkLengths(_ bytes: [UInt8], parameters: ChunkerParameters) -> [Int] {
        bytes.withUnsafeBytes { chunkLengths($0, parameters: parameters) }
    }
}

/// Streams bytes in slices of any size and hands out complete chunks.
///
/// Holds at most `maxSize + slice` bytes. `emit` receives each chunk's bytes, valid only
/// during the call.
public final class StreamingChunker {
    public let parameters: ChunkerParameters
    private var buffer: UnsafeMutableRawPointer
    private var capacity: Int
    private var start = 0
    private var end = 0

    public init(parameters: ChunkerParameters) {
        self.parameters = parameters
        capacity = parameters.maxSize * 2
        buffer = .allocate(byteCount: capacity, alignment: 64)
    }

    deinit { buffer.deallocate() }

    public func feed(_ bytes: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        var input = bytes
        while !input.isEmpty {
            if end == capacity { compact() }
            let take = min(capacity - end, input.count)
            (buffer + end).copyMemory(from: input.baseAddress!, byteCount: take)
            end += take
            input = UnsafeRawBufferPointer(rebasing: input[take...])
            try drain(final: false, emit: emit)
        }
    }

    public func finish(emit: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        try drain(final: true, emit: emit)
        start = 0
        end = 0
    }

    private func drain(final: Bool, emit: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        while end - start >= parameters.maxSize || (final && end > start) {
            let base = (buffer + start).assumingMemoryBound(to: UInt8.self)
            let length = Chunker.cut(base, count: end - start, parameters: parameters)
            try emit(UnsafeRawBufferPointer(start: buffer + start, count: length))
            start += length
        }
    }

    private func compact() {
        let pending = end - start
        if start > 0 { buffer.copyMemory(from: buffer + start, byteCount: pending) }
        start = 0
        end = pending
        if end == capacity {
            let bigger = UnsafeMutableRawPointer.allocate(byteCount: capacity * 2, alignment: 64)
            bigger.copyMemory(from: buffer, byteCount: end)
            buffer.deallocate()
            buffer = bigger
            capacity *= 2
        }
    }
}
