import ArgumentParser
import Foundation
import Glibc
import TroveCore
import TroveGit
import TroveRuns
import TroveStore
import TroveSync

extension TroveCommand {
    struct Cancel: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop runs: a run id, a sweep id (all its members that have not ended), or unique prefixes.",
            discussion: """
                A run on this machine: the reason is left for the recording `trove` and its process \
                group gets SIGTERM; it is recorded as cancelled (run.stopped_by). A sweep submitted \
                to Slurm or Kubernetes: its tasks are stopped through the batch system (scancel, \
                kubectl delete); a running member records itself as cancelled, a member still queued \
                is recorded as cancelled by this command (run.started=false). Exit 3 when nothing \
                named is running or queued.
                """)
        @Argument(help: "Run or sweep ids.") var ids: [String]
        @OptionGroup var options: StoreOptions

        func run() throws {
            let store = try options.openStore()
            let live = RunList.live(store)
            let submitted = try BatchSweeps.submitted(store)
            let recorded = Set(try store.refs.list(prefix: "runs/").map { String($0.name.dropFirst(5)) })
            let queued = BatchSweeps.queued(store, sweeps: submitted, recorded: recorded, live: Set(live.map(\.id)))
                .filter { ["pending", "starting", "unknown"].contains($0.status) }
            var chosenLive: [LiveRun] = []
            var chosenQueued: [QueuedMember] = []
            for id in ids {
                func named(_ run: String, _ sweep: String) -> Bool {
                    run == id || run.hasPrefix(id) || (!sweep.isEmpty && (sweep == id || sweep.hasPrefix(id)))
                }
                let l = live.filter { named($0.id, $0.sweep) }
                let q = queued.filter { named($0.id, $0.sweep) }
                guard !l.isEmpty || !q.isEmpty else {
                    throw StoreError(.notFound, "nothing named \(id) is running or queued", hint: "`trove runs` shows what runs (running, pending)")
                }
                chosenLive += l.filter { m in !chosenLive.contains { $0.id == m.id } }
                chosenQueued += q.filter { m in !chosenQueued.contains { $0.id == m.id } }
            }
            let user = ProcessInfo.processInfo.environment["USER"] ?? "someone"
            let reason = "trove cancel by \(user)"
            // Members of submitted sweeps go through their batch system, whole tasks at once.
            var batchJobs: [String: (launch: SweepLaunch, indices: Set<Int>, sweep: SweepRecord)] = [:]
            for s in submitted {
                guard let launch = s.launch else { continue }
                var indices = Set(chosenQueued.filter { $0.sweep == s.id }.map(\.index))
                for r in chosenLive where r.sweep == s.id {
                    if let i = Int(r.id.split(separator: "-").last ?? "") { indices.insert(i) }
                }
                if !indices.isEmpty { batchJobs[s.id] = (launch, indices, s) }
            }
            let viaBatch = chosenLive.filter { batchJobs[$0.sweep] != nil }
            for r in viaBatch { try FileIO.atomicWrite(r.directory + "/cancel", Array((reason + "\n").utf8), durable: false) }
            for (id, job) in batchJobs.sorted(by: { $0.key < $1.key }) {
                let everything = job.indices.count + (recorded.filter { $0.hasPrefix(id + "-") }.count) >= job.sweep.variants.count
                try BatchSweeps.launcher(for: job.launch).cancel(job: job.launch.job, indices: everything ? nil : job.indices.sorted())
            }
            for q in chosenQueued {
                guard let s = batchJobs[q.sweep]?.sweep else { continue }
                if try RunRecorder.recordNotStarted(store: store, sweep: s, index: q.index, status: .cancelled, reason: reason) != nil {
                    if !options.quiet { Console.out("cancelled \(q.id) (\(q.status) in \(q.launcher) job \(q.job): recorded as cancelled)") }
                }
            }
            if !options.quiet { for r in viaBatch { Console.out("cancelled \(r.id) (running: stopped through \(batchJobs[r.sweep]!.launch.launcher); it records itself)") } }
            let done = try RunList.cancel(chosenLive.filter { batchJobs[$0.sweep] == nil }, reason: reason)
            if !options.quiet { for r in done { Console.out("cancelled \(r.id)") } }
        }
    }
}
