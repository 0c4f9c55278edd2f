import CLinux
import Dispatch
import Glibc
import TroveCore

/// Writes blobs out as files under a root folder, verifying every chunk before any byte of it
/// reaches the file, and refusing any path or symlink that would land outside the root.
public final class Materializer: @unchecked Sendable {
    let store: Store
    let root: String
    let threads: Int
    public var progress: ProgressSink?
    /// Files a clone's `StreamingCheckout` already wrote in full from verified chunks: path →
    /// (blob id, how). `write` renames a temp file into place, or takes a file written in place
    /// as it is, instead of writing them.
    public var prepared: [String: (id: ObjectID, file: Prepared)] = [:]

    public enum Prepared: Sendable {
        /// Flushed under a temp name, to be renamed into place.
        case temp(String)
        /// Written at its path (a new file in a new working tree), with its stat.
        case inPlace(Written)
    }

    static let smallLimit = 8 << 20

    public init(store: Store, root: String, threads: Int? = nil) {
        self.store = store
        self.root = FileIO.absolute(root)
        self.threads = max(1, threads ?? store.threads)
    }

    /// The stat of a written file, for the stat cache.
    public struct Written: Sendable {
        public var path: String
        public var mtime: Int64, ctime: Int64, inode: UInt64, device: UInt64
    }

    // MARK: path safety

    /// Checks a relative path's components and that the symlink target (if any) stays inside.
    func checkPath(_ rel: String) throws {
        guard !rel.hasPrefix("/") else { throw StoreError(.invalidInput, "refusing to write \(rel.debugDescription): absolute path in a tree") }
        for comp in rel.split(separator: "/", omittingEmptySubsequences: false) {
            do { try Tree.validate(name: String(comp)) } catch let e as CoreError {
                throw StoreError(.invalidInput, "refusing to write \(rel.debugDescription): \(e.message)")
            }
        }
    }

    static func checkSymlinkTarget(_ target: String, at rel: String) throws {
        if target.hasPrefix("/") {
            throw StoreError(.invalidInput, "refusing to create symlink \(rel) → \(target): it points outside the working tree (absolute)")
        }
        var depth = rel.split(separator: "/").count - 1
        for comp in target.split(separator: "/", omittingEmptySubsequences: true) {
            if comp == ".." { depth -= 1 } else if comp != "." { depth += 1 }
            if depth < 0 {
                throw StoreError(.invalidInput, "refusing to create symlink \(rel) → \(target): it points outside the working tree")
            }
        }
        if target.split(separator: "/").contains(where: { $0 == ".git" || $0 == ".trove" }) {
            throw StoreError(.invalidInput, "refusing to create symlink \(rel) → \(target): it points into a store")
        }
    }

    /// Creates the parent folders of `rel`, refusing to pass through a symlink or a file.
    func makeParents(_ rel: String, created: inout Set<String>) throws {
        var dir = root
        let parts = rel.split(separator: "/").dropLast()
        var relDir = ""
        for p in parts {
            dir += "/" + p
            relDir += (relDir.isEmpty ? "" : "/") + p
            if created.contains(relDir) { continue }
            var st = stat()
            if lstat(dir, &st) == 0 {
                let type = st.st_mode & S_IFMT
                if type == S_IFLNK {
                    throw StoreError(.invalidInput, "refusing to write \(rel): \(relDir) is a symlink, writing through it could leave the tree")
                }
                if type != S_IFDIR {
                    throw StoreError(.conflict, "cannot write \(rel): \(relDir) is a file in the way", hint: "move or remove it, or use --force")
                }
            } else {
                if mkdir(dir, 0o755) != 0 && errno != EEXIST { throw FileIO.ioError("create directory", dir) }
            }
            created.insert(relDir)
        }
    }

    // MARK: planning

    struct Plan {
        var job: Int
        var chunks: [ChunkRef]
        var locations: [Store.Located]
    }

    func plan(_ entries: [(String, Tree.Entry)]) throws -> [Plan] {
        let ids = entries.map(\.1.id)
        var plans: [Plan] = []
        plans.reserveCapacity(entries.count)
        let located = try store.locateMany(ids)
        var needChunks: [(Int, [ChunkRef])] = []
        for (i, l) in located.enumerated() {
            guard let l else {
                throw StoreError(.notFound, "the content of \(entries[i].0) (blob \(ids[i].short())) is not in the store",
                                 hint: "fetch it from a remote, or run `trove fsck` to see what is missing")
            }
            if l.location.record.type == .chunk {
                plans.append(Plan(job: i, chunks: [ChunkRef(id: ids[i], length: UInt64(l.location.record.rawLength))], locations: [l]))
            } else {
                needChunks.append((i, try store.chunks(ofBlob: ids[i])))
            }
        }
        for (i, chunks) in needChunks {
            let locs = try store.locateMany(chunks.map(\.id))
            var out: [Store.Located] = []
            for (k, l) in locs.enumerated() {
                guard let l else {
                    throw StoreError(.notFound, "chunk \(chunks[k].id.short()) of \(entries[i].0) is not in the store",
                                     hint: "fetch it from a remote, or run `trove fsck` to see what is missing")
                }
                try Materializer.checkLength(chunks[k], l, of: entries[i].0)
                out.append(l)
            }
            plans.append(Plan(job: i, chunks: chunks, locations: out))
        }
        return plans
    }

    /// A stored chunk must be exactly as long as the manifest says: buffers are sized from the
    /// manifest, and a crafted one must never make a read overrun them.
    static func checkLength(_ c: ChunkRef, _ l: Store.Located, of path: String) throws {
        guard UInt64(l.location.record.rawLength) == c.length else {
            throw StoreError(.integrity, "the manifest of \(path) gives chunk \(c.id.short()) \(c.length) bytes, the store has \(l.location.record.rawLength)",
                             hint: "run `trove fsck --full`")
        }
    }

    // MARK: writing

    /// Writes each (relative path, entry) under the root. Existing files are replaced atomically.
    public func write(_ entries: [(String, Tree.Entry)]) throws -> [Written] {
        let ready = Set(entries.indices.filter { entries[$0].1.kind == .file && prepared[entries[$0].0]?.id == entries[$0].1.id })
        if !ready.isEmpty {
            let others = entries.indices.filter { !ready.contains($0) }
            let rest = try write(others.map { entries[$0] })
            var out = [Written?](repeating: nil, count: entries.count)
            for (k, i) in others.enumerated() { out[i] = rest[k] }
            for i in ready.sorted() {
                let path = entries[i].0
                switch prepared[path]!.file {
                case .inPlace(let w):
                    out[i] = w
                case .temp(let tmp):
                    var st = stat()
                    guard lstat(tmp, &st) == 0 else { throw FileIO.ioError("stat", tmp) }
                    try replace(tmp: tmp, path: path)
                    out[i] = Written(path: path, mtime: Materializer.nanos(st.st_mtim), ctime: Materializer.nanos(st.st_ctim),
                                     inode: UInt64(st.st_ino), device: UInt64(st.st_dev))
                }
                prepared[path] = nil
                progress?.advance(entries[i].1.size)
            }
            return out.map { $0! }
        }
        var created = Set<String>()
        for (path, e) in entries {
            try checkPath(path)
            try makeParents(path, created: &created)
            if e.kind == .directory { throw StoreError(.invalidInput, "\(path) is a directory entry, not a file") }
        }
        let plans = try plan(entries)
        var written = [Written?](repeating: nil, count: entries.count)
        let small = plans.filter { $0.chunks.reduce(0) { $0 + $1.length } <= UInt64(Materializer.smallLimit) }
        let large = plans.filter { $0.chunks.reduce(0) { $0 + $1.length } > UInt64(Materializer.smallLimit) }
        // Threads take whole folders (in runs of at most 256 files), so that two threads rarely
        // create files in one folder at once: ext4 serialises that on the folder's lock.
        var groups: [[Plan]] = []
        var lastDir: Substring? = nil
        for plan in small.sorted(by: { entries[$0.job].0 < entries[$1.job].0 }) {
            let path = entries[plan.job].0
            let dir = path.lastIndex(of: "/").map { path[..<$0] } ?? ""
            if dir != lastDir || groups[groups.count - 1].count >= 256 { groups.append([]) }
            groups[groups.count - 1].append(plan)
            lastDir = dir
        }
        let lock = Mutex()
        var next = 0
        var failure: Error?
        DispatchQueue.concurrentPerform(iterations: min(threads, max(1, groups.count))) { _ in
            let reader = ChunkReader()
            reader.trusted = store.verifiedThisSession
            while true {
                let k: Int? = lock.withLock {
                    guard failure == nil, next < groups.count else { return nil }
                    defer { next += 1 }
                    return next
                }
                guard let k else { break }
                do {
                    var done: [(Int, Written)] = []
                    var bytes: UInt64 = 0
                    for plan in groups[k] {
                        let (path, entry) = entries[plan.job]
                        done.append((plan.job, try writeSmall(path: path, entry: entry, plan: plan, reader: reader)))
                        bytes += entry.size
                    }
                    lock.withLock { for (job, w) in done { written[job] = w } }
                    progress?.advance(bytes)
                } catch {
                    lock.withLock { if failure == nil { failure = error } }
                }
            }
        }
        if let failure { throw failure }
        for plan in large {
            let (path, entry) = entries[plan.job]
            written[plan.job] = try writeLarge(path: path, entry: entry, plan: plan)
        }
        return written.map { $0! }
    }

    /// Reusable buffers for reading, decompressing and verifying chunks.
    final class ChunkReader {
        let decompressor = Decompressor()
        /// Chunks this process verified on receipt and wrote itself (a clone or pull that
        /// materialises right after fetching): not hashed a second time.
        var trusted: VerifiedSet?
        var stored: UnsafeMutableRawPointer = .allocate(byteCount: 1, alignment: 64)
        var storedCapacity = 1

        private var file: UnsafeMutableRawPointer = .allocate(byteCount: 1, alignment: 64)
        private var fileCapacity = 1

        deinit {
            stored.deallocate()
            file.deallocate()
        }

        /// A reusable buffer for one whole (small) file of `size` bytes.
        func fileBuffer(_ size: Int) -> UnsafeMutableRawPointer {
            if size > fileCapacity {
                file.deallocate()
                fileCapacity = max(size, 256 << 10)
                file = .allocate(byteCount: fileCapacity, alignment: 64)
            }
            return file
        }

        /// Reads the chunk at `l` into `destination` (room for its raw length) and verifies it.
        func read(_ l: Store.Located, into destination: UnsafeMutableRawPointer) throws {
            let rec = l.location.record
            // A pack in an object store: its bytes come by a ranged read, then decode as a span's.
            if let remote = l.files.remote {
                let bytes = try remote(l.location.pack, rec.dataOffset..<(rec.dataOffset + UInt64(rec.storedLength)))
                guard bytes.count == Int(rec.storedLength) else {
                    throw StoreError(.integrity, "\(l.files.path(l.location.pack)) is truncated: chunk \(rec.id.hex) has \(bytes.count) of \(rec.storedLength) bytes")
                }
                try bytes.withUnsafeBytes { try decode(l, stored: $0.baseAddress ?? UnsafeRawPointer(destination), into: destination) }
                return
            }
            let packPath = l.files.path(l.location.pack)
            let fd = try l.files.fd(l.location.pack)
            let raw = Int(rec.rawLength)
            switch rec.codec {
            case .raw:
                try FileIO.preadAll(fd, destination, raw, offset: rec.dataOffset, path: packPath)
            case .zstd:
                let n = Int(rec.storedLength)
                if n > storedCapacity {
                    stored.deallocate()
                    storedCapacity = max(n, 512 << 10)
                    stored = .allocate(byteCount: storedCapacity, alignment: 64)
                }
                try FileIO.preadAll(fd, stored, n, offset: rec.dataOffset, path: packPath)
                try decoding("chunk \(rec.id.hex) in pack \(packPath)") {
                    try decompressor.decompress(UnsafeRawBufferPointer(start: stored, count: n), into: destination, rawLength: raw)
                }
            }
            if trusted?.contains(rec.id) != true { try ChunkReader.verify(rec, destination, pack: packPath) }
        }

        /// Decodes a chunk whose stored bytes are already in memory (a span read) and verifies it,
        /// unless `verify` is false (the caller then verifies a group with `verify(_:)`).
        func decode(_ l: Store.Located, stored: UnsafeRawPointer, into destination: UnsafeMutableRawPointer, verify: Bool = true) throws {
            let rec = l.location.record
            let packPath = l.files.path(l.location.pack)
            let raw = Int(rec.rawLength)
            switch rec.codec {
            case .raw:
                destination.copyMemory(from: stored, byteCount: raw)
            case .zstd:
                try decoding("chunk \(rec.id.hex) in pack \(packPath)") {
                    try decompressor.decompress(UnsafeRawBufferPointer(start: stored, count: Int(rec.storedLength)), into: destination, rawLength: raw)
                }
            }
            if verify && trusted?.contains(rec.id) != true { try ChunkReader.verify(rec, destination, pack: packPath) }
        }

        /// Verifies decoded chunks together (their ids hashed side by side where the CPU can).
        func verify(_ chunks: [(Store.Located, UnsafeRawPointer)]) throws {
            let unchecked = chunks.filter { trusted?.contains($0.0.location.record.id) != true }
            let ids = SHA256.hash(messages: unchecked.map { UnsafeRawBufferPointer(start: $0.1, count: Int($0.0.location.record.rawLength)) })
            for ((l, _), actual) in zip(unchecked, ids) where actual != l.location.record.id {
                throw ChunkReader.corrupt(l.location.record, actual: actual, pack: l.files.path(l.location.pack))
            }
        }

        static func verify(_ rec: PackFormat.IndexRecord, _ bytes: UnsafeRawPointer, pack: String) throws {
            let actual = SHA256.hash(bytes, count: Int(rec.rawLength))
            guard actual == rec.id else { throw corrupt(rec, actual: actual, pack: pack) }
        }

        static func corrupt(_ rec: PackFormat.IndexRecord, actual: ObjectID, pack: String) -> StoreError {
            StoreError(.integrity, "chunk \(rec.id.hex) in pack \(pack) is corrupt (its bytes hash to \(actual.short()))",
                       hint: "run `trove fsck --full`; fetch the data again from a remote or backup")
        }
    }

    /// Reads runs of chunks that sit close together in one pack with one large direct read
    /// each (no page-cache copy), then decodes and verifies them from memory.
    final class SpanReader {
        let reader = ChunkReader()
        let buffer: LargeBuffer
        static let maxSpan = 8 << 20
        static let maxGap: UInt64 = 256 << 10

        init() { buffer = LargeBuffer(SpanReader.maxSpan + 2 * PackWriter.directBlock) }

        /// Calls `use(i, stored)` for each object `i` in `range`, in order, with its bytes as
        /// stored (unverified), read in spans; nil when the pack cannot be read directly (the
        /// caller reads that object itself).
        func readStored(_ locations: [Store.Located], _ range: Range<Int>,
                        use: (Int, UnsafeRawBufferPointer?) throws -> Void) throws {
            var i = range.lowerBound
            while i < range.upperBound {
                let first = locations[i]
                if let remote = first.files.remote {
                    i = try readRemoteSpan(remote, locations, i, range.upperBound, use: use)
                    continue
                }
                guard let fd = try first.files.directFD(first.location.pack) else {
                    try use(i, nil)
                    i += 1
                    continue
                }
                let block = UInt64(PackWriter.directBlock)
                let lo = first.location.record.offset / block * block
                let (j, end) = SpanReader.span(locations, i, range.upperBound, from: lo)
                let hi = (end + block - 1) / block * block
                let path = first.files.path(first.location.pack)
                let got = try FileIO.preadUpTo(fd, buffer.pointer, Int(hi - lo), offset: lo, path: path)
                guard UInt64(got) >= end - lo else {
                    throw StoreError(.integrity, "\(path) is truncated: wanted bytes up to \(end)")
                }
                for k in i..<j {
                    let r = locations[k].location.record
                    try use(k, UnsafeRawBufferPointer(start: buffer.pointer + Int(r.dataOffset - lo), count: Int(r.storedLength)))
                }
                i = j
            }
        }

        /// The objects from `i` on that one read starting at pack offset `lo` covers: same pack,
        /// gaps ≤ maxGap, ≤ maxSpan in all. Returns the index after the last and the span's end.
        static func span(_ locations: [Store.Located], _ i: Int, _ upper: Int, from lo: UInt64) -> (Int, UInt64) {
            let first = locations[i]
            var end = first.location.record.dataOffset + UInt64(first.location.record.storedLength)
            var j = i + 1
            while j < upper {
                let r = locations[j].location.record
                guard locations[j].files === first.files, locations[j].location.pack == first.location.pack,
                      r.offset >= end, r.offset - end <= SpanReader.maxGap,
                      r.dataOffset + UInt64(r.storedLength) - lo <= UInt64(SpanReader.maxSpan) else { break }
                end = r.dataOffset + UInt64(r.storedLength)
                j += 1
            }
            return (j, end)
        }

        /// Neighbouring objects of a pack in an object store, read with one ranged request; returns
        /// the index after the last one read.
        private func readRemoteSpan(_ remote: @Sendable (String, Range<UInt64>) throws -> [UInt8], _ locations: [Store.Located],
                                    _ i: Int, _ upper: Int, use: (Int, UnsafeRawBufferPointer?) throws -> Void) throws -> Int {
            let first = locations[i]
            let lo = first.location.record.offset
            let (j, end) = SpanReader.span(locations, i, upper, from: lo)
            let bytes = try remote(first.location.pack, lo..<end)
            guard UInt64(bytes.count) == end - lo else {
                throw StoreError(.integrity, "\(first.files.directory)/\(first.location.pack): \(bytes.count) bytes came back for \(end - lo)")
            }
            try bytes.withUnsafeBytes { raw in
                for k in i..<j {
                    let r = locations[k].location.record
                    try use(k, UnsafeRawBufferPointer(rebasing: raw[Int(r.dataOffset - lo)..<Int(r.dataOffset - lo + UInt64(r.storedLength))]))
                }
            }
            return j
        }
    }

    func tempPath(for path: String) -> String {
        let full = root + "/" + path
        return FileIO.dirname(full) + "/.trove-tmp-\(FileIO.basename(full))-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }

    func writeSmall(path: String, entry: Tree.Entry, plan: Plan, reader: ChunkReader) throws -> Written {
        let size = Int(plan.chunks.reduce(0) { $0 + $1.length })
        let buffer = reader.fileBuffer(size)
        var offset = 0
        for (c, l) in zip(plan.chunks, plan.locations) {
            try reader.read(l, into: buffer + offset)
            offset += Int(c.length)
        }
        if entry.kind == .symlink {
            let target = String(decoding: UnsafeRawBufferPointer(start: buffer, count: size), as: UTF8.self)
            return try writeSymlink(path: path, target: target)
        }
        // The content is verified already. A new file is written in place; an existing one is
        // replaced through a temporary name, so that it is never seen half-written.
        if let w = try writeNew(path: path, buffer, size, executable: entry.executable) { return w }
        let tmp = tempPath(for: path)
        let fd = try FileIO.open(tmp, O_WRONLY | O_CREAT | O_EXCL, mode: entry.executable ? 0o777 : 0o666)
        do {
            try FileIO.writeAll(fd, buffer, size, path: tmp)
            return try finishFile(fd: fd, tmp: tmp, path: path)
        } catch {
            close(fd)
            unlink(tmp)
            throw error
        }
    }

    /// Creates `path` (its parents exist) with these bytes; nil when something is there already.
    /// A write that fails removes the file.
    func writeNew(path: String, _ bytes: UnsafeRawPointer, _ size: Int, executable: Bool) throws -> Written? {
        let full = root + "/" + path
        let fd = open(full, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, executable ? 0o777 : 0o666)
        guard fd >= 0 else {
            if errno == EEXIST { return nil }
            throw FileIO.ioError("create", full)
        }
        do {
            try FileIO.writeAll(fd, bytes, size, path: full)
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw FileIO.ioError("stat", full) }
            close(fd)
            return Written(path: path, mtime: Materializer.nanos(st.st_mtim), ctime: Materializer.nanos(st.st_ctim),
                           inode: UInt64(st.st_ino), device: UInt64(st.st_dev))
        } catch {
            close(fd)
            unlink(full)
            throw error
        }
    }

    func writeSymlink(path: String, target: String) throws -> Written {
        try Materializer.checkSymlinkTarget(target, at: path)
        let tmp = tempPath(for: path)
        guard symlink(target, tmp) == 0 else { throw FileIO.ioError("create symlink", tmp) }
        var st = stat()
        lstat(tmp, &st)
        do { try replace(tmp: tmp, path: path) } catch { unlink(tmp); throw error }
        return Written(path: path, mtime: Materializer.nanos(st.st_mtim), ctime: Materializer.nanos(st.st_ctim),
                       inode: UInt64(st.st_ino), device: UInt64(st.st_dev))
    }

    /// Renames the temp file over `path`; a directory in the way is an error.
    func replace(tmp: String, path: String) throws {
        let full = root + "/" + path
        var st = stat()
        if lstat(full, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR {
            throw StoreError(.conflict, "cannot write \(path): a directory is in the way", hint: "move or remove it")
        }
        try FileIO.rename(tmp, full)
    }

    func finishFile(fd: Int32, tmp: String, path: String) throws -> Written {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileIO.ioError("stat", tmp) }
        close(fd)
        try replace(tmp: tmp, path: path)
        return Written(path: path, mtime: Materializer.nanos(st.st_mtim), ctime: Materializer.nanos(st.st_ctim),
                       inode: UInt64(st.st_ino), device: UInt64(st.st_dev))
    }

    static func nanos(_ t: timespec) -> Int64 { Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_nsec) }

    /// Large files are written in windows of `windowSize` bytes, one window per task, by several
    /// threads, into a temp file that replaces the target only when all of it is verified.
    /// Windows go out with direct I/O where the file system allows it (no page-cache copy);
    /// chunks that straddle two windows are read by both.
    static let windowSize = 8 << 20
    /// Large restored files are written with direct I/O (no page-cache copy; on VMs whose
    /// memory is reclaimed eagerly, filling the cache costs more than the disk write), unless
    /// `TROVE_DIRECT_IO=0` or `TROVE_DIRECT_OUTPUT=0`.
    static let directOutput = PackWriter.useDirectIO && (getenv("TROVE_DIRECT_OUTPUT").map { String(cString: $0) != "0" } ?? true)

    func writeLarge(path: String, entry: Tree.Entry, plan: Plan) throws -> Written {
        let tmp = tempPath(for: path)
        let mode: mode_t = entry.executable ? 0o777 : 0o666
        var fd: Int32 = -1
        var direct = false
        if Materializer.directOutput {
            fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | TROVE_O_DIRECT, mode)
            direct = fd >= 0
        }
        if fd < 0 { fd = try FileIO.open(tmp, O_WRONLY | O_CREAT | O_EXCL, mode: mode) }
        var starts: [Int] = []
        var o = 0
        for c in plan.chunks { starts.append(o); o += Int(c.length) }
        let total = o
        let window = Materializer.windowSize
        let windows = (total + window - 1) / window
        do {
            if total > 0 && posix_fallocate(fd, 0, off_t(total)) != 0 {
                if ftruncate(fd, off_t(total)) != 0 { throw FileIO.ioError("size", tmp) }
            }
            let lock = Mutex()
            var next = 0
            var failure: Error?
            let maxChunk = Int(plan.chunks.map(\.length).max() ?? 0)
            DispatchQueue.concurrentPerform(iterations: min(threads, max(1, windows))) { _ in
                let spans = SpanReader()
                spans.reader.trusted = store.verifiedThisSession
                // The chunks that cross the window's edges are decoded here whole; the others
                // straight into the window.
                let head = UnsafeMutableRawPointer.allocate(byteCount: max(maxChunk, 1), alignment: 64)
                let tail = UnsafeMutableRawPointer.allocate(byteCount: max(maxChunk, 1), alignment: 64)
                let outBuffer = LargeBuffer(window)
                let out = outBuffer.pointer
                defer {
                    head.deallocate()
                    tail.deallocate()
                }
                while true {
                    let k: Int? = lock.withLock {
                        guard failure == nil, next < windows else { return nil }
                        defer { next += 1 }
                        return next
                    }
                    guard let k else { break }
                    do {
                        let lo = k * window, hi = min(total, lo + window)
                        // The first chunk that ends after `lo`.
                        var a = 0, b = starts.count
                        while a < b { let m = (a + b) / 2; if starts[m] + Int(plan.chunks[m].length) <= lo { a = m + 1 } else { b = m } }
                        var z = a
                        while z < starts.count && starts[z] < hi { z += 1 }
                        // Decode every chunk first, then verify them together, then copy the
                        // edge chunks' parts in: nothing reaches the file unverified.
                        var decoded: [(Store.Located, UnsafeRawPointer)] = []
                        var edges: [(index: Int, bytes: UnsafeRawPointer)] = []
                        try spans.readStored(plan.locations, a..<z) { i, stored in
                            let cs = starts[i], ce = cs + Int(plan.chunks[i].length)
                            let inside = cs >= lo && ce <= hi
                            let destination = inside ? out + (cs - lo) : cs < lo ? head : tail
                            let l = plan.locations[i]
                            if let stored {
                                try spans.reader.decode(l, stored: stored.baseAddress!, into: destination, verify: false)
                                decoded.append((l, UnsafeRawPointer(destination)))
                            } else {
                                try spans.reader.read(l, into: destination)
                            }
                            if !inside { edges.append((i, UnsafeRawPointer(destination))) }
                        }
                        try spans.reader.verify(decoded)
                        for (i, bytes) in edges {
                            let cs = starts[i], ce = cs + Int(plan.chunks[i].length)
                            let from = max(cs, lo), to = min(ce, hi)
                            (out + (from - lo)).copyMemory(from: bytes + (from - cs), byteCount: to - from)
                        }
                        let length = hi - lo
                        let block = PackWriter.directBlock
                        let padded = direct ? (length + block - 1) / block * block : length
                        if padded > length { (out + length).initializeMemory(as: UInt8.self, repeating: 0, count: padded - length) }
                        do {
                            try FileIO.pwriteAll(fd, out, padded, offset: lo, path: tmp)
                        } catch let e as StoreError where direct && e.code == .io {
                            // Direct I/O refused after all: write this window through the cache.
                            let flags = fcntl(fd, F_GETFL)
                            _ = fcntl(fd, F_SETFL, flags & ~TROVE_O_DIRECT)
                            try FileIO.pwriteAll(fd, out, length, offset: lo, path: tmp)
                        }
                        progress?.advance(UInt64(length))
                    } catch {
                        lock.withLock { if failure == nil { failure = error } }
                    }
                }
            }
            if let failure { throw failure }
            if direct && ftruncate(fd, off_t(total)) != 0 { throw FileIO.ioError("truncate", tmp) }
            return try finishFile(fd: fd, tmp: tmp, path: path)
        } catch {
            close(fd)
            unlink(tmp)
            throw error
        }
    }

    /// Streams a blob to a file descriptor in order (for `cat`), verifying each chunk.
    public static func stream(store: Store, blob: ObjectID, to fd: Int32, path: String = "stdout") throws {
        try stream(store: store, blob: blob) { try FileIO.writeAll(fd, $0.baseAddress!, $0.count, path: path) }
    }

    /// Writes a blob to `path` through a temp file beside it and a rename, so that readers see
    /// the old file or the whole new one. `durable` adds an fsync before the rename.
    public static func writeFile(store: Store, blob: ObjectID, to path: String, mode: mode_t = 0o644, durable: Bool,
                                 progress: ProgressSink? = nil) throws {
        let tmp = FileIO.dirname(path) + "/.trove-tmp-\(getpid())-\(FileIO.basename(path))"
        let fd = try FileIO.open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
        do {
            try stream(store: store, blob: blob) { buf in
                try FileIO.writeAll(fd, buf.baseAddress!, buf.count, path: tmp)
                progress?.advance(UInt64(buf.count))
            }
            if durable { try FileIO.fsync(fd, path: tmp) }
            close(fd)
            try FileIO.rename(tmp, path)
        } catch {
            close(fd)
            unlink(tmp)
            throw error
        }
    }

    /// Hands a blob's content to `write` in order, a verified chunk at a time.
    public static func stream(store: some ObjectSource, blob: ObjectID, write: (UnsafeRawBufferPointer) throws -> Void) throws {
        let chunks = try store.chunks(ofBlob: blob)
        let reader = ChunkReader()
        let maxChunk = Int(chunks.map(\.length).max() ?? 0)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(maxChunk, 1), alignment: 64)
        defer { buffer.deallocate() }
        for batch in stride(from: 0, to: chunks.count, by: 256) {
            let slice = Array(chunks[batch..<min(batch + 256, chunks.count)])
            let locs = try store.locateMany(slice.map(\.id))
            for (c, l) in zip(slice, locs) {
                guard let l else { throw StoreError(.notFound, "chunk \(c.id.short()) of blob \(blob.short()) is not in the store") }
                try checkLength(c, l, of: "blob \(blob.short())")
                try reader.read(l, into: buffer)
                try write(UnsafeRawBufferPointer(start: buffer, count: Int(c.length)))
            }
        }
    }

    /// Reads a whole (small) blob into memory, verified.
    public static func readBlob(store: some ObjectSource, blob: ObjectID) throws -> [UInt8] {
        let chunks = try store.chunks(ofBlob: blob)
        let total = Int(chunks.reduce(0) { $0 + $1.length })
        var out = [UInt8](repeating: 0, count: total)
        let reader = ChunkReader()
        let locs = try store.locateMany(chunks.map(\.id))
        try out.withUnsafeMutableBytes { buf in
            var offset = 0
            for (c, l) in zip(chunks, locs) {
                guard let l else { throw StoreError(.notFound, "chunk \(c.id.short()) of blob \(blob.short()) is not in the store") }
                try checkLength(c, l, of: "blob \(blob.short())")
                try reader.read(l, into: buf.baseAddress! + offset)
                offset += Int(c.length)
            }
        }
        return out
    }
}
