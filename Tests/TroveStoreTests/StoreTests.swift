import TroveCore
import TroveStore
import TroveTestSupport
import XCTest

/// The store in-process, with tiny chunks so that edge cases are cheap to reach.
final class StoreTests: XCTestCase {
    let tiny = ChunkerParameters(minSize: 256, avgSize: 1024, maxSize: 4096)

    func makeStore(_ t: TempDir) throws -> Store {
        try Store.initialize(root: t.path + "/.trove", workTree: t.path, parameters: tiny)
    }

    func testIngestDeduplicatesAndALargeFileUsesSegments() throws {
        let t = TempDir()
        let store = try makeStore(t)
        var data = SeededBytes.bytes(seed: 1, count: 1 << 20)
        writeFile(t.path + "/a.bin", data)
        let w = ObjectWriter(store: store)
        let r1 = try Ingester(store: store, writer: w).ingest(paths: [t.path + "/a.bin"])[0]
        try w.finish()
        XCTAssertEqual(r1.blobID, SHA256.hash(data))
        XCTAssertGreaterThan(r1.chunkCount, 500)
        XCTAssertEqual(try store.type(of: r1.blobID), .blob)
        XCTAssertEqual(try Materializer.readBlob(store: store, blob: r1.blobID), data)

        // A 100-byte edit stores a few chunks and a few segments, not the file.
        data.replaceSubrange(500_000..<500_100, with: SeededBytes.bytes(seed: 2, count: 100))
        writeFile(t.path + "/a.bin", data)
        let before = w.storedBytes
        let r2 = try Ingester(store: store, writer: w).ingest(paths: [t.path + "/a.bin"])[0]
        try w.finish()
        XCTAssertLessThanOrEqual(r2.newChunks, 12, "chunks near the edit only (of \(r2.chunkCount))")
        XCTAssertLessThan(w.storedBytes - before, 40_000, "chunks plus the changed manifest segments")
        XCTAssertEqual(try Materializer.readBlob(store: store, blob: r2.blobID), data)
    }

    func testSmallAndEmptyFilesAreTheirOwnChunk() throws {
        let t = TempDir()
        let store = try makeStore(t)
        writeFile(t.path + "/empty", [])
        writeFile(t.path + "/small", Array("hello".utf8))
        let w = ObjectWriter(store: store)
        let r = try Ingester(store: store, writer: w).ingest(paths: [t.path + "/empty", t.path + "/small"])
        try w.finish()
        XCTAssertEqual(r[0].blobID, SHA256.hash([UInt8]()))
        XCTAssertEqual(try store.type(of: r[0].blobID), .chunk)
        XCTAssertEqual(try Materializer.readBlob(store: store, blob: r[1].blobID), Array("hello".utf8))
    }

    func testARefMoveSucceedsEvenWhenItsReflogCannotBeWritten() throws {
        let t = TempDir()
        let store = try makeStore(t)
        let refs = Refs(root: store.root)
        let a = SHA256.hash(Array("a".utf8))
        // heads/x existed and was deleted; its reflog file stays, so logs/refs/heads/x cannot
        // become the folder that heads/x/y's reflog needs.
        try refs.update("heads/x", from: nil, to: a, message: "create")
        try refs.update("heads/x", from: a, to: nil, message: "delete")
        XCTAssertNoThrow(try refs.update("heads/x/y", from: nil, to: a, message: "create below"))
        XCTAssertEqual(try refs.read("heads/x/y"), a, "the ref moved, and the command says so")
    }

    func testRefsMoveOnlyFromTheExpectedValue() throws {
        let t = TempDir()
        let store = try makeStore(t)
        let refs = Refs(root: store.root)
        let a = SHA256.hash(Array("a".utf8)), b = SHA256.hash(Array("b".utf8))
        try refs.update("heads/x", from: nil, to: a, message: "create")
        XCTAssertThrowsError(try refs.update("heads/x", from: nil, to: b, message: "again")) {
            XCTAssertEqual(($0 as? StoreError)?.code, .conflict)
            XCTAssertTrue(($0 as? StoreError)?.message.contains("retry") == true)
        }
        try refs.update("heads/x", from: a, to: b, message: "move")
        XCTAssertEqual(try refs.read("heads/x"), b)
        XCTAssertEqual(try refs.reflog("heads/x").map(\.new), [a, b])
        for bad in ["heads/../x", "heads/.x", "heads/a b", "heads/x.lock", "", "heads//x"] {
            XCTAssertThrowsError(try refs.update(bad, from: nil, to: a, message: "bad"), bad)
        }
        XCTAssertThrowsError(try refs.setHead(.detached(a), expected: .detached(b), message: "cas")) {
            XCTAssertEqual(($0 as? StoreError)?.code, .conflict)
        }
    }

    func testAPackTheIndexMissedIsIndexedOnOpen() throws {
        let t = TempDir()
        let store = try makeStore(t)
        writeFile(t.path + "/a.bin", SeededBytes.bytes(seed: 4, count: 50_000))
        let w = ObjectWriter(store: store)
        let id = try Ingester(store: store, writer: w).ingest(paths: [t.path + "/a.bin"])[0].blobID
        try w.finish()
        // As after a crash between rename and index: the rows are gone, the pack is there.
        try store.index.removePacks(try store.index.packs().map(\.name))
        XCTAssertFalse(try store.has(id))
        let reopened = try Store.open(root: store.root, workTree: t.path)
        XCTAssertTrue(try reopened.has(id))
        XCTAssertEqual(try Materializer.readBlob(store: reopened, blob: id), SeededBytes.bytes(seed: 4, count: 50_000))
    }

    func testAlternatesServeObjectsOfAnotherStore() throws {
        let shared = TempDir(), local = TempDir()
        let cache = try makeStore(shared)
        writeFile(shared.path + "/w.bin", SeededBytes.bytes(seed: 6, count: 20_000))
        let w = ObjectWriter(store: cache)
        let id = try Ingester(store: cache, writer: w).ingest(paths: [shared.path + "/w.bin"])[0].blobID
        try w.finish()
        let mine = try makeStore(local)
        XCTAssertFalse(try mine.has(id))
        try mine.setAlternates([cache.root])
        let reopened = try Store.open(root: mine.root, workTree: local.path)
        XCTAssertEqual(try Materializer.readBlob(store: reopened, blob: id), SeededBytes.bytes(seed: 6, count: 20_000))
    }

    func testStatusSeesAddsEditsDeletesAndUntracked() throws {
        let t = TempDir()
        let store = try makeStore(t)
        let wt = try Worktree(store: store)
        writeFile(t.path + "/a", [1])
        writeFile(t.path + "/b", [2])
        _ = try wt.add([""], writer: ObjectWriter(store: store), progress: nil)
        _ = try wt.commit(message: "m", author: .init(name: "t", time: 0, offsetMinutes: 0), allowEmpty: false, writer: ObjectWriter(store: store))
        XCTAssertTrue(try wt.status().isClean)
        writeFile(t.path + "/a", [1, 1])
        try FileManager.default.removeItem(atPath: t.path + "/b")
        writeFile(t.path + "/c", [3])
        let s = try wt.status()
        XCTAssertEqual(s.unstaged.map(\.path), ["a", "b"])
        XCTAssertEqual(s.unstaged.map(\.change), [.modified, .deleted])
        XCTAssertEqual(s.untracked, ["c"])
        XCTAssertThrowsError(try wt.commit(message: "same", author: .init(name: "t", time: 0, offsetMinutes: 0), allowEmpty: false,
                                           writer: ObjectWriter(store: store)))
    }
}

extension StoreTests {
    /// A clone's streaming checkout takes a file only when every chunk arrived with the length
    /// its manifest gives: a manifest that swaps two chunks' lengths (their sum, and so the
    /// file's size, unchanged) leaves the file to the checkout, which names the problem.
    func testAStreamingCheckoutRefusesAChunkWhoseLengthDisagreesWithTheManifest() throws {
        let t = TempDir()
        let store = try makeStore(t)
        let one = SeededBytes.bytes(seed: 31, count: 5_000_000), two = SeededBytes.bytes(seed: 32, count: 4_000_000)
        let (c1, c2) = (SHA256.hash(one), SHA256.hash(two))
        /// A manifest (blob `blob`) of c1 then c2 with these lengths, and what streaming them gives.
        func streamed(_ name: String, blob: ObjectID, lengths: (UInt64, UInt64)) throws -> [String: String] {
            let w = ObjectWriter(store: store)
            let (manifest, _) = BlobManifest.make(blobID: blob, size: 9_000_000, chunks: [ChunkRef(id: c1, length: lengths.0), ChunkRef(id: c2, length: lengths.1)])
            try w.put(.blob, manifest.encode(), id: blob)
            try w.finish()
            let s = try StreamingCheckout(store: store, root: t.path, entries: [(name, Tree.Entry(name: name, kind: .file, id: blob, size: 9_000_000))])
            try s.receive([PackedObject(type: .chunk, codec: .raw, rawLength: one.count, id: c1, stored: one),
                           PackedObject(type: .chunk, codec: .raw, rawLength: two.count, id: c2, stored: two)])
            return s.finish().compactMapValues { if case .temp(let tmp) = $0.file { tmp } else { nil } }
        }
        let good = try streamed("big.bin", blob: SHA256.hash(one + two), lengths: (5_000_000, 4_000_000))
        XCTAssertEqual(good.count, 1)
        XCTAssertEqual(readFile(try XCTUnwrap(good["big.bin"])), one + two)
        unlink(good["big.bin"]!)
        // The same chunks under a manifest that swaps their lengths (another blob id, same size).
        let forged = try streamed("forged.bin", blob: SHA256.hash(two + one), lengths: (4_000_000, 5_000_000))
        XCTAssertTrue(forged.isEmpty, "not handed to the checkout")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: t.path).filter { $0.hasPrefix(".trove-tmp") }, [], "its temp file is gone")
    }

    /// A clone's small files of one chunk are written at their paths as that chunk arrives and
    /// handed to the checkout as they are; a chunk whose length is not the file's size writes
    /// nothing; files written before an error are removed by `abandon`, and only then.
    func testAStreamingCheckoutWritesSmallFilesInPlaceAndRemovesThemWhenAbandoned() throws {
        let t = TempDir()
        let store = try makeStore(t)
        let root = t.sub("work")
        let a = SeededBytes.bytes(seed: 41, count: 3_000), b = Array("#!/bin/sh\necho hi\n".utf8)
        let (ia, ib) = (SHA256.hash(a), SHA256.hash(b))
        let entries: [(String, Tree.Entry)] = [
            ("d/a.bin", Tree.Entry(name: "a.bin", kind: .file, id: ia, size: UInt64(a.count))),
            ("d/e/copy.bin", Tree.Entry(name: "copy.bin", kind: .file, id: ia, size: UInt64(a.count))),
            ("run.sh", Tree.Entry(name: "run.sh", kind: .file, executable: true, id: ib, size: UInt64(b.count))),
            ("short.bin", Tree.Entry(name: "short.bin", kind: .file, id: SHA256.hash(b + b), size: UInt64(b.count * 2))),
        ]
        func chunk(_ bytes: [UInt8], id: ObjectID? = nil) -> PackedObject {
            PackedObject(type: .chunk, codec: .raw, rawLength: bytes.count, id: id ?? SHA256.hash(bytes), stored: bytes)
        }
        // The test store's chunks are at most 4 KiB: a larger file is not one chunk, and is left to the checkout.
        let big = SeededBytes.bytes(seed: 42, count: 5_000)
        let s = try StreamingCheckout(store: store, root: root, entries: entries + [("big.bin", Tree.Entry(name: "big.bin", kind: .file, id: SHA256.hash(big), size: 5_000))])
        // short.bin's chunk arrives with half the length the tree gives.
        try s.receive([chunk(a), chunk(b), chunk(b, id: SHA256.hash(b + b)), chunk(big)])
        let ready = s.finish()
        XCTAssertEqual(Set(ready.keys), ["d/a.bin", "d/e/copy.bin", "run.sh"])
        for (path, bytes) in [("d/a.bin", a), ("d/e/copy.bin", a), ("run.sh", b)] {
            guard case .inPlace(let w)? = ready[path]?.file else { return XCTFail("\(path) not written in place") }
            XCTAssertEqual(w.path, path)
            XCTAssertEqual(readFile(root + "/" + path), bytes, path)
        }
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: root + "/run.sh"), "the mode comes with it")
        XCTAssertFalse(FileIO.exists(root + "/short.bin"), "a length that disagrees writes nothing")
        XCTAssertFalse(FileIO.exists(root + "/big.bin"), "larger than a chunk can be: not taken for one")
        s.abandon()
        XCTAssertEqual(readFile(root + "/d/a.bin"), a, "handed over to the checkout: abandon leaves it")

        let other = t.sub("other")
        let cut = try StreamingCheckout(store: store, root: other, entries: entries)
        try cut.receive([chunk(a)])
        cut.abandon()
        XCTAssertFalse(FileIO.exists(other + "/d/a.bin") || FileIO.exists(other + "/d/e/copy.bin"), "a clone that failed leaves no file")
    }
}
