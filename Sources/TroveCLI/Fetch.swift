import ArgumentParser
import TroveCore
import TroveGit
import TroveStore
import TroveSync

/// The fetch part of `fetch`, `pull` and `clone`: refs and metadata from the remote, chunks
/// from it and any extra peers.
struct FetchRun {
    let store: Store
    let name: String?
    let url: String
    var peers: [String] = []
    var metadataOnly = false
    var chunksForHeadOnly = false
    var progress: ProgressSink?
    /// Sets up the fetcher before it runs (a clone's streaming checkout).
    var configure: (Fetcher) -> Void = { _ in }

    func run(refs: [String]?) throws -> (Fetcher.Result, TimeInterval) {
        let start = Date.timeIntervalSinceReferenceDate
        let primary = try Remotes.open(url, store: store)
        defer { primary.close() }
        let extra = try peers.map { try Remotes.open(Remotes.resolve(store, $0).url, store: store) }
        defer { for p in extra { p.close() } }
        let f = Fetcher(store: store, remote: primary, remoteName: name, extraPeers: extra)
        f.progress = progress
        f.metadataOnly = metadataOnly
        f.chunksForHeadOnly = chunksForHeadOnly
        configure(f)
        return (try f.fetch(refs), Date.timeIntervalSinceReferenceDate - start)
    }

    static func report(_ r: Fetcher.Result, from: String, quiet: Bool) {
        guard !quiet else { return }
        for ref in r.refs where ref.old != ref.new {
            Console.out("\(ref.old?.short() ?? "(new)")..\(ref.new.short())  \(ref.name)")
        }
        Console.out("Fetched from \(from): \(r.metadata.objects) metadata object(s), \(r.chunks.objects) chunk(s) (\(Format.bytes(r.chunks.bytes)))")
    }
}

import Foundation

extension TroveCommand {
    struct Fetch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Bring a remote's refs and objects into this store.",
            discussion: """
                Refs land under remotes/NAME/ (remotes/origin/heads/main, remotes/origin/runs/r1, ...), \
                never over local branches. Metadata (commits, trees, manifests) for everything fetched; \
                chunks for the files of the fetched refs' latest commits (not for older history), unless \
                --metadata-only. Chunks already here are not fetched again; an interrupted fetch keeps \
                what arrived. --from adds peers to draw chunks from (each chunk from whichever has it). \
                In a git repository with Trove installed, REFS are git revisions (default HEAD) and \
                the content of their tracked files is fetched, within --include/--exclude.
                """)

        @Argument(help: "A remote name or URL (default: origin).") var remote: String?
        @Argument(help: "Remote refs to fetch (default: all).") var refs: [String] = []
        @Option(name: .customLong("from"), help: "Another remote to fetch chunks from as well (repeatable).") var peers: [String] = []
        @Flag(help: "Fetch commits, trees and manifests only.") var metadataOnly = false
        @Option(help: "In a git repository: only files matching this pattern (repeatable).") var include: [String] = []
        @Option(help: "In a git repository: not files matching this pattern (repeatable).") var exclude: [String] = []
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            if let git = try GitMode.detect(options) {
                // Git mode: REFS are git revisions whose tracked files' content is fetched.
                let stats = try git.fetchContent(revs: refs.isEmpty ? ["HEAD"] : refs, remote: remote, include: include, exclude: exclude, progress: options.progress)
                if json { try Console.json(["objects": stats.objects, "bytes": stats.bytes]); return }
                if !options.quiet { Console.out("Fetched \(stats.objects) object(s) (\(Format.bytes(stats.bytes)))") }
                return
            }
            let store = try options.openStore()
            let lock = try store.lock()
            defer { _ = lock }
            let (name, url) = try Remotes.resolve(store, remote)
            let run = FetchRun(store: store, name: name, url: url, peers: peers, metadataOnly: metadataOnly, progress: options.progress)
            let (r, seconds) = try run.run(refs: refs.isEmpty ? nil : refs)
            if json {
                try Console.json([
                    "remote": name ?? url, "seconds": seconds,
                    "refs": r.refs.map { ["name": $0.name, "old": $0.old?.hex ?? "", "new": $0.new.hex] },
                    "metadata_objects": r.metadata.objects, "chunks": r.chunks.objects, "chunk_bytes": r.chunks.bytes,
                ] as [String: Any])
                return
            }
            FetchRun.report(r, from: name ?? url, quiet: options.quiet)
        }
    }

    struct Pull: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fetch, fast-forward the current branch and update the working tree.",
            discussion: """
                Fetches the current branch from the remote (and from every --from peer for chunks), \
                moves the branch to the remote's commit when that is a fast-forward, and writes the \
                files that changed. Refuses when the histories diverged or when local changes would \
                be overwritten. In a git repository with Trove installed: fetches the content of \
                the checked-out commit's tracked files (within --include/--exclude) and writes the \
                files that are still pointers; git's own pull is `git pull`.
                """)

        @Argument(help: "A remote name or URL (default: origin).") var remote: String?
        @Option(name: .customLong("from"), help: "Another remote to fetch chunks from as well (repeatable).") var peers: [String] = []
        @Option(help: "In a git repository: only files matching this pattern (repeatable).") var include: [String] = []
        @Option(help: "In a git repository: not files matching this pattern (repeatable).") var exclude: [String] = []
        @OptionGroup var options: StoreOptions

        func run() throws {
            if let git = try GitMode.detect(options) {
                // Git mode: the content of the checked-out commit's tracked files, written over
                // the pointers still in the working tree.
                let stats = try git.fetchContent(revs: ["HEAD"], remote: remote, include: include, exclude: exclude, progress: options.progress)
                guard let head = git.repo.resolveCommit("HEAD") else { return }
                let filter = GitMode.filter(include: include, exclude: exclude)
                let files = git.pointerFiles(try GitSnapshots(repo: git.repo, store: git.store).pointers(of: head)).filter { filter($0.key) }
                let (n, bytes) = try git.materialise(git.pointerFiles(files), progress: options.progress)
                if !options.quiet { Console.out("Fetched \(stats.objects) object(s) (\(Format.bytes(stats.bytes))); wrote \(n) file(s) (\(Format.bytes(bytes)))") }
                return
            }
            let wt = try options.worktree()
            let store = wt.store
            let lock = try store.lock()
            defer { _ = lock }
            guard let branch = try store.refs.branchName() else {
                throw StoreError(.invalidInput, "HEAD is detached: pull needs a branch", hint: "check out a branch first")
            }
            let (name, url) = try Remotes.resolve(store, remote)
            let run = FetchRun(store: store, name: name, url: url, peers: peers, progress: options.progress)
            let (r, _) = try run.run(refs: ["heads/\(branch)"])
            FetchRun.report(r, from: name ?? url, quiet: options.quiet)
            guard let theirs = r.refs.first?.new else { return }
            let ours = try store.refs.read("heads/\(branch)")
            if ours == theirs {
                if !options.quiet { Console.out("Already up to date.") }
                return
            }
            if let ours, try !Graph.isAncestor(ours, of: theirs, in: store) {
                throw StoreError(.conflict, "branch \(branch) (\(ours.short())) and \(name ?? url)'s (\(theirs.short())) have diverged; pull only fast-forwards",
                                 hint: "inspect with `trove log remotes/\(name ?? "NAME")/heads/\(branch)`; check out one of them, or push yours to another branch")
            }
            let s = try wt.checkout(theirs, newHead: .branch("heads/\(branch)"), force: false, progress: options.progress) {
                try store.refs.update("heads/\(branch)", from: ours, to: theirs, message: "pull: fast-forward from \(name ?? url)")
            }
            if !options.quiet {
                Console.out("Fast-forwarded \(branch) \(ours?.short() ?? "(unborn)")..\(theirs.short()): \(s.written) file(s) written (\(Format.bytes(s.bytes))), \(s.removed) removed")
            }
        }
    }
}
