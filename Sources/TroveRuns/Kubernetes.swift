import Foundation
import Glibc
import TroveCore
import TroveStore

/// Hands a sweep to Kubernetes as one Indexed Job (`completionMode: Indexed`): pod N runs
/// `trove run --sweep ID`, which takes its member from `JOB_COMPLETION_INDEX`, against the
/// store mounted at `storeMount` (a PersistentVolumeClaim or a host path the nodes share).
/// Submits, watches and deletes through `kubectl` (Docs/runs.md §Kubernetes).
public struct KubernetesLauncher: BatchLauncher {
    public var name: String { "k8s" }
    public var image: String
    public var namespace = "default"
    /// A kubeconfig context; nil: the current one.
    public var context: String?
    public var parallel: Int?
    public var cpu: String?
    public var memory: String?
    public var gpus: Int?
    public var environment: [(name: String, value: String)] = []
    /// The store's volume: a PersistentVolumeClaim, else a host path.
    public var storeClaim: String?
    public var storeHostPath: String?
    public var storeMount = "/trove"
    /// Instead of a volume: a Trove daemon remote. Each pod fetches the sweep into a store of
    /// its own (an emptyDir), runs its member and pushes the run back.
    public var storeURL: String?
    /// The Secret (`NAME` or `NAME:KEY`, key default `token`) holding the daemon token.
    public var tokenSecret: String?
    /// The folder the command runs in inside the container (the image's when nil).
    public var workingDirectory: String?
    /// `trove` inside the image.
    public var trove = "trove"

    public init(image: String) { self.image = image }

    public static func jobName(_ sweep: String) -> String { "trove-sweep-" + sweep.lowercased() }

    var kubectl: [String] { ["kubectl"] + (context.map { ["--context", $0] } ?? []) + ["--namespace", namespace] }

    public func preflight() throws {
        guard Tool.onPath("kubectl") else {
            throw StoreError(.notFound, "kubectl is not installed: the k8s launcher submits with it", hint: "install kubectl, or use --dry-run to print the Job manifest")
        }
        guard storeClaim != nil || storeHostPath != nil || storeURL != nil else {
            throw StoreError(.invalidInput, "the pods need the store: give --store-claim PVC, --store-host-path PATH or --store-url DAEMON-URL",
                             hint: "a volume is mounted at \(storeMount) and the runs are recorded there; with a daemon each pod pushes its run")
        }
        if context == nil {
            let r = try Tool.run(["kubectl", "config", "current-context"], timeout: 30)
            guard r.ok, !r.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw StoreError(.invalidInput, "no Kubernetes context is configured (\(r.message))",
                                 hint: "`kubectl config use-context NAME`, or --context NAME; --dry-run prints the manifest without submitting")
            }
        }
    }

    /// What a pod runs with a daemon store (`--store-url`): a store of its own, the sweep
    /// fetched into it, the member run, the run pushed back (its exit status kept).
    public func daemonTaskScript(sweep: String) -> String {
        """
        set -eu
        wd=$(pwd)
        store="${TROVE_TASK_STORE:-/tmp/trove-store}"
        mkdir -p "$store" && cd "$store" && \(trove) init -q && cd "$wd"
        export TROVE_DIR="$store/.trove"
        \(trove) remote add origin "$TROVE_STORE_URL" >/dev/null
        \(trove) fetch -q origin sweeps/\(sweep)
        set +e
        \(trove) run --sweep \(sweep)
        rc=$?
        \(trove) push -q origin "runs/\(sweep)-$JOB_COMPLETION_INDEX" || exit 7
        exit $rc
        """
    }

    /// The Job as a JSON object.
    public func manifest(sweep: String, size: Int) -> [String: Any] {
        var env: [[String: Any]] = []
        var container: [String: Any] = ["name": "trove-run", "image": image]
        if let storeURL {
            container["command"] = ["sh", "-c", daemonTaskScript(sweep: sweep), "trove-task"]
            env.append(["name": "TROVE_STORE_URL", "value": storeURL])
            env.append(["name": "TROVE_TASK_STORE", "value": storeMount])
            if let tokenSecret {
                let parts = tokenSecret.split(separator: ":", maxSplits: 1).map(String.init)
                env.append(["name": "TROVE_TOKEN", "valueFrom": ["secretKeyRef": ["name": parts[0], "key": parts.count > 1 ? parts[1] : "token"]]])
            }
        } else {
            container["command"] = [trove, "run", "--sweep", sweep]
            env.append(["name": "TROVE_DIR", "value": storeMount])
        }
        container["env"] = env + environment.map { ["name": $0.name, "value": $0.value] }
        container["volumeMounts"] = [["name": "trove-store", "mountPath": storeMount]]
        if let workingDirectory { container["workingDir"] = workingDirectory }
        var requests: [String: Any] = [:], limits: [String: Any] = [:]
        if let cpu { requests["cpu"] = cpu; limits["cpu"] = cpu }
        if let memory { requests["memory"] = memory; limits["memory"] = memory }
        if let gpus { limits["nvidia.com/gpu"] = gpus }
        if !requests.isEmpty || !limits.isEmpty {
            container["resources"] = ["requests": requests, "limits": limits].filter { !$0.value.isEmpty }
        }
        let volume: [String: Any] = storeURL != nil ? ["name": "trove-store", "emptyDir": [String: Any]()]
            : storeClaim.map { ["name": "trove-store", "persistentVolumeClaim": ["claimName": $0]] }
            ?? ["name": "trove-store", "hostPath": ["path": storeHostPath ?? "/trove", "type": "Directory"]]
        let labels = ["app.kubernetes.io/managed-by": "trove", "trove.dev/sweep": sweep]
        return [
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": ["name": Self.jobName(sweep), "namespace": namespace, "labels": labels],
            "spec": [
                "completionMode": "Indexed", "completions": size, "parallelism": min(parallel ?? size, size),
                // A failing variant is recorded as failed and is not retried (it is recorded
                // once); the other indexes go on.
                "backoffLimitPerIndex": 0, "maxFailedIndexes": size,
                "template": [
                    "metadata": ["labels": labels],
                    "spec": ["restartPolicy": "Never", "containers": [container], "volumes": [volume]] as [String: Any],
                ] as [String: Any],
            ] as [String: Any],
        ]
    }

    public func jobText(sweep: String, size: Int, store: Store, directory: String) throws -> String {
        let m = manifest(sweep: sweep, size: size)
        let problems = Self.check(m, sweep: sweep, size: size)
        guard problems.isEmpty else { throw StoreError(.invalidInput, "the Job manifest is wrong: " + problems.joined(separator: "; ")) }
        return String(decoding: try JSONSerialization.data(withJSONObject: m, options: [.sortedKeys, .prettyPrinted]), as: UTF8.self) + "\n"
    }

    /// Rules the API schema does not catch: what a sweep's Job must be for its members to run
    /// once each. Empty when it is right.
    public static func check(_ m: [String: Any], sweep: String, size: Int) -> [String] {
        var out: [String] = []
        let name = (m["metadata"] as? [String: Any])?["name"] as? String ?? ""
        if name.count > 63 || name.isEmpty || !name.allSatisfy({ ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" })
            || name.first == "-" || name.last == "-" {
            out.append("metadata.name \(name.debugDescription) is not a DNS-1123 label")
        }
        let spec = m["spec"] as? [String: Any] ?? [:]
        if spec["completionMode"] as? String != "Indexed" { out.append("spec.completionMode must be Indexed") }
        if spec["completions"] as? Int != size { out.append("spec.completions must be the sweep's size \(size)") }
        if let p = spec["parallelism"] as? Int, p < 1 || p > size { out.append("spec.parallelism must be 1...\(size)") }
        let pod = ((spec["template"] as? [String: Any])?["spec"] as? [String: Any]) ?? [:]
        let restart = pod["restartPolicy"] as? String ?? ""
        if restart != "Never" && restart != "OnFailure" { out.append("template.spec.restartPolicy must be Never or OnFailure, not \(restart.debugDescription)") }
        if spec["backoffLimitPerIndex"] != nil && restart != "Never" { out.append("backoffLimitPerIndex needs restartPolicy Never") }
        let containers = pod["containers"] as? [[String: Any]] ?? []
        let command = containers.first?["command"] as? [String] ?? []
        let direct = command.count >= 4 && command[1] == "run" && command.suffix(2) == ["--sweep", sweep]
        let viaDaemon = command.count >= 3 && command[0] == "sh" && command[2].contains("run --sweep \(sweep)\n")
        if containers.count != 1 || !(direct || viaDaemon) {
            out.append("the container must run `trove run --sweep \(sweep)` (its member comes from JOB_COMPLETION_INDEX)")
        }
        let env = containers.first?["env"] as? [[String: Any]] ?? []
        if !env.contains(where: { ["TROVE_DIR", "TROVE_STORE_URL"].contains($0["name"] as? String) }) {
            out.append("the container needs TROVE_DIR (the mounted store) or TROVE_STORE_URL (a daemon)")
        }
        return out
    }

    public var settings: [String: String] { ["namespace": namespace, "context": context].compactMapValues { $0 } }

    public func submit(_ text: String, sweep: String, store: Store) throws -> String {
        // The fields are checked above and by kubernetes-validate in the tests; --validate=false
        // spares a schema download that clusters behind proxies often refuse.
        let r = try Tool.run(kubectl + ["apply", "--validate=false", "-f", "-"], input: text, timeout: 120)
        guard r.ok else {
            throw StoreError(.io, "kubectl apply refused sweep \(sweep): \(r.timedOut ? "timed out" : r.message)",
                             hint: "check the context (`kubectl config current-context`) and namespace \(namespace); the sweep was not recorded")
        }
        return Self.jobName(sweep)
    }

    public func states(job: String) throws -> [Int: String] {
        let r = try Tool.run(kubectl + ["get", "job", job, "-o", "json"], timeout: 30)
        guard r.ok else {
            if r.message.contains("NotFound") || r.message.contains("not found") { return [:] }
            throw StoreError(.io, "kubectl get job \(job) failed: \(r.message)")
        }
        guard let j = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] else { return [:] }
        let size = (j["spec"] as? [String: Any])?["completions"] as? Int ?? 0
        let status = j["status"] as? [String: Any] ?? [:]
        let done = Self.indexes(status["completedIndexes"] as? String ?? "")
        let failed = Self.indexes(status["failedIndexes"] as? String ?? "")
        var out: [Int: String] = [:]
        for i in 0..<size { out[i] = done.contains(i) ? "COMPLETED" : failed.contains(i) ? "FAILED" : "PENDING" }
        return out
    }

    /// `"1,3-5"` → {1, 3, 4, 5}.
    public static func indexes(_ text: String) -> Set<Int> {
        var out = Set<Int>()
        for part in text.split(separator: ",") {
            let r = part.split(separator: "-").compactMap { Int($0) }
            if r.count == 1 { out.insert(r[0]) } else if r.count == 2, r[0] <= r[1] { out.formUnion(r[0]...r[1]) }
        }
        return out
    }

    public func cancel(job: String, indices: [Int]?) throws {
        let args: [String]
        if let indices {
            guard !indices.isEmpty else { return }
            // One index: its pods (the Job does not retry it: backoffLimitPerIndex 0).
            args = ["delete", "pods", "--wait=false", "-l", "job-name=\(job),batch.kubernetes.io/job-completion-index in (\(indices.map(String.init).joined(separator: ",")))"]
        } else {
            args = ["delete", "job", job, "--wait=false"]
        }
        let r = try Tool.run(kubectl + args, timeout: 60)
        guard r.ok || r.message.contains("NotFound") else { throw StoreError(.io, "kubectl \(args.joined(separator: " ")) failed: \(r.message)") }
    }
}
