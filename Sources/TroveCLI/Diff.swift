import ArgumentParser
import Foundation
import TroveCore
import TroveStore

extension TroveCommand {
    struct Diff: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Compare two commits, or a commit with the working tree, file by file.",
            discussion: """
                No REV: HEAD against the working tree. One REV: that commit against the working tree. \
                Two: the first against the second. For each changed file: sizes and the share of the \
                new version's bytes found in chunks of the old one (what dedup saved).
                """)

        @Argument(help: "Zero, one or two revisions.") var revisions: [String] = []
        @Flag(help: "Print as JSON.") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            guard revisions.count <= 2 else { throw ValidationError("diff takes at most two revisions") }
            let store = try options.openStore()
            let old = try store.flatten(tree: try store.commit(try store.resolve(revisions.first ?? "HEAD")).tree)
            var workChunks: [ObjectID: [ChunkRef]] = [:]
            let new: [String: Tree.Entry]
            if revisions.count == 2 {
                new = try store.flatten(tree: try store.commit(try store.resolve(revisions[1])).tree)
            } else {
                new = try Diff.workingFiles(try Worktree(store: store), chunks: &workChunks)
            }
            let changes = try store.diff(old: old, new: new) { id in
                if let c = workChunks[id] { return c }
                return try store.chunks(ofBlob: id)
            }
            if json { try Console.json(changes.map(Diff.changeJSON)); return }
            Diff.printChanges(changes)
        }

        /// The working tree as a file map; files whose stat does not match the stage are chunked
        /// and hashed (nothing is stored).
        static func workingFiles(_ wt: Worktree, chunks: inout [ObjectID: [ChunkRef]]) throws -> [String: Tree.Entry] {
            let staged = try wt.store.index.stage()
            var out: [String: Tree.Entry] = [:]
            for (path, fs) in try wt.scan(tracked: Set(staged.keys)) {
                if let e = staged[path], Worktree.matches(e, fs) {
                    out[path] = Tree.Entry(name: FileIO.basename(path), kind: e.kind, executable: e.executable, id: e.id, size: e.size)
                    continue
                }
                if fs.kind == .symlink {
                    var buf = [CChar](repeating: 0, count: 4097)
                    let n = readlink(wt.top + "/" + path, &buf, 4096)
                    let id = SHA256.hash(Array(buf[0..<max(n, 0)].map { UInt8(bitPattern: $0) }))
                    out[path] = Tree.Entry(name: FileIO.basename(path), kind: .symlink, id: id, size: UInt64(max(n, 0)))
                    continue
                }
                let (id, list) = try Ingester.chunkList(path: wt.top + "/" + path, parameters: wt.store.parameters)
                chunks[id] = list
                out[path] = Tree.Entry(name: FileIO.basename(path), kind: .file, executable: fs.executable, id: id, size: fs.size)
            }
            return out
        }

        static func changeJSON(_ c: Store.FileChange) -> [String: Any] {
            var o: [String: Any] = ["path": c.path, "change": c.kind.rawValue]
            if let s = c.oldSize { o["old_size"] = s }
            if let s = c.newSize { o["new_size"] = s }
            if let i = c.oldID { o["old_id"] = i.hex }
            if let i = c.newID { o["new_id"] = i.hex }
            if let r = c.reusedShare { o["reused_bytes"] = c.reusedBytes; o["reused_share"] = r }
            return o
        }

        static func printChanges(_ changes: [Store.FileChange]) {
            if changes.isEmpty { Console.out("no changes"); return }
            for c in changes {
                switch c.kind {
                case .added: Console.out("added    \(c.path)  \(Format.bytes(c.newSize ?? 0))")
                case .removed: Console.out("removed  \(c.path)  \(Format.bytes(c.oldSize ?? 0))")
                case .changed:
                    let reuse = c.reusedShare.map { ", \(Format.percent($0)) of chunks reused" } ?? ""
                    Console.out("changed  \(c.path)  \(Format.bytes(c.oldSize ?? 0)) → \(Format.bytes(c.newSize ?? 0))\(reuse)")
                }
            }
            let added = changes.filter { $0.kind == .added }.count
            let removed = changes.filter { $0.kind == .removed }.count
            let changed = changes.filter { $0.kind == .changed }.count
            Console.out("\(changes.count) file(s): \(added) added, \(changed) changed, \(removed) removed")
        }
    }
}
