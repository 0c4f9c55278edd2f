import ArgumentParser
import Foundation
import Glibc
import TroveCore
import TroveGit
import TroveRuns
import TroveStore
import TroveSync

extension TroveCommand {
    struct Install: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set up Trove in a git repository: filter, diff and hooks.",
            discussion: """
                Sets filter.trove.process (`trove filter-process`), filter.trove.required=true and \
                diff.trove.textconv in the repository's git config, creates the store in .git/trove \
                (shared by its worktrees) and writes the pre-push, post-checkout, post-merge and \
                post-commit hooks into core.hooksPath or .git/hooks. A hook already there keeps \
                running: it is moved to NAME.trove-chained and called by Trove's. Running it again \
                changes nothing. --uninstall undoes exactly that (the store and its data stay). \
                --global sets only the filter and diff config, in ~/.gitconfig, for every repository.
                """)

        @Flag(help: "Only the filter and diff config, in the user's git config.") var global = false
        @Flag(help: "Undo what install did.") var uninstall = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            if global {
                let file = try GitConfigFile.global()
                let changed = uninstall ? try GitInstall.removeConfig(file) : try GitInstall.setConfig(file)
                if !options.quiet {
                    Console.out(changed.isEmpty ? "\(file.path): nothing to change" : "\(file.path): \(uninstall ? "removed" : "set") \(changed.joined(separator: ", "))")
                }
                return
            }
            guard let repo = GitRepository.discover(from: options.cwd), let top = repo.workTree else {
                throw StoreError(.notFound, "\(options.cwd) is not in a git working tree", hint: "run `git init` first, or use `trove install --global`")
            }
            if uninstall {
                let r = try GitInstall.uninstall(repo)
                if FileIO.exists(repo.storeRoot + "/config") {
                    let store = try Store.open(root: repo.storeRoot, workTree: top)
                    try store.setConfig(GitMode.enabledKey, nil)
                }
                if !options.quiet {
                    Console.out("Trove uninstalled from \(top): config \(r.configChanged.isEmpty ? "unchanged" : "removed " + r.configChanged.joined(separator: ", "))")
                    if !r.hooksRemoved.isEmpty { Console.out("  removed hooks: \(r.hooksRemoved.joined(separator: ", "))") }
                    if !r.hooksRestored.isEmpty { Console.out("  restored the hooks Trove chained: \(r.hooksRestored.joined(separator: ", "))") }
                    if !r.hooksLeft.isEmpty { Console.out("  left alone (changed since install): \(r.hooksLeft.joined(separator: ", "))") }
                    Console.out("The store \(repo.storeRoot) is kept; delete it to drop the artifacts.")
                }
                return
            }
            let store: Store
            if FileIO.exists(repo.storeRoot + "/config") {
                store = try Store.open(root: repo.storeRoot, workTree: top)
            } else {
                store = try Store.initialize(root: repo.storeRoot, workTree: top)
            }
            if store.config[GitMode.enabledKey] != "true" { try store.setConfig(GitMode.enabledKey, "true") }
            let r = try GitInstall.install(repo)
            guard !options.quiet else { return }
            Console.out("Trove installed in \(top) (store \(store.root))")
            if !r.configChanged.isEmpty { Console.out("  git config: \(r.configChanged.joined(separator: ", "))") }
            if !r.hooksWritten.isEmpty { Console.out("  hooks in \(r.hooksDirectory): \(r.hooksWritten.joined(separator: ", "))") }
            if !r.hooksChained.isEmpty { Console.out("  chained in front of your hooks: \(r.hooksChained.joined(separator: ", "))") }
            if r.configChanged.isEmpty && r.hooksWritten.isEmpty && r.hooksChained.isEmpty { Console.out("  already installed: nothing changed") }
        }
    }
}
