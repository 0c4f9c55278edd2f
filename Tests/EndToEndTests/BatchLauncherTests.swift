import Foundation
import TroveCore
import TroveRuns
import TroveStore
import TroveTestSupport
import XCTest

/// Sweeps handed to batch systems: a real single-node Slurm (scripts/slurm-start.sh) and the
/// real kubectl against the fake Jobs API (fixtures/fake-kube-api.py); batch members that stop
/// themselves early; many writers into one store.
final class BatchLauncherTests: XCTestCase {
    func ok(_ r: ProcessResult, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 0, "\(what): \(r.stdout)\n\(r.stderr)", file: file, line: line)
    }

    func json(_ r: ProcessResult, file: StaticString = #filePath, line: UInt = #line) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(r.stdout.utf8))
    }

    /// A store and `task.sh`: reports its parameters, a loss per step, an output file; sleeps
    /// `$TROVE_PARAM_S` seconds when given.
    func sandbox(_ extra: [String: String] = [:]) -> TroveSandbox {
        let s = TroveSandbox()
        s.extraEnvironment.merge(extra) { _, b in b }
        ok(s.trove("init", "-q"), "init")
        s.write("task.sh", Array("""
            #!/bin/sh
            echo "lr=$TROVE_PARAM_LR bs=$TROVE_PARAM_BS index=$SLURM_ARRAY_TASK_ID"
            echo "model for lr=$TROVE_PARAM_LR bs=$TROVE_PARAM_BS" > "$TROVE_OUTPUT_DIR/model.txt"
            mkdir -p shared && echo "$TROVE_PARAM_LR" >> shared/seen.txt
            echo "{\\"step\\": 1, \\"loss\\": $TROVE_PARAM_LR}" >> "$TROVE_METRICS_FILE"
            [ -n "$TROVE_PARAM_S" ] && sleep "$TROVE_PARAM_S"
            exit 0

            """.utf8))
        chmod(s.path("task.sh"), 0o755)
        return s
    }

    func runs(_ s: TroveSandbox, sweep: String) throws -> [String: [String: Any]] {
        let r = s.trove("runs", "--sweep", sweep, "--json")
        ok(r, "runs --sweep")
        let list = try XCTUnwrap(try json(r) as? [[String: Any]])
        return Dictionary(list.map { ($0["id"] as! String, $0) }, uniquingKeysWith: { a, _ in a })
    }

    func refs(_ s: TroveSandbox, _ prefix: String) throws -> [String] {
        try Refs(root: s.path(".trove")).list(prefix: prefix).map(\.name)
    }

    /// Polls `condition` every 250 ms; on timeout the failure carries `explain()`: what was
    /// seen instead, for a run on a CI machine that cannot be watched.
    func waitFor(_ what: String, timeout: Double = 60, explain: () -> String = { "" }, _ condition: () throws -> Bool) throws {
        let start = Date()
        while try !condition() {
            guard Date().timeIntervalSince(start) < timeout else { XCTFail("timed out waiting for \(what)\n\(explain())"); return }
            usleep(250_000)
        }
    }

    /// The sweep's members as listed, Slurm's states, the tasks' own output and what
    /// slurmctld logged about the job.
    func slurmStory(_ s: TroveSandbox, _ cluster: SlurmCluster, sweep: String, job: String) -> String {
        var text = "trove runs --sweep: " + ((try? runs(s, sweep: sweep).mapValues { "\($0["status"] ?? "?") \($0["launcher_state"] ?? "")" }.description) ?? "?")
        text += "\nsqueue: \(cluster.states(job: job))"
        let logs = s.path(".trove/batch/" + sweep)
        for name in ((try? FileIO.listDirectory(logs)) ?? []).sorted() {
            text += "\n--- \(name)\n" + ((try? FileIO.readText(logs + "/" + name)) ?? "")
        }
        let ctld = (try? FileIO.readText(cluster.stateDirectory + "/log/slurmctld.log")) ?? ""
        text += "\n--- slurmctld.log (job \(job))\n" + ctld.split(separator: "\n").filter { $0.contains("JobId=\(job)") || $0.contains("sched") }.suffix(40).joined(separator: "\n")
        return text
    }

    // MARK: Slurm

    func slurm() throws -> SlurmCluster {
        do { return try SlurmCluster.shared() } catch { throw XCTSkip("\(error)") }
    }

    func testASlurmArraySweepRecordsEveryTaskWithItsOwnParametersMetricsAndOutputs() throws {
        let cluster = try slurm()
        let s = sandbox(cluster.environment)
        let r = s.trove(["sweep", "--launcher", "slurm", "-p", "lr=0.1,0.2", "-p", "bs=16,32", "--parallel", "2", "--time", "5",
                         "--sbatch", "--comment=trove-test", "--output", "shared", "--wait", "--json", "--", "./task.sh"])
        ok(r, "slurm sweep --wait")
        let result = try XCTUnwrap(try json(r) as? [String: Any])
        let id = try XCTUnwrap(result["sweep"] as? String)
        let job = try XCTUnwrap(result["job"] as? String)
        let statuses = try XCTUnwrap(result["runs"] as? [[String: Any]]).map { $0["status"] as? String }
        XCTAssertEqual(statuses, Array(repeating: "succeeded", count: 4))
        // The job script carried the pass-through options, and Slurm ran an array of 4.
        let script = s.trove("cat", "sweeps/\(id):job.sbatch").stdout
        for line in ["#SBATCH --array=0-3%2", "#SBATCH --time=5", "#SBATCH --comment=trove-test", "run --sweep \(id) --index \"$SLURM_ARRAY_TASK_ID\""] {
            XCTAssertTrue(script.contains(line), "\(line) in\n\(script)")
        }
        XCTAssertEqual(Set(cluster.states(job: job).values), ["COMPLETED"])
        let variants = [(0, "0.1", "16"), (1, "0.1", "32"), (2, "0.2", "16"), (3, "0.2", "32")]
        for (i, lr, bs) in variants {
            let show = s.trove("runs", "show", "\(id)-\(i)", "--json")
            ok(show, "runs show")
            let meta = try XCTUnwrap((try json(show) as? [String: Any])?["metadata"] as? [String: String])
            XCTAssertEqual(meta["param.lr"], lr)
            XCTAssertEqual(meta["param.bs"], bs)
            XCTAssertEqual(meta["metric.loss.last"], lr)
            XCTAssertEqual(meta["run.launcher"], "slurm")
            XCTAssertEqual(meta["run.job"], "\(job)_\(i)", "the task knows its array job and index")
            XCTAssertEqual(s.trove("cat", "runs/\(id)-\(i):outputs/model.txt").stdout, "model for lr=\(lr) bs=\(bs)\n", "each task's own output folder")
            XCTAssertTrue(s.trove("cat", "runs/\(id)-\(i):logs/stdout").stdout.contains("index=\(i)"))
        }
        ok(s.trove("fsck"), "fsck")
    }

    func testTroveCancelStopsARunningAndAPendingSlurmTaskAndRecordsBothCancelled() throws {
        let cluster = try slurm()
        let s = sandbox(cluster.environment)
        // One at a time: member 0 runs, 1 and 2 wait; 2 is short and must still run after.
        let r = s.trove(["sweep", "--launcher", "slurm", "-p", "lr=0.5", "-p", "s=60,60,1", "--parallel", "1", "--json", "--", "./task.sh"])
        ok(r, "slurm sweep")
        let submitted = try XCTUnwrap(try json(r) as? [String: Any])
        let id = try XCTUnwrap(submitted["sweep"] as? String), job = try XCTUnwrap(submitted["job"] as? String)
        try waitFor("member 0 running, 1 and 2 pending", explain: { slurmStory(s, cluster, sweep: id, job: job) }) {
            let list = try runs(s, sweep: id)
            return list["\(id)-0"]?["status"] as? String == "running" && list["\(id)-1"]?["status"] as? String == "pending"
                && list["\(id)-2"]?["status"] as? String == "pending"
        }
        let pending = try runs(s, sweep: id)["\(id)-1"]
        XCTAssertEqual(pending?["launcher_state"] as? String, "PENDING")
        XCTAssertEqual(pending?["params"] as? [String: String], ["lr": "0.5", "s": "60"])
        let cancel = s.trove("cancel", "\(id)-0", "\(id)-1")
        ok(cancel, "cancel")
        XCTAssertTrue(cancel.stdout.contains("cancelled \(id)-1 (pending"), cancel.stdout)
        try waitFor("member 0 recorded as cancelled and member 2 succeeded", timeout: 60, explain: { slurmStory(s, cluster, sweep: id, job: job) }) {
            let list = try runs(s, sweep: id)
            return list["\(id)-0"]?["status"] as? String == "cancelled" && list["\(id)-2"]?["status"] as? String == "succeeded"
        }
        let list = try runs(s, sweep: id)
        XCTAssertEqual(list["\(id)-1"]?["status"] as? String, "cancelled")
        for i in [0, 1] {
            let meta = try XCTUnwrap((try json(s.trove("runs", "show", "\(id)-\(i)", "--json")) as? [String: Any])?["metadata"] as? [String: String])
            XCTAssertTrue(meta["run.stopped_by"]?.hasPrefix("trove cancel by") == true, "\(i): \(meta)")
            XCTAssertEqual(meta["run.started"], i == 1 ? "false" : nil)
        }
        // The running one kept the log it wrote before it was stopped.
        XCTAssertTrue(s.trove("cat", "runs/\(id)-0:logs/stdout").stdout.contains("lr=0.5"))
        let states = cluster.states(job: job)
        XCTAssertEqual(states[0], "CANCELLED")
        // A pending task cancelled on its own leaves squeue at once; a running one stays listed.
        XCTAssertTrue(states[1] == nil || states[1] == "CANCELLED", "\(states)")
        XCTAssertEqual(states[2], "COMPLETED")
    }

    func testAnUnreachableSlurmControllerIsRefusedBeforeAnythingIsRecorded() throws {
        let cluster = try slurm()
        // The same cluster's configuration, with the controller on a port nothing listens on.
        let temp = TempDir("trove-slurm-down")
        let conf = try String(contentsOfFile: cluster.conf, encoding: .utf8).replacingOccurrences(of: "SlurmctldPort=6817", with: "SlurmctldPort=6999")
        try (conf + "\nMessageTimeout=2\n").write(toFile: temp.path + "/slurm.conf", atomically: true, encoding: .utf8)
        let s = sandbox(["SLURM_CONF": temp.path + "/slurm.conf"])
        let started = Date()
        let r = s.trove(["sweep", "--launcher", "slurm", "-p", "lr=1,2", "--", "./task.sh"])
        XCTAssertEqual(r.status, 6, r.stderr)
        XCTAssertTrue(r.stderr.contains("the Slurm controller is not reachable"), r.stderr)
        XCTAssertTrue(r.stderr.contains("nothing was submitted"), r.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(started), 30)
        XCTAssertEqual(try refs(s, "sweeps/"), [])
        XCTAssertEqual(try runs(s, sweep: "").count, 0)
    }

    // MARK: Kubernetes

    func kube() throws -> FakeKubernetes {
        do { return try FakeKubernetes() } catch { throw XCTSkip("\(error)") }
    }

    func k8sArguments(_ extra: [String] = []) -> [String] {
        ["sweep", "--launcher", "k8s", "--image", "registry.example/train:1", "--store-claim", "trove-store", "--cpu", "1", "--memory", "2Gi",
         "--gpus", "1", "--env", "WANDB_MODE=offline", "-p", "lr=0.1,0.2,0.3", "--parallel", "2"] + extra + ["--", "./task.sh"]
    }

    func testTheKubernetesManifestPassesStrictValidationAndTheSweepsOwnRules() throws {
        guard Tool.onPath("kubernetes-validate") else { throw XCTSkip("kubernetes-validate is not installed: bash scripts/deps.sh") }
        let s = sandbox()
        let r = s.trove(k8sArguments(["--dry-run"]))
        ok(r, "k8s --dry-run")
        s.write("job.json", Array(r.stdout.utf8))
        let v = Runner.run("/usr/bin/env", ["kubernetes-validate", "--strict", s.path("job.json")], cwd: s.work, environment: s.environment)
        XCTAssertEqual(v.status, 0, v.stdout + v.stderr)
        XCTAssertTrue(v.stdout.contains("passed"), v.stdout)
        let m = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let spec = try XCTUnwrap(m["spec"] as? [String: Any])
        XCTAssertEqual(spec["completionMode"] as? String, "Indexed")
        XCTAssertEqual(spec["completions"] as? Int, 3)
        XCTAssertEqual(spec["parallelism"] as? Int, 2)
        let pod = try XCTUnwrap((spec["template"] as? [String: Any])?["spec"] as? [String: Any])
        XCTAssertEqual(pod["restartPolicy"] as? String, "Never")
        let container = try XCTUnwrap((pod["containers"] as? [[String: Any]])?.first)
        let command = try XCTUnwrap(container["command"] as? [String])
        XCTAssertEqual(Array(command.prefix(3)), ["trove", "run", "--sweep"])
        XCTAssertEqual(((container["resources"] as? [String: Any])?["limits"] as? [String: Any])?["nvidia.com/gpu"] as? Int, 1)
        // Nothing was recorded by a dry run.
        XCTAssertEqual(try refs(s, "sweeps/"), [])
        // The project's own rules catch what the schema does not.
        var bad = m
        var badSpec = spec
        var template = try XCTUnwrap(spec["template"] as? [String: Any])
        var podSpec = pod
        podSpec["restartPolicy"] = "Always"
        template["spec"] = podSpec
        badSpec["template"] = template
        badSpec["completionMode"] = "NonIndexed"
        bad["spec"] = badSpec
        let sweep = String(command[3])
        XCTAssertEqual(KubernetesLauncher.check(m, sweep: sweep, size: 3), [])
        let problems = KubernetesLauncher.check(bad, sweep: sweep, size: 3)
        XCTAssertTrue(problems.contains { $0.contains("restartPolicy") }, "\(problems)")
        XCTAssertTrue(problems.contains { $0.contains("Indexed") }, "\(problems)")
        XCTAssertTrue(KubernetesLauncher.check(m, sweep: "other", size: 3).contains { $0.contains("trove run --sweep other") })
    }

    func testAKubernetesSweepIsSubmittedListedAndDeletedThroughKubectl() throws {
        let k = try kube()
        let s = sandbox(k.environment)
        let r = s.trove(k8sArguments(["--json"]))
        ok(r, "k8s sweep")
        let submitted = try XCTUnwrap(try json(r) as? [String: Any])
        let id = try XCTUnwrap(submitted["sweep"] as? String), job = try XCTUnwrap(submitted["job"] as? String)
        XCTAssertEqual(job, "trove-sweep-\(id)")
        let got = k.kubectl(["get", "job", job, "-o", "json"])
        ok(got, "kubectl get job")
        let spec = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(got.stdout.utf8)) as? [String: Any])?["spec"] as? [String: Any])
        XCTAssertEqual(spec["completions"] as? Int, 3)
        // Listed as pending from the Job's status until a pod records its member.
        var list = try runs(s, sweep: id)
        XCTAssertEqual(Set(list.values.map { $0["status"] as? String }), ["pending"])
        XCTAssertEqual(list["\(id)-1"]?["launcher"] as? String, "k8s")
        // What pod 0 runs: its index comes from JOB_COMPLETION_INDEX.
        var pod = s.environment
        pod["JOB_COMPLETION_INDEX"] = "0"
        pod["HOSTNAME"] = "\(job)-0-abcde"
        let task = Runner.run(Runner.trovePath, ["run", "--sweep", id], cwd: s.work, environment: pod)
        ok(task, "pod 0")
        ok(k.kubectl(["patch", "job", job, "--subresource=status", "--type=merge", "-p", "{\"status\":{\"completedIndexes\":\"0\"}}"]), "status")
        list = try runs(s, sweep: id)
        XCTAssertEqual(list["\(id)-0"]?["status"] as? String, "succeeded")
        XCTAssertEqual(list["\(id)-2"]?["status"] as? String, "pending")
        let meta = try XCTUnwrap((try json(s.trove("runs", "show", "\(id)-0", "--json")) as? [String: Any])?["metadata"] as? [String: String])
        XCTAssertEqual(meta["run.launcher"], "k8s")
        XCTAssertEqual(meta["run.pod"], "\(job)-0-abcde")
        // Cancel: the Job is deleted, the members that never ran are recorded as cancelled.
        let cancel = s.trove("cancel", id)
        ok(cancel, "cancel")
        XCTAssertTrue(k.requests.contains { $0.hasPrefix("DELETE /apis/batch/v1/namespaces/default/jobs/\(job)") }, "\(k.requests)")
        XCTAssertNotEqual(k.kubectl(["get", "job", job]).status, 0, "the Job is gone")
        list = try runs(s, sweep: id)
        XCTAssertEqual(list["\(id)-1"]?["status"] as? String, "cancelled")
        XCTAssertEqual(list["\(id)-2"]?["status"] as? String, "cancelled")
        XCTAssertEqual(list["\(id)-0"]?["status"] as? String, "succeeded")
        XCTAssertEqual(s.trove("cancel", id).status, 3, "nothing left to cancel")
    }

    func testKubernetesPodsWithADaemonStoreFetchTheSweepAndPushTheirRuns() throws {
        let k = try kube()
        let s = sandbox(k.environment)
        let daemon = try DaemonProcess(root: s.temp.sub("daemon"), environment: s.environment)
        try daemon.createProject("ml")
        s.extraEnvironment["TROVE_TOKEN"] = try daemon.token("ml", role: "write")
        let r = s.trove(["sweep", "--launcher", "k8s", "--image", "registry.example/train:1", "--store-url", daemon.url("ml"),
                         "--token-secret", "trove-token", "-p", "lr=0.1,0.2", "--json", "--", "./task.sh"])
        ok(r, "k8s sweep with a daemon store")
        let submitted = try XCTUnwrap(try json(r) as? [String: Any])
        let id = try XCTUnwrap(submitted["sweep"] as? String), job = try XCTUnwrap(submitted["job"] as? String)
        XCTAssertEqual(try Refs(root: daemon.root + "/projects/ml").list(prefix: "sweeps/").map(\.name), ["sweeps/\(id)"], "pushed before the Job")
        // The manifest as the cluster got it: the pod's script, the daemon URL, the token from a Secret.
        let got = k.kubectl(["get", "job", job, "-o", "json"])
        let manifest = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(got.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(KubernetesLauncher.check(manifest, sweep: id, size: 2), [])
        let pod = try XCTUnwrap(((manifest["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any])
        let container = try XCTUnwrap((pod["containers"] as? [[String: Any]])?.first)
        let command = try XCTUnwrap(container["command"] as? [String])
        let env = try XCTUnwrap(container["env"] as? [[String: Any]])
        XCTAssertTrue(env.contains { $0["name"] as? String == "TROVE_TOKEN" && "\($0["valueFrom"] ?? "")".contains("trove-token") })
        // Pod 1, run here: its own store, the sweep fetched, the member run, the run pushed back.
        var podEnv = s.environment
        podEnv["JOB_COMPLETION_INDEX"] = "1"
        podEnv["TROVE_STORE_URL"] = daemon.url("ml")
        podEnv["TROVE_TASK_STORE"] = s.temp.sub("pod-store")
        podEnv["PATH"] = (Runner.trovePath as NSString).deletingLastPathComponent + ":" + (podEnv["PATH"] ?? "")
        let task = Runner.run("/bin/sh", Array(command.dropFirst()), cwd: s.work, environment: podEnv)
        ok(task, "the pod's script")
        // The user fetches the results from the daemon.
        ok(s.trove("remote", "add", "cluster", daemon.url("ml")), "remote add")
        ok(s.trove("fetch", "-q", "cluster"), "fetch")
        let list = try runs(s, sweep: id)
        XCTAssertEqual(list["\(id)-1"]?["status"] as? String, "succeeded")
        XCTAssertEqual(list["\(id)-1"]?["params"] as? [String: String], ["lr": "0.2"])
        XCTAssertEqual(list["\(id)-0"]?["status"] as? String, "pending")
        ok(s.trove(["fsck", "--full", "--store", daemon.root + "/projects/ml"]), "daemon store whole")
    }

    func testAKubernetesSweepWithoutAContextIsRefusedAndNothingIsRecorded() throws {
        let s = sandbox(["KUBECONFIG": "/nonexistent/kubeconfig"])
        let r = s.trove(k8sArguments())
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("no Kubernetes context is configured"), r.stderr)
        XCTAssertTrue(r.stderr.contains("--dry-run"), r.stderr)
        XCTAssertEqual(try refs(s, "sweeps/"), [])
        let noImage = s.trove(["sweep", "--launcher", "k8s", "--store-claim", "x", "-p", "lr=1", "--", "true"])
        XCTAssertEqual(noImage.status, 2)
        XCTAssertTrue(noImage.stderr.contains("--image"), noImage.stderr)
    }

    // MARK: any launcher

    func testBatchMembersStopThemselvesEarlyAgainstTheirPeersInTheStore() throws {
        let s = sandbox()
        s.write("steps.sh", Array("""
            #!/bin/sh
            base=1; [ "$TROVE_PARAM_KIND" = bad ] && base=9
            for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
              echo "{\\"step\\": $i, \\"loss\\": $base.$TROVE_PARAM_REPLICA}" >> "$TROVE_METRICS_FILE"
              sleep 0.4
            done

            """.utf8))
        chmod(s.path("steps.sh"), 0o755)
        let rec = s.trove(["sweep", "-p", "kind=good,bad", "-p", "replica=1,2", "--record-only", "--early-stop", "median:loss,min-step=3,min-runs=3", "--json", "--", "./steps.sh"])
        ok(rec, "record-only")
        let id = try XCTUnwrap((try json(rec) as? [String: Any])?["sweep"] as? String)
        // Four batch tasks at once, as an array job's would be: no sweep process watches them.
        let tasks = (0..<4).map { i in Runner.start(Runner.trovePath, ["run", "-q", "--sweep", id, "--index", "\(i)"], cwd: s.work, environment: s.environment) }
        let results = tasks.map { $0.wait() }
        let list = try runs(s, sweep: id)
        for i in 0..<4 {
            let bad = i >= 2
            XCTAssertEqual(list["\(id)-\(i)"]?["status"] as? String, bad ? "cancelled" : "succeeded", "member \(i): \(results[i].stderr)")
        }
        let meta = try XCTUnwrap((try json(s.trove("runs", "show", "\(id)-2", "--json")) as? [String: Any])?["metadata"] as? [String: String])
        XCTAssertTrue(meta["run.stopped_by"]?.hasPrefix("early-stop median:loss") == true, "\(meta)")
        XCTAssertLessThan(Int(meta["metric.loss.steps"] ?? "99") ?? 99, 12, "stopped before it finished")
    }

    func testTwoSweepsWritingIntoOneSharedStoreAtOnceLoseNoRun() throws {
        let s = sandbox()
        // A long run holds no lock: short runs in the same store finish while it goes on.
        let long = s.start(["run", "-q", "--", "sleep", "8"])
        let sweeps = (0..<2).map { k in
            s.start(["sweep", "-q", "-p", "lr=\(k).1,\(k).2,\(k).3,\(k).4,\(k).5", "-p", "bs=1,2", "--parallel", "4", "--json", "--", "./task.sh"])
        }
        let started = Date()
        let results = sweeps.map { $0.wait() }
        XCTAssertLessThan(Date().timeIntervalSince(started), 8, "the sweeps did not wait for the long run")
        for r in results { ok(r, "sweep") }
        ok(long.wait(), "long run")
        let ids = try results.map { try XCTUnwrap((try json($0) as? [String: Any])?["sweep"] as? String) }
        for id in ids {
            let list = try runs(s, sweep: id)
            XCTAssertEqual(list.count, 10)
            XCTAssertEqual(Set(list.values.map { $0["status"] as? String }), ["succeeded"])
            for (run, r) in list {
                let p = try XCTUnwrap(r["params"] as? [String: String])
                XCTAssertEqual(s.trove("cat", "runs/\(run):outputs/model.txt").stdout, "model for lr=\(p["lr"]!) bs=\(p["bs"]!)\n")
            }
        }
        let all = try XCTUnwrap(try json(s.trove("runs", "--json")) as? [[String: Any]])
        XCTAssertEqual(all.count, 21)
        ok(s.trove("fsck", "--full"), "fsck")
    }

    func testRunsRecordedInAClusterStoreReachTheUsersStoreByFetchAndPush() throws {
        // The compute nodes' store (a shared path, no network needed to record into it).
        let cluster = sandbox()
        let sweep = cluster.trove(["sweep", "-q", "-p", "lr=0.1,0.2", "--json", "--", "./task.sh"])
        ok(sweep, "sweep on the cluster store")
        let id = try XCTUnwrap((try json(sweep) as? [String: Any])?["sweep"] as? String)
        // The user's laptop fetches it: the runs are listed with their metrics and readable.
        let laptop = sandbox()
        ok(laptop.trove("remote", "add", "cluster", cluster.path(".trove")), "remote add")
        ok(laptop.trove("fetch", "-q", "cluster"), "fetch")
        let list = try runs(laptop, sweep: id)
        XCTAssertEqual(Set(list.keys), ["\(id)-0", "\(id)-1"])
        XCTAssertEqual(list["\(id)-1"]?["metrics"] as? [String: Double], ["loss": 0.2])
        XCTAssertEqual(list["\(id)-1"]?["ref"] as? String, "remotes/cluster/runs/\(id)-1")
        XCTAssertEqual(laptop.trove("cat", "cluster/runs/\(id)-0:outputs/model.txt").stdout, "model for lr=0.1 bs=\n")
        // And the cluster pushes every run and sweep to a third store in one command.
        let archive = sandbox()
        let push = cluster.trove("push", archive.path(".trove"), "runs/*", "sweeps/*")
        ok(push, "push runs/* sweeps/*")
        XCTAssertEqual(try refs(archive, "runs/").count, 2)
        XCTAssertEqual(try refs(archive, "sweeps/"), ["sweeps/\(id)"])
        XCTAssertEqual(cluster.trove("push", archive.path(".trove"), "models/*").status, 3, "a pattern that matches nothing")
        ok(archive.trove("fsck", "--full"), "fsck")
    }

    func testBadSweepInputIsRefusedBeforeAnythingIsRecorded() throws {
        let s = sandbox()
        for (args, code, message) in [
            (["sweep", "-p", "lr", "--", "./task.sh"], Int32(2), "is not NAME=V1,V2"),
            (["sweep", "-p", "1lr=1,2", "--", "./task.sh"], 2, "must be letters, digits"),
            (["sweep", "--input", "data=nope:train", "-p", "lr=1", "--", "./task.sh"], 3, "input data: unknown revision"),
            (["sweep", "--launcher", "pbs", "-p", "lr=1", "--", "./task.sh"], 2, "unknown launcher"),
            (["run", "--input", "data=HEAD~3:x", "--", "./task.sh"], 3, "input data"),
        ] {
            let r = s.trove(args)
            XCTAssertEqual(r.status, code, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(message), "\(args): \(r.stderr)")
        }
        XCTAssertEqual(try refs(s, "sweeps/") + refs(s, "runs/"), [])
    }
}
