import AsyncHTTPClient
import Dispatch
import Glibc
import NIOCore
import NIOHTTP1
import NIOSSL
import TroveCore
import TroveProtocol
import TroveStore

/// A project on a `trove daemon`, over HTTP(S) (Docs/protocol.md §HTTP): keep-alive
/// connections, bodies streamed both ways, retries with backoff on transient failures, a
/// bearer token, TLS with an optional CA file.
public final class HTTPRemote: Remote {
    public let url: String
    let base: String
    let token: String?
    let client: HTTPClient
    /// Attempts per request for transient failures (connection refused/reset, 502, 503, 504).
    public var attempts = 5
    public var initialBackoff = 0.25

    public init(url: String, token: String?, caFile: String?, attempts: Int = 5) throws {
        self.attempts = max(1, attempts)
        self.url = url
        base = url.hasSuffix("/") ? String(url.dropLast()) : url
        self.token = token
        var config = HTTPClient.Configuration()
        config.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 4)
        // The pool retries a refused connection until the connect timeout; our own attempts
        // (with backoff) come on top.
        config.timeout = .init(connect: .seconds(3), read: .seconds(300))
        if url.hasPrefix("https://") {
            var tls = TLSConfiguration.makeClientConfiguration()
            if let caFile {
                guard FileIO.exists(caFile) else { throw SyncError(.invalidInput, "CA file \(caFile) does not exist") }
                tls.trustRoots = .file(caFile)
            }
            config.tlsConfiguration = tls
        }
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    }

    deinit { try? client.syncShutdown() }

    /// `http(s)://HOST:PORT/api/v1/projects/PROJECT`: this project in the daemon's JSON API (Docs/api.md).
    public func apiURL() throws -> String {
        guard let slash = base.lastIndex(of: "/"), base[..<slash].contains("//") else {
            throw SyncError(.invalidInput, "\(url) is not a daemon URL (http(s)://HOST:PORT/PROJECT)")
        }
        return "\(base[..<slash])/api/v1/projects/\(base[base.index(after: slash)...])"
    }

    /// One JSON request to the project's API route (`runs/ID/live`, …): one attempt, `timeout`
    /// seconds; the status and the body as they came (callers decide what a status means).
    public func api(_ method: HTTPMethod, _ route: String, json body: [UInt8]?, timeout: Int64 = 10) throws -> (status: HTTPResponseStatus, body: [UInt8]) {
        var req = HTTPClientRequest(url: try apiURL() + "/" + route)
        req.method = method
        req.headers.add(name: "Content-Type", value: "application/json")
        req.headers.add(name: "User-Agent", value: "trove/\(TroveVersion.string)")
        if let token { req.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body { req.body = .bytes(ByteBuffer(bytes: body)) }
        let client = client
        return try blockingAsync {
            let resp = try await client.execute(req, timeout: .seconds(timeout))
            return (resp.status, Array(buffer: try await resp.body.collect(upTo: 1 << 20)))
        }
    }

    public func close() {}
    public var maxConcurrentUploads: Int { 2 }

    // MARK: the protocol

    public func hello() throws -> (ServerInfo, [RefEntry]) {
        let r = try call(.GET, "info", body: nil)
        guard case let .hello(info, refs) = r else { throw unexpected(r) }
        guard info.version == SyncProtocol.version else {
            throw SyncError(.invalidInput, "\(url) speaks protocol version \(info.version); this trove speaks \(SyncProtocol.version)", hint: "use the same trove release on both sides")
        }
        return (info, refs)
    }

    public func listRefs() throws -> [RefEntry] {
        let r = try call(.GET, "refs", body: nil)
        guard case let .refs(refs) = r else { throw unexpected(r) }
        return refs
    }

    public func missing(_ ids: [ObjectID]) throws -> [Bool] {
        let r = try call(.POST, "missing", body: Request.missing(ids).framed())
        guard case let .missing(flags) = r, flags.count == ids.count else { throw unexpected(r) }
        return flags
    }

    public func upload(_ objects: [PackedObject]) throws -> (objects: Int, stored: Int, storedBytes: UInt64) {
        let r = try call(.POST, "objects", body: nil, stream: PackBody(objects: objects))
        guard case let .uploaded(n, stored, bytes) = r else { throw unexpected(r) }
        return (n, stored, bytes)
    }

    public func download(_ ids: [ObjectID], receive: (PackedObject) throws -> Void) throws {
        try streamed("download", Request.download(ids).framed(), receive)
    }

    public func metadata(wants: [ObjectID], haves: [ObjectID], receive: (PackedObject) throws -> Void) throws {
        try streamed("metadata", Request.metadata(wants: wants, haves: haves).framed(), receive)
    }

    public func updateRefs(_ updates: [RefUpdate]) throws -> [RefUpdateResult] {
        // Not retried once sent: a repeated compare-and-swap would report its own success as stale.
        // Safe to repeat: the daemon reports a ref already at its new value as updated.
        let r = try call(.POST, "refs", body: Request.updateRefs(updates).framed(), idempotent: true)
        guard case let .refsUpdated(results) = r else { throw unexpected(r) }
        return results
    }

    // MARK: plumbing

    private func unexpected(_ r: Response) -> SyncError { SyncError(.transport, "\(url): unexpected response \(r)") }

    private func request(_ method: HTTPMethod, _ route: String, body: [UInt8]?, stream: PackBody? = nil) -> HTTPClientRequest {
        var req = HTTPClientRequest(url: "\(base)/v1/\(route)")
        req.method = method
        req.headers.add(name: "Content-Type", value: "application/x-trove-v1")
        req.headers.add(name: "User-Agent", value: "trove/\(TroveVersion.string)")
        if let token { req.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body { req.body = .bytes(ByteBuffer(bytes: body)) }
        if let stream { req.body = .stream(stream, length: .known(Int64(stream.length))) }
        return req
    }

    /// One request whose whole answer is a frame.
    private func call(_ method: HTTPMethod, _ route: String, body: [UInt8]?, stream: PackBody? = nil, idempotent: Bool = true) throws -> Response {
        try withRetries(idempotent: idempotent) {
            let req = self.request(method, route, body: body, stream: stream)
            return try blockingAsync {
                let resp = try await self.client.execute(req, timeout: .seconds(300))
                let bytes = Array(buffer: try await resp.body.collect(upTo: SyncProtocol.maxFrameBytes + 4))
                return try self.decode(status: resp.status, bytes)
            }
        }
    }

    /// A request answered by a `stream` frame and a pack stream, parsed as it arrives. The
    /// network side runs as a task and hands objects over (at most 32 MiB waiting); `receive`
    /// runs on the caller's thread.
    private func streamed(_ route: String, _ body: [UInt8], _ receive: (PackedObject) throws -> Void) throws {
        try withRetries(idempotent: true) {
            let req = self.request(.POST, route, body: body)
            let handOff = HandOff()
            Task {
                do {
                    try await self.readStream(req, into: handOff)
                    handOff.finish(nil)
                } catch {
                    handOff.finish(error)
                }
            }
            do {
                while let o = try handOff.take() { try receive(o) }
            } catch {
                handOff.cancel()
                throw error
            }
        }
    }

    private func readStream(_ req: HTTPClientRequest, into handOff: HandOff) async throws {
        let resp = try await client.execute(req, timeout: .seconds(3600))
        if resp.status != .ok {
            let bytes = Array(buffer: try await resp.body.collect(upTo: SyncProtocol.maxFrameBytes + 4))
            _ = try decode(status: resp.status, bytes)
            throw SyncError(.transport, "\(url): HTTP \(resp.status.code)")
        }
        var head: [UInt8] = []
        var parser = PackStreamParser()
        var frameLength: Int?
        for try await buffer in resp.body {
            var objects: [PackedObject] = []
            try buffer.withUnsafeReadableBytes { raw in
                var at = 0
                // The `stream` frame first: a u32 length, then that many bytes.
                while frameLength == nil || head.count < frameLength! + 4, at < raw.count {
                    head.append(raw[at])
                    at += 1
                    if head.count == 4 {
                        frameLength = Frame.length(head)
                    }
                    if let n = frameLength, head.count == n + 4 {
                        guard case .stream = try decode(status: .ok, head) else { throw SyncError(.transport, "\(url): expected a pack stream") }
                    }
                }
                while at < raw.count && !parser.isDone {
                    let (used, events) = try parser.consume(UnsafeRawBufferPointer(rebasing: raw[at...]))
                    at += used
                    for case .object(let o) in events { objects.append(o) }
                }
            }
            for o in objects { try await handOff.put(o) }
        }
        guard parser.isDone else {
            throw SyncError(.transport, "\(url): the pack stream was cut short (connection lost or a server error after the stream began)")
        }
    }

    /// The frame of a response body, mapped to an error when it is one.
    private func decode(status: HTTPResponseStatus, _ bytes: [UInt8]) throws -> Response {
        guard bytes.count >= 4 else {
            throw SyncError(status == .ok ? .transport : HTTPRemote.code(for: status), "\(url): HTTP \(status.code) \(status.reasonPhrase) without a trove answer; is this a trove daemon?")
        }
        let resp: Response
        do { resp = try Response.decode(Array(bytes[4...])) } catch {
            throw SyncError(.transport, "\(url): malformed answer (HTTP \(status.code))")
        }
        if case let .error(code, message, hint) = resp {
            var e = SyncError.from(ProtocolError(code, message, hint: hint), remote: url)
            if status.code == 503 { e.code = .transport }
            throw e
        }
        return resp
    }

    static func code(for status: HTTPResponseStatus) -> SyncError.Code {
        switch status.code {
        case 401: .unauthorized
        case 403: .forbidden
        case 404: .notFound
        case 409: .conflict
        case 400, 413: .invalidInput
        case 422: .integrity
        default: .transport
        }
    }

    /// Retries transient failures with exponential backoff (0.25 s, 0.5 s, 1 s, ...).
    private func withRetries<T>(idempotent: Bool, _ body: () throws -> T) throws -> T {
        var delay = initialBackoff
        for attempt in 1... {
            do { return try body() } catch {
                guard attempt < attempts, HTTPRemote.isTransient(error, idempotent: idempotent) else { throw describe(error) }
                usleep(UInt32(delay * 1e6))
                delay *= 2
            }
        }
        fatalError("unreachable")
    }

    /// Worth another attempt: the daemon not (yet) listening, a connection lost, a 502/503/504.
    /// Not certificate or TLS failures, not answers the daemon gave on purpose. A request that
    /// may have reached the daemon is repeated only when it is idempotent.
    static func isTransient(_ error: Error, idempotent: Bool) -> Bool {
        if let e = error as? SyncError { return idempotent && e.code == .transport && !e.message.contains("protocol version") }
        let text = "\(error)"
        if text.contains("SSL") || text.contains("certificate") || text.contains("handshake") { return false }
        let notSent = text.contains("connectTimeout") || text.contains("Connection refused") || text.contains("connectionRefused")
        // An answer cut mid-body (the daemon, or a replica behind a balancer, killed while
        // sending) is the parser's invalidEOFState, "stream ended at an unexpected time".
        // The same cut may show as the channel closing under a read or a write.
        let channel = (error as? ChannelError).map { $0 == .ioOnClosedChannel || $0 == .eof || $0 == .outputClosed } ?? false
        let cut = (error as? HTTPParserError) == .invalidEOFState || text.contains("invalidEOFState") || channel
        let lost = text.contains("remoteConnectionClosed") || text.contains("Connection reset") || text.contains("connection reset")
            || text.contains("Broken pipe") || text.contains("readTimeout") || cut
        return notSent || (idempotent && lost)
    }

    private func describe(_ error: Error) -> Error {
        if error is SyncError { return error }
        return SyncError(.transport, "\(url): \(error)", hint: "check that the daemon runs and the URL is right")
    }
}

/// An upload's body, made object by object as the connection takes it (no copy of the whole).
struct PackBody: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let objects: [PackedObject]

    var length: Int {
        PackFormat.headerSize + objects.reduce(0) { $0 + PackFormat.entryHeaderSize + $1.stored.count } + PackStream.endRecordSize
    }

    struct AsyncIterator: AsyncIteratorProtocol {
        let objects: [PackedObject]
        var next = -1

        mutating func next() async -> ByteBuffer? {
            defer { next += 1 }
            if next == -1 { return ByteBuffer(bytes: PackStream.header()) }
            if next == objects.count { return ByteBuffer(bytes: PackStream.end(count: objects.count)) }
            guard next < objects.count else { return nil }
            let o = objects[next]
            var b = ByteBuffer()
            b.reserveCapacity(PackFormat.entryHeaderSize + o.stored.count)
            b.writeBytes(PackFormat.entryHeader(type: o.type, codec: o.codec, rawLength: o.rawLength, storedLength: o.stored.count, id: o.id))
            b.writeBytes(o.stored)
            return b
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(objects: objects) }
}

/// Objects from a network task to a waiting thread, with at most `limit` stored bytes queued.
final class HandOff: @unchecked Sendable {
    private let lock = Mutex()
    private var items: [PackedObject] = []
    private var head = 0
    private var bytes = 0
    private var done = false
    private var cancelled = false
    private var failure: Error?
    private let available = DispatchSemaphore(value: 0)
    let limit = 32 << 20

    func put(_ o: PackedObject) async throws {
        while lock.withLock({ bytes > limit && !cancelled }) { try await Task.sleep(nanoseconds: 200_000) }
        if lock.withLock({ cancelled }) { throw CancellationError() }
        lock.withLock {
            items.append(o)
            bytes += o.stored.count
        }
        available.signal()
    }

    func finish(_ error: Error?) {
        lock.withLock {
            done = true
            failure = error
        }
        available.signal()
    }

    func cancel() { lock.withLock { cancelled = true } }

    /// The next object, nil at the end, or the producer's error.
    func take() throws -> PackedObject? {
        available.wait()
        return try lock.withLock {
            if head < items.count {
                let o = items[head]
                head += 1
                bytes -= o.stored.count
                if head > 1024 && head * 2 > items.count {
                    items.removeFirst(head)
                    head = 0
                }
                return o
            }
            if let failure { throw failure }
            return nil
        }
    }
}

/// Carries a non-Sendable value across the blocking bridge; the owner's thread waits meanwhile.
final class UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}

/// Runs async work from synchronous code (the CLI and the sync engine are synchronous),
/// waiting for it. Never call from a Swift concurrency task.
func blockingAsync<T>(_ body: @escaping () async throws -> T) throws -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    let work = UncheckedBox(body)
    Task {
        do { box.result = .success(try await work.value()) } catch { box.result = .failure(error) }
        done.signal()
    }
    done.wait()
    return try box.result!.get()
}

final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, Error>?
}

/// Where a client finds its token for a daemon URL: `TROVE_TOKEN`, else the credentials file
/// (`~/.config/trove/credentials`, lines `URL-PREFIX TOKEN`, longest prefix wins), which must
/// not be readable by others.
public enum Credentials {
    public static func token(for url: String, environment: [String: String]) throws -> String? {
        if let t = environment["TROVE_TOKEN"], !t.isEmpty { return t }
        let home = environment["HOME"] ?? ""
        let path = environment["TROVE_CREDENTIALS"] ?? (environment["XDG_CONFIG_HOME"].map { $0 + "/trove/credentials" } ?? home + "/.config/trove/credentials")
        guard FileIO.exists(path) else { return nil }
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        guard st.st_mode & 0o077 == 0 else {
            throw SyncError(.invalidInput, "\(path) is readable by other users; tokens there would leak", hint: "chmod 600 \(path)")
        }
        var best: (Int, String)?
        for line in try FileIO.readText(path).split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            // A prefix matches up to a boundary: `https://h:8470` must not match `https://h:8470@evil/`.
            guard parts.count == 2, url.hasPrefix(parts[0]) else { continue }
            let rest = url.dropFirst(parts[0].count)
            guard rest.isEmpty || rest.hasPrefix("/") || parts[0].hasSuffix("/") else { continue }
            if best == nil || parts[0].count > best!.0 { best = (parts[0].count, String(parts[1])) }
        }
        return best?.1
    }
}
