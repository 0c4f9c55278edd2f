import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import TroveCore
import TroveStore

/// Sends a live run's status, metrics and log tails to a daemon while it runs (Docs/api.md
/// §Live runs): at most every `interval` seconds, from the run's live folder. The daemon
/// answers how many metric lines it holds, so a request that failed (the daemon down, a
/// compute node offline) is simply covered by the next one, and nothing is sent twice. A
/// cancel request from the daemon (the web UI's Stop) is handed to `onCancel`.
public final class LiveReporter: @unchecked Sendable {
    public let endpoint: String
    let directory: String
    let http: HTTPRemote
    let interval: Double
    /// Called once, on the reporter's thread, when the daemon asks the run to stop.
    public var onCancel: ((String) -> Void)?
    /// Requests that failed (for the final message).
    public private(set) var failures = 0
    public private(set) var lastError: String?

    private var lines: [String] = []
    private var partial: [UInt8] = []
    private var offset: UInt64 = 0
    private var acked = 0
    private var logAcked: [String: UInt64] = ["stdout": 0, "stderr": 0]
    private var cancelled = false
    private let stopped = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)

    /// `remoteURL` is a daemon remote (`http(s)://HOST:PORT/PROJECT`).
    public init(remoteURL: String, runID: String, directory: String, interval: Double, environment: [String: String]) throws {
        http = try HTTPRemote(url: remoteURL, token: try Credentials.token(for: remoteURL, environment: environment),
                              caFile: environment["TROVE_CA_FILE"], attempts: 1)
        route = "runs/\(runID)/live"
        endpoint = try http.apiURL() + "/" + route
        self.directory = directory
        self.interval = interval
    }
    let route: String

    public func start() {
        onOwnThread { [self] in
            while stopped.wait(timeout: .now() + interval) == .timedOut { send(ended: nil) }
            finished.signal()
        }
    }

    /// Stops the updates and sends the last one, with the run's final status.
    public func stop(ended status: String) {
        guard !hasStopped else { return }
        hasStopped = true
        stopped.signal()
        finished.wait()
        send(ended: status)
    }
    private var hasStopped = false

    /// Reads what is new in the live folder and sends everything the daemon does not hold.
    func send(ended: String?) {
        guard let stateBytes = try? FileIO.readFile(directory + "/state.json"),
              var state = (try? JSONSerialization.jsonObject(with: Data(stateBytes))) as? [String: Any] else { return }
        readLines()
        state["status"] = "running"
        state["source"] = "run"
        var body: [String: Any] = ["from": acked, "metrics": Array(lines[acked...].prefix(20_000)), "state": state]
        var sentLogs: [String: UInt64] = [:]
        for stream in ["stdout", "stderr"] {
            let at = logAcked[stream] ?? 0
            guard let fd = try? FileIO.open(directory + "/" + stream, O_RDONLY) else { continue }
            defer { close(fd) }
            // At most 256 KiB a time; the rest follows.
            guard let bytes = try? FileIO.preadSome(fd, count: 256 << 10, offset: at, path: stream), !bytes.isEmpty else { continue }
            // Whole UTF-8 characters only (the text travels as a JSON string): a sequence cut
            // at the end waits for the next request.
            var n = bytes.count, k = bytes.count - 1, continuation = 0
            while k >= 0, continuation < 3, bytes[k] & 0xC0 == 0x80 { k -= 1; continuation += 1 }
            if k >= 0, bytes[k] >= 0xC0, continuation + 1 < (bytes[k] >= 0xF0 ? 4 : bytes[k] >= 0xE0 ? 3 : 2) { n = k }
            guard n > 0 else { continue }
            body[stream] = ["offset": at, "text": String(decoding: bytes[..<n], as: UTF8.self)]
            sentLogs[stream] = at + UInt64(n)
        }
        if let ended { body["ended"] = ended }
        do {
            let (status, reply) = try http.api(.POST, route, json: Array(try JSONSerialization.data(withJSONObject: body)))
            let obj = (try? JSONSerialization.jsonObject(with: Data(reply))) as? [String: Any]
            guard status == .ok, let received = (obj?["received"] as? NSNumber)?.intValue else {
                failures += 1
                lastError = "\(endpoint): HTTP \(status.code) \(String(decoding: reply.prefix(300), as: UTF8.self))"
                // The daemon holds fewer lines than we thought (restored from a backup): start over.
                if status == .badRequest { acked = 0 }
                return
            }
            acked = min(max(received, 0), lines.count)
            for (k, v) in sentLogs { logAcked[k] = v }
            if let why = obj?["cancel"] as? String, !cancelled {
                cancelled = true
                onCancel?(why)
            }
        } catch {
            failures += 1
            lastError = "\(endpoint): \(error)"
        }
    }

    /// Complete lines of `metrics.jsonl` appended since the last read.
    private func readLines() {
        guard let fd = try? FileIO.open(directory + "/metrics.jsonl", O_RDONLY) else { return }
        defer { close(fd) }
        while let chunk = try? FileIO.preadSome(fd, count: 1 << 20, offset: offset, path: "metrics.jsonl"), !chunk.isEmpty {
            offset += UInt64(chunk.count)
            partial += chunk
            while let nl = partial.firstIndex(of: 10) {
                let line = String(decoding: partial[..<nl], as: UTF8.self)
                if !line.trimmingCharacters(in: .whitespaces).isEmpty { lines.append(line) }
                partial.removeSubrange(...nl)
            }
        }
    }
}
