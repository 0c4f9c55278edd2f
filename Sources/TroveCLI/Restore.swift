import ArgumentParser
import Foundation
import TroveStore
import TroveSync

extension TroveCommand {
    struct Restore: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a commit's files into another folder.",
            discussion: "Every chunk is verified before it is written; nothing is written outside DIR. The stage and HEAD are untouched.")

        @Argument(help: "A revision.") var revision: String
        @Argument(help: "Paths in the commit (default: everything).") var paths: [String] = []
        @Option(help: ArgumentHelp("The folder to write into (created if missing).", valueName: "DIR")) var to: String
        @OptionGroup var options: StoreOptions

        func run() throws {
            let store = try options.openStore()
            let lock = try store.lock()
            defer { _ = lock }
            let id = try store.resolve(revision)
            try LazyFetch.ensure(store, commit: id, filter: paths.isEmpty ? .all : PathFilter(paths.map { $0.split(separator: "/").joined(separator: "/") }),
                                 progress: options.progress)
            let files = try store.flatten(tree: try store.commit(id).tree)
            var selected: [(String, TroveCore.Tree.Entry)] = []
            if paths.isEmpty {
                selected = files.map { ($0.key, $0.value) }
            } else {
                for p in paths {
                    let spec = p.split(separator: "/").joined(separator: "/")
                    let hits = files.filter { spec.isEmpty || $0.key == spec || $0.key.hasPrefix(spec + "/") }
                    if hits.isEmpty { throw StoreError(.notFound, "path \(p) does not exist in \(id.short())") }
                    selected.append(contentsOf: hits.map { ($0.key, $0.value) })
                }
            }
            selected.sort { $0.0 < $1.0 }
            let dir = FileIO.absolute(to, base: options.cwd)
            try FileIO.mkdirs(dir)
            let m = Materializer(store: store, root: dir)
            let progress = options.progress
            m.progress = progress
            let total = selected.reduce(UInt64(0)) { $0 + $1.1.size }
            progress?.begin(total: total, label: "restoring")
            let start = Date()
            _ = try m.write(selected)
            progress?.end()
            let t = Date().timeIntervalSince(start)
            if !options.quiet {
                Console.out("Restored \(selected.count) file(s), \(Format.bytes(total)) from \(id.short()) to \(dir) in \(String(format: "%.2f", t))s (\(Format.rate(total, seconds: t)))")
            }
        }
    }
}

import TroveCore
