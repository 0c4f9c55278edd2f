import Foundation
import Glibc

/// A real `trove daemon` on 127.0.0.1 and a free port, with its own root; stopped (SIGTERM)
/// when released. Tokens are made with the real `trove daemon token create`.
public final class DaemonProcess {
    public let root: String
    public let port: Int
    public let scheme: String
    public private(set) var running: Runner.Running?
    let arguments: [String]
    let environment: [String: String]

    public init(root: String, arguments: [String] = [], scheme: String = "http", environment: [String: String]) throws {
        self.root = root
        self.arguments = arguments
        self.scheme = scheme
        self.environment = environment
        port = SSHServer.freePort()
        try start()
    }

    public func start() throws {
        running = Runner.start(Runner.trovePath, ["daemon", "--root", root, "--listen", "127.0.0.1:\(port)"] + arguments,
                               cwd: root, environment: environment)
        for _ in 0..<250 where !SSHServer.accepts(port) { usleep(20_000) }
        guard SSHServer.accepts(port) else {
            let r = running?.wait()
            throw DaemonError("the daemon did not start: \(r?.stderr ?? "")")
        }
    }

    public var base: String { "\(scheme)://127.0.0.1:\(port)" }
    public func url(_ project: String) -> String { "\(base)/\(project)" }

    @discardableResult
    public func trove(_ args: [String]) -> ProcessResult {
        Runner.run(Runner.trovePath, args, cwd: root, environment: environment)
    }

    public func createProject(_ name: String) throws {
        let r = trove(["daemon", "project", "create", name, "--root", root])
        guard r.status == 0 else { throw DaemonError("project create: \(r.stderr)") }
    }

    public func token(_ project: String, role: String, expires: String? = nil) throws -> String {
        let r = trove(["daemon", "token", "create", "--root", root, "--project", project, "--role", role] + (expires.map { ["--expires", $0] } ?? []))
        guard r.status == 0 else { throw DaemonError("token create: \(r.stderr)") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// SIGTERM and the exit status.
    public func stop() -> ProcessResult? {
        guard let r = running else { return nil }
        kill(r.process.processIdentifier, SIGTERM)
        running = nil
        return r.wait()
    }

    public func kill9() {
        running?.kill9()
        _ = running?.wait()
        running = nil
    }

    deinit { _ = stop() }
}

public struct DaemonError: Error, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}
