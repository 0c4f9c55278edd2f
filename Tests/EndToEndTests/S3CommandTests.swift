import Foundation
import TroveCore
import TroveStore
import TroveTestSupport
import XCTest

/// `trove` against an S3 bucket of a real radosgw, as a user runs it: remote add with an
/// endpoint, push, a second push of a 1 % change, clone, a partial clone, fsck of the bucket,
/// and the errors people meet (wrong secret, missing bucket).
final class S3CommandTests: XCTestCase {
    func ok(_ r: ProcessResult, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 0, "\(what): \(r.stdout)\n\(r.stderr)", file: file, line: line)
    }

    /// A sandbox with the gateway's credentials and a fresh bucket of its own.
    func sandbox(_ label: String) throws -> (s: TroveSandbox, gw: RadosGateway, bucket: String) {
        let gw = try RadosGateway.shared()
        let s = TroveSandbox(label)
        s.extraEnvironment = gw.environment.merging(["TROVE_PROGRESS": "0"]) { _, b in b }
        let bucket = label + "-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
        try gw.createBucket(bucket)
        return (s, gw, bucket)
    }

    func testPushCloneAndPartialCloneThroughABucket() throws {
        let (s, gw, bucket) = try sandbox("trove-s3")
        ok(s.trove("init", "-q"), "init")
        ok(s.shell("mkdir -p data/a data/b && head -c 3000000 /dev/urandom > model.bin && for i in $(seq 40); do echo a$i > data/a/f$i; echo b$i > data/b/f$i; done"), "files")
        ok(s.trove("add", "-q", "."), "add")
        ok(s.trove("commit", "-qm", "one"), "commit")
        ok(s.trove("remote", "add", "lake", "s3://\(bucket)/proj", "--endpoint", gw.endpoint), "remote add")
        let push = s.trove("push", "lake")
        ok(push, "push")
        XCTAssertTrue(push.stdout.contains("heads/main"), push.stdout)
        // A 1 % change sends a few chunks, not the file.
        ok(s.shell("printf 'changed!' | dd of=model.bin bs=1 seek=1500000 conv=notrunc 2>/dev/null"), "edit")
        ok(s.trove("add", "-q", "model.bin"), "add v2")
        ok(s.trove("commit", "-qm", "two"), "commit v2")
        let second = s.trove("push", "lake")
        ok(second, "push v2")
        let sent = second.stdout
        XCTAssertFalse(sent.contains("MiB in"), "a small change is not megabytes: \(sent)")

        let url = "s3://\(bucket)/proj?endpoint=\(gw.endpoint)"
        ok(s.trove(["clone", url, s.temp.sub("full")], cwd: s.temp.path), "clone")
        XCTAssertEqual(s.shell("cmp model.bin \(s.temp.path)/full/model.bin && diff -r data \(s.temp.path)/full/data && echo same").stdout, "same\n")
        let partial = s.trove(["clone", url, s.temp.sub("part"), "--include", "data/b"], cwd: s.temp.path)
        ok(partial, "partial clone")
        XCTAssertTrue(FileIO.exists(s.temp.path + "/part/data/b/f7"))
        XCTAssertFalse(FileIO.exists(s.temp.path + "/part/model.bin"), "not included, not written")
        ok(s.trove(["fsck", "--store", url, "--full"]), "fsck of the bucket")

        // A wrong secret: exit 8 (denied), the server's reason, and how to fix it.
        s.extraEnvironment["AWS_SECRET_ACCESS_KEY"] = "wrong"
        let denied = s.trove("push", "lake")
        XCTAssertEqual(denied.status, 8, denied.stderr)
        XCTAssertTrue(denied.stderr.contains("SignatureDoesNotMatch") && denied.stderr.contains("AWS_SECRET_ACCESS_KEY"), denied.stderr)
        s.extraEnvironment["AWS_SECRET_ACCESS_KEY"] = "testsecret"
        // A bucket that does not exist: exit 3 and how to make it.
        let missing = s.trove(["clone", "s3://no-such-bucket-here/x?endpoint=\(gw.endpoint)", s.temp.sub("none")], cwd: s.temp.path)
        XCTAssertEqual(missing.status, 3, missing.stderr)
        XCTAssertTrue(missing.stderr.contains("NoSuchBucket") && missing.stderr.contains("s3 mb"), missing.stderr)
    }

    /// A cluster node's daemon keeps a project in step with a bucket, both ways (`--mirror NAME=s3://…`).
    func testADaemonMirrorsAProjectWithABucket() throws {
        let (s, gw, bucket) = try sandbox("trove-s3-mirror")
        let url = "s3://\(bucket)/p?endpoint=" + (gw.endpoint.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")
        ok(s.trove("init", "-q"), "init")
        s.write("w.bin", SeededBytes.bytes(seed: 21, count: 400_000))
        ok(s.trove("add", "-q", "w.bin"), "add")
        ok(s.trove("commit", "-qm", "one"), "commit")
        ok(s.trove("push", url), "push to the bucket")
        let c1 = try XCTUnwrap(Refs(root: s.path(".trove")).read("heads/main"))
        let root = s.temp.sub("node")
        ok(s.trove(["daemon", "project", "create", "p", "--root", root]), "project")
        let node = try DaemonProcess(root: root, arguments: ["--mirror", "lake=\(url),interval=1s,direction=both"], environment: s.environment)
        let refs = Refs(root: root + "/projects/p")
        XCTAssertTrue(waitFor(seconds: 20) { (try? refs.read("heads/main")) == c1 }, "the node pulled the bucket's main")
        // A tag pushed to the node reaches the bucket.
        ok(s.trove("tag", "v1"), "tag")
        s.extraEnvironment["TROVE_TOKEN"] = try node.token("p", role: "write")
        ok(s.trove("push", node.url("p"), "tags/v1"), "push the tag to the node")
        XCTAssertTrue(waitFor(seconds: 20) { s.trove(["remote", "show", url, "--json"]).stdout.contains("tags/v1") }, "the node's mirror pushed it to the bucket")
        ok(s.trove(["fsck", "--full", "--store", root + "/projects/p"]), "node store complete")
        ok(s.trove(["fsck", "--full", "--store", url]), "bucket complete")
    }
}
