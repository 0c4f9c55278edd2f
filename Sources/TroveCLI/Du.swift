import ArgumentParser
import TroveCore
import TroveStore

extension TroveCommand {
    struct Du: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show how much the store holds and what dedup saved.",
            discussion: """
                logical: the bytes of every file in every commit reachable from refs (what storing each \
                version whole would take); unique: distinct file contents; stored: all pack files on disk; \
                dedup ratio = logical / stored.
                """)

        @Flag(help: "Print as JSON.") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            let u = try options.openStore().usage()
            if json {
                var types: [String: Any] = [:]
                for (t, v) in u.objects { types[t.description] = ["count": v.count, "raw_bytes": v.raw, "stored_bytes": v.stored] }
                try Console.json(["logical_bytes": u.logicalBytes, "unique_bytes": u.uniqueBlobBytes, "stored_bytes": u.storedBytes,
                                  "dedup_ratio": u.dedupRatio, "commits": u.commits, "packs": u.packs, "objects": types])
                return
            }
            Console.out("logical   \(Format.bytes(u.logicalBytes).leftPad(12))  (\(u.commits) commit(s))")
            Console.out("unique    \(Format.bytes(u.uniqueBlobBytes).leftPad(12))")
            Console.out("stored    \(Format.bytes(u.storedBytes).leftPad(12))  (\(u.packs) pack(s))")
            Console.out(String(format: "dedup     %12.2fx", u.dedupRatio))
            for t in ObjectType.allCases {
                guard let v = u.objects[t] else { continue }
                Console.out("\(t.description.padding(toLength: 8, withPad: " ", startingAt: 0))  \(String(v.count).leftPad(10)) objects  \(Format.bytes(v.raw).leftPad(12)) raw  \(Format.bytes(v.stored).leftPad(12)) stored")
            }
        }
    }
}
