import Foundation
import TroveCore
import TroveTestSupport
import XCTest

/// Drives the built `trove` binary through the standalone workflow.
final class WorkflowTests: XCTestCase {
    func testInitAddCommitChangeCommitLogDiffRestore() throws {
        let s = TroveSandbox()
        XCTAssertEqual(s.trove("init").status, 0)
        var gen = SeededBytes(seed: 1)
        var model = gen.bytes(3 << 20)
        s.write("model.bin", model)
        for i in 0..<50 { s.write("data/d\(i % 5)/f\(i).txt", Array("file \(i)\n".utf8)) }
        let add = s.trove("add", ".")
        XCTAssertEqual(add.status, 0, add.stderr)
        XCTAssertTrue(add.stdout.contains("added 51"), add.stdout)
        XCTAssertEqual(s.trove("commit", "-m", "v1").status, 0)

        // Change 1 % of the model in place, commit again.
        let edit = gen.bytes(model.count / 100)
        model.replaceSubrange(1_000_000..<(1_000_000 + edit.count), with: edit)
        s.write("model.bin", model)
        let status = try XCTUnwrap(s.json("status", "--json") as? [String: Any])
        XCTAssertEqual((status["unstaged"] as? [[String: String]])?.first?["path"], "model.bin")
        let add2 = s.trove("add", "--json", "model.bin")
        let summary = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(add2.stdout.utf8)) as? [String: Any])
        let newBytes = try XCTUnwrap(summary["new_bytes"] as? Int)
        XCTAssertLessThan(newBytes, model.count / 10, "a 1 % edit must not store the file again")
        XCTAssertEqual(s.trove("commit", "-m", "v2", "--meta", "lr=0.1").status, 0)

        let log = try XCTUnwrap(s.json("log", "--json") as? [[String: Any]])
        XCTAssertEqual(log.map { $0["message"] as? String }, ["v2", "v1"])
        XCTAssertEqual((log[0]["metadata"] as? [String: String])?["lr"], "0.1")
        let firstID = try XCTUnwrap(log[1]["id"] as? String)

        let diff = try XCTUnwrap(s.json("diff", "--json", "HEAD~1", "HEAD") as? [[String: Any]])
        XCTAssertEqual(diff.count, 1)
        XCTAssertEqual(diff[0]["path"] as? String, "model.bin")
        XCTAssertGreaterThan(try XCTUnwrap(diff[0]["reused_share"] as? Double), 0.9)

        // Restore the first version by id prefix into a new folder; it matches byte for byte.
        let out = s.temp.sub("restored")
        let r = s.trove("restore", String(firstID.prefix(10)), "--to", out)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(readFile(out + "/model.bin"), SeededBytes.bytes(seed: 1, count: 3 << 20))
        XCTAssertEqual(readFile(out + "/data/d3/f13.txt"), Array("file 13\n".utf8))

        // cat streams exactly the file; ls and show report it.
        XCTAssertEqual(s.trove("cat", "HEAD:model.bin").stdoutBytes, model)
        let ls = try XCTUnwrap(s.json("ls", "-r", "--json", "HEAD") as? [[String: Any]])
        XCTAssertEqual(ls.count, 51)
        let show = try XCTUnwrap(s.json("show", "--json", "HEAD:model.bin") as? [String: Any])
        XCTAssertEqual(show["size"] as? Int, model.count)
        let du = try XCTUnwrap(s.json("du", "--json") as? [String: Any])
        XCTAssertGreaterThan(try XCTUnwrap(du["dedup_ratio"] as? Double), 1.5)
        XCTAssertEqual(s.trove("fsck", "--full").status, 0)
    }

    func testCheckoutMovesTheWorkingTreeAndRefusesToLoseChanges() throws {
        let s = TroveSandbox()
        s.trove("init")
        s.write("a.txt", Array("one".utf8))
        s.write("gone.txt", Array("bye".utf8))
        s.trove("add", ".")
        s.trove("commit", "-m", "one")
        XCTAssertEqual(s.trove("tag", "v1").status, 0)
        s.write("a.txt", Array("two".utf8))
        s.trove("rm", "gone.txt")
        s.trove("add", ".")
        s.trove("commit", "-m", "two")

        s.write("a.txt", Array("local edit".utf8))
        let refused = s.trove("checkout", "v1")
        XCTAssertEqual(refused.status, 5, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("a.txt"), refused.stderr)
        XCTAssertEqual(readFile(s.path("a.txt")), Array("local edit".utf8))

        XCTAssertEqual(s.trove("checkout", "--force", "v1").status, 0)
        XCTAssertEqual(readFile(s.path("a.txt")), Array("one".utf8))
        XCTAssertEqual(readFile(s.path("gone.txt")), Array("bye".utf8))
        let st = try XCTUnwrap(s.json("status", "--json") as? [String: Any])
        XCTAssertEqual(st["clean"] as? Bool, true)
        XCTAssertTrue(st["branch"] is NSNull)

        XCTAssertEqual(s.trove("checkout", "main").status, 0)
        XCTAssertEqual(readFile(s.path("a.txt")), Array("two".utf8))
        XCTAssertFalse(FileManager.default.fileExists(atPath: s.path("gone.txt")))
        XCTAssertEqual(s.trove("checkout", "v1", "gone.txt").status, 0)
        XCTAssertEqual(readFile(s.path("gone.txt")), Array("bye".utf8))

        XCTAssertEqual(s.trove("branch", "exp", "HEAD~1").status, 0)
        let branches = try XCTUnwrap(s.json("branch", "--json") as? [[String: Any]])
        XCTAssertEqual(branches.compactMap { $0["name"] as? String }, ["exp", "main"])
    }

    func testCheckoutKeepsLocalEditsToFilesTheTargetDoesNotChange() throws {
        let s = TroveSandbox()
        XCTAssertEqual(s.trove("init").status, 0)
        s.write("a.txt", Array("committed\n".utf8))
        s.write("b.txt", Array("b1\n".utf8))
        XCTAssertEqual(s.trove("add", ".").status, 0)
        XCTAssertEqual(s.trove("commit", "-m", "one").status, 0)
        // An unstaged edit and a staged one, to files the new branch does not change.
        s.write("a.txt", Array("edited, not staged\n".utf8))
        s.write("b.txt", Array("edited and staged\n".utf8))
        XCTAssertEqual(s.trove("add", "b.txt").status, 0)
        let r = s.trove("checkout", "-b", "side", "HEAD")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(readFile(s.path("a.txt")), Array("edited, not staged\n".utf8), "an unstaged edit survives")
        XCTAssertEqual(readFile(s.path("b.txt")), Array("edited and staged\n".utf8), "a staged edit survives")
        let st = s.trove("status")
        XCTAssertTrue(st.stdout.contains("a.txt") && st.stdout.contains("b.txt"), "both still show as changes: \(st.stdout)")
    }

    func testErrorsSpeakToTheUserWithDocumentedExitCodes() {
        let s = TroveSandbox()
        let none = s.trove("status")
        XCTAssertEqual(none.status, 3)
        XCTAssertTrue(none.stderr.contains("trove init"), none.stderr)
        s.trove("init")
        let unknown = s.trove("log", "nosuchbranch")
        XCTAssertEqual(unknown.status, 3)
        XCTAssertTrue(unknown.stderr.contains("unknown revision"), unknown.stderr)
        XCTAssertEqual(s.trove("add", "missing.bin").status, 3)
        XCTAssertEqual(s.trove("commit").status, 2, "a missing -m is a usage error")
        let json = s.trove("log", "--json", "nosuch")
        XCTAssertTrue(json.stderr.contains("\"error\""), json.stderr)
        XCTAssertEqual(s.trove("config", "chunker.avg", "1024").status, 2, "chunker settings are fixed at init")
        let help = s.trove("help", "restore")
        XCTAssertEqual(help.status, 0)
        XCTAssertTrue(help.stdout.contains("--to"), help.stdout)
    }

    func testStatusIsFastAndCleanAfterCommitOfManyFiles() throws {
        let s = TroveSandbox()
        s.trove("init")
        for i in 0..<2000 { s.write("d\(i % 20)/f\(i)", Array("content \(i)".utf8)) }
        XCTAssertEqual(s.trove("add", ".").status, 0)
        XCTAssertEqual(s.trove("commit", "-m", "many").status, 0)
        let st = try XCTUnwrap(s.json("status", "--json") as? [String: Any])
        XCTAssertEqual(st["clean"] as? Bool, true)
        // A same-size edit with a new mtime is found by hashing, not by size.
        s.write("d3/f3", Array("content X".utf8))
        let st2 = try XCTUnwrap(s.json("status", "--json") as? [String: Any])
        XCTAssertEqual((st2["unstaged"] as? [[String: String]])?.map { $0["path"]! }, ["d3/f3"])
    }

    /// Files over 8 MiB restore through the windowed, multi-threaded path; an odd size makes the
    /// last window partial and chunks straddle windows. Direct and buffered I/O both.
    func testLargeFilesRestoreByteForByteWithAndWithoutDirectIO() throws {
        let s = TroveSandbox()
        s.trove("init")
        let data = SeededBytes.bytes(seed: 21, count: (20 << 20) + 12_345)
        s.write("big.bin", data)
        XCTAssertEqual(s.trove("add", "big.bin").status, 0)
        XCTAssertEqual(s.trove("commit", "-m", "big").status, 0)
        for direct in ["1", "0"] {
            s.extraEnvironment["TROVE_DIRECT_IO"] = direct
            let out = s.temp.sub("out-\(direct)")
            let r = s.trove("restore", "HEAD", "--to", out)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(readFile(out + "/big.bin"), data, "direct I/O \(direct)")
        }
        s.extraEnvironment["TROVE_DIRECT_IO"] = nil
        // A commit's second version restores too (chunks from two packs).
        var v2 = data
        v2.replaceSubrange(9_000_000..<9_100_000, with: SeededBytes.bytes(seed: 22, count: 100_000))
        s.write("big.bin", v2)
        s.trove("add", "big.bin")
        s.trove("commit", "-m", "v2")
        let out = s.temp.sub("out-v2")
        XCTAssertEqual(s.trove("restore", "HEAD", "--to", out).status, 0)
        XCTAssertEqual(readFile(out + "/big.bin"), v2)
        XCTAssertEqual(s.trove("checkout", "HEAD~1").status, 0)
        XCTAssertEqual(readFile(s.path("big.bin")), data)
    }

    /// A large input that is not in the page cache is read with direct I/O (block-aligned
    /// reads into the batch buffers, a carried tail before each); the result must not differ.
    func testAnUncachedLargeFileIsReadDirectlyAndStoredExactly() throws {
        let s = TroveSandbox()
        s.trove("init")
        let data = SeededBytes.bytes(seed: 31, count: (70 << 20) + 4_321)
        s.write("cold.bin", data)
        let evict = s.shell("sync && python3 -c 'import os; fd = os.open(\"cold.bin\", os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)'")
        XCTAssertEqual(evict.status, 0, evict.stderr)
        let add = s.trove("add", "--json", "cold.bin")
        XCTAssertEqual(add.status, 0, add.stderr)
        s.trove("commit", "-m", "cold")
        let show = try XCTUnwrap(s.json("show", "--json", "HEAD:cold.bin") as? [String: Any])
        XCTAssertEqual(show["id"] as? String, SHA256.hash(data).hex)
        let out = s.temp.sub("out")
        XCTAssertEqual(s.trove("restore", "HEAD", "--to", out).status, 0)
        XCTAssertEqual(readFile(out + "/cold.bin"), data)
    }

    func testProgressShowsBytesRateAndOnlyOnATerminal() {
        let s = TroveSandbox()
        s.trove("init")
        s.write("m.bin", SeededBytes.bytes(seed: 2, count: 12 << 20))
        let quiet = s.trove("add", "m.bin")
        XCTAssertFalse(quiet.stderr.contains("adding:"), "piped: no progress")
        s.write("m.bin", SeededBytes.bytes(seed: 3, count: 12 << 20))
        s.extraEnvironment["TROVE_PROGRESS"] = "1"
        let shown = s.trove("add", "m.bin")
        XCTAssertTrue(shown.stderr.contains("adding:"), shown.stderr)
        XCTAssertTrue(shown.stderr.contains("MB/s"), shown.stderr)
        XCTAssertTrue(shown.stderr.contains("12.0 MiB"), shown.stderr)
    }

    func testANonUTF8FileNameIsAnErrorNotASilentSkip() {
        let s = TroveSandbox()
        s.trove("init")
        s.write("ok.txt", [1])
        let r0 = s.shell("printf x > \"$(printf 'bad\\377name')\"")
        XCTAssertEqual(r0.status, 0, r0.stderr)
        let r = s.trove("add", ".")
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("not valid UTF-8"), r.stderr)
    }

    func testIgnoreFileKeepsPathsOut() throws {
        let s = TroveSandbox()
        s.trove("init")
        s.write(".troveignore", Array("*.tmp\n/cache/\n".utf8))
        s.write("keep.bin", [1, 2, 3])
        s.write("x.tmp", [1])
        s.write("cache/c.bin", [1])
        s.write("sub/cache/kept.bin", [1])
        s.trove("add", ".")
        s.trove("commit", "-m", "ignore")
        let ls = try XCTUnwrap(s.json("ls", "-r", "--json") as? [[String: Any]])
        XCTAssertEqual(ls.compactMap { $0["path"] as? String }.sorted(), [".troveignore", "keep.bin", "sub/cache/kept.bin"])
    }
}
