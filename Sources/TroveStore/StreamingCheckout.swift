import Foundation
import Glibc
import TroveCore

/// A clone's large files written while their chunks arrive, instead of after the fetch: each
/// verified chunk goes to the store's pack (as always) and to every place it holds in the
/// files being checked out. A file whose every chunk arrived is flushed and handed to the
/// checkout, which renames it into place instead of reading the packs back (Docs/decisions.md:
/// reading back a 1 GiB clone cost as long as writing it). A file that is not complete (a
/// chunk the store already had, a fetch cut short) is dropped and written the usual way.
public final class StreamingCheckout: @unchecked Sendable {
    /// Files smaller than this are written from the packs after the fetch (cheap, and many).
    static let minimumSize = UInt64(Materializer.smallLimit)
    /// At most this many files are open at once.
    static let maximumFiles = 256

    private final class File {
        let path: String
        let id: ObjectID
        let tmp: String
        var fd: Int32
        var missing: Int
        var bad = false
        init(path: String, id: ObjectID, tmp: String, fd: Int32, missing: Int) {
            self.path = path
            self.id = id
            self.tmp = tmp
            self.fd = fd
            self.missing = missing
        }
    }

    private let materializer: Materializer
    private var files: [File] = []
    /// Chunk → the (file, offset, length the manifest gives) places it fills.
    private var places: [ObjectID: [(file: Int, offset: UInt64, length: UInt64)]] = [:]
    private let lock = Mutex()
    private let decompressor = Decompressor()
    private var failed = false

    /// Prepares the large files among `entries` (paths within the work tree `root`) whose
    /// chunk lists the store has (their manifests were fetched).
    public init(store: Store, root: String, entries: [(String, Tree.Entry)]) throws {
        materializer = Materializer(store: store, root: root)
        var created = Set<String>()
        let large = entries.filter { $0.1.kind == .file && $0.1.size >= StreamingCheckout.minimumSize }.prefix(StreamingCheckout.maximumFiles)
        do {
            for (path, e) in large {
                guard let chunks = try? store.chunks(ofBlob: e.id), !chunks.isEmpty else { continue }
                try materializer.checkPath(path)
                try materializer.makeParents(path, created: &created)
                let tmp = materializer.tempPath(for: path)
                let fd = try FileIO.open(tmp, O_WRONLY | O_CREAT | O_EXCL, mode: e.executable ? 0o777 : 0o666)
                let index = files.count
                files.append(File(path: path, id: e.id, tmp: tmp, fd: fd, missing: chunks.count))
                if ftruncate(fd, off_t(e.size)) != 0 { throw FileIO.ioError("size", tmp) }
                var offset: UInt64 = 0
                for c in chunks {
                    places[c.id, default: []].append((index, offset, c.length))
                    offset += c.length
                }
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
                            if raw.count > 0 { try FileIO.pwriteAll(files[k].fd, raw.baseAddress!, raw.count, offset: Int(offset), path: files[k].tmp) }
                            files[k].missing -= 1
                        }
                    }
                }
            } catch {
                // The fetch goes on; the checkout writes these files the usual way.
                failed = true
            }
        }
    }

    /// Flushes the complete files and returns them (path → blob id and temp file) for
    /// `Materializer.prepared`; the others are removed.
    public func finish() -> [String: (id: ObjectID, tmp: String)] {
        lock.withLock {
            var ready: [String: (id: ObjectID, tmp: String)] = [:]
            for f in files where f.fd >= 0 {
                let complete = !failed && !f.bad && f.missing == 0 && fsync(f.fd) == 0
                close(f.fd)
                f.fd = -1
                if complete { ready[f.path] = (f.id, f.tmp) } else { unlink(f.tmp) }
            }
            places = [:]
            return ready
        }
    }

    /// Removes every temp file (an error before the checkout took them).
    public func abandon() {
        lock.withLock {
            for f in files {
                if f.fd >= 0 { close(f.fd) }
                f.fd = -1
                unlink(f.tmp)
            }
            places = [:]
        }
    }
}
