import Foundation
import Glibc

/// A process on this machine, named by pid and the time it started (so a pid the kernel has
/// since given to another process is not mistaken for it). What live runs, servers and pack
/// writers leave in the store to be found alive or gone by other processes.
public struct LocalProcess: Sendable, Equatable {
    public var pid: Int32
    /// Clock ticks after boot (`/proc/PID/stat` field 22); nil when not known.
    public var started: UInt64?

    public init(pid: Int32, started: UInt64?) {
        self.pid = pid
        self.started = started
    }

    /// This process.
    public static var current: LocalProcess { LocalProcess(pid: getpid(), started: stat(getpid())?.started) }

    /// Whether it still runs: it exists, has not exited (a zombie, not yet reaped by its
    /// parent, has), and is the same process. A process of another user counts as running,
    /// and so does one whose `/proc` entry cannot be read (when in doubt, not gone).
    public var isRunning: Bool {
        guard pid > 0 else { return false }
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let s = Self.stat(pid) else { return true }
        return s.state != "Z" && s.state != "X" && (started == nil || s.started == started)
    }

    /// State letter and start time from `/proc/PID/stat`: `pid (comm) S ppid …` where comm
    /// may hold spaces and parentheses, so fields are counted after the last `)`.
    static func stat(_ pid: Int32) -> (state: Character, started: UInt64)? {
        guard let text = try? FileIO.readText("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let state = fields[0].first, let started = UInt64(fields[19]) else { return nil }
        return (state, started)
    }
}
