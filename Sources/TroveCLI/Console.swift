import Foundation
import Glibc
import TroveStore

/// Output helpers: plain text to stdout, diagnostics to stderr, JSON for scripts.
enum Console {
    static func out(_ text: String) {
        FileHandle.standardOutput.write((text + "\n").data(using: .utf8)!)
    }

    static func err(_ text: String) {
        FileHandle.standardError.write((text + "\n").data(using: .utf8)!)
    }

    /// One JSON document on stdout (sorted keys, so output is stable).
    static func json(_ value: Any) throws {
        let data = try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
        FileHandle.standardOutput.write(data)
        FileHandle.standardOutput.write("\n".data(using: .utf8)!)
    }

    /// The same document as `json`, written by `JSONText` instead of JSONSerialization, for
    /// listings of thousands of entries (`trove runs --json` over 10,000 runs: 1.7 s → 0.75 s).
    static func jsonLarge(_ value: Any) {
        var t = JSONText()
        t.write(value, indent: 0)
        t.out += "\n"
        FileHandle.standardOutput.write(Data(t.out.utf8))
    }

    static var stderrIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }
}

/// JSON text of plain values (String, Bool, integers, Double, NSNull, arrays, string-keyed
/// dictionaries; anything else as its description string), keys sorted, two-space indents.
/// Non-finite doubles are written as null.
struct JSONText {
    var out = ""

    mutating func write(_ v: Any, indent: Int) {
        switch v {
        case let s as String: string(s)
        case let b as Bool: out += b ? "true" : "false"
        case let i as Int: out += String(i)
        case let i as Int64: out += String(i)
        case let i as UInt64: out += String(i)
        case let i as Int32: out += String(i)
        case let d as Double: out += d.isFinite ? (d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : "\(d)") : "null"
        case is NSNull: out += "null"
        case let a as [Any]:
            guard !a.isEmpty else { out += "[]"; return }
            out += "[\n"
            for (k, e) in a.enumerated() {
                pad(indent + 1)
                write(e, indent: indent + 1)
                out += k == a.count - 1 ? "\n" : ",\n"
            }
            pad(indent)
            out += "]"
        case let o as [String: Any]:
            guard !o.isEmpty else { out += "{}"; return }
            out += "{\n"
            let keys = o.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
            for (k, key) in keys.enumerated() {
                pad(indent + 1)
                string(key)
                out += " : "
                write(o[key]!, indent: indent + 1)
                out += k == keys.count - 1 ? "\n" : ",\n"
            }
            pad(indent)
            out += "}"
        default: string("\(v)")
        }
    }

    mutating func pad(_ n: Int) { out += String(repeating: "  ", count: n) }

    mutating func string(_ s: String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        out += "\""
    }
}

enum Format {
    /// `text` cut or padded with spaces to `width` characters (a table column).
    static func column(_ text: String, _ width: Int) -> String {
        let n = text.count
        return n >= width ? String(text.prefix(width)) : text + String(repeating: " ", count: width - n)
    }

    /// 1536 → "1.5 KiB".
    static func bytes(_ n: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var v = Double(n)
        var i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
    }

    /// "4G", "512M", "64K" (powers of 1024, an optional "iB" or "B") or a number of bytes.
    static func parseSize(_ text: String) -> Int? {
        var t = text.uppercased()
        for suffix in ["IB", "B"] where t.hasSuffix(suffix) && t.count > suffix.count { t.removeLast(suffix.count); break }
        let shifts: [Character: Int] = ["K": 10, "M": 20, "G": 30, "T": 40]
        if let last = t.last, let shift = shifts[last], let n = Int(t.dropLast()), n > 0 { return n << shift }
        return Int(t).flatMap { $0 > 0 ? $0 : nil }
    }

    static func rate(_ bytes: UInt64, seconds: Double) -> String {
        guard seconds > 0 else { return "-" }
        return String(format: "%.0f MB/s", Double(bytes) / seconds / 1e6)
    }

    static func duration(_ seconds: Double) -> String {
        if seconds < 60 { return String(format: "%.0fs", seconds.rounded(.up)) }
        let s = Int(seconds)
        if s < 3600 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
        return "\(s / 3600)h\(String(format: "%02d", (s % 3600) / 60))m"
    }

    static func percent(_ share: Double) -> String { String(format: "%.1f%%", share * 100) }

    static func date(_ time: Int64, offsetMinutes: Int16) -> String {
        var t = time_t(time + Int64(offsetMinutes) * 60)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        var buf = [CChar](repeating: 0, count: 64)
        strftime(&buf, buf.count, "%Y-%m-%d %H:%M:%S", &tmv)
        let sign = offsetMinutes < 0 ? "-" : "+"
        let off = abs(Int(offsetMinutes))
        return String(cString: buf) + " " + sign + String(format: "%02d%02d", off / 60, off % 60)
    }

    static func iso(_ time: Int64, offsetMinutes: Int16) -> String {
        var t = time_t(time + Int64(offsetMinutes) * 60)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        var buf = [CChar](repeating: 0, count: 64)
        strftime(&buf, buf.count, "%Y-%m-%dT%H:%M:%S", &tmv)
        let sign = offsetMinutes < 0 ? "-" : "+"
        let off = abs(Int(offsetMinutes))
        return String(cString: buf) + sign + String(format: "%02d:%02d", off / 60, off % 60)
    }
}

/// Progress on a terminal: bytes, rate and ETA on one self-rewriting stderr line, at most 10
/// times a second. Silent when stderr is not a terminal (unless TROVE_PROGRESS=1) or with
/// TROVE_PROGRESS=0.
final class TerminalProgress: ProgressSink, @unchecked Sendable {
    private let lock = NSLock()
    private var total: UInt64?
    private var done: UInt64 = 0
    private var label = ""
    private var started = Date()
    private var lastDraw = Date.distantPast
    private var drawn = false

    static func make(quiet: Bool) -> TerminalProgress? {
        let env = ProcessInfo.processInfo.environment["TROVE_PROGRESS"]
        if quiet || env == "0" { return nil }
        if env == "1" || Console.stderrIsTerminal { return TerminalProgress() }
        return nil
    }

    func begin(total: UInt64?, label: String) {
        lock.lock(); defer { lock.unlock() }
        self.total = total
        self.label = label
        done = 0
        started = Date()
        lastDraw = .distantPast
        drawn = false
    }

    func advance(_ bytes: UInt64) {
        lock.lock(); defer { lock.unlock() }
        done += bytes
        let now = Date()
        if now.timeIntervalSince(lastDraw) >= 0.1 {
            lastDraw = now
            draw(final: false)
        }
    }

    func end() {
        lock.lock(); defer { lock.unlock() }
        if drawn || done > 0 { draw(final: true) }
    }

    private func draw(final: Bool) {
        let elapsed = Date().timeIntervalSince(started)
        var line = "\(label): \(Format.bytes(done))"
        if let total, total > 0 {
            line += " / \(Format.bytes(total)) (\(Int(Double(done) * 100 / Double(total)))%)"
        }
        if elapsed > 0 { line += ", \(Format.rate(done, seconds: elapsed))" }
        if !final, let total, done > 0, total > done, elapsed > 0.2 {
            line += ", ETA \(Format.duration(elapsed * Double(total - done) / Double(done)))"
        }
        if final { line += String(format: ", %.1fs", elapsed) }
        FileHandle.standardError.write(("\r\u{1B}[K" + line + (final ? "\n" : "")).data(using: .utf8)!)
        drawn = true
    }
}
