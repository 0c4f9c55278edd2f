import Foundation
import TroveCore
import TroveStore
import TroveTestSupport
import XCTest

/// `trove run`, `trove log-metric` and `trove runs`, driving the built binary and real child
/// processes (shell scripts that fail, get killed, overrun).
final class RunTests: XCTestCase {
    func ok(_ r: ProcessResult, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 0, "\(what): \(r.stdout)\n\(r.stderr)", file: file, line: line)
    }

    func sandbox() -> TroveSandbox {
        let s = TroveSandbox()
        s.enableGit()
        ok(s.trove("init", "-q"), "init")
        s.write("train.sh", Array("""
            #!/bin/sh
            echo "lr=$TROVE_PARAM_LR batch=$TROVE_PARAM_BATCH_SIZE run=$TROVE_RUN_ID"
            cat "$TROVE_PARAMS_FILE"
            mkdir -p out/ckpt
            echo weights > out/ckpt/model.bin
            for i in 1 2 3; do echo "{\\"step\\": $i, \\"loss\\": 0.$((9 - i))}" >> "$TROVE_METRICS_FILE"; done
            trove log-metric val_acc 0.75 --step 3
            echo "to stderr" >&2
            [ -n "$DIE" ] && kill -9 $$
            [ -n "$SLEEP" ] && sleep "$SLEEP"
            exit ${FAIL:-0}

            """.utf8))
        chmod(s.path("train.sh"), 0o755)
        return s
    }

    func runs(_ s: TroveSandbox) throws -> [[String: Any]] {
        let r = s.trove("runs", "--json")
        ok(r, "runs --json")
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
    }

    func testARunRecordsParametersLogsMetricsAndOutputs() throws {
        let s = sandbox()
        let r = s.trove(["run", "-p", "lr=0.01", "-p", "batch_size=32", "--output", "out", "--name", "baseline", "--json", "--", "./train.sh"])
        ok(r, "run")
        let record = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(record["status"] as? String, "succeeded")
        let id = try XCTUnwrap(record["id"] as? String)
        XCTAssertTrue(r.stderr.contains("lr=0.01 batch=32 run=\(id)"), "parameters reach the command as variables")
        XCTAssertTrue(r.stderr.contains("{\"batch_size\":\"32\",\"lr\":\"0.01\"}"), "and as a JSON file")
        let list = try runs(s)
        XCTAssertEqual(list.count, 1)
        XCTAssertEqual(list[0]["params"] as? [String: String], ["lr": "0.01", "batch_size": "32"])
        XCTAssertEqual(list[0]["metrics"] as? [String: Double], ["loss": 0.6, "val_acc": 0.75])
        let show = s.trove("runs", "show", String(id.prefix(17)), "--json")
        ok(show, "runs show")
        let detail = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any])
        let meta = try XCTUnwrap(detail["metadata"] as? [String: String])
        XCTAssertEqual(meta["metric.loss.min"], "0.6")
        XCTAssertEqual(meta["metric.loss.max"], "0.8")
        XCTAssertEqual(meta["metric.loss.steps"], "3")
        XCTAssertEqual(meta["run.exit_code"], "0")
        XCTAssertEqual(meta["run.name"], "baseline")
        let files = Set(try XCTUnwrap(detail["files"] as? [[String: Any]]).map { $0["path"] as! String })
        XCTAssertEqual(files, ["logs/stdout", "logs/stderr", "metrics/loss", "metrics/val_acc", "params.json", "outputs/out/ckpt/model.bin"])
        XCTAssertEqual(s.trove("runs", "metrics", id, "loss").stdout, "1 0.8\n2 0.7\n3 0.6\n")
        XCTAssertEqual(s.trove("runs", "metrics", id, "val_acc", "--stats").stdout, "1 points, steps 3...3, min 0.75, max 0.75, last 0.75\n")
        let missing = s.trove("runs", "metrics", id, "nope")
        XCTAssertEqual(missing.status, 3)
        XCTAssertTrue(missing.stderr.contains("it has: loss, val_acc"), missing.stderr)
        // The record is an ordinary commit: its files read back.
        XCTAssertEqual(s.trove("cat", "runs/\(id):outputs/out/ckpt/model.bin").stdout, "weights\n")
        XCTAssertEqual(s.trove("cat", "runs/\(id):logs/stderr").stdout, "to stderr\n")
        ok(s.trove("fsck", "--full"), "fsck")
    }

    func testFailedKilledAndOverrunningRunsAreRecordedWithTheirStatus() throws {
        let s = sandbox()
        s.extraEnvironment["FAIL"] = "3"
        let failed = s.trove(["run", "--output", "out", "--", "./train.sh"])
        XCTAssertEqual(failed.status, 3, "the command's exit status")
        s.extraEnvironment["FAIL"] = nil
        s.extraEnvironment["DIE"] = "1"
        let killed = s.trove(["run", "--output", "out", "--", "./train.sh"])
        XCTAssertEqual(killed.status, 128 + 9)
        s.extraEnvironment["DIE"] = nil
        s.extraEnvironment["SLEEP"] = "30"
        let started = Date()
        let overrun = s.trove(["run", "--timeout", "1", "--output", "out", "--", "./train.sh"])
        XCTAssertLessThan(Date().timeIntervalSince(started), 15, "stopped at the limit")
        XCTAssertNotEqual(overrun.status, 0)
        let byStatus = Dictionary(grouping: try runs(s), by: { $0["status"] as! String })
        XCTAssertEqual(byStatus.mapValues(\.count), ["failed": 1, "killed": 1, "timeout": 1])
        // Logs and outputs written before the end are kept, whatever the end.
        for r in try runs(s) {
            let id = r["id"] as! String
            XCTAssertEqual(s.trove("cat", "runs/\(id):outputs/out/ckpt/model.bin").stdout, "weights\n", "\(r["status"]!)")
            XCTAssertTrue(s.trove("cat", "runs/\(id):logs/stdout").stdout.contains("lr="), "\(r["status"]!)")
        }
    }

    func testTheCodeVersionAndAnUncommittedDiffAreRecorded() throws {
        let s = sandbox()
        ok(s.git(["init", "-q"]), "git init")
        s.write("model.py", Array("lr = 0.1\n".utf8))
        ok(s.git(["add", "model.py", "train.sh"]), "git add")
        ok(s.git(["commit", "-q", "-m", "code"]), "git commit")
        let head = s.git(["rev-parse", "HEAD"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        s.write("model.py", Array("lr = 0.2\n".utf8))
        let r = s.trove(["run", "--", "./train.sh"])
        ok(r, "run")
        XCTAssertTrue(r.stderr.contains("warning: the working tree differs"), r.stderr)
        let run = try XCTUnwrap(try runs(s).first)
        XCTAssertEqual(run["git_commit"] as? String, head)
        let diff = s.trove("cat", "runs/\(run["id"] as! String):code.diff").stdout
        XCTAssertTrue(diff.contains("-lr = 0.1") && diff.contains("+lr = 0.2"), diff)
    }

    func testLogMetricOutsideARunSaysWhatToDo() {
        let s = sandbox()
        let r = s.trove("log-metric", "loss", "0.5")
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("TROVE_METRICS_FILE") && r.stderr.contains("trove run"), r.stderr)
        let bad = s.trove("run", "-p", "1x=2", "--", "true")
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("parameter name"), bad.stderr)
    }

    func testALocalSweepRecordsEveryVariantAndStopsTheWorseHalfEarly() throws {
        let s = sandbox()
        // Four runs report a loss of 9 at every step, four a loss of 1; ten steps of 0.3 s.
        s.write("sweep.sh", Array("""
            #!/bin/sh
            for step in 1 2 3 4 5 6 7 8 9 10; do
              if [ "$TROVE_PARAM_KIND" = bad ]; then v=9; else v=1; fi
              echo "{\\"step\\": $step, \\"loss\\": $v}" >> "$TROVE_METRICS_FILE"
              sleep 0.3
            done

            """.utf8))
        chmod(s.path("sweep.sh"), 0o755)
        let r = s.trove(["sweep", "-p", "kind=good,bad", "-p", "replica=1,2,3,4", "--parallel", "8",
                         "--early-stop", "median:loss,min-step=2", "--json", "--", "./sweep.sh"])
        ok(r, "sweep")
        let sweep = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let id = try XCTUnwrap(sweep["sweep"] as? String)
        let members = try runs(s).filter { ($0["id"] as! String).hasPrefix(id) }
        XCTAssertEqual(members.count, 8, "every variant recorded")
        for m in members {
            let params = m["params"] as! [String: String]
            XCTAssertEqual(m["status"] as? String, params["kind"] == "bad" ? "cancelled" : "succeeded", "\(params)")
        }
        let listed = s.trove("runs", "--sweep", id, "--json")
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [Any])?.count, 8)
        let good = s.trove("runs", "--sweep", id, "--where", "metrics.loss<5", "--where", "params.replica>=3", "--sort", "-params.replica", "--json")
        let goodIDs = (try JSONSerialization.jsonObject(with: Data(good.stdout.utf8)) as? [[String: Any]])?.map { $0["params"] as! [String: String] }
        XCTAssertEqual(goodIDs, [["kind": "good", "replica": "4"], ["kind": "good", "replica": "3"]], good.stderr)
        XCTAssertEqual(s.trove("runs", "--where", "bogus").status, 2)
        let bad = try XCTUnwrap(members.first { ($0["params"] as! [String: String])["kind"] == "bad" })
        let meta = s.trove("runs", "show", bad["id"] as! String, "--json").stdout
        XCTAssertTrue(meta.contains("early-stop median:loss"), meta)
        // Stopped before the end: fewer than ten points.
        XCTAssertLessThan(Int(s.trove("runs", "metrics", bad["id"] as! String, "loss").stdout.split(separator: "\n").count), 10)
        // The sweep's own record: spec and variants.
        XCTAssertTrue(s.trove("cat", "sweeps/\(id):variants.json").stdout.contains("\"replica\" : \"4\""))
    }

    func testAMemberThatRunsAheadOfItsPeersIsStillStoppedWhenTheyReachItsSteps() throws {
        let s = sandbox()
        // The bad member reports 40 steps at 0.05 s, the good ones 10 at 0.3 s: the bad one is
        // always ahead, so its latest step is one no peer has reached yet.
        s.write("ahead.sh", Array("""
            #!/bin/sh
            if [ "$TROVE_PARAM_KIND" = bad ]; then n=40; v=9; pause=0.05; else n=10; v=1; pause=0.3; fi
            step=1
            while [ $step -le $n ]; do
              echo "{\\"step\\": $step, \\"loss\\": $v}" >> "$TROVE_METRICS_FILE"
              sleep $pause
              step=$((step + 1))
            done

            """.utf8))
        chmod(s.path("ahead.sh"), 0o755)
        let r = s.trove(["sweep", "-p", "kind=bad,good,good2", "--parallel", "3", "--early-stop", "median:loss,min-step=2", "--json", "--", "./ahead.sh"])
        let sweep = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stderr)
        let id = try XCTUnwrap(sweep["sweep"] as? String)
        let members = try runs(s).filter { ($0["id"] as! String).hasPrefix(id) }
        XCTAssertEqual(members.count, 3)
        for m in members {
            let kind = (m["params"] as! [String: String])["kind"]
            XCTAssertEqual(m["status"] as? String, kind == "bad" ? "cancelled" : "succeeded", "\(kind ?? "")")
        }
    }

    func testACancelledRunIsSeenRunningThenRecordedAsCancelled() throws {
        let s = sandbox()
        s.write("slow.sh", Array("#!/bin/sh\necho '{\"step\": 1, \"loss\": 0.5}' >> \"$TROVE_METRICS_FILE\"\nsleep 60\n".utf8))
        chmod(s.path("slow.sh"), 0o755)
        let running = s.start(["run", "-p", "lr=0.3", "--", "./slow.sh"])
        var listed: [[String: Any]] = []
        for _ in 0..<100 where !listed.contains(where: { ($0["metrics"] as? [String: Double])?["loss"] == 0.5 }) {
            usleep(100_000)
            listed = (try? runs(s)) ?? []
        }
        let live = try XCTUnwrap(listed.first { $0["status"] as? String == "running" }, "\(listed)")
        XCTAssertEqual(live["params"] as? [String: String], ["lr": "0.3"])
        let id = try XCTUnwrap(live["id"] as? String)
        ok(s.trove("cancel", id), "cancel")
        let r = running.wait()
        XCTAssertNotEqual(r.status, 0)
        let recorded = try XCTUnwrap(try runs(s).first { $0["id"] as? String == id })
        XCTAssertEqual(recorded["status"] as? String, "cancelled")
        XCTAssertTrue(s.trove("runs", "show", id).stdout.contains("run.stopped_by = trove cancel by"))
        XCTAssertEqual(s.trove("cancel", id).status, 3, "nothing left to cancel")
    }

    func testATermArrivingAsTheCommandStartsIsRecordedAsCancelled() throws {
        let s = sandbox()
        // The instant the run is listed (its state file written), a batch system's TERM comes:
        // the run must still be recorded, as cancelled, not lost with its recorder.
        let live = s.path(".trove/runs-live")
        func listed() -> Set<String> { Set(((try? FileIO.listDirectory(live)) ?? []).filter { FileIO.exists(live + "/" + $0 + "/state.json") }) }
        for attempt in 0..<4 {
            let before = listed()
            let running = s.start(["run", "-p", "attempt=\(attempt)", "--", "sleep", "30"])
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline, listed().subtracting(before).isEmpty { usleep(200) }
            kill(running.process.processIdentifier, SIGTERM)
            let r = running.wait()
            XCTAssertNotEqual(r.status, 0, r.stderr)
            let recorded = try runs(s).filter { ($0["params"] as? [String: String])?["attempt"] == "\(attempt)" }
            XCTAssertEqual(recorded.map { $0["status"] as? String }, ["cancelled"], "attempt \(attempt): \(r.stderr)")
        }
    }

    func testARunWhoseRecorderWasKilledIsNoLongerListedAsRunning() throws {
        let s = sandbox()
        let running = s.start(["run", "--", "sleep", "60"])
        var listed: [[String: Any]] = []
        for _ in 0..<100 where !listed.contains(where: { $0["status"] as? String == "running" }) {
            usleep(100_000)
            listed = (try? runs(s)) ?? []
        }
        let id = try XCTUnwrap(listed.first { $0["status"] as? String == "running" }?["id"] as? String, "\(listed)")
        let state = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(FileIO.readFile(s.path(".trove/runs-live/\(id)/state.json")))) as? [String: Any])
        let group = Int32(try XCTUnwrap(state["pgid"] as? Int))
        defer { kill(-group, SIGKILL) }
        // The recorder dies (kill -9, the OOM killer, a batch system's KILL); its command lives on.
        running.kill9()
        _ = running.wait()
        XCTAssertEqual(kill(-group, 0), 0, "the command outlived its recorder")
        XCTAssertFalse(try runs(s).contains { $0["id"] as? String == id && $0["status"] as? String == "running" },
                       "a run nobody records any more is not shown as running")
        XCTAssertEqual(s.trove("cancel", id).status, 3, "nor offered to cancel")
    }

    func testABatchTaskRunsItsSweepMemberFromTheRecordAlone() throws {
        let s = sandbox()
        let rec = s.trove(["sweep", "-p", "lr=0.1,0.01", "-p", "batch_size=32,64", "--record-only", "--output", "out", "--json", "--", "./train.sh"])
        ok(rec, "record-only sweep")
        let id = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(rec.stdout.utf8)) as? [String: Any])?["sweep"] as? String)
        XCTAssertTrue(try runs(s).isEmpty, "nothing ran")
        // What a Slurm array task runs: only the sweep id and its index.
        let task = s.trove(["run", "--sweep", String(id.prefix(17)), "--index", "3"])
        ok(task, "member 3")
        XCTAssertTrue(task.stdout.contains("lr=0.01 batch=64 run=\(id)-3"), task.stdout)
        let run = try XCTUnwrap(try runs(s).first)
        XCTAssertEqual(run["id"] as? String, "\(id)-3")
        XCTAssertEqual(run["params"] as? [String: String], ["lr": "0.01", "batch_size": "64"])
        XCTAssertEqual(s.trove("cat", "runs/\(id)-3:outputs/out/ckpt/model.bin").stdout, "weights\n", "the sweep's outputs")
        XCTAssertEqual(s.trove(["runs", "--sweep", id, "--json"]).stdout.contains("\(id)-3"), true)
        let out = s.trove(["run", "--sweep", id, "--index", "4"])
        XCTAssertEqual(out.status, 2)
        XCTAssertTrue(out.stderr.contains("--index 0...3"), out.stderr)
        XCTAssertEqual(s.trove(["run", "--sweep", "nosuch", "--index", "0"]).status, 3)
        let again = s.trove(["run", "--sweep", id, "--index", "3"])
        XCTAssertEqual(again.status, 5, "a member is recorded once, refused before it runs")
        XCTAssertTrue(again.stderr.contains("already recorded") && !again.stdout.contains("lr="), again.stderr)
    }

    func testTheRunListingFollowsRefsAddedAndRemovedBehindItsCache() throws {
        let s = sandbox()
        for lr in ["0.1", "0.2"] { ok(s.trove("run", "-q", "-p", "lr=\(lr)", "--", "true"), "run") }
        XCTAssertEqual(try runs(s).count, 2)
        // Long enough for the refs folder to count as settled: the listing is cached by it.
        sleep(3)
        XCTAssertEqual(try runs(s).count, 2)
        ok(s.trove("run", "-q", "-p", "lr=0.3", "--", "true"), "third run")
        let three = try runs(s)
        XCTAssertEqual(Set(three.compactMap { ($0["params"] as? [String: String])?["lr"] }), ["0.1", "0.2", "0.3"])
        sleep(3)
        XCTAssertEqual(try runs(s).count, 3)
        // A ref removed behind trove's back (a user, another tool): gone from the listing too.
        let victim = try XCTUnwrap(three.first { ($0["params"] as? [String: String])?["lr"] == "0.2" }?["id"] as? String)
        XCTAssertEqual(unlink(s.path(".trove/refs/runs/\(victim)")), 0)
        XCTAssertEqual(Set(try runs(s).compactMap { ($0["params"] as? [String: String])?["lr"] }), ["0.1", "0.3"])
    }

    func testTheCudaToolkitVersionIsRecordedWhenPresent() throws {
        let s = sandbox()
        s.write("cuda/version.json", Array(#"{"cuda": {"name": "CUDA SDK", "version": "12.4.131"}}"#.utf8))
        s.extraEnvironment["CUDA_HOME"] = s.path("cuda")
        let r = s.trove("run", "--json", "--", "true")
        ok(r, "run")
        let id = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["id"] as? String)
        let meta = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(s.trove("runs", "show", id, "--json").stdout.utf8)) as? [String: Any])?["metadata"] as? [String: String])
        XCTAssertEqual(meta["env.cuda"], "12.4.131")
    }

    func testASweepRunsAsManyMembersAtOnceAsParallelSaysWhateverTheCoreCount() throws {
        let s = sandbox()
        // Six members that each sleep 2 s, six at once: on a 2-core machine they must not go
        // two by two (the dispatch pool is as wide as the cores).
        let started = Date()
        ok(s.trove(["sweep", "-q", "-p", "i=1,2,3,4,5,6", "--parallel", "6", "--", "sleep", "2"]), "sweep")
        XCTAssertLessThan(Date().timeIntervalSince(started), 5.5)
        let starts = try runs(s).compactMap { $0["start"] as? String }.sorted()
        XCTAssertEqual(starts.count, 6)
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let first = try XCTUnwrap(f.date(from: starts.first!)), last = try XCTUnwrap(f.date(from: starts.last!))
        XCTAssertLessThan(last.timeIntervalSince(first), 1.5, "all six started together: \(starts)")
    }
}
