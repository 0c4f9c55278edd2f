import ArgumentParser
import Foundation
import Glibc
import TroveCore
import TroveRuns
import TroveStore
import TroveSync

/// `trove sweep --launcher slurm` options: passed through to sbatch.
struct SlurmOptions: ParsableArguments {
    @Option(help: "Slurm partition (sbatch --partition).") var partition: String?
    @Option(help: ArgumentHelp("Slurm's time limit per task (sbatch --time).", valueName: "MM|HH:MM:SS|D-HH:MM")) var time: String?
    @Option(help: ArgumentHelp("Generic resources per task (sbatch --gres).", valueName: "gpu:1")) var gres: String?
    @Option(help: "The account charged (sbatch --account).") var account: String?
    @Option(help: ArgumentHelp("Memory per task's node (sbatch --mem).", valueName: "16G")) var mem: String?
    @Option(name: .customLong("sbatch"), parsing: .unconditionalSingleValue, help: ArgumentHelp("Another #SBATCH line (repeatable).", valueName: "'--qos=high'")) var extra: [String] = []

    func launcher(parallel: Int?) throws -> SlurmLauncher {
        var s = SlurmLauncher(trove: try currentExecutable())
        (s.partition, s.time, s.gres, s.account, s.mem, s.extra, s.parallel) = (partition, time, gres, account, mem, extra, parallel)
        return s
    }
}

/// `trove sweep --launcher k8s` options: the Indexed Job's pod.
struct KubernetesOptions: ParsableArguments {
    @Option(help: "The container image; it must have trove on PATH and run the command.") var image: String?
    @Option(help: "The namespace.") var namespace = "default"
    @Option(help: "The kubeconfig context (default: the current one).") var context: String?
    @Option(help: ArgumentHelp("CPU per pod (request and limit).", valueName: "2")) var cpu: String?
    @Option(help: ArgumentHelp("Memory per pod (request and limit).", valueName: "8Gi")) var memory: String?
    @Option(help: "GPUs per pod (nvidia.com/gpu).") var gpus: Int?
    @Option(name: .customLong("env"), help: ArgumentHelp("An environment variable for the pods (repeatable).", valueName: "NAME=VALUE")) var environment: [String] = []
    @Option(name: .customLong("store-claim"), help: ArgumentHelp("A PersistentVolumeClaim holding the store.", valueName: "PVC")) var storeClaim: String?
    @Option(name: .customLong("store-host-path"), help: ArgumentHelp("A node path holding the store (instead of a claim).", valueName: "PATH")) var storeHostPath: String?
    @Option(name: .customLong("store-mount"), help: "Where the store is mounted in the pod.") var storeMount = "/trove"
    @Option(name: .customLong("store-url"), help: ArgumentHelp("A Trove daemon (or other remote) the pods fetch the sweep from and push their runs to, instead of a volume.", valueName: "URL"))
    var storeURL: String?
    @Option(name: .customLong("token-secret"), help: ArgumentHelp("The Secret holding the daemon token, given to the pods as TROVE_TOKEN.", valueName: "NAME[:KEY]"))
    var tokenSecret: String?
    @Option(name: .customLong("workdir"), help: "The folder the command runs in inside the pod.") var workdir: String?

    func launcher(parallel: Int?) throws -> KubernetesLauncher {
        guard let image, !image.isEmpty else {
            throw StoreError(.invalidInput, "--launcher k8s needs --image", hint: "an image with trove and your code, e.g. --image registry.example/train:1.4")
        }
        var k = KubernetesLauncher(image: image)
        (k.namespace, k.context, k.cpu, k.memory, k.gpus, k.parallel) = (namespace, context, cpu, memory, gpus, parallel)
        (k.storeClaim, k.storeHostPath, k.storeMount, k.workingDirectory) = (storeClaim, storeHostPath, storeMount, workdir)
        (k.storeURL, k.tokenSecret) = (storeURL, tokenSecret)
        if storeURL != nil && (storeClaim != nil || storeHostPath != nil) {
            throw StoreError(.invalidInput, "give one store for the pods: --store-url, --store-claim or --store-host-path")
        }
        for e in environment {
            guard let eq = e.firstIndex(of: "="), eq != e.startIndex else { throw StoreError(.invalidInput, "--env \(e.debugDescription) is not NAME=VALUE") }
            k.environment.append((String(e[..<eq]), String(e[e.index(after: eq)...])))
        }
        return k
    }
}

/// This trove's executable, for batch scripts on nodes that share the file system.
func currentExecutable() throws -> String {
    guard let p = realpath("/proc/self/exe", nil) else { throw StoreError(.io, "cannot tell where the trove executable is (/proc/self/exe)") }
    defer { free(p) }
    return String(cString: p)
}

extension TroveCommand.Sweep {
    /// Records the sweep and hands it to a batch system; nothing stays recorded when the
    /// submission is refused. With --wait, waits for every member's record.
    func submit(_ sweep: LocalSweep, store: Store, batch: BatchLauncher) throws {
        guard !recordOnly else { throw StoreError(.invalidInput, "--record-only is for a batch system you drive yourself: drop it, or drop --launcher") }
        let variants = sweep.spec.variants()
        if dryRun {
            FileHandle.standardOutput.write(Data(try batch.jobText(sweep: sweep.id, size: variants.count, store: store, directory: options.cwd).utf8))
            return
        }
        try batch.preflight()
        let text = try batch.jobText(sweep: sweep.id, size: variants.count, store: store, directory: options.cwd)
        if let k = batch as? KubernetesLauncher, k.storeURL != nil, !sweep.spec.run.inputs.isEmpty {
            throw StoreError(.invalidInput, "--input needs a store the pods share (--store-claim or --store-host-path), not --store-url")
        }
        let record = try sweep.recordSweep(variants)
        let job: String
        do {
            // Pods with a daemon store fetch the sweep from it: it must be there first.
            if let k = batch as? KubernetesLauncher, let url = k.storeURL {
                let remote = try Remotes.open(url, store: store)
                defer { remote.close() }
                _ = try Pusher(store: store, remote: remote, remoteName: nil).push([RefSpec(source: "sweeps/" + sweep.id, destination: "sweeps/" + sweep.id)])
            }
            job = try batch.submit(text, sweep: sweep.id, store: store)
        } catch {
            try? SweepRecord.discard(store, sweep: sweep.id)
            throw error
        }
        let launch = SweepLaunch(launcher: batch.name, job: job, submitted: ISO8601DateFormatter().string(from: Date()), settings: batch.settings)
        do {
            try SweepRecord.recordLaunch(store, sweep: sweep.id, launch: launch, jobText: text, jobFile: batch.name == "slurm" ? "job.sbatch" : "job.json")
        } catch {
            throw StoreError(.io, "sweep \(sweep.id) was submitted as \(batch.name) job \(job), but recording that failed: \(error)",
                             hint: "its members still record themselves; stop it with the batch system if needed")
        }
        if json && !wait {
            try Console.json(["sweep": sweep.id, "commit": record.hex, "launcher": batch.name, "job": job, "size": variants.count] as [String: Any])
            return
        }
        if !options.quiet {
            Console.err("trove: sweep \(sweep.id): \(variants.count) run(s) submitted to \(batch.name) as job \(job); watch: trove runs --sweep \(sweep.id); stop: trove cancel \(sweep.id)")
        }
        guard wait else { return }
        let members = try waitForMembers(sweep.id, size: variants.count, store: store)
        let bad = members.filter { $0.status != "succeeded" && !($0.status == "cancelled" && ($0.field("stopped_by") ?? "").hasPrefix("early-stop")) }
        if json {
            try Console.json(["sweep": sweep.id, "launcher": batch.name, "job": job,
                              "runs": members.map { ["index": $0.index, "id": $0.id, "status": $0.status] as [String: Any] }] as [String: Any])
        } else if !options.quiet {
            let counts = Dictionary(grouping: members, by: \.status).mapValues(\.count)
            Console.err("trove: sweep \(sweep.id) done: " + counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
        }
        if !bad.isEmpty { throw CommandFailed(code: TroveCLI.ExitStatus.failure) }
    }

    struct Member {
        var index: Int
        var id: String
        var status: String
        var metadata: [String: String]
        func field(_ name: String) -> String? { metadata["run." + name] }
    }

    /// Polls the store (each member records itself there) until every member is recorded, or
    /// the batch system no longer runs the rest (those are reported as it last saw them).
    func waitForMembers(_ sweep: String, size: Int, store: Store) throws -> [Member] {
        var reported = Set<String>()
        while true {
            let recorded = try RunList.all(store).filter { $0.id.hasPrefix(sweep + "-") }
            for r in recorded.sorted(by: { $0.id < $1.id }) where !reported.contains(r.id) && !options.quiet && !json {
                reported.insert(r.id)
                Console.err("  \(r.id)  \(r.status.padding(toLength: 9, withPad: " ", startingAt: 0)) " + r.parameters.map { "\($0.0)=\($0.1)" }.joined(separator: " "))
            }
            var members = recorded.map { r in
                Member(index: Int(r.id.split(separator: "-").last ?? "") ?? -1, id: r.id, status: r.status,
                       metadata: Dictionary(r.metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a }))
            }
            if members.count >= size { return members.sorted { $0.index < $1.index } }
            let live = Set(RunList.live(store).map(\.id))
            let queued = BatchSweeps.queued(store, sweeps: try BatchSweeps.submitted(store, matching: sweep),
                                                recorded: Set(recorded.map(\.id)), live: live)
            if live.isEmpty && !queued.isEmpty && queued.allSatisfy({ ["lost", "cancelled", "timeout", "unknown"].contains($0.status) }) {
                members += queued.map { Member(index: $0.index, id: $0.id, status: $0.status, metadata: [:]) }
                return members.sorted { $0.index < $1.index }
            }
            usleep(500_000)
        }
    }
}
