import CLinux
import Dispatch
import Glibc
import TroveCore

/// What storing one file produced.
public struct IngestResult: Sendable {
    public var blobID: ObjectID
    public var size: UInt64
    public var chunkCount: Int
    /// Chunks (and their raw bytes) that were not in the store before.
    public var newChunks: Int
    public var newBytes: UInt64
}

/// Chunks, hashes, deduplicates and compresses files into a store.
///
/// Files up to `smallLimit` are read whole, several at a time (one per thread). Larger files
/// stream through a pipeline of fixed buffers: the reading thread finds cut points, worker
/// threads hash and compress the chunks, one thread hashes the whole file, and the writer
/// appends the new chunks in order. Memory stays at `batchCount` × (`batchSize` + compressed
/// room), whatever the file size.
public final class Ingester: @unchecked Sendable {
    let store: Store
    let writer: ObjectWriter
    let parameters: ChunkerParameters
    let threads: Int
    public var progress: ProgressSink?
    /// Reused by `ingest(stream:)`, which callers run one at a time.
    private var streamWorker: SmallFileWorker?

    public static let smallLimit = 8 << 20
    static let batchSize = 8 << 20
    static let batchCount = 5

    public init(store: Store, writer: ObjectWriter, threads: Int? = nil) {
        self.store = store
        self.writer = writer
        parameters = store.parameters
        self.threads = max(1, threads ?? store.threads)
    }

    // MARK: many files

    /// Stores `paths` (regular files) and returns one result per path, in order. `sizes`, when
    /// the caller has them from a scan, only choose the path (whole read or streaming); a file
    /// that grew since is still read completely.
    public func ingest(paths: [String], sizes known: [UInt64]? = nil) throws -> [IngestResult] {
        var results = [IngestResult?](repeating: nil, count: paths.count)
        var sizes = known?.map { Int($0) } ?? []
        if sizes.count != paths.count {
            sizes = try paths.map { p in
                var st = stat()
                guard lstat(p, &st) == 0 else { throw FileIO.ioError("stat", p) }
                return Int(st.st_size)
            }
        }
        let small = paths.indices.filter { sizes[$0] <= Ingester.smallLimit }
        let large = paths.indices.filter { sizes[$0] > Ingester.smallLimit }

        let lock = Mutex()
        var next = 0
        var failure: Error?
        let workers = min(threads, max(1, small.count))
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            let worker: SmallFileWorker
            do { worker = try SmallFileWorker(ingester: self) } catch {
                lock.withLock { if failure == nil { failure = error } }
                return
            }
            while true {
                let k: Int? = lock.withLock {
                    guard failure == nil, next < small.count else { return nil }
                    defer { next += 1 }
                    return small[next]
                }
                guard let k else { break }
                do {
                    let r = try worker.ingest(path: paths[k])
                    lock.withLock { results[k] = r }
                    progress?.advance(r.size)
                } catch {
                    lock.withLock { if failure == nil { failure = error } }
                }
            }
        }
        if let failure { throw failure }
        for k in large { results[k] = try ingestLarge(path: paths[k]) }
        return results.map { $0! }
    }

    /// Records the blob for `chunks`: nothing more for a single chunk, else a manifest.
    func finishBlob(blobID: ObjectID, size: UInt64, chunks: [ChunkRef]) throws {
        if chunks.count == 1 {
            precondition(chunks[0].id == blobID, "a one-chunk blob's id is its chunk's id")
            return
        }
        let (manifest, segments) = BlobManifest.make(blobID: blobID, size: size, chunks: chunks)
        for (id, bytes) in segments { try writer.put(.segment, bytes, id: id) }
        try writer.put(.blob, manifest.encode(), id: blobID)
    }

    // MARK: small files

    final class SmallFileWorker {
        let ingester: Ingester
        let compressor: Compressor
        var buffer: UnsafeMutableRawPointer
        var compressed: UnsafeMutableRawPointer
        var capacity = 0
        var compressedCapacity = 0

        let reader: IndexReader

        init(ingester: Ingester) throws {
            self.ingester = ingester
            reader = try ingester.store.index.makeReader()
            compressor = Compressor(level: ingester.store.compressionLevel)
            buffer = .allocate(byteCount: 1, alignment: 64)
            compressed = .allocate(byteCount: 1, alignment: 64)
        }

        deinit {
            buffer.deallocate()
            compressed.deallocate()
        }

        func reserve(_ size: Int) {
            if size > capacity {
                buffer.deallocate()
                capacity = max(size, 256 << 10)
                buffer = .allocate(byteCount: capacity, alignment: 64)
            }
            let bound = Compressor.bound(ingester.parameters.maxSize) + 64
            if bound > compressedCapacity {
                compressed.deallocate()
                compressedCapacity = bound
                compressed = .allocate(byteCount: bound, alignment: 64)
            }
        }

        func ingest(path: String) throws -> IngestResult {
            let fd = try FileIO.open(path, O_RDONLY)
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw FileIO.ioError("stat", path) }
            reserve(Int(st.st_size) + 1)
            let n = try FileIO.readUpTo(fd, buffer, capacity, path: path)
            if n == capacity {
                // The file grew past what we sized for: take the streaming path.
                return try ingester.ingestLarge(path: path)
            }
            return try ingestBuffer(count: n)
        }

        /// Stores content read from a stream: whole in memory up to `smallLimit`, else through
        /// the large-file pipeline, starting with what was already read.
        func ingest(stream read: @escaping (UnsafeMutableRawPointer, Int) throws -> Int, name: String) throws -> IngestResult {
            reserve(Ingester.smallLimit + 1)
            var n = 0
            while n < capacity {
                let k = try read(buffer + n, capacity - n)
                if k == 0 { break }
                n += k
            }
            if n <= Ingester.smallLimit { return try ingestBuffer(count: n) }
            var served = 0
            let prefix = buffer
            return try ingester.ingestLarge(name: name) { out, count, _ in
                var got = 0
                if served < n {
                    got = min(count, n - served)
                    out.copyMemory(from: prefix + served, byteCount: got)
                    served += got
                }
                while got < count {
                    let k = try read(out + got, count - got)
                    if k == 0 { break }
                    got += k
                }
                return got
            }
        }

        /// Stores the first `n` bytes of `buffer` as one blob.
        func ingestBuffer(count n: Int) throws -> IngestResult {
            let base = buffer.assumingMemoryBound(to: UInt8.self)
            var pieces: [UnsafeRawBufferPointer] = []
            var offset = 0
            repeat {
                let len = n == 0 ? 0 : Chunker.cut(base + offset, count: n - offset, parameters: ingester.parameters)
                pieces.append(UnsafeRawBufferPointer(start: buffer + offset, count: len))
                offset += len
            } while offset < n
            let chunks = zip(SHA256.hash(messages: pieces), pieces).map { ChunkRef(id: $0, length: UInt64($1.count)) }
            let blobID = chunks.count == 1 ? chunks[0].id : SHA256.hash(buffer, count: n)
            let present = try ingester.writer.present(chunks.map(\.id), reader: reader)
            var newChunks = 0
            var newBytes: UInt64 = 0
            for (i, c) in chunks.enumerated() where !present[i] {
                let raw = pieces[i]
                let wrote: Bool
                if let clen = compressor.compressIfPays(raw, into: compressed, capacity: compressedCapacity) {
                    wrote = try ingester.writer.putPrepared(type: .chunk, id: c.id, codec: .zstd, rawLength: raw.count,
                                                            stored: UnsafeRawBufferPointer(start: compressed, count: clen))
                } else {
                    wrote = try ingester.writer.putPrepared(type: .chunk, id: c.id, codec: .raw, rawLength: raw.count, stored: raw)
                }
                if wrote {
                    newChunks += 1
                    newBytes += c.length
                }
            }
            try ingester.finishBlob(blobID: blobID, size: UInt64(n), chunks: chunks)
            return IngestResult(blobID: blobID, size: UInt64(n), chunkCount: chunks.count, newChunks: newChunks, newBytes: newBytes)
        }
    }

    // MARK: large files

    /// A buffer of whole chunks and the per-chunk results. Per-chunk fields are raw buffers,
    /// because hashing threads write disjoint elements at once (Swift arrays would race).
    final class Batch {
        /// Where the chunks start: the carried-over tail of the previous batch sits just before
        /// `buffer + headroom`, where the read lands (block-aligned, for direct I/O).
        var data: UnsafeMutableRawPointer
        let buffer: UnsafeMutableRawPointer
        /// Room before the read for the carried-over tail: the largest chunk, block-rounded.
        let headroom: Int
        /// Filled by the read-ahead thread.
        var readBytes = 0
        var readError: Error?
        let readDone = DispatchGroup()
        let compressed: UnsafeMutableRawPointer
        let capacity: Int
        let maxChunks: Int
        var length = 0
        var count = 0
        let starts: UnsafeMutablePointer<Int>
        let lengths: UnsafeMutablePointer<Int>
        let ids: UnsafeMutablePointer<ObjectID>
        /// Compressed length per chunk; 0 = store raw.
        let compressedLengths: UnsafeMutablePointer<Int>

        static let slack = 2048

        private let dataBuffer: LargeBuffer
        private let compressedBuffer: LargeBuffer

        /// `directReads`: the read lands by direct I/O, so the data buffer is on huge pages.
        init(capacity: Int, minChunk: Int, headroom: Int, directReads: Bool) {
            self.capacity = capacity
            self.headroom = headroom
            maxChunks = capacity / minChunk + 2
            dataBuffer = LargeBuffer(headroom + capacity, hugePages: directReads)
            compressedBuffer = LargeBuffer(capacity + maxChunks * Batch.slack, hugePages: false)
            buffer = dataBuffer.pointer
            data = buffer
            compressed = compressedBuffer.pointer
            starts = .allocate(capacity: maxChunks)
            lengths = .allocate(capacity: maxChunks)
            ids = .allocate(capacity: maxChunks)
            ids.initialize(repeating: .zero, count: maxChunks)
            compressedLengths = .allocate(capacity: maxChunks)
        }

        deinit {
            starts.deallocate()
            lengths.deallocate()
            ids.deallocate()
            compressedLengths.deallocate()
        }

        func append(start: Int, length: Int) {
            starts[count] = start
            lengths[count] = length
            compressedLengths[count] = 0
            count += 1
        }

        func compressedRegion(_ i: Int) -> UnsafeMutableRawPointer { compressed + starts[i] + i * Batch.slack }
    }

    /// Compression contexts for hashing tasks; tasks of several batches run at once, and a
    /// context must never be shared by two threads.
    final class CompressorPool: @unchecked Sendable {
        private var free: [Compressor] = []
        private let lock = Mutex()
        let level: Int

        init(level: Int) { self.level = level }

        func take() -> Compressor { lock.withLock { free.popLast() } ?? Compressor(level: level) }
        func give(_ c: Compressor) { lock.withLock { free.append(c) } }
    }

    /// A fixed set of batches; `take` blocks until one is free.
    final class BatchPool: @unchecked Sendable {
        private var free: [Batch]
        private let lock = Mutex()
        private let available: DispatchSemaphore

        init(count: Int, capacity: Int, minChunk: Int, headroom: Int, directReads: Bool) {
            free = (0..<count).map { _ in
                Batch(capacity: capacity, minChunk: minChunk, headroom: headroom, directReads: directReads)
            }
            available = DispatchSemaphore(value: count)
        }

        func take() -> Batch {
            available.wait()
            return lock.withLock { free.removeLast() }
        }

        func give(_ b: Batch) {
            lock.withLock { free.append(b) }
            available.signal()
        }
    }

    /// What the stages of one large-file ingest share. `failure` and `testEvery` are read
    /// across threads under `lock`; the chunk bookkeeping is touched only by the writer queue.
    final class LargeIngest: @unchecked Sendable {
        let lock = Mutex()
        private var failure: Error?
        /// After a batch with no compressible chunk, only every 8th chunk of the next batch is
        /// test-compressed (weights and random data then cost almost nothing); a batch that
        /// compresses turns testing of every chunk back on.
        private var testEvery = 1

        func fail(_ e: Error) { lock.withLock { if failure == nil { failure = e } } }
        var error: Error? { lock.withLock { failure } }
        var compressionStride: Int {
            get { lock.withLock { testEvery } }
            set { lock.withLock { testEvery = newValue } }
        }

        // Writer queue only. Segments are cut and stored as chunks arrive (DESIGN: a new
        // version rewrites only the segments around its edits), so memory does not grow with
        // the file: only the first chunks (until the file is known to need segments), the open
        // segment and one reference per finished segment are kept.
        var chunkCount = 0
        var newChunks = 0
        var newBytes: UInt64 = 0
        var firstChunks: [ChunkRef] = []
        var segments = SegmentBuilder()
        var segmentRefs: [ChunkRef] = []
        var streaming = false

        func add(_ c: ChunkRef, writer: ObjectWriter) throws {
            chunkCount += 1
            guard streaming else {
                firstChunks.append(c)
                if firstChunks.count > BlobManifest.directChunkLimit {
                    streaming = true
                    for f in firstChunks { try feed(f, writer: writer) }
                    firstChunks = []
                }
                return
            }
            try feed(c, writer: writer)
        }

        private func feed(_ c: ChunkRef, writer: ObjectWriter) throws {
            if let group = segments.append(c) { try store(group, writer: writer) }
        }

        private func store(_ group: [ChunkRef], writer: ObjectWriter) throws {
            let seg = Segment(chunks: group)
            let bytes = seg.encode()
            let id = try writer.put(.segment, bytes, id: SHA256.hash(bytes))
            segmentRefs.append(ChunkRef(id: id, length: seg.byteCount))
        }

        /// Writes the blob's manifest (none for a single chunk).
        func finish(blobID: ObjectID, size: UInt64, ingester: Ingester) throws {
            guard streaming else {
                return try ingester.finishBlob(blobID: blobID, size: size, chunks: firstChunks)
            }
            if let last = segments.finish() { try store(last, writer: ingester.writer) }
            let manifest = BlobManifest(blobID: blobID, size: size, level: .segments, entries: segmentRefs)
            try ingester.writer.put(.blob, manifest.encode(), id: blobID)
        }
    }

    /// Opens a large input for reading: with direct I/O when less than half of it is in the
    /// page cache (reading it through the cache would cost a page-cache fill on top of the
    /// disk read), through the cache otherwise.
    /// Opens a large input, with direct I/O when it is mostly not in the page cache.
    static func openInput(_ path: String) throws -> (fd: Int32, direct: Bool) {
        let fd = try FileIO.open(path, O_RDONLY)
        var st = stat()
        if PackWriter.useDirectIO, fstat(fd, &st) == 0, st.st_size >= 64 << 20 {
            let resident = trove_resident_fraction(fd, Int(st.st_size))
            if resident >= 0 && resident < 0.5 {
                let direct = open(path, O_RDONLY | O_CLOEXEC | TROVE_O_DIRECT)
                if direct >= 0 {
                    close(fd)
                    return (direct, true)
                }
            }
        }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        return (fd, false)
    }

    func ingestLarge(path: String) throws -> IngestResult {
        let (fd, direct) = try Ingester.openInput(path)
        defer { close(fd) }
        return try ingestLarge(name: path, directReads: direct) { buffer, count, offset in
            try FileIO.preadUpTo(fd, buffer, count, offset: offset, path: path)
        }
    }

    /// Stores content that arrives in order from `read` (a pipe, a git filter). `read(buffer,
    /// count)` returns fewer than `count` bytes only at the end, and 0 after it.
    public func ingest(stream read: @escaping (UnsafeMutableRawPointer, Int) throws -> Int, name: String) throws -> IngestResult {
        if streamWorker == nil { streamWorker = try SmallFileWorker(ingester: self) }
        return try streamWorker!.ingest(stream: read, name: name)
    }

    /// The large-file pipeline over `read(buffer, count, offset)`, which fills `count` bytes
    /// unless the input ends; reads come in order, one at a time.
    func ingestLarge(name path: String, directReads: Bool = false, read: @escaping (UnsafeMutableRawPointer, Int, UInt64) throws -> Int) throws -> IngestResult {
        // Reads run one batch ahead on their own thread, so that chunking never waits on the disk.
        let readQueue = DispatchQueue(label: "trove.ingest.read")
        func startRead(_ b: Batch, at offset: UInt64) {
            b.readError = nil
            b.readBytes = 0
            b.readDone.enter()
            readQueue.async {
                do {
                    b.readBytes = try read(b.buffer + b.headroom, Ingester.batchSize, offset)
                } catch {
                    b.readError = error
                }
                b.readDone.leave()
            }
        }
        let p = parameters
        let capacity = Ingester.batchSize + p.maxSize
        let block = PackWriter.directBlock
        let pool = BatchPool(count: Ingester.batchCount, capacity: capacity, minChunk: p.minSize,
                             headroom: (p.maxSize + block - 1) / block * block, directReads: directReads)
        let wholeHasher = SHA256.Hasher()
        let hashQueue = DispatchQueue(label: "trove.ingest.whole-hash")
        let writeQueue = DispatchQueue(label: "trove.ingest.write")
        let threads = self.threads
        let compressors = CompressorPool(level: store.compressionLevel)
        let run = LargeIngest()
        let reader = try store.index.makeReader()
        let writer = self.writer
        let progress = self.progress
        let carry = UnsafeMutableRawPointer.allocate(byteCount: p.maxSize, alignment: 64)
        defer { carry.deallocate() }
        var carryLength = 0
        var total: UInt64 = 0
        var eof = false
        var next: Batch? = pool.take()
        startRead(next!, at: 0)

        while let batch = next, run.error == nil {
            next = nil
            batch.readDone.wait()
            if let e = batch.readError {
                run.fail(e)
                pool.give(batch)
                break
            }
            let n = batch.readBytes
            eof = n < Ingester.batchSize
            if !eof {
                next = pool.take()
                startRead(next!, at: total + UInt64(n))
            }
            batch.data = batch.buffer + batch.headroom - carryLength
            if carryLength > 0 { batch.data.copyMemory(from: carry, byteCount: carryLength) }
            let filled = carryLength + n
            total += UInt64(n)
            batch.count = 0
            let base = batch.data.assumingMemoryBound(to: UInt8.self)
            var offset = 0
            while offset < filled {
                let remaining = filled - offset
                if !eof && remaining < p.maxSize { break }
                let len = Chunker.cut(base + offset, count: remaining, parameters: p)
                batch.append(start: offset, length: len)
                offset += len
            }
            batch.length = offset
            carryLength = filled - offset
            if carryLength > 0 { carry.copyMemory(from: batch.data + offset, byteCount: carryLength) }
            if total == 0 && eof && batch.count == 0 {
                batch.append(start: 0, length: 0)  // an empty file is one empty chunk
            }

            // Chunk ids (and compression) on worker threads: one task per batch when the ids are
            // hashed 16 side by side (a batch's ~128 chunks keep the lanes full; split in two they
            // ran at 2.1 against 2.4 GB/s), else the chunks interleaved over the threads.
            let stride = run.compressionStride
            let hashed = DispatchGroup()
            let parts = SHA256.hashesSideBySide ? 1 : min(threads, max(1, batch.count))
            for part in 0..<parts {
                DispatchQueue.global().async(group: hashed) {
                    let compressor = compressors.take()
                    defer { compressors.give(compressor) }
                    let mine = Array(Swift.stride(from: part, to: batch.count, by: parts))
                    let chunks = mine.map { UnsafeRawBufferPointer(start: batch.data + batch.starts[$0], count: batch.lengths[$0]) }
                    for (k, id) in SHA256.hash(messages: chunks).enumerated() { batch.ids[mine[k]] = id }
                    for (k, i) in mine.enumerated() where i % stride == 0 {
                        batch.compressedLengths[i] = compressor.compressIfPays(
                            chunks[k], into: batch.compressedRegion(i), capacity: chunks[k].count + Batch.slack) ?? 0
                    }
                }
            }
            // The whole-file id, in order, on its own queue; the writer, in order, on another.
            let done = DispatchGroup()
            done.enter()
            done.enter()
            hashQueue.async {
                wholeHasher.update(batch.data, count: batch.length)
                done.leave()
            }
            writeQueue.async {
                defer { done.leave() }
                hashed.wait()
                guard run.error == nil else { return }
                do {
                    let present = try writer.present(Array(UnsafeBufferPointer(start: batch.ids, count: batch.count)), reader: reader)
                    var batchBytes: UInt64 = 0
                    var anyCompressed = false
                    for i in 0..<batch.count {
                        let len = batch.lengths[i]
                        batchBytes += UInt64(len)
                        try run.add(ChunkRef(id: batch.ids[i], length: UInt64(len)), writer: writer)
                        let clen = batch.compressedLengths[i]
                        anyCompressed = anyCompressed || clen > 0
                        if present[i] { continue }
                        let stored = clen > 0
                            ? UnsafeRawBufferPointer(start: batch.compressedRegion(i), count: clen)
                            : UnsafeRawBufferPointer(start: batch.data + batch.starts[i], count: len)
                        if try writer.putPrepared(type: .chunk, id: batch.ids[i], codec: clen > 0 ? .zstd : .raw, rawLength: len, stored: stored) {
                            run.newChunks += 1
                            run.newBytes += UInt64(len)
                        }
                    }
                    run.compressionStride = anyCompressed ? 1 : 8
                    progress?.advance(batchBytes)
                } catch {
                    run.fail(error)
                }
            }
            done.notify(queue: DispatchQueue.global()) { pool.give(batch) }
        }
        if let pending = next {
            pending.readDone.wait()
            pool.give(pending)
        }
        writeQueue.sync {}
        hashQueue.sync {}
        if let failure = run.error { throw failure }
        let blobID = wholeHasher.finish()
        try run.finish(blobID: blobID, size: total, ingester: self)
        return IngestResult(blobID: blobID, size: total, chunkCount: run.chunkCount, newChunks: run.newChunks, newBytes: run.newBytes)
    }
}
