import ArgumentParser
import TroveStore

extension TroveCommand {
    struct Gc: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Drop unreachable data and repack small packs.",
            discussion: """
                Keeps everything that refs, HEAD, the stage and reflog entries younger than the grace period \
                (config gc.grace-seconds, default 14 days) reach. Packs with dead objects, and small packs, \
                are rewritten; new packs are durable before old ones are deleted.
                """)

        @Option(help: "Override the grace period, in seconds.") var grace: Int?
        @Flag(help: "Print as JSON.") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            var gc = GarbageCollector(store: try options.openStore())
            if let grace { gc.graceSeconds = Int64(grace) }
            gc.progress = options.progress
            let r = try gc.run()
            if json {
                try Console.json(["packs_before": r.packsBefore, "packs_after": r.packsAfter, "bytes_before": r.bytesBefore,
                                  "bytes_after": r.bytesAfter, "objects_dropped": r.objectsDropped, "objects_kept": r.objectsKept])
                return
            }
            Console.out("packs \(r.packsBefore) → \(r.packsAfter), \(Format.bytes(r.bytesBefore)) → \(Format.bytes(r.bytesAfter)); \(r.objectsDropped) unreachable object(s) dropped")
        }
    }
}
