import Foundation
import TroveCore
import TroveRuns
import TroveStore
import TroveTestSupport
import XCTest

/// Daemon replicas over one bucket of a real radosgw and one real PostgreSQL, driven as an HPC
/// centre runs them: behind one address, one replica killed mid-run, the database restarted
/// under load, and the credentials people get wrong.
final class ReplicaTests: XCTestCase {
    func ok(_ r: ProcessResult, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 0, "\(what): \(r.stdout)\n\(r.stderr)", file: file, line: line)
    }

    /// A sandbox whose `trove daemon …` commands use a fresh bucket and a fresh database.
    func sandbox(_ label: String, postgres: PostgresServer? = nil) throws -> (s: TroveSandbox, gw: RadosGateway, objects: String, metadata: String) {
        let gw = try RadosGateway.shared()
        let pg = try postgres ?? PostgresServer.shared()
        let bucket = label + "-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
        try gw.createBucket(bucket)
        let objects = gw.url(bucket: bucket, prefix: "daemon"), metadata = try pg.newDatabase(label)
        let s = TroveSandbox(label)
        s.extraEnvironment = gw.environment.merging(["TROVE_PROGRESS": "0", "TROVE_OBJECTS": objects, "TROVE_METADATA": metadata]) { _, b in b }
        return (s, gw, objects, metadata)
    }

    /// Project "p" made through PostgreSQL, and a write token for it.
    func projectWithWriteToken(_ s: TroveSandbox, root: String) throws -> String {
        ok(s.trove(["daemon", "project", "create", "p", "--root", root]), "project")
        let r = s.trove(["daemon", "token", "create", "--root", root, "--project", "p", "--role", "write"])
        ok(r, "token")
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Two replicas over a fresh bucket and database, project "p" and a write token for it.
    func twoReplicas(_ label: String) throws -> (s: TroveSandbox, write: String, a: DaemonProcess, b: DaemonProcess, metadata: String) {
        let (s, _, _, metadata) = try sandbox(label)
        let rootA = s.temp.sub("a"), rootB = s.temp.sub("b")
        let write = try projectWithWriteToken(s, root: rootA)
        return (s, write, try DaemonProcess(root: rootA, environment: s.environment), try DaemonProcess(root: rootB, environment: s.environment), metadata)
    }

    func curlStatus(_ url: String, token: String) -> (code: String, body: String) {
        let r = Runner.run("/usr/bin/curl", ["-s", "-w", "\n%{http_code}", "-H", "Authorization: Bearer \(token)", url],
                           cwd: "/", environment: ProcessInfo.processInfo.environment)
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (String(lines.last ?? ""), lines.dropLast().joined(separator: "\n"))
    }

    /// Benchmarks/replica-test.py, shortened: clients push and fetch through one address in
    /// front of two replicas, race to move one ref, and one replica is SIGKILLed halfway.
    func testTwoReplicasBehindOneAddressLoseNothingWhenOneIsKilled() throws {
        let (s, _, objects, metadata) = try sandbox("trove-replicas")
        let r = Runner.run("/usr/bin/python3", [projectRoot + "/Benchmarks/replica-test.py", "--s3", objects, "--metadata", metadata,
                                                "--clients", "6", "--seconds", "16", "--races", "3", "--trove", Runner.trovePath,
                                                "--scratch", s.temp.sub("load")],
                           cwd: s.temp.path, environment: s.environment)
        ok(r, "replica-test.py")
        let summary = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data((r.stdout.split(separator: "\n").last ?? "").utf8)) as? [String: Any], r.stdout)
        XCTAssertEqual(summary["failed"] as? Int, 0, "no client command failed, the killed replica's clients included: \(r.stdout)")
        XCTAssertEqual((summary["killed"] as? [String: Any])?["replica"] as? String, "a", "a replica was killed mid-run")
        XCTAssertGreaterThan(summary["pushes"] as? Int ?? 0, 12, r.stdout)
        let connections = try XCTUnwrap(summary["connections"] as? [String: [String: Int]])
        XCTAssertGreaterThan(connections["a"]?["taken"] ?? 0, 0, "the killed replica had clients")
        XCTAssertGreaterThan(connections["a"]?["refused"] ?? 0, 0, "whose requests then went to the other")
        XCTAssertGreaterThan(connections["b"]?["taken"] ?? 0, connections["a"]?["taken"] ?? 0)
        let races = try XCTUnwrap(summary["races"] as? [[String: Any]])
        XCTAssertEqual(races.count, 3)
        for race in races {
            XCTAssertEqual(race["winners"] as? Int, 1, "each concurrent update of one ref has exactly one winner: \(race)")
            XCTAssertEqual(race["losers_told_to_fetch"] as? Bool, true, "\(race)")
        }
        XCTAssertEqual(summary["fsck_clean"] as? Bool, true, "\(summary["fsck_problems"] ?? "")")
        XCTAssertEqual((summary["lost_heads"] as? [Int]) ?? [-1], [], "every client's last push is its project's main")
    }

    /// PostgreSQL killed while pushes run: requests fail with 503 and the reason while it is
    /// down, work again once it is back, and no ref is lost or moved twice.
    func testPostgresRestartedUnderLoadFailsCleanlyAndLosesNoRef() throws {
        let pg = try PostgresServer(directory: (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/trove-test-pg-restart-\(getpid())",
                                    port: SSHServer.freePort())
        let (s, _, _, metadata) = try sandbox("trove-pg-restart", postgres: pg)
        let root = s.temp.sub("replica")
        let token = try projectWithWriteToken(s, root: root)
        s.extraEnvironment["TROVE_METADATA_TIMEOUT"] = "3"
        let daemon = try DaemonProcess(root: root, environment: s.environment)
        // A server that stops answering but keeps its sockets open (a partition): 503 after the
        // statement timeout, not a request held until TCP gives up; fine again once it answers.
        XCTAssertEqual(curlStatus(daemon.url("p") + "/v1/refs", token: token).code, "200")
        func mlflow(_ route: String, _ body: String) -> (code: String, body: String) {
            let r = Runner.run("/usr/bin/curl", ["-s", "-w", "\n%{http_code}", "-H", "Authorization: Bearer \(token)", "-H", "Content-Type: application/json",
                                                 "-d", body, daemon.url("p") + "/api/2.0/mlflow/" + route], cwd: "/", environment: ProcessInfo.processInfo.environment)
            let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
            return (String(lines.last ?? ""), lines.dropLast().joined(separator: "\n"))
        }
        let created = mlflow("runs/create", "{\"experiment_id\": \"0\"}")
        let runID = try XCTUnwrap(((try JSONSerialization.jsonObject(with: Data(created.body.utf8)) as? [String: Any])?["run"] as? [String: Any])
            .flatMap { ($0["info"] as? [String: Any])?["run_id"] as? String }, created.body)
        try pg.freeze(true)
        let started = Date()
        let frozen = curlStatus(daemon.url("p") + "/v1/refs", token: token)
        let waited = Date().timeIntervalSince(started)
        // An MLflow client's log call meets the outage as a 503 it retries, not "no such run".
        let logged = mlflow("runs/log-metric", "{\"run_id\": \"\(runID)\", \"key\": \"loss\", \"value\": 0.5, \"timestamp\": 1700000001000, \"step\": 1}")
        try pg.freeze(false)
        XCTAssertEqual(frozen.code, "503", frozen.body)
        XCTAssertLessThan(waited, 10, "answered after the 3 s statement timeout, not held")
        XCTAssertEqual(logged.code, "503", logged.body)
        XCTAssertTrue(logged.body.contains("TEMPORARILY_UNAVAILABLE"), logged.body)
        XCTAssertTrue(waitFor(seconds: 10) { self.curlStatus(daemon.url("p") + "/v1/refs", token: token).code == "200" }, "fine once it answers again")
        s.extraEnvironment["TROVE_TOKEN"] = token
        ok(s.trove("init", "-q"), "init")
        ok(s.trove("remote", "add", "origin", daemon.url("p")), "remote add")

        // A pusher: a commit and a push at a time, each outcome recorded.
        let outcomes = Locked<[(commit: String, status: Int32, stderr: String)]>([])
        let stop = Locked(false)
        let pusher = Thread {
            var n = 0
            while !stop.get() {
                n += 1
                s.write("f\(n).txt", Array("push \(n)\n".utf8))
                _ = s.trove("add", "-q", "f\(n).txt")
                _ = s.trove("commit", "-qm", "c\(n)")
                let head = (try? String(contentsOfFile: s.path(".trove/refs/heads/main"), encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
                let r = s.trove("push", "-q")
                outcomes.update { $0.append((head, r.status, r.stderr)) }
            }
        }
        pusher.start()
        XCTAssertTrue(waitFor(seconds: 30) { outcomes.get().filter { $0.status == 0 }.count >= 3 }, "pushes land before the crash: \(outcomes.get())")
        try pg.kill()
        let down = curlStatus(daemon.url("p") + "/v1/refs", token: token)
        XCTAssertEqual(down.code, "503", "the database is down: retry later, not a crash or a wrong answer")
        XCTAssertTrue(down.body.contains("metadata database") && down.body.contains("unreachable"), down.body)
        XCTAssertEqual(curlStatus(daemon.base + "/healthz", token: "").code, "503", "not ready: a load balancer sends clients elsewhere")
        sleep(3)
        try pg.restart()
        let afterRestart = outcomes.get().count
        XCTAssertTrue(waitFor(seconds: 40) { outcomes.get().dropFirst(afterRestart).filter { $0.status == 0 }.count >= 3 }, "pushes work again: \(outcomes.get().suffix(3))")
        stop.set(true)
        while pusher.isExecuting { usleep(50_000) }
        XCTAssertEqual(curlStatus(daemon.url("p") + "/v1/refs", token: token).code, "200")
        XCTAssertEqual(curlStatus(daemon.base + "/healthz", token: "").code, "200", "ready again")

        let all = outcomes.get()
        for o in all where o.status != 0 {
            // A push that met the outage ends with the transport code and the reason.
            XCTAssertEqual(o.status, 7, o.stderr)
            XCTAssertTrue(o.stderr.contains("metadata database") || o.stderr.contains("503"), o.stderr)
        }
        // The ref's history in PostgreSQL is one unbroken chain: each move starts where the last
        // ended, no commit appears twice, and the last successful push is where main is.
        let log = try pg.psql(metadata, "SELECT old || ' ' || new FROM reflog WHERE project = 'p' AND name = 'heads/main' ORDER BY seq")
            .split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: false).map(String.init) }
        XCTAssertFalse(log.isEmpty)
        for k in log.indices.dropFirst() { XCTAssertEqual(log[k][0], log[k - 1][1], "move \(k) starts where move \(k - 1) ended") }
        XCTAssertEqual(Set(log.map { $0[1] }).count, log.count, "no ref moved twice to the same commit")
        let landed = all.filter { $0.status == 0 }.map(\.commit)
        XCTAssertEqual(log.last?[1], landed.last, "main is the last push that was acknowledged")
        for c in landed { XCTAssertTrue(log.contains { $0[1] == c }, "acknowledged push \(c) is in the ref's history") }
        ok(s.trove(["daemon", "fsck", "p", "--full", "--root", s.temp.sub("check")]), "fsck of the shared project")
        _ = daemon.stop()
        try? pg.stop()
    }

    /// An expired or revoked token, and a bucket that belongs to another project's keys: each
    /// refused with a clear error, and nothing written.
    func testAnExpiredTokenAndAnotherProjectsBucketAreRefusedAndNothingIsWritten() throws {
        let (s, gw, _, metadata) = try sandbox("trove-refusals")
        let rootA = s.temp.sub("a"), rootB = s.temp.sub("b")
        ok(s.trove(["daemon", "project", "create", "p", "--root", rootA]), "project")
        let a = try DaemonProcess(root: rootA, environment: s.environment)
        let b = try DaemonProcess(root: rootB, environment: s.environment)
        let short = s.trove(["daemon", "token", "create", "--root", rootA, "--project", "p", "--role", "read", "--expires", "1s"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let kept = s.trove(["daemon", "token", "create", "--root", rootB, "--project", "p", "--role", "read"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(curlStatus(a.url("p") + "/v1/refs", token: kept).code, "200", "a token made through one replica works on the other")
        sleep(2)
        let expired = curlStatus(b.url("p") + "/v1/refs", token: short)
        XCTAssertEqual(expired.code, "401", "expired, on every replica")
        XCTAssertTrue(expired.body.contains("expired"), expired.body)
        ok(s.trove(["daemon", "token", "revoke", "--root", rootB, kept]), "revoke through replica b")
        XCTAssertEqual(curlStatus(a.url("p") + "/v1/refs", token: kept).code, "401", "revoked through b: refused by a at once")
        XCTAssertEqual(try PostgresServer.shared().psql(metadata, "SELECT count(*) FROM tokens WHERE hash = '\(SHA256.hash(Array(kept.utf8)).hex)'"), "0\n")

        // Another project's bucket: its owner's keys are not ours.
        try gw.createUser("other", secret: "othersecret")
        let theirs = "trove-theirs-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
        try gw.createBucket(theirs, user: ("other", "othersecret"))
        ok(s.trove("init", "-q"), "init")
        s.write("w.bin", SeededBytes.bytes(seed: 5, count: 100_000))
        ok(s.trove("add", "-q", "w.bin"), "add")
        ok(s.trove("commit", "-qm", "one"), "commit")
        let push = s.trove("push", gw.url(bucket: theirs, prefix: "x"))
        XCTAssertEqual(push.status, 8, "denied: \(push.stderr)")
        XCTAssertTrue(push.stderr.contains("AccessDenied") && push.stderr.contains(theirs), push.stderr)
        // A replica pointed at it refuses to start, naming the bucket and S3's reason.
        var env = s.environment
        env["TROVE_OBJECTS"] = gw.url(bucket: theirs, prefix: "daemon")
        let start = Runner.run(Runner.trovePath, ["daemon", "--root", s.temp.sub("c"), "--listen", "127.0.0.1:0"], cwd: s.temp.path, environment: env)
        XCTAssertEqual(start.status, 2, start.stderr)
        XCTAssertTrue(start.stderr.contains("cannot use its object store") && start.stderr.contains("AccessDenied"), start.stderr)
        // Packs in a bucket with no shared list of them: refused before anything is contacted.
        var alone = s.environment
        alone["TROVE_METADATA"] = nil
        let noList = Runner.run(Runner.trovePath, ["daemon", "--root", s.temp.sub("e"), "--listen", "127.0.0.1:0"], cwd: s.temp.path, environment: alone)
        XCTAssertEqual(noList.status, 2, noList.stderr)
        XCTAssertTrue(noList.stderr.contains("needs --metadata"), noList.stderr)
        // A wrong secret key: the replica does not start, and says which key to check.
        var wrong = s.environment
        wrong["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
        let badKey = Runner.run(Runner.trovePath, ["daemon", "--root", s.temp.sub("d"), "--listen", "127.0.0.1:0"], cwd: s.temp.path, environment: wrong)
        XCTAssertEqual(badKey.status, 2, badKey.stderr)
        XCTAssertTrue(badKey.stderr.contains("SignatureDoesNotMatch") && badKey.stderr.contains("AWS_SECRET_ACCESS_KEY"), badKey.stderr)
        // Nothing was written there: the owner lists an empty bucket.
        let listing = Runner.run("/usr/bin/curl", ["-s", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "other:othersecret",
                                                   "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "\(gw.endpoint)/\(theirs)?list-type=2"],
                                 cwd: "/", environment: ProcessInfo.processInfo.environment)
        XCTAssertTrue(listing.stdout.contains("<KeyCount>0</KeyCount>"), listing.stdout)
        _ = (a.stop(), b.stop())
    }
}

extension ReplicaTests {
    /// The daemon's small state is shared too: a browser logged in through one replica is
    /// logged in on the other, an MLflow experiment made on one is found on the other, and an
    /// endpoint `trove serve` announced to one is listed by the other.
    func testASessionAnExperimentAndAServedEndpointAreTheSameOnEveryReplica() throws {
        let (s, write, a, b, _) = try twoReplicas("trove-shared-state")
        func curl(_ args: [String]) -> String {
            Runner.run("/usr/bin/curl", ["-s", "-w", "\n%{http_code}"] + args, cwd: s.temp.path, environment: s.environment).stdout
        }
        // A login on a, its cookie used on b; logging out on b ends it on a.
        let jar = s.temp.path + "/cookies"
        let login = curl(["-c", jar, "-H", "Content-Type: application/json", "-d", "{\"token\": \"\(write)\"}", a.base + "/api/v1/session"])
        XCTAssertTrue(login.hasSuffix("200"), login)
        let csrf = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data((login.split(separator: "\n").first ?? "").utf8)) as? [String: Any])?["csrf"] as? String)
        let onB = curl(["-b", jar, b.base + "/api/v1/projects"])
        XCTAssertTrue(onB.hasSuffix("200") && onB.contains("\"p\""), onB)
        XCTAssertTrue(curl(["-b", jar, "-X", "DELETE", "-H", "X-CSRF-Token: \(csrf)", b.base + "/api/v1/session"]).hasSuffix("204"), "logged out through b")
        XCTAssertTrue(curl(["-b", jar, a.base + "/api/v1/session"]).hasSuffix("401"), "and so on a")
        // MLflow: an experiment made through a is found through b; a second with the same name is refused on b.
        let made = curl(["-H", "Authorization: Bearer \(write)", "-H", "Content-Type: application/json", "-d", "{\"name\": \"sweep-a\"}",
                         a.base + "/p/api/2.0/mlflow/experiments/create"])
        XCTAssertTrue(made.hasSuffix("200"), made)
        let found = curl(["-H", "Authorization: Bearer \(write)", b.base + "/p/api/2.0/mlflow/experiments/get-by-name?experiment_name=sweep-a"])
        XCTAssertTrue(found.hasSuffix("200") && found.contains("sweep-a"), found)
        let again = curl(["-H", "Authorization: Bearer \(write)", "-H", "Content-Type: application/json", "-d", "{\"name\": \"sweep-a\"}",
                          b.base + "/p/api/2.0/mlflow/experiments/create"])
        XCTAssertTrue(again.contains("RESOURCE_ALREADY_EXISTS"), again)
        // An MLflow run ended through a is recorded as a run commit that b serves (ref in PostgreSQL, packs in S3).
        let created = curl(["-H", "Authorization: Bearer \(write)", "-H", "Content-Type: application/json", "-d", "{\"experiment_id\": \"0\", \"start_time\": 1700000000000}",
                            a.base + "/p/api/2.0/mlflow/runs/create"])
        let runID = try XCTUnwrap(((try JSONSerialization.jsonObject(with: Data((created.split(separator: "\n").first ?? "").utf8)) as? [String: Any])?["run"]
                                   as? [String: Any]).flatMap { ($0["info"] as? [String: Any])?["run_id"] as? String }, created)
        // An artifact uploaded through a, listed through b, recorded by b with the run.
        let put = curl(["-X", "PUT", "-H", "Authorization: Bearer \(write)", "--data-binary", "weights v1",
                        a.base + "/p/api/2.0/mlflow-artifacts/artifacts/0/\(runID)/artifacts/model/w.txt"])
        XCTAssertTrue(put.hasSuffix("200"), put)
        let listedOnB = curl(["-H", "Authorization: Bearer \(write)", b.base + "/p/api/2.0/mlflow-artifacts/artifacts?path=0/\(runID)/artifacts/model"])
        XCTAssertTrue(listedOnB.hasSuffix("200") && listedOnB.contains("w.txt"), listedOnB)
        // Made on a, logged to through b and a, ended through b: the run is one, wherever each call lands.
        for (i, d) in [b, a, b].enumerated() {
            let logged = curl(["-H", "Authorization: Bearer \(write)", "-H", "Content-Type: application/json",
                               "-d", "{\"run_id\": \"\(runID)\", \"key\": \"loss\", \"value\": \(Double(i) + 0.5), \"timestamp\": 1700000001000, \"step\": \(i)}",
                               d.base + "/p/api/2.0/mlflow/runs/log-metric"])
            XCTAssertTrue(logged.hasSuffix("200"), logged)
        }
        let ended = curl(["-H", "Authorization: Bearer \(write)", "-H", "Content-Type: application/json",
                          "-d", "{\"run_id\": \"\(runID)\", \"status\": \"FINISHED\", \"end_time\": 1700000060000}", b.base + "/p/api/2.0/mlflow/runs/update"])
        XCTAssertTrue(ended.hasSuffix("200"), ended)
        let recorded = curl(["-H", "Authorization: Bearer \(write)", a.base + "/api/v1/projects/p/runs/\(runID)/metrics/loss"])
        XCTAssertTrue(recorded.hasSuffix("200") && recorded.contains("\"steps\":[0,1,2]"), recorded)
        XCTAssertTrue(curl(["-H", "Authorization: Bearer \(write)", a.base + "/api/v1/projects/p/runs/\(runID)"]).contains("\"live\":false"))
        let artifact = curl(["-H", "Authorization: Bearer \(write)", a.base + "/p/api/2.0/mlflow-artifacts/artifacts/0/\(runID)/artifacts/model/w.txt"])
        XCTAssertEqual(artifact, "weights v1\n200", "the artifact uploaded to a is in the run b recorded")
        // A served endpoint announced to a is listed by b.
        s.extraEnvironment["TROVE_TOKEN"] = write
        ok(s.trove("init", "-q"), "init")
        s.write("weights.bin", Array("v1 weights".utf8))
        ok(s.trove("model", "publish", "toy", "weights.bin", "-m", "v1"), "publish")
        ok(s.trove(["push", a.url("p"), "models/*"]), "push the model")
        let announce = curl(["-X", "PUT", "-H", "Authorization: Bearer \(write)", "-d", "{\"version\": 1, \"url\": \"http://gpu-7:8000\", \"host\": \"gpu-7\"}",
                             a.base + "/api/v1/projects/p/registry/toy/served/gpu-7-1-8000"])
        XCTAssertTrue(announce.hasSuffix("200"), announce)
        let listed = curl(["-H", "Authorization: Bearer \(write)", b.base + "/api/v1/projects/p/registry/toy"])
        XCTAssertTrue(listed.hasSuffix("200") && listed.contains("gpu-7:8000"), listed)
        XCTAssertTrue(curl(["-X", "DELETE", "-H", "Authorization: Bearer \(write)", b.base + "/api/v1/projects/p/registry/toy/served/gpu-7-1-8000"]).hasSuffix("200"))
        XCTAssertFalse(curl(["-H", "Authorization: Bearer \(write)", a.base + "/api/v1/projects/p/registry/toy"]).contains("gpu-7:8000"), "withdrawn everywhere")
        _ = (a.stop(), b.stop())
    }
}

extension ReplicaTests {
    /// A byte flipped in a pack in the bucket: a replica that reads it from S3 sends it, the
    /// client's check refuses it and names the object, and `daemon fsck --full` names the pack.
    func testACorruptedPackInTheBucketIsNamedOnFetchAndByFsck() throws {
        let (s, gw, objects, _) = try sandbox("trove-replica-rot")
        let rootA = s.temp.sub("a"), rootB = s.temp.sub("b")
        let write = try projectWithWriteToken(s, root: rootA)
        let a = try DaemonProcess(root: rootA, environment: s.environment)
        s.extraEnvironment["TROVE_TOKEN"] = write
        ok(s.trove("init", "-q"), "init")
        s.write("weights.bin", SeededBytes.bytes(seed: 77, count: 400_000))
        ok(s.trove("add", "-q", "weights.bin"), "add")
        ok(s.trove("commit", "-qm", "one"), "commit")
        ok(s.trove(["push", a.url("p")]), "push through a")
        // The pack, as the bucket holds it: flip a byte in the middle (chunk data, not the index).
        let bucket = String(objects.dropFirst(5).prefix { $0 != "/" })
        let signed = ["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "test:testsecret", "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]
        let listing = Runner.run("/usr/bin/curl", ["-s"] + signed + ["\(gw.endpoint)/\(bucket)?list-type=2&prefix=daemon%2Fp%2Fpacks%2F"], cwd: "/", environment: s.environment).stdout
        let key = try XCTUnwrap(listing.components(separatedBy: "<Key>").dropFirst().map { String($0.prefix { $0 != "<" }) }.first { $0.hasSuffix(".pack") }, listing)
        let file = s.temp.path + "/pack"
        XCTAssertEqual(Runner.run("/usr/bin/curl", ["-s", "-o", file] + signed + ["\(gw.endpoint)/\(bucket)/\(key)"], cwd: "/", environment: s.environment).status, 0)
        var bytes = try FileIO.readFile(file)
        bytes[bytes.count / 2] ^= 0x5a
        try FileIO.atomicWrite(file, bytes)
        XCTAssertEqual(Runner.run("/usr/bin/curl", ["-s", "-f", "-T", file] + signed + ["\(gw.endpoint)/\(bucket)/\(key)"], cwd: "/", environment: s.environment).status, 0)
        // Replica b never held the pack: it reads the damaged bytes from S3.
        let b = try DaemonProcess(root: rootB, environment: s.environment)
        let clone = s.trove(["clone", b.url("p"), s.temp.sub("copy")], cwd: s.temp.path)
        XCTAssertEqual(clone.status, 4, clone.stderr)
        // "received object ID is corrupt or forged … nothing of it was stored"
        XCTAssertTrue(clone.stderr.contains("is corrupt") && clone.stderr.contains("nothing of it was stored"), clone.stderr)
        let fsck = s.trove(["daemon", "fsck", "p", "--full", "--root", s.temp.sub("check")])
        XCTAssertEqual(fsck.status, 4, fsck.stdout + fsck.stderr)
        let pack = String(key.dropFirst("daemon/p/packs/".count).dropLast(5))
        XCTAssertTrue(fsck.stdout.contains(pack), "the pack is named: \(fsck.stdout)")
        // Its index gone too: a replica that starts now skips that pack, takes new pushes, and fsck names it.
        XCTAssertEqual(Runner.run("/usr/bin/curl", ["-s", "-f", "-X", "DELETE"] + signed + ["\(gw.endpoint)/\(bucket)/daemon/p/packs/\(pack).idx"],
                                  cwd: "/", environment: s.environment).status, 0)
        let c = try DaemonProcess(root: s.temp.sub("c"), environment: s.environment)
        // A push onto the damaged history is refused, naming what is missing; another history is taken.
        s.write("notes.txt", Array("after the damage\n".utf8))
        ok(s.trove("add", "-q", "notes.txt"), "add")
        ok(s.trove("commit", "-qm", "two"), "commit")
        let onto = s.trove(["push", c.url("p")])
        XCTAssertEqual(onto.status, 4, onto.stderr)
        XCTAssertTrue(onto.stderr.contains("missing object"), onto.stderr)
        let fresh = s.temp.sub("fresh")
        try FileIO.mkdirs(fresh)
        ok(s.trove(["init", "-q"], cwd: fresh), "init")
        try FileIO.atomicWrite(fresh + "/data.bin", SeededBytes.bytes(seed: 78, count: 50_000))
        ok(s.trove(["add", "-q", "data.bin"], cwd: fresh), "add")
        ok(s.trove(["commit", "-qm", "other"], cwd: fresh), "commit")
        let push = s.trove(["push", c.url("p"), "heads/main:heads/other"], cwd: fresh)
        XCTAssertEqual(push.status, 0, "one damaged pack does not stop the project: \(push.stderr)")
        let again = s.trove(["daemon", "fsck", "p", "--root", s.temp.sub("check2")])
        XCTAssertEqual(again.status, 4)
        XCTAssertTrue(again.stdout.contains("pack \(pack)") && again.stdout.contains(".idx is missing"), again.stdout)
        _ = (a.stop(), b.stop(), c.stop())
    }
}

extension ReplicaTests {
    /// deploy/kubernetes: strict schema validation, and the Deployment's command line is one
    /// this trove accepts, with the settings it reads from the ConfigMap and Secret.
    func testTheKubernetesManifestsPassStrictValidationAndMatchTheDaemonsFlags() throws {
        guard Tool.onPath("kubernetes-validate") else { throw XCTSkip("kubernetes-validate is not installed: bash scripts/deps.sh") }
        let file = projectRoot + "/deploy/kubernetes/trove-daemon.yaml"
        let v = Runner.run("/usr/bin/env", ["kubernetes-validate", "--strict", file], cwd: projectRoot, environment: ProcessInfo.processInfo.environment)
        XCTAssertEqual(v.status, 0, v.stdout + v.stderr)
        for kind in ["configmap", "secret", "deployment", "service"] { XCTAssertTrue(v.stdout.contains("passed for resource \(kind)/"), v.stdout) }
        let dump = Runner.run("/usr/bin/python3", ["-c", """
            import json, sys, yaml
            docs = {d["kind"]: d for d in yaml.safe_load_all(open(sys.argv[1]))}
            c = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
            print(json.dumps({"args": c["args"], "env": sorted(list(docs["ConfigMap"]["data"]) + list(docs["Secret"]["stringData"])),
                              "ready": c["readinessProbe"]["httpGet"]["path"], "replicas": docs["Deployment"]["spec"]["replicas"]}))
            """, file], cwd: projectRoot, environment: ProcessInfo.processInfo.environment)
        let m = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(dump.stdout.utf8)) as? [String: Any], dump.stderr)
        let args = try XCTUnwrap(m["args"] as? [String])
        XCTAssertEqual(m["ready"] as? String, "/healthz")
        XCTAssertGreaterThanOrEqual(m["replicas"] as? Int ?? 0, 2)
        XCTAssertEqual(Set(try XCTUnwrap(m["env"] as? [String])).intersection(["TROVE_OBJECTS", "TROVE_METADATA", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]).count, 4)
        // Every flag the container passes is one `trove daemon` documents.
        let help = Runner.run(Runner.trovePath, ["help", "daemon", "serve"], cwd: projectRoot, environment: ProcessInfo.processInfo.environment).stdout
        XCTAssertEqual(args.first, "daemon")
        for flag in args where flag.hasPrefix("--") { XCTAssertTrue(help.contains(flag), "\(flag) is not a flag of trove daemon serve:\n\(help)") }
    }
}

extension ReplicaTests {
    /// A `trove run` streams to one replica; through the other, a browser sees its points and
    /// output arrive (events included), and its Stop button ends it: live runs are in
    /// PostgreSQL, not in the replica the run happens to talk to.
    func testALiveRunStreamedToOneReplicaIsWatchedAndStoppedThroughTheOther() throws {
        let (s, write, a, b, metadata) = try twoReplicas("trove-live-replicas")
        defer { _ = (a.stop(), b.stop()) }
        s.extraEnvironment["TROVE_TOKEN"] = write
        ok(s.trove("init", "-q"), "init")
        ok(s.trove("remote", "add", "origin", a.url("p")), "remote")
        ok(s.trove("config", "runs.live-interval", "0.3"), "config")
        func get(_ url: String) -> [String: Any] {
            let r = curlStatus(url, token: write)
            return (try? JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any]) ?? ["status": r.code, "body": r.body]
        }
        // Events through b, from before the run starts.
        let sse = Runner.start("/usr/bin/curl", ["-s", "-N", "--max-time", "40", "-H", "Authorization: Bearer \(write)", b.base + "/api/v1/projects/p/events"],
                               cwd: "/", environment: ProcessInfo.processInfo.environment)
        let run = s.start(["run", "-q", "-p", "lr=0.1", "--", "python3", "-u", "-c", """
            import json, os, time
            for i in range(600):
                with open(os.environ["TROVE_METRICS_FILE"], "a") as f: f.write(json.dumps({"step": i, "loss": 1.0 / (i + 1)}) + "\\n")
                print("step", i)
                time.sleep(0.1)
            """])
        var row: [String: Any] = [:]
        let seen = waitFor(seconds: 30) {
            row = (get(b.base + "/api/v1/projects/p/runs")["runs"] as? [[String: Any]])?.first ?? [:]
            return row["status"] as? String == "running" && ((row["metrics"] as? [String: Any])?["loss"] as? Double).map { $0 < 0.2 } == true
        }
        XCTAssertTrue(seen, "the run streamed to a is listed running on b with its points: \(row)")
        let id = try XCTUnwrap(row["id"] as? String)
        XCTAssertEqual(row["params"] as? [String: String], ["lr": "0.1"])
        let logs = get(b.base + "/api/v1/projects/p/runs/\(id)/logs?stream=stdout")
        XCTAssertTrue((logs["text"] as? String ?? "").contains("step 3\n"), "\(logs)")
        // Stopped through b: the run, which talks to a, hears it and ends.
        let stop = Runner.run("/usr/bin/curl", ["-s", "-w", "\n%{http_code}", "-X", "POST", "-H", "Authorization: Bearer \(write)", "-H", "Content-Type: application/json",
                                                "-d", "{\"reason\": \"stopped on replica b\"}", b.base + "/api/v1/projects/p/runs/\(id)/cancel"],
                              cwd: "/", environment: ProcessInfo.processInfo.environment)
        XCTAssertTrue(stop.stdout.hasSuffix("202"), stop.stdout)
        let t0 = Date()
        let ended = run.wait()
        XCTAssertNotEqual(ended.status, 0, "the stopped run ends with a failure status")
        XCTAssertLessThan(Date().timeIntervalSince(t0), 20, "stopped within seconds, not after its 60 s")
        XCTAssertEqual(((s.json("runs", "show", id, "--json") as? [String: Any])?["metadata"] as? [String: Any])?["run.stopped_by"] as? String, "stopped on replica b")
        // Every point once, in order, on both replicas.
        var steps: [[Int]] = []
        XCTAssertTrue(waitFor(seconds: 10) {
            steps = [a, b].map { (get($0.base + "/api/v1/projects/p/runs/\(id)/metrics/loss?points=100000")["steps"] as? [Int]) ?? [] }
            return steps[0] == steps[1] && (steps[0].last ?? 0) > 5 && get(b.base + "/api/v1/projects/p/runs/\(id)")["status"] as? String == "cancelled"
        }, "\(steps)")
        XCTAssertEqual(steps[1], Array(0..<steps[1].count))
        // b's event stream carried the run and its points, though they reached a.
        sse.process.terminate()
        let events = sse.wait().stdout
        XCTAssertTrue(events.contains("event: metrics") && events.contains("\"run\":\"\(id)\""), String(events.prefix(2000)))
        // Pushed: the recorded run replaces the live one on both, and the live rows go.
        ok(s.trove("push", "origin", "runs/*"), "push")
        for d in [a, b] { XCTAssertEqual(get(d.base + "/api/v1/projects/p/runs/\(id)")["live"] as? Bool, false) }
        _ = get(a.base + "/api/v1/projects/p/runs")
        XCTAssertEqual(try PostgresServer.shared().psql(metadata, "SELECT count(*) FROM live_runs").trimmingCharacters(in: .whitespacesAndNewlines), "0")
    }
}
