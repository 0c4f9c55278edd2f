import Foundation
import TroveCore
import TroveProtocol
import TroveStore
import TroveSync
import TroveTestSupport
import XCTest

/// The remote suite against a real Ceph radosgw (it checks signatures), each test on its own
/// prefix of one bucket; then what only a bucket has: credentials, a damaged object, a
/// resumed multipart upload.
final class S3RemoteTests: RemoteConformance {
    var gateway: RadosGateway!
    static let bucket = "trove-conformance"
    nonisolated(unsafe) static var bucketMade = false

    override func setUpWithError() throws {
        try super.setUpWithError()
        gateway = try RadosGateway.shared()
        for (k, v) in gateway.environment { setenv(k, v, 1) }
        if !Self.bucketMade {
            try S3Client(location: try S3Location.parse(gateway.url(bucket: Self.bucket, prefix: "")), environment: ProcessInfo.processInfo.environment).createBucket()
            Self.bucketMade = true
        }
    }

    func client(_ url: String, environment: [String: String]? = nil) throws -> S3Client {
        try S3Client(location: try S3Location.parse(url), environment: environment ?? ProcessInfo.processInfo.environment)
    }

    /// A fresh prefix whose config carries the suite's tiny chunker.
    override func makeRemoteStore(_ name: String = "remote") throws -> String {
        let url = gateway.url(bucket: Self.bucket, prefix: "t-" + String(UInt64.random(in: 0...UInt64.max), radix: 36))
        try client(url).put("config", Array(StoreConfig.newStore(parameters: tiny).render().utf8))
        return url
    }

    override func open(_ path: String, maxUpload: Int = SyncProtocol.defaultMaxUploadBytes) throws -> Remote {
        try S3Remote(url: path, environment: ProcessInfo.processInfo.environment)
    }

    override func packFiles(_ store: String) throws -> [String] {
        try client(store).list("packs/").map { String($0.name.dropFirst(6)) }.sorted()
    }

    override func readPack(_ store: String, _ name: String) throws -> [UInt8] { try XCTUnwrap(try client(store).get("packs/" + name)) }
    override func writePack(_ store: String, _ name: String, _ bytes: [UInt8]) throws { try client(store).put("packs/" + name, bytes) }

    override func removePacks(_ store: String) throws {
        let c = try client(store)
        for f in try packFiles(store) { try c.delete("packs/" + f) }
    }

    override func testAnOversizedUploadIsRejected() throws {
        throw XCTSkip("a bucket has no upload limit of Trove's own (the pusher's uploads are 64 MiB; S3 allows 5 TiB)")
    }

    // MARK: only for buckets

    func testAWrongSecretKeyIsRefusedByTheServerAndNothingIsWritten() throws {
        let url = try makeRemoteStore()
        var env = ProcessInfo.processInfo.environment
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
        let remote = try S3Remote(url: url, environment: env)
        let b = Array("object".utf8)
        XCTAssertThrowsError(try remote.upload([PackedObject(type: .chunk, codec: .raw, rawLength: b.count, id: SHA256.hash(b), stored: b)])) { e in
            let s = e as? SyncError
            XCTAssertEqual(s?.code, .unauthorized, "\(e)")
            XCTAssertTrue(s?.message.contains("SignatureDoesNotMatch") ?? false, "the server's own reason: \(e)")
            XCTAssertTrue(s?.hint?.contains("AWS_SECRET_ACCESS_KEY") ?? false, "\(e)")
        }
        XCTAssertEqual(try packFiles(url), [], "nothing written")
        var none = env
        none["AWS_ACCESS_KEY_ID"] = nil
        none["AWS_SECRET_ACCESS_KEY"] = nil
        none["AWS_SHARED_CREDENTIALS_FILE"] = temp.path + "/none"
        XCTAssertThrowsError(try S3Remote(url: url, environment: none)) { XCTAssertEqual(($0 as? SyncError)?.code, .unauthorized, "\($0)") }
    }

    func testADamagedObjectInTheBucketIsDetectedOnFetchAndNamed() throws {
        let a = try makeLocal("a")
        try commit(a, ["model.bin": SeededBytes.bytes(seed: 7, count: 200_000)])
        let url = try makeRemoteStore()
        let remote = try open(url)
        _ = try push(a, to: remote)
        // Flip one byte in the middle of the chunk pack, behind Trove's back.
        let c = try client(url)
        let pack = try XCTUnwrap(try packFiles(url).first { $0.hasSuffix(".pack") && !$0.hasPrefix("m-") })
        var bytes = try XCTUnwrap(try c.get("packs/" + pack))
        bytes[bytes.count / 2] ^= 0xFF
        try c.put("packs/" + pack, bytes)
        let b = try makeLocal("b")
        XCTAssertThrowsError(try Fetcher(store: b, remote: try open(url), remoteName: "origin").fetch()) { e in
            XCTAssertTrue("\(e)".contains("does not match") || "\(e)".contains("integrity") || (e as? StoreError)?.code == .integrity || (e as? SyncError)?.code == .integrity, "\(e)")
            XCTAssertTrue("\(e)".contains(url) || "\(e)".contains("object"), "names what is damaged: \(e)")
        }
        XCTAssertEqual(try Fsck(store: b).run(full: true).problems.count, 0, "nothing damaged was stored")
    }

    func testAServerThatIgnoresConditionalWritesIsDetectedNotAssumed() throws {
        guard Runner.run("/usr/bin/env", ["python3", "-c", "import botocore"], cwd: "/", environment: ProcessInfo.processInfo.environment).status == 0 else {
            throw XCTSkip("botocore is not installed (scripts/deps.sh installs awscli)")
        }
        // The same radosgw behind a proxy that drops If-None-Match (and signs again).
        let portFile = temp.path + "/proxy.port"
        let proxy = Runner.start("/usr/bin/env", ["python3", projectRoot + "/fixtures/s3/no_conditional_proxy.py", gateway.endpoint, portFile],
                                 cwd: temp.path, environment: ProcessInfo.processInfo.environment)
        defer { proxy.kill9(); _ = proxy.wait() }
        for _ in 0..<100 where !FileIO.exists(portFile) { usleep(50_000) }
        let port = try String(contentsOfFile: portFile, encoding: .utf8)
        let direct = try makeRemoteStore()
        let proxied = direct.replacingOccurrences(of: (gateway.endpoint.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""),
                                                  with: "http%3A%2F%2F127.0.0.1%3A\(port)")
        XCTAssertNotEqual(proxied, direct)
        XCTAssertTrue(try S3Remote(url: direct, environment: ProcessInfo.processInfo.environment).honoursConditionalWrites(), "radosgw honours If-None-Match")
        let refusing = try S3Remote(url: proxied, environment: ProcessInfo.processInfo.environment)
        XCTAssertFalse(try refusing.honoursConditionalWrites(), "the proxy's overwrite is detected")
        let a = try makeLocal("a")
        let first = try commit(a, ["x": Array("1".utf8)])
        // Refs do not move where two writers could lose an update; the error says what to do.
        XCTAssertThrowsError(try push(a, to: refusing)) { e in
            let s = e as? SyncError
            XCTAssertEqual(s?.code, .conflict, "\(e)")
            XCTAssertTrue(s?.message.contains("does not honour conditional writes") ?? false, "\(e)")
            XCTAssertTrue(s?.hint?.contains("trove daemon") ?? false, "\(e)")
        }
        XCTAssertEqual(try open(direct).listRefs(), [], "no ref moved")
        // With the user's word that one store pushes here, refs move, each entry read back.
        var env = ProcessInfo.processInfo.environment
        env["TROVE_S3_SINGLE_WRITER"] = "1"
        let remote = try S3Remote(url: proxied, environment: env)
        _ = try push(a, to: remote)
        let second = try commit(a, ["x": Array("2".utf8)])
        _ = try push(a, to: remote)
        XCTAssertEqual(try open(direct).listRefs(), [RefEntry(name: "heads/main", id: second)])
        XCTAssertNotEqual(first, second)
        XCTAssertEqual(try packFiles(direct).filter { $0.hasSuffix(".idx") }.count, 4, "a chunk pack and a metadata pack for each commit")
    }

    func testAnInterruptedMultipartUploadResumesWithoutSendingItsPartsAgain() throws {
        let url = try makeRemoteStore()
        let remote = try S3Remote(url: url, environment: ProcessInfo.processInfo.environment)
        remote.partSize = 5 << 20
        let c = try client(url)
        let body = SeededBytes.bytes(seed: 9, count: 18 << 20)
        // An upload that stopped after its first two parts.
        let key = "packs/interrupted.pack"
        let id = try c.createMultipart(key)
        for n in 1...2 { _ = try c.uploadPart(key, uploadID: id, number: n, Array(body[((n - 1) * (5 << 20))..<(n * (5 << 20))])) }
        let before = try c.parts(key, uploadID: id)
        XCTAssertEqual(before.count, 2)
        try remote.putLarge(key, body)
        XCTAssertEqual(remote.partsResumed.get(), 2, "the two parts S3 held were not sent again")
        XCTAssertEqual(try c.get(key), body, "the object is whole")
        XCTAssertEqual(try c.multipartUploads(key), [], "the upload was completed, not started again")
    }
}
