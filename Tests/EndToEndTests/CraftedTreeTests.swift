import Foundation
import TroveCore
import TroveStore
import TroveTestSupport
import XCTest

/// Stores whose trees were crafted to escape the working tree: checkout and restore refuse
/// with a clear error and write nothing outside.
final class CraftedTreeTests: XCTestCase {
    /// Builds a store in `s.work` whose HEAD commit has a root tree with `entries` (unchecked).
    func craft(_ s: TroveSandbox, _ entries: (ObjectWriter) throws -> [Tree.Entry]) throws {
        XCTAssertEqual(s.trove("init").status, 0)
        let store = try Store.open(root: s.path(".trove"), workTree: s.work)
        let w = ObjectWriter(store: store)
        let tree = Tree.unchecked(entries: try entries(w).sorted { $0.name < $1.name })
        let treeID = try w.put(.tree, tree.encode())
        let c = Commit(tree: treeID, parents: [], author: "attacker", time: 0, timezoneOffset: 0, message: "crafted")
        let cid = try w.put(.commit, c.encode())
        try w.finish()
        try Refs(root: store.root).update("heads/main", from: nil, to: cid, message: "crafted")
    }

    func blob(_ w: ObjectWriter, _ text: String) throws -> (ObjectID, UInt64) {
        (try w.put(.chunk, Array(text.utf8)), UInt64(text.utf8.count))
    }

    func assertRefused(_ s: TroveSandbox, mentioning: String, file: StaticString = #filePath, line: UInt = #line) {
        let outside = s.temp.path + "/outside"
        let target = s.temp.sub("target")
        for args in [["restore", "HEAD", "--to", target], ["checkout", "--force", "HEAD"]] {
            let r = s.trove(args)
            XCTAssertNotEqual(r.status, 0, "\(args) must fail", file: file, line: line)
            XCTAssertTrue(r.stderr.contains(mentioning), "\(args): \(r.stderr)", file: file, line: line)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: outside), "nothing written outside", file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: s.temp.path + "/evil"), file: file, line: line)
    }

    func testDotDotEntryIsRefused() throws {
        let s = TroveSandbox("trove-crafted")
        try craft(s) { w in
            let (id, n) = try self.blob(w, "pwned")
            return [Tree.Entry(name: "..", kind: .file, id: id, size: n)]
        }
        assertRefused(s, mentioning: "unsafe tree entry")
    }

    /// For each value, a store whose HEAD tree holds the one entry `entry(value)` makes
    /// (with a blob of `content(value)`) is refused with `mentioning` in the error.
    func assertEachRefused(_ values: [String], mentioning: String, content: (String) -> String,
                           entry: @escaping (String, ObjectID, UInt64) -> Tree.Entry) throws {
        for value in values {
            let s = TroveSandbox("trove-crafted")
            try craft(s) { w in
                let (id, n) = try self.blob(w, content(value))
                return [entry(value, id, n)]
            }
            assertRefused(s, mentioning: mentioning)
        }
    }

    func testNamesWithSlashesOrAbsolutePathsAreRefused() throws {
        try assertEachRefused(["../outside", "/tmp/evil", "a/../../outside"], mentioning: "unsafe tree entry", content: { _ in "pwned" }) {
            Tree.Entry(name: $0, kind: .file, id: $1, size: $2)
        }
    }

    func testStoreFolderEntriesAreRefused() throws {
        try assertEachRefused([".trove", ".git"], mentioning: "reserved name", content: { _ in "x" }) {
            Tree.Entry(name: $0, kind: .file, id: $1, size: $2)
        }
    }

    func testSymlinkPointingOutsideIsRefused() throws {
        try assertEachRefused(["../../outside", "/etc/passwd", "d/../../.."], mentioning: "points outside", content: { $0 }) { _, id, n in
            Tree.Entry(name: "link", kind: .symlink, id: id, size: n)
        }
    }

    func testWritingThroughASymlinkedFolderIsRefused() throws {
        // A tree with a symlink `d -> ../outside-dir` and a file `d/x`: the file must not land
        // in outside-dir. (The symlink itself is already refused; this guards the folder path.)
        let s = TroveSandbox("trove-crafted")
        let outsideDir = s.temp.sub("outside-dir")
        try craft(s) { w in
            let (fid, fn) = try self.blob(w, "data")
            let sub = try Tree(entries: [Tree.Entry(name: "x", kind: .file, id: fid, size: fn)])
            let sid = try w.put(.tree, sub.encode())
            return [Tree.Entry(name: "d", kind: .directory, id: sid, size: fn)]
        }
        let target = s.temp.sub("target2")
        try FileManager.default.createSymbolicLink(atPath: target + "/d", withDestinationPath: outsideDir)
        let r = s.trove("restore", "HEAD", "--to", target)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("symlink"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: outsideDir), [])
    }
}
