import Glibc
import TroveStore

/// git's pkt-line framing (Documentation/gitprotocol-common): 4 hex digits of total length,
/// then the payload; `0000` is a flush packet.
public enum PktLine {
    /// Largest payload in one packet.
    public static let maxPayload = 65516
}

/// Reads pkt-lines from a file descriptor through one buffer.
public final class PktLineReader {
    public enum Packet {
        case flush
        /// Valid until the next read.
        case data(UnsafeRawBufferPointer)
    }

    let fd: Int32
    let buffer: UnsafeMutableRawPointer
    let capacity = 4 * (PktLine.maxPayload + 4)
    var start = 0, end = 0

    public init(fd: Int32) {
        self.fd = fd
        buffer = .allocate(byteCount: capacity, alignment: 64)
    }

    deinit { buffer.deallocate() }

    /// Makes at least `count` bytes available; false at end of input before any byte of them.
    private func fill(_ count: Int) throws -> Bool {
        if end - start >= count { return true }
        if start > 0 {
            buffer.copyMemory(from: UnsafeRawPointer(buffer + start), byteCount: end - start)
            end -= start
            start = 0
        }
        while end - start < count {
            let n = read(fd, buffer + end, capacity - end)
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError(.io, "reading from git: \(FileIO.errorText())")
            }
            if n == 0 {
                if end == start { return false }
                throw StoreError(.invalidInput, "git closed the pipe in the middle of a packet")
            }
            end += n
        }
        return true
    }

    /// The next packet, or nil at the end of input.
    public func next() throws -> Packet? {
        guard try fill(4) else { return nil }
        var length = 0
        for i in 0..<4 {
            let c = buffer.load(fromByteOffset: start + i, as: UInt8.self)
            let v: Int
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = Int(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = Int(c - UInt8(ascii: "a")) + 10
            default: throw StoreError(.invalidInput, "malformed pkt-line length from git")
            }
            length = length * 16 + v
        }
        if length == 0 {
            start += 4
            return .flush
        }
        guard length > 4, length <= PktLine.maxPayload + 4 else {
            throw StoreError(.invalidInput, "pkt-line length \(length) from git is out of range")
        }
        guard try fill(length) else { throw StoreError(.invalidInput, "git closed the pipe in the middle of a packet") }
        let payload = UnsafeRawBufferPointer(start: buffer + start + 4, count: length - 4)
        start += length
        return .data(payload)
    }

    /// Text packets up to a flush (one trailing LF stripped from each); nil at the end of input.
    public func readList() throws -> [String]? {
        var lines: [String] = []
        while true {
            guard let p = try next() else {
                if lines.isEmpty { return nil }
                throw StoreError(.invalidInput, "git closed the pipe in the middle of a list")
            }
            switch p {
            case .flush: return lines
            case .data(let d):
                var bytes = Array(d)
                if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
                lines.append(String(decoding: bytes, as: UTF8.self))
            }
        }
    }

    /// Content packets up to a flush, handed to `body` as they arrive.
    public func readContent(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        while true {
            guard let p = try next() else { throw StoreError(.invalidInput, "git closed the pipe in the middle of a file's content") }
            switch p {
            case .flush: return
            case .data(let d): try body(d)
            }
        }
    }
}

/// Writes pkt-lines to a file descriptor through one buffer; `send()` hands them to the pipe.
public final class PktLineWriter {
    let fd: Int32
    let buffer: UnsafeMutableRawPointer
    let capacity = 4 * (PktLine.maxPayload + 4)
    var count = 0

    public init(fd: Int32) {
        self.fd = fd
        buffer = .allocate(byteCount: capacity, alignment: 64)
    }

    deinit { buffer.deallocate() }

    private func packet(_ payload: UnsafeRawBufferPointer) throws {
        precondition(payload.count <= PktLine.maxPayload)
        if count + payload.count + 4 > capacity { try send() }
        let length = payload.count + 4
        let hex = Array("0123456789abcdef".utf8)
        for i in 0..<4 { buffer.storeBytes(of: hex[(length >> (12 - 4 * i)) & 15], toByteOffset: count + i, as: UInt8.self) }
        if payload.count > 0 { (buffer + count + 4).copyMemory(from: payload.baseAddress!, byteCount: payload.count) }
        count += length
    }

    public func text(_ line: String) throws {
        try Array((line + "\n").utf8).withUnsafeBytes { try packet($0) }
    }

    public func flush() throws {
        if count + 4 > capacity { try send() }
        for i in 0..<4 { buffer.storeBytes(of: UInt8(ascii: "0"), toByteOffset: count + i, as: UInt8.self) }
        count += 4
    }

    /// Content as packets of at most `PktLine.maxPayload` bytes (no empty packet).
    public func content(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = min(PktLine.maxPayload, bytes.count - offset)
            try packet(UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n]))
            offset += n
        }
    }

    public func send() throws {
        guard count > 0 else { return }
        try FileIO.writeAll(fd, buffer, count, path: "git's filter pipe")
        count = 0
    }
}
