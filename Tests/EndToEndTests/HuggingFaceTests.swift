import Foundation
import TroveCore
import TroveStore
import TroveTestSupport
import XCTest

/// The real `huggingface_hub` client, unchanged, downloading a Trove model version from a real
/// daemon (`HF_ENDPOINT=http://HOST:PORT/hf`, repo `PROJECT/NAME`).
final class HuggingFaceTests: XCTestCase {
    func ok(_ r: ProcessResult, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 0, "\(what): \(r.stdout)\n\(r.stderr)", file: file, line: line)
    }

    /// Requests of a route the daemon counted (its /metrics).
    func count(_ s: TroveSandbox, _ d: DaemonProcess, route: String) -> Int {
        let text = s.shell("curl -s \(d.base)/metrics").stdout
        return text.split(separator: "\n").filter { $0.hasPrefix("trove_http_requests_total{route=\"\(route)\"") }
            .compactMap { Int($0.split(separator: " ").last ?? "") }.reduce(0, +)
    }

    func testTheHuggingFaceClientDownloadsAVersionByteForByteAndThenFromItsCache() throws {
        let s = TroveSandbox("trove-hf")
        guard s.shell("python3 -c 'import huggingface_hub'").status == 0 else {
            throw XCTSkip("huggingface_hub is not installed (scripts/deps.sh installs it)")
        }
        let d = try DaemonProcess(root: s.temp.sub("daemon"), environment: s.environment)
        try d.createProject("p")
        try d.createProject("q")
        let token = try d.token("p", role: "read"), write = try d.token("p", role: "write"), other = try d.token("q", role: "read")
        ok(s.trove("init", "-q"), "init")
        // A snapshot as snapshot_download leaves it: config, a 101 MiB weights file, a nested file, a card.
        ok(s.shell("mkdir -p snap/tokenizer && echo '{\"hidden\": 4}' > snap/config.json && head -c 105906176 /dev/urandom > snap/model.safetensors"
                    + " && echo vocab > snap/tokenizer/vocab.txt && printf '# Toy\\n' > snap/README.md && mkdir -p snap/.cache && echo x > snap/.cache/lock"), "snapshot")
        ok(s.trove("model", "import-hf", "snap", "--name", "toy", "--alias", "prod"), "import-hf")
        let show = s.trove("model", "show", "toy", "--json").stdout
        XCTAssertFalse(show.contains(".cache"), "the client's cache folder is not imported")
        ok(s.trove("remote", "add", "origin", d.url("p")), "remote")
        s.extraEnvironment["TROVE_TOKEN"] = write
        ok(s.trove("push", "origin", "models/*"), "push")

        let script = """
            import hashlib, os, sys
            from huggingface_hub import snapshot_download, hf_hub_download
            cache = sys.argv[1]
            p = snapshot_download(repo_id="p/toy", cache_dir=cache)
            for name in ["config.json", "model.safetensors", "tokenizer/vocab.txt", "README.md"]:
                print(name, hashlib.sha256(open(os.path.join(p, name), "rb").read()).hexdigest())
            f = hf_hub_download(repo_id="p/toy", filename="model.safetensors", revision="prod", cache_dir=cache)
            print("prod", hashlib.sha256(open(f, "rb").read()).hexdigest())
            """
        s.write("client.py", Array(script.utf8))
        let env = "HF_ENDPOINT=\(d.base)/hf HF_TOKEN=\(token) HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_PROGRESS_BARS=1"
        let first = s.shell("\(env) python3 client.py cache")
        ok(first, "first download")
        let sums = s.shell("cd snap && sha256sum config.json model.safetensors tokenizer/vocab.txt README.md").stdout
        for line in sums.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            XCTAssertTrue(first.stdout.contains("\(parts[1]) \(parts[0])"), "\(parts[1]) differs:\n\(first.stdout)")
        }
        XCTAssertTrue(first.stdout.contains("prod " + (sums.split(separator: "\n")[1].split(separator: " ").first ?? "")), first.stdout)
        // Again: the client asks (HEAD) and finds every file in its cache by the ETag: no GET.
        let gets = count(s, d, route: "hf-get")
        XCTAssertEqual(gets, 4, "one GET per file the first time")
        ok(s.shell("\(env) python3 client.py cache"), "second download")
        XCTAssertEqual(count(s, d, route: "hf-get"), gets, "the second call is served from the client's cache")
        XCTAssertGreaterThan(count(s, d, route: "hf-head"), 4)

        // What the client's error handling reads: X-Error-Code, and nothing of p for q's token.
        func head(_ path: String, _ tok: String?) -> (Int, String) {
            let auth = tok.map { "-H 'Authorization: Bearer \($0)'" } ?? ""
            let r = s.shell("curl -s -o /dev/null -D - -I \(auth) '\(d.base)/hf/\(path)'").stdout
            let status = Int(r.split(separator: " ").dropFirst().first ?? "") ?? 0
            let code = r.split(separator: "\r\n").first { $0.lowercased().hasPrefix("x-error-code:") }.map { String($0.split(separator: " ").last ?? "") } ?? ""
            return (status, code)
        }
        XCTAssertEqual(head("p/toy/resolve/main/config.json", token).0, 200)
        XCTAssertEqual(head("p/toy/resolve/main/config.json", other).1, "RepoNotFound")
        XCTAssertEqual(head("p/toy/resolve/main/config.json", other).0, 404)
        XCTAssertEqual(head("p/toy/resolve/main/config.json", nil).0, 401)
        XCTAssertEqual(head("p/toy/resolve/v7/config.json", token).1, "RevisionNotFound")
        XCTAssertEqual(head("p/toy/resolve/main/nope.bin", token).1, "EntryNotFound")
        XCTAssertEqual(head("p/nosuch/resolve/main/config.json", token).1, "RepoNotFound")
        XCTAssertEqual(head("p/toy/resolve/main/tokenizer/..%2F..%2Fconfig.json", token).0, 400)
        let leak = s.shell("curl -s -H 'Authorization: Bearer \(other)' '\(d.base)/hf/api/models/p/toy/revision/main'").stdout
        XCTAssertFalse(leak.contains("model.safetensors"), leak)

        // The zoo in the JSON API: the list, the version with its card and files; nothing for q's token.
        let list = s.shell("curl -s -H 'Authorization: Bearer \(token)' '\(d.base)/api/v1/projects/p/registry?kind=model'").stdout
        XCTAssertTrue(list.contains("\"name\":\"toy\"") && list.contains("\"prod\":1"), list)
        let version = s.shell("curl -s -H 'Authorization: Bearer \(token)' '\(d.base)/api/v1/projects/p/registry/toy/versions/prod'").stdout
        XCTAssertTrue(version.contains("\"card\":\"# Toy\\n\"") && version.contains("model.safetensors") && version.contains("\"lineage\""), version)
        XCTAssertEqual(s.shell("curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer \(other)' '\(d.base)/api/v1/projects/p/registry'").stdout, "404")
        XCTAssertEqual(s.shell("curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer \(token)' '\(d.base)/api/v1/projects/p/registry/toy/versions/v9'").stdout, "404")
    }
}
