import Hummingbird
import NIOCore
import TroveCore
import TroveProtocol
import TroveStore

/// A stored file as an HTTP response: streamed chunk by chunk (each verified against its id),
/// one `Range: bytes=A-B` honoured (206, or 416 outside the file), `ETag` = the blob id. Used
/// by the API's file route and the Hugging Face resolve route.
enum BlobResponse {
    static func make(_ store: SharedStore, _ e: Tree.Entry, range: String?, headers extra: HTTPFields, head: Bool) throws -> Response {
        let size = e.size
        var lo: UInt64 = 0, hi: UInt64 = size == 0 ? 0 : size - 1
        var status: HTTPResponse.Status = .ok
        var headers: HTTPFields = [.contentType: "application/octet-stream", .acceptRanges: "bytes", .eTag: "\"\(e.id.hex)\""]
        headers.append(contentsOf: extra)
        if let range {
            guard range.hasPrefix("bytes="), !range.contains(",") else { throw ProtocolError(.invalidInput, "only one range of bytes=A-B is served") }
            let spec = range.dropFirst(6).split(separator: "-", omittingEmptySubsequences: false)
            guard spec.count == 2 else { throw APIError.range(size: size) }
            if spec[0].isEmpty, let n = UInt64(spec[1]), n > 0 {
                lo = size > n ? size - n : 0
            } else if let a = UInt64(spec[0]) {
                lo = a
                if let b = UInt64(spec[1]) { hi = min(b, hi) } else if !spec[1].isEmpty { throw APIError.range(size: size) }
            } else { throw APIError.range(size: size) }
            guard lo < size, lo <= hi else { throw APIError.range(size: size) }
            status = .partialContent
            headers[.contentRange] = "bytes \(lo)-\(hi)/\(size)"
        }
        let length = size == 0 ? 0 : hi - lo + 1
        headers[.contentLength] = "\(length)"
        if head { return Response(status: status, headers: headers, body: .init()) }
        let blob = e.id
        let (first, last) = (lo, hi)
        let body = ResponseBody { writer in
            guard length > 0 else { try await writer.finish(nil); return }
            let chunks = try await blocking { try store.chunks(ofBlob: blob) }
            var offset: UInt64 = 0
            var wanted: [(ChunkRef, UInt64)] = []
            for c in chunks {
                if offset + c.length > first && offset <= last { wanted.append((c, offset)) }
                offset += c.length
            }
            for batch in stride(from: 0, to: wanted.count, by: 16) {
                let part = Array(wanted[batch..<min(wanted.count, batch + 16)])
                let bytes = try await blocking { () -> [UInt8] in
                    var out: [UInt8] = []
                    for (c, at) in part {
                        let (_, data) = try store.read(c.id)
                        let from = Int(first > at ? first - at : 0)
                        let to = Int(min(c.length, last - at + 1))
                        out += data[from..<to]
                    }
                    return out
                }
                try await writer.write(ByteBuffer(bytes: bytes))
            }
            try await writer.finish(nil)
        }
        return Response(status: status, headers: headers, body: body)
    }
}
