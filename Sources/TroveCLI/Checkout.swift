import ArgumentParser
import TroveStore
import TroveSync

extension TroveCommand {
    struct Checkout: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move the working tree to a revision, or bring paths from it.",
            discussion: """
                `checkout REV` rewrites the working tree, the stage and HEAD (a branch name keeps HEAD on \
                the branch; anything else detaches it). It refuses when local changes would be lost, \
                unless --force. `checkout REV PATH...` writes only those paths (and stages them); HEAD stays.
                """)

        @Argument(help: "A revision.") var revision: String
        @Argument(help: "Paths to bring from REV (HEAD does not move).") var paths: [String] = []
        @Option(name: .customShort("b"), help: "Create branch NAME at REV and check it out.") var newBranch: String?
        @Flag(name: .shortAndLong, help: "Discard local changes that are in the way.") var force = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            let wt = try options.worktree()
            let lock = try wt.store.lock()
            defer { _ = lock }
            let id = try wt.store.resolve(revision)
            let specs = try paths.map { try wt.relative($0, cwd: options.cwd) }
            try LazyFetch.ensure(wt.store, commit: id, filter: paths.isEmpty ? wt.sparse : PathFilter(specs.map { $0.isEmpty ? "**" : $0 }),
                                 progress: options.progress)
            if !paths.isEmpty {
                let n = try wt.checkoutPaths(specs, from: try wt.store.commit(id).tree, progress: options.progress)
                if !options.quiet { Console.out("Updated \(n) path(s) from \(id.short())") }
                return
            }
            let head: Refs.Head
            let bare = revision.hasPrefix("refs/") ? String(revision.dropFirst(5)) : revision
            if let newBranch {
                try Refs.validate("heads/\(newBranch)")
                if try wt.refs.read("heads/\(newBranch)") != nil {
                    throw StoreError(.conflict, "branch \(newBranch) already exists", hint: "use `trove checkout \(newBranch)`, or pick another name")
                }
                head = .branch("heads/\(newBranch)")
            } else if try wt.refs.read("heads/\(bare)") != nil {
                head = .branch("heads/\(bare)")
            } else if bare.hasPrefix("heads/"), try wt.refs.read(bare) != nil {
                head = .branch(bare)
            } else {
                head = .detached(id)
            }
            // A new branch is created only once the working tree has moved.
            let s = try wt.checkout(id, newHead: head, force: force, progress: options.progress) {
                if let newBranch { try wt.refs.update("heads/\(newBranch)", from: nil, to: id, message: "branch: created from \(revision)") }
            }
            if !options.quiet {
                let where_ = { () -> String in
                    if case .branch(let b) = head { return "branch \(b.dropFirst(6))" }
                    return "detached HEAD \(id.short())"
                }()
                Console.out("Checked out \(where_): \(s.written) file(s) written (\(Format.bytes(s.bytes))), \(s.removed) removed")
            }
        }
    }
}
