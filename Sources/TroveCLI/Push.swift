import ArgumentParser
import Foundation
import TroveCore
import TroveStore
import TroveSync

extension TroveCommand {
    struct Push: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send refs and the objects they need to a remote.",
            discussion: """
                Sends only what the remote lacks (it is asked), in uploads of at most 64 MiB: an \
                interrupted push keeps what was acknowledged, and the next one sends the rest. The \
                remote's refs then move together (all or none), only as fast-forwards unless --force \
                (or a leading + on a ref), and only once everything they reach is stored there.
                REF is SRC[:DST]: `main`, `tags/v1`, `runs/r7`, `models/resnet/v3`, `heads/dev:heads/main`, \
                or PREFIX/* for every local ref under it (`runs/*`, `sweeps/*`). \
                In a git repository with Trove installed: the artifacts of the current branch, as \
                `git push`'s pre-push hook sends them (Docs/git.md).
                """)

        @Argument(help: "A remote name or URL (default: origin).") var remote: String?
        @Argument(help: "Refs to push (default: the current branch).") var refs: [String] = []
        @Flag(name: .shortAndLong, help: "Allow non-fast-forward updates.") var force = false
        @Flag(help: "Push every branch and tag.") var all = false
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            if let git = try GitMode.detect(options) {
                // Git mode: the artifacts of the current branch (what the pre-push hook sends).
                guard let branch = git.repo.currentBranch(), let head = git.repo.resolveCommit("HEAD") else {
                    throw StoreError(.invalidInput, "HEAD is detached or has no commit: nothing to push", hint: "check out a branch")
                }
                let remoteName = remote ?? git.repo.config("branch.\(branch).remote") ?? "origin"
                let old = git.repo.resolveCommit("refs/remotes/\(remoteName)/\(branch)")
                let (r, to) = try git.push([(head, "refs/heads/\(branch)", force ? nil : old)], remote: remoteName, progress: options.progress)
                if json { try Console.json(["remote": to, "objects": r.sent.objects, "bytes": r.sent.bytes]); return }
                if !options.quiet { Console.out("Pushed to \(to): \(r.sent.objects) object(s), \(Format.bytes(r.sent.bytes))") }
                return
            }
            let store = try options.openStore()
            let lock = try store.lock()
            defer { _ = lock }
            let (name, url) = try Remotes.resolve(store, remote)
            var specs: [RefSpec] = []
            for r in refs {
                // `runs/*`, `sweeps/*`, `+models/resnet/*`: every local ref under the prefix.
                guard r.hasSuffix("/*") else { specs.append(try RefSpec.parse(r, refs: store.refs)); continue }
                let force = r.hasPrefix("+")
                var prefix = String(r.dropFirst(force ? 1 : 0).dropLast())
                if prefix.hasPrefix("refs/") { prefix = String(prefix.dropFirst(5)) }
                let matched = try store.refs.list(prefix: prefix)
                guard !matched.isEmpty else { throw StoreError(.notFound, "no ref matches \(r)", hint: "`trove runs`, `trove branch` and `trove tag` list refs") }
                specs += matched.map { RefSpec(source: $0.name, destination: $0.name, force: force) }
            }
            if all {
                specs += try (store.refs.list(prefix: "heads/") + store.refs.list(prefix: "tags/")).map { RefSpec(source: $0.name, destination: $0.name) }
            }
            if specs.isEmpty {
                guard let b = try store.refs.branchName() else {
                    throw StoreError(.invalidInput, "HEAD is detached: name what to push", hint: "name the refs, e.g. `trove push origin tags/v1`, or check out a branch first")
                }
                specs = [RefSpec(source: "heads/\(b)", destination: "heads/\(b)")]
            }
            if force { specs = specs.map { var s = $0; s.force = true; return s } }
            let r = try Remotes.open(url, store: store)
            defer { r.close() }
            let pusher = Pusher(store: store, remote: r, remoteName: name)
            pusher.progress = options.progress
            if let v = ProcessInfo.processInfo.environment["TROVE_UPLOAD_BYTES"], let n = Int(v), n > 0 { pusher.uploadBytes = n }
            let result = try pusher.push(specs)
            if json {
                try Console.json([
                    "remote": name ?? url, "objects": result.sent.objects, "bytes": result.sent.bytes, "uploads": result.sent.uploads,
                    "updated": result.updated.map { ["ref": $0.name, "old": $0.old?.hex ?? "", "new": $0.new?.hex ?? ""] },
                    "up_to_date": result.upToDate,
                ] as [String: Any])
                return
            }
            if options.quiet { return }
            for u in result.updated {
                Console.out("\(u.old?.short() ?? "(new)")..\(u.new?.short() ?? "(deleted)")  \(u.name)\(u.force ? " (forced)" : "")")
            }
            for n in result.upToDate { Console.out("up to date  \(n)") }
            Console.out("Pushed to \(name ?? url): \(result.sent.objects) object(s), \(Format.bytes(result.sent.bytes)) in \(result.sent.uploads) upload(s)")
        }
    }
}
