import Foundation
import ArgumentParser
import TroveStore
import TroveSync

extension TroveCommand {
    struct Fsck: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the store's consistency.",
            discussion: """
                Quick (default): pack trailers and their checksums, the index against the packs, and that \
                everything refs, HEAD and the stage reach is present (reflog entries are kept by gc during \
                the grace period but not required). --full also reads every object, \
                checks it against its id and rebuilds every file to check its whole-file id. \
                --rebuild-index recreates the SQLite index from the packs first. Exit status 4 when \
                problems are found; each names the object and the pack.
                """)

        @Flag(help: "Re-hash every object and every file.") var full = false
        @Flag(help: "Recreate the index from the pack files first.") var rebuildIndex = false
        @Flag(help: "Print as JSON.") var json = false
        @Option(help: ArgumentHelp("Check the store at PATH through its files only (a bare store, a shared-path remote, a daemon's project, or an s3://BUCKET/PREFIX remote): no SQLite.", valueName: "PATH"))
        var store: String?
        @OptionGroup var options: StoreOptions

        func run() throws {
            if let path = store { return try checkFiles(path.hasPrefix("s3://") ? path : FileIO.absolute(path, base: options.cwd)) }
            let store = try options.openStore()
            if rebuildIndex {
                let lock = try store.lock(exclusive: true, wait: false)
                defer { _ = lock }
                let (p, o) = try store.rebuildIndex()
                if !json { Console.out("Rebuilt the index: \(o) objects in \(p) packs") }
            }
            var f = TroveStore.Fsck(store: store)
            f.progress = options.progress
            let r = try f.run(full: full)
            if json {
                try Console.json([
                    "clean": r.isClean, "packs": r.packs, "objects": r.objects, "commits": r.reachableCommits,
                    "checked_bytes": r.checkedBytes, "removed_temporary_files": r.removedTemporaryFiles, "not_fetched": r.notFetched,
                    "problems": r.problems.map { p -> [String: Any] in
                        var o: [String: Any] = ["message": p.message]
                        if let id = p.object { o["object"] = id.hex }
                        if let pack = p.pack { o["pack"] = pack }
                        return o
                    },
                ])
            } else {
                for t in r.removedTemporaryFiles { Console.out("removed interrupted temporary pack \(t)") }
                for p in r.problems { Console.out("error: \(p)") }
                Console.out("\(r.isClean ? "ok" : "\(r.problems.count) problem(s)"): \(r.packs) packs, \(r.objects) objects, \(r.reachableCommits) commits"
                    + (full ? ", \(Format.bytes(r.checkedBytes)) verified" : "")
                    + (r.notFetched > 0 ? ", \(r.notFetched) chunk(s) not fetched yet (on the remotes)" : ""))
            }
            if !r.isClean { throw CommandFailed(code: TroveCLI.ExitStatus.integrity) }
        }

        func checkFiles(_ path: String) throws {
            let r = path.hasPrefix("s3://") ? try S3Remote(url: path, environment: ProcessInfo.processInfo.environment).check(full: full)
                : try SyncService(store: try SharedStore(root: PathRemote.storeRoot(path))).check(full: full)
            try Fsck.report(r, json: json)
        }

        /// Prints a check of a store's files (or a daemon's project) and fails with exit 4 on problems.
        static func report(_ r: (packs: Int, objects: Int, problems: [String]), json: Bool) throws {
            if json {
                try Console.json(["clean": r.problems.isEmpty, "packs": r.packs, "objects": r.objects, "problems": r.problems.map { ["message": $0] }])
            } else {
                for p in r.problems { Console.out("error: \(p)") }
                Console.out("\(r.problems.isEmpty ? "ok" : "\(r.problems.count) problem(s)"): \(r.packs) packs, \(r.objects) objects")
            }
            if !r.problems.isEmpty { throw CommandFailed(code: TroveCLI.ExitStatus.integrity) }
        }
    }
}
