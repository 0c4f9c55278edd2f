import Foundation
import TroveCore
import TroveStore
import TroveTestSupport
import XCTest

/// `remote`, `push`, `fetch`, `pull`, `clone` and `trove daemon` driven as a user would, with
/// real processes: the built binary, sshd, the daemon, kill -9.
final class SyncCommandTests: XCTestCase {
    func dir(_ s: TroveSandbox, _ name: String) -> String {
        let p = s.temp.sub(name)
        try? FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    func checked(_ r: ProcessResult, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 0, "\(what): \(r.stderr)", file: file, line: line)
    }

    /// A sandbox with a store in `work` holding `files`, committed.
    func project(_ files: [String: [UInt8]]) -> TroveSandbox {
        let s = TroveSandbox()
        checked(s.trove("init"), "init")
        for (p, b) in files {
            try? FileManager.default.createDirectory(atPath: FileIO.dirname(s.path(p)), withIntermediateDirectories: true)
            s.write(p, b)
        }
        checked(s.trove("add", "."), "add")
        checked(s.trove("commit", "-m", "v1"), "commit")
        return s
    }

    func testPushCloneEditPullOverASharedPath() throws {
        let model = SeededBytes.bytes(seed: 1, count: 3 << 20)
        let s = project(["model.bin": model, "data/a.txt": Array("a\n".utf8)])
        let remote = s.temp.sub("scratch/store")
        checked(s.trove("init", "--bare", remote), "init --bare")
        checked(s.trove("remote", "add", "origin", remote), "remote add")
        let push = s.trove("push")
        checked(push, "push")
        XCTAssertTrue(push.stdout.contains("heads/main"), push.stdout)
        XCTAssertTrue(s.trove("push").stdout.contains("up to date"))

        let clone = s.trove(["clone", remote, s.temp.sub("b")], cwd: s.temp.path)
        checked(clone, "clone")
        XCTAssertEqual(readFile(s.temp.sub("b") + "/model.bin"), model)

        var v2 = model
        v2.replaceSubrange(100_000..<100_100, with: SeededBytes.bytes(seed: 2, count: 100))
        s.write("model.bin", v2)
        checked(s.trove("add", "model.bin"), "add v2")
        checked(s.trove("commit", "-m", "v2"), "commit v2")
        let push2 = s.trove("push", "--json")
        checked(push2, "push v2")
        let sent = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(push2.stdout.utf8)) as? [String: Any])
        XCTAssertLessThan(try XCTUnwrap(sent["bytes"] as? Int), 400_000, "only the changed chunks and manifest travel")

        checked(s.trove(["pull"], cwd: s.temp.sub("b")), "pull")
        XCTAssertEqual(readFile(s.temp.sub("b") + "/model.bin"), v2)
        checked(s.trove(["fsck", "--full", "--store", remote]), "fsck of the shared store")
        XCTAssertFalse(FileManager.default.fileExists(atPath: remote + "/index.db"))
    }

    func testANonFastForwardPushExitsFiveAndNamesTheRef() throws {
        let s = project(["f": Array("1".utf8)])
        let remote = s.temp.sub("remote")
        checked(s.trove("init", "--bare", remote), "init --bare")
        checked(s.trove("remote", "add", "origin", remote), "remote add")
        checked(s.trove("push"), "push")
        let b = s.temp.sub("b")
        checked(s.trove(["clone", remote, b], cwd: s.temp.path), "clone")
        // Both sides commit; a pushes first.
        s.write("f", Array("2a".utf8))
        checked(s.trove("add", "f"), "add a")
        checked(s.trove("commit", "-m", "a"), "commit a")
        checked(s.trove("push"), "push a")
        writeFile(b + "/f", Array("2b".utf8))
        checked(s.trove(["add", "f"], cwd: b), "add b")
        checked(s.trove(["commit", "-m", "b"], cwd: b), "commit b")
        let refused = s.trove(["push"], cwd: b)
        XCTAssertEqual(refused.status, 5, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("heads/main") && refused.stderr.contains("non-fast-forward"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("hint:"), refused.stderr)
        checked(s.trove(["push", "--force"], cwd: b), "forced push")
    }

    func testSSHCloneAndPushWithARealSshd() throws {
        let server = try SSHServer()
        let s = project(["m.bin": SeededBytes.bytes(seed: 3, count: 1 << 20)])
        s.extraEnvironment = ["TROVE_SSH": server.sshCommand, "TROVE_REMOTE_TROVE": Runner.trovePath]
        let remote = s.temp.sub("over-ssh")
        checked(s.trove("init", "--bare", remote), "init --bare")
        checked(s.trove("remote", "add", "origin", server.url(remote)), "remote add")
        checked(s.trove("push"), "push over ssh")
        let b = s.temp.sub("b")
        checked(s.trove(["clone", server.url(remote), b], cwd: s.temp.path), "clone over ssh")
        XCTAssertEqual(readFile(b + "/m.bin"), readFile(s.path("m.bin")))
        let missing = s.trove(["clone", server.url(s.temp.sub("nothing-here")), s.temp.sub("c")], cwd: s.temp.path)
        XCTAssertEqual(missing.status, 3, "a path with no store is not-found: \(missing.stderr)")
        XCTAssertTrue(missing.stderr.contains("not a trove store"), missing.stderr)
    }

    func testADaemonKilledMidPushLosesNothingAndTheNextPushSendsOnlyTheRest() throws {
        // 24 MiB in 1 MiB uploads: the kill lands after some uploads were acknowledged.
        let s = project(["big.bin": SeededBytes.bytes(seed: 4, count: 24 << 20)])
        let root = s.temp.sub("daemon")
        let d = try DaemonProcess(root: root, environment: s.environment)
        try d.createProject("p")
        // One attempt: the daemon is down until the test restarts it.
        s.extraEnvironment = ["TROVE_TOKEN": try d.token("p", role: "write"), "TROVE_UPLOAD_BYTES": "\(1 << 20)", "TROVE_HTTP_ATTEMPTS": "1"]
        checked(s.trove("remote", "add", "origin", d.url("p")), "remote add")
        let push = s.start(["push"])
        let packs = root + "/projects/p/packs"
        var landed = 0
        for _ in 0..<500 {
            landed = ((try? FileManager.default.contentsOfDirectory(atPath: packs)) ?? []).filter { $0.hasSuffix(".pack") && !$0.hasPrefix("tmp-") }.count
            if landed >= 4 { break }
            usleep(10_000)
        }
        d.kill9()
        let first = push.wait()
        XCTAssertNotEqual(first.status, 0, "the push cannot finish without the daemon")
        XCTAssertGreaterThanOrEqual(landed, 4, "uploads were acknowledged before the kill")
        let storedBefore = try packBytes(packs)
        XCTAssertEqual(s.trove(["fsck", "--full", "--store", root + "/projects/p"]).status, 0, "what landed is intact")

        try d.start()
        s.extraEnvironment["TROVE_HTTP_ATTEMPTS"] = nil
        let again = s.trove("push", "--json")
        checked(again, "second push")
        let sent = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any])
        let total = 24 << 20
        XCTAssertLessThanOrEqual(try XCTUnwrap(sent["bytes"] as? Int), total - storedBefore + (1 << 20) + 65_536,
                                 "re-sends at most one upload's worth beyond what was missing (\(storedBefore) bytes had landed)")
        let check = s.trove(["fsck", "--full", "--store", root + "/projects/p"])
        XCTAssertEqual(check.status, 0, check.stdout)
        let c = s.temp.sub("c")
        checked(s.trove(["clone", d.url("p"), c], cwd: s.temp.path), "clone")
        XCTAssertEqual(readFile(c + "/big.bin"), readFile(s.path("big.bin")))
    }

    func testAClientKilledMidFetchKeepsWhatArrivedAndResumes() throws {
        let s = project(["big.bin": SeededBytes.bytes(seed: 5, count: 16 << 20)])
        let root = s.temp.sub("daemon")
        // 4 MB/s: the fetch takes about 4 s, time enough to kill it half-way.
        let d = try DaemonProcess(root: root, arguments: ["--limit-rate", "\(4_000_000)"], environment: s.environment)
        try d.createProject("p")
        s.extraEnvironment = ["TROVE_TOKEN": try d.token("p", role: "write")]
        checked(s.trove("remote", "add", "origin", d.url("p")), "remote add")
        checked(s.trove("push"), "push")
        let b = s.temp.sub("b")
        try FileManager.default.createDirectory(atPath: b, withIntermediateDirectories: true)
        checked(s.trove(["init"], cwd: b), "init b")
        checked(s.trove(["config", "pack.size", "\(1 << 20)"], cwd: b), "small packs")
        checked(s.trove(["remote", "add", "origin", d.url("p")], cwd: b), "remote add b")
        let fetch = s.start(["fetch"], cwd: b)
        let packs = b + "/.trove/packs"
        for _ in 0..<500 where ((try? FileManager.default.contentsOfDirectory(atPath: packs)) ?? []).filter({ !$0.hasPrefix("tmp-") }).count < 4 { usleep(10_000) }
        fetch.kill9()
        _ = fetch.wait()
        let kept = try packBytes(packs)
        XCTAssertGreaterThan(kept, 2 << 20, "packs that arrived before the kill are kept")
        let again = s.trove(["fetch", "--json"], cwd: b)
        checked(again, "fetch again")
        let r = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any])
        XCTAssertLessThan(try XCTUnwrap(r["chunk_bytes"] as? Int), (16 << 20) - kept + (1 << 20), "asks only for what is still missing")
        checked(s.trove(["checkout", "-b", "main", "remotes/origin/heads/main"], cwd: b), "checkout")
        XCTAssertEqual(readFile(b + "/big.bin"), readFile(s.path("big.bin")))
        checked(s.trove(["fsck", "--full"], cwd: b), "local fsck")
    }

    func testFetchingFromTwoRateLimitedPeersIsFasterThanFromOne() throws {
        let s = project(["big.bin": SeededBytes.bytes(seed: 6, count: 8 << 20)])
        let rate = ["--limit-rate", "\(4_000_000)"]
        let d1 = try DaemonProcess(root: s.temp.sub("d1"), arguments: rate, environment: s.environment)
        let d2 = try DaemonProcess(root: s.temp.sub("d2"), arguments: rate, environment: s.environment)
        try d1.createProject("p")
        try d2.createProject("p")
        let t1 = try d1.token("p", role: "write"), t2 = try d2.token("p", role: "write")
        // One token per daemon, through the credentials file.
        let creds = s.home + "/.config/trove/credentials"
        try FileManager.default.createDirectory(atPath: FileIO.dirname(creds), withIntermediateDirectories: true)
        try "\(d1.base) \(t1)\n\(d2.base) \(t2)\n".write(toFile: creds, atomically: true, encoding: .utf8)
        chmod(creds, 0o600)
        checked(s.trove("push", d1.url("p")), "push 1")
        checked(s.trove("push", d2.url("p")), "push 2")

        func timedFetch(_ extra: [String]) throws -> Double {
            let b = s.temp.sub("f\(extra.count)")
            try FileManager.default.createDirectory(atPath: b, withIntermediateDirectories: true)
            checked(s.trove(["init"], cwd: b), "init")
            checked(s.trove(["remote", "add", "one", d1.url("p")], cwd: b), "remote one")
            checked(s.trove(["remote", "add", "two", d2.url("p")], cwd: b), "remote two")
            let start = Date()
            checked(s.trove(["fetch", "one"] + extra, cwd: b), "fetch")
            let t = Date().timeIntervalSince(start)
            checked(s.trove(["checkout", "-b", "main", "remotes/one/heads/main"], cwd: b), "checkout")
            XCTAssertEqual(readFile(b + "/big.bin"), readFile(s.path("big.bin")))
            return t
        }
        let alone = try timedFetch([])
        let both = try timedFetch(["--from", "two"])
        XCTAssertLessThan(both, alone * 0.75, "two peers at 4 MB/s each: \(both) s, one: \(alone) s")
    }

    func testTLSWithATestCertificateAndGracefulShutdown() throws {
        let s = project(["f.bin": SeededBytes.bytes(seed: 7, count: 300_000)])
        let certDir = s.temp.sub("tls")
        try FileManager.default.createDirectory(atPath: certDir, withIntermediateDirectories: true)
        let gen = Runner.run("/usr/bin/openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                                                  "-keyout", certDir + "/key.pem", "-out", certDir + "/cert.pem", "-days", "2",
                                                  "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                             cwd: certDir, environment: s.environment)
        XCTAssertEqual(gen.status, 0, gen.stderr)
        let d = try DaemonProcess(root: s.temp.sub("daemon"), arguments: ["--tls-cert", certDir + "/cert.pem", "--tls-key", certDir + "/key.pem"],
                                  scheme: "https", environment: s.environment)
        try d.createProject("p")
        s.extraEnvironment = ["TROVE_TOKEN": try d.token("p", role: "write")]
        let untrusted = s.trove("push", d.url("p"))
        XCTAssertEqual(untrusted.status, 7, "a certificate nobody vouches for is refused: \(untrusted.stderr)")
        s.extraEnvironment["TROVE_CA_FILE"] = certDir + "/cert.pem"
        checked(s.trove("push", d.url("p")), "push over TLS with the CA file")
        checked(s.trove(["clone", d.url("p"), s.temp.sub("c")], cwd: s.temp.path), "clone over TLS")
        XCTAssertEqual(readFile(s.temp.sub("c") + "/f.bin"), readFile(s.path("f.bin")))
        let stopped = try XCTUnwrap(d.stop())
        XCTAssertEqual(stopped.status, 0, "SIGTERM stops the daemon cleanly: \(stopped.stderr)")
    }

    /// A clone writes its files while their chunks arrive (not by reading the packs back after
    /// the fetch): the same file at two paths, a compressible file whose chunks repeat at many
    /// offsets, an executable, small files, all byte-identical, the work tree clean, no temp
    /// file left; a partial clone streams only what it includes.
    func testACloneWritesItsFilesAsTheirChunksArriveByteIdentical() throws {
        let random = SeededBytes.bytes(seed: 77, count: 20_000_000)  // more than two 8 MiB windows: both staging buffers are reused
        let repeating = Array(String(repeating: "epoch 1 loss 0.25 accuracy 0.91\n", count: 400_000).utf8)
        let s = project(["weights/a.bin": random, "weights/copy-of-a.bin": random, "logs/train.log": repeating,
                         "small.txt": Array("small\n".utf8), "run.sh": Array("#!/bin/sh\necho hi\n".utf8)])
        chmod(s.path("logs/train.log"), 0o755)
        chmod(s.path("run.sh"), 0o755)
        checked(s.trove("add", "-q", "."), "add the mode")
        checked(s.trove("commit", "-qm", "exec"), "commit")
        let remote = s.temp.sub("remote")
        checked(s.trove("init", "--bare", remote), "init --bare")
        checked(s.trove("push", remote), "push")
        let c = s.temp.sub("c")
        let clone = s.trove(["clone", remote, c], cwd: s.temp.path)
        checked(clone, "clone")
        XCTAssertTrue(clone.stdout.contains("5 written as their chunks arrived"), clone.stdout)
        for (path, bytes) in [("weights/a.bin", random), ("weights/copy-of-a.bin", random), ("logs/train.log", repeating)] {
            XCTAssertEqual(readFile(c + "/" + path), bytes, path)
        }
        XCTAssertEqual(readFile(c + "/small.txt"), Array("small\n".utf8))
        XCTAssertEqual(readFile(c + "/run.sh"), Array("#!/bin/sh\necho hi\n".utf8))
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: c + "/logs/train.log"), "the mode comes with it")
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: c + "/run.sh"), "the mode comes with it")
        XCTAssertTrue(s.trove(["status"], cwd: c).stdout.contains("working tree clean"))
        XCTAssertEqual(s.shell("find \(c) -name '.trove-tmp*' | wc -l").stdout, "0\n", "no temp file left")
        checked(s.trove(["fsck", "--full"], cwd: c), "fsck")
        let p = s.temp.sub("p")
        let partial = s.trove(["clone", "--include", "weights/a.bin", remote, p], cwd: s.temp.path)
        checked(partial, "partial clone")
        XCTAssertTrue(partial.stdout.contains("1 written as their chunks arrived"), partial.stdout)
        XCTAssertEqual(readFile(p + "/weights/a.bin"), random)
        XCTAssertFalse(FileIO.exists(p + "/weights/copy-of-a.bin") || FileIO.exists(p + "/logs/train.log"), "not included, not written")
        XCTAssertEqual(s.shell("find \(p) -name '.trove-tmp*' | wc -l").stdout, "0\n", "no temp file left")
    }

    func testAPartialCloneFetchesAndWritesOnlyItsPathsAndStillCommitsAndPushes() throws {
        var files: [String: [UInt8]] = [:]
        for d in 0..<10 { for f in 0..<20 { files["data/d\(d)/f\(f).bin"] = SeededBytes.bytes(seed: UInt64(100 + d * 20 + f), count: 20_000) } }
        let s = project(files)
        let remote = s.temp.sub("remote")
        checked(s.trove("init", "--bare", remote), "init --bare")
        checked(s.trove("push", remote), "push")
        let p = s.temp.sub("partial")
        let clone = s.trove(["clone", "--include", "data/d3", remote, p], cwd: s.temp.path)
        checked(clone, "partial clone")
        let written = try FileManager.default.subpathsOfDirectory(atPath: p + "/data").filter { $0.hasSuffix(".bin") }
        XCTAssertEqual(written.count, 20, "only data/d3: \(written.prefix(5))")
        XCTAssertLessThan(try packBytes(p + "/.trove/packs"), 4_000_000 / 10 * 2, "about a tenth of the data crossed")
        XCTAssertTrue(s.trove(["status"], cwd: p).stdout.contains("working tree clean"), "absent paths are not deletions")
        XCTAssertEqual(s.trove(["fsck"], cwd: p).status, 0, "chunks left on the remote are not damage")

        // Another path on demand; then a change, committed and pushed from the partial clone.
        checked(s.trove(["checkout", "HEAD", "data/d7/f1.bin"], cwd: p), "checkout of one more path")
        XCTAssertEqual(readFile(p + "/data/d7/f1.bin"), files["data/d7/f1.bin"])
        writeFile(p + "/data/d3/f0.bin", Array("changed".utf8))
        checked(s.trove(["add", "."], cwd: p), "add")
        checked(s.trove(["commit", "-m", "edit in a partial clone"], cwd: p), "commit")
        checked(s.trove(["push"], cwd: p), "push from the partial clone")
        checked(s.trove(["fsck", "--full", "--store", remote]), "the remote stays complete")
        let full = s.temp.sub("full")
        checked(s.trove(["clone", remote, full], cwd: s.temp.path), "full clone")
        XCTAssertEqual(readFile(full + "/data/d9/f19.bin"), files["data/d9/f19.bin"], "untouched files are still in the commit")
        XCTAssertEqual(readFile(full + "/data/d3/f0.bin"), Array("changed".utf8))
    }

    func testAMirroringDaemonFollowsItsPeerAndKeepsDivergedRefsApart() throws {
        let s = project(["m.bin": SeededBytes.bytes(seed: 8, count: 500_000)])
        let central = try DaemonProcess(root: s.temp.sub("central"), environment: s.environment)
        try central.createProject("p")
        let centralToken = try central.token("p", role: "write")
        // The node's daemon reads its token for the central one from its credentials file.
        let nodeHome = s.temp.sub("node-home")
        let creds = nodeHome + "/.config/trove/credentials"
        try FileManager.default.createDirectory(atPath: FileIO.dirname(creds), withIntermediateDirectories: true)
        try "\(central.base) \(centralToken)\n".write(toFile: creds, atomically: true, encoding: .utf8)
        chmod(creds, 0o600)
        let nodeRoot = s.temp.sub("node")
        checked(s.trove(["daemon", "project", "create", "p", "--root", nodeRoot]), "node project")
        let node = try DaemonProcess(root: nodeRoot, arguments: ["--mirror", "central=\(central.url("p")),interval=1s,direction=both"],
                                     environment: Runner.environment(home: nodeHome))
        let nodeToken = try node.token("p", role: "write")

        s.extraEnvironment = ["TROVE_TOKEN": centralToken]
        checked(s.trove("push", central.url("p")), "push to central")
        let c1 = try XCTUnwrap(Refs(root: s.path(".trove")).read("heads/main"))
        let nodeRefs = Refs(root: nodeRoot + "/projects/p")
        XCTAssertTrue(waitFor { (try? nodeRefs.read("heads/main")) == c1 }, "the node follows central within a few intervals")

        // Diverge: one commit on each side of c1.
        s.write("m.bin", SeededBytes.bytes(seed: 9, count: 500_000))
        checked(s.trove("add", "m.bin"), "add")
        checked(s.trove("commit", "-m", "on central"), "commit")
        checked(s.trove("push", central.url("p")), "push to central")
        let onCentral = try XCTUnwrap(Refs(root: s.path(".trove")).read("heads/main"))
        s.extraEnvironment = ["TROVE_TOKEN": nodeToken]
        checked(s.trove(["checkout", "-b", "side", c1.hex]), "branch from c1")
        s.write("n.bin", SeededBytes.bytes(seed: 10, count: 1000))
        checked(s.trove("add", "n.bin"), "add")
        checked(s.trove("commit", "-m", "on the node"), "commit")
        checked(s.trove("push", "--force", node.url("p"), "side:main"), "push to the node")
        let onNode = try XCTUnwrap(Refs(root: s.path(".trove")).read("heads/side"))
        XCTAssertTrue(waitFor { (try? nodeRefs.read("remotes/central/heads/main")) == onCentral }, "central's value is kept beside the node's")
        XCTAssertEqual(try nodeRefs.read("heads/main"), onNode, "a diverged ref is never overwritten")

        // direction=both: a new tag on the node reaches central.
        checked(s.trove("tag", "v1"), "tag")
        checked(s.trove("push", node.url("p"), "tags/v1"), "push tag to the node")
        let centralRefs = Refs(root: central.root + "/projects/p")
        XCTAssertTrue(waitFor { (try? centralRefs.read("tags/v1")) == onNode }, "pushed by the node's mirror")
        XCTAssertEqual(try centralRefs.read("heads/main"), onCentral, "and central's diverged branch is left alone")
        checked(s.trove(["fsck", "--full", "--store", nodeRoot + "/projects/p"]), "node store complete")
        checked(s.trove(["fsck", "--full", "--store", central.root + "/projects/p"]), "central store complete")
    }

    func packBytes(_ dir: String) throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".pack") && !$0.hasPrefix("tmp-") }
            .reduce(0) { $0 + ((try FileManager.default.attributesOfItem(atPath: dir + "/" + $1)[.size] as? Int) ?? 0) }
    }
}
