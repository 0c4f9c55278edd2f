import Foundation
import NIOCore
import NIOHTTP1
import TroveCore
import TroveProtocol
import TroveStore
@testable import TroveSync
import TroveTestSupport
import XCTest

/// Crafted inputs found in review: each must be refused cleanly, never crash or leak.
final class InputHardeningTests: XCTestCase {
    func testAnEndRecordWithAHugeCountIsMalformedNotACrash() {
        var stream = PackStream.header()
        stream += PackStream.endMagic + [UInt8](repeating: 0xFF, count: 8)
        var parser = PackStreamParser()
        XCTAssertThrowsError(try stream.withUnsafeBytes { _ = try parser.consume($0) }) {
            XCTAssertEqual(($0 as? CoreError)?.code, .malformedObject, "\($0)")
        }
    }

    /// A daemon replica killed while it sends an answer cuts the response mid-body: the parser's
    /// "stream ended at an unexpected time". A repeatable request is sent again (to the other
    /// replica, behind one address); one that may have changed something is not.
    func testAResponseCutMidBodyIsRetriedWhenTheRequestIsRepeatable() {
        XCTAssertTrue(HTTPRemote.isTransient(HTTPParserError.invalidEOFState, idempotent: true))
        XCTAssertFalse(HTTPRemote.isTransient(HTTPParserError.invalidEOFState, idempotent: false))
        XCTAssertFalse(HTTPRemote.isTransient(HTTPParserError.invalidHeaderToken, idempotent: true), "a malformed answer is not a lost one")
        // The same cut seen as the channel closing under a read or write (16-client replica run, 05:33 UTC).
        XCTAssertTrue(HTTPRemote.isTransient(ChannelError.ioOnClosedChannel, idempotent: true))
        XCTAssertTrue(HTTPRemote.isTransient(ChannelError.eof, idempotent: true))
        XCTAssertFalse(HTTPRemote.isTransient(ChannelError.ioOnClosedChannel, idempotent: false))
    }

    func testASshHostThatLooksLikeAnOptionIsRefused() {
        for url in ["-oProxyCommand=touch${IFS}pwned:x", "ssh://-oProxyCommand=x/path", "ssh://-l@host/path"] {
            XCTAssertThrowsError(try RemoteOpener.open(url, environment: [:]), url) {
                XCTAssertEqual(($0 as? SyncError)?.code, .invalidInput, "\(url): \($0)")
            }
        }
    }

    func testACredentialsPrefixMatchesOnlyUpToABoundary() throws {
        let t = TempDir()
        let path = t.path + "/credentials"
        try "https://trove.example.com:8470 TOKEN1\nhttps://trove.example.com:8470/team/ TOKEN2\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o600)
        let env = ["TROVE_CREDENTIALS": path]
        XCTAssertEqual(try Credentials.token(for: "https://trove.example.com:8470/proj", environment: env), "TOKEN1")
        XCTAssertEqual(try Credentials.token(for: "https://trove.example.com:8470/team/p", environment: env), "TOKEN2")
        XCTAssertNil(try Credentials.token(for: "https://trove.example.com:8470@evil.io/p", environment: env))
        XCTAssertNil(try Credentials.token(for: "https://trove.example.com:84700/p", environment: env))
        chmod(path, 0o644)
        XCTAssertThrowsError(try Credentials.token(for: "https://trove.example.com:8470/proj", environment: env), "a readable file is refused")
    }

    func testATreeNestedBeyondTheLimitIsRefusedNotAStackOverflow() throws {
        let t = TempDir()
        let store = try Store.initialize(root: t.path + "/.trove", workTree: t.path)
        let w = ObjectWriter(store: store)
        var id = try w.put(.tree, Tree.empty.encode())
        for _ in 0...(Graph.maxDepth + 1) {
            id = try w.put(.tree, try Tree(entries: [Tree.Entry(name: "d", kind: .directory, id: id, size: 0)]).encode())
        }
        try w.finish()
        XCTAssertThrowsError(try Graph.visitDelta(id, from: nil, in: store) { _ in }) {
            XCTAssertEqual(($0 as? StoreError)?.code, .invalidInput, "\($0)")
        }
    }
}

/// Two handles on one shared store (the daemon's and a path push's): what one writes, the
/// other finds, without being reopened.
final class SharedStoreHandleTests: XCTestCase {
    func testAnObjectWrittenThroughAnotherHandleIsFoundWithoutReopening() throws {
        let t = TempDir()
        let root = t.sub("store")
        try SharedStore.create(root: root)
        let daemon = try SharedStore(root: root)
        let first = Array("first".utf8), second = Array("second".utf8)
        let ids = [SHA256.hash(first), SHA256.hash(second)]
        var firstObjects = [PackedObject(type: .chunk, codec: .raw, rawLength: first.count, id: ids[0], stored: first)].makeIterator()
        _ = try daemon.receive(maxBytes: 1 << 20) { firstObjects.next() }
        XCTAssertTrue(try daemon.has(ids[0]))
        XCTAssertFalse(try daemon.has(ids[1]), "the table is loaded, the second object not written yet")
        let other = try SharedStore(root: root)
        var objects = [PackedObject(type: .chunk, codec: .raw, rawLength: second.count, id: ids[1], stored: second)].makeIterator()
        _ = try other.receive(maxBytes: 1 << 20) { objects.next() }
        XCTAssertTrue(try daemon.has(ids[1]), "a miss lists the packs again when the folder changed")
        XCTAssertEqual(try daemon.locateMany(ids).map { $0 != nil }, [true, true])
        XCTAssertEqual(try daemon.read(ids[1]).1, second)
    }
}
