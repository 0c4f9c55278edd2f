import Foundation
import Glibc

/// A real `sshd` on 127.0.0.1 with its own host key and one authorized client key, for the
/// SSH transport's tests (Docs/protocol.md §SSH). Stopped when released.
public final class SSHServer {
    public let port: Int
    public let directory: TempDir
    public let user: String
    let pidFile: String

    /// Starts sshd on a free port; throws with what went wrong (sshd missing, config refused).
    public init() throws {
        let sshd = "/usr/sbin/sshd"
        guard FileManager.default.isExecutableFile(atPath: sshd) else {
            throw SSHServerError("sshd is not installed: run `bash scripts/deps.sh` (openssh-server)")
        }
        directory = TempDir("trove-sshd")
        let d = directory.path
        chmod(d, 0o700)
        user = String(cString: getpwuid(geteuid()).pointee.pw_name)
        port = SSHServer.freePort()
        pidFile = d + "/sshd.pid"
        for key in ["host", "client"] {
            let r = Runner.run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", "\(d)/\(key)"], cwd: d, environment: ProcessInfo.processInfo.environment)
            guard r.status == 0 else { throw SSHServerError("ssh-keygen failed: \(r.stderr)") }
        }
        try FileManager.default.copyItem(atPath: d + "/client.pub", toPath: d + "/authorized_keys")
        chmod(d + "/authorized_keys", 0o600)
        mkdir("/run/sshd", 0o755)
        let config = """
            Port \(port)
            ListenAddress 127.0.0.1
            HostKey \(d)/host
            PidFile \(pidFile)
            AuthorizedKeysFile \(d)/authorized_keys
            PermitRootLogin prohibit-password
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            UsePAM no
            StrictModes no
            PermitUserEnvironment no
            MaxStartups 100
            MaxSessions 100
            """
        try config.write(toFile: d + "/sshd_config", atomically: true, encoding: .utf8)
        let r = Runner.run(sshd, ["-f", d + "/sshd_config", "-E", d + "/sshd.log"], cwd: d, environment: ProcessInfo.processInfo.environment)
        guard r.status == 0 else { throw SSHServerError("sshd did not start: \(r.stderr)") }
        // Wait until it accepts connections.
        for _ in 0..<100 where !SSHServer.accepts(port) { usleep(20_000) }
        guard SSHServer.accepts(port) else { throw SSHServerError("sshd is not listening on \(port): \((try? String(contentsOfFile: d + "/sshd.log", encoding: .utf8)) ?? "")") }
        // Listening is not yet serving: wait for a real login to work.
        var last = ""
        for _ in 0..<50 {
            let r = Runner.run("/usr/bin/ssh", sshCommand.split(separator: " ").dropFirst().map(String.init) + ["-p", "\(port)", "\(user)@127.0.0.1", "true"],
                               cwd: d, environment: ProcessInfo.processInfo.environment)
            if r.status == 0 { return }
            last = r.stderr
            usleep(100_000)
        }
        throw SSHServerError("cannot log in to the test sshd: \(last)")
    }

    /// The ssh command line (for TROVE_SSH) that logs in with the test key.
    public var sshCommand: String {
        "ssh -i \(directory.path)/client -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR"
    }

    public func url(_ path: String) -> String { "ssh://\(user)@127.0.0.1:\(port)\(path)" }

    deinit {
        if let text = try? String(contentsOfFile: pidFile, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
            kill(pid, SIGTERM)
        }
    }

    public static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    public static func accepts(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        return withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
    }
}

public struct SSHServerError: Error, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}
