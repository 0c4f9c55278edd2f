import Foundation
import Logging
import ServiceLifecycle
import TroveStore
import TroveSync

/// `--mirror NAME=URL[,interval=60s][,direction=pull|push|both][,project=P]`.
public struct MirrorSpec: Sendable, Equatable {
    public var name: String
    public var url: String
    public var project: String
    public var interval: Double = 60
    public var direction: PeerMirror.Direction = .pull

    public static func parse(_ text: String) throws -> MirrorSpec {
        let parts = text.split(separator: ",").map(String.init)
        guard let first = parts.first, let eq = first.firstIndex(of: "="), eq != first.startIndex else {
            throw StoreError(.invalidInput, "--mirror takes NAME=URL[,interval=60s][,direction=pull|push|both][,project=P], not \(text)")
        }
        let name = String(first[..<eq]), url = String(first[first.index(after: eq)...])
        try Refs.validate("remotes/\(name)/x")
        // The last part of the URL's path (an s3:// URL's query is not part of it).
        let path = url.split(separator: "?", maxSplits: 1).first ?? Substring(url)
        var spec = MirrorSpec(name: name, url: url, project: String(path.split(separator: "/").last ?? ""))
        for option in parts.dropFirst() {
            let kv = option.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw StoreError(.invalidInput, "--mirror option \(option) is not KEY=VALUE") }
            switch kv[0] {
            case "interval":
                guard let s = parseDuration(kv[1]) else { throw StoreError(.invalidInput, "--mirror interval takes 60s, 5m, 1h, not \(kv[1])") }
                spec.interval = Double(s)
            case "direction":
                guard let d = PeerMirror.Direction(rawValue: kv[1]) else { throw StoreError(.invalidInput, "--mirror direction is pull, push or both, not \(kv[1])") }
                spec.direction = d
            case "project": spec.project = kv[1]
            default: throw StoreError(.invalidInput, "unknown --mirror option \(kv[0]) (interval, direction, project)")
            }
        }
        return spec
    }
}

/// Runs one mirror every `interval` until the daemon shuts down; a failed round is logged and
/// retried at the next tick (the peer may be down), never fatal.
struct MirrorService: Service {
    let spec: MirrorSpec
    let projects: ProjectRegistry
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully {
            do {
                let outcome = try await blocking { () -> PeerMirror.Outcome in
                    guard let local = try projects.service(spec.project) else {
                        throw StoreError(.notFound, "mirror \(spec.name): no project \(spec.project) on this daemon")
                    }
                    let remote = try RemoteOpener.open(spec.url, environment: ProcessInfo.processInfo.environment)
                    defer { remote.close() }
                    return try PeerMirror(name: spec.name, local: local, remote: remote, direction: spec.direction).run()
                }
                if outcome != PeerMirror.Outcome() {
                    logger.info("mirror \(spec.name): \(outcome.objects) objects; fast-forwarded \(outcome.fastForwarded); diverged (kept as remotes/\(spec.name)/...) \(outcome.diverged); pushed \(outcome.pushed)")
                }
            } catch {
                logger.warning("mirror \(spec.name) with \(spec.url) failed: \(error); retrying in \(Int(spec.interval)) s")
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(nanoseconds: UInt64(spec.interval * 1e9)) }
        }
    }
}
