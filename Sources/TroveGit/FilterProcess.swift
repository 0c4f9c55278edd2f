import Dispatch
import Foundation
import Glibc
import TroveCore
import TroveStore

/// `trove filter-process`: git's long-running filter protocol, version 2 (Docs/git.md).
///
/// Clean streams a file into the store (chunked, deduplicated) and answers with its LFS
/// pointer; content that already is a valid pointer passes through. Smudge answers with the
/// content of a pointer; a pointer whose content is not here is fetched through `fetch`, all
/// of them at once when git allows delay. Every answer comes only after the whole request was
/// read, so large files never deadlock the pipes. New objects become durable (fsync, rename,
/// index) before any smudge, when a pack fills, and when git closes the pipe.
public final class FilterProcess {
    /// Fetches the content of pointers the store lacks (from the Trove remote); throws when
    /// some cannot be had.
    public typealias Fetch = (_ pointers: [(path: String, pointer: LFSPointer)]) throws -> Void

    let store: Store
    let reader: PktLineReader
    let writer: PktLineWriter
    let objects: ObjectWriter
    let ingester: Ingester
    let fetch: Fetch
    /// Stores small files' chunks while git goes on (one thread, bounded memory).
    let background: BackgroundIngest
    /// Answer small files before storing them. Only for git commands that leave the cleaned
    /// files in the working tree (`add`, `commit`, `status`...): a failure there is reported at
    /// the end with the paths to add again, and the content is still in the files. Otherwise
    /// (`stash` resets the files right after) each file is durable before git gets its pointer.
    public var storeInBackground = false
    /// Files whose background store failed, reported when git closes the pipe.
    var notStored: [String] = []
    /// `TROVE_SKIP_SMUDGE=1`: check out pointers, not content.
    public var skipSmudge = false
    /// Paths outside the store's sparse patterns keep their pointers.
    public var sparse: PathFilter = .all
    /// Pointers answered `delayed`, by path, waiting for `list_available_blobs`.
    var delayed: [String: LFSPointer] = [:]
    /// Delayed paths already listed as available, with why fetching failed (nil: fetched).
    var available: [String: (LFSPointer, String?)] = [:]
    var unwritten = false
    /// Paths answered since the objects were last made durable.
    var unflushed: [String] = []
    /// Files of at least this size are written by Trove itself when git closes the pipe, not
    /// streamed through git (nil: never). Only for git commands that write the answers into
    /// the working tree (see `GitInvocation`): git answers go into memory whole, so a 10 GB
    /// checkpoint would cost git 10 GB; and writing it directly is faster.
    public var deferMinimum: UInt64?
    /// Pointers git wrote to the working tree in place of large content, by path.
    var deferred: [String: LFSPointer] = [:]
    /// Called once git closed the pipe, with the deferred files.
    public var onFinish: (([String: LFSPointer]) throws -> Void)?

    public init(store: Store, input: Int32 = 0, output: Int32 = 1, fetch: @escaping Fetch) {
        self.store = store
        reader = PktLineReader(fd: input)
        writer = PktLineWriter(fd: output)
        objects = ObjectWriter(store: store)
        ingester = Ingester(store: store, writer: objects)
        background = BackgroundIngest(ingester: ingester)
        self.fetch = fetch
    }

    static func log(_ message: String) { fputs("trove filter: \(message)\n", stderr) }

    /// Serves git until it closes the pipe.
    public func run() throws {
        try handshake()
        while let header = try reader.readList() {
            var keys: [String: String] = [:]
            for line in header {
                guard let eq = line.firstIndex(of: "=") else { continue }
                keys[String(line[..<eq])] = String(line[line.index(after: eq)...])
            }
            let path = keys["pathname"] ?? ""
            switch keys["command"] {
            case "clean": try clean(path: path)
            case "smudge": try smudge(path: path, canDelay: keys["can-delay"] == "1")
            case "list_available_blobs": try listAvailable()
            default:
                throw StoreError(.invalidInput, "git sent an unknown filter command \(keys["command"] ?? "(none)")")
            }
            try writer.send()
        }
        try flushObjects()
        if !deferred.isEmpty, let onFinish { try onFinish(deferred) }
    }

    func handshake() throws {
        guard let hello = try reader.readList(), hello.first == "git-filter-client" else {
            throw StoreError(.invalidInput, "this is git's filter protocol entry point (`filter.trove.process`); git did not greet it",
                             hint: "run `trove install` in the repository instead of calling `trove filter-process` directly")
        }
        guard hello.contains("version=2") else {
            throw StoreError(.invalidInput, "git offered filter protocol \(hello.dropFirst().joined(separator: ", ")); trove speaks version=2")
        }
        try writer.text("git-filter-server")
        try writer.text("version=2")
        try writer.flush()
        try writer.send()
        guard let offered = try reader.readList() else { throw StoreError(.invalidInput, "git closed the filter pipe during the handshake") }
        // Answer only with capabilities git offered: it dies on any other.
        for cap in ["clean", "smudge", "delay"] where offered.contains("capability=\(cap)") {
            try writer.text("capability=\(cap)")
        }
        try writer.flush()
        try writer.send()
    }

    // MARK: clean

    /// Content up to this size is read whole (and, with `storeInBackground`, answered before
    /// it is stored).
    static let memoryLimit = Ingester.smallLimit

    func clean(path: String) throws {
        // Read up to `memoryLimit` bytes: a pointer (under 1024 bytes) or a small file whole.
        var prefix: [UInt8] = []
        var ended = false
        while prefix.count <= FilterProcess.memoryLimit {
            guard let p = try reader.next() else { throw StoreError(.invalidInput, "git closed the pipe in the middle of \(path)") }
            guard case .data(let d) = p else { ended = true; break }
            prefix += d
        }
        if ended {
            if prefix.isEmpty || ((try? LFSPointer.parse(prefix)) ?? nil) != nil {
                // An empty file is its own pointer; a pointer passes through unchanged.
                try answer(prefix)
                return
            }
            let pointer = LFSPointer(oid: SHA256.hash(prefix), size: UInt64(prefix.count))
            if storeInBackground {
                // The pointer needs only the whole-file hash: git gets it now and goes on with
                // its next file while the chunks are stored on another thread.
                background.submit(path: path, content: prefix, expected: pointer.oid)
                unwritten = true
                unflushed.append(path)
                try answer(pointer.encode())
                return
            }
        }
        // Stored before git hears of it: streamed (a large file, the bytes read so far first)
        // and, unless the working tree keeps the file, durable.
        notStored += background.drain()
        var served = 0
        var rest: [UInt8] = []
        var restOffset = 0
        let read: (UnsafeMutableRawPointer, Int) throws -> Int = { [reader] out, count in
            var got = 0
            /// Copies what is left of `bytes` after `offset`; false when nothing was.
            func take(_ bytes: [UInt8], _ offset: inout Int) -> Bool {
                guard offset < bytes.count else { return false }
                let n = min(count - got, bytes.count - offset)
                bytes.withUnsafeBytes { [got, offset] in (out + got).copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
                offset += n
                got += n
                return true
            }
            while got < count {
                if take(prefix, &served) || take(rest, &restOffset) { continue }
                if ended { break }
                guard let p = try reader.next() else { throw StoreError(.invalidInput, "git closed the pipe in the middle of \(path)") }
                switch p {
                case .flush: ended = true
                case .data(let d):
                    rest = Array(d)
                    restOffset = 0
                }
            }
            return got
        }
        let stored: IngestResult
        do {
            stored = try ingester.ingest(stream: read, name: path)
            unwritten = true
            unflushed.append(path)
            if !storeInBackground { try flushObjects() }
        } catch {
            // Read the rest of the request before answering: git writes it all first.
            if !ended { try reader.readContent { _ in } }
            FilterProcess.log("cannot store \(path): \(error)")
            try status("error")
            return
        }
        if !ended { try reader.readContent { _ in } }
        try answer(LFSPointer(oid: stored.blobID, size: stored.size).encode())
    }

    /// Makes every object stored so far durable; a failure names the files git was already
    /// given pointers for, and how to store them again.
    /// `report`: throw if any file of this process could not be stored (at the end); else
    /// keep those for the end and throw only if this flush fails.
    func flushObjects(report: Bool = true) throws {
        notStored += background.drain()
        do {
            try objects.finish()
        } catch {
            FilterProcess.log("\(error)")
            notStored += unflushed
            unflushed = []
            throw BackgroundIngest.notStored(notStored)
        }
        unflushed = []
        if report, !notStored.isEmpty { throw BackgroundIngest.notStored(notStored) }
    }

    /// `status=success`, the content, and an empty closing list.
    func answer(_ content: [UInt8]) throws {
        try writer.text("status=success")
        try writer.flush()
        try content.withUnsafeBytes { try writer.content($0) }
        try writer.flush()
        try writer.flush()
    }

    func status(_ s: String) throws {
        try writer.text("status=\(s)")
        try writer.flush()
    }

    // MARK: smudge

    func smudge(path: String, canDelay: Bool) throws {
        // A pointer is small; other content (a file committed before it was tracked) is
        // kept whole and passed through after it was all read.
        var content: [UInt8] = []
        try reader.readContent { content += $0 }
        // A delayed path comes back with empty content: git asks for what was listed.
        if content.isEmpty, let (pointer, failure) = available.removeValue(forKey: path) {
            if let failure {
                FilterProcess.log("\(path): \(failure)")
                try status("error")
                return
            }
            try deliver(pointer, path: path)
            return
        }
        if skipSmudge {
            try answer(content)
            return
        }
        let pointer: LFSPointer
        do {
            guard let p = try LFSPointer.parse(content) else {
                try answer(content)
                return
            }
            pointer = p
        } catch let e as StoreError {
            FilterProcess.log("\(path): \(e.message)")
            fputs("hint: the file in git is neither a valid pointer nor content; fix the commit, or check out with TROVE_SKIP_SMUDGE=1\n", stderr)
            try status("error")
            return
        }
        if !sparse.includes(path) {
            try answer(content)
            return
        }
        let complete: Bool
        do { complete = try isComplete(pointer) } catch {
            FilterProcess.log("\(path): \(error)")
            try status("error")
            return
        }
        if complete {
            try deliver(pointer, path: path)
            return
        }
        if canDelay {
            delayed[path] = pointer
            try status("delayed")
            return
        }
        do {
            try fetch([(path, pointer)])
        } catch {
            FilterProcess.log("\(path): cannot get its content: \(error)")
            try status("error")
            return
        }
        try deliver(pointer, path: path)
    }

    /// Answers with the content, or (large file, deferring command) with the pointer, the
    /// content to be written over it when git is done.
    func deliver(_ pointer: LFSPointer, path: String) throws {
        if let min = deferMinimum, pointer.size >= min, !path.isEmpty {
            deferred[path] = pointer
            try answer(pointer.encode())
            return
        }
        try sendContent(of: pointer, path: path)
    }

    /// Whether the store holds the pointer's blob and every chunk of it.
    func isComplete(_ p: LFSPointer) throws -> Bool {
        if unwritten {
            try flushObjects(report: false)
            unwritten = false
        }
        return try store.hasContent(ofBlob: p.oid)
    }

    func sendContent(of pointer: LFSPointer, path: String) throws {
        try status("success")
        var sent: UInt64 = 0
        do {
            try Materializer.stream(store: store, blob: pointer.oid) { bytes in
                try writer.content(bytes)
                sent += UInt64(bytes.count)
            }
            guard sent == pointer.size else {
                throw StoreError(.integrity, "its content is \(sent) bytes, the pointer says \(pointer.size)")
            }
        } catch {
            // Half the content may be out: the closing list turns the answer into an error.
            FilterProcess.log("\(path): \(error)")
            try writer.flush()
            try status("error")
            return
        }
        try writer.flush()
        try writer.flush()
    }

    func listAvailable() throws {
        let waiting = delayed
        delayed = [:]
        if !waiting.isEmpty {
            let items = waiting.sorted { $0.key < $1.key }.map { (path: $0.key, pointer: $0.value) }
            var failure: String?
            do { try fetch(items) } catch { failure = "\(error)" }
            for (path, pointer) in items {
                var why = failure
                if why != nil, (try? isComplete(pointer)) == true { why = nil }
                available[path] = (pointer, why.map { "cannot get its content: \($0)" })
                try writer.text("pathname=\(path)")
            }
        }
        try writer.flush()
        try status("success")
    }
}

/// The storing half of clean for small files, on its own thread: chunk, hash, compress and
/// write while git reads and sends the next file. Failures are collected and reported by
/// `drain()`, which the filter calls before any smudge, before a large file and at the end.
/// Used only for git commands that leave the files in the working tree: a failure comes after
/// git was answered, so it is reported at the end with the paths to add again.
final class BackgroundIngest: @unchecked Sendable {
    let ingester: Ingester
    let queue = DispatchQueue(label: "trove.filter.store")
    let lock = NSCondition()
    var pendingBytes = 0
    var failures: [(path: String, error: Error)] = []
    static let maxPending = 64 << 20

    init(ingester: Ingester) { self.ingester = ingester }

    func submit(path: String, content: [UInt8], expected: ObjectID) {
        lock.lock()
        while pendingBytes > 0 && pendingBytes + content.count > BackgroundIngest.maxPending { lock.wait() }
        pendingBytes += content.count
        lock.unlock()
        queue.async { [self] in
            do {
                var offset = 0
                let r = try ingester.ingest(stream: { out, count in
                    let n = min(count, content.count - offset)
                    content.withUnsafeBytes { out.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
                    offset += n
                    return n
                }, name: path)
                if r.blobID != expected {
                    throw StoreError(.integrity, "stored as \(r.blobID.short()), but its pointer says \(expected.short())")
                }
            } catch {
                lock.lock(); failures.append((path, error)); lock.unlock()
            }
            lock.lock()
            pendingBytes -= content.count
            lock.broadcast()
            lock.unlock()
        }
    }

    /// Waits for every submitted file; returns (once) the paths that could not be stored,
    /// each logged with its cause.
    func drain() -> [String] {
        queue.sync {}
        lock.lock()
        let failed = failures
        failures = []
        lock.unlock()
        for f in failed { FilterProcess.log("cannot store \(f.path): \(f.error)") }
        return failed.map(\.path)
    }

    static func notStored(_ paths: [String]) -> StoreError {
        let some = paths.prefix(5).joined(separator: " ") + (paths.count > 5 ? " ..." : "")
        return StoreError(.io, "\(paths.count) file(s) git has staged could not be stored: \(some)",
                          hint: "fix the cause above, then run `git add --renormalize -- \(some)` (`trove status` lists them as not-stored)")
    }
}
