import Foundation
import Glibc

public struct BatchSystemError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// The project's folder (for its scripts and fixtures).
public let projectRoot: String = {
    var p = #filePath
    for _ in 0..<3 { p = (p as NSString).deletingLastPathComponent }
    return p
}()

/// A real single-node Slurm (munge, slurmctld, slurmd) started by `scripts/slurm-start.sh`,
/// once per test process, stopped at exit. Its `SLURM_CONF` goes in the environment of the
/// commands the tests run.
public final class SlurmCluster: @unchecked Sendable {
    public let stateDirectory: String
    public let conf: String

    nonisolated(unsafe) static var started: Result<SlurmCluster, BatchSystemError>?

    /// The running cluster, started on first use; an error says why it cannot run here.
    public static func shared() throws -> SlurmCluster {
        if let started { return try started.get() }
        let r: Result<SlurmCluster, BatchSystemError>
        do { r = .success(try SlurmCluster()) } catch { r = .failure(error as? BatchSystemError ?? BatchSystemError("\(error)")) }
        started = r
        if case .success(let c) = r { atexit_stop = c.stateDirectory; atexit { SlurmCluster.stopAtExit() } }
        return try r.get()
    }

    nonisolated(unsafe) static var atexit_stop: String?
    static func stopAtExit() {
        guard let d = atexit_stop else { return }
        _ = Runner.run("/bin/bash", ["-c", "exec bash \"$0\" \"$1\" >/dev/null 2>&1 </dev/null", projectRoot + "/scripts/slurm-stop.sh", d],
                       cwd: "/", environment: ProcessInfo.processInfo.environment)
    }

    init() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/slurmctld") else {
            throw BatchSystemError("Slurm is not installed: run `bash scripts/deps.sh` (slurm-wlm, munge)")
        }
        stateDirectory = (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/trove-test-slurm"
        // The daemons it starts inherit its stdout: read it from a file, not a pipe that would
        // stay open as long as they run.
        let output = stateDirectory + ".start.log"
        let r = Runner.run("/bin/bash", ["-c", "exec bash \"$0\" \"$1\" >\"$2\" 2>&1 </dev/null", projectRoot + "/scripts/slurm-start.sh", stateDirectory, output],
                           cwd: "/", environment: ProcessInfo.processInfo.environment)
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        guard r.status == 0, let last = text.split(separator: "\n").last, last.hasPrefix("SLURM_CONF=") else {
            throw BatchSystemError("scripts/slurm-start.sh failed (\(r.status)): \(text)")
        }
        conf = String(last.dropFirst("SLURM_CONF=".count))
    }

    public var environment: [String: String] { ["SLURM_CONF": conf] }

    /// `squeue`'s word for each task of an array job, by index (`-r -t all`).
    public func states(job: String) -> [Int: String] {
        let r = Runner.run("/usr/bin/squeue", ["-h", "-r", "-j", job, "-t", "all", "-o", "%K %T"], cwd: "/",
                           environment: ProcessInfo.processInfo.environment.merging(environment) { _, b in b })
        var out: [Int: String] = [:]
        for line in r.stdout.split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.count == 2, let i = Int(f[0]) { out[i] = String(f[1]) }
        }
        return out
    }
}

/// `fixtures/fake-kube-api.py` on a free port of 127.0.0.1 with a kubeconfig pointing at it:
/// the Jobs API the real `kubectl` talks to in the k8s launcher's tests. Stopped when released.
public final class FakeKubernetes {
    public let directory: TempDir
    public let port: Int
    public let kubeconfig: String
    public let requestLog: String
    let process: Runner.Running

    public init() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/kubectl") || FileManager.default.isExecutableFile(atPath: "/usr/local/bin/kubectl") else {
            throw BatchSystemError("kubectl is not installed")
        }
        directory = TempDir("trove-kube")
        let d = directory.path
        requestLog = d + "/requests.log"
        var env = ProcessInfo.processInfo.environment
        env["FAKE_KUBE_LOG"] = requestLog
        process = Runner.start("/usr/bin/python3", [projectRoot + "/fixtures/fake-kube-api.py", "0", d + "/port"], cwd: d, environment: env)
        var found: Int?
        for _ in 0..<100 {
            if let t = try? String(contentsOfFile: d + "/port", encoding: .utf8), let p = Int(t.trimmingCharacters(in: .whitespacesAndNewlines)) { found = p; break }
            usleep(50_000)
        }
        guard let found else { process.kill9(); throw BatchSystemError("the fake Kubernetes API did not start: \(process.wait().stderr)") }
        port = found
        kubeconfig = d + "/kubeconfig"
        try """
            apiVersion: v1
            kind: Config
            clusters:
            - name: fake
              cluster: {server: "http://127.0.0.1:\(port)"}
            users:
            - name: fake
              user: {token: dummy-token}
            contexts:
            - name: fake
              context: {cluster: fake, user: fake, namespace: default}
            current-context: fake

            """.write(toFile: kubeconfig, atomically: true, encoding: .utf8)
    }

    /// For the commands under test: this kubeconfig, and kubectl's discovery cache kept here.
    public var environment: [String: String] { ["KUBECONFIG": kubeconfig, "KUBECACHEDIR": directory.path + "/cache"] }

    public var requests: [String] { ((try? String(contentsOfFile: requestLog, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }

    public func kubectl(_ args: [String]) -> ProcessResult {
        Runner.run("/usr/bin/env", ["kubectl"] + args, cwd: directory.path, environment: ProcessInfo.processInfo.environment.merging(environment) { _, b in b })
    }

    deinit { process.kill9(); _ = process.wait() }
}
