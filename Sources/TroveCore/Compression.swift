import CZstd

/// zstd compression of one chunk at a time, with a reusable context (one per thread).
public final class Compressor {
    private let cctx: OpaquePointer
    public let level: Int32
    private var sampleBuffer: UnsafeMutableRawPointer
    private let sampleCapacity: Int

    /// Bytes of the chunk start that are test-compressed first.
    public static let sampleSize = 4096
    /// Compression pays when the stored form is at most this share of the raw form.
    public static let paysRatio = 0.9

    public init(level: Int) {
        cctx = ZSTD_createCCtx()
        self.level = Int32(level)
        sampleCapacity = ZSTD_compressBound(Compressor.sampleSize)
        sampleBuffer = .allocate(byteCount: sampleCapacity, alignment: 16)
    }

    deinit {
        ZSTD_freeCCtx(cctx)
        sampleBuffer.deallocate()
    }

    public static func bound(_ count: Int) -> Int { ZSTD_compressBound(count) }

    /// Compresses `source` into `destination` (capacity ≥ `bound(source.count)`) when it pays,
    /// returning the compressed length, or nil to store the chunk raw. A 4 KiB sample is tried
    /// first, so incompressible data costs little.
    public func compressIfPays(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawPointer, capacity: Int) -> Int? {
        guard source.count >= 64, let base = source.baseAddress else { return nil }
        if source.count > Compressor.sampleSize * 2 {
            let n = ZSTD_compressCCtx(cctx, sampleBuffer, sampleCapacity, base, Compressor.sampleSize, 1)
            if ZSTD_isError(n) != 0 || Double(n) > Double(Compressor.sampleSize) * Compressor.paysRatio { return nil }
        }
        let n = ZSTD_compressCCtx(cctx, destination, capacity, base, source.count, level)
        if ZSTD_isError(n) != 0 || Double(n) > Double(source.count) * Compressor.paysRatio { return nil }
        return n
    }
}

public final class Decompressor {
    private let dctx: OpaquePointer
    private var scratch: UnsafeMutableRawPointer?
    private var scratchCapacity = 0

    public init() { dctx = ZSTD_createDCtx() }
    deinit {
        ZSTD_freeDCtx(dctx)
        scratch?.deallocate()
    }

    /// Decompresses into a buffer this decompressor owns (valid until its next use).
    public func decompressToScratch(_ source: UnsafeRawBufferPointer, rawLength: Int) throws -> UnsafeRawBufferPointer {
        if rawLength > scratchCapacity {
            scratch?.deallocate()
            scratchCapacity = max(rawLength, 256 << 10)
            scratch = .allocate(byteCount: scratchCapacity, alignment: 64)
        }
        try decompress(source, into: scratch!, rawLength: rawLength)
        return UnsafeRawBufferPointer(start: scratch, count: rawLength)
    }

    /// Decompresses exactly `rawLength` bytes or throws.
    public func decompress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawPointer, rawLength: Int) throws {
        let n = ZSTD_decompressDCtx(dctx, destination, rawLength, source.baseAddress, source.count)
        if ZSTD_isError(n) != 0 {
            throw CoreError(.compression, "zstd: " + String(cString: ZSTD_getErrorName(n)))
        }
        guard n == rawLength else {
            throw CoreError(.compression, "zstd produced \(n) bytes, expected \(rawLength)")
        }
    }
}
