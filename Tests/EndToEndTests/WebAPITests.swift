import Foundation
import TroveCore
import TroveRuns
import TroveStore
import TroveTestSupport
import XCTest

/// The daemon's JSON API, live runs, the web UI in a real headless Chromium and the MLflow
/// endpoint with the real `mlflow` client: a real `trove daemon`, real `trove run`s, curl.
final class WebAPITests: XCTestCase {
    struct HTTP {
        var status: Int
        var headers: [String: String]
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:] }
    }

    /// One request through curl: status, headers (lowercased names) and body.
    func http(_ s: TroveSandbox, _ method: String, _ url: String, token: String? = nil, headers: [String] = [], body: String? = nil) -> HTTP {
        let out = s.temp.path + "/curl-\(UUID().uuidString)"
        var args = ["curl", "-s", "-g", "-X", method, "-D", out + ".h", "-o", out + ".b", "-w", "%{http_code}", url]
        if let token { args += ["-H", "Authorization: Bearer \(token)"] }
        for h in headers { args += ["-H", h] }
        if let body { args += ["-H", "Content-Type: application/json", "--data-binary", body] }
        let r = Runner.run("/usr/bin/env", args, cwd: s.work, environment: s.environment)
        var hs: [String: String] = [:]
        for line in ((try? String(contentsOfFile: out + ".h", encoding: .utf8)) ?? "").split(separator: "\r\n") {
            if let c = line.firstIndex(of: ":") { hs[line[..<c].lowercased()] = line[line.index(after: c)...].trimmingCharacters(in: .whitespaces) }
        }
        let b = (try? FileIO.readFile(out + ".b")) ?? []
        return HTTP(status: Int(r.stdout) ?? -1, headers: hs, body: b)
    }

    func checked(_ r: ProcessResult, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 0, "\(what): \(r.stderr)", file: file, line: line)
    }

    /// A daemon with project `p` holding a commit (a file with an HTML-like name, a 300 KB file)
    /// and one recorded run, plus project `q`; tokens of every role.
    struct World {
        let s: TroveSandbox
        let d: DaemonProcess
        let read, write, admin, other: String
        let big: [UInt8]
        let xssFile = "docs/\"><img src=x onerror=alert(1)>.txt"
    }

    func world() throws -> World {
        let s = TroveSandbox("trove-web")
        let d = try DaemonProcess(root: s.temp.sub("daemon"), environment: s.environment)
        try d.createProject("p")
        try d.createProject("q")
        let w = World(s: s, d: d, read: try d.token("p", role: "read"), write: try d.token("p", role: "write"),
                      admin: try d.token("p", role: "admin"), other: try d.token("q", role: "write"),
                      big: (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) })
        checked(s.trove("init"), "init")
        try FileManager.default.createDirectory(atPath: s.path("docs"), withIntermediateDirectories: true)
        s.write(w.xssFile, Array("<b>not bold</b>\n".utf8))
        s.write("data/big.bin", w.big)
        s.write("readme.txt", Array("hello\n".utf8))
        checked(s.trove("add", "."), "add")
        checked(s.trove("commit", "-m", "v1"), "commit")
        checked(s.trove("remote", "add", "origin", d.url("p")), "remote add")
        s.extraEnvironment["TROVE_TOKEN"] = w.write
        checked(s.trove("push", "origin", "main"), "push")
        return w
    }

    func testTheAPIServesFilesRunsAndRefusesWhatTokensMayNotSee() throws {
        let w = try world()
        let (s, d) = (w.s, w.d)
        let api = d.base + "/api/v1/projects/p"
        // A run recorded and pushed: it streams while it runs, then arrives by push.
        checked(s.trove("run", "-q", "-p", "lr=0.01", "--name", "<script>alert(1)</script>", "--",
                        "sh", "-c", "echo '{\"step\": 1, \"loss\": 0.5}' >> $TROVE_METRICS_FILE; echo hello-log"), "run")
        checked(s.trove("push", "origin", "runs/*"), "push runs")

        // Projects: only the token's own.
        let projects = http(s, "GET", d.base + "/api/v1/projects", token: w.read).json["projects"] as? [[String: Any]]
        XCTAssertEqual(projects?.map { $0["name"] as? String }, ["p"])
        // Tree and files, with Range.
        let tree = http(s, "GET", api + "/tree/main", token: w.read)
        XCTAssertEqual(tree.status, 200, tree.text)
        XCTAssertEqual((tree.json["entries"] as? [[String: Any]])?.compactMap { $0["name"] as? String }, ["data", "docs", "readme.txt"])
        let enc = w.xssFile.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let listing = http(s, "GET", api + "/tree/main?path=docs", token: w.read)
        XCTAssertEqual((listing.json["entries"] as? [[String: Any]])?.first?["name"] as? String, FileIO.basename(w.xssFile))
        XCTAssertEqual(http(s, "GET", api + "/file/main?path=" + enc, token: w.read).text, "<b>not bold</b>\n")
        let ranged = http(s, "GET", api + "/file/heads%2Fmain?path=data/big.bin", token: w.read, headers: ["Range: bytes=100000-100099"])
        XCTAssertEqual(ranged.status, 206)
        XCTAssertEqual(ranged.body, Array(w.big[100_000..<100_100]))
        XCTAssertEqual(ranged.headers["content-range"], "bytes 100000-100099/300000")
        let suffix = http(s, "GET", api + "/file/main?path=data/big.bin", token: w.read, headers: ["Range: bytes=-10"])
        XCTAssertEqual(suffix.body, Array(w.big.suffix(10)))
        XCTAssertEqual(http(s, "GET", api + "/file/main?path=data/big.bin", token: w.read).body, w.big)
        XCTAssertEqual(http(s, "GET", api + "/file/main?path=data/big.bin", token: w.read, headers: ["Range: bytes=300000-"]).status, 416)
        for bad in ["../readme.txt", "data/../readme.txt", "/readme.txt", "data//big.bin", "./readme.txt"] {
            let r = http(s, "GET", api + "/file/main?path=" + bad.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!, token: w.read)
            XCTAssertEqual(r.status, 400, "\(bad): \(r.text)")
            XCTAssertEqual((r.json["error"] as? [String: Any])?["code"] as? String, "invalid_input")
        }
        XCTAssertEqual(http(s, "GET", api + "/tree/main?path=..", token: w.read).status, 400)
        let history = http(s, "GET", api + "/commits?rev=main&path=readme.txt", token: w.read).json["commits"] as? [[String: Any]]
        XCTAssertEqual(history?.count, 1)

        // Runs: listed with params and metrics, filter, sort; the run page's pieces.
        let runs = http(s, "GET", api + "/runs?filter=params.lr%3C0.02&sort=-metrics.loss", token: w.read).json
        XCTAssertEqual(runs["total"] as? Int, 1)
        let run = (runs["runs"] as? [[String: Any]])?.first ?? [:]
        XCTAssertEqual(run["name"] as? String, "<script>alert(1)</script>")
        XCTAssertEqual((run["metrics"] as? [String: Any])?["loss"] as? Double, 0.5)
        let id = run["id"] as? String ?? ""
        let detail = http(s, "GET", api + "/runs/" + id, token: w.read).json
        XCTAssertEqual(detail["status"] as? String, "succeeded")
        XCTAssertEqual(detail["metric_names"] as? [String], ["loss"])
        XCTAssertEqual(http(s, "GET", api + "/runs/\(id)/metrics/loss", token: w.read).json["values"] as? [Double], [0.5])
        XCTAssertEqual(http(s, "GET", api + "/runs/\(id)/logs?stream=stdout", token: w.read).json["text"] as? String, "hello-log\n")
        XCTAssertEqual(http(s, "GET", api + "/runs?filter=params.lr%3E0.5", token: w.read).json["total"] as? Int, 0)

        // Roles: a read token may not stop a run or list members; a run that ended cannot be stopped.
        XCTAssertEqual(http(s, "POST", api + "/runs/\(id)/cancel", token: w.read, body: "{}").status, 403)
        XCTAssertEqual(http(s, "POST", api + "/runs/\(id)/cancel", token: w.write, body: "{}").status, 409)
        XCTAssertEqual(http(s, "GET", api + "/members", token: w.write).status, 403)
        let made = http(s, "POST", api + "/members", token: w.admin, body: "{\"role\": \"read\", \"expires_in\": \"1d\"}")
        XCTAssertEqual(made.status, 201, made.text)
        let newToken = made.json["token"] as? String ?? ""
        XCTAssertEqual(http(s, "GET", api, token: newToken).status, 200)
        XCTAssertEqual(http(s, "DELETE", api + "/members/" + (made.json["id"] as? String ?? ""), token: w.admin).status, 204)
        XCTAssertEqual(http(s, "GET", api, token: newToken).status, 401, "a revoked token stops working at once")

        // No token, a wrong token, a token of another project: nothing of p through any route.
        let routes = ["GET /api/v1/projects/p", "GET /api/v1/projects/p/refs", "GET /api/v1/projects/p/commits?rev=main",
                      "GET /api/v1/projects/p/commits/main", "GET /api/v1/projects/p/tree/main", "GET /api/v1/projects/p/file/main?path=readme.txt",
                      "GET /api/v1/projects/p/runs", "GET /api/v1/projects/p/runs/\(id)", "GET /api/v1/projects/p/runs/\(id)/metrics/loss",
                      "GET /api/v1/projects/p/runs/\(id)/logs", "GET /api/v1/projects/p/sweeps", "GET /api/v1/projects/p/members",
                      "GET /api/v1/projects/p/events", "POST /api/v1/projects/p/runs/\(id)/cancel",
                      "GET /p/api/2.0/mlflow/experiments/get?experiment_id=0", "POST /p/api/2.0/mlflow/runs/search",
                      "GET /p/api/2.0/mlflow/runs/get?run_id=\(id)", "GET /p/api/2.0/mlflow/metrics/get-history?run_id=\(id)&metric_key=loss",
                      "GET /p/api/2.0/mlflow-artifacts/artifacts?path=0/\(id)/artifacts", "GET /p/v1/refs"]
        for route in routes {
            let parts = route.split(separator: " ").map(String.init)
            let body = parts[0] == "POST" ? "{}" : nil
            let other = http(s, parts[0], d.base + parts[1], token: w.other, body: body)
            XCTAssertTrue([403, 404].contains(other.status), "\(route) with project q's token: \(other.status) \(other.text)")
            XCTAssertFalse(other.text.contains("loss") || other.text.contains("hello") || other.text.contains(id), "\(route) leaks: \(other.text)")
            XCTAssertEqual(http(s, parts[0], d.base + parts[1], body: body).status, 401, "\(route) without a token")
            XCTAssertEqual(http(s, parts[0], d.base + parts[1], token: "trv_" + String(repeating: "0", count: 64), body: body).status, 401, route)
        }
        XCTAssertEqual(d.trove(["daemon", "project", "create", "api", "--root", d.root]).status, 2, "route names are not project names")
    }

    func testABrowserSessionNeedsItsCSRFTokenForEveryChange() throws {
        let w = try world()
        let (s, d) = (w.s, w.d)
        let login = http(s, "POST", d.base + "/api/v1/session", body: "{\"token\": \"\(w.write)\"}")
        XCTAssertEqual(login.status, 200, login.text)
        let cookie = login.headers["set-cookie"] ?? ""
        XCTAssertTrue(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), cookie)
        let session = "Cookie: " + (cookie.split(separator: ";").first.map(String.init) ?? "")
        let csrf = login.json["csrf"] as? String ?? ""
        XCTAssertEqual(csrf.count, 48)
        XCTAssertEqual(http(s, "GET", d.base + "/api/v1/projects/p", headers: [session]).status, 200, "a GET needs no CSRF token")
        let url = d.base + "/api/v1/projects/p/runs/20261127-000000-0000/cancel"
        let refused = http(s, "POST", url, headers: [session], body: "{}")
        XCTAssertEqual(refused.status, 403)
        XCTAssertEqual((refused.json["error"] as? [String: Any])?["code"] as? String, "csrf")
        XCTAssertEqual(http(s, "POST", url, headers: [session, "X-CSRF-Token: nope"], body: "{}").status, 403)
        XCTAssertEqual(http(s, "POST", url, headers: [session, "X-CSRF-Token: " + csrf], body: "{}").status, 404, "with the token the request goes through (no such run)")
        XCTAssertEqual(http(s, "POST", d.base + "/api/v1/session", body: "{\"token\": \"trv_nope\"}").status, 401)
        XCTAssertEqual(http(s, "DELETE", d.base + "/api/v1/session", headers: [session, "X-CSRF-Token: " + csrf]).status, 204)
        XCTAssertEqual(http(s, "GET", d.base + "/api/v1/projects/p", headers: [session]).status, 401, "logged out")
        // The page: no inline script, scripts only from the daemon.
        let page = http(s, "GET", d.base + "/")
        XCTAssertEqual(page.status, 200)
        XCTAssertTrue(page.headers["content-security-policy"]?.contains("script-src 'self'") ?? false)
        XCTAssertFalse(page.text.contains("<script>"), "no inline script")
        XCTAssertEqual(http(s, "GET", d.base + "/ui/app.js").status, 200)
    }

    func testTheOpenAPIDocumentIsValidAndNamesEveryRoute() throws {
        let s = TroveSandbox()
        let routes = ["POST /api/v1/session", "GET /api/v1/session", "DELETE /api/v1/session", "GET /api/v1/projects",
                      "GET /api/v1/projects/{project}", "GET /api/v1/projects/{project}/refs", "GET /api/v1/projects/{project}/commits",
                      "GET /api/v1/projects/{project}/commits/{rev}", "GET /api/v1/projects/{project}/tree/{rev}",
                      "GET /api/v1/projects/{project}/file/{rev}", "GET /api/v1/projects/{project}/runs", "GET /api/v1/projects/{project}/runs/{run}",
                      "GET /api/v1/projects/{project}/runs/{run}/metrics/{name}", "GET /api/v1/projects/{project}/runs/{run}/logs",
                      "GET /api/v1/projects/{project}/runs/{run}/diff", "POST /api/v1/projects/{project}/runs/{run}/cancel",
                      "POST /api/v1/projects/{project}/runs/{run}/live", "GET /api/v1/projects/{project}/sweeps",
                      "GET /api/v1/projects/{project}/sweeps/{sweep}", "GET /api/v1/projects/{project}/members",
                      "POST /api/v1/projects/{project}/members", "DELETE /api/v1/projects/{project}/members/{id}",
                      "GET /api/v1/projects/{project}/events", "GET /api/v1/projects/{project}/registry",
                      "GET /api/v1/projects/{project}/registry/{name}", "GET /api/v1/projects/{project}/registry/{name}/versions/{version}",
                      "PUT /api/v1/projects/{project}/registry/{name}/served/{instance}", "DELETE /api/v1/projects/{project}/registry/{name}/served/{instance}"]
        let r = Runner.run("/usr/bin/env", ["python3", "Tests/web/check_openapi.py", "--spec", "Docs/openapi.yaml"] + routes,
                           cwd: projectRoot, environment: s.environment)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
    }

    /// Points sent while the daemon was down, and across a daemon restart, arrive once each.
    func testLiveMetricsSurviveADaemonRestartAndAnOfflineClientWithoutDuplicates() throws {
        let w = try world()
        let (s, d) = (w.s, w.d)
        checked(s.trove("config", "runs.live-interval", "0.3"), "config")
        _ = d.stop()
        // 40 points over ~4 s: the daemon is down for the first second, killed (-9) in the middle.
        let run = s.start(["run", "-q", "--", "python3", "-c", """
            import json, os, time
            for i in range(40):
                with open(os.environ["TROVE_METRICS_FILE"], "a") as f: f.write(json.dumps({"step": i, "loss": 1.0 / (i + 1)}) + "\\n")
                time.sleep(0.1)
            """])
        usleep(1_000_000)
        try d.start()
        usleep(1_200_000)
        d.kill9()
        usleep(600_000)
        try d.start()
        let r = run.wait()
        XCTAssertEqual(r.status, 0, r.stderr)
        // Before any push: what the daemon holds is what the live channel delivered.
        let list = http(s, "GET", d.base + "/api/v1/projects/p/runs", token: w.read).json["runs"] as? [[String: Any]] ?? []
        XCTAssertEqual(list.count, 1)
        XCTAssertEqual(list.first?["status"] as? String, "succeeded")
        let id = list.first?["id"] as? String ?? ""
        let series = http(s, "GET", d.base + "/api/v1/projects/p/runs/\(id)/metrics/loss?points=100000", token: w.read).json
        XCTAssertEqual(series["steps"] as? [Int], Array(0..<40), "every point once, in order")
        XCTAssertEqual(series["count"] as? Int, 40)
        // Then the push: the recorded run replaces the live one.
        checked(s.trove("push", "origin", "runs/*"), "push")
        let after = http(s, "GET", d.base + "/api/v1/projects/p/runs/\(id)", token: w.read).json
        XCTAssertEqual(after["live"] as? Bool, false)
        XCTAssertEqual((after["commit"] as? String)?.count, 64)
        XCTAssertFalse(FileIO.exists(d.root + "/projects/p/live/" + id), "the live folder goes once the run is recorded")
    }

    /// The web UI in a real headless Chromium: log in, sort, filter, open a run and its chart,
    /// Stop a running run and see it cancelled, escaping, and the 10,000-run and 200-run bars.
    func testTheWebUIInARealBrowser() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver") else {
            throw XCTSkip("chromium-driver is not installed (scripts/deps.sh installs it)")
        }
        let w = try world()
        let (s, d) = (w.s, w.d)
        checked(s.trove("config", "runs.live-interval", "0.5"), "config")
        for lr in ["0.001", "0.1"] {
            checked(s.trove("run", "-q", "-p", "lr=" + lr, "-p", "batch=32", "--", "sh", "-c",
                            "for i in 1 2 3 4 5; do awk -v i=$i 'BEGIN { printf \"{\\\"step\\\": %d, \\\"loss\\\": %f}\\n\", i, 1 / (i + \(lr)) }' >> $TROVE_METRICS_FILE; done"), "run")
        }
        checked(s.trove("run", "-q", "--name", "<script>alert(1)</script>", "-p", "note=<img src=x onerror=alert(2)>", "--", "true"), "xss run")
        // A sweep whose worst members early stopping cancels (its exit status says so).
        _ = s.trove("sweep", "-q", "-p", "lr=0.001,0.01,1,10", "--parallel", "4", "--early-stop", "median:loss,min-step=3", "--", "sh", "-c",
                    "for i in 1 2 3 4 5 6 7 8 9 10; do echo \"{\\\"step\\\": $i, \\\"loss\\\": $TROVE_PARAM_LR}\" >> $TROVE_METRICS_FILE; sleep 0.3; done")
        let sweep = (try? FileIO.listDirectory(s.work + "/.trove/refs/sweeps"))?.first ?? ""
        XCTAssertFalse(sweep.isEmpty, "the sweep was recorded")
        // A dataset, a run that reads it, a model published from the run with a hostile card.
        checked(s.trove("dataset", "publish", "toy-data", "docs", "--meta", "source=test"), "dataset")
        checked(s.trove("run", "-q", "--input", "d=toy-data@v1:docs", "--", "sh", "-c", "cat $TROVE_INPUT_D/* > $TROVE_OUTPUT_DIR/w.bin"), "training run")
        let trained = (s.json("runs", "--json") as? [[String: Any]])?.first?["id"] as? String ?? ""
        s.write("card.md", Array("# Toy model\n\n<script>alert(3)</script> <img src=x onerror=alert(4)> **bold** [x](javascript:alert(5))\n".utf8))
        checked(s.trove("model", "publish", "toy-model", "--from-run", trained, "--card", "card.md", "--alias", "prod"), "model")
        checked(s.trove("push", "origin", "runs/*", "sweeps/*", "models/*", "datasets/*"), "push")
        let xss = (s.json("runs", "--json") as? [[String: Any]])?.first { $0["name"] as? String == "<script>alert(1)</script>" }?["id"] as? String ?? ""
        // A run that goes on until stopped, streaming to the daemon.
        let long = s.start(["run", "-q", "--name", "long", "-p", "lr=0.5", "--", "python3", "-c", """
            import json, os, time
            for i in range(600):
                with open(os.environ["TROVE_METRICS_FILE"], "a") as f: f.write(json.dumps({"step": i, "loss": 1.0 / (i + 1)}) + "\\n")
                time.sleep(0.1)
            """])
        var running = ""
        for _ in 0..<100 where running.isEmpty {
            usleep(100_000)
            let r = http(s, "GET", d.base + "/api/v1/projects/p/runs?filter=status%3Drunning", token: w.read).json["runs"] as? [[String: Any]]
            running = r?.first?["id"] as? String ?? ""
        }
        XCTAssertFalse(running.isEmpty, "the live run reached the daemon")

        // The big project: 10,000 recorded runs, 200 of them with a 200-point curve.
        try d.createProject("big")
        let bigToken = try d.token("big", role: "read")
        let t = Date()
        defer { print("browser test setup and run: \(Date().timeIntervalSince(t)) s") }
        let ids = try WebAPITests.makeRuns(in: s, count: 10_000, withCurves: 200, points: 200)
        let t0 = Date()
        checked(s.trove(["push", d.root + "/projects/big", "runs/*"]), "push 10,000 runs")
        print("pushed 10,000 runs in \(Date().timeIntervalSince(t0)) s")
        try ids.prefix(200).joined(separator: ",").write(toFile: s.temp.path + "/compare.txt", atomically: true, encoding: .utf8)

        // Where toy-model v1 is served, as `trove serve` announces it (a hostile URL: the page must show it as text).
        let servedURL = "http://serve.example:8000/<img src=x onerror=alert(6)>"
        let announced = http(s, "PUT", d.base + "/api/v1/projects/p/registry/toy-model/served/test-host-1-8000", token: w.write,
                             body: String(decoding: try JSONSerialization.data(withJSONObject: ["version": 1, "url": servedURL, "host": "test-host", "workers": 2]), as: UTF8.self))
        XCTAssertEqual(announced.status, 200, announced.text)

        let shots = projectRoot + "/.build/screenshots"
        let r = Runner.run("/usr/bin/env", ["python3", "Tests/web/ui_test.py", "--url", d.base, "--token", w.write, "--project", "p", "--served-url", servedURL,
                                             "--shots", shots, "--running-run", running, "--xss-run", xss, "--xss-file", w.xssFile,
                                             "--filter", "params.lr < 0.01", "--big-project", "big", "--big-token", bigToken,
                                             "--sweep", sweep, "--admin-token", w.admin, "--xss-param-run", xss, "--model", "toy-model",
                                             "--compare-runs", "@" + s.temp.path + "/compare.txt"],
                           cwd: projectRoot, environment: s.environment)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        print(r.stdout)
        let end = long.wait()
        XCTAssertNotEqual(end.status, 0, "the stopped run ends with a failure status")
        let show = (s.json("runs", "show", running, "--json") as? [String: Any])?["metadata"] as? [String: Any]
        XCTAssertEqual(show?["run.status"] as? String, "cancelled")
        XCTAssertEqual(show?["run.stopped_by"] as? String, "stopped from the web UI")
    }

    /// The real `mlflow` client's fluent API, unchanged, against the daemon.
    func testTheMLflowClientLogsToTheDaemonUnchanged() throws {
        let s = TroveSandbox()
        guard Runner.run("/usr/bin/env", ["python3", "-c", "import mlflow"], cwd: s.work, environment: s.environment).status == 0 else {
            throw XCTSkip("the mlflow client is not installed (scripts/deps.sh installs mlflow-skinny)")
        }
        let d = try DaemonProcess(root: s.temp.sub("daemon"), environment: s.environment)
        try d.createProject("ml")
        try d.createProject("other")
        let token = try d.token("ml", role: "write")
        var env = s.environment
        env["MLFLOW_TRACKING_URI"] = d.url("ml")
        env["MLFLOW_TRACKING_TOKEN"] = token
        // Twice: the second run's record is written while the daemon has the project's packs loaded.
        _ = Runner.run("/usr/bin/env", ["python3", "Tests/web/mlflow_script.py"], cwd: projectRoot, environment: env)
        let r = Runner.run("/usr/bin/env", ["python3", "Tests/web/mlflow_script.py"], cwd: projectRoot, environment: env)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let id = r.stdout.split(separator: "\n").first { $0.hasPrefix("run_id=") }.map { String($0.dropFirst(7)) } ?? ""
        // The MLflow run is a Trove run of the project: params, metric series, the artifact.
        let run = http(s, "GET", d.base + "/api/v1/projects/ml/runs/" + id, token: token).json
        XCTAssertEqual(run["source"] as? String, "mlflow")
        XCTAssertEqual(run["status"] as? String, "succeeded")
        XCTAssertEqual((run["params"] as? [String: Any])?["optimizer"] as? String, "adam")
        XCTAssertEqual(http(s, "GET", d.base + "/api/v1/projects/ml/runs/\(id)/metrics/loss?points=100000", token: token).json["count"] as? Int, 1000)
        XCTAssertEqual((run["outputs"] as? [[String: Any]])?.first?["size"] as? Int, 10 << 20)
        // Another project's token sees nothing of it through the MLflow routes.
        let other = try d.token("other", role: "write")
        env["MLFLOW_TRACKING_TOKEN"] = other
        let search = http(s, "POST", d.base + "/ml/api/2.0/mlflow/runs/search", token: other, body: "{\"experiment_ids\": [\"0\", \"1\"]}")
        XCTAssertEqual(search.status, 404)
        XCTAssertFalse(search.text.contains(id))
    }

    /// Writes `count` recorded runs into the sandbox's store in one write session (what a
    /// sweep of that size leaves), `withCurves` of them with a `loss` series of `points`.
    static func makeRuns(in s: TroveSandbox, count: Int, withCurves: Int, points: Int) throws -> [String] {
        let store = try Store.open(root: s.work + "/.trove", workTree: s.work)
        let writer = ObjectWriter(store: store)
        var updates: [Refs.Update] = []
        var ids: [String] = []
        var rng = SystemRandomNumberGenerator()
        let optimizers = ["adam", "sgd", "adamw"]
        let emptyTree = try store.writeTrees([:], writer: writer).id
        for i in 0..<count {
            let id = String(format: "20260101-%06d-%04x", i, i & 0xffff)
            let lr = pow(10, Double.random(in: -5 ... -1, using: &rng))
            let batch = [16, 32, 64, 128][i % 4]
            let final = 0.05 + lr * 3 + Double(batch) / 1000 + Double.random(in: 0...0.05, using: &rng)
            var tree = emptyTree
            if i < withCurves {
                let series = MetricSeries(steps: (0..<points).map(Int64.init), values: (0..<points).map { final + 2 / Double($0 + 1) })
                let bytes = series.encode()
                let entry = Tree.Entry(name: "loss", kind: .file, id: try writer.put(.chunk, bytes), size: UInt64(bytes.count))
                tree = try store.writeTrees(["metrics/loss": entry], writer: writer).id
            }
            let meta = ["run.id": id, "run.status": i % 50 == 0 ? "failed" : "succeeded", "run.command": "python train.py",
                        "run.start": String(format: "2026-01-01T%02d:%02d:%02d.000Z", (i / 3600) % 24, (i / 60) % 60, i % 60),
                        "run.seconds": "\(60 + i % 100)", "param.lr": "\(lr)", "param.batch": "\(batch)", "param.optimizer": optimizers[i % 3],
                        "metric.loss.last": "\(final)", "metric.loss.min": "\(final)", "metric.loss.max": "\(final + 2)", "metric.loss.steps": "\(points)",
                        "metric.acc.last": "\(1 - final / 2)"]
            let c = Commit(tree: tree, parents: [], author: "bench", time: 1_767_225_600 + Int64(i), timezoneOffset: 0, kind: .run, metadata: meta, message: "run \(id)\n")
            updates.append(Refs.Update(ref: "runs/" + id, expected: nil, new: try writer.put(.commit, c.encode())))
            ids.append(id)
        }
        try writer.finish()
        try store.refs.updateAll(updates, message: "fixture")
        return ids
    }
}
