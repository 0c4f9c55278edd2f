import Foundation
import NIOHTTP1
import TroveRuns
import TroveStore
import TroveSync

/// Records where a model version is served (Docs/registry.md §Where it is served): in the
/// store (`ServingRecord`, for `trove model lineage` here) and on the store's daemons, with
/// `PUT …/registry/NAME/served/INSTANCE` at start and every `interval` seconds (a daemon
/// forgets an endpoint not renewed within 90 s), `DELETE` on a clean stop. Announcing needs a
/// write token; a daemon that refuses is named once on stderr and serving goes on.
public final class ServeAnnouncer: @unchecked Sendable {
    struct Target {
        var remote: String
        var http: HTTPRemote
        var failing = false
    }

    private var targets: [Target]
    private let interval: Double
    private let lock = Mutex()
    private var record: ServingRecord
    private let storeRoot: String
    private let stopped = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    /// Called with a line for people when a daemon refuses or cannot be reached (once per failing spell).
    public var warn: (String) -> Void = { _ in }

    /// `remotes`: name → URL; only daemon remotes (http, https) are announced to.
    public init(storeRoot: String, remotes: [(name: String, url: String)], record: ServingRecord, interval: Double = 30, environment: [String: String]) {
        targets = remotes.filter { $0.url.hasPrefix("http://") || $0.url.hasPrefix("https://") }.compactMap { r in
            let token = (try? Credentials.token(for: r.url, environment: environment)) ?? nil
            guard let http = try? HTTPRemote(url: r.url, token: token, caFile: environment["TROVE_CA_FILE"], attempts: 1) else { return nil }
            return Target(remote: r.name, http: http)
        }
        self.storeRoot = storeRoot
        self.record = record
        self.interval = interval
    }

    public var remoteNames: [String] { targets.map(\.remote) }

    public func start() {
        try? record.write(storeRoot: storeRoot)
        onOwnThread { [self] in
            repeat { announce() } while stopped.wait(timeout: .now() + interval) == .timedOut
            finished.signal()
        }
    }

    /// A new version is served (`--follow`): announced at once.
    public func update(version: Int) {
        let r = lock.withLock { record.version = version; return record }
        try? r.write(storeRoot: storeRoot)
        announce()
    }

    /// Withdraws the announcements.
    public func stop() {
        stopped.signal()
        finished.wait()
        let r = lock.withLock { record }
        r.remove(storeRoot: storeRoot)
        for t in targets { _ = try? t.http.api(.DELETE, route(r), json: nil, timeout: 3) }
    }

    private func route(_ r: ServingRecord) -> String { "registry/\(r.name)/served/\(r.instance)" }

    private func announce() {
        let r = lock.withLock { record }
        guard let data = try? JSONEncoder().encode(r) else { return }
        for i in targets.indices {
            let t = targets[i]
            var why: String?
            do {
                let (status, reply) = try t.http.api(.PUT, route(r), json: Array(data))
                if status != .ok { why = "HTTP \(status.code) \(String(decoding: reply.prefix(300), as: UTF8.self))" }
            } catch { why = "\(error)" }
            lock.withLock {
                if let why, !targets[i].failing { warn("trove serve: could not tell \(t.remote) where \(r.name)@v\(r.version) is served (\(why)); its web UI will not list this endpoint") }
                targets[i].failing = why != nil
            }
        }
    }
}
