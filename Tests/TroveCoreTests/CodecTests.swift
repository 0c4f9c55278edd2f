import TroveCore
import TroveTestSupport
import XCTest

final class CodecTests: XCTestCase {
    func id(_ n: UInt64) -> ObjectID { ObjectID(w0: n, w1: n &* 3, w2: n &* 5, w3: n &* 7) }

    func testObjectIDHexRoundTripsAndRejectsBadInput() {
        let a = SHA256.hash(Array("hello".utf8))
        XCTAssertEqual(a.hex, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        XCTAssertEqual(ObjectID(hex: a.hex), a)
        XCTAssertEqual(ObjectID(hex: a.hex.uppercased()), a)
        XCTAssertNil(ObjectID(hex: String(a.hex.dropLast())))
        XCTAssertNil(ObjectID(hex: String(a.hex.dropLast()) + "g"))
        XCTAssertEqual(ObjectID(bytes: a.bytes), a)
        let r = ObjectID.prefixRange("2cf24db")!
        XCTAssertTrue(r.low <= a && a <= r.high)
        XCTAssertFalse(ObjectID.isHexPrefix("xyz"))
    }

    func testStreamingHashEqualsOneShot() {
        let data = SeededBytes.bytes(seed: 3, count: 100_000)
        let h = SHA256.Hasher()
        h.update(Array(data[..<333]))
        h.update(Array(data[333...]))
        XCTAssertEqual(h.finish(), SHA256.hash(data))
    }

    /// Chunk ids hashed 16 side by side must equal OpenSSL's, for every length class the
    /// padding treats differently (0, 55, 56, 63, 64, 119, 120 bytes …), at odd addresses, in
    /// groups smaller and larger than 16 lanes and larger than the kernel's on-stack order.
    func testSideBySideHashingEqualsOpenSSLForEveryPaddingCase() {
        // On a CPU with AVX-512 the kernel must be in use: it is off only if its known answers failed.
        let flags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.split(separator: "\n").first { $0.hasPrefix("flags") }
        let hasAVX512 = flags.map { $0.contains(" avx512f") && $0.contains(" avx512bw") } ?? false
        if hasAVX512 && ProcessInfo.processInfo.environment["TROVE_SHA256_LANES"] != "1" {
            XCTAssertTrue(SHA256.hashesSideBySide, "this CPU has AVX-512 but the 16-lane SHA-256 kernel failed its known-answer test")
        }
        if !SHA256.hashesSideBySide { print("note: this CPU hashes one message at a time; checking that path") }
        var rng = SeededBytes(seed: 7)
        let data = rng.bytes((1 << 20) + 4096)
        data.withUnsafeBytes { all in
            let edge = [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 16 << 10, 65_535, 1 << 20]
            for count in [1, 2, 15, 16, 17, 40, 600] {
                let messages = (0..<count).map { k -> UnsafeRawBufferPointer in
                    let length = k < edge.count && count < 600 ? edge[k] : Int.random(in: 0...300_000, using: &rng)
                    let start = Int.random(in: 0..<4096, using: &rng)
                    return UnsafeRawBufferPointer(rebasing: all[start..<(start + length)])
                }
                let got = SHA256.hash(messages: messages)
                XCTAssertEqual(got.count, count)
                for (k, m) in messages.enumerated() where got[k] != SHA256.hash(m) {
                    XCTFail("message \(k) of \(count) (\(m.count) bytes) hashed to \(got[k].short()), OpenSSL says \(SHA256.hash(m).short())")
                }
            }
        }
    }

    func testTreeRoundTripsSortedAndRejectsUnsafeNames() throws {
        let t = try Tree(entries: [
            .init(name: "b.bin", kind: .file, id: id(1), size: 10),
            .init(name: "a", kind: .directory, id: id(2), size: 20),
            .init(name: "run.sh", kind: .file, executable: true, id: id(3), size: 5),
            .init(name: "l", kind: .symlink, id: id(4), size: 3),
        ])
        XCTAssertEqual(t.entries.map(\.name), ["a", "b.bin", "l", "run.sh"])
        XCTAssertEqual(try Tree.decode(t.encode()), t)
        for bad in ["", ".", "..", "a/b", ".git", ".trove", ".GIT", "a\u{0}b", "a\\b"] {
            XCTAssertThrowsError(try Tree(entries: [.init(name: bad, kind: .file, id: id(1), size: 1)]), bad)
            let crafted = Tree.unchecked(entries: [.init(name: bad, kind: .file, id: id(1), size: 1)])
            XCTAssertThrowsError(try Tree.decode(crafted.encode()), bad) { error in
                XCTAssertEqual((error as? CoreError)?.code, .invalidName, bad)
            }
        }
        XCTAssertThrowsError(try Tree(entries: [.init(name: "x", kind: .file, id: id(1), size: 1), .init(name: "x", kind: .file, id: id(2), size: 1)]))
    }

    func testTreeDecodeRejectsUnsortedTruncatedAndTrailingBytes() throws {
        let unsorted = Tree.unchecked(entries: [.init(name: "b", kind: .file, id: id(1), size: 1), .init(name: "a", kind: .file, id: id(2), size: 1)])
        XCTAssertThrowsError(try Tree.decode(unsorted.encode()))
        let good = try Tree(entries: [.init(name: "a", kind: .file, id: id(1), size: 1)]).encode()
        XCTAssertThrowsError(try Tree.decode(Array(good.dropLast())))
        XCTAssertThrowsError(try Tree.decode(good + [0]))
        var badVersion = good
        badVersion[4] = 9
        XCTAssertThrowsError(try Tree.decode(badVersion)) { XCTAssertEqual(($0 as? CoreError)?.code, .unsupportedVersion) }
    }

    func testCommitRoundTripsWithSortedMetadata() throws {
        let c = Commit(tree: id(1), parents: [id(2), id(3)], author: "A <a@b>", time: 1_700_000_000, timezoneOffset: -300,
                       kind: .run, gitCommit: "abc", metadata: ["lr": "0.1", "batch": "32"], message: "train\nmore")
        let d = try Commit.decode(c.encode())
        XCTAssertEqual(d, c)
        XCTAssertEqual(d.metadata.map(\.key), ["batch", "lr"])
        XCTAssertEqual(d.timezoneOffset, -300)
        XCTAssertThrowsError(try Commit.decode(Array(c.encode().dropLast(2))))
    }

    func testManifestRoundTripsAndDetectsTampering() throws {
        let chunks = (0..<200).map { ChunkRef(id: SHA256.hash(Array("c\($0)".utf8)), length: 1000) }
        let blob = id(9)
        let (m, segments) = BlobManifest.make(blobID: blob, size: 200_000, chunks: chunks)
        XCTAssertEqual(m.level, .segments)
        XCTAssertGreaterThan(segments.count, 1)
        var rebuilt: [ChunkRef] = []
        for (sid, bytes) in segments {
            XCTAssertEqual(SHA256.hash(bytes), sid)
            rebuilt += try Segment.decode(bytes).chunks
        }
        XCTAssertEqual(rebuilt, chunks)
        let enc = m.encode()
        XCTAssertEqual(try BlobManifest.decode(enc, expectedID: blob), m)
        var flipped = enc
        flipped[50] ^= 1
        XCTAssertThrowsError(try BlobManifest.decode(flipped)) { XCTAssertEqual(($0 as? CoreError)?.code, .integrity) }
        XCTAssertThrowsError(try BlobManifest.decode(enc, expectedID: id(8)))
        let small = BlobManifest.make(blobID: blob, size: 3000, chunks: Array(chunks.prefix(3))).0
        XCTAssertEqual(small.level, .chunks)
    }

    func testSegmentsSplitAtContentDefinedPoints() {
        let chunks = (0..<1000).map { ChunkRef(id: SHA256.hash(Array("k\($0)".utf8)), length: 1) }
        let a = Segment.split(chunks)
        XCTAssertEqual(a.flatMap { $0 }, chunks)
        XCTAssertTrue(a.dropLast().allSatisfy { $0.count >= 16 && $0.count <= 256 })
        // Replacing one chunk changes only its own segment (and the boundary it may move).
        var edited = chunks
        edited[500] = ChunkRef(id: SHA256.hash(Array("new".utf8)), length: 1)
        let b = Segment.split(edited)
        let changed = Set(b.map { Segment(chunks: $0).encode() }).subtracting(Set(a.map { Segment(chunks: $0).encode() }))
        XCTAssertLessThanOrEqual(changed.count, 2)
    }

    func testPackTrailerRoundTripsAndChecksItsChecksum() throws {
        var recs: [PackFormat.IndexRecord] = []
        for k in 0..<5 {
            let offset = UInt64(16 + k * 100)
            recs.append(PackFormat.IndexRecord(id: id(UInt64(k + 1)), type: .chunk, codec: .raw, offset: offset, rawLength: 56, storedLength: 56))
        }
        let indexOffset: UInt64 = 16 + 500
        let (trailer, checksum) = PackFormat.trailer(records: recs, indexOffset: indexOffset)
        let fileSize = indexOffset + UInt64(trailer.count)
        let footer = try PackFormat.parseFooter(Array(trailer.suffix(PackFormat.footerSize)), fileSize: fileSize, pack: "p")
        XCTAssertEqual(footer.checksum, checksum)
        let parsed: [PackFormat.IndexRecord] = try PackFormat.parseIndex(trailer, footer: footer, pack: "p")
        XCTAssertEqual(parsed.map { $0.id }, recs.map { $0.id }.sorted())
        var bad = trailer
        bad[10] ^= 0xFF
        XCTAssertThrowsError(try PackFormat.parseIndex(bad, footer: footer, pack: "p")) { XCTAssertEqual(($0 as? CoreError)?.code, .integrity) }
        XCTAssertThrowsError(try PackFormat.parseFooter(Array(trailer.suffix(PackFormat.footerSize)), fileSize: fileSize + 1, pack: "p"))
    }

    func testCompressionPaysOnlyForCompressibleData() throws {
        let c = Compressor(level: 3)
        let text = Array(String(repeating: "the model weight layer ", count: 3000).utf8)
        let random = SeededBytes.bytes(seed: 5, count: 64 << 10)
        var out = [UInt8](repeating: 0, count: Compressor.bound(max(text.count, random.count)))
        let n = try XCTUnwrap(text.withUnsafeBytes { src in out.withUnsafeMutableBytes { c.compressIfPays(src, into: $0.baseAddress!, capacity: $0.count) } })
        XCTAssertLessThan(n, text.count / 4)
        var back = [UInt8](repeating: 0, count: text.count)
        try out.withUnsafeBytes { src in try back.withUnsafeMutableBytes { try Decompressor().decompress(UnsafeRawBufferPointer(rebasing: src[..<n]), into: $0.baseAddress!, rawLength: text.count) } }
        XCTAssertEqual(back, text)
        XCTAssertNil(random.withUnsafeBytes { src in out.withUnsafeMutableBytes { c.compressIfPays(src, into: $0.baseAddress!, capacity: $0.count) } })
    }
}

final class HostilePackTrailerTests: XCTestCase {
    /// A footer or index written by someone else (a bucket anyone can write to) may hold any
    /// numbers: they are refused, never trapped on.
    func testOffsetsNearTheTopOfUInt64AreRefusedNotTrappedOn() throws {
        var w = ByteWriter()
        w.u64(UInt64.max - 3); w.u32(1); w.u32(PackFormat.version)
        w.raw([UInt8](repeating: 0, count: 32)); w.raw(PackFormat.endMagic)
        XCTAssertThrowsError(try PackFormat.parseFooter(w.bytes, fileSize: 100, pack: "p"))
        let records = [PackFormat.IndexRecord(id: SHA256.hash([1]), type: .chunk, codec: .raw, offset: UInt64.max - 10, rawLength: 1, storedLength: 100)]
        let (trailer, _) = PackFormat.trailer(records: records, indexOffset: 16)
        let footer = try PackFormat.parseFooter(Array(trailer.suffix(PackFormat.footerSize)), fileSize: 16 + UInt64(trailer.count), pack: "p")
        XCTAssertThrowsError(try PackFormat.parseIndex(trailer, footer: footer, pack: "p")) { e in
            XCTAssertTrue("\(e)".contains("points past its data"), "\(e)")
        }
    }
}
