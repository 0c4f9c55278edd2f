import Foundation
import NIOCore
import NIOHTTP1
import TroveCore
import TroveProtocol
import TroveStore

/// A store in an S3 bucket (`s3://BUCKET/PREFIX`, Docs/s3.md): no server of Trove's own. The
/// layout is the shared-path remote's, as objects:
///
///     PREFIX/config                    chunker parameters (written by the first push)
///     PREFIX/packs/CHECKSUM.pack       packs, byte for byte the local format (trailing index)
///     PREFIX/packs/CHECKSUM.idx        the pack's trailer alone (index + footer), read to find objects
///     PREFIX/refs/log/0000000000000001 the ref log: each entry the whole ref table after one update
///
/// A push uploads packs (multipart above 16 MiB; an interrupted upload of the same pack
/// resumes: parts S3 holds with the same MD5 are not sent again), then appends a log entry
/// with create-if-absent (`If-None-Match: *`), so exactly one writer wins each step. Fetches
/// read only the byte ranges of the objects they need; everything read is verified by the caller.
public final class S3Remote: Remote {
    public let url: String
    public let s3: S3Client
    let source: RemotePackTable
    private let lock = Mutex()
    private var metadataPacks: [String: [UInt8]] = [:]
    private var latestEntry: String?
    private var conditionalWrites: Bool?
    private var configSeen = false
    /// Bytes of one multipart part, and parts sent at once.
    public var partSize = 8 << 20
    public var partLanes = 4
    /// Parts of resumed uploads that S3 held already and were not sent again.
    public let partsResumed = Locked(0)

    /// `TROVE_S3_SINGLE_WRITER=1`: the user vouches that one store pushes here, so a server
    /// without conditional writes may still take ref updates.
    let singleWriter: Bool

    public init(url: String, environment: [String: String]) throws {
        self.url = url
        singleWriter = environment["TROVE_S3_SINGLE_WRITER"] == "1"
        let location = try S3Location.parse(url)
        let client = try S3Client(location: location, environment: environment)
        s3 = client
        let cache = Locked<[String: [UInt8]]>([:])
        source = RemotePackTable(name: "s3://\(location.bucket)/\(location.key("packs"))") { pack, range in
            // Metadata packs (commits, trees, manifests: small) are read whole once; chunk packs by range.
            func cut(_ whole: [UInt8]) throws -> [UInt8] {
                guard range.upperBound <= UInt64(whole.count) else { throw SyncError(.integrity, "\(url): pack \(pack) is shorter than its index says") }
                return Array(whole[Int(range.lowerBound)..<Int(range.upperBound)])
            }
            if let whole = cache.get()[pack] { return try cut(whole) }
            if pack.hasPrefix("m-"), let whole = try client.get("packs/\(pack).pack") {
                cache.update { $0[pack] = whole }
                return try cut(whole)
            }
            guard let bytes = try client.get("packs/\(pack).pack", range: range) else {
                throw SyncError(.integrity, "\(url): pack \(pack) is missing but its index is there", hint: "push again from a store that has the objects")
            }
            return bytes
        }
    }

    public func close() {}
    public var maxConcurrentUploads: Int { 2 }

    // MARK: - Config and refs

    func config() throws -> StoreConfig? {
        guard let bytes = try s3.get("config") else { return nil }
        return try StoreConfig.parse(String(decoding: bytes, as: UTF8.self), path: "\(url)/config")
    }

    public func hello() throws -> (ServerInfo, [RefEntry]) {
        let parameters = try config()?.chunkerParameters() ?? .default
        let (_, state) = try readLog()
        let info = ServerInfo(agent: "s3 (\(s3.endpoint))", chunker: parameters, maxUploadBytes: 64 << 20,
                              capabilities: [], head: state.head ?? "heads/main")
        return (info, state.entries)
    }

    public func listRefs() throws -> [RefEntry] { try readLog().1.entries }

    struct LogState: Codable {
        var seq: Int
        var refs: [String: String]
        var head: String?
        var time: Int64?
        var by: String?
        /// Random, so that a writer recognises its own entry (a reply lost after the write).
        var nonce: String?

        var entries: [RefEntry] {
            refs.sorted { $0.key < $1.key }.compactMap { k, v in ObjectID(hex: v).map { RefEntry(name: k, id: $0) } }
        }
        func id(_ name: String) -> ObjectID? { refs[name].flatMap(ObjectID.init(hex:)) }
    }

    static func logKey(_ seq: Int) -> String {
        let digits = String(seq)
        return "refs/log/" + String(repeating: "0", count: max(0, 16 - digits.count)) + digits
    }

    /// The newest log entry (listing from the last one seen) and the ref table it holds.
    func readLog() throws -> (key: String?, LogState) {
        let start = lock.withLock { latestEntry }
        let keys = try s3.list("refs/log/", startAfter: start).map(\.name).filter { $0.count == 25 }.sorted()
        guard let key = keys.last ?? start else { return (nil, LogState(seq: 0, refs: [:])) }
        guard let bytes = try s3.get(key) else { throw SyncError(.integrity, "\(url): ref log entry \(key) is listed but cannot be read") }
        guard let state = try? JSONDecoder().decode(LogState.self, from: Data(bytes)), Self.logKey(state.seq) == key else {
            throw SyncError(.integrity, "\(url): ref log entry \(key) is damaged",
                            hint: "remove it (aws s3 rm s3://\(s3.location.bucket)/\(s3.location.key(key))): the entry before it holds the refs; then push again")
        }
        lock.withLock { latestEntry = key }
        return (key, state)
    }

    /// Whether the server refuses a second create-if-absent of one key: probed once, never assumed.
    public func honoursConditionalWrites() throws -> Bool {
        if let known = lock.withLock({ conditionalWrites }) { return known }
        let probe = "refs/probe-\(UInt64.random(in: 0...UInt64.max))"
        defer { try? s3.delete(probe) }
        let honoured: Bool
        do {
            _ = try s3.put(probe, Array("1".utf8), ifAbsent: true)
            honoured = try !s3.put(probe, Array("2".utf8), ifAbsent: true)
        } catch let e as SyncError where e.message.contains("NotImplemented") {
            honoured = false  // servers that answer 501 to If-None-Match
        }
        lock.withLock { conditionalWrites = honoured }
        return honoured
    }

    public func updateRefs(_ updates: [RefUpdate]) throws -> [RefUpdateResult] {
        guard updates.count <= SyncProtocol.maxRefs else { throw SyncError(.invalidInput, "\(updates.count) ref updates; the limit is \(SyncProtocol.maxRefs)") }
        let conditional = try honoursConditionalWrites()
        guard conditional || singleWriter else {
            throw SyncError(.conflict, "\(url): this S3 server does not honour conditional writes (If-None-Match), so two pushes at once could lose a ref update; refs were not moved",
                            hint: "for many writers put a trove daemon in front of the bucket; if only one store ever pushes here, set TROVE_S3_SINGLE_WRITER=1")
        }
        for _ in 0..<50 {
            try refreshPacks()
            let (_, state) = try readLog()
            let complete = try Graph.ancestry(of: state.entries.map(\.id), in: source)
            var results: [RefUpdateResult] = []
            for u in updates { results.append(try check(u, state, complete)) }
            if results.contains(where: { $0.status != .ok }) {
                return results.map { $0.status == .ok ? RefUpdateResult(name: $0.name, status: .notApplied, message: "not applied: another ref of this update was refused") : $0 }
            }
            var next = state
            next.seq += 1
            for u in updates { next.refs[u.name] = u.new?.hex }
            next.head = state.head ?? "heads/main"
            next.time = Int64(Date().timeIntervalSince1970)
            next.by = "trove/\(TroveVersion.string)"
            next.nonce = String(UInt64.random(in: 0...UInt64.max), radix: 36)
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            let body = Array(try enc.encode(next))
            let key = Self.logKey(next.seq)
            if conditional {
                // Exactly one writer creates each entry; a loser reads the new state and checks again. A
                // refusal may also answer our own retried write whose first reply was lost: then the
                // entry there is ours.
                guard try s3.put(key, body, ifAbsent: true) || s3.get(key) == body else { continue }
            } else {
                // One writer by the user's word (TROVE_S3_SINGLE_WRITER=1): still, never knowingly overwrite.
                guard try s3.get(key) == nil else { continue }
                try s3.put(key, body)
                guard try s3.get(key) == body else {
                    throw SyncError(.conflict, "\(url): another push updated the refs at the same moment (TROVE_S3_SINGLE_WRITER=1 is set, but two stores push here)",
                                    hint: "fetch and check the refs; for many writers put a trove daemon in front of the bucket")
                }
            }
            lock.withLock { latestEntry = key }
            return updates.map { RefUpdateResult(name: $0.name, status: .ok) }
        }
        throw SyncError(.conflict, "\(url): the refs kept changing under this push (50 tries)", hint: "try again")
    }

    private func check(_ u: RefUpdate, _ state: LogState, _ complete: Set<ObjectID>) throws -> RefUpdateResult {
        do { try Refs.validate(u.name) } catch let e as StoreError { return RefUpdateResult(name: u.name, status: .invalidName, message: e.message) }
        if u.name.hasPrefix("remotes/") {
            return RefUpdateResult(name: u.name, status: .invalidName, message: "remotes/ refs belong to the store that fetched them; push to another namespace")
        }
        let current = state.id(u.name)
        if let new = u.new, current == new, u.old != new {
            return RefUpdateResult(name: u.name, status: .ok, message: SyncService.alreadyThere)
        }
        guard current == u.old else {
            return RefUpdateResult(name: u.name, status: .stale, message: "ref \(u.name) is at \(current?.short() ?? "nothing"), not \(u.old?.short() ?? "nothing"): fetch first")
        }
        guard let new = u.new else { return RefUpdateResult(name: u.name, status: .ok) }
        if let missing = try source.firstMissingObject(reachableFrom: new, complete: complete) {
            return RefUpdateResult(name: u.name, status: .missingObjects, message: "\(u.name) would point at a history missing object \(missing.hex); upload it first")
        }
        if let old = current, !u.force, try !Graph.isAncestor(old, of: new, in: source) {
            return RefUpdateResult(name: u.name, status: .nonFastForward,
                                   message: "\(u.name): \(new.short()) does not contain \(old.short()) (non-fast-forward); fetch and merge, or push with --force")
        }
        return RefUpdateResult(name: u.name, status: .ok)
    }

    // MARK: - Objects

    /// Reads the indexes of packs not seen yet (each `.idx` is checked against its checksum).
    func refreshPacks() throws {
        let listed = try s3.list("packs/").map(\.name).filter { $0.hasSuffix(".idx") }
        // A pack whose index is gone (removed by hand, or by a gc) is gone.
        source.remove(packs: Set(source.packNames).subtracting(listed.map { String($0.dropFirst(6).dropLast(4)) }))
        for name in listed {
            let pack = String(name.dropFirst(6).dropLast(4))
            guard !source.has(pack: pack) else { continue }
            guard let trailer = try s3.get(name) else { continue }
            source.add(pack: pack, records: try indexRecords(trailer, pack: pack))
        }
    }

    /// The records of a pack's `.idx` object: its footer, size and checksum checked, and the
    /// checksum the pack's name.
    public func indexRecords(_ trailer: [UInt8], pack: String) throws -> [PackFormat.IndexRecord] {
        do {
            guard trailer.count >= PackFormat.footerSize + 8 else { throw CoreError(.malformedObject, "the index of pack \(pack) is too short") }
            let tail = Array(trailer.suffix(PackFormat.footerSize))
            let indexOffset = tail.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
            let footer = try PackFormat.parseFooter(tail, fileSize: indexOffset &+ UInt64(trailer.count), pack: pack)
            let records = try PackFormat.parseIndex(trailer, footer: footer, pack: pack)
            guard pack.hasSuffix(footer.checksum.hex) else { throw CoreError(.integrity, "the index of pack \(pack) belongs to another pack (\(footer.checksum.hex))") }
            return records
        } catch let e as CoreError {
            throw SyncError(.integrity, "\(url): \(e.message)", hint: "remove \(s3.location.key("packs/\(pack).idx")) and push again from a store that has the objects")
        }
    }

    public func missing(_ ids: [ObjectID]) throws -> [Bool] {
        try refreshPacks()
        return try source.contains(ids).map { !$0 }
    }

    public func upload(_ objects: [PackedObject]) throws -> (objects: Int, stored: Int, storedBytes: UInt64) {
        if let (i, e) = PackedObject.firstFailure(objects, threads: 2) {
            throw SyncError(.integrity, "object \(objects[i].id.hex) does not match its id (\(e.message)); nothing was uploaded to \(url)",
                            hint: "run `trove fsck --full` on this store")
        }
        // Once per process, not per upload: a prefix's config, once there, never goes.
        if !lock.withLock({ configSeen }), try s3.get("config") == nil {
            _ = try s3.put("config", Array(StoreConfig.newStore(parameters: .default).render().utf8), ifAbsent: true)
        }
        lock.withLock { configSeen = true }
        let fresh = try source.contains(objects.map(\.id)).enumerated().filter { !$0.element }.map { objects[$0.offset] }
        // Chunks in one pack, everything else (small, read whole by fetches) in another.
        let meta = fresh.filter { $0.type != .chunk }, data = fresh.filter { $0.type == .chunk }
        var bytes: UInt64 = 0
        for (group, tag) in [(data, ""), (meta, "m-")] where !group.isEmpty {
            bytes += try putPack(group, tag: tag)
        }
        return (objects.count, fresh.count, bytes)
    }

    /// Writes one pack and its index; returns the bytes stored.
    func putPack(_ objects: [PackedObject], tag: String) throws -> UInt64 {
        var pack = PackFormat.header()
        pack.reserveCapacity(objects.reduce(64) { $0 + $1.stored.count + PackFormat.entryHeaderSize } + objects.count * PackFormat.indexRecordSize)
        var records: [PackFormat.IndexRecord] = []
        for o in objects {
            records.append(PackFormat.IndexRecord(id: o.id, type: o.type, codec: o.codec, offset: UInt64(pack.count),
                                                  rawLength: UInt32(o.rawLength), storedLength: UInt32(o.stored.count)))
            pack += PackFormat.entryHeader(type: o.type, codec: o.codec, rawLength: o.rawLength, storedLength: o.stored.count, id: o.id)
            pack += o.stored
        }
        let (trailer, checksum) = PackFormat.trailer(records: records, indexOffset: UInt64(pack.count))
        pack += trailer
        let name = tag + checksum.hex
        try putLarge("packs/\(name).pack", pack)
        // The index last: a pack without one is invisible (and a later push of it resumes).
        try s3.put("packs/\(name).idx", trailer)
        source.add(pack: name, records: records)
        return UInt64(pack.count)
    }

    /// One PUT up to 16 MiB; above, a multipart upload that resumes an unfinished one of the
    /// same key, sending only the parts S3 does not hold with the same MD5.
    public func putLarge(_ key: String, _ bytes: [UInt8]) throws {
        guard bytes.count > 2 * partSize else { try s3.put(key, bytes); return }
        let uploadID = try s3.multipartUploads(key).first ?? s3.createMultipart(key)
        let held = try s3.parts(key, uploadID: uploadID)
        let count = (bytes.count + partSize - 1) / partSize
        var etags = [String?](repeating: nil, count: count)
        let errors = Locked<Error?>(nil)
        let results = Locked<[Int: String]>([:])
        let size = partSize
        DispatchQueue.concurrentPerform(iterations: min(partLanes, count)) { lane in
            var n = lane
            while n < count, errors.get() == nil {
                let range = (n * size)..<min(bytes.count, (n + 1) * size)
                do {
                    // A part S3 holds counts only with the same size and MD5. A part sent now needs no
                    // such check: its signed SHA-256 makes S3 refuse a body damaged on the way.
                    if let h = held[n + 1], h.size == range.count,
                       h.etag.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) == bytes[range].withUnsafeBytes({ MD5.hex($0) }) {
                        results.update { $0[n] = h.etag }
                        partsResumed.update { $0 += 1 }
                    } else {
                        let etag = try s3.uploadPart(key, uploadID: uploadID, number: n + 1, Array(bytes[range]))
                        results.update { $0[n] = etag }
                    }
                } catch { errors.update { $0 = $0 ?? error } }
                n += partLanes
            }
        }
        if let e = errors.get() { throw e }
        for (n, e) in results.get() { etags[n] = e }
        guard !etags.contains(nil) else { throw SyncError(.transport, "\(url): a part of \(key) has no ETag") }
        do {
            try s3.completeMultipart(key, uploadID: uploadID, parts: etags.enumerated().map { ($0.offset + 1, $0.element ?? "") })
        } catch let e as SyncError where e.message.contains("NoSuchUpload") {
            // Another pusher of the same pack completed this upload first: done if the object is whole.
            guard try s3.list(key).contains(where: { $0.name == key && $0.size == UInt64(bytes.count) }) else { throw e }
        }
    }

    public func download(_ ids: [ObjectID], receive: (PackedObject) throws -> Void) throws {
        var once = Set<ObjectID>()
        let unique = ids.filter { once.insert($0).inserted }
        var located = try source.locateMany(unique)
        // The pack list is read again only when something is not known yet (a fetch asks batch by batch).
        if located.contains(where: { $0 == nil }) {
            try refreshPacks()
            located = try source.locateMany(unique)
        }
        // Neighbouring objects of one pack in one ranged GET (gaps under 256 KiB, at most 16 MiB),
        // taken in the order asked, so that they are handed over in that order (a clone's
        // streaming checkout gets files in order: `ObjectSource.forEachStored`, askedOrder).
        var spans: [(pack: String, range: Range<UInt64>, items: [ObjectLocation])] = []
        for l in located.compactMap({ $0 }) {
            let r = l.record.dataOffset..<(l.record.dataOffset + UInt64(l.record.storedLength))
            if let last = spans.last, last.pack == l.pack, r.lowerBound >= last.range.upperBound,
               r.lowerBound - last.range.upperBound < 256 << 10, r.upperBound - last.range.lowerBound <= 16 << 20 {
                spans[spans.count - 1].range = last.range.lowerBound..<r.upperBound
                spans[spans.count - 1].items.append(l)
            } else {
                spans.append((l.pack, r, [l]))
            }
        }
        // Six GETs in flight, at most twelve spans ahead of what is handed over (in order, on this thread).
        let lanes = 6, window = 12
        let cond = NSCondition()
        var results: [Int: Result<ByteBuffer, Error>] = [:]
        var nextToFetch = 0, consumed = 0, stop = false
        let workers = DispatchGroup()
        for _ in 0..<min(lanes, spans.count) {
            workers.enter()
            onOwnThread { [s3, url] in
                defer { workers.leave() }
                while true {
                    cond.lock()
                    while !stop && nextToFetch < spans.count && nextToFetch >= consumed + window { cond.wait() }
                    guard !stop, nextToFetch < spans.count else { cond.unlock(); return }
                    let i = nextToFetch
                    nextToFetch += 1
                    cond.unlock()
                    let r = Result { () throws -> ByteBuffer in
                        guard let b = try s3.getBuffer("packs/\(spans[i].pack).pack", range: spans[i].range) else {
                            throw SyncError(.integrity, "\(url): pack \(spans[i].pack) is missing but its index is there",
                                            hint: "push again from a store that has the objects")
                        }
                        return b
                    }
                    cond.lock()
                    results[i] = r
                    cond.broadcast()
                    cond.unlock()
                }
            }
        }
        defer {
            cond.lock()
            stop = true
            cond.broadcast()
            cond.unlock()
            workers.wait()
        }
        for (i, span) in spans.enumerated() {
            cond.lock()
            while results[i] == nil { cond.wait() }
            let r = results.removeValue(forKey: i)!
            consumed = i + 1
            cond.broadcast()
            cond.unlock()
            let bytes = try r.get()
            for l in span.items {
                let from = Int(l.record.dataOffset - span.range.lowerBound)
                try receive(PackedObject(type: l.record.type, codec: l.record.codec, rawLength: Int(l.record.rawLength), id: l.record.id,
                                         stored: bytes.getBytes(at: bytes.readerIndex + from, length: Int(l.record.storedLength)) ?? []))
            }
        }
    }

    public func metadata(wants: [ObjectID], haves: [ObjectID], receive: (PackedObject) throws -> Void) throws {
        try refreshPacks()
        do { try source.emitMetadata(wants: wants, haves: haves, emit: receive) } catch let e as ProtocolError {
            throw SyncError.from(e, remote: url)
        }
    }

    /// `trove fsck --remote` for a bucket: every index against its checksum, every ref's history
    /// complete, and with `full` every object re-read and checked against its id.
    public func check(full: Bool) throws -> (packs: Int, objects: Int, problems: [String]) {
        try refreshPacks()
        var problems: [String] = []
        let (_, state) = try readLog()
        for e in state.entries {
            if let m = try source.firstMissingObject(reachableFrom: e.id, complete: []) { problems.append("\(e.name): object \(m.hex) is missing") }
        }
        var objects = 0
        if full {
            for pack in source.packNames {
                guard let trailer = try s3.get("packs/\(pack).idx"), let records = try? indexRecords(trailer, pack: pack) else {
                    problems.append("pack \(pack): its index is unreadable or damaged"); continue
                }
                for r in records {
                    objects += 1
                    do { _ = try source.read(r.id) } catch { problems.append("pack \(pack): \(error)") }
                }
            }
        }
        return (source.packNames.count, objects, problems)
    }
}
