import CLinux
import Dispatch
import Glibc
import TroveCore

/// Appends objects to a temporary pack and makes it durable when it reaches the target size:
/// trailer, fsync, rename to `packs/<checksum>.pack`, fsync the directory, then hand the
/// records to `onFinish` (which indexes them). Not thread-safe: one writer per session, guarded
/// by its owner.
final class PackWriter {
    let directory: String
    let targetSize: Int
    private let onFinish: (_ name: String, _ size: UInt64, _ records: [PackFormat.IndexRecord]) throws -> Void

    private var fd: Int32 = -1
    private var tempPath = ""
    private var records: [PackFormat.IndexRecord] = []
    private var offset: UInt64 = 0
    private var syncedUpTo: UInt64 = 0
    /// Two buffers: one fills while the other is written by `io` in the background.
    private let buffers: [UnsafeMutableRawPointer]
    private let storage: [LargeBuffer]
    private var current = 0
    private var buffer: UnsafeMutableRawPointer { buffers[current] }
    private let io = DispatchQueue(label: "trove.pack.write")
    private let writing = DispatchGroup()
    private let ioLock = Mutex()
    private var ioError: Error?
    /// A multiple of the direct-I/O block size.
    private let bufferCapacity = PackWriter.bufferSize
    static let bufferSize = 8 << 20
    private var buffered = 0
    /// Writes bypass the page cache (TROVE_O_DIRECT) when the file system allows it: no copy into
    /// the cache and little left for fsync. Off with `TROVE_DIRECT_IO=0`.
    private var direct = false
    static let directBlock = 4096
    static let useDirectIO = getenv("TROVE_DIRECT_IO").map { String(cString: $0) != "0" } ?? true
    /// Ids written to the open pack (not yet indexed).
    private var pendingIDs: Set<ObjectID> = []
    /// Packs being made durable and indexed in the background, with their ids.
    private let finishing = DispatchGroup()
    private let finisher = DispatchQueue(label: "trove.pack.finish")
    private var finishingIDs: [Int: Set<ObjectID>] = [:]
    private var finishSerial = 0

    /// True when the id was written in this session and is not yet in the index.
    func isPending(_ id: ObjectID) -> Bool {
        if pendingIDs.contains(id) { return true }
        return ioLock.withLock { finishingIDs.values.contains { $0.contains(id) } }
    }

    init(directory: String, targetSize: Int,
         onFinish: @escaping (_ name: String, _ size: UInt64, _ records: [PackFormat.IndexRecord]) throws -> Void) {
        self.directory = directory
        self.targetSize = targetSize
        self.onFinish = onFinish
        storage = (0..<2).map { _ in LargeBuffer(PackWriter.bufferSize) }
        buffers = storage.map(\.pointer)
    }

    deinit {
        writing.wait()
        finishing.wait()
        if fd >= 0 {
            close(fd)
            unlink(tempPath)
        }
    }

    /// Waits for the background write and rethrows its error.
    private func settle() throws {
        writing.wait()
        if let e = ioLock.withLock({ ioError }) { throw e }
    }

    /// This host's name without dashes, for temporary pack names (`tmp-HOST-PID-RAND.pack`): on
    /// a shared file system only the host that wrote a temporary pack may judge it abandoned.
    static let hostName: String = {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, buf.count - 1)
        let name = String(cString: buf).filter { $0.isLetter || $0.isNumber || $0 == "." }
        return name.isEmpty ? "host" : name
    }()

    private func openPack() throws {
        tempPath = "\(directory)/tmp-\(PackWriter.hostName)-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).pack"
        fd = -1
        direct = false
        if PackWriter.useDirectIO {
            fd = Glibc.open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | TROVE_O_DIRECT, 0o444)
            direct = fd >= 0
            // Some file systems accept TROVE_O_DIRECT at open and refuse the writes: probe one block
            // (overwritten by the pack later) and fall back to buffered writes.
            if direct {
                buffers[0].initializeMemory(as: UInt8.self, repeating: 0, count: PackWriter.directBlock)
                if Glibc.pwrite(fd, buffers[0], PackWriter.directBlock, 0) != PackWriter.directBlock {
                    let flags = fcntl(fd, F_GETFL)
                    if flags >= 0 && fcntl(fd, F_SETFL, flags & ~TROVE_O_DIRECT) == 0 { direct = false } else { close(fd); unlink(tempPath); fd = -1; direct = false }
                }
            }
        }
        if fd < 0 { fd = try FileIO.open(tempPath, O_WRONLY | O_CREAT | O_EXCL, mode: 0o444) }
        records = []
        offset = 0
        syncedUpTo = 0
        buffered = 0
        try put(PackFormat.header())
    }

    /// Hands the buffer to the background writer and continues in the other one. With direct
    /// I/O only whole blocks go out; the partial block moves to the other buffer. At the end of
    /// the pack (`final`) the tail is padded, written synchronously, and the file truncated back.
    private func flushBuffer(final: Bool = false) throws {
        try settle()
        guard buffered > 0 else { return }
        let block = PackWriter.directBlock
        let whole = !direct ? buffered : final ? (buffered + block - 1) / block * block : buffered / block * block
        if whole > buffered { (buffer + buffered).initializeMemory(as: UInt8.self, repeating: 0, count: whole - buffered) }
        let fileStart = Int(offset) - buffered
        if final {
            if whole > 0 { try FileIO.pwriteAll(fd, buffer, whole, offset: fileStart, path: tempPath) }
            if ftruncate(fd, off_t(offset)) != 0 { throw FileIO.ioError("truncate", tempPath) }
            buffered = 0
            return
        }
        let rest = buffered - whole
        let next = buffers[1 - current]
        if rest > 0 { next.copyMemory(from: buffer + whole, byteCount: rest) }
        let (fd, path, data) = (self.fd, tempPath, buffer)
        let startWriteback = !direct && offset - syncedUpTo >= 16 << 20
        let synced = syncedUpTo
        if startWriteback { syncedUpTo = UInt64(fileStart + whole) }
        io.async(group: writing) { [self] in
            do {
                try FileIO.pwriteAll(fd, data, whole, offset: fileStart, path: path)
                // Buffered writes: start write-back early so that the final fsync has little left.
                if startWriteback { _ = trove_start_writeback(fd, Int64(synced), Int64(fileStart + whole) - Int64(synced)) }
            } catch {
                ioLock.withLock { if ioError == nil { ioError = error } }
            }
        }
        current = 1 - current
        buffered = rest
    }

    private func put(_ pointer: UnsafeRawPointer, _ count: Int) throws {
        var done = 0
        while done < count {
            if buffered == bufferCapacity { try flushBuffer() }
            let n = min(count - done, bufferCapacity - buffered)
            (buffer + buffered).copyMemory(from: pointer + done, byteCount: n)
            buffered += n
            offset += UInt64(n)
            done += n
        }
    }

    private func put(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { if $0.count > 0 { try put($0.baseAddress!, $0.count) } }
    }

    /// Appends one object. `stored` is the compressed form when `codec` is zstd, else the raw bytes.
    func append(type: ObjectType, id: ObjectID, codec: PackFormat.Codec, rawLength: Int, stored: UnsafeRawBufferPointer) throws {
        if fd < 0 { try openPack() }
        let rec = PackFormat.IndexRecord(id: id, type: type, codec: codec, offset: offset,
                                         rawLength: UInt32(rawLength), storedLength: UInt32(stored.count))
        try put(PackFormat.entryHeader(type: type, codec: codec, rawLength: rawLength, storedLength: stored.count, id: id))
        if stored.count > 0 { try put(stored.baseAddress!, stored.count) }
        records.append(rec)
        pendingIDs.insert(id)
        if offset >= UInt64(targetSize) { try finish(wait: false) }
    }

    /// Closes the open pack: trailer written here; fsync, rename to `<checksum>.pack`, folder
    /// fsync and indexing on a background queue, so that the writer goes on with the next
    /// pack meanwhile. With `wait`, returns only when every pack so far is durable and indexed
    /// (callers move refs only after that).
    func finish(wait: Bool = true) throws {
        if fd >= 0 {
            let (trailer, checksum) = PackFormat.trailer(records: records, indexOffset: offset)
            try put(trailer)
            try flushBuffer(final: true)
            let (fd, temp, size, done, ids) = (self.fd, tempPath, offset, records, pendingIDs)
            let directory = self.directory
            let onFinish = self.onFinish
            self.fd = -1
            records = []
            pendingIDs = []
            let serial = ioLock.withLock { () -> Int in
                finishSerial += 1
                finishingIDs[finishSerial] = ids
                return finishSerial
            }
            finisher.async(group: finishing) { [self] in
                do {
                    defer { close(fd) }
                    try FileIO.fsync(fd, path: temp)
                    let name = checksum.hex
                    try FileIO.rename(temp, "\(directory)/\(name).pack")
                    try FileIO.fsyncDirectory(directory)
                    try onFinish(name, size, done)
                } catch {
                    unlink(temp)
                    ioLock.withLock { if ioError == nil { ioError = error } }
                }
                ioLock.withLock { _ = finishingIDs.removeValue(forKey: serial) }
            }
        }
        if wait {
            finishing.wait()
            if let e = ioLock.withLock({ ioError }) { throw e }
        }
    }
}

/// Open pack files for reading, shared by threads.
final class PackFiles: @unchecked Sendable {
    let directory: String
    private var fds: [String: Int32] = [:]
    private let lock = Mutex()
    /// For packs in an object store (`RemotePackTable`): byte ranges are read through this.
    let remote: (@Sendable (_ pack: String, _ range: Range<UInt64>) throws -> [UInt8])?

    init(directory: String, remote: (@Sendable (String, Range<UInt64>) throws -> [UInt8])? = nil) {
        self.directory = directory
        self.remote = remote
    }

    deinit {
        for fd in fds.values { close(fd) }
        for fd in directFDs.values where fd >= 0 { close(fd) }
        for fd in retired { close(fd) }
    }

    func path(_ name: String) -> String { "\(directory)/\(name).pack" }

    func fd(_ name: String) throws -> Int32 {
        try lock.withLock {
            if let fd = fds[name] { return fd }
            let p = path(name)
            let fd = Glibc.open(p, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                if errno == ENOENT {
                    throw StoreError(.integrity, "pack \(p) is missing but the index names it",
                                     hint: "run `trove fsck --rebuild-index`")
                }
                throw FileIO.ioError("open", p)
            }
            fds[name] = fd
            return fd
        }
    }

    private var directFDs: [String: Int32] = [:]

    /// A descriptor for large, block-aligned reads that bypass the page cache; nil where the
    /// file system refuses direct I/O (then use `fd`).
    func directFD(_ name: String) throws -> Int32? {
        if remote != nil { return nil }
        return try lock.withLock {
            if let fd = directFDs[name] { return fd >= 0 ? fd : nil }
            let fd = Glibc.open(path(name), O_RDONLY | O_CLOEXEC | TROVE_O_DIRECT)
            if fd < 0 && errno == ENOENT {
                throw StoreError(.integrity, "pack \(path(name)) is missing but the index names it", hint: "run `trove fsck --rebuild-index`")
            }
            directFDs[name] = fd
            return fd >= 0 ? fd : nil
        }
    }

    private var retired: [Int32] = []

    /// Stops handing out descriptors of these packs (removed from the folder) and closes those
    /// retired by the previous call: a reader holding one now has until then to finish.
    func retire(_ names: [String]) {
        let closing: [Int32] = lock.withLock {
            let old = retired
            retired = names.flatMap { [fds.removeValue(forKey: $0), directFDs.removeValue(forKey: $0)].compactMap { $0 }.filter { $0 >= 0 } }
            return old
        }
        for fd in closing { close(fd) }
    }

    func forget(_ name: String) {
        lock.withLock {
            if let fd = fds.removeValue(forKey: name) { close(fd) }
            if let fd = directFDs.removeValue(forKey: name), fd >= 0 { close(fd) }
        }
    }
}

/// A pthread mutex (Foundation-free).
public final class Mutex: @unchecked Sendable {
    private var m = pthread_mutex_t()
    public init() { pthread_mutex_init(&m, nil) }
    deinit { pthread_mutex_destroy(&m) }
    @inline(__always)
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&m)
        defer { pthread_mutex_unlock(&m) }
        return try body()
    }
}

/// A value shared between threads behind a `Mutex`.
public final class Locked<Value>: @unchecked Sendable {
    private let lock = Mutex()
    private var value: Value
    public init(_ value: Value) { self.value = value }
    public func get() -> Value { lock.withLock { value } }
    public func set(_ v: Value) { lock.withLock { value = v } }
    /// Changes the value in place, atomically (a get then a set is not).
    public func update<T>(_ body: (inout Value) throws -> T) rethrows -> T { try lock.withLock { try body(&value) } }
}
