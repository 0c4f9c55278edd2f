import Foundation
import TroveCore
import TroveProtocol
import TroveStore
import TroveSync
import TroveTestSupport
import XCTest

/// One suite, run against every transport (path, stdio child process, SSH through a real
/// sshd): each subclass says how to reach a store.
class RemoteConformance: XCTestCase {
    let tiny = ChunkerParameters(minSize: 256, avgSize: 1024, maxSize: 4096)
    var temp: TempDir!

    override func setUpWithError() throws {
        temp = TempDir("trove-sync")
        if type(of: self) == RemoteConformance.self { throw XCTSkip("the base suite runs through its transport subclasses") }
    }

    /// Opens the store at `path` through this transport.
    func open(_ path: String, maxUpload: Int = SyncProtocol.defaultMaxUploadBytes) throws -> Remote {
        fatalError("subclass")
    }

    // MARK: helpers

    func makeLocal(_ name: String) throws -> Store {
        let dir = temp.sub(name)
        return try Store.initialize(root: dir + "/.trove", workTree: dir, parameters: tiny)
    }

    /// Writes `files` into the store's working tree and commits them all.
    @discardableResult
    func commit(_ store: Store, _ files: [String: [UInt8]], message: String = "c") throws -> ObjectID {
        let wt = try Worktree(store: store)
        for (p, b) in files {
            try FileIO.mkdirs(FileIO.dirname(store.workTree! + "/" + p))
            writeFile(store.workTree! + "/" + p, b)
        }
        let w = ObjectWriter(store: store)
        _ = try wt.add([""], writer: w, progress: nil)
        try w.finish()
        return try wt.commit(message: message, author: .init(name: "t", time: 1_700_000_000, offsetMinutes: 0), allowEmpty: true, writer: ObjectWriter(store: store))
    }

    /// The chunk ids of the file at `path` in `commit`, in file order.
    func chunkIDs(_ store: Store, _ commit: ObjectID, _ path: String) throws -> [ObjectID] {
        try store.chunks(ofBlob: try XCTUnwrap(try store.flatten(tree: try store.commit(commit).tree)[path]).id).map(\.id)
    }

    func makeRemoteStore(_ name: String = "remote") throws -> String {
        let p = temp.sub(name)
        try SharedStore.create(root: p, parameters: tiny)
        return p
    }

    func packFiles(_ store: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: store + "/packs").sorted()
    }

    /// A pack's bytes as the remote holds them, and a way to change them behind its back
    /// (transports whose packs are not files override both).
    func readPack(_ store: String, _ name: String) throws -> [UInt8] { try FileIO.readFile(store + "/packs/" + name) }
    func writePack(_ store: String, _ name: String, _ bytes: [UInt8]) throws { try FileIO.atomicWrite(store + "/packs/" + name, bytes) }

    /// Removes every pack behind the remote's back.
    func removePacks(_ store: String) throws {
        for f in try packFiles(store) { try FileManager.default.removeItem(atPath: store + "/packs/" + f) }
    }

    func push(_ store: Store, to remote: Remote, _ refs: [String] = ["heads/main"], force: Bool = false) throws -> Pusher.Result {
        try Pusher(store: store, remote: remote, remoteName: "origin").push(refs.map { RefSpec(source: $0, destination: $0, force: force) })
    }

    // MARK: the suite

    func testHelloReportsChunkerAndRefs() throws {
        let path = try makeRemoteStore()
        let remote = try open(path)
        defer { remote.close() }
        let (info, refs) = try remote.hello()
        XCTAssertEqual(info.version, SyncProtocol.version)
        XCTAssertEqual(info.chunker, tiny)
        XCTAssertEqual(info.head, "heads/main")
        XCTAssertEqual(refs, [])
    }

    func testPushThenFetchIntoAnotherStoreGivesTheSameFiles() throws {
        let a = try makeLocal("a")
        let model = SeededBytes.bytes(seed: 1, count: 300_000)
        let tip = try commit(a, ["model.bin": model, "data/x.txt": Array("x".utf8), "data/empty": []])
        let path = try makeRemoteStore()
        let remote = try open(path)
        defer { remote.close() }
        let pushed = try push(a, to: remote)
        XCTAssertEqual(pushed.updated.map(\.name), ["heads/main"])
        XCTAssertGreaterThan(pushed.sent.objects, 250)
        XCTAssertEqual(try remote.listRefs(), [RefEntry(name: "heads/main", id: tip)])
        XCTAssertEqual(try a.refs.read("remotes/origin/heads/main"), tip)

        let b = try makeLocal("b")
        let fetched = try Fetcher(store: b, remote: remote, remoteName: "origin").fetch()
        XCTAssertEqual(fetched.refs.map(\.new), [tip])
        let files = try b.flatten(tree: try b.commit(tip).tree)
        XCTAssertEqual(try Materializer.readBlob(store: b, blob: try XCTUnwrap(files["model.bin"]).id), model)
        XCTAssertEqual(try Materializer.readBlob(store: b, blob: try XCTUnwrap(files["data/x.txt"]).id), Array("x".utf8))
        XCTAssertEqual(try Fsck(store: b).run(full: true).problems.count, 0)

        // Nothing new: a second push sends nothing; a second fetch fetches nothing.
        XCTAssertEqual(try push(a, to: remote).sent.objects, 0)
        let again = try Fetcher(store: b, remote: remote, remoteName: "origin").fetch()
        XCTAssertEqual(again.metadata.objects + again.chunks.objects, 0)
    }

    func testASmallEditSendsOnlyTheChangedChunks() throws {
        let a = try makeLocal("a")
        var model = SeededBytes.bytes(seed: 2, count: 400_000)
        try commit(a, ["model.bin": model])
        let remote = try open(try makeRemoteStore())
        defer { remote.close() }
        let first = try push(a, to: remote).sent
        model.replaceSubrange(200_000..<200_050, with: SeededBytes.bytes(seed: 3, count: 50))
        try commit(a, ["model.bin": model])
        let second = try push(a, to: remote).sent
        XCTAssertLessThan(second.bytes, first.bytes / 20, "an edit of 50 bytes sends chunks near it and the changed manifest only")
    }

    func testACorruptObjectRejectsTheWholeUploadAndTheConnectionStaysUsable() throws {
        let path = try makeRemoteStore()
        let remote = try open(path)
        defer { remote.close() }
        let good = Array("good object".utf8), bad = Array("bad object".utf8)
        var corrupt = PackedObject(type: .chunk, codec: .raw, rawLength: bad.count, id: SHA256.hash(bad), stored: bad)
        corrupt.stored[3] ^= 0x01
        let ok = PackedObject(type: .chunk, codec: .raw, rawLength: good.count, id: SHA256.hash(good), stored: good)
        XCTAssertThrowsError(try remote.upload([ok, corrupt])) { e in
            XCTAssertEqual((e as? SyncError)?.code, .integrity, "\(e)")
        }
        XCTAssertEqual(try packFiles(path), [], "nothing stored, no temporary file left")
        XCTAssertEqual(try remote.missing([ok.id]), [true])
        // The same connection still works.
        XCTAssertEqual(try remote.upload([ok]).stored, 1)
        XCTAssertEqual(try remote.missing([ok.id, corrupt.id]), [false, true])
    }

    func testAPackRemovedBehindTheServersBackIsNoLongerReportedPresent() throws {
        let path = try makeRemoteStore()
        let remote = try open(path)
        defer { remote.close() }
        let bytes = Array("soon gone".utf8)
        let o = PackedObject(type: .chunk, codec: .raw, rawLength: bytes.count, id: SHA256.hash(bytes), stored: bytes)
        XCTAssertEqual(try remote.upload([o]).stored, 1)
        XCTAssertEqual(try remote.missing([o.id]), [false])
        // A gc or an operator removes the pack while the server keeps running.
        try removePacks(path)
        XCTAssertEqual(try remote.missing([o.id]), [true], "a push must send it again rather than trust a stale table")
        XCTAssertEqual(try remote.upload([o]).stored, 1)
    }

    func testAnObjectSentUnderAnotherTypeIsRejected() throws {
        let path = try makeRemoteStore()
        let remote = try open(path)
        defer { remote.close() }
        // The empty chunk's id, sent as a commit: the hash matches, the type does not.
        let fake = PackedObject(type: .commit, codec: .raw, rawLength: 0, id: SHA256.hash([UInt8]()), stored: [])
        XCTAssertThrowsError(try remote.upload([fake])) { XCTAssertEqual(($0 as? SyncError)?.code, .integrity, "\($0)") }
        XCTAssertEqual(try remote.missing([fake.id]), [true])
    }

    func testAFetchKilledAfterTheTipArrivedStillCompletesNextTime() throws {
        let a = try makeLocal("a")
        let tip = try commit(a, ["f": SeededBytes.bytes(seed: 40, count: 30_000), "d/g": Array("g".utf8)])
        let path = try makeRemoteStore()
        let remote = try open(path)
        defer { remote.close() }
        _ = try push(a, to: remote)
        // B holds the tip commit alone, as after a fetch killed once the pack holding it was done.
        let b = try makeLocal("b")
        var objects: [PackedObject] = []
        try remote.download([tip]) { objects.append($0) }
        let w = ObjectWriter(store: b)
        _ = try w.putReceived(objects)
        try w.finish()
        XCTAssertEqual(try b.type(of: tip), .commit)
        _ = try Fetcher(store: b, remote: remote, remoteName: "origin").fetch()
        XCTAssertEqual(try Fetcher.missingChunks(in: b, commits: [tip]).count, 0, "tree, manifest and chunks arrived")
        XCTAssertEqual(try Materializer.readBlob(store: b, blob: try b.flatten(tree: try b.commit(tip).tree)["f"]!.id),
                       SeededBytes.bytes(seed: 40, count: 30_000))
    }

    /// A fetch verifies what arrives in groups while it receives the next: a byte flipped late
    /// in the remote's pack stops it with an integrity error naming the object, the groups
    /// verified before it stay stored (the next fetch asks only for the rest), and nothing
    /// damaged is stored.
    func testAFetchOfADamagedPackNamesTheObjectAndKeepsTheGroupsBeforeIt() throws {
        let a = try makeLocal("a")
        let tip = try commit(a, ["model.bin": SeededBytes.bytes(seed: 41, count: 14_000_000)])
        let path = try makeRemoteStore()
        let remote = try open(path)
        defer { remote.close() }
        _ = try push(a, to: remote)
        let packs = try packFiles(path).filter { $0.hasSuffix(".pack") }.map { ($0, try readPack(path, $0)) }
        var (largest, bytes) = try XCTUnwrap(packs.max { $0.1.count < $1.1.count })
        bytes[bytes.count * 85 / 100] ^= 0x5a
        try writePack(path, largest, bytes)
        let b = try makeLocal("b")
        XCTAssertThrowsError(try Fetcher(store: b, remote: remote, remoteName: "origin").fetch()) { e in
            XCTAssertTrue((e as? StoreError)?.code == .integrity || (e as? SyncError)?.code == .integrity, "\(e)")
            XCTAssertTrue("\(e)".contains("corrupt") || "\(e)".contains("does not match"), "names what is damaged: \(e)")
        }
        let total = try chunkIDs(a, tip, "model.bin").count
        let missing = try Fetcher.missingChunks(in: b, commits: [tip]).count
        XCTAssertGreaterThan(missing, 0, "the damaged chunk is not stored")
        XCTAssertLessThan(missing, total / 2, "the groups verified before it are kept")
        XCTAssertEqual(try Fsck(store: b).run(full: true).problems.count, 0, "nothing damaged was stored")
    }

    func testAForgedIDIsRejected() throws {
        let path = try makeRemoteStore()
        let remote = try open(path)
        defer { remote.close() }
        let bytes = Array("content".utf8)
        let forged = PackedObject(type: .chunk, codec: .raw, rawLength: bytes.count, id: SHA256.hash(Array("other".utf8)), stored: bytes)
        XCTAssertThrowsError(try remote.upload([forged])) { XCTAssertEqual(($0 as? SyncError)?.code, .integrity, "\($0)") }
        // A manifest whose self-check fails is refused too.
        let manifest = PackedObject(type: .blob, codec: .raw, rawLength: 40, id: SHA256.hash(bytes), stored: [UInt8](repeating: 7, count: 40))
        XCTAssertThrowsError(try remote.upload([manifest])) { XCTAssertEqual(($0 as? SyncError)?.code, .integrity, "\($0)") }
        XCTAssertEqual(try packFiles(path), [])
    }

    func testAnOversizedUploadIsRejected() throws {
        let path = try makeRemoteStore()
        let remote = try open(path, maxUpload: 10_000)
        defer { remote.close() }
        let objects = (0..<4).map { i -> PackedObject in
            let b = SeededBytes.bytes(seed: UInt64(10 + i), count: 4000)
            return PackedObject(type: .chunk, codec: .raw, rawLength: b.count, id: SHA256.hash(b), stored: b)
        }
        XCTAssertThrowsError(try remote.upload(objects)) { XCTAssertEqual(($0 as? SyncError)?.code, .invalidInput, "\($0)") }
        XCTAssertEqual(try packFiles(path), [])
        XCTAssertEqual(try remote.upload(Array(objects.prefix(2))).stored, 2)
    }

    func testARefCannotPointAtObjectsTheRemoteLacks() throws {
        let a = try makeLocal("a")
        let tip = try commit(a, ["f": SeededBytes.bytes(seed: 4, count: 20_000)])
        let path = try makeRemoteStore()
        let remote = try open(path)
        defer { remote.close() }
        // The commit and its tree, but not the chunks.
        let commitObject = try a.read(tip).1
        let tree = try a.commit(tip).tree
        try remote.upload([PackedObject(type: .commit, codec: .raw, rawLength: commitObject.count, id: tip, stored: commitObject),
                           PackedObject(type: .tree, codec: .raw, rawLength: try a.read(tree).1.count, id: tree, stored: try a.read(tree).1)])
        let r = try remote.updateRefs([RefUpdate(name: "heads/main", old: nil, new: tip)])
        XCTAssertEqual(r.map(\.status), [.missingObjects])
        let unknown = try remote.updateRefs([RefUpdate(name: "heads/x", old: nil, new: SHA256.hash([1, 2, 3]))])
        XCTAssertEqual(unknown.map(\.status), [.missingObjects])
        XCTAssertEqual(try remote.listRefs(), [])
    }

    func testRefUpdatesAreAtomicAndFastForwardOnly() throws {
        let a = try makeLocal("a")
        let c1 = try commit(a, ["f": Array("1".utf8)])
        let remote = try open(try makeRemoteStore())
        defer { remote.close() }
        _ = try push(a, to: remote)
        let c2 = try commit(a, ["f": Array("2".utf8)])
        _ = try push(a, to: remote)
        // The same update again, as a client whose answer was lost (a connection cut, a replica
        // killed after committing) sends it: reported done, and not applied twice.
        XCTAssertEqual(try remote.updateRefs([RefUpdate(name: "heads/main", old: c1, new: c2)]).map(\.status), [.ok])
        XCTAssertEqual(try remote.listRefs().map(\.id), [c2])
        // Back to c1 is not a fast-forward.
        let back = try remote.updateRefs([RefUpdate(name: "heads/main", old: c2, new: c1)])
        XCTAssertEqual(back.map(\.status), [.nonFastForward])
        // One stale update in a request refuses the whole request.
        let c3 = try commit(a, ["f": Array("3".utf8)])
        let mixed = try remote.updateRefs([RefUpdate(name: "tags/v1", old: nil, new: c1), RefUpdate(name: "heads/main", old: c1, new: c3)])
        XCTAssertEqual(mixed.map(\.status), [.notApplied, .stale])
        XCTAssertEqual(try remote.listRefs().map(\.name), ["heads/main"])
        // Forced, it moves; names are validated.
        XCTAssertEqual(try remote.updateRefs([RefUpdate(name: "heads/main", old: c2, new: c1, force: true)]).map(\.status), [.ok])
        XCTAssertEqual(try remote.updateRefs([RefUpdate(name: "heads/../x", old: nil, new: c1)]).map(\.status), [.invalidName])
        XCTAssertEqual(try remote.updateRefs([RefUpdate(name: "remotes/o/heads/x", old: nil, new: c1)]).map(\.status), [.invalidName])
    }

    func testTwoConcurrentPushesToOneRefExactlyOneWins() throws {
        let base = try makeLocal("base")
        try commit(base, ["f": Array("base".utf8)])
        let path = try makeRemoteStore()
        let r0 = try open(path)
        _ = try push(base, to: r0)
        r0.close()
        let stores = try (0..<2).map { i -> Store in
            let s = try makeLocal("c\(i)")
            let f = Fetcher(store: s, remote: try open(path), remoteName: "origin")
            _ = try f.fetch()
            try s.refs.update("heads/main", from: nil, to: try s.refs.read("remotes/origin/heads/main"), message: "t")
            _ = try Worktree(store: s).checkout(try s.refs.read("heads/main")!, newHead: .branch("heads/main"), force: true, progress: nil)
            try commit(s, ["g\(i)": SeededBytes.bytes(seed: UInt64(20 + i), count: 50_000)])
            return s
        }
        let remotes = try stores.map { _ in try open(path) }
        var outcomes = [Error?](repeating: nil, count: 2)
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            do { _ = try push(stores[i], to: remotes[i]) } catch { outcomes[i] = error }
        }
        for r in remotes { r.close() }
        let failures = outcomes.compactMap { $0 }
        XCTAssertEqual(failures.count, 1, "exactly one push wins: \(outcomes)")
        XCTAssertEqual((failures.first as? SyncError)?.code, .conflict)
        XCTAssertTrue("\(failures.first!)".contains("heads/main"), "the error names the ref: \(failures.first!)")
        let winner = outcomes[0] == nil ? 0 : 1
        let check = try open(path)
        defer { check.close() }
        XCTAssertEqual(try check.listRefs().first?.id, try stores[winner].refs.read("heads/main"))
        // The loser keeps its commit locally.
        XCTAssertNotNil(try stores[1 - winner].refs.read("heads/main"))
    }

    func testDownloadSendsWhatItHasAndLeavesOutTheRest() throws {
        let a = try makeLocal("a")
        let tip = try commit(a, ["f": SeededBytes.bytes(seed: 5, count: 10_000)])
        let remote = try open(try makeRemoteStore())
        defer { remote.close() }
        _ = try push(a, to: remote)
        let chunks = try chunkIDs(a, tip, "f")
        var got: [ObjectID] = []
        try remote.download(chunks + [SHA256.hash([9])]) { o in
            try o.verify(Decompressor())
            got.append(o.id)
        }
        XCTAssertEqual(got, chunks)
    }

    func testDownloadHandsObjectsOverInTheOrderAskedAcrossPacks() throws {
        // Two pushes, two packs, named by checksum: whichever order the names sort in, chunks
        // come back in the order asked (a clone asks in file order and streams files as they come
        // with direct I/O; out of order, a file goes through the page cache).
        let a = try makeLocal("a")
        let first = try commit(a, ["one": SeededBytes.bytes(seed: 11, count: 40_000)])
        let remote = try open(try makeRemoteStore())
        defer { remote.close() }
        _ = try push(a, to: remote)
        let second = try commit(a, ["two": SeededBytes.bytes(seed: 12, count: 40_000)])
        _ = try push(a, to: remote)
        let one = try chunkIDs(a, first, "one"), two = try chunkIDs(a, second, "two")
        XCTAssertGreaterThan(one.count, 2)
        // Reversed: the order asked differs from the order within a pack (a pushed file interleaved
        // with others): still the order asked.
        for asked in [one + two, two + one, Array(one.reversed()) + two] {
            var got: [ObjectID] = []
            try remote.download(asked) { got.append($0.id) }
            XCTAssertEqual(got, asked)
        }
    }

    func testMetadataSendsOnlyWhatTheHavesLack() throws {
        let a = try makeLocal("a")
        let c1 = try commit(a, ["x": Array("1".utf8), "dir/y": Array("y".utf8)])
        let c2 = try commit(a, ["x": Array("2".utf8)])
        let remote = try open(try makeRemoteStore())
        defer { remote.close() }
        _ = try push(a, to: remote)
        var types: [ObjectType] = []
        try remote.metadata(wants: [c2], haves: [c1]) { types.append($0.type) }
        XCTAssertEqual(types.sorted { $0.rawValue < $1.rawValue }, [.tree, .commit], "c2 and its root tree; dir/ did not change")
        var all: [ObjectType] = []
        try remote.metadata(wants: [c2], haves: []) { all.append($0.type) }
        XCTAssertEqual(all.filter { $0 == .commit }.count, 2)
    }
}

final class PathRemoteTests: RemoteConformance {
    override func open(_ path: String, maxUpload: Int = SyncProtocol.defaultMaxUploadBytes) throws -> Remote {
        let r = try PathRemote(url: path, path: path)
        r.service.maxUploadBytes = maxUpload
        return r
    }

    func testASharedPathStoreGetsNoDatabase() throws {
        let a = try makeLocal("a")
        try commit(a, ["f": SeededBytes.bytes(seed: 6, count: 30_000)])
        let path = try makeRemoteStore()
        let remote = try open(path)
        _ = try push(a, to: remote)
        _ = try Fetcher(store: try makeLocal("b"), remote: remote, remoteName: "origin").fetch()
        let files = try FileManager.default.contentsOfDirectory(atPath: path)
        XCTAssertFalse(files.contains { $0.hasPrefix("index.db") }, "SQLite must never live on the shared side: \(files)")
        XCTAssertTrue(try packFiles(path).allSatisfy { $0.hasSuffix(".pack") && !$0.hasPrefix("tmp-") })
    }
}

final class StdioRemoteTests: RemoteConformance {
    override func open(_ path: String, maxUpload: Int = SyncProtocol.defaultMaxUploadBytes) throws -> Remote {
        try StreamRemote(url: path, command: [Runner.trovePath, "serve-stdio", path, "--max-upload", "\(maxUpload)"])
    }

    func testATruncatedUploadLeavesTheStoreUnchanged() throws {
        let path = try makeRemoteStore()
        let b = SeededBytes.bytes(seed: 30, count: 100_000)
        let stream = PackStream.encode([PackedObject(type: .chunk, codec: .raw, rawLength: b.count, id: SHA256.hash(b), stored: b)])
        var frame = ByteWriter()
        frame.u32(UInt32(Request.upload.encode().count))
        frame.raw(Request.upload.encode())
        // The stream stops half-way: the client died.
        let input = frame.bytes + Array(stream.prefix(stream.count / 2))
        let r = Runner.run(Runner.trovePath, ["serve-stdio", path], cwd: temp.path, environment: Runner.environment(home: temp.path), stdin: input)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertEqual(try packFiles(path), [], "no pack and no temporary file")
    }
}

final class SSHRemoteTests: RemoteConformance {
    static var server: SSHServer?

    override func setUpWithError() throws {
        try super.setUpWithError()
        if SSHRemoteTests.server == nil { SSHRemoteTests.server = try SSHServer() }
    }

    override func open(_ path: String, maxUpload: Int = SyncProtocol.defaultMaxUploadBytes) throws -> Remote {
        let s = try XCTUnwrap(SSHRemoteTests.server)
        guard maxUpload == SyncProtocol.defaultMaxUploadBytes else {
            // The limit is the server's; over ssh, pass it on the remote command line.
            let cmd = s.sshCommand.split(separator: " ").map(String.init) + ["-p", "\(s.port)", "\(s.user)@127.0.0.1",
                      "\(Runner.trovePath) serve-stdio \(path) --max-upload \(maxUpload)"]
            return try StreamRemote(url: s.url(path), command: cmd)
        }
        return try RemoteOpener.open(s.url(path), environment: ["TROVE_SSH": s.sshCommand, "TROVE_REMOTE_TROVE": Runner.trovePath])
    }

    func testAWrongKeyOrClosedPortIsATransportError() throws {
        let s = try XCTUnwrap(SSHRemoteTests.server)
        let path = try makeRemoteStore()
        let wrongKey = s.sshCommand.replacingOccurrences(of: "/client ", with: "/host ")
        let denied = try RemoteOpener.open(s.url(path), environment: ["TROVE_SSH": wrongKey, "TROVE_REMOTE_TROVE": Runner.trovePath])
        XCTAssertThrowsError(try denied.hello()) { XCTAssertEqual(($0 as? SyncError)?.code, .transport, "\($0)") }
        denied.close()
        let closed = try RemoteOpener.open("ssh://127.0.0.1:1\(path)", environment: ["TROVE_SSH": s.sshCommand])
        XCTAssertThrowsError(try closed.hello()) { XCTAssertTrue("\($0)".contains("exited with status 255"), "\($0)") }
        closed.close()
    }
}

/// The suite over HTTP to a real `trove daemon` (one per class run, plus one with a small
/// upload limit), each test on its own project with an admin token.
final class HTTPRemoteTests: RemoteConformance {
    static var root: TempDir?
    static var daemon: DaemonProcess?
    static var smallLimit: DaemonProcess?
    var tokens: [String: String] = [:]

    override func setUpWithError() throws {
        try super.setUpWithError()
        if HTTPRemoteTests.daemon == nil {
            let root = TempDir("trove-daemon")
            HTTPRemoteTests.root = root
            let env = Runner.environment(home: root.path)
            HTTPRemoteTests.daemon = try DaemonProcess(root: root.path, environment: env)
            HTTPRemoteTests.smallLimit = try DaemonProcess(root: root.path, arguments: ["--max-upload", "10000"], environment: env)
        }
    }

    /// The class's daemons end with it: statics are never released, so they would outlive
    /// the test process.
    override class func tearDown() {
        _ = daemon?.stop()
        _ = smallLimit?.stop()
        (daemon, smallLimit, root) = (nil, nil, nil)
        super.tearDown()
    }

    override func makeRemoteStore(_ name: String = "remote") throws -> String {
        let d = try XCTUnwrap(HTTPRemoteTests.daemon)
        let project = "p-" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        // The daemon's projects use the default chunker; the suite's stores use tiny chunks.
        let path = d.root + "/projects/" + project
        try FileIO.mkdirs(d.root + "/projects")
        try SharedStore.create(root: path, parameters: tiny)
        tokens[path] = try d.token(project, role: "admin")
        return path
    }

    override func open(_ path: String, maxUpload: Int = SyncProtocol.defaultMaxUploadBytes) throws -> Remote {
        let d = try XCTUnwrap(maxUpload == SyncProtocol.defaultMaxUploadBytes ? HTTPRemoteTests.daemon : HTTPRemoteTests.smallLimit)
        return try HTTPRemote(url: d.url(FileIO.basename(path)), token: tokens[path], caFile: nil)
    }

    func status(_ args: [String]) -> String {
        let r = Runner.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}"] + args, cwd: temp.path, environment: ProcessInfo.processInfo.environment)
        return r.stdout
    }

    func testEveryRouteChecksTheTokenAndItsRole() throws {
        let d = try XCTUnwrap(HTTPRemoteTests.daemon)
        let p = FileIO.basename(try makeRemoteStore())
        let q = FileIO.basename(try makeRemoteStore())
        let read = try d.token(p, role: "read"), write = try d.token(p, role: "write")
        let info = d.url(p) + "/v1/info"
        XCTAssertEqual(status([info]), "401", "no token")
        XCTAssertEqual(status(["-H", "Authorization: Bearer trv_wrong", info]), "401", "wrong token")
        XCTAssertEqual(status(["-H", "Authorization: Bearer \(read)", info]), "200")
        XCTAssertEqual(status(["-H", "Authorization: Bearer \(read)", d.url(q) + "/v1/info"]), "403", "token of P reading Q")
        XCTAssertEqual(status(["-H", "Authorization: Bearer \(read)", d.url("no-such") + "/v1/info"]), "403", "no disclosure of which projects exist")
        XCTAssertEqual(status(["-X", "POST", "--data-binary", "x", "-H", "Authorization: Bearer \(read)", d.url(p) + "/v1/objects"]), "403", "read token pushing")
        XCTAssertEqual(status(["-X", "POST", "-H", "Authorization: Bearer \(write)", d.url(p) + "/v1/refs"]), "400", "write token, malformed body")
        XCTAssertEqual(status(["-H", "Authorization: Bearer \(write)", d.url(p) + "/v1/settings"]), "403", "settings need admin")
        XCTAssertEqual(status(["--path-as-is", "-H", "Authorization: Bearer \(read)", d.base + "/..%2F..%2Fetc/v1/info"]), "400", "traversal in a project name")
        XCTAssertEqual(status(["-H", "Authorization: Bearer \(read)", d.base + "/Bad_Name/v1/info"]), "400")

        // Revoked and expired tokens stop working at once.
        let doomed = try d.token(p, role: "read")
        XCTAssertEqual(status(["-H", "Authorization: Bearer \(doomed)", info]), "200")
        XCTAssertEqual(d.trove(["daemon", "token", "revoke", "--root", d.root, doomed]).status, 0)
        XCTAssertEqual(status(["-H", "Authorization: Bearer \(doomed)", info]), "401", "revoked")
        let short = try d.token(p, role: "read", expires: "1s")
        sleep(2)
        XCTAssertEqual(status(["-H", "Authorization: Bearer \(short)", info]), "401", "expired")

        // Through the client: the error says what to do, and the code is right.
        let r = try HTTPRemote(url: d.url(p), token: read, caFile: nil)
        XCTAssertThrowsError(try r.updateRefs([RefUpdate(name: "heads/x", old: nil, new: SHA256.hash([1]))])) {
            XCTAssertEqual(($0 as? SyncError)?.code, .forbidden, "\($0)")
        }
        // Only hashes are stored.
        let tokensFile = try String(contentsOfFile: d.root + "/tokens", encoding: .utf8)
        XCTAssertFalse(tokensFile.contains(read) || tokensFile.contains(write))
    }
}
