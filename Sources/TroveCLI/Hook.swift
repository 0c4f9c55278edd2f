import ArgumentParser
import Foundation
import Glibc
import TroveCore
import TroveGit
import TroveRuns
import TroveStore
import TroveSync

extension TroveCommand {
    struct Hook: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "What Trove's git hooks run (pre-push, post-checkout, post-merge, post-commit).",
            shouldDisplay: false)
        @Argument(help: "The hook.") var name: String
        @Argument(parsing: .allUnrecognized, help: "git's arguments to the hook.") var arguments: [String] = []
        @OptionGroup var options: StoreOptions

        func run() throws {
            guard let git = try GitMode.detect(options) else { return }  // uninstalled: hooks do nothing
            let env = ProcessInfo.processInfo.environment
            let skip = ["1", "true", "yes"].contains(env["TROVE_SKIP_SMUDGE"] ?? "")
            switch name {
            case "pre-push":
                var items: [(local: GitOID, remoteRef: String, remoteOld: GitOID?)] = []
                while let line = readLine() {
                    let f = line.split(separator: " ").map(String.init)
                    guard f.count == 4 else { continue }
                    guard let local = GitOID(hex: f[1]), !local.isZero else { continue }  // deletions carry nothing
                    items.append((local, f[2], GitOID(hex: f[3])))
                }
                guard !items.isEmpty else { return }
                let remoteName = arguments.first
                // A git remote Trove cannot follow (an HTTP git host, no Trove remote set) is
                // fine for commits that track nothing: only artifacts need a Trove remote.
                do { _ = try git.troveRemote(remoteName) } catch let e as StoreError where e.code == .notFound {
                    if try items.allSatisfy({ try git.tracksNothing(git.snapshot(of: $0.local)) }) { return }
                    throw e
                }
                do {
                    let (r, remote) = try git.push(items, remote: remoteName, progress: options.progress)
                    if !options.quiet, r.sent.objects > 0 {
                        Console.err("trove: sent \(r.sent.objects) object(s), \(Format.bytes(r.sent.bytes)) to \(remote)")
                    }
                } catch {
                    Console.err("trove: the artifacts of this push could not be sent to the Trove remote, so git push is stopped (nothing was pushed to git).")
                    throw error
                }
            case "post-checkout", "post-merge":
                if name == "post-checkout", arguments.count >= 3, arguments[2] == "0" { return }  // a file checkout
                guard !skip, let head = git.repo.resolveCommit("HEAD") else { return }
                try materialiseWorktree(git, commit: head)
            case "post-commit":
                guard let head = git.repo.resolveCommit("HEAD") else { return }
                let s = try git.snapshot(of: head)
                if let branch = git.repo.currentBranch() {
                    let refs = git.store.refs
                    let old = try refs.read("heads/\(branch)")
                    if old != s { try refs.update("heads/\(branch)", from: old, to: s, message: "git commit \(head.hex.prefix(12))", force: true) }
                    if try refs.branchName() != branch { try refs.setHead(.branch("heads/\(branch)"), message: "git checkout \(branch)") }
                }
            default:
                throw StoreError(.invalidInput, "no hook \(name)", hint: "hooks: \(HookScripts.names.joined(separator: ", "))")
            }
        }

        func materialiseWorktree(_ git: GitMode, commit: GitOID) throws {
            let all = try GitSnapshots(repo: git.repo, store: git.store).pointers(of: commit)
            let sparse = (try? PathFilter.load(store: git.store.root)) ?? .all
            let files = git.pointerFiles(all).filter { sparse.includes($0.key) }
            guard !files.isEmpty else { return }
            _ = try git.fetch(files.map { ($0.key, $0.value) }, progress: options.progress)
            // Checked again after the fetch: a file edited meanwhile is not a pointer any more.
            try git.materialise(git.pointerFiles(files), progress: options.progress)
        }
    }
}
