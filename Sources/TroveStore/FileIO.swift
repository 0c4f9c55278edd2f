import CLinux
import Glibc
import TroveCore

/// Thin, throwing wrappers over POSIX file calls. Every failure names the path and errno.
public enum FileIO {
    public static func errorText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

    public static func ioError(_ what: String, _ path: String, _ code: Int32 = errno) -> StoreError {
        let hint: String?
        switch code {
        case ENOSPC: hint = "free some space on the disk that holds \(path) and try again"
        case EDQUOT: hint = "the disk quota is exhausted; free space or ask for a larger quota"
        case EFBIG: hint = "the file size limit (ulimit -f) was reached"
        case EACCES, EPERM: hint = "check the permissions of \(path)"
        default: hint = nil
        }
        return StoreError(.io, "cannot \(what) \(path): \(errorText(code))", hint: hint)
    }

    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws -> Int32 {
        let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
        if fd < 0 {
            if errno == ENOENT { throw StoreError(.notFound, "no such file: \(path)") }
            throw ioError("open", path)
        }
        return fd
    }

    /// Runs `step(done)` (a read or write of the bytes from `done` on) until `count` bytes are
    /// moved or it returns 0 (end of file); retries EINTR. Returns the bytes moved.
    private static func repeatIO(_ count: Int, _ what: String, _ path: String, _ step: (Int) -> Int) throws -> Int {
        var done = 0
        while done < count {
            let n = step(done)
            if n < 0 {
                if errno == EINTR { continue }
                throw ioError(what, path)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    public static func writeAll(_ fd: Int32, _ pointer: UnsafeRawPointer, _ count: Int, path: String) throws {
        try checkWritten(try repeatIO(count, "write", path) { Glibc.write(fd, pointer + $0, count - $0) }, count, path)
    }

    private static func checkWritten(_ moved: Int, _ count: Int, _ path: String) throws {
        guard moved == count else { throw StoreError(.io, "cannot write \(path): the system accepted \(moved) of \(count) bytes") }
    }

    public static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        try bytes.withUnsafeBytes { if $0.count > 0 { try writeAll(fd, $0.baseAddress!, $0.count, path: path) } }
    }

    public static func pwriteAll(_ fd: Int32, _ pointer: UnsafeRawPointer, _ count: Int, offset: Int, path: String) throws {
        try checkWritten(try repeatIO(count, "write", path) { Glibc.pwrite(fd, pointer + $0, count - $0, off_t(offset + $0)) }, count, path)
    }

    /// Reads up to `count` bytes at `offset`; fewer only at the end of the file.
    public static func preadUpTo(_ fd: Int32, _ pointer: UnsafeMutableRawPointer, _ count: Int, offset: UInt64, path: String) throws -> Int {
        try repeatIO(count, "read", path) { Glibc.pread(fd, pointer + $0, count - $0, off_t(offset) + off_t($0)) }
    }

    /// Reads exactly `count` bytes at `offset`; a short read is an integrity error (truncated file).
    public static func preadAll(_ fd: Int32, _ pointer: UnsafeMutableRawPointer, _ count: Int, offset: UInt64, path: String) throws {
        guard try preadUpTo(fd, pointer, count, offset: offset, path: path) == count else {
            throw StoreError(.integrity, "\(path) is truncated: wanted \(count) bytes at offset \(offset)")
        }
    }

    public static func pread(_ fd: Int32, count: Int, offset: UInt64, path: String) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { if count > 0 { try preadAll(fd, $0.baseAddress!, count, offset: offset, path: path) } }
        return out
    }

    /// Up to `count` bytes at `offset` (fewer at the end of the file).
    public static func preadSome(_ fd: Int32, count: Int, offset: UInt64, path: String) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let n = try out.withUnsafeMutableBytes { count > 0 ? try preadUpTo(fd, $0.baseAddress!, count, offset: offset, path: path) : 0 }
        out.removeSubrange(n...)
        return out
    }

    /// Reads up to `count` bytes (fewer only at end of file).
    public static func readUpTo(_ fd: Int32, _ pointer: UnsafeMutableRawPointer, _ count: Int, path: String) throws -> Int {
        try repeatIO(count, "read", path) { Glibc.read(fd, pointer + $0, count - $0) }
    }

    public static func readFile(_ path: String) throws -> [UInt8] {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ioError("stat", path) }
        var out = [UInt8](repeating: 0, count: Int(st.st_size))
        let n = try out.withUnsafeMutableBytes { try readUpTo(fd, $0.baseAddress!, $0.count, path: path) }
        if n < out.count { out.removeSubrange(n...) }
        guard st.st_size == 0 else { return out }
        // /proc files and pipes report size 0: read to the end.
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let k = try chunk.withUnsafeMutableBytes { try readUpTo(fd, $0.baseAddress!, $0.count, path: path) }
            out += chunk[0..<k]
            if k < chunk.count { return out }
        }
    }

    public static func readText(_ path: String) throws -> String {
        String(decoding: try readFile(path), as: UTF8.self)
    }

    public static func fsync(_ fd: Int32, path: String) throws {
        if Glibc.fsync(fd) != 0 { throw ioError("fsync", path) }
    }

    /// Makes everything written on `fd`'s file system durable (one journal commit).
    public static func syncfs(_ fd: Int32, path: String) throws {
        guard trove_syncfs(fd) == 0 else { throw ioError("cannot sync the file system of", path) }
    }

    public static func fsyncDirectory(_ path: String) throws {
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw ioError("open directory", path) }
        defer { close(fd) }
        if Glibc.fsync(fd) != 0 && errno != EINVAL { throw ioError("fsync directory", path) }
    }

    public static func rename(_ from: String, _ to: String) throws {
        if Glibc.rename(from, to) != 0 { throw ioError("rename \(from) to", to) }
    }

    public static func dirname(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    public static func basename(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    public static func join(_ a: String, _ b: String) -> String {
        if a.isEmpty { return b }
        if b.isEmpty { return a }
        return a.hasSuffix("/") ? a + b : a + "/" + b
    }

    /// Crash-safe replacement of a small file: temp name, write, fsync, rename, fsync dir.
    /// `durable: false` skips the fsyncs (caches that are checked when read): readers still
    /// see the old or the new file, never a part.
    public static func atomicWrite(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644, durable: Bool = true) throws {
        let dir = dirname(path)
        let tmp = "\(dir)/.tmp-\(basename(path))-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = try open(tmp, O_WRONLY | O_CREAT | O_EXCL, mode: mode)
        var open = true
        do {
            try writeAll(fd, bytes, path: tmp)
            if durable { try fsync(fd, path: tmp) }
            close(fd)
            open = false
            try rename(tmp, path)
        } catch {
            if open { close(fd) }
            unlink(tmp)
            throw error
        }
        if durable { try fsyncDirectory(dir) }
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    public static func mkdirs(_ path: String, mode: mode_t = 0o755) throws {
        if isDirectory(path) { return }
        let parent = dirname(path)
        if parent != path && !parent.isEmpty && parent != "/" && parent != "." { try mkdirs(parent, mode: mode) }
        if mkdir(path, mode) != 0 && errno != EEXIST { throw ioError("create directory", path) }
    }

    public static func listDirectory(_ path: String) throws -> [String] {
        try listDirectoryEntries(path).map(\.name)
    }

    /// Names with whether each is a folder (from readdir's type; a stat only where the file
    /// system does not say).
    public static func listDirectoryEntries(_ path: String) throws -> [(name: String, isDirectory: Bool)] {
        guard let dir = opendir(path) else {
            if errno == ENOENT { return [] }
            throw ioError("list", path)
        }
        defer { closedir(dir) }
        var names: [(name: String, isDirectory: Bool)] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw -> String? in
                String(validatingCString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            guard let name else {
                let bytes = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
                }
                throw StoreError(.invalidInput, "a file name in \(path) is not valid UTF-8 (\(bytes.debugDescription)); trove stores UTF-8 names only",
                                 hint: "rename it (for example with `convmv -f latin1 -t utf8`)")
            }
            if name != "." && name != ".." {
                let type = entry.pointee.d_type
                names.append((name, type == UInt8(DT_DIR) || (type == UInt8(DT_UNKNOWN) && isDirectory(path + "/" + name))))
            }
        }
        return names
    }

    public static func fileSize(_ path: String) -> UInt64? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return UInt64(st.st_size)
    }

    public static func removeTree(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            for name in (try? listDirectory(path)) ?? [] { removeTree(join(path, name)) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }

    public static func currentDirectory() -> String {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buf, buf.count) != nil else { return "." }
        return String(cString: buf)
    }

    /// Absolute, lexically normalised path (no symlink resolution).
    public static func absolute(_ path: String, base: String? = nil) -> String {
        let full = path.hasPrefix("/") ? path : join(base ?? currentDirectory(), path)
        var parts: [Substring] = []
        for p in full.split(separator: "/", omittingEmptySubsequences: true) {
            if p == "." { continue }
            if p == ".." { if !parts.isEmpty { parts.removeLast() }; continue }
            parts.append(p)
        }
        return "/" + parts.joined(separator: "/")
    }
}

/// An advisory lock (flock) on a file in the store: shared for readers and writers, exclusive
/// for gc and index rebuilds (which delete or move what readers use).
public final class StoreLock {
    private let fd: Int32

    public init(path: String, exclusive: Bool, wait: Bool = true) throws {
        fd = try FileIO.open(path, O_RDWR | O_CREAT, mode: 0o644)
        var op = exclusive ? LOCK_EX : LOCK_SH
        if !wait { op |= LOCK_NB }
        while flock(fd, op) != 0 {
            if errno == EINTR { continue }
            let code = errno
            close(fd)
            if code == EWOULDBLOCK {
                throw StoreError(.conflict, "the store is busy (\(path) is locked by another trove process)",
                                 hint: "wait for the other command (gc?) to finish and try again")
            }
            throw FileIO.ioError("lock", path, code)
        }
    }

    deinit { close(fd) }
}

/// A page-aligned buffer of several MiB (see `trove_map_buffer`), for the ingest and restore
/// pipelines' reusable buffers. Huge pages suit buffers that direct I/O reads into or writes
/// from (the kernel pins 2 MiB pages, not 4 KiB ones: a 1 GiB restore took 1.7–1.96 s with
/// them, 2.2–2.34 s without). They do not suit buffers only the CPU fills: on a VM that hands
/// free memory back to its host, every fresh huge page is faulted in from the host at
/// 250–330 MB/s against 0.9–2.3 GB/s for small pages, which cost an ingest of A ~0.1 s.
final class LargeBuffer: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    let count: Int

    init(_ count: Int, hugePages: Bool = true) {
        self.count = count
        if let p = trove_map_buffer(count, hugePages ? 1 : 0) {
            pointer = p
        } else {
            pointer = .allocate(byteCount: count, alignment: 4096)
            mapped = false
        }
    }

    private var mapped = true

    deinit {
        if mapped { trove_unmap_buffer(pointer, count) } else { pointer.deallocate() }
    }
}
