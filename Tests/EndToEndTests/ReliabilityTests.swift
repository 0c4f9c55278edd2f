import Foundation
import TroveCore
import TroveStore
import TroveTestSupport
import XCTest

/// Crashes, corruption, hostile input, concurrency and full disks, against the real binary.
final class ReliabilityTests: XCTestCase {
    func headID(_ s: TroveSandbox) -> String? {
        let r = s.trove("log", "--json", "-n", "1")
        if r.status == 3 && r.stderr.contains("no commits yet") { return nil }
        XCTAssertEqual(r.status, 0, r.stderr)
        let log = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [[String: Any]]
        return log?.first?["id"] as? String
    }

    func fileHashes(_ root: String) -> [String: ObjectID] {
        var out: [String: ObjectID] = [:]
        let e = FileManager.default.enumerator(atPath: root)!
        while let p = e.nextObject() as? String {
            if p.hasPrefix(".trove") { continue }
            var isDir: ObjCBool = false
            FileManager.default.fileExists(atPath: root + "/" + p, isDirectory: &isDir)
            if !isDir.boolValue, let b = readFile(root + "/" + p) { out[p] = SHA256.hash(b) }
        }
        return out
    }

    /// kill -9 at random instants of add, commit and gc: fsck --full stays clean, HEAD is the
    /// old or the new commit, and every commit that was reported done restores byte for byte.
    func testKill9AtRandomInstantsNeverLosesACommittedByte() throws {
        let s = TroveSandbox("trove-kill")
        s.trove("init")
        var gen = SeededBytes(seed: 77)
        var done: [String: [String: ObjectID]] = [:]
        var killedMidway = 0
        let trials = 24
        for trial in 0..<trials {
            s.write("model.bin", gen.bytes(2 << 20) + Array("trial \(trial)".utf8))
            s.write("new/f\(trial).bin", gen.bytes(1 << 20))
            for k in 0..<10 { s.write("small/s\(trial)-\(k).txt", Array("small \(trial) \(k)".utf8)) }
            let before = headID(s)
            let delay = UInt32.random(in: 0...120_000)
            let kind = trial % 3
            let args: [String] = kind == 2 ? ["gc", "--grace", "0"] : ["add", "."]
            let p = s.start(args)
            usleep(delay)
            p.kill9()
            let first = p.wait()
            var finishedCommit = false
            if kind != 2 && first.status == 0 {
                let c = s.start(["commit", "-m", "trial \(trial)"])
                usleep(UInt32.random(in: 0...30_000))
                c.kill9()
                finishedCommit = c.wait().status == 0
            }
            if first.status != 0 { killedMidway += 1 }
            let fsck = s.trove("fsck", "--full")
            XCTAssertEqual(fsck.status, 0, "trial \(trial): \(fsck.stdout) \(fsck.stderr)")
            let after = headID(s)
            if finishedCommit {
                let id = try XCTUnwrap(after)
                XCTAssertNotEqual(id, before)
                done[id] = fileHashes(s.work)
            } else if after != before {
                // The kill came after the ref moved: that commit is complete and must be the
                // one `commit` was making (its parent is the old HEAD).
                let id = try XCTUnwrap(after, "trial \(trial): HEAD vanished")
                let parents = (s.json("show", "--json", id) as? [String: Any])?["parents"] as? [String]
                XCTAssertEqual(parents?.first, before, "trial \(trial): HEAD moved somewhere unexpected")
                done[id] = fileHashes(s.work)
            }
            // Make sure the next trial starts from a committed state.
            if kind != 2 {
                XCTAssertEqual(s.trove("add", ".").status, 0)
                let c = s.trove("commit", "-m", "settle \(trial)")
                if c.status == 0, let id = headID(s) { done[id] = fileHashes(s.work) }
            }
        }
        XCTAssertGreaterThan(killedMidway, 3, "the kills should land inside operations")
        XCTAssertGreaterThan(done.count, trials / 2, "most trials end with a commit to check")
        for (id, files) in done {
            let out = s.temp.sub("restore-\(id.prefix(8))")
            let r = s.trove("restore", id, "--to", out)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(fileHashes(out), files, "commit \(id) restores byte-identical")
        }
        XCTAssertEqual(s.trove("fsck", "--full").status, 0)
    }

    func testConcurrentCommitsBothLandOrOneIsToldToRetry() throws {
        let s = TroveSandbox("trove-race")
        s.trove("init")
        s.write("base.txt", [1])
        s.trove("add", ".")
        s.trove("commit", "-m", "base")
        var gen = SeededBytes(seed: 5)
        for round in 0..<6 {
            s.write("a/r\(round).bin", gen.bytes(512 << 10))
            s.write("b/r\(round).bin", gen.bytes(512 << 10))
            let script = { (dir: String) in "$TROVE add \(dir) && $TROVE commit -m '\(dir) \(round)'" }
            var env = s.environment
            env["TROVE"] = Runner.trovePath
            let p1 = Runner.start("/bin/bash", ["-c", script("a")], cwd: s.work, environment: env)
            let p2 = Runner.start("/bin/bash", ["-c", script("b")], cwd: s.work, environment: env)
            for r in [p1.wait(), p2.wait()] {
                let ok = r.status == 0
                    || (r.status == 5 && r.stderr.contains("retry"))
                    || (r.status == 2 && r.stderr.contains("nothing to commit"))
                XCTAssertTrue(ok, "round \(round): status \(r.status): \(r.stderr)")
            }
            XCTAssertEqual(s.trove("fsck", "--full").status, 0)
        }
        XCTAssertEqual(s.trove("add", ".").status, 0)
        s.trove("commit", "-m", "final")
        let restored = s.temp.sub("out")
        XCTAssertEqual(s.trove("restore", "HEAD", "--to", restored).status, 0)
        XCTAssertEqual(fileHashes(restored), fileHashes(s.work))
    }

    func testAFlippedByteIsNamedByFsckAndNeverWrittenOut() throws {
        let s = TroveSandbox("trove-flip")
        s.trove("init")
        let data = SeededBytes.bytes(seed: 8, count: 2 << 20)
        s.write("weights.bin", data)
        s.trove("add", ".")
        s.trove("commit", "-m", "w")
        let packs = try FileManager.default.contentsOfDirectory(atPath: s.path(".trove/packs")).filter { $0.hasSuffix(".pack") }
        let big = try XCTUnwrap(packs.max { (FileIO.fileSize(s.path(".trove/packs/" + $0)) ?? 0) < (FileIO.fileSize(s.path(".trove/packs/" + $1)) ?? 0) })
        let path = s.path(".trove/packs/" + big)
        var bytes = try XCTUnwrap(readFile(path))
        bytes[bytes.count / 2] ^= 0x40
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        FileManager.default.createFile(atPath: path, contents: Data(bytes))

        let fsck = s.trove("fsck", "--full")
        XCTAssertEqual(fsck.status, 4)
        XCTAssertTrue(fsck.stdout.contains("[pack \(big.dropLast(5))]"), fsck.stdout)
        XCTAssertTrue(fsck.stdout.contains("[object "), fsck.stdout)

        let out = s.temp.sub("out")
        let r = s.trove("restore", "HEAD", "--to", out)
        XCTAssertEqual(r.status, 4, r.stderr)
        XCTAssertTrue(r.stderr.contains("corrupt"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/weights.bin"))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out), [], "no temporary file is left behind")

        try FileManager.default.removeItem(atPath: s.path("weights.bin"))
        let co = s.trove("checkout", "HEAD", "weights.bin")
        XCTAssertEqual(co.status, 4)
        XCTAssertFalse(FileManager.default.fileExists(atPath: s.path("weights.bin")))
    }

    /// A large file is restored in 8 MiB windows whose chunks are verified together before the
    /// window is written; a flipped byte in a chunk inside a window or in one that crosses a
    /// window's edge must fail the restore and leave no file.
    func testAFlippedByteInALargeFileFailsItsRestoreWhereverTheChunkLies() throws {
        let data = SeededBytes.bytes(seed: 21, count: 20 << 20)
        for (name, at) in [("window edge", (8 << 20) - 32), ("inside a window", (12 << 20) + 100_000)] {
            let s = TroveSandbox("trove-flip-large")
            s.trove("init")
            s.write("model.bin", data)
            s.trove("add", ".")
            s.trove("commit", "-m", "m")
            let good = s.temp.sub("good")
            XCTAssertEqual(s.trove("restore", "HEAD", "--to", good).status, 0)
            XCTAssertEqual(readFile(good + "/model.bin"), data)

            // Random data is stored raw, so the file's bytes appear in a pack as they are.
            let needle = Array(data[at..<(at + 64)])
            var flipped = false
            for pack in try FileManager.default.contentsOfDirectory(atPath: s.path(".trove/packs")) where pack.hasSuffix(".pack") {
                let path = s.path(".trove/packs/" + pack)
                var bytes = try XCTUnwrap(readFile(path))
                guard let k = firstOffset(of: needle, in: bytes) else { continue }
                bytes[k + 32] ^= 0x01
                try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
                FileManager.default.createFile(atPath: path, contents: Data(bytes))
                flipped = true
            }
            XCTAssertTrue(flipped, "\(name): the file's bytes at \(at) were not found in a pack")

            let out = s.temp.sub("out")
            let r = s.trove("restore", "HEAD", "--to", out)
            XCTAssertEqual(r.status, 4, "\(name): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("corrupt"), "\(name): \(r.stderr)")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out), [], "\(name): no file and no temporary file")
        }
    }

    private func firstOffset(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        haystack.withUnsafeBytes { h in
            needle.withUnsafeBytes { n in
                let base = h.baseAddress!
                var i = 0
                while i + n.count <= h.count {
                    guard let p = memchr(base + i, Int32(n[0]), h.count - n.count + 1 - i) else { return nil }
                    let k = UnsafeRawPointer(p) - base
                    if memcmp(base + k, n.baseAddress!, n.count) == 0 { return k }
                    i = k + 1
                }
                return nil
            }
        }
    }

    func testAWriteFailureMidPackGivesAClearErrorAndAConsistentStore() throws {
        let s = TroveSandbox("trove-fsize")
        s.trove("init")
        s.write("first.txt", Array("kept".utf8))
        s.trove("add", ".")
        s.trove("commit", "-m", "first")
        s.write("big.bin", SeededBytes.bytes(seed: 3, count: 12 << 20))
        // 4 MiB file-size limit: the pack write fails with EFBIG part-way.
        let r = s.shell("ulimit -f 4096; $TROVE add big.bin")
        XCTAssertEqual(r.status, 6, r.stderr)
        XCTAssertTrue(r.stderr.contains("File too large") || r.stderr.contains("size limit"), r.stderr)
        XCTAssertEqual(s.trove("fsck", "--full").status, 0)
        XCTAssertEqual(s.trove("cat", "HEAD:first.txt").stdout, "kept")
        XCTAssertEqual(s.trove("add", "big.bin").status, 0)
        XCTAssertEqual(s.trove("commit", "-m", "big").status, 0)
        XCTAssertEqual(s.trove("cat", "HEAD:big.bin").stdoutBytes, SeededBytes.bytes(seed: 3, count: 12 << 20))
    }

    func testTheIndexIsRebuiltFromPacks() throws {
        let s = TroveSandbox("trove-index")
        s.trove("init")
        s.write("a.bin", SeededBytes.bytes(seed: 1, count: 300_000))
        s.trove("add", ".")
        s.trove("commit", "-m", "a")
        for f in ["index.db", "index.db-wal", "index.db-shm"] { try? FileManager.default.removeItem(atPath: s.path(".trove/" + f)) }
        XCTAssertEqual(s.trove("fsck", "--full").status, 0)
        XCTAssertEqual(s.trove("cat", "HEAD:a.bin").stdoutBytes, SeededBytes.bytes(seed: 1, count: 300_000))
        let st = try XCTUnwrap(s.json("status", "--json") as? [String: Any])
        XCTAssertEqual(st["clean"] as? Bool, true, "the stage is rebuilt from HEAD")
        let rebuilt = s.trove("fsck", "--rebuild-index")
        XCTAssertEqual(rebuilt.status, 0)
        XCTAssertTrue(rebuilt.stdout.contains("Rebuilt the index"))
    }

    func testGcDropsUnreachableDataAndKeepsHistory() throws {
        let s = TroveSandbox("trove-gc")
        s.trove("init")
        s.write("keep.bin", SeededBytes.bytes(seed: 1, count: 1 << 20))
        s.trove("add", ".")
        s.trove("commit", "-m", "keep")
        s.write("junk.bin", SeededBytes.bytes(seed: 2, count: 2 << 20))
        s.trove("add", "junk.bin")
        s.trove("rm", "--cached", "junk.bin")
        let before = try XCTUnwrap(s.json("du", "--json") as? [String: Any])["stored_bytes"] as? Int
        let gc = try XCTUnwrap(s.json("gc", "--json", "--grace", "0") as? [String: Any])
        XCTAssertGreaterThan(try XCTUnwrap(gc["objects_dropped"] as? Int), 10)
        let after = try XCTUnwrap(s.json("du", "--json") as? [String: Any])["stored_bytes"] as? Int
        XCTAssertLessThan(try XCTUnwrap(after), try XCTUnwrap(before) - (1 << 20))
        XCTAssertEqual(s.trove("fsck", "--full").status, 0)
        XCTAssertEqual(s.trove("cat", "HEAD:keep.bin").stdoutBytes, SeededBytes.bytes(seed: 1, count: 1 << 20))
    }
}
