import Foundation
import Glibc
import TroveCore
import TroveGit
import TroveStore
import TroveTestSupport
import XCTest

final class PointerTests: XCTestCase {
    let oid = String(repeating: "0123456789abcdef", count: 4)

    func testTheCanonicalPointerRoundTripsByteForByte() throws {
        let text = "version https://git-lfs.github.com/spec/v1\noid sha256:\(oid)\nsize 12345\n"
        let p = try XCTUnwrap(try LFSPointer.parse(Array(text.utf8)))
        XCTAssertEqual(p.oid.hex, oid)
        XCTAssertEqual(p.size, 12345)
        XCTAssertEqual(String(decoding: p.encode(), as: UTF8.self), text)
    }

    func testLegacyVersionsAndCRLFAreRead() throws {
        let text = "version https://hawser.github.com/spec/v1\r\noid sha256:\(oid)\r\nsize 1\r\n"
        XCTAssertEqual(try LFSPointer.parse(Array(text.utf8))?.size, 1)
    }

    func testContentThatIsNotAPointerIsNotOne() throws {
        XCTAssertNil(try LFSPointer.parse([]))
        XCTAssertNil(try LFSPointer.parse(Array("hello world\n".utf8)))
        XCTAssertNil(try LFSPointer.parse(Array("version 2\n".utf8)), "a VERSION file is content")
        XCTAssertNil(try LFSPointer.parse(SeededBytes.bytes(seed: 1, count: 300)))
        // 1024 bytes or more is never a pointer, whatever it starts with.
        XCTAssertNil(try LFSPointer.parse(Array("version x".utf8) + [UInt8](repeating: 32, count: 1100)))
    }

    func testMalformedPointersAreRejectedWithTheReason() {
        let cases: [(String, String)] = [
            ("version https://git-lfs.github.com/spec/v1\noid sha256:XYZ\nsize 1\n", "oid"),
            ("version https://git-lfs.github.com/spec/v1\noid sha256:\(oid)\nsize -1\n", "size"),
            ("version https://git-lfs.github.com/spec/v1\nsize 1\noid sha256:\(oid)\n", "oid"),
            ("version https://git-lfs.github.com/spec/v9\noid sha256:\(oid)\nsize 1\n", "version"),
            ("version https://git-lfs.github.com/spec/v1\noid sha256:\(oid)\n", "size"),
            ("version https://git-lfs.github.com/spec/v1\noid sha256:\(oid)\nsize 1\nfoo bar\n", "foo"),
            ("version https://git-lfs.github.com/spec/v1\noid md5:\(oid)\nsize 1\n", "oid"),
        ]
        for (text, word) in cases {
            XCTAssertThrowsError(try LFSPointer.parse(Array(text.utf8)), text) { e in
                XCTAssertTrue("\(e)".contains("malformed pointer") && "\(e)".contains(word), "\(e)")
            }
        }
    }

    func testTheHookScriptsInTheBinaryAreTheOnesInTheHooksFolder() throws {
        var dir = URL(fileURLWithPath: #filePath)
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("hooks/pre-push").path) {
            dir = dir.deletingLastPathComponent()
            XCTAssertNotEqual(dir.path, "/")
            if dir.path == "/" { return }
        }
        for name in HookScripts.names {
            let onDisk = try String(contentsOfFile: dir.appendingPathComponent("hooks/\(name)").path, encoding: .utf8)
            XCTAssertEqual(onDisk, HookScripts.text(name), "hooks/\(name) and HookScripts differ: edit both")
        }
    }
}

final class PktLineTests: XCTestCase {
    func pipe() -> (Int32, Int32) {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(Glibc.pipe(&fds), 0)
        return (fds[0], fds[1])
    }

    func testPacketsListsAndLargeContentRoundTrip() throws {
        let (r, w) = pipe()
        defer { close(r) }
        let content = SeededBytes.bytes(seed: 9, count: 200_000)
        let writer = DispatchQueue(label: "w")
        writer.async {
            let out = PktLineWriter(fd: w)
            try! out.text("command=clean")
            try! out.text("pathname=a b=c.bin")
            try! out.flush()
            try! content.withUnsafeBytes { try out.content($0) }
            try! out.flush()
            try! out.send()
            close(w)
        }
        let reader = PktLineReader(fd: r)
        XCTAssertEqual(try reader.readList(), ["command=clean", "pathname=a b=c.bin"])
        var got: [UInt8] = []
        var packets = 0
        try reader.readContent { got += $0; packets += 1 }
        XCTAssertTrue(got == content)
        XCTAssertEqual(packets, 4, "65516-byte packets")
        XCTAssertNil(try reader.readList(), "end of input")
    }

    func testAMalformedLengthIsAnError() throws {
        let (r, w) = pipe()
        defer { close(r) }
        _ = "zz12hello".withCString { write(w, $0, 9) }
        close(w)
        XCTAssertThrowsError(try PktLineReader(fd: r).next())
    }

    func testAPacketCutShortIsAnError() throws {
        let (r, w) = pipe()
        defer { close(r) }
        _ = "0010abc".withCString { write(w, $0, 7) }
        close(w)
        XCTAssertThrowsError(try PktLineReader(fd: r).next())
    }
}

final class GitSetupTests: XCTestCase {
    func testTheGitSubcommandIsReadPastGlobalOptions() {
        XCTAssertEqual(GitInvocation.subcommand(["git", "-c", "a=b", "-C", "dir", "--no-pager", "stash", "push"]), "stash")
        XCTAssertEqual(GitInvocation.subcommand(["/usr/lib/git-core/git-checkout", "main"]), "checkout")
        XCTAssertEqual(GitInvocation.subcommand(["git", "--bare"]), "")
    }

    func testAnEditedTroveHookIsLeftAloneByInstallAndUninstall() throws {
        let temp = TempDir("trove-git-setup")
        let env = Runner.environment(home: temp.sub("home"))
        XCTAssertEqual(Runner.run("/usr/bin/git", ["init", "-q", temp.path + "/r"], cwd: temp.path, environment: env).status, 0)
        let repo = try XCTUnwrap(GitRepository.discover(from: temp.path + "/r"))
        let first = try GitInstall.install(repo)
        XCTAssertEqual(Set(first.hooksWritten), Set(HookScripts.names))
        let hook = temp.path + "/r/.git/hooks/post-commit"
        let edited = Array((HookScripts.text("post-commit") + "echo mine\n").utf8)
        writeFile(hook, edited)
        XCTAssertEqual(try GitInstall.install(repo).hooksLeft, ["post-commit"])
        let undone = try GitInstall.uninstall(repo)
        XCTAssertEqual(undone.hooksLeft, ["post-commit"])
        XCTAssertEqual(readFile(hook), edited, "their edit survives")
        XCTAssertFalse(FileManager.default.fileExists(atPath: temp.path + "/r/.git/hooks/pre-push"))
    }
}
