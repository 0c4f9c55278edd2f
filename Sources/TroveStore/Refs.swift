import Glibc
import TroveCore

/// Refs are small files under `refs/` holding a commit id; HEAD is `ref: refs/heads/NAME` or an
/// id. Every move takes `NAME.lock` (O_EXCL), compares the current value with the expected
/// one, writes, fsyncs, renames and appends a reflog line (`logs/NAME`).
///
/// A daemon whose replicas share PostgreSQL keeps its projects' refs there instead
/// (`database`): the same calls, each move one transaction.
public struct Refs: Sendable {
    public let root: String
    /// Where the refs are when they are not files under `root`.
    public let database: (any RefDatabase)?

    public init(root: String, database: (any RefDatabase)? = nil) {
        self.root = root
        self.database = database
    }

    public enum Head: Equatable, Sendable {
        case branch(String)
        case detached(ObjectID)
    }

    /// Checks a ref name (`heads/main`, `tags/v1`, `runs/x`): no `..`, no empty or dot-leading
    /// components, no control or special characters.
    public static func validate(_ name: String) throws {
        let comps = name.split(separator: "/", omittingEmptySubsequences: false)
        let badChars = Set(" ~^:?*[\\\u{7f}")
        guard !name.isEmpty, !comps.contains(where: { $0.isEmpty || $0.hasPrefix(".") || $0.hasSuffix(".lock") }),
              !name.contains(".."), !name.contains("@{"),
              !name.unicodeScalars.contains(where: { $0.value < 0x20 || badChars.contains(Character($0)) })
        else {
            throw StoreError(.invalidInput, "\(name.debugDescription) is not a valid ref name",
                             hint: "use letters, digits, '-', '_', '.' and '/' (no '..', no leading '.', no spaces)")
        }
    }

    func path(_ ref: String) -> String { "\(root)/refs/\(ref)" }

    public func head() throws -> Head {
        if let database { return .branch(database.head) }
        let text = try FileIO.readText(root + "/HEAD").trimmingCharacters(in: " \n\r\t")
        if text.hasPrefix("ref: refs/") { return .branch(String(text.dropFirst("ref: refs/".count))) }
        guard let id = ObjectID(hex: text) else { throw StoreError(.integrity, "\(root)/HEAD is malformed: \(text.debugDescription)") }
        return .detached(id)
    }

    /// The commit HEAD points at (nil on an unborn branch).
    public func headCommit() throws -> ObjectID? {
        switch try head() {
        case .branch(let b): return try read(b)
        case .detached(let id): return id
        }
    }

    public func read(_ ref: String) throws -> ObjectID? {
        if let database { return try database.read(ref) }
        let p = path(ref)
        // One open and one read: a ref file is a hex id and a newline.
        let fd = Glibc.open(p, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw FileIO.ioError("read", p)
        }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 256)
        let n = try buf.withUnsafeMutableBytes { try FileIO.readUpTo(fd, $0.baseAddress!, $0.count, path: p) }
        let text = String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(in: " \n\r\t")
        guard let id = ObjectID(hex: text) else { throw StoreError(.integrity, "ref \(ref) is malformed (\(p))") }
        return id
    }

    /// All refs under `prefix` (e.g. "heads/"), sorted.
    public func list(prefix: String = "") throws -> [(name: String, id: ObjectID)] {
        if let database { return try database.list(prefix: prefix) }
        var out: [(String, ObjectID)] = []
        func walk(_ rel: String) throws {
            let dir = rel.isEmpty ? "\(root)/refs" : "\(root)/refs/\(rel)"
            for e in try FileIO.listDirectoryEntries(dir).sorted(by: { $0.name < $1.name })
            where !e.name.hasSuffix(".lock") && !e.name.hasPrefix(".tmp-") {
                let r = rel.isEmpty ? e.name : "\(rel)/\(e.name)"
                if e.isDirectory { try walk(r) } else if let id = try read(r) { out.append((r, id)) }
            }
        }
        // `runs/` lists only that folder, not every ref of the store.
        let start = prefix.hasSuffix("/") && prefix.count > 1 ? String(prefix.dropLast()) : ""
        try walk(start)
        return out.filter { $0.0.hasPrefix(prefix) }
    }

    /// Compare-and-swap: moves `ref` from `expected` (nil = must not exist) to `new` (nil = delete).
    public func update(_ ref: String, from expected: ObjectID?, to new: ObjectID?, message: String, force: Bool = false) throws {
        try updateAll([Update(ref: ref, expected: expected, new: new, force: force)], message: message)
    }

    /// One move of `updateAll`.
    public struct Update: Sendable {
        public var ref: String
        public var expected: ObjectID?
        public var new: ObjectID?
        public var force: Bool

        public init(ref: String, expected: ObjectID?, new: ObjectID?, force: Bool = false) {
            self.ref = ref
            self.expected = expected
            self.new = new
            self.force = force
        }
    }

    /// Moves several refs at once: every lock is taken and every expected value checked
    /// before any ref changes, so a conflict on one leaves all of them as they were. `check`
    /// runs under the locks with the current values (to refuse, e.g., a non-fast-forward).
    public func updateAll(_ updates: [Update], message: String,
                          check: (_ ref: String, _ current: ObjectID?) throws -> Void = { _, _ in }) throws {
        for u in updates { try Refs.validate(u.ref) }
        if let database { return try database.updateAll(updates, message: message.replacingNewlines(), check: check) }
        var locked: [(Update, String, Int32)] = []
        defer { for (_, lockPath, fd) in locked where fd >= 0 { close(fd); unlink(lockPath) } }
        for u in updates.sorted(by: { $0.ref < $1.ref }) {
            let p = path(u.ref)
            try FileIO.mkdirs(FileIO.dirname(p))
            let lockPath = p + ".lock"
            locked.append((u, lockPath, try takeLock(lockPath, name: "ref \(u.ref)")))
        }
        var olds: [ObjectID?] = []
        for (u, _, _) in locked {
            let current = try read(u.ref)
            if !u.force && current != u.expected {
                throw StoreError(.conflict, "ref \(u.ref) moved (now \(current?.short() ?? "absent"), expected \(u.expected?.short() ?? "absent")), retry",
                                 hint: "another command changed it at the same time; run the command again")
            }
            try check(u.ref, current)
            olds.append(current)
        }
        // Many refs at once (a sweep's runs): the lock files are written first and made durable
        // by one syncfs (one journal commit) instead of one fsync each; then they are renamed.
        let batch = locked.count >= 16
        for (u, lockPath, fd) in locked {
            guard let new = u.new else { continue }
            try FileIO.writeAll(fd, Array((new.hex + "\n").utf8), path: lockPath)
            if !batch { try FileIO.fsync(fd, path: lockPath) }
        }
        if batch, let fd = locked.first(where: { $0.0.new != nil })?.2 { try FileIO.syncfs(fd, path: root) }
        for k in locked.indices {
            let (u, lockPath, fd) = locked[k]
            let p = path(u.ref)
            close(fd)
            locked[k].2 = -1
            if u.new != nil {
                do { try FileIO.rename(lockPath, p) } catch { unlink(lockPath); throw error }
            } else {
                unlink(p)
                unlink(lockPath)
            }
        }
        for dir in Set(locked.map { FileIO.dirname(path($0.0.ref)) }) { try FileIO.fsyncDirectory(dir) }
        // The refs have moved: a reflog that cannot be written (a folder in the way) is a
        // warning, not a failure the caller would take for "nothing happened".
        var reflogFD: Int32 = -1
        for (k, (u, _, _)) in locked.enumerated() {
            do {
                let fd = try appendReflog(u.ref, old: olds[k], new: u.new, message: message, durable: !batch)
                if batch, reflogFD < 0 { reflogFD = fd } else { close(fd) }
            } catch {
                fputs("trove: warning: ref \(u.ref) moved, but its reflog was not written: \(error)\n", stderr)
            }
        }
        if reflogFD >= 0 {
            try? FileIO.syncfs(reflogFD, path: root)
            close(reflogFD)
        }
    }

    /// Points HEAD at a branch or a commit; with `expected`, only if HEAD is still that.
    public func setHead(_ head: Head, expected: Head? = nil, message: String) throws {
        if database != nil { throw StoreError(.invalidInput, "a daemon's project has no HEAD to move") }
        let text: String
        switch head {
        case .branch(let b): try Refs.validate(b); text = "ref: refs/\(b)\n"
        case .detached(let id): text = id.hex + "\n"
        }
        var old: ObjectID?
        try replaceLocked(root + "/HEAD", name: "HEAD", contents: Array(text.utf8)) {
            if let expected, try self.head() != expected {
                throw StoreError(.conflict, "HEAD moved while this command ran, retry", hint: "run the command again")
            }
            old = try? headCommit()
        }
        close(try appendReflog("HEAD", old: old, new: try headCommit(), message: message))
    }

    /// Creates a lock file (O_EXCL): held by whoever created it, until renamed or removed.
    private func takeLock(_ lockPath: String, name: String) throws -> Int32 {
        let fd = Glibc.open(lockPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if fd < 0 {
            if errno == EEXIST {
                throw StoreError(.conflict, "\(name) is being updated by another process (\(lockPath) exists)",
                                 hint: "retry; if no trove process is running, remove \(lockPath)")
            }
            throw FileIO.ioError("lock", lockPath)
        }
        return fd
    }

    /// Takes `PATH.lock` (O_EXCL), runs `check` under it, then writes `contents` (nil: delete),
    /// fsyncs, renames over PATH and fsyncs the folder.
    private func replaceLocked(_ p: String, name: String, contents: [UInt8]?, check: () throws -> Void) throws {
        let lockPath = p + ".lock"
        let fd = try takeLock(lockPath, name: name)
        var open = true
        defer { if open { close(fd); unlink(lockPath) } }
        try check()
        if let contents {
            try FileIO.writeAll(fd, contents, path: lockPath)
            try FileIO.fsync(fd, path: lockPath)
            close(fd)
            open = false
            do { try FileIO.rename(lockPath, p) } catch { unlink(lockPath); throw error }
        } else {
            close(fd)
            open = false
            unlink(p)
            unlink(lockPath)
        }
        try FileIO.fsyncDirectory(FileIO.dirname(p))
    }

    public struct ReflogEntry: Sendable {
        public var old: ObjectID?
        public var new: ObjectID?
        public var time: Int64
        public var message: String

        public init(old: ObjectID?, new: ObjectID?, time: Int64, message: String) {
            self.old = old
            self.new = new
            self.time = time
            self.message = message
        }
    }

    func reflogPath(_ ref: String) -> String { ref == "HEAD" ? "\(root)/logs/HEAD" : "\(root)/logs/refs/\(ref)" }

    /// Appends a line to the ref's reflog; returns the open descriptor (the caller closes it).
    /// Not `durable`: the caller makes a batch durable at once (syncfs).
    @discardableResult
    func appendReflog(_ ref: String, old: ObjectID?, new: ObjectID?, message: String, durable: Bool = true) throws -> Int32 {
        let p = reflogPath(ref)
        try FileIO.mkdirs(FileIO.dirname(p))
        let line = "\(old?.hex ?? String(repeating: "0", count: 64)) \(new?.hex ?? String(repeating: "0", count: 64)) \(Int64(time(nil))) \(message.replacingNewlines())\n"
        let fd = try FileIO.open(p, O_WRONLY | O_CREAT | O_APPEND)
        do {
            try FileIO.writeAll(fd, Array(line.utf8), path: p)
            if durable { try FileIO.fsync(fd, path: p) }
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    public func reflog(_ ref: String) throws -> [ReflogEntry] {
        if let database { return try database.reflog(ref) }
        let p = reflogPath(ref)
        guard FileIO.exists(p) else { return [] }
        return try FileIO.readText(p).split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
            guard parts.count >= 3 else { return nil }
            let zero = ObjectID.zero
            let old = ObjectID(hex: String(parts[0])).flatMap { $0 == zero ? nil : $0 }
            let new = ObjectID(hex: String(parts[1])).flatMap { $0 == zero ? nil : $0 }
            return ReflogEntry(old: old, new: new, time: Int64(parts[2]) ?? 0, message: parts.count > 3 ? String(parts[3]) : "")
        }
    }

    /// Every reflog file (HEAD and refs), for gc.
    public func allReflogs() throws -> [[ReflogEntry]] {
        if let database { return try database.allReflogs() }
        var out: [[ReflogEntry]] = [try reflog("HEAD")]
        func walk(_ rel: String) throws {
            let dir = "\(root)/logs/refs" + (rel.isEmpty ? "" : "/\(rel)")
            for name in try FileIO.listDirectory(dir) {
                let r = rel.isEmpty ? name : "\(rel)/\(name)"
                if FileIO.isDirectory("\(root)/logs/refs/\(r)") { try walk(r) } else { out.append(try reflog(r)) }
            }
        }
        try walk("")
        return out
    }
}

/// Refs kept in a database (the daemon's PostgreSQL) rather than files: what `Refs` delegates to.
public protocol RefDatabase: Sendable {
    /// The branch the project's HEAD names (`heads/main`).
    var head: String { get }
    func read(_ ref: String) throws -> ObjectID?
    /// Sorted by name.
    func list(prefix: String) throws -> [(name: String, id: ObjectID)]
    /// All or nothing, as `Refs.updateAll`: every expected value checked (and `check` run with
    /// the current value) while the rows are locked, then every move and its reflog entry
    /// committed at once. A moved ref is a `StoreError(.conflict)`.
    func updateAll(_ updates: [Refs.Update], message: String, check: (_ ref: String, _ current: ObjectID?) throws -> Void) throws
    func reflog(_ ref: String) throws -> [Refs.ReflogEntry]
    func allReflogs() throws -> [[Refs.ReflogEntry]]
}

extension String {
    func replacingNewlines() -> String { String(map { $0 == "\n" || $0 == "\r" ? " " : $0 }) }
}

extension Refs {
    /// The short name of the checked-out branch (`main`), or nil when HEAD is detached.
    public func branchName() throws -> String? {
        guard case .branch(let b) = try head() else { return nil }
        return b.hasPrefix("heads/") ? String(b.dropFirst(6)) : b
    }
}
