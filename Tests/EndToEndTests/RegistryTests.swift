import Foundation
import TroveCore
import TroveStore
import TroveTestSupport
import XCTest

/// `trove model` and `trove dataset`: versions, aliases, deprecation, lineage, NAME@vN as a
/// revision, and moving versions between stores — the built binary on real files.
final class RegistryTests: XCTestCase {
    func ok(_ r: ProcessResult, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 0, "\(what): \(r.stdout)\n\(r.stderr)", file: file, line: line)
    }

    func json(_ s: TroveSandbox, _ args: [String]) throws -> Any {
        let r = s.trove(args)
        ok(r, args.joined(separator: " "))
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8))
    }

    /// A dataset, a run that reads it and writes weights, a model published from the run.
    func world() throws -> (TroveSandbox, run: String) {
        let s = TroveSandbox("trove-registry")
        ok(s.trove("init", "-q"), "init")
        for i in 1...3 {
            try FileManager.default.createDirectory(atPath: s.path("data/train"), withIntermediateDirectories: true)
            s.write("data/train/\(i).txt", Array("sample \(i)\n".utf8))
        }
        ok(s.trove("dataset", "publish", "toy", "data/train", "--meta", "source=synthetic"), "dataset publish")
        ok(s.trove("run", "-q", "--input", "train=toy@v1:train", "-p", "lr=0.1", "--", "sh", "-c",
                   "cat $TROVE_INPUT_TRAIN/* > $TROVE_OUTPUT_DIR/weights.bin"), "run")
        let runs = try json(s, ["runs", "--json"]) as? [[String: Any]]
        let run = try XCTUnwrap(runs?.first?["id"] as? String)
        s.write("card.md", Array("# Toy\n\nA <b>toy</b> model.\n".utf8))
        ok(s.trove("model", "publish", "toy-model", "--from-run", run, "--card", "card.md", "--meta", "framework=none", "--alias", "staging"), "model publish")
        return (s, run)
    }

    func testAVersionRecordsItsFilesCardAndTheChainToTheDataThatTrainedIt() throws {
        let (s, run) = try world()
        let show = try XCTUnwrap(try json(s, ["model", "show", "toy-model@staging", "--json"]) as? [String: Any])
        XCTAssertEqual(show["version"] as? Int, 1)
        XCTAssertEqual(show["run"] as? String, run)
        XCTAssertEqual((show["files"] as? [[String: Any]])?.compactMap { $0["path"] as? String }, ["README.md", "weights.bin"])
        XCTAssertEqual(show["card"] as? String, "# Toy\n\nA <b>toy</b> model.\n")
        XCTAssertEqual((show["metadata"] as? [String: String])?["framework"], "none")
        // NAME@vN, @alias and @latest are revisions for every command.
        XCTAssertEqual(s.trove("cat", "toy-model@v1:weights.bin").stdout, "sample 1\nsample 2\nsample 3\n")
        XCTAssertEqual(s.trove("cat", "toy-model@staging:weights.bin").stdout, "sample 1\nsample 2\nsample 3\n")
        ok(s.trove("restore", "toy@latest", "--to", s.temp.sub("restored")), "restore")
        XCTAssertEqual(try String(contentsOfFile: s.temp.path + "/restored/train/2.txt", encoding: .utf8), "sample 2\n")
        XCTAssertEqual(s.trove("cat", "toy-model@v9:weights.bin").status, 3)
        // Lineage: model version → run (params, command) → the dataset version it read.
        let chain = try XCTUnwrap(try json(s, ["model", "lineage", "toy-model@v1", "--json"]) as? [[String: Any]])
        XCTAssertEqual(chain.map { $0["kind"] as? String }, ["model", "run", "dataset"])
        XCTAssertEqual((chain[1]["detail"] as? [String: String])?["params"], "lr=0.1")
        XCTAssertTrue((chain[2]["label"] as? String)?.contains("dataset toy@v1") ?? false, "\(chain[2])")
        let text = s.trove("model", "lineage", "toy-model").stdout
        XCTAssertTrue(text.contains("← run \(run)") && text.contains("dataset toy@v1"), text)
        // A second version from files: its parent is v1; list shows both and the alias.
        s.write("weights.bin", Array("v2 weights".utf8))
        ok(s.trove("model", "publish", "toy-model", "weights.bin", "-m", "retrained"), "publish v2")
        let list = try XCTUnwrap(try json(s, ["model", "list", "--json"]) as? [[String: Any]])
        XCTAssertEqual(list.first?["latest"] as? Int, 2)
        XCTAssertEqual((list.first?["aliases"] as? [String: Int])?["staging"], 1)
        let log = s.trove("log", "models/toy-model/v2").stdout
        XCTAssertTrue(log.contains("toy-model v2: retrained") && log.contains("toy-model v1"), log)
    }

    func testVersionsAreNeverReplacedAndAliasesMoveOnlyByCompareAndSwap() throws {
        let (s, run) = try world()
        let again = s.trove("model", "publish", "toy-model", "--from-run", run, "--version", "1")
        XCTAssertEqual(again.status, 5, again.stderr)
        XCTAssertTrue(again.stderr.contains("v1 exists already"), again.stderr)
        s.write("w2", Array("two".utf8))
        ok(s.trove("model", "publish", "toy-model", "w2"), "v2")
        // --expect: the alias must be where the caller last saw it.
        let stale = s.trove("model", "promote", "toy-model@v2", "staging", "--expect", "v2")
        XCTAssertEqual(stale.status, 5, stale.stderr)
        XCTAssertTrue(stale.stderr.contains("is at v1, not v2"), stale.stderr)
        ok(s.trove("model", "promote", "toy-model@v2", "staging", "--expect", "v1"), "promote")
        XCTAssertEqual(s.trove("cat", "toy-model@staging:w2").stdout, "two")
        ok(s.trove("model", "promote", "toy-model@v2", "prod", "--expect", "none"), "new alias")
        // A deprecated version cannot be promoted; deprecating twice is refused.
        ok(s.trove("model", "deprecate", "toy-model@v1", "--reason", "trained on bad data"), "deprecate")
        let refused = s.trove("model", "promote", "toy-model@v1", "prod")
        XCTAssertEqual(refused.status, 5)
        XCTAssertTrue(refused.stderr.contains("deprecated (trained on bad data)"), refused.stderr)
        XCTAssertEqual(s.trove("model", "deprecate", "toy-model@v1", "--reason", "x").status, 5)
        XCTAssertEqual(s.trove("cat", "toy-model@prod:w2").stdout, "two", "prod did not move")
        // Alias history: the ref's reflog.
        let reflog = try String(contentsOfFile: s.work + "/.trove/logs/refs/models/toy-model/alias/staging", encoding: .utf8)
        XCTAssertEqual(reflog.split(separator: "\n").count, 2, reflog)
        // Bad names and aliases.
        XCTAssertEqual(s.trove("model", "publish", "../x", "w2").status, 2)
        XCTAssertEqual(s.trove("model", "promote", "toy-model@v2", "v3").status, 2)
    }

    func testModelsTravelToAnotherStoreAndPullWritesAVersion() throws {
        let (s, _) = try world()
        let remote = s.temp.sub("shared")
        ok(s.trove("init", "--bare", "-q", remote), "init --bare")
        ok(s.trove("push", remote, "models/*", "datasets/*", "runs/*"), "push registry")
        // Another user: pulls the staging model into a folder with only the chunks it needs.
        let other = TroveSandbox("trove-registry-other")
        ok(other.trove("init", "-q"), "init")
        ok(other.trove("remote", "add", "origin", remote), "remote add")
        ok(other.trove("model", "pull", "toy-model@staging", "--to", "weights"), "model pull")
        XCTAssertEqual(try String(contentsOfFile: other.path("weights/weights.bin"), encoding: .utf8), "sample 1\nsample 2\nsample 3\n")
        let show = try XCTUnwrap(try json(other, ["model", "show", "toy-model", "--json"]) as? [String: Any])
        XCTAssertEqual(show["version"] as? Int, 1)
        XCTAssertEqual(other.trove("model", "pull", "nosuch", "--to", "x").status, 3)
    }
}
