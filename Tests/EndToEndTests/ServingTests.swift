import Foundation
import TroveCore
import TroveStore
import TroveTestSupport
import XCTest

/// `trove serve` with real worker processes (fixtures/serving/worker.py, numpy) and curl:
/// the Open Inference Protocol v2 answers, batching, errors, a crashing and a hanging worker,
/// metrics, graceful drain, and a version whose files cannot be had.
final class ServingTests: XCTestCase {
    func ok(_ r: ProcessResult, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 0, "\(what): \(r.stdout)\n\(r.stderr)", file: file, line: line)
    }

    /// A store with model `toy` v1: the fixture worker, its serving.json and weights.
    func modelStore() throws -> TroveSandbox {
        let s = TroveSandbox("trove-serve")
        guard s.shell("python3 -c 'import numpy'").status == 0 else { throw XCTSkip("numpy is not installed") }
        ok(s.trove("init", "-q"), "init")
        ok(s.shell("mkdir toy && cp \(projectRoot)/fixtures/serving/worker.py \(projectRoot)/fixtures/serving/serving.json toy/ && python3 -c \"import numpy as np; np.savez('toy/weights.npz', W=np.arange(8, dtype=np.float32).reshape(4, 2), b=np.array([0.5, -0.5], dtype=np.float32))\""), "model files")
        ok(s.trove("model", "import-hf", "toy", "--name", "toy"), "publish")
        return s
    }

    /// Starts `trove serve` on a free port; returns the process and its base URL.
    func serve(_ s: TroveSandbox, _ args: [String]) throws -> (Runner.Running, String) {
        let port = SSHServer.freePort()
        let p = s.start(["serve", "toy", "--listen", "127.0.0.1:\(port)"] + args)
        for _ in 0..<300 where !SSHServer.accepts(port) { usleep(20_000) }
        guard SSHServer.accepts(port) else { XCTFail("trove serve did not start: \(p.wait().stderr)"); throw XCTSkip("no server") }
        return (p, "http://127.0.0.1:\(port)")
    }

    func post(_ s: TroveSandbox, _ url: String, _ body: String) -> (Int, [String: Any]) {
        let r = s.shell("curl -s -o out.json -w '%{http_code}' -X POST '\(url)/v2/models/toy/infer' --data-binary @- <<'JSON'\n\(body)\nJSON\ncat out.json >&2")
        return (Int(r.stdout) ?? 0, (try? JSONSerialization.jsonObject(with: Data(r.stderr.utf8))) as? [String: Any] ?? [:])
    }

    let good = #"{"id": "r1", "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "data": [1, 2, 3, 4, 0, 0, 0, 1]}]}"#

    func testInferenceAnswersCheckInputsAndSurviveACrashingAndAHangingWorker() throws {
        let s = try modelStore()
        let (p, url) = try serve(s, ["--workers", "2", "--max-batch", "4", "--max-wait-ms", "2", "--timeout", "1.5"])
        XCTAssertEqual(s.shell("curl -s -o /dev/null -w '%{http_code}' \(url)/v2/health/live").stdout, "200")
        var ready = ""
        for _ in 0..<50 where ready != "200" { ready = s.shell("curl -s -o /dev/null -w '%{http_code}' \(url)/v2/models/toy/ready").stdout; usleep(100_000) }
        XCTAssertEqual(ready, "200")
        let meta = s.shell("curl -s \(url)/v2/models/toy").stdout
        XCTAssertTrue(meta.contains("\"FP32\"") && meta.contains("\"versions\":[\"1\"]"), meta)
        // y = x @ W + b with W = [[0,1],[2,3],[4,5],[6,7]], b = [0.5, -0.5].
        let (status, answer) = post(s, url, good)
        XCTAssertEqual(status, 200)
        XCTAssertEqual(answer["id"] as? String, "r1")
        let y = (answer["outputs"] as? [[String: Any]])?.first
        XCTAssertEqual(y?["shape"] as? [Int], [2, 2])
        XCTAssertEqual(y?["data"] as? [Double], [40.5, 49.5, 6.5, 6.5])
        // Wrong shape, wrong datatype, not JSON, unknown model: 400/404 in the OIP error format.
        let shape = post(s, url, #"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}"#)
        XCTAssertEqual(shape.0, 400)
        XCTAssertTrue((shape.1["error"] as? String)?.contains("shape [1, 3]") ?? false, "\(shape.1)")
        let dtype = post(s, url, #"{"inputs": [{"name": "x", "datatype": "INT64", "shape": [1, 4], "data": [1, 2, 3, 4]}]}"#)
        XCTAssertEqual(dtype.0, 400)
        XCTAssertTrue((dtype.1["error"] as? String)?.contains("datatype INT64") ?? false, "\(dtype.1)")
        XCTAssertEqual(post(s, url, "not json").0, 400)
        XCTAssertEqual(s.shell("curl -s -o /dev/null -w '%{http_code}' -X POST \(url)/v2/models/other/infer -d '{}'").stdout, "404")
        // A worker that crashes mid-request: a clear 5xx, a restart, and the next requests succeed.
        let crash = post(s, url, #"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}], "parameters": {"crash": true}}"#)
        XCTAssertEqual(crash.0, 500)
        XCTAssertTrue((crash.1["error"] as? String)?.contains("restarted") ?? false, "\(crash.1)")
        for _ in 0..<3 { XCTAssertEqual(post(s, url, good).0, 200) }
        // A worker that hangs: 504 after --timeout, killed, restarted.
        let t0 = Date()
        let hang = post(s, url, #"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}], "parameters": {"hang": true}}"#)
        XCTAssertEqual(hang.0, 504)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 5)
        XCTAssertEqual(post(s, url, good).0, 200)
        // A real OIP client (Triton's HTTP client), when installed: the same answers through it.
        if s.shell("python3 -c 'import tritonclient.http'").status == 0 {
            let oip = s.shell("python3 \(projectRoot)/fixtures/serving/oip_client.py \(url.dropFirst(7))")
            ok(oip, "tritonclient")
            XCTAssertTrue(oip.stdout.contains("y [[40.5, 49.5], [6.5, 6.5]]") && oip.stdout.contains("error InferenceServerException [400]"), oip.stdout)
        }
        let metrics = s.shell("curl -s \(url)/metrics").stdout
        for needle in ["trove_serve_requests_total{model=\"toy\",status=\"200\"}", "trove_serve_request_seconds_bucket", "trove_serve_batch_size_count",
                       "trove_serve_queue_depth", "trove_serve_worker_restarts_total{model=\"toy\"} 2"] {
            XCTAssertTrue(metrics.contains(needle), "\(needle) in\n\(metrics)")
        }
        kill(p.process.processIdentifier, SIGTERM)
        XCTAssertEqual(p.wait().status, 0)
    }

    func testAFullQueueAnswers503AndSIGTERMLetsQueuedRequestsFinish() throws {
        let s = try modelStore()
        s.extraEnvironment["WORKER_ITEM_MS"] = "300"
        let (p, url) = try serve(s, ["--workers", "1", "--queue", "2"])
        // Six at once against one worker (0.3 s each) and a queue of 2: some are refused.
        let burst = s.shell("for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{http_code} ' -D hdr$i -X POST \(url)/v2/models/toy/infer -d '\(good)' & done; wait; grep -il retry-after hdr* | wc -l")
        XCTAssertTrue(burst.stdout.contains("503"), burst.stdout)
        XCTAssertTrue(burst.stdout.contains("200"), burst.stdout)
        XCTAssertNotEqual(burst.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).last.flatMap { Int($0) } ?? 0, 0, "503s carry Retry-After: \(burst.stdout)")
        // Graceful drain: requests in flight when SIGTERM arrives still get their answers.
        let clients = s.shell("(for i in 1 2; do curl -s -o /dev/null -w '%{http_code} ' -X POST \(url)/v2/models/toy/infer -d '\(good)' & done; sleep 0.15; kill -TERM \(p.process.processIdentifier); wait)")
        XCTAssertEqual(clients.stdout.split(separator: " ").sorted(), ["200", "200"], clients.stdout + clients.stderr)
        XCTAssertEqual(p.wait().status, 0)
    }

    func testAVersionWhoseFilesAreNowhereIsRefusedBeforeListening() throws {
        let s = try modelStore()
        let remote = s.temp.sub("shared")
        ok(s.trove("init", "--bare", "-q", remote), "bare")
        ok(s.trove("push", remote, "models/*"), "push")
        // Another store has the version's history but none of its chunks, and the remote is gone.
        let other = TroveSandbox("trove-serve-other")
        ok(other.trove("clone", remote, "c", "--include", "nothing/*"), "partial clone")
        try FileManager.default.moveItem(atPath: remote, toPath: remote + "-gone")
        let r = other.trove(["serve", "toy", "--listen", "127.0.0.1:0"], cwd: other.path("c"))
        XCTAssertEqual(r.status, 3, r.stderr)
        XCTAssertTrue(r.stderr.contains("weights.npz") && r.stderr.contains("neither here nor on any remote"), r.stderr)
        XCTAssertFalse(r.stdout.contains("trove serve:"), "it never listened")
    }

    func testServeK8sPrintsADeploymentAndServiceThatValidate() throws {
        let s = TroveSandbox("trove-serve-k8s")
        guard s.shell("command -v kubernetes-validate").status == 0 else { throw XCTSkip("kubernetes-validate is not installed: bash scripts/deps.sh") }
        let r = s.trove(["serve", "toy@prod", "--k8s", "--image", "reg/trove:1", "--store-url", "http://trove.svc:8470/p",
                         "--token-secret", "trove-token", "--replicas", "2", "--workers", "4", "--max-batch", "8", "--gpus", "1"])
        ok(r, "serve --k8s")
        s.write("serve.yaml", Array(r.stdout.utf8))
        ok(s.shell("kubernetes-validate --strict serve.yaml"), "kubernetes-validate")
        XCTAssertTrue(r.stdout.contains("\"kind\" : \"Deployment\"") && r.stdout.contains("\"kind\" : \"Service\""), r.stdout)
        XCTAssertTrue(r.stdout.contains("/v2/health/ready") && r.stdout.contains("trove-token") && r.stdout.contains("'--max-batch' '8'"), r.stdout)
        XCTAssertEqual(s.trove(["serve", "toy", "--k8s", "--image", "x"]).status, 2, "--store-url is required")
    }

    func testWhereAVersionIsServedShowsInItsLineageHereAndOnTheDaemonUntilTheServerStops() throws {
        let s = try modelStore()
        let d = try DaemonProcess(root: s.temp.sub("daemon"), environment: s.environment)
        try d.createProject("p")
        let write = try d.token("p", role: "write"), read = try d.token("p", role: "read")
        ok(s.trove("remote", "add", "origin", d.url("p")), "remote")
        s.extraEnvironment["TROVE_TOKEN"] = write
        ok(s.trove("push", "origin", "models/*"), "push")
        func served() -> [[String: Any]] {
            let r = s.shell("curl -s -H 'Authorization: Bearer \(read)' \(d.base)/api/v1/projects/p/registry/toy/versions/1")
            return ((try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any])?["served"] as? [[String: Any]] ?? []
        }
        XCTAssertTrue(served().isEmpty)
        let (p, url) = try serve(s, ["--public-url", "http://models.example:9000"])
        var list: [[String: Any]] = []
        for _ in 0..<100 where list.isEmpty { list = served(); usleep(50_000) }
        XCTAssertEqual(list.first?["url"] as? String, "http://models.example:9000", "\(list)")
        XCTAssertEqual(list.first?["version"] as? Int, 1)
        XCTAssertEqual(s.shell("curl -s -o /dev/null -w '%{http_code}' \(url)/v2/health/live").stdout, "200")
        let lineage = s.trove("model", "lineage", "toy@v1")
        ok(lineage, "lineage")
        XCTAssertTrue(lineage.stdout.contains("→ served at http://models.example:9000"), lineage.stdout)
        // A read token may not announce; a malformed announcement is refused.
        let refused = s.shell("curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Authorization: Bearer \(read)' -d '{\"version\": 1, \"url\": \"http://x:1\"}' \(d.base)/api/v1/projects/p/registry/toy/served/other")
        XCTAssertEqual(refused.stdout, "403")
        let bad = s.shell("curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Authorization: Bearer \(write)' -d '{\"version\": 1, \"url\": \"javascript:alert(1)\"}' \(d.base)/api/v1/projects/p/registry/toy/served/other")
        XCTAssertEqual(bad.stdout, "400")
        let missing = s.shell("curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Authorization: Bearer \(write)' -d '{\"version\": 7, \"url\": \"http://x:1\"}' \(d.base)/api/v1/projects/p/registry/toy/served/other")
        XCTAssertEqual(missing.stdout, "404")
        XCTAssertEqual(served().count, 1)
        // A clean stop withdraws it, here and on the daemon.
        kill(p.process.processIdentifier, SIGTERM)
        XCTAssertEqual(p.wait().status, 0)
        XCTAssertTrue(served().isEmpty)
        XCTAssertFalse(s.trove("model", "lineage", "toy@v1").stdout.contains("served at"))
    }

    func testFollowSwitchesToTheVersionTheAliasMovesToWithoutFailingARequest() throws {
        let publisher = try modelStore()
        ok(publisher.trove("model", "promote", "toy@v1", "prod"), "promote v1")
        let remote = publisher.temp.sub("shared")
        ok(publisher.trove("init", "--bare", "-q", remote), "bare")
        ok(publisher.trove("push", remote, "models/*"), "push v1")
        let server = TroveSandbox("trove-serve-follow")
        ok(server.trove("clone", remote, "c"), "clone")
        server.extraEnvironment["TROVE_PROGRESS"] = "0"
        let port = SSHServer.freePort()
        let p = server.start(["serve", "toy@prod", "--listen", "127.0.0.1:\(port)", "--follow", "--follow-interval", "0.3"], cwd: server.path("c"))
        for _ in 0..<300 where !SSHServer.accepts(port) { usleep(20_000) }
        let url = "http://127.0.0.1:\(port)"
        // A steady load while the alias moves: every answer 200, the version switches to 2.
        let loop = "for i in $(seq 60); do curl -s -o r$i.json -w '%{http_code}\\n' -X POST \(url)/v2/models/toy/infer -d '\(good)'; sleep 0.1; done"
        let shell = Process()
        shell.executableURL = URL(fileURLWithPath: "/bin/sh")
        shell.arguments = ["-c", loop + " > codes.txt"]
        shell.currentDirectoryURL = URL(fileURLWithPath: server.work)
        try shell.run()
        usleep(1_000_000)
        ok(publisher.shell("python3 -c \"import numpy as np; np.savez('toy/weights.npz', W=2 * np.arange(8, dtype=np.float32).reshape(4, 2), b=np.array([0.5, -0.5], dtype=np.float32))\""), "v2 weights")
        ok(publisher.trove("model", "import-hf", "toy", "--name", "toy"), "publish v2")
        ok(publisher.trove("model", "promote", "toy@v2", "prod", "--expect", "v1"), "promote v2")
        ok(publisher.trove("push", remote, "models/*"), "push v2")
        shell.waitUntilExit()
        let codes = try String(contentsOfFile: server.path("codes.txt"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(codes.count, 60)
        XCTAssertTrue(codes.allSatisfy { $0 == "200" }, "every request answered during the switch: \(codes)")
        let last = try String(contentsOfFile: server.path("r60.json"), encoding: .utf8)
        XCTAssertTrue(last.contains("\"model_version\":\"2\"") && last.contains("80.5"), "the last answers come from v2 (y doubled): \(last)")
        let firstAnswer = try String(contentsOfFile: server.path("r1.json"), encoding: .utf8)
        XCTAssertTrue(firstAnswer.contains("\"model_version\":\"1\""), firstAnswer)
        kill(p.process.processIdentifier, SIGTERM)
        XCTAssertEqual(p.wait().status, 0)
    }
}
