import Foundation
import TroveCore
import TroveStore
import TroveTestSupport
import XCTest

/// `trove run NOTEBOOK` and `trove notebook check`, through the real Jupyter machinery
/// (nbformat, nbclient, ipykernel: `bash scripts/deps.sh` installs them).
final class NotebookTests: XCTestCase {
    func ok(_ r: ProcessResult, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 0, "\(what): \(r.stdout)\n\(r.stderr)", file: file, line: line)
    }

    override func setUpWithError() throws {
        let r = Runner.run("/usr/bin/env", ["python3", "-c", "import nbclient, nbformat, ipykernel"], cwd: "/", environment: ProcessInfo.processInfo.environment)
        if r.status != 0 { throw XCTSkip("Jupyter's packages are not installed: bash scripts/deps.sh") }
    }

    /// An nbformat 4.5 notebook of code cells; `tags[i]` tags cell i.
    func notebook(_ cells: [String], tags: [Int: [String]] = [:]) -> [UInt8] {
        let nb: [String: Any] = [
            "nbformat": 4, "nbformat_minor": 5,
            "metadata": ["kernelspec": ["name": "python3", "display_name": "Python 3", "language": "python"]],
            "cells": cells.enumerated().map { i, src -> [String: Any] in
                ["id": "cell\(i)", "cell_type": "code", "metadata": tags[i].map { ["tags": $0] } ?? [:], "source": src,
                 "outputs": [], "execution_count": NSNull()]
            },
        ]
        return Array(try! JSONSerialization.data(withJSONObject: nb, options: [.sortedKeys, .prettyPrinted]))
    }

    func sandbox() -> TroveSandbox {
        let s = TroveSandbox()
        ok(s.trove("init", "-q"), "init")
        s.write("train.ipynb", notebook([
            "lr = 0.1\nname = 'default'",
            "import os, json\nprint('lr', lr, type(lr).__name__, 'name', name)\nwith open(os.environ['TROVE_METRICS_FILE'], 'a') as f:\n    f.write(json.dumps({'step': 1, 'loss': lr * 2}) + '\\n')",
            "open(os.path.join(os.environ['TROVE_OUTPUT_DIR'], 'weights.txt'), 'w').write(f'weights {lr}')",
        ], tags: [0: ["parameters"]]))
        return s
    }

    func testANotebookRunsTopToBottomWithInjectedParametersAndIsRecordedWithItsExecutedCopy() throws {
        let s = sandbox()
        let original = readFile(s.path("train.ipynb"))
        let r = s.trove(["run", "train.ipynb", "-p", "lr=0.5", "-p", "name=run42", "--json"])
        ok(r, "run notebook")
        let record = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(record["status"] as? String, "succeeded")
        let id = try XCTUnwrap(record["id"] as? String)
        XCTAssertTrue(s.trove("cat", "runs/\(id):logs/stdout").stdout.contains("lr 0.5 float name run42"), "typed as papermill does")
        XCTAssertEqual(s.trove("cat", "runs/\(id):outputs/weights.txt").stdout, "weights 0.5")
        XCTAssertEqual(s.trove("runs", "metrics", id, "loss").stdout, "1 1.0\n")
        // The exact notebook that ran, and the executed one with its outputs.
        XCTAssertEqual(s.trove("cat", "runs/\(id):notebook/train.ipynb").stdoutBytes, original)
        let executed = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(s.trove("cat", "runs/\(id):outputs/train.ipynb").stdoutBytes)) as? [String: Any])
        let cells = try XCTUnwrap(executed["cells"] as? [[String: Any]])
        XCTAssertEqual(cells.count, 4)
        XCTAssertEqual((cells[1]["metadata"] as? [String: Any])?["tags"] as? [String], ["injected-parameters"], "after the parameters cell")
        XCTAssertTrue(((cells[1]["source"] as? String) ?? (cells[1]["source"] as? [String])?.joined() ?? "").contains("lr = 0.5"))
        let outputs = try XCTUnwrap(cells[2]["outputs"] as? [[String: Any]])
        XCTAssertTrue("\(outputs)".contains("lr 0.5 float"), "\(outputs)")
        let meta = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(s.trove("runs", "show", id, "--json").stdout.utf8)) as? [String: Any])?["metadata"] as? [String: String])
        XCTAssertEqual(meta["run.notebook"], "train.ipynb")
    }

    func testNotebookCheckNamesTheFirstCellThatFailsInBatchOrder() throws {
        let s = sandbox()
        // Worked interactively only because cell 2 was run before cell 1.
        s.write("ooo.ipynb", notebook(["print(total)", "total = 3"]))
        let bad = s.trove("notebook", "check", "ooo.ipynb")
        XCTAssertEqual(bad.status, 1, bad.stderr)
        XCTAssertTrue(bad.stdout.contains("cell 1 (id cell0) fails when run in order: NameError"), bad.stdout)
        ok(s.trove("notebook", "check", "train.ipynb", "-p", "lr=0.2"), "a notebook that runs in order")
        // Run as a run, the failure is recorded with the executed notebook up to the failing cell.
        let r = s.trove(["run", "ooo.ipynb", "--json"])
        XCTAssertEqual(r.status, 1)
        let record = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(record["status"] as? String, "failed")
        let id = try XCTUnwrap(record["id"] as? String)
        XCTAssertTrue(s.trove("cat", "runs/\(id):logs/stderr").stdout.contains("cell 1 (id cell0) failed: NameError"))
        XCTAssertTrue(s.trove("cat", "runs/\(id):outputs/ooo.ipynb").stdout.contains("NameError"))
    }

    func testAnInvalidNotebookOrMissingJupyterIsRefusedBeforeAnythingIsRecorded() throws {
        let s = sandbox()
        s.write("broken.ipynb", Array(#"{"cells": 3, "nbformat": 4}"#.utf8))
        for args in [["run", "broken.ipynb"], ["sweep", "-p", "lr=1,2", "broken.ipynb"], ["notebook", "check", "broken.ipynb"]] {
            let r = s.trove(args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("broken.ipynb is not a valid notebook"), "\(args): \(r.stderr)")
        }
        // A Python without the packages (no site-packages): the missing ones are named.
        s.write("nojupyter", Array("#!/bin/sh\nexec python3 -S \"$@\"\n".utf8))
        chmod(s.path("nojupyter"), 0o755)
        s.extraEnvironment["TROVE_PYTHON"] = s.path("nojupyter")
        let r = s.trove(["run", "train.ipynb"])
        XCTAssertEqual(r.status, 3, r.stderr)
        XCTAssertTrue(r.stderr.contains("nbformat") && r.stderr.contains("pip install"), r.stderr)
        XCTAssertEqual(try Refs(root: s.path(".trove")).list(prefix: "runs/").count + Refs(root: s.path(".trove")).list(prefix: "sweeps/").count, 0)
    }
}
