import CLinux
import Foundation
import Glibc
import TroveCore

/// A clone's files written while their chunks arrive, instead of after the fetch: each verified
/// chunk goes to the store's pack (as always) and to every place it holds in the files being
/// checked out. A large file whose every chunk arrived is flushed and handed to the checkout,
/// which renames it into place instead of reading the packs back (Docs/decisions.md: reading
/// back a 1 GiB clone cost as long as writing it). A small file made of one chunk is written
/// at its path (the working tree is new) by a background writer as that chunk arrives, and the
/// checkout takes it as it is. A file that is not complete (a chunk the store already had, a
/// fetch cut short) is dropped and written the usual way.
public final class StreamingCheckout: @unchecked Sendable {
    /// Files from this size on are large: held open and written in place as chunks arrive.
    static let minimumSize = UInt64(Materializer.smallLimit)
    /// At most this many files are open at once.
    static let maximumFiles = 256

    /// Bytes gathered per file before a direct write; at most `maximumStaged` files stage at once.
    static let window = 8 << 20
    static let maximumStaged = 8

    /// One file being written. Chunks that arrive in file order (the usual case: a file's
    /// chunks lie in pack order) gather in an aligned buffer and go out in whole blocks with
    /// direct I/O, as the checkout writes (the page cache is costly to fill on the VMs measured,
    /// Docs/decisions.md); the first chunk out of order sends the file through the page cache
    /// from there on. The two never write the same block.
    private final class File {
        let path: String
        let id: ObjectID
        let tmp: String
        var fd: Int32
        /// The same file opened for direct I/O; -1 when the file system refuses it.
        var direct: Int32
        var missing: Int
        var bad = false
        /// Written through the page cache from now on.
        var buffered: Bool
        /// Bytes from `frontier` on, gathered for the next direct write (`frontier` is block-aligned).
        var staging: UnsafeMutableRawPointer?
        var capacity = 0
        var staged = 0
        var frontier: UInt64 = 0
        /// The buffer of the write in flight (whole blocks go out on `io` while the next ones
        /// gather in `staging`, as the pack writer does), and that write's error.
        var spare: UnsafeMutableRawPointer?
        let writing = DispatchGroup()
        let failure = Mutex()
        var writeError: Error?
        static let io = DispatchQueue(label: "trove.streaming-checkout.io")
        init(path: String, id: ObjectID, tmp: String, fd: Int32, direct: Int32, missing: Int) {
            self.path = path
            self.id = id
            self.tmp = tmp
            self.fd = fd
            self.direct = direct
            self.buffered = direct < 0
            self.missing = missing
        }

        /// Sends the whole blocks gathered to be written in the background (after the previous
        /// write, whose buffer then takes what is left); with `all`, waits and writes the rest
        /// too (through the page cache).
        func flush(all: Bool) throws {
            guard let staging else { return }
            let whole = staged / PackWriter.directBlock * PackWriter.directBlock
            try settle()
            if whole > 0 {
                let next = spare ?? UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: PackWriter.directBlock)
                next.copyMemory(from: staging + whole, byteCount: staged - whole)
                let (fd, offset, path) = (direct, Int(frontier), tmp)
                Self.io.async(group: writing) { [self] in
                    do { try FileIO.pwriteAll(fd, staging, whole, offset: offset, path: path) } catch {
                        failure.withLock { if writeError == nil { writeError = error } }
                    }
                }
                spare = staging
                self.staging = next
                frontier += UInt64(whole)
                staged -= whole
            }
            if all {
                try settle()
                if staged > 0 { try FileIO.pwriteAll(fd, self.staging!, staged, offset: Int(frontier), path: tmp) }
                frontier += UInt64(staged)
                staged = 0
                release()
            }
        }

        /// Waits for the write in flight and throws its error.
        func settle() throws {
            writing.wait()
            if let e = failure.withLock({ writeError }) { throw e }
        }

        /// A buffer bigger than `capacity` (a chunk larger than the window), keeping what is staged.
        func grow(to size: Int) throws {
            try settle()
            let bigger = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: PackWriter.directBlock)
            bigger.copyMemory(from: staging!, byteCount: staged)
            release()
            staging = bigger
            capacity = size
        }

        private func release() {
            staging?.deallocate()
            spare?.deallocate()
            staging = nil
            spare = nil
        }

        func close() {
            writing.wait()
            if fd >= 0 { Glibc.close(fd) }
            if direct >= 0 { Glibc.close(direct) }
            fd = -1
            direct = -1
            release()
        }
    }

    private var stagingFiles = 0

    private let materializer: Materializer
    private var files: [File] = []
    /// Chunk → the (file, offset, length the manifest gives) places it fills.
    private var places: [ObjectID: [(file: Int, offset: UInt64, length: UInt64)]] = [:]
    private let lock = Mutex()
    private let decompressor = Decompressor()
    private var failed = false

    /// Small files whose one chunk is on its way (path, entry), and where each chunk goes.
    private var small: [(path: String, entry: Tree.Entry)] = []
    private var smallPlaces: [ObjectID: [Int]] = [:]
    /// Background writers of small files; a folder always goes to the same one (ext4 serialises
    /// creation in a folder). At most `maximumQueued` groups wait for them, so memory stays bounded.
    private final class SmallWriter {
        let queue = DispatchQueue(label: "trove.streaming-checkout.small")
        let decompressor = Decompressor()
        var created = Set<String>()
    }
    private let writers: [SmallWriter]
    static let maximumQueued = 8
    private let queued = DispatchSemaphore(value: StreamingCheckout.maximumQueued)
    private let writtenLock = Mutex()
    private var smallWritten: [String: (id: ObjectID, written: Materializer.Written)] = [:]
    /// Set once the checkout owns the small files written (then `abandon` leaves them).
    private var handedOver = false

    /// Prepares the large files among `entries` (paths within the work tree `root`) whose
    /// chunk lists the store has (their manifests were fetched).
    public init(store: Store, root: String, entries: [(String, Tree.Entry)]) throws {
        materializer = Materializer(store: store, root: root)
        writers = (0..<max(1, min(2, store.threads))).map { _ in SmallWriter() }
        var created = Set<String>()
        let large = entries.filter { $0.1.kind == .file && $0.1.size >= StreamingCheckout.minimumSize }.prefix(StreamingCheckout.maximumFiles)
        do {
            for (path, e) in large {
                guard let chunks = try? store.chunks(ofBlob: e.id), !chunks.isEmpty else { continue }
                try materializer.checkPath(path)
                try materializer.makeParents(path, created: &created)
                let tmp = materializer.tempPath(for: path)
                let fd = try FileIO.open(tmp, O_WRONLY | O_CREAT | O_EXCL, mode: e.executable ? 0o777 : 0o666)
                let direct = Materializer.directOutput ? Glibc.open(tmp, O_WRONLY | O_CLOEXEC | TROVE_O_DIRECT) : -1
                let index = files.count
                files.append(File(path: path, id: e.id, tmp: tmp, fd: fd, direct: direct, missing: chunks.count))
                if ftruncate(fd, off_t(e.size)) != 0 { throw FileIO.ioError("size", tmp) }
                var offset: UInt64 = 0
                for c in chunks {
                    places[c.id, default: []].append((index, offset, c.length))
                    offset += c.length
                }
            }
            // A small file whose blob the store lacks after the metadata is one chunk (a file of
            // several has its manifest here); one the store has is written by the checkout.
            let candidates = entries.filter { $0.1.kind == .file && $0.1.size > 0 && $0.1.size <= UInt64(store.parameters.maxSize) }
            for ((path, e), present) in zip(candidates, try store.contains(candidates.map(\.1.id))) where !present {
                try materializer.checkPath(path)
                smallPlaces[e.id, default: []].append(small.count)
                small.append((path, e))
            }
        } catch {
            abandon()
            throw error
        }
    }

    /// Writes verified chunks to their places (objects that are not chunks of these files are
    /// passed over). Called by the fetch after each group is verified and stored.
    public func receive(_ objects: [PackedObject]) throws {
        try lock.withLock {
            writeSmall(objects)
            guard !failed else { return }
            do {
                for o in objects where o.type == .chunk {
                    guard let at = places.removeValue(forKey: o.id) else { continue }
                    try o.stored.withUnsafeBytes { stored in
                        let raw = o.codec == .zstd ? try decompressor.decompressToScratch(stored, rawLength: o.rawLength) : stored
                        guard raw.count == o.rawLength else {
                            throw StoreError(.integrity, "chunk \(o.id.short()) has \(raw.count) bytes, its record says \(o.rawLength)")
                        }
                        for (k, offset, length) in at {
                            // A manifest whose length disagrees with the verified chunk: that file is
                            // left to the checkout, which names the problem (Materializer.checkLength).
                            guard length == UInt64(raw.count) else {
                                files[k].bad = true
                                continue
                            }
                            try write(files[k], raw, at: offset)
                            files[k].missing -= 1
                            if files[k].missing == 0, files[k].staging != nil {
                                try files[k].flush(all: true)
                                stagingFiles -= 1
                            }
                        }
                    }
                }
            } catch {
                // The fetch goes on; the checkout writes these files the usual way.
                failed = true
            }
        }
    }

    /// Hands the small files these chunks complete to their writers (waiting while
    /// `maximumQueued` groups are queued). A file that cannot be written is left to the checkout.
    private func writeSmall(_ objects: [PackedObject]) {
        var jobs = [[(PackedObject, [Int])]](repeating: [], count: writers.count)
        for o in objects where o.type == .chunk {
            guard let at = smallPlaces.removeValue(forKey: o.id) else { continue }
            let path = small[at[0]].path
            let folder = path.lastIndex(of: "/").map { path[..<$0] } ?? ""
            jobs[Int(UInt(bitPattern: folder.hashValue) % UInt(writers.count))].append((o, at))
        }
        for (w, list) in zip(writers, jobs) where !list.isEmpty {
            queued.wait()
            w.queue.async { [self] in
                defer { queued.signal() }
                for (o, at) in list {
                    o.stored.withUnsafeBytes { stored in
                        guard let raw = try? (o.codec == .zstd ? w.decompressor.decompressToScratch(stored, rawLength: o.rawLength) : stored),
                              raw.count == o.rawLength, let base = raw.baseAddress else { return }
                        for i in at where small[i].entry.size == UInt64(raw.count) {
                            let (path, entry) = small[i]
                            do {
                                try materializer.makeParents(path, created: &w.created)
                                if let written = try materializer.writeNew(path: path, base, raw.count, executable: entry.executable) {
                                    writtenLock.withLock { smallWritten[path] = (entry.id, written) }
                                }
                            } catch {}
                        }
                    }
                }
            }
        }
    }

    /// Waits for the small files queued to be written.
    private func drainWriters() { for w in writers { w.queue.sync {} } }

    /// One chunk at its place: gathered for a direct write when it continues what is gathered,
    /// else through the page cache (and the file stays there).
    private func write(_ f: File, _ raw: UnsafeRawBufferPointer, at offset: UInt64) throws {
        guard raw.count > 0 else { return }
        if !f.buffered, offset == f.frontier + UInt64(f.staged), f.staging != nil || stagingFiles < StreamingCheckout.maximumStaged {
            if f.staging == nil {
                f.capacity = StreamingCheckout.window + max(raw.count, PackWriter.directBlock)
                f.staging = UnsafeMutableRawPointer.allocate(byteCount: f.capacity, alignment: PackWriter.directBlock)
                stagingFiles += 1
            }
            if f.staged + raw.count > f.capacity { try f.flush(all: false) }
            // A chunk larger than the window: a bigger buffer.
            if f.staged + raw.count > f.capacity { try f.grow(to: f.staged + raw.count) }
            (f.staging! + f.staged).copyMemory(from: raw.baseAddress!, byteCount: raw.count)
            f.staged += raw.count
            if f.staged >= StreamingCheckout.window { try f.flush(all: false) }
            return
        }
        if !f.buffered {
            f.buffered = true
            if f.staging != nil {
                try f.flush(all: true)
                stagingFiles -= 1
            }
        }
        try FileIO.pwriteAll(f.fd, raw.baseAddress!, raw.count, offset: Int(offset), path: f.tmp)
    }

    /// Flushes the complete files and returns them (path → blob id and how it was written) for
    /// `Materializer.prepared`; the incomplete ones are removed.
    public func finish() -> [String: (id: ObjectID, file: Materializer.Prepared)] {
        lock.withLock {
            drainWriters()
            var ready: [String: (id: ObjectID, file: Materializer.Prepared)] = [:]
            for f in files where f.fd >= 0 {
                let complete = !failed && !f.bad && f.missing == 0 && fsync(f.fd) == 0
                f.close()
                if complete { ready[f.path] = (f.id, .temp(f.tmp)) } else { unlink(f.tmp) }
            }
            for (path, w) in writtenLock.withLock({ smallWritten }) { ready[path] = (w.id, .inPlace(w.written)) }
            places = [:]
            smallPlaces = [:]
            handedOver = true
            return ready
        }
    }

    /// Removes every file written (an error before the checkout took them).
    public func abandon() {
        lock.withLock {
            drainWriters()
            for f in files {
                f.close()
                unlink(f.tmp)
            }
            if !handedOver {
                for path in writtenLock.withLock({ smallWritten.keys }) { unlink(materializer.root + "/" + path) }
            }
            places = [:]
            smallPlaces = [:]
        }
    }
}
