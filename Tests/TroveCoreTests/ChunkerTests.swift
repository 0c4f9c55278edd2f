import TroveCore
import TroveTestSupport
import XCTest

final class ChunkerTests: XCTestCase {
    let small = ChunkerParameters(minSize: 256, avgSize: 1024, maxSize: 4096)

    func lengths(_ data: [UInt8], _ p: ChunkerParameters) -> [Int] { Chunker.chunkLengths(data, parameters: p) }

    func testDefaultParametersMatchTheDesign() {
        XCTAssertEqual(ChunkerParameters.default, ChunkerParameters(minSize: 16 << 10, avgSize: 64 << 10, maxSize: 256 << 10))
        XCTAssertNoThrow(try ChunkerParameters.default.validate())
        XCTAssertThrowsError(try ChunkerParameters(minSize: 100, avgSize: 1000, maxSize: 4000).validate())
    }

    func testGearTableIsTheFormatConstant() {
        XCTAssertEqual(Chunker.gear.count, 256)
        XCTAssertEqual(Set(Chunker.gear).count, 256)
        XCTAssertEqual(String(Chunker.gear[0], radix: 16), "c4f36a618e68c980")
        XCTAssertEqual(String(Chunker.gear[255], radix: 16), "c2b5f2cfe7d173c7")
    }

    /// Golden boundaries: seeded data, default parameters. A change here changes every chunk id.
    func testGoldenBoundariesForSeededData() {
        let data = SeededBytes.bytes(seed: 42, count: 1 << 20)
        let l = lengths(data, .default)
        XCTAssertEqual(l.reduce(0, +), 1 << 20)
        XCTAssertEqual(Array(l.prefix(6)), [72_327, 57_916, 105_491, 70_466, 75_459, 84_234])
        XCTAssertEqual(l.count, 13)
        let ids = data.withUnsafeBytes { buf -> [String] in
            var off = 0
            return l.prefix(2).map { n in defer { off += n }; return SHA256.hash(UnsafeRawBufferPointer(rebasing: buf[off..<(off + n)])).short(16) }
        }
        XCTAssertEqual(ids, ["d5c7483d981c15a9", "05641342458fb79f"])
    }

    func testFastLoopCutsExactlyWhereTheReferenceLoopCuts() {
        for seed in UInt64(1)...20 {
            let data = SeededBytes.bytes(seed: seed, count: 64 << 10)
            data.withUnsafeBufferPointer { buf in
                var off = 0
                while off < buf.count {
                    let fast = Chunker.cut(buf.baseAddress! + off, count: buf.count - off, parameters: small)
                    let ref = Chunker.referenceCut(buf.baseAddress! + off, count: buf.count - off, parameters: small)
                    XCTAssertEqual(fast, ref, "seed \(seed) offset \(off)")
                    off += ref
                }
            }
        }
    }

    func testChunksRespectMinAndMax() {
        let data = SeededBytes.bytes(seed: 7, count: 256 << 10)
        let l = lengths(data, small)
        XCTAssertEqual(l.reduce(0, +), data.count)
        for n in l.dropLast() {
            XCTAssertGreaterThanOrEqual(n, small.minSize)
            XCTAssertLessThanOrEqual(n, small.maxSize)
        }
        let mean = Double(data.count) / Double(l.count)
        XCTAssertGreaterThan(mean, 700)
        XCTAssertLessThan(mean, 1800)
    }

    func testZerosGiveMaximumChunks() {
        let l = lengths([UInt8](repeating: 0, count: 20_000), small)
        XCTAssertEqual(l, [4096, 4096, 4096, 4096, 3616])
    }

    func testStreamingGivesTheSameChunksWhateverTheSliceSize() {
        let data = SeededBytes.bytes(seed: 9, count: 100_000)
        let whole = lengths(data, small)
        for slice in [1, 37, 255, 4096, 100_000] {
            let chunker = StreamingChunker(parameters: small)
            var got: [Int] = []
            data.withUnsafeBytes { buf in
                var off = 0
                while off < buf.count {
                    let end = min(off + slice, buf.count)
                    chunker.feed(UnsafeRawBufferPointer(rebasing: buf[off..<end])) { got.append($0.count) }
                    off = end
                }
            }
            chunker.finish { got.append($0.count) }
            XCTAssertEqual(got, whole, "slice \(slice)")
        }
    }

    func testAnInsertChangesOnlyNearbyBoundaries() {
        var data = SeededBytes.bytes(seed: 11, count: 200_000)
        let before = lengths(data, small)
        data.insert(contentsOf: SeededBytes.bytes(seed: 12, count: 100), at: 100_000)
        let after = lengths(data, small)
        func cuts(_ l: [Int]) -> [Int] { var s = 0; return l.map { s += $0; return s } }
        let b = cuts(before), a = cuts(after)
        let unchangedBefore = b.filter { $0 < 100_000 - small.maxSize }
        XCTAssertTrue(unchangedBefore.allSatisfy { a.contains($0) })
        let shiftedAfter = b.filter { $0 > 100_000 + small.maxSize * 2 }.map { $0 + 100 }
        XCTAssertTrue(shiftedAfter.allSatisfy { a.contains($0) })
        let differing = Set(a).symmetricDifference(Set(b.map { $0 >= 100_000 ? $0 + 100 : $0 })).count
        XCTAssertLessThanOrEqual(differing, 6)
    }
}
