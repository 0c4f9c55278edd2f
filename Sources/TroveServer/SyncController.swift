import Foundation
import Hummingbird
import NIOCore
import NIOPosix
import TroveCore
import TroveProtocol
import TroveStore
import TroveSync

/// The sync protocol over HTTP (Docs/protocol.md §HTTP): each route carries the same message
/// bytes as the stream transport; every route checks the token's role for the project first.
struct SyncController: Sendable {
    let state: DaemonState
    static let contentType = "application/x-trove-v1"

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.get("{project}/v1/info") { req, ctx in
            await handle("info", req, ctx, role: .read) { svc, _ in
                frame(try await blocking { .hello(try svc.hello(), refs: try svc.refs()) })
            }
        }
        router.get("{project}/v1/refs") { req, ctx in
            await handle("refs", req, ctx, role: .read) { svc, _ in frame(try await blocking { .refs(try svc.refs()) }) }
        }
        router.post("{project}/v1/missing") { req, ctx in
            await handle("missing", req, ctx, role: .read) { svc, req in
                guard case .missing(let ids) = try await readRequest(req) else { throw badKind("missing") }
                return frame(try await blocking { .missing(try svc.missing(ids)) })
            }
        }
        router.post("{project}/v1/objects") { req, ctx in
            await handle("objects", req, ctx, role: .write) { svc, req in try await upload(svc, req) }
        }
        router.post("{project}/v1/download") { req, ctx in
            await handle("download", req, ctx, role: .read) { svc, req in
                guard case .download(let ids) = try await readRequest(req) else { throw badKind("download") }
                guard ids.count <= SyncProtocol.maxBatchIDs else { throw ProtocolError(.tooLarge, "\(ids.count) ids; the limit is \(SyncProtocol.maxBatchIDs)") }
                return stream { emit in
                    // Reads run one slice ahead of the network, so that disk and socket overlap.
                    @Sendable func read(_ start: Int) -> Task<[PackedObject], Error> {
                        let slice = Array(ids[start..<min(ids.count, start + 256)])
                        return Task {
                            try await blocking {
                                var out: [PackedObject] = []
                                try svc.download(slice) { out.append($0) }
                                return out
                            }
                        }
                    }
                    var next: Task<[PackedObject], Error>? = ids.isEmpty ? nil : read(0)
                    var start = 0
                    while let current = next {
                        start += 256
                        next = start < ids.count ? read(start) : nil
                        try await emit(try await current.value)
                    }
                }
            }
        }
        router.post("{project}/v1/metadata") { req, ctx in
            await handle("metadata", req, ctx, role: .read) { svc, req in
                guard case let .metadata(wants, haves) = try await readRequest(req) else { throw badKind("metadata") }
                // Computed before the first byte goes out, so that errors get a proper answer.
                let objects = try await blocking {
                    var out: [PackedObject] = []
                    try svc.metadata(wants: wants, haves: haves) { out.append($0) }
                    return out
                }
                return stream { emit in try await emit(objects) }
            }
        }
        router.post("{project}/v1/refs") { req, ctx in
            await handle("update-refs", req, ctx, role: .write) { svc, req in
                guard case .updateRefs(let updates) = try await readRequest(req) else { throw badKind("updateRefs") }
                return frame(try await blocking { .refsUpdated(try svc.updateRefs(updates)) })
            }
        }
        router.get("{project}/v1/settings") { req, ctx in
            await handle("settings", req, ctx, role: .admin) { svc, _ in try await blocking { try settingsResponse(svc, project(ctx)) } }
        }
        router.put("{project}/v1/settings") { req, ctx in
            await handle("settings", req, ctx, role: .admin) { svc, req in
                let body = try await req.body.collect(upTo: 64 << 10)
                guard let obj = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] else {
                    throw ProtocolError(.invalidInput, "settings must be a JSON object")
                }
                for (k, v) in obj {
                    guard k == "description", let text = v as? String, text.count <= 1024,
                          !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
                        throw ProtocolError(.invalidInput, "unknown or invalid setting \(k); settable: description (one line of at most 1024 characters)")
                    }
                    try await blocking { try state.projects.setSetting(project(ctx), "project.description", text) }
                }
                return try await blocking { try settingsResponse(svc, project(ctx)) }
            }
        }
    }

    // MARK: plumbing

    /// Checks the project name (400), the token (401) and its role (403) before anything else,
    /// then the project's existence (404); maps every error to a status and an error frame.
    func handle(_ route: String, _ request: Request, _ context: BasicRequestContext, role: Role,
                _ body: @escaping @Sendable (SyncService, Request) async throws -> Response) async -> Response {
        let start = DispatchTime.now().uptimeNanoseconds
        var response: Response
        do {
            let project = self.project(context)
            try ProjectRegistry.validate(project)
            // Checked in line: on two cores NIO's thread pool has two threads, and queueing these
            // short look-ups behind uploads cost a third of the replicas' throughput. A PostgreSQL
            // that stops answering holds them at most TROVE_METADATA_TIMEOUT seconds.
            try authorize(request, project: project, role: role)
            guard let svc = try state.projects.service(project) else {
                throw ProtocolError(.notFound, "no project \(project) on this daemon", hint: "create it with `trove daemon project create \(project)`")
            }
            response = try await body(svc, request)
        } catch {
            response = SyncController.errorResponse(error)
        }
        state.metrics.request(route: route, status: Int(response.status.code), seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        return response
    }

    func authorize(_ request: Request, project: String, role: Role) throws {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw ProtocolError(.unauthorized, "a token is required", hint: "set TROVE_TOKEN or add the token to ~/.config/trove/credentials")
        }
        guard let entry = try state.tokens.verify(String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)) else {
            throw ProtocolError(.unauthorized, "the token is unknown, expired or revoked", hint: "ask the daemon's admin for a new one")
        }
        guard entry.project == project else {
            throw ProtocolError(.forbidden, "the token is not valid for project \(project)")
        }
        guard entry.role >= role else {
            throw ProtocolError(.forbidden, "the token's role \(entry.role) may not do this (needs \(role))")
        }
    }

    func readRequest(_ request: Request) async throws -> TroveProtocol.Request {
        let buffer = try await request.body.collect(upTo: SyncProtocol.maxFrameBytes + 4)
        state.metrics.received(buffer.readableBytes)
        let bytes = Array(buffer: buffer)
        guard bytes.count >= 4 else { throw ProtocolError(.invalidInput, "the request body is not a frame") }
        let length = Frame.length(bytes)
        guard length == bytes.count - 4 else { throw ProtocolError(.invalidInput, "the frame length \(length) does not match the body (\(bytes.count - 4) bytes)") }
        do { return try TroveProtocol.Request.decode(Array(bytes[4...])) } catch let e as CoreError {
            throw ProtocolError(.invalidInput, "malformed request: \(e.message)")
        }
    }

    func badKind(_ expected: String) -> ProtocolError { ProtocolError(.invalidInput, "this route takes a \(expected) request") }

    /// Parses the pack stream as it arrives and stores objects as they verify; the upload
    /// becomes durable only when the end record has arrived.
    func upload(_ svc: SyncService, _ request: Request) async throws -> Response {
        guard state.uploads.enter() else {
            throw ProtocolError(.general, "the daemon is busy with \(state.uploads.limit) uploads", hint: "retry shortly")
        }
        defer { state.uploads.leave() }
        let upload = try await blocking { try svc.beginUpload() }
        var parser = PackStreamParser()
        var received = 0
        let limit = state.config.maxUploadBytes + (1 << 20)
        // Objects are verified and stored in groups of about 4 MiB, on all cores.
        var pending: [PackedObject] = []
        var pendingBytes = 0
        var storing: Task<Void, Error>?
        defer { storing?.cancel() }
        for try await buffer in request.body {
            received += buffer.readableBytes
            state.metrics.received(buffer.readableBytes)
            guard received <= limit else {
                throw ProtocolError(.tooLarge, "upload is larger than the \(state.config.maxUploadBytes)-byte limit", hint: "send the objects in several uploads")
            }
            var objects: [PackedObject] = []
            try buffer.withUnsafeReadableBytes { raw in
                var at = 0
                while at < raw.count {
                    guard !parser.isDone else { throw ProtocolError(.invalidInput, "bytes after the pack stream's end record") }
                    let (used, events) = try parser.consume(UnsafeRawBufferPointer(rebasing: raw[at...]))
                    at += used
                    for case .object(let o) in events { objects.append(o) }
                }
            }
            pending += objects
            pendingBytes += objects.reduce(0) { $0 + $1.stored.count }
            if pendingBytes >= 4 << 20 {
                // Verify and write this group while the next one arrives; one group at a time.
                let group = pending
                pending = []
                pendingBytes = 0
                try await storing?.value
                storing = Task { try await blocking { try upload.addAll(group) } }
            }
        }
        try await storing?.value
        if !pending.isEmpty {
            let group = pending
            try await blocking { try upload.addAll(group) }
        }
        guard parser.isDone else {
            throw ProtocolError(.invalidInput, "truncated upload: the pack stream ended before its end record", hint: "nothing was stored; send it again")
        }
        let r = try await blocking { try upload.finish() }
        state.metrics.stored(r.stored)
        return frame(.uploaded(objects: r.objects, stored: r.stored, storedBytes: r.storedBytes))
    }

    /// A `stream` frame then a pack stream, written as `produce` hands over objects.
    func stream(_ produce: @escaping @Sendable (_ emit: ([PackedObject]) async throws -> Void) async throws -> Void) -> Response {
        let metrics = state.metrics
        let rate = state.config.limitRate
        let body = ResponseBody { writer in
            var head = TroveProtocol.Response.stream.framed()
            head += PackStream.header()
            try await writer.write(ByteBuffer(bytes: head))
            var count = 0
            let started = DispatchTime.now().uptimeNanoseconds
            var sent = 0
            try await produce { objects in
                // One copy: header and stored bytes straight into the buffer that is sent.
                var out = ByteBuffer()
                out.reserveCapacity(objects.reduce(0) { $0 + PackFormat.entryHeaderSize + $1.stored.count })
                for o in objects {
                    out.writeBytes(PackFormat.entryHeader(type: o.type, codec: o.codec, rawLength: o.rawLength, storedLength: o.stored.count, id: o.id))
                    out.writeBytes(o.stored)
                }
                count += objects.count
                let n = out.readableBytes
                sent += n
                try await writer.write(out)
                metrics.sent(n)
                if let rate, rate > 0 {
                    // Sleep until the bytes sent so far fit the rate.
                    let due = UInt64(Double(sent) / Double(rate) * 1e9)
                    let elapsed = DispatchTime.now().uptimeNanoseconds - started
                    if due > elapsed { try await Task.sleep(nanoseconds: due - elapsed) }
                }
            }
            try await writer.write(ByteBuffer(bytes: PackStream.end(count: count)))
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: SyncController.contentType], body: body)
    }

    func project(_ context: BasicRequestContext) -> String { context.parameters.get("project") ?? "" }

    func settingsResponse(_ svc: SyncService, _ project: String) throws -> Response {
        let obj: [String: Any] = ["description": try state.projects.setting(project, "project.description") ?? "", "chunker": "\(svc.store.parameters)"]
        let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func errorResponse(_ error: Error) -> Response {
        let e: ProtocolError
        if let pe = error as? ProtocolError { e = pe } else if let he = error as? HTTPError, he.status == .contentTooLarge {
            e = ProtocolError(.tooLarge, "the request body is too large")
        } else {
            e = ProtocolError.from(error)
        }
        let status: HTTPResponse.Status
        switch e.code {
        case .invalidInput, .unsupportedVersion: status = .badRequest
        case .unauthorized: status = .unauthorized
        case .forbidden: status = .forbidden
        case .notFound: status = .notFound
        case .conflict: status = .conflict
        case .tooLarge: status = .contentTooLarge
        case .integrity: status = .unprocessableContent
        case .io: status = .internalServerError
        case .unavailable: status = .serviceUnavailable
        case .general: status = e.message.contains("busy") ? .serviceUnavailable : .internalServerError
        }
        var headers: HTTPFields = [.contentType: SyncController.contentType]
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer realm=\"trove\"" }
        return Response(status: status, headers: headers,
                        body: .init(byteBuffer: ByteBuffer(bytes: TroveProtocol.Response.error(e.code, message: e.message, hint: e.hint).framed())))
    }
}

func frame(_ r: TroveProtocol.Response) -> Response {
    Response(status: .ok, headers: [.contentType: SyncController.contentType], body: .init(byteBuffer: ByteBuffer(bytes: r.framed())))
}

/// Runs blocking store work (disk reads, fsync) off the async executor, on NIO's thread pool.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await NIOThreadPool.singleton.runIfActive(body)
}
