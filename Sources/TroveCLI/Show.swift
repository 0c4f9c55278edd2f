import ArgumentParser
import TroveCore
import TroveStore

extension TroveCommand {
    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a commit (with its changes), a file's record, or a folder's entries.",
            discussion: "REV shows the commit and the files it changed against its first parent; REV:PATH shows a file (id, size, chunks) or a folder.")

        @Argument(help: "REV or REV:PATH (default HEAD).") var target = "HEAD"
        @Flag(help: "Print as JSON.") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            let store = try options.openStore()
            let (rev, path) = Store.splitRevisionPath(target)
            let id = try store.resolve(rev.isEmpty ? "HEAD" : rev)
            if let path {
                let e = try store.entry(at: path, inCommit: id)
                if e.kind == .directory {
                    let entries = try store.tree(e.id).entries
                    if json { try Console.json(["path": path, "kind": "dir", "id": e.id.hex, "size": e.size, "entries": entries.map(Ls.entryJSON)]); return }
                    Console.out("tree \(e.id.hex)  \(path.isEmpty ? "/" : path)  \(Format.bytes(e.size))")
                    for x in entries { Console.out(Ls.line(x, name: x.name)) }
                    return
                }
                let chunks = try store.chunks(ofBlob: e.id)
                let manifest = try store.type(of: e.id) == .blob ? "manifest" : "single chunk"
                if json {
                    try Console.json(["path": path, "kind": e.kind.description, "id": e.id.hex, "size": e.size,
                                      "executable": e.executable, "chunks": chunks.count, "layout": manifest])
                    return
                }
                Console.out("path:       \(path)")
                Console.out("kind:       \(e.kind)\(e.executable ? " (executable)" : "")")
                Console.out("id:         \(e.id.hex)")
                Console.out("size:       \(e.size) (\(Format.bytes(e.size)))")
                Console.out("chunks:     \(chunks.count) (\(manifest))")
                return
            }
            let c = try store.commit(id)
            let parentFiles = try c.parents.first.map { try store.flatten(tree: try store.commit($0).tree) } ?? [:]
            let changes = try store.diff(old: parentFiles, new: try store.flatten(tree: c.tree)) { try store.chunks(ofBlob: $0) }
            if json {
                var obj = CommitJSON.object(id, c)
                obj["changes"] = changes.map(Diff.changeJSON)
                try Console.json(obj)
                return
            }
            Console.out("commit \(id.hex)\(c.kind == .snapshot ? "" : " (\(c.kind))")")
            Console.out("Author: \(c.author)")
            Console.out("Date:   \(Format.date(c.time, offsetMinutes: c.timezoneOffset))")
            for (k, v) in c.metadata { Console.out("Meta:   \(k)=\(v)") }
            Console.out("")
            for line in c.message.split(separator: "\n", omittingEmptySubsequences: false) { Console.out("    \(line)") }
            Console.out("")
            Diff.printChanges(changes)
        }
    }
}
