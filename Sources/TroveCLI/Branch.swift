import ArgumentParser
import TroveCore
import TroveStore

/// Shared by `branch` and `tag`: list, create at a revision, delete.
struct RefCommand {
    let namespace: String
    let noun: String

    func run(store: Store, name: String?, revision: String?, delete: Bool, force: Bool, json: Bool) throws {
        let refs = Refs(root: store.root)
        guard let name else {
            let current = try refs.branchName()
            let list = try refs.list(prefix: namespace + "/")
            if json {
                try Console.json(list.map { ["name": String($0.name.dropFirst(namespace.count + 1)), "id": $0.id.hex,
                                             "current": namespace == "heads" && String($0.name.dropFirst(6)) == current] })
                return
            }
            for (n, id) in list {
                let short = String(n.dropFirst(namespace.count + 1))
                let mark = namespace == "heads" && short == current ? "*" : " "
                Console.out("\(mark) \(short.padding(toLength: max(20, short.count), withPad: " ", startingAt: 0)) \(id.short())")
            }
            return
        }
        let ref = "\(namespace)/\(name)"
        try Refs.validate(ref)
        if delete {
            guard let old = try refs.read(ref) else { throw StoreError(.notFound, "\(noun) \(name) does not exist") }
            if namespace == "heads", try refs.branchName() == name {
                throw StoreError(.conflict, "cannot delete branch \(name): it is checked out", hint: "check out another branch first")
            }
            try refs.update(ref, from: old, to: nil, message: "\(noun): deleted")
            Console.out("Deleted \(noun) \(name) (was \(old.short()))")
            return
        }
        let id = try store.resolve(revision ?? "HEAD")
        _ = try store.commit(id)
        let old = try refs.read(ref)
        if old != nil && !force {
            throw StoreError(.conflict, "\(noun) \(name) already exists", hint: "use --force to move it")
        }
        try refs.update(ref, from: old, to: id, message: "\(noun): \(old == nil ? "created" : "moved") at \(revision ?? "HEAD")")
        Console.out("\(noun.capitalized) \(name) → \(id.short())")
    }
}

extension TroveCommand {
    struct Branch: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List, create or delete branches.")

        @Argument(help: "Branch to create or delete (none: list).") var name: String?
        @Argument(help: "Where a new branch points (default HEAD).") var revision: String?
        @Flag(name: .shortAndLong, help: "Delete the branch.") var delete = false
        @Flag(name: .shortAndLong, help: "Move an existing branch.") var force = false
        @Flag(help: "Print the list as JSON.") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            try RefCommand(namespace: "heads", noun: "branch").run(store: try options.openStore(), name: name, revision: revision,
                                                                  delete: delete, force: force, json: json)
        }
    }

    struct Tag: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List, create or delete tags.")

        @Argument(help: "Tag to create or delete (none: list).") var name: String?
        @Argument(help: "What the tag names (default HEAD).") var revision: String?
        @Flag(name: .shortAndLong, help: "Delete the tag.") var delete = false
        @Flag(name: .shortAndLong, help: "Move an existing tag.") var force = false
        @Flag(help: "Print the list as JSON.") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            try RefCommand(namespace: "tags", noun: "tag").run(store: try options.openStore(), name: name, revision: revision,
                                                              delete: delete, force: force, json: json)
        }
    }
}
