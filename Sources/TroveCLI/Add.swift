import ArgumentParser
import Foundation
import TroveStore

extension TroveCommand {
    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Store files and stage them for the next commit.",
            discussion: """
                Files are split into content-defined chunks; only chunks the store lacks are written. \
                A folder adds everything below it (except .troveignore matches) and unstages files \
                under it that were deleted. Unchanged files (same size, mtime, ctime, inode) are skipped.
                """)

        @Argument(help: "Files or folders ('.' for everything).") var paths: [String]
        @Flag(help: "Print the summary as JSON.") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            let wt = try options.worktree()
            let specs = try paths.map { try wt.relative($0, cwd: options.cwd) }
            let lock = try wt.store.lock()
            defer { _ = lock }
            let writer = ObjectWriter(store: wt.store)
            let start = Date()
            let s = try wt.add(specs, writer: writer, progress: options.progress)
            let elapsed = Date().timeIntervalSince(start)
            if json {
                try Console.json([
                    "added": s.added, "modified": s.modified, "removed": s.removed, "unchanged": s.unchanged,
                    "bytes_read": s.bytesRead, "new_bytes": s.newBytes, "stored_bytes": writer.storedBytes,
                    "chunks": s.chunks, "new_chunks": s.newChunks, "seconds": elapsed,
                ])
                return
            }
            if !options.quiet {
                Console.out("added \(s.added.count), modified \(s.modified.count), removed \(s.removed.count), unchanged \(s.unchanged)")
                if s.bytesRead > 0 {
                    Console.out("read \(Format.bytes(s.bytesRead)) in \(String(format: "%.2f", elapsed))s (\(Format.rate(s.bytesRead, seconds: elapsed))); "
                        + "new data \(Format.bytes(s.newBytes)) in \(s.newChunks) of \(s.chunks) chunks, \(Format.bytes(writer.storedBytes)) stored")
                }
            }
        }
    }
}
