import Foundation
import Glibc
import TroveCore
import TroveStore

/// Hands a sweep to Slurm as one job array (`sbatch --parsable --array=0-N[%P]`) whose tasks
/// each run `trove run --sweep ID --index $SLURM_ARRAY_TASK_ID` against the same store
/// (a path the nodes share). Watches with `squeue`, stops with `scancel` (Docs/runs.md §Slurm).
public struct SlurmLauncher: BatchLauncher {
    public var name: String { "slurm" }
    public var partition: String?
    /// `--time`: Slurm's wall-clock limit per task (`MM`, `HH:MM:SS`, `D-HH`...).
    public var time: String?
    public var gres: String?
    public var account: String?
    public var mem: String?
    /// More `#SBATCH` lines: `--qos=high` or `#SBATCH --qos=high`.
    public var extra: [String] = []
    /// At most this many tasks at once (`%P`); nil: as many as Slurm gives.
    public var parallel: Int?
    /// The `trove` the tasks run: this executable, which the nodes see at the same path.
    public var trove: String

    public init(trove: String) { self.trove = trove }

    public func preflight() throws {
        for tool in ["sbatch", "squeue", "scancel", "scontrol"] where !Tool.onPath(tool) {
            throw StoreError(.notFound, "\(tool) is not installed here: the Slurm launcher submits with sbatch",
                             hint: "run trove sweep on a Slurm login node (or install slurm-client); nothing was submitted")
        }
        // `scontrol ping` answers within its message timeout whether the controller is up.
        let r = try Tool.run(["scontrol", "ping"], timeout: 30)
        guard r.ok, r.stdout.contains(" is UP") else {
            let conf = ProcessInfo.processInfo.environment["SLURM_CONF"].map { " (SLURM_CONF=\($0))" } ?? ""
            throw StoreError(.io, "the Slurm controller is not reachable\(conf): \(r.timedOut ? "scontrol ping timed out" : r.message)",
                             hint: "check `scontrol ping` and `sinfo`; nothing was submitted or recorded")
        }
    }

    public var settings: [String: String] { [:] }

    /// Where the tasks' own output (`slurm-%A_%a.out`) goes: what Trove printed before and
    /// around the run; the run's logs are in its record.
    public static func logDirectory(store: Store, sweep: String) -> String { store.root + "/batch/" + sweep }

    public func jobText(sweep: String, size: Int, store: Store, directory: String) throws -> String {
        let logs = Self.logDirectory(store: store, sweep: sweep)
        var lines = ["#!/bin/bash", "#SBATCH --job-name=trove-\(sweep)",
                     "#SBATCH --array=0-\(size - 1)" + (parallel.map { "%\($0)" } ?? ""),
                     "#SBATCH --output=\(logs)/slurm-%A_%a.out"]
        for (flag, value) in [("partition", partition), ("time", time), ("gres", gres), ("account", account), ("mem", mem)] {
            if let value { lines.append("#SBATCH --\(flag)=\(value)") }
        }
        for e in extra {
            let t = e.trimmingCharacters(in: .whitespaces)
            guard !t.contains("\n") else { throw StoreError(.invalidInput, "--sbatch \(e.debugDescription) spans lines") }
            lines.append(t.hasPrefix("#SBATCH") ? t : "#SBATCH " + t)
        }
        lines += [
            "# Written by `trove sweep --launcher slurm`: task N runs member N of sweep \(sweep)",
            "# from the store below and records it there (runs/\(sweep)-N).",
            "cd \(RunRecorder.shellQuoted([directory]))",
            "export TROVE_DIR=\(RunRecorder.shellQuoted([store.root]))",
            "exec \(RunRecorder.shellQuoted([trove])) run --sweep \(sweep) --index \"$SLURM_ARRAY_TASK_ID\"",
        ]
        return lines.joined(separator: "\n") + "\n"
    }

    public func submit(_ text: String, sweep: String, store: Store) throws -> String {
        try FileIO.mkdirs(Self.logDirectory(store: store, sweep: sweep))
        let r = try Tool.run(["sbatch", "--parsable"], input: text, timeout: 120)
        // The id is the last line (warnings may come first), `ID` or `ID;CLUSTER`.
        let last = r.stdout.split(separator: "\n").last.map { String($0.split(separator: ";").first ?? "") } ?? ""
        guard r.ok, !last.isEmpty, last.allSatisfy(\.isNumber) else {
            throw StoreError(.io, "sbatch refused sweep \(sweep): \(r.timedOut ? "timed out" : r.message)",
                             hint: "check the --partition/--time/--gres/--account/--mem/--sbatch options; the sweep was not recorded")
        }
        return last
    }

    public func states(job: String) throws -> [Int: String] {
        // -r: one line per array task (pending ones would otherwise collapse into one).
        let r = try Tool.run(["squeue", "-h", "-r", "-j", job, "-t", "all", "-o", "%K %T"], timeout: 30)
        guard r.ok else {
            // squeue forgets a job MinJobAge seconds after it ended: then it knows nothing.
            if r.message.contains("Invalid job id") { return [:] }
            throw StoreError(.io, "squeue could not list Slurm job \(job): \(r.message)", hint: "check `scontrol ping`")
        }
        var out: [Int: String] = [:]
        for line in r.stdout.split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.count == 2, let i = Int(f[0]) { out[i] = String(f[1]) }
        }
        return out
    }

    public func cancel(job: String, indices: [Int]?) throws {
        let targets = indices.map { $0.map { "\(job)_\($0)" } } ?? [job]
        guard !targets.isEmpty else { return }
        let r = try Tool.run(["scancel"] + targets, timeout: 60)
        guard r.ok else { throw StoreError(.io, "scancel \(targets.joined(separator: " ")) failed: \(r.message)", hint: "check `squeue -j \(job)`") }
    }
}
