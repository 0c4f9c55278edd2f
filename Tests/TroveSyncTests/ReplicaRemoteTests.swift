import Foundation
import TroveCore
import TroveProtocol
import TroveStore
import TroveSync
import TroveTestSupport
import XCTest

/// The remote suite against the daemon as replicas run it: packs in a bucket of a real radosgw
/// (`--objects s3://…`), projects, tokens and refs in a real PostgreSQL (`--metadata
/// postgres://…`). Two daemons share them (the second has a small upload limit and a 64 KiB
/// cache), so every
/// test that opens both also checks that what one replica stored the other serves.
final class ReplicaRemoteTests: RemoteConformance {
    nonisolated(unsafe) static var daemon: DaemonProcess?
    nonisolated(unsafe) static var smallLimit: DaemonProcess?
    nonisolated(unsafe) static var roots: [TempDir] = []
    nonisolated(unsafe) static var objects = ""
    nonisolated(unsafe) static var metadata = ""
    var tokens: [String: String] = [:]

    override func setUpWithError() throws {
        try super.setUpWithError()
        if Self.daemon == nil {
            let gateway = try RadosGateway.shared()
            let pg = try PostgresServer.shared()
            let bucket = "trove-replicas-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
            try gateway.createBucket(bucket)
            Self.objects = gateway.url(bucket: bucket, prefix: "daemon")
            let a = TempDir("trove-replica-a"), b = TempDir("trove-replica-b")
            Self.roots = [a, b]
            Self.metadata = try pg.newDatabase("conformance")
            let env = Runner.environment(home: a.path).merging(gateway.environment) { _, x in x }
                .merging(["TROVE_OBJECTS": Self.objects, "TROVE_METADATA": Self.metadata]) { _, x in x }
            Self.daemon = try DaemonProcess(root: a.path, environment: env)
            Self.smallLimit = try DaemonProcess(root: b.path, arguments: ["--max-upload", "10000", "--cache", "64K"], environment: env)
        }
    }

    override class func tearDown() {
        _ = daemon?.stop()
        _ = smallLimit?.stop()
        (daemon, smallLimit, roots) = (nil, nil, [])
        super.tearDown()
    }

    /// A project made through PostgreSQL with the suite's tiny chunks; the path is the first
    /// replica's cache folder of it.
    override func makeRemoteStore(_ name: String = "remote") throws -> String {
        let d = try XCTUnwrap(Self.daemon)
        let project = "p-" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let r = d.trove(["daemon", "project", "create", project, "--root", d.root, "--chunk-avg", "\(tiny.avgSize)"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let path = d.root + "/projects/" + project
        try FileIO.mkdirs(path)
        tokens[path] = try d.token(project, role: "admin")
        return path
    }

    override func open(_ path: String, maxUpload: Int = SyncProtocol.defaultMaxUploadBytes) throws -> Remote {
        let d = try XCTUnwrap(maxUpload == SyncProtocol.defaultMaxUploadBytes ? Self.daemon : Self.smallLimit)
        return try HTTPRemote(url: d.url(FileIO.basename(path)), token: tokens[path], caFile: nil)
    }

    /// The project's folder in the bucket.
    func bucket(_ store: String) throws -> S3Client {
        let q = Self.objects.firstIndex(of: "?").map { String(Self.objects[$0...]) } ?? ""
        let url = String(Self.objects.dropLast(q.count)) + "/" + FileIO.basename(store) + q
        return try S3Client(location: try S3Location.parse(url), environment: try RadosGateway.shared().environment)
    }

    /// The project's packs in the bucket (not the replica's cache).
    override func packFiles(_ store: String) throws -> [String] {
        try bucket(store).list("packs/").map { String($0.name.dropFirst(6)) }.filter { $0.hasSuffix(".pack") }.sorted()
    }

    /// As a gc of a replicated project removes packs: from PostgreSQL's list, from the bucket,
    /// and (here by hand) from the replica's cache.
    override func removePacks(_ store: String) throws {
        try PostgresServer.shared().psql(Self.metadata, "DELETE FROM packs WHERE project = '\(FileIO.basename(store))'")
        let s3 = try bucket(store)
        for o in try s3.list("packs/") { try s3.delete(o.name) }
        for f in (try? FileManager.default.contentsOfDirectory(atPath: store + "/packs")) ?? [] { try FileManager.default.removeItem(atPath: store + "/packs/" + f) }
    }

    func testWhatOneReplicaStoredTheOtherServesAndATokenWorksOnBoth() throws {
        let a = try makeLocal("a")
        let c1 = try commit(a, ["model.bin": SeededBytes.bytes(seed: 31, count: 200_000), "notes.txt": Array("one".utf8)])
        let path = try makeRemoteStore()
        let first = try open(path)
        _ = try push(a, to: first)
        first.close()
        // The second replica never saw this upload: it finds the pack through PostgreSQL and reads it from S3.
        let d2 = try XCTUnwrap(Self.smallLimit)
        let second = try HTTPRemote(url: d2.url(FileIO.basename(path)), token: tokens[path], caFile: nil)
        defer { second.close() }
        XCTAssertEqual(try second.listRefs().first?.id, c1)
        let b = try makeLocal("b")
        _ = try Fetcher(store: b, remote: second, remoteName: "origin").fetch()
        let tree = try b.commit(c1).tree
        XCTAssertNotNil(try b.tree(tree).entries.first { $0.name == "model.bin" })
        XCTAssertTrue(try b.hasContent(ofBlob: try XCTUnwrap(try b.tree(tree).entries.first { $0.name == "model.bin" }?.id)),
                      "every chunk came from the other replica")
        XCTAssertFalse(FileIO.exists(d2.root + "/projects/" + FileIO.basename(path) + "/packs/" + (try packFiles(path).first ?? "x")),
                       "the second replica read the pack from S3 without keeping it")

        // Through the second replica, whose cache is 64 KiB: 300 KB in uploads of at most 10 KB.
        let c2 = try commit(a, ["more.bin": SeededBytes.bytes(seed: 32, count: 300_000)])
        _ = try push(a, to: second)
        let cache = d2.root + "/projects/" + FileIO.basename(path) + "/packs"
        let kept = try FileManager.default.contentsOfDirectory(atPath: cache).reduce(0) { $0 + (FileIO.fileSize(cache + "/" + $1) ?? 0) }
        XCTAssertLessThanOrEqual(kept, 64 << 10, "the replica's cache stays within --cache")
        XCTAssertGreaterThan(try packFiles(path).count, 20, "every upload is in the bucket")
        let c = try makeLocal("c")
        _ = try Fetcher(store: c, remote: second, remoteName: "origin").fetch()
        let more = try XCTUnwrap(try c.tree(try c.commit(c2).tree).entries.first { $0.name == "more.bin" })
        XCTAssertTrue(try c.hasContent(ofBlob: more.id), "what left the cache is read back from S3")
    }
}
