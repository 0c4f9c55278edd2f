import ArgumentParser
import TroveCore
import TroveStore

extension TroveCommand {
    struct Ls: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the files of a commit (REV or REV:PATH).")

        @Argument(help: "REV or REV:PATH (default HEAD).") var target = "HEAD"
        @Flag(name: .shortAndLong, help: "List every file below, not only the first level.") var recursive = false
        @Flag(help: "Print as JSON.") var json = false
        @OptionGroup var options: StoreOptions

        static func entryJSON(_ e: Tree.Entry) -> [String: Any] {
            ["name": e.name, "kind": e.kind.description, "id": e.id.hex, "size": e.size, "executable": e.executable]
        }

        static func line(_ e: Tree.Entry, name: String) -> String {
            let kind = e.kind == .directory ? "dir " : (e.kind == .symlink ? "link" : (e.executable ? "exec" : "file"))
            return "\(kind) \(e.id.short()) \(String(e.size).leftPad(14)) \(name)\(e.kind == .directory ? "/" : "")"
        }

        func run() throws {
            let store = try options.openStore()
            let (rev, path) = Store.splitRevisionPath(target)
            let id = try store.resolve(rev.isEmpty ? "HEAD" : rev)
            let base = path ?? ""
            let e = try store.entry(at: base, inCommit: id)
            var rows: [(String, Tree.Entry)] = []
            if e.kind != .directory {
                rows = [(base, e)]
            } else if recursive {
                rows = try store.flatten(tree: e.id, prefix: base).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            } else {
                rows = try store.tree(e.id).entries.map { (base.isEmpty ? $0.name : base + "/" + $0.name, $0) }
            }
            if json {
                try Console.json(rows.map { p, e in var o = Ls.entryJSON(e); o["path"] = p; return o })
                return
            }
            for (p, e) in rows { Console.out(Ls.line(e, name: p)) }
        }
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
