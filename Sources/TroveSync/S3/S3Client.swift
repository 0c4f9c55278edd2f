import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import TroveCore
import TroveStore

/// Where an S3 remote is: `s3://BUCKET/PREFIX`, with the endpoint and region from the URL's
/// query (`?endpoint=http://127.0.0.1:7480&region=us-east-1`, written by `trove remote add
/// --endpoint --region`), else `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, `AWS_REGION` /
/// `AWS_DEFAULT_REGION`, else AWS in us-east-1.
public struct S3Location: Sendable, Equatable {
    public var bucket: String
    public var prefix: String
    public var endpoint: String?
    public var region: String?

    public static func parse(_ text: String) throws -> S3Location {
        guard text.hasPrefix("s3://") else { throw SyncError(.invalidInput, "\(text) is not an s3:// URL") }
        var rest = String(text.dropFirst(5))
        var query: [String: String] = [:]
        if let q = rest.firstIndex(of: "?") {
            for pair in rest[rest.index(after: q)...].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? String($0) }
                if kv.count == 2 { query[kv[0]] = kv[1] }
            }
            rest = String(rest[..<q])
        }
        let parts = rest.split(separator: "/", maxSplits: 1).map(String.init)
        guard let bucket = parts.first, (3...63).contains(bucket.count),
              bucket.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "-" || $0 == "." }) else {
            throw SyncError(.invalidInput, "\(text): the bucket name must be 3–63 of a-z 0-9 . - (s3://BUCKET/PREFIX)")
        }
        var prefix = parts.count > 1 ? parts[1] : ""
        while prefix.hasSuffix("/") { prefix.removeLast() }
        guard !prefix.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else {
            throw SyncError(.invalidInput, "\(text): the prefix may not hold . or .. segments")
        }
        if let e = query["endpoint"], !(e.hasPrefix("http://") || e.hasPrefix("https://")) {
            throw SyncError(.invalidInput, "\(text): endpoint must be an http(s):// URL")
        }
        return S3Location(bucket: bucket, prefix: prefix, endpoint: query["endpoint"], region: query["region"])
    }

    /// The URL with the endpoint and region in its query.
    public var text: String {
        var q: [String] = []
        if let endpoint { q.append("endpoint=" + SigV4.encode(endpoint)) }
        if let region { q.append("region=" + SigV4.encode(region)) }
        return "s3://\(bucket)" + (prefix.isEmpty ? "" : "/\(prefix)") + (q.isEmpty ? "" : "?" + q.joined(separator: "&"))
    }

    /// The key of `name` under the prefix.
    public func key(_ name: String) -> String { prefix.isEmpty ? name : "\(prefix)/\(name)" }
}

/// Credentials from the standard AWS chain: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY`
/// (+ `AWS_SESSION_TOKEN`), else the profile `AWS_PROFILE` (default `default`) of
/// `AWS_SHARED_CREDENTIALS_FILE` (default `~/.aws/credentials`).
public enum AWSCredentials {
    public static func resolve(environment: [String: String]) throws -> (key: String, secret: String, token: String?) {
        if let k = environment["AWS_ACCESS_KEY_ID"], let s = environment["AWS_SECRET_ACCESS_KEY"], !k.isEmpty, !s.isEmpty {
            return (k, s, environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 })
        }
        let profile = environment["AWS_PROFILE"] ?? "default"
        let file = environment["AWS_SHARED_CREDENTIALS_FILE"] ?? ((environment["HOME"] ?? "") + "/.aws/credentials")
        if let text = try? FileIO.readText(file) {
            var section = "", values: [String: String] = [:]
            for raw in text.split(separator: "\n") {
                let line = raw.trimmingCharacters(in: .whitespaces)
                if line.hasPrefix("[") && line.hasSuffix("]") { section = String(line.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces); continue }
                guard section == profile, let eq = line.firstIndex(of: "="), !line.hasPrefix("#") else { continue }
                values[line[..<eq].trimmingCharacters(in: .whitespaces)] = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            }
            if let k = values["aws_access_key_id"], let s = values["aws_secret_access_key"] { return (k, s, values["aws_session_token"]) }
        }
        throw SyncError(.unauthorized, "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in \(file)",
                        hint: "AWS_PROFILE picks another profile of the credentials file")
    }
}

/// The S3 calls the remote needs, each signed with SigV4, retried with backoff on 5xx and
/// broken connections. Path-style addressing (`ENDPOINT/BUCKET/KEY`), which every
/// S3-compatible server and AWS itself accept.
public final class S3Client: @unchecked Sendable {
    public let location: S3Location
    let signer: SigV4
    let endpoint: String
    let host: String
    let client: HTTPClient
    public var attempts = 4
    /// `TROVE_S3_TRACE=1`: one line per request on stderr (method, key, status, bytes, time).
    let trace: Bool

    public init(location: S3Location, environment: [String: String]) throws {
        self.location = location
        trace = environment["TROVE_S3_TRACE"] == "1"
        let creds = try AWSCredentials.resolve(environment: environment)
        let region = location.region ?? environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"] ?? "us-east-1"
        signer = SigV4(accessKey: creds.key, secretKey: creds.secret, sessionToken: creds.token, region: region)
        var e = location.endpoint ?? environment["AWS_ENDPOINT_URL_S3"] ?? environment["AWS_ENDPOINT_URL"] ?? "https://s3.\(region).amazonaws.com"
        while e.hasSuffix("/") { e.removeLast() }
        let parts = e.split(separator: "/", omittingEmptySubsequences: true)
        guard parts.count == 2 else {
            throw SyncError(.invalidInput, "\(e): the S3 endpoint must be http(s)://HOST[:PORT] with no path", hint: "the bucket goes in the s3:// URL")
        }
        endpoint = e
        // As the HTTP client sends it: a default port is left out, and what is signed must match.
        var h = String(parts[1])
        if (e.hasPrefix("http://") && h.hasSuffix(":80")) || (e.hasPrefix("https://") && h.hasSuffix(":443")) { h = String(h[..<h.lastIndex(of: ":")!]) }
        host = h
        var config = HTTPClient.Configuration()
        config.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 16)
        config.timeout = .init(connect: .seconds(5), read: .seconds(300))
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    }

    deinit { try? client.syncShutdown() }

    public struct Reply: Sendable {
        public var status: HTTPResponseStatus
        public var headers: HTTPHeaders
        public var buffer: ByteBuffer
        public var body: [UInt8] { Array(buffer: buffer) }
        public var text: String { String(buffer: buffer) }
    }

    /// One signed request; `key` nil addresses the bucket. Retries 5xx and transport errors.
    public func request(_ method: HTTPMethod, key: String?, query: [(String, String)] = [], headers extra: [(String, String)] = [],
                        body: [UInt8]? = nil, maxReply: Int = 64 << 20) throws -> Reply {
        let path = "/\(location.bucket)" + (key.map { "/" + $0 } ?? "")
        var delay = 0.2
        for attempt in 1...attempts {
            do {
                let payload = body.map { SHA256.hash($0).hex } ?? SigV4.emptyPayload
                let signed = signer.sign(method: method.rawValue, path: path, query: query, headers: [("host", host)] + extra, payloadHash: payload)
                let q = query.isEmpty ? "" : "?" + query.map { SigV4.encode($0.0) + "=" + SigV4.encode($0.1) }.joined(separator: "&")
                var req = HTTPClientRequest(url: endpoint + SigV4.encode(path, keepSlash: true) + q)
                req.method = method
                for (k, v) in extra + signed { req.headers.add(name: k, value: v) }
                req.headers.add(name: "User-Agent", value: "trove/\(TroveVersion.string)")
                if let body { req.body = .bytes(ByteBuffer(bytes: body)) }
                let client = client
                let started = DispatchTime.now().uptimeNanoseconds
                let reply = try blockingAsync {
                    let resp = try await client.execute(req, timeout: .seconds(300))
                    // Into one buffer of the announced size: collecting by appending regrows and copies
                    // (a tenth of a clone's CPU went to that).
                    let announced = resp.headers.first(name: "content-length").flatMap { Int($0) } ?? 0
                    guard announced <= maxReply else { throw SyncError(.integrity, "\(key ?? "/"): the answer is \(announced) bytes, more than the \(maxReply) expected") }
                    var buffer = ByteBufferAllocator().buffer(capacity: announced)
                    for try await part in resp.body {
                        guard buffer.readableBytes + part.readableBytes <= maxReply else {
                            throw SyncError(.integrity, "\(key ?? "/"): the answer is longer than the \(maxReply) bytes expected")
                        }
                        buffer.writeImmutableBuffer(part)
                    }
                    return Reply(status: resp.status, headers: resp.headers, buffer: buffer)
                }
                if trace {
                    FileHandle.standardError.write(Data("s3: \(method.rawValue) \(key ?? "/")\(q) \(reply.status.code) \(body?.count ?? 0)↑ \(reply.buffer.readableBytes)↓ \(Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6) ms\n".utf8))
                }
                if reply.status.code >= 500 && reply.status != .notImplemented && attempt < attempts {
                    Thread.sleep(forTimeInterval: delay)
                    delay *= 2
                    continue
                }
                return reply
            } catch let e as SyncError {
                throw e
            } catch {
                guard attempt < attempts else {
                    throw SyncError(.transport, "\(location.text): \(method.rawValue) \(key ?? "/") failed: \(error)", hint: "is the S3 endpoint \(endpoint) reachable?")
                }
                Thread.sleep(forTimeInterval: delay)
                delay *= 2
            }
        }
        throw SyncError(.transport, "\(location.text): \(method.rawValue) \(key ?? "/") failed")
    }

    /// An error for a reply S3 refused, naming the bucket, the key and S3's own code.
    public func failure(_ r: Reply, _ what: String) -> SyncError {
        let code = Self.values("Code", in: r.text).first ?? "HTTP \(r.status.code)"
        let message = Self.values("Message", in: r.text).first.map { ": \($0)" } ?? ""
        let text = "s3://\(location.bucket)/\(location.prefix): \(what) was refused (\(code)\(message))"
        switch (r.status.code, code) {
        case (_, "RequestTimeTooSkewed"):
            return SyncError(.unauthorized, text, hint: "this machine's clock is off by more than 15 minutes: set it right (NTP)")
        case (_, "AuthorizationHeaderMalformed"), (_, "PermanentRedirect"), (301, _):
            let region = r.headers.first(name: "x-amz-bucket-region").map { " (the bucket is in \($0))" } ?? ""
            return SyncError(.invalidInput, text, hint: "the region is wrong\(region): `trove remote add … --region R` or AWS_REGION")
        case (_, "SignatureDoesNotMatch"), (_, "InvalidAccessKeyId"), (401, _):
            return SyncError(.unauthorized, text, hint: "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the profile) for \(endpoint)")
        case (_, "NoSuchBucket"):
            return SyncError(.notFound, text, hint: "create the bucket first (aws s3 mb s3://\(location.bucket) --endpoint-url \(endpoint))")
        case (403, _):
            return SyncError(.forbidden, text, hint: "these credentials may not use this bucket or prefix")
        case (404, _): return SyncError(.notFound, text)
        case (409, _), (412, _): return SyncError(.conflict, text)
        default: return SyncError(.transport, text)
        }
    }

    // MARK: - Objects

    /// The object's bytes (a range of them), or nil when there is no such key.
    public func get(_ name: String, range: Range<UInt64>? = nil) throws -> [UInt8]? {
        try getBuffer(name, range: range).map { Array(buffer: $0) }
    }

    /// The same, as the buffer it arrived in (no copy).
    public func getBuffer(_ name: String, range: Range<UInt64>? = nil) throws -> ByteBuffer? {
        // An empty object's range (bytes=X-(X-1)) is not a valid Range header: nothing to read.
        if let range, range.isEmpty { return ByteBuffer() }
        let headers = range.map { [("range", "bytes=\($0.lowerBound)-\($0.upperBound - 1)")] } ?? []
        let r = try request(.GET, key: location.key(name), headers: headers, maxReply: Int(range.map { $0.count } ?? (1 << 30)) + 1024)
        if r.status == .notFound && Self.values("Code", in: r.text).first != "NoSuchBucket" { return nil }
        guard r.status == .ok || r.status == .partialContent else { throw failure(r, "GET \(name)") }
        if let range, r.buffer.readableBytes != range.count {
            throw SyncError(.integrity, "\(location.text): \(name) bytes \(range) came back as \(r.buffer.readableBytes) bytes (truncated object?)")
        }
        return r.buffer
    }

    /// Stores an object. With `ifAbsent`, only when the key does not exist yet: false when it did.
    @discardableResult
    public func put(_ name: String, _ body: [UInt8], ifAbsent: Bool = false) throws -> Bool {
        let r = try request(.PUT, key: location.key(name), headers: ifAbsent ? [("if-none-match", "*")] : [], body: body)
        if ifAbsent && (r.status == .preconditionFailed || r.status == .conflict) { return false }
        guard r.status == .ok else { throw failure(r, "PUT \(name)") }
        return true
    }

    public func delete(_ name: String) throws {
        let r = try request(.DELETE, key: location.key(name))
        guard r.status == .noContent || r.status == .ok || r.status == .notFound else { throw failure(r, "DELETE \(name)") }
    }

    /// Every key under `prefix` (relative to the remote's prefix) after `startAfter`, with sizes.
    public func list(_ prefix: String, startAfter: String? = nil) throws -> [(name: String, size: UInt64)] {
        var out: [(String, UInt64)] = []
        var token: String?
        let base = location.prefix.isEmpty ? "" : location.prefix + "/"
        repeat {
            var q = [("list-type", "2"), ("prefix", base + prefix)]
            if let token { q.append(("continuation-token", token)) } else if let startAfter { q.append(("start-after", base + startAfter)) }
            let r = try request(.GET, key: nil, query: q)
            guard r.status == .ok else { throw failure(r, "LIST \(prefix)") }
            let text = r.text
            for item in Self.elements("Contents", in: text) {
                guard let k = Self.values("Key", in: item).first, k.hasPrefix(base) else { continue }
                out.append((String(k.dropFirst(base.count)), UInt64(Self.values("Size", in: item).first ?? "") ?? 0))
            }
            token = Self.values("IsTruncated", in: text).first == "true" ? Self.values("NextContinuationToken", in: text).first : nil
        } while token != nil
        return out
    }

    /// Creates the bucket (true), or finds it there already (false).
    @discardableResult
    public func createBucket() throws -> Bool {
        let r = try request(.PUT, key: nil)
        if r.status == .ok { return true }
        if r.status == .conflict, ["BucketAlreadyOwnedByYou", "BucketAlreadyExists"].contains(Self.values("Code", in: r.text).first ?? "") { return false }
        throw failure(r, "creating the bucket")
    }

    // MARK: - Multipart upload

    public func createMultipart(_ name: String) throws -> String {
        let r = try request(.POST, key: location.key(name), query: [("uploads", "")])
        guard r.status == .ok, let id = Self.values("UploadId", in: r.text).first else { throw failure(r, "starting a multipart upload of \(name)") }
        return id
    }

    /// The part's ETag (its MD5 in hex, quoted, for a plain part).
    public func uploadPart(_ name: String, uploadID: String, number: Int, _ body: [UInt8]) throws -> String {
        let r = try request(.PUT, key: location.key(name), query: [("partNumber", "\(number)"), ("uploadId", uploadID)], body: body)
        guard r.status == .ok, let etag = r.headers.first(name: "etag") else { throw failure(r, "part \(number) of \(name)") }
        return etag
    }

    public func completeMultipart(_ name: String, uploadID: String, parts: [(number: Int, etag: String)]) throws {
        let xml = "<CompleteMultipartUpload>" + parts.map { "<Part><PartNumber>\($0.number)</PartNumber><ETag>\(Self.escape($0.etag))</ETag></Part>" }.joined()
            + "</CompleteMultipartUpload>"
        let r = try request(.POST, key: location.key(name), query: [("uploadId", uploadID)], body: Array(xml.utf8))
        // S3 may answer 200 with an error document.
        guard r.status == .ok, !r.text.contains("<Error>") else { throw failure(r, "completing the upload of \(name)") }
    }

    /// Unfinished multipart uploads of exactly `name`.
    public func multipartUploads(_ name: String) throws -> [String] {
        let key = location.key(name)
        let r = try request(.GET, key: nil, query: [("uploads", ""), ("prefix", key)])
        guard r.status == .ok else { throw failure(r, "listing unfinished uploads of \(name)") }
        return Self.elements("Upload", in: r.text).compactMap { u in
            Self.values("Key", in: u).first == key ? Self.values("UploadId", in: u).first : nil
        }
    }

    /// The parts an unfinished upload holds: number → (ETag, size).
    public func parts(_ name: String, uploadID: String) throws -> [Int: (etag: String, size: Int)] {
        let r = try request(.GET, key: location.key(name), query: [("uploadId", uploadID)])
        if r.status == .notFound { return [:] }
        guard r.status == .ok else { throw failure(r, "listing the parts of \(name)") }
        var out: [Int: (String, Int)] = [:]
        for p in Self.elements("Part", in: r.text) {
            if let n = Int(Self.values("PartNumber", in: p).first ?? ""), let e = Self.values("ETag", in: p).first {
                out[n] = (e, Int(Self.values("Size", in: p).first ?? "") ?? -1)
            }
        }
        return out
    }

    public func abortMultipart(_ name: String, uploadID: String) {
        _ = try? request(.DELETE, key: location.key(name), query: [("uploadId", uploadID)])
    }

    // MARK: - XML (the few flat elements S3's answers need)

    static func elements(_ tag: String, in xml: String) -> [String] {
        var out: [String] = []
        var rest = Substring(xml)
        while let open = rest.range(of: "<\(tag)>"), let close = rest[open.upperBound...].range(of: "</\(tag)>") {
            out.append(String(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
        }
        return out
    }

    static func values(_ tag: String, in xml: String) -> [String] { elements(tag, in: xml).map(unescape) }

    static func unescape(_ s: String) -> String {
        guard s.contains("&") else { return s }
        return s.replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&#34;", with: "\"").replacingOccurrences(of: "&amp;", with: "&")
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }
}
