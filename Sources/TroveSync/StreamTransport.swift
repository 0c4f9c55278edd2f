import Glibc
import TroveCore
import TroveProtocol
import TroveStore

/// Messages over a byte stream (a pipe, an SSH channel): each frame is a u32 length (little
/// endian) and that many bytes of one request or response; a pack stream, when a message
/// announces one, follows its frame unframed (Docs/protocol.md §Stream transport).
final class FrameChannel {
    let input: Int32
    let output: Int32
    let name: String
    private var buffer: UnsafeMutableRawPointer
    private let capacity = 1 << 20
    private var start = 0
    private var end = 0
    private var out: [UInt8] = []

    init(input: Int32, output: Int32, name: String) {
        self.input = input
        self.output = output
        self.name = name
        buffer = .allocate(byteCount: capacity, alignment: 64)
    }

    deinit { buffer.deallocate() }

    // MARK: reading

    /// Reads more bytes; false at end of stream.
    private func fill() throws -> Bool {
        if start == end { start = 0; end = 0 }
        if end == capacity {
            memmove(buffer, buffer + start, end - start)
            end -= start
            start = 0
        }
        while true {
            let n = read(input, buffer + end, capacity - end)
            if n > 0 { end += n; return true }
            if n == 0 { return false }
            if errno != EINTR { throw SyncError(.transport, "\(name): read failed: \(FileIO.errorText())") }
        }
    }

    private func readExactly(_ count: Int) throws -> [UInt8]? {
        var outBytes: [UInt8] = []
        outBytes.reserveCapacity(count)
        while outBytes.count < count {
            if start == end, try !fill() {
                if outBytes.isEmpty { return nil }
                throw SyncError(.transport, "\(name): the connection closed in the middle of a message")
            }
            let n = min(count - outBytes.count, end - start)
            outBytes.append(contentsOf: UnsafeRawBufferPointer(start: buffer + start, count: n))
            start += n
        }
        return outBytes
    }

    /// The next frame's bytes, or nil when the peer closed the stream between frames.
    func readFrame() throws -> [UInt8]? {
        guard let header = try readExactly(Frame.headerSize) else { return nil }
        let length = Frame.length(header)
        guard length > 0, length <= SyncProtocol.maxFrameBytes else {
            throw SyncError(.transport, "\(name): a frame of \(length) bytes (the limit is \(SyncProtocol.maxFrameBytes)); is the other side a trove of this version?")
        }
        guard let body = try readExactly(length) else {
            throw SyncError(.transport, "\(name): the connection closed in the middle of a message")
        }
        return body
    }

    /// Reads one pack stream, handing each object to `receive` as it completes.
    func readPackStream(_ receive: (PackedObject) throws -> Void) throws {
        var parser = PackStreamParser()
        while !parser.isDone {
            if start == end, try !fill() {
                throw SyncError(.transport, "\(name): the connection closed in the middle of a pack stream (truncated)")
            }
            let (used, events) = try parser.consume(UnsafeRawBufferPointer(start: buffer + start, count: end - start))
            start += used
            for case .object(let o) in events { try receive(o) }
        }
    }

    // MARK: writing

    func writeFrame(_ payload: [UInt8]) throws { try writeRaw(Frame.encode(payload)) }

    func writeRaw(_ bytes: [UInt8]) throws {
        out += bytes
        if out.count >= 1 << 20 { try flush() }
    }

    func flush() throws {
        guard !out.isEmpty else { return }
        do { try FileIO.writeAll(output, out, path: name) } catch {
            throw SyncError(.transport, "\(name): the connection closed (\(error))")
        }
        out.removeAll(keepingCapacity: true)
    }
}

/// Serves one store over a byte stream (stdin/stdout for `trove serve-stdio`, run by `ssh`).
public enum StreamServer {
    public static func serve(_ service: SyncService, input: Int32, output: Int32) throws {
        let channel = FrameChannel(input: input, output: output, name: "client")
        while let frame = try channel.readFrame() {
            let request: Request
            do { request = try Request.decode(frame) } catch let e as CoreError {
                try send(channel, .error(.invalidInput, message: "malformed request: \(e.message)", hint: nil))
                throw SyncError(.invalidInput, "malformed request from the client: \(e.message)")
            }
            if case .bye = request { return }
            do {
                try handle(request, service, channel)
            } catch let e as StreamAbort {
                // Mid-stream, a frame would be read as stream bytes: hanging up is the signal.
                if !e.midStream { try? send(channel, e.response) }
                if case let .error(_, message, _) = e.response { throw SyncError(.transport, "session ended: \(message)") }
                return
            }
            try channel.flush()
        }
    }

    /// Answers the client's first request with `error` (a store that cannot be opened, say),
    /// so that the client reports it as the server's answer rather than a broken connection.
    public static func refuse(_ error: Error, input: Int32, output: Int32) {
        let channel = FrameChannel(input: input, output: output, name: "client")
        _ = try? channel.readFrame()
        try? send(channel, errorResponse(error))
    }

    /// Errors after which the byte stream cannot be trusted: answer, then hang up.
    struct StreamAbort: Error {
        var response: Response
        var midStream = false
    }

    private static func handle(_ request: Request, _ service: SyncService, _ channel: FrameChannel) throws {
        func answer(_ body: () throws -> Response) throws {
            let r: Response
            do { r = try body() } catch { r = errorResponse(error) }
            try send(channel, r)
        }
        switch request {
        case .hello(let version, _):
            guard version == SyncProtocol.version else {
                throw StreamAbort(response: .error(.unsupportedVersion, message: "this server speaks protocol version \(SyncProtocol.version), the client \(version)",
                                                   hint: "use the same trove release on both sides"))
            }
            try answer { .hello(try service.hello(), refs: try service.refs()) }
        case .listRefs: try answer { .refs(try service.refs()) }
        case .missing(let ids): try answer { .missing(try service.missing(ids)) }
        case .upload:
            // Objects are parsed off the stream one at a time and handed to the store, which
            // keeps them only if the whole stream arrives and verifies.
            var parser = PackStreamParser()
            var queue: [PackedObject] = []
            var streamError: Error?
            let result: Response
            do {
                let r = try service.upload {
                    while queue.isEmpty && !parser.isDone {
                        do {
                            var events: [PackStreamParser.Event] = []
                            try channel.readPackStreamStep(&parser, &events)
                            for case .object(let o) in events { queue.append(o) }
                        } catch { streamError = error; throw error }
                    }
                    return queue.isEmpty ? nil : queue.removeFirst()
                }
                result = .uploaded(objects: r.objects, stored: r.stored, storedBytes: r.storedBytes)
            } catch {
                if streamError != nil { throw StreamAbort(response: errorResponse(error)) }
                // The store refused an object: read the rest of the stream so that the
                // connection stays usable, then report.
                do {
                    while !parser.isDone {
                        var events: [PackStreamParser.Event] = []
                        try channel.readPackStreamStep(&parser, &events)
                    }
                } catch { throw StreamAbort(response: errorResponse(error)) }
                result = errorResponse(error)
            }
            try send(channel, result)
        case .download(let ids):
            try streamed(channel) { emit in try service.download(ids, emit: emit) }
        case .metadata(let wants, let haves):
            try streamed(channel) { emit in try service.metadata(wants: wants, haves: haves, emit: emit) }
        case .updateRefs(let updates): try answer { .refsUpdated(try service.updateRefs(updates)) }
        case .bye: break
        }
    }

    /// Checks what can fail before the stream starts, then streams; an error after the first
    /// byte can only be signalled by hanging up (the client sees a truncated stream).
    private static func streamed(_ channel: FrameChannel, _ produce: ((PackedObject) throws -> Void) throws -> Void) throws {
        var objects: [PackedObject] = []
        var bytes = 0
        var started = false
        var count = 0
        func emit(_ o: PackedObject) throws {
            if !started {
                objects.append(o)
                bytes += o.stored.count
                if bytes < 4 << 20 { return }
                try begin()
            }
            try channel.writeRaw(PackStream.entry(o))
            count += 1
        }
        func begin() throws {
            started = true
            try send(channel, .stream)
            try channel.writeRaw(PackStream.header())
            let held = objects
            objects = []
            for o in held { try channel.writeRaw(PackStream.entry(o)); count += 1 }
        }
        do {
            try produce(emit)
        } catch {
            if started { throw StreamAbort(response: errorResponse(error), midStream: true) }
            try send(channel, errorResponse(error))
            return
        }
        if !started { try begin() }
        try channel.writeRaw(PackStream.end(count: count))
    }

    static func send(_ channel: FrameChannel, _ r: Response) throws {
        try channel.writeFrame(r.encode())
        try channel.flush()
    }

    static func errorResponse(_ error: Error) -> Response {
        let e = ProtocolError.from(error)
        return .error(e.code, message: e.message, hint: e.hint)
    }
}

extension ProtocolError {
    /// What the serving side reports for an error: the store's codes map onto the protocol's.
    public static func from(_ error: Error) -> ProtocolError {
        switch error {
        case let e as ProtocolError: return e
        case let e as StoreError:
            let code: ProtocolErrorCode
            switch e.code {
            case .notFound, .notAStore: code = .notFound
            case .integrity: code = .integrity
            case .conflict: code = .conflict
            case .io: code = .io
            case .invalidInput: code = e.message.contains("limit") ? .tooLarge : .invalidInput
            }
            return ProtocolError(code, e.message, hint: e.hint)
        case let e as CoreError: return ProtocolError(.invalidInput, e.message)
        case let e as SyncError: return ProtocolError(.general, e.message, hint: e.hint)
        default: return ProtocolError(.general, "\(error)")
        }
    }
}

extension FrameChannel {
    /// Feeds the parser what is buffered (reading more when nothing is), collecting events.
    func readPackStreamStep(_ parser: inout PackStreamParser, _ events: inout [PackStreamParser.Event]) throws {
        if start == end, try !fill() {
            throw SyncError(.transport, "\(name): the connection closed in the middle of a pack stream (truncated upload)")
        }
        let (used, ev) = try parser.consume(UnsafeRawBufferPointer(start: buffer + start, count: end - start))
        start += used
        events += ev
    }
}
