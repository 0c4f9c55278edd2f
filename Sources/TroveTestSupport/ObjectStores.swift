import Foundation
import Glibc

/// A real Ceph radosgw (one mon, one memstore OSD; it checks SigV4 signatures) started by
/// `scripts/radosgw.sh`, once per test process, stopped at exit. Access key `test`, secret
/// `testsecret`.
public final class RadosGateway: @unchecked Sendable {
    public let directory: String
    public let endpoint: String

    nonisolated(unsafe) static var started: Result<RadosGateway, BatchSystemError>?
    nonisolated(unsafe) static var stopDirectory: String?

    public static func shared() throws -> RadosGateway {
        if let started { return try started.get() }
        let r: Result<RadosGateway, BatchSystemError>
        do { r = .success(try RadosGateway()) } catch { r = .failure(error as? BatchSystemError ?? BatchSystemError("\(error)")) }
        started = r
        if case .success(let g) = r {
            stopDirectory = g.directory
            atexit {
                guard let d = RadosGateway.stopDirectory else { return }
                _ = Runner.run("/bin/bash", ["-c", "exec bash \"$0\" stop \"$1\" >/dev/null 2>&1 </dev/null", projectRoot + "/scripts/radosgw.sh", d],
                               cwd: "/", environment: ProcessInfo.processInfo.environment)
            }
        }
        return try r.get()
    }

    init() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/radosgw") else {
            throw BatchSystemError("radosgw is not installed: run `bash scripts/deps.sh` (radosgw, ceph-mon, ceph-osd)")
        }
        directory = (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/trove-test-rgw"
        let port = 17480 + Int(getpid() % 500)
        let output = directory + ".start.log"
        let r = Runner.run("/bin/bash", ["-c", "exec bash \"$0\" start \"$1\" \"$2\" >\"$3\" 2>&1 </dev/null", projectRoot + "/scripts/radosgw.sh", directory, "\(port)", output],
                           cwd: "/", environment: ProcessInfo.processInfo.environment)
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        guard r.status == 0, let last = text.split(separator: "\n").last, last.hasPrefix("http://") else {
            throw BatchSystemError("scripts/radosgw.sh failed (\(r.status)): \(text.suffix(2000))")
        }
        endpoint = String(last)
    }

    /// The environment of a client with the gateway's credentials.
    public var environment: [String: String] {
        ["AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "testsecret", "AWS_DEFAULT_REGION": "us-east-1"]
    }

    /// Creates a bucket (with curl's own SigV4 signer: independent of Trove's).
    public func createBucket(_ name: String) throws {
        let r = Runner.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "test:testsecret",
                                              "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-X", "PUT", "\(endpoint)/\(name)"],
                           cwd: "/", environment: ProcessInfo.processInfo.environment)
        guard r.stdout == "200" else { throw BatchSystemError("creating bucket \(name) on \(endpoint): HTTP \(r.stdout) \(r.stderr)") }
    }

    /// `s3://BUCKET/PREFIX?endpoint=...` of this gateway.
    public func url(bucket: String, prefix: String) -> String {
        "s3://\(bucket)/\(prefix)?endpoint=" + (endpoint.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? endpoint)
    }
}
